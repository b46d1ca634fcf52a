//! [`Runner`]: one task per worker thread that polls the sessions started
//! there whenever something wakes them, in place of a tokio task each.
//!
//! A session's own task used to be a tokio task: 128 bytes aligned to 128
//! (glibc serves that with `posix_memalign`, which splits a larger chunk),
//! spawned at every set-up and polled once at once to register its waker.
//! Here a session gets a [`Node`] instead, a 48-byte waker that queues the
//! session for the runner, and an entry in the runner's table. Its waker
//! exists before the session's first turn, which runs in the opening
//! request, so that turn registers it where the session waits (its command
//! queue, its mailbox, its timers) and no poll follows just to do so.
//! Wake-ups from other threads (a broadcast's commands) queue the session
//! and wake the runner once for the lot.
//!
//! The runner drops a session that finishes or panics, as tokio drops a
//! task, and the sessions it holds when the runtime drops it.

use std::{
    cell::RefCell,
    collections::VecDeque,
    future::Future,
    mem,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    rc::{Rc, Weak},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
    task::{Context, Poll, Waker},
};

use futures_util::task::{waker, waker_ref, ArcWake, AtomicWaker};

use super::turn::{LocalTurns, Runtime, Slot, Turn};

/// How many sessions one poll of the runner polls at most before it lets
/// the worker's other tasks (its connections) run.
const BUDGET: usize = 64;

/// What the runner polls: a session's slot.
pub(super) trait Task {
    /// Polls the session with its task's `waker`.
    fn poll_task(&self, waker: &Waker) -> Poll<()>;
}

impl<F: Runtime> Task for RefCell<Slot<F>> {
    fn poll_task(&self, waker: &Waker) -> Poll<()> {
        // `None` only mid-turn, which a poll cannot find on one thread:
        // poll again later rather than lose the wake-up.
        Slot::poll(self, Some(waker)).unwrap_or_else(|| {
            waker.wake_by_ref();
            Poll::Pending
        })
    }
}

/// A session as the runner holds it; an HTTP session's is listed in its
/// worker's [`LocalTurns`] and leaves it when the session ends.
pub(super) struct SessionTask {
    task: Rc<dyn Task>,
    listed: Option<LocalTurns>,
    serial: u64,
}

impl SessionTask {
    /// The task of the session in `slot`; with `listed`, lists the session
    /// there under `serial` until the task ends.
    pub(super) fn new<F: Runtime + 'static>(
        slot: Rc<RefCell<Slot<F>>>,
        listed: Option<LocalTurns>,
        serial: u64,
    ) -> Self {
        if let Some(turns) = &listed {
            turns.insert(serial, slot.clone() as Rc<dyn Turn>);
        }
        Self { task: slot, listed, serial }
    }
}

impl Drop for SessionTask {
    fn drop(&mut self) {
        if let Some(turns) = &self.listed {
            turns.remove(self.serial);
        }
    }
}

/// Where a session is in the runner's table: its index, and which use of
/// that index (a wake-up for a session that ended finds another there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    index: u32,
    generation: u32,
}

/// The wake-ups waiting for the runner, from any thread.
#[derive(Default)]
struct Ready {
    keys: Mutex<Vec<Key>>,
    runner: AtomicWaker,
}

/// A session's waker: queues the session for the runner once until the
/// runner polls it.
pub(super) struct Node {
    key: Key,
    queued: AtomicBool,
    ready: Arc<Ready>,
}

impl ArcWake for Node {
    fn wake_by_ref(node: &Arc<Self>) {
        if !node.queued.swap(true, Ordering::AcqRel) {
            node.ready.keys.lock().unwrap_or_else(PoisonError::into_inner).push(node.key);
            node.ready.runner.wake();
        }
    }
}

pub(super) struct Entry {
    session: SessionTask,
    node: Arc<Node>,
}

/// The sessions of one worker thread, and the wake-ups that name them.
pub(super) struct Runner {
    ready: Arc<Ready>,
    /// The actix system the runner's task was spawned in.
    system: Option<usize>,
    entries: RefCell<Vec<Option<Entry>>>,
    /// Indexes free for another session, with the generation they had.
    free: RefCell<Vec<Key>>,
    /// Sessions woken and not polled yet, in order.
    due: RefCell<VecDeque<Key>>,
    /// The buffer that wake-ups are swapped out into.
    spare: RefCell<Vec<Key>>,
}

thread_local! {
    static CURRENT: RefCell<Weak<Runner>> = const { RefCell::new(Weak::new()) };
}

impl Runner {
    /// This thread's runner, spawned in the current actix system the
    /// first time (and again in a later system on the same thread: a
    /// system's runtime drops the runner with its tasks).
    pub(super) fn current() -> Rc<Runner> {
        let system = actix::System::try_current().map(|s| s.id());
        CURRENT.with_borrow_mut(|current| {
            if let Some(runner) = current.upgrade().filter(|r| r.system == system) {
                return runner;
            }
            let runner = Rc::new(Runner {
                ready: Arc::default(),
                system,
                entries: RefCell::default(),
                free: RefCell::default(),
                due: RefCell::default(),
                spare: RefCell::default(),
            });
            actix::spawn(Run(runner.clone()));
            *current = Rc::downgrade(&runner);
            runner
        })
    }

    /// Takes an index for a session about to start, and makes its waker.
    pub(super) fn reserve(self: &Rc<Self>) -> Reserved {
        let key = match self.free.borrow_mut().pop() {
            Some(Key { index, generation }) => Key { index, generation: generation.wrapping_add(1) },
            None => {
                let mut entries = self.entries.borrow_mut();
                entries.push(None);
                // Over 4 billion sessions on one thread at once would take
                // terabytes first.
                Key { index: u32::try_from(entries.len() - 1).unwrap_or(u32::MAX), generation: 0 }
            }
        };
        let node = Arc::new(Node { key, queued: AtomicBool::new(false), ready: self.ready.clone() });
        Reserved { runner: self.clone(), node: Some(node) }
    }

    /// The entry at `key`'s index, if it is still the session `key` names.
    fn find(&self, key: Key) -> Option<(Rc<dyn Task>, Arc<Node>)> {
        let entries = self.entries.borrow();
        let entry = entries.get(key.index as usize)?.as_ref().filter(|e| e.node.key == key)?;
        Some((entry.session.task.clone(), entry.node.clone()))
    }

    /// Takes the session at `key` out and frees its index.
    fn remove(&self, key: Key) {
        let gone = self.entries.borrow_mut().get_mut(key.index as usize).and_then(Option::take);
        self.free.borrow_mut().push(key);
        // Dropped outside the borrow: a session's drop may do anything.
        drop(gone);
    }

    /// Polls the sessions woken since the last poll, up to [`BUDGET`];
    /// `true` when some are left for the next poll.
    fn run(&self, cx: &mut Context<'_>) -> bool {
        self.ready.runner.register(cx.waker());
        {
            let mut spare = self.spare.borrow_mut();
            mem::swap(&mut *self.ready.keys.lock().unwrap_or_else(PoisonError::into_inner), &mut *spare);
            self.due.borrow_mut().extend(spare.drain(..));
        }
        for _ in 0..BUDGET {
            let Some(key) = self.due.borrow_mut().pop_front() else { return false };
            let Some((task, node)) = self.find(key) else { continue };
            // A wake-up from here on queues the session again.
            node.queued.swap(false, Ordering::AcqRel);
            let waker = waker_ref(&node);
            match catch_unwind(AssertUnwindSafe(|| task.poll_task(&waker))) {
                Ok(Poll::Pending) => {}
                Ok(Poll::Ready(())) => self.remove(key),
                Err(_) => {
                    log::error!("sockjs: a session panicked in its task; it is dropped");
                    self.remove(key);
                }
            }
        }
        !self.due.borrow().is_empty()
    }
}

/// A session's place in the runner, from before its first turn until it
/// starts there ([`Reserved::start`]); dropped unstarted, it frees the
/// place.
pub(super) struct Reserved {
    runner: Rc<Runner>,
    node: Option<Arc<Node>>,
}

impl Reserved {
    /// The session's waker.
    pub(super) fn waker(&self) -> Waker {
        self.node.clone().map_or_else(|| Waker::noop().clone(), waker)
    }

    /// Hands the session to the runner, which polls it whenever its waker
    /// is woken (a wake-up before this, in the first turn, included).
    pub(super) fn start(mut self, session: SessionTask) {
        let Some(node) = self.node.take() else { return };
        let index = node.key.index as usize;
        if let Some(place) = self.runner.entries.borrow_mut().get_mut(index) {
            *place = Some(Entry { session, node });
        }
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            self.runner.free.borrow_mut().push(node.key);
        }
    }
}

/// The runner's task.
struct Run(Rc<Runner>);

impl Future for Run {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.run(cx) {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // The sessions go with the runtime that ran them, as its tasks do;
        // each is dropped outside the borrow of the table.
        let entries = mem::take(&mut *self.0.entries.borrow_mut());
        drop(entries);
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::Cell, thread};

    use super::*;
    use crate::session::turn::{run, tests::stand, Ran};

    /// Yields to the worker's other tasks until `done` holds (a few rounds
    /// of the runner at most), and says whether it did.
    async fn until(done: impl Fn() -> bool) -> bool {
        for _ in 0..20 {
            if done() {
                return true;
            }
            tokio::task::yield_now().await;
        }
        done()
    }

    /// Starts a stand-in session that counts its polls in `polls` and
    /// finishes once `done` is set; gives its slot and its waker.
    fn start(
        polls: Rc<Cell<u32>>,
        done: Rc<Cell<bool>>,
        listed: Option<LocalTurns>,
        serial: u64,
    ) -> (Rc<dyn Turn>, Waker) {
        let place = Runner::current().reserve();
        let waker = place.waker();
        let session = stand(move |_| {
            polls.set(polls.get() + 1);
            if done.get() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        let slot = Rc::new(RefCell::new(Slot::new(session, waker.clone())));
        place.start(SessionTask::new(slot.clone(), listed, serial));
        (slot, waker)
    }

    #[test]
    fn a_woken_session_is_polled_once_per_wake_up_and_its_turns_run_at_once() {
        actix::System::new().block_on(async {
            let (polls, done) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(false)));
            let (turn, waker) = start(polls.clone(), done.clone(), None, 1);
            tokio::task::yield_now().await;
            assert_eq!(polls.get(), 0, "not polled before anything wakes it");
            // A turn in place runs at once: the session has its waker.
            assert_eq!(run(&*turn), Ran::Open { waiting: 0 });
            assert_eq!(polls.get(), 1);
            waker.wake_by_ref();
            waker.wake_by_ref();
            assert!(until(|| polls.get() == 2).await);
            tokio::task::yield_now().await;
            assert_eq!(polls.get(), 2, "two wake-ups before a poll are one poll");
            done.set(true);
            waker.wake_by_ref();
            assert!(until(|| polls.get() == 3).await);
            assert_eq!(run(&*turn), Ran::Done, "the runner dropped the finished session");
        });
    }

    #[test]
    fn a_listed_session_stays_listed_until_its_task_ends() {
        actix::System::new().block_on(async {
            let turns = LocalTurns::default();
            let (polls, done) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(false)));
            drop(start(polls, done.clone(), Some(turns.clone()), 7));
            let turn = turns.get(7).expect("listed at start");
            assert!(turns.get(8).is_none());
            assert_eq!(run(&*turn), Ran::Open { waiting: 0 });
            done.set(true);
            assert_eq!(run(&*turn), Ran::Done);
            drop(turn);
            // The turn woke the task, which ends at its next poll and
            // unlists the session.
            assert!(until(|| turns.len() == 0).await, "the ended session is unlisted");
        });
    }

    #[test]
    fn a_wake_up_for_an_ended_session_does_not_poll_the_session_in_its_place() {
        actix::System::new().block_on(async {
            let (first_polls, first_done) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(true)));
            let (_, old_waker) = start(first_polls.clone(), first_done, None, 1);
            old_waker.wake_by_ref();
            assert!(until(|| first_polls.get() == 1).await);
            let runner = Runner::current();
            assert_eq!(runner.free.borrow().len(), 1, "its index is free again");
            let (polls, done) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(false)));
            let (_, waker) = start(polls.clone(), done, None, 2);
            assert_eq!(runner.entries.borrow().len(), 1, "the second session took the first's index");
            old_waker.wake_by_ref();
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            assert_eq!(polls.get(), 0, "the stale wake-up polled nobody");
            waker.wake_by_ref();
            assert!(until(|| polls.get() == 1).await);
        });
    }

    #[test]
    fn a_session_that_panics_in_its_task_is_dropped_and_the_others_go_on() {
        actix::System::new().block_on(async {
            let (polls, done) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(false)));
            let (_, calm) = start(polls.clone(), done, None, 1);
            let place = Runner::current().reserve();
            let waker = place.waker();
            /// Says when it is dropped.
            struct Noisy(Rc<Cell<bool>>);
            impl Drop for Noisy {
                fn drop(&mut self) {
                    self.0.set(true);
                }
            }
            let dropped = Rc::new(Cell::new(false));
            let noisy = Noisy(dropped.clone());
            let session = stand(move |_| -> Poll<()> {
                let _keep = &noisy;
                panic!("the handler panics");
            });
            let slot = Rc::new(RefCell::new(Slot::new(session, waker.clone())));
            place.start(SessionTask::new(slot, None, 2));
            waker.wake_by_ref();
            calm.wake_by_ref();
            assert!(until(|| polls.get() == 1).await, "the other session was polled");
            assert!(dropped.get(), "the session that panicked is dropped");
            assert_eq!(Runner::current().free.borrow().len(), 1, "and its index freed");
        });
    }

    #[test]
    fn more_sessions_woken_at_once_than_one_poll_takes_are_all_polled() {
        actix::System::new().block_on(async {
            let polls = Rc::new(Cell::new(0));
            let wakers: Vec<_> = (0..(3 * BUDGET as u64 + 5))
                .map(|serial| start(polls.clone(), Rc::new(Cell::new(false)), None, serial).1)
                .collect();
            for waker in &wakers {
                waker.wake_by_ref();
            }
            // The runner's task is woken; one poll of the runner, here:
            let left = Runner::current().run(&mut Context::from_waker(Waker::noop()));
            assert!(left);
            assert_eq!(polls.get(), BUDGET as u32, "one poll of the runner takes {BUDGET}");
            assert!(until(|| polls.get() == wakers.len() as u32).await);
        });
    }

    #[test]
    fn a_session_woken_from_another_thread_is_polled() {
        actix::System::new().block_on(async {
            let (polls, done) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(false)));
            let (_, waker) = start(polls.clone(), done, None, 1);
            thread::spawn(move || waker.wake()).join().expect("woken");
            assert!(until(|| polls.get() == 1).await);
        });
    }

    #[test]
    fn a_later_system_on_the_same_thread_gets_a_runner_of_its_own() {
        let first = actix::System::new();
        let (polls, done) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(false)));
        let old = first.block_on(async { Rc::downgrade(&Runner::current()) });
        // The first system is not dropped, nor run again.
        let second = actix::System::new();
        second.block_on(async {
            assert!(old.upgrade().is_some(), "the first system still holds its runner");
            let (_, waker) = start(polls.clone(), done, None, 1);
            waker.wake_by_ref();
            assert!(until(|| polls.get() == 1).await, "polled by the second system's runner");
        });
        drop((first, second));
    }
}
