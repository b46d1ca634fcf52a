//! [`SockJs`]: the actix-web service factory that mounts an endpoint: one
//! service under its prefix that answers the greeting, `/info`, the raw
//! `/websocket`, session URLs (one row of the transport table each) and the
//! iframe page (docs/protocol.md §3.2).

use std::{
    any::{Any, TypeId},
    fmt,
    future::Future,
    rc::Rc,
    sync::Arc,
};

use actix::Addr;
use actix_web::{
    dev::{fn_service, AppService, HttpServiceFactory, ResourceDef, ServiceRequest, ServiceResponse},
    http::{header, Method},
    web, FromRequest as _, HttpMessage as _, HttpRequest, HttpResponse,
};

use crate::{
    config::Config,
    endpoint::split_session_url,
    endpoint::{keep_unread, Authorize, Carry, Endpoint, Refuse},
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
    carry: Vec<Carry>,
}

impl<A: Session> fmt::Debug for SockJs<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SockJs").field("prefix", &self.prefix).field("config", &self.config).finish()
    }
}

impl<A: Session> SockJs<A> {
    /// An endpoint at `prefix` (such as `/echo`) whose sessions are tracked
    /// by `manager`, with the default [`Config`]. A trailing `/` is
    /// dropped, and a missing leading `/` added: inside
    /// `web::scope("/api")`, `"echo"` answers at `/api/echo`, as `"/echo"`
    /// does.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use actix::prelude::*;
    /// # use actix_sockjs::{Session, SessionContext, SessionManager, SockJs};
    /// # use actix_web::{web, App, HttpServer};
    /// # struct Echo;
    /// # impl Actor for Echo { type Context = SessionContext<Self>; }
    /// # impl Session for Echo { fn on_message(&mut self, m: String, ctx: &mut SessionContext<Self>) { ctx.send(m) } }
    /// # #[actix_web::main]
    /// # async fn main() -> std::io::Result<()> {
    /// // One manager for every worker: started outside the closure.
    /// let manager = SessionManager::new(|| Echo).start();
    /// HttpServer::new(move || {
    ///     // Answers at /api/v1/echo; its metrics are labelled with that path.
    ///     App::new().service(web::scope("/api/v1").service(SockJs::new("/echo", manager.clone())))
    /// })
    /// .bind(("127.0.0.1", 8080))?
    /// .run()
    /// .await
    /// # }
    /// ```
    pub fn new(prefix: impl Into<String>, manager: Addr<SessionManager<A>>) -> Self {
        let prefix = prefix.into();
        let prefix = match prefix.trim_end_matches('/') {
            // actix-web joins a scope's path and this one as they are:
            // `/api` and `echo` would be `/apiecho`.
            trimmed if trimmed.is_empty() || trimmed.starts_with('/') => trimmed.to_owned(),
            trimmed => format!("/{trimmed}"),
        };
        Self { prefix, manager, config: Config::default(), authorize: None, carry: Vec::new() }
    }

    /// Decides whether a request may open a session, before any session
    /// actor exists, and says who opens it.
    ///
    /// The hook runs on the request that would open a session: the first
    /// receiving request for an unknown session id, and every WebSocket
    /// upgrade. It sees the whole request (headers, cookies, query, peer
    /// address, extensions set by middleware). `Ok(value)` opens the
    /// session with `value` in its request facts, where the session factory
    /// ([`SessionManager::from_request`]) and the session
    /// ([`RequestInfo::get`](crate::RequestInfo::get)) find it by its type:
    /// the user the hook identified is not looked up twice. `Err` refuses:
    /// with an HTTP error, or with a close frame the browser's `onclose`
    /// sees (see [`Refuse`]). Requests on a session that is already open
    /// are not asked again. A query parameter is read with actix-web's
    /// `web::Query::<T>::from_query(req.query_string())`. sockjs-client
    /// sends no header of yours (browsers allow none on a WebSocket or an
    /// EventSource), so a browser's token comes in the query string, as in
    /// `new SockJS(url + "?token=..")`, or in a cookie.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use actix::prelude::*;
    /// # use actix_sockjs::{Session, SessionContext, SessionManager, SockJs};
    /// # struct Echo;
    /// # impl Actor for Echo { type Context = SessionContext<Self>; }
    /// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
    /// use std::collections::HashMap;
    ///
    /// use actix_sockjs::Refuse;
    /// use actix_web::web::Query;
    ///
    /// struct User(String);
    ///
    /// # fn f(manager: Addr<SessionManager<Echo>>) -> SockJs<Echo> {
    /// // The browser opens `new SockJS("/echo?token=let-me-in")`, and
    /// // sockjs-client sends that query with every request.
    /// SockJs::new("/echo", manager).authorize(|req| {
    ///     let query = Query::<HashMap<String, String>>::from_query(req.query_string()).ok();
    ///     match query.as_ref().and_then(|q| q.get("token")).map(String::as_str) {
    ///         // The session reads it back: `ctx.request().get::<User>()`.
    ///         Some("let-me-in") => Ok(User("ann".into())),
    ///         // `onclose` sees 4401; an HTTP error would reach the browser
    ///         // as sockjs-client's 2000 "All transports failed".
    ///         _ => Err(Refuse::close(4401, "Unauthorized")),
    ///     }
    /// })
    /// # }
    /// ```
    pub fn authorize<F, T, E>(self, hook: F) -> Self
    where
        F: Fn(&HttpRequest) -> Result<T, E> + 'static,
        T: Send + Sync + 'static,
        E: Into<Refuse> + 'static,
    {
        self.authorize_async(move |req| std::future::ready(hook(req)))
    }

    /// [`authorize`](Self::authorize) with a hook that answers later (a
    /// database or an identity provider, say). The future must own what it
    /// needs of the request: take the header or cookie out before the
    /// `async` block.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use actix::prelude::*;
    /// # use actix_sockjs::{Session, SessionContext, SessionManager, SockJs};
    /// # struct Echo;
    /// # impl Actor for Echo { type Context = SessionContext<Self>; }
    /// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
    /// use std::collections::HashMap;
    ///
    /// use actix_sockjs::Refuse;
    /// use actix_web::web::Query;
    ///
    /// struct User {
    ///     name: String,
    /// }
    ///
    /// async fn look_up(token: &str) -> Option<User> {
    ///     (token == "t0k3n").then(|| User { name: "ann".into() })
    /// }
    ///
    /// # fn f(manager: Addr<SessionManager<Echo>>) -> SockJs<Echo> {
    /// SockJs::new("/chat", manager).authorize_async(|req| {
    ///     // `new SockJS("/chat?token=..")`: sockjs-client sends the query
    ///     // with every request.
    ///     let token = Query::<HashMap<String, String>>::from_query(req.query_string())
    ///         .ok()
    ///         .and_then(|mut q| q.remove("token"));
    ///     async move {
    ///         match token {
    ///             Some(token) => look_up(&token).await.ok_or(Refuse::close(4401, "Unauthorized")),
    ///             None => Err(Refuse::close(4401, "Unauthorized")),
    ///         }
    ///     }
    /// })
    /// # }
    /// ```
    pub fn authorize_async<F, Fut, T, E>(mut self, hook: F) -> Self
    where
        F: Fn(&HttpRequest) -> Fut + 'static,
        Fut: Future<Output = Result<T, E>> + 'static,
        T: Send + Sync + 'static,
        E: Into<Refuse> + 'static,
    {
        self.authorize = Some(Rc::new(move |req| {
            let answer = hook(req);
            Box::pin(async move {
                let value = answer.await.map_err(Into::into)?;
                let value: Arc<dyn Any + Send + Sync> = Arc::new(value);
                Ok(vec![(TypeId::of::<T>(), value)])
            })
        }));
        self
    }

    /// Copies the request extension of type `T` (one that middleware set)
    /// into the facts of each session this endpoint opens, where
    /// [`RequestInfo::get`](crate::RequestInfo::get) finds it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use actix::prelude::*;
    /// # use actix_sockjs::{Session, SessionContext, SessionManager, SockJs};
    /// # struct Echo;
    /// # impl Actor for Echo { type Context = SessionContext<Self>; }
    /// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
    /// /// What an authentication middleware put in the request's extensions.
    /// #[derive(Clone)]
    /// struct Account(u64);
    ///
    /// # fn f(manager: Addr<SessionManager<Echo>>) -> SockJs<Echo> {
    /// SockJs::new("/chat", manager).carry::<Account>()
    /// # }
    /// ```
    pub fn carry<T: Clone + Send + Sync + 'static>(mut self) -> Self {
        self.carry.push(Rc::new(|req: &HttpRequest| {
            let value = req.extensions().get::<T>()?.clone();
            let value: Arc<dyn Any + Send + Sync> = Arc::new(value);
            Some((TypeId::of::<T>(), value))
        }));
        self
    }

    /// Replaces the endpoint's options.
    ///
    /// Values that would make every session or request fail (a zero
    /// `disconnect_delay`, `ping_timeout`, `request_timeout`, `heartbeat`,
    /// `max_queue_bytes` or `max_message_bytes`) and `allowed_origins`
    /// entries that no browser's `Origin` matches, and a `sockjs_url` that is
    /// neither absolute nor rooted, are logged as warnings here, each once
    /// per process (every worker builds the endpoint).
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::prelude::*;
    /// # use actix_sockjs::{Session, SessionContext, SessionManager, SockJs};
    /// # struct Echo;
    /// # impl Actor for Echo { type Context = SessionContext<Self>; }
    /// # impl Session for Echo { fn on_message(&mut self, m: String, ctx: &mut SessionContext<Self>) { ctx.send(m) } }
    /// use std::time::Duration;
    ///
    /// use actix_sockjs::Config;
    ///
    /// # actix::System::new().block_on(async {
    /// let manager = SessionManager::new(|| Echo).start();
    /// let endpoint = SockJs::new("/echo", manager)
    ///     .config(Config::default().heartbeat(Duration::from_secs(10)).max_sessions_per_ip(20));
    /// # let _ = endpoint;
    /// # });
    /// ```
    pub fn config(mut self, config: Config) -> Self {
        for doubt in config.doubts() {
            let line = format!("sockjs: {}: {doubt}", self.prefix);
            // Every worker builds the endpoint: said once.
            if crate::util::first_time(&line) {
                log::warn!("{line}");
            }
        }
        self.config = config;
        self
    }
}

/// Says so, loudly, when the workers of one server mount an endpoint with
/// different managers (a manager created inside the `HttpServer::new`
/// closure): each worker would then know only its own sessions, so
/// broadcasts would reach some clients and polling clients would lose
/// their sessions.
///
/// A worker's registrations are told apart by their actix system, their
/// prefix and how many of that prefix the worker's thread has registered
/// before: every worker builds the same `App`, in the same order, so the
/// n-th `/echo` of one worker is the n-th `/echo` of every other. Two
/// endpoints that share a prefix inside different scopes (`/v1` + `/echo`,
/// `/v2` + `/echo`) are then two endpoints, not one with two managers.
fn check_one_manager<M: PartialEq + Clone + Send + 'static>(prefix: &str, manager: &M) -> bool {
    type Key = (Option<usize>, String, usize);
    type Seen = Vec<(Key, Box<dyn Any + Send>, bool)>;
    static SEEN: std::sync::Mutex<Seen> = std::sync::Mutex::new(Vec::new());
    thread_local!(static MOUNTED: std::cell::RefCell<Vec<Key>> = const {
        std::cell::RefCell::new(Vec::new())
    });
    let system = actix::System::try_current().map(|s| s.id());
    let nth = MOUNTED.with_borrow_mut(|mounted| {
        match mounted.iter_mut().find(|(s, p, _)| *s == system && p == prefix) {
            Some((_, _, count)) => {
                *count += 1;
                *count - 1
            }
            None => {
                mounted.push((system, prefix.to_owned(), 1));
                0
            }
        }
    });
    let key = (system, prefix.to_owned(), nth);
    let mut seen = SEEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some((_, first, reported)) = seen.iter_mut().find(|(k, _, _)| *k == key) else {
        seen.push((key, Box::new(manager.clone()), false));
        return false;
    };
    let same = first.downcast_ref::<M>().is_some_and(|first| first == manager);
    if same || *reported {
        return false;
    }
    *reported = true;
    log::error!(
        "sockjs: the endpoint {prefix:?} is mounted with a different SessionManager in another worker. \
         Start one manager per endpoint outside the HttpServer::new closure and clone its address \
         into the closure; with one manager per worker, broadcasts reach only some clients and \
         polling clients lose their sessions."
    );
    true
}

impl<A: Session> HttpServiceFactory for SockJs<A> {
    fn register(self, config: &mut AppService) {
        check_one_manager(&self.prefix, &self.manager);
        let endpoint = Endpoint::new(&self.prefix, self.manager, self.config, self.authorize, self.carry);
        let rows: Vec<&'static Row> = TABLE.iter().filter(|row| row.enabled(&endpoint.config)).collect();
        let (raw, session_rows): (Vec<&'static Row>, Vec<&'static Row>) =
            rows.into_iter().partition(|row| matches!(row.role, Role::RawWebSocket));
        let routes =
            Rc::new(Routes { ep: web::Data::new(endpoint), raw: raw.first().copied(), rows: session_rows });
        // One service for everything under the prefix, routed by hand, as
        // actix-files mounts its directory: actix-router matches a dynamic
        // pattern with a regex (a profile of the polling echo found those
        // at 17% of the server's CPU with one resource per transport), and
        // a scope's router, extractors and app data cost ~1,500
        // instructions of each request besides (callgrind,
        // `benches/README.md`).
        let service = fn_service(move |req: ServiceRequest| serve(routes.clone(), req));
        let rdef = if config.is_root() {
            ResourceDef::root_prefix(&self.prefix)
        } else {
            ResourceDef::prefix(&self.prefix)
        };
        config.register_service(rdef, None, service, None);
    }
}

/// One request under the endpoint's prefix. actix-web boxes its future
/// (one allocation per request); see `tests::a_requests_future_is_small`.
async fn serve<A: Session>(
    routes: Rc<Routes<A>>,
    req: ServiceRequest,
) -> Result<ServiceResponse, actix_web::Error> {
    let (req, mut payload) = req.into_parts();
    routes.ep.mounted(&req);
    let payload = web::Payload::from_request(&req, &mut payload).await?;
    let (mut res, unread) = routes.answer(req.clone(), payload).await;
    // A chunked body nobody read: held until the answer is out, so that
    // actix-http closes the connection rather than drain it for as long
    // as the client sends (see `keep_unread`).
    if let Some(payload) = unread.filter(|_| req.headers().contains_key(header::TRANSFER_ENCODING)) {
        res = keep_unread(res, payload);
    }
    Ok(ServiceResponse::new(req, res))
}

/// What an endpoint answers, by path after the prefix.
struct Routes<A: Session> {
    ep: web::Data<Endpoint<A>>,
    /// The raw `/websocket` row, unless disabled.
    raw: Option<&'static Row>,
    /// The enabled session transports.
    rows: Vec<&'static Row>,
}

impl<A: Session> Routes<A> {
    /// The greeting, `/info`, the raw WebSocket, session URLs, the iframe
    /// page; 405 with the `Allow` list to another method, 404 elsewhere.
    /// With the answer, the request's payload if the route left it unread.
    async fn answer(&self, req: HttpRequest, payload: web::Payload) -> (HttpResponse, Option<web::Payload>) {
        let ep = self.ep.clone();
        let rest = tolerate_trailing_slash(req.match_info().unprocessed());
        let method = req.method().clone();
        if rest.is_empty() || rest == "/" {
            let res = if method == Method::GET {
                meta::greeting().await
            } else {
                meta::method_not_allowed(&req, "GET")
            };
            return (res, Some(payload));
        }
        if rest == "/info" {
            let res = match method {
                Method::GET => meta::info(req, ep).await,
                Method::OPTIONS => meta::preflight(req, ep, "OPTIONS, GET", false).await,
                _ => meta::method_not_allowed(&req, "OPTIONS, GET"),
            };
            return (res, Some(payload));
        }
        if let Some(row) = self.raw.filter(|row| rest.strip_prefix('/') == Some(row.path)) {
            return if method == row.method {
                (websocket::raw(req, payload, ep).await, None)
            } else {
                (meta::method_not_allowed(&req, row.allow), Some(payload))
            };
        }
        if let Some((session, transport)) = split_session_url(rest) {
            if let Some(row) = self.rows.iter().copied().find(|row| row.path == transport) {
                let id = Arc::from(session);
                return session_url(req, payload, ep, row, id).await;
            }
        } else if is_iframe(rest) {
            let res = if method == Method::GET {
                meta::iframe_page(req, ep).await
            } else {
                meta::method_not_allowed(&req, "GET")
            };
            return (res, Some(payload));
        }
        (meta::not_found(req).await, Some(payload))
    }
}

/// A path after the prefix without one trailing `/`, which sockjs-node
/// tolerates on every route (its patterns end in `[/]?`), and which
/// actix-web's `NormalizePath::new(TrailingSlash::Always)` adds to every
/// path of an app that uses it. Only one, after a segment: `//` and `/a//`
/// stay malformed (404), as the protocol's tests ask.
fn tolerate_trailing_slash(rest: &str) -> &str {
    match rest.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() && !trimmed.ends_with('/') => trimmed,
        _ => rest,
    }
}

/// Whether a path (after the prefix) is the iframe page's:
/// `/iframe[0-9a-z.\-_]*\.html` (docs/protocol.md §4).
fn is_iframe(rest: &str) -> bool {
    rest.strip_prefix("/iframe").and_then(|s| s.strip_suffix(".html")).is_some_and(|middle| {
        middle.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b".-_".contains(&b))
    })
}

/// Answers `<prefix>/<server>/<session>/<transport>` (`id` is the session
/// segment, read once by the router): the transport's row
/// does the work for its method, answers a CORS preflight where it allows
/// one, and 405 with its `Allow` list to other methods.
async fn session_url<A: Session>(
    req: HttpRequest,
    payload: web::Payload,
    ep: web::Data<Endpoint<A>>,
    row: &'static Row,
    id: Arc<str>,
) -> (HttpResponse, Option<web::Payload>) {
    if *req.method() == row.method {
        match &row.role {
            Role::Receive(how) => (http::receive(req, ep, row, how, id).await, Some(payload)),
            Role::Send(how) => (http::send::<A>(req, payload, ep, *how, id).await, None),
            Role::WebSocket => (websocket::framed::<A>(req, payload, ep, id).await, None),
            Role::RawWebSocket => (meta::not_found(req).await, Some(payload)),
        }
    } else if *req.method() == Method::OPTIONS && row.allow.starts_with("OPTIONS") {
        (meta::preflight(req, ep, row.allow, true).await, Some(payload))
    } else {
        (meta::method_not_allowed(&req, row.allow), Some(payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Nothing;

    /// actix-web boxes every request's future. Up to 1,032 bytes glibc
    /// serves the box from its per-thread cache; above, each request took
    /// its `malloc` and `free` through the arenas. Manager round trips
    /// awaited in place, on paths only a new session or a worker's first
    /// request takes, made it 1,368 bytes in a release build (1,376 here);
    /// boxing them (see `endpoint::Step`) took a WebSocket set-up from
    /// 46.8k to 45.5k instructions (callgrind, `benches/README.md`).
    #[test]
    fn a_requests_future_is_small() {
        actix::System::new().block_on(async {
            use actix::Actor as _;
            let manager = SessionManager::new(|| Nothing).start();
            let endpoint = Endpoint::new("/echo", manager, Config::default(), None, Vec::new());
            let routes = Rc::new(Routes { ep: web::Data::new(endpoint), raw: None, rows: Vec::new() });
            let req = actix_web::test::TestRequest::default().to_srv_request();
            let size = std::mem::size_of_val(&serve(routes, req));
            assert!(size <= 1032, "a request's future takes {size} bytes");
        });
    }

    /// Workers build the same `App`: the n-th registration of a prefix on
    /// one worker's thread is compared with the n-th on every other.
    #[test]
    fn one_manager_per_endpoint_is_checked_per_registration_not_per_prefix() {
        const PREFIX: &str = "/check-one-manager";
        let worker = |managers: &'static [u32]| {
            std::thread::spawn(move || {
                managers.iter().map(|m| check_one_manager(PREFIX, m)).collect::<Vec<_>>()
            })
            .join()
            .expect("the worker's thread")
        };
        // Two endpoints at `/check-one-manager` (in two scopes), each with its
        // own manager, in every worker: nothing to say.
        assert_eq!(worker(&[1, 2]), [false, false]);
        assert_eq!(worker(&[1, 2]), [false, false]);
        // A worker whose first one has another manager: said once.
        assert_eq!(worker(&[3, 2]), [true, false]);
        assert_eq!(worker(&[4, 2]), [false, false], "reported once per endpoint");
    }

    #[test]
    fn one_trailing_slash_after_a_segment_is_tolerated() {
        for (path, routed) in [
            ("", ""),
            ("/", "/"),
            ("/info/", "/info"),
            ("/000/abc/xhr/", "/000/abc/xhr"),
            ("/websocket/", "/websocket"),
            ("/info", "/info"),
            // Malformed stays malformed.
            ("//", "//"),
            ("///", "///"),
            ("/info//", "/info//"),
            ("/000/abc//", "/000/abc//"),
        ] {
            assert_eq!(tolerate_trailing_slash(path), routed, "{path:?}");
        }
        assert_eq!(split_session_url(tolerate_trailing_slash("/a/a/")), None, "`/a/a/` is no session URL");
    }

    #[test]
    fn session_urls_and_the_iframe_page_are_told_apart_by_hand() {
        assert_eq!(split_session_url("/000/abc/xhr"), Some(("abc", "xhr")));
        assert_eq!(split_session_url("/a/b/websocket"), Some(("b", "websocket")));
        let longest = format!("/000/{}/xhr", "i".repeat(crate::endpoint::MAX_SESSION_ID));
        assert!(split_session_url(&longest).is_some(), "an id of MAX_SESSION_ID bytes");
        let longer = format!("/000/{}/xhr", "i".repeat(crate::endpoint::MAX_SESSION_ID + 1));
        assert_eq!(split_session_url(&longer), None, "a longer id");
        for not in [
            "",
            "/",
            "/000/abc",
            "/000/abc/",
            "/000//xhr",
            "//abc/xhr",
            "/0.0/abc/xhr",
            "/000/a.b/xhr",
            "/000/abc/xhr/x",
            "000/abc/xhr",
        ] {
            assert_eq!(split_session_url(not), None, "{not:?}");
        }
        for page in ["/iframe.html", "/iframe-a.html", "/iframe-0.1.2abc-dirty.2144.html", "/iframe_x.html"] {
            assert!(is_iframe(page), "{page:?}");
        }
        for not in [
            "/iframe.htm",
            "/iframe",
            "/IFRAME.HTML",
            "/iframe.HTML",
            "/iframe-/.html",
            "/iframeA.html",
            "/xiframe.html",
        ] {
            assert!(!is_iframe(not), "{not:?}");
        }
    }
}
