//! The user's side of a session: the [`Session`] trait, why a session closed,
//! and what the opening request carried.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    sync::OnceLock,
};

use actix::Actor;
use actix_web::{
    http::header::{HeaderMap, HeaderName, HeaderValue, COOKIE},
    HttpRequest,
};

mod context;

pub use context::SessionContext;
pub(crate) use context::{
    command_channel, start_session, Command, CommandRx, CommandTx, Failure, Mode, SessionSetup, Shared,
};

/// A SockJS session's application logic.
///
/// Implement it on an actix actor whose context is [`SessionContext`]. One
/// actor is created per session, through the factory given to
/// [`SessionManager::new`](crate::SessionManager::new); it runs on the
/// worker thread that served the request opening the session.
///
/// # Examples
///
/// ```
/// use actix::Actor;
/// use actix_sockjs::{CloseReason, Session, SessionContext};
///
/// struct Echo;
///
/// impl Actor for Echo {
///     type Context = SessionContext<Self>;
/// }
///
/// impl Session for Echo {
///     fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
///         ctx.send(msg);
///     }
///
///     fn on_close(&mut self, reason: CloseReason, _ctx: &mut SessionContext<Self>) {
///         log::info!("session closed: {reason}");
///     }
/// }
/// ```
pub trait Session: Actor<Context = SessionContext<Self>> {
    /// Called once when the session opens, after the client got its open
    /// frame. [`SessionContext::request`] tells what the opening request
    /// carried. Default: does nothing.
    fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
        let _ = ctx;
    }

    /// Called for every message the client sends, in order.
    fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>);

    /// Called once when an open session ends, with the cause. The actor stops
    /// after it (for HTTP sessions, once the disconnect delay has passed, so
    /// that late requests still get the close frame). Default: does nothing.
    fn on_close(&mut self, reason: CloseReason, ctx: &mut SessionContext<Self>) {
        let _ = (reason, ctx);
    }
}

/// Why a session ended, as given to [`Session::on_close`].
///
/// # Examples
///
/// ```
/// use actix::Actor;
/// use actix_sockjs::{CloseReason, Session, SessionContext};
///
/// struct Player;
/// impl Actor for Player {
///     type Context = SessionContext<Self>;
/// }
/// impl Session for Player {
///     fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
///
///     fn on_close(&mut self, reason: CloseReason, _: &mut SessionContext<Self>) {
///         match reason {
///             // Worth a reconnect grace period: the network dropped.
///             CloseReason::Interrupted | CloseReason::Timeout => log::info!("player lost: {reason}"),
///             // The player left or was kicked: free the seat now.
///             _ => log::info!("player gone: {reason}"),
///         }
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The application called [`SessionContext::close`] with this code and reason.
    Application {
        /// The close code sent to the client.
        code: u16,
        /// The close reason sent to the client.
        reason: String,
    },
    /// The client closed its WebSocket.
    ClientClosed,
    /// The client went away: it aborted a long-poll or a stream (later
    /// requests get `c[1002,"Connection interrupted"]`), or its WebSocket
    /// stopped answering pings.
    Interrupted,
    /// No receiving request came within the disconnect delay.
    Timeout,
    /// The outgoing queue exceeded [`Config::max_queue_bytes`](crate::Config::max_queue_bytes);
    /// the client got `c[3008,"Outgoing queue overflow"]`.
    Overflow,
    /// The client broke the protocol (undecodable WebSocket data, a message
    /// over the size limit).
    ProtocolError,
    /// The server is shutting down (see [`Shutdown`](crate::Shutdown)); the
    /// client got `c[1001,"Server shutting down"]`.
    Shutdown,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Application { code, reason } => write!(f, "closed by the application ({code}, {reason:?})"),
            Self::ClientClosed => f.write_str("closed by the client"),
            Self::Interrupted => f.write_str("client connection interrupted"),
            Self::Timeout => f.write_str("no receiver within the disconnect delay"),
            Self::Overflow => f.write_str("outgoing queue overflow"),
            Self::ProtocolError => f.write_str("protocol error from the client"),
            Self::Shutdown => f.write_str("server shutting down"),
        }
    }
}

/// The code and reason sent when the outgoing queue overflows.
pub const OVERFLOW_CLOSE: (u16, &str) = (3008, "Outgoing queue overflow");
/// The code and reason sent after a receiving connection was aborted.
pub const INTERRUPTED_CLOSE: (u16, &str) = (1002, "Connection interrupted");
/// The code and reason sent when the server shuts down.
pub const SHUTDOWN_CLOSE: (u16, &str) = (1001, "Server shutting down");
/// The code and reason sent to a second concurrent receiver.
pub const CONFLICT_CLOSE: (u16, &str) = (2010, "Another connection still open");
/// The code and reason used when the session actor is stopped without
/// [`SessionContext::close`].
pub const NORMAL_CLOSE: (u16, &str) = (1000, "Normal closure");

/// What the request that opened a session carried, captured at open.
///
/// The usual place to authenticate: read a cookie, a header or a query
/// token in [`Session::on_open`] and [`SessionContext::close`] the session
/// if it is not allowed.
///
/// The headers are kept as a plain list; [`header`](Self::header) and
/// [`cookie`](Self::cookie) read it directly, and [`headers`](Self::headers)
/// builds a `HeaderMap` from it at its first call. (A `HeaderMap` keeps the
/// capacity actix-web reserves for parsing: cloned, it cost 6.7 KB per
/// session, for a WebSocket upgrade with five headers.)
///
/// # Examples
///
/// ```
/// use actix::Actor;
/// use actix_sockjs::{Session, SessionContext};
///
/// struct Private;
/// impl Actor for Private {
///     type Context = SessionContext<Self>;
/// }
/// impl Session for Private {
///     fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
///         let req = ctx.request();
///         let token = req.query("token").or_else(|| req.cookie("token").map(str::to_owned));
///         let agent = req.header("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("?");
///         log::info!("session from {agent} at {:?}", req.client_ip());
///         if token.as_deref() != Some("let-me-in") {
///             ctx.close(4001, "Unauthorized");
///         }
///     }
///     fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
/// }
/// ```
#[derive(Debug, Clone)]
pub struct RequestInfo {
    headers: Box<[(HeaderName, HeaderValue)]>,
    map: OnceLock<HeaderMap>,
    peer_addr: Option<SocketAddr>,
    client_ip: Option<IpAddr>,
    path: String,
    query: String,
}

impl RequestInfo {
    pub(crate) fn from_request(req: &HttpRequest, client_ip: Option<IpAddr>) -> Self {
        Self {
            headers: req.headers().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            map: OnceLock::new(),
            peer_addr: req.peer_addr(),
            client_ip,
            path: req.path().to_owned(),
            query: req.query_string().to_owned(),
        }
    }

    /// The request headers, as a `HeaderMap` (built at the first call).
    pub fn headers(&self) -> &HeaderMap {
        self.map.get_or_init(|| {
            let mut map = HeaderMap::with_capacity(self.headers.len());
            for (name, value) in self.headers.iter() {
                map.append(name.clone(), value.clone());
            }
            map
        })
    }

    /// The first value of one request header (names are case-insensitive).
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers.iter().find(|(k, _)| k.as_str().eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// The address of the connected peer (a proxy's address behind a proxy).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// The client's address: the peer's, or the one a trusted proxy reported
    /// (see [`Config::trusted_proxies`](crate::Config::trusted_proxies)).
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    /// The request path, as sent (not percent-decoded).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw query string, without `?`.
    pub fn query_string(&self) -> &str {
        &self.query
    }

    /// The value of one query parameter, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        crate::util::query_param(&self.query, name)
    }

    /// The value of one cookie of the request's `Cookie` headers.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        let values = self.headers.iter().filter(|(k, _)| *k == COOKIE).map(|(_, v)| v);
        crate::util::cookie_in(values, name)
    }
}
