//! Wake-ups for WebSockets at their ping and pong deadlines, and for the
//! sessions of HTTP receivers and hixie-76 sockets at their heartbeats,
//! without a tokio timer for each. (A session is woken through its
//! receiver's queue too: [`wake_sender_at`].)
//!
//! A tokio `Sleep` is ~110 bytes of every idle socket. Here each worker
//! thread keeps one heap of deadlines (16 bytes each, one per socket or
//! HTTP receiver, and for a socket at most two more left by moved
//! deadlines) and
//! one task that sleeps until the earliest; when a deadline passes it wakes
//! the socket through its frame queue ([`Nudger`]), and the socket checks
//! its clocks itself. A socket that moves its deadline leaves the old entry
//! in the heap, but the queue's alarm moved with it ([`OutRx::alarm`]):
//! the old entry wakes nobody (a socket whose client answered its ping
//! is not woken at the ping's timeout). An entry does not keep its socket
//! open; a closed socket's entry is dropped when its time comes, or
//! earlier when the heap has doubled since it was last swept (so that churn
//! cannot fill it with entries of closed sockets for a heartbeat's time). A
//! moved entry waits for its time: a socket moves its deadline at most
//! twice a heartbeat (to the ping's timeout, then back to the next ping).
//!
//! Deadlines are rounded up as [`coalesced`] says: the sockets of
//! one worker whose heartbeats fall due within one grain are woken at one
//! wake-up of the worker and write together. A heartbeat or a ping's
//! timeout comes up to a 64th of its distance late (256 ms at most),
//! never early.

use std::{
    cell::{Cell, RefCell},
    cmp::Reverse,
    collections::BinaryHeap,
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use tokio::time;

use crate::{
    clock::{self, coalesced, instant, now},
    receiver::{queue::Nudger, Out, OutRx, OutTx},
};

/// One socket's next deadline, in [`now`]'s milliseconds.
struct Due {
    at: u64,
    socket: Nudger<Out>,
}

const _: () = assert!(std::mem::size_of::<Due>() == 16);
const _: () = assert!(std::mem::size_of::<std::time::Instant>() == 16);

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

/// This worker thread's deadlines.
struct Deadlines {
    due: BinaryHeap<Reverse<Due>>,
    /// Sweep out closed sockets' entries once the heap is this long.
    sweep_at: usize,
    /// The task that sleeps until the earliest deadline, while it runs.
    running: bool,
    /// Wakes that task, and when it means to wake up, while it sleeps.
    sleeper: Option<(Waker, u64)>,
}

thread_local! {
    /// The latest time the sleeper woke sockets at: a socket whose deadline
    /// is later has nothing due, and need not read the clock.
    static FIRED: Cell<u64> = const { Cell::new(0) };
    static DEADLINES: RefCell<Deadlines> = const {
        RefCell::new(Deadlines { due: BinaryHeap::new(), sweep_at: 64, running: false, sleeper: None })
    };
}

/// Whether a deadline `at` may have passed: the sleeper has woken sockets
/// at `at` or later. Cheaper than reading the clock on every poll.
pub(crate) fn may_have_passed(at: u64) -> bool {
    FIRED.with(Cell::get) >= at
}

/// Wakes `socket`'s receiver once [`now`] reaches `at`, unless it asks for
/// another time before then (which it does by calling this again). Must
/// run on an actix (tokio local) worker thread, as WebSocket bodies do.
pub(crate) fn wake_at(at: u64, socket: &OutRx) {
    arm(at, |at| socket.alarm(at));
}

/// [`wake_at`] for the session that writes to `out` and waits in its
/// [`Tx::poll_closed`](crate::receiver::queue::Tx::poll_closed): an HTTP
/// receiver's or a hixie-76 socket's session timing its heartbeats. Must
/// run on the worker thread the session lives on.
pub(crate) fn wake_sender_at(at: u64, out: &OutTx) {
    arm(at, |at| out.alarm(at));
}

/// Sets the alarm that `alarm` makes for `at` rounded up, and has this
/// worker ring it then.
fn arm(at: u64, alarm: impl FnOnce(u64) -> Nudger<Out>) {
    let at = coalesced(at, now());
    let socket = alarm(at);
    if at >= clock::FAR_MILLIS {
        // Never, in effect (a heartbeat of `Duration::MAX`): no entry,
        // which the sleeper would otherwise wake for, at its far end.
        return;
    }
    let (start, wake) = DEADLINES.with(|d| {
        let mut d = d.borrow_mut();
        if d.due.len() >= d.sweep_at {
            d.due.retain(|Reverse(due)| due.socket.alive());
            d.sweep_at = (d.due.len() * 2).max(64);
        }
        d.due.push(Reverse(Due { at, socket }));
        if !d.running {
            d.running = true;
            return (true, None);
        }
        // The sleeping task must wake up earlier for this one.
        let earlier = d.sleeper.as_ref().is_some_and(|(_, when)| at < *when);
        (false, if earlier { d.sleeper.take().map(|(waker, _)| waker) } else { None })
    });
    if start {
        actix_web::rt::spawn(Sleeper { sleep: Box::pin(time::sleep_until(instant(at))) });
    }
    if let Some(waker) = wake {
        waker.wake();
    }
}

/// The worker's one timer: wakes the sockets whose deadline passed, then
/// sleeps until the next; ends when no deadline is left.
struct Sleeper {
    sleep: Pin<Box<time::Sleep>>,
}

impl Future for Sleeper {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let now = now();
            FIRED.with(|fired| fired.set(now));
            let (passed, next) = DEADLINES.with(|d| {
                let mut d = d.borrow_mut();
                let mut passed = Vec::new();
                while d.due.peek().is_some_and(|Reverse(due)| due.at <= now) {
                    if let Some(Reverse(due)) = d.due.pop() {
                        passed.push(due);
                    }
                }
                let next = d.due.peek().map(|Reverse(due)| due.at);
                match next {
                    Some(at) => d.sleeper = Some((cx.waker().clone(), at)),
                    None => {
                        d.running = false;
                        d.sleeper = None;
                    }
                }
                (passed, next)
            });
            // Woken outside the borrow: a wake-up may run code that sets a
            // new deadline.
            for due in passed {
                due.socket.ring(due.at);
            }
            let Some(at) = next else {
                return Poll::Ready(());
            };
            self.sleep.as_mut().reset(instant(at));
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::{Duration, Instant};

    use super::*;
    use crate::receiver::queue;

    /// Counts the queue receiver's wake-ups, and wakes the test at each.
    #[derive(Default)]
    struct Counted {
        wakes: std::sync::atomic::AtomicUsize,
        notify: tokio::sync::Notify,
    }

    impl Counted {
        /// Waits on `rx` (which is never sent anything) with this waker.
        fn wait_on(self: &std::sync::Arc<Self>, rx: &mut queue::Rx<Out>) {
            let waker = Waker::from(self.clone());
            assert!(rx.poll_recv(&mut Context::from_waker(&waker)).is_pending());
        }

        fn wakes(&self) -> usize {
            self.wakes.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl std::task::Wake for Counted {
        fn wake(self: std::sync::Arc<Self>) {
            self.wakes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.notify.notify_one();
        }
    }

    /// Waits until the queue's receiver is woken (it is never sent anything).
    async fn woken(rx: &mut queue::Rx<Out>) {
        let counted = std::sync::Arc::new(Counted::default());
        counted.wait_on(rx);
        counted.notify.notified().await;
    }

    #[test]
    fn sockets_are_woken_at_their_deadlines_never_before() {
        actix::System::new().block_on(async {
            let (_tx_a, mut a) = queue::queue::<Out>();
            let (_tx_b, mut b) = queue::queue::<Out>();
            let (_tx_c, c) = queue::queue::<Out>();
            let start = Instant::now();
            let base = now();
            // A far deadline first: the sleeper must wake up earlier for
            // the near ones registered after it.
            wake_at(base + 600_000, &c);
            wake_at(base + 80, &b);
            wake_at(base + 30, &a);
            let limit = Duration::from_secs(10);
            time::timeout(limit, woken(&mut a)).await.expect("a woken");
            assert!(now() >= base + 30, "not before its deadline");
            time::timeout(limit, woken(&mut b)).await.expect("b woken");
            assert!(now() >= base + 80);
            assert!(start.elapsed() >= Duration::from_millis(79));
            // A socket that is gone is skipped when its time comes.
            drop((_tx_c, c));
            let (_tx_d, mut d) = queue::queue::<Out>();
            wake_at(now() + 10, &d);
            time::timeout(limit, woken(&mut d)).await.expect("d woken");
        });
    }

    #[test]
    fn closed_sockets_entries_are_swept_out_as_the_heap_grows() {
        actix::System::new().block_on(async {
            let far = now() + 600_000;
            let (_tx, live) = queue::queue::<Out>();
            wake_at(far, &live);
            for _ in 0..1000 {
                let (tx, rx) = queue::queue::<Out>();
                wake_at(far, &rx);
                drop((tx, rx));
            }
            let len = DEADLINES.with(|d| d.borrow().due.len());
            assert!(len < 200, "{len} entries kept for 1 live socket");
            assert!(DEADLINES.with(|d| d.borrow().due.iter().any(|Reverse(due)| due.socket.alive())));
        });
    }

    #[test]
    fn a_moved_deadline_wakes_its_socket_once_at_the_new_time() {
        actix::System::new().block_on(async {
            let counted = std::sync::Arc::new(Counted::default());
            let (_tx_a, mut a) = queue::queue::<Out>();
            let (_tx_b, mut b) = queue::queue::<Out>();
            counted.wait_on(&mut a);
            let base = now();
            // `a` asks for base + 30, then for base + 150 instead; `b`,
            // woken at base + 60, shows that the sleeper has passed the
            // first time by then.
            wake_at(base + 30, &a);
            wake_at(base + 150, &a);
            wake_at(base + 60, &b);
            let limit = Duration::from_secs(10);
            time::timeout(limit, woken(&mut b)).await.expect("b woken");
            assert_eq!(counted.wakes(), 0, "woken at the deadline it moved away from");
            time::timeout(limit, counted.notify.notified()).await.expect("a woken");
            assert!(now() >= base + 150, "not before its new deadline");
            assert_eq!(counted.wakes(), 1);
        });
    }

    /// Notes when the sleeper woke it: [`FIRED`] at that moment.
    #[derive(Default)]
    struct Stamped {
        fired: std::sync::atomic::AtomicU64,
        notify: tokio::sync::Notify,
    }

    impl std::task::Wake for Stamped {
        fn wake(self: std::sync::Arc<Self>) {
            self.fired.store(FIRED.with(Cell::get), std::sync::atomic::Ordering::SeqCst);
            self.notify.notify_one();
        }
    }

    #[test]
    fn deadlines_in_one_grain_are_rung_at_one_wake_up() {
        actix::System::new().block_on(async {
            // 1.1 s away the grain is 16 ms: eight deadlines a millisecond
            // apart, all inside one grain (and inside one of 8 ms, should
            // the machine be slow enough for the distance to fall below
            // 1,024 ms between them).
            let first = (now() + 1_100).next_multiple_of(16) + 9;
            let rounded = first + 7;
            let mut sockets = Vec::new();
            for i in 0..8 {
                let (tx, mut rx) = queue::queue::<Out>();
                let stamped = std::sync::Arc::new(Stamped::default());
                let waker = Waker::from(stamped.clone());
                assert!(rx.poll_recv(&mut Context::from_waker(&waker)).is_pending());
                wake_at(first + i, &rx);
                sockets.push((tx, rx, stamped));
            }
            let due: Vec<u64> =
                DEADLINES.with(|d| d.borrow().due.iter().map(|Reverse(due)| due.at).collect());
            assert_eq!(due, [rounded; 8], "the deadlines as the heap holds them");
            for (_, _, stamped) in &sockets {
                time::timeout(Duration::from_secs(10), stamped.notify.notified()).await.expect("woken");
            }
            let fired: Vec<u64> =
                sockets.iter().map(|(_, _, s)| s.fired.load(std::sync::atomic::Ordering::SeqCst)).collect();
            assert!(fired.iter().all(|at| *at == fired[0]), "woken at {fired:?}");
            assert!(fired[0] >= rounded, "woken at {}, before the rounded deadline {rounded}", fired[0]);
        });
    }
}
