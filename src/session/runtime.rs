//! The actor runtime a session runs in: the actor's life (started,
//! stopping, stopped), the futures spawned into it and those it waits on,
//! its mailbox, and the poll that drives them ([`poll_actor`]), with the
//! semantics actix gives an actor in its own `Context`.
//!
//! A session does not use actix's `ContextParts` and `ContextFut` for this:
//! they keep their lists inline (some 300 bytes) and a mailbox from the
//! start (a channel of 136 bytes in three allocations), which an idle
//! session does not use. Here both take one pointer, beside a byte of
//! flags, until something is spawned ([`Parts::spawn`]) or someone asks
//! for the actor's address ([`Parts::address`]), and the session's
//! command pump is the runtime's own (the `pump` of [`poll_actor`]) rather
//! than a boxed spawned future. The floor a session is measured against
//! holds actix's parts and a mailbox (benches/README.md, "Idle memory with
//! a runtime of our own").

use std::{
    cell::{Cell, OnceCell},
    panic::{catch_unwind, resume_unwind, AssertUnwindSafe},
    pin::Pin,
    task::{Context, Poll},
};

use actix::{
    dev::Mailbox, fut::ActorFuture, Actor, ActorContext, ActorState, Addr, AsyncContext, Running, SpawnHandle,
};

/// A future spawned into, or waited on by, an actor of type `A`.
type Boxed<A> = Pin<Box<dyn ActorFuture<A, Output = ()>>>;

/// [`Parts::flags`]: `started` has run.
const STARTED: u8 = 1;
/// [`Parts::flags`]: the actor was asked to stop; its `stopping` decides.
const STOPPING: u8 = 2;
/// [`Parts::flags`]: the actor has stopped, or was terminated.
const STOPPED: u8 = 4;
/// [`Parts::flags`]: `started` returned (it did not panic).
const BEGUN: u8 = 8;

/// The runtime's state that its context holds: what `spawn`, `wait`,
/// `stop` and `address` change.
pub(super) struct Parts<A: Actor>
where
    A::Context: AsyncContext<A>,
{
    /// [`STARTED`], [`STOPPING`], [`STOPPED`], [`BEGUN`]: running when
    /// neither `STOPPING` nor `STOPPED`.
    flags: u8,
    /// Once something was spawned or waited on, or the address asked for:
    /// one pointer until then, for the runtime and its context (16 bytes
    /// with the flags) in an idle session's slot.
    extras: OnceCell<Box<Extras<A>>>,
}

/// What an idle session's runtime does without.
struct Extras<A: Actor>
where
    A::Context: AsyncContext<A>,
{
    futures: Futures<A>,
    /// Once someone has asked for the actor's address (through `&self`).
    mail: OnceCell<Mail<A>>,
}

/// Spawned futures and those the actor waits on.
struct Futures<A: Actor> {
    /// The handle given last.
    last: SpawnHandle,
    /// In the order spawned. An entry's future is `None` while it is
    /// polled (taken out, so that it can be given the context) and once
    /// it has finished or was cancelled; such entries go at the end of
    /// each poll. A cancelled entry's handle is [`gone`].
    spawned: Vec<(SpawnHandle, Option<Boxed<A>>)>,
    /// The newest last: it runs first, and nothing else meanwhile.
    waits: Vec<Boxed<A>>,
}

/// The actor's mailbox, made when its address is first asked for.
struct Mail<A: Actor>
where
    A::Context: AsyncContext<A>,
{
    /// Makes an address (a sender the channel counts).
    address: Box<dyn Fn() -> Addr<A>>,
    /// The receiving end; out while the runtime polls it (a handler may
    /// ask for the address meanwhile).
    mailbox: Cell<Option<Mailbox<A>>>,
    /// Made since the runtime last polled it: it holds no waker yet.
    fresh: Cell<bool>,
}

/// The handle of no future: [`SpawnHandle::default`] comes before the
/// first one given.
fn gone() -> SpawnHandle {
    SpawnHandle::default()
}

impl<A: Actor> Parts<A>
where
    A::Context: AsyncContext<A>,
{
    /// A runtime whose actor has not started.
    pub(super) fn new() -> Self {
        Self { flags: 0, extras: OnceCell::new() }
    }

    /// As actix's: running until asked to stop.
    pub(super) fn state(&self) -> ActorState {
        if self.flags & STOPPED != 0 {
            ActorState::Stopped
        } else if self.flags & STOPPING != 0 {
            ActorState::Stopping
        } else {
            ActorState::Running
        }
    }

    fn stopping(&self) -> bool {
        self.flags & (STOPPING | STOPPED) != 0
    }

    /// Asks a running actor to stop: its `stopping` runs at the end of the
    /// runtime's poll, and may keep it running.
    pub(super) fn stop(&mut self) {
        if !self.stopping() {
            self.flags |= STOPPING;
        }
    }

    /// Stops the actor at the end of the runtime's poll, without asking
    /// its `stopping`.
    pub(super) fn terminate(&mut self) {
        self.flags = (self.flags & (STARTED | BEGUN)) | STOPPED;
    }

    /// The actor waits on a future, or is stopping: the mailbox and the
    /// spawned futures wait.
    pub(super) fn waiting(&self) -> bool {
        self.stopping() || self.has_waits()
    }

    fn has_waits(&self) -> bool {
        self.extras.get().is_some_and(|extras| !extras.futures.waits.is_empty())
    }

    fn extras(&self) -> &Extras<A> {
        self.extras.get_or_init(|| {
            Box::new(Extras {
                futures: Futures { last: SpawnHandle::default(), spawned: Vec::new(), waits: Vec::new() },
                mail: OnceCell::new(),
            })
        })
    }

    fn futures(&mut self) -> &mut Futures<A> {
        self.extras();
        &mut self.extras.get_mut().expect("made above").futures // ok: `extras()` just filled the cell; nothing empties it
    }

    fn futures_made(&mut self) -> Option<&mut Futures<A>> {
        self.extras.get_mut().map(|extras| &mut extras.futures)
    }

    /// Runs `fut` beside the actor's other work until it finishes or
    /// [`cancel_future`](Self::cancel_future) is called with the handle.
    pub(super) fn spawn<F>(&mut self, fut: F) -> SpawnHandle
    where
        F: ActorFuture<A, Output = ()> + 'static,
    {
        let futures = self.futures();
        futures.last = futures.last.next();
        futures.spawned.push((futures.last, Some(Box::pin(fut))));
        futures.last
    }

    /// Runs `fut` before anything else of the actor's: its mailbox and
    /// spawned futures wait until it finishes.
    pub(super) fn wait<F>(&mut self, fut: F)
    where
        F: ActorFuture<A, Output = ()> + 'static,
    {
        self.futures().waits.push(Box::pin(fut));
    }

    /// Drops the spawned future `handle` (at the end of its poll, if it is
    /// the one being polled). `true`, as actix's answers, whether or not
    /// the future was still there.
    pub(super) fn cancel_future(&mut self, handle: SpawnHandle) -> bool {
        let entry = self.futures_made().and_then(|futures| {
            futures.spawned.iter_mut().find(|entry| entry.0 == handle && handle != gone())
        });
        if let Some(entry) = entry {
            entry.0 = gone();
            drop(entry.1.take());
        }
        true
    }

    /// The actor's address; the first call makes its mailbox.
    pub(super) fn address(&self) -> Addr<A> {
        let mail = self.extras().mail.get_or_init(|| {
            let mailbox = Mailbox::<A>::default();
            let producer = mailbox.sender_producer();
            Mail {
                address: Box::new(move || Addr::new(producer.sender())),
                mailbox: Cell::new(Some(mailbox)),
                fresh: Cell::new(true),
            }
        });
        (mail.address)()
    }

    fn mail(&self) -> Option<&Mail<A>> {
        self.extras.get().and_then(|extras| extras.mail.get())
    }

    /// The mailbox, taken out to be polled (no longer fresh).
    fn take_mailbox(&self) -> Option<Mailbox<A>> {
        let mail = self.mail()?;
        mail.fresh.set(false);
        mail.mailbox.take()
    }

    fn put_mailbox(&self, mailbox: Mailbox<A>) {
        if let Some(mail) = self.mail() {
            mail.mailbox.set(Some(mailbox));
        }
    }

    /// The address was asked for since the runtime last polled the mailbox.
    fn mailbox_fresh(&self) -> bool {
        self.mail().is_some_and(|mail| mail.fresh.get())
    }

    /// Someone holds an address (the mailbox is not out to be polled).
    fn mailbox_connected(&self) -> bool {
        self.mail().is_some_and(|mail| {
            let mailbox = mail.mailbox.take();
            let connected = mailbox.as_ref().is_some_and(Mailbox::connected);
            mail.mailbox.set(mailbox);
            connected
        })
    }

    /// The spawned future at `at`, taken out to be polled (`None` inside
    /// for one that has finished or was cancelled); `None` past the end.
    fn take_spawned(&mut self, at: usize) -> Option<(SpawnHandle, Option<Boxed<A>>)> {
        let entry = self.futures_made()?.spawned.get_mut(at)?;
        Some((entry.0, entry.1.take()))
    }

    /// Puts back the spawned future `at`, polled, unless it finished or
    /// was cancelled meanwhile; then moves it to the end if it made the
    /// actor wait (so that it does not keep the others from their turn).
    /// Whether the actor now waits.
    fn put_back(&mut self, at: usize, handle: SpawnHandle, fut: Boxed<A>, done: bool) -> bool {
        let futures = self.futures();
        let entry = &mut futures.spawned[at];
        let finished = if !done && entry.0 == handle {
            entry.1 = Some(fut);
            None
        } else {
            entry.0 = gone();
            Some(fut)
        };
        let waits = !futures.waits.is_empty();
        if waits && finished.is_none() && at + 1 < futures.spawned.len() {
            let entry = futures.spawned.remove(at);
            futures.spawned.push(entry);
        }
        // Dropped outside the lists' borrow, for clarity: dropping a
        // future runs no code of the actor's.
        drop(finished);
        waits
    }

    /// Lets go of the entries of finished and cancelled futures.
    fn sweep(&mut self) {
        if let Some(futures) = self.futures_made() {
            futures.spawned.retain(|entry| entry.1.is_some());
        }
    }

    fn has_spawned(&self) -> bool {
        self.extras.get().is_some_and(|extras| !extras.futures.spawned.is_empty())
    }
}

/// What a context gives its runtime.
pub(super) trait HasParts<A>: AsyncContext<A> + Sized
where
    A: Actor<Context = Self>,
{
    fn parts(&mut self) -> &mut Parts<A>;
}

/// Whether the actor has anything left to run for, as actix's runtime
/// asks before it asks the actor's `stopping`: its pump, a spawned
/// future, a future it waits on, or a sender to its mailbox. Not an actor
/// whose `started` panicked: nothing of it is to run again (actix's
/// runtime had not yet taken on what `started` was given then).
pub(super) fn alive<A, P>(ctx: &mut A::Context, pump: &Option<P>) -> bool
where
    A: Actor,
    A::Context: HasParts<A>,
{
    let parts = ctx.parts();
    if parts.flags & STOPPED != 0 || parts.flags & (STARTED | BEGUN) == STARTED {
        return false;
    }
    parts.flags & STARTED == 0
        || pump.is_some()
        || parts.has_spawned()
        || parts.has_waits()
        || parts.mailbox_fresh()
        || parts.mailbox_connected()
}

/// Polls the actor's runtime, in actix's order: `started` once; then the
/// future it waits on (the newest; nothing else runs until it finishes);
/// its mailbox; its `pump`; its spawned futures, in the order spawned; and
/// again while any of them made it wait or asked for its address; then, if
/// it was asked to stop or has nothing left to run for, its `stopping`,
/// and `stopped` if that agrees. `Ready` once it has stopped.
pub(super) fn poll_actor<A, P>(
    act: &mut A,
    ctx: &mut A::Context,
    pump: &mut Option<P>,
    cx: &mut Context<'_>,
) -> Poll<()>
where
    A: Actor,
    A::Context: HasParts<A>,
    P: ActorFuture<A, Output = ()> + Unpin,
{
    if ctx.parts().flags & STARTED == 0 {
        ctx.parts().flags |= STARTED;
        act.started(ctx);
        ctx.parts().flags |= BEGUN;
    }
    // The pump's turn comes before the spawned futures', except right
    // after it made the actor wait: then theirs comes first, so that a
    // pump with commands that each make the actor wait does not keep them
    // from running.
    let mut pump_first = true;
    // `stopping` kept the actor running with something to run.
    let mut kept = false;
    loop {
        while !ctx.parts().stopping() {
            let Some(mut fut) = ctx.parts().futures_made().and_then(|futures| futures.waits.pop()) else {
                break;
            };
            // One that is still pending once the actor has stopped running
            // is done with, as in actix.
            if fut.as_mut().poll(act, ctx, cx).is_ready() || !ctx.state().alive() {
                continue;
            }
            // Still the newest: a wait it started runs once it is done, as
            // in actix (the newest of those first).
            ctx.parts().futures().waits.push(fut);
            return Poll::Pending;
        }
        if let Some(mut mailbox) = ctx.parts().take_mailbox() {
            // Put back even if a handler panics: the session is dropped as
            // the panic unwinds, and whoever holds an address still counts
            // then (`alive`), as with actix.
            let polled = catch_unwind(AssertUnwindSafe(|| mailbox.poll(act, ctx, cx)));
            ctx.parts().put_mailbox(mailbox);
            if let Err(panic) = polled {
                resume_unwind(panic);
            }
        }
        if ctx.parts().waiting() && !ctx.parts().stopping() {
            continue;
        }
        let mut pumped = false;
        if pump_first && !ctx.parts().stopping() {
            pumped = true;
            if let Some(fut) = pump.as_mut() {
                if Pin::new(fut).poll(act, ctx, cx).is_ready() {
                    *pump = None;
                }
            }
            if ctx.parts().waiting() && !ctx.parts().stopping() {
                pump_first = false;
                continue;
            }
        }
        let mut at = 0;
        let mut waits = false;
        while !ctx.parts().stopping() {
            let Some((handle, fut)) = ctx.parts().take_spawned(at) else { break };
            let Some(mut fut) = fut else {
                at += 1;
                continue;
            };
            let done = fut.as_mut().poll(act, ctx, cx).is_ready();
            waits = ctx.parts().put_back(at, handle, fut, done);
            if waits {
                break;
            }
            at += 1;
        }
        ctx.parts().sweep();
        pump_first = true;
        if (waits || !pumped) && !ctx.parts().stopping() {
            continue;
        }
        // Someone asked for the address: its mailbox is polled (and holds
        // the session's waker) before its poll ends.
        if ctx.parts().mailbox_fresh() {
            continue;
        }
        let flags = ctx.parts().flags;
        if flags & STOPPED != 0 {
            act.stopped(ctx);
            return Poll::Ready(());
        }
        if flags & STOPPING != 0 {
            if act.stopping(ctx) == Running::Stop {
                ctx.parts().flags = STARTED | BEGUN | STOPPED;
                act.stopped(ctx);
                return Poll::Ready(());
            }
            ctx.parts().flags &= !STOPPING;
            continue;
        }
        if !alive::<A, P>(ctx, pump) {
            if act.stopping(ctx) == Running::Stop {
                ctx.parts().flags = STARTED | BEGUN | STOPPED;
                act.stopped(ctx);
                return Poll::Ready(());
            }
            // Kept running: once more if `stopping` gave it something to
            // run (a spawned future, an address whose mailbox must hold the
            // task's waker), so that it runs; actix left that for a wake-up
            // that might not come. Only once (a `stopping` that keeps it
            // running with a future that is done at once would loop), but
            // always for a mailbox made since it was last polled (made
            // once, so that cannot loop).
            if ctx.parts().mailbox_fresh() || (!kept && alive::<A, P>(ctx, pump)) {
                kept = true;
                continue;
            }
        }
        return Poll::Pending;
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, collections::VecDeque, future::Future, rc::Rc};

    use actix::{
        dev::{Envelope, ToEnvelope},
        fut::{ready, wrap_future},
        Handler, Message,
    };
    use tokio::{sync::oneshot, task::yield_now};

    use super::*;

    type Log = Rc<RefCell<Vec<String>>>;

    /// An actor that writes down what runs, in a context with the runtime.
    struct Probe {
        log: Log,
        /// Answers `Running::Continue` from `stopping` this many times.
        keep_running: u8,
        /// Where the pump's `"address"` puts the actor's address.
        address: Option<Rc<RefCell<Option<Addr<Probe>>>>>,
        /// Spawned from `started`: polled this many times, then done.
        spawned_polls: Option<u8>,
        /// Spawn a [`Forever`] from `started`, whose handle goes here.
        forever: Option<Option<SpawnHandle>>,
        /// The first `stopping` that keeps it running spawns a future
        /// done at its first poll, rather than asking for the address.
        spawn_first: bool,
    }

    impl Probe {
        fn new(log: &Log) -> Self {
            Self {
                log: log.clone(),
                keep_running: 0,
                address: None,
                spawned_polls: None,
                forever: None,
                spawn_first: false,
            }
        }
    }

    struct Ctx {
        parts: Parts<Probe>,
    }

    impl ActorContext for Ctx {
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

    impl AsyncContext<Probe> for Ctx {
        fn spawn<F: ActorFuture<Probe, Output = ()> + 'static>(&mut self, fut: F) -> SpawnHandle {
            self.parts.spawn(fut)
        }

        fn wait<F: ActorFuture<Probe, Output = ()> + 'static>(&mut self, fut: F) {
            self.parts.wait(fut);
        }

        fn waiting(&self) -> bool {
            self.parts.waiting()
        }

        fn cancel_future(&mut self, handle: SpawnHandle) -> bool {
            self.parts.cancel_future(handle)
        }

        fn address(&self) -> Addr<Probe> {
            self.parts.address()
        }
    }

    impl HasParts<Probe> for Ctx {
        fn parts(&mut self) -> &mut Parts<Probe> {
            &mut self.parts
        }
    }

    impl<M> ToEnvelope<Probe, M> for Ctx
    where
        Probe: Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        fn pack(msg: M, tx: Option<actix::dev::OneshotSender<M::Result>>) -> Envelope<Probe> {
            Envelope::new(msg, tx)
        }
    }

    impl Actor for Probe {
        type Context = Ctx;

        fn started(&mut self, ctx: &mut Ctx) {
            self.log.borrow_mut().push("started".into());
            if let Some(handle) = self.forever.as_mut() {
                *handle = Some(ctx.spawn(Forever(self.log.clone())));
            }
            if let Some(polls) = self.spawned_polls {
                ctx.spawn(Polls(polls));
            }
        }

        fn stopping(&mut self, ctx: &mut Ctx) -> Running {
            self.log.borrow_mut().push("stopping".into());
            if self.keep_running > 0 {
                self.keep_running -= 1;
                if std::mem::take(&mut self.spawn_first) {
                    ctx.spawn(Polls(1));
                } else if let Some(address) =
                    self.address.as_ref().filter(|address| address.borrow().is_none())
                {
                    *address.borrow_mut() = Some(ctx.address());
                }
                return Running::Continue;
            }
            Running::Stop
        }

        fn stopped(&mut self, _: &mut Ctx) {
            self.log.borrow_mut().push("stopped".into());
        }
    }

    /// Writes down each poll; done after this many.
    struct Polls(u8);

    impl ActorFuture<Probe> for Polls {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, act: &mut Probe, _: &mut Ctx, cx: &mut Context<'_>) -> Poll<()> {
            act.log.borrow_mut().push("spawned".into());
            self.0 -= 1;
            if self.0 == 0 {
                return Poll::Ready(());
            }
            // Polled again at the session's next poll.
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// Never done: writes down each poll and asks for the next; writes
    /// down its drop.
    struct Forever(Log);

    impl ActorFuture<Probe> for Forever {
        type Output = ();

        fn poll(self: Pin<&mut Self>, _: &mut Probe, _: &mut Ctx, cx: &mut Context<'_>) -> Poll<()> {
            self.0.borrow_mut().push("forever".into());
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    impl Drop for Forever {
        fn drop(&mut self) {
            self.0.borrow_mut().push("dropped".into());
        }
    }

    /// A wait that starts another on its first poll and is done on its
    /// second.
    struct Nests(bool);

    impl ActorFuture<Probe> for Nests {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, act: &mut Probe, ctx: &mut Ctx, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                act.log.borrow_mut().push("outer done".into());
                return Poll::Ready(());
            }
            self.0 = true;
            act.log.borrow_mut().push("outer".into());
            ctx.wait(ready(()).map(|_, act: &mut Probe, _| act.log.borrow_mut().push("inner".into())));
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// A wait that stops the actor and is never done.
    struct StopsAndStays;

    impl ActorFuture<Probe> for StopsAndStays {
        type Output = ();

        fn poll(self: Pin<&mut Self>, _: &mut Probe, ctx: &mut Ctx, _: &mut Context<'_>) -> Poll<()> {
            ctx.stop();
            Poll::Pending
        }
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Say(&'static str);

    impl Handler<Say> for Probe {
        type Result = ();

        fn handle(&mut self, Say(what): Say, ctx: &mut Ctx) {
            self.log.borrow_mut().push(what.into());
            assert_ne!(what, "panic", "a handler that panics");
            if what == "stop" {
                ctx.stop();
            }
        }
    }

    /// A session's pump, in small: takes its commands in turn, none while
    /// the actor waits. `"wait"` makes the actor wait on a future that is
    /// ready at once; `"gate"` on the next of `gates`.
    struct Pump {
        commands: VecDeque<&'static str>,
        gates: VecDeque<oneshot::Receiver<()>>,
    }

    impl ActorFuture<Probe> for Pump {
        type Output = ();

        fn poll(self: Pin<&mut Self>, act: &mut Probe, ctx: &mut Ctx, _: &mut Context<'_>) -> Poll<()> {
            let this = self.get_mut();
            while !ctx.waiting() {
                let Some(command) = this.commands.pop_front() else { return Poll::Ready(()) };
                act.log.borrow_mut().push(command.into());
                match command {
                    "wait" => ctx.wait(ready(())),
                    "nest" => ctx.wait(Nests(false)),
                    "stop in a wait" => ctx.wait(StopsAndStays),
                    "cancel" => {
                        let handle = act.forever.flatten().expect("spawned");
                        assert!(ctx.cancel_future(handle));
                        // As actix's: `true` for one no longer there too.
                        assert!(ctx.cancel_future(handle));
                    }
                    // Asked for after the mailbox's turn in this poll.
                    "address" => *act.address.as_ref().expect("a place").borrow_mut() = Some(ctx.address()),
                    "gate" => {
                        let gate = this.gates.pop_front().expect("a gate");
                        ctx.wait(wrap_future::<_, Probe>(gate).map(|_, act: &mut Probe, _| {
                            act.log.borrow_mut().push("opened".into());
                        }));
                    }
                    _ => {}
                }
            }
            Poll::Pending
        }
    }

    use actix::fut::ActorFutureExt;

    /// Drives a probe as a session's driver drives a session.
    struct Run {
        act: Probe,
        ctx: Ctx,
        pump: Option<Pump>,
    }

    impl Future for Run {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let this = self.get_mut();
            poll_actor(&mut this.act, &mut this.ctx, &mut this.pump, cx)
        }
    }

    fn run(
        act: Probe,
        commands: &[&'static str],
        gates: Vec<oneshot::Receiver<()>>,
    ) -> tokio::task::JoinHandle<()> {
        let pump = Pump { commands: commands.iter().copied().collect(), gates: gates.into() };
        actix_web::rt::spawn(Run { act, ctx: Ctx { parts: Parts::new() }, pump: Some(pump) })
    }

    /// `fut`'s output; a runtime that never wakes fails rather than hangs.
    async fn within<T>(fut: impl Future<Output = T>) -> T {
        tokio::time::timeout(std::time::Duration::from_secs(10), fut).await.expect("done within 10 s")
    }

    fn logged(log: &Log) -> Vec<String> {
        log.borrow().clone()
    }

    #[test]
    fn an_address_asked_for_in_a_poll_gets_its_messages_and_the_actor_stops_once_no_one_holds_one() {
        actix::System::new().block_on(async {
            let log = Log::default();
            let address = Rc::new(RefCell::new(None));
            let probe = Probe { address: Some(address.clone()), ..Probe::new(&log) };
            let task = run(probe, &["address"], Vec::new());
            while address.borrow().is_none() {
                yield_now().await;
            }
            let addr = address.borrow_mut().take().expect("an address");
            // A mailbox the runtime did not poll before its poll ended
            // would not wake it: the guard turns that hang into a failure.
            let said = async {
                addr.send(Say("hello")).await.expect("handled");
                addr.send(Say("again")).await.expect("handled");
            };
            within(said).await;
            assert_eq!(logged(&log), ["started", "address", "hello", "again"]);
            drop(addr);
            within(task).await.expect("the actor stopped");
            assert_eq!(logged(&log), ["started", "address", "hello", "again", "stopping", "stopped"]);
        });
    }

    #[test]
    fn nothing_else_runs_while_the_actor_waits() {
        actix::System::new().block_on(async {
            let log = Log::default();
            let (open, gate) = oneshot::channel();
            let probe = Probe { spawned_polls: Some(1), ..Probe::new(&log) };
            let task = run(probe, &["gate", "after"], vec![gate]);
            while !log.borrow().iter().any(|line| line == "gate") {
                yield_now().await;
            }
            for _ in 0..5 {
                yield_now().await;
            }
            // Neither the pump's next command nor the spawned future ran.
            assert_eq!(logged(&log), ["started", "gate"]);
            open.send(()).expect("the gate waits");
            within(task).await.expect("the actor stopped");
            assert_eq!(
                logged(&log),
                ["started", "gate", "opened", "after", "spawned", "stopping", "stopped"]
            );
        });
    }

    #[test]
    fn a_pump_whose_commands_each_make_the_actor_wait_leaves_spawned_futures_their_turn() {
        actix::System::new().block_on(async {
            let log = Log::default();
            let probe = Probe { spawned_polls: Some(3), ..Probe::new(&log) };
            within(run(probe, &["wait", "wait", "wait", "wait"], Vec::new())).await.expect("stopped");
            assert_eq!(
                logged(&log),
                [
                    "started", "wait", "spawned", "wait", "spawned", "wait", "spawned", "wait", "stopping",
                    "stopped"
                ]
            );
        });
    }

    #[test]
    fn a_future_cancelled_while_it_is_polled_is_dropped_after_that_poll_and_not_polled_again() {
        struct Cancels {
            handle: Rc<Cell<Option<SpawnHandle>>>,
            log: Log,
        }
        impl Drop for Cancels {
            fn drop(&mut self) {
                self.log.borrow_mut().push("dropped".into());
            }
        }
        impl ActorFuture<Probe> for Cancels {
            type Output = ();

            fn poll(self: Pin<&mut Self>, _: &mut Probe, ctx: &mut Ctx, _: &mut Context<'_>) -> Poll<()> {
                self.log.borrow_mut().push("polled".into());
                let handle = self.handle.get().expect("spawned");
                assert!(ctx.cancel_future(handle), "it is there");
                self.log.borrow_mut().push("cancelled".into());
                Poll::Pending
            }
        }
        actix::System::new().block_on(async {
            let log = Log::default();
            let handle = Rc::new(Cell::new(None));
            let mut ctx = Ctx { parts: Parts::new() };
            let spawned = ctx.spawn(Cancels { handle: handle.clone(), log: log.clone() });
            handle.set(Some(spawned));
            let run = Run { act: Probe::new(&log), ctx, pump: None };
            within(actix_web::rt::spawn(run)).await.expect("stopped");
            assert_eq!(logged(&log), ["started", "polled", "cancelled", "dropped", "stopping", "stopped"]);
        });
    }

    #[test]
    fn stopping_may_keep_the_actor_running_and_a_terminated_one_is_not_asked() {
        actix::System::new().block_on(async {
            let log = Log::default();
            let address = Rc::new(RefCell::new(None));
            let probe = Probe { address: Some(address.clone()), keep_running: 1, ..Probe::new(&log) };
            let task = run(probe, &["address"], Vec::new());
            while address.borrow().is_none() {
                yield_now().await;
            }
            let addr = address.borrow_mut().take().expect("an address");
            let said = async {
                addr.send(Say("stop")).await.expect("handled");
                // `stopping` said Continue: it still runs.
                addr.send(Say("still")).await.expect("handled");
                addr.send(Say("stop")).await.expect("handled");
                task.await.expect("the actor stopped");
            };
            within(said).await;
            assert_eq!(
                logged(&log),
                ["started", "address", "stop", "stopping", "still", "stop", "stopping", "stopped"]
            );

            // Kept running with nothing to run but an address it asked for
            // in `stopping` (the first; or the second, after a first that
            // kept it running with a future done at once, in the same
            // poll): its mailbox holds the session's waker.
            for spawn_first in [false, true] {
                let log = Log::default();
                let address = Rc::new(RefCell::new(None));
                let keep_running = if spawn_first { 2 } else { 1 };
                let probe =
                    Probe { address: Some(address.clone()), keep_running, spawn_first, ..Probe::new(&log) };
                let task = run(probe, &[], Vec::new());
                while address.borrow().is_none() {
                    yield_now().await;
                }
                let addr = address.borrow_mut().take().expect("an address");
                within(addr.send(Say("hello"))).await.expect("handled");
                drop(addr);
                within(task).await.expect("the actor stopped");
                let spawned: &[&str] = if spawn_first { &["spawned", "stopping"] } else { &[] };
                let expected =
                    [&["started", "stopping"][..], spawned, &["hello", "stopping", "stopped"]].concat();
                assert_eq!(logged(&log), expected);
            }

            let log = Log::default();
            let mut ctx = Ctx { parts: Parts::new() };
            ctx.terminate();
            let run = Run { act: Probe::new(&log), ctx, pump: None };
            within(actix_web::rt::spawn(run)).await.expect("stopped");
            assert_eq!(logged(&log), ["started", "stopped"]);
        });
    }

    #[test]
    fn a_future_cancelled_from_elsewhere_is_dropped_at_once_and_not_polled_again() {
        actix::System::new().block_on(async {
            let log = Log::default();
            let (open, gate) = oneshot::channel();
            let probe = Probe { forever: Some(None), ..Probe::new(&log) };
            // "wait" lets the spawned future run once before the pump goes on.
            let task = run(probe, &["wait", "gate", "cancel"], vec![gate]);
            while !log.borrow().iter().any(|line| line == "gate") {
                yield_now().await;
            }
            open.send(()).expect("the gate waits");
            within(task).await.expect("the actor stopped");
            assert_eq!(
                logged(&log),
                ["started", "wait", "forever", "gate", "opened", "cancel", "dropped", "stopping", "stopped"]
            );
        });
    }

    #[test]
    fn a_wait_started_by_a_wait_runs_once_that_one_is_done() {
        actix::System::new().block_on(async {
            let log = Log::default();
            within(run(Probe::new(&log), &["nest"], Vec::new())).await.expect("stopped");
            assert_eq!(
                logged(&log),
                ["started", "nest", "outer", "outer done", "inner", "stopping", "stopped"]
            );
        });
    }

    #[test]
    fn a_wait_still_pending_when_the_actor_stops_is_done_with() {
        actix::System::new().block_on(async {
            let log = Log::default();
            within(run(Probe::new(&log), &["stop in a wait", "never"], Vec::new())).await.expect("stopped");
            assert_eq!(logged(&log), ["started", "stop in a wait", "stopping", "stopped"]);
        });
    }

    #[test]
    fn the_mailbox_stays_through_a_handler_that_panics() {
        // A review: the mailbox was out of its place while polled, and a
        // handler's panic dropped it as it unwound; the session, dropped
        // then, no longer counted whoever held an address.
        actix::System::new().block_on(async {
            let log = Log::default();
            let mut run = Run { act: Probe::new(&log), ctx: Ctx { parts: Parts::new() }, pump: None };
            let addr = run.ctx.address();
            addr.do_send(Say("panic"));
            let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Pin::new(&mut run).poll(&mut Context::from_waker(std::task::Waker::noop()))
            }));
            assert!(polled.is_err(), "the handler panicked");
            assert!(alive::<Probe, Pump>(&mut run.ctx, &run.pump), "whoever holds an address still counts");
            drop(addr);
            assert!(!alive::<Probe, Pump>(&mut run.ctx, &run.pump), "and no one else");
        });
    }
}
