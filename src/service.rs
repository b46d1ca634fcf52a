//! [`SockJs`]: the actix-web service factory that mounts an endpoint, its
//! route table (PROTOCOL.md §3) and the headers every answer shares (§4).

use std::{
    fmt,
    rc::Rc,
    sync::Arc,
    time::{Duration, SystemTime},
};

use actix::Addr;
use actix_web::{
    dev::{AppService, HttpServiceFactory},
    http::{
        header::{self, HeaderValue},
        Method,
    },
    web, HttpRequest, HttpResponse, HttpResponseBuilder,
};

use crate::{
    admission::{client_ip, origin_allowed},
    config::{Config, Transport},
    manager::{Directory, Opening, SessionManager},
    metrics::EndpointMetrics,
    protocol::{self, GREETING},
    session::Session,
    transport::{http, websocket},
    util,
};

/// A SockJS endpoint, mounted on an actix-web `App` with one call.
///
/// `SockJs` implements [`HttpServiceFactory`]: give it to
/// [`App::service`](actix_web::App::service). Everything under the prefix
/// belongs to SockJS: the greeting, `/info`, the iframe page, the raw
/// `/websocket` and every session transport. Several endpoints may share an
/// app, each with its own [`SessionManager`].
///
/// # Examples
///
/// ```no_run
/// use actix::prelude::*;
/// use actix_sockjs::{Config, Session, SessionContext, SessionManager, SockJs};
/// use actix_web::{App, HttpServer};
///
/// struct Echo;
/// impl Actor for Echo {
///     type Context = SessionContext<Self>;
/// }
/// impl Session for Echo {
///     fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
///         ctx.send(msg);
///     }
/// }
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let manager = SessionManager::new(|| Echo).start();
///     HttpServer::new(move || {
///         App::new().service(
///             SockJs::new("/echo", manager.clone()).config(Config::default().response_limit(4096)),
///         )
///     })
///     // End a response when its client closes the socket (aborted long-polls).
///     .h1_allow_half_closed(false)
///     .bind(("127.0.0.1", 8080))?
///     .run()
///     .await
/// }
/// ```
#[must_use]
pub struct SockJs<A: Session> {
    prefix: String,
    manager: Addr<SessionManager<A>>,
    config: Config,
    authorize: Option<Authorize>,
}

/// The authorisation hook: sees the opening request, may refuse it.
type Authorize = Rc<dyn Fn(&HttpRequest) -> Result<(), actix_web::Error>>;

impl<A: Session> fmt::Debug for SockJs<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SockJs").field("prefix", &self.prefix).field("config", &self.config).finish()
    }
}

impl<A: Session> SockJs<A> {
    /// An endpoint at `prefix` (such as `/echo`; no trailing `/`) whose
    /// sessions are tracked by `manager`, with the default [`Config`].
    pub fn new(prefix: impl Into<String>, manager: Addr<SessionManager<A>>) -> Self {
        let prefix = prefix.into().trim_end_matches('/').to_owned();
        Self { prefix, manager, config: Config::default(), authorize: None }
    }

    /// Decides whether a request may open a session, before any session
    /// actor exists.
    ///
    /// The hook runs on the request that would open a session: the first
    /// receiving request for an unknown session id, and every WebSocket
    /// upgrade. It sees the whole request (headers, cookies, query, peer
    /// address, extensions set by middleware); an `Err` is answered as
    /// actix-web answers that error (its status and body) and no session
    /// opens. Requests on a session that is already open are not asked
    /// again.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use actix::prelude::*;
    /// # use actix_sockjs::{Session, SessionContext, SessionManager, SockJs};
    /// # struct Echo;
    /// # impl Actor for Echo { type Context = SessionContext<Self>; }
    /// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
    /// # fn f(manager: Addr<SessionManager<Echo>>) -> SockJs<Echo> {
    /// SockJs::new("/echo", manager).authorize(|req| {
    ///     match req.headers().get("x-api-key").and_then(|v| v.to_str().ok()) {
    ///         Some("let-me-in") => Ok(()),
    ///         _ => Err(actix_web::error::ErrorForbidden("log in first")),
    ///     }
    /// })
    /// # }
    /// ```
    pub fn authorize<F>(mut self, hook: F) -> Self
    where
        F: Fn(&HttpRequest) -> Result<(), actix_web::Error> + 'static,
    {
        self.authorize = Some(Rc::new(hook));
        self
    }

    /// Replaces the endpoint's options.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }
}

/// What the handlers of one endpoint share.
pub(crate) struct Endpoint<A: Session> {
    pub(crate) config: Arc<Config>,
    pub(crate) manager: Addr<SessionManager<A>>,
    pub(crate) metrics: Arc<EndpointMetrics>,
    /// The manager's session directory, fetched at this worker's first request.
    pub(crate) directory: std::cell::OnceCell<Directory>,
    iframe: (String, String),
    authorize: Option<Authorize>,
}

impl<A: Session> Endpoint<A> {
    /// 403 for a browser origin outside the allow-list.
    pub(crate) fn check_origin(&self, req: &HttpRequest) -> Result<(), actix_web::Error> {
        if origin_allowed(req, &self.config.allowed_origins) {
            return Ok(());
        }
        log::info!(
            "sockjs: {} {}: origin {:?} not allowed",
            req.method(),
            req.path(),
            req.headers().get(header::ORIGIN)
        );
        Err(actix_web::error::ErrorForbidden("Origin not allowed."))
    }

    /// Runs the authorisation hook for a request that would open a session.
    pub(crate) fn admit(&self, req: &HttpRequest) -> Result<Opening, actix_web::Error> {
        if let Some(hook) = &self.authorize {
            if let Err(e) = hook(req) {
                log::info!(
                    "sockjs: {} {}: session refused by the authorisation hook: {e}",
                    req.method(),
                    req.path()
                );
                return Err(e);
            }
        }
        Ok(Opening { client: self.client_ip(req), caps: self.config.caps() })
    }

    pub(crate) fn client_ip(&self, req: &HttpRequest) -> Option<std::net::IpAddr> {
        client_ip(req, &self.config.trusted_proxies)
    }
}

impl<A: Session> HttpServiceFactory for SockJs<A> {
    fn register(self, config: &mut AppService) {
        let cfg = &self.config;
        let iframe = protocol::iframe_page(&cfg.sockjs_url);
        let websocket = cfg.enabled(Transport::WebSocket);
        let raw = websocket && cfg.raw_websocket;
        let endpoint = web::Data::new(Endpoint {
            config: Arc::new(cfg.clone()),
            manager: self.manager,
            metrics: Arc::new(EndpointMetrics::new(&self.prefix)),
            directory: std::cell::OnceCell::new(),
            iframe,
            authorize: self.authorize,
        });

        let session = |transport: &str| format!("/{{server:[^/.]+}}/{{session:[^/.]+}}/{transport}");
        let mut scope = web::scope(&self.prefix)
            .app_data(endpoint)
            .service(
                web::resource(["", "/"]).route(web::get().to(greeting)).default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/info")
                    .route(web::get().to(info::<A>))
                    .route(web::method(Method::OPTIONS).to(preflight_info::<A>))
                    .default_service(not_allowed("OPTIONS, GET")),
            )
            .service(
                web::resource(r"/{file:iframe[0-9a-z.\-_]*\.html}")
                    .route(web::get().to(iframe_page::<A>))
                    .default_service(not_allowed("GET")),
            );
        if raw {
            scope = scope.service(
                web::resource("/websocket")
                    .route(web::get().to(websocket::raw::<A>))
                    .default_service(not_allowed("GET")),
            );
        }
        if websocket {
            scope = scope.service(
                web::resource(session("websocket"))
                    .route(web::get().to(websocket::framed::<A>))
                    .default_service(not_allowed("GET")),
            );
        }
        if cfg.enabled(Transport::XhrPolling) {
            scope = scope
                .service(post_resource::<A, _, _>(session("xhr"), http::xhr::<A>))
                .service(post_resource::<A, _, _>(session("xhr_send"), http::xhr_send::<A>));
        }
        if cfg.enabled(Transport::XhrStreaming) {
            scope =
                scope.service(post_resource::<A, _, _>(session("xhr_streaming"), http::xhr_streaming::<A>));
        }
        if cfg.enabled(Transport::EventSource) {
            scope = scope.service(get_resource(session("eventsource"), http::eventsource::<A>));
        }
        if cfg.enabled(Transport::HtmlFile) {
            scope = scope.service(get_resource(session("htmlfile"), http::htmlfile::<A>));
        }
        if cfg.enabled(Transport::JsonpPolling) {
            scope = scope.service(get_resource(session("jsonp"), http::jsonp::<A>)).service(
                web::resource(session("jsonp_send"))
                    .route(web::post().to(http::jsonp_send::<A>))
                    .default_service(not_allowed("POST")),
            );
        }
        scope.default_service(web::to(not_found)).register(config);
    }
}

fn post_resource<A: Session, H, Args>(path: String, handler: H) -> actix_web::Resource
where
    H: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    H::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::post().to(handler))
        .route(web::method(Method::OPTIONS).to(preflight_post::<A>))
        .default_service(not_allowed("OPTIONS, POST"))
}

fn get_resource<H, Args>(path: String, handler: H) -> actix_web::Resource
where
    H: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    H::Output: actix_web::Responder + 'static,
{
    web::resource(path).route(web::get().to(handler)).default_service(not_allowed("GET"))
}

/// 405 with an `Allow` header, an empty body and no content type.
fn not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(move |req: HttpRequest| async move {
        log::debug!("sockjs: {} {} not allowed", req.method(), req.path());
        HttpResponse::MethodNotAllowed().insert_header((header::ALLOW, allow)).finish()
    })
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    log::debug!("sockjs: no route for {} {}", req.method(), req.path());
    HttpResponse::NotFound().content_type(TEXT).body("Not found.")
}

async fn greeting() -> HttpResponse {
    HttpResponse::Ok().content_type(TEXT).body(GREETING)
}

async fn info<A: Session>(req: HttpRequest, ep: web::Data<Endpoint<A>>) -> HttpResponse {
    if let Err(e) = ep.check_origin(&req) {
        return e.error_response();
    }
    let cfg = &ep.config;
    let mut res = HttpResponse::Ok();
    res.content_type("application/json; charset=UTF-8");
    never_cache(&mut res);
    cors(&mut res, &req);
    res.body(protocol::info_body(cfg.enabled(Transport::WebSocket), cfg.cookie_needed))
}

async fn iframe_page<A: Session>(req: HttpRequest, ep: web::Data<Endpoint<A>>) -> HttpResponse {
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

async fn preflight_info<A: Session>(req: HttpRequest, ep: web::Data<Endpoint<A>>) -> HttpResponse {
    ep.check_origin(&req).map_or_else(|e| e.error_response(), |()| preflight(&req, "OPTIONS, GET"))
}

async fn preflight_post<A: Session>(req: HttpRequest, ep: web::Data<Endpoint<A>>) -> HttpResponse {
    ep.check_origin(&req).map_or_else(|e| e.error_response(), |()| preflight(&req, "OPTIONS, POST"))
}

/// A CORS preflight answer (PROTOCOL.md §4.3).
fn preflight(req: &HttpRequest, methods: &'static str) -> HttpResponse {
    let mut res = HttpResponse::NoContent();
    cors(&mut res, req);
    long_cache(&mut res);
    res.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, methods));
    res.insert_header((header::ACCESS_CONTROL_MAX_AGE, LONG_CACHE_SECS.to_string()));
    res.finish()
}

pub(crate) const TEXT: &str = "text/plain; charset=UTF-8";
pub(crate) const JAVASCRIPT: &str = "application/javascript; charset=UTF-8";
const LONG_CACHE_SECS: u64 = 31_536_000;

/// `Cache-Control` and friends that forbid caching.
pub(crate) fn never_cache(res: &mut HttpResponseBuilder) {
    res.insert_header((
        header::CACHE_CONTROL,
        "no-store, no-cache, no-transform, must-revalidate, max-age=0",
    ));
}

/// Headers that let a response be cached for a year.
fn long_cache(res: &mut HttpResponseBuilder) {
    let expires = SystemTime::now() + Duration::from_secs(LONG_CACHE_SECS);
    res.insert_header((header::CACHE_CONTROL, format!("public, max-age={LONG_CACHE_SECS}")));
    res.insert_header((header::EXPIRES, header::HttpDate::from(expires).to_string()));
}

/// CORS headers: the request's origin echoed with credentials, or `*`.
pub(crate) fn cors(res: &mut HttpResponseBuilder, req: &HttpRequest) {
    match req.headers().get(header::ORIGIN) {
        Some(origin) => {
            res.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()));
            res.insert_header((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"));
        }
        None => {
            res.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"));
        }
    }
    res.insert_header((header::VARY, "Origin"));
    if let Some(h) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS).filter(|h| !h.is_empty()) {
        res.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, h.clone()));
    }
}

/// The `JSESSIONID` cookie, when the endpoint wants one (PROTOCOL.md §4.4).
pub(crate) fn session_cookie(res: &mut HttpResponseBuilder, req: &HttpRequest, config: &Config) {
    if !config.cookie_needed {
        return;
    }
    let value = util::cookie(req.headers(), "JSESSIONID").filter(|v| is_cookie_value(v)).unwrap_or("dummy");
    if let Ok(v) = HeaderValue::from_str(&format!("JSESSIONID={value}; path=/")) {
        res.insert_header((header::SET_COOKIE, v));
    }
}

fn is_cookie_value(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'))
}
