//! Transports: how frames reach a client and how its messages reach a session.
//!
//! Every receiving transport is one [`Receiver`] with a different
//! [`Framing`]: the framing says how a frame is wrapped on the wire, whether
//! the response streams or polls, and what prelude it starts with. A
//! receiver is either a channel feeding an HTTP response body or a queue
//! feeding a WebSocket response body.

use std::{
    borrow::Cow,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use actix_web::web::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::protocol::{json_string, Escape};

pub use aborts::on_connect;
pub(crate) use aborts::PeerSocket;

mod aborts;
mod deadlines;
pub(crate) mod http;
pub(crate) mod websocket;

/// How a transport puts a frame on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Framing {
    /// xhr polling: frame + `\n`, one frame per response.
    Xhr,
    /// xhr streaming: frame + `\n`, streamed.
    XhrStreaming,
    /// EventSource: `data: ` + frame + `\r\n\r\n`, streamed.
    EventSource,
    /// htmlfile: a `<script>` block calling `p(...)`, streamed.
    HtmlFile,
    /// JSONP polling: `/**/cb(...);\r\n`, one frame per response.
    Jsonp(Box<str>),
    /// SockJS over WebSocket: one text message per frame.
    WebSocket,
    /// Raw WebSocket: one text message per application message, no frames.
    RawWebSocket,
    /// SockJS over a hixie-76 WebSocket: `\x00` + frame + `\xff`.
    Hixie76,
}

impl Framing {
    /// Whether the response ends after its first frame.
    pub(crate) fn polling(&self) -> bool {
        matches!(self, Self::Xhr | Self::Jsonp(_))
    }

    /// Whether the response limit applies.
    pub(crate) fn limited(&self) -> bool {
        matches!(self, Self::XhrStreaming | Self::EventSource | Self::HtmlFile)
    }

    /// Wraps one frame for an HTTP body.
    pub(crate) fn wrap(&self, frame: &str) -> Bytes {
        let mut out = String::with_capacity(frame.len() + 16);
        match self {
            Self::Xhr | Self::XhrStreaming => {
                out.push_str(frame);
                out.push('\n');
            }
            Self::EventSource => {
                out.push_str("data: ");
                // The browser client URI-decodes every EventSource message.
                for (i, part) in frame.split('%').enumerate() {
                    if i > 0 {
                        out.push_str("%25");
                    }
                    out.push_str(part);
                }
                out.push_str("\r\n\r\n");
            }
            Self::HtmlFile => {
                out.push_str("<script>\np(");
                out.push_str(&json_string(frame, Escape::Script));
                out.push_str(");\n</script>\r\n");
            }
            Self::Jsonp(callback) => {
                out.push_str("/**/");
                out.push_str(callback);
                out.push('(');
                out.push_str(&json_string(frame, Escape::Script));
                out.push_str(");\r\n");
            }
            Self::WebSocket | Self::RawWebSocket => out.push_str(frame),
            Self::Hixie76 => {
                let mut bytes = Vec::with_capacity(frame.len() + 2);
                bytes.push(0);
                bytes.extend_from_slice(frame.as_bytes());
                bytes.push(0xff);
                return Bytes::from(bytes);
            }
        }
        Bytes::from(out)
    }
}

/// What a session writes to a WebSocket transport. A text's length is its
/// weight in the queue: the session's view of what the client has not
/// taken yet.
#[derive(Debug)]
pub(crate) enum WsOut {
    /// One text message.
    Text(Box<str>),
    /// A close frame with a code and reason, then the end of the socket.
    /// (Boxed, and the text a `Box<str>`, so that a queued item takes 16 bytes.)
    Close(Box<(u16, String)>),
}

impl WsOut {
    /// What the item weighs in the queue.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::Close(_) => 0,
        }
    }
}

/// The session's end of its WebSocket transport's queue.
pub(crate) type WsWriter = crate::queue::Tx<WsOut>;
/// The transport's end.
pub(crate) type WsReader = crate::queue::Rx<WsOut>;

/// A new queue from a session to a WebSocket transport.
pub(crate) fn ws_pipe() -> (WsWriter, WsReader) {
    crate::queue::queue()
}

/// Bytes handed to a transport that it has not taken yet.
///
/// The session adds what it writes; the transport subtracts what it takes,
/// and it only takes while the client reads (actix-web stops polling a
/// response body whose socket is full). A client that stops reading
/// therefore shows as a growing backlog, which the session bounds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Backlog(Arc<AtomicUsize>);

impl Backlog {
    fn add(&self, n: usize) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Records that the transport took `n` bytes.
    pub(crate) fn take(&self, n: usize) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }

    /// Bytes written but not yet taken.
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// An HTTP response body made of the chunks a session writes, one chunk
/// per frame, that keeps the backlog up to date.
pub(crate) fn body_stream(mut rx: UnboundedReceiver<Bytes>, backlog: Backlog) -> impl Stream<Item = Bytes> {
    futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|chunk| chunk.inspect(|c| backlog.take(c.len())))
    })
}

/// The receiver went away before the frame could be handed over.
#[derive(Debug)]
pub(crate) struct Gone;

/// A receiving connection attached to a session: 16 bytes in the session,
/// as every idle session holds one; an HTTP receiver's state is boxed.
#[derive(Debug)]
pub(crate) enum Receiver {
    /// A WebSocket transport's queue; `raw`: without SockJS framing.
    Ws { tx: WsWriter, raw: bool },
    /// An HTTP response body.
    Http(Box<HttpReceiver>),
}

/// What an HTTP receiver keeps.
#[derive(Debug)]
pub(crate) struct HttpReceiver {
    framing: Framing,
    tx: UnboundedSender<Bytes>,
    written: usize,
    limit: usize,
    peer: Option<PeerSocket>,
    /// What the transport has not taken yet.
    backlog: Backlog,
}

/// The framings of WebSocket receivers, for [`Receiver::framing`].
static WEBSOCKET: Framing = Framing::WebSocket;
static RAW_WEBSOCKET: Framing = Framing::RawWebSocket;

impl Receiver {
    /// A receiver for an HTTP response body.
    pub(crate) fn http(
        framing: Framing,
        tx: UnboundedSender<Bytes>,
        backlog: Backlog,
        limit: usize,
        peer: Option<PeerSocket>,
    ) -> Self {
        let limit = if framing.limited() { limit } else { usize::MAX };
        Self::Http(Box::new(HttpReceiver { framing, tx, written: 0, limit, peer, backlog }))
    }

    /// A receiver for a WebSocket transport.
    pub(crate) fn ws(framing: Framing, tx: WsWriter) -> Self {
        Self::Ws { tx, raw: framing == Framing::RawWebSocket }
    }

    /// How frames are written to this receiver.
    pub(crate) fn framing(&self) -> &Framing {
        match self {
            Self::Ws { raw: false, .. } => &WEBSOCKET,
            Self::Ws { raw: true, .. } => &RAW_WEBSOCKET,
            Self::Http(http) => &http.framing,
        }
    }

    /// Bytes written to this receiver that its transport has not taken yet.
    pub(crate) fn backlog(&self) -> usize {
        match self {
            Self::Ws { tx, .. } => tx.load(),
            Self::Http(http) => http.backlog.get(),
        }
    }

    /// Writes one frame (or, on a raw WebSocket, one message). Returns
    /// whether the receiver is done after it: a polling response, or a
    /// streaming one that reached the response limit.
    ///
    /// An owned frame goes to a WebSocket without a copy.
    pub(crate) fn write<'a>(&mut self, frame: impl Into<Cow<'a, str>>) -> Result<bool, Gone> {
        let frame = frame.into();
        match self {
            Self::Http(http) => {
                let chunk = http.framing.wrap(&frame);
                let len = chunk.len();
                http.written += len;
                http.backlog.add(len);
                http.tx.send(chunk).map_err(|_| Gone)?;
                Ok(http.framing.polling() || http.written >= http.limit)
            }
            Self::Ws { tx, .. } => {
                let len = frame.len();
                tx.send_weighed(WsOut::Text(frame.into_owned().into_boxed_str()), len).map_err(|_| Gone)?;
                Ok(false)
            }
        }
    }

    /// Ends a WebSocket with a close frame; HTTP responses end when the
    /// receiver is dropped.
    pub(crate) fn close_socket(&self, code: u16, reason: &str) {
        if let Self::Ws { tx, .. } = self {
            let _ = tx.send(WsOut::Close(Box::new((code, reason.to_owned()))));
        }
    }

    /// Whether the client is still connected, as far as can be told now.
    ///
    /// With [`on_connect`](crate::on_connect) installed this peeks at the
    /// socket, which sees a client abort at once; without it only a dropped
    /// response counts (actix-web drops it at the client's EOF when
    /// half-closed connections are not allowed, else at the next write).
    pub(crate) fn alive(&self) -> bool {
        match self {
            Self::Ws { tx, .. } => !tx.is_closed(),
            Self::Http(http) => !http.tx.is_closed() && http.peer.as_ref().is_none_or(PeerSocket::alive),
        }
    }

    /// A future that completes when the transport drops its end; `None`
    /// for a WebSocket, whose transport reports its end with
    /// [`Command::ReceiverGone`](crate::session::Command::ReceiverGone)
    /// instead (a watcher costs a boxed future in every idle session).
    pub(crate) fn gone(&self) -> Option<impl std::future::Future<Output = ()> + 'static> {
        match self {
            Self::Http(http) => {
                let tx = http.tx.clone();
                Some(async move { tx.closed().await })
            }
            Self::Ws { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping() {
        assert_eq!(Framing::Xhr.wrap("o"), "o\n");
        assert_eq!(Framing::EventSource.wrap("a[\"100%\"]"), "data: a[\"100%25\"]\r\n\r\n");
        assert_eq!(Framing::HtmlFile.wrap("a[\"x\"]"), "<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n");
        assert_eq!(Framing::Jsonp("cb".into()).wrap("o"), "/**/cb(\"o\");\r\n");
        assert_eq!(
            Framing::Jsonp("x".into()).wrap("a[\"</script>\"]"),
            "/**/x(\"a[\\\"\\u003c/script>\\\"]\");\r\n"
        );
        assert_eq!(&Framing::Hixie76.wrap("o")[..], b"\x00o\xff");
    }

    #[test]
    fn response_limit_counts_wrapped_frames() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut r = Receiver::http(Framing::XhrStreaming, tx, Backlog::default(), 4096, None);
        assert!(!r.write("o").unwrap());
        let msg = format!("a[\"{}\"]", "x".repeat(128));
        for _ in 0..29 {
            assert!(!r.write(msg.as_str()).unwrap());
        }
        assert!(!r.write(msg.as_str()).unwrap(), "4022 bytes stay under the limit");
        assert!(r.write(msg.as_str()).unwrap(), "4156 bytes reach it");
    }

    #[test]
    fn polling_ends_after_one_frame_and_gone_is_reported() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut r = Receiver::http(Framing::Xhr, tx, Backlog::default(), 10, None);
        assert!(r.write("o").unwrap());
        drop(rx);
        assert!(r.write("h").is_err());
        assert!(!r.alive());
    }
}
