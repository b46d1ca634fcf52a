//! A small unbounded queue between tasks: a `Mutex`'d `VecDeque` and the
//! receiver's waker.
//!
//! Every session holds one for its commands and every WebSocket one for its
//! frames, mostly idle. A tokio channel allocates a block of 32 slots and
//! its cache-padded state up front (~500 bytes and more); this costs one
//! small allocation. One item waits in place: the `VecDeque` only
//! allocates when two or more are queued at once (an idle session's queues
//! then hold no buffer, and a message passed on at once costs no
//! allocation), and it gives its memory back after a burst (the manager's
//! notes queue, drained in bursts for good, keeps it: `Rx::keep_buffer`).
//!
//! Sending never blocks; items can carry a weight, and a sender that must
//! not pile items up waits for the queue to drain (`Tx::poll_room`): a
//! session's client messages are held back that way.

use std::{
    collections::VecDeque,
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    task::{Context, Poll, Waker},
};

struct Shared<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    /// The oldest item, when `rest` is empty or it was queued before them.
    first: Option<T>,
    /// Further items, in order, all queued after `first`; boxed, as most
    /// queues never need it (8 bytes in place of 32).
    #[expect(clippy::box_collection, reason = "boxed to keep idle queues small, see above")]
    rest: Option<Box<VecDeque<T>>>,
    /// Live senders (the receiver sees the end when none is left),
    /// [`RECEIVER_GONE`], [`MUTED`], [`SENDER_ALARM`], [`TURN_TAKEN`],
    /// [`MARKED`] and [`KEEPS_BUFFER`]; one word, so that the state keeps
    /// its size with `load` beside it.
    ends: u32,
    /// What the queued items weigh, as the sender declared
    /// ([`Tx::send_weighed`]; saturates at `u32::MAX`).
    load: u32,
    /// Wakes the receiver when something is queued or the last sender leaves.
    receiver: Option<Waker>,
    /// Senders waiting for room, for the turn or for the receiver's end.
    /// Boxed: most queues never have one (8 bytes in place of 48).
    waiting: Option<Box<Waiting>>,
    /// When the receiver ([`Rx::alarm`]) or a sender ([`Tx::alarm`]) last
    /// asked to be woken; a [`Nudger`] set for another time is stale and
    /// wakes nobody.
    alarm: u64,
}

const _: () = assert!(std::mem::size_of::<VecDeque<u64>>() == 32);
const _: () = assert!(std::mem::size_of::<Option<Box<VecDeque<u64>>>>() == 8);
const _: () = assert!(std::mem::size_of::<Waiting>() == 48);

/// Senders waiting on a queue.
#[derive(Default)]
struct Waiting {
    /// Waiting for room ([`Tx::poll_room`]): woken when the queue is empty
    /// again or the receiver is gone.
    room: Vec<Waker>,
    /// Waiting for the queue's turn ([`Tx::turn`]). Boxed: only a
    /// session's command queue has one (an HTTP receiver's queue holds a
    /// `Waiting` for its end, 16 bytes more with it in place).
    line: Option<Box<Line>>,
    /// Waiting for the receiver to go ([`Tx::poll_closed`]); also what a
    /// sender's alarm wakes ([`Tx::alarm`]).
    closed: Option<Waker>,
}

/// Senders waiting for a queue's turn, in the order they came, each with
/// its ticket: only the first is woken when the turn is free. Woken all at
/// once, thousands of requests to one session each looked through the
/// others at every wake-up (benches/README.md). The price: a turn that
/// comes free waits for the first in line's worker, busy or not, where
/// any woken one could take it; each wait still ends at its request's
/// timeout.
#[derive(Default)]
struct Line {
    waiting: VecDeque<(u64, Waker)>,
    /// The next ticket.
    tickets: u64,
}

impl Line {
    /// Gives its buffer back once empty after a burst, as [`State::pop`]
    /// does for items (a review: 4,000 sends left 96 KiB behind).
    fn shrink(&mut self) {
        if self.waiting.is_empty() && self.waiting.capacity() > 64 {
            self.waiting = VecDeque::new();
        }
    }
}

impl Waiting {
    /// Wakes every sender that waits, as the receiver goes.
    fn wake_all(waiting: Option<Box<Self>>) {
        if let Some(waiting) = waiting {
            let Self { room, line, closed } = *waiting;
            let line = line.into_iter().flat_map(|line| line.waiting).map(|(_, waker)| waker);
            room.into_iter().chain(line).chain(closed).for_each(Waker::wake);
        }
    }

    /// The waker of the first in line, to wake as the turn comes free.
    fn first_in_line(waiting: Option<&Self>) -> Option<Waker> {
        waiting.and_then(|w| w.line.as_ref()?.waiting.front()).map(|(_, waker)| waker.clone())
    }
}

/// The receiver is gone (a bit of [`State::ends`]).
const RECEIVER_GONE: u32 = 1 << 31;

/// The receiver's waker wakes no one until the receiver next finds the
/// queue empty (a bit of [`State::ends`]; see [`Rx::mute`]).
const MUTED: u32 = 1 << 30;

/// The alarm was set by a sender ([`Tx::alarm`]) and wakes the one that
/// waits in [`Tx::poll_closed`], not the receiver (a bit of
/// [`State::ends`]).
const SENDER_ALARM: u32 = 1 << 29;

/// A sender holds the queue's turn ([`Tx::turn`]; a bit of
/// [`State::ends`]).
const TURN_TAKEN: u32 = 1 << 28;

/// A mark the senders read ([`Tx::set_mark`]; a bit of [`State::ends`]).
const MARKED: u32 = 1 << 27;

/// The queue keeps its buffer once empty ([`Rx::keep_buffer`]; a bit of
/// [`State::ends`]).
const KEEPS_BUFFER: u32 = 1 << 26;

impl<T> State<T> {
    fn senders(&self) -> u32 {
        self.ends & !(RECEIVER_GONE | MUTED | SENDER_ALARM | TURN_TAKEN | MARKED | KEEPS_BUFFER)
    }

    fn receiver_gone(&self) -> bool {
        self.ends & RECEIVER_GONE != 0
    }

    /// The receiver's waker, taken to wake it, unless it is muted.
    fn take_receiver(&mut self) -> Option<Waker> {
        if self.ends & MUTED != 0 {
            None
        } else {
            self.receiver.take()
        }
    }

    fn push(&mut self, item: T) {
        match &mut self.rest {
            Some(rest) if !rest.is_empty() => rest.push_back(item),
            _ if self.first.is_none() => self.first = Some(item),
            rest => rest.get_or_insert_default().push_back(item),
        }
    }

    fn pop(&mut self) -> Option<T> {
        if let Some(item) = self.first.take() {
            return Some(item);
        }
        let rest = self.rest.as_mut()?;
        let item = rest.pop_front()?;
        if rest.is_empty() && rest.capacity() > 64 && self.ends & KEEPS_BUFFER == 0 {
            // A burst is over: give its memory back.
            self.rest = None;
        }
        Some(item)
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.as_ref().map_or(0, |rest| rest.len())
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the receiver, if it waits, with no item.
    fn nudge(&self) {
        self.wake(State::take_receiver);
    }

    /// Wakes the receiver, if it waits and its alarm is still set for `at`;
    /// a sender's alarm ([`Tx::alarm`]) wakes the sender waiting in
    /// [`Tx::poll_closed`] instead.
    fn ring(&self, at: u64) {
        self.wake(|state| {
            if state.alarm != at {
                None
            } else if state.ends & SENDER_ALARM != 0 {
                state.waiting.as_mut().and_then(|w| w.closed.take())
            } else {
                state.take_receiver()
            }
        });
    }

    /// Wakes the waker `take` takes from the state, if any; the wake-up
    /// runs outside the lock.
    fn wake(&self, take: impl FnOnce(&mut State<T>) -> Option<Waker>) {
        let waker = take(&mut self.lock());
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A new queue.
pub(crate) fn queue<T>() -> (Tx<T>, Rx<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            first: None,
            rest: None,
            ends: 1,
            load: 0,
            receiver: None,
            waiting: None,
            alarm: 0,
        }),
    });
    (Tx(shared.clone()), Rx(shared))
}

/// The sending end; clones send into the same queue.
pub(crate) struct Tx<T>(Arc<Shared<T>>);

impl<T> Tx<T> {
    /// Queues an item; gives it back if the receiver is gone.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        self.send_weighed(item, 0)
    }

    /// Queues an item without waking the receiver, unless `wake_at` or more
    /// items are waiting then: for items the receiver reads whenever it
    /// next runs anyway, at no cost of a wake-up each (a wake-up across
    /// threads is a system call on each side). Gives the item back if the
    /// receiver is gone.
    pub(crate) fn send_quietly(&self, item: T, wake_at: usize) -> Result<(), T> {
        self.push(item, 0, wake_at, false)
    }

    /// Queues an item with its weight and does not wake the receiver: for
    /// a sender that runs the receiver itself right after. Gives the item
    /// back if the receiver is gone.
    pub(crate) fn send_unwoken(&self, item: T, weight: usize) -> Result<(), T> {
        self.push(item, weight, usize::MAX, false)
    }

    /// Queues an item that adds `weight` to the queue's [`load`](Self::load)
    /// until the receiver takes it; gives it back if the receiver is gone.
    pub(crate) fn send_weighed(&self, item: T, weight: usize) -> Result<(), T> {
        self.push(item, weight, 1, false)
    }

    /// [`Self::send_quietly`] while the queue is unmarked, [`Self::send`]
    /// while it is marked ([`Self::set_mark`]), decided under one lock.
    pub(crate) fn send_quietly_unless_marked(&self, item: T, wake_at: usize) -> Result<(), T> {
        self.push(item, 0, wake_at, true)
    }

    /// Queues an item with its weight, and wakes the receiver once
    /// `wake_at` or more items wait (or at once, with `marked_wakes`, while
    /// the queue is marked).
    fn push(&self, item: T, weight: usize, wake_at: usize, marked_wakes: bool) -> Result<(), T> {
        let waker = {
            let mut state = self.0.lock();
            if state.receiver_gone() {
                return Err(item);
            }
            state.push(item);
            state.load = state.load.saturating_add(u32::try_from(weight).unwrap_or(u32::MAX));
            let wake_at = if marked_wakes && state.ends & MARKED != 0 { 1 } else { wake_at };
            if state.len() < wake_at {
                return Ok(());
            }
            state.take_receiver()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Sets or clears the queue's mark, which every sender reads
    /// ([`Self::send_quietly_unless_marked`]): the manager's notes queue is
    /// marked while a relay watches its groups.
    pub(crate) fn set_mark(&self, on: bool) {
        let mut state = self.0.lock();
        if on {
            state.ends |= MARKED;
        } else {
            state.ends &= !MARKED;
        }
    }

    /// Whether the queue is marked ([`Self::set_mark`]).
    #[cfg(test)]
    fn marked(&self) -> bool {
        self.0.lock().ends & MARKED != 0
    }

    /// Whether the receiver is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.lock().receiver_gone()
    }

    /// Wakes the receiver, if it waits, with no item: for a receiver that
    /// also waits for something else than this queue's items.
    pub(crate) fn nudge(&self) {
        self.0.nudge();
    }

    /// Ready while the queued items weigh at most `limit` (or the receiver
    /// is gone); otherwise pending until the receiver has taken every item.
    /// For senders that should wait rather than pile items up.
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>, limit: usize) -> Poll<()> {
        let mut state = self.0.lock();
        if state.receiver_gone() || state.load as usize <= limit {
            return Poll::Ready(());
        }
        let room = &mut state.waiting.get_or_insert_default().room;
        if !room.iter().any(|w| w.will_wake(cx.waker())) {
            room.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Waits for the queue's turn, one sender at a time, first come first
    /// served: ready with a [`Turn`] that gives it back when dropped, or
    /// at once (with no turn to give back) when the receiver is gone. A
    /// wait dropped before its turn leaves the line.
    pub(crate) fn turn(&self) -> TurnWait<'_, T> {
        TurnWait { tx: self, ticket: None }
    }

    /// Ready once the receiver is gone. One task at a time may wait: the
    /// last to poll is the one woken.
    pub(crate) fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.0.lock();
        if state.receiver_gone() {
            return Poll::Ready(());
        }
        let closed = &mut state.waiting.get_or_insert_default().closed;
        if !closed.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *closed = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// [`Rx::alarm`] for the sender that waits in [`Tx::poll_closed`]:
    /// the handle wakes that sender at `at`, with nothing to say but the
    /// time (a session timing its receiver's heartbeats). One alarm per
    /// queue: the last set, by either end, is the one that rings.
    pub(crate) fn alarm(&self, at: u64) -> Nudger<T> {
        let mut state = self.0.lock();
        state.alarm = at;
        state.ends |= SENDER_ALARM;
        drop(state);
        Nudger(Arc::downgrade(&self.0))
    }

    /// What the queued items weigh (`usize::MAX` past `u32::MAX`).
    pub(crate) fn load(&self) -> usize {
        match self.0.lock().load {
            u32::MAX => usize::MAX,
            load => load as usize,
        }
    }
}

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        self.0.lock().ends += 1;
        Self(self.0.clone())
    }
}

impl<T> Drop for Tx<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.0.lock();
            state.ends -= 1;
            if state.senders() > 0 {
                return;
            }
            state.take_receiver()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> fmt::Debug for Tx<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx").field("closed", &self.is_closed()).finish()
    }
}

/// A wait for a queue's turn ([`Tx::turn`]).
pub(crate) struct TurnWait<'a, T> {
    tx: &'a Tx<T>,
    /// Its place in the line, once it waits there.
    ticket: Option<u64>,
}

impl<T> std::future::Future for TurnWait<'_, T> {
    type Output = Turn<T>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Turn<T>> {
        let this = self.get_mut();
        let mut state = this.tx.0.lock();
        if state.receiver_gone() {
            // The line went with the receiver (`Waiting::wake_all`).
            this.ticket = None;
            return Poll::Ready(Turn(None));
        }
        let line = state.waiting.as_mut().and_then(|w| w.line.as_deref_mut());
        let first = match (this.ticket, line) {
            (None, line) => line.is_none_or(|line| line.waiting.is_empty()),
            (Some(ticket), Some(line)) => line.waiting.front().is_some_and(|(t, _)| *t == ticket),
            (Some(_), None) => true,
        };
        if first && state.ends & TURN_TAKEN == 0 {
            state.ends |= TURN_TAKEN;
            if this.ticket.take().is_some() {
                if let Some(line) = state.waiting.as_mut().and_then(|w| w.line.as_deref_mut()) {
                    line.waiting.pop_front();
                    line.shrink();
                }
            }
            return Poll::Ready(Turn(Some(this.tx.0.clone())));
        }
        let line = state.waiting.get_or_insert_default().line.get_or_insert_default();
        match this.ticket {
            Some(ticket) => {
                // Woken again before its turn (the first in line is woken
                // as the turn comes free): its waker may have changed.
                if let Some((_, waker)) = line.waiting.iter_mut().find(|(t, _)| *t == ticket) {
                    if !waker.will_wake(cx.waker()) {
                        *waker = cx.waker().clone();
                    }
                }
            }
            None => {
                let ticket = line.tickets;
                line.tickets += 1;
                line.waiting.push_back((ticket, cx.waker().clone()));
                this.ticket = Some(ticket);
            }
        }
        Poll::Pending
    }
}

impl<T> Drop for TurnWait<'_, T> {
    /// Leaves the line; if it was first and the turn is free, the next in
    /// line is woken to take it.
    fn drop(&mut self) {
        let Some(ticket) = self.ticket.take() else { return };
        let next = {
            let mut state = self.tx.0.lock();
            let free = state.ends & TURN_TAKEN == 0;
            let Some(waiting) = state.waiting.as_mut() else { return };
            let Some(line) = waiting.line.as_deref_mut() else { return };
            let Some(at) = line.waiting.iter().position(|(t, _)| *t == ticket) else { return };
            line.waiting.remove(at);
            line.shrink();
            if at == 0 && free {
                Waiting::first_in_line(Some(waiting))
            } else {
                None
            }
        };
        if let Some(waker) = next {
            waker.wake();
        }
    }
}

/// A queue's turn ([`Tx::turn`]), given back when dropped.
pub(crate) struct Turn<T>(Option<Arc<Shared<T>>>);

impl<T> Drop for Turn<T> {
    fn drop(&mut self) {
        let Some(shared) = self.0.take() else { return };
        let next = {
            let mut state = shared.lock();
            state.ends &= !TURN_TAKEN;
            Waiting::first_in_line(state.waiting.as_deref())
        };
        if let Some(waker) = next {
            waker.wake();
        }
    }
}

impl<T> fmt::Debug for Turn<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Turn").field("held", &self.0.is_some()).finish()
    }
}

/// The receiving end.
pub(crate) struct Rx<T>(Arc<Shared<T>>);

impl<T> Rx<T> {
    /// The next item; `None` once every sender is gone and all is taken.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.poll_recv_weighed(cx, |_| 0)
    }

    /// Mutes the receiver's waker: what is sent, and any nudge or alarm,
    /// wakes no one until a poll finds the queue empty (the waker is kept,
    /// so that poll need not clone it again). For a receiver that runs its
    /// sender in place and then polls again (a wake-up of its own task
    /// would cost it a second poll for nothing).
    pub(crate) fn mute(&mut self) {
        self.0.lock().ends |= MUTED;
    }

    /// Keeps the queue's buffer once it empties, where a queue gives it
    /// back after a burst: for a queue that is drained in bursts of
    /// hundreds for good (the manager's notes), which would otherwise grow
    /// its buffer again, copying, in every burst.
    pub(crate) fn keep_buffer(&mut self) {
        self.0.lock().ends |= KEEPS_BUFFER;
    }

    /// The capacity of the buffer behind the first item (0 without one).
    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.0.lock().rest.as_ref().map_or(0, |rest| rest.capacity())
    }

    /// Leaves the task's waker with the queue, without taking anything,
    /// whether or not senders remain, and unmuted: for a receiver done
    /// with the items that still waits for its alarm ([`Rx::alarm`]).
    pub(crate) fn watch(&mut self, cx: &mut Context<'_>) {
        let mut state = self.0.lock();
        state.ends &= !MUTED;
        if !state.receiver.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            state.receiver = Some(cx.waker().clone());
        }
    }

    /// The next unweighed item if one is queued now. Leaves the waker of
    /// the last `poll_recv` in place, so that a task polling this queue is
    /// still woken by what comes later.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        let mut state = self.0.lock();
        let item = state.pop()?;
        if state.len() == 0 {
            state.load = 0;
        }
        Some(item)
    }

    /// The next item, taking `weight(item)` off the queue's load (the
    /// weight it was sent with).
    pub(crate) fn poll_recv_weighed(
        &mut self,
        cx: &mut Context<'_>,
        weight: impl FnOnce(&T) -> usize,
    ) -> Poll<Option<T>> {
        self.poll_recv_more(cx, weight).map(|next| next.map(|(item, _)| item))
    }

    /// [`Self::poll_recv_weighed`], with whether more items were queued
    /// behind it: a receiver that is polled again after an item anyway
    /// (a stream that returns one) need not call again only to find the
    /// queue empty and register its waker.
    pub(crate) fn poll_recv_more(
        &mut self,
        cx: &mut Context<'_>,
        weight: impl FnOnce(&T) -> usize,
    ) -> Poll<Option<(T, bool)>> {
        let mut state = self.0.lock();
        if let Some(item) = state.pop() {
            if state.load != u32::MAX {
                let weight = u32::try_from(weight(&item)).unwrap_or(u32::MAX);
                debug_assert!(weight <= state.load, "an item weighs more than the queue's load");
                state.load = state.load.saturating_sub(weight);
            }
            let more = state.len() > 0;
            let waiting = if more {
                None
            } else {
                // Nothing queued weighs nothing, whatever the weights said.
                state.load = 0;
                state.waiting.as_mut().map(|w| std::mem::take(&mut w.room))
            };
            drop(state);
            if let Some(wakers) = waiting.filter(|wakers| !wakers.is_empty()) {
                wake_all(wakers);
            }
            return Poll::Ready(Some((item, more)));
        }
        if state.senders() == 0 {
            return Poll::Ready(None);
        }
        state.ends &= !MUTED;
        if !state.receiver.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            state.receiver = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl<T> Rx<T> {
    /// Sets the receiver's alarm for `at` (a time in the caller's units,
    /// not 0), in place of any earlier one, and answers a handle that
    /// rings it without keeping the queue open. A handle of an earlier
    /// alarm no longer wakes the receiver: a timer that cannot take back
    /// what it was given (a heap of deadlines) leaves no spurious wake-up.
    pub(crate) fn alarm(&self, at: u64) -> Nudger<T> {
        let mut state = self.0.lock();
        state.alarm = at;
        state.ends &= !SENDER_ALARM;
        drop(state);
        Nudger(Arc::downgrade(&self.0))
    }
}

/// Wakes a queue's receiver (as if an item had come) at its alarm, or the
/// sender waiting in [`Tx::poll_closed`] at a sender's alarm, while the
/// queue lives; holds no sender, so the receiver still sees the senders
/// go.
pub(crate) struct Nudger<T>(Weak<Shared<T>>);

impl<T> Nudger<T> {
    /// Whether the queue still lives (some end of it is held).
    pub(crate) fn alive(&self) -> bool {
        self.0.strong_count() > 0
    }

    /// Wakes the receiver (the closed watcher, at a sender's alarm), if it
    /// waits and the alarm is still set for `at`.
    pub(crate) fn ring(&self, at: u64) {
        if let Some(shared) = self.0.upgrade() {
            shared.ring(at);
        }
    }
}

impl<T> fmt::Debug for Nudger<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Nudger")
    }
}

impl<T> Rx<T> {
    /// Goes as if dropped if nothing is queued, in one step with the look:
    /// a sender then gets its item back, and no item can come between the
    /// look and the end. Answers whether it went.
    pub(crate) fn close_if_empty(&mut self) -> bool {
        let waiting = {
            let mut state = self.0.lock();
            if state.len() != 0 {
                return false;
            }
            state.ends |= RECEIVER_GONE;
            state.load = 0;
            state.waiting.take()
        };
        Waiting::wake_all(waiting);
        true
    }

    /// Goes as if dropped, and answers what was queued, in order: in one
    /// step, so that nothing a sender sends can fall between the last
    /// look and the end, taken by no one while the sender believes it
    /// delivered (it gets the item back, as from a dropped receiver).
    /// The queue stays closed.
    pub(crate) fn close(&mut self) -> impl Iterator<Item = T> {
        let (first, rest, waiting) = {
            let mut state = self.0.lock();
            state.ends |= RECEIVER_GONE;
            state.load = 0;
            (state.first.take(), state.rest.take(), state.waiting.take())
        };
        Waiting::wake_all(waiting);
        first.into_iter().chain(rest.into_iter().flat_map(|rest| *rest))
    }
}

impl<T> Drop for Rx<T> {
    fn drop(&mut self) {
        // Dropped outside the lock: an item may own another queue's end.
        drop(self.close());
    }
}

impl<T> fmt::Debug for Rx<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rx").field("queued", &self.0.lock().len()).finish()
    }
}

/// Wakes the senders that waited for room: out of line, as a queue is
/// seldom full (the echo's code stays shorter).
#[cold]
#[inline(never)]
fn wake_all(wakers: Vec<Waker>) {
    wakers.into_iter().for_each(Waker::wake);
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    #[test]
    fn items_in_order_then_the_end_when_every_sender_is_gone() {
        let (tx, mut rx) = queue();
        let tx2 = tx.clone();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(tx.send(1).is_ok() && tx2.send(2).is_ok());
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(1)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(2)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        drop(tx);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending, "one sender is left");
        drop(tx2);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn closing_takes_what_is_queued_and_refuses_what_comes_after() {
        // What a response's give-back relies on: once it has taken the
        // queue's items, a frame the session writes comes back to it
        // rather than waiting where no one reads it.
        let (tx, mut rx) = queue();
        assert!(tx.send(1).is_ok() && tx.send(2).is_ok() && tx.send(3).is_ok());
        assert_eq!(rx.close().collect::<Vec<_>>(), [1, 2, 3]);
        assert!(tx.is_closed());
        assert_eq!(tx.send(4), Err(4));
        assert_eq!(rx.close().count(), 0);
        // A sender waiting for the receiver's end hears it at the close.
        let (tx, mut rx) = queue::<u8>();
        let (count, waker) = Count::waker();
        assert_eq!(tx.poll_closed(&mut Context::from_waker(&waker)), Poll::Pending);
        assert_eq!(rx.close().count(), 0);
        assert_eq!(count.wakes(), 1);
        assert_eq!(tx.poll_closed(&mut Context::from_waker(Waker::noop())), Poll::Ready(()));
    }

    #[test]
    fn closing_if_empty_leaves_a_queue_with_items_and_ends_an_empty_one() {
        // What an expiring session relies on: it ends only if nothing came
        // since its last look, and whatever comes after is refused.
        let (tx, mut rx) = queue();
        assert!(tx.send(1).is_ok());
        assert!(!rx.close_if_empty());
        assert!(!tx.is_closed());
        assert_eq!(rx.try_recv(), Some(1));
        let (count, waker) = Count::waker();
        assert_eq!(tx.poll_closed(&mut Context::from_waker(&waker)), Poll::Pending);
        assert!(rx.close_if_empty());
        assert!(tx.is_closed());
        assert_eq!(count.wakes(), 1, "a sender waiting for the end hears it");
        assert_eq!(tx.send(2), Err(2));
        assert!(rx.close_if_empty(), "closed stays closed");
    }

    #[test]
    fn order_holds_across_the_inline_slot_and_one_item_needs_no_buffer() {
        let (tx, mut rx) = queue();
        let mut cx = Context::from_waker(Waker::noop());
        let mut expected = Vec::new();
        let mut got = Vec::new();
        // Pushes and pops interleaved so that items go through the slot and
        // the deque in every order.
        let mut n = 0;
        for round in 0..20 {
            for _ in 0..(round % 4) {
                n += 1;
                tx.send(n).unwrap();
                expected.push(n);
            }
            for _ in 0..(round % 3) {
                if let Poll::Ready(Some(v)) = rx.poll_recv(&mut cx) {
                    got.push(v);
                }
            }
        }
        while let Poll::Ready(Some(v)) = rx.poll_recv(&mut cx) {
            got.push(v);
        }
        assert_eq!(got, expected);

        let (tx, mut rx) = queue();
        for i in 0..100 {
            tx.send(i).unwrap();
            assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(i)));
        }
        assert!(rx.0.lock().rest.is_none(), "one item at a time never allocates");
    }

    #[test]
    fn the_load_is_what_is_queued_and_not_yet_taken() {
        let (tx, mut rx) = queue::<&str>();
        let mut cx = Context::from_waker(Waker::noop());
        for text in ["abc", "de", "f"] {
            tx.send_weighed(text, text.len()).unwrap();
        }
        tx.send("unweighed").unwrap();
        assert_eq!(tx.load(), 6);
        assert_eq!(rx.poll_recv_weighed(&mut cx, |t| t.len()), Poll::Ready(Some("abc")));
        assert_eq!(tx.load(), 3);
        assert_eq!(rx.poll_recv_weighed(&mut cx, |t| t.len()), Poll::Ready(Some("de")));
        assert_eq!(rx.poll_recv_weighed(&mut cx, |t| t.len()), Poll::Ready(Some("f")));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some("unweighed")));
        assert_eq!(tx.load(), 0);
        tx.send_weighed("huge", usize::MAX).unwrap();
        assert_eq!(tx.load(), usize::MAX, "saturates");
        let tx2 = tx.clone();
        drop(tx);
        assert!(!tx2.is_closed(), "a clone keeps the queue open");
        drop(rx);
        assert!(tx2.is_closed());
    }

    #[test]
    fn a_marked_queue_still_ends_with_its_last_sender() {
        let (tx, mut rx) = queue::<u8>();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(!tx.marked());
        tx.set_mark(true);
        let tx2 = tx.clone();
        assert!(tx2.marked(), "every sender reads the mark");
        drop(tx);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending, "a sender is left");
        tx2.set_mark(false);
        assert!(!tx2.marked());
        tx2.set_mark(true);
        drop(tx2);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(None), "the mark is not a sender");
    }

    #[test]
    fn quiet_items_wake_the_receiver_only_in_numbers() {
        let (tx, mut rx) = queue();
        let (count, waker) = Count::waker();
        let mut cx = Context::from_waker(&waker);
        let wakes = || count.wakes();
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        tx.send_quietly(1, 3).unwrap();
        tx.send_quietly(2, 3).unwrap();
        assert_eq!(wakes(), 0, "two waiting, fewer than three");
        tx.send_quietly(3, 3).unwrap();
        assert_eq!(wakes(), 1, "the third wakes");
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(1)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(2)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(3)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        tx.send_quietly(4, 3).unwrap();
        tx.send(5).unwrap();
        assert_eq!(wakes(), 2, "a plain send wakes, and the quiet item is read first");
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(4)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(5)));
        drop(rx);
        assert_eq!(tx.send_quietly(6, 3), Err(6));
    }

    #[test]
    fn quiet_unless_marked_wakes_at_once_only_while_marked() {
        let (tx, mut rx) = queue();
        let (count, waker) = Count::waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        tx.send_quietly_unless_marked(1, 3).unwrap(); // ok: the receiver is alive
        assert_eq!(count.wakes(), 0, "unmarked: quiet");
        tx.set_mark(true);
        tx.send_quietly_unless_marked(2, 3).unwrap(); // ok: the receiver is alive
        assert_eq!(count.wakes(), 1, "marked: wakes at once");
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(1)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(2)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        tx.set_mark(false);
        tx.send_quietly_unless_marked(3, 3).unwrap(); // ok: the receiver is alive
        assert_eq!(count.wakes(), 1, "unmarked again: quiet");
        drop(rx);
        assert_eq!(tx.send_quietly_unless_marked(4, 3), Err(4));
    }

    #[test]
    fn a_queue_that_keeps_its_buffer_keeps_it_after_a_burst() {
        let capacity = Rx::buffer_capacity;
        for keep in [false, true] {
            let (tx, mut rx) = queue();
            if keep {
                rx.keep_buffer();
            }
            for round in 0..2 {
                (0..300).for_each(|i| tx.send(i).unwrap()); // ok: the receiver is alive
                let taken: Vec<u32> = std::iter::from_fn(|| rx.try_recv()).collect();
                assert_eq!(taken, (0..300).collect::<Vec<_>>(), "round {round}: all, in order");
                if keep {
                    assert!(capacity(&rx) >= 299, "round {round}: kept {}", capacity(&rx));
                } else {
                    assert_eq!(capacity(&rx), 0, "round {round}: given back");
                }
            }
            drop(tx);
            let mut cx = Context::from_waker(Waker::noop());
            assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(None), "keeping the buffer is not a sender");
        }
    }

    /// A waker that counts its wakes.
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl Count {
        /// A counting waker, and its count to read.
        fn waker() -> (Arc<Self>, Waker) {
            let count = Arc::new(Self(0.into()));
            (count.clone(), Waker::from(count))
        }

        fn wakes(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[test]
    fn a_sender_waits_for_room_until_the_queue_is_drained() {
        let (tx, mut rx) = queue();
        let (count, waker) = Count::waker();
        let mut cx = Context::from_waker(&waker);
        let wakes = || count.wakes();
        assert!(tx.send_weighed("a", 60).is_ok() && tx.send_weighed("b", 60).is_ok());
        assert_eq!(tx.poll_room(&mut cx, 200), Poll::Ready(()), "120 is within 200");
        assert_eq!(tx.poll_room(&mut cx, 100), Poll::Pending);
        let weight = |item: &&str| if item.is_empty() { 0 } else { 60 };
        assert_eq!(rx.poll_recv_weighed(&mut cx, weight), Poll::Ready(Some("a")));
        assert_eq!(wakes(), 0, "not woken while an item waits");
        assert_eq!(rx.poll_recv_weighed(&mut cx, weight), Poll::Ready(Some("b")));
        assert_eq!(wakes(), 1, "woken once the queue is empty");
        assert_eq!(tx.poll_room(&mut cx, 100), Poll::Ready(()));
        // Weights that do not add up cannot leave a sender waiting forever.
        assert!(tx.send_weighed("c", 500).is_ok());
        assert_eq!(rx.poll_recv_weighed(&mut cx, |_| 0), Poll::Ready(Some("c")));
        assert_eq!(tx.load(), 0);
        // A receiver that goes wakes every waiting sender, which then has
        // room.
        let (other, other_waker) = Count::waker();
        assert!(tx.send_weighed("d", 500).is_ok());
        assert_eq!(tx.poll_room(&mut cx, 100), Poll::Pending);
        assert_eq!(tx.poll_room(&mut cx, 100), Poll::Pending, "registered once");
        assert_eq!(tx.poll_room(&mut Context::from_waker(&other_waker), 100), Poll::Pending);
        drop(rx);
        assert_eq!((wakes(), other.0.load(std::sync::atomic::Ordering::SeqCst)), (2, 1));
        assert_eq!(tx.poll_room(&mut cx, 100), Poll::Ready(()));
    }

    /// Polls a wait for the turn once.
    fn poll<T>(wait: &mut TurnWait<'_, T>, waker: &Waker) -> Poll<Turn<T>> {
        std::future::Future::poll(std::pin::Pin::new(wait), &mut Context::from_waker(waker))
    }

    #[test]
    fn one_sender_at_a_time_holds_the_turn() {
        let (tx, rx) = queue::<u8>();
        let tx2 = tx.clone();
        let (count, waker) = Count::waker();
        let Poll::Ready(first) = poll(&mut tx.turn(), &waker) else { panic!("the turn is free") };
        let mut second = tx2.turn();
        assert!(poll(&mut second, &waker).is_pending(), "taken");
        let mut third = tx.turn();
        assert!(poll(&mut third, &waker).is_pending(), "taken, by any sender");
        assert_eq!(count.wakes(), 0);
        drop(first);
        assert_eq!(count.wakes(), 1, "the first in line is woken once it is given back, alone");
        assert!(poll(&mut third, &waker).is_pending(), "not the first in line");
        let Poll::Ready(held) = poll(&mut second, &waker) else { panic!("its turn") };
        drop(rx);
        assert_eq!(count.wakes(), 2, "the one left in line hears the receiver go");
        assert!(
            matches!(poll(&mut third, &waker), Poll::Ready(Turn(None))),
            "no turn once the receiver is gone"
        );
        assert!(matches!(poll(&mut tx.turn(), &waker), Poll::Ready(Turn(None))));
        drop((held, second, third));
        // The turn's bit is no sender: the receiver's end is not held up.
        let (tx, mut rx) = queue::<u8>();
        let Poll::Ready(held) = poll(&mut tx.turn(), &waker) else { panic!("the turn is free") };
        drop(tx);
        assert_eq!(rx.poll_recv(&mut Context::from_waker(&waker)), Poll::Ready(None));
        drop(held);
    }

    #[test]
    fn the_turn_goes_in_the_order_senders_came_and_past_those_that_left() {
        // An audit: every wait for the turn was woken whenever it came free
        // (and whenever the queue drained), and each looked through the
        // others' wakers as it waited again: with thousands of sends to one
        // session, a cost per wake-up that grew with their square.
        let (tx, mut rx) = queue::<u8>();
        let counts: Vec<_> = (0..4).map(|_| Count::waker()).collect();
        let wakes = || counts.iter().map(|(count, _)| count.wakes()).collect::<Vec<_>>();
        let Poll::Ready(held) = poll(&mut tx.turn(), &counts[0].1) else { panic!("the turn is free") };
        let mut waits: Vec<_> = (1..4).map(|_| tx.turn()).collect();
        for (wait, (_, waker)) in waits.iter_mut().zip(&counts[1..]) {
            assert!(poll(wait, waker).is_pending());
        }
        // Woken again while waiting (by anything), a wait keeps its place.
        assert!(poll(&mut waits[1], &counts[2].1).is_pending());
        // The queue draining wakes none of them: they wait for the turn.
        assert!(tx.send(1).is_ok());
        assert_eq!(rx.poll_recv(&mut Context::from_waker(Waker::noop())), Poll::Ready(Some(1)));
        assert_eq!(wakes(), [0, 0, 0, 0]);
        // The first in line leaves before its turn: the line moves on
        // without it, and no one is woken while the turn is held.
        drop(waits.remove(0));
        assert_eq!(wakes(), [0, 0, 0, 0]);
        // A newcomer while the turn is free but someone waits for it
        // queues behind.
        drop(held);
        assert_eq!(wakes(), [0, 0, 1, 0], "the first left in line, alone");
        let mut late = tx.turn();
        assert!(poll(&mut late, &counts[0].1).is_pending(), "behind those that came first");
        let Poll::Ready(second) = poll(&mut waits[0], &counts[2].1) else { panic!("its turn") };
        drop(second);
        assert_eq!(wakes(), [0, 0, 1, 1]);
        // The first in line leaves as it is woken, before it takes the
        // free turn: the next is woken in its place.
        drop(waits.remove(1));
        assert_eq!(wakes(), [1, 0, 1, 1], "the one that came last, now first");
        assert!(poll(&mut late, &counts[0].1).is_ready());
    }

    #[test]
    fn the_line_gives_its_memory_back_after_a_burst() {
        // A review: 4,000 sends to one session left their line's buffer
        // (96 KiB) with the session until it ended.
        let (tx, _rx) = queue::<u8>();
        let Poll::Ready(held) = poll(&mut tx.turn(), Waker::noop()) else { panic!("the turn is free") };
        let mut waits: Vec<_> = (0..4000).map(|_| tx.turn()).collect();
        for wait in &mut waits {
            assert!(poll(wait, Waker::noop()).is_pending());
        }
        // Half leave; the other half take their turns.
        waits.truncate(2000);
        drop(held);
        for wait in &mut waits {
            let Poll::Ready(turn) = poll(wait, Waker::noop()) else { panic!("its turn") };
            drop(turn);
        }
        let state = tx.0.lock();
        let line = state.waiting.as_ref().and_then(|w| w.line.as_ref()).expect("a line");
        assert!(line.waiting.is_empty());
        assert!(line.waiting.capacity() <= 64, "kept {} slots", line.waiting.capacity());
    }

    #[test]
    fn threads_waiting_for_the_turn_each_get_it_in_turn_or_leave() {
        // A review's stress: waits that leave at once, after a while, or
        // once woken without polling again, and waits polled with a new
        // waker; no wait goes unwoken while the turn is free, and no two
        // hold it at once.
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
        use std::time::{Duration, Instant};

        struct Flag {
            woken: AtomicBool,
            thread: std::thread::Thread,
        }
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.woken.store(true, SeqCst);
                self.thread.unpark();
            }
        }
        fn flag() -> (Arc<Flag>, Waker) {
            let flag = Arc::new(Flag { woken: AtomicBool::new(false), thread: std::thread::current() });
            (flag.clone(), Waker::from(flag))
        }
        /// Whether `flag` was woken within `limit` (generous: a busy
        /// machine may hold a thread back).
        fn woken(flag: &Flag, limit: Duration) -> bool {
            let start = Instant::now();
            while !flag.woken.load(SeqCst) {
                if start.elapsed() > limit {
                    return false;
                }
                std::thread::park_timeout(Duration::from_millis(50));
            }
            true
        }
        let (tx, rx) = queue::<u8>();
        let holders = Arc::new(AtomicUsize::new(0));
        let lost = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let (tx, holders, lost) = (tx.clone(), holders.clone(), lost.clone());
                std::thread::spawn(move || {
                    // xorshift, seeded per thread.
                    let mut state = 0x9E37_79B9_7F4A_7C15 ^ ((t + 1) * 7919);
                    let mut next = move || {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state
                    };
                    for _ in 0..2000 {
                        let mut wait = tx.turn();
                        let (mut flag_now, mut waker) = flag();
                        loop {
                            flag_now.woken.store(false, SeqCst);
                            match poll(&mut wait, &waker) {
                                Poll::Ready(turn) => {
                                    assert!(turn.0.is_some());
                                    assert_eq!(holders.fetch_add(1, SeqCst), 0, "two hold the turn");
                                    for _ in 0..(next() % 200) {
                                        std::hint::spin_loop();
                                    }
                                    holders.fetch_sub(1, SeqCst);
                                    drop(turn);
                                    break;
                                }
                                Poll::Pending => match next() % 20 {
                                    0 => break,
                                    1 => {
                                        std::thread::sleep(Duration::from_micros(next() % 50));
                                        break;
                                    }
                                    _ => {
                                        if !woken(&flag_now, Duration::from_secs(20)) {
                                            lost.fetch_add(1, SeqCst);
                                            break;
                                        }
                                        match next() % 10 {
                                            0 => break,
                                            1 => (flag_now, waker) = flag(),
                                            _ => {}
                                        }
                                    }
                                },
                            }
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a thread");
        }
        assert_eq!(lost.load(SeqCst), 0, "waits never woken");
        let state = tx.0.lock();
        assert_eq!(state.ends & TURN_TAKEN, 0);
        assert!(state.waiting.as_ref().and_then(|w| w.line.as_ref()).is_none_or(|l| l.waiting.is_empty()));
        drop(state);
        drop(rx);
    }

    #[test]
    fn a_sender_waiting_for_the_turn_is_woken_when_the_receiver_goes() {
        let (tx, rx) = queue::<u8>();
        let (count, waker) = Count::waker();
        let Poll::Ready(held) = poll(&mut tx.turn(), &waker) else { panic!("the turn is free") };
        let mut wait = tx.turn();
        assert!(poll(&mut wait, &waker).is_pending());
        drop(rx);
        assert_eq!(count.wakes(), 1);
        assert!(poll(&mut wait, &waker).is_ready());
        drop(held);
    }

    #[test]
    fn senders_see_the_receiver_go() {
        let (tx, rx) = queue::<u8>();
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send(7), Err(7));
    }

    #[test]
    fn a_closed_watcher_is_woken_by_the_receivers_end_only() {
        let (tx, mut rx) = queue::<u8>();
        let (count, waker) = Count::waker();
        let mut cx = Context::from_waker(&waker);
        let wakes = || count.wakes();
        assert_eq!(tx.poll_closed(&mut cx), Poll::Pending);
        tx.send_weighed(1, 10).unwrap();
        assert_eq!(rx.poll_recv_weighed(&mut cx, |_| 10), Poll::Ready(Some(1)));
        assert_eq!(wakes(), 0, "draining the queue is not the receiver's end");
        drop(rx);
        assert_eq!(wakes(), 1);
        assert_eq!(tx.poll_closed(&mut cx), Poll::Ready(()));
    }

    #[test]
    fn a_senders_alarm_wakes_the_closed_watcher_not_the_receiver() {
        let (tx, mut rx) = queue::<u8>();
        let (at_rx, rx_waker) = Count::waker();
        let (at_tx, tx_waker) = Count::waker();
        assert_eq!(rx.poll_recv(&mut Context::from_waker(&rx_waker)), Poll::Pending);
        assert_eq!(tx.poll_closed(&mut Context::from_waker(&tx_waker)), Poll::Pending);
        let early = tx.alarm(5);
        let alarm = tx.alarm(9);
        early.ring(5);
        assert_eq!((at_rx.wakes(), at_tx.wakes()), (0, 0), "a moved alarm is stale");
        alarm.ring(9);
        assert_eq!((at_rx.wakes(), at_tx.wakes()), (0, 1), "the sender, not the receiver");
        // Woken once: the watcher polls again to be woken again.
        alarm.ring(9);
        assert_eq!(at_tx.wakes(), 1);
        assert_eq!(tx.poll_closed(&mut Context::from_waker(&tx_waker)), Poll::Pending);
        // The flag is no sender: the receiver still sees the last one go.
        let second = tx.clone();
        drop(second);
        assert_eq!(rx.poll_recv(&mut Context::from_waker(&rx_waker)), Poll::Pending);
        // The receiver's own alarm takes the queue's alarm back.
        let mine = rx.alarm(12);
        mine.ring(12);
        assert_eq!((at_rx.wakes(), at_tx.wakes()), (1, 1));
        drop(tx);
        assert_eq!(rx.poll_recv(&mut Context::from_waker(&rx_waker)), Poll::Ready(None));
    }

    #[test]
    fn an_unwoken_send_and_a_muted_waker_wake_no_one() {
        let (tx, mut rx) = queue::<u8>();
        let (count, waker) = Count::waker();
        let mut cx = Context::from_waker(&waker);
        let wakes = || count.wakes();
        assert_eq!(rx.poll_recv_weighed(&mut cx, |_| 5), Poll::Pending);
        // Queued with its weight, the receiver's waker left in place.
        tx.send_unwoken(1, 5).unwrap();
        assert_eq!((wakes(), tx.load()), (0, 5));
        tx.send(2).unwrap();
        assert_eq!(wakes(), 1, "a plain send still wakes it");
        assert_eq!(rx.poll_recv_weighed(&mut cx, |_| 5), Poll::Ready(Some(1)));
        assert_eq!(rx.poll_recv_weighed(&mut cx, |_| 0), Poll::Ready(Some(2)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        rx.mute();
        tx.send(3).unwrap();
        tx.nudge();
        assert_eq!(wakes(), 1, "a muted waker is not woken");
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(3)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        tx.send(4).unwrap();
        assert_eq!(wakes(), 2, "a poll that found the queue empty unmutes it");
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(4)));
        drop(rx);
        assert_eq!(tx.send_unwoken(5, 0), Err(5), "the receiver is gone");
    }

    #[test]
    fn a_muted_queue_stays_muted_past_an_item_taken_and_keeps_its_sender_count() {
        let (tx, mut rx) = queue::<u8>();
        let (count, waker) = Count::waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        rx.mute();
        let second = tx.clone();
        tx.send(1).unwrap();
        second.send(2).unwrap();
        rx.alarm(7).ring(7);
        assert_eq!(count.wakes(), 0, "sends and the alarm are muted");
        // An item taken does not unmute: the queue was not found empty.
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(1)));
        tx.nudge();
        assert_eq!(count.wakes(), 0, "still muted after an item was taken");
        drop(second);
        drop(tx);
        assert_eq!(count.wakes(), 0, "the last sender's end is muted too");
        // The mute bit left the sender count whole: the queue ends once drained.
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(2)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(None));
    }
}
