//! [`Turn`]: a session's runtime, shared by its worker's
//! [`Runner`](super::runner::Runner) and the requests that run its turns
//! in place after handing it something: its WebSocket, after the client's
//! messages; on the worker the session lives on, an HTTP session's polls
//! and sends.

use std::{
    cell::RefCell,
    future::Future,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    task::{Context, Poll, Waker},
};

/// A session's actor runtime, shared between its runner and the requests that run a turn of it in place ([`Turn::turn`]) right
/// after they have handed the session something: a WebSocket what the
/// client sent, an HTTP request its messages or its receiver.
///
/// An echo then costs one poll of the connection's task, as in a plain
/// actix-web-actors WebSocket, where it cost three (the socket's read, the
/// session's turn, the socket's write: benches/README.md). The turn runs
/// with the session's own waker, so that whatever the session waits for
/// (its commands, its mailbox, its timers) still has the runner poll it:
/// actix-web does not poll a body while its client does not read, and the
/// session must go on without it (a broadcast past its queue limit closes
/// it, its timers fire).
pub(crate) trait Turn {
    /// Runs one turn of the session now, as its runner would: `Some(true)`
    /// once the session is done, `None` when the turn cannot run (it is
    /// mid-turn, which it cannot be on one thread). A panic in the turn
    /// drops the session and goes on unwinding: see [`run`], which the
    /// requests call.
    ///
    /// With the turn, what the messages handed over in place and still
    /// unhandled weigh ([`Turn::inbox_weight`]).
    fn turn(&self) -> Option<(bool, usize)>;

    /// Wakes the session: its runner polls it.
    fn wake(&self);

    /// Polls the session for its runner, with its own waker; the session
    /// is dropped once done (or if the poll panics, which unwinds on).
    fn poll_own(&self) -> Poll<()>;

    /// Hands the client's messages to the session for its next turn, which
    /// the caller then runs ([`run`]): no lock and no allocation, where
    /// the command queue took both. Only a WebSocket does, as every message
    /// of its client comes through it; an HTTP session's come from any
    /// worker, and one queue keeps them in order. Gives the messages back
    /// when the session is gone (or mid-turn, which it cannot be on one
    /// thread).
    fn hand(&self, messages: Vec<String>) -> Result<(), Vec<String>>;

    /// What the messages handed over and not yet handled weigh
    /// ([`inbound_weight`]). They wait past the turn that follows when the
    /// actor waits on a future of its own (actix then polls nothing else),
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
}

/// The session's runtime and its own waker (see
/// [`Runner::waker`](super::runner::Runner::waker)).
pub(super) struct Slot<F> {
    fut: Option<F>,
    waker: Waker,
}

impl<F: Runtime> Slot<F> {
    /// A slot for `fut`, woken through `waker`.
    pub(super) fn new(fut: F, waker: Waker) -> Self {
        Self { fut: Some(fut), waker }
    }

    /// Polls the session with its waker; drops it once it is done, outside
    /// the borrow of the slot (the actor's drop may run anything; a
    /// session whose poll panicked is dropped inside it). `None` when the
    /// slot is mid-turn (it cannot be, on one thread).
    pub(super) fn poll(slot: &RefCell<Self>) -> Option<Poll<()>> {
        let mut this = slot.try_borrow_mut().ok()?;
        let Self { fut, waker } = &mut *this;
        let mut guard = Unwinding { fut, armed: true };
        let Some(session) = guard.fut.as_mut() else { return Some(Poll::Ready(())) };
        let polled = Pin::new(session).poll(&mut Context::from_waker(waker));
        guard.armed = false;
        if polled.is_pending() {
            return Some(Poll::Pending);
        }
        let done = guard.fut.take();
        drop(guard);
        drop(this);
        drop(done);
        Some(Poll::Ready(()))
    }
}

/// Drops a session whose poll did not return (it panicked, in the user's
/// handler say), as tokio drops a task that panics: a turn run in place
/// panics in a connection's task, and the runner must not poll it again.
struct Unwinding<'a, F> {
    fut: &'a mut Option<F>,
    /// Set until the poll returns.
    armed: bool,
}

impl<F> Drop for Unwinding<'_, F> {
    fn drop(&mut self) {
        if self.armed {
            drop(self.fut.take());
        }
    }
}

impl<F: Runtime> Turn for RefCell<Slot<F>> {
    fn turn(&self) -> Option<(bool, usize)> {
        match Slot::poll(self)? {
            Poll::Pending => Some((false, self.inbox_weight())),
            Poll::Ready(()) => {
                // The runner unlists it, and lets go of its share, when it
                // next polls it.
                self.wake();
                Some((true, 0))
            }
        }
    }

    fn wake(&self) {
        if let Ok(slot) = self.try_borrow() {
            slot.waker.wake_by_ref();
        }
    }

    fn poll_own(&self) -> Poll<()> {
        Slot::poll(self).unwrap_or_else(|| {
            self.wake();
            Poll::Pending
        })
    }

    fn inbox_weight(&self) -> usize {
        let Ok(mut slot) = self.try_borrow_mut() else { return 0 };
        slot.fut.as_mut().map_or(0, |fut| inbound_weight(fut.inbox()))
    }

    fn hand(&self, messages: Vec<String>) -> Result<(), Vec<String>> {
        let Ok(mut slot) = self.try_borrow_mut() else { return Err(messages) };
        let Some(fut) = slot.fut.as_mut() else { return Err(messages) };
        let inbox = fut.inbox();
        if inbox.is_empty() {
            *inbox = messages;
        } else {
            inbox.extend(messages);
        }
        Ok(())
    }
}

/// How a turn run in place went ([`run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ran {
    /// The session goes on (or its runner runs the turn, if it could not
    /// run here), with `waiting` the weight of the messages handed over in
    /// place and not handled yet ([`Turn::inbox_weight`]).
    Open { waiting: usize },
    /// The session is done.
    Done,
    /// The turn panicked (in the user's handler, say): the session is
    /// dropped, as tokio drops a task that panics.
    Panicked,
}

/// Runs a turn of the session in place, for a request that has just handed
/// it something unwoken; wakes it instead (for its runner) when the turn
/// cannot run now. A panic in the turn stops here rather than unwind through
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
            log::error!("sockjs: a session panicked in its handler; it is dropped");
            turn.wake();
            Ran::Panicked
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::Cell, rc::Rc};

    use super::*;
    use crate::session::runner::{Runner, BUDGET};

    /// A session stand-in: runs `poll` at every turn.
    struct Stand<P> {
        poll: P,
        inbox: Vec<String>,
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
    }

    fn stand<P: FnMut(&mut Vec<String>) -> Poll<()> + Unpin>(poll: P) -> Stand<P> {
        Stand { poll, inbox: Vec::new() }
    }

    /// Sets its flag when dropped.
    struct Noisy(Rc<Cell<bool>>);

    impl Drop for Noisy {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }

    /// A session stand-in that finishes once `done` is set.
    fn until(done: Rc<Cell<bool>>) -> impl Runtime {
        stand(move |_| if done.get() { Poll::Ready(()) } else { Poll::Pending })
    }

    /// Starts `session` on `runner` under `serial`, as `start_session` does.
    fn start(runner: &Runner, serial: u64, session: impl Runtime + 'static) -> Rc<dyn Turn> {
        let turn: Rc<dyn Turn> = Rc::new(RefCell::new(Slot::new(session, runner.waker(serial))));
        runner.list(serial, turn.clone());
        turn
    }

    /// Lets the runner's task and whatever it wakes run.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[test]
    fn a_listed_session_stays_listed_until_it_is_done() {
        actix::System::new().block_on(async {
            let runner = Runner::default();
            let done = Rc::new(Cell::new(false));
            let turn = start(&runner, 7, until(done.clone()));
            assert!(runner.get(7).is_some(), "listed at start");
            assert!(runner.get(8).is_none());
            assert_eq!(run(&*turn), Ran::Open { waiting: 0 });
            done.set(true);
            assert_eq!(run(&*turn), Ran::Done);
            drop(turn);
            // The turn woke the session, which its runner then finds done
            // and unlists.
            settle().await;
            assert_eq!(runner.len(), 0, "the ended session is unlisted");
        });
    }

    #[test]
    fn the_runner_polls_every_woken_session_past_its_budget() {
        actix::System::new().block_on(async {
            let runner = Runner::default();
            let polls = Rc::new(Cell::new(0));
            let n = 3 * BUDGET as u64 + 5;
            let turns: Vec<_> = (1..=n)
                .map(|serial| {
                    let polls = polls.clone();
                    start(
                        &runner,
                        serial,
                        stand(move |_| {
                            polls.set(polls.get() + 1);
                            Poll::Pending
                        }),
                    )
                })
                .collect();
            turns.iter().for_each(|turn| turn.wake());
            // Woken twice before the runner looks: polled once.
            turns.iter().for_each(|turn| turn.wake());
            settle().await;
            assert_eq!(polls.get(), n);
            assert_eq!(runner.len() as u64, n);
        });
    }

    #[test]
    fn a_session_that_panics_in_its_runner_is_dropped_and_the_others_go_on() {
        actix::System::new().block_on(async {
            let runner = Runner::default();
            let bad = start(&runner, 1, stand(|_| panic!("the handler panics")));
            let polls = Rc::new(Cell::new(0));
            let counted = polls.clone();
            let good = start(
                &runner,
                2,
                stand(move |_| {
                    counted.set(counted.get() + 1);
                    Poll::Pending
                }),
            );
            bad.wake();
            good.wake();
            settle().await;
            assert!(runner.get(1).is_none(), "the panicking session is unlisted");
            assert_eq!(polls.get(), 1);
            good.wake();
            settle().await;
            assert_eq!(polls.get(), 2, "the runner goes on");
        });
    }

    #[test]
    fn sessions_are_dropped_with_their_runners_runtime() {
        let runner = Runner::default();
        let dropped = Rc::new(Cell::new(false));
        actix::System::new().block_on(async {
            let noisy = Noisy(dropped.clone());
            start(
                &runner,
                1,
                stand(move |_| {
                    let _keep = &noisy;
                    Poll::Pending
                }),
            );
        });
        assert!(dropped.get(), "dropped with the runner's task");
        assert_eq!(runner.len(), 0);
        // A runtime after it gets a task of its own.
        actix::System::new().block_on(async {
            let turn = start(&runner, 2, until(Rc::new(Cell::new(true))));
            turn.wake();
            settle().await;
            assert_eq!(runner.len(), 0, "the new task ran the session to its end");
        });
    }

    #[test]
    fn a_turn_that_panics_drops_the_session_and_returns() {
        actix::System::new().block_on(async {
            let dropped = Rc::new(Cell::new(false));
            let noisy = Noisy(dropped.clone());
            let session = stand(move |_| -> Poll<()> {
                let _keep = &noisy;
                panic!("the handler panics");
            });
            let slot = Rc::new(RefCell::new(Slot::new(session, Waker::noop().clone())));
            let turn: Rc<dyn Turn> = slot.clone();
            assert_eq!(run(&*turn), Ran::Panicked);
            assert!(dropped.get(), "the session is dropped");
            // A later turn finds no session, and says it is done.
            assert_eq!(run(&*turn), Ran::Done);
        });
    }

    #[test]
    fn messages_handed_in_place_wait_for_the_next_turn_in_order() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let log = seen.clone();
        let slot = Rc::new(RefCell::new(Slot::new(
            stand(move |inbox: &mut Vec<String>| {
                log.borrow_mut().append(inbox);
                Poll::Pending
            }),
            Waker::noop().clone(),
        )));
        let turn: Rc<dyn Turn> = slot.clone();
        assert_eq!(turn.hand(vec!["a".into(), "b".into()]), Ok(()));
        assert_eq!(turn.hand(vec!["c".into()]), Ok(()));
        assert!(seen.borrow().is_empty(), "handed, not yet handled");
        assert_eq!(turn.inbox_weight(), 3 * 65);
        assert_eq!(run(&*turn), Ran::Open { waiting: 0 });
        assert_eq!(*seen.borrow(), ["a", "b", "c"]);
        // Once the session is gone the messages come back, for the queue.
        slot.borrow_mut().fut = None;
        assert_eq!(turn.hand(vec!["d".into()]), Err(vec!["d".to_owned()]));
    }
}
