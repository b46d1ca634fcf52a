//! The contract between a session and whatever carries its frames: the
//! [`Receiver`] a transport attaches to its session, how a frame is put on
//! the wire ([`Framing`]), and the one queue ([`Out`]) from session to
//! transport whose load is the receiver's backlog (docs/protocol.md §7.2).
//!
//! Every receiving transport is one `Receiver`. The session writes frames
//! into the receiver's queue; the transport's response body takes them out
//! as the client reads. What is written and not yet taken is the backlog,
//! which the session bounds: a client that stops reading shows as a growing
//! backlog.

use std::{borrow::Cow, task::Poll};

use actix_web::web::Bytes;

use crate::{
    close_code,
    protocol::{json_string, wsframe, Escape, Transport},
};

pub use aborts::on_connect;
pub(crate) use aborts::PeerSocket;

mod aborts;
pub(crate) mod deadlines;
pub(crate) mod queue;

/// How an HTTP receiver puts a frame on the wire (docs/protocol.md §6.0); an
/// RFC 6455 WebSocket's receiver puts each frame in its head
/// ([`wsframe::text_frame`]), and a hixie-76 socket frames what it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Framing {
    /// xhr and xhr_streaming: frame + `\n`.
    Xhr,
    /// EventSource: `data: ` + frame + `\r\n\r\n`.
    EventSource,
    /// htmlfile: a `<script>` block calling `p(...)`.
    HtmlFile,
    /// JSONP polling: `/**/cb(...);\r\n`, with the request's callback.
    Jsonp,
}

impl Framing {
    /// Wraps one frame for the wire; `callback` is the request's, for JSONP.
    pub(crate) fn wrap<'a>(&self, frame: Cow<'a, str>, callback: &str) -> Cow<'a, str> {
        let mut out = String::with_capacity(frame.len() + 16);
        match self {
            Self::Xhr => {
                out.push_str(&frame);
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
                out.push_str(&json_string(&frame, Escape::Script));
                out.push_str(");\n</script>\r\n");
            }
            Self::Jsonp => {
                out.push_str("/**/");
                out.push_str(callback);
                out.push('(');
                out.push_str(&json_string(&frame, Escape::Script));
                out.push_str(");\r\n");
            }
        }
        Cow::Owned(out)
    }

    /// The frame inside what [`wrap`](Self::wrap) made; `None` for bytes
    /// that are not such a frame.
    pub(crate) fn unwrap(&self, wire: &[u8], callback: &str) -> Option<String> {
        let wire = std::str::from_utf8(wire).ok()?;
        match self {
            Self::Xhr => wire.strip_suffix('\n').map(str::to_owned),
            Self::EventSource => {
                Some(wire.strip_prefix("data: ")?.strip_suffix("\r\n\r\n")?.replace("%25", "%"))
            }
            Self::HtmlFile => {
                let quoted = wire.strip_prefix("<script>\np(")?.strip_suffix(");\n</script>\r\n")?;
                serde_json::from_str(quoted).ok()
            }
            Self::Jsonp => {
                let quoted = wire.strip_prefix("/**/")?.strip_prefix(callback)?.strip_prefix('(')?;
                serde_json::from_str(quoted.strip_suffix(");\r\n")?).ok()
            }
        }
    }
}

/// What a session writes to its receiver's queue. A frame's weight in the
/// queue is its text's length (an HTTP frame's wrapping included, an RFC
/// 6455 head not): the session's view of what the client has not taken
/// yet, which `max_queue_bytes` bounds.
#[derive(Debug)]
pub(crate) enum Out {
    /// One frame, as the receiver's transport sends it: wrapped for HTTP
    /// (`data: o\r\n\r\n`), with its RFC 6455 head for a WebSocket (on a
    /// raw WebSocket, one message each), whose socket hands it to actix-web
    /// as it is when it goes out alone, and bare for a hixie-76 socket
    /// (which frames it).
    Frame(Box<[u8]>),
    /// A WebSocket's close frame with a code and reason, then the end of
    /// the socket; an HTTP body ignores it. (Boxed, so that a queued item
    /// takes 16 bytes: see the assertion below.)
    Close(Box<(u16, String)>),
}

const _: () = assert!(std::mem::size_of::<Out>() == 16);

impl Out {
    /// A frame that goes as text (an HTTP receiver's, or a hixie-76
    /// socket's, which frames it).
    pub(crate) fn text(text: String) -> Self {
        Self::Frame(text.into_bytes().into_boxed_slice())
    }

    /// What the item weighs in the queue.
    pub(crate) fn weight(&self) -> usize {
        match self {
            // Not the head: a message that `max_queue_bytes` lets the
            // session take must not overflow its queue by its head alone.
            Self::Frame(frame) => frame.len() - wsframe::head_len(frame),
            Self::Close(_) => 0,
        }
    }
}

/// The session's end of a receiver's queue.
pub(crate) type OutTx = queue::Tx<Out>;
/// The transport's end.
pub(crate) type OutRx = queue::Rx<Out>;

/// A new queue from a session to a transport.
pub(crate) fn out_queue() -> (OutTx, OutRx) {
    queue::queue()
}

/// Queues an item with its own [`weight`](Out::weight), the one the
/// transport takes off when it reads it; gives it back if the transport
/// is gone.
pub(crate) fn push(out: &OutTx, item: Out) -> Result<(), Out> {
    let weight = item.weight();
    out.send_weighed(item, weight)
}

/// Takes the next text from a receiver's queue, with its weight; `None`
/// once the session has let go of it. An HTTP body ignores close items.
pub(crate) fn poll_text(rx: &mut OutRx, cx: &mut std::task::Context<'_>) -> Poll<Option<Bytes>> {
    loop {
        return match rx.poll_recv_weighed(cx, Out::weight) {
            Poll::Ready(Some(Out::Frame(frame))) => Poll::Ready(Some(Bytes::from(frame))),
            Poll::Ready(Some(Out::Close(_))) => continue,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        };
    }
}

/// The receiver went away before the frame could be handed over.
#[derive(Debug)]
pub(crate) struct Gone;

/// A receiving connection attached to a session: 16 bytes in the session,
/// as every idle WebSocket session holds one; an HTTP receiver's state is
/// boxed.
#[derive(Debug)]
pub(crate) enum Receiver {
    /// A WebSocket transport: frames as they are, for the whole session.
    /// `rfc6455`: an RFC 6455 socket, which pings the client and writes
    /// SockJS heartbeats itself, and gets its frames ready for the wire
    /// ([`Out::Frame`]); a hixie-76 socket does neither (the session times
    /// its heartbeats, and the socket frames the texts).
    Socket { out: OutTx, transport: Transport, rfc6455: bool },
    /// An HTTP response body.
    Http(Box<HttpReceiver>),
}

const _: () = assert!(std::mem::size_of::<Receiver>() == 16);

/// What an HTTP receiver keeps.
#[derive(Debug)]
pub(crate) struct HttpReceiver {
    out: OutTx,
    transport: Transport,
    framing: Framing,
    /// The JSONP callback; empty for the others.
    callback: Box<str>,
    /// Bytes written so far (saturating), for the response limit.
    written: usize,
    /// Where the response ends: after `limit` bytes (streaming), or after
    /// its first frame (polling, whose limit is 0).
    limit: usize,
    peer: Option<PeerSocket>,
    /// Tells this receiver from every other: its session's token for it
    /// ([`Receiver::ticket`]).
    ticket: u32,
}

/// The next HTTP receiver's [`HttpReceiver::ticket`].
static NEXT_TICKET: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Receiver {
    /// A receiver for an HTTP response body; `limit` is the response limit
    /// of a streaming transport (polling transports end after one frame).
    pub(crate) fn http(transport: Transport, framing: Framing, out: OutTx, limit: usize) -> Self {
        let (callback, peer) = (Box::default(), None);
        let ticket = NEXT_TICKET.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self::Http(Box::new(HttpReceiver {
            out,
            transport,
            framing,
            callback,
            written: 0,
            limit,
            peer,
            ticket,
        }))
    }

    /// An HTTP receiver's number, unique in the process (until it wraps
    /// at 2^32): its session takes it as the receiver's token, so that a
    /// frame the receiver's request could not deliver comes back to a
    /// session that can tell whether it wrote to another receiver since
    /// (`Machine::restore`).
    pub(crate) fn ticket(&self) -> Option<u32> {
        match self {
            Self::Http(http) => Some(http.ticket),
            Self::Socket { .. } => None,
        }
    }

    /// The JSONP callback of an HTTP receiver.
    pub(crate) fn with_callback(mut self, callback: &str) -> Self {
        if let Self::Http(http) = &mut self {
            http.callback = callback.into();
        }
        self
    }

    /// The duplicate socket [`on_connect`] keeps, to see a client's abort.
    pub(crate) fn with_peer(mut self, peer: Option<PeerSocket>) -> Self {
        if let Self::Http(http) = &mut self {
            http.peer = peer;
        }
        self
    }

    /// A receiver for a WebSocket transport; `rfc6455`: see [`Receiver::Socket`].
    pub(crate) fn socket(transport: Transport, out: OutTx, rfc6455: bool) -> Self {
        Self::Socket { out, transport, rfc6455 }
    }

    /// Whether the session must time this receiver's heartbeats.
    pub(crate) fn needs_heartbeat(&self) -> bool {
        match self {
            Self::Socket { rfc6455, transport, .. } => !rfc6455 && *transport != Transport::RawWebSocket,
            Self::Http(_) => true,
        }
    }

    /// The transport this receiver speaks.
    pub(crate) fn transport(&self) -> Transport {
        match self {
            Self::Socket { transport, .. } => *transport,
            Self::Http(http) => http.transport,
        }
    }

    fn out(&self) -> &OutTx {
        match self {
            Self::Socket { out, .. } => out,
            Self::Http(http) => &http.out,
        }
    }

    /// Bytes written to this receiver that its transport has not taken yet.
    pub(crate) fn backlog(&self) -> usize {
        self.out().load()
    }

    /// Writes one frame (on a raw WebSocket, one message). Returns whether
    /// the receiver is done after it: a polling response, or a streaming
    /// one that reached the response limit.
    ///
    /// An RFC 6455 WebSocket gets the frame with its head, in one new
    /// allocation; an owned frame goes to a hixie-76 socket's queue as it is.
    pub(crate) fn write<'a>(&mut self, frame: impl Into<Cow<'a, str>>) -> Result<bool, Gone> {
        let frame = frame.into();
        let (out, item, done) = match self {
            Self::Socket { out, rfc6455: true, .. } => {
                (&*out, Out::Frame(wsframe::text_frame(&[&frame])), false)
            }
            Self::Socket { out, .. } => (&*out, Out::text(frame.into_owned()), false),
            Self::Http(http) => {
                let wrapped = http.framing.wrap(frame, &http.callback);
                http.written = http.written.saturating_add(wrapped.len());
                (&http.out, Out::text(wrapped.into_owned()), http.written >= http.limit)
            }
        };
        push(out, item).map_err(|_| Gone)?;
        Ok(done)
    }

    /// Writes one frame made of `parts`, joined: an RFC 6455 WebSocket
    /// gets it with its head in one allocation, where joining first and
    /// framing then took two.
    pub(crate) fn write_parts(&mut self, parts: &[&str]) -> Result<bool, Gone> {
        match self {
            Self::Socket { out, rfc6455: true, .. } => {
                push(out, Out::Frame(wsframe::text_frame(parts))).map_err(|_| Gone)?;
                Ok(false)
            }
            _ => self.write(parts.concat()),
        }
    }

    /// Wakes the transport that reads this receiver's frames, with no
    /// frame: a WebSocket that stopped reading while its session's inbox
    /// was full looks again.
    pub(crate) fn nudge(&self) {
        match self {
            Self::Socket { out, .. } => out.nudge(),
            Self::Http(http) => http.out.nudge(),
        }
    }

    /// Ends a receiver that its session never attached, as the session
    /// was dropped after a panic: [`close_with`](Self::close_with) 1011
    /// "Internal error".
    pub(crate) fn fail(self) {
        let (code, reason) = close_code::with_reason(close_code::INTERNAL_ERROR);
        self.close_with(code, reason);
    }

    /// Ends the receiver with the close frame `c[code,"reason"]` (not on a
    /// raw WebSocket) and, on a WebSocket, its close frame.
    pub(crate) fn close_with(mut self, code: u16, reason: &str) {
        if !matches!(self, Self::Socket { transport: Transport::RawWebSocket, .. }) {
            let _ = self.write(crate::protocol::close_frame(code, reason));
        }
        self.close_socket(code, reason);
    }

    /// Ends a WebSocket with a close frame; HTTP responses end when the
    /// receiver is dropped.
    pub(crate) fn close_socket(&self, code: u16, reason: &str) {
        if let Self::Socket { out, .. } = self {
            let _ = push(out, Out::Close(Box::new((code, reason.to_owned()))));
        }
    }

    /// Whether the client is still connected, as far as can be told now.
    ///
    /// With [`on_connect`] installed this peeks at the socket, which sees a
    /// client abort at once; without it only a dropped response counts
    /// (actix-web drops it at the client's EOF when half-closed connections
    /// are not allowed, else at the next write).
    pub(crate) fn alive(&self) -> bool {
        match self {
            Self::Socket { out, .. } => !out.is_closed(),
            Self::Http(http) => !http.out.is_closed() && http.peer.as_ref().is_none_or(PeerSocket::alive),
        }
    }

    /// What the session needs to time this receiver: its queue, and
    /// whether the transport dropping its end is the receiver's end (an
    /// HTTP response; a hixie-76 socket reports its own end). `None` for an
    /// RFC 6455 WebSocket, raw ones included, which reports its end and
    /// pings (and writes its heartbeats) itself.
    pub(crate) fn timed(&self) -> Option<(OutTx, bool)> {
        match self {
            Self::Http(http) => Some((http.out.clone(), true)),
            Self::Socket { out, .. } if self.needs_heartbeat() => Some((out.clone(), false)),
            Self::Socket { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Waker};

    use super::*;

    fn wrap(framing: Framing, frame: &str) -> String {
        framing.wrap(Cow::Borrowed(frame), "cb").into_owned()
    }

    #[test]
    fn a_polling_frame_unwraps_to_what_was_wrapped() {
        let frame = "a[\"</script>\",\"\\u2028 \\\"q\\\" %25 %\"]";
        for framing in [Framing::Xhr, Framing::Jsonp, Framing::EventSource, Framing::HtmlFile] {
            let wire = wrap(framing.clone(), frame);
            assert_eq!(framing.unwrap(wire.as_bytes(), "cb").as_deref(), Some(frame), "{framing:?}");
        }
        assert_eq!(
            Framing::Jsonp.unwrap(wrap(Framing::Jsonp, "h").as_bytes(), "other"),
            None,
            "its callback"
        );
        assert_eq!(Framing::Xhr.unwrap(b"a[\"cut", ""), None);
        assert_eq!(Framing::HtmlFile.unwrap(b"<script>\np(\"cut);\n</script>\r\n", ""), None);
    }

    #[test]
    fn wrapping() {
        assert_eq!(wrap(Framing::Xhr, "o"), "o\n");
        assert_eq!(wrap(Framing::EventSource, "a[\"100%\"]"), "data: a[\"100%25\"]\r\n\r\n");
        assert_eq!(wrap(Framing::HtmlFile, "a[\"x\"]"), "<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n");
        assert_eq!(wrap(Framing::Jsonp, "o"), "/**/cb(\"o\");\r\n");
        assert_eq!(wrap(Framing::Jsonp, "a[\"</script>\"]"), "/**/cb(\"a[\\\"\\u003c/script>\\\"]\");\r\n");
    }

    #[test]
    fn response_limit_counts_wrapped_frames() {
        let (tx, _rx) = out_queue();
        let mut r = Receiver::http(Transport::XhrStreaming, Framing::Xhr, tx, 4096);
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
        let (tx, rx) = out_queue();
        let mut r = Receiver::http(Transport::XhrPolling, Framing::Xhr, tx, 0);
        assert!(r.write("o").unwrap());
        drop(rx);
        assert!(r.write("h").is_err());
        assert!(!r.alive());
    }

    #[test]
    fn the_backlog_is_what_the_transport_has_not_taken() {
        let (tx, mut rx) = out_queue();
        let mut cx = Context::from_waker(Waker::noop());
        let mut r = Receiver::http(Transport::EventSource, Framing::EventSource, tx, usize::MAX);
        r.write("o").unwrap();
        r.write("a[\"x\"]").unwrap();
        assert_eq!(r.backlog(), "data: o\r\n\r\n".len() + "data: a[\"x\"]\r\n\r\n".len());
        assert_eq!(poll_text(&mut rx, &mut cx), Poll::Ready(Some(Bytes::from_static(b"data: o\r\n\r\n"))));
        assert_eq!(r.backlog(), "data: a[\"x\"]\r\n\r\n".len());
        let _ = poll_text(&mut rx, &mut cx);
        assert_eq!(r.backlog(), 0);

        let (tx, mut rx) = out_queue();
        let mut ws = Receiver::socket(Transport::WebSocket, tx, true);
        ws.write("o").unwrap();
        ws.close_socket(1000, "Normal closure");
        assert_eq!(ws.backlog(), 1, "the open frame, its head not counted");
        assert_eq!(poll_text(&mut rx, &mut cx), Poll::Ready(Some(Bytes::from_static(b"\x81\x01o"))));
        assert_eq!(ws.backlog(), 0, "a close item weighs nothing");
    }
}
