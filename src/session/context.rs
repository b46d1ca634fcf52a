//! [`SessionContext`]: the actor context of a session, and the session's
//! state machine (PROTOCOL.md §7).
//!
//! Built on `actix::dev` the way `actix_web_actors::ws::WebsocketContext`
//! is: [`ContextParts`] for the actor runtime, a [`ContextFut`] driving it,
//! and the session's own state beside them. Transports talk to the session
//! through a channel of [`Command`]s that a future spawned in the context
//! drains, so the user's type needs no trait impls of ours beyond
//! [`Session`]. Outgoing messages are batched: everything sent during one
//! turn of the actor is flushed to the receiver as one `a[...]` frame.

use std::{
    any::Any,
    borrow::Cow,
    collections::VecDeque,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use actix::{
    dev::{AsyncContextParts, ContextFut, ContextParts, Envelope, Mailbox, ToEnvelope},
    fut::{wrap_future, ActorFuture, ActorFutureExt},
    Actor, ActorContext, ActorState, Addr, AsyncContext, Handler, Message, SpawnHandle,
};

use super::{
    CloseReason, RequestInfo, Session, CONFLICT_CLOSE, INTERRUPTED_CLOSE, NORMAL_CLOSE, OVERFLOW_CLOSE,
    SHUTDOWN_CLOSE,
};
use crate::{
    config::Config,
    manager::EndedTx,
    metrics::{transport_label, EndpointMetrics},
    protocol::{close_frame, push_json_string, Escape, HEARTBEAT_FRAME, OPEN_FRAME},
    queue,
    transport::{Framing, Receiver},
};

/// What a session is attached to, which decides its framing and lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// HTTP transports: receivers come and go; the session lives on for the
    /// disconnect delay without one.
    Http,
    /// A SockJS-framed WebSocket: one receiver for the whole session.
    WebSocket,
    /// A raw WebSocket: no SockJS frames, messages verbatim.
    Raw,
}

/// A broadcast payload, encoded once for every receiving session.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) text: Box<str>,
    pub(crate) json: Box<str>,
}

/// What transports and the manager tell a session.
///
/// Kept to 16 bytes, as queued commands are: the rare or already-allocating
/// variants are boxed; a broadcast (`Push`, one per receiving session) is
/// not, so that it costs no allocation.
#[derive(Debug)]
pub(crate) enum Command {
    /// A receiving request wants to be the session's receiver.
    Attach(Box<Receiver>),
    /// Messages from the client, in order. Boxed on purpose, to keep the
    /// command small (see above).
    #[allow(clippy::box_collection)]
    Messages(Box<Vec<String>>),
    /// A broadcast message.
    Push(Arc<Shared>),
    /// The WebSocket transport closed the socket.
    TransportFailed(Failure),
    /// The server is shutting down.
    Shutdown,
    /// The WebSocket transport attached to the session has ended (its
    /// socket closed or failed).
    ReceiverGone,
    /// Someone wants the session actor's address ([`GetSession`](crate::GetSession)).
    Address(Box<AddressRequest>),
}

/// Takes a session's `Addr<A>`, boxed as `Any` (commands are not generic
/// over the session type).
pub(crate) struct AddressRequest(Box<dyn FnOnce(Box<dyn Any + Send>) + Send>);

impl AddressRequest {
    pub(crate) fn new(reply: impl FnOnce(Box<dyn Any + Send>) + Send + 'static) -> Self {
        Self(Box::new(reply))
    }
}

impl fmt::Debug for AddressRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AddressRequest")
    }
}

/// Why a WebSocket transport closed its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The client broke the protocol (undecodable data, a message over the
    /// size limit).
    Protocol,
    /// The client stopped answering pings.
    Silent,
}

impl Command {
    /// Messages from the client.
    pub(crate) fn messages(messages: Vec<String>) -> Self {
        Self::Messages(Box::new(messages))
    }

    /// What a command weighs in the session's queue: client messages their
    /// bytes and a round 64 for the allocations each one costs; the rest
    /// nothing.
    fn weight(&self) -> usize {
        match self {
            Self::Messages(messages) => messages.iter().map(|m| m.len() + 64).sum(),
            _ => 0,
        }
    }
}

/// How much of the client's messages a session may have waiting before
/// its WebSocket stops reading from the socket, and a send request waits
/// to be answered, until the session has handled them: the client is then
/// held back instead of growing the queue. A larger message still goes in
/// alone.
pub(crate) const INBOUND_ROOM: usize = 64 * 1024;

/// The sending end of a session's command channel.
#[derive(Debug, Clone)]
pub(crate) struct CommandTx(queue::Tx<Command>);

impl CommandTx {
    /// Sends a command; gives it back if the session is gone.
    pub(crate) fn send(&self, command: Command) -> Result<(), Command> {
        let weight = command.weight();
        self.0.send_weighed(command, weight)
    }

    /// Ready while the client's messages waiting for the session weigh at
    /// most [`INBOUND_ROOM`] (or the session is gone); otherwise pending
    /// until it has taken them all.
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.0.poll_room(cx, INBOUND_ROOM)
    }

    /// Whether the session is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// The receiving end of a session's command channel.
#[derive(Debug)]
pub(crate) struct CommandRx(queue::Rx<Command>);

/// A new command channel.
pub(crate) fn command_channel() -> (CommandTx, CommandRx) {
    let (tx, rx) = queue::queue();
    (CommandTx(tx), CommandRx(rx))
}

/// Everything a session needs at start besides the actor.
#[derive(Debug)]
pub(crate) struct SessionSetup {
    pub(crate) id: Arc<str>,
    pub(crate) serial: u64,
    pub(crate) mode: Mode,
    pub(crate) config: Arc<Config>,
    pub(crate) request: RequestInfo,
    pub(crate) on_end: EndedTx,
    pub(crate) metrics: Arc<EndpointMetrics>,
}

/// Session state that most sessions never need, boxed and created on
/// first use: every idle session carries its context, and tokio sizes the
/// session's task in 128-byte steps.
#[derive(Debug, Default)]
struct Cold {
    /// Messages waiting for a raw WebSocket's receiver, and their bytes.
    raw: VecDeque<String>,
    raw_bytes: usize,
    /// The disconnect-delay timer of an HTTP session, while one runs (one
    /// at a time: timers left behind pile up in the actor, which polls each
    /// on every turn).
    expiry: Option<SpawnHandle>,
    /// An `on_close` to run at the actor's next turn.
    deferred_close: Option<CloseReason>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    New,
    Open,
    /// The reason is boxed twice over so that the state takes 16 bytes.
    #[allow(clippy::box_collection)]
    Closed {
        code: u16,
        reason: Box<String>,
    },
}

#[derive(Debug)]
struct Attached {
    receiver: Receiver,
    token: u32,
    dead: bool,
    /// An HTTP receiver's timers (a WebSocket has none: it reports its own
    /// end and sends its own heartbeats); boxed, as every idle WebSocket
    /// session holds an `Attached`.
    timers: Option<Box<Timers>>,
}

/// The futures the session runs for an HTTP receiver.
#[derive(Debug)]
struct Timers {
    /// Watches the receiver's end.
    watch: Option<SpawnHandle>,
    heartbeat: Option<SpawnHandle>,
}

/// The actor context of a SockJS session.
///
/// Give it as `type Context = SessionContext<Self>` in your session actor's
/// [`Actor`] impl. Besides the usual actix context abilities (timers,
/// spawning futures, [`address`](AsyncContext::address), handling your own
/// messages) it offers [`send`](Self::send), [`close`](Self::close), the
/// session id and the opening request.
pub struct SessionContext<A>
where
    A: Actor<Context = SessionContext<A>>,
{
    parts: ContextParts<A>,
    setup: SessionSetup,
    state: State,
    /// Encoded messages joined by commas, waiting for a receiver (framed modes).
    pending: String,
    /// See [`Cold`].
    cold: Option<Box<Cold>>,
    receiver: Option<Attached>,
    next_token: u32,
    /// The close frame still has to be written to the attached receiver.
    close_unsent: bool,
    /// Something was written since the last heartbeat tick.
    wrote: bool,
    /// Stop the actor at its next turn.
    finish_requested: bool,
    finisher_spawned: bool,
    /// The actor runtime must run again before it waits (something was
    /// spawned outside its own poll).
    needs_poll: bool,
    /// The metrics label of the transport that opened the session, while
    /// the session counts as open in the metrics.
    counted_open: Option<u8>,
}

impl<A> fmt::Debug for SessionContext<A>
where
    A: Actor<Context = SessionContext<A>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionContext")
            .field("id", &self.setup.id)
            .field("mode", &self.setup.mode)
            .field("state", &self.state)
            .field("pending_bytes", &self.pending.len())
            .field("attached", &self.receiver.is_some())
            .finish()
    }
}

impl<A> SessionContext<A>
where
    A: Session,
{
    /// Sends one message to the client.
    ///
    /// Messages sent during one turn of the actor reach the client together
    /// in one frame. While no receiver is attached they wait in the
    /// session's queue; past [`Config::max_queue_bytes`] the session is
    /// closed with [`CloseReason::Overflow`]. Sending on a session that is
    /// not open does nothing.
    pub fn send(&mut self, msg: impl AsRef<str>) {
        let msg = msg.as_ref();
        if self.state != State::Open {
            log::trace!("sockjs {}: send on a session that is not open ignored", self.setup.id);
            return;
        }
        self.setup.metrics.sent(msg.len());
        let queued = if self.setup.mode == Mode::Raw {
            let cold = self.cold();
            cold.raw_bytes += msg.len();
            cold.raw.push_back(msg.to_owned());
            cold.raw_bytes
        } else {
            if !self.pending.is_empty() {
                self.pending.push(',');
            }
            push_json_string(&mut self.pending, msg, Escape::SockJs);
            self.pending.len()
        };
        if queued > self.setup.config.max_queue_bytes {
            self.overflow();
        }
    }

    fn push_shared(&mut self, shared: &Shared) {
        if self.state != State::Open {
            return;
        }
        if self.setup.mode == Mode::Raw {
            self.send(&shared.text);
            return;
        }
        self.setup.metrics.sent(shared.text.len());
        if !self.pending.is_empty() {
            self.pending.push(',');
        }
        self.pending.push_str(&shared.json);
        if self.pending.len() > self.setup.config.max_queue_bytes {
            self.overflow();
        }
    }

    /// Closes the session with a code and a reason.
    ///
    /// The client gets `c[code,"reason"]` (on a raw WebSocket, a close frame
    /// with that code and reason) after the messages already sent, and
    /// [`Session::on_close`] runs with [`CloseReason::Application`]. Codes
    /// 3000–4999 are for applications. Closing a session that is not open
    /// does nothing.
    pub fn close(&mut self, code: u16, reason: impl Into<String>) {
        let reason = reason.into();
        let cause = CloseReason::Application { code, reason: reason.clone() };
        if self.set_closed(code, reason) {
            self.defer_on_close(cause);
        }
    }

    /// The session id from the URL. For raw WebSocket sessions, which have
    /// none, a unique generated one.
    pub fn session_id(&self) -> &str {
        &self.setup.id
    }

    /// What the request that opened the session carried.
    pub fn request(&self) -> &RequestInfo {
        &self.setup.request
    }

    /// Whether the session is open: it has sent its open frame and is not
    /// closed.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    fn cold(&mut self) -> &mut Cold {
        self.cold.get_or_insert_default()
    }

    fn overflow(&mut self) {
        log::warn!(
            "sockjs {}: outgoing queue over {} bytes, closing the session",
            self.setup.id,
            self.setup.config.max_queue_bytes
        );
        self.pending.clear();
        if let Some(cold) = &mut self.cold {
            (cold.raw, cold.raw_bytes) = (VecDeque::new(), 0);
        }
        if self.set_closed(OVERFLOW_CLOSE.0, OVERFLOW_CLOSE.1.to_owned()) {
            self.defer_on_close(CloseReason::Overflow);
        }
    }

    /// Moves an open session to the closed state; `false` if it was not open.
    fn set_closed(&mut self, code: u16, reason: String) -> bool {
        if self.state != State::Open {
            return false;
        }
        self.state = State::Closed { code, reason: Box::new(reason) };
        self.close_unsent = self.receiver.is_some();
        if self.receiver.is_none() {
            self.schedule_expiry();
        }
        true
    }

    /// Runs `on_close` on the actor at its next turn; used where only the
    /// context is at hand.
    fn defer_on_close(&mut self, cause: CloseReason) {
        self.record_close(Some(&cause));
        self.cold().deferred_close = Some(cause);
        self.spawn_finisher();
    }

    /// Runs `on_close` now.
    fn notify_close(&mut self, act: &mut A, cause: CloseReason) {
        self.record_close(Some(&cause));
        act.on_close(cause, self);
    }

    /// Counts the session as closed in the metrics, once.
    fn record_close(&mut self, cause: Option<&CloseReason>) {
        if let Some(transport) = self.counted_open.take() {
            self.setup.metrics.session_closed(transport, cause);
        }
    }

    /// Stops the actor at its next turn, after any deferred `on_close`.
    fn finish(&mut self) {
        self.finish_requested = true;
        self.spawn_finisher();
    }

    fn spawn_finisher(&mut self) {
        if !self.finisher_spawned {
            self.finisher_spawned = true;
            self.needs_poll = true;
            self.parts.spawn(Finisher);
        }
    }

    fn handle(&mut self, act: &mut A, command: Command) {
        match command {
            Command::Attach(receiver) => self.attach(act, *receiver),
            Command::Messages(messages) => {
                let messages = *messages;
                self.setup.metrics.received(&messages);
                for msg in messages {
                    if self.state != State::Open {
                        log::debug!("sockjs {}: message after close dropped", self.setup.id);
                        break;
                    }
                    act.on_message(msg, self);
                }
            }
            Command::Push(shared) => self.push_shared(&shared),
            Command::ReceiverGone => {
                if let Some(token) = self.receiver.as_ref().map(|a| a.token) {
                    self.receiver_gone(act, token);
                }
            }
            Command::Address(request) => (request.0)(Box::new(self.parts.address())),
            Command::Shutdown => {
                if self.set_closed(SHUTDOWN_CLOSE.0, SHUTDOWN_CLOSE.1.to_owned()) {
                    self.notify_close(act, CloseReason::Shutdown);
                }
            }
            Command::TransportFailed(failure) => {
                let cause = match failure {
                    Failure::Protocol => CloseReason::ProtocolError,
                    Failure::Silent => CloseReason::Interrupted,
                };
                self.detach();
                if self.set_closed(NORMAL_CLOSE.0, NORMAL_CLOSE.1.to_owned()) {
                    self.close_unsent = false;
                    self.notify_close(act, cause);
                }
            }
        }
    }

    fn attach(&mut self, act: &mut A, mut receiver: Receiver) {
        match &self.state {
            State::New => {
                let transport = transport_label(receiver.framing());
                self.counted_open = Some(transport);
                self.setup.metrics.session_opened(transport);
                self.install(receiver);
                if self.setup.mode != Mode::Raw {
                    self.write_frame(OPEN_FRAME);
                }
                self.state = State::Open;
                act.on_open(self);
            }
            State::Open => match self.receiver.as_ref().map(|c| !c.dead && c.receiver.alive()) {
                Some(true) => {
                    log::debug!("sockjs {}: second receiver refused", self.setup.id);
                    let _ = receiver.write(close_frame(CONFLICT_CLOSE.0, CONFLICT_CLOSE.1));
                }
                Some(false) => {
                    log::debug!("sockjs {}: previous receiver was aborted", self.setup.id);
                    self.detach();
                    self.set_closed(INTERRUPTED_CLOSE.0, INTERRUPTED_CLOSE.1.to_owned());
                    self.notify_close(act, CloseReason::Interrupted);
                    let _ = receiver.write(close_frame(INTERRUPTED_CLOSE.0, INTERRUPTED_CLOSE.1));
                }
                None => self.install(receiver),
            },
            State::Closed { code, reason } => {
                let _ = receiver.write(close_frame(*code, reason));
                receiver.close_socket(*code, reason);
            }
        }
    }

    fn install(&mut self, receiver: Receiver) {
        self.next_token += 1;
        let token = self.next_token;
        let watch = receiver.gone().map(|gone| {
            let gone = wrap_future::<_, A>(gone).map(move |(), act, ctx| ctx.receiver_gone(act, token));
            self.parts.spawn(gone)
        });
        // A WebSocket transport sends its own heartbeats with its pings.
        let own_heartbeat = self.setup.mode != Mode::Raw && *receiver.framing() != Framing::WebSocket;
        let heartbeat = own_heartbeat.then(|| {
            let every = self.setup.config.heartbeat;
            self.run_interval(every, |_, ctx| ctx.heartbeat_tick())
        });
        if let Some(expiry) = self.cold.as_mut().and_then(|cold| cold.expiry.take()) {
            self.parts.cancel_future(expiry);
        }
        self.wrote = false;
        let timers = (watch.is_some() || heartbeat.is_some()).then(|| Box::new(Timers { watch, heartbeat }));
        self.receiver = Some(Attached { receiver, token, dead: false, timers });
    }

    /// Drops the attached receiver (which ends an HTTP response) and, for
    /// HTTP sessions, starts the disconnect delay.
    fn detach(&mut self) {
        if let Some(timers) = self.receiver.take().and_then(|att| att.timers) {
            for handle in timers.watch.into_iter().chain(timers.heartbeat) {
                self.parts.cancel_future(handle);
            }
        }
        if self.setup.mode == Mode::Http {
            self.schedule_expiry();
        }
    }

    fn schedule_expiry(&mut self) {
        self.needs_poll = true;
        if let Some(previous) = self.cold.as_mut().and_then(|cold| cold.expiry.take()) {
            self.parts.cancel_future(previous);
        }
        let timer = self.run_later(self.setup.config.disconnect_delay, move |act, ctx| {
            if let Some(cold) = &mut ctx.cold {
                cold.expiry = None;
            }
            if ctx.receiver.is_some() {
                return;
            }
            if ctx.state == State::Open {
                log::debug!("sockjs {}: no receiver within the disconnect delay", ctx.setup.id);
                ctx.state =
                    State::Closed { code: NORMAL_CLOSE.0, reason: Box::new(NORMAL_CLOSE.1.to_owned()) };
                ctx.notify_close(act, CloseReason::Timeout);
            }
            ctx.parts.stop();
        });
        self.cold().expiry = Some(timer);
    }

    fn receiver_gone(&mut self, act: &mut A, token: u32) {
        if self.receiver.as_ref().map(|a| a.token) != Some(token) {
            return;
        }
        self.detach();
        if self.setup.mode == Mode::Http {
            if self.set_closed(INTERRUPTED_CLOSE.0, INTERRUPTED_CLOSE.1.to_owned()) {
                log::debug!("sockjs {}: client aborted its receiving request", self.setup.id);
                self.notify_close(act, CloseReason::Interrupted);
            }
        } else {
            if self.state == State::Open {
                self.state =
                    State::Closed { code: NORMAL_CLOSE.0, reason: Box::new(NORMAL_CLOSE.1.to_owned()) };
                self.notify_close(act, CloseReason::ClientClosed);
            }
            self.finish();
        }
    }

    fn heartbeat_tick(&mut self) {
        if !self.wrote {
            self.write_frame(HEARTBEAT_FRAME);
        }
        self.wrote = false;
    }

    /// Writes one frame to the attached receiver, detaching it when it is done.
    fn write_frame<'a>(&mut self, frame: impl Into<Cow<'a, str>>) {
        let Some(att) = self.receiver.as_mut().filter(|a| !a.dead) else {
            return;
        };
        match att.receiver.write(frame) {
            Ok(done) => {
                self.wrote = true;
                let backlog = att.receiver.backlog();
                if done {
                    self.detach();
                } else if backlog > self.setup.config.max_queue_bytes {
                    // The client stopped reading: its transport must not hoard memory.
                    log::warn!("sockjs {}: client is not reading ({backlog} bytes waiting)", self.setup.id);
                    self.overflow();
                }
            }
            // The receiver's end is reported (by its watcher or its
            // transport) and closes the session.
            Err(_) => att.dead = true,
        }
    }

    /// Hands what is queued to the attached receiver; runs after every turn
    /// of the actor. Returns whether the actor runtime must run again (a
    /// timer was started or the actor stopped outside its own poll).
    fn flush(&mut self) -> bool {
        let before = (self.receiver.is_some(), self.parts.state());
        let queued = self.pending.len() + self.cold.as_ref().map_or(0, |cold| cold.raw_bytes);
        let backlog = self.receiver.as_ref().map_or(0, |a| a.receiver.backlog());
        self.setup.metrics.queue_depth(queued + backlog);
        if self.receiver.is_some() {
            if self.setup.mode == Mode::Raw {
                while self.receiver.is_some() {
                    let Some(cold) = self.cold.as_mut() else { break };
                    let Some(msg) = cold.raw.pop_front() else {
                        // Drained: give the buffer back.
                        cold.raw = VecDeque::new();
                        break;
                    };
                    cold.raw_bytes -= msg.len();
                    self.write_frame(msg);
                }
            } else if !self.pending.is_empty() {
                let mut frame = String::with_capacity(self.pending.len() + 3);
                frame.push_str("a[");
                frame.push_str(&self.pending);
                frame.push(']');
                self.pending.clear();
                self.write_frame(frame);
            }
        }
        if self.close_unsent {
            if let State::Closed { code, reason } = &self.state {
                let (code, reason) = (*code, reason.clone());
                self.close_unsent = false;
                if self.setup.mode != Mode::Raw {
                    self.write_frame(close_frame(code, &reason));
                }
                if let Some(att) = &self.receiver {
                    let (code, reason) =
                        if self.setup.mode == Mode::Raw { (code, reason.as_str()) } else { NORMAL_CLOSE };
                    att.receiver.close_socket(code, reason);
                }
                self.detach();
            }
        }
        if self.setup.mode != Mode::Http && self.state != State::New && self.receiver.is_none() {
            self.finish();
        }
        std::mem::take(&mut self.needs_poll) || before != (self.receiver.is_some(), self.parts.state())
    }
}

impl<A> Drop for SessionContext<A>
where
    A: Actor<Context = SessionContext<A>>,
{
    fn drop(&mut self) {
        if let Some(transport) = self.counted_open.take() {
            self.setup.metrics.session_closed(transport, None);
        }
        if let Some(att) = self.receiver.take() {
            let (code, reason) = match &self.state {
                State::Closed { code, reason } => (*code, reason.as_str()),
                _ => NORMAL_CLOSE,
            };
            let mut receiver = att.receiver;
            if self.setup.mode != Mode::Raw && (self.state == State::Open || self.close_unsent) {
                let _ = receiver.write(close_frame(code, reason));
            }
            receiver.close_socket(code, reason);
        }
        self.setup.on_end.ended(self.setup.serial);
        log::trace!("sockjs {}: session ended", self.setup.id);
    }
}

impl<A> ActorContext for SessionContext<A>
where
    A: Actor<Context = Self>,
{
    /// Stops the session actor. An open session's client gets
    /// `c[1000,"Normal closure"]`; [`Session::on_close`] is not called (use
    /// [`SessionContext::close`] for that).
    fn stop(&mut self) {
        self.parts.stop();
    }

    fn terminate(&mut self) {
        self.parts.terminate();
    }

    fn state(&self) -> ActorState {
        self.parts.state()
    }
}

impl<A> AsyncContext<A> for SessionContext<A>
where
    A: Actor<Context = Self>,
{
    fn spawn<F>(&mut self, fut: F) -> SpawnHandle
    where
        F: ActorFuture<A, Output = ()> + 'static,
    {
        self.parts.spawn(fut)
    }

    fn wait<F>(&mut self, fut: F)
    where
        F: ActorFuture<A, Output = ()> + 'static,
    {
        self.parts.wait(fut);
    }

    fn waiting(&self) -> bool {
        self.parts.waiting() || matches!(self.parts.state(), ActorState::Stopping | ActorState::Stopped)
    }

    fn cancel_future(&mut self, handle: SpawnHandle) -> bool {
        self.parts.cancel_future(handle)
    }

    fn address(&self) -> Addr<A> {
        self.parts.address()
    }
}

impl<A> AsyncContextParts<A> for SessionContext<A>
where
    A: Actor<Context = Self>,
{
    fn parts(&mut self) -> &mut ContextParts<A> {
        &mut self.parts
    }
}

impl<A, M> ToEnvelope<A, M> for SessionContext<A>
where
    A: Actor<Context = SessionContext<A>> + Handler<M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    fn pack(msg: M, tx: Option<actix::dev::OneshotSender<M::Result>>) -> Envelope<A> {
        Envelope::new(msg, tx)
    }
}

/// Runs a deferred `on_close`, then stops the actor if asked to: actix does
/// not poll spawned futures once an actor is stopping, so the hook must run
/// first.
struct Finisher;

impl<A: Session> ActorFuture<A> for Finisher {
    type Output = ();

    fn poll(self: Pin<&mut Self>, act: &mut A, ctx: &mut SessionContext<A>, _: &mut Context<'_>) -> Poll<()> {
        ctx.finisher_spawned = false;
        if let Some(cause) = ctx.cold.as_mut().and_then(|cold| cold.deferred_close.take()) {
            act.on_close(cause, ctx);
        }
        if ctx.finish_requested && ctx.parts.state() == ActorState::Running {
            ctx.parts.stop();
        }
        Poll::Ready(())
    }
}

/// Drains the session's command channel inside its context.
struct Pump {
    rx: CommandRx,
}

impl<A: Session> ActorFuture<A> for Pump {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut A,
        ctx: &mut SessionContext<A>,
        task: &mut Context<'_>,
    ) -> Poll<()> {
        let this = self.get_mut();
        // Bounded per turn, so that one busy session cannot hog its worker.
        for _ in 0..64 {
            match this.rx.0.poll_recv_weighed(task, Command::weight) {
                Poll::Ready(Some(command)) => ctx.handle(act, command),
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
        task.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Runs the session's actor runtime and flushes after every turn.
struct SessionFut<A: Session> {
    fut: ContextFut<A, SessionContext<A>>,
}

impl<A: Session> Future for SessionFut<A> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.fut).poll(cx);
        if this.fut.ctx().flush() {
            cx.waker().wake_by_ref();
        }
        res
    }
}

/// Starts a session actor on the current arbiter.
pub(crate) fn start_session<A: Session>(act: A, setup: SessionSetup, rx: CommandRx) {
    let mailbox = Mailbox::default();
    let http = setup.mode == Mode::Http;
    let mut ctx = SessionContext {
        parts: ContextParts::new(mailbox.sender_producer()),
        setup,
        state: State::New,
        pending: String::new(),
        cold: None,
        receiver: None,
        next_token: 0,
        close_unsent: false,
        wrote: false,
        finish_requested: false,
        finisher_spawned: false,
        needs_poll: false,
        counted_open: None,
    };
    ctx.parts.spawn(Pump { rx });
    if http {
        // A session whose first receiver never arrives still expires.
        ctx.schedule_expiry();
    }
    actix::spawn(SessionFut { fut: ContextFut::new(ctx, act, mailbox) });
}
