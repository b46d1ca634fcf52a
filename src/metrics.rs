//! What the server reports through the [`metrics`] facade: the
//! names of its metrics.
//!
//! The names, kinds and labels are listed in the README ("Metrics"). Handles
//! are looked up once per endpoint and worker, at the worker's first request
//! for the endpoint (which tells its whole path, scopes included), so the
//! per-message cost is an atomic add (nothing at all when no recorder
//! is installed). Install a recorder before building the `HttpServer`:
//! handles taken earlier stay no-ops.
//!
//! The facade is `metrics` 0.24: a recorder built for another `metrics`
//! release (an exporter that depends on 0.23 or 0.25, say) is another
//! crate's global and sees none of these metrics, without an error. Pick
//! an exporter release built on `metrics` 0.24 (the chat example's
//! `metrics-exporter-prometheus` 0.18 is); `cargo tree -i metrics` shows
//! one `metrics` when they agree.
//!
//! # Examples
//!
//! The names, for dashboards and alerts:
//!
//! ```
//! use actix_sockjs::metrics;
//!
//! assert_eq!(metrics::SESSIONS_OPEN, "sockjs_sessions_open");
//! assert_eq!(metrics::SESSIONS_CLOSED, "sockjs_sessions_closed_total");
//! assert_eq!(metrics::BROADCAST_FANOUT, "sockjs_broadcast_fanout_seconds");
//! ```
//!
//! ```ignore
//! // With metrics-exporter-prometheus, as examples/chat.rs does:
//! let prometheus = PrometheusBuilder::new().install_recorder()?;
//! // ... build the HttpServer, then answer GET /metrics with:
//! let text = prometheus.render();
//! assert!(text.contains(actix_sockjs::metrics::SESSIONS_OPEN));
//! ```

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, OnceLock,
    },
};

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};

use crate::{admission::Refusal, cause::CloseCause, protocol::Transport};

/// Sessions open now, by endpoint and the transport that opened them (gauge).
pub const SESSIONS_OPEN: &str = "sockjs_sessions_open";
/// Sessions opened, by endpoint and transport (counter).
pub const SESSIONS_OPENED: &str = "sockjs_sessions_opened_total";
/// Sessions closed, by endpoint and close cause (counter): the
/// [`CloseCause`] in snake case, or `panicked` for a
/// session dropped as its handler panicked.
pub const SESSIONS_CLOSED: &str = "sockjs_sessions_closed_total";
/// Messages received from clients, by endpoint (counter): handled or not
/// (what follows a close in one batch is dropped unhandled); a batch (one
/// WebSocket frame, one send) in which a handler panicked is not counted.
pub const MESSAGES_IN: &str = "sockjs_messages_in_total";
/// Messages queued for clients, broadcasts included, by endpoint
/// (counter): an overflow or the session's end may drop some before they
/// are written.
pub const MESSAGES_OUT: &str = "sockjs_messages_out_total";
/// Message payload bytes received from clients, by endpoint (counter).
pub const BYTES_IN: &str = "sockjs_message_bytes_in_total";
/// Message payload bytes queued for clients, by endpoint (counter).
pub const BYTES_OUT: &str = "sockjs_message_bytes_out_total";
/// The largest outgoing queue of any session so far, in bytes: messages
/// waiting for a receiver plus what a transport holds unread (gauge; it
/// never goes down: see [`QUEUE_BYTES`] for the present).
pub const QUEUE_HIGH_WATER: &str = "sockjs_queue_bytes_high_water";
/// Bytes waiting in the outgoing queues of an endpoint's sessions now, by
/// endpoint (gauge), in 4 KiB steps: each session reports its queue,
/// rounded down to a multiple of 4 KiB, when that changes, at its next turn
/// (every message and heartbeat). A queue under 4 KiB counts 0: healthy
/// sessions, whose queues stay small, cost nothing.
pub const QUEUE_BYTES: &str = "sockjs_queue_bytes";
/// Requests refused, by endpoint and `reason` (counter): `origin` (not in
/// `allowed_origins`, 403), `authorize` (the hook refused), `full`
/// (`max_sessions`, 503), `per_address` (`max_sessions_per_ip`, 429),
/// `shutting_down` (503) and `bound` (a session bound to another client,
/// 404). Each is also an `info` log line.
pub const REQUESTS_REFUSED: &str = "sockjs_requests_refused_total";
/// How long a manager takes to hand one broadcast to all its sessions, by
/// endpoint (histogram, seconds; buckets: [`FANOUT_BUCKETS`]).
pub const BROADCAST_FANOUT: &str = "sockjs_broadcast_fanout_seconds";
/// Sessions one broadcast was handed to, by endpoint (histogram; buckets:
/// [`RECEIVER_BUCKETS`]).
pub const BROADCAST_RECEIVERS: &str = "sockjs_broadcast_receivers";
/// Answers to [`SendTo`](crate::SendTo) and [`Deliver`](crate::Deliver),
/// and one per session a [`DeliverGroup`](crate::DeliverGroup) reached, by
/// endpoint and `result`: `delivered`, `forwarded` (to other nodes) or
/// `unknown` (no such session anywhere this node can tell) (counter).
pub const SEND_TO: &str = "sockjs_send_to_total";
/// 1 while a Redis bridge can both publish and read, else 0, by channel (gauge).
pub const REDIS_UP: &str = "sockjs_redis_bridge_up";
/// 1 while a Redis bridge's publisher has had an answer from Redis within
/// its health timeout, else 0, by channel (gauge).
pub const REDIS_PUBLISHER_UP: &str = "sockjs_redis_publisher_up";
/// 1 while a Redis bridge's reader has had an answer from Redis within
/// its health timeout, else 0, by channel (gauge).
pub const REDIS_READER_UP: &str = "sockjs_redis_reader_up";
/// Times a Redis bridge (re)connected, by channel and `role` (`publisher`,
/// `reader`) (counter).
pub const REDIS_CONNECTS: &str = "sockjs_redis_connects_total";
/// Messages a Redis bridge published (retries after a failure included), by channel (counter).
pub const REDIS_PUBLISHED: &str = "sockjs_redis_published_total";
/// Messages a Redis bridge dropped from its outbox unpublished, because the
/// outbox was over its bound while Redis was unreachable, or because the
/// bridge stopped before Redis took them, by channel (counter).
pub const REDIS_DROPPED: &str = "sockjs_redis_dropped_total";
/// Messages a Redis bridge received from other nodes and delivered, by channel (counter).
pub const REDIS_RECEIVED: &str = "sockjs_redis_received_total";
/// Messages of other nodes a Redis bridge saw again and skipped (a
/// publisher's retry), by channel (counter).
pub const REDIS_DUPLICATES: &str = "sockjs_redis_duplicates_total";
/// Messages of other nodes that never reached this one (gaps in a node's
/// sequence numbers: dropped by its outbox, or trimmed from the stream
/// before this node read them), by channel (counter).
pub const REDIS_MISSED: &str = "sockjs_redis_missed_total";
/// Messages waiting in a Redis bridge's outbox for Redis to take them, by
/// channel (gauge).
pub const REDIS_OUTBOX: &str = "sockjs_redis_outbox_messages";
/// Bytes of the messages waiting in a Redis bridge's outbox, by channel (gauge).
pub const REDIS_OUTBOX_BYTES: &str = "sockjs_redis_outbox_bytes";
/// From a message's publication on one node to its delivery to the
/// sessions of another, by channel (histogram, seconds; buckets:
/// [`LAG_BUCKETS`]; across machines, clock skew adds to it).
pub const REDIS_LAG: &str = "sockjs_redis_lag_seconds";

/// Bucket bounds for [`BROADCAST_FANOUT`], in seconds: 10 µs to 2.5 s.
/// Give them to your exporter so that the histogram has buckets, which
/// add up across nodes (a summary's quantiles do not).
///
/// # Examples
///
/// ```ignore
/// // With metrics-exporter-prometheus, as examples/chat.rs does:
/// use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
/// use actix_sockjs::metrics;
///
/// let prometheus = PrometheusBuilder::new()
///     .set_buckets_for_metric(Matcher::Full(metrics::BROADCAST_FANOUT.into()), metrics::FANOUT_BUCKETS)?
///     .set_buckets_for_metric(Matcher::Full(metrics::BROADCAST_RECEIVERS.into()), metrics::RECEIVER_BUCKETS)?
///     .set_buckets_for_metric(Matcher::Full(metrics::REDIS_LAG.into()), metrics::LAG_BUCKETS)?
///     .install_recorder()?;
/// ```
///
/// ```
/// assert!(actix_sockjs::metrics::FANOUT_BUCKETS.windows(2).all(|w| w[0] < w[1]));
/// ```
pub const FANOUT_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5,
];
/// Bucket bounds for [`BROADCAST_RECEIVERS`]: 0 to 100,000 sessions.
///
/// # Examples
///
/// ```
/// assert_eq!(actix_sockjs::metrics::RECEIVER_BUCKETS[0], 0.0);
/// ```
pub const RECEIVER_BUCKETS: &[f64] = &[0.0, 1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0];
/// Bucket bounds for [`REDIS_LAG`], in seconds: 250 µs to 60 s (a
/// message held in an outbox through an outage lands in the top ones).
///
/// # Examples
///
/// ```
/// assert_eq!(actix_sockjs::metrics::LAG_BUCKETS.last(), Some(&60.0));
/// ```
pub const LAG_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Registers the descriptions of every metric with the installed recorder.
pub(crate) fn describe() {
    describe_gauge!(SESSIONS_OPEN, "SockJS sessions open now, by the transport that opened them");
    describe_counter!(SESSIONS_OPENED, "SockJS sessions opened, by transport");
    describe_counter!(SESSIONS_CLOSED, "SockJS sessions closed, by close cause");
    describe_counter!(MESSAGES_IN, "Messages received from clients, handled or not");
    describe_counter!(MESSAGES_OUT, "Messages queued for clients");
    describe_counter!(BYTES_IN, Unit::Bytes, "Message payload bytes received from clients");
    describe_counter!(BYTES_OUT, Unit::Bytes, "Message payload bytes queued for clients");
    describe_gauge!(QUEUE_HIGH_WATER, Unit::Bytes, "Largest outgoing queue of any session so far");
    describe_gauge!(QUEUE_BYTES, Unit::Bytes, "Bytes waiting in sessions' outgoing queues (4 KiB steps)");
    describe_histogram!(BROADCAST_FANOUT, Unit::Seconds, "Time to hand one broadcast to every session");
    describe_histogram!(BROADCAST_RECEIVERS, "Sessions one broadcast was handed to");
    describe_counter!(SEND_TO, "Messages sent to one session by id, by result");
    describe_counter!(REQUESTS_REFUSED, "Requests refused, by reason");
    describe_gauge!(REDIS_UP, "1 while the Redis bridge can publish and read, else 0");
    describe_gauge!(REDIS_PUBLISHER_UP, "1 while the Redis publisher gets answers, else 0");
    describe_gauge!(REDIS_READER_UP, "1 while the Redis reader gets answers, else 0");
    describe_counter!(REDIS_CONNECTS, "Redis bridge connections made");
    describe_counter!(REDIS_PUBLISHED, "Messages published to Redis");
    describe_counter!(
        REDIS_DROPPED,
        "Messages dropped unpublished: over the outbox bound, or left when the bridge stopped"
    );
    describe_counter!(REDIS_RECEIVED, "Messages received from other nodes through Redis");
    describe_counter!(REDIS_DUPLICATES, "Messages of other nodes seen again and skipped");
    describe_counter!(REDIS_MISSED, "Messages of other nodes that never arrived (sequence gaps)");
    describe_gauge!(REDIS_OUTBOX, "Messages waiting in the Redis outbox");
    describe_gauge!(REDIS_OUTBOX_BYTES, Unit::Bytes, "Bytes waiting in the Redis outbox");
    describe_histogram!(REDIS_LAG, Unit::Seconds, "From publication on one node to delivery on another");
}

/// The metric handles of one endpoint.
#[derive(Debug)]
pub(crate) struct EndpointMetrics {
    open: [::metrics::Gauge; 7],
    opened: [::metrics::Counter; 7],
    closed: [::metrics::Counter; 9],
    messages_in: ::metrics::Counter,
    messages_out: ::metrics::Counter,
    bytes_in: ::metrics::Counter,
    bytes_out: ::metrics::Counter,
    high_water: ::metrics::Gauge,
    queued: ::metrics::Gauge,
    /// The endpoint's high-water mark, shared by all workers.
    high_water_seen: Arc<AtomicUsize>,
    refused: [::metrics::Counter; 6],
}

/// Why a request was refused, for [`REQUESTS_REFUSED`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refused {
    Origin,
    Authorize,
    Full,
    PerAddress,
    ShuttingDown,
    Bound,
}

impl Refused {
    const LABELS: [&'static str; 6] =
        ["origin", "authorize", "full", "per_address", "shutting_down", "bound"];
}

impl From<&Refusal> for Refused {
    fn from(refusal: &Refusal) -> Self {
        match refusal {
            Refusal::Full => Self::Full,
            Refusal::TooManyFromClient => Self::PerAddress,
            Refusal::ShuttingDown => Self::ShuttingDown,
        }
    }
}

/// The high-water mark of an endpoint, the same for every worker's handles.
fn high_water_of(endpoint: &str) -> Arc<AtomicUsize> {
    static MARKS: OnceLock<Mutex<HashMap<String, Arc<AtomicUsize>>>> = OnceLock::new();
    let mut marks =
        MARKS.get_or_init(Mutex::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    marks.entry(endpoint.to_owned()).or_default().clone()
}

impl EndpointMetrics {
    /// Looks the handles up in the installed recorder, labelled with the
    /// endpoint's prefix.
    pub(crate) fn new(endpoint: &str) -> Self {
        describe();
        let endpoint = endpoint_label(endpoint);
        Self {
            queued: gauge!(QUEUE_BYTES, "endpoint" => endpoint.clone()),
            open: Transport::ALL
                .map(|t| gauge!(SESSIONS_OPEN, "endpoint" => endpoint.clone(), "transport" => t.name())),
            opened: Transport::ALL
                .map(|t| counter!(SESSIONS_OPENED, "endpoint" => endpoint.clone(), "transport" => t.name())),
            closed: CloseCause::LABELS
                .map(|c| counter!(SESSIONS_CLOSED, "endpoint" => endpoint.clone(), "cause" => c)),
            messages_in: counter!(MESSAGES_IN, "endpoint" => endpoint.clone()),
            messages_out: counter!(MESSAGES_OUT, "endpoint" => endpoint.clone()),
            bytes_in: counter!(BYTES_IN, "endpoint" => endpoint.clone()),
            bytes_out: counter!(BYTES_OUT, "endpoint" => endpoint.clone()),
            high_water_seen: high_water_of(&endpoint),
            refused: Refused::LABELS
                .map(|reason| counter!(REQUESTS_REFUSED, "endpoint" => endpoint.clone(), "reason" => reason)),
            high_water: gauge!(QUEUE_HIGH_WATER, "endpoint" => endpoint),
        }
    }

    pub(crate) fn refused(&self, why: Refused) {
        self.refused[why as usize].increment(1);
    }

    pub(crate) fn session_opened(&self, transport: Transport) {
        self.opened[transport.index()].increment(1);
        self.open[transport.index()].increment(1.0);
    }

    /// A session counted open closed, with the `cause` label of index
    /// `label` ([`CloseCause::LABELS`]).
    pub(crate) fn session_closed(&self, transport: Transport, label: usize) {
        self.open[transport.index()].decrement(1.0);
        self.closed[label].increment(1);
    }

    pub(crate) fn received(&self, messages: usize, bytes: usize) {
        self.messages_in.increment(messages as u64);
        self.bytes_in.increment(bytes as u64);
    }

    pub(crate) fn sent(&self, bytes: usize) {
        self.messages_out.increment(1);
        self.bytes_out.increment(bytes as u64);
    }

    /// Records a session's queue depth: in [`QUEUE_BYTES`] in steps of
    /// [`QUEUE_STEP`] bytes (`reported` is what the session reported last),
    /// and in [`QUEUE_HIGH_WATER`] if it is the largest yet.
    pub(crate) fn queue_depth(&self, bytes: usize, reported: &mut u16) {
        let steps = u16::try_from(bytes / QUEUE_STEP).unwrap_or(u16::MAX);
        if steps != *reported {
            self.queue_moved(steps, reported);
        }
        self.high_water(bytes);
    }

    /// [`Self::queue_depth`] past a step: out of the echo's line of code.
    #[cold]
    #[inline(never)]
    fn queue_moved(&self, steps: u16, reported: &mut u16) {
        self.queued.increment((f64::from(steps) - f64::from(*reported)) * QUEUE_STEP as f64);
        *reported = steps;
    }

    /// Records a queue of `bytes` in [`QUEUE_HIGH_WATER`] if it is the
    /// largest yet (an overflow's, which its flush does not see, included).
    ///
    /// Workers share the mark: one that sets the gauge reads the mark again
    /// after, and sets it again if another raised it meanwhile, so that the
    /// gauge's last value is the largest (its set and another's can cross).
    pub(crate) fn high_water(&self, bytes: usize) {
        if bytes > self.high_water_seen.load(Ordering::Relaxed) {
            self.raise_high_water(bytes);
        }
    }

    /// [`Self::high_water`] above the mark seen.
    #[cold]
    #[inline(never)]
    fn raise_high_water(&self, bytes: usize) {
        let before = self.high_water_seen.fetch_max(bytes, Ordering::SeqCst);
        if bytes > before {
            let mut mark = bytes;
            loop {
                self.high_water.set(mark as f64);
                let now = self.high_water_seen.load(Ordering::SeqCst);
                if now <= mark {
                    break;
                }
                mark = now;
            }
        }
    }
}

/// What a session's queue must change by before [`QUEUE_BYTES`] hears of it.
const QUEUE_STEP: usize = 4096;

/// The `endpoint` label of a prefix (`/` for the root).
pub(crate) fn endpoint_label(prefix: &str) -> String {
    if prefix.is_empty() {
        "/".to_owned()
    } else {
        prefix.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc, Mutex,
    };

    use ::metrics::{Gauge, GaugeFn};

    use super::EndpointMetrics;

    /// A gauge that keeps its last value, and holds the set of `HELD` until
    /// the value `RELEASE` has been set.
    struct Crossing {
        value: AtomicU64,
        released: Mutex<Option<mpsc::Receiver<()>>>,
        release: Mutex<Option<mpsc::Sender<()>>>,
    }

    const HELD: f64 = 100.0;
    const RELEASE: f64 = 200.0;

    impl GaugeFn for Crossing {
        fn increment(&self, _: f64) {}

        fn decrement(&self, _: f64) {}

        fn set(&self, value: f64) {
            if value == HELD {
                let released = self.released.lock().unwrap().take();
                if let Some(released) = released {
                    released.recv().unwrap();
                }
            }
            self.value.store(value.to_bits(), Ordering::SeqCst);
            if value == RELEASE {
                if let Some(release) = self.release.lock().unwrap().take() {
                    release.send(()).unwrap();
                }
            }
        }
    }

    #[test]
    fn the_high_water_gauge_ends_at_the_largest_mark_when_two_workers_set_it_at_once() {
        // An audit: two workers' marks crossed (one read the mark, the
        // other raised it and set the gauge, then the first set its smaller
        // value) and the gauge stayed below the mark for good.
        let (release, released) = mpsc::channel();
        let gauge = Arc::new(Crossing {
            value: AtomicU64::new(0),
            released: Mutex::new(Some(released)),
            release: Mutex::new(Some(release)),
        });
        let worker = || {
            let mut metrics = EndpointMetrics::new("/high-water-crossing");
            metrics.high_water = Gauge::from_arc(gauge.clone());
            metrics
        };
        let (first, second) = (worker(), worker());
        std::thread::scope(|s| {
            // The first worker's set of 100 waits for the second's 200.
            let held = s.spawn(|| first.high_water(HELD as usize));
            while gauge.released.lock().unwrap().is_some() {
                std::thread::yield_now();
            }
            second.high_water(RELEASE as usize);
            held.join().unwrap();
        });
        assert_eq!(f64::from_bits(gauge.value.load(Ordering::SeqCst)), RELEASE);
    }
}
