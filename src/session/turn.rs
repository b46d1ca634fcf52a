//! [`Turn`]: a session's runtime, shared by its worker's [`driver`], which
//! polls it when it is woken, and the requests that run its turns in place
//! after handing it something: its WebSocket, after the client's messages;
//! on the worker the session lives on, an HTTP session's polls and sends
//! ([`LocalTurns`]).

use std::{
    cell::RefCell,
    future::Future,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
};

use super::driver;
use crate::util::SerialMap;

/// A session's actor runtime, shared between its worker's [`driver`] and
/// the requests that run a turn of it in place ([`Turn::turn`]) right
/// after they have handed the session something: a WebSocket what the
/// client sent, an HTTP request its messages or its receiver.
///
/// An echo then costs one poll of the connection's task, as in a plain
/// actix-web-actors WebSocket, where it cost three (the socket's read, the
/// session's turn, the socket's write: benches/README.md). The turn runs
/// with the session's own waker, so that whatever the session waits for
/// (its commands, its mailbox, its timers) still has the driver poll it:
/// actix-web does not poll a body while its client does not read, and the
/// session must go on without it (a broadcast past its queue limit closes
/// it, its timers fire).
pub(crate) trait Turn {
    /// Runs one turn of the session now, as its driver would: `Some(true)`
    /// once the session is done, `None` when the turn cannot run (it is
    /// mid-turn, which it cannot be on one thread). A
    /// panic in the turn drops the session and goes on unwinding: see
    /// [`run`], which the requests call.
    ///
    /// With the turn, what the messages handed over in place and still
    /// unhandled weigh ([`Turn::inbox_weight`]).
    fn turn(&self) -> Option<(bool, usize)>;

    /// Has the driver poll the session.
    fn wake(&self);

    /// Lets `fill` add the client's messages to the session's inbox, for
    /// its next turn, which the caller then runs ([`run`]): no lock and no
    /// allocation, where the command queue took both, and the inbox keeps
    /// its buffer from one message to the next (see
    /// [`Turn::release_inbox`]). Only a WebSocket does, as every message of
    /// its client comes through it; an HTTP session's come from any
    /// worker, and one queue keeps them in order. `false`, with `fill` not
    /// run, when the session is gone (or mid-turn, which it cannot be on
    /// one thread).
    fn fill_inbox(&self, fill: &mut dyn FnMut(&mut Vec<String>)) -> bool;

    /// Lets go of the inbox's buffer if it holds no message: the socket
    /// calls it when it pings, so that a session that has gone quiet holds
    /// none (a session keeps it between turns while its client talks).
    fn release_inbox(&self);

    /// What the messages handed over and not yet handled weigh
    /// ([`inbound_weight`]). They wait past the turn that follows when the
    /// actor waits on a future of its own (actix then polls nothing else):
    /// the socket stops reading while
    /// they weigh more than [`INBOUND_ROOM`], and the session nudges its
    /// receiver once it has handled them.
    fn inbox_weight(&self) -> usize;
}

/// How much of the client's messages a session may have waiting before
/// its WebSocket stops reading from the socket, and a send request waits
/// to be answered, until the session has handled them: the client is then
/// held back instead of growing the command queue or the inbox. A larger
/// message still goes in alone.
pub(crate) const INBOUND_ROOM: usize = 64 * 1024;

/// What client messages weigh against [`INBOUND_ROOM`]: their bytes and a
/// round 64 for the allocations each one costs.
pub(crate) fn inbound_weight(messages: &[String]) -> usize {
    messages.iter().map(|m| m.len() + 64).sum()
}

/// What a [`Slot`] runs: the session's actor runtime, with the inbox of
/// messages its socket hands over in place.
pub(super) trait Runtime: Future<Output = ()> + Unpin {
    /// The messages waiting for the next turn.
    fn inbox(&mut self) -> &mut Vec<String>;

    /// Tells the runtime whether its next poll is a turn run in place (by
    /// a request, with the session's own waker) rather than its driver's
    /// poll.
    fn in_place(&mut self, in_place: bool);

    /// Its poll panicked, and it is about to be dropped as the panic
    /// unwinds: it logs the panic and counts its end as one.
    fn panicked(&mut self);

    /// Its number: which [`driver`] keeps it, and where (see
    /// [`Runtime::set_task`]). Its waker is that number.
    fn task(&self) -> u32;

    /// Notes its number, once it is in its [`driver`].
    fn set_task(&mut self, number: u32);
}

/// The session's runtime, until it is done.
pub(super) struct Slot<F> {
    fut: Option<F>,
}

impl<F: Runtime> Slot<F> {
    /// A slot for `fut`, not yet in a driver.
    pub(super) fn new(fut: F) -> Self {
        Self { fut: Some(fut) }
    }

    /// Polls the session with its own waker, its number: for its driver,
    /// or in place (`in_place`); drops it once it is done, outside the
    /// borrow of the slot (the actor's drop may run anything; a session
    /// whose poll panicked is dropped inside it). `None` when the slot is
    /// mid-turn (it cannot be, on one thread).
    ///
    /// A session done in place (or whose turn panicked there) wakes its
    /// driver, which then lets go of it.
    fn poll(slot: &RefCell<Self>, in_place: bool) -> Option<Poll<()>> {
        let mut this = slot.try_borrow_mut().ok()?;
        let Some(session) = this.fut.as_mut() else { return Some(Poll::Ready(())) };
        let waker = driver::waker(session.task());
        session.in_place(in_place);
        let wake = in_place.then_some(&waker);
        let mut guard = Unwinding { fut: &mut this.fut, armed: true, wake };
        let session = guard.fut.as_mut()?;
        let polled = Pin::new(session).poll(&mut Context::from_waker(&waker));
        guard.armed = false;
        if polled.is_pending() {
            return Some(Poll::Pending);
        }
        let done = guard.fut.take();
        drop(guard);
        drop(this);
        // The driver is woken first, as the drop may panic.
        if in_place {
            waker.wake_by_ref();
        }
        drop(done);
        Some(Poll::Ready(()))
    }
}

/// Drops a session whose poll did not return (it panicked, in the user's
/// handler say), as tokio drops a task that panics: a turn run in place
/// panics in a connection's task, and the driver must not poll it again
/// (a turn run in place wakes the driver, with `wake`, which lets go of
/// it).
struct Unwinding<'a, F: Runtime> {
    fut: &'a mut Option<F>,
    /// Set until the poll returns.
    armed: bool,
    wake: Option<&'a Waker>,
}

impl<F: Runtime> Drop for Unwinding<'_, F> {
    fn drop(&mut self) {
        if self.armed {
            if let Some(fut) = self.fut.as_mut() {
                fut.panicked();
            }
            // The driver is woken first, as the drop may panic again.
            if let Some(waker) = self.wake {
                waker.wake_by_ref();
            }
            drop(self.fut.take());
        }
    }
}

impl<F: Runtime> driver::Task for RefCell<Slot<F>> {
    fn poll_task(&self) -> Option<Poll<()>> {
        Slot::poll(self, false)
    }
}

/// An HTTP session in its driver: listed in its worker's [`LocalTurns`]
/// until the driver lets go of it.
struct Listed<F> {
    slot: Rc<RefCell<Slot<F>>>,
    turns: LocalTurns,
    serial: u64,
}

impl<F: Runtime> driver::Task for Listed<F> {
    fn poll_task(&self) -> Option<Poll<()>> {
        Slot::poll(&self.slot, false)
    }
}

impl<F> Drop for Listed<F> {
    fn drop(&mut self) {
        self.turns.remove(self.serial);
    }
}

/// Puts the session in `slot` in `driver`, its runtime's (from
/// [`driver::ensure`]), which polls it once now and whenever it is woken;
/// with `listed`, lists it there under `serial` until the driver lets go
/// of it.
pub(super) fn drive<F: Runtime + 'static>(
    driver: &driver::Local,
    slot: &Rc<RefCell<Slot<F>>>,
    listed: Option<LocalTurns>,
    serial: u64,
) -> Result<(), driver::NoRoom> {
    let task: Rc<dyn driver::Task> = match listed {
        Some(turns) => {
            turns.insert(serial, slot.clone());
            Rc::new(Listed { slot: slot.clone(), turns, serial })
        }
        None => slot.clone(),
    };
    let number = driver::insert(driver, task)?;
    if let Some(fut) = slot.borrow_mut().fut.as_mut() {
        fut.set_task(number);
    }
    Ok(())
}

impl<F: Runtime> Turn for RefCell<Slot<F>> {
    fn turn(&self) -> Option<(bool, usize)> {
        match Slot::poll(self, true)? {
            Poll::Pending => Some((false, self.inbox_weight())),
            // The driver lets go of it at its next poll.
            Poll::Ready(()) => Some((true, 0)),
        }
    }

    fn wake(&self) {
        let task = self.try_borrow().ok().and_then(|slot| slot.fut.as_ref().map(Runtime::task));
        if let Some(task) = task {
            driver::wake(task);
        }
    }

    fn inbox_weight(&self) -> usize {
        let Ok(mut slot) = self.try_borrow_mut() else { return 0 };
        slot.fut.as_mut().map_or(0, |fut| inbound_weight(fut.inbox()))
    }

    fn fill_inbox(&self, fill: &mut dyn FnMut(&mut Vec<String>)) -> bool {
        let Ok(mut slot) = self.try_borrow_mut() else { return false };
        let Some(fut) = slot.fut.as_mut() else { return false };
        fill(fut.inbox());
        true
    }

    fn release_inbox(&self) {
        let Ok(mut slot) = self.try_borrow_mut() else { return };
        if let Some(inbox) = slot.fut.as_mut().map(Runtime::inbox).filter(|inbox| inbox.is_empty()) {
            *inbox = Vec::new();
        }
    }
}

/// The most messages whose buffer an inbox keeps between turns (a buffer
/// for more, after a burst, goes at once): 16 x 24 bytes.
pub(crate) const INBOX_KEPT: usize = 16;

/// Who runs a session's turns besides its worker's driver.
#[derive(Debug)]
pub(crate) enum InPlace {
    /// Its WebSocket, which gets the session's [`Turn`] from
    /// `start_session` (a hixie-76 socket leaves it to the driver).
    Socket,
    /// The requests of the worker it starts on, through its [`LocalTurns`].
    Requests(LocalTurns),
}

/// How a turn run in place went ([`run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ran {
    /// The session goes on (or its driver runs the turn, if it could not run
    /// here), with `waiting` the weight of the messages handed over in
    /// place and not handled yet ([`Turn::inbox_weight`]).
    Open { waiting: usize },
    /// The session is done.
    Done,
    /// The turn panicked (in the user's handler, say): the session is
    /// dropped, as tokio drops a task that panics.
    Panicked,
}

/// Runs a turn of the session in place, for a request that has just handed
/// it something unwoken; has its driver run it instead when the turn cannot run
/// now. A panic in the turn stops here rather than unwind through
/// actix-web's dispatcher: tokio would drop the connection's task, and the
/// request (a send, a poll) would go unanswered with its connection cut.
pub(crate) fn run(turn: &dyn Turn) -> Ran {
    match catch_unwind(AssertUnwindSafe(|| turn.turn())) {
        Ok(Some((false, waiting))) => Ran::Open { waiting },
        Ok(Some((true, _))) => Ran::Done,
        Ok(None) => {
            turn.wake();
            Ran::Open { waiting: turn.inbox_weight() }
        }
        Err(_) => {
            // The session logged it as it was dropped.
            turn.wake();
            Ran::Panicked
        }
    }
}

/// The HTTP sessions started on this worker, by serial, whose turns this
/// worker's requests run in place: a poll after it has handed its receiver
/// over, a send after its messages. A request on another worker finds none
/// here and wakes the session, whose driver runs the turn. One per endpoint and
/// worker; a session leaves it when its driver lets go of it.
#[derive(Clone, Default)]
pub(crate) struct LocalTurns(Rc<RefCell<SerialMap<Rc<dyn Turn>>>>);

impl LocalTurns {
    /// The turn of the session `serial`, if it lives on this worker.
    pub(crate) fn get(&self, serial: u64) -> Option<Rc<dyn Turn>> {
        self.0.try_borrow().ok()?.get(&serial).cloned()
    }

    fn insert(&self, serial: u64, turn: Rc<dyn Turn>) {
        if let Ok(mut map) = self.0.try_borrow_mut() {
            map.insert(serial, turn);
        }
    }

    fn remove(&self, serial: u64) {
        // Dropped outside the borrow: dropping the last share of a session
        // runs its actor's drop, which may do anything.
        let gone = self.0.try_borrow_mut().ok().and_then(|mut map| map.remove(&serial));
        drop(gone);
    }

    /// How many sessions are listed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.borrow().len()
    }
}

impl std::fmt::Debug for LocalTurns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTurns").field("sessions", &self.0.try_borrow().map(|m| m.len()).ok()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A session stand-in: runs `poll` at every turn.
    struct Stand<P> {
        poll: P,
        inbox: Vec<String>,
        task: u32,
    }

    impl<P: FnMut(&mut Vec<String>) -> Poll<()> + Unpin> Future for Stand<P> {
        type Output = ();

        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            let this = self.get_mut();
            (this.poll)(&mut this.inbox)
        }
    }

    impl<P: FnMut(&mut Vec<String>) -> Poll<()> + Unpin> Runtime for Stand<P> {
        fn inbox(&mut self) -> &mut Vec<String> {
            &mut self.inbox
        }

        fn in_place(&mut self, _: bool) {}

        fn panicked(&mut self) {}

        fn task(&self) -> u32 {
            self.task
        }

        fn set_task(&mut self, number: u32) {
            self.task = number;
        }
    }

    fn stand<P: FnMut(&mut Vec<String>) -> Poll<()> + Unpin>(poll: P) -> Stand<P> {
        Stand { poll, inbox: Vec::new(), task: 0 }
    }

    /// A session stand-in that finishes once `done` is set.
    fn until(done: Rc<Cell<bool>>) -> impl Runtime {
        stand(move |_| if done.get() { Poll::Ready(()) } else { Poll::Pending })
    }

    /// Puts the session in `slot` in this runtime's driver (see [`drive`]).
    fn driven<F: Runtime + 'static>(slot: &Rc<RefCell<Slot<F>>>, listed: Option<LocalTurns>, serial: u64) {
        drive(&driver::ensure().expect("room"), slot, listed, serial).expect("room");
    }

    /// Lets the driver (and whatever else was woken) run a few times.
    async fn settle() {
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
    }

    /// Lets the driver run until `turns` lists no session, or ten times.
    async fn until_unlisted(turns: &LocalTurns) {
        for _ in 0..10 {
            if turns.len() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
    }

    #[test]
    fn a_listed_session_stays_listed_until_its_driver_lets_go() {
        actix::System::new().block_on(async {
            let turns = LocalTurns::default();
            let done = Rc::new(Cell::new(false));
            let slot = Rc::new(RefCell::new(Slot::new(until(done.clone()))));
            driven(&slot, Some(turns.clone()), 7);
            drop(slot);
            let turn = turns.get(7).expect("listed at start");
            assert!(turns.get(8).is_none());
            // A turn may run in place before the driver's first poll.
            assert_eq!(run(&*turn), Ran::Open { waiting: 0 });
            tokio::task::yield_now().await;
            assert_eq!(run(&*turn), Ran::Open { waiting: 0 });
            done.set(true);
            assert_eq!(run(&*turn), Ran::Done);
            drop(turn);
            // The turn woke the driver, which lets go of the session at its
            // next poll and unlists it.
            until_unlisted(&turns).await;
            assert_eq!(turns.len(), 0, "the ended session is unlisted");
        });
    }

    #[test]
    fn a_session_done_in_place_whose_drop_panics_is_let_go_by_its_driver() {
        // A review: the driver was woken after the session's drop, which
        // a panic there skipped; its entry stayed for the worker's life.
        struct Bomb;
        impl Drop for Bomb {
            fn drop(&mut self) {
                panic!("the actor's drop panics");
            }
        }
        actix::System::new().block_on(async {
            let turns = LocalTurns::default();
            let bomb = Bomb;
            let polls = Cell::new(0);
            let slot = Rc::new(RefCell::new(Slot::new(stand(move |_| {
                let _keep = &bomb;
                polls.set(polls.get() + 1);
                if polls.get() == 1 {
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            }))));
            driven(&slot, Some(turns.clone()), 3);
            drop(slot);
            // The driver's first poll, which leaves nothing listed.
            settle().await;
            let turn = turns.get(3).expect("listed");
            assert_eq!(run(&*turn), Ran::Panicked);
            drop(turn);
            until_unlisted(&turns).await;
            assert_eq!(turns.len(), 0, "the driver let go of it");
        });
    }

    #[test]
    fn a_woken_session_is_polled_by_its_driver_once_per_wake() {
        actix::System::new().block_on(async {
            let polls = Rc::new(Cell::new(0));
            let count = polls.clone();
            let slot = Rc::new(RefCell::new(Slot::new(stand(move |_| {
                count.set(count.get() + 1);
                Poll::Pending
            }))));
            driven(&slot, None, 1);
            let turn: Rc<dyn Turn> = slot.clone();
            settle().await;
            assert_eq!(polls.get(), 1, "a new session is polled once");
            // Woken three times before the driver runs: one poll. Woken
            // from another thread, as the manager does: polled again.
            (0..3).for_each(|_| turn.wake());
            settle().await;
            assert_eq!(polls.get(), 2);
            let waker = slot.borrow().fut.as_ref().map(|f| driver::waker(f.task())).expect("driven");
            std::thread::spawn(move || waker.wake()).join().expect("woken");
            settle().await;
            assert_eq!(polls.get(), 3);
        });
    }

    #[test]
    fn a_turn_that_panics_drops_the_session_and_returns() {
        struct Noisy(Rc<Cell<bool>>);
        impl Drop for Noisy {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        actix::System::new().block_on(async {
            let dropped = Rc::new(Cell::new(false));
            let noisy = Noisy(dropped.clone());
            let session = stand(move |_| -> Poll<()> {
                let _keep = &noisy;
                panic!("the handler panics");
            });
            let slot = Rc::new(RefCell::new(Slot::new(session)));
            let turn: Rc<dyn Turn> = slot.clone();
            driven(&slot, None, 1);
            assert_eq!(run(&*turn), Ran::Panicked);
            assert!(dropped.get(), "the session is dropped");
            // A later turn finds no session, and says it is done.
            assert_eq!(run(&*turn), Ran::Done);
        });
    }

    #[test]
    fn messages_handed_in_place_wait_for_the_next_turn_in_order() {
        actix::System::new().block_on(async {
            let seen = Rc::new(RefCell::new(Vec::new()));
            let log = seen.clone();
            let slot = Rc::new(RefCell::new(Slot::new(stand(move |inbox: &mut Vec<String>| {
                log.borrow_mut().append(inbox);
                Poll::Pending
            }))));
            driven(&slot, None, 1);
            let turn: Rc<dyn Turn> = slot.clone();
            assert!(turn.fill_inbox(&mut |inbox| inbox.extend(["a".into(), "b".into()])));
            assert!(turn.fill_inbox(&mut |inbox| inbox.push("c".into())));
            assert!(seen.borrow().is_empty(), "handed, not yet handled");
            assert_eq!(turn.inbox_weight(), 3 * 65);
            assert_eq!(run(&*turn), Ran::Open { waiting: 0 });
            assert_eq!(*seen.borrow(), ["a", "b", "c"]);
            // Once the session is gone, nothing is filled: the socket queues
            // the messages instead.
            slot.borrow_mut().fut = None;
            assert!(!turn.fill_inbox(&mut |_| unreachable!("no inbox to fill")));
        });
    }

    #[test]
    fn an_empty_inbox_lets_go_of_its_buffer_when_released() {
        actix::System::new().block_on(async {
            let slot = Rc::new(RefCell::new(Slot::new(stand(|_: &mut Vec<String>| Poll::Pending))));
            driven(&slot, None, 1);
            let turn: Rc<dyn Turn> = slot.clone();
            assert!(turn.fill_inbox(&mut |inbox| inbox.push("a".into())));
            turn.release_inbox();
            assert_eq!(turn.inbox_weight(), 65, "a waiting message keeps its buffer");
            assert!(turn.fill_inbox(&mut Vec::clear));
            let capacity = || slot.borrow_mut().fut.as_mut().map(|f| f.inbox().capacity());
            assert!(capacity().is_some_and(|c| c > 0), "kept between turns");
            turn.release_inbox();
            assert_eq!(capacity(), Some(0));
        });
    }
}
