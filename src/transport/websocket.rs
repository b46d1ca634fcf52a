//! The WebSocket transports: SockJS-framed (`/<server>/<session>/websocket`,
//! docs/protocol.md §6.11) and raw (`/websocket`, §6.12). The legacy
//! hixie-76 handshake on the framed URL is in [`super::hixie76`].
//!
//! A WebSocket is served by its response body, [`WsStream`], which attaches
//! to its session as the session's only receiver and forwards client
//! messages.

use std::{
    convert::Infallible,
    pin::Pin,
    rc::Rc,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use actix_http::ws::{Codec, Frame, Item};
use actix_web::{
    body::BodyStream,
    dev,
    http::{header, StatusCode},
    web::{self, Bytes, BytesMut},
    HttpRequest, HttpResponse,
};
use actix_web_actors::ws::{self, CloseCode, CloseReason, Message, ProtocolError};
use futures_util::Stream;
use tokio_util::codec::{Decoder as _, Encoder as _};

use crate::{
    clock,
    config::Config,
    endpoint::{error, Endpoint, LogPath},
    protocol::{
        close_frame, parse_text_into,
        wsframe::{self, HEARTBEAT_AND_PING, PING_ONLY, PONG},
        PayloadError, Transport,
    },
    receiver::{deadlines, out_queue, Out, OutRx, PeerSocket, Receiver},
    session::{
        inbound_weight, run_turn, Command, CommandTx, Failure, InPlace, Ran, Session, Turn, INBOUND_ROOM,
    },
};

/// "Not set", for a socket's millisecond clocks.
const NEVER: u64 = u64::MAX;

/// GET `/<server>/<session>/websocket` (and hixie-76 on the same URL).
pub(crate) async fn framed<A: Session>(
    req: HttpRequest,
    payload: web::Payload,
    ep: web::Data<Endpoint<A>>,
    id: Arc<str>,
) -> HttpResponse {
    if !ep.may_take_id(&req, &id).await {
        return error(StatusCode::NOT_FOUND, "Session not found.");
    }
    // The RFC 6455 key first: a browser's request has it, and one lookup
    // by a standard name is cheaper than one by a name parsed from text.
    let legacy = !req.headers().contains_key(header::SEC_WEBSOCKET_KEY)
        && req.headers().contains_key("sec-websocket-key1");
    if legacy {
        return super::hixie76::open(req, payload, ep, id).await;
    }
    open(req, payload, &ep, Transport::WebSocket, Some(id)).await
}

/// GET `/websocket`: a WebSocket without SockJS framing.
pub(crate) async fn raw<A: Session>(
    req: HttpRequest,
    payload: web::Payload,
    ep: web::Data<Endpoint<A>>,
) -> HttpResponse {
    open(req, payload, &ep, Transport::RawWebSocket, None).await
}

/// Opens a WebSocket session: `id` is the SockJS session's, `None` on the
/// raw WebSocket (which gets a unique one).
async fn open<A: Session>(
    req: HttpRequest,
    payload: web::Payload,
    ep: &Endpoint<A>,
    transport: Transport,
    id: Option<Arc<str>>,
) -> HttpResponse {
    if let Err(e) = ep.check_origin(&req) {
        return e.error_response();
    }
    let handshake = match Handshake::check(&req) {
        Ok(h) => {
            if let Some(peer) = req.conn_data::<PeerSocket>() {
                peer.release();
            }
            h
        }
        Err(e) => {
            log::debug!("sockjs: {}: not a valid websocket request: {e}", LogPath(&req));
            return error(StatusCode::BAD_REQUEST, format!("Not a valid websocket request: {e}"));
        }
    };
    let raw = transport == Transport::RawWebSocket;
    let (out_tx, out_rx) = out_queue();
    let admitted = match ep.admit(&req, transport).await {
        Ok(admitted) => admitted,
        Err(refuse) => {
            return match refuse.close_frame() {
                Some((code, reason)) => handshake.body(refused(raw, code, reason)),
                None => refuse.error_response(),
            }
        }
    };
    let (session, turn) = match ep
        .open_socket(&req, id, Receiver::socket(transport, out_tx, true), admitted, InPlace::Socket)
        .await
    {
        Ok(opened) => opened,
        Err(e) => return e.error_response(),
    };
    let socket = WsStream::new(payload, out_rx, session, turn, raw, ep.config.clone());
    // Not `streaming`, which labels a body that has no content type
    // `application/octet-stream`: a 101 answer has no body to describe
    // (sockjs-node sends no content type), and the header cost ~1k
    // instructions of a set-up to add and write.
    handshake.body(BodyStream::new(socket))
}

/// Whether the `Connection` headers ask for an upgrade and not to close,
/// as actix-http's `RequestHead::upgrade` reads them (which splits the
/// values as text: ~380 instructions for a browser's one value).
fn connection_upgrade(headers: &header::HeaderMap) -> bool {
    let mut upgrade = false;
    for value in headers.get_all(header::CONNECTION) {
        // What browsers send, before the general case.
        if value.as_bytes().eq_ignore_ascii_case(b"upgrade") {
            upgrade = true;
            continue;
        }
        if value.to_str().is_err() {
            continue;
        }
        for option in value.as_bytes().split(|&b| b == b',') {
            let option = option.trim_ascii();
            if option.eq_ignore_ascii_case(b"close") {
                return false;
            }
            upgrade |= option.eq_ignore_ascii_case(b"upgrade");
        }
    }
    upgrade
}

/// An accepted RFC 6455 handshake: the `101 Switching Protocols` answer to
/// give it, whatever its body.
///
/// actix-web-actors' `handshake` checks the same and builds the same
/// answer, but through a response builder and with a lower-cased copy of
/// the `Upgrade` header: ~2.9k instructions of a WebSocket's set-up beside
/// the key's SHA-1, ~1k this way (callgrind, `benches/README.md`). A
/// request this check refuses goes to actix-web-actors' own, whose error
/// the answer names; so the two can only differ in cost.
enum Handshake {
    /// The `Sec-WebSocket-Accept` value.
    Accept(header::HeaderValue),
    /// What actix-web-actors' check answered where this one refused.
    Builder(actix_web::HttpResponseBuilder),
}

impl Handshake {
    fn check(req: &HttpRequest) -> Result<Self, ws::HandshakeError> {
        match Self::accept(req) {
            Some(accept) => Ok(Self::Accept(accept)),
            None => ws::handshake(req).map(Self::Builder),
        }
    }

    /// The accept value of a valid handshake; `None` for any other request.
    fn accept(req: &HttpRequest) -> Option<header::HeaderValue> {
        if req.method() != actix_web::http::Method::GET {
            return None;
        }
        let headers = req.headers();
        let upgrade = headers.get(header::UPGRADE)?;
        // What browsers send, before the general case.
        let websocket = upgrade.as_bytes().eq_ignore_ascii_case(b"websocket")
            || upgrade
                .to_str()
                .is_ok_and(|u| u.as_bytes().windows(9).any(|w| w.eq_ignore_ascii_case(b"websocket")));
        if !websocket {
            return None;
        }
        if !connection_upgrade(headers) {
            return None;
        }
        let version = headers.get(header::SEC_WEBSOCKET_VERSION)?;
        if !(version == "13" || version == "8" || version == "7") {
            return None;
        }
        let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
        header::HeaderValue::from_bytes(&actix_http::ws::hash_key(key.as_bytes())).ok()
    }

    /// The `101` answer, with `body` (the socket, or a refusal's frames).
    fn body<B: actix_web::body::MessageBody + 'static>(self, body: B) -> HttpResponse {
        match self {
            Self::Accept(accept) => {
                let mut res = HttpResponse::with_body(StatusCode::SWITCHING_PROTOCOLS, body);
                res.head_mut().set_connection_type(actix_http::ConnectionType::Upgrade);
                let headers = res.headers_mut();
                headers.insert(header::UPGRADE, header::HeaderValue::from_static("websocket"));
                headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
                res.map_into_boxed_body()
            }
            Self::Builder(mut builder) => builder.body(body),
        }
    }
}

/// What a socket refused with a close frame gets: `c[code,"reason"]` and a
/// close frame (1000), or on a raw WebSocket a close frame with the code
/// and reason.
fn refused(raw: bool, code: u16, reason: &str) -> Bytes {
    let mut codec = Codec::new();
    let mut out = BytesMut::new();
    let (close_code, description) = if raw {
        (code, reason.to_owned())
    } else {
        let _ = codec.encode(Message::Text(close_frame(code, reason).into()), &mut out);
        (1000, "Normal closure".to_owned())
    };
    let _ = codec.encode(Message::Close(Some(wire_close(close_code, description))), &mut out);
    out.freeze()
}

/// A close frame that RFC 6455 lets a server send (§5.5, §7.4.1): its
/// payload is 125 bytes at most, so the reason is cut to 123 bytes at a
/// character boundary, and a code no endpoint may send (below 1000,
/// 1004-1006, 1015-2999, 5000 and up) becomes 1011. Browsers fail a socket
/// whose close frame breaks either rule and report 1006, losing code and
/// reason both. (In the SockJS framing the `c[code,"reason"]` frame
/// before it carries both whole.)
fn wire_close(code: u16, mut reason: String) -> CloseReason {
    let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    if !sendable {
        log::debug!("sockjs: close code {code} cannot go in a WebSocket close frame; 1011 instead");
    }
    let kept = crate::util::cut(&reason, 123).len();
    reason.truncate(kept);
    CloseReason { code: CloseCode::from(if sendable { code } else { 1011 }), description: Some(reason) }
}

/// The body of a WebSocket response, and the transport itself: it decodes
/// what the client sends (handing messages to the session), hands on the
/// frames the session writes (ready for the wire, heads included), and
/// pings with the SockJS heartbeat `h` (so the session needs no timer of
/// its own). It is polled by actix-web's dispatcher like
/// any response body, so a socket costs no actor, mailbox or task of its
/// own (actix-web-actors' `WebsocketContext` would add all three).
///
/// While the client does not read, the dispatcher stops polling it; what
/// the session writes then stays in the channel, counted in the backlog,
/// and the session closes with `Overflow` past its limit.
struct WsStream {
    payload: dev::Payload,
    /// `payload` is actix-http's own, which its HTTP/1 dispatcher feeds
    /// (see [`Self::receive`]).
    fed_by_dispatcher: bool,
    codec: Codec,
    /// Received bytes not yet decoded.
    read: BytesMut,
    /// Encoded frames not yet handed to the dispatcher.
    write: BytesMut,
    out: OutRx,
    session: CommandTx,
    /// The session's turn, run here once the client's messages are handed
    /// over ([`Turn`]; `None` if the session ended in its first turn).
    turn: Option<Rc<dyn Turn>>,
    /// What the client messages handed to the session since its last turn
    /// weigh ([`Turn::fill_inbox`]).
    handed: usize,
    /// What the session's inbox held after its last turn here: unhandled
    /// messages, while the actor waits on a future of its own (the inbox
    /// only grows through this socket; the session may have emptied it
    /// since).
    waiting: u32,
    /// Reading stopped for a full inbox in this poll.
    stalled: bool,
    raw: bool,
    /// A client message on its way, with its clock (see [`Pending`]).
    pending: Option<Box<Pending>>,
    /// The endpoint's options (the heartbeat, the ping timeout, the message
    /// size limit): one pointer rather than copies in every socket.
    config: Arc<Config>,
    /// Dead peers: a ping every heartbeat; silence for the ping timeout
    /// after a ping ends the socket. The worker's [`deadlines`] wake the
    /// socket at whichever comes first (a tokio timer would be ~110 bytes
    /// of every idle socket). The clocks are [`clock::now`]
    /// milliseconds ([`NEVER`] when unset): 8 bytes each, not 16; they are
    /// only read when a deadline may have passed.
    next_ping: u64,
    /// The deadline the socket is to be woken at.
    armed: u64,
    /// The ping whose answer is awaited.
    ping_sent: u64,
    /// The client sent something since `ping_sent`.
    heard: bool,
    /// A close frame is written: end once it is handed over, or, if
    /// `answer_awaited`, once the client's own close frame is read.
    closing: bool,
    /// The close frame written is the session's: after it goes out, the
    /// socket reads on (handing nothing to the session) until the client
    /// answers it, ends, or [`CLOSE_ANSWER_WAIT`] passes (then `next_ping`
    /// holds that deadline). Ending the connection with the client's
    /// frames unread would have the kernel reset it, and a reset takes the
    /// close frame with it from a client that reads it only after its
    /// writes failed (Node's `ws`, as sockjs-client's tests saw: 1006 in
    /// place of the session's code).
    answer_awaited: bool,
    done: bool,
}

/// A client message on its way: a frame read in part, or the fragments so
/// far of a fragmented one. It must be whole within `request_timeout`,
/// plus 1/[`BODY_MIN_RATE`](crate::BODY_MIN_RATE) of a second for each byte the client sent
/// since it began, and within 4 times `request_timeout`
/// in any case, and no `request_timeout` may pass without a byte, as for
/// an `xhr_send` body: a client that trickles a message must not hold its
/// bytes (up to `max_message_bytes`) for as long as it likes. Checked
/// whenever the socket's deadline wakes it (a heartbeat at the latest).
/// The clock stops while the socket itself reads no more (the session's
/// inbox is full, or the socket let others run), and starts again when it
/// reads on.
#[derive(Debug)]
struct Pending {
    /// The fragments so far of a fragmented text message; `None`: one
    /// frame read in part.
    fragments: Option<BytesMut>,
    /// When it began, or reading went on after the socket held it back
    /// ([`clock::now`] milliseconds).
    since: u64,
    /// When its last bytes came.
    last: u64,
    /// What the client sent since it began.
    bytes: u64,
    /// The socket stopped reading: the clock stands still.
    held_back: bool,
}

impl Pending {
    /// A message whose first `bytes` came at `now`; `fragments` if it is a
    /// fragmented one.
    fn new(fragments: Option<BytesMut>, now: u64, bytes: u64) -> Box<Self> {
        Box::new(Self { fragments, since: now, last: now, bytes, held_back: false })
    }

    /// More of it came at `now`.
    fn received(&mut self, now: u64, bytes: usize) {
        self.bytes = self.bytes.saturating_add(bytes as u64);
        self.last = now;
    }

    /// The socket reads on at `now`, after it held the message back.
    fn read_on(&mut self, now: u64) {
        if std::mem::take(&mut self.held_back) {
            self.since = now;
            self.last = now;
        }
    }

    /// Its time is up at `now`.
    fn late(&self, now: u64, request_timeout: std::time::Duration) -> bool {
        if self.held_back {
            return false;
        }
        let allowed = clock::millis(crate::config::time_allowed(request_timeout, self.bytes));
        now >= self.since.saturating_add(allowed)
            || now >= self.last.saturating_add(clock::millis(request_timeout))
    }
}

/// How long a socket whose session closed it waits for the client's close
/// frame (RFC 6455 §7.1.1) before it ends the connection anyway: a
/// browser answers within a round trip; actix-web's own wait for a client
/// after a response (`client_disconnect_timeout`) defaults to as long.
const CLOSE_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl WsStream {
    /// The socket of the session `session` (whose turn it runs, if any),
    /// reading `payload` and writing what comes from `out`.
    fn new(
        payload: web::Payload,
        out: OutRx,
        session: CommandTx,
        turn: Option<Rc<dyn Turn>>,
        raw: bool,
        config: Arc<Config>,
    ) -> Self {
        let payload = payload.into_inner();
        Self {
            fed_by_dispatcher: matches!(payload, dev::Payload::H1 { .. }),
            payload,
            codec: Codec::new().max_size(config.max_message_bytes),
            read: BytesMut::new(),
            write: BytesMut::new(),
            out,
            session,
            turn,
            handed: 0,
            waiting: 0,
            stalled: false,
            raw,
            pending: None,
            next_ping: clock::now().saturating_add(clock::millis(config.heartbeat).max(1)),
            config,
            armed: NEVER,
            ping_sent: NEVER,
            heard: false,
            closing: false,
            answer_awaited: false,
            done: false,
        }
    }

    fn encode(&mut self, msg: Message) {
        if let Err(e) = self.codec.encode(msg, &mut self.write) {
            log::debug!("sockjs: websocket frame not encoded: {e}");
        }
    }

    /// Writes a text, ping or pong frame ([`wsframe::put`]).
    fn put(&mut self, first: u8, payload: &[u8]) {
        wsframe::put(&mut self.write, first, payload);
    }

    /// Ends the socket with a close frame.
    #[cold]
    #[inline(never)]
    fn close(&mut self, reason: Option<CloseReason>) {
        if !self.closing {
            self.encode(Message::Close(reason));
            self.closing = true;
        }
    }

    /// Closes the socket after a client error and tells the session why.
    #[cold]
    #[inline(never)]
    fn fail(&mut self, code: CloseCode, reason: Option<&str>) {
        let failure = match code {
            CloseCode::Size => Failure::TooLarge,
            CloseCode::Other(3000) => Failure::Broken,
            CloseCode::Policy => Failure::Slow,
            _ => Failure::Protocol,
        };
        let _ = self.session.send(Command::TransportFailed(failure));
        self.close(Some(CloseReason { code, description: reason.map(str::to_owned) }));
    }

    /// Reads a text message's payload (`parse`, which appends what it
    /// reads) straight into the session's inbox ([`Turn::fill_inbox`]):
    /// this socket runs the session's turn after the read
    /// ([`Self::run_turn`]). Queued instead when there is no turn to run.
    fn hand(&mut self, parse: impl Fn(&mut Vec<String>) -> Result<(), PayloadError>) {
        if let Some(turn) = &self.turn {
            let mut read = Ok(0);
            let filled = turn.fill_inbox(&mut |inbox| {
                let before = inbox.len();
                read = parse(inbox).map(|()| inbound_weight(&inbox[before..]));
            });
            if filled {
                match read {
                    Ok(weight) => self.handed += weight,
                    Err(e) => self.refuse(&e),
                }
                return;
            }
        }
        let mut messages = Vec::new();
        match parse(&mut messages) {
            Ok(()) if messages.is_empty() => {}
            Ok(()) => {
                let _ = self.session.send(Command::messages(messages));
            }
            Err(e) => self.refuse(&e),
        }
    }

    /// Closes the socket over a payload it cannot read.
    #[cold]
    #[inline(never)]
    fn refuse(&mut self, e: &PayloadError) {
        log::debug!("sockjs: websocket frame refused: {e}");
        self.fail(CloseCode::Other(3000), Some("Broken framing."));
    }

    /// Notes what the session's inbox holds (saturating: any weight past
    /// 4 GiB is far past [`INBOUND_ROOM`]).
    fn set_waiting(&mut self, weight: usize) {
        self.waiting = u32::try_from(weight).unwrap_or(u32::MAX);
    }

    /// Runs the session's turn in place if client messages were handed
    /// over, so that they are handled, and the answers written, in this
    /// poll ([`run_turn`]). The frame queue mutes this socket's waker
    /// first: the socket takes what the session writes in the same poll,
    /// and a wake-up of its task would only poll it again. Lets go of the
    /// session once it is done, or once a panic in the turn (in the user's
    /// `on_message`, say) has dropped it: its drop wrote its close frames
    /// (1011), which go out before the socket ends, as after any other end.
    fn run_turn(&mut self) {
        if std::mem::take(&mut self.handed) == 0 {
            return;
        }
        let Some(turn) = &self.turn else { return };
        self.out.mute();
        match run_turn(&**turn) {
            Ran::Open { waiting } => self.set_waiting(waiting),
            Ran::Done | Ran::Panicked => self.turn = None,
        }
    }

    fn deliver(&mut self, text: &str) {
        if self.raw {
            self.hand(|inbox| {
                inbox.push(text.to_owned());
                Ok(())
            });
        } else if !text.is_empty() {
            self.hand(|inbox| parse_text_into(text, true, inbox));
        }
    }

    fn text(&mut self, bytes: &[u8]) {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.deliver(text),
            Err(_) => self.fail(CloseCode::Invalid, None),
        }
    }

    fn frame(&mut self, frame: Frame) {
        match frame {
            Frame::Text(bytes) => self.text(&bytes),
            other => self.other_frame(other),
        }
    }

    /// A frame other than a whole text message, out of the echo's line of
    /// code (benches/README.md, "Instruction cache"); a text message too,
    /// handled as [`Self::frame`] handles it, so that the match is whole.
    #[cold]
    #[inline(never)]
    fn other_frame(&mut self, frame: Frame) {
        match frame {
            Frame::Text(bytes) => self.text(&bytes),
            Frame::Binary(_) => log::debug!("sockjs: binary websocket message ignored"),
            Frame::Continuation(item) => self.continuation(item),
            Frame::Ping(p) => self.put(PONG, &p),
            Frame::Pong(_) => {}
            Frame::Close(reason) => self.close(reason),
        }
    }

    #[cold]
    #[inline(never)]
    fn continuation(&mut self, item: Item) {
        let (first, last, bytes) = match item {
            Item::FirstText(b) => (true, false, b),
            Item::FirstBinary(_) => {
                log::debug!("sockjs: fragmented binary websocket message ignored");
                return;
            }
            Item::Continue(b) => (false, false, b),
            Item::Last(b) => (false, true, b),
        };
        if first {
            // Its clock runs from its first frame's first byte.
            let mut pending =
                self.pending.take().unwrap_or_else(|| Pending::new(None, clock::now(), bytes.len() as u64));
            pending.fragments = Some(BytesMut::new());
            self.pending = Some(pending);
        }
        let Some(buf) = self.pending.as_mut().and_then(|pending| pending.fragments.as_mut()) else { return };
        let max = self.config.max_message_bytes;
        if buf.len() + bytes.len() > max {
            // Logged by the session, with its tag.
            self.fail(CloseCode::Size, None);
            return;
        }
        buf.extend_from_slice(&bytes);
        if last {
            if let Some(buf) = self.pending.take().and_then(|pending| pending.fragments) {
                self.text(&buf);
            }
        }
    }

    /// Reads and decodes what the client sent; `false` once the client has
    /// gone (end of stream or a read error).
    fn receive(&mut self, cx: &mut Context<'_>) -> bool {
        // What waits in the session's inbox from earlier polls: nothing,
        // unless the actor waits on a future of its own. Looked up again
        // only when it was too much: the session may have handled it since.
        let mut waiting = self.waiting as usize;
        if waiting > INBOUND_ROOM {
            waiting = self.turn.as_ref().map_or(0, |turn| turn.inbox_weight());
            self.set_waiting(waiting);
        }
        // Bounded per turn: a client that never stops sending must not keep
        // its worker (and its own session, on the same worker) from running.
        for _ in 0..16 {
            if self.closing {
                return true;
            }
            // Read no more while the session has a backlog of this
            // client's messages: until it has handled them TCP holds the
            // client back. The session wakes this body once it has taken
            // them from its queue, or nudges it once it has handled a full
            // inbox; a socket whose own turn empties the inbox looks again
            // after it ([`Self::poll_next`]).
            let full = match &self.turn {
                Some(_) => waiting + self.handed > INBOUND_ROOM,
                None => self.session.poll_room(cx).is_pending(),
            };
            if full {
                self.stalled = self.turn.is_some();
                self.hold_back();
                return true;
            }
            if let Some(pending) = &mut self.pending {
                pending.read_on(clock::now());
            }
            // actix-http's HTTP/1 dispatcher feeds its payload only in its
            // own poll, after it read the connection and before it polls
            // this body in that same poll (or, while the client does not
            // read, in the poll after the socket drains). The payload's
            // wake-up would only have the dispatcher poll the connection
            // once more, for nothing: it took a second task poll on every
            // client frame (callgrind: 8.3k -> 6.7k instructions per
            // echo). Any other payload (one a middleware replaced, say)
            // wakes this body as a stream should.
            let noop = &mut Context::from_waker(Waker::noop());
            let payload_cx = if self.fed_by_dispatcher { noop } else { &mut *cx };
            match Pin::new(&mut self.payload).poll_next(payload_cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    self.heard = true;
                    if let Some(pending) = &mut self.pending {
                        pending.received(clock::now(), chunk.len());
                    }
                    self.read.extend_from_slice(&chunk);
                }
                Poll::Ready(Some(Err(e))) => {
                    read_failed(&e);
                    return false;
                }
                Poll::Ready(None) => return false,
                Poll::Pending => return true,
            }
            while !self.closing {
                if let Some(code) = refused_by_header(&self.read, self.config.max_message_bytes) {
                    self.refuse_by_header(code);
                    break;
                }
                match self.codec.decode(&mut self.read) {
                    Ok(Some(frame)) => {
                        self.frame(frame);
                        // A frame is whole: its clock stops, unless it is
                        // a fragment of a message still on its way.
                        if self.pending.as_ref().is_some_and(|pending| pending.fragments.is_none()) {
                            self.pending = None;
                        }
                    }
                    Ok(None) => {
                        // A frame read in part starts its clock.
                        if !self.read.is_empty() && self.pending.is_none() && !self.closing {
                            self.start_clock();
                        }
                        break;
                    }
                    Err(e) => self.protocol_error(&e),
                }
            }
        }
        // More may be waiting: come back after the others had their turn.
        cx.waker().wake_by_ref();
        self.hold_back();
        true
    }

    /// A frame read in part: its clock starts.
    #[cold]
    #[inline(never)]
    fn start_clock(&mut self) {
        self.pending = Some(Pending::new(None, clock::now(), self.read.len() as u64));
    }

    /// The head of the frame in `read` announced a length it may not have.
    #[cold]
    #[inline(never)]
    fn refuse_by_header(&mut self, code: CloseCode) {
        log::debug!("sockjs: websocket frame refused by its header (length, or a fragmented control frame)");
        self.read = BytesMut::new();
        self.fail(code, None);
    }

    /// The client broke the WebSocket protocol.
    #[cold]
    #[inline(never)]
    fn protocol_error(&mut self, e: &ProtocolError) {
        log::debug!("sockjs: websocket protocol error: {e}");
        let size = matches!(e, ProtocolError::Overflow);
        self.fail(if size { CloseCode::Size } else { CloseCode::Protocol }, None);
    }

    /// The socket reads no more for now: a message on its way waits with
    /// its clock stopped ([`Pending`]).
    fn hold_back(&mut self) {
        if let Some(pending) = &mut self.pending {
            pending.held_back = true;
        }
    }

    /// Pings, and gives up on a peer silent since the last ping. Answers
    /// what to send for the ping, if one is due ([`Beat`]).
    fn keep_alive(&mut self) -> Beat {
        if self.heard && self.ping_sent != NEVER {
            self.answered();
        }
        if self.armed != NEVER && !deadlines::may_have_passed(self.armed) {
            return Beat::Quiet;
        }
        self.beat()
    }

    /// The ping is answered: nothing is due before the next one, and the
    /// worker's deadlines forget its timeout.
    #[cold]
    #[inline(never)]
    fn answered(&mut self) {
        self.ping_sent = NEVER;
        self.arm(self.next_ping);
    }

    /// [`Self::keep_alive`] once a deadline may have passed: out of the
    /// echo's line of code, which looks at the deadline only.
    #[cold]
    #[inline(never)]
    fn beat(&mut self) -> Beat {
        let now = clock::now();
        if self.pending.as_ref().is_some_and(|pending| pending.late(now, self.config.request_timeout)) {
            self.pending = None;
            self.read = BytesMut::new();
            self.fail(CloseCode::Policy, Some("Message too slow"));
            return Beat::Quiet;
        }
        let mut beat = Beat::Quiet;
        if now >= self.next_ping {
            // A SockJS heartbeat at every ping, whatever else went out, as
            // sockjs-node sends it: no socket is without `h` for longer
            // than the delay. A raw WebSocket gets the ping alone.
            beat = Beat::Send(if self.raw { PING_ONLY } else { HEARTBEAT_AND_PING });
            // The session's inbox lets go of its buffer if it holds no
            // message: a client gone quiet leaves none behind for long,
            // one that talks gets a new one.
            if let Some(turn) = &self.turn {
                turn.release_inbox();
            }
            self.next_ping = now.saturating_add(clock::millis(self.config.heartbeat).max(1));
            // The oldest unanswered ping is the one that counts.
            if self.ping_sent == NEVER {
                self.ping_sent = now;
                self.heard = false;
            }
        }
        let timeout = self.config.ping_timeout;
        let answer_by = self.ping_sent.saturating_add(clock::millis(timeout));
        if self.ping_sent != NEVER && now >= answer_by {
            self.ping_sent = NEVER;
            if !self.heard {
                // Logged by the session, with its tag.
                let _ = self.session.send(Command::TransportFailed(Failure::Silent));
                // Why, for a client whose network comes back in time to
                // read it, as sockjs-node says it: the SockJS close frame,
                // then the socket's own with the same code; nothing else
                // goes out after them, and no answer is awaited.
                if !self.raw {
                    self.put(wsframe::TEXT, SILENT_CLOSE_FRAME.as_bytes());
                }
                let (code, reason) = SILENT_CLOSE;
                self.close(Some(CloseReason {
                    code: CloseCode::Other(code),
                    description: Some(reason.into()),
                }));
                self.done = true;
                return Beat::Quiet;
            }
        }
        self.arm(self.next_ping.min(self.ping_sent.saturating_add(clock::millis(timeout))));
        beat
    }

    /// Has the worker's deadlines wake the socket at `at` (and no longer
    /// at the time armed before).
    fn arm(&mut self, at: u64) {
        if self.armed != at {
            self.armed = at;
            deadlines::wake_at(at, &self.out);
        }
    }

    /// Takes what the session wrote: its frames come ready for the wire
    /// (`Out::Frame`, head included). A frame that is all there is goes
    /// out as it is, with no copy (returned); more are gathered in the
    /// write buffer, in order. Once it has taken the last queued item it
    /// does not look again: a body that returns a chunk is polled again
    /// anyway, and that poll registers its waker with the queue.
    fn send(&mut self, cx: &mut Context<'_>) -> Option<Bytes> {
        let mut alone: Option<Box<[u8]>> = None;
        while !self.closing && self.write.len() < 64 * 1024 {
            match self.out.poll_recv_more(cx, Out::weight) {
                Poll::Ready(Some((item, more))) => {
                    match item {
                        Out::Frame(frame) => {
                            if self.write.is_empty() && alone.is_none() {
                                alone = Some(frame);
                            } else {
                                self.gather(alone.take());
                                self.write.extend_from_slice(&frame);
                            }
                        }
                        Out::Close(close) => {
                            self.gather(alone.take());
                            self.closed_by_session(*close);
                        }
                    }
                    // What was taken is returned now, and the next poll
                    // comes whether or not more is queued by then.
                    if !more {
                        return alone.map(Bytes::from);
                    }
                }
                // The session let go of the socket without a close frame.
                Poll::Ready(None) => {
                    self.done = true;
                    return alone.map(Bytes::from);
                }
                Poll::Pending => return alone.map(Bytes::from),
            }
        }
        // More is waiting: come back once this chunk is taken.
        if !self.closing {
            cx.waker().wake_by_ref();
        }
        alone.map(Bytes::from)
    }

    /// The session's close frame: written, and the client's answer
    /// awaited. (Only while no close frame is written yet: the loop in
    /// [`Self::send`] stops at one.)
    #[cold]
    #[inline(never)]
    fn closed_by_session(&mut self, (code, reason): (u16, String)) {
        self.close(Some(wire_close(code, reason)));
        self.answer_awaited = true;
        self.next_ping = clock::now().saturating_add(clock::millis(CLOSE_ANSWER_WAIT));
        // What the client sends now goes nowhere.
        self.pending = None;
    }

    /// Reads what the client sends after the session's close frame, and
    /// drops it, until the client's own close frame, its end, a frame it
    /// may not send, or the deadline in `next_ping` ([`Self::answer_awaited`]).
    #[cold]
    #[inline(never)]
    fn await_answer(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Infallible>>> {
        // Bounded per poll, as [`Self::receive`] is.
        for _ in 0..16 {
            if clock::now() >= self.next_ping {
                break;
            }
            // Fed by the dispatcher before it polls this body, or waking it
            // (see `receive`).
            let noop = &mut Context::from_waker(Waker::noop());
            let payload_cx = if self.fed_by_dispatcher { noop } else { &mut *cx };
            match Pin::new(&mut self.payload).poll_next(payload_cx) {
                Poll::Ready(Some(Ok(chunk))) => self.read.extend_from_slice(&chunk),
                Poll::Ready(Some(Err(_)) | None) => return self.end(),
                Poll::Pending => {
                    // Woken at the deadline through the frame queue, whose
                    // items no longer matter.
                    self.out.watch(cx);
                    self.arm(self.next_ping);
                    return Poll::Pending;
                }
            }
            loop {
                if refused_by_header(&self.read, self.config.max_message_bytes).is_some() {
                    return self.end();
                }
                match self.codec.decode(&mut self.read) {
                    Ok(Some(Frame::Close(_))) | Err(_) => return self.end(),
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                }
            }
        }
        if clock::now() >= self.next_ping {
            log::debug!("sockjs: websocket client did not answer the close frame; ending the connection");
            return self.end();
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The socket is done: its body ends.
    fn end(&mut self) -> Poll<Option<Result<Bytes, Infallible>>> {
        self.done = true;
        self.read = BytesMut::new();
        Poll::Ready(None)
    }

    /// Moves a frame held back to go alone into the write buffer, before
    /// what follows it.
    fn gather(&mut self, frame: Option<Box<[u8]>>) {
        if let Some(frame) = frame {
            self.write.extend_from_slice(&frame);
        }
    }
}

/// How a socket whose peer did not answer a ping in time is closed:
/// sockjs-node's code and reason.
const SILENT_CLOSE: (u16, &str) = (3000, "No response from heartbeat");

/// [`SILENT_CLOSE`] as a SockJS close frame.
const SILENT_CLOSE_FRAME: &str = r#"c[3000,"No response from heartbeat"]"#;

/// What [`WsStream::keep_alive`] found.
enum Beat {
    /// Nothing to send.
    Quiet,
    /// A ping is due: these frames go out.
    Send(&'static [u8]),
    /// The peer stayed silent after a ping: the socket ends.
    Gone,
}

impl Drop for WsStream {
    /// The socket is done (closed, failed, or the client went away): the
    /// session hears of it through its command queue, and is woken even
    /// if that queue is gone (so that its driver lets go of it).
    fn drop(&mut self) {
        // No closing handshake begun by either side: the connection broke
        // (a killed browser, a lost network), not a close by the client.
        let _ = self.session.send(Command::ReceiverGone { aborted: !self.closing });
        if let Some(turn) = &self.turn {
            turn.wake();
        }
    }
}

impl Stream for WsStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.answer_awaited && this.write.is_empty() {
            // The session's close frame has gone out.
            return this.await_answer(cx);
        }
        let open = this.receive(cx);
        this.run_turn();
        // Reading stopped for a full inbox, which this turn emptied: read
        // on, after the others had their turn.
        if std::mem::take(&mut this.stalled) && this.turn.is_some() && this.waiting as usize <= INBOUND_ROOM {
            cx.waker().wake_by_ref();
        }
        // Nothing goes out after a close frame (RFC 6455 5.5.1), such as
        // one this poll's read wrote (the client's close answered, or its
        // error): no heartbeat, no ping.
        let beat = if !open {
            Beat::Gone
        } else if this.closing {
            Beat::Quiet
        } else {
            this.keep_alive()
        };
        match beat {
            Beat::Gone => {
                this.done = true;
                return Poll::Ready(None);
            }
            // Nothing else is written yet: the frames go as they are (no
            // allocation), and what the session wrote follows in the next
            // poll, which comes at once for a body that gave a chunk.
            Beat::Send(frames) if this.write.is_empty() => {
                return Poll::Ready(Some(Ok(Bytes::from_static(frames))));
            }
            Beat::Send(frames) => this.write.extend_from_slice(frames),
            Beat::Quiet => {}
        }
        if let Some(frame) = this.send(cx) {
            // Alone: nothing was written before it in this poll.
            return Poll::Ready(Some(Ok(frame)));
        }
        if !this.write.is_empty() {
            // Taken whole, not split: a split would keep the buffer (and a
            // shared header) alive in every idle socket.
            return Poll::Ready(Some(Ok(std::mem::take(&mut this.write).freeze())));
        }
        if this.closing || this.done {
            this.done = true;
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

/// Logs that the socket's read of the client failed: the client is gone.
#[cold]
#[inline(never)]
fn read_failed(e: &actix_web::error::PayloadError) {
    match e {
        // actix-http's words for it end in `: None`.
        actix_web::error::PayloadError::Incomplete(None) => {
            log::debug!("sockjs: websocket client left without a closing handshake (connection closed)");
        }
        e => log::debug!("sockjs: websocket read failed: {e}"),
    }
}

/// Refuses the frame at the head of `buf` by its header, before the
/// payload arrives: a data frame longer than `max` (close 1009), a control
/// frame longer than 125 bytes or fragmented (close 1002). actix-http's
/// codec checks lengths only once the whole payload is buffered, so a
/// client announcing a frame of 2^40 bytes could otherwise grow the
/// server's buffer for as long as it kept sending; and it logs a
/// fragmented control frame at `error`, a line per client with no limit.
fn refused_by_header(buf: &[u8], max: usize) -> Option<CloseCode> {
    let (&first, &second) = (buf.first()?, buf.get(1)?);
    let length = match second & 0x7f {
        126 => u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
        127 => u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?),
        short => u64::from(short),
    };
    let (control, fin) = (first & 0x08 != 0, first & 0x80 != 0);
    if control && (length > 125 || !fin) {
        Some(CloseCode::Protocol)
    } else if length > u64::try_from(max).unwrap_or(u64::MAX) {
        Some(CloseCode::Size)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::{
        cell::{Cell, RefCell},
        time::Duration,
    };

    use actix_web::{dev, test::TestRequest, FromRequest as _};
    use futures_util::FutureExt as _;

    use super::*;
    use crate::{
        protocol::wsframe,
        receiver::{out_queue, push},
        session::command_channel,
    };

    /// A socket whose client sends nothing (its end is kept).
    fn socket() -> (WsStream, crate::receiver::OutTx, impl FnMut(Bytes)) {
        socket_of(None, Config::default())
    }

    /// A socket that runs `turn`, with `config`, and its client's end:
    /// what it is given arrives on the socket.
    fn socket_of(
        turn: Option<Rc<dyn Turn>>,
        config: Config,
    ) -> (WsStream, crate::receiver::OutTx, impl FnMut(Bytes)) {
        let (sender, h1) = actix_http::h1::Payload::create(false);
        let mut payload: dev::Payload = h1.into();
        let req = TestRequest::default().to_http_request();
        let payload =
            web::Payload::from_request(&req, &mut payload).now_or_never().expect("ready").expect("payload");
        let (out_tx, out_rx) = out_queue();
        let (session, _rx) = command_channel();
        let socket = WsStream::new(payload, out_rx, session, turn, false, Arc::new(config));
        let mut sender = sender;
        (socket, out_tx, move |data| sender.feed_data(data))
    }

    /// A session stand-in: an inbox the socket fills and nothing empties,
    /// and a count of the times the socket told it to let go of its buffer.
    #[derive(Default)]
    struct Inbox {
        messages: RefCell<Vec<String>>,
        released: Cell<usize>,
    }

    impl Turn for Inbox {
        fn turn(&self) -> Option<(bool, usize)> {
            Some((false, self.inbox_weight()))
        }

        fn wake(&self) {}

        fn fill_inbox(&self, fill: &mut dyn FnMut(&mut Vec<String>)) -> bool {
            fill(&mut self.messages.borrow_mut());
            true
        }

        fn release_inbox(&self) {
            self.released.set(self.released.get() + 1);
        }

        fn inbox_weight(&self) -> usize {
            inbound_weight(&self.messages.borrow())
        }
    }

    /// A text frame as a client sends it (masked).
    fn client_text(text: &str) -> Bytes {
        let mut frame = BytesMut::new();
        Codec::new().client_mode().encode(Message::Text(text.into()), &mut frame).expect("encoded");
        frame.freeze()
    }

    #[test]
    fn a_frames_header_refuses_it_by_length_or_a_fragmented_control_frame() {
        let max = 1 << 20;
        // A ping without FIN (actix-http logs it at `error` if it gets it).
        assert_eq!(refused_by_header(&[0x09, 0x80], max), Some(CloseCode::Protocol));
        assert_eq!(refused_by_header(&[0x0a, 0x80 | 3], max), Some(CloseCode::Protocol));
        assert_eq!(refused_by_header(&[0x89, 0x80 | 126, 0, 126], max), Some(CloseCode::Protocol));
        assert_eq!(
            refused_by_header(&[0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0x10, 0, 1], max),
            Some(CloseCode::Size)
        );
        // What passes: a whole ping, a first fragment of text, a header not yet whole.
        assert_eq!(refused_by_header(&[0x89, 0x80 | 125], max), None);
        assert_eq!(refused_by_header(&[0x01, 0x80 | 5], max), None);
        assert_eq!(refused_by_header(&[0x09], max), None);
    }

    #[test]
    fn the_clients_messages_are_read_into_the_sessions_inbox_in_order() {
        actix::System::new().block_on(async {
            let inbox = Rc::new(Inbox::default());
            let (mut socket, _out, mut client) = socket_of(Some(inbox.clone()), Config::default());
            client(client_text(r#"["a","b"]"#));
            client(client_text(r#""c""#));
            assert_eq!(next(&mut socket), Poll::Pending);
            assert_eq!(*inbox.messages.borrow(), ["a", "b", "c"]);
            // A payload it cannot read closes the socket, and none of it
            // reaches the inbox.
            client(client_text(r#"["d", 1]"#));
            let Poll::Ready(Some(close)) = next(&mut socket) else { panic!("a close frame") };
            let mut expected = BytesMut::new();
            let reason =
                CloseReason { code: CloseCode::Other(3000), description: Some("Broken framing.".into()) };
            Codec::new().encode(Message::Close(Some(reason)), &mut expected).expect("encoded");
            assert_eq!(close, expected.freeze());
            assert_eq!(*inbox.messages.borrow(), ["a", "b", "c"]);
        });
    }

    #[test]
    fn a_ping_tells_the_session_to_let_go_of_its_inbox_buffer() {
        actix::System::new().block_on(async {
            let inbox = Rc::new(Inbox::default());
            let config = Config { heartbeat: Duration::from_millis(1), ..Config::default() };
            let (mut socket, _out, _client) = socket_of(Some(inbox.clone()), config);
            assert_eq!(inbox.released.get(), 0);
            // The worker's deadlines wake the socket for its ping: the
            // heartbeat and the ping go out together.
            let chunk =
                futures_util::StreamExt::next(&mut socket).await.expect("a chunk").expect("infallible");
            assert!(chunk.ends_with(&[0x89, 0x00]), "a ping: {chunk:?}");
            assert_eq!(inbox.released.get(), 1);
        });
    }

    #[test]
    fn nothing_goes_out_after_a_close_frame_the_read_wrote() {
        // An audit: a ping falling due in the poll that answered the
        // client's close frame (or refused its message) went out after
        // the close frame, with a heartbeat, which RFC 6455 forbids.
        let normal = CloseReason { code: CloseCode::Normal, description: None };
        let broken =
            CloseReason { code: CloseCode::Other(3000), description: Some("Broken framing.".into()) };
        let mut client_close = BytesMut::new();
        Codec::new()
            .client_mode()
            .encode(Message::Close(Some(normal.clone())), &mut client_close)
            .expect("encoded");
        for (sent, answer) in [(client_close.freeze(), normal), (client_text("not json"), broken)] {
            actix::System::new().block_on(async {
                let config = Config { heartbeat: Duration::from_millis(1), ..Config::default() };
                let (mut socket, _out, mut client) = socket_of(None, config);
                assert_eq!(next(&mut socket), Poll::Pending);
                // Until the ping is due, and the worker's deadlines say so.
                while clock::now() < socket.next_ping || !deadlines::may_have_passed(socket.armed) {
                    actix_web::rt::time::sleep(Duration::from_millis(1)).await;
                }
                client(sent);
                let Poll::Ready(Some(chunk)) = next(&mut socket) else { panic!("a chunk") };
                let mut expected = BytesMut::new();
                Codec::new().encode(Message::Close(Some(answer)), &mut expected).expect("encoded");
                assert_eq!(chunk, expected.freeze(), "the close frame alone, nothing after it");
                assert_eq!(next(&mut socket), Poll::Ready(None));
            });
        }
    }

    fn next(socket: &mut WsStream) -> Poll<Option<Bytes>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(socket).poll_next(&mut cx).map(|item| item.map(|chunk| chunk.expect("infallible")))
    }

    #[test]
    fn a_frame_alone_goes_out_as_it_is_and_several_in_order() {
        actix::System::new().block_on(async {
            let (mut socket, out, mut client) = socket();
            assert_eq!(next(&mut socket), Poll::Pending);

            let frame = wsframe::text_frame(&["a[\"one\"]"]);
            let (at, expected) = (frame.as_ptr(), frame.to_vec());
            push(&out, Out::Frame(frame)).expect("queued");
            let Poll::Ready(Some(alone)) = next(&mut socket) else { panic!("a chunk") };
            assert_eq!(alone, expected);
            assert_eq!(alone.as_ptr(), at, "handed on, not copied");

            let frames = ["a[\"two\"]", "a[\"three\"]"].map(|text| wsframe::text_frame(&[text]));
            let joined = frames.concat();
            for frame in frames {
                push(&out, Out::Frame(frame)).expect("queued");
            }
            push(&out, Out::Close(Box::new((3000, "Go away!".into())))).expect("queued");
            let Poll::Ready(Some(chunk)) = next(&mut socket) else { panic!("a chunk") };
            let mut close = BytesMut::new();
            let reason = CloseReason { code: CloseCode::from(3000), description: Some("Go away!".into()) };
            Codec::new().encode(Message::Close(Some(reason)), &mut close).expect("encoded");
            assert_eq!(chunk, [joined, close.to_vec()].concat(), "both frames, in order, then the close");
            // The client's answer is awaited; what it sent before is
            // dropped, and its close frame ends the socket.
            assert_eq!(next(&mut socket), Poll::Pending, "the client's close frame is awaited");
            client(client_text(r#"["late"]"#));
            assert_eq!(next(&mut socket), Poll::Pending, "a text frame is not the answer");
            let mut answer = BytesMut::new();
            let normal = CloseReason { code: CloseCode::Normal, description: None };
            Codec::new().client_mode().encode(Message::Close(Some(normal)), &mut answer).expect("encoded");
            client(answer.freeze());
            assert_eq!(next(&mut socket), Poll::Ready(None), "the socket ends at the client's close frame");
        });
    }
}
