//! Sessions: the [`Session`] trait the user implements, the context that
//! runs it ([`SessionContext`], driving the state [`machine`]), and what the
//! opening request carried ([`RequestInfo`]).

use std::{
    any::{Any, TypeId},
    borrow::Cow,
    fmt,
    net::{IpAddr, SocketAddr, SocketAddrV6},
    str::FromStr,
    sync::{Arc, OnceLock},
};

use actix::Actor;
use actix_web::{
    http::header::{HeaderMap, HeaderName, HeaderValue, COOKIE},
    HttpRequest,
};

mod context;
mod driver;
mod hold;
mod machine;
mod runtime;
mod turn;

pub use context::SessionContext;

/// Where a session is in its life, as [`SessionContext::state`] and the
/// manager's listings tell it.
///
/// # Examples
///
/// ```
/// use actix_sockjs::SessionState;
///
/// assert_ne!(SessionState::Closing, SessionState::Closed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionState {
    /// Created; its first receiver has not been answered yet.
    New,
    /// The client got its open frame and the session is not closed.
    Open,
    /// Closed; the close frame is still to be written to the attached
    /// receiver.
    Closing,
    /// Closed. An HTTP session stays for the disconnect delay, answering
    /// late requests with its close frame, then ends.
    Closed,
}
/// A short name of a session id for log lines: `#` and six hex digits,
/// the same for the same id within one process, and too short to give the
/// id back (a keyed hash, its key drawn at the first use in the process).
/// The id itself is the key to an HTTP session (README, "Security"), so
/// neither the crate's log lines nor yours should carry it; this tag lets
/// one session's lines be told apart and matched with the crate's. It is
/// a name for reading logs, not an identity: with 24 bits, two of 100,000
/// sessions share a tag about 300 times.
///
/// # Examples
///
/// ```
/// use actix_sockjs::SessionTag;
///
/// let tag = SessionTag::of("x1aet53d");
/// assert_eq!(tag, SessionTag::of("x1aet53d"));
/// let shown = tag.to_string();
/// assert!(shown.starts_with('#') && shown.len() == 7 && !shown.contains("x1aet53d"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionTag(u32);

impl fmt::Debug for SessionTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionTag({self})")
    }
}

impl SessionTag {
    /// The tag of the session id `id` (see
    /// [`SessionContext::session_tag`] for a session's own).
    ///
    /// # Examples
    ///
    /// ```
    /// let tag = actix_sockjs::SessionTag::of("abc");
    /// assert_ne!(tag, actix_sockjs::SessionTag::of("abd"));
    /// ```
    pub fn of(id: &str) -> Self {
        static KEY: OnceLock<std::hash::RandomState> = OnceLock::new();
        let hash = std::hash::BuildHasher::hash_one(KEY.get_or_init(std::hash::RandomState::new), id);
        Self((hash & 0xff_ffff) as u32)
    }
}

/// Session ids in a `Debug` output (of a message, say): their tags, as log
/// lines show them (an HTTP session's id is the key to it).
pub(crate) struct Tags<'a>(pub(crate) &'a [std::sync::Arc<str>]);

impl fmt::Debug for Tags<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|id| SessionTag::of(id))).finish()
    }
}

/// The last segments of a SockJS session URL, `<prefix>/<server>/<session>/<segment>`.
const SESSION_URL_ENDS: [&str; 8] =
    ["websocket", "xhr", "xhr_send", "xhr_streaming", "eventsource", "htmlfile", "jsonp", "jsonp_send"];

/// `path` fit for an access log: a SockJS session URL
/// (`<prefix>/<server>/<session>/<transport>`, one trailing `/` allowed)
/// with its session segment replaced by that segment's [`SessionTag`],
/// the tag the crate's own log lines show; any other path as it is. Use it
/// with actix-web's `Logger`, whose default format logs the request line:
/// the session id, which on the HTTP transports is the key to the session.
///
/// The path's last segment decides: a path that ends in a transport's
/// name (`websocket`, `xhr`, `xhr_send`, ...) after two segments or more
/// is taken for a session URL, so a raw WebSocket's `<prefix>/websocket`
/// under a prefix of two or more segments loses its prefix's last
/// segment to a tag (it carries no id). The query is not part of a path:
/// log it only if your tokens do not travel there. A session id written
/// with `%` escapes gets the tag of the escaped form.
///
/// # Examples
///
/// ```
/// use actix_sockjs::{log_path, SessionTag};
/// use actix_web::middleware::Logger;
///
/// let tag = SessionTag::of("k2j4l1");
/// assert_eq!(log_path("/chat/000/k2j4l1/xhr_send"), format!("/chat/000/{tag}/xhr_send"));
/// assert_eq!(log_path("/chat/info"), "/chat/info");
///
/// // The access log, with the session id out of it (and no query).
/// let logger = Logger::new(r#"%a "%{path}xi" %s %b %T"#)
///     .custom_request_replace("path", |req| format!("{} {}", req.method(), log_path(req.path())));
/// # let _ = logger;
/// ```
pub fn log_path(path: &str) -> Cow<'_, str> {
    let (bare, slash) = path.strip_suffix('/').map_or((path, ""), |bare| (bare, "/"));
    match bare.rsplitn(4, '/').collect::<Vec<_>>()[..] {
        [end, id, server, head] if SESSION_URL_ENDS.contains(&end) && !id.is_empty() => {
            Cow::Owned(format!("{head}/{server}/{}/{end}{slash}", SessionTag::of(id)))
        }
        _ => Cow::Borrowed(path),
    }
}

impl fmt::Display for SessionTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:06x}", self.0)
    }
}

/// One session of this node, and no other: what
/// [`SessionContext::key`] gives, for [`SendTo`](crate::SendTo) and
/// [`Deliver`](crate::Deliver) to reach exactly that session, in order
/// with what else it is sent ([`Join`](crate::Join),
/// [`Leave`](crate::Leave) and [`GetSession`](crate::GetSession) take one
/// too).
///
/// A session id is the client's choice, and two WebSocket clients may use
/// the same one (the protocol lets them): a message sent by id reaches the
/// newest, which may be another user's. A key is the server's: no other
/// session of the process has it, a later one under the same id
/// included. It names a session of this process only (it does not cross
/// a relay, and only a session's context makes one): for the key of a
/// session that has closed, or of another endpoint's session, the
/// manager answers [`Delivery::Unknown`](crate::Delivery::Unknown). It is
/// cheap to copy, compare and hash.
///
/// # Examples
///
/// An actor of the application's that answers whoever asked, and only
/// them:
///
/// ```no_run
/// use actix::prelude::*;
/// use actix_sockjs::{SendTo, Session, SessionContext, SessionKey, SessionManager};
///
/// #[derive(Message)]
/// #[rtype(result = "()")]
/// struct Bid {
///     amount: u64,
///     from: SessionKey,
/// }
///
/// struct Auction {
///     best: u64,
///     bidders: Addr<SessionManager<Bidder>>,
/// }
/// impl Actor for Auction {
///     type Context = Context<Self>;
/// }
/// impl Handler<Bid> for Auction {
///     type Result = ();
///     fn handle(&mut self, bid: Bid, _: &mut Context<Self>) {
///         if bid.amount <= self.best {
///             self.bidders.do_send(SendTo::text(bid.from, "too low"));
///         } else {
///             self.best = bid.amount;
///         }
///     }
/// }
///
/// struct Bidder {
///     auction: Addr<Auction>,
/// }
/// impl Actor for Bidder {
///     type Context = SessionContext<Self>;
/// }
/// impl Session for Bidder {
///     fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
///         if let Ok(amount) = msg.parse() {
///             self.auction.do_send(Bid { amount, from: ctx.key() });
///         }
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey(pub(crate) u64);

pub(crate) use context::{
    command_channel, start_session, AddressRequest, Command, CommandRx, CommandTx, Failure, Note, NotesRx,
    NotesTx, OpenPanicked, SendTurn, SessionSetup, Tombstone, TypedMessage,
};
pub(crate) use machine::Shared;
pub(crate) use turn::{inbound_weight, run as run_turn, InPlace, LocalTurns, Ran, Turn, INBOUND_ROOM};

use crate::cause::CloseCause;

/// A session that ignores everything, for tests that need a session type
/// (the sizes of what every session carries, say).
#[cfg(test)]
pub(crate) struct Nothing;

#[cfg(test)]
impl Actor for Nothing {
    type Context = SessionContext<Self>;
}

#[cfg(test)]
impl Session for Nothing {
    fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
}

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
/// use actix_sockjs::{CloseCause, Session, SessionContext};
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
///     fn on_close(&mut self, cause: CloseCause, _ctx: &mut SessionContext<Self>) {
///         log::info!("session closed: {cause}");
///     }
/// }
/// ```
pub trait Session: Actor<Context = SessionContext<Self>> {
    /// Called once when the session opens; its client gets the open frame
    /// `o` once this returns. What it sends follows `o` in the same write on
    /// a WebSocket and the streaming transports; a polling client (`xhr`,
    /// `jsonp`) gets `o` as a response of its own and the messages at its
    /// next poll.
    /// [`SessionContext::request`] tells what the opening request carried.
    /// (What `Actor::started` sends is dropped: the session is not open
    /// yet.) Default: does nothing.
    fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
        let _ = ctx;
    }

    /// Called for every message the client sends, in order.
    fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>);

    /// Called once when an open session ends, with the cause. The actor stops
    /// after it (for HTTP sessions, once the disconnect delay has passed, so
    /// that late requests still get the close frame). Not called for a
    /// session whose handler panicked (it is dropped as it is, what it had
    /// queued and not yet written is lost, it counts as `panicked`, and its
    /// client gets `c[1011,"Internal error"]`), after
    /// `ctx.terminate()`, or for one waiting on `ctx.wait` when its worker
    /// is torn down. The actor's own `Drop` runs in every case: state that
    /// must not outlive the session (a presence count, say) is safest
    /// undone there. Default: does nothing.
    ///
    /// This is the session's last turn: what it starts on its own context
    /// (`ctx.spawn`, `ctx.run_later`, `ctx.notify`, a message to
    /// `ctx.address()`) may or may not run, depending on how the session
    /// ended (after a client's close or a timeout the actor stops at
    /// once). Work that must happen after the close, such as saving the
    /// session's state, goes to a task or actor of its own:
    /// `actix::spawn`, or a message to another actor (either runs unless
    /// the worker itself is being torn down).
    ///
    /// # Examples
    ///
    /// ```
    /// use actix::prelude::*;
    /// use actix_sockjs::{CloseCause, Session, SessionContext};
    ///
    /// /// Keeps what its client typed, and stores it when the session ends.
    /// struct Notes {
    ///     lines: Vec<String>,
    /// }
    ///
    /// impl Actor for Notes {
    ///     type Context = SessionContext<Self>;
    /// }
    ///
    /// impl Session for Notes {
    ///     fn on_message(&mut self, msg: String, _: &mut SessionContext<Self>) {
    ///         self.lines.push(msg);
    ///     }
    ///
    ///     fn on_close(&mut self, cause: CloseCause, ctx: &mut SessionContext<Self>) {
    ///         let lines = std::mem::take(&mut self.lines);
    ///         let tag = ctx.session_tag();
    ///         // A task of its own: it runs however the session ended.
    ///         actix::spawn(async move {
    ///             log::info!("session {tag} ({cause}) leaves {} lines to store", lines.len());
    ///         });
    ///     }
    /// }
    /// ```
    fn on_close(&mut self, cause: CloseCause, ctx: &mut SessionContext<Self>) {
        let _ = (cause, ctx);
    }
}

/// What the request that opened a session carried, captured at open.
///
/// To refuse a client, prefer [`SockJs::authorize`](crate::SockJs::authorize):
/// it decides before any session exists, so a refused client never sees
/// `onopen`, and what it finds (the user) is here, through [`get`](Self::get).
/// Closing the session from [`Session::on_open`] after reading a cookie, a
/// header or a query token works too, but the client sees it open first.
///
/// The path, query and headers are copied into one compact buffer (every
/// idle session keeps it, so it is kept small). By default the WebSocket
/// handshake's own headers (`Connection`, `Upgrade`, `Sec-WebSocket-Key`,
/// `-Version`, `-Extensions`) are left out; with
/// [`Config::keep_headers`](crate::Config::keep_headers), exactly the
/// headers it names are kept, and [`header`](Self::header),
/// [`cookie`](Self::cookie) and the factory see no other. [`header`](Self::header) and
/// [`cookie`](Self::cookie) read it directly, and [`headers`](Self::headers)
/// builds a `HeaderMap` from it at its first call. Nothing of the request
/// itself is kept: holding actix-web's header values would keep the
/// connection's 8 KiB read buffer from being reused.
///
/// Its `Debug` output may go into logs: it shows a session URL's id as its
/// [`SessionTag`](crate::SessionTag), the query's names without their
/// values, and no value of the `Cookie`, `Authorization`,
/// `Proxy-Authorization` and `Sec-WebSocket-Protocol` headers.
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
///         let agent = req.header("user-agent").unwrap_or("?");
///         log::info!("session from {agent} at {:?}", req.client_ip());
///         if token.as_deref() != Some("let-me-in") {
///             ctx.close(4401, "Unauthorized");
///         }
///     }
///     fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
/// }
/// ```
#[derive(Clone)]
pub struct RequestInfo {
    /// The path, the query, the peer's and the client's addresses as bytes
    /// (see [`put_socket`]), then one `name:value\n` record per header
    /// (names are tokens, without `:`; values cannot hold a line feed).
    data: Box<[u8]>,
    path_len: u32,
    query_len: u32,
    peer_len: u8,
    client_len: u8,
    /// The path is a session URL's, whose second segment from the end
    /// (before one trailing `/`) is the session id: `Debug` shows its
    /// [`SessionTag`] there (taken at `Debug`, not at every open).
    id_in_path: bool,
    map: OnceLock<Box<HeaderMap>>,
    /// Values by type: what the authorisation hook produced and the request
    /// extensions the endpoint carries (see [`RequestInfo::get`]).
    values: Option<Box<Values>>,
}

/// Values of any type, one per type.
pub(crate) type Values = Vec<(TypeId, Arc<dyn Any + Send + Sync>)>;

impl RequestInfo {
    /// The facts of `req`, with only the headers named in `keep` (`None`:
    /// all but the handshake's; see [`Config::keep_headers`](crate::Config::keep_headers)).
    pub(crate) fn from_request(
        req: &HttpRequest,
        client_ip: Option<IpAddr>,
        keep: Option<&[HeaderName]>,
    ) -> Self {
        let (path, query) = (req.path(), req.query_string());
        let peer = req.peer_addr();
        // Kept only when a proxy reported another address than the peer's.
        let client = client_ip.filter(|ip| Some(*ip) != peer.map(|a| a.ip()));
        // Written once into the worker's scratch buffer, then copied into
        // an allocation of exactly its size: actix-web's header map is slow
        // to walk (~400 instructions for a browser's dozen headers), and
        // sizing the buffer first took a second walk.
        let (data, peer_len, client_len) = SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            scratch.extend_from_slice(path.as_bytes());
            scratch.extend_from_slice(query.as_bytes());
            let at = scratch.len();
            if let Some(peer) = peer {
                put_socket(scratch, peer);
            }
            let peer_len = scratch.len() - at;
            if let Some(client) = client {
                put_ip(scratch, client);
            }
            let client_len = scratch.len() - at - peer_len;
            let kept = |name: &HeaderName| {
                keep.map_or_else(|| !is_handshake_header(name), |keep| keep.contains(name))
            };
            for (name, value) in req.headers().iter().filter(|(name, _)| kept(name)) {
                scratch.extend_from_slice(name.as_str().as_bytes());
                scratch.push(b':');
                scratch.extend_from_slice(value.as_bytes());
                scratch.push(b'\n');
            }
            let data = Box::<[u8]>::from(scratch.as_slice());
            if scratch.capacity() > SCRATCH_KEPT {
                *scratch = Vec::new();
            }
            (data, peer_len, client_len)
        });
        // A request head is far below 4 GiB (actix-web refuses heads over
        // 128 KiB), and an address takes at most 26 bytes.
        let len = |s: &str| u32::try_from(s.len()).unwrap_or(u32::MAX);
        let short = |n: usize| u8::try_from(n).unwrap_or(u8::MAX);
        Self {
            data,
            path_len: len(path),
            query_len: len(query),
            peer_len: short(peer_len),
            client_len: short(client_len),
            id_in_path: false,
            map: OnceLock::new(),
            values: None,
        }
    }

    /// Marks the path as a SockJS session URL's, whose second segment from
    /// the end (before one trailing `/`) is the session id, which `Debug`
    /// then shows as its tag.
    pub(crate) fn with_id_in_path(mut self) -> Self {
        self.id_in_path = true;
        self
    }

    /// Adds values by type (a later value of a type replaces an earlier one).
    pub(crate) fn with_values(mut self, values: Values) -> Self {
        if !values.is_empty() {
            let kept = self.values.get_or_insert_default();
            for (type_id, value) in values {
                kept.retain(|(t, _)| *t != type_id);
                kept.push((type_id, value));
            }
        }
        self
    }

    /// The value of type `T` the endpoint attached to the session: what
    /// [`SockJs::authorize`](crate::SockJs::authorize) (or
    /// [`authorize_async`](crate::SockJs::authorize_async)) produced, or a
    /// request extension that [`SockJs::carry`](crate::SockJs::carry)
    /// copied (one set by middleware, say).
    ///
    /// Values are found by their exact type: `None` for a `T` that is not
    /// the type the hook returned (a `String` where it returned a `User`,
    /// or a `&str`), so give the hook's `Ok` value a type of its own and
    /// read that type here. Where every session must have one (a hook that
    /// refuses whoever it cannot identify), a `None` is a bug to log, not
    /// a guest.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix::Actor;
    /// use actix_sockjs::{Session, SessionContext};
    ///
    /// /// Who the authorisation hook found.
    /// struct User(String);
    ///
    /// struct Chat;
    /// impl Actor for Chat {
    ///     type Context = SessionContext<Self>;
    /// }
    /// impl Session for Chat {
    ///     fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
    ///         let name = ctx.request().get::<User>().map_or("anonymous", |u| u.0.as_str()).to_owned();
    ///         ctx.send(format!("welcome, {name}"));
    ///     }
    ///     fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
    /// }
    /// ```
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        let values = self.values.as_deref()?;
        let (_, value) = values.iter().find(|(t, _)| *t == TypeId::of::<T>())?;
        value.downcast_ref::<T>()
    }

    /// Where the addresses start.
    fn addresses_at(&self) -> usize {
        self.path_len as usize + self.query_len as usize
    }

    fn bytes(&self, from: usize, len: u32) -> &[u8] {
        self.data.get(from..from + len as usize).unwrap_or_default()
    }

    fn text(&self, from: usize, len: u32) -> &str {
        std::str::from_utf8(self.bytes(from, len)).unwrap_or_default()
    }

    /// Every header as (lower-case name, raw value), in request order.
    fn header_records(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let start = self.addresses_at() + usize::from(self.peer_len) + usize::from(self.client_len);
        let start = start.min(self.data.len());
        self.data[start..].split(|b| *b == b'\n').filter_map(|record| {
            let colon = record.iter().position(|b| *b == b':')?;
            let name = std::str::from_utf8(&record[..colon]).ok()?;
            Some((name, &record[colon + 1..]))
        })
    }

    /// The request headers, as a `HeaderMap` (built at the first call).
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext};
    /// # struct S;
    /// # impl Actor for S { type Context = SessionContext<Self>; }
    /// impl Session for S {
    ///     fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
    ///         // Every value of a header sent more than once.
    ///         let languages: Vec<_> = ctx.request().headers().get_all("accept-language").collect();
    ///         let _ = languages;
    ///     }
    ///     # fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
    /// }
    /// ```
    pub fn headers(&self) -> &HeaderMap {
        self.map.get_or_init(|| {
            let mut map = HeaderMap::new();
            for (name, value) in self.header_records() {
                if let (Ok(name), Ok(value)) = (HeaderName::from_str(name), HeaderValue::from_bytes(value)) {
                    map.append(name, value);
                }
            }
            Box::new(map)
        })
    }

    /// The first value of one request header (names are case-insensitive),
    /// if it is UTF-8 text; [`headers`](Self::headers) has every value as
    /// sent.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext};
    /// # struct S;
    /// # impl Actor for S { type Context = SessionContext<Self>; }
    /// impl Session for S {
    ///     fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
    ///         let agent = ctx.request().header("User-Agent").unwrap_or("unknown");
    ///         log::debug!("{} opened by {agent}", ctx.session_tag());
    ///     }
    ///     # fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
    /// }
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_records()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The address of the connected peer (a proxy's address behind a proxy).
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext};
    /// # struct S;
    /// # impl Actor for S { type Context = SessionContext<Self>; }
    /// impl Session for S {
    ///     fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
    ///         // A proxy's address when there is one: see `client_ip` for the client's.
    ///         if let Some(peer) = ctx.request().peer_addr() {
    ///             log::debug!("connected from {peer}");
    ///         }
    ///     }
    ///     # fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
    /// }
    /// ```
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        read_socket(self.bytes(self.addresses_at(), self.peer_len.into()))
    }

    /// The client's address: the peer's, or the one a trusted proxy reported
    /// (see [`Config::trusted_proxies`](crate::Config::trusted_proxies)).
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext};
    /// # struct S;
    /// # impl Actor for S { type Context = SessionContext<Self>; }
    /// impl Session for S {
    ///     fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
    ///         let from = ctx.request().client_ip().map_or("unknown".to_owned(), |ip| ip.to_string());
    ///         log::info!("{} opened from {from}", ctx.session_tag());
    ///     }
    ///     # fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
    /// }
    /// ```
    pub fn client_ip(&self) -> Option<IpAddr> {
        if self.client_len == 0 {
            return self.peer_addr().map(|a| a.ip());
        }
        let at = self.addresses_at() + usize::from(self.peer_len);
        read_ip(self.bytes(at, self.client_len.into()))
    }

    /// The request path, as sent (not percent-decoded).
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext};
    /// # struct S;
    /// # impl Actor for S { type Context = SessionContext<Self>; }
    /// impl Session for S {
    ///     fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
    ///         // `/echo/000/abc/xhr`, `/echo/000/abc/websocket`, ... : the transport is the last segment.
    ///         let transport = ctx.request().path().rsplit('/').next().unwrap_or_default();
    ///         let _ = transport;
    ///     }
    ///     # fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
    /// }
    /// ```
    pub fn path(&self) -> &str {
        self.text(0, self.path_len)
    }

    /// The raw query string, without `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext};
    /// # struct S;
    /// # impl Actor for S { type Context = SessionContext<Self>; }
    /// impl Session for S {
    ///     fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
    ///         // sockjs-client passes the query of the URL it was given to every request.
    ///         let raw = ctx.request().query_string().to_owned();
    ///         let _ = raw;
    ///     }
    ///     # fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
    /// }
    /// ```
    pub fn query_string(&self) -> &str {
        self.text(self.path_len as usize, self.query_len)
    }

    /// The value of one query parameter, percent-decoded.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext};
    /// # struct S;
    /// # impl Actor for S { type Context = SessionContext<Self>; }
    /// impl Session for S {
    ///     fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
    ///         // new SockJS("/echo?room=lobby")
    ///         let room = ctx.request().query("room").unwrap_or_else(|| "lobby".to_owned());
    ///         ctx.join(room);
    ///     }
    ///     # fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
    /// }
    /// ```
    pub fn query(&self, name: &str) -> Option<String> {
        crate::util::query_param(self.query_string(), name)
    }

    /// The value of one cookie of the request's `Cookie` headers (`None`
    /// when [`Config::keep_headers`](crate::Config::keep_headers) does not
    /// keep `Cookie`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext};
    /// # struct S;
    /// # impl Actor for S { type Context = SessionContext<Self>; }
    /// impl Session for S {
    ///     fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
    ///         if ctx.request().cookie("session").is_none() {
    ///             ctx.close(4401, "Log in first");
    ///         }
    ///     }
    ///     # fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
    /// }
    /// ```
    pub fn cookie(&self, name: &str) -> Option<&str> {
        let values = self
            .header_records()
            .filter(|(k, _)| *k == COOKIE.as_str())
            .filter_map(|(_, v)| std::str::from_utf8(v).ok());
        crate::util::cookie_in(values, name)
    }
}

thread_local! {
    /// Where a worker writes a request's facts before it copies them out
    /// ([`RequestInfo::from_request`]).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The most the scratch buffer keeps between requests (a request head can
/// be up to actix-web's 128 KiB limit; most are well under 4 KiB).
const SCRATCH_KEPT: usize = 16 * 1024;

/// Appends an IP address's octets: 4 for IPv4, 16 for IPv6.
fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
    }
}

/// Appends a socket address as bytes, not text (formatting one took
/// several hundred instructions of each session's set-up): its IP's octets
/// ([`put_ip`]), the port, then for IPv6 the flow label and the scope id,
/// big-endian. So 6 bytes for IPv4 and 26 for IPv6; [`read_socket`] tells
/// them apart by length.
fn put_socket(out: &mut Vec<u8>, addr: SocketAddr) {
    put_ip(out, addr.ip());
    out.extend_from_slice(&addr.port().to_be_bytes());
    if let SocketAddr::V6(v6) = addr {
        out.extend_from_slice(&v6.flowinfo().to_be_bytes());
        out.extend_from_slice(&v6.scope_id().to_be_bytes());
    }
}

/// The IP address [`put_ip`] wrote, if `bytes` is one.
fn read_ip(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
}

/// The socket address [`put_socket`] wrote, if `bytes` is one.
fn read_socket(bytes: &[u8]) -> Option<SocketAddr> {
    let word = |at: usize| Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    match bytes.len() {
        6 => Some(SocketAddr::new(read_ip(&bytes[..4])?, u16::from_be_bytes([bytes[4], bytes[5]]))),
        26 => {
            let ip = <[u8; 16]>::try_from(&bytes[..16]).ok()?;
            let port = u16::from_be_bytes([bytes[16], bytes[17]]);
            Some(SocketAddr::V6(SocketAddrV6::new(ip.into(), port, word(18)?, word(22)?)))
        }
        _ => None,
    }
}

/// The WebSocket handshake's own headers, which mean nothing once the
/// socket is open: not kept (a browser's come to ~150 bytes per session).
/// `Sec-WebSocket-Protocol` is kept.
fn is_handshake_header(name: &HeaderName) -> bool {
    use actix_web::http::header::{
        CONNECTION, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
    };
    [CONNECTION, UPGRADE, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, SEC_WEBSOCKET_EXTENSIONS].contains(name)
}

/// Header values `Debug` hides: credentials (a WebSocket client that
/// cannot set `Authorization` may carry a token as its subprotocol).
const HIDDEN_HEADERS: [&str; 4] =
    ["authorization", "cookie", "proxy-authorization", "sec-websocket-protocol"];

/// What `Debug` shows in place of a hidden value.
const HIDDEN: &str = "<hidden>";

/// Shows the path (a session URL's id as its tag), the query's names, the
/// headers (credentials' values hidden) and the addresses: what a log line
/// may carry. The id, query values, cookies and credentials are what a
/// session or a user is reached with.
impl fmt::Debug for RequestInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = match self.id_in_path {
            true => log_path(self.path()),
            false => Cow::Borrowed(self.path()),
        };
        // A part without `=` may be a token too (`?s3cr3t`).
        let query: Vec<_> = (self.query_string().split('&'))
            .filter(|pair| !pair.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) => format!("{name}={HIDDEN}"),
                None => HIDDEN.to_owned(),
            })
            .collect();
        let headers: Vec<_> = self
            .header_records()
            .map(|(k, v)| match HIDDEN_HEADERS.contains(&k) {
                true => (k, HIDDEN.into()),
                false => (k, String::from_utf8_lossy(v)),
            })
            .collect();
        f.debug_struct("RequestInfo")
            .field("path", &path)
            .field("query", &query.join("&"))
            .field("headers", &headers)
            .field("peer_addr", &self.peer_addr())
            .field("client_ip", &self.client_ip())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn request_facts_survive_the_compact_copy() {
        let req = TestRequest::get()
            .uri("/chat/000/abc/websocket?token=a%20b&x=1")
            .insert_header(("Cookie", "a=1; auth=xyz"))
            .append_header(("Cookie", "theme=dark"))
            .insert_header(("X-User", "ann"))
            .insert_header(("X-Raw", HeaderValue::from_bytes(b"caf\xe9").unwrap()))
            .insert_header(("X-Empty", ""))
            .peer_addr("10.1.2.3:4567".parse().unwrap())
            .to_http_request();
        let info = RequestInfo::from_request(&req, Some("1.2.3.4".parse().unwrap()), None);
        assert_eq!(info.path(), "/chat/000/abc/websocket");
        assert_eq!(info.query_string(), "token=a%20b&x=1");
        assert_eq!(info.query("token").as_deref(), Some("a b"));
        assert_eq!(info.header("x-user"), Some("ann"));
        assert_eq!(info.header("X-USER"), Some("ann"));
        assert_eq!(info.header("x-empty"), Some(""));
        assert_eq!(info.header("x-raw"), None, "not UTF-8");
        assert_eq!(info.headers().get("x-raw").map(HeaderValue::as_bytes), Some(&b"caf\xe9"[..]));
        assert_eq!(info.header("missing"), None);
        assert_eq!(info.cookie("auth"), Some("xyz"));
        assert_eq!(info.cookie("theme"), Some("dark"), "a second Cookie header");
        assert_eq!(info.cookie("nope"), None);
        assert_eq!(info.headers().get_all("cookie").count(), 2);
        assert_eq!(info.headers().len(), req.headers().len());

        let upgrade = TestRequest::get()
            .insert_header(("Upgrade", "websocket"))
            .insert_header(("Connection", "Upgrade"))
            .insert_header(("Sec-WebSocket-Key", "x3JJHMbDL1EzLkh9GBhXDw=="))
            .insert_header(("Sec-WebSocket-Version", "13"))
            .insert_header(("Sec-WebSocket-Extensions", "permessage-deflate"))
            .insert_header(("Sec-WebSocket-Protocol", "chat"))
            .insert_header(("Origin", "https://app.example.com"))
            .to_http_request();
        let ws = RequestInfo::from_request(&upgrade, None, None);
        assert_eq!(ws.header("upgrade"), None, "handshake headers are not kept");
        assert_eq!(ws.header("sec-websocket-key"), None);
        assert_eq!(ws.header("sec-websocket-protocol"), Some("chat"));
        assert_eq!(ws.header("origin"), Some("https://app.example.com"));
        assert_eq!(ws.headers().len(), 2);
        assert_eq!(info.peer_addr(), Some("10.1.2.3:4567".parse().unwrap()));
        assert_eq!(info.client_ip(), Some("1.2.3.4".parse().unwrap()));
        let copy = info.clone();
        assert_eq!(format!("{copy:?}"), format!("{info:?}"));
        assert!(format!("{info:?}").contains("x-user"));

        let direct = TestRequest::get().peer_addr("10.1.2.3:4567".parse().unwrap()).to_http_request();
        let info = RequestInfo::from_request(&direct, Some("10.1.2.3".parse().unwrap()), None);
        assert_eq!(info.client_ip(), Some("10.1.2.3".parse().unwrap()), "the peer's own address");

        let bare = RequestInfo::from_request(&TestRequest::get().uri("/").to_http_request(), None, None);
        assert_eq!((bare.path(), bare.query_string(), bare.header("host")), ("/", "", None));
        assert_eq!((bare.peer_addr(), bare.client_ip()), (None, None));
        assert!(bare.headers().is_empty());
    }

    #[test]
    fn log_paths_hide_session_ids() {
        let tag = SessionTag::of("s3cr3t");
        for (path, logged) in [
            ("/chat/000/s3cr3t/xhr", format!("/chat/000/{tag}/xhr")),
            ("/chat/000/s3cr3t/jsonp_send/", format!("/chat/000/{tag}/jsonp_send/")),
            ("/000/s3cr3t/websocket", format!("/000/{tag}/websocket")),
            ("/t/acme/chat/000/s3cr3t/eventsource", format!("/t/acme/chat/000/{tag}/eventsource")),
            // Not session URLs.
            ("/chat/info", "/chat/info".into()),
            ("/chat/iframe.html", "/chat/iframe.html".into()),
            ("/chat/websocket", "/chat/websocket".into()),
            ("/chat/000/s3cr3t/unknown", "/chat/000/s3cr3t/unknown".into()),
            ("/chat//s3cr3t/xhr", format!("/chat//{tag}/xhr")),
            ("/chat/000//xhr", "/chat/000//xhr".into()),
            ("", String::new()),
        ] {
            assert_eq!(log_path(path), logged, "{path}");
        }
        // The documented guess: a raw WebSocket under a two-segment prefix.
        assert_eq!(log_path("/a/b/websocket"), format!("/a/{}/websocket", SessionTag::of("b")));
    }

    #[test]
    fn debug_hides_the_session_id_query_values_and_credentials() {
        let req = TestRequest::get()
            .uri("/chat/000/s3cr3t-id/xhr_streaming?token=t0ken-value&fl4g-value&c=cb")
            .insert_header(("Cookie", "auth=c00kie-value"))
            .insert_header(("Authorization", "Bearer b3arer-value"))
            .insert_header(("Proxy-Authorization", "Basic pr0xy-value"))
            .insert_header(("Sec-WebSocket-Protocol", "pr0tocol-value"))
            .insert_header(("User-Agent", "test/1.0"))
            .peer_addr("10.1.2.3:4567".parse().unwrap())
            .to_http_request();
        let shown = format!("{:?}", RequestInfo::from_request(&req, None, None).with_id_in_path());
        let secrets =
            ["s3cr3t-id", "t0ken-value", "fl4g-value", "c00kie-value", "b3arer-value", "pr0xy-value"];
        for secret in secrets.iter().chain(&["pr0tocol-value", "=cb"]) {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        let tag = crate::SessionTag::of("s3cr3t-id").to_string();
        for shows in [format!("/chat/000/{tag}/xhr_streaming"), "token=<hidden>&<hidden>&c=<hidden>".into()] {
            assert!(shown.contains(&shows), "{shows} not in {shown}");
        }
        for shows in ["(\"cookie\", \"<hidden>\")", "\"test/1.0\"", "10.1.2.3:4567"] {
            assert!(shown.contains(shows), "{shows} not in {shown}");
        }
        // One trailing slash (the router takes it). An id written with `%`
        // escapes shows the tag of its escaped form, as `log_path` does.
        let slashed = TestRequest::get().uri("/chat/000/s3cr3t-i%71/xhr/").to_http_request();
        let shown = format!("{:?}", RequestInfo::from_request(&slashed, None, None).with_id_in_path());
        let tag = crate::SessionTag::of("s3cr3t-i%71");
        assert!(shown.contains(&format!("\"/chat/000/{tag}/xhr/\"")), "{shown}");
        // A raw WebSocket's path has no id: shown whole.
        let raw = TestRequest::get().uri("/a/b/websocket").to_http_request();
        let shown = format!("{:?}", RequestInfo::from_request(&raw, None, None));
        assert!(shown.contains("\"/a/b/websocket\""), "{shown}");
    }

    #[test]
    fn only_the_headers_named_to_keep_are_kept() {
        let req = TestRequest::get()
            .uri("/chat/000/abc/websocket?token=t")
            .insert_header(("Cookie", "auth=xyz"))
            .insert_header(("User-Agent", "test/1.0"))
            .insert_header(("Accept-Language", "fr"))
            .append_header(("Accept-Language", "en"))
            .insert_header(("Upgrade", "websocket"))
            .peer_addr("10.1.2.3:4567".parse().unwrap())
            .to_http_request();
        let config =
            crate::Config::default().keep_headers(["user-agent", "ACCEPT-LANGUAGE", "Upgrade", "X-Absent"]);
        let info =
            RequestInfo::from_request(&req, Some("1.2.3.4".parse().unwrap()), config.keep_headers.as_deref());
        assert_eq!(info.header("user-agent"), Some("test/1.0"));
        assert_eq!(info.headers().get_all("accept-language").count(), 2, "every value of a kept header");
        assert_eq!(info.header("upgrade"), Some("websocket"), "named, so kept even though the handshake's");
        assert_eq!((info.cookie("auth"), info.header("cookie")), (None, None));
        assert_eq!(info.headers().len(), 4);
        assert_eq!((info.path(), info.query("token").as_deref()), ("/chat/000/abc/websocket", Some("t")));
        assert_eq!(info.peer_addr(), Some("10.1.2.3:4567".parse().unwrap()), "addresses are kept anyway");
        assert_eq!(info.client_ip(), Some("1.2.3.4".parse().unwrap()));

        let none = crate::Config::default().keep_headers(Vec::<String>::new());
        let bare = RequestInfo::from_request(&req, None, none.keep_headers.as_deref());
        assert!(bare.headers().is_empty());
        assert_eq!(bare.query_string(), "token=t");
        assert_eq!(bare.peer_addr(), Some("10.1.2.3:4567".parse().unwrap()));
    }

    #[test]
    fn a_name_that_is_no_header_name_is_a_configuration_error() {
        for name in ["user agent", "", "a:b", "caf\u{e9}"] {
            let panic = std::panic::catch_unwind(|| crate::Config::default().keep_headers(["ok", name]))
                .expect_err("a configuration error");
            let text = panic.downcast_ref::<String>().map(String::as_str).unwrap_or_default();
            assert_eq!(text, format!("Config::keep_headers: {name:?} is not a header name"));
        }
    }

    #[test]
    fn an_address_reads_back_as_it_was_written() {
        for addr in [
            "0.0.0.0:0",
            "127.0.0.1:8080",
            "255.255.255.255:65535",
            "[::1]:443",
            "[2001:db8::ff00:42:8329]:1",
            "[::ffff:192.0.2.128]:80",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535",
        ] {
            let mut addr: SocketAddr = addr.parse().unwrap();
            if let SocketAddr::V6(v6) = &mut addr {
                v6.set_flowinfo(0x000a_bcde);
            }
            let (mut socket, mut ip) = (Vec::new(), Vec::new());
            put_socket(&mut socket, addr);
            put_ip(&mut ip, addr.ip());
            assert_eq!(read_socket(&socket), Some(addr));
            assert_eq!(read_ip(&ip), Some(addr.ip()));
            assert_eq!((read_socket(&ip), read_ip(&socket)), (None, None), "each length means one kind");
        }
        assert_eq!((read_socket(&[]), read_ip(&[1, 2, 3])), (None, None));
    }
}
