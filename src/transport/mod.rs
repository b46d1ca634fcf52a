//! The transports, described once: [`TABLE`] has a row for every URL a
//! session is reached by (docs/protocol.md §3.2, §6). Routes are registered
//! from it, `/info` is answered from it, and metrics are labelled by its
//! [`Transport`]s. Adding a transport is one row plus its [`Framing`].
//!
//! - [`http`]: the HTTP receivers (one mechanism, parameterised by a row)
//!   and the two sending URLs;
//! - [`websocket`]: the SockJS and raw WebSockets;
//! - [`hixie76`]: the legacy WebSocket handshake on the SockJS URL;
//! - [`meta`]: the endpoint's own URLs (greeting, `/info`, iframe page,
//!   preflights, 404 and 405).

use actix_web::http::Method;

use crate::{config::Config, endpoint::JAVASCRIPT, protocol::Transport, receiver::Framing};

pub(crate) mod hixie76;
pub(crate) mod http;
pub(crate) mod meta;
pub(crate) mod websocket;

/// One URL of a transport.
#[derive(Debug)]
pub(crate) struct Row {
    /// The transport the URL belongs to: switched off with it, and its
    /// metrics label.
    pub(crate) transport: Transport,
    /// The last segment of `/<server>/<session>/<path>`; the raw WebSocket
    /// is `<prefix>/<path>`.
    pub(crate) path: &'static str,
    /// The method that does the work; answers to others are 405 with this
    /// `Allow` list.
    pub(crate) method: Method,
    pub(crate) allow: &'static str,
    pub(crate) role: Role,
}

impl Row {
    /// Whether the URL is offered under `config`: with its transport, but
    /// `xhr_send` with any transport whose client sends through it
    /// (sockjs-client's xhr-polling, xhr-streaming, and the eventsource
    /// and htmlfile ones behind an iframe), so that switching polling off
    /// leaves the streaming transports able to send.
    pub(crate) fn enabled(&self, config: &Config) -> bool {
        match self.role {
            Role::Send(Sending::Xhr) => XHR_SENDERS.iter().any(|t| config.is_enabled(*t)),
            _ => config.is_enabled(self.transport),
        }
    }
}

/// The transports whose clients send with `xhr_send`.
const XHR_SENDERS: [Transport; 4] =
    [Transport::XhrPolling, Transport::XhrStreaming, Transport::EventSource, Transport::HtmlFile];

/// What a URL does.
#[derive(Debug)]
pub(crate) enum Role {
    /// An HTTP receiver: frames go out in its response.
    Receive(Receiving),
    /// Client messages come in its body.
    Send(Sending),
    /// The SockJS WebSocket (and, on the same URL, hixie-76).
    WebSocket,
    /// The raw WebSocket, without SockJS frames.
    RawWebSocket,
}

/// How an HTTP receiver answers.
#[derive(Debug)]
pub(crate) struct Receiving {
    pub(crate) content_type: &'static str,
    /// What the response starts with before any frame.
    pub(crate) prelude: Prelude,
    /// Whether the answer carries CORS headers (the iframe and script
    /// transports are same-origin or need none).
    pub(crate) cors: bool,
    /// Streaming: the response stays open until the response limit;
    /// polling: it ends after one frame.
    pub(crate) streaming: bool,
    /// Whether the URL needs a `c` (or `callback`) query parameter.
    pub(crate) callback: bool,
    /// How a frame is wrapped.
    pub(crate) framing: Framing,
}

/// 2,048 `h` and a newline, so that browsers start handing the stream to
/// the page (docs/protocol.md §6.6); static, so that a request costs no
/// allocation for it.
static XHR_STREAMING_PRELUDE: [u8; 2049] = {
    let mut prelude = [b'h'; 2049];
    prelude[2048] = b'\n';
    prelude
};

/// What an HTTP receiver's response starts with.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Prelude {
    None,
    /// Fixed bytes.
    Bytes(&'static [u8]),
    /// The htmlfile page around the callback (docs/protocol.md §6.8).
    HtmlFile,
}

/// How a sending URL reads its payload and answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sending {
    /// The body is the payload; success is 204.
    Xhr,
    /// A form's `d` field, or the raw body, is the payload; success is 200 `ok`.
    Jsonp,
}

/// Every transport URL, in the order the routes are registered.
pub(crate) static TABLE: [Row; 9] = [
    Row {
        transport: Transport::WebSocket,
        path: "websocket",
        method: Method::GET,
        allow: "GET",
        role: Role::WebSocket,
    },
    Row {
        transport: Transport::RawWebSocket,
        path: "websocket",
        method: Method::GET,
        allow: "GET",
        role: Role::RawWebSocket,
    },
    Row {
        transport: Transport::XhrPolling,
        path: "xhr",
        method: Method::POST,
        allow: "OPTIONS, POST",
        role: Role::Receive(Receiving {
            content_type: JAVASCRIPT,
            prelude: Prelude::None,
            cors: true,
            streaming: false,
            callback: false,
            framing: Framing::Xhr,
        }),
    },
    Row {
        transport: Transport::XhrPolling,
        path: "xhr_send",
        method: Method::POST,
        allow: "OPTIONS, POST",
        role: Role::Send(Sending::Xhr),
    },
    Row {
        transport: Transport::XhrStreaming,
        path: "xhr_streaming",
        method: Method::POST,
        allow: "OPTIONS, POST",
        role: Role::Receive(Receiving {
            content_type: JAVASCRIPT,
            prelude: Prelude::Bytes(&XHR_STREAMING_PRELUDE),
            cors: true,
            streaming: true,
            callback: false,
            framing: Framing::Xhr,
        }),
    },
    Row {
        transport: Transport::EventSource,
        path: "eventsource",
        method: Method::GET,
        allow: "GET",
        role: Role::Receive(Receiving {
            content_type: "text/event-stream",
            prelude: Prelude::Bytes(b"\r\n"),
            cors: true,
            streaming: true,
            callback: false,
            framing: Framing::EventSource,
        }),
    },
    Row {
        transport: Transport::HtmlFile,
        path: "htmlfile",
        method: Method::GET,
        allow: "GET",
        role: Role::Receive(Receiving {
            content_type: "text/html; charset=UTF-8",
            prelude: Prelude::HtmlFile,
            cors: false,
            streaming: true,
            callback: true,
            framing: Framing::HtmlFile,
        }),
    },
    Row {
        transport: Transport::JsonpPolling,
        path: "jsonp",
        method: Method::GET,
        allow: "GET",
        role: Role::Receive(Receiving {
            content_type: JAVASCRIPT,
            prelude: Prelude::None,
            cors: false,
            streaming: false,
            callback: true,
            framing: Framing::Jsonp,
        }),
    },
    Row {
        transport: Transport::JsonpPolling,
        path: "jsonp_send",
        method: Method::POST,
        allow: "POST",
        role: Role::Send(Sending::Jsonp),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transport_has_a_row_and_rows_are_unique() {
        for transport in Transport::ALL {
            assert!(TABLE.iter().any(|row| row.transport == transport), "{transport} has no row");
        }
        for (i, a) in TABLE.iter().enumerate() {
            for b in &TABLE[i + 1..] {
                let raw = |r: &Row| matches!(r.role, Role::RawWebSocket);
                assert!(a.path != b.path || raw(a) != raw(b), "two rows for {}", a.path);
            }
            assert!(a.allow.contains(a.method.as_str()));
        }
    }
}
