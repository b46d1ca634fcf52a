//! The legacy hixie-76 WebSocket handshake on the SockJS WebSocket URL
//! (docs/protocol.md §6.11b): the head goes out before the client's 8-byte
//! key is read, then the digest, then SockJS frames as `\x00` + frame +
//! `\xff`. Its receiver is an ordinary WebSocket receiver; only the wire
//! differs.

use std::{future::Future, pin::Pin, sync::Arc, task::Poll, time::Duration};

use actix_web::{
    body::BodyStream,
    http::StatusCode,
    web::{self, Bytes, BytesMut},
    HttpRequest, HttpResponse,
};
use futures_util::StreamExt as _;
use tokio::time::Instant;

use crate::{
    config::time_allowed,
    endpoint::{error, Endpoint},
    protocol::{close_frame, hixie76_digest, parse_messages, Transport},
    receiver::{out_queue, push, Out, OutRx, PeerSocket, Receiver},
    session::{Command, CommandTx, Failure, InPlace, Session},
};

/// Answers a hixie-76 handshake and runs the socket of the session `id`.
pub(crate) async fn open<A: Session>(
    req: HttpRequest,
    payload: web::Payload,
    ep: web::Data<Endpoint<A>>,
    id: Arc<str>,
) -> HttpResponse {
    if let Err(e) = ep.check_origin(&req) {
        return e.error_response();
    }
    let headers = req.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let (key1, key2) = (text("sec-websocket-key1"), text("sec-websocket-key2"));
    let upgrade = text("upgrade").eq_ignore_ascii_case("websocket");
    if !upgrade || !text("connection").to_ascii_lowercase().contains("upgrade") {
        return error(StatusCode::BAD_REQUEST, "Not a valid websocket request.");
    }
    // An upgrade gives back `on_connect`'s duplicate descriptor, as an RFC
    // 6455 socket's does (an audit: a hixie-76 one held it for its life).
    if let Some(peer) = req.conn_data::<PeerSocket>() {
        peer.release();
    }
    let admitted = match ep.admit(&req, Transport::WebSocket).await {
        Ok(admitted) => Ok(admitted),
        Err(refuse) => match refuse.close_frame() {
            Some((code, reason)) => Err(close_frame(code, reason)),
            None => return refuse.error_response(),
        },
    };
    let location = format!("ws://{}{}", text("host"), req.uri());
    let origin = text("origin");

    let (digest_tx, digest_rx) = tokio::sync::oneshot::channel();
    let (out_tx, out_rx) = out_queue();
    let ep = ep.into_inner();
    let request = req.clone();
    actix_web::rt::spawn(async move {
        let mut payload = payload;
        let mut buf = BytesMut::new();
        // The key is the request's body: it must come within
        // `request_timeout`, as a send's body must. A head whose key never
        // comes held its connection for good, before any session (and so
        // outside every cap) existed.
        let key = async {
            while buf.len() < 8 {
                match payload.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    _ => return false,
                }
            }
            true
        };
        let timeout = ep.config.request_timeout;
        match actix_web::rt::time::timeout(timeout, key).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(_) => {
                crate::util::log_limited!(
                    log::Level::Info,
                    "sockjs: hixie-76 key not in within {timeout:?}; connection closed"
                );
                return;
            }
        }
        let key3 = buf.split_to(8);
        let Some(digest) = hixie76_digest(&key1, &key2, &key3) else {
            log::debug!("sockjs: bad hixie-76 keys");
            return;
        };
        if digest_tx.send(Bytes::copy_from_slice(&digest)).is_err() {
            return;
        }
        let admitted = match admitted {
            Ok(admitted) => admitted,
            // Refused with a close frame: that frame, then the end.
            Err(frame) => {
                let _ = push(&out_tx, Out::text(frame));
                return;
            }
        };
        let receiver = Receiver::socket(Transport::WebSocket, out_tx, false);
        let Ok((session, _)) = ep.open_socket(&request, Some(id), receiver, admitted, InPlace::Socket).await
        else {
            return;
        };
        let (max, timeout) = (ep.config.max_message_bytes, ep.config.request_timeout);
        read_frames(&session, payload, buf, max, timeout).await;
        // The socket is done, whichever way: the session hears of it.
        let _ = session.send(Command::ReceiverGone { aborted: false });
    });

    let mut digest = Some(digest_rx);
    let mut out = out_rx;
    let body = futures_util::stream::poll_fn(move |cx| poll_body(&mut digest, &mut out, cx));
    let mut res = HttpResponse::SwitchingProtocols();
    res.upgrade("WebSocket");
    res.insert_header(("Sec-WebSocket-Location", location));
    if !origin.is_empty() {
        res.insert_header(("Sec-WebSocket-Origin", origin));
    }
    // No content type on a 101 answer (see the RFC 6455 socket's).
    res.body(BodyStream::new(body))
}

/// The socket's output: the digest, then each frame the session writes as
/// `\x00` + frame + `\xff`, until the session closes the socket.
fn poll_body(
    digest: &mut Option<tokio::sync::oneshot::Receiver<Bytes>>,
    out: &mut OutRx,
    cx: &mut std::task::Context<'_>,
) -> Poll<Option<Result<Bytes, std::convert::Infallible>>> {
    if let Some(rx) = digest {
        return match Pin::new(rx).poll(cx) {
            Poll::Ready(Ok(bytes)) => {
                *digest = None;
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Err(_)) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        };
    }
    match out.poll_recv_weighed(cx, Out::weight) {
        Poll::Ready(Some(Out::Frame(frame))) => {
            let mut bytes = Vec::with_capacity(frame.len() + 2);
            bytes.push(0);
            bytes.extend_from_slice(&frame);
            bytes.push(0xff);
            Poll::Ready(Some(Ok(Bytes::from(bytes))))
        }
        Poll::Ready(Some(Out::Close(_)) | None) => Poll::Ready(None),
        Poll::Pending => Poll::Pending,
    }
}

/// The clock of an unfinished frame, by the rules of an RFC 6455 socket's
/// message read in part (`request_timeout`, plus 1/[`BODY_MIN_RATE`](crate::BODY_MIN_RATE) s a
/// byte, up to 4 times it, and never `request_timeout` without a byte):
/// a client that trickles a frame must not hold its bytes for good.
struct FrameClock {
    since: Instant,
    last: Instant,
    bytes: u64,
}

impl FrameClock {
    fn new(bytes: usize) -> Self {
        let now = Instant::now();
        Self { since: now, last: now, bytes: bytes as u64 }
    }

    /// When the frame's time is up (`None`: a timeout too long to add).
    fn deadline(&self, timeout: Duration) -> Option<Instant> {
        let allowed = time_allowed(timeout, self.bytes);
        Some(self.since.checked_add(allowed)?.min(self.last.checked_add(timeout)?))
    }

    /// The clock stood still for `waited` (the session's inbox was full).
    fn stood_still(&mut self, waited: Duration) {
        self.since = self.since.checked_add(waited).unwrap_or(self.since);
        self.last = self.last.checked_add(waited).unwrap_or(self.last);
    }
}

/// Hands the client's frames (`\x00`, UTF-8 text, `\xff`) to the session
/// until the client goes, breaks the protocol, or takes longer over a
/// frame than its [`FrameClock`] allows.
async fn read_frames(
    session: &CommandTx,
    mut payload: web::Payload,
    mut buf: BytesMut,
    max: usize,
    timeout: Duration,
) {
    // Where the search for the unfinished frame's end goes on: each byte
    // is looked at once, however many pieces the frame comes in (a search
    // from its start at every piece took a client's 1 MiB frame, sent 100
    // bytes at a time, ~12x the CPU of the same bytes in one RFC 6455
    // frame).
    let mut scanned = 1;
    let mut clock: Option<FrameClock> = None;
    loop {
        loop {
            // A `\xff` where a frame would start begins the client's closing
            // handshake (`\xff\x00`): the socket is done, as when the client
            // goes (a review: taken for garbage, its `\x00` started a frame
            // that never ended, and the session closed as interrupted).
            if buf.first() == Some(&0xff) {
                return;
            }
            // Anything else before a frame's start is no frame: dropped.
            match buf.iter().position(|&b| b == 0) {
                Some(0) => {}
                Some(start) => {
                    let _ = buf.split_to(start);
                    scanned = 1;
                }
                None => {
                    buf.clear();
                    scanned = 1;
                    break;
                }
            }
            let Some(end) = buf[scanned..].iter().position(|&b| b == 0xff).map(|at| scanned + at) else {
                // What is left is one unfinished frame: bounded like any
                // message, so that a frame never ended with 0xFF cannot
                // grow the buffer for as long as the client sends.
                // (Saturating: `usize::MAX` says "no limit", and `+ 2`
                // overflowed, an audit found.)
                if buf.len() > max.saturating_add(2) {
                    // Logged by the session, with its tag.
                    let _ = session.send(Command::TransportFailed(Failure::TooLarge));
                    return;
                }
                scanned = buf.len();
                break;
            };
            let frame = buf.split_to(end + 1);
            scanned = 1;
            clock = None;
            let text = String::from_utf8_lossy(&frame[1..end]).into_owned();
            match parse_messages(text.as_bytes(), true) {
                Ok(m) if !m.is_empty() => {
                    let _ = session.send(Command::messages(m));
                }
                Ok(_) => {}
                Err(e) => {
                    log::debug!("sockjs: hixie-76 frame refused: {e}");
                    let _ = session.send(Command::TransportFailed(Failure::Broken));
                    return;
                }
            }
        }
        if buf.is_empty() {
            clock = None;
        } else if clock.is_none() {
            clock = Some(FrameClock::new(buf.len()));
        }
        // Held back, like an RFC 6455 client, while the session has a
        // backlog of this client's messages; an unfinished frame's clock
        // stands still meanwhile.
        let before = Instant::now();
        futures_util::future::poll_fn(|cx| session.poll_room(cx)).await;
        if let Some(clock) = &mut clock {
            clock.stood_still(before.elapsed());
        }
        // A read adds at most what actix-http reads at once (its buffers
        // are bounded); the frames it completes are taken before the
        // unfinished one's length is checked, so that a burst of small
        // frames is not taken for one large one.
        let next = match clock.as_ref().and_then(|clock| clock.deadline(timeout)) {
            Some(at) => match tokio::time::timeout_at(at, payload.next()).await {
                Ok(next) => next,
                Err(_) => {
                    // Logged by the session, with its tag.
                    let _ = session.send(Command::TransportFailed(Failure::Slow));
                    return;
                }
            },
            None => payload.next().await,
        };
        match next {
            Some(Ok(chunk)) => {
                if let Some(clock) = &mut clock {
                    clock.bytes = clock.bytes.saturating_add(chunk.len() as u64);
                    clock.last = Instant::now();
                }
                buf.extend_from_slice(&chunk);
            }
            _ => return,
        }
    }
}
