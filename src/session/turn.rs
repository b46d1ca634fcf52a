//! [`Turn`]: a WebSocket session's runtime, shared by the session's own
//! task ([`SessionTask`]) and its socket, which runs the session's turns
//! itself after handing it the client's messages.

use std::{
    cell::RefCell,
    future::Future,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
};

use crate::receiver::OutRx;

/// A WebSocket session's actor runtime, shared between the session's own
/// task and its socket, which runs a turn of it in place ([`Turn::turn`])
/// right after it has handed the session what the client sent.
///
/// An echo then costs one poll of the connection's task, as in a plain
/// actix-web-actors WebSocket, where it cost three (the socket's read, the
/// session's turn, the socket's write: benches/README.md). The turn runs
/// with the session task's waker, so that whatever the session waits for
/// (its commands, its mailbox, its timers) still wakes its own task:
/// actix-web does not poll a body while its client does not read, and the
/// session must go on without it (a broadcast past its queue limit closes
/// it, its timers fire).
pub(crate) trait Turn {
    /// Runs one turn of the session now, as its task would: `Some(true)`
    /// once the session is done, `None` when the turn cannot run (the
    /// task has not polled the session yet, or it is mid-turn; a spawned
    /// task is always polled once, and that poll takes what waits). Before
    /// the turn `out`, the socket's frame queue, forgets the socket's
    /// waker: the socket takes what the session writes in the same poll,
    /// and a wake-up of its task would only poll it again.
    fn turn(&self, out: &mut OutRx) -> Option<bool>;

    /// Wakes the session's task, once it has run (before, its first poll
    /// is to come anyway).
    fn wake(&self);
}

/// The session's runtime and its task's waker, once the task has run.
pub(super) struct Slot<F> {
    fut: Option<F>,
    waker: Option<Waker>,
}

impl<F: Future<Output = ()> + Unpin> Slot<F> {
    /// A slot for `fut`, whose task has not run yet.
    pub(super) fn new(fut: F) -> Self {
        Self { fut: Some(fut), waker: None }
    }

    /// Polls the session with `waker` (the task's own when `None`); drops
    /// it once it is done, outside the borrow of the slot (the actor's drop
    /// may run anything; a session whose poll panicked is dropped inside
    /// it). `None` when the slot is mid-turn (it cannot be, on one thread)
    /// or, for a turn, before the task's first poll.
    fn poll(slot: &RefCell<Self>, waker: Option<&Waker>) -> Option<Poll<()>> {
        let mut this = slot.try_borrow_mut().ok()?;
        let Self { fut, waker: own } = &mut *this;
        let waker = waker.or(own.as_ref())?;
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
/// handler say), as tokio drops a task that panics: a turn run by the
/// socket panics in the connection's task, and the session's own task must
/// not poll it again.
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

impl<F: Future<Output = ()> + Unpin> Turn for RefCell<Slot<F>> {
    fn turn(&self, out: &mut OutRx) -> Option<bool> {
        out.forget_waker();
        match Slot::poll(self, None)? {
            Poll::Pending => Some(false),
            Poll::Ready(()) => {
                // The task finishes, and lets go of its share, at its next poll.
                self.wake();
                Some(true)
            }
        }
    }

    fn wake(&self) {
        if let Some(waker) = self.try_borrow().ok().and_then(|slot| slot.waker.clone()) {
            waker.wake();
        }
    }
}

/// The session's own task when its socket runs turns too.
pub(super) struct SessionTask<F>(pub(super) Rc<RefCell<Slot<F>>>);

impl<F: Future<Output = ()> + Unpin> Future for SessionTask<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Ok(mut slot) = self.0.try_borrow_mut() {
            if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                slot.waker = Some(cx.waker().clone());
            }
        }
        Slot::poll(&self.0, Some(cx.waker())).unwrap_or_else(|| {
            cx.waker().wake_by_ref();
            Poll::Pending
        })
    }
}
