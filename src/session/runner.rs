//! [`Runner`]: the task that runs the sessions one endpoint starts on one
//! worker, in place of a tokio task per session.
//!
//! A task of its own cost every session 128 bytes of tokio task, aligned
//! to 128 (glibc serves that through its slow aligned path), its spawn
//! and a first poll only to register the task's waker: ~1.8k of the ~51k
//! instructions a WebSocket's set-up took (callgrind, `benches/README.md`).
//! Here a session gets a waker of its own, 48 bytes, that queues it on the
//! runner; the runner polls the sessions woken since its last poll, a
//! bounded number at a time, and is itself one tokio task per endpoint
//! and worker. A broadcast that reaches many sessions of a worker wakes
//! that task once.
//!
//! The runner also lists the worker's sessions by serial, so that a
//! request on this worker finds its session's [`Turn`] and runs it in
//! place ([`Runner::get`]).

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    future::Future,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    rc::{Rc, Weak},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
    task::{Context, Poll, Wake, Waker},
};

use super::turn::Turn;
use crate::util::SerialMap;

/// How many sessions the runner polls before it lets the worker's other
/// tasks run (tokio's own budget for a task is 128 operations).
pub(super) const BUDGET: usize = 64;

/// The sessions of one endpoint on one worker and the task that runs them
/// (spawned with the first session, again after its runtime was dropped).
#[derive(Clone, Default)]
pub(crate) struct Runner(Rc<Sessions>);

#[derive(Default)]
struct Sessions {
    listed: RefCell<SerialMap<Rc<dyn Turn>>>,
    woken: Arc<Woken>,
    /// Taken from `woken`, not yet polled (past one poll's budget).
    due: RefCell<VecDeque<Arc<SessionWaker>>>,
    /// The task is spawned and not dropped.
    running: Cell<bool>,
}

/// The sessions woken since the runner last looked, and the runner's
/// waker: shared with every thread that can wake a session.
#[derive(Default)]
struct Woken(Mutex<WokenState>);

#[derive(Default)]
struct WokenState {
    sessions: Vec<Arc<SessionWaker>>,
    /// The runner's waker, while it waits for a session to be woken.
    runner: Option<Waker>,
}

impl Woken {
    fn push(&self, session: Arc<SessionWaker>) {
        let runner = {
            let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            state.sessions.push(session);
            state.runner.take()
        };
        if let Some(runner) = runner {
            runner.wake();
        }
    }
}

/// A session's waker: queues the session on its runner, once until the
/// runner polls it.
struct SessionWaker {
    serial: u64,
    queued: AtomicBool,
    woken: Arc<Woken>,
}

impl Wake for SessionWaker {
    fn wake(self: Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            let woken = self.woken.clone();
            woken.push(self);
        }
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.woken.push(self.clone());
        }
    }
}

impl Runner {
    /// A waker for the session `serial`: what wakes it queues it here.
    /// Give it to the session before its first turn, then [`list`] it.
    ///
    /// [`list`]: Self::list
    pub(crate) fn waker(&self, serial: u64) -> Waker {
        Waker::from(Arc::new(SessionWaker {
            serial,
            queued: AtomicBool::new(false),
            woken: self.0.woken.clone(),
        }))
    }

    /// Lists a started session, which the runner then polls whenever its
    /// waker is woken, until it is done; spawns the runner's task if it
    /// does not run.
    pub(crate) fn list(&self, serial: u64, turn: Rc<dyn Turn>) {
        if let Ok(mut listed) = self.0.listed.try_borrow_mut() {
            listed.insert(serial, turn);
        }
        if !self.0.running.replace(true) {
            actix::spawn(RunnerTask(Rc::downgrade(&self.0)));
        }
    }

    /// The turn of the session `serial`, if it lives here.
    pub(crate) fn get(&self, serial: u64) -> Option<Rc<dyn Turn>> {
        self.0.listed.try_borrow().ok()?.get(&serial).cloned()
    }

    /// Unlists a session that is done (or panicked, and was dropped).
    fn unlist(&self, serial: u64) {
        // Dropped outside the borrow: dropping the last share of a session
        // runs its actor's drop, which may do anything.
        let gone = self.0.listed.try_borrow_mut().ok().and_then(|mut listed| listed.remove(&serial));
        drop(gone);
    }

    /// How many sessions are listed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.listed.borrow().len()
    }

    /// Polls the sessions woken since the last look, up to [`BUDGET`];
    /// `true` if some are left for the next poll.
    fn poll_woken(&self, cx: &Context<'_>) -> bool {
        let mut polled = 0;
        loop {
            let next = self.0.due.try_borrow_mut().ok().and_then(|mut due| due.pop_front());
            let Some(session) = next else {
                let mut state = self.0.woken.0.lock().unwrap_or_else(PoisonError::into_inner);
                if state.sessions.is_empty() {
                    if !state.runner.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        state.runner = Some(cx.waker().clone());
                    }
                    return false;
                }
                let woken = std::mem::take(&mut state.sessions);
                drop(state);
                if let Ok(mut due) = self.0.due.try_borrow_mut() {
                    due.extend(woken);
                }
                continue;
            };
            if polled == BUDGET {
                if let Ok(mut due) = self.0.due.try_borrow_mut() {
                    due.push_front(session);
                }
                return true;
            }
            polled += 1;
            // Woken again from here on, it is queued again.
            session.queued.store(false, Ordering::Release);
            let Some(turn) = self.get(session.serial) else { continue };
            match catch_unwind(AssertUnwindSafe(|| turn.poll_own())) {
                Ok(Poll::Pending) => {}
                Ok(Poll::Ready(())) => self.unlist(session.serial),
                Err(_) => {
                    log::error!("sockjs: a session panicked in its handler; it is dropped");
                    self.unlist(session.serial);
                }
            }
        }
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sessions = self.0.listed.try_borrow().map(|m| m.len()).ok();
        f.debug_struct("Runner").field("sessions", &sessions).finish()
    }
}

/// The runner's task. Dropped with the worker's runtime, it drops every
/// session it runs, as tokio drops its tasks.
struct RunnerTask(Weak<Sessions>);

impl Future for RunnerTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(sessions) = self.0.upgrade() else { return Poll::Ready(()) };
        if Runner(sessions).poll_woken(cx) {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl Drop for RunnerTask {
    fn drop(&mut self) {
        if let Some(sessions) = self.0.upgrade() {
            sessions.running.set(false);
            let listed = sessions.listed.try_borrow_mut().map(|mut m| std::mem::take(&mut *m));
            let due = sessions.due.try_borrow_mut().map(|mut d| std::mem::take(&mut *d));
            drop((listed, due));
        }
    }
}
