//! The sessions' driver: one task per worker thread that runs the turns of
//! that worker's sessions when something wakes them, where each session
//! had a tokio task of its own (128 bytes of an idle session's memory:
//! benches/README.md, "Idle memory").
//!
//! A session's waker names it by number, `(driver, index)`, and holds no
//! memory: waking it, from any thread, puts the index on its driver's
//! list of woken sessions ([`Shared`]) and wakes the driver's task, which
//! then polls each session on the list. The driver's table of sessions
//! ([`Local`]) holds them for the worker's life, as its tokio runtime held
//! their tasks: when the runtime drops the driver's task, the sessions go
//! with it.
//!
//! A waker that outlives its session (in a channel the session read, say)
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
    /// One turn of the session with `waker`, as its own task's poll would
    /// run it: `None` when it is mid-turn (it cannot be, on one thread),
    /// `Some(Ready)` once it is done.
    fn poll_task(&self, waker: &Waker) -> Option<Poll<()>>;
}

/// How many drivers may live at once: one per worker thread that runs
/// sessions. A driver's number goes back for reuse when its worker's
/// runtime ends.
const MAX_DRIVERS: usize = 4096;

/// The bits of a waker's number that name the driver; the rest name the
/// session's index in it.
const DRIVER_BITS: u32 = MAX_DRIVERS.trailing_zeros();

/// The drivers' shared halves, by number: each is made the first time its
/// number is taken, and stays for the process (a few dozen bytes).
static DRIVERS: [OnceLock<Shared>; MAX_DRIVERS] = [const { OnceLock::new() }; MAX_DRIVERS];

/// Driver numbers: the next never taken, and those given back.
static NUMBERS: Mutex<(usize, Vec<usize>)> = Mutex::new((0, Vec::new()));

thread_local! {
    /// This thread's driver, while its task lives.
    static CURRENT: RefCell<Weak<Local>> = const { RefCell::new(Weak::new()) };
    /// Its number, for the wakers of this thread's sessions.
    static NUMBER: Cell<Option<usize>> = const { Cell::new(None) };
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

/// A session's waker: its number, `driver + MAX_DRIVERS * index`, as the
/// waker's data, never dereferenced.
static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_raw, wake_raw, wake_raw, drop_raw);

fn clone_raw(data: *const ()) -> RawWaker {
    RawWaker::new(data, &VTABLE)
}

fn wake_raw(data: *const ()) {
    let number = data as usize;
    let (driver, index) = (number & (MAX_DRIVERS - 1), number >> DRIVER_BITS);
    if let (Some(shared), Ok(index)) = (DRIVERS[driver].get(), u32::try_from(index)) {
        shared.wake(index);
    }
}

fn drop_raw(_: *const ()) {}

/// The waker of the session at `index` of driver `driver`: the crate's
/// one `unsafe` (std has no safe way to make a waker that is a number
/// rather than an `Arc`, and an `Arc` a session would cost what its own
/// task did).
#[allow(unsafe_code, reason = "a waker that is a number: see above")]
fn waker_of(driver: usize, index: u32) -> Waker {
    let number = driver | (index as usize) << DRIVER_BITS;
    // SAFETY: the vtable's functions meet `RawWaker`'s contract for any
    // data: they read it as a number and never dereference it, and it
    // needs no freeing (nor does a clone).
    unsafe { Waker::from_raw(RawWaker::new(std::ptr::without_provenance(number), &VTABLE)) }
}

/// The waker of this thread's session at `index`; `None` once the
/// thread's driver is gone (its runtime is torn down).
pub(super) fn waker(index: u32) -> Option<Waker> {
    NUMBER.try_with(Cell::get).ok().flatten().map(|driver| waker_of(driver, index))
}

/// Wakes this thread's session at `index`.
pub(super) fn wake(index: u32) {
    if let Some(waker) = waker(index) {
        waker.wake();
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

/// Why a session could not be put in a driver: too many workers run
/// sessions at once ([`MAX_DRIVERS`]), or too many sessions are on this
/// one for a waker's number (on a 32-bit target, over a million).
#[derive(Debug)]
pub(crate) struct NoRoom;

/// This thread's driver, started if it has none, if it has room for one
/// more session: a session checks before it starts, so that it does not
/// open only to find no room ([`insert`]).
pub(super) fn ensure() -> Result<Rc<Local>, NoRoom> {
    let local = match CURRENT.try_with(|current| current.borrow().upgrade()) {
        Ok(Some(local)) => local,
        Ok(None) => start()?,
        Err(_) => return Err(NoRoom),
    };
    if local.free.borrow().is_empty() && local.sessions.borrow().len() >= MAX_INDEX {
        log::error!("sockjs: {MAX_INDEX} sessions on one worker already; no more can start there");
        return Err(NoRoom);
    }
    Ok(local)
}

/// The most sessions one driver holds: as many as a waker's number can
/// name beside the driver (on a 32-bit target, a million).
const MAX_INDEX: usize =
    if usize::BITS - DRIVER_BITS >= 32 { u32::MAX as usize } else { usize::MAX >> DRIVER_BITS };

/// Puts `task` in this thread's driver (starting the driver first if it
/// has none) and lists it as woken, so that the driver polls it once as a
/// new task would be; returns its index there.
pub(super) fn insert(task: Rc<dyn Task>) -> Result<u32, NoRoom> {
    let local = ensure()?;
    let index = match local.free.borrow_mut().pop() {
        Some(index) => index,
        None => {
            let len = local.sessions.borrow().len();
            let mut sessions = local.sessions.borrow_mut();
            if sessions.len() == sessions.capacity() {
                // Grows by an eighth, not double: the table's slack is part
                // of what an idle session costs.
                let more = (sessions.len() / 8).max(64);
                sessions.reserve_exact(more);
            }
            sessions.push(None);
            len as u32
        }
    };
    local.sessions.borrow_mut()[index as usize] = Some(task);
    local.shared.wake(index);
    Ok(index)
}

/// Starts this thread's driver: takes a number, spawns the task.
fn start() -> Result<Rc<Local>, NoRoom> {
    let number = {
        let mut numbers = NUMBERS.lock().unwrap_or_else(PoisonError::into_inner);
        match numbers.1.pop() {
            Some(number) => number,
            None if numbers.0 < MAX_DRIVERS => {
                numbers.0 += 1;
                numbers.0 - 1
            }
            None => {
                log::error!(
                    "sockjs: more than {MAX_DRIVERS} worker threads run sessions at once; this one cannot"
                );
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
    CURRENT.with(|current| *current.borrow_mut() = Rc::downgrade(&local));
    NUMBER.with(|n| n.set(Some(number)));
    actix::spawn(Driver(local.clone()));
    Ok(local)
}

/// How many sessions one poll of the driver's task polls before it lets
/// the worker run its other tasks (it is woken again at once).
const BATCH: usize = 64;

/// The driver's task.
struct Driver(Rc<Local>);

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let local = &*self.0;
        local.shared.task.register(cx.waker());
        for _ in 0..BATCH {
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
            let waker = waker_of(local.number, index);
            // Each session's turn gets tokio's budget afresh, as its own
            // task's poll would: one session's timers and channels do not
            // use up the next one's.
            let mut turn =
                tokio::task::unconstrained(std::future::poll_fn(|_| Poll::Ready(task.poll_task(&waker))));
            let polled = catch_unwind(AssertUnwindSafe(|| Pin::new(&mut turn).poll(cx)));
            drop(turn);
            match polled {
                Ok(Poll::Ready(Some(Poll::Pending))) => {}
                Ok(Poll::Ready(None) | Poll::Pending) => waker.wake_by_ref(),
                // Done, or its turn panicked (the slot dropped it, and it
                // logged the panic).
                Ok(Poll::Ready(Some(Poll::Ready(())))) | Err(_) => local.remove(index),
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
            if std::ptr::eq(current.borrow().as_ptr(), Rc::as_ptr(&self.0)) {
                *current.borrow_mut() = Weak::new();
            }
        });
        // The sessions go with the worker's runtime, as their own tasks
        // did, one by one outside the table's borrow.
        let sessions = std::mem::take(&mut *local.sessions.borrow_mut());
        for session in sessions {
            drop(session);
        }
        let _ = NUMBER.try_with(|n| {
            if n.get() == Some(local.number) {
                n.set(None);
            }
        });
        local.shared.reset();
        NUMBERS.lock().unwrap_or_else(PoisonError::into_inner).1.push(local.number);
    }
}
