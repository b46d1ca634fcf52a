//! Per-endpoint options.

use std::{net::IpAddr, str::FromStr, time::Duration};

use actix_web::http::header::HeaderName;

use crate::{admission::ProxyHeader, protocol::Transport};

/// The options of one SockJS endpoint.
///
/// Build it from [`Config::default`] and the builder methods; each states
/// its default.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use actix_sockjs::{Config, Transport};
///
/// let config = Config::default()
///     .heartbeat(Duration::from_secs(10))
///     .response_limit(64 * 1024)
///     .disable(Transport::HtmlFile);
/// assert_eq!(config.response_limit_bytes(), 64 * 1024);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Config {
    pub(crate) heartbeat: Duration,
    pub(crate) disconnect_delay: Duration,
    pub(crate) response_limit: usize,
    pub(crate) disabled: Vec<Transport>,
    pub(crate) sockjs_url: String,
    pub(crate) cookie_needed: bool,
    pub(crate) max_queue_bytes: usize,
    pub(crate) max_message_bytes: usize,
    pub(crate) max_send_bytes: usize,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) max_sessions: Option<usize>,
    pub(crate) max_sessions_per_ip: Option<usize>,
    pub(crate) trusted_proxies: Vec<IpAddr>,
    pub(crate) proxy_header: ProxyHeader,
    pub(crate) ping_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) bind: Option<BindTo>,
    /// `None`: every header (but the WebSocket handshake's own).
    pub(crate) keep_headers: Option<Vec<HeaderName>>,
}

/// What [`Config::bind_sessions`] binds an HTTP session to.
///
/// # Examples
///
/// ```
/// use actix_sockjs::{BindTo, Config};
///
/// let config = Config::default().bind_sessions(BindTo::Cookie);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BindTo {
    /// The client address that opened the session (the peer's, or what a
    /// [trusted proxy](Config::trusted_proxies) reports).
    Address,
    /// A cookie (`sockjs_bind`, `HttpOnly`, and `Secure` over https) the
    /// server sets on the response that opens the session; a browser that
    /// has one keeps it for its later sessions. Its value is taken from
    /// the browser when it has one, so whoever can set cookies for the
    /// site can choose it (README, "Security").
    Cookie,
    /// Both.
    AddressAndCookie,
}

impl BindTo {
    pub(crate) fn address(self) -> bool {
        matches!(self, Self::Address | Self::AddressAndCookie)
    }

    pub(crate) fn cookie(self) -> bool {
        matches!(self, Self::Cookie | Self::AddressAndCookie)
    }
}

/// What a send's body buys with its bytes: every byte received moves its
/// deadline 1/500 s later (Apache `mod_reqtimeout`'s `MinRate=500`), from
/// [`Config::request_timeout`] after its start, up to 4 times
/// `request_timeout` in all (see there for the rest of the rule). A body
/// slower than this on average falls behind and gets 408. Fixed, not a
/// setting.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// // A 64 KB message on a 1.4 KB/s uplink takes 46 s. Each second's
/// // 1,400 bytes buy more than a second, so the body never falls behind,
/// // and 46 s is within the cap: 4 times the default 30 s request_timeout.
/// let bought_per_second = Duration::from_secs_f64(1_400.0 / actix_sockjs::BODY_MIN_RATE as f64);
/// assert!(bought_per_second > Duration::from_secs(1));
/// assert!(Duration::from_secs(46) < 4 * Duration::from_secs(30));
/// // At 450 B/s the same body would take 142 s: past the cap, 408 at 120 s.
/// assert!(Duration::from_secs(64_000 / 450) > 4 * Duration::from_secs(30));
/// ```
pub const BODY_MIN_RATE: u64 = 500;

/// A body or a client message takes this many times `request_timeout` at
/// most, however fast its bytes come.
pub(crate) const BODY_TIME_CAP: u32 = 4;

/// The time `bytes` received buy a body or a client message
/// ([`BODY_MIN_RATE`]).
pub(crate) fn time_bought(bytes: u64) -> Duration {
    Duration::from_micros(bytes.saturating_mul(1_000_000 / BODY_MIN_RATE))
}

/// How long a body or a client message that has brought `bytes` may take
/// in all: `timeout` and what its bytes bought, up to [`BODY_TIME_CAP`]
/// times `timeout`.
pub(crate) fn time_allowed(timeout: Duration, bytes: u64) -> Duration {
    timeout.saturating_add(time_bought(bytes)).min(timeout.saturating_mul(BODY_TIME_CAP))
}

/// The client script the iframe page loads unless told otherwise.
///
/// # Examples
///
/// ```
/// assert!(actix_sockjs::DEFAULT_SOCKJS_URL.contains("sockjs-client@1.6.1"));
/// ```
pub const DEFAULT_SOCKJS_URL: &str = "https://cdn.jsdelivr.net/npm/sockjs-client@1.6.1/dist/sockjs.min.js";

impl Default for Config {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(25),
            disconnect_delay: Duration::from_secs(5),
            response_limit: 128 * 1024,
            disabled: Vec::new(),
            sockjs_url: DEFAULT_SOCKJS_URL.to_owned(),
            cookie_needed: false,
            max_queue_bytes: 1024 * 1024,
            max_message_bytes: 1024 * 1024,
            max_send_bytes: 1024 * 1024,
            allowed_origins: Vec::new(),
            max_sessions: None,
            max_sessions_per_ip: None,
            trusted_proxies: Vec::new(),
            proxy_header: ProxyHeader::XForwardedFor,
            ping_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            bind: None,
            keep_headers: None,
        }
    }
}

impl Config {
    /// How often the server writes a heartbeat frame `h` to an attached
    /// receiver (a long poll ends with it), whatever else was written, as
    /// sockjs-node does: no receiver is silent for longer, so proxies with
    /// idle timeouts leave it be. WebSockets get a ping in the same write
    /// (sockjs-node 0.3 pings a WebSocket instead of writing `h`).
    /// Default: 25 seconds.
    ///
    /// The heartbeats that fall due close together on one worker thread go
    /// out together: one may come up to a 64th of the delay late, a
    /// quarter of a second at most, never early. A worker holding 10,000
    /// idle sessions then wakes a few times a second for them, not once
    /// for each. Each heartbeat is timed from the one before (the first
    /// from the open frame, or from a poll's start). `Duration::MAX` means
    /// no heartbeat in effect; zero means one every millisecond.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// // Behind a proxy that drops connections idle for 15 s.
    /// let config = actix_sockjs::Config::default().heartbeat(Duration::from_secs(10));
    /// ```
    pub fn heartbeat(mut self, delay: Duration) -> Self {
        self.heartbeat = delay;
        self
    }

    /// How long a session lives without an attached receiver before it is
    /// closed and removed. Default: 5 seconds.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// // Mobile clients that pause between polls for longer.
    /// let config = actix_sockjs::Config::default().disconnect_delay(Duration::from_secs(30));
    /// ```
    pub fn disconnect_delay(mut self, delay: Duration) -> Self {
        self.disconnect_delay = delay;
        self
    }

    /// How many bytes a streaming response (xhr_streaming, eventsource,
    /// htmlfile) carries before the server ends it and the client opens a
    /// new one. Default: 131072 (128 KiB).
    ///
    /// # Examples
    ///
    /// ```
    /// // Streams reopen after 1 MiB: fewer reconnects, more memory in proxies that buffer.
    /// let config = actix_sockjs::Config::default().response_limit(1 << 20);
    /// assert_eq!(config.response_limit_bytes(), 1 << 20);
    /// ```
    pub fn response_limit(mut self, bytes: usize) -> Self {
        self.response_limit = bytes;
        self
    }

    /// Whether the WebSocket transports (`websocket` and the raw
    /// `/websocket`) are offered; `/info` reports it. Default: on.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_sockjs::{Config, Transport};
    ///
    /// // Behind a proxy that cannot pass WebSockets: clients go straight to HTTP.
    /// let config = Config::default().websocket(false);
    /// assert!(!config.is_enabled(Transport::WebSocket));
    /// ```
    pub fn websocket(self, enabled: bool) -> Self {
        self.switch(Transport::WebSocket, enabled)
    }

    /// Whether the raw WebSocket endpoint `<prefix>/websocket` (no SockJS
    /// framing) is offered. Has no effect while [`Config::websocket`] is off.
    /// Default: on.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_sockjs::{Config, Transport};
    ///
    /// let config = Config::default().raw_websocket(false);
    /// assert!(!config.is_enabled(Transport::RawWebSocket));
    /// assert!(config.is_enabled(Transport::WebSocket));
    /// ```
    pub fn raw_websocket(self, enabled: bool) -> Self {
        self.switch(Transport::RawWebSocket, enabled)
    }

    /// Switches one transport off: its URLs answer 404. Switching
    /// [`Transport::WebSocket`] off switches the raw WebSocket off too.
    /// `xhr_send` is polling's URL, but the xhr_streaming, eventsource and
    /// htmlfile clients send with it too: it answers while any of the four
    /// is on. Default: all on.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_sockjs::{Config, Transport};
    ///
    /// // No JSONP: no callback scripts from this endpoint.
    /// let config = Config::default().disable(Transport::JsonpPolling);
    /// assert!(!config.is_enabled(Transport::JsonpPolling));
    /// ```
    pub fn disable(self, transport: Transport) -> Self {
        self.switch(transport, false)
    }

    /// Switches a transport back on, undoing [`disable`](Self::disable)
    /// (or [`websocket(false)`](Self::websocket)) on a shared base
    /// configuration.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_sockjs::{Config, Transport};
    ///
    /// let strict = Config::default().disable(Transport::JsonpPolling).disable(Transport::HtmlFile);
    /// // One endpoint that old browsers reach: htmlfile again, JSONP still off.
    /// let legacy = strict.clone().enable(Transport::HtmlFile);
    /// assert!(legacy.is_enabled(Transport::HtmlFile));
    /// assert!(!legacy.is_enabled(Transport::JsonpPolling));
    /// ```
    pub fn enable(self, transport: Transport) -> Self {
        self.switch(transport, true)
    }

    fn switch(mut self, transport: Transport, enabled: bool) -> Self {
        self.disabled.retain(|t| *t != transport);
        if !enabled {
            self.disabled.push(transport);
        }
        self
    }

    /// Whether a transport is offered.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_sockjs::{Config, Transport};
    ///
    /// let config = Config::default().websocket(false);
    /// assert!(!config.is_enabled(Transport::RawWebSocket), "goes with the framed one");
    /// assert!(config.is_enabled(Transport::XhrStreaming));
    /// ```
    pub fn is_enabled(&self, transport: Transport) -> bool {
        let off = |t| self.disabled.contains(&t);
        let raw_without_websocket = transport == Transport::RawWebSocket && off(Transport::WebSocket);
        !off(transport) && !raw_without_websocket
    }

    /// The sockjs-client script the iframe page loads (iframe transports).
    /// It must start with `/` or `http` (the page is served under the
    /// endpoint's prefix, where a relative URL finds nothing; another value
    /// is logged as a warning by [`SockJs::config`](crate::SockJs::config)).
    /// Default: [`DEFAULT_SOCKJS_URL`].
    ///
    /// # Examples
    ///
    /// ```
    /// // The iframe page loads the client the application serves itself.
    /// let config = actix_sockjs::Config::default().sockjs_url("/static/sockjs.min.js");
    /// ```
    pub fn sockjs_url(mut self, url: impl Into<String>) -> Self {
        self.sockjs_url = url.into();
        self
    }

    /// Whether session responses carry a `JSESSIONID` cookie, for load
    /// balancers that route by it; `/info` reports it. Default: off. The
    /// cookie is `JSESSIONID=<value>; path=/`, the value being the request's
    /// own `JSESSIONID` (one a balancer set) or else `dummy`, as
    /// sockjs-node's `jsessionid: true` sends it.
    ///
    /// # Examples
    ///
    /// ```
    /// // Behind a balancer that keeps a session on one node by JSESSIONID.
    /// let config = actix_sockjs::Config::default().cookie_needed(true);
    /// ```
    pub fn cookie_needed(mut self, enabled: bool) -> Self {
        self.cookie_needed = enabled;
        self
    }

    /// How many bytes of encoded messages may wait for a client: in a
    /// session's outgoing queue while no receiver is attached, and in the
    /// attached transport while the client does not read (a WebSocket or a
    /// stream whose socket is full). A session that would exceed it is
    /// closed with [`CloseCause::Overflow`](crate::CloseCause::Overflow)
    /// and `c[3008,"Outgoing queue overflow"]`, so memory per session stays
    /// bounded. What the kernel's send buffer of the connection holds is
    /// not counted: a WebSocket whose client never reads takes that too
    /// (a few MB on Linux loopback) before its queue fills. Default: 1 MiB.
    ///
    /// # Examples
    ///
    /// ```
    /// // Clients that fall behind by 256 KiB are closed with 3008.
    /// let config = actix_sockjs::Config::default().max_queue_bytes(256 * 1024);
    /// ```
    pub fn max_queue_bytes(mut self, bytes: usize) -> Self {
        self.max_queue_bytes = bytes;
        self
    }

    /// The largest message a client may send, in bytes: a WebSocket
    /// message (the frame that carries it, fragments reassembled) over it
    /// closes the socket with 1009; an `xhr_send`/`jsonp_send` body with a
    /// message over it gets 413, and none of its messages is delivered.
    /// A send body carries every message sockjs-client queued while its
    /// previous send was in flight, so the body's own bound is
    /// [`max_send_bytes`](Self::max_send_bytes): with both at their
    /// defaults, two 600 KB messages a page sends while an earlier send is
    /// still in flight pass over a WebSocket, and over the HTTP transports
    /// travel in one 1.2 MB body that gets 413, where sockjs-client then
    /// closes the session (1006, "Sending error"). Raise `max_send_bytes`
    /// with this if clients send large messages in bursts. Default: 1 MiB.
    ///
    /// # Examples
    ///
    /// ```
    /// // Chat lines, not uploads.
    /// let config = actix_sockjs::Config::default().max_message_bytes(16 * 1024);
    /// ```
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// The largest `xhr_send`/`jsonp_send` body, in bytes, as it comes
    /// (JSON escapes, and a JSONP form's URL encoding, included); larger
    /// ones get 413. sockjs-client sends the messages its page queued
    /// while its previous send was in flight in one body: this bounds such
    /// a burst (each of its messages is held to
    /// [`max_message_bytes`](Self::max_message_bytes)). A body may be as
    /// large as `max_message_bytes`, whatever this says. A burst over it
    /// is refused whole: none of its messages is delivered, and
    /// sockjs-client closes the session (1006, "Sending error"), which
    /// over a WebSocket would have passed message by message. Default:
    /// 1 MiB.
    ///
    /// # Examples
    ///
    /// ```
    /// // Chat lines of up to 16 KiB, and bursts of up to 4 MiB of them.
    /// let config = actix_sockjs::Config::default()
    ///     .max_message_bytes(16 * 1024)
    ///     .max_send_bytes(4 * 1024 * 1024);
    /// ```
    pub fn max_send_bytes(mut self, bytes: usize) -> Self {
        self.max_send_bytes = bytes;
        self
    }

    /// What an `xhr_send`/`jsonp_send` body may weigh.
    pub(crate) fn send_body_limit(&self) -> usize {
        self.max_send_bytes.max(self.max_message_bytes)
    }

    /// The browser origins allowed to use the endpoint. Requests whose
    /// `Origin` header is not listed get 403 on `/info`, on every session
    /// URL and on WebSocket upgrades (cross-site WebSocket hijacking).
    /// Requests without `Origin` are served, but for a browser's script
    /// include from another site's page (JSONP polling; `Sec-Fetch-Site:
    /// cross-site` or `same-site`), which must have a `Referer` of a listed
    /// origin (any, with `*`): otherwise any page could read a JSONP
    /// session opened with the user's cookies. Browsers send `Sec-Fetch-Site` only to https
    /// (and localhost) URLs: over plain http, disable
    /// [`Transport::JsonpPolling`](crate::Transport::JsonpPolling) where
    /// sessions are opened with cookies. Entries are whole origins
    /// (`https://app.example.com`, `http://127.0.0.1:8080`, `null`), a
    /// subdomain pattern (`https://*.example.com`), or `*`.
    ///
    /// The iframe transports (iframe-eventsource, iframe-htmlfile,
    /// iframe-xhr-polling) send their requests from the iframe page this
    /// endpoint serves, so their `Origin` is the endpoint's own origin: list
    /// it too if clients may fall back to them. An entry that no browser's
    /// `Origin` can match (`app.example.com` without its scheme, a trailing
    /// `/`) is logged as a warning when the endpoint takes the
    /// configuration. Default: any origin.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = actix_sockjs::Config::default()
    ///     .allowed_origins(["https://app.example.com", "https://*.example.com"]);
    /// ```
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// The most sessions the endpoint holds at once; a request that would
    /// open one more gets 503. A closed HTTP session counts until its
    /// disconnect delay ends, while its client's next poll may still come
    /// for its close frame. Default: no limit.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = actix_sockjs::Config::default().max_sessions(50_000);
    /// ```
    pub fn max_sessions(mut self, sessions: usize) -> Self {
        self.max_sessions = Some(sessions);
        self
    }

    /// The most sessions one client address holds at once; a request that
    /// would open one more gets 429. The address is the peer's, or the one
    /// a [trusted proxy](Config::trusted_proxies) reports; IPv6 addresses
    /// count by their /64, which one client holds whole. Default: no limit.
    ///
    /// # Examples
    ///
    /// ```
    /// // Ten tabs per client address (per /64 for IPv6).
    /// let config = actix_sockjs::Config::default().max_sessions_per_ip(10);
    /// ```
    pub fn max_sessions_per_ip(mut self, sessions: usize) -> Self {
        self.max_sessions_per_ip = Some(sessions);
        self
    }

    /// Proxies whose [`proxy_header`](Config::proxy_header)
    /// (`X-Forwarded-For` unless set) is believed when telling the client's
    /// address (for the per-address cap, [`BindTo::Address`] and
    /// [`RequestInfo::client_ip`](crate::RequestInfo::client_ip)); from any
    /// other peer the header is ignored. The client's address is the last
    /// in the header that is not a trusted proxy's: each proxy appends the
    /// address it saw to what came before it, which the client may have
    /// written. An IPv4 address also matches its IPv6-mapped form
    /// (`::ffff:127.0.0.1`), as a dual-stack listener sees IPv4 peers.
    /// Default: none.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr};
    ///
    /// // The local haproxy reports the client address in X-Forwarded-For.
    /// let config = actix_sockjs::Config::default().trusted_proxies([IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    /// ```
    pub fn trusted_proxies<I: IntoIterator<Item = IpAddr>>(mut self, proxies: I) -> Self {
        self.trusted_proxies = proxies.into_iter().collect();
        self
    }

    /// The header the [trusted proxies](Config::trusted_proxies) write the
    /// client's address in. Only that header is read: a proxy passes the
    /// other one on as the client sent it, so reading it would let a client
    /// pick its own address (and get past the per-address cap and
    /// [`BindTo::Address`]). Default: [`ProxyHeader::XForwardedFor`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr};
    /// use actix_sockjs::{Config, ProxyHeader};
    ///
    /// let config = Config::default()
    ///     .trusted_proxies([IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))])
    ///     .proxy_header(ProxyHeader::Forwarded);
    /// ```
    pub fn proxy_header(mut self, header: ProxyHeader) -> Self {
        self.proxy_header = header;
        self
    }

    /// RFC 6455 WebSockets (SockJS and raw) ping the client every
    /// [heartbeat](Config::heartbeat) (hixie-76 sockets have no ping: they
    /// get the `h` heartbeat frame alone);
    /// a client that sends nothing (not even the pong) within this time
    /// after a ping is taken for gone and its session closes with
    /// [`CloseCause::Interrupted`](crate::CloseCause::Interrupted). The
    /// socket is sent `c[3000,"No response from heartbeat"]` (a raw
    /// WebSocket: a close frame with that code and reason), as by
    /// sockjs-node, for a client whose network comes back in time to read
    /// it, and the connection ends. Default: 10 seconds. Like the
    /// heartbeat, it may end up to a 64th of itself late (a quarter of a
    /// second at most).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let config = actix_sockjs::Config::default().ping_timeout(Duration::from_secs(20));
    /// ```
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.ping_timeout = timeout;
        self
    }

    /// How long the body of an `xhr_send` or `jsonp_send` request (and its
    /// wait for the session's send turn) may take, before its bytes buy
    /// more: each byte received moves the deadline 1/500 s later
    /// ([`BODY_MIN_RATE`](crate::BODY_MIN_RATE), Apache `mod_reqtimeout`'s
    /// `MinRate=500`), up to 4 times this in all; and the body fails once
    /// this passes with no byte coming, whatever its bytes bought. So a
    /// large message on a slow uplink gets through (64 KB at 1.4 KB/s takes
    /// 46 s, within the 120 s the default allows), while a client that
    /// trickles (one byte a second) or stalls gets 408 after about this
    /// long, and its connection is closed. A connection holds a body 4
    /// times this at most. A WebSocket's message read in part (a frame, or
    /// a fragmented message; a hixie-76 frame) has as long, measured from its
    /// first byte: this, plus 1/500 s for each byte since, up to 4 times
    /// this, and never this long with no byte (the clock stands still while
    /// the socket itself reads no more, its session's inbox full);
    /// checked at each heartbeat (with no heartbeat, when the socket next
    /// reads); later, the socket closes with 1008 `Message too slow` and
    /// the session as [`Interrupted`](crate::CloseCause::Interrupted). The 8-byte key of
    /// a hixie-76 handshake has this long to come (its connection is
    /// closed otherwise). Default: 30 seconds.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let config = actix_sockjs::Config::default().request_timeout(Duration::from_secs(10));
    /// ```
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Binds each HTTP session to the client that opened it: a request for
    /// the session from another address, or without the session's cookie,
    /// gets 404 as if the session did not exist. Anyone who learns a session
    /// id (from a log, a proxy, a shared link) can otherwise poll its
    /// messages and send into it; no other SockJS server guards this.
    ///
    /// Trade-offs: a mobile client that changes networks changes address
    /// and loses its session (it reconnects with a new one); behind a
    /// proxy, list it in [`trusted_proxies`](Config::trusted_proxies) or
    /// every client has the proxy's address; the cookie is only sent where
    /// the browser sends cookies. It is set without a `SameSite` attribute,
    /// which Chrome reads as `Lax` (since version 80), and browsers that
    /// block third-party cookies keep it from another site too: from a
    /// page on another site than the server it may not come back, and then
    /// every request after the first gets 404. Bind to the cookie only
    /// where page and server share a site; bind to the address otherwise.
    /// WebSocket sessions are one connection and need no binding.
    /// Default: not bound.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_sockjs::{BindTo, Config};
    ///
    /// let config = Config::default().bind_sessions(BindTo::AddressAndCookie);
    /// ```
    pub fn bind_sessions(mut self, to: BindTo) -> Self {
        self.bind = Some(to);
        self
    }

    /// Keeps only the named headers of the request that opens a session in
    /// its [`RequestInfo`](crate::RequestInfo), which the session holds for
    /// as long as it lives: exactly those, a handshake header too if named;
    /// an empty list keeps none. Names are case-insensitive. A second call
    /// replaces the list. The path, the query and the addresses are kept
    /// whatever this says.
    ///
    /// What is not kept is not there for the session factory, `on_open` or
    /// [`RequestInfo::cookie`](crate::RequestInfo::cookie) (`None`). To
    /// authenticate by a cookie you do not keep, read it in
    /// [`SockJs::authorize`](crate::SockJs::authorize), which sees the whole
    /// request, and hand the session what you found
    /// ([`RequestInfo::get`](crate::RequestInfo::get)); middleware's request
    /// extensions reach it through [`SockJs::carry`](crate::SockJs::carry).
    ///
    /// Memory: what is kept is copied as sent, so each idle session holds
    /// the bytes of its kept headers. Chrome's headers with a 200-byte
    /// cookie come to ~0.5 KB a session, and keeping `User-Agent` alone
    /// took 0.40 KB of RSS off each idle WebSocket session
    /// (`benches/README.md`); a large cookie weighs its size. Default: every
    /// header but the WebSocket handshake's own (`Connection`, `Upgrade`,
    /// `Sec-WebSocket-Key`, `-Version`, `-Extensions`).
    ///
    /// # Panics
    ///
    /// If a name is not a header name (empty, or with a space, a colon or
    /// another character a header name cannot hold): a configuration
    /// mistake, reported when the configuration is built.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext};
    /// # struct Chat;
    /// # impl Actor for Chat { type Context = SessionContext<Self>; }
    /// # impl Session for Chat { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
    /// use actix::Addr;
    /// use actix_sockjs::{Config, Refuse, SessionManager, SockJs};
    ///
    /// /// Who the token names.
    /// struct User(String);
    ///
    /// fn endpoint(manager: Addr<SessionManager<Chat>>) -> SockJs<Chat> {
    ///     // Sessions keep the user agent and the language, not the token:
    ///     // the hook reads it, and sessions find `User` with
    ///     // `ctx.request().get::<User>()`.
    ///     SockJs::new("/chat", manager)
    ///         .config(Config::default().keep_headers(["User-Agent", "accept-language"]))
    ///         .authorize(|req| match req.headers().get("authorization").and_then(|v| v.to_str().ok()) {
    ///             Some(token) => Ok(User(token.to_owned())),
    ///             None => Err(Refuse::close(4401, "Unauthorized")),
    ///         })
    /// }
    ///
    /// // No header at all:
    /// let bare = Config::default().keep_headers(Vec::<String>::new());
    /// ```
    pub fn keep_headers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let names = names.into_iter().map(|name| {
            let name = name.as_ref();
            match HeaderName::from_str(name) {
                Ok(header) => header,
                // A configuration mistake, reported as the `Config` is built.
                Err(_) => panic!("Config::keep_headers: {name:?} is not a header name"), // ok: see `# Panics`
            }
        });
        self.keep_headers = Some(names.collect());
        self
    }

    /// What in this configuration is almost surely a mistake: values that
    /// make every session or request fail, origins no browser sends, and a
    /// client script URL the iframe page cannot load.
    /// [`SockJs::config`](crate::SockJs::config) logs each as a warning.
    pub(crate) fn doubts(&self) -> Vec<String> {
        let mut doubts = Vec::new();
        let zero = [
            (self.heartbeat.is_zero(), "heartbeat is zero: heartbeats would be written without pause"),
            (self.disconnect_delay.is_zero(), "disconnect_delay is zero: an HTTP session would end between two polls, with what was queued for it"),
            (self.ping_timeout.is_zero(), "ping_timeout is zero: every WebSocket would be closed at its first heartbeat"),
            (self.request_timeout.is_zero(), "request_timeout is zero: every xhr_send and jsonp_send would time out, and every WebSocket message read in part"),
            (self.max_queue_bytes == 0, "max_queue_bytes is zero: every session would close (3008) at its first message"),
            (self.max_message_bytes == 0, "max_message_bytes is zero: every client message would be refused"),
            (self.max_sessions == Some(0), "max_sessions is zero: every session would be refused (503)"),
            (self.max_sessions_per_ip == Some(0), "max_sessions_per_ip is zero: every session would be refused (429)"),
        ];
        doubts.extend(zero.into_iter().filter(|(zero, _)| *zero).map(|(_, what)| what.to_owned()));
        if !(self.sockjs_url.starts_with('/') || self.sockjs_url.starts_with("http")) {
            doubts.push(format!(
                "sockjs_url {:?} starts with neither / nor http: the iframe page would load it relative to its own URL, under the endpoint's prefix, where nothing answers",
                self.sockjs_url
            ));
        }
        doubts.extend(self.allowed_origins.iter().filter(|entry| !origin_entry_can_match(entry)).map(|entry| {
            format!(
                "allowed_origins entry {entry:?} matches no Origin a browser sends (one is scheme://host or scheme://host:port, with no path; or *.domain after the scheme; or null)"
            )
        }));
        doubts
    }

    /// The configured response limit in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = actix_sockjs::Config::default();
    /// assert_eq!(config.response_limit_bytes(), 128 * 1024);
    /// ```
    pub fn response_limit_bytes(&self) -> usize {
        self.response_limit
    }

    pub(crate) fn caps(&self) -> crate::admission::Caps {
        crate::admission::Caps { max_sessions: self.max_sessions, max_per_ip: self.max_sessions_per_ip }
    }
}

/// Whether an `allowed_origins` entry can match an `Origin` header: `*`,
/// `null`, `scheme://host[:port]` or `scheme://*.domain[:port]`.
fn origin_entry_can_match(entry: &str) -> bool {
    if entry == "*" || entry.eq_ignore_ascii_case("null") || entry.eq_ignore_ascii_case("file://") {
        // `file://`: what some WebViews send for a page from a file.
        return true;
    }
    let Some((scheme, authority)) = entry.split_once("://") else { return false };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    let host = authority.strip_prefix("*.").unwrap_or(authority);
    let (host, port) = match host.rsplit_once(':') {
        // Not inside an IPv6 literal's brackets.
        Some((name, port)) if !host.ends_with(']') => (name, Some(port)),
        _ => (host, None),
    };
    // Browsers leave a scheme's default port out of `Origin`.
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => "80",
        "https" | "wss" => "443",
        _ => "",
    };
    let port_ok = port.is_none_or(|port| {
        port != default
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok()
    });
    scheme_ok && port_ok && !host.is_empty() && !host.contains(['/', '?', '#', '*', ' ', '@'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubts_name_what_makes_every_session_fail_and_origins_no_browser_sends() {
        assert!(Config::default().doubts().is_empty());
        let good = [
            "*",
            "null",
            "file://",
            "https://app.example.com",
            "HTTPS://App.example.com",
            "http://127.0.0.1:8080",
            "https://*.example.com",
            "https://*.example.com:8443",
            "http://[::1]:8080",
            "http://[::1]",
        ];
        assert!(
            Config::default().allowed_origins(good).doubts().is_empty(),
            "{:?}",
            Config::default().allowed_origins(good).doubts()
        );
        let bad = [
            "app.example.com",
            "http://app.example.com/",
            ":80",
            "*.example.com",
            "",
            "https://",
            "http://a.com:x",
            // A review: browsers send no default port, nor a signed one.
            "https://app.example.com:443",
            "http://app.example.com:80",
            "https://*.example.com:443",
            "https://a.example.com:+8443",
        ];
        let doubts = Config::default().allowed_origins(bad).doubts();
        assert_eq!(doubts.len(), bad.len(), "{doubts:?}");
        let zero = Config::default()
            .heartbeat(Duration::ZERO)
            .disconnect_delay(Duration::ZERO)
            .ping_timeout(Duration::ZERO)
            .request_timeout(Duration::ZERO)
            .max_queue_bytes(0)
            .max_message_bytes(0)
            .max_sessions(0)
            .max_sessions_per_ip(0);
        let doubts = zero.doubts();
        assert_eq!(doubts.len(), 8, "{doubts:?}");
        assert!(doubts[1].starts_with("disconnect_delay is zero"), "{doubts:?}");
        for url in ["/static/sockjs.min.js", "//cdn.example.com/sockjs.js", "https://cdn.example.com/s.js"] {
            assert!(Config::default().sockjs_url(url).doubts().is_empty(), "{url}");
        }
        let doubts = Config::default().sockjs_url("sockjs.min.js").doubts();
        assert_eq!(doubts.len(), 1, "{doubts:?}");
        assert!(doubts[0].starts_with("sockjs_url \"sockjs.min.js\" starts with neither"), "{doubts:?}");
    }
}
