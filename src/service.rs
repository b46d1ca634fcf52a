//! [`SockJs`]: the actix-web service factory that mounts an endpoint: the
//! endpoint's own URLs and a route for every row of the transport table
//! (docs/protocol.md §3.2).

use std::{fmt, rc::Rc};

use actix::Addr;
use actix_web::{
    dev::{AppService, HttpServiceFactory},
    http::Method,
    web, HttpRequest,
};

use crate::{
    config::Config,
    endpoint::{Authorize, Endpoint},
    manager::SessionManager,
    session::Session,
    transport::{http, meta, websocket, Role, Row, TABLE},
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
///     // Close a WebSocket's connection once its closing handshake is done.
///     .client_disconnect_timeout(std::time::Duration::ZERO)
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

impl<A: Session> HttpServiceFactory for SockJs<A> {
    fn register(self, config: &mut AppService) {
        let endpoint = Endpoint::new(&self.prefix, self.manager, self.config, self.authorize);
        let rows: Vec<&'static Row> =
            TABLE.iter().filter(|row| endpoint.config.is_enabled(row.transport)).collect();
        let mut scope = web::scope(&self.prefix)
            .service(
                web::resource(["", "/"])
                    .route(web::get().to(meta::greeting))
                    .default_service(meta::not_allowed("GET")),
            )
            .service(
                web::resource("/info")
                    .route(web::get().to(meta::info::<A>))
                    .route(preflight::<A>("OPTIONS, GET"))
                    .default_service(meta::not_allowed("OPTIONS, GET")),
            )
            .service(
                web::resource(r"/{file:iframe[0-9a-z.\-_]*\.html}")
                    .route(web::get().to(meta::iframe_page::<A>))
                    .default_service(meta::not_allowed("GET")),
            );
        for row in rows {
            scope = scope.service(resource::<A>(row));
        }
        scope.app_data(web::Data::new(endpoint)).default_service(web::to(meta::not_found)).register(config);
    }
}

/// The resource of one row of the transport table.
fn resource<A: Session>(row: &'static Row) -> actix_web::Resource {
    let path = match row.role {
        Role::RawWebSocket => format!("/{}", row.path),
        _ => format!("/{{server:[^/.]+}}/{{session:[^/.]+}}/{}", row.path),
    };
    let work = match &row.role {
        Role::Receive(how) => {
            web::to(move |req: HttpRequest, ep: web::Data<Endpoint<A>>| http::receive(req, ep, row, how))
        }
        Role::Send(how) => {
            let how = *how;
            web::to(move |req, body, ep| http::send::<A>(req, body, ep, how))
        }
        Role::WebSocket => web::to(websocket::framed::<A>),
        Role::RawWebSocket => web::to(websocket::raw::<A>),
    };
    let mut resource = web::resource(path).route(work.method(row.method.clone()));
    if row.allow.starts_with("OPTIONS") {
        resource = resource.route(preflight::<A>(row.allow));
    }
    resource.default_service(meta::not_allowed(row.allow))
}

/// The CORS preflight route of a URL that allows `methods`.
fn preflight<A: Session>(methods: &'static str) -> actix_web::Route {
    web::method(Method::OPTIONS)
        .to(move |req: HttpRequest, ep: web::Data<Endpoint<A>>| meta::preflight(req, ep, methods))
}
