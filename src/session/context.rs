//! [`SessionContext`]: the actor context of a session, which drives the
//! session's state [`Machine`] (docs/protocol.md §7).
//!
//! The actor runtime is our own ([`runtime`](super::runtime): actix's
//! semantics, in the size an idle session can afford), with the session's
//! state beside it. Transports talk to the session through a queue of
//! [`Command`]s that the runtime's pump drains, so the user's type needs no
//! trait impls of ours beyond [`Session`]. Outgoing messages are batched:
//! everything sent during one turn of the actor is flushed to the receiver
//! as one `a[...]` frame.

use std::{
    any::Any,
    cell::RefCell,
    fmt,
    future::Future,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    rc::Rc,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use actix::{
    dev::{Envelope, ToEnvelope},
    fut::ActorFuture,
    Actor, ActorContext, ActorState, Addr, AsyncContext, Handler, Message, SpawnHandle,
};

use super::{
    driver,
    hold::{Held, Hold},
    machine::{Attach, Machine, Overflow, Restore, Shared, State, Written},
    runtime::{self, HasParts, Parts},
    turn::{drive, inbound_weight, InPlace, Runtime, Slot, Turn, INBOUND_ROOM, INBOX_KEPT},
    RequestInfo, Session, SessionState,
};
use crate::{
    cause::CloseCause,
    clock, close_code,
    config::Config,
    metrics::EndpointMetrics,
    protocol::Transport,
    receiver::{deadlines, queue, OutTx, Receiver},
};

/// What a session tells its manager, in order: one queue per manager, a
/// clone of its sender per session (no allocation; an actix `Recipient`
/// per session cost ~100 bytes of every idle session). The manager reads
/// what is queued before it handles any message, so that a session that
/// joined a group before it answered its client is a member for whatever
/// that client makes happen next.
#[derive(Debug)]
pub(crate) enum Note {
    /// The session sent its open frame.
    Opened,
    /// A socket's session did not open at its first turn (its actor waits
    /// on a future of its own, or stops): the manager, which entered it
    /// open, takes it back to new until its `Opened`.
    Deferred,
    /// The session closed (its client got, or will get, a close frame).
    Closed,
    /// The session actor is gone.
    Ended,
    /// A WebSocket session's actor is gone: [`Note::Ended`] that waits
    /// for the manager's next turn rather than wake it (see
    /// [`NotesTx::note`]).
    SocketEnded,
    /// The session's actor is gone after a panic. An HTTP one stays listed
    /// for its disconnect delay, so that its client's late requests get its
    /// close frame rather than a new session.
    Failed(Box<Tombstone>),
    /// The session joins a group.
    Join(Arc<str>),
    /// The session leaves a group.
    Leave(Arc<str>),
    /// A [`Broadcast`](crate::Broadcast) the session sent through its
    /// manager ([`SessionContext::broadcast`]), boxed as `Any` (sessions do
    /// not know the manager's messages): the manager fans it out, then
    /// sends the session a [`Command::Fence`].
    Broadcast(Box<dyn Any + Send>),
}

/// What is left of an HTTP session whose handler panicked after it opened:
/// the close frame its client's late requests get ([`Note::Failed`]).
#[derive(Debug)]
pub(crate) struct Tombstone {
    /// How long it answers them: the session's disconnect delay.
    pub(crate) keep: std::time::Duration,
    /// The session's close frame: 1011 if it was open, its own if it had
    /// closed.
    pub(crate) code: u16,
    pub(crate) reason: Box<str>,
}

/// How many quiet notes ([`NotesTx::note`]) wait before they wake the manager.
const QUIET_WAKE_AT: usize = 256;

/// The sending end of a manager's notes; each note carries the session's serial.
#[derive(Debug, Clone)]
pub(crate) struct NotesTx(queue::Tx<(u64, Note)>);

/// The manager's end.
pub(crate) type NotesRx = queue::Rx<(u64, Note)>;

impl NotesTx {
    /// A new queue of notes. It keeps its buffer once drained: notes come
    /// in bursts of [`QUIET_WAKE_AT`] and more (a thousand clients gone at
    /// once), and a queue that gave its buffer back grew it again, copying,
    /// in each (24 growths in `profile_setup.sh`'s close of 1,000 sessions,
    /// 408 instructions a close; 15 and 320 with the buffer kept).
    pub(crate) fn queue() -> (Self, NotesRx) {
        let (tx, mut rx) = queue::queue();
        rx.keep_buffer();
        (Self(tx), rx)
    }

    /// Tells the manager (ignored once it is gone).
    ///
    /// `Opened` and `Closed` change a session's phase (and `Closed` takes
    /// it out of its groups), which the manager reads only in its handlers,
    /// and it reads its notes before every message: they wait for its next
    /// turn rather than wake it, so
    /// that opening a session costs no wake-up of the manager's thread
    /// (`benches/README.md`). So does `SocketEnded`, a WebSocket session's
    /// removal, while no relay watches the endpoint's groups: it takes the
    /// session out of tables only the manager's handlers read (its id's
    /// socket, its groups, its client's count under the caps), so that a
    /// close costs no wake-up either. A session that waits there for
    /// removal holds its entry and its command queue a little longer.
    /// With a relay ([`Self::set_relayed`]) it wakes the manager, which
    /// then tells the relay of the groups the session's end left without
    /// a member here ([`Relay::unwatch`](crate::relay::Relay::unwatch)),
    /// as before. [`QUIET_WAKE_AT`] of them wake it, which bounds what
    /// waits. The others change what the manager does between messages
    /// (an HTTP session's removal from the directory the workers read, a
    /// group's relay) and wake it.
    pub(crate) fn note(&self, serial: u64, note: Note) {
        self.try_note(serial, note);
    }

    /// Tells the sessions whether a relay watches the endpoint's groups:
    /// then a WebSocket session's end wakes the manager ([`Self::note`]).
    pub(crate) fn set_relayed(&self, on: bool) {
        self.0.set_mark(on);
    }

    /// [`note`](Self::note); `false` if the manager is gone.
    pub(crate) fn try_note(&self, serial: u64, note: Note) -> bool {
        match note {
            Note::SocketEnded => self.0.send_quietly_unless_marked((serial, note), QUIET_WAKE_AT).is_ok(),
            Note::Opened | Note::Deferred | Note::Closed => {
                self.0.send_quietly((serial, note), QUIET_WAKE_AT).is_ok()
            }
            _ => self.0.send((serial, note)).is_ok(),
        }
    }
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
    /// Messages from the client, in order.
    #[expect(clippy::box_collection, reason = "boxed to keep a command at 16 bytes, see above")]
    Messages(Box<Vec<String>>),
    /// A broadcast message.
    Push(Arc<Shared>),
    /// The WebSocket transport closed the socket.
    TransportFailed(Failure),
    /// The server is shutting down.
    Shutdown,
    /// The WebSocket transport attached to the session has ended (its
    /// socket closed or failed); `aborted` when it ended without a closing
    /// handshake begun by either side (the connection broke).
    ReceiverGone { aborted: bool },
    /// Someone wants the session actor's address ([`GetSession`](crate::GetSession)).
    Address(Box<AddressRequest>),
    /// A message of the application's own type, for the actor's handler
    /// ([`Deliver`](crate::Deliver)): handled in its place among the other
    /// commands, so that it keeps its order with text sent after it.
    Typed(Box<TypedMessage>),
    /// Messages (JSON strings joined by commas) written to the HTTP
    /// receiver with this ticket that its request could not deliver: the
    /// client closed the connection before actix-web took them
    /// ([`SessionContext::undelivered`]).
    Undelivered(Box<(u32, String)>),
    /// The manager has fanned out a broadcast this session sent
    /// ([`Note::Broadcast`]): this session's copy, if it is in the
    /// audience, came before this.
    Fence,
}

const _: () = assert!(std::mem::size_of::<Command>() == 16);

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

/// An actix [`Envelope`] for the session's actor type, boxed as `Any`
/// (commands are not generic over the session type).
pub(crate) struct TypedMessage(Box<dyn Any + Send>);

impl TypedMessage {
    /// `msg` for the handler of `A`.
    pub(crate) fn new<A, M>(msg: M) -> Self
    where
        A: Actor<Context = SessionContext<A>> + Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        Self(Box::new(Envelope::<A>::new(msg, None)))
    }
}

impl fmt::Debug for TypedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TypedMessage")
    }
}

/// Why a WebSocket transport closed its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The client broke the WebSocket protocol (1002; hixie-76: any
    /// undecodable data).
    Protocol,
    /// A message over `max_message_bytes` (1009).
    TooLarge,
    /// A message that is no SockJS frame (3000 "Broken framing.").
    Broken,
    /// The client stopped answering pings.
    Silent,
    /// A client message was not whole in time (1008; the sockets'
    /// clocks of a message read in part).
    Slow,
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
            Self::Messages(messages) => inbound_weight(messages),
            _ => 0,
        }
    }
}

/// The sending end of a session's command channel.
#[derive(Debug, Clone)]
pub(crate) struct CommandTx(queue::Tx<Command>);

impl CommandTx {
    /// Sends a command; gives it back if the session is gone.
    pub(crate) fn send(&self, command: Command) -> Result<(), Command> {
        let weight = command.weight();
        self.0.send_weighed(command, weight)
    }

    /// Sends a command without waking the session, for a request that runs
    /// the session's [`Turn`] right after; gives it back if the session is
    /// gone.
    pub(crate) fn send_unwoken(&self, command: Command) -> Result<(), Command> {
        let weight = command.weight();
        self.0.send_unwoken(command, weight)
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

    /// Waits for the session's send turn: one send request at a time,
    /// in the order they came, reads its body and hands its messages over
    /// ([`queue::Tx::turn`]), so that requests in flight to one session
    /// cannot make the server hold a body each. Ready at once when the
    /// session is gone.
    pub(crate) fn send_turn(&self) -> queue::TurnWait<'_, Command> {
        self.0.turn()
    }
}

/// A session's send turn ([`CommandTx::send_turn`]), given back when
/// dropped.
pub(crate) type SendTurn = queue::Turn<Command>;

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
    pub(crate) config: Arc<Config>,
    pub(crate) request: RequestInfo,
    /// Where the session tells its manager of its life and its groups.
    pub(crate) notes: NotesTx,
    pub(crate) metrics: Arc<EndpointMetrics>,
}

/// Session state that most sessions never need, boxed and created on
/// first use: every idle session carries its context, and glibc serves its
/// slot in 16-byte steps (`size`).
#[derive(Debug, Default)]
struct Cold {
    /// The disconnect-delay timer of an HTTP session, while one runs (one
    /// at a time: timers left behind pile up in the actor, which polls each
    /// on every turn).
    expiry: Option<SpawnHandle>,
    /// The disconnect delay has passed: the pump ends the session once it
    /// has read the command queue to the end, and closes the queue as it
    /// decides, so that no request hands it a command it would not read
    /// ([`SessionContext::expire`]).
    expiry_due: bool,
    /// An `on_close` to run at the actor's next turn.
    deferred_close: Option<CloseCause>,
    /// The attached receiver's timers (an HTTP receiver's, or a hixie-76
    /// socket's heartbeat).
    timers: Option<Timers>,
    /// A socket's session whose first turn did not attach its socket: it
    /// tells its manager when it opens ([`Note::Deferred`]).
    open_deferred: bool,
    /// Messages for the session (text, typed) that came before its first
    /// receiver: the manager lists an HTTP session before its request
    /// queues the receiver. Handled, in order, once it has opened.
    early: std::collections::VecDeque<Command>,
    /// More came before the session opened than [`EARLY_KEPT`]: once what
    /// was kept has been handled, the session closes as an overflowing
    /// queue does (3008), so that its client learns that it missed some.
    early_dropped: bool,
    /// Broadcasts this session sent through its manager
    /// ([`SessionContext::broadcast`]) whose [`Command::Fence`] has not
    /// come yet, and what the session sent, closed or stopped since, while
    /// there are some; boxed, as few sessions ever have one.
    hold: Option<Box<Hold>>,
}

impl Cold {
    /// Nothing in it: the session can let it go.
    fn is_spare(&self) -> bool {
        self.expiry.is_none()
            && !self.expiry_due
            && self.deferred_close.is_none()
            && self.timers.is_none()
            && !self.open_deferred
            && self.early.is_empty()
            && !self.early_dropped
            && self.hold.is_none()
    }
}

/// The most messages a session keeps from before its first receiver (see
/// `Cold::early`); more are dropped, and the session closes with 3008 once
/// it has handled those it kept.
const EARLY_KEPT: usize = 4096;

/// The future the session runs for its attached HTTP receiver or hixie-76
/// socket ([`ReceiverTimers`]; an RFC 6455 WebSocket has none: it reports
/// its own end and sends its own heartbeats).
#[derive(Debug)]
struct Timers {
    /// The receiver it belongs to.
    token: u32,
    handle: SpawnHandle,
}

/// The actor context of a SockJS session.
///
/// Give it as `type Context = SessionContext<Self>` in your session actor's
/// [`Actor`] impl. Besides the usual actix context abilities (timers,
/// spawning futures, [`address`](AsyncContext::address), handling your own
/// messages) it offers [`send`](Self::send), [`close`](Self::close), the
/// session id and the opening request. Those abilities behave as in
/// actix's `Context` (the CHANGELOG lists the few differences); what they
/// need is made on first use, so an idle session holds no list of
/// futures and no mailbox until it spawns one or asks for its address.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use actix::prelude::*;
/// use actix_sockjs::{Session, SessionContext};
///
/// /// A message of the application's own, sent to the session's address.
/// #[derive(Message)]
/// #[rtype(result = "()")]
/// struct Notice(String);
///
/// struct Clock;
///
/// impl Actor for Clock {
///     type Context = SessionContext<Self>;
/// }
///
/// impl Session for Clock {
///     fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
///         // A timer: the time every second while the session lives.
///         ctx.run_interval(Duration::from_secs(1), |_, ctx| ctx.send(format!("{:?}", std::time::SystemTime::now())));
///         // The session's own address, for other actors to reach it.
///         let me: Addr<Clock> = ctx.address();
///         me.do_send(Notice(format!("welcome, {}", ctx.session_id())));
///     }
///
///     fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
///         if msg == "bye" {
///             ctx.close(3000, "Bye");
///         }
///     }
/// }
///
/// impl Handler<Notice> for Clock {
///     type Result = ();
///
///     fn handle(&mut self, Notice(text): Notice, ctx: &mut SessionContext<Self>) {
///         ctx.send(text);
///     }
/// }
/// ```
pub struct SessionContext<A>
where
    A: Actor<Context = SessionContext<A>>,
{
    parts: Parts<A>,
    setup: SessionSetup,
    machine: Machine,
    /// See [`Cold`]; an idle (RFC 6455) WebSocket session has none.
    cold: Option<Box<Cold>>,
    /// Client messages its WebSocket read in place ([`Turn::fill_inbox`]),
    /// handled before the queued commands at the next turn. Its buffer
    /// stays between turns (up to [`INBOX_KEPT`] messages' worth) until the
    /// socket's next ping lets it go ([`Turn::release_inbox`]).
    inbox: Vec<String>,
    /// [`FINISH_REQUESTED`], [`FINISHER_SPAWNED`], [`NEEDS_POLL`],
    /// [`COUNTED_OPEN`] and [`STOP_REQUESTED`]: one byte, which leaves room
    /// for `task` in the slot's size.
    flags: u8,
    /// The session's number: which [`driver`] keeps it, and where; its
    /// waker is that number. Set once the session is in the driver.
    task: u32,
    /// The queue depth last reported to the metrics, in 4 KiB steps.
    queue_reported: u16,
    /// [`IN_PLACE`], [`QUEUE_ARMED`], [`DROPPING`], [`PANICKED`],
    /// [`OPEN_FAILED`] and [`NEVER_OPENED`]: one byte, so that the session's slot keeps its size.
    turn_bits: u8,
}

/// A bit of [`SessionContext::turn_bits`]: this turn is run in place, by
/// a request ([`Runtime::in_place`]).
const IN_PLACE: u8 = 1;

/// A bit of [`SessionContext::turn_bits`]: the driver's last poll of the
/// session read the command queue to the end, so the queue holds the
/// session's waker or has woken it since; a turn that a WebSocket runs in
/// place for its client's messages need not look at the queue (see
/// [`Pump`]). Every poll by the driver clears it first: one that stops before the pump (the
/// actor waits on a future of its own) leaves it clear.
const QUEUE_ARMED: u8 = 2;

/// A bit of [`SessionContext::turn_bits`]: the session is being dropped
/// with its worker (see `Drop for SessionFut`); its pump reads no more
/// commands and shuts the session down instead.
const DROPPING: u8 = 4;

/// A bit of [`SessionContext::turn_bits`]: a turn of the session panicked
/// and was caught; it is dropped as it is, without more of its code.
const PANICKED: u8 = 8;

/// A bit of [`SessionContext::turn_bits`], beside [`PANICKED`]: the panic
/// came in the session's first turn, and the request that opened it is
/// answered 500 ([`OpenPanicked`]): no client of it comes back.
const OPEN_FAILED: u8 = 16;

/// A bit of [`SessionContext::turn_bits`]: the session closed before it
/// opened (a shutdown before its first receiver): the handlers of typed
/// messages already on their way do not run, as `on_open` never did.
const NEVER_OPENED: u8 = 32;

/// A bit of [`SessionContext::flags`]: stop the actor at its next turn.
const FINISH_REQUESTED: u8 = 1;

/// A bit of [`SessionContext::flags`]: the [`Finisher`] is spawned and has
/// not run yet.
const FINISHER_SPAWNED: u8 = 2;

/// A bit of [`SessionContext::flags`]: the actor runtime must run again
/// before it waits (something was spawned outside its own poll).
const NEEDS_POLL: u8 = 4;

/// A bit of [`SessionContext::flags`]: the session counts as open in the
/// metrics and with its manager.
const COUNTED_OPEN: u8 = 8;

/// A bit of [`SessionContext::flags`]: `stop()` closed the session: run
/// `on_close(Stopped)`, then stop.
const STOP_REQUESTED: u8 = 16;

impl<A> fmt::Debug for SessionContext<A>
where
    A: Actor<Context = SessionContext<A>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionContext")
            .field("session", &crate::SessionTag::of(&self.setup.id))
            .field("machine", &self.machine)
            .finish()
    }
}

impl<A> SessionContext<A>
where
    A: Actor<Context = SessionContext<A>>,
{
    /// Whether `bit` of [`SessionContext::flags`] is set.
    fn bit(&self, bit: u8) -> bool {
        self.flags & bit != 0
    }

    fn set_bit(&mut self, bit: u8) {
        self.flags |= bit;
    }

    /// Clears `bit` of [`SessionContext::flags`]; whether it was set.
    fn take_bit(&mut self, bit: u8) -> bool {
        let was = self.bit(bit);
        self.flags &= !bit;
        was
    }

    /// Counts the session as closed in the metrics and with its manager, once.
    fn record_close(&mut self, cause: Option<&CloseCause>) {
        if self.take_bit(COUNTED_OPEN) {
            // Dropped without a cause as its handler panicked (marked by
            // whoever caught it: a turn's `Runtime::panicked`, the first
            // turn, the worker's stop); not a session dropped as its thread
            // unwinds for some other reason.
            let panicked = cause.is_none() && self.turn_bits & PANICKED != 0;
            let label = if panicked { CloseCause::PANICKED_LABEL } else { CloseCause::label(cause).0 };
            self.setup.metrics.session_closed(self.machine.transport(), label);
            self.setup.notes.note(self.setup.serial, Note::Closed);
        }
    }

    /// [`ActorContext::stop`], whatever the session holds.
    fn stop_now(&mut self) {
        let (code, reason) = close_code::with_reason(close_code::NORMAL);
        if self.machine.close(code, reason) {
            self.set_bit(STOP_REQUESTED);
            self.set_bit(NEEDS_POLL);
        } else if self.bit(STOP_REQUESTED) {
            // A stop is on its way already.
        } else if self.machine.transport().is_websocket() || *self.machine.state() == State::New {
            if self.cold.as_ref().is_some_and(|cold| cold.deferred_close.is_some()) {
                // After the deferred `on_close`: actix polls nothing spawned
                // once the actor is stopping. The finisher that runs it
                // stops the actor next.
                self.set_bit(FINISH_REQUESTED);
            } else {
                self.parts.stop();
            }
        }
        // An HTTP session that has closed already stops when its disconnect
        // delay ends, its late requests answered until then.
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
    /// closed with [`CloseCause::Overflow`]. Sending on a session that is
    /// not open does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext};
    /// # struct Echo;
    /// # impl Actor for Echo { type Context = SessionContext<Self>; }
    /// impl Session for Echo {
    ///     fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
    ///         ctx.send(format!("you said: {msg}"));
    ///     }
    /// }
    /// ```
    pub fn send(&mut self, msg: impl AsRef<str>) {
        let msg = msg.as_ref();
        if !self.is_open() {
            log::trace!("sockjs {}: send on a session that is not open ignored", self.session_tag());
            return;
        }
        if self.fenced() {
            self.hold(Held::Text(msg.to_owned()));
            return;
        }
        self.send_now(msg);
    }

    /// [`send`](Self::send), whatever the session holds.
    fn send_now(&mut self, msg: &str) {
        if !self.machine.is_open() {
            return;
        }
        self.setup.metrics.sent(msg.len());
        if let Err(Overflow(bytes)) = self.machine.send(msg) {
            self.overflowed(bytes);
        }
    }

    fn push(&mut self, shared: &Shared) {
        if let Some(code) = shared.close {
            // As if the session closed itself, after what came before. Not
            // held behind a broadcast of the session's own (see `broadcast`):
            // it came before that broadcast's fence, so before what the
            // session holds, which it drops.
            self.close_now(code, String::from(&*shared.text));
            return;
        }
        if !self.machine.is_open() {
            return;
        }
        self.setup.metrics.sent(shared.text.len());
        if let Err(Overflow(bytes)) = self.machine.push(shared) {
            self.overflowed(bytes);
        }
    }

    /// Closes the session with a code and a reason.
    ///
    /// The client gets `c[code,"reason"]` (on a raw WebSocket, a close frame
    /// with that code and reason) after the messages already sent, and
    /// [`Session::on_close`] runs with [`CloseCause::Application`]. Codes
    /// 3000–4999 are for applications; `close(1000, "Normal closure")` is
    /// sockjs-node's `conn.end()`. A raw WebSocket's close frame holds what
    /// RFC 6455 allows: the reason's first 123 bytes, and 1011 in place of a
    /// code no endpoint may send (below 1000, 1004–1006, 1015–2999, 5000
    /// and up). Closing a session that is not open does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext};
    /// # struct Guarded;
    /// # impl Actor for Guarded { type Context = SessionContext<Self>; }
    /// impl Session for Guarded {
    ///     fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
    ///         if ctx.request().query("token").as_deref() != Some("let-me-in") {
    ///             ctx.close(4401, "Unauthorized");
    ///         }
    ///     }
    ///     fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
    /// }
    /// ```
    pub fn close(&mut self, code: u16, reason: impl Into<String>) {
        let reason = reason.into();
        if self.close_held() {
            return;
        }
        if self.fenced() && self.machine.is_open() {
            self.hold(Held::Close(code, reason));
            return;
        }
        self.close_now(code, reason);
    }

    /// [`close`](Self::close), whatever the session holds.
    fn close_now(&mut self, code: u16, reason: String) {
        if self.machine.close(code, &reason) {
            self.defer_on_close(CloseCause::Application { code, reason });
        }
    }

    /// The session id from the URL. For raw WebSocket sessions, which have
    /// none, a unique generated one (`raw.`, 8 hex digits of the process and a
    /// number: no client can send it as a session id, SockJS ids have no
    /// dot).
    ///
    /// The client chose it, and on the HTTP transports it is the key to
    /// the session: whoever knows it can read the session's messages and
    /// send as it (README, "Security"). Do not show it to other users; if
    /// they must name a session, give it a name of your own, and log its
    /// [`session_tag`](Self::session_tag) rather than the id. (sockjs-node's
    /// `conn.id` is a UUID the server makes, not this.)
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Broadcast, Session, SessionContext, SessionManager};
    /// # struct Chat { room: actix::Addr<SessionManager<Chat>> }
    /// # impl Actor for Chat { type Context = SessionContext<Self>; }
    /// impl Session for Chat {
    ///     fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
    ///         // To everyone but the sender.
    ///         self.room.do_send(Broadcast::text(msg).except([ctx.session_id()]));
    ///     }
    /// }
    /// ```
    pub fn session_id(&self) -> &str {
        &self.setup.id
    }

    /// This session's [`SessionKey`](crate::SessionKey): for
    /// [`SendTo`](crate::SendTo), [`Deliver`](crate::Deliver),
    /// [`Join`](crate::Join), [`Leave`](crate::Leave) and
    /// [`GetSession`](crate::GetSession) to reach it and no other session,
    /// where its id may be shared.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext, SessionKey};
    /// # struct Tab { keys: Vec<SessionKey> }
    /// # impl Actor for Tab { type Context = SessionContext<Self>; }
    /// impl Session for Tab {
    ///     fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
    ///         // Tell the application's own actors who this is.
    ///         self.keys.push(ctx.key());
    ///     }
    /// #   fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
    /// }
    /// ```
    pub fn key(&self) -> crate::SessionKey {
        crate::SessionKey(self.setup.serial)
    }

    /// The session's [`SessionTag`](crate::SessionTag): what to log
    /// instead of its id, the same as the crate's own log lines show.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext};
    /// # struct Echo;
    /// # impl Actor for Echo { type Context = SessionContext<Self>; }
    /// impl Session for Echo {
    ///     fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
    ///         log::info!("session {} opened", ctx.session_tag());
    ///     }
    ///     fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
    /// }
    /// ```
    pub fn session_tag(&self) -> crate::SessionTag {
        crate::SessionTag::of(&self.setup.id)
    }

    /// What the request that opened the session carried.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext};
    /// # struct Echo;
    /// # impl Actor for Echo { type Context = SessionContext<Self>; }
    /// impl Session for Echo {
    ///     fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
    ///         let agent = ctx.request().header("user-agent").unwrap_or("?").to_owned();
    ///         ctx.send(format!("hello, {agent}"));
    ///     }
    ///     fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
    /// }
    /// ```
    pub fn request(&self) -> &RequestInfo {
        &self.setup.request
    }

    /// Whether the session is open: it has sent its open frame and is not
    /// closed.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext};
    /// # struct Echo;
    /// # impl Actor for Echo { type Context = SessionContext<Self>; }
    /// impl Session for Echo {
    ///     fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
    ///         ctx.close(3000, "one message only");
    ///         assert!(!ctx.is_open());
    ///         ctx.send(msg); // ignored: the session is closed
    ///     }
    /// }
    /// ```
    pub fn is_open(&self) -> bool {
        self.machine.is_open() && !self.close_held()
    }

    /// The transport that opened the session. An HTTP session's later
    /// requests may use others (a page that fell back from one streaming
    /// transport to another keeps its session only if it keeps its id).
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext, Transport};
    /// # struct Echo;
    /// # impl Actor for Echo { type Context = SessionContext<Self>; }
    /// impl Session for Echo {
    ///     fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
    ///         if ctx.transport() == Transport::XhrPolling {
    ///             log::info!("{} polls: expect latency", ctx.session_tag());
    ///         }
    ///     }
    ///     fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
    /// }
    /// ```
    pub fn transport(&self) -> Transport {
        self.machine.transport()
    }

    /// Where the session is in its life.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext, SessionState};
    /// # struct Echo;
    /// # impl Actor for Echo { type Context = SessionContext<Self>; }
    /// impl Session for Echo {
    ///     fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
    ///         assert_eq!(ctx.state(), SessionState::Open);
    ///         ctx.close(3000, "enough");
    ///         assert_ne!(ctx.state(), SessionState::Open);
    ///     }
    /// }
    /// ```
    pub fn state(&self) -> SessionState {
        if self.close_held() && self.machine.is_open() {
            return SessionState::Closing;
        }
        match self.machine.state() {
            State::New => SessionState::New,
            State::Open => SessionState::Open,
            State::Closing(_) => SessionState::Closing,
            State::Closed(_) => SessionState::Closed,
        }
    }

    /// Joins the group `group` of this endpoint: broadcasts to the group
    /// (see [`Broadcast::group`](crate::Broadcast::group)) reach the session
    /// from then on, until it leaves or closes. Joining twice is joining
    /// once; a closed session joins nothing.
    ///
    /// The manager learns of it before it handles any message sent after
    /// this call, so whatever the client does once it sees an answer sent
    /// after `join` finds the session in the group.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext};
    /// # struct Chat;
    /// # impl Actor for Chat { type Context = SessionContext<Self>; }
    /// impl Session for Chat {
    ///     fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
    ///         // A name built at run time: a `String` is a group name too.
    ///         let user = ctx.request().query("user").unwrap_or_default();
    ///         ctx.join(format!("user:{user}"));
    ///     }
    ///     fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
    ///         if let Some(room) = msg.strip_prefix("/join ") {
    ///             ctx.join(room);
    ///             ctx.send(format!("joined {room}"));
    ///         }
    ///     }
    /// }
    /// ```
    pub fn join(&mut self, group: impl AsRef<str>) {
        self.setup.notes.note(self.setup.serial, Note::Join(Arc::from(group.as_ref())));
    }

    /// Leaves the group `group` (nothing happens if the session is not in
    /// it). A session leaves all its groups when it closes.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext};
    /// # struct Chat;
    /// # impl Actor for Chat { type Context = SessionContext<Self>; }
    /// impl Session for Chat {
    ///     fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
    ///         if let Some(room) = msg.strip_prefix("/leave ") {
    ///             ctx.leave(room);
    ///         }
    ///     }
    /// }
    /// ```
    pub fn leave(&mut self, group: impl AsRef<str>) {
        self.setup.notes.note(self.setup.serial, Note::Leave(Arc::from(group.as_ref())));
    }

    /// Sends a value as one JSON message (`serde_json`'s encoding of it).
    ///
    /// # Errors
    ///
    /// The value's `Serialize` implementation failed (a map with non-string
    /// keys, say); nothing is sent.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Session, SessionContext};
    /// # struct Scores;
    /// # impl Actor for Scores { type Context = SessionContext<Self>; }
    /// impl Session for Scores {
    ///     fn on_message(&mut self, _: String, ctx: &mut SessionContext<Self>) {
    ///         let score = serde_json::json!({ "player": "ann", "points": 3 });
    ///         if let Err(e) = ctx.send_json(&score) {
    ///             log::warn!("score not sent: {e}");
    ///         }
    ///     }
    /// }
    /// ```
    pub fn send_json<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<(), serde_json::Error> {
        let text = serde_json::to_string(value)?;
        self.send(text);
        Ok(())
    }

    fn cold(&mut self) -> &mut Cold {
        self.cold.get_or_insert_default()
    }

    /// Sends `broadcast` (a [`Broadcast`](crate::Broadcast), boxed) through
    /// the manager's notes, and holds what the session sends or closes
    /// until the manager has fanned it out ([`Command::Fence`]); see
    /// [`SessionContext::broadcast`].
    pub(crate) fn broadcast_fenced(&mut self, broadcast: Box<dyn Any + Send>) {
        // The manager finds the session's entry for its fence: it enters
        // a session before it reads the session's notes, and forgets it
        // only once it has closed or gone.
        if self.setup.notes.try_note(self.setup.serial, Note::Broadcast(broadcast)) {
            self.cold().hold.get_or_insert_default().sent();
        } else {
            log::debug!("sockjs {}: broadcast after its manager stopped dropped", self.session_tag());
        }
    }

    fn held(&self) -> Option<&Hold> {
        self.cold.as_ref()?.hold.as_deref()
    }

    /// A broadcast of this session's own is on its way: what it sends,
    /// closes or stops waits for it.
    fn fenced(&self) -> bool {
        self.held().is_some_and(Hold::holds)
    }

    /// A close or a stop waits behind a broadcast of the session's own:
    /// the session counts as closing.
    fn close_held(&self) -> bool {
        self.held().is_some_and(Hold::closing)
    }

    /// Holds `held` while [`fenced`](Self::fenced); past
    /// [`Config::max_queue_bytes`] held, the session closes as an
    /// overflowing queue does (3008), and what it held is dropped.
    fn hold(&mut self, held: Held) {
        let max = self.setup.config.max_queue_bytes;
        let Some(hold) = self.cold.as_mut().and_then(|cold| cold.hold.as_mut()) else { return };
        if hold.hold(held) <= max {
            return;
        }
        self.let_hold_go();
        self.close_overflowing(|| format!("over {max} bytes sent while its own broadcast was on its way"));
    }

    /// Closes the session with 3008, as an overflowing queue does, and
    /// logs `why` if it was open.
    fn close_overflowing(&mut self, why: impl FnOnce() -> String) {
        let (code, reason) = close_code::with_reason(close_code::OVERFLOW);
        if self.machine.close(code, reason) {
            crate::util::log_limited!(
                log::Level::Warn,
                "sockjs {}: {}; closing it",
                self.session_tag(),
                why()
            );
            self.defer_on_close(CloseCause::Overflow);
        }
    }

    /// A fence came ([`Command::Fence`]), or a shutdown lets `all` go:
    /// what waited for it goes out, in order.
    fn release_held(&mut self, all: bool) {
        let Some(hold) = self.cold.as_mut().and_then(|cold| cold.hold.as_mut()) else { return };
        let released = if all { hold.release_all() } else { hold.fence() };
        if hold.is_done() {
            self.let_hold_go();
        }
        for held in released {
            match held {
                Held::Text(text) => self.send_now(&text),
                Held::Close(code, reason) => self.close_now(code, reason),
                Held::Stop => self.stop_now(),
            }
        }
    }

    /// Drops the hold, and the cold state if nothing else is in it.
    fn let_hold_go(&mut self) {
        if let Some(cold) = self.cold.as_mut() {
            cold.hold = None;
            if cold.is_spare() {
                self.cold = None;
            }
        }
    }

    /// The next message kept from before the session opened, once it has.
    /// After the last of them, a session that had to drop some closes, as
    /// one whose queue overflowed.
    fn take_early(&mut self) -> Option<Command> {
        let cold = self.cold.as_mut().filter(|cold| !cold.early.is_empty() || cold.early_dropped)?;
        if *self.machine.state() == State::New {
            return None;
        }
        if let Some(command) = cold.early.pop_front() {
            if cold.early.is_empty() {
                // Its buffer goes with the last of them.
                cold.early = std::collections::VecDeque::new();
            }
            return Some(command);
        }
        cold.early_dropped = false;
        self.close_overflowing(|| format!("more than {EARLY_KEPT} messages came before the session opened"));
        None
    }

    /// The queue went past its limit, to `bytes` (dropped since): the
    /// largest queue yet, maybe, though no flush will see it.
    fn overflowed(&mut self, bytes: usize) {
        self.setup.metrics.high_water(bytes);
        crate::util::log_limited!(
            log::Level::Warn,
            "sockjs {}: outgoing queue over {} bytes, closing the session",
            self.session_tag(),
            self.setup.config.max_queue_bytes
        );
        self.defer_on_close(CloseCause::Overflow);
    }

    /// Runs `on_close` on the actor at its next turn; used where only the
    /// context is at hand.
    fn defer_on_close(&mut self, cause: CloseCause) {
        self.record_close(Some(&cause));
        self.cold().deferred_close = Some(cause);
        self.spawn_finisher();
    }

    /// Runs `on_close` now.
    fn notify_close(&mut self, act: &mut A, cause: CloseCause) {
        self.record_close(Some(&cause));
        act.on_close(cause, self);
    }

    /// Stops the actor at its next turn, after any deferred `on_close`.
    fn finish(&mut self) {
        self.set_bit(FINISH_REQUESTED);
        self.spawn_finisher();
    }

    fn spawn_finisher(&mut self) {
        if !self.bit(FINISHER_SPAWNED) {
            self.set_bit(FINISHER_SPAWNED);
            self.set_bit(NEEDS_POLL);
            self.parts.spawn(Finisher);
        }
    }

    fn handle(&mut self, act: &mut A, command: Command) {
        if *self.machine.state() == State::New && matches!(command, Command::Push(_) | Command::Typed(_)) {
            let cold = self.cold();
            if cold.early.len() < EARLY_KEPT {
                cold.early.push_back(command);
            } else {
                // Said once the session has opened (`take_early`).
                cold.early_dropped = true;
            }
            return;
        }
        match command {
            Command::Attach(receiver) => self.attach(act, *receiver),
            Command::Messages(mut messages) => {
                self.on_messages(act, &mut messages);
                self.keep_waiting(*messages);
            }
            Command::Push(shared) => self.push(&shared),
            Command::ReceiverGone { aborted } => {
                if let Some(token) = self.machine.token() {
                    self.receiver_gone(act, token, aborted);
                }
            }
            Command::Address(request) => (request.0)(Box::new(self.parts.address())),
            Command::Typed(_) if self.turn_bits & NEVER_OPENED != 0 => {
                log::debug!(
                    "sockjs {}: typed message for a session that never opened dropped",
                    self.session_tag()
                );
            }
            Command::Typed(typed) => {
                // Made by the manager of this session type, so the downcast
                // holds; a mismatch would be a bug, and drops the message.
                if let Ok(mut envelope) = typed.0.downcast::<Envelope<A>>() {
                    actix::dev::EnvelopeProxy::handle(&mut *envelope, act, self);
                }
            }
            Command::Shutdown => {
                // What the session sent before it goes out before the close
                // frame, though its own broadcasts may not come back.
                self.release_held(true);
                let (code, reason) = crate::close_code::with_reason(crate::close_code::SHUTDOWN);
                if self.machine.close(code, reason) {
                    self.notify_close(act, CloseCause::Shutdown);
                } else {
                    // Before its first receiver (the manager can answer a
                    // new HTTP session and then shut down before the
                    // worker queues its `Attach`): that receiver gets the
                    // close frame, and `on_open` never runs (nor do the
                    // handlers of what came for it before).
                    if self.machine.close_unopened(code) {
                        // Its manager stops listing it as live: what is
                        // sent to its id from now on is `Unknown`.
                        self.turn_bits |= NEVER_OPENED;
                        self.setup.notes.note(self.setup.serial, Note::Closed);
                    }
                    if let Some(cold) = self.cold.as_mut() {
                        cold.early.clear();
                        cold.early_dropped = false;
                    }
                }
            }
            Command::Undelivered(back) => self.undelivered(act, back.0, &back.1),
            Command::Fence => self.release_held(false),
            Command::TransportFailed(failure) => {
                // Logged here, where the session's tag is known (a socket
                // does not keep it).
                let config = &self.setup.config;
                let (why, cause) = match failure {
                    Failure::Protocol => ("a WebSocket protocol error".to_owned(), CloseCause::ProtocolError),
                    Failure::TooLarge => (
                        format!("a message over {} bytes", config.max_message_bytes),
                        CloseCause::ProtocolError,
                    ),
                    Failure::Broken => {
                        ("a message that is no SockJS frame".to_owned(), CloseCause::ProtocolError)
                    }
                    Failure::Slow => (
                        format!(
                            "a message not finished in time (request_timeout {:?})",
                            config.request_timeout
                        ),
                        CloseCause::Interrupted,
                    ),
                    Failure::Silent => (
                        format!("no answer to a ping for {:?}", config.ping_timeout),
                        CloseCause::Interrupted,
                    ),
                };
                crate::util::log_limited!(
                    log::Level::Info,
                    "sockjs {}: websocket closed for {why}",
                    self.session_tag()
                );
                self.cancel_timers(self.machine.token());
                if self.machine.fail() {
                    self.notify_close(act, cause);
                }
            }
        }
    }

    /// Takes back what the HTTP receiver `ticket` could not deliver (see
    /// [`Command::Undelivered`]): its messages go first to the next
    /// receiver (the poll waiting now, if one is). If messages or a close
    /// frame went to another receiver since, they cannot keep their order
    /// and are lost: the session is closed as interrupted (1002), as it
    /// would have been had the abort been seen before the write, so that the
    /// client learns of it; if it had closed already, its close frame
    /// becomes 1002 for the requests to come.
    fn undelivered(&mut self, act: &mut A, ticket: u32, messages: &str) {
        match self.machine.restore(ticket, messages) {
            Restore::Kept => {
                log::debug!(
                    "sockjs {}: a poll's client left before its frame went out; kept for the next",
                    self.session_tag()
                );
                return;
            }
            Restore::Late => {}
        }
        if self.machine.close_ended() {
            crate::util::log_limited!(
                log::Level::Info,
                "sockjs {}: a poll's client left before its frame went out, and another poll came since: closing the session as interrupted",
                self.session_tag()
            );
            self.notify_close(act, CloseCause::Interrupted);
        } else if self.machine.interrupt_closed() {
            // The session has closed, and another request has had later
            // frames or the close frame: the requests to come get 1002 in
            // place of its close frame.
            crate::util::log_limited!(
                log::Level::Info,
                "sockjs {}: a request's client left before its frame went out, and the session, closed, has written to another request since: its close frame is now 1002",
                self.session_tag()
            );
        }
    }

    /// Hands the client's messages to `on_message`, in order, while the
    /// session is open; leaves in `messages` (its buffer kept) those that
    /// must wait, as actix's mailbox makes its messages wait, because a
    /// handler started a wait of the actor's own (`ctx.wait`) or stopped
    /// it. Messages after a close are dropped.
    fn on_messages(&mut self, act: &mut A, messages: &mut Vec<String>) {
        // Counted as taken, handled or dropped (those left are counted when
        // a later turn takes them).
        let (mut taken, mut bytes) = (0, 0);
        while taken < messages.len() {
            if !self.is_open() {
                bytes += self.dropped_after_close(&messages[taken..]);
                taken = messages.len();
                break;
            }
            if self.waiting() {
                break;
            }
            let msg = std::mem::take(&mut messages[taken]);
            (taken, bytes) = (taken + 1, bytes + msg.len());
            act.on_message(msg, self);
        }
        self.setup.metrics.received(taken, bytes);
        messages.drain(..taken);
    }

    /// Client messages that came after the session closed, dropped:
    /// answers their bytes.
    #[cold]
    #[inline(never)]
    fn dropped_after_close(&self, messages: &[String]) -> usize {
        log::debug!("sockjs {}: message after close dropped", self.session_tag());
        messages.iter().map(String::len).sum()
    }

    /// Keeps client messages that must wait (see [`Self::on_messages`])
    /// for the next turn: the inbox comes first then.
    fn keep_waiting(&mut self, mut rest: Vec<String>) {
        if !rest.is_empty() {
            rest.append(&mut self.inbox);
            self.inbox = rest;
        }
    }

    fn attach(&mut self, act: &mut A, receiver: Receiver) {
        match self.machine.attach(receiver) {
            Attach::Opened { token } => {
                self.set_bit(COUNTED_OPEN);
                self.setup.metrics.session_opened(self.machine.transport());
                // A socket's session is entered open, as its socket is
                // attached at its first turn (one note less per set-up),
                // unless that turn did not get to it ([`Note::Deferred`]).
                if !self.machine.transport().is_websocket()
                    || self.cold.as_ref().is_some_and(|c| c.open_deferred)
                {
                    self.setup.notes.note(self.setup.serial, Note::Opened);
                }
                self.installed(token);
                act.on_open(self);
            }
            Attach::Attached { token } => self.installed(token),
            Attach::Refused => log::debug!("sockjs {}: second receiver refused", self.session_tag()),
            Attach::Interrupted { old } => {
                log::debug!("sockjs {}: previous receiver was aborted", self.session_tag());
                self.cancel_timers(Some(old));
                self.notify_close(act, CloseCause::Interrupted);
            }
            Attach::Closed => {
                // As a receiver's end does: the delay counts from the last
                // request, so that a client that polls for what was queued
                // has a whole delay to poll for the close frame.
                self.restart_expiry();
            }
        }
    }

    /// Starts what an attached receiver needs: a watch on its end and
    /// heartbeats, unless its transport does both itself.
    fn installed(&mut self, token: u32) {
        if let Some(cold) = self.cold.as_mut() {
            cold.expiry_due = false;
            if let Some(expiry) = cold.expiry.take() {
                self.parts.cancel_future(expiry);
            }
        }
        let Some((out, watch)) = self.machine.receiver().and_then(Receiver::timed) else { return };
        let every = clock::millis(self.setup.config.heartbeat).max(1);
        let beat = clock::now().saturating_add(every);
        deadlines::wake_sender_at(beat, &out);
        let handle = self.parts.spawn(ReceiverTimers { out, token, watch, beat, every });
        self.cold().timers = Some(Timers { token, handle });
    }

    /// Stops the timers of the receiver `token` (of whichever is running
    /// when `None`).
    fn cancel_timers(&mut self, token: Option<u32>) {
        let timers = self
            .cold
            .as_mut()
            .and_then(|cold| cold.timers.take_if(|t| token.is_none_or(|token| t.token == token)));
        if let Some(timers) = timers {
            self.parts.cancel_future(timers.handle);
        }
    }

    /// Acts on what a write did: a detached receiver's timers stop, an
    /// overflow runs `on_close`.
    fn written(&mut self, written: Written) {
        if let Some(token) = written.detached {
            self.cancel_timers(Some(token));
        }
        if let Some(bytes) = written.overflow {
            self.overflowed(bytes);
        }
    }

    /// The receiver `token` ended: an HTTP session is interrupted, a
    /// WebSocket session ends (closed by the client, or interrupted when
    /// its connection broke without a closing handshake: `aborted`).
    fn receiver_gone(&mut self, act: &mut A, token: u32, aborted: bool) {
        if !self.machine.receiver_gone(token) {
            return;
        }
        self.cancel_timers(Some(token));
        let websocket = self.machine.transport().is_websocket();
        if self.machine.close_ended() {
            if websocket && !aborted {
                self.notify_close(act, CloseCause::ClientClosed);
            } else if websocket {
                log::debug!("sockjs {}: websocket connection ended without a close", self.session_tag());
                self.notify_close(act, CloseCause::Interrupted);
            } else {
                log::debug!("sockjs {}: client aborted its receiving request", self.session_tag());
                self.notify_close(act, CloseCause::Interrupted);
            }
        }
        if websocket {
            self.finish();
        }
    }

    /// Starts the disconnect delay of an HTTP session without a receiver
    /// (docs/protocol.md §7.7): when it passes with no receiver attached,
    /// the session ends.
    fn schedule_expiry(&mut self) {
        self.set_bit(NEEDS_POLL);
        let timer = self.run_later(self.setup.config.disconnect_delay, move |_, ctx| {
            // The pump decides, after the commands queued until now: one
            // may be a receiver that keeps the session.
            let cold = ctx.cold();
            cold.expiry = None;
            cold.expiry_due = true;
            ctx.set_bit(NEEDS_POLL);
        });
        self.cold().expiry = Some(timer);
    }

    /// Restarts the disconnect delay if it runs or has just passed.
    fn restart_expiry(&mut self) {
        let Some(cold) = self.cold.as_mut() else { return };
        let due = std::mem::take(&mut cold.expiry_due);
        match cold.expiry.take() {
            Some(expiry) => {
                self.parts.cancel_future(expiry);
            }
            None if due => {}
            None => return,
        }
        self.schedule_expiry();
    }

    /// Ends the session whose disconnect delay has passed, unless a
    /// receiver has come since; the pump calls it with the command queue
    /// read to the end. The queue is closed as the session decides, in one
    /// step with a last look at it: a request that finds it closed finds
    /// the session gone (and opens a new one, or answers 404), where it
    /// would hand a command to a session that no longer reads them. If a
    /// command came in between, the pump reads it and asks again.
    fn expire(&mut self, act: &mut A, rx: &mut CommandRx) {
        let Some(cold) = self.cold.as_mut().filter(|cold| cold.expiry_due) else { return };
        if self.machine.attached() {
            cold.expiry_due = false;
            return;
        }
        if !rx.0.close_if_empty() {
            return;
        }
        cold.expiry_due = false;
        if self.machine.expire() == Some(true) {
            log::debug!("sockjs {}: no receiver within the disconnect delay", self.session_tag());
            self.notify_close(act, CloseCause::Timeout);
        }
        // Asked again after every delay while the actor keeps running
        // (its `stopping` answered `Running::Continue`), as before the
        // queue closed: the pump stays for it.
        self.parts.stop();
    }

    /// Hands what is queued to the attached receiver; runs after every turn
    /// of the actor. Returns whether the actor runtime must run again (a
    /// timer was started or the actor stopped outside its own poll).
    fn flush(&mut self) -> bool {
        if self.take_bit(STOP_REQUESTED) {
            self.defer_on_close(CloseCause::Stopped);
            // A socket's session ends with it. An HTTP session stays, closed,
            // for its disconnect delay (below), as one that `close()`d does:
            // its client's next request gets what was queued and the close
            // frame, not a new session under the same id.
            if self.machine.transport().is_websocket() {
                self.finish();
            }
        }
        let before = (self.machine.attached(), self.parts.state());
        self.setup.metrics.queue_depth(self.machine.queued(), &mut self.queue_reported);
        let written = self.machine.flush();
        self.written(written);
        if !self.machine.attached() {
            if self.machine.transport().is_websocket() {
                if *self.machine.state() != State::New {
                    self.finish();
                }
            } else if self.cold.as_ref().is_none_or(|cold| cold.expiry.is_none() && !cold.expiry_due)
                && self.parts.state() == ActorState::Running
            {
                self.schedule_expiry();
            }
        }
        self.take_bit(NEEDS_POLL) || before != (self.machine.attached(), self.parts.state())
    }
}

impl<A> Drop for SessionContext<A>
where
    A: Actor<Context = SessionContext<A>>,
{
    fn drop(&mut self) {
        self.record_close(None);
        self.setup.metrics.queue_depth(0, &mut self.queue_reported);
        self.machine.end(self.turn_bits & PANICKED != 0);
        // An HTTP session's client polls again, and hears why it ended; one
        // that failed as it opened was answered 500 and has no session to
        // come back to.
        let failed = self.turn_bits & (PANICKED | OPEN_FAILED) == PANICKED;
        let close = match self.machine.state() {
            State::Open => Some(close_code::with_reason(close_code::INTERNAL_ERROR)),
            State::Closing(close) | State::Closed(close) => Some((close.0, close.1.as_str())),
            State::New => None,
        };
        let note = match close.filter(|_| failed && !self.machine.transport().is_websocket()) {
            Some((code, reason)) => Note::Failed(Box::new(Tombstone {
                keep: self.setup.config.disconnect_delay,
                code,
                reason: reason.into(),
            })),
            None if self.machine.transport().is_websocket() => Note::SocketEnded,
            None => Note::Ended,
        };
        self.setup.notes.note(self.setup.serial, note);
        log::trace!("sockjs {}: session ended", crate::SessionTag::of(&self.setup.id));
    }
}

impl<A> ActorContext for SessionContext<A>
where
    A: Actor<Context = Self>,
{
    /// Stops the session actor. An open session is closed first: its
    /// client gets `c[1000,"Normal closure"]` and [`Session::on_close`]
    /// runs with [`CloseCause::Stopped`], then the actor stops: a
    /// WebSocket's at once, an HTTP session's once its disconnect delay has
    /// passed, as after [`close`](SessionContext::close), so that its
    /// client's next request still gets what was queued and the close
    /// frame.
    fn stop(&mut self) {
        // Behind a broadcast of the session's own, as a close is (see
        // `SessionContext::broadcast`).
        let hold = self.cold.as_mut().and_then(|cold| cold.hold.as_mut()).filter(|hold| hold.holds());
        if let Some(hold) = hold.filter(|_| self.machine.is_open()) {
            hold.hold_stop();
            return;
        }
        self.stop_now();
    }

    /// Stops the actor at once, as actix's `terminate` does: no
    /// `stopping`, no [`Session::on_close`], and nothing more is handled.
    /// The session is dropped with the actor: what it had queued and not
    /// yet written is lost, an attached receiver gets
    /// `c[1000,"Normal closure"]` (a WebSocket then closes), and the
    /// client's next request finds no session. Prefer
    /// [`stop`](ActorContext::stop) or [`close`](SessionContext::close).
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
        self.parts.waiting()
    }

    fn cancel_future(&mut self, handle: SpawnHandle) -> bool {
        self.parts.cancel_future(handle)
    }

    fn address(&self) -> Addr<A> {
        self.parts.address()
    }
}

impl<A> HasParts<A> for SessionContext<A>
where
    A: Actor<Context = Self>,
{
    fn parts(&mut self) -> &mut Parts<A> {
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
        ctx.take_bit(FINISHER_SPAWNED);
        if let Some(cause) = ctx.cold.as_mut().and_then(|cold| cold.deferred_close.take()) {
            act.on_close(cause, ctx);
        }
        if ctx.bit(FINISH_REQUESTED) && ctx.parts.state() == ActorState::Running {
            ctx.parts.stop();
        }
        Poll::Ready(())
    }
}

/// The timers of an attached HTTP receiver or hixie-76 socket, in one
/// future: it ends an HTTP receiver when its transport lets go of the
/// queue (the response ended, or its client left), and writes the
/// heartbeats. The worker's deadlines wake it at each through the same
/// queue ([`deadlines::wake_sender_at`]), as they wake WebSockets for
/// theirs: no tokio timer, which with actix's interval around it and a
/// second future for the watch took 144 bytes of every idle HTTP receiver
/// (this future takes 32), and a timer wheel entry set and cancelled for
/// every poll.
struct ReceiverTimers {
    out: OutTx,
    token: u32,
    /// The transport dropping its end of the queue is the receiver's end
    /// (an HTTP response; a hixie-76 socket reports its own end).
    watch: bool,
    /// The next heartbeat, in [`clock::now`]'s milliseconds.
    beat: u64,
    /// The heartbeat delay in milliseconds (at least 1).
    every: u64,
}

impl<A: Session> ActorFuture<A> for ReceiverTimers {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut A,
        ctx: &mut SessionContext<A>,
        task: &mut Context<'_>,
    ) -> Poll<()> {
        let this = self.get_mut();
        // Also leaves the task's waker where the alarm rings it.
        if this.out.poll_closed(task).is_ready() {
            if this.watch {
                ctx.receiver_gone(act, this.token, false);
            }
            return Poll::Ready(());
        }
        if deadlines::may_have_passed(this.beat) {
            // Every `every` from the last, like a WebSocket's: no receiver
            // goes longer without one (up to a 64th late, see `clock`).
            let now = clock::now();
            if now >= this.beat {
                this.beat = now.saturating_add(this.every);
                let written = ctx.machine.heartbeat();
                let ended = written.detached == Some(this.token);
                // Cancels this future if the heartbeat ended the receiver
                // (a poll's answer): no alarm for a queue about to go.
                ctx.written(written);
                if ended {
                    return Poll::Ready(());
                }
            }
            deadlines::wake_sender_at(this.beat, &this.out);
        }
        Poll::Pending
    }
}

/// Drains the session's command queue inside its context, after
/// attaching its first receiver if it came with one (a socket's, handed
/// over without the queue's lock and the boxed command). The runtime's
/// own ([`runtime::poll_actor`]): polled before the spawned futures.
struct Pump {
    rx: CommandRx,
    first: Option<Receiver>,
}

/// Dropped with a session whose turn panicked (the session is dropped as
/// the panic unwinds, see `turn::Unwinding`): receivers it never attached
/// (its socket's, while `started` waits on a future; polls queued behind
/// the turn) hear the failure as an attached one does from
/// `Machine::end`, rather than an empty answer or a bare end of the
/// connection.
impl Drop for Pump {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        if let Some(receiver) = self.first.take() {
            receiver.fail();
        }
        // Closed as it is emptied: a receiver handed over after this comes
        // back to its request, which then finds the session gone.
        for command in self.rx.0.close() {
            if let Command::Attach(receiver) = command {
                receiver.fail();
            }
        }
    }
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
        if ctx.turn_bits & DROPPING != 0 {
            ctx.handle(act, Command::Shutdown);
            return Poll::Ready(());
        }
        if let Some(receiver) = this.first.take() {
            ctx.attach(act, receiver);
        }
        // What the socket handed over in place comes first: it was handed
        // before any command the socket queued after it (its end).
        let handed = !ctx.inbox.is_empty();
        if handed {
            // A socket that found the inbox full stopped reading (a turn
            // that did not reach the pump, while the actor waits on a
            // future of its own): it looks again once told.
            let full = inbound_weight(&ctx.inbox) > INBOUND_ROOM;
            let mut messages = std::mem::take(&mut ctx.inbox);
            ctx.on_messages(act, &mut messages);
            if !messages.is_empty() {
                // The actor waits (see `on_messages`): they come first at
                // its next turn.
                ctx.keep_waiting(messages);
            } else if messages.capacity() <= INBOX_KEPT && ctx.inbox.is_empty() {
                // The buffer waits for the client's next messages, which
                // then cost no allocation; the socket lets it go once its
                // client is quiet (`Turn::release_inbox`), and a burst's at
                // once.
                ctx.inbox = messages;
            }
            if let Some(receiver) =
                ctx.machine.receiver().filter(|_| full && inbound_weight(&ctx.inbox) <= INBOUND_ROOM)
            {
                receiver.nudge();
            }
        }
        // A WebSocket's turn for its client's messages leaves the queue to
        // the driver when the driver's last poll read it to the end: the
        // queue then holds the session's waker, or has woken it for a
        // command since, and the driver's next poll reads it (or, if the actor waits
        // on a future by then, clears the bit, and the turn that ends the
        // wait reads it). Not looking saves a lock and a cache line per
        // echo (benches/README.md). Every other turn reads it: an HTTP
        // request's turn runs for what it queued there.
        if handed && ctx.turn_bits == IN_PLACE | QUEUE_ARMED {
            return Poll::Pending;
        }
        // Bounded per turn, so that one busy session cannot hog its worker.
        for _ in 0..64 {
            // As actix's mailbox: nothing more while the actor waits on a
            // future of its own (a handler's `ctx.wait`, an
            // `AtomicResponse`) or has stopped.
            if ctx.waiting() {
                return Poll::Pending;
            }
            if let Some(command) = ctx.take_early() {
                ctx.handle(act, command);
                continue;
            }
            match this.rx.0.poll_recv_weighed(task, Command::weight) {
                Poll::Ready(Some(command)) => ctx.handle(act, command),
                // No one can send it commands any more (or it has expired
                // and closed its queue). An HTTP session's pump stays for
                // its disconnect delay, which it ends.
                Poll::Ready(None) if ctx.machine.transport().is_websocket() => return Poll::Ready(()),
                Poll::Ready(None) => {
                    ctx.expire(act, &mut this.rx);
                    return Poll::Pending;
                }
                Poll::Pending => {
                    ctx.expire(act, &mut this.rx);
                    // Only the driver's poll arms: a turn in place may be
                    // the first one, whose waker is a no-op.
                    if ctx.turn_bits & IN_PLACE == 0 {
                        ctx.turn_bits |= QUEUE_ARMED;
                    }
                    return Poll::Pending;
                }
            }
        }
        task.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Runs the session's actor runtime and flushes after every turn. Its
/// fields drop in this order: the context (and with it what was spawned
/// or waited on, and the actor's mailbox: actix's runtime dropped those
/// after the actor), the actor, the pump (whose drop fails receivers it
/// never attached, after the context's has ended the attached one).
struct SessionFut<A: Session> {
    ctx: SessionContext<A>,
    act: A,
    /// Until the command queue closes (a socket's session) or the session
    /// stops.
    pump: Option<Pump>,
}

impl<A: Session> SessionFut<A> {
    /// Polls the actor runtime, without the flush.
    fn run(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        runtime::poll_actor(&mut self.act, &mut self.ctx, &mut self.pump, cx)
    }

    /// As actix's runtime is dropped: an actor that still has something
    /// to run for is asked to stop, and polled once (with no waker) for
    /// its `stopping` and `stopped`.
    ///
    /// A panic in `stopping` or `stopped` stops here unless the session
    /// is dropped as a panic unwinds (a second panic then aborts, as it
    /// would with actix): this runs in the request whose first turn failed.
    fn stop_as_dropped(&mut self) {
        if runtime::alive::<A, _>(&mut self.ctx, &self.pump) {
            self.ctx.parts.stop();
            if std::thread::panicking() {
                let _ = self.run(&mut Context::from_waker(Waker::noop()));
            } else if catch_unwind(AssertUnwindSafe(|| self.run(&mut Context::from_waker(Waker::noop()))))
                .is_err()
            {
                log::error!("sockjs {}: a session panicked as it stopped", self.ctx.session_tag());
                self.ctx.turn_bits |= PANICKED;
            }
        }
    }
}

impl<A: Session> Runtime for SessionFut<A> {
    fn inbox(&mut self) -> &mut Vec<String> {
        &mut self.ctx.inbox
    }

    fn panicked(&mut self) {
        let ctx = &mut self.ctx;
        log::error!("sockjs {}: a session panicked in its handler; it is dropped", ctx.session_tag());
        ctx.turn_bits |= PANICKED;
    }

    fn in_place(&mut self, in_place: bool) {
        let ctx = &mut self.ctx;
        // A poll of the task re-arms only if it reads the queue to the end.
        // The other bits say what the session is, not what this turn is:
        // they stay (a task's poll that cleared `NEVER_OPENED` let the
        // handler of a typed message run on a session that never opened).
        ctx.turn_bits =
            if in_place { ctx.turn_bits | IN_PLACE } else { ctx.turn_bits & !(IN_PLACE | QUEUE_ARMED) };
    }

    fn task(&self) -> u32 {
        self.ctx.task
    }

    fn set_task(&mut self, number: u32) {
        self.ctx.task = number;
    }
}

impl<A: Session> Future for SessionFut<A> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let res = this.run(cx);
        if this.ctx.flush() {
            cx.waker().wake_by_ref();
        }
        res
    }
}

/// A session dropped while it is open: its worker stopped with the
/// session still in its driver, as when the server stops without
/// [`shutdown_signal`](crate::shutdown_signal) (actix-web's own signal
/// handling, `ServerHandle::stop`). The runtime then stops the actor and
/// runs `stopping` and `stopped`, as actix's did; first, the session is
/// shut down as by
/// [`Shutdown`](crate::Shutdown), so that `on_close` runs (with
/// [`CloseCause::Shutdown`], or the cause of a close already under way).
/// Its client gets no close frame: the connection goes with the worker.
/// This runs as the worker's tokio runtime is torn down, as `stopped`
/// does there: no timer starts and nothing spawned runs.
///
/// Not for a session whose turn panicked (it is dropped while unwinding,
/// or marked [`PANICKED`]), nor for an actor that has stopped or is
/// stopping (its `stopped` has run or runs: a poll would run it again),
/// nor, in effect, for one waiting on a future of its own (`ctx.wait`):
/// the runtime polls nothing else meanwhile, so its pump does not run.
impl<A: Session> Drop for SessionFut<A> {
    fn drop(&mut self) {
        self.shut_down_as_dropped();
        self.stop_as_dropped();
    }
}

impl<A: Session> SessionFut<A> {
    /// See the `Drop` above.
    fn shut_down_as_dropped(&mut self) {
        let ctx = &mut self.ctx;
        // An actor that stopped (or is stopping) has run, or runs, its
        // `stopped` already; polling it again would run that twice.
        if std::thread::panicking() || ctx.turn_bits & PANICKED != 0 || !ctx.parts.state().alive() {
            return;
        }
        let closing = ctx.cold.as_ref().is_some_and(|cold| cold.deferred_close.is_some());
        if !ctx.bit(COUNTED_OPEN) && !closing {
            return;
        }
        log::debug!("sockjs {}: session dropped with its worker; it shuts down", ctx.session_tag());
        ctx.turn_bits |= DROPPING;
        // One poll runs the pump, which shuts the session down, and any
        // deferred `on_close`; a second the stop they ask for. A panic in
        // them stops here: this may run while the worker's runtime is torn
        // down.
        for _ in 0..4 {
            let poll = || self.run(&mut Context::from_waker(Waker::noop()));
            match catch_unwind(AssertUnwindSafe(poll)) {
                Ok(Poll::Pending) => {}
                Ok(Poll::Ready(())) => return,
                Err(_) => {
                    log::error!(
                        "sockjs {}: a session panicked as its worker stopped",
                        self.ctx.session_tag()
                    );
                    self.ctx.turn_bits |= PANICKED;
                    return;
                }
            }
        }
    }
}

/// A session could not open: its first turn panicked, or its worker has
/// no room to run it ([`driver::ensure`]). It is gone ([`start_session`]).
#[derive(Debug)]
pub(crate) struct OpenPanicked;

/// Starts a session actor on the current arbiter, which attaches `first`
/// (a socket's receiver) at its first turn, before it reads `rx`; returns
/// the [`Turn`] that others run in place ([`InPlace`]), `None` if the
/// session ended in its first turn.
pub(crate) fn start_session<A: Session>(
    act: A,
    transport: Transport,
    setup: SessionSetup,
    (rx, first): (CommandRx, Option<Receiver>),
    in_place: InPlace,
) -> Result<Option<Rc<dyn Turn>>, OpenPanicked> {
    let serial = setup.serial;
    let Ok(driver) = driver::ensure() else {
        // Logged by the driver. The manager, which has listed the session,
        // hears that it ended, as no session actor exists to tell it.
        setup.notes.note(serial, Note::Ended);
        return Err(OpenPanicked);
    };
    let machine = Machine::new(transport, setup.config.max_queue_bytes);
    let ctx = SessionContext {
        parts: Parts::new(),
        setup,
        machine,
        cold: None,
        inbox: Vec::new(),
        flags: 0,
        task: 0,
        queue_reported: 0,
        // The first turn runs in the opening request, with no waker.
        turn_bits: IN_PLACE,
    };
    let mut fut = SessionFut { ctx, act, pump: Some(Pump { rx, first }) };
    // The first turn runs now, in the request that opens the session: it
    // attaches the receiver (the open frame, `on_open` and what
    // `on_open` tells the manager), so that the transport's first poll
    // finds the open frame and it leaves in the same write as the answer's
    // head, after `on_open`. Wake-ups during this turn go nowhere; the
    // task's own first poll, which always follows, registers them again.
    // A panic in it (in `started` or `on_open`) is caught, as in any turn
    // run in place: the session is dropped, and the opening request gets
    // an error answer instead of a cut connection.
    let first =
        catch_unwind(AssertUnwindSafe(|| Pin::new(&mut fut).poll(&mut Context::from_waker(Waker::noop()))));
    match first {
        Ok(Poll::Ready(())) => return Ok(None),
        Ok(Poll::Pending) => {
            // A socket's session opens at its first turn unless its actor
            // waits on a future from `started` (which holds back the pump
            // that attaches the socket): its manager entered it open.
            let ctx = &mut fut.ctx;
            if ctx.machine.transport().is_websocket() && matches!(ctx.machine.state(), State::New) {
                ctx.cold().open_deferred = true;
                ctx.setup.notes.note(serial, Note::Deferred);
            }
        }
        Err(_) => {
            log::error!(
                "sockjs {}: a session panicked as it opened (in `started` or `on_open`); it is dropped",
                fut.ctx.session_tag()
            );
            fut.ctx.turn_bits |= PANICKED | OPEN_FAILED;
            drop(fut);
            return Err(OpenPanicked);
        }
    }
    // Every session's runtime is in a shared slot, even one whose turns
    // only its driver runs (a hixie-76 socket's): one layout, one size to
    // keep an eye on (`size`).
    let slot = Rc::new(RefCell::new(Slot::new(fut)));
    let listed = match in_place {
        InPlace::Socket => None,
        InPlace::Requests(turns) => Some(turns),
    };
    if drive(&driver, &slot, listed, serial).is_err() {
        // Logged by the driver. The session goes as one whose first turn
        // failed: the request is answered with an error.
        return Err(OpenPanicked);
    }
    Ok(Some(slot))
}

#[cfg(test)]
mod size {
    use super::*;
    use crate::session::Nothing;

    /// A session's runtime is shared with whoever runs its turns in place:
    /// an `Rc` (16 bytes of counts) of the slot, which glibc serves from a
    /// chunk of 304 bytes up to 296 requested (608 with actix's
    /// `ContextParts`, `ContextFut` and a boxed pump, before the runtime of
    /// our own), beside its entry in its worker's driver (16 bytes, where
    /// it had a 128-byte tokio task of its own). The session type's own
    /// fields come on top.
    #[test]
    fn a_session_slot_fits_in_304_bytes() {
        assert!(16 + std::mem::size_of::<RefCell<Slot<SessionFut<Nothing>>>>() <= 296);
    }
}

/// What a session started by a unit test is given: session `s1` of
/// endpoint `/audit`, default options.
#[cfg(test)]
fn test_setup() -> SessionSetup {
    let req = actix_web::test::TestRequest::default().to_http_request();
    let (notes, _notes_rx) = NotesTx::queue();
    SessionSetup {
        id: Arc::from("s1"),
        serial: 1,
        config: Arc::new(Config::default()),
        request: RequestInfo::from_request(&req, None, None),
        notes,
        metrics: Arc::new(EndpointMetrics::new("/audit")),
    }
}

#[cfg(test)]
mod started_panicked {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::session::LocalTurns;

    /// Panics in `started`; notes whether `stopping` or `stopped` ran.
    struct Probe(Arc<AtomicBool>);

    impl Actor for Probe {
        type Context = SessionContext<Self>;

        fn started(&mut self, _: &mut SessionContext<Self>) {
            panic!("started panics");
        }

        fn stopping(&mut self, _: &mut SessionContext<Self>) -> actix::Running {
            self.0.store(true, Ordering::SeqCst);
            actix::Running::Stop
        }

        fn stopped(&mut self, _: &mut SessionContext<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    impl Session for Probe {
        fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
    }

    /// Panics in `on_open` and in `stopped`.
    struct Twice;

    impl Actor for Twice {
        type Context = SessionContext<Self>;

        fn stopped(&mut self, _: &mut SessionContext<Self>) {
            panic!("stopped panics");
        }
    }

    impl Session for Twice {
        fn on_open(&mut self, _: &mut SessionContext<Self>) {
            panic!("on_open panics");
        }

        fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
    }

    #[test]
    fn a_panic_in_stopped_after_one_in_on_open_stays_in_the_opening_request() {
        // A review: the first turn's panic is caught and the session
        // dropped, which stops the actor; a panic in its `stopped` then
        // escaped the opening request (its connection cut rather than
        // answered 500).
        actix::System::new().block_on(async {
            let (tx, rx) = command_channel();
            let (out, _out_rx) = crate::receiver::out_queue();
            let receiver = Receiver::http(Transport::XhrPolling, crate::receiver::Framing::Xhr, out, 0);
            tx.send(Command::Attach(Box::new(receiver))).expect("queued");
            let started = catch_unwind(AssertUnwindSafe(|| {
                start_session(
                    Twice,
                    Transport::XhrPolling,
                    test_setup(),
                    (rx, None),
                    InPlace::Requests(LocalTurns::default()),
                )
                .is_err()
            }));
            assert_eq!(started.ok(), Some(true), "the opening request hears of the panic, and no more");
        });
    }

    #[test]
    fn an_actor_whose_started_panicked_is_not_stopped_as_if_it_had_started() {
        // A review: the runtime of our own counted the pump as something
        // to stop the actor for, so dropping it ran `stopping` and
        // `stopped` on an actor `started` never finished (actix's had not
        // yet taken the pump on), outside the opening request's catch.
        actix::System::new().block_on(async {
            let ran = Arc::new(AtomicBool::new(false));
            let (_tx, rx) = command_channel();
            let started = start_session(
                Probe(ran.clone()),
                Transport::XhrPolling,
                test_setup(),
                (rx, None),
                InPlace::Requests(LocalTurns::default()),
            );
            assert!(started.is_err(), "the opening request hears of the panic");
            assert!(!ran.load(Ordering::SeqCst), "stopping or stopped ran");
        });
    }
}

#[cfg(test)]
mod ended_notes {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        task::Wake,
    };

    use super::*;

    struct Plain;

    impl Actor for Plain {
        type Context = SessionContext<Self>;
    }

    impl Session for Plain {
        fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
    }

    /// Counts its wakes.
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_websocket_sessions_end_waits_for_the_managers_next_turn() {
        // Every WebSocket close woke the manager's thread with its `Ended`
        // note: 11-13 µs of that thread's CPU per session in steady churn
        // (benches/README.md, "Set-up and close"). The removal now waits
        // among the quiet notes, as `Closed` does.
        actix::System::new().block_on(async {
            let (notes, mut notes_rx) = NotesTx::queue();
            // The manager holds a sender of its own (the last one's drop
            // wakes the receiver).
            let _managers = notes.clone();
            let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
            let waker = Waker::from(wakes.clone());
            assert!(notes_rx.poll_recv(&mut Context::from_waker(&waker)).is_pending());
            let (tx, rx) = command_channel();
            let (out, _out_rx) = crate::receiver::out_queue();
            let socket = Receiver::socket(Transport::WebSocket, out, true);
            let started = start_session(
                Plain,
                Transport::WebSocket,
                SessionSetup { notes, ..test_setup() },
                (rx, Some(socket)),
                InPlace::Socket,
            );
            assert!(started.is_ok());
            tx.send(Command::ReceiverGone { aborted: true }).expect("queued");
            let mut seen = Vec::new();
            for _ in 0..1000 {
                while let Some((_, note)) = notes_rx.try_recv() {
                    seen.push(note);
                }
                if seen.iter().any(|note| matches!(note, Note::SocketEnded | Note::Ended)) {
                    break;
                }
                actix_web::rt::task::yield_now().await;
            }
            assert!(matches!(seen.last(), Some(Note::SocketEnded)), "{seen:?}");
            assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "the manager was woken: {seen:?}");
        });
    }

    #[test]
    fn the_notes_queue_keeps_its_buffer_between_bursts() {
        let (notes, mut notes_rx) = NotesTx::queue();
        for burst in 0..2 {
            (0..300).for_each(|serial| notes.note(serial, Note::Closed));
            let mut taken = 0;
            while notes_rx.try_recv().is_some() {
                taken += 1;
            }
            assert_eq!(taken, 300, "burst {burst}");
            assert!(notes_rx.buffer_capacity() >= 299, "burst {burst}: kept {}", notes_rx.buffer_capacity());
        }
    }

    #[test]
    fn an_ended_note_still_wakes_the_manager() {
        // An HTTP session's removal takes it out of the directory the
        // workers read without the manager: that one does not wait.
        let (notes, mut notes_rx) = NotesTx::queue();
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        assert!(notes_rx.poll_recv(&mut Context::from_waker(&waker)).is_pending());
        notes.note(1, Note::SocketEnded);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        notes.note(2, Note::Ended);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    }
}

#[cfg(test)]
mod never_opened {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::{
        receiver::{out_queue, Framing},
        session::LocalTurns,
    };

    /// Notes whether `on_open` and the handler of [`Ping`] ran.
    struct Probe {
        opened: Arc<AtomicBool>,
        handled: Arc<AtomicBool>,
    }

    impl Actor for Probe {
        type Context = SessionContext<Self>;
    }

    impl Session for Probe {
        fn on_open(&mut self, _: &mut SessionContext<Self>) {
            self.opened.store(true, Ordering::SeqCst);
        }

        fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
    }

    struct Ping;

    impl Message for Ping {
        type Result = ();
    }

    impl Handler<Ping> for Probe {
        type Result = ();

        fn handle(&mut self, _: Ping, _: &mut SessionContext<Self>) {
            self.handled.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_typed_message_after_the_first_turn_of_a_session_that_never_opened_is_dropped() {
        // An audit: a shutdown before an HTTP session's first receiver
        // closes it unopened, and typed messages on their way are dropped;
        // the task's next poll forgot that, and ran the handler of one
        // that came after its first turn on an actor whose `on_open` never
        // ran.
        actix::System::new().block_on(async {
            let opened = Arc::new(AtomicBool::new(false));
            let handled = Arc::new(AtomicBool::new(false));
            let (tx, rx) = command_channel();
            let (out, _out_rx) = out_queue();
            let receiver = Receiver::http(Transport::XhrPolling, Framing::Xhr, out, 0);
            // The shutdown comes before the request's `Attach`.
            tx.send(Command::Shutdown).expect("queued");
            tx.send(Command::Attach(Box::new(receiver))).expect("queued");
            let probe = Probe { opened: opened.clone(), handled: handled.clone() };
            let turn = start_session(
                probe,
                Transport::XhrPolling,
                test_setup(),
                (rx, None),
                InPlace::Requests(LocalTurns::default()),
            )
            .ok()
            .flatten()
            .expect("the session lives");
            // The task's own first poll (one thread: a yield runs the
            // task that was woken), then a typed message after it.
            for _ in 0..5 {
                tokio::task::yield_now().await;
            }
            tx.send(Command::Typed(Box::new(TypedMessage::new::<Probe, Ping>(Ping)))).expect("queued");
            for _ in 0..5 {
                tokio::task::yield_now().await;
            }
            drop(turn);
            assert!(!opened.load(Ordering::SeqCst), "on_open never ran");
            assert!(
                !handled.load(Ordering::SeqCst),
                "the handler of a typed message ran on a session that never opened"
            );
        });
    }
}
