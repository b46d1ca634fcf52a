//! Per-endpoint options.

use std::time::Duration;

/// A SockJS transport that can be switched off with [`Config::disable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// The SockJS-framed WebSocket (`/<server>/<session>/websocket`).
    WebSocket,
    /// XHR long-polling (`xhr` and `xhr_send`).
    XhrPolling,
    /// XHR streaming (`xhr_streaming`).
    XhrStreaming,
    /// EventSource (`eventsource`).
    EventSource,
    /// The htmlfile iframe transport (`htmlfile`).
    HtmlFile,
    /// JSONP polling (`jsonp` and `jsonp_send`).
    JsonpPolling,
}

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
    pub(crate) websocket: bool,
    pub(crate) raw_websocket: bool,
    pub(crate) disabled: Vec<Transport>,
    pub(crate) sockjs_url: String,
    pub(crate) cookie_needed: bool,
    pub(crate) max_queue_bytes: usize,
    pub(crate) max_message_bytes: usize,
}

/// The client script the iframe page loads unless told otherwise.
pub const DEFAULT_SOCKJS_URL: &str = "https://cdn.jsdelivr.net/npm/sockjs-client@1.6.1/dist/sockjs.min.js";

impl Default for Config {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(25),
            disconnect_delay: Duration::from_secs(5),
            response_limit: 128 * 1024,
            websocket: true,
            raw_websocket: true,
            disabled: Vec::new(),
            sockjs_url: DEFAULT_SOCKJS_URL.to_owned(),
            cookie_needed: false,
            max_queue_bytes: 1024 * 1024,
            max_message_bytes: 1024 * 1024,
        }
    }
}

impl Config {
    /// How long a receiver may stay silent before the server writes a
    /// heartbeat frame `h`. Default: 25 seconds.
    pub fn heartbeat(mut self, delay: Duration) -> Self {
        self.heartbeat = delay;
        self
    }

    /// How long a session lives without an attached receiver before it is
    /// closed and removed. Default: 5 seconds.
    pub fn disconnect_delay(mut self, delay: Duration) -> Self {
        self.disconnect_delay = delay;
        self
    }

    /// How many bytes a streaming response (xhr_streaming, eventsource,
    /// htmlfile) carries before the server ends it and the client opens a
    /// new one. Default: 131072 (128 KiB).
    pub fn response_limit(mut self, bytes: usize) -> Self {
        self.response_limit = bytes;
        self
    }

    /// Whether the WebSocket transports (`websocket` and the raw
    /// `/websocket`) are offered; `/info` reports it. Default: on.
    pub fn websocket(mut self, enabled: bool) -> Self {
        self.websocket = enabled;
        self
    }

    /// Whether the raw WebSocket endpoint `<prefix>/websocket` (no SockJS
    /// framing) is offered. Has no effect while [`Config::websocket`] is off.
    /// Default: on.
    pub fn raw_websocket(mut self, enabled: bool) -> Self {
        self.raw_websocket = enabled;
        self
    }

    /// Switches one transport off: its URLs answer 404. Default: all on.
    pub fn disable(mut self, transport: Transport) -> Self {
        if transport == Transport::WebSocket {
            self.websocket = false;
        }
        if !self.disabled.contains(&transport) {
            self.disabled.push(transport);
        }
        self
    }

    /// The sockjs-client script the iframe page loads (iframe transports).
    /// It must start with `/` or `http`. Default: [`DEFAULT_SOCKJS_URL`].
    pub fn sockjs_url(mut self, url: impl Into<String>) -> Self {
        self.sockjs_url = url.into();
        self
    }

    /// Whether session responses carry a `JSESSIONID` cookie, for load
    /// balancers that route by it; `/info` reports it. Default: off.
    pub fn cookie_needed(mut self, enabled: bool) -> Self {
        self.cookie_needed = enabled;
        self
    }

    /// How many bytes of encoded messages may wait for a client: in a
    /// session's outgoing queue while no receiver is attached, and in the
    /// attached transport while the client does not read (a WebSocket or a
    /// stream whose socket is full). A session that would exceed it is
    /// closed with [`CloseReason::Overflow`](crate::CloseReason::Overflow)
    /// and `c[3008,"Outgoing queue overflow"]`, so memory per session stays
    /// bounded. Default: 1 MiB.
    pub fn max_queue_bytes(mut self, bytes: usize) -> Self {
        self.max_queue_bytes = bytes;
        self
    }

    /// The largest payload a client may send in one request or WebSocket
    /// message. Larger `xhr_send`/`jsonp_send` bodies get 413; larger
    /// WebSocket messages close the socket with 1009. Default: 1 MiB.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// The configured response limit in bytes.
    pub fn response_limit_bytes(&self) -> usize {
        self.response_limit
    }

    pub(crate) fn enabled(&self, transport: Transport) -> bool {
        !self.disabled.contains(&transport) && (transport != Transport::WebSocket || self.websocket)
    }
}
