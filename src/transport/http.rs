//! The HTTP transports: the receiving requests (xhr, xhr_streaming,
//! eventsource, htmlfile, jsonp) and the sending ones (xhr_send,
//! jsonp_send). All receivers are the same mechanism with a different
//! [`Framing`].

use std::{convert::Infallible, sync::Arc};

use actix_web::{
    http::{header, ConnectionType, StatusCode, Version},
    web::{self, Bytes, BytesMut},
    HttpRequest, HttpResponse, HttpResponseBuilder,
};
use futures_util::{stream, StreamExt as _};
use tokio::sync::mpsc::unbounded_channel;

use super::{body_stream, Backlog, Framing, PeerSocket, Receiver};
use crate::{
    admission::Refusal,
    manager::{Acquire, Acquired, GetDirectory, Starter},
    protocol::{htmlfile_prelude, parse_messages, validate_callback, CallbackError},
    service::{cors, never_cache, session_cookie, Endpoint, JAVASCRIPT, TEXT},
    session::{start_session, Command, CommandRx, CommandTx, Mode, RequestInfo, Session, SessionSetup},
    util,
};

/// Why a request could not reach its session.
#[derive(Debug)]
pub(crate) enum ReachError {
    /// No session with that id.
    Missing,
    /// The manager actor is gone.
    Manager,
    /// The authorisation hook or a cap refused to open the session.
    Denied(actix_web::Error),
}

/// The answer to a session the caps refused.
pub(crate) fn refusal_error(refusal: Refusal) -> actix_web::Error {
    log::info!("sockjs: session refused: {refusal:?}");
    match refusal {
        Refusal::Full => actix_web::error::ErrorServiceUnavailable("Too many sessions."),
        Refusal::ShuttingDown => actix_web::error::ErrorServiceUnavailable("Server shutting down."),
        Refusal::TooManyFromClient => {
            actix_web::error::ErrorTooManyRequests("Too many sessions from this client.")
        }
    }
}

impl<A: Session> Endpoint<A> {
    /// Attaches a receiver to the session `id`, opening the session first
    /// (if the authorisation hook and the caps allow it) if there is none.
    async fn attach(&self, req: &HttpRequest, id: Arc<str>, receiver: Receiver) -> Result<(), ReachError> {
        let mut receiver = Box::new(receiver);
        if let Some(tx) = self.find(&id).await {
            match tx.send(Command::Attach(receiver)) {
                Ok(()) => return Ok(()),
                Err(Command::Attach(r)) => receiver = r,
                Err(_) => return Err(ReachError::Manager),
            }
        }
        let mut opening = None;
        // A session can end between the manager's answer and our command;
        // the manager then forgets it and the next round opens a new one.
        for _ in 0..3 {
            let acquire = Acquire::new(id.clone(), opening);
            match self.manager.send(acquire).await.map_err(|_| ReachError::Manager)? {
                Acquired::Found(tx) => match tx.send(Command::Attach(receiver)) {
                    Ok(()) => return Ok(()),
                    Err(Command::Attach(r)) => receiver = r,
                    Err(_) => return Err(ReachError::Manager),
                },
                Acquired::Created { serial, tx, rx, starter } => {
                    let _ = tx.send(Command::Attach(receiver));
                    self.start(starter, serial, id, Mode::Http, req, rx);
                    return Ok(());
                }
                Acquired::Missing => opening = Some(self.admit(req).map_err(ReachError::Denied)?),
                Acquired::Refused(refusal) => return Err(ReachError::Denied(refusal_error(refusal))),
            }
        }
        Err(ReachError::Manager)
    }

    /// Hands client messages to the existing session `id`.
    async fn deliver(&self, id: Arc<str>, messages: Vec<String>) -> Result<(), ReachError> {
        let tx = match self.find(&id).await {
            Some(tx) => tx,
            None => match self.manager.send(Acquire::new(id, None)).await.map_err(|_| ReachError::Manager)? {
                Acquired::Found(tx) => tx,
                _ => return Err(ReachError::Missing),
            },
        };
        tx.send(Command::messages(messages)).map_err(|_| ReachError::Missing)?;
        // Answered once the session has room again: a client that sends
        // faster than its session handles waits for its answers.
        futures_util::future::poll_fn(|cx| tx.poll_room(cx)).await;
        Ok(())
    }

    /// The live HTTP session `id` from the manager's directory, without a
    /// round trip to the manager (but the first, which fetches the
    /// directory for this worker).
    async fn find(&self, id: &str) -> Option<CommandTx> {
        if self.directory.get().is_none() {
            let directory = self.manager.send(GetDirectory).await.ok()?;
            let _ = self.directory.set(directory);
        }
        self.directory.get()?.find(id)
    }

    /// Starts a session actor on this worker.
    pub(crate) fn start(
        &self,
        starter: Starter<A>,
        serial: u64,
        id: Arc<str>,
        mode: Mode,
        req: &HttpRequest,
        rx: CommandRx,
    ) {
        let setup = SessionSetup {
            id,
            serial,
            mode,
            config: self.config.clone(),
            request: RequestInfo::from_request(req, self.client_ip(req)),
            on_end: starter.on_end,
            metrics: self.metrics.clone(),
        };
        start_session((starter.factory)(), setup, rx);
    }
}

pub(crate) fn session_id(req: &HttpRequest) -> Arc<str> {
    Arc::from(req.match_info().get("session").unwrap_or_default())
}

/// POST `/<server>/<session>/xhr`: long-polling receiver.
pub(crate) async fn xhr<A: Session>(req: HttpRequest, ep: web::Data<Endpoint<A>>) -> HttpResponse {
    receive(&req, &ep, Framing::Xhr).await
}

/// POST `/<server>/<session>/xhr_streaming`.
pub(crate) async fn xhr_streaming<A: Session>(req: HttpRequest, ep: web::Data<Endpoint<A>>) -> HttpResponse {
    receive(&req, &ep, Framing::XhrStreaming).await
}

/// GET `/<server>/<session>/eventsource`.
pub(crate) async fn eventsource<A: Session>(req: HttpRequest, ep: web::Data<Endpoint<A>>) -> HttpResponse {
    receive(&req, &ep, Framing::EventSource).await
}

/// GET `/<server>/<session>/htmlfile?c=<callback>`.
pub(crate) async fn htmlfile<A: Session>(req: HttpRequest, ep: web::Data<Endpoint<A>>) -> HttpResponse {
    match callback(&req) {
        Ok(_) => receive(&req, &ep, Framing::HtmlFile).await,
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// GET `/<server>/<session>/jsonp?c=<callback>`.
pub(crate) async fn jsonp<A: Session>(req: HttpRequest, ep: web::Data<Endpoint<A>>) -> HttpResponse {
    match callback(&req) {
        Ok(cb) => receive(&req, &ep, Framing::Jsonp(cb.into_boxed_str())).await,
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn callback(req: &HttpRequest) -> Result<String, CallbackError> {
    let query = req.query_string();
    let raw = util::query_param(query, "c").or_else(|| util::query_param(query, "callback"));
    match validate_callback(raw.as_deref()) {
        Ok(cb) => Ok(cb.to_owned()),
        Err(e) => {
            log::debug!("sockjs: {} {}: {e}", req.method(), req.path());
            Err(e)
        }
    }
}

/// The shared body of every receiving transport.
async fn receive<A: Session>(req: &HttpRequest, ep: &Endpoint<A>, framing: Framing) -> HttpResponse {
    if let Err(e) = ep.check_origin(req) {
        return e.error_response();
    }
    let prelude = match &framing {
        Framing::XhrStreaming => {
            let mut p = "h".repeat(2048);
            p.push('\n');
            Some(Bytes::from(p))
        }
        Framing::EventSource => Some(Bytes::from_static(b"\r\n")),
        Framing::HtmlFile => callback(req).ok().map(|cb| Bytes::from(htmlfile_prelude(&cb))),
        _ => None,
    };
    let content_type = match &framing {
        Framing::EventSource => "text/event-stream",
        Framing::HtmlFile => "text/html; charset=UTF-8",
        _ => JAVASCRIPT,
    };
    let with_cors = !matches!(framing, Framing::HtmlFile | Framing::Jsonp(_));

    let polling = framing.polling();
    let (tx, mut rx) = unbounded_channel();
    let backlog = Backlog::default();
    let peer = req.conn_data::<PeerSocket>().cloned();
    let receiver = Receiver::http(framing, tx, backlog.clone(), ep.config.response_limit, peer);
    match ep.attach(req, session_id(req), receiver).await {
        Ok(()) => {}
        Err(ReachError::Denied(e)) => return e.error_response(),
        Err(e) => {
            log::error!("sockjs: cannot open a receiver: {e:?}");
            return error(StatusCode::SERVICE_UNAVAILABLE, "Session manager unavailable.");
        }
    }

    let mut res = HttpResponse::Ok();
    res.content_type(content_type);
    if content_type == JAVASCRIPT {
        res.insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    }
    never_cache(&mut res);
    if with_cors {
        cors(&mut res, req);
    }
    session_cookie(&mut res, req, &ep.config);
    if polling {
        // A polling response carries one frame: answer once it is there,
        // head and body in one write, instead of a head now and a chunk
        // later (two small writes, which Nagle's algorithm and the client's
        // delayed ACK can hold back by 40 ms).
        let frame = rx.recv().await.unwrap_or_default();
        backlog.take(frame.len());
        return res.body(frame);
    }
    // One body item per frame: actix-web writes each as its own chunk.
    let body = stream::iter(prelude).chain(body_stream(rx, backlog)).map(Ok::<_, Infallible>);
    let mut res = res.streaming(body);
    if req.version() == Version::HTTP_10 {
        // HTTP/1.0 has no chunked encoding: raw bytes, then close.
        res.head_mut().no_chunking(true);
        res.head_mut().set_connection_type(ConnectionType::Close);
    }
    res
}

/// POST `/<server>/<session>/xhr_send`: the body is a JSON array of messages.
pub(crate) async fn xhr_send<A: Session>(
    req: HttpRequest,
    body: web::Payload,
    ep: web::Data<Endpoint<A>>,
) -> HttpResponse {
    send(&req, &ep, body, Sender::Xhr).await
}

/// POST `/<server>/<session>/jsonp_send`: a form field `d` or a raw body.
pub(crate) async fn jsonp_send<A: Session>(
    req: HttpRequest,
    body: web::Payload,
    ep: web::Data<Endpoint<A>>,
) -> HttpResponse {
    send(&req, &ep, body, Sender::Jsonp).await
}

/// The two sending transports: where the payload is and how they answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sender {
    /// The body is the payload; success is 204.
    Xhr,
    /// A form's `d` field, or the raw body, is the payload; success is 200 `ok`.
    Jsonp,
}

/// The JSON payload of a jsonp_send body: the form field `d` when the body
/// is a form, the body itself otherwise (PROTOCOL.md §6.10).
fn jsonp_payload(req: &HttpRequest, body: Bytes) -> Bytes {
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !form {
        return body;
    }
    let text = String::from_utf8_lossy(&body);
    let d = util::form_pairs(&text).find(|(k, _)| k == "d").map(|(_, v)| v).unwrap_or_default();
    Bytes::from(d)
}

async fn send<A: Session>(
    req: &HttpRequest,
    ep: &Endpoint<A>,
    body: web::Payload,
    sender: Sender,
) -> HttpResponse {
    if let Err(e) = ep.check_origin(req) {
        return e.error_response();
    }
    let body = match read_body(body, ep.config.max_message_bytes).await {
        Ok(b) => b,
        Err((status, text)) => return error(status, text),
    };
    let payload = if sender == Sender::Jsonp { jsonp_payload(req, body) } else { body };
    let messages = match parse_messages(&payload, false) {
        Ok(m) => m,
        Err(e) => {
            log::debug!("sockjs: {} {}: {e}", req.method(), req.path());
            return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    };
    let id = session_id(req);
    match ep.deliver(id.clone(), messages).await {
        Ok(()) => {}
        Err(ReachError::Missing) => {
            log::debug!("sockjs: {} to unknown session {id}", req.path());
            return error(StatusCode::NOT_FOUND, "Session not found.");
        }
        Err(ReachError::Manager | ReachError::Denied(_)) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "Session manager unavailable.")
        }
    }
    let (status, ok_body) = match sender {
        Sender::Xhr => (StatusCode::NO_CONTENT, ""),
        Sender::Jsonp => (StatusCode::OK, "ok"),
    };
    let mut res = HttpResponseBuilder::new(status);
    res.content_type(TEXT);
    never_cache(&mut res);
    cors(&mut res, req);
    session_cookie(&mut res, req, &ep.config);
    res.body(ok_body)
}

/// Reads a request body up to `limit` bytes; over it answers 413.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<Bytes, (StatusCode, &'static str)> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            log::debug!("sockjs: cannot read request body: {e}");
            (StatusCode::BAD_REQUEST, "Cannot read the request body.")
        })?;
        if body.len() + chunk.len() > limit {
            log::info!("sockjs: request body over {limit} bytes refused");
            return Err((StatusCode::PAYLOAD_TOO_LARGE, "Payload too large."));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

pub(crate) fn error(status: StatusCode, body: impl Into<String>) -> HttpResponse {
    HttpResponseBuilder::new(status).content_type(TEXT).body(body.into())
}
