//! The endpoint's own URLs: the greeting (docs/protocol.md §6.1), the
//! iframe page (§6.2), `/info` (§6.3), CORS preflights (§4.3), and the
//! 404 and 405 answers (§3.2).

use actix_web::{http::header, web, HttpRequest, HttpResponse};

use super::{Role, TABLE};
use crate::{
    endpoint::{cors, long_cache, never_cache, session_cookie, Endpoint, LogPath, LONG_CACHE_SECS, TEXT},
    protocol::{self, GREETING},
    session::Session,
};

/// `GET <prefix>`: the greeting.
pub(crate) async fn greeting() -> HttpResponse {
    HttpResponse::Ok().content_type(TEXT).body(GREETING)
}

/// `GET <prefix>/info`: what the endpoint offers.
pub(crate) async fn info<A: Session>(req: HttpRequest, ep: web::Data<Endpoint<A>>) -> HttpResponse {
    if let Err(e) = ep.check_origin(&req) {
        return e.error_response();
    }
    let cfg = &ep.config;
    // What the transport table offers: `websocket` is whether its SockJS
    // WebSocket row is mounted.
    let websocket =
        TABLE.iter().any(|row| matches!(row.role, Role::WebSocket) && cfg.is_enabled(row.transport));
    let mut res = HttpResponse::Ok();
    res.content_type("application/json; charset=UTF-8");
    never_cache(&mut res);
    cors(&mut res, &req);
    res.body(protocol::info_body(websocket, cfg.cookie_needed))
}

/// `GET <prefix>/iframe*.html`: the page the iframe transports load.
pub(crate) async fn iframe_page<A: Session>(req: HttpRequest, ep: web::Data<Endpoint<A>>) -> HttpResponse {
    let (page, etag) = &ep.iframe;
    let matches = req.headers().get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut res = if matches { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    long_cache(&mut res);
    res.insert_header((header::ETAG, etag.as_str()));
    if matches {
        return res.finish();
    }
    res.content_type("text/html; charset=UTF-8").body(page.clone())
}

/// `OPTIONS` on a URL that allows `methods`: a CORS preflight answer,
/// with the `JSESSIONID` cookie on a session URL (`session`), as
/// sockjs-node sets it there.
pub(crate) async fn preflight<A: Session>(
    req: HttpRequest,
    ep: web::Data<Endpoint<A>>,
    methods: &'static str,
    session: bool,
) -> HttpResponse {
    if let Err(e) = ep.check_origin(&req) {
        return e.error_response();
    }
    let mut res = HttpResponse::NoContent();
    if session {
        session_cookie(&mut res, &req, &ep.config);
    }
    cors(&mut res, &req);
    long_cache(&mut res);
    res.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, methods));
    res.insert_header((header::ACCESS_CONTROL_MAX_AGE, LONG_CACHE_SECS.to_string()));
    res.finish()
}

/// 405 with this `Allow` list, an empty body and no content type.
pub(crate) fn method_not_allowed(req: &HttpRequest, allow: &'static str) -> HttpResponse {
    log::debug!("sockjs: {} {} not allowed", req.method(), LogPath(req));
    HttpResponse::MethodNotAllowed().insert_header((header::ALLOW, allow)).finish()
}

/// 404 for anything else under the prefix.
pub(crate) async fn not_found(req: HttpRequest) -> HttpResponse {
    log::debug!("sockjs: no route for {} {}", req.method(), LogPath(&req));
    HttpResponse::NotFound().content_type(TEXT).body("Not found.")
}
