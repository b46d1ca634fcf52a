//! The sessions' driver: one task per worker runtime that runs the turns
//! of that worker's sessions when something wakes them, where each
//! session had a tokio task of its own (128 bytes of an idle session's
//! memory: benches/README.md, "Idle memory: one driver per worker").
//!
//! A session's waker is its number, `driver | index << DRIVER_BITS`, and
//! holds no memory: waking it, from any thread, puts the index on its
//! driver's list of woken sessions ([`Shared`]) and wakes the driver's
//! task, which then polls each session on the list. The driver's table of
//! sessions ([`Local`]) holds them for the runtime's life, as the runtime
//! held their tasks: when the runtime drops the driver's task, the
//! sessions go with it, each in a `catch_unwind` as tokio drops a task.
//!
//! A waker that outlives its session (in a timer the session had set, say)
//! may wake the session that took its index next: a spurious poll, which
//! every future allows.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    rc::{Rc, Weak},
    sync::{Mutex, OnceLock, PoisonError},
    task::{Context, Poll, RawWaker, RawWakerVTable, Waker},
};

use futures_util::task::AtomicWaker;

/// A session as its driver polls it.
pub(super) trait Task {
    /// One turn of the session with its own waker (its number), as its
    /// own task's poll would run it: `None` when it is mid-turn (it cannot
    /// be, on one thread), `Some(Ready)` once it is done.
    fn poll_task(&self) -> Option<Poll<()>>;
}

/// How many drivers may live at once: one per worker runtime that runs
/// sessions. A driver's number goes back for reuse when its runtime ends.
const MAX_DRIVERS: usize = 1024;

/// The bits of a session's number that name its driver; the other 22
/// name its index there.
const DRIVER_BITS: u32 = MAX_DRIVERS.trailing_zeros();

/// The most sessions one driver holds (4,194,304): a session's number,
/// driver and index, fits a `u32`, so that it costs the session's slot no
/// more than 4 bytes.
const MAX_INDEX: usize = 1 << (u32::BITS - DRIVER_BITS);

/// The drivers' shared halves, by number: each is made the first time its
/// number is taken, and stays for the process (a few dozen bytes).
static DRIVERS: [OnceLock<Shared>; MAX_DRIVERS] = [const { OnceLock::new() }; MAX_DRIVERS];

/// Driver numbers: the next never taken, and those given back.
static NUMBERS: Mutex<(usize, Vec<usize>)> = Mutex::new((0, Vec::new()));

thread_local! {
    /// This thread's drivers, by runtime, while their tasks live: one, but
    /// for a thread that keeps two actix `System`s (two tokio runtimes).
    static CURRENT: RefCell<Vec<(tokio::runtime::Id, Weak<Local>)>> = const { RefCell::new(Vec::new()) };
}

/// What any thread may do to a driver: list a session as woken and wake
/// the driver's task.
#[derive(Default)]
struct Shared {
    woken: Mutex<Woken>,
    task: AtomicWaker,
}

/// Sessions woken since the driver last looked, each listed once.
#[derive(Default)]
struct Woken {
    list: Vec<u32>,
    /// A bit per index: listed.
    listed: Vec<u64>,
}

impl Shared {
    fn wake(&self, index: u32) {
        let first = {
            let mut woken = self.woken.lock().unwrap_or_else(PoisonError::into_inner);
            let (word, bit) = (index as usize / 64, 1u64 << (index % 64));
            if woken.listed.len() <= word {
                woken.listed.resize(word + 1, 0);
            }
            if woken.listed[word] & bit != 0 {
                return;
            }
            woken.listed[word] |= bit;
            woken.list.push(index);
            woken.list.len() == 1
        };
        // A longer list has woken the task already, which has not taken
        // the list since.
        if first {
            self.task.wake();
        }
    }

    /// Swaps the woken sessions into `into` (empty), unlisting them: a
    /// wake from now on lists them again.
    fn take(&self, into: &mut Vec<u32>) {
        let mut woken = self.woken.lock().unwrap_or_else(PoisonError::into_inner);
        let Woken { list, listed } = &mut *woken;
        for &index in list.iter() {
            listed[index as usize / 64] &= !(1u64 << (index % 64));
        }
        std::mem::swap(list, into);
    }

    /// Forgets what a driver that had this number left listed.
    fn reset(&self) {
        let mut woken = self.woken.lock().unwrap_or_else(PoisonError::into_inner);
        *woken = Woken::default();
    }
}

/// A session's waker: its number as the waker's data, never dereferenced.
static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_raw, wake_raw, wake_raw, drop_raw);

fn clone_raw(data: *const ()) -> RawWaker {
    RawWaker::new(data, &VTABLE)
}

fn wake_raw(data: *const ()) {
    wake(data as usize as u32);
}

fn drop_raw(_: *const ()) {}

/// The waker of the session numbered `number` (see [`Runtime::task`](super::turn::Runtime::task)):
/// the crate's one `unsafe` (std has no safe way to make a waker that is
/// a number rather than an `Arc`, and an `Arc` a session would cost most
/// of what its own task did).
#[allow(unsafe_code, reason = "a waker that is a number: see above")]
pub(super) fn waker(number: u32) -> Waker {
    // SAFETY: the vtable's functions meet `RawWaker`'s contract for any
    // data: they read it as a number and never dereference it, they are
    // thread-safe (a static table of mutexes), and nothing needs freeing
    // (nor does a clone).
    unsafe { Waker::from_raw(RawWaker::new(std::ptr::without_provenance(number as usize), &VTABLE)) }
}

/// Wakes the session numbered `number`: lists it with its driver. Its
/// driver may be gone (its runtime ended) or its index taken by another
/// session: the wake is then lost, or a spurious poll of the other.
pub(super) fn wake(number: u32) {
    let (driver, index) = (number as usize & (MAX_DRIVERS - 1), number >> DRIVER_BITS);
    if let Some(shared) = DRIVERS[driver].get() {
        shared.wake(index);
    }
}

/// The worker's half of its driver, shared by its task and by the
/// sessions that start on the worker.
pub(super) struct Local {
    number: usize,
    shared: &'static Shared,
    sessions: RefCell<Vec<Option<Rc<dyn Task>>>>,
    /// Indexes of `sessions` whose session has ended.
    free: RefCell<Vec<u32>>,
    /// What the task took from `shared` and has still to poll, from `at`.
    ready: RefCell<Vec<u32>>,
    at: Cell<usize>,
}

impl Local {
    /// The number of the session at `index` (see [`waker`]).
    fn number_of(&self, index: u32) -> u32 {
        self.number as u32 | index << DRIVER_BITS
    }

    /// Whether the table is full ([`MAX_INDEX`]).
    fn full(&self) -> bool {
        self.free.borrow().is_empty() && self.sessions.borrow().len() >= MAX_INDEX
    }

    /// The session at `index`, shared for a poll outside the table's borrow.
    fn get(&self, index: u32) -> Option<Rc<dyn Task>> {
        self.sessions.borrow().get(index as usize)?.clone()
    }

    fn remove(&self, index: u32) {
        let gone = self.sessions.borrow_mut().get_mut(index as usize).and_then(Option::take);
        if gone.is_some() {
            self.free.borrow_mut().push(index);
        }
        // Dropped outside the borrow: a session's drop may run anything.
        drop(gone);
    }
}

/// Why a session could not be put in a driver: too many runtimes run
/// sessions at once ([`MAX_DRIVERS`]), or too many sessions are on this
/// one ([`MAX_INDEX`]), or there is no tokio runtime here.
#[derive(Debug)]
pub(crate) struct NoRoom;

/// The driver of the runtime this runs on, started if it has none, if it
/// has room for one more session: a session checks before it starts, so
/// that it does not open only to find no room, and is then put in it
/// ([`insert`]).
pub(super) fn ensure() -> Result<Rc<Local>, NoRoom> {
    let Ok(runtime) = tokio::runtime::Handle::try_current().map(|handle| handle.id()) else {
        log::error!("sockjs: a session cannot start outside a tokio runtime");
        return Err(NoRoom);
    };
    let found = CURRENT.try_with(|current| {
        let mut current = current.borrow_mut();
        current.retain(|(_, local)| local.strong_count() > 0);
        current.iter().find(|(id, _)| *id == runtime).and_then(|(_, local)| local.upgrade())
    });
    let local = match found {
        Ok(Some(local)) => local,
        Ok(None) => start(runtime)?,
        Err(_) => return Err(NoRoom),
    };
    if local.full() {
        log::error!("sockjs: {MAX_INDEX} sessions on one worker already; no more can start there");
        return Err(NoRoom);
    }
    Ok(local)
}

/// Puts `task` in `local`, the driver [`ensure`] gave, and lists it as
/// woken, so that the driver polls it once as a new task would be;
/// returns its number (see [`waker`]). `NoRoom` only if the table filled
/// since [`ensure`] looked.
pub(super) fn insert(local: &Local, task: Rc<dyn Task>) -> Result<u32, NoRoom> {
    if local.full() {
        log::error!("sockjs: {MAX_INDEX} sessions on one worker already; no more can start there");
        return Err(NoRoom);
    }
    let index = match local.free.borrow_mut().pop() {
        Some(index) => index,
        None => {
            let mut sessions = local.sessions.borrow_mut();
            if sessions.len() == sessions.capacity() {
                // Grows by an eighth, not double: the table's slack is part
                // of what an idle session costs.
                let more = (sessions.len() / 8).max(64);
                sessions.reserve_exact(more);
            }
            sessions.push(None);
            (sessions.len() - 1) as u32
        }
    };
    local.sessions.borrow_mut()[index as usize] = Some(task);
    local.shared.wake(index);
    Ok(local.number_of(index))
}

/// Starts the driver of `runtime`, the one this runs on: takes a number,
/// spawns the task.
fn start(runtime: tokio::runtime::Id) -> Result<Rc<Local>, NoRoom> {
    let number = {
        let mut numbers = NUMBERS.lock().unwrap_or_else(PoisonError::into_inner);
        match numbers.1.pop() {
            Some(number) => number,
            None if numbers.0 < MAX_DRIVERS => {
                numbers.0 += 1;
                numbers.0 - 1
            }
            None => {
                log::error!("sockjs: {MAX_DRIVERS} worker runtimes run sessions already; this one cannot");
                return Err(NoRoom);
            }
        }
    };
    let shared = DRIVERS[number].get_or_init(Shared::default);
    shared.reset();
    let local = Rc::new(Local {
        number,
        shared,
        sessions: RefCell::default(),
        free: RefCell::default(),
        ready: RefCell::default(),
        at: Cell::new(0),
    });
    let _ = CURRENT.try_with(|current| current.borrow_mut().push((runtime, Rc::downgrade(&local))));
    actix::spawn(Driver(local.clone()));
    Ok(local)
}

/// How many sessions one poll of the driver's task polls before it lets
/// the worker run its other tasks (it is woken again at once). It also
/// stops early once the sessions have used up the poll's tokio budget, as
/// a session's own task would have yielded.
const BATCH: usize = 64;

/// The driver's task.
struct Driver(Rc<Local>);

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let local = &*self.0;
        local.shared.task.register(cx.waker());
        for polled in 0..BATCH {
            if polled > 0 && !tokio::task::coop::has_budget_remaining() {
                break;
            }
            let index = {
                let mut ready = local.ready.borrow_mut();
                if local.at.get() == ready.len() {
                    ready.clear();
                    local.at.set(0);
                    local.shared.take(&mut ready);
                    if ready.is_empty() {
                        return Poll::Pending;
                    }
                }
                let index = ready[local.at.get()];
                local.at.set(local.at.get() + 1);
                index
            };
            let Some(task) = local.get(index) else { continue };
            match catch_unwind(AssertUnwindSafe(|| task.poll_task())) {
                Ok(Some(Poll::Pending)) => {}
                // Mid-turn: it cannot be, on one thread; polled again.
                Ok(None) => local.shared.wake(index),
                // Done, or its turn panicked (the slot dropped it, and it
                // logged the panic).
                Ok(Some(Poll::Ready(()))) | Err(_) => local.remove(index),
            }
            drop(task);
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let local = &*self.0;
        // `try_with`: a runtime may be dropped as its thread ends.
        let _ = CURRENT.try_with(|current| {
            current.borrow_mut().retain(|(_, other)| !std::ptr::eq(other.as_ptr(), Rc::as_ptr(&self.0)));
        });
        // The sessions go with the worker's runtime, one by one outside
        // the table's borrow, each in a `catch_unwind` as tokio drops a
        // task: one whose drop panics leaves the others theirs.
        let sessions = std::mem::take(&mut *local.sessions.borrow_mut());
        for session in sessions.into_iter().flatten() {
            if catch_unwind(AssertUnwindSafe(|| drop(session))).is_err() {
                log::error!("sockjs: a session panicked as it was dropped with its worker");
            }
        }
        drop(local.shared.task.take());
        local.shared.reset();
        NUMBERS.lock().unwrap_or_else(PoisonError::into_inner).1.push(local.number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts its polls; panics when dropped if told to.
    struct Probe {
        polls: Rc<Cell<usize>>,
        dropped: Rc<Cell<bool>>,
        panics_on_drop: bool,
    }

    impl Task for Probe {
        fn poll_task(&self) -> Option<Poll<()>> {
            self.polls.set(self.polls.get() + 1);
            Some(Poll::Pending)
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            // Dropped, and not as a panic unwinds (a session's drop then
            // skips its shutdown: no `on_close`).
            self.dropped.set(!std::thread::panicking());
            if self.panics_on_drop {
                panic!("a session's drop panics");
            }
        }
    }

    fn probe(panics_on_drop: bool) -> (Rc<Probe>, Rc<Cell<usize>>, Rc<Cell<bool>>) {
        let (polls, dropped) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(false)));
        (Rc::new(Probe { polls: polls.clone(), dropped: dropped.clone(), panics_on_drop }), polls, dropped)
    }

    async fn settle() {
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
    }

    #[test]
    fn a_session_whose_drop_panics_leaves_the_others_theirs_when_the_worker_stops() {
        let others = actix::System::new().block_on(async {
            let (first, _, _) = probe(true);
            let (second, _, dropped) = probe(false);
            insert(&ensure().expect("room"), first).expect("room");
            insert(&ensure().expect("room"), second).expect("room");
            dropped
        });
        assert!(others.get(), "the second session was dropped with the worker, and not as a panic unwound");
        // The driver's number went back, and a new runtime on this thread
        // gets a driver that polls.
        actix::System::new().block_on(async {
            let (task, polls, _) = probe(false);
            let number = insert(&ensure().expect("room"), task).expect("room");
            settle().await;
            assert_eq!(polls.get(), 1);
            waker(number).wake();
            settle().await;
            assert_eq!(polls.get(), 2);
        });
    }

    #[test]
    fn two_runtimes_on_one_thread_each_have_their_driver() {
        let (one, two) = (tokio::task::LocalSet::new(), tokio::task::LocalSet::new());
        let rt = |_| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let (rt_one, rt_two) = (rt(1), rt(2));
        let (first, first_polls, _) = probe(false);
        let number_one = one.block_on(&rt_one, async move {
            let number = insert(&ensure().expect("room"), first).expect("room");
            settle().await;
            number
        });
        assert_eq!(first_polls.get(), 1);
        // The second runtime's session is polled there, while the first
        // runtime (and its driver) is still alive but not running.
        let (second, second_polls, _) = probe(false);
        let number_two = two.block_on(&rt_two, async move {
            let number = insert(&ensure().expect("room"), second).expect("room");
            settle().await;
            number
        });
        assert_eq!(second_polls.get(), 1, "polled by its own runtime's driver");
        assert_ne!(number_one & (MAX_DRIVERS as u32 - 1), number_two & (MAX_DRIVERS as u32 - 1));
        two.block_on(&rt_two, async move {
            waker(number_two).wake();
            settle().await;
        });
        assert_eq!(second_polls.get(), 2);
        assert_eq!(first_polls.get(), 1);
    }
}
