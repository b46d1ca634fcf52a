//! A small unbounded queue between tasks: a `Mutex`'d `VecDeque` and the
//! receiver's waker.
//!
//! Every session holds one for its commands and every WebSocket one for its
//! frames, mostly idle. A tokio channel allocates a block of 32 slots and
//! its cache-padded state up front (~500 bytes and more); this costs one
//! small allocation. One item waits in place: the `VecDeque` only
//! allocates when two or more are queued at once (an idle session's queues
//! then hold no buffer, and a message passed on at once costs no
//! allocation), and it gives its memory back after a burst.

use std::{
    collections::VecDeque,
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
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
    #[allow(clippy::box_collection)]
    rest: Option<Box<VecDeque<T>>>,
    /// Live senders; the receiver sees the end when none is left.
    senders: u32,
    receiver_gone: bool,
    /// Wakes the receiver when something is queued or the last sender leaves.
    receiver: Option<Waker>,
}

impl<T> State<T> {
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
        if rest.is_empty() && rest.capacity() > 64 {
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
}

/// A new queue.
pub(crate) fn queue<T>() -> (Tx<T>, Rx<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            first: None,
            rest: None,
            senders: 1,
            receiver_gone: false,
            receiver: None,
        }),
    });
    (Tx(shared.clone()), Rx(shared))
}

/// The sending end; clones send into the same queue.
pub(crate) struct Tx<T>(Arc<Shared<T>>);

impl<T> Tx<T> {
    /// Queues an item; gives it back if the receiver is gone.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        let waker = {
            let mut state = self.0.lock();
            if state.receiver_gone {
                return Err(item);
            }
            state.push(item);
            state.receiver.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Whether the receiver is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.lock().receiver_gone
    }
}

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Self(self.0.clone())
    }
}

impl<T> Drop for Tx<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.0.lock();
            state.senders -= 1;
            if state.senders > 0 {
                return;
            }
            state.receiver.take()
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

/// The receiving end.
pub(crate) struct Rx<T>(Arc<Shared<T>>);

impl<T> Rx<T> {
    /// The next item; `None` once every sender is gone and all is taken.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.0.lock();
        if let Some(item) = state.pop() {
            return Poll::Ready(Some(item));
        }
        if state.senders == 0 {
            return Poll::Ready(None);
        }
        if !state.receiver.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            state.receiver = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl<T> Drop for Rx<T> {
    fn drop(&mut self) {
        let items = {
            let mut state = self.0.lock();
            state.receiver_gone = true;
            (state.first.take(), state.rest.take())
        };
        // Dropped outside the lock: an item may own another queue's end.
        drop(items);
    }
}

impl<T> fmt::Debug for Rx<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rx").field("queued", &self.0.lock().len()).finish()
    }
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
    fn senders_see_the_receiver_go() {
        let (tx, rx) = queue::<u8>();
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send(7), Err(7));
    }
}
