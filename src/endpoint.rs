//! What every transport's answer shares: the [`Endpoint`] (options,
//! manager, metrics, the authorisation hook), reaching a session from a
//! request, and the headers and error answers of docs/protocol.md §4.

use std::{
    any::{Any, TypeId},
    cell::OnceCell,
    fmt,
    net::IpAddr,
    panic::{catch_unwind, AssertUnwindSafe},
    rc::Rc,
    sync::Arc,
    time::{Duration, SystemTime},
};

use actix::Addr;
use actix_web::{
    http::{
        header::{self, HeaderName, HeaderValue},
        StatusCode,
    },
    HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError,
};
use futures_util::future::{ready, Either, LocalBoxFuture, Ready};

use crate::{
    admission::{client_ip, origin_allowed, Refusal},
    config::Config,
    manager::{
        next_serial, Acquire, Acquired, Bound, Directory, GetDirectory, Mounted, Opening, RegisterSocket,
        SessionManager, Starter,
    },
    metrics::{EndpointMetrics, Refused},
    protocol::{self, Transport},
    receiver::Receiver,
    session::{
        command_channel, run_turn, start_session, Command, CommandRx, CommandTx, InPlace, LocalTurns, Note,
        OpenPanicked, RequestInfo, SendTurn, Session, SessionSetup, Turn, Values,
    },
    util,
};

/// `text/plain`, for errors and plain answers.
pub(crate) const TEXT: &str = "text/plain; charset=UTF-8";
/// The content type of xhr and JSONP answers.
pub(crate) const JAVASCRIPT: &str = "application/javascript; charset=UTF-8";
/// A year, for what may be cached.
pub(crate) const LONG_CACHE_SECS: u64 = 31_536_000;

/// The authorisation hook: sees the opening request, may refuse it, and
/// produces values for the session's [`RequestInfo`].
pub(crate) type Authorize = Rc<dyn Fn(&HttpRequest) -> LocalBoxFuture<'static, Result<Values, Refuse>>>;

/// Copies one request extension (by type) into a session's [`RequestInfo`].
pub(crate) type Carry = Rc<dyn Fn(&HttpRequest) -> Option<(TypeId, Arc<dyn Any + Send + Sync>)>>;

/// How a request that may not open a session is answered; what
/// [`SockJs::authorize`](crate::SockJs::authorize) returns to refuse one.
///
/// - [`Refuse::http`]: an HTTP error (its status and body, as actix-web
///   answers it). A browser's sockjs-client then tries its other
///   transports and reports `2000 "All transports failed"`.
/// - [`Refuse::close`]: the transport's ordinary answer carrying only the
///   close frame `c[code,"reason"]` (on a raw WebSocket, a close frame with
///   that code and reason): sockjs-client hands the code and reason to
///   `onclose`, on every transport.
///
/// An `actix_web::Error` converts into `Refuse::http`, so `?` works in hooks.
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{Session, SessionContext, SessionManager, SockJs};
/// use actix_sockjs::Refuse;
/// # struct Echo;
/// # impl Actor for Echo { type Context = SessionContext<Self>; }
/// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// # fn f(manager: Addr<SessionManager<Echo>>) -> SockJs<Echo> {
/// SockJs::new("/chat", manager).authorize(|req| match req.headers().get("x-token") {
///     Some(_) => Ok(()),
///     None => Err(Refuse::close(4401, "Unauthorized")),
/// })
/// # }
/// ```
#[derive(Debug)]
pub struct Refuse(RefuseWith);

#[derive(Debug)]
enum RefuseWith {
    Http(actix_web::Error),
    Close(u16, String),
}

impl Refuse {
    /// Refuses with an HTTP error: its status, headers and body, as
    /// actix-web answers it. On the HTTP transports whose answers carry
    /// CORS headers, the answer gets the same ones unless it has an
    /// `Access-Control-Allow-Origin` of its own, so that a page on another
    /// allowed origin can read it. A WebSocket handshake gets it as it is.
    /// sockjs-client itself reports any HTTP refusal as a failed transport
    /// (`2000 All transports failed` once none is left): to tell the page
    /// why, refuse with [`Refuse::close`].
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_sockjs::Refuse;
    /// use actix_web::{error::InternalError, HttpResponse};
    ///
    /// let no = Refuse::http(actix_web::error::ErrorForbidden("log in first"));
    /// // An answer built whole, headers and all:
    /// let login = HttpResponse::Unauthorized()
    ///     .insert_header(("WWW-Authenticate", "Bearer"))
    ///     .body("log in first");
    /// let no = Refuse::http(InternalError::from_response("no token", login));
    /// ```
    pub fn http(error: impl Into<actix_web::Error>) -> Self {
        Self(RefuseWith::Http(error.into()))
    }

    /// Refuses with a SockJS close frame, `c[code,"reason"]`; codes
    /// 4000–4999 are the application's (4401 for "Unauthorized" is usual).
    ///
    /// # Examples
    ///
    /// ```
    /// let no = actix_sockjs::Refuse::close(4401, "Unauthorized");
    /// ```
    pub fn close(code: u16, reason: impl Into<String>) -> Self {
        Self(RefuseWith::Close(code, reason.into()))
    }

    /// The close code and reason of a [`Refuse::close`] (`None` for an
    /// HTTP refusal): what a test of an `authorize` hook checks.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_sockjs::Refuse;
    ///
    /// assert_eq!(Refuse::close(4401, "Unauthorized").close_frame(), Some((4401, "Unauthorized")));
    /// assert_eq!(Refuse::http(actix_web::error::ErrorForbidden("no")).close_frame(), None);
    /// ```
    pub fn close_frame(&self) -> Option<(u16, &str)> {
        match &self.0 {
            RefuseWith::Close(code, reason) => Some((*code, reason)),
            RefuseWith::Http(_) => None,
        }
    }

    /// The status of a [`Refuse::http`] (`None` for a close refusal).
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_sockjs::Refuse;
    /// use actix_web::http::StatusCode;
    ///
    /// let no = Refuse::http(actix_web::error::ErrorForbidden("log in first"));
    /// assert_eq!(no.http_status(), Some(StatusCode::FORBIDDEN));
    /// assert_eq!(Refuse::close(4401, "Unauthorized").http_status(), None);
    /// ```
    pub fn http_status(&self) -> Option<StatusCode> {
        match &self.0 {
            // The status of what the client gets (a `ResponseError` may
            // answer another than its `status_code`).
            RefuseWith::Http(e) => Some(e.error_response().status()),
            RefuseWith::Close(..) => None,
        }
    }

    /// The HTTP answer of a [`Refuse::http`] (a 403 for a close refusal,
    /// where a transport cannot carry a frame).
    pub(crate) fn error_response(&self) -> HttpResponse {
        match &self.0 {
            RefuseWith::Http(e) => e.error_response(),
            RefuseWith::Close(code, reason) => error(StatusCode::FORBIDDEN, format!("{code} {reason}")),
        }
    }
}

impl From<actix_web::Error> for Refuse {
    fn from(error: actix_web::Error) -> Self {
        Self::http(error)
    }
}

impl From<Refusal> for Refuse {
    fn from(refusal: Refusal) -> Self {
        Self::http(refusal)
    }
}

impl Refuse {
    /// The endpoint's own refusal (its caps, its shutdown) this carries,
    /// if it is one and not the application's.
    pub(crate) fn refusal(&self) -> Option<&Refusal> {
        match &self.0 {
            RefuseWith::Http(e) => e.as_error::<Refusal>(),
            RefuseWith::Close(..) => None,
        }
    }
}

impl std::error::Error for Refuse {}

impl fmt::Display for Refuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            RefuseWith::Http(e) => write!(f, "{e}"),
            RefuseWith::Close(code, reason) => write!(f, "close {code} {reason:?}"),
        }
    }
}

/// What the handlers of one endpoint share (one per worker).
pub(crate) struct Endpoint<A: Session> {
    pub(crate) config: Arc<Config>,
    pub(crate) manager: Addr<SessionManager<A>>,
    /// The prefix the endpoint was given (without the scopes around it).
    prefix: String,
    /// Labelled with the path the endpoint is mounted at, scopes included,
    /// which only a request tells (see [`Endpoint::mounted`]).
    metrics: OnceCell<Arc<EndpointMetrics>>,
    /// The manager's session directory, fetched at this worker's first request.
    directory: OnceCell<Directory>,
    /// What starts a session without asking the manager, once it has
    /// answered one (endpoints without caps; see `manager::Arrivals`).
    starter: OnceCell<Starter<A>>,
    /// The HTTP sessions started on this worker, whose turns its requests
    /// run in place.
    turns: LocalTurns,
    /// The iframe page and its ETag.
    pub(crate) iframe: (String, String),
    authorize: Option<Authorize>,
    carry: Vec<Carry>,
}

impl<A: Session> fmt::Debug for Endpoint<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint").field("config", &self.config).finish()
    }
}

/// A step of a request that is done at once on the common path (`Left`)
/// and waits on the manager otherwise (`Right`, boxed).
///
/// actix-web allocates every request's future, and a future is as large as
/// the largest state of everything it awaits: a manager round trip awaited
/// in place took ~230 bytes of it, on every request, for what only a new
/// session (or a worker's first request) waits on. Boxed only on that path,
/// it keeps the request's future within the sizes glibc serves from its
/// per-thread cache (`service::tests`).
pub(crate) type Step<'a, T> = Either<Ready<T>, LocalBoxFuture<'a, T>>;

/// A socket's session, opened: its command channel and the [`Turn`] the
/// socket runs (`None` if the session ended in its first turn).
pub(crate) type SocketOpened = (CommandTx, Option<Rc<dyn Turn>>);

/// A request the authorisation hook let open a session.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub(crate) opening: Opening,
    pub(crate) values: Values,
    /// A binding cookie to set on the response (see [`BIND_COOKIE`]).
    pub(crate) new_cookie: Option<String>,
}

/// The cookie an HTTP session is bound to, with `Config::bind_sessions`.
pub(crate) const BIND_COOKIE: &str = "sockjs_bind";

/// An existing session a send may reach ([`Endpoint::reach`]).
pub(crate) struct Reached {
    tx: CommandTx,
    /// Its turn, when it lives on this worker (run in place after the
    /// messages are handed).
    turn: Option<Rc<dyn Turn>>,
}

impl Reached {
    /// Waits for the session's send turn (see [`CommandTx::send_turn`]):
    /// a send holds it from before it reads its body until its messages
    /// are handed over.
    pub(crate) async fn send_turn(&self) -> SendTurn {
        self.tx.send_turn().await
    }

    /// Hands client messages to the session; [`ReachError::Missing`] if it
    /// has ended since it was found.
    pub(crate) async fn deliver(self, messages: Vec<String>) -> Result<(), ReachError> {
        let Self { tx, turn } = self;
        hand(&tx, Command::messages(messages), turn.as_deref()).map_err(|_| ReachError::Missing)?;
        // Answered once the session has room again: a client that sends
        // faster than its session handles waits for its answers.
        futures_util::future::poll_fn(|cx| tx.poll_room(cx)).await;
        Ok(())
    }
}

/// Where [`Endpoint::attach`] handed a receiver.
#[derive(Debug)]
pub(crate) struct Handed {
    /// The session that took it; `None` if none did (a failed session's
    /// close frame was written to it).
    pub(crate) serial: Option<u64>,
    /// The binding cookie to set, for a session this request opened.
    pub(crate) cookie: Option<String>,
}

/// Why a request could not reach its session.
#[derive(Debug)]
pub(crate) enum ReachError {
    /// No session with that id.
    Missing,
    /// The manager actor is gone.
    Manager,
    /// The authorisation hook or a cap refused to open the session.
    Denied(Refuse),
    /// The session opened for the request panicked in its first turn (in
    /// `started` or `on_open`).
    Panicked,
}

impl<A: Session> Endpoint<A> {
    pub(crate) fn new(
        prefix: &str,
        manager: Addr<SessionManager<A>>,
        config: Config,
        authorize: Option<Authorize>,
        carry: Vec<Carry>,
    ) -> Self {
        Self {
            iframe: protocol::iframe_page(&config.sockjs_url),
            config: Arc::new(config),
            manager,
            prefix: prefix.to_owned(),
            metrics: OnceCell::new(),
            directory: OnceCell::new(),
            starter: OnceCell::new(),
            turns: LocalTurns::default(),
            authorize,
            carry,
        }
    }

    /// Learns, at this worker's first request, the path the endpoint is
    /// mounted at: its prefix after the scopes around it (`/v1/echo` for
    /// `SockJs::new("/echo", ..)` in `web::scope("/v1")`; a dynamic scope's
    /// pattern, such as `/t/{tenant}/echo`). Its metrics, and its
    /// manager's, are labelled with it: two endpoints that share a prefix
    /// in different scopes are two series. `HttpServiceFactory::register`
    /// is not told the scopes; a request's resource map knows them.
    pub(crate) fn mounted(&self, req: &HttpRequest) {
        if self.metrics.get().is_some() {
            return;
        }
        let path = req.match_pattern().unwrap_or_else(|| self.prefix.clone());
        log::debug!("sockjs: the endpoint {:?} is mounted at {path:?}", self.prefix);
        self.manager.do_send(Mounted(path.clone()));
        let _ = self.metrics.set(Arc::new(EndpointMetrics::new(&path)));
    }

    /// The endpoint's metrics (labelled with its prefix alone before its
    /// first request, which no session precedes).
    pub(crate) fn metrics(&self) -> &Arc<EndpointMetrics> {
        self.metrics.get_or_init(|| Arc::new(EndpointMetrics::new(&self.prefix)))
    }

    /// 403 for a browser origin outside the allow-list.
    pub(crate) fn check_origin(&self, req: &HttpRequest) -> Result<(), actix_web::Error> {
        if origin_allowed(req, &self.config.allowed_origins) {
            return Ok(());
        }
        self.metrics().refused(Refused::Origin);
        util::log_limited!(
            log::Level::Info,
            "sockjs: {} {}: origin {} not allowed",
            req.method(),
            LogPath(req),
            util::LogValue(crate::admission::origin_header(req).map(header::HeaderValue::as_bytes))
        );
        Err(actix_web::error::ErrorForbidden("Origin not allowed."))
    }

    /// Runs the authorisation hook for a request that would open a session
    /// over `transport`; answers who opens it and the values for its
    /// [`RequestInfo`].
    pub(crate) async fn admit(&self, req: &HttpRequest, transport: Transport) -> Result<Admitted, Refuse> {
        let mut values: Values = self.carry.iter().filter_map(|carry| carry(req)).collect();
        if let Some(hook) = &self.authorize {
            // A panic in the hook answers 500, as one in the session's
            // factory does, rather than cutting the connection with no
            // answer (an audit): clients see an error, not a network fault.
            let ran =
                futures_util::FutureExt::catch_unwind(AssertUnwindSafe(async { hook(req).await })).await;
            let Ok(ran) = ran else {
                log::error!(
                    "sockjs: {} {}: the authorisation hook panicked; answered 500",
                    req.method(),
                    LogPath(req)
                );
                return Err(Refuse::http(actix_web::error::ErrorInternalServerError("Internal error.")));
            };
            match ran {
                Ok(produced) => values.extend(produced),
                Err(refuse) => {
                    self.metrics().refused(Refused::Authorize);
                    util::log_limited!(
                        log::Level::Info,
                        "sockjs: {} {}: session refused by the authorisation hook: {refuse}",
                        req.method(),
                        LogPath(req)
                    );
                    return Err(refuse);
                }
            }
        }
        let client = self.client_ip(req);
        let (bound, new_cookie) = self.binding(req, client, transport);
        let opening = Opening { client, caps: self.config.caps(), transport, bound };
        Ok(Admitted { opening, values, new_cookie })
    }

    /// What a new HTTP session is bound to, and the cookie value to set
    /// when the client has none yet.
    fn binding(
        &self,
        req: &HttpRequest,
        client: Option<IpAddr>,
        transport: Transport,
    ) -> (Option<Arc<Bound>>, Option<String>) {
        let Some(to) = self.config.bind.filter(|_| !transport.is_websocket()) else {
            return (None, None);
        };
        let ip = to.address().then_some(client).flatten();
        let (cookie, new_cookie) = if to.cookie() {
            match util::cookie(req.headers(), BIND_COOKIE).filter(|v| is_cookie_value(v)) {
                Some(value) => (Some(Box::from(value)), None),
                None => {
                    let value = util::random_token();
                    (Some(Box::from(value.as_str())), Some(value))
                }
            }
        } else {
            (None, None)
        };
        (Some(Arc::new(Bound { ip, cookie })), new_cookie)
    }

    /// Whether a WebSocket may open under `id`. With sessions bound to
    /// their clients, not while an HTTP session of another client holds the
    /// id: what the application sends to the id would reach the socket too
    /// (a security review read a bound session's messages that way).
    pub(crate) async fn may_take_id(&self, req: &HttpRequest, id: &str) -> bool {
        if self.config.bind.is_none() {
            return true;
        }
        match self.find(id).await {
            Some((_, _, bound)) => self.may_reach(bound.as_deref(), req),
            None => true,
        }
    }

    /// Whether a request may reach a session bound to `bound`.
    fn may_reach(&self, bound: Option<&Bound>, req: &HttpRequest) -> bool {
        let Some(bound) = bound else { return true };
        let ip_ok = bound.ip.is_none_or(|ip| self.client_ip(req) == Some(ip));
        let cookie_ok =
            bound.cookie.as_deref().is_none_or(|c| util::cookie(req.headers(), BIND_COOKIE) == Some(c));
        if !(ip_ok && cookie_ok) {
            self.metrics().refused(Refused::Bound);
            util::log_limited!(
                log::Level::Info,
                "sockjs: {} {}: the session is bound to another client ({})",
                req.method(),
                LogPath(req),
                if ip_ok { "cookie" } else { "address" }
            );
        }
        ip_ok && cookie_ok
    }

    /// Logs a refusal of the endpoint's caps with its request, and with the
    /// client's address when that client holds too many sessions.
    pub(crate) fn log_refusal(&self, req: &HttpRequest, refusal: Refusal) {
        let client = match refusal {
            Refusal::TooManyFromClient => match self.client_ip(req) {
                Some(ip) => format!(" (client {ip})"),
                None => " (client unknown)".to_owned(),
            },
            Refusal::Full | Refusal::ShuttingDown => String::new(),
        };
        util::log_limited!(
            log::Level::Info,
            "sockjs: {} {}: session refused: {refusal}{client}",
            req.method(),
            LogPath(req)
        );
    }

    fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        client_ip(req, &self.config.trusted_proxies, self.config.proxy_header)
    }

    /// Attaches a receiver to the HTTP session `id`, opening the session
    /// first (if the authorisation hook and the caps allow it) if there is
    /// none.
    ///
    /// A poll or stream for a session the worker's directory lists, the
    /// common case, is done before this returns; opening a session, or a
    /// worker's first request, waits on the manager in a boxed future (see
    /// [`Step`]).
    pub(crate) fn attach<'a>(
        &'a self,
        req: &'a HttpRequest,
        id: Arc<str>,
        receiver: Receiver,
    ) -> Step<'a, Result<Handed, ReachError>> {
        let receiver = Box::new(receiver);
        let Some(directory) = self.directory.get() else {
            return Either::Right(Box::pin(async move {
                let receiver = match self.directory().await {
                    Some(directory) => match self.attach_listed(directory, req, &id, receiver)? {
                        Ok(serial) => return Ok(Handed { serial: Some(serial), cookie: None }),
                        Err(back) => back,
                    },
                    None => receiver,
                };
                self.open_http(req, id, receiver).await
            }));
        };
        match self.attach_listed(directory, req, &id, receiver) {
            Ok(Ok(serial)) => Either::Left(ready(Ok(Handed { serial: Some(serial), cookie: None }))),
            Err(e) => Either::Left(ready(Err(e))),
            Ok(Err(receiver)) => Either::Right(Box::pin(self.open_http(req, id, receiver))),
        }
    }

    /// Gives the session `serial`, listed under `id`, the messages (JSON
    /// strings joined by commas) written to its receiver `ticket` that the
    /// receiver's request could not deliver (see `Command::Undelivered`);
    /// if the session has ended since, there is no one to give them to.
    pub(crate) fn give_back(&self, id: &str, serial: u64, ticket: u32, messages: String) {
        match self.directory.get().and_then(|directory| directory.find(id)).filter(|found| found.0 == serial)
        {
            Some((_, tx, _)) => {
                let _ = tx.send(Command::Undelivered(Box::new((ticket, messages))));
            }
            None => {
                log::debug!("sockjs {}: an undelivered poll outlived its session", crate::SessionTag::of(id));
            }
        }
    }

    /// Hands `receiver` to the live session `directory` lists under `id`
    /// (answering its serial); gives it back if there is none (or it has
    /// just ended).
    fn attach_listed(
        &self,
        directory: &Directory,
        req: &HttpRequest,
        id: &str,
        receiver: Box<Receiver>,
    ) -> Result<Result<u64, Box<Receiver>>, ReachError> {
        let Some((serial, tx, bound)) = directory.find(id) else { return Ok(Err(receiver)) };
        let turn = self.turns.get(serial);
        Ok(match self.hand_over(req, &tx, bound.as_deref(), receiver, turn.as_deref())? {
            None => Ok(serial),
            Some(back) => Err(back),
        })
    }

    /// Attaches `receiver` to the HTTP session `id` through the manager,
    /// which opens the session if it has none by that id.
    async fn open_http(
        &self,
        req: &HttpRequest,
        id: Arc<str>,
        mut receiver: Box<Receiver>,
    ) -> Result<Handed, ReachError> {
        let mut values = Values::new();
        let mut new_cookie = None;
        let mut opening: Option<Opening> = None;
        // A session can end between the manager's answer and our command;
        // the manager then forgets it and the next round opens a new one.
        for _ in 0..3 {
            let acquire = Acquire::new(id.clone(), opening.clone());
            match self.manager.send(acquire).await.map_err(|_| ReachError::Manager)? {
                Acquired::Found(serial, tx, bound) => {
                    match self.hand_over(req, &tx, bound.as_deref(), receiver, None)? {
                        None => return Ok(Handed { serial: Some(serial), cookie: None }),
                        Some(back) => receiver = back,
                    }
                }
                Acquired::Created { serial, tx, rx, starter } => {
                    let Some(starter) = starter.start() else { return Err(ReachError::Manager) };
                    let transport = receiver.transport();
                    let _ = tx.send(Command::Attach(receiver));
                    let in_place = InPlace::Requests(self.turns.clone());
                    self.start(
                        starter,
                        serial,
                        id,
                        transport,
                        req,
                        // Attached through the queue, after whatever the
                        // manager queued for it first.
                        (rx, None),
                        std::mem::take(&mut values),
                        in_place,
                    )
                    .map_err(|OpenPanicked| ReachError::Panicked)?;
                    return Ok(Handed { serial: Some(serial), cookie: new_cookie });
                }
                Acquired::Missing => {
                    let admitted = self.admit(req, receiver.transport()).await.map_err(ReachError::Denied)?;
                    opening = Some(admitted.opening);
                    values = admitted.values;
                    new_cookie = admitted.new_cookie;
                }
                Acquired::Refused(refusal) => {
                    self.metrics().refused(Refused::from(&refusal));
                    return Err(ReachError::Denied(refusal.into()));
                }
                Acquired::Failed(bound, (code, reason)) => {
                    if !self.may_reach(bound.as_deref(), req) {
                        return Err(ReachError::Missing);
                    }
                    receiver.close_with(code, &reason);
                    return Ok(Handed { serial: None, cookie: None });
                }
            }
        }
        Err(ReachError::Manager)
    }

    /// Gives a receiver to the session behind `tx` if the request may reach
    /// it, and runs the session's `turn` in place if it lives on this
    /// worker; the receiver comes back if the session has just ended.
    fn hand_over(
        &self,
        req: &HttpRequest,
        tx: &CommandTx,
        bound: Option<&Bound>,
        receiver: Box<Receiver>,
        turn: Option<&dyn Turn>,
    ) -> Result<Option<Box<Receiver>>, ReachError> {
        if !self.may_reach(bound, req) {
            return Err(ReachError::Missing);
        }
        match hand(tx, Command::Attach(receiver), turn) {
            Ok(()) => Ok(None),
            Err(Command::Attach(back)) => Ok(Some(back)),
            Err(_) => Err(ReachError::Manager),
        }
    }

    /// Registers a WebSocket session (already admitted) with the manager
    /// and starts it with its receiver attached.
    ///
    /// An uncapped endpoint's session starts before this returns. With a
    /// cap, at a worker's first WebSocket session (and any opened before
    /// the manager's answer to it), or while the manager shuts down, the
    /// manager's answer is awaited in a boxed future (see [`Step`]).
    pub(crate) fn open_socket<'a>(
        &'a self,
        req: &'a HttpRequest,
        id: Option<Arc<str>>,
        receiver: Receiver,
        admitted: Admitted,
        in_place: InPlace,
    ) -> Step<'a, Result<SocketOpened, actix_web::Error>> {
        let serial = next_serial();
        let transport = receiver.transport();
        // A raw WebSocket has no id of the client's: it gets one no client
        // can send (SockJS ids have no dot), unique across the nodes of a
        // cluster (another node's counter gives the same serials).
        let id = id.unwrap_or_else(|| Arc::from(format!("raw.{}.{serial}", raw_prefix())));
        let (cmd_tx, cmd_rx) = command_channel();
        // Attached before the session reads its queue, at its first turn:
        // a shutdown the manager sends once it knows the session comes
        // after it.
        let first = Some(receiver);
        let Admitted { opening, values, .. } = admitted;
        let uncapped = opening.caps.max_sessions.is_none() && opening.caps.max_per_ip.is_none();
        let opening = match self.starter.get().filter(|_| uncapped) {
            Some(starter) => {
                let starter = starter.clone();
                if starter.arrivals.arrive(serial, id.clone(), cmd_tx.clone(), opening.clone()) {
                    let started =
                        self.start(starter, serial, id, transport, req, (cmd_rx, first), values, in_place);
                    return Either::Left(ready(started.map(|turn| (cmd_tx, turn)).map_err(Into::into)));
                }
                opening
            }
            None => opening,
        };
        Either::Right(Box::pin(async move {
            let register = RegisterSocket::new(serial, id.clone(), cmd_tx.clone(), opening);
            let unstarted = match self.manager.send(register).await {
                Ok(Ok(unstarted)) => unstarted,
                Ok(Err(refusal)) => {
                    self.metrics().refused(Refused::from(&refusal));
                    self.log_refusal(req, refusal);
                    return Err(refusal.into());
                }
                Err(e) => {
                    log::error!("sockjs: session manager unavailable: {e}");
                    return Err(actix_web::error::ErrorServiceUnavailable("Session manager unavailable."));
                }
            };
            let Some(starter) = unstarted.start() else {
                return Err(actix_web::error::ErrorServiceUnavailable("Session manager unavailable."));
            };
            if uncapped {
                let _ = self.starter.set(starter.clone());
            }
            let turn = self.start(starter, serial, id, transport, req, (cmd_rx, first), values, in_place)?;
            Ok((cmd_tx, turn))
        }))
    }

    /// The existing HTTP session `id`, if this request may reach it (its
    /// binding, if any, holds): what a send then hands its messages to
    /// ([`Reached::deliver`]). A send looks its session up before it
    /// reads its body, so that a body for no session (or one bound to
    /// another client) is not read and held at all.
    pub(crate) async fn reach(&self, req: &HttpRequest, id: Arc<str>) -> Result<Reached, ReachError> {
        let (tx, bound, turn) = match self.find(&id).await {
            Some((serial, tx, bound)) => (tx, bound, self.turns.get(serial)),
            None => match Box::pin(self.manager.send(Acquire::new(id, None)))
                .await
                .map_err(|_| ReachError::Manager)?
            {
                Acquired::Found(_, tx, bound) => (tx, bound, None),
                _ => return Err(ReachError::Missing),
            },
        };
        if !self.may_reach(bound.as_deref(), req) {
            return Err(ReachError::Missing);
        }
        Ok(Reached { tx, turn })
    }

    /// The live HTTP session `id` from the manager's directory, without a
    /// round trip to the manager (but the first, which fetches the
    /// directory for this worker).
    async fn find(&self, id: &str) -> Option<(u64, CommandTx, Option<Arc<Bound>>)> {
        self.directory().await?.find(id)
    }

    /// The manager's directory of HTTP sessions, fetched at the worker's
    /// first request for one.
    async fn directory(&self) -> Option<&Directory> {
        if self.directory.get().is_none() {
            let directory = Box::pin(self.manager.send(GetDirectory)).await.ok()?;
            let _ = self.directory.set(directory);
        }
        self.directory.get()
    }

    /// Starts a session actor on this worker, reading its commands from
    /// `rx` after attaching `first` (its socket's receiver); returns the
    /// [`Turn`] that others run in place ([`InPlace`]), `None` if the
    /// session ended in its first turn, [`OpenPanicked`] if that turn
    /// panicked.
    #[expect(clippy::too_many_arguments, reason = "one private call site per kind of session")]
    fn start(
        &self,
        starter: Starter<A>,
        serial: u64,
        id: Arc<str>,
        transport: Transport,
        req: &HttpRequest,
        (rx, first): (CommandRx, Option<Receiver>),
        values: Values,
        in_place: InPlace,
    ) -> Result<Option<Rc<dyn Turn>>, OpenPanicked> {
        let mut request =
            RequestInfo::from_request(req, self.client_ip(req), self.config.keep_headers.as_deref())
                .with_values(values);
        if transport != Transport::RawWebSocket {
            request = request.with_id_in_path();
        }
        // A panic in the application's factory is caught as one in
        // `on_open` is: the opening request gets an error answer rather
        // than a cut connection, and the manager, which has listed the
        // session (and counted it under the caps), hears that it ended, as
        // no session actor exists to tell it.
        let Ok(session) = catch_unwind(AssertUnwindSafe(|| (starter.factory)(&request))) else {
            log::error!(
                "sockjs {}: the session factory panicked; no session opened",
                crate::SessionTag::of(&id)
            );
            starter.notes.note(serial, Note::Ended);
            return Err(OpenPanicked);
        };
        let setup = SessionSetup {
            id,
            serial,
            config: self.config.clone(),
            request,
            notes: starter.notes,
            metrics: self.metrics().clone(),
        };
        start_session(session, transport, setup, (rx, first), in_place)
    }
}

/// Sends `command` to a session; with the session's `turn` (it lives on
/// this worker), unwoken, and runs the turn in place: what the command
/// makes the session do (an answer to a poll, room for the next send) is
/// done before the request's next step, with no poll of the session's
/// task and no second poll of the request's. Gives the command back if the
/// session is gone.
fn hand(tx: &CommandTx, command: Command, turn: Option<&dyn Turn>) -> Result<(), Command> {
    let Some(turn) = turn else { return tx.send(command) };
    tx.send_unwoken(command)?;
    run_turn(turn);
    Ok(())
}

/// A request's path as log lines show it: the segment after the server
/// id (a session URL's session id, the key to an HTTP session) replaced
/// by its [`SessionTag`](crate::SessionTag), control characters escaped
/// (the router decodes `%0A` into a line feed), and each piece cut short.
pub(crate) struct LogPath<'a>(pub(crate) &'a HttpRequest);

impl fmt::Display for LogPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.0.match_info().as_str();
        let rest = self.0.match_info().unprocessed();
        let prefix = path.strip_suffix(rest).unwrap_or("");
        write!(f, "{}", util::Escaped(util::cut(prefix, 120)))?;
        // `/<server>/<session>/<transport>`, or any path with a second
        // segment (a malformed session URL still carries the id).
        let mut parts = rest.strip_prefix('/').unwrap_or(rest).splitn(3, '/');
        let (Some(server), Some(id)) = (parts.next(), parts.next()) else {
            return write!(f, "{}", util::Escaped(util::cut(rest, 80)));
        };
        write!(f, "/{}/{}", util::Escaped(util::cut(server, 16)), crate::SessionTag::of(id))?;
        match parts.next() {
            Some(tail) => write!(f, "/{}", util::Escaped(util::cut(tail, 40))),
            None => Ok(()),
        }
    }
}

/// This process's part of its raw WebSockets' ids: 8 random hex digits.
fn raw_prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| util::random_token().chars().take(8).collect())
}

/// The longest session id a session URL may carry, in bytes: a session
/// and its manager keep the id, and a client could otherwise make every
/// session it opens hold tens of kilobytes of it (sockjs-client sends 8
/// characters).
pub(crate) const MAX_SESSION_ID: usize = 256;

/// The session id and the transport of a session URL,
/// `/<server>/<session>/<transport>` after the prefix (as actix-web
/// decoded it); `None` for any other path. The server and session
/// segments are not empty and have no dot (docs/protocol.md §3), and the
/// session id is at most [`MAX_SESSION_ID`] bytes.
///
/// One pass over the bytes, once per request (the router hands the id on):
/// `str::split` took ~600 instructions a call here (callgrind).
pub(crate) fn split_session_url(rest: &str) -> Option<(&str, &str)> {
    let bytes = rest.as_bytes();
    if bytes.first() != Some(&b'/') {
        return None;
    }
    // The two slashes after the leading one; a dot before the second
    // rules the URL out.
    let (mut first, mut second) = (0, 0);
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        match b {
            b'/' if first == 0 => first = i,
            b'/' if second == 0 => second = i,
            b'/' => return None,
            b'.' if second == 0 => return None,
            _ => {}
        }
    }
    let segment = |from: usize, to: usize| to > from + 1;
    if !(segment(0, first) && segment(first, second) && second + 1 < bytes.len()) {
        return None;
    }
    let id = &rest[first + 1..second];
    (id.len() <= MAX_SESSION_ID).then(|| (id, &rest[second + 1..]))
}

/// The answer to a request whose new session panicked as it opened: 500.
impl ResponseError for OpenPanicked {
    fn status_code(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    fn error_response(&self) -> HttpResponse {
        error(self.status_code(), self.to_string())
    }
}

impl fmt::Display for OpenPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Session failed to open.")
    }
}

/// The answer to a session the caps refused: 503 when the endpoint is full
/// or shutting down, 429 when the client holds too many sessions.
impl ResponseError for Refusal {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Full | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyFromClient => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// Logged by whoever had the request ([`Endpoint::log_refusal`]).
    fn error_response(&self) -> HttpResponse {
        error(self.status_code(), self.to_string())
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full => "Too many sessions.",
            Self::ShuttingDown => "Server shutting down.",
            Self::TooManyFromClient => "Too many sessions from this client.",
        })
    }
}

/// A plain-text answer (docs/protocol.md §4.6).
pub(crate) fn error(status: StatusCode, body: impl Into<String>) -> HttpResponse {
    HttpResponseBuilder::new(status).content_type(TEXT).body(body.into())
}

/// An error answer on a session URL whose origin is allowed: with the
/// no-cache headers, the CORS headers (where the transport's other answers
/// have them: `with_cors`) and the cookie, as sockjs-node sends them, so
/// that a page on another origin sees the status (a 404 for an expired
/// session, say) rather than a CORS failure.
pub(crate) fn session_error(
    req: &HttpRequest,
    config: &Config,
    with_cors: bool,
    status: StatusCode,
    body: impl Into<String>,
) -> HttpResponse {
    let mut res = HttpResponseBuilder::new(status);
    res.content_type(TEXT);
    never_cache(&mut res);
    if with_cors {
        cors(&mut res, req);
    }
    session_cookie(&mut res, req, config);
    res.body(body.into())
}

/// `Cache-Control` and friends that forbid caching (docs/protocol.md §4.2).
pub(crate) fn never_cache(res: &mut HttpResponseBuilder) {
    res.insert_header((
        header::CACHE_CONTROL,
        "no-store, no-cache, no-transform, must-revalidate, max-age=0",
    ));
}

/// Headers that let a response be cached for a year (docs/protocol.md §4.2).
pub(crate) fn long_cache(res: &mut HttpResponseBuilder) {
    let expires = SystemTime::now() + Duration::from_secs(LONG_CACHE_SECS);
    res.insert_header((header::CACHE_CONTROL, format!("public, max-age={LONG_CACHE_SECS}")));
    res.insert_header((header::EXPIRES, header::HttpDate::from(expires).to_string()));
}

/// The longest `Origin` or `Access-Control-Request-Headers` value that is
/// echoed back: longer ones are not reflected (a proxy may refuse a
/// response with a 64 KB header line).
pub(crate) const MAX_REFLECTED: usize = 4096;

/// CORS headers: the request's origin echoed with credentials, or `*`
/// (docs/protocol.md §4.3). Values over [`MAX_REFLECTED`] bytes are not
/// echoed: such an origin is answered as no origin, such request headers
/// are not allowed.
pub(crate) fn cors(res: &mut HttpResponseBuilder, req: &HttpRequest) {
    cors_each(req, |name, value| {
        res.insert_header((name, value));
    });
}

/// [`cors`]'s headers added to an answer built elsewhere (the
/// application's refusal, say), unless it has an `Access-Control-Allow-Origin`
/// of its own: then its CORS headers are its own choice, left whole.
pub(crate) fn add_cors(res: &mut HttpResponse, req: &HttpRequest) {
    let headers = res.headers_mut();
    if headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        return;
    }
    cors_each(req, |name, value| {
        if name == header::VARY {
            headers.append(name, value);
        } else {
            headers.insert(name, value);
        }
    });
}

/// Hands [`cors`]'s headers to `put`, one by one.
fn cors_each(req: &HttpRequest, mut put: impl FnMut(HeaderName, HeaderValue)) {
    let short = |v: &&HeaderValue| v.len() <= MAX_REFLECTED;
    match req.headers().get(header::ORIGIN).filter(short) {
        Some(origin) => {
            put(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            put(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        None => {
            put(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
    }
    put(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(h) =
        req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS).filter(|h| !h.is_empty()).filter(short)
    {
        put(header::ACCESS_CONTROL_ALLOW_HEADERS, h.clone());
    }
}

/// The longest `JSESSIONID` value that is echoed back: a longer one is
/// answered as none (`dummy`). A cookie planted from a sibling domain could
/// otherwise make every answer carry a header line too long for a proxy.
pub(crate) const MAX_COOKIE_ECHO: usize = 256;

/// The `JSESSIONID` cookie, when the endpoint wants one (docs/protocol.md §4.4).
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
    !v.is_empty()
        && v.len() <= MAX_COOKIE_ECHO
        && v.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'))
}

/// `res`, holding the request's unread `payload` until it is sent: the
/// answer to a body refused before its end (408, 413, 404). actix-http
/// closes a connection whose request payload is unread but alive when the
/// answer goes out; one the handler dropped it drains instead, and a
/// chunked body it drains for as long as the client sends (a client that
/// trickled into a 408 kept its connection for good).
pub(crate) fn keep_unread(res: HttpResponse, payload: actix_web::web::Payload) -> HttpResponse {
    res.map_body(|_, body| actix_web::body::BoxBody::new(Unread { body, _payload: payload }))
}

/// See [`keep_unread`].
struct Unread {
    body: actix_web::body::BoxBody,
    _payload: actix_web::web::Payload,
}

impl actix_web::body::MessageBody for Unread {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> actix_web::body::BodySize {
        self.body.size()
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<actix_web::web::Bytes, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}
