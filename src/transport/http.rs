//! The HTTP transports: every receiving URL (xhr, xhr_streaming,
//! eventsource, htmlfile, jsonp) is [`receive`] run with its [`TABLE`]
//! row; the sending URLs (xhr_send, jsonp_send) are [`send`].
//!
//! [`TABLE`]: super::TABLE

use std::{
    convert::Infallible,
    future::{poll_fn, Future},
    pin::{pin, Pin},
    sync::Arc,
    task::Poll,
    time::Duration,
};

use actix_web::{
    http::{header, ConnectionType, StatusCode, Version},
    rt::time::{sleep_until, Instant, Sleep},
    web::{self, Bytes, BytesMut},
    HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError as _,
};
use futures_util::{stream, Stream, StreamExt as _};

use super::{Prelude, Receiving, Row, Sending};
use crate::{
    config::{time_bought, BODY_TIME_CAP},
    endpoint::{
        add_cors, cors, error, keep_unread, never_cache, session_cookie, session_error, Endpoint, LogPath,
        ReachError, BIND_COOKIE, JAVASCRIPT, TEXT,
    },
    protocol::{close_frame, htmlfile_prelude, parse_messages, validate_callback},
    receiver::{out_queue, poll_text, Framing, Out, OutRx, PeerSocket, Receiver},
    session::{OpenPanicked, Session},
    util,
};

/// The callback of a htmlfile or JSONP request (docs/protocol.md §6.8, §6.9).
fn callback(req: &HttpRequest) -> Result<String, Box<HttpResponse>> {
    let query = req.query_string();
    let raw = util::query_param(query, "c").or_else(|| util::query_param(query, "callback"));
    match validate_callback(raw.as_deref()) {
        Ok(cb) => Ok(cb.to_owned()),
        Err(e) => {
            log::debug!("sockjs: {} {}: {e}", req.method(), LogPath(req));
            Err(Box::new(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())))
        }
    }
}

/// A receiving request: attaches a receiver to its session and streams
/// or answers what the session writes, as its row says.
pub(crate) async fn receive<A: Session>(
    req: HttpRequest,
    ep: web::Data<Endpoint<A>>,
    row: &'static Row,
    how: &'static Receiving,
    id: Arc<str>,
) -> HttpResponse {
    if let Err(e) = ep.check_origin(&req) {
        return e.error_response();
    }
    let callback = if how.callback {
        match callback(&req) {
            Ok(cb) => cb,
            Err(answer) => return *answer,
        }
    } else {
        String::new()
    };
    let prelude = match how.prelude {
        Prelude::None => None,
        Prelude::Bytes(bytes) => Some(Bytes::from_static(bytes)),
        Prelude::HtmlFile => Some(Bytes::from(htmlfile_prelude(&callback))),
    };

    let limit = if how.streaming { ep.config.response_limit } else { 0 };
    let receiver = || {
        let (tx, rx) = out_queue();
        let receiver = Receiver::http(row.transport, how.framing.clone(), tx, limit)
            .with_callback(&callback)
            .with_peer(req.conn_data::<PeerSocket>().cloned());
        (receiver, rx)
    };
    let (attached, mut rx) = receiver();
    let ticket = attached.ticket();
    let (mut bind_cookie, mut serial) = (None, None);
    let fail = |status: StatusCode, body: String| session_error(&req, &ep.config, how.cors, status, body);
    match ep.attach(&req, id.clone(), attached).await {
        Ok(handed) => (bind_cookie, serial) = (handed.cookie, handed.serial),
        Err(ReachError::Missing) => {
            log::debug!("sockjs: {} {}: no such session for this client", req.method(), LogPath(&req));
            return fail(StatusCode::NOT_FOUND, "Session not found.".to_owned());
        }
        Err(ReachError::Denied(refuse)) => match refuse.close_frame() {
            // Refused with a close frame: the transport's ordinary answer,
            // carrying that frame alone.
            Some((code, reason)) => {
                let (mut refused, refused_rx) = receiver();
                let _ = refused.write(close_frame(code, reason));
                rx = refused_rx;
            }
            // The endpoint's own refusals (503, 429) get the transport's
            // headers; the application's stay as it built them, with the
            // transport's CORS headers where it set none, so that a page
            // on another (allowed) origin sees its status and body rather
            // than a CORS failure.
            None => match refuse.refusal() {
                Some(refusal) => {
                    ep.log_refusal(&req, *refusal);
                    return fail(refusal.status_code(), refusal.to_string());
                }
                None => {
                    let mut res = refuse.error_response();
                    if how.cors {
                        add_cors(&mut res, &req);
                    }
                    return res;
                }
            },
        },
        // Logged where it was caught.
        Err(ReachError::Panicked) => return fail(OpenPanicked.status_code(), OpenPanicked.to_string()),
        Err(e) => {
            log::error!("sockjs: cannot open a receiver: {e:?}");
            return fail(StatusCode::SERVICE_UNAVAILABLE, "Session manager unavailable.".to_owned());
        }
    }

    let mut res = HttpResponse::Ok();
    res.content_type(how.content_type);
    if how.content_type == JAVASCRIPT {
        res.insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    }
    never_cache(&mut res);
    if how.cors {
        cors(&mut res, &req);
    }
    session_cookie(&mut res, &req, &ep.config);
    if let Some(value) = bind_cookie {
        // `Secure` over https (as the connection, or a proxy's
        // `X-Forwarded-Proto`, says), so that the cookie never goes out in
        // clear: a client that fakes the header only loses its own binding.
        let secure = if req.connection_info().scheme() == "https" { "; Secure" } else { "" };
        if let Ok(v) =
            header::HeaderValue::from_str(&format!("{BIND_COOKIE}={value}; Path=/; HttpOnly{secure}"))
        {
            res.append_header((header::SET_COOKIE, v));
        }
    }
    let mut end =
        ResponseEnd { rx, ep, id, serial, ticket, framing: &how.framing, callback: callback.into() };
    if !how.streaming {
        // A polling response carries one frame: answer once it is there,
        // head and body in one write, instead of a head now and a chunk
        // later (two small writes, which Nagle's algorithm and the client's
        // delayed ACK can hold back by 40 ms).
        let frame = end.next().await;
        // Taken: actix-web has it now.
        end.ticket = None;
        return res.body(frame.unwrap_or_default());
    }
    // One body item per frame: actix-web writes each as its own chunk.
    let body = stream::iter(prelude).chain(end).map(Ok::<_, Infallible>);
    let mut res = res.streaming(body);
    if req.version() == Version::HTTP_10 {
        // HTTP/1.0 has no chunked encoding: raw bytes, then close
        // (docs/protocol.md §10.2).
        res.head_mut().no_chunking(true);
        res.head_mut().set_connection_type(ConnectionType::Close);
    }
    res
}

/// The request's end of its receiver's queue: a poll's one frame, a
/// stream's body after its prelude.
///
/// actix-web drops a request whose client closed the connection. If the
/// session wrote to the receiver just before and then let it go (a poll
/// answered, a stream at its response limit), the frames queued here
/// would go with it, unseen by anyone, and the session would go on
/// without those messages. Dropped with messages unread, this gives them
/// back to the session, which queues them again first (or, if it has
/// written to another request since, closes as interrupted). A stream
/// still attached when its client goes closes its session as interrupted;
/// what it held goes back too, and reaches the next request before the
/// close frame, if no request has been answered with the close frame
/// first.
struct ResponseEnd<A: Session> {
    rx: OutRx,
    ep: web::Data<Endpoint<A>>,
    id: Arc<str>,
    /// The session that took the receiver, if one did.
    serial: Option<u64>,
    /// The receiver's ticket; `None` once nothing can be left unread (the
    /// poll's frame went to actix-web, or the stream ended).
    ticket: Option<u32>,
    framing: &'static Framing,
    callback: Box<str>,
}

impl<A: Session> Stream for ResponseEnd<A> {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        let next = poll_text(&mut this.rx, cx);
        if let Poll::Ready(None) = next {
            this.ticket = None;
        }
        next
    }
}

impl<A: Session> Drop for ResponseEnd<A> {
    fn drop(&mut self) {
        let (Some(ticket), Some(serial)) = (self.ticket, self.serial) else { return };
        // The messages of every messages frame still here, in order. The
        // queue closes as it is emptied: a write the session makes after
        // that fails, and the session, its receiver dead, closes as
        // interrupted (1002), so that its client learns of the loss. One
        // written between a last look and the queue's drop went with it
        // unseen (a stream's last frame before its response limit: the
        // session had let the receiver go, and went on without it).
        let mut messages = String::new();
        for out in self.rx.close() {
            let Out::Frame(wire) = out else { continue };
            let frame = self.framing.unwrap(&wire, &self.callback);
            if let Some(inner) = frame.as_deref().and_then(|f| f.strip_prefix("a[")?.strip_suffix(']')) {
                if !messages.is_empty() {
                    messages.push(',');
                }
                messages.push_str(inner);
            }
        }
        if !messages.is_empty() {
            self.ep.give_back(&self.id, serial, ticket, messages);
        }
    }
}

/// The JSON payload of a jsonp_send body: the form field `d` when the body
/// is a form, the body itself otherwise (docs/protocol.md §6.10).
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

/// A sending request (xhr_send, jsonp_send): hands the client's messages
/// to its session (docs/protocol.md §6.5, §6.10).
pub(crate) async fn send<A: Session>(
    req: HttpRequest,
    mut body: web::Payload,
    ep: web::Data<Endpoint<A>>,
    how: Sending,
    id: Arc<str>,
) -> HttpResponse {
    if let Err(e) = ep.check_origin(&req) {
        return keep_unread(e.error_response(), body);
    }
    let fail = |status: StatusCode, body: String| session_error(&req, &ep.config, true, status, body);
    let unreached = |e: Option<ReachError>| match e {
        // A send opens no session, so only these two happen.
        Some(ReachError::Manager | ReachError::Denied(_) | ReachError::Panicked) => {
            fail(StatusCode::SERVICE_UNAVAILABLE, "Session manager unavailable.".to_owned())
        }
        Some(ReachError::Missing) | None => {
            log::debug!("sockjs: {} {}: no such session", req.method(), LogPath(&req));
            fail(StatusCode::NOT_FOUND, "Session not found.".to_owned())
        }
    };
    // The session is looked up first, but answered for after the payload
    // is checked, as the protocol orders it (a broken payload to no session
    // is 500, a good one 404). A body for no session (or for one bound to
    // another client) may only be small: over UNREACHED_BODY it gets its
    // 404 unread, so that nobody can make the server hold bodies for
    // sessions that do not exist (the answer holds the unread body, so
    // actix-http closes the connection: see `keep_unread`).
    let reached = ep.reach(&req, id.clone()).await;
    let limit = match reached {
        Ok(_) => ep.config.send_body_limit(),
        Err(_) => UNREACHED_BODY.min(ep.config.send_body_limit()),
    };
    // One send at a time per session reads its body and hands its
    // messages over (sockjs-client sends one at a time): requests in
    // flight to one session hold one body, not one each. The wait for the
    // turn counts against the request's time (see [`BodyClock`]).
    let start = Instant::now();
    let sleep = pin!(sleep_until(BodyClock::first_deadline(start, ep.config.request_timeout)));
    let mut clock = BodyClock::new(start, ep.config.request_timeout, sleep);
    let turn = match &reached {
        Ok(reached) => match clock.before(reached.send_turn()).await {
            Some(turn) => Some(turn),
            None => return keep_unread(timed_out(&req, &clock, fail), body),
        },
        Err(_) => None,
    };
    let body = match read_body(&req, &mut body, limit, &mut clock).await {
        Ok(read) => read,
        Err(BodyError::TimedOut) => return keep_unread(timed_out(&req, &clock, fail), body),
        Err(BodyError::TooLarge) if reached.is_err() => return keep_unread(unreached(reached.err()), body),
        Err(BodyError::TooLarge) => {
            util::log_limited!(
                log::Level::Info,
                "sockjs: {} {}: body over {limit} bytes refused",
                req.method(),
                LogPath(&req)
            );
            return keep_unread(fail(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large.".to_owned()), body);
        }
        Err(BodyError::Broken) => {
            return fail(StatusCode::BAD_REQUEST, "Cannot read the request body.".to_owned())
        }
    };
    let payload = if how == Sending::Jsonp { jsonp_payload(&req, body) } else { body };
    let messages = match parse_messages(&payload, false) {
        Ok(m) => m,
        Err(e) => {
            log::debug!("sockjs: {} {}: {e}", req.method(), LogPath(&req));
            return fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    };
    let reached = match reached {
        Ok(reached) => reached,
        Err(e) => return unreached(Some(e)),
    };
    // A body may carry several messages (sockjs-client's burst); each is
    // held to the message limit (as decoded: a WebSocket frame is held to
    // it as it comes, escapes and brackets included).
    let max = ep.config.max_message_bytes;
    if messages.iter().any(|m| m.len() > max) {
        util::log_limited!(
            log::Level::Info,
            "sockjs: {} {}: a message over {max} bytes refused",
            req.method(),
            LogPath(&req)
        );
        return fail(StatusCode::PAYLOAD_TOO_LARGE, "Message too large.".to_owned());
    }
    let delivered = reached.deliver(messages).await;
    drop(turn);
    if delivered.is_err() {
        // It ended while the body came.
        return unreached(Some(ReachError::Missing));
    }
    let (status, ok_body) = match how {
        Sending::Xhr => (StatusCode::NO_CONTENT, ""),
        Sending::Jsonp => (StatusCode::OK, "ok"),
    };
    let mut res = HttpResponseBuilder::new(status);
    res.content_type(TEXT);
    never_cache(&mut res);
    cors(&mut res, &req);
    session_cookie(&mut res, &req, &ep.config);
    res.body(ok_body)
}

/// The most a send to no session may carry and still be read (to tell a
/// broken payload, 500, from a good one, 404, as the protocol orders it).
const UNREACHED_BODY: usize = 16 * 1024;

/// The time a send has for its turn and its body: `request_timeout` from
/// its start, and 1/[`BODY_MIN_RATE`](crate::BODY_MIN_RATE) of a second more for each byte
/// received, up to [`BODY_TIME_CAP`] times `request_timeout` in all; and
/// never more than `request_timeout` after the last byte (bytes sent at
/// once do not buy a stall). One timer, reset only when the request waits
/// for bytes (a body that comes with its head, as most do, never arms it).
struct BodyClock<'a> {
    start: Instant,
    timeout: Duration,
    /// What the bytes so far have bought, up to `cap`.
    bought: Instant,
    cap: Instant,
    /// `bought`, or `timeout` after the last byte if that is sooner.
    deadline: Instant,
    sleep: Pin<&'a mut Sleep>,
}

impl<'a> BodyClock<'a> {
    /// The clock of a request that started at `start` and has `timeout`,
    /// with its timer (`sleep`, set to [`BodyClock::first_deadline`]).
    fn new(start: Instant, timeout: Duration, sleep: Pin<&'a mut Sleep>) -> Self {
        let first = sleep.deadline();
        let cap = start.checked_add(timeout.saturating_mul(BODY_TIME_CAP)).unwrap_or(first).max(first);
        Self { start, timeout, bought: first, cap, deadline: first, sleep }
    }

    /// When a request that starts at `start` and has `timeout` runs out,
    /// before any byte of its body.
    fn first_deadline(start: Instant, timeout: Duration) -> Instant {
        start.checked_add(timeout).unwrap_or(start + FAR)
    }

    /// Gives `bytes` more received bytes their time.
    fn received(&mut self, bytes: usize) {
        let more = time_bought(bytes as u64);
        self.bought = self.bought.checked_add(more).unwrap_or(self.cap).min(self.cap);
        let now = Instant::now();
        let idle = now.checked_add(self.timeout).unwrap_or(self.cap);
        self.deadline = self.bought.min(idle);
    }

    /// `fut`'s output, or `None` if the deadline comes first.
    async fn before<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = pin!(fut);
        poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            if self.sleep.deadline() != self.deadline {
                let deadline = self.deadline;
                self.sleep.as_mut().reset(deadline);
            }
            self.sleep.as_mut().poll(cx).map(|()| None)
        })
        .await
    }
}

/// A far deadline, for a `request_timeout` too long to add to a clock.
const FAR: Duration = Duration::from_secs(86_400 * 365);

/// The 408 of a send whose turn or body did not come in time; the
/// connection is closed (its unread body cannot be skipped).
fn timed_out(
    req: &HttpRequest,
    clock: &BodyClock<'_>,
    fail: impl Fn(StatusCode, String) -> HttpResponse,
) -> HttpResponse {
    let took = clock.start.elapsed();
    util::log_limited!(
        log::Level::Info,
        "sockjs: {} {}: body not in after {took:.1?}",
        req.method(),
        LogPath(req)
    );
    let mut res = fail(StatusCode::REQUEST_TIMEOUT, "Request timeout.".to_owned());
    res.head_mut().set_connection_type(ConnectionType::Close);
    res
}

/// Why a body was not read whole.
#[derive(Debug)]
enum BodyError {
    /// Over the limit (or announced over it by `Content-Length`, then
    /// unread): 413, which the caller logs (for a send to no session it is
    /// no refusal of the body but a 404).
    TooLarge,
    /// Not in within its [`BodyClock`]: 408.
    TimedOut,
    /// The connection broke mid-body: 400.
    Broken,
}

/// Reads a request body up to `limit` bytes, within `clock`'s time.
async fn read_body(
    req: &HttpRequest,
    payload: &mut web::Payload,
    limit: usize,
    clock: &mut BodyClock<'_>,
) -> Result<Bytes, BodyError> {
    let announced = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = clock.before(payload.next()).await.ok_or(BodyError::TimedOut)? {
        let chunk = chunk.map_err(|e| {
            log::debug!("sockjs: cannot read request body: {e}");
            BodyError::Broken
        })?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        clock.received(chunk.len());
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
