//! A small unbounded queue between tasks: a `Mutex`'d `VecDeque` and the
//! wakers of both ends.
//!
//! Every session holds one for its commands and every WebSocket one for its
//! frames, mostly idle. A tokio channel allocates a block of 32 slots and
//! its cache-padded state up front (~500 bytes and more); this costs one
//! small allocation until something is queued, and gives its memory back
//! after a burst.

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
};

struct Shared<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    items: VecDeque<T>,
    /// Live senders; the receiver sees the end when none is left.
    senders: usize,
    receiver_gone: bool,
    /// Wakes the receiver when something is queued or the last sender leaves.
    receiver: Option<Waker>,
    /// Wakes the one task waiting in [`Tx::gone`].
    watcher: Option<Waker>,
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
            items: VecDeque::new(),
            senders: 1,
            receiver_gone: false,
            receiver: None,
            watcher: None,
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
            state.items.push_back(item);
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

    /// Completes when the receiver is gone. One task at a time may wait.
    pub(crate) fn gone(&self) -> impl Future<Output = ()> + Send + 'static
    where
        T: Send + 'static,
    {
        let shared = self.0.clone();
        std::future::poll_fn(move |cx| {
            let mut state = shared.lock();
            if state.receiver_gone {
                return Poll::Ready(());
            }
            state.watcher = Some(cx.waker().clone());
            Poll::Pending
        })
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
        if let Some(item) = state.items.pop_front() {
            if state.items.is_empty() && state.items.capacity() > 64 {
                // A burst is over: give its memory back.
                state.items.shrink_to(4);
            }
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
        let (items, waker) = {
            let mut state = self.0.lock();
            state.receiver_gone = true;
            (std::mem::take(&mut state.items), state.watcher.take())
        };
        // Dropped outside the lock: an item may own another queue's end.
        drop(items);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> fmt::Debug for Rx<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rx").field("queued", &self.0.lock().items.len()).finish()
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
    fn senders_see_the_receiver_go() {
        let (tx, rx) = queue::<u8>();
        let mut gone = Box::pin(tx.gone());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(gone.as_mut().poll(&mut cx).is_pending());
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send(7), Err(7));
        assert!(gone.as_mut().poll(&mut cx).is_ready());
    }
}
