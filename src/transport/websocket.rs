//! The WebSocket transports: SockJS-framed (`/<server>/<session>/websocket`),
//! raw (`/websocket`), and the legacy hixie-76 handshake on the framed URL.
//!
//! A WebSocket is served by a small actix-web-actors actor that attaches to
//! its session as the session's only receiver and forwards client messages.

use std::{
    convert::Infallible,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::{Actor, ActorContext, AsyncContext, StreamHandler};
use actix_http::ws::Codec;
use actix_web::{
    http::{header, StatusCode},
    web::{self, Bytes, BytesMut},
    HttpRequest, HttpResponse,
};
use actix_web_actors::ws::{self, CloseCode, CloseReason, Message, ProtocolError, WebsocketContext};
use futures_util::{stream, StreamExt as _};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::{
    body_stream,
    http::{error, refusal_error},
    Backlog, Framing, PeerSocket, Receiver, WsOut,
};
use crate::{
    manager::{next_serial, Opening, RegisterSocket},
    protocol::{hixie76_digest, parse_messages},
    service::Endpoint,
    session::{Command, Mode, Session},
};

/// GET `/<server>/<session>/websocket`.
pub(crate) async fn framed<A: Session>(
    req: HttpRequest,
    payload: web::Payload,
    ep: web::Data<Endpoint<A>>,
) -> HttpResponse {
    let legacy = req.headers().contains_key("sec-websocket-key1")
        && !req.headers().contains_key(header::SEC_WEBSOCKET_KEY);
    if legacy {
        return hixie76(req, payload, ep).await;
    }
    let id = Arc::from(req.match_info().get("session").unwrap_or_default());
    open(req, payload, &ep, id, false).await
}

/// GET `/websocket`: a WebSocket without SockJS framing.
pub(crate) async fn raw<A: Session>(
    req: HttpRequest,
    payload: web::Payload,
    ep: web::Data<Endpoint<A>>,
) -> HttpResponse {
    open(req, payload, &ep, Arc::from(""), true).await
}

async fn open<A: Session>(
    req: HttpRequest,
    payload: web::Payload,
    ep: &Endpoint<A>,
    id: Arc<str>,
    raw: bool,
) -> HttpResponse {
    if let Err(e) = ep.check_origin(&req) {
        return e.error_response();
    }
    let mut handshake = match ws::handshake(&req) {
        Ok(h) => {
            if let Some(peer) = req.conn_data::<PeerSocket>() {
                peer.release();
            }
            h
        }
        Err(e) => {
            log::debug!("sockjs: {}: not a valid websocket request: {e}", req.path());
            return error(StatusCode::BAD_REQUEST, format!("Not a valid websocket request: {e}"));
        }
    };
    let serial = next_serial();
    let id = if raw { Arc::from(format!("raw-{serial}")) } else { id };
    let (framing, mode) =
        if raw { (Framing::RawWebSocket, Mode::Raw) } else { (Framing::WebSocket, Mode::WebSocket) };
    let (out_tx, out_rx) = unbounded_channel();
    let backlog = Backlog::default();
    let receiver = Receiver::ws(framing, out_tx, backlog.clone());
    let opening = match ep.admit(&req) {
        Ok(o) => o,
        Err(e) => return e.error_response(),
    };
    let cmd_tx = match open_session(&req, ep, id, serial, mode, receiver, opening).await {
        Ok(tx) => tx,
        Err(e) => return e.error_response(),
    };
    let transport = WsTransport {
        session: cmd_tx,
        out: Some(out_rx),
        backlog,
        raw,
        heartbeat: ep.config.heartbeat,
        ping_timeout: ep.config.ping_timeout,
        last_seen: Instant::now(),
        max: ep.config.max_message_bytes,
        partial: None,
    };
    let codec = Codec::new().max_size(ep.config.max_message_bytes);
    handshake.streaming(WebsocketContext::with_codec(transport, payload, codec))
}

/// Registers a WebSocket session with the manager and starts it with its
/// receiver attached; returns the session's command channel.
async fn open_session<A: Session>(
    req: &HttpRequest,
    ep: &Endpoint<A>,
    id: Arc<str>,
    serial: u64,
    mode: Mode,
    receiver: Receiver,
    opening: Opening,
) -> Result<UnboundedSender<Command>, actix_web::Error> {
    let (cmd_tx, cmd_rx) = unbounded_channel();
    let lookup = (mode == Mode::WebSocket).then(|| id.clone());
    let factory = match ep.manager.send(RegisterSocket::new(serial, lookup, cmd_tx.clone(), opening)).await {
        Ok(Ok(f)) => f,
        Ok(Err(refusal)) => return Err(refusal_error(refusal)),
        Err(e) => {
            log::error!("sockjs: session manager unavailable: {e}");
            return Err(actix_web::error::ErrorServiceUnavailable("Session manager unavailable."));
        }
    };
    let _ = cmd_tx.send(Command::Attach(Box::new(receiver)));
    ep.start(factory, serial, id, mode, req, cmd_rx);
    Ok(cmd_tx)
}

/// The actor serving one WebSocket connection.
struct WsTransport {
    session: UnboundedSender<Command>,
    out: Option<UnboundedReceiver<WsOut>>,
    backlog: Backlog,
    raw: bool,
    heartbeat: Duration,
    ping_timeout: Duration,
    /// When the client last sent anything.
    last_seen: Instant,
    max: usize,
    /// A fragmented text message being reassembled.
    partial: Option<BytesMut>,
}

impl Actor for WsTransport {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(mut rx) = self.out.take() {
            ctx.add_stream(stream::poll_fn(move |cx| rx.poll_recv(cx)));
        }
        // Dead peers: ping every heartbeat; silence for ping_timeout after a
        // ping ends the socket.
        let timeout = self.ping_timeout;
        ctx.run_interval(self.heartbeat, move |_, ctx| {
            ctx.ping(b"");
            let sent = Instant::now();
            ctx.run_later(timeout, move |act, ctx| {
                if act.last_seen < sent {
                    log::info!("sockjs: websocket peer silent for {timeout:?} after a ping, closing");
                    let _ = act.session.send(Command::TransportFailed(crate::CloseReason::Interrupted));
                    ctx.stop();
                }
            });
        });
    }
}

impl WsTransport {
    fn deliver(&mut self, text: &str, ctx: &mut WebsocketContext<Self>) {
        if self.raw {
            let _ = self.session.send(Command::Messages(vec![text.to_owned()]));
            return;
        }
        if text.is_empty() {
            return;
        }
        match parse_messages(text.as_bytes(), true) {
            Ok(messages) if messages.is_empty() => {}
            Ok(messages) => {
                let _ = self.session.send(Command::Messages(messages));
            }
            Err(e) => {
                log::debug!("sockjs: websocket frame refused: {e}");
                self.fail(ctx, CloseCode::Other(3000), Some("Broken framing."));
            }
        }
    }
}

impl WsTransport {
    /// Closes the socket after a client error and tells the session why.
    fn fail(&mut self, ctx: &mut WebsocketContext<Self>, code: CloseCode, reason: Option<&str>) {
        let _ = self.session.send(Command::TransportFailed(crate::CloseReason::ProtocolError));
        ctx.close(Some(CloseReason { code, description: reason.map(str::to_owned) }));
        ctx.stop();
    }
}

impl StreamHandler<WsOut> for WsTransport {
    fn handle(&mut self, item: WsOut, ctx: &mut Self::Context) {
        match item {
            WsOut::Text(text) => {
                self.backlog.take(text.len());
                ctx.text(text);
            }
            WsOut::Close(code, reason) => {
                ctx.close(Some(CloseReason { code: CloseCode::from(code), description: Some(reason) }));
                ctx.stop();
            }
        }
    }
}

impl StreamHandler<Result<Message, ProtocolError>> for WsTransport {
    fn handle(&mut self, item: Result<Message, ProtocolError>, ctx: &mut Self::Context) {
        self.last_seen = Instant::now();
        let msg = match item {
            Ok(msg) => msg,
            Err(e) => {
                log::debug!("sockjs: websocket protocol error: {e}");
                let code =
                    if matches!(e, ProtocolError::Overflow) { CloseCode::Size } else { CloseCode::Protocol };
                self.fail(ctx, code, None);
                return;
            }
        };
        match msg {
            Message::Text(text) => self.deliver(&text, ctx),
            Message::Binary(_) => log::debug!("sockjs: binary websocket message ignored"),
            Message::Continuation(item) => self.continuation(item, ctx),
            Message::Ping(p) => ctx.pong(&p),
            Message::Pong(_) | Message::Nop => {}
            Message::Close(reason) => {
                ctx.close(reason);
                ctx.stop();
            }
        }
    }
}

impl WsTransport {
    fn continuation(&mut self, item: actix_http::ws::Item, ctx: &mut WebsocketContext<Self>) {
        let (first, last, bytes) = match item {
            actix_http::ws::Item::FirstText(b) => (true, false, b),
            actix_http::ws::Item::FirstBinary(_) => {
                log::debug!("sockjs: fragmented binary websocket message ignored");
                return;
            }
            actix_http::ws::Item::Continue(b) => (false, false, b),
            actix_http::ws::Item::Last(b) => (false, true, b),
        };
        if first {
            self.partial = Some(BytesMut::new());
        }
        let Some(buf) = self.partial.as_mut() else { return };
        if buf.len() + bytes.len() > self.max {
            log::info!("sockjs: websocket message over {} bytes refused", self.max);
            self.fail(ctx, CloseCode::Size, None);
            return;
        }
        buf.extend_from_slice(&bytes);
        if last {
            let Some(buf) = self.partial.take() else { return };
            match std::str::from_utf8(&buf) {
                Ok(text) => self.deliver(text, ctx),
                Err(_) => self.fail(ctx, CloseCode::Invalid, None),
            }
        }
    }
}

/// The hixie-76 handshake (PROTOCOL.md §6.11b): the head goes out before the
/// 8-byte key is read, then the digest, then hixie-framed SockJS frames.
async fn hixie76<A: Session>(
    req: HttpRequest,
    mut payload: web::Payload,
    ep: web::Data<Endpoint<A>>,
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
    let opening = match ep.admit(&req) {
        Ok(o) => o,
        Err(e) => return e.error_response(),
    };
    let location = format!("ws://{}{}", text("host"), req.uri());
    let origin = text("origin");

    let (out_tx, out_rx) = unbounded_channel::<Bytes>();
    let backlog = Backlog::default();
    let body = body_stream(out_rx, backlog.clone()).map(Ok::<_, Infallible>);
    let ep = ep.into_inner();
    let req2 = req.clone();
    actix_web::rt::spawn(async move {
        let mut buf = BytesMut::new();
        while buf.len() < 8 {
            match payload.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                _ => return,
            }
        }
        let key3 = buf.split_to(8);
        let Some(digest) = hixie76_digest(&key1, &key2, &key3) else {
            log::debug!("sockjs: bad hixie-76 keys");
            return;
        };
        if out_tx.send(Bytes::copy_from_slice(&digest)).is_err() {
            return;
        }
        let id = Arc::from(req2.match_info().get("session").unwrap_or_default());
        let receiver = Receiver::http(Framing::Hixie76, out_tx, backlog, usize::MAX, None);
        let Ok(session) =
            open_session(&req2, &ep, id, next_serial(), Mode::WebSocket, receiver, opening).await
        else {
            return;
        };
        // Client frames: 0x00, UTF-8 text, 0xFF.
        loop {
            while let Some(start) = buf.iter().position(|&b| b == 0) {
                let Some(len) = buf[start + 1..].iter().position(|&b| b == 0xff) else { break };
                let frame = buf.split_to(start + 1 + len + 1);
                let text = String::from_utf8_lossy(&frame[start + 1..start + 1 + len]).into_owned();
                match parse_messages(text.as_bytes(), true) {
                    Ok(m) if !m.is_empty() => {
                        let _ = session.send(Command::Messages(m));
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
            match payload.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                _ => return,
            }
        }
    });
    let mut res = HttpResponse::SwitchingProtocols();
    res.upgrade("WebSocket");
    res.insert_header(("Sec-WebSocket-Location", location));
    if !origin.is_empty() {
        res.insert_header(("Sec-WebSocket-Origin", origin));
    }
    res.streaming(body)
}
