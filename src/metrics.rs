//! What the server reports through the [`metrics`] facade: the
//! names of its metrics.
//!
//! The names, kinds and labels are listed in the README ("Metrics"). Handles
//! are looked up once per endpoint and worker, when the endpoint is mounted,
//! so the per-message cost is an atomic add (nothing at all when no recorder
//! is installed). Install a recorder before building the `HttpServer`:
//! handles taken earlier stay no-ops.
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
    time::Duration,
};

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};

use crate::{cause::CloseCause, protocol::Transport};

/// Sessions open now, by endpoint and the transport that opened them (gauge).
pub const SESSIONS_OPEN: &str = "sockjs_sessions_open";
/// Sessions opened, by endpoint and transport (counter).
pub const SESSIONS_OPENED: &str = "sockjs_sessions_opened_total";
/// Sessions closed, by endpoint and close cause (counter).
pub const SESSIONS_CLOSED: &str = "sockjs_sessions_closed_total";
/// Messages received from clients, by endpoint (counter).
pub const MESSAGES_IN: &str = "sockjs_messages_in_total";
/// Messages sent to clients, broadcasts included, by endpoint (counter).
pub const MESSAGES_OUT: &str = "sockjs_messages_out_total";
/// Message payload bytes received from clients, by endpoint (counter).
pub const BYTES_IN: &str = "sockjs_message_bytes_in_total";
/// Message payload bytes sent to clients, by endpoint (counter).
pub const BYTES_OUT: &str = "sockjs_message_bytes_out_total";
/// The largest outgoing queue of any session so far, in bytes: messages
/// waiting for a receiver plus what a transport holds unread (gauge).
pub const QUEUE_HIGH_WATER: &str = "sockjs_queue_bytes_high_water";
/// How long a manager takes to hand one broadcast to all its sessions
/// (histogram, seconds).
pub const BROADCAST_FANOUT: &str = "sockjs_broadcast_fanout_seconds";
/// Sessions one broadcast was handed to (histogram).
pub const BROADCAST_RECEIVERS: &str = "sockjs_broadcast_receivers";
/// 1 while a Redis bridge is subscribed to its channel, else 0, by channel (gauge).
pub const REDIS_UP: &str = "sockjs_redis_bridge_up";
/// Times a Redis bridge (re)connected, by channel (counter).
pub const REDIS_CONNECTS: &str = "sockjs_redis_connects_total";
/// Messages a Redis bridge published, by channel (counter).
pub const REDIS_PUBLISHED: &str = "sockjs_redis_published_total";
/// Messages a Redis bridge could not publish (Redis unreachable), by channel (counter).
pub const REDIS_DROPPED: &str = "sockjs_redis_dropped_total";
/// Messages a Redis bridge received from other nodes, by channel (counter).
pub const REDIS_RECEIVED: &str = "sockjs_redis_received_total";

/// Registers the descriptions of every metric with the installed recorder.
fn describe() {
    describe_gauge!(SESSIONS_OPEN, "SockJS sessions open now, by the transport that opened them");
    describe_counter!(SESSIONS_OPENED, "SockJS sessions opened, by transport");
    describe_counter!(SESSIONS_CLOSED, "SockJS sessions closed, by close cause");
    describe_counter!(MESSAGES_IN, "Messages received from clients");
    describe_counter!(MESSAGES_OUT, "Messages sent to clients");
    describe_counter!(BYTES_IN, Unit::Bytes, "Message payload bytes received from clients");
    describe_counter!(BYTES_OUT, Unit::Bytes, "Message payload bytes sent to clients");
    describe_gauge!(QUEUE_HIGH_WATER, Unit::Bytes, "Largest outgoing queue of any session so far");
    describe_histogram!(BROADCAST_FANOUT, Unit::Seconds, "Time to hand one broadcast to every session");
    describe_histogram!(BROADCAST_RECEIVERS, "Sessions one broadcast was handed to");
    describe_gauge!(REDIS_UP, "1 while the Redis bridge is subscribed, else 0");
    describe_counter!(REDIS_CONNECTS, "Redis bridge connections made");
    describe_counter!(REDIS_PUBLISHED, "Messages published to Redis");
    describe_counter!(REDIS_DROPPED, "Messages not published because Redis was unreachable");
    describe_counter!(REDIS_RECEIVED, "Messages received from other nodes through Redis");
}

/// The metric handles of one endpoint.
#[derive(Debug)]
pub(crate) struct EndpointMetrics {
    open: [::metrics::Gauge; 7],
    opened: [::metrics::Counter; 7],
    closed: [::metrics::Counter; 8],
    messages_in: ::metrics::Counter,
    messages_out: ::metrics::Counter,
    bytes_in: ::metrics::Counter,
    bytes_out: ::metrics::Counter,
    high_water: ::metrics::Gauge,
    /// The endpoint's high-water mark, shared by all workers.
    high_water_seen: Arc<AtomicUsize>,
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
        let endpoint = if endpoint.is_empty() { "/".to_owned() } else { endpoint.to_owned() };
        Self {
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
            high_water: gauge!(QUEUE_HIGH_WATER, "endpoint" => endpoint),
        }
    }

    pub(crate) fn session_opened(&self, transport: Transport) {
        self.opened[transport.index()].increment(1);
        self.open[transport.index()].increment(1.0);
    }

    /// `cause` is `None` for a session actor stopped without `close`.
    pub(crate) fn session_closed(&self, transport: Transport, cause: Option<&CloseCause>) {
        self.open[transport.index()].decrement(1.0);
        self.closed[CloseCause::label(cause).0].increment(1);
    }

    pub(crate) fn received(&self, messages: &[String]) {
        self.messages_in.increment(messages.len() as u64);
        self.bytes_in.increment(messages.iter().map(|m| m.len() as u64).sum());
    }

    pub(crate) fn sent(&self, bytes: usize) {
        self.messages_out.increment(1);
        self.bytes_out.increment(bytes as u64);
    }

    /// Records a session's queue depth if it is the largest yet.
    pub(crate) fn queue_depth(&self, bytes: usize) {
        if bytes > self.high_water_seen.load(Ordering::Relaxed) {
            let before = self.high_water_seen.fetch_max(bytes, Ordering::Relaxed);
            if bytes > before {
                self.high_water.set(bytes as f64);
            }
        }
    }
}

/// Records one broadcast's fan-out.
pub(crate) fn broadcast_fanout(took: Duration, receivers: usize) {
    histogram!(BROADCAST_FANOUT).record(took);
    histogram!(BROADCAST_RECEIVERS).record(receivers as f64);
}
