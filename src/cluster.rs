//! Cross-node delivery over a Redis stream (cargo feature `redis`).
//!
//! A [`RedisBridge`] is a [`Relay`]: it joins one endpoint's
//! [`SessionManager`] to a Redis stream. Every node of the cluster runs the
//! same endpoint with a bridge on the same stream; a
//! [`Broadcast`](crate::Broadcast) sent to any node's manager then reaches
//! the sessions of every node (groups, lists, `except` and `except_groups`
//! included, and [`Broadcast::close`](crate::Broadcast::close)'s closes), and a
//! [`SendTo`](crate::SendTo) reaches its session on whichever node holds it.
//!
//! # How it works
//!
//! The manager delivers a broadcast to its own sessions at once and hands
//! it to the bridge, which puts it in its **outbox** with the node's next
//! sequence number. The publisher appends the outbox to the stream in order
//! (`XADD`, a batch at a time in one `MULTI`/`EXEC` transaction, which
//! Redis applies whole or not at all, the stream capped near
//! [`RedisBridge::stream_len`] entries). Every node reads the stream from the last entry it read
//! (`XREAD BLOCK`), skips its own entries and those it has seen (by sender
//! and sequence number), and hands the rest to its manager. Hence:
//!
//! - **nothing lost across a Redis outage**, within the outbox's bound:
//!   while Redis is down or stalled, messages wait in the outbox and go out
//!   in order when it answers again; a reader that lost its connection goes
//!   on from the last entry it read (from a Redis that restarted: from that
//!   or from 5 s before it started, whichever is earlier). Entries Redis
//!   had but lost when it restarted (no persistence) are published again:
//!   the outbox keeps what Redis took for up to [`RedisBridge::retain`]
//!   (within the outbox's bound) and sends it again when it finds Redis
//!   restarted (a new `run_id` in `INFO`; a server that does not answer it
//!   gets no replay, and a warning);
//! - **once, in order**: retries can put an entry in the stream twice;
//!   readers skip what they have seen, so each message reaches each node
//!   once, in the order its node sent it (a reader remembers the last
//!   4,096 senders, each start of a node being one);
//! - **bounded**: beyond [`RedisBridge::outbox`] (messages, bytes or age),
//!   the oldest unpublished messages are dropped, counted in
//!   [`REDIS_DROPPED`] and logged once per
//!   outage; other nodes count the gap in
//!   [`REDIS_MISSED`] (and [`BridgeHealth::missed`]) when that node's next
//!   message arrives;
//! - **health**: the publisher and the reader each count as up while Redis
//!   answered them within [`RedisBridge::health_timeout`] (they send a
//!   command at least every quarter of it), exported as gauges and by
//!   [`BridgeHandle::health`]; reconnecting starts again every
//!   [`RedisBridge::backoff`] at most, so delivery resumes as soon as Redis
//!   answers.
//!
//! Every node reads every entry of the stream, group broadcasts included
//! (as Socket.IO's Redis Streams adapter does); a node without members in
//! a group spends a parse and a lookup on its messages.
//!
//! Requests of one session must all reach the same node: see the README's
//! "Running more than one node" for a load balancer configuration.
//!
//! # Redis URLs
//!
//! Whatever redis-rs takes: `redis://host:port/db`,
//! `redis://:password@host/` and `redis://user:password@host/` (ACL), and
//! `rediss://` when redis-rs is built with one of its TLS features (add
//! `redis = { version = "1.8", features = ["tokio-rustls-comp"] }` to your
//! own `Cargo.toml`; cargo merges the features).

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    hash::{BuildHasher, Hasher},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use ::metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use ::redis::{aio::MultiplexedConnection, AsyncConnectionConfig, Value};
use actix::{Addr, Recipient};
use actix_web::rt::{task::JoinHandle, time};
use tokio::sync::Notify;

use crate::{
    manager::SessionManager,
    metrics::{
        describe, REDIS_CONNECTS, REDIS_DROPPED, REDIS_DUPLICATES, REDIS_LAG, REDIS_MISSED, REDIS_OUTBOX,
        REDIS_OUTBOX_BYTES, REDIS_PUBLISHED, REDIS_PUBLISHER_UP, REDIS_READER_UP, REDIS_RECEIVED, REDIS_UP,
    },
    relay::{close_payload, payload, Audience, Relay, RelayMessage, Relayed, SetRelay},
    session::Session,
    util,
};

/// Marks the bridge's entries, and their format's version.
const MAGIC: &str = "sockjs2";
/// Entries appended in one pipeline at most, and their bytes (at least
/// one entry goes), so that a pipeline fits the response timeout.
const BATCH: usize = 512;
const BATCH_BYTES: usize = 256 << 10;
/// A reader starts at entries added this long before its bridge started,
/// by Redis's clock.
const START_MARGIN_MS: u64 = 5_000;
/// The most of an error a log line carries (a pipeline's error lists every
/// command's: 41 KB for 512 refused appends).
const ERROR_IN_LINE: usize = 300;
/// Entries read in one `XREAD` at most.
const READ_COUNT: usize = 1024;
/// Senders a reader remembers (their last sequence number) at most.
const SENDERS: usize = 4096;

/// Joins a [`SessionManager`] to a Redis stream so that its broadcasts
/// reach every node of a cluster (see the [module docs](self)).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use actix::prelude::*;
/// use actix_sockjs::{cluster::RedisBridge, Broadcast, Session, SessionContext, SessionManager};
///
/// struct Member { room: Addr<SessionManager<Member>> }
/// impl Actor for Member { type Context = SessionContext<Self>; }
/// impl Session for Member {
///     fn on_message(&mut self, msg: String, _: &mut SessionContext<Self>) {
///         // Reaches the members on every node.
///         self.room.do_send(Broadcast::text(msg));
///     }
/// }
///
/// #[actix_web::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let room = SessionManager::start_with(|room| move || Member { room: room.clone() });
///     let bridge = RedisBridge::new("redis://127.0.0.1:6379/", "chat")?
///         .node("web-1")
///         .health_timeout(Duration::from_secs(1))
///         .start(&room);
///     // ... mount `SockJs::new("/chat", room)` on an HttpServer and run it ...
///     # drop(bridge);
///     Ok(())
/// }
/// ```
#[must_use]
pub struct RedisBridge {
    client: ::redis::Client,
    stream: String,
    node: String,
    health_timeout: Duration,
    backoff: (Duration, Duration),
    limits: Limits,
    retain: Duration,
    stream_len: usize,
}

/// The outbox's bound.
#[derive(Debug, Clone, Copy)]
struct Limits {
    messages: usize,
    bytes: usize,
    age: Duration,
}

impl fmt::Debug for RedisBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBridge")
            .field("server", &self.client.get_connection_info().addr())
            .field("stream", &self.stream)
            .field("node", &self.node)
            .field("health_timeout", &self.health_timeout)
            .field("backoff", &self.backoff)
            .field("outbox", &self.limits)
            .field("retain", &self.retain)
            .field("stream_len", &self.stream_len)
            .finish()
    }
}

/// The error of [`RedisBridge::new`]: the URL is not one redis-rs takes.
/// Its [`source`](std::error::Error::source) is redis-rs's own error; the
/// URL is not repeated (it may hold a password).
///
/// # Examples
///
/// ```
/// use actix_sockjs::cluster::{InvalidUrl, RedisBridge};
///
/// let err: InvalidUrl = RedisBridge::new("http://127.0.0.1/", "chat").unwrap_err();
/// assert!(err.to_string().starts_with("invalid Redis URL"));
/// // `?` turns it into a `Box<dyn Error>` or, in a `main` that returns
/// // `std::io::Result`, an `std::io::Error` (kind `InvalidInput`).
/// let io: std::io::Error = err.into();
/// assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
/// ```
#[derive(Debug)]
pub struct InvalidUrl {
    source: ::redis::RedisError,
}

impl fmt::Display for InvalidUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid Redis URL: {}", self.source)
    }
}

impl std::error::Error for InvalidUrl {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// So that `RedisBridge::new(..)?` works in an actix-web `main`, which
/// returns `std::io::Result`.
impl From<InvalidUrl> for std::io::Error {
    fn from(err: InvalidUrl) -> Self {
        Self::new(std::io::ErrorKind::InvalidInput, err)
    }
}

impl RedisBridge {
    /// A bridge to the Redis server at `url` (such as
    /// `redis://127.0.0.1:6379/`) on the stream `channel`. Nothing connects
    /// until [`start`](Self::start); the error is for a malformed URL.
    ///
    /// # Errors
    ///
    /// [`InvalidUrl`]: the URL is not one redis-rs takes (a `rediss://`
    /// URL without a TLS feature of redis-rs, say).
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_sockjs::cluster::RedisBridge;
    ///
    /// assert!(RedisBridge::new("redis://:secret@127.0.0.1:6379/0", "chat").is_ok());
    /// let bad = RedisBridge::new("not a url", "chat").unwrap_err();
    /// println!("{bad}");
    /// ```
    pub fn new(url: &str, channel: impl Into<String>) -> Result<Self, InvalidUrl> {
        Ok(Self {
            client: ::redis::Client::open(url).map_err(|source| InvalidUrl { source })?,
            stream: channel.into(),
            node: format!("pid{}", std::process::id()),
            health_timeout: Duration::from_secs(1),
            backoff: (Duration::from_millis(50), Duration::from_millis(500)),
            limits: Limits { messages: 10_000, bytes: 16 << 20, age: Duration::from_secs(30) },
            retain: Duration::from_secs(10),
            stream_len: 100_000,
        })
    }

    /// This node's name in logs and on the wire (default `pid<N>`). Each
    /// start of a bridge adds a random part of its own, so a restarted
    /// node, or two with one name, are told apart.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix_sockjs::cluster::RedisBridge;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bridge = RedisBridge::new("redis://127.0.0.1/", "chat")?.node("web-1");
    /// assert!(format!("{bridge:?}").contains("web-1"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn node(mut self, name: impl Into<String>) -> Self {
        self.node = name.into();
        self
    }

    /// How long Redis may leave the publisher or the reader without an
    /// answer before that side counts as down (and its connection is
    /// dropped and made again). Default: 1 s; at least 40 ms.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use actix_sockjs::cluster::RedisBridge;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bridge = RedisBridge::new("redis://127.0.0.1/", "chat")
    ///     ?
    ///     .health_timeout(Duration::from_millis(1500));
    /// # Ok(())
    /// # }
    /// ```
    pub fn health_timeout(mut self, timeout: Duration) -> Self {
        self.health_timeout = timeout.max(Duration::from_millis(40));
        self
    }

    /// How long to wait before connecting again after a failure: `min` at
    /// first, doubling up to `max`. Default: 50 ms to 500 ms, so that
    /// delivery resumes within half a second of Redis coming back.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use actix_sockjs::cluster::RedisBridge;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bridge = RedisBridge::new("redis://127.0.0.1/", "chat")
    ///     ?
    ///     .backoff(Duration::from_millis(100), Duration::from_secs(1));
    /// # Ok(())
    /// # }
    /// ```
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        self.backoff = (min, max.max(min));
        self
    }

    /// The outbox's bound: what waits for Redis beyond `messages`
    /// messages, `bytes` bytes or `age` is dropped, oldest first, counted
    /// and logged. Default: 10,000 messages, 16 MiB, 30 s; at least one
    /// message, one byte and one second (an age of zero dropped every
    /// message as it came, and a reader starting took nothing from before
    /// it).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use actix_sockjs::cluster::RedisBridge;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bridge = RedisBridge::new("redis://127.0.0.1/", "chat")
    ///     ?
    ///     .outbox(100_000, 64 << 20, Duration::from_secs(60));
    /// # Ok(())
    /// # }
    /// ```
    pub fn outbox(mut self, messages: usize, bytes: usize, age: Duration) -> Self {
        self.limits =
            Limits { messages: messages.max(1), bytes: bytes.max(1), age: age.max(Duration::from_secs(1)) };
        self
    }

    /// How long the outbox keeps what Redis took, to publish it again
    /// should Redis restart before every node read it. Default: 10 s,
    /// within the outbox's bound: what is kept goes first when the bound
    /// needs room (above 1,000 messages a second, the default bound keeps
    /// less than 10 s).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use actix_sockjs::cluster::RedisBridge;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bridge = RedisBridge::new("redis://127.0.0.1/", "chat")?.retain(Duration::ZERO);
    /// # Ok(())
    /// # }
    /// ```
    pub fn retain(mut self, retain: Duration) -> Self {
        self.retain = retain;
        self
    }

    /// About how many entries the stream keeps (`XADD MAXLEN ~`): a node
    /// that falls further behind than that misses what was trimmed
    /// (counted in [`REDIS_MISSED`]). Default: 100,000, well above what
    /// the nodes publish again after a restart (each up to its outbox).
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix_sockjs::cluster::RedisBridge;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bridge = RedisBridge::new("redis://127.0.0.1/", "chat")?.stream_len(100_000);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream_len(mut self, entries: usize) -> Self {
        self.stream_len = entries.max(1);
        self
    }

    /// Makes the bridge `manager`'s relay and starts it on the current
    /// actix system (call it inside one, as in `#[actix_web::main]`). The
    /// bridge runs until its [`BridgeHandle`] is stopped or the manager
    /// stops; dropping the handle leaves it running.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use actix::prelude::*;
    /// # use actix_sockjs::{cluster::RedisBridge, Session, SessionContext, SessionManager};
    /// # struct Echo;
    /// # impl Actor for Echo { type Context = SessionContext<Self>; }
    /// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
    /// # actix::System::new().block_on(async {
    /// let manager = SessionManager::new(|| Echo).start();
    /// let bridge = RedisBridge::new("redis://127.0.0.1/", "echo")?.start(&manager);
    /// println!("{:?}", bridge.health());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a running actix system (its tasks are spawned on the
    /// current one).
    pub fn start<A: Session>(self, manager: &Addr<SessionManager<A>>) -> BridgeHandle {
        describe();
        let sender = format!("{}/{:016x}", wire_id(&self.node), incarnation());
        let label = self.stream.clone();
        // host:port (or a socket's path): never the URL, which may hold a
        // password.
        let addr = self.client.get_connection_info().addr().to_string();
        let bridge = Arc::new(Bridge {
            client: self.client,
            addr,
            stream: self.stream,
            sender,
            health_timeout: self.health_timeout,
            backoff: self.backoff,
            retain: self.retain,
            stream_len: self.stream_len,
            outbox: Mutex::new(Outbox::new(self.limits)),
            wake: Notify::new(),
            stopped: AtomicBool::new(false),
            missed: AtomicU64::new(0),
            epoch: Instant::now(),
            catch_up: self.limits.age,
            started_ms: unix_ms(),
            publisher: Side::new("publisher", gauge!(REDIS_PUBLISHER_UP, "channel" => label.clone())),
            reader: Side::new("reader", gauge!(REDIS_READER_UP, "channel" => label.clone())),
            metrics: BridgeMetrics::new(&label),
        });
        log::info!(
            "sockjs: redis bridge on stream {:?} at {} starting as {}",
            bridge.stream,
            bridge.addr,
            bridge.sender
        );
        manager.do_send(SetRelay::to(Publisher(bridge.clone())));
        let tasks = vec![
            actix_web::rt::spawn(publish(bridge.clone())),
            actix_web::rt::spawn(read(bridge.clone(), manager.clone().recipient())),
            actix_web::rt::spawn(watch_health(bridge.clone())),
        ];
        let tasks = Arc::new(Tasks { handles: tasks, stopped: AtomicBool::new(false) });
        BridgeHandle { bridge, relay: manager.clone().recipient(), tasks }
    }
}

/// A running [`RedisBridge`]: ask it whether Redis answers, or
/// [`stop`](Self::stop) the bridge (dropping the handle leaves it running).
/// Clones are handles of the same bridge: one can sit in a health route's
/// `web::Data` while another stops the bridge at shutdown.
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{cluster::{BridgeHandle, RedisBridge}, Session, SessionContext, SessionManager};
/// # struct Member;
/// # impl Actor for Member { type Context = SessionContext<Self>; }
/// # impl Session for Member { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// # #[actix_web::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let room = SessionManager::new(|| Member).start();
/// let bridge: BridgeHandle = RedisBridge::new("redis://127.0.0.1:6379/", "chat")?.start(&room);
/// // A readiness probe can report it.
/// let ready = bridge.is_up();
/// # let _ = ready;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct BridgeHandle {
    bridge: Arc<Bridge>,
    relay: Recipient<SetRelay>,
    tasks: Arc<Tasks>,
}

/// The bridge's tasks, and whether a handle has stopped them.
struct Tasks {
    handles: Vec<JoinHandle<()>>,
    stopped: AtomicBool,
}

/// How a [`RedisBridge`] is doing ([`BridgeHandle::health`]).
///
/// # Examples
///
/// ```no_run
/// # fn f(bridge: &actix_sockjs::cluster::BridgeHandle) {
/// let health = bridge.health();
/// if !health.publisher_up {
///     log::warn!("{} message(s) wait for Redis", health.outbox_messages);
/// }
/// // Compared with the last look: broadcasts of other nodes lost.
/// # let last_missed = 0;
/// if health.missed > last_missed {
///     log::warn!("clients here missed {} broadcast(s); asking them to reload", health.missed - last_missed);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BridgeHealth {
    /// Redis answered the publisher within the health timeout.
    pub publisher_up: bool,
    /// Redis answered the reader within the health timeout.
    pub reader_up: bool,
    /// Messages waiting in the outbox for Redis.
    pub outbox_messages: usize,
    /// Their bytes.
    pub outbox_bytes: usize,
    /// Messages dropped from the outbox unpublished since the bridge started.
    pub dropped: u64,
    /// Messages of other nodes that this node will never get (their
    /// outboxes dropped them, or the stream was trimmed before this node
    /// read them), counted since the bridge started as each sender's next
    /// message arrives: where it grows, clients of this node
    /// missed broadcasts, and an application may tell them to fetch the
    /// state again.
    pub missed: u64,
}

impl fmt::Debug for BridgeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgeHandle")
            .field("stream", &self.bridge.stream)
            .field("health", &self.health())
            .finish()
    }
}

impl BridgeHandle {
    /// Whether the bridge both publishes and reads now, that is, whether
    /// broadcasts cross nodes without waiting.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(bridge: &actix_sockjs::cluster::BridgeHandle) {
    /// if !bridge.is_up() {
    ///     log::warn!("cross-node delivery is waiting for Redis");
    /// }
    /// # }
    /// ```
    pub fn is_up(&self) -> bool {
        self.bridge.publisher.up.load(Ordering::Relaxed) && self.bridge.reader.up.load(Ordering::Relaxed)
    }

    /// The publisher's and the reader's health and the outbox.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(bridge: &actix_sockjs::cluster::BridgeHandle) {
    /// let health = bridge.health();
    /// println!("up: {} / {}, waiting: {}", health.publisher_up, health.reader_up, health.outbox_messages);
    /// # }
    /// ```
    pub fn health(&self) -> BridgeHealth {
        let outbox = self.bridge.outbox();
        BridgeHealth {
            publisher_up: self.bridge.publisher.up.load(Ordering::Relaxed),
            reader_up: self.bridge.reader.up.load(Ordering::Relaxed),
            outbox_messages: outbox.waiting,
            outbox_bytes: outbox.waiting_bytes,
            dropped: outbox.dropped,
            missed: self.bridge.missed.load(Ordering::Relaxed),
        }
    }

    /// Stops the bridge: broadcasts stay on this node from then on, and
    /// what waits in the outbox is dropped. Only the first call, through
    /// any clone of the handle, does anything. A bridge another one
    /// replaced on its manager (started on the same manager later) has
    /// stopped already; its `stop` leaves the manager's new relay alone
    /// once the manager has taken it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(bridge: actix_sockjs::cluster::BridgeHandle) {
    /// let probe = bridge.clone(); // for a health route, say
    /// bridge.stop();
    /// assert!(!probe.is_up());
    /// # }
    /// ```
    pub fn stop(&self) {
        if self.tasks.stopped.swap(true, Ordering::Relaxed) {
            return;
        }
        // Stopped without a handle: the manager dropped its relay (for
        // another's, or as it stopped), and has no relay of ours to drop.
        if !self.bridge.stopped() {
            self.relay.do_send(SetRelay::none());
        }
        self.bridge.stop();
        for task in &self.tasks.handles {
            task.abort();
        }
        for side in [&self.bridge.publisher, &self.bridge.reader] {
            side.up.store(false, Ordering::Relaxed);
            side.gauge.set(0.0);
        }
        self.bridge.metrics.up.set(0.0);
    }
}

/// What the bridge's tasks and its relay share.
struct Bridge {
    client: ::redis::Client,
    /// Where Redis is, for the log: `host:port`.
    addr: String,
    stream: String,
    /// This start of this node on the wire: its name and a random part.
    sender: String,
    health_timeout: Duration,
    backoff: (Duration, Duration),
    retain: Duration,
    stream_len: usize,
    outbox: Mutex<Outbox>,
    /// Wakes the publisher when the outbox has something new.
    wake: Notify,
    stopped: AtomicBool,
    /// Messages of other nodes never to come ([`BridgeHealth::missed`]).
    missed: AtomicU64,
    /// What [`Side::last_ok`] counts from.
    epoch: Instant,
    /// How far back a reader catches up at most, beyond its start margin:
    /// the outbox's age bound, past which a publisher drops what Redis
    /// did not take either.
    catch_up: Duration,
    /// When the bridge started, in Unix milliseconds: entries sent before
    /// it (read again from the start margin) are delivered but not timed.
    started_ms: u64,
    publisher: Side,
    reader: Side,
    metrics: BridgeMetrics,
}

impl Drop for Bridge {
    /// What never reached Redis is lost to the other nodes: said once, as
    /// the bridge goes (a node stopped during a Redis outage, say), and
    /// counted with the bound's drops.
    /// (A batch sent as the bridge stopped, which Redis may have taken,
    /// is told apart: a warning, not counted.)
    fn drop(&mut self) {
        let outbox = self.outbox.get_mut().unwrap_or_else(PoisonError::into_inner);
        // The batch in flight's messages the bound dropped are no longer
        // waiting: the rest of `waiting` past them was never sent.
        let in_flight = outbox.in_flight;
        let unsent =
            outbox.waiting.saturating_sub(in_flight.saturating_sub(outbox.popped_in_flight as usize));
        if unsent > 0 {
            log::error!(
                "sockjs: redis bridge of {:?} stopped with {unsent} message(s) never published; \
                 the other nodes will not get them",
                self.stream
            );
            self.metrics.dropped.increment(unsent as u64);
        }
        if in_flight > 0 {
            log::warn!(
                "sockjs: redis bridge of {:?} stopped before Redis answered for {in_flight} message(s) \
                 it was sent; the other nodes may not get them",
                self.stream
            );
        }
    }
}

impl Bridge {
    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// One side of it, as log lines name it: `publisher of "chat" at
    /// 127.0.0.1:6379`.
    fn who(&self, role: &str) -> String {
        format!("{role} of {:?} at {}", self.stream, self.addr)
    }

    /// Milliseconds since [`Self::epoch`], plus one (0 is "never").
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(1)
    }

    fn ok(&self, side: &Side) {
        side.last_ok.store(self.now(), Ordering::Relaxed);
    }

    /// A connection whose commands time out after `response` (none
    /// waits longer than the health timeout to connect).
    async fn connect(&self, side: &Side, response: Duration) -> ::redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.health_timeout))
            .set_response_timeout(Some(response));
        let conn = self.client.get_multiplexed_async_connection_with_config(&config).await?;
        self.metrics.connects(side.role).increment(1);
        Ok(conn)
    }

    /// Waits `delay` after a failure and answers the next delay.
    async fn back_off(&self, delay: Duration) -> Duration {
        time::sleep(delay).await;
        delay.saturating_mul(2).min(self.backoff.1)
    }
}

/// The publisher or the reader, as the health watch sees it.
struct Side {
    role: &'static str,
    /// When Redis last answered ([`Bridge::now`]; 0: never).
    last_ok: AtomicU64,
    up: AtomicBool,
    gauge: Gauge,
}

impl Side {
    fn new(role: &'static str, gauge: Gauge) -> Self {
        gauge.set(0.0);
        Self { role, last_ok: AtomicU64::new(0), up: AtomicBool::new(false), gauge }
    }
}

/// The bridge's metric handles, labelled with its stream.
struct BridgeMetrics {
    label: String,
    up: Gauge,
    published: Counter,
    dropped: Counter,
    received: Counter,
    duplicates: Counter,
    missed: Counter,
    outbox: Gauge,
    outbox_bytes: Gauge,
    lag: Histogram,
}

impl BridgeMetrics {
    fn new(label: &str) -> Self {
        let l = || label.to_owned();
        Self {
            label: l(),
            up: gauge!(REDIS_UP, "channel" => l()),
            published: counter!(REDIS_PUBLISHED, "channel" => l()),
            dropped: counter!(REDIS_DROPPED, "channel" => l()),
            received: counter!(REDIS_RECEIVED, "channel" => l()),
            duplicates: counter!(REDIS_DUPLICATES, "channel" => l()),
            missed: counter!(REDIS_MISSED, "channel" => l()),
            outbox: gauge!(REDIS_OUTBOX, "channel" => l()),
            outbox_bytes: gauge!(REDIS_OUTBOX_BYTES, "channel" => l()),
            lag: histogram!(REDIS_LAG, "channel" => l()),
        }
    }

    fn connects(&self, role: &'static str) -> Counter {
        counter!(REDIS_CONNECTS, "channel" => self.label.clone(), "role" => role)
    }
}

/// One message in the outbox.
struct Entry {
    seq: u64,
    at: Instant,
    frame: Arc<Vec<u8>>,
}

/// What waits for Redis (sequence numbers above `stored`) and what Redis
/// took lately (kept to publish again should Redis restart), in order.
struct Outbox {
    entries: VecDeque<Entry>,
    limits: Limits,
    /// The next message's sequence number (the first is 1).
    next_seq: u64,
    /// Redis took every message up to this one.
    stored: u64,
    /// Messages and bytes above `stored`.
    waiting: usize,
    waiting_bytes: usize,
    /// Bytes of all entries.
    bytes: usize,
    dropped: u64,
    /// This outage's drops were logged.
    told: bool,
    /// Messages in a pipeline sent to Redis that has not answered yet.
    in_flight: usize,
    /// Their first and last sequence numbers.
    flight: Option<(u64, u64)>,
    /// Those of them the bound dropped from the outbox meanwhile: dropped
    /// if Redis refuses the batch, published if it takes it, so counted
    /// once it answers ([`Outbox::landed`]); an audit found them counted
    /// as dropped though Redis took them.
    popped_in_flight: u64,
}

impl Outbox {
    fn new(limits: Limits) -> Self {
        Self {
            entries: VecDeque::new(),
            limits,
            next_seq: 1,
            stored: 0,
            waiting: 0,
            waiting_bytes: 0,
            bytes: 0,
            dropped: 0,
            told: false,
            in_flight: 0,
            flight: None,
            popped_in_flight: 0,
        }
    }

    /// Whether `dropped` drops are this outage's first, to log once.
    fn first_drops(&mut self, dropped: u64) -> bool {
        dropped > 0 && !std::mem::replace(&mut self.told, true)
    }

    /// A batch of these messages goes to Redis.
    fn sending(&mut self, batch: &[(u64, Arc<Vec<u8>>)]) {
        self.in_flight = batch.len();
        self.flight = batch.first().zip(batch.last()).map(|((first, _), (last, _))| (*first, *last));
        self.popped_in_flight = 0;
    }

    /// Redis answered for the batch in flight, taking it or not; answers
    /// how many of its messages the bound dropped meanwhile that are lost
    /// (if Redis refused it: the outbox no longer has them to send again).
    fn landed(&mut self, taken: bool) -> u64 {
        self.in_flight = 0;
        self.flight = None;
        let popped = std::mem::take(&mut self.popped_in_flight);
        if taken {
            0
        } else {
            self.dropped += popped;
            popped
        }
    }

    /// Adds a message, built for its sequence number; answers how many
    /// unpublished ones the bound dropped.
    fn push(&mut self, frame: impl FnOnce(u64) -> Vec<u8>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let frame = frame(seq);
        if frame.len() > self.limits.bytes {
            // Larger than the whole bound: it alone goes, not what waits
            // (unless the bound's age drops that as well).
            let before = self.dropped;
            self.dropped += 1;
            self.expire(Duration::MAX);
            return self.dropped - before;
        }
        self.bytes += frame.len();
        self.waiting += 1;
        self.waiting_bytes += frame.len();
        self.entries.push_back(Entry { seq, at: Instant::now(), frame: Arc::new(frame) });
        let before = self.dropped;
        while self.entries.len() > self.limits.messages || self.bytes > self.limits.bytes {
            self.pop();
        }
        self.expire(Duration::MAX);
        self.dropped - before
    }

    /// Drops what is older than the bound's age, and what Redis took that
    /// is older than `retain`.
    fn expire(&mut self, retain: Duration) {
        while let Some(first) = self.entries.front() {
            let age = first.at.elapsed();
            let stored = first.seq <= self.stored;
            if age > self.limits.age || (stored && age > retain) {
                self.pop();
            } else {
                break;
            }
        }
    }

    fn pop(&mut self) {
        let Some(entry) = self.entries.pop_front() else { return };
        self.bytes -= entry.frame.len();
        if entry.seq > self.stored {
            self.waiting -= 1;
            self.waiting_bytes -= entry.frame.len();
            if self.flight.is_some_and(|(first, last)| (first..=last).contains(&entry.seq)) {
                self.popped_in_flight += 1;
            } else {
                self.dropped += 1;
            }
        }
    }

    /// Up to `max` entries from sequence number `from` on.
    /// Up to `max` entries (and `max_bytes`, but at least one) from
    /// sequence number `from` on.
    fn batch(&self, from: u64, max: usize, max_bytes: usize) -> Vec<(u64, Arc<Vec<u8>>)> {
        let start = self.entries.partition_point(|e| e.seq < from);
        let mut bytes = 0;
        self.entries
            .range(start..)
            .take(max)
            .take_while(|e| {
                let first = bytes == 0;
                bytes += e.frame.len();
                first || bytes <= max_bytes
            })
            .map(|e| (e.seq, e.frame.clone()))
            .collect()
    }

    /// Redis took everything up to `seq`.
    fn stored(&mut self, seq: u64, retain: Duration) {
        if seq <= self.stored {
            return;
        }
        let start = self.entries.partition_point(|e| e.seq <= self.stored);
        let end = self.entries.partition_point(|e| e.seq <= seq);
        for entry in self.entries.range(start..end) {
            self.waiting -= 1;
            self.waiting_bytes -= entry.frame.len();
        }
        self.stored = seq;
        self.expire(retain);
    }

    /// The first sequence number to publish on a new connection:
    /// everything kept when Redis lost what it had; else where the last
    /// connection stopped (`next`: a replay cut short goes on) or after
    /// what Redis took, whichever comes first.
    fn resume_from(&self, redis_restarted: bool, next: u64) -> u64 {
        match self.entries.front() {
            Some(first) if redis_restarted => first.seq,
            _ => next.min(self.stored + 1),
        }
    }
}

/// The manager's side of the bridge: puts messages in the outbox.
struct Publisher(Arc<Bridge>);

impl Relay for Publisher {
    fn publish(&mut self, msg: RelayMessage) {
        let bridge = &self.0;
        let sent_at = unix_ms();
        let (dropped, waiting, bytes, tell) = {
            let mut outbox = bridge.outbox();
            let dropped = outbox.push(|seq| encode(&bridge.sender, seq, sent_at, &msg));
            let tell = outbox.first_drops(dropped);
            (dropped, outbox.waiting, outbox.waiting_bytes, tell)
        };
        bridge.metrics.outbox.set(waiting as f64);
        bridge.metrics.outbox_bytes.set(bytes as f64);
        if dropped > 0 {
            bridge.metrics.dropped.increment(dropped);
            if tell {
                log::error!(
                    "sockjs: redis outbox of {:?} over its bound; dropping the oldest unpublished messages \
                     (counted in {REDIS_DROPPED}; logged once per outage)",
                    bridge.stream
                );
            }
        }
        bridge.wake.notify_one();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// A random part for this start of the bridge.
fn incarnation() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish()
}

fn unix_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis())
        .unwrap_or(u64::MAX)
}

/// A session id, group or node name as it goes on the wire: `%`, `,`, `/`,
/// spaces and control characters percent-escaped, so that no id (a URL may
/// carry `a%20b`) can break the format.
fn wire_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        if matches!(c, '%' | ',' | ' ' | '/') || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A list of ids on the wire: [`wire_id`]s joined by commas.
fn wire_list(ids: &[Arc<str>]) -> String {
    ids.iter().map(|id| wire_id(id)).collect::<Vec<_>>().join(",")
}

/// A list of group names on the wire: [`wire_id`]s each followed by a
/// comma, so that an empty name (a group may have one) is one too.
fn wire_names(names: &[Arc<str>]) -> String {
    names.iter().map(|name| format!("{},", wire_id(name))).collect()
}

fn read_names(wire: &str) -> Box<[Arc<str>]> {
    wire.split_terminator(',').map(read_id).collect()
}

fn read_id(wire: &str) -> Arc<str> {
    Arc::from(crate::util::percent_decode(wire, false))
}

fn read_list(wire: &str) -> Box<[Arc<str>]> {
    wire.split(',').filter(|id| !id.is_empty()).map(read_id).collect()
}

/// One entry's `m` field: `sockjs2 <sender> <seq> <unix ms> ` and then
///
/// - `b <text>`: to everyone;
/// - `x <except ids> <text>`: to everyone but these;
/// - `t <id> <text>`: to one session;
/// - `l <ids> <text>`: to these sessions;
/// - `g <group> <except ids> <text>`: to a group's members but these;
///
/// and with groups whose members it must not reach (readers from before
/// `Broadcast::except_groups` skip these three):
///
/// - `X <except ids> <except groups> <text>`: to everyone but these;
/// - `L <ids> <except groups> <text>`: to these sessions but those;
/// - `G <group> <except ids> <except groups> <text>`: to a group's members
///   but these.
///
/// Ids and names are [`wire_id`]s, lists of ids comma-separated, lists of
/// groups each name followed by a comma ([`wire_names`]).
///
/// A close ([`Broadcast::close`](crate::Broadcast::close)) is any of these
/// after `C <code> `, its text the reason (readers from before it skip
/// it).
fn encode(sender: &str, seq: u64, sent_at: u64, msg: &RelayMessage) -> Vec<u8> {
    let mut out = format!("{MAGIC} {sender} {seq} {sent_at} ");
    if let Some(code) = msg.payload.close {
        out.push_str(&format!("C {code} "));
    }
    let groups = &msg.except_groups;
    match (&msg.audience, msg.except.is_empty()) {
        (Audience::All, _) if !groups.is_empty() => {
            out.push_str(&format!("X {} {} ", wire_list(&msg.except), wire_names(groups)));
        }
        (Audience::All, true) => out.push_str("b "),
        (Audience::All, false) => out.push_str(&format!("x {} ", wire_list(&msg.except))),
        (Audience::Ids(ids), _) if !groups.is_empty() => {
            out.push_str(&format!("L {} {} ", wire_list(ids), wire_names(groups)));
        }
        (Audience::Ids(ids), _) => out.push_str(&format!("l {} ", wire_list(ids))),
        (Audience::Group(group), _) if !groups.is_empty() => {
            out.push_str(&format!("G {} {} {} ", wire_id(group), wire_list(&msg.except), wire_names(groups)));
        }
        (Audience::Group(group), _) => {
            out.push_str(&format!("g {} {} ", wire_id(group), wire_list(&msg.except)));
        }
        (Audience::Session(id), _) => out.push_str(&format!("t {} ", wire_id(id))),
    }
    out.push_str(&msg.payload.text);
    out.into_bytes()
}

/// An entry as read: who sent it, its sequence number and time.
struct Received<'a> {
    sender: &'a str,
    seq: u64,
    sent_at: u64,
    msg: RelayMessage,
}

/// Reads an entry's `m` field; `None` for anything else.
fn decode(frame: &[u8]) -> Option<Received<'_>> {
    let frame = std::str::from_utf8(frame).ok()?;
    let rest = frame.strip_prefix(MAGIC)?.strip_prefix(' ')?;
    let (sender, rest) = rest.split_once(' ')?;
    let (seq, rest) = rest.split_once(' ')?;
    let (sent_at, rest) = rest.split_once(' ')?;
    let (seq, sent_at) = (seq.parse().ok()?, sent_at.parse().ok()?);
    let (close, rest) = match rest.strip_prefix("C ") {
        Some(rest) => {
            let (code, rest) = rest.split_once(' ')?;
            (Some(code.parse::<u16>().ok()?), rest)
        }
        None => (None, rest),
    };
    let msg = |audience, except, text: &str| RelayMessage {
        audience,
        except,
        except_groups: Box::default(),
        payload: match close {
            Some(code) => close_payload(code, text.to_owned()),
            None => payload(text.to_owned()),
        },
    };
    let without = |msg: RelayMessage, groups: &str| RelayMessage { except_groups: read_names(groups), ..msg };
    let msg = match rest.split_once(' ')? {
        ("b", text) => msg(Audience::All, Box::default(), text),
        ("X", rest) => {
            let (except, rest) = rest.split_once(' ')?;
            let (groups, text) = rest.split_once(' ')?;
            without(msg(Audience::All, read_list(except), text), groups)
        }
        ("L", rest) => {
            let (ids, rest) = rest.split_once(' ')?;
            let (groups, text) = rest.split_once(' ')?;
            without(msg(Audience::Ids(read_list(ids)), Box::default(), text), groups)
        }
        ("G", rest) => {
            let (group, rest) = rest.split_once(' ')?;
            let (except, rest) = rest.split_once(' ')?;
            let (groups, text) = rest.split_once(' ')?;
            without(msg(Audience::Group(read_id(group)), read_list(except), text), groups)
        }
        ("x", rest) => {
            let (except, text) = rest.split_once(' ')?;
            msg(Audience::All, read_list(except), text)
        }
        ("l", rest) => {
            let (ids, text) = rest.split_once(' ')?;
            msg(Audience::Ids(read_list(ids)), Box::default(), text)
        }
        ("g", rest) => {
            let (group, rest) = rest.split_once(' ')?;
            let (except, text) = rest.split_once(' ')?;
            msg(Audience::Group(read_id(group)), read_list(except), text)
        }
        ("t", rest) => {
            let (id, text) = rest.split_once(' ')?;
            let id = Some(id).filter(|id| !id.is_empty())?;
            msg(Audience::Session(read_id(id)), Box::default(), text)
        }
        _ => return None,
    };
    Some(Received { sender, seq, sent_at, msg })
}

/// The server's `run_id`: a new one means Redis restarted (or another
/// server answers), and what it had may be gone. `None` when the server
/// does not tell (an ACL user without `INFO`, a Redis-compatible server
/// without `run_id`): restarts then go unnoticed, and what Redis lost in
/// one is not published again. An error when Redis does not answer.
/// Whether the connection's user may run `MULTI`/`EXEC`: an ACL user
/// without them (`NOPERM`), or a Redis that renamed them, gets its batches
/// as a plain pipeline. Redis would refuse the `MULTI` of a transaction and
/// run its XADDs one by one, then refuse the `EXEC`: the publisher would
/// append the batch again at every retry.
async fn transactions(conn: &mut MultiplexedConnection) -> ::redis::RedisResult<bool> {
    match ::redis::cmd("MULTI").query_async::<()>(conn).await {
        Ok(()) => ::redis::cmd("DISCARD").query_async::<()>(conn).await.map(|()| true),
        Err(e)
            if e.code().is_some_and(|code| code == "NOPERM") || e.to_string().contains("unknown command") =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

async fn run_id(conn: &mut MultiplexedConnection) -> ::redis::RedisResult<Option<String>> {
    Ok(server_info(conn).await?.run_id)
}

/// What `INFO server` says of the server, as far as it tells.
#[derive(Debug, Default)]
struct ServerInfo {
    run_id: Option<String>,
    /// How long the server has run, in milliseconds.
    uptime_ms: Option<u64>,
}

/// The server's [`ServerInfo`] (see [`run_id`]); an error when Redis does
/// not answer.
async fn server_info(conn: &mut MultiplexedConnection) -> ::redis::RedisResult<ServerInfo> {
    match ::redis::cmd("INFO").arg("server").query_async::<String>(conn).await {
        Ok(info) => Ok(parse_server_info(&info)),
        Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => Err(e),
        Err(_) => Ok(ServerInfo::default()),
    }
}

fn parse_server_info(info: &str) -> ServerInfo {
    let field = |name: &str| info.lines().find_map(|line| line.strip_prefix(name)).map(str::trim);
    ServerInfo {
        run_id: field("run_id:").map(str::to_owned),
        uptime_ms: field("uptime_in_seconds:")
            .and_then(|s| s.parse::<u64>().ok())
            .map(|s| s.saturating_mul(1000)),
    }
}

/// An outage as a task sees it, for the log line at its end. It is
/// counted from the task's last command that worked: a stall is noticed
/// only when a command times out (`health_timeout` later), so counting
/// from the first failure read a 5 s stall as ~4 s.
struct Outage {
    /// Whose: `publisher of "chat" at 127.0.0.1:6379`.
    who: String,
    /// When the last command that worked answered.
    last_ok: Option<Instant>,
    /// When the outage began (the last good answer before it; the first
    /// failure when nothing worked before), while it lasts.
    began: Option<Instant>,
    /// The failure last logged, when, and how many failures since.
    told: Option<(String, Instant)>,
    quiet: u32,
}

/// How often an outage's failures are logged (debug) while they say the
/// same: a retry every half second logged each time filled a debug log
/// with ~7,000 lines an hour per side.
const REPEAT_LOG: Duration = Duration::from_secs(10);

impl Outage {
    /// An outage tracker for `who` (see [`Bridge::who`]).
    fn new(who: String) -> Self {
        Self { who, last_ok: None, began: None, told: None, quiet: 0 }
    }

    /// A command failed at `now`: the first failure of an outage is logged
    /// as a warning, the others at debug level, once per [`REPEAT_LOG`]
    /// while they repeat the same failure.
    fn failed(&mut self, what: impl fmt::Display, now: Instant) {
        let what = what.to_string();
        let what = util::cut(&what, ERROR_IN_LINE);
        let who = &self.who;
        if self.began.is_none() {
            log::warn!("sockjs: redis {who}: {what}; retrying");
            self.began = Some(self.last_ok.unwrap_or(now));
        } else {
            let repeat = self
                .told
                .as_ref()
                .is_some_and(|(said, at)| said == what && now.saturating_duration_since(*at) < REPEAT_LOG);
            if repeat {
                self.quiet += 1;
                return;
            }
            match std::mem::take(&mut self.quiet) {
                0 => log::debug!("sockjs: redis {who}: {what}"),
                n => log::debug!("sockjs: redis {who}: {what} (and {n} failure(s) since the last line)"),
            }
        }
        self.told = Some((what.to_owned(), now));
    }

    /// A command worked at `now`: how long the outage it ends lasted, if
    /// it ends one.
    fn ended(&mut self, now: Instant) -> Option<Duration> {
        self.last_ok = Some(now);
        let down = now.saturating_duration_since(self.began.take()?);
        (self.told, self.quiet) = (None, 0);
        log::info!("sockjs: redis {} works again, {down:.1?} after its last command that worked", self.who);
        Some(down)
    }
}

/// Appends the outbox to the stream, in order; keeps the connection
/// checked while idle. Backs off after any failure, a refused command
/// (`MISCONF`, `OOM`, `READONLY`, `LOADING`) included, and counts as up
/// only after a command succeeded.
async fn publish(bridge: Arc<Bridge>) {
    let side = &bridge.publisher;
    let heartbeat = bridge.health_timeout / 4;
    let mut conn: Option<MultiplexedConnection> = None;
    let mut server: Option<String> = None;
    let mut told_inspection = false;
    // Whether batches go as transactions (see `transactions`).
    let mut atomic = true;
    let mut told_atomic = false;
    let mut next = 1;
    let mut delay = bridge.backoff.0;
    let mut outage = Outage::new(bridge.who("publisher"));
    while !bridge.stopped() {
        let Some(c) = conn.as_mut() else {
            let attempt = async {
                let mut c = bridge.connect(side, bridge.health_timeout).await?;
                let id = run_id(&mut c).await?;
                let atomic = transactions(&mut c).await?;
                Ok::<_, ::redis::RedisError>((c, id, atomic))
            };
            match attempt.await {
                Ok((c, id, may)) => {
                    atomic = may;
                    if !atomic && !std::mem::replace(&mut told_atomic, true) {
                        log::error!(
                            "sockjs: the redis user may not run MULTI/EXEC (grant it +multi +exec); batches \
                             go as plain pipelines, and one that Redis takes only in part (a write refused \
                             in its middle: OOM) loses the messages refused"
                        );
                    }
                    if id.is_none() && !std::mem::replace(&mut told_inspection, true) {
                        log::warn!(
                            "sockjs: redis at {} does not answer INFO's run_id; a restart of Redis will go \
                             unnoticed and what it lost will not be published again",
                            bridge.addr
                        );
                    }
                    let restarted = matches!((&server, &id), (Some(known), Some(id)) if known != id);
                    if id.is_some() {
                        server = id;
                    }
                    let (resumed, waiting, kept) = {
                        let outbox = bridge.outbox();
                        let kept = outbox.entries.len().saturating_sub(outbox.waiting);
                        (outbox.resume_from(restarted, next), outbox.waiting, kept)
                    };
                    next = resumed;
                    if restarted {
                        log::warn!(
                            "sockjs: redis {}: Redis restarted (new run_id); publishing again the {kept} \
                             message(s) of the last {:?} it had taken, then the {waiting} waiting",
                            bridge.who("publisher"),
                            bridge.retain
                        );
                    }
                    conn = Some(c);
                }
                Err(e) => {
                    outage.failed(
                        format_args!("cannot connect ({e}); messages wait in the outbox"),
                        Instant::now(),
                    );
                    delay = bridge.back_off(delay).await;
                }
            }
            continue;
        };
        // Marked in flight under the same lock that took it: a message the
        // bound drops before Redis answers then counts as its answer says
        // (a review: a publish between the two locks counted it dropped).
        let batch = {
            let mut outbox = bridge.outbox();
            let batch = outbox.batch(next, BATCH, BATCH_BYTES);
            outbox.sending(&batch);
            batch
        };
        let Some(&(last, _)) = batch.last() else {
            // Nothing to send: wait for something, or check Redis.
            let notified = bridge.wake.notified();
            if time::timeout(heartbeat, notified).await.is_err() {
                match ::redis::cmd("PING").query_async::<()>(c).await {
                    Ok(()) => {
                        bridge.ok(side);
                        delay = bridge.backoff.0;
                        if outage.ended(Instant::now()).is_some() {
                            bridge.outbox().told = false;
                        }
                    }
                    Err(e) => {
                        outage.failed(format_args!("PING failed ({e})"), Instant::now());
                        conn = None;
                        delay = bridge.back_off(delay).await;
                    }
                }
            }
            continue;
        };
        // One transaction (MULTI/EXEC): a batch lands whole or not at all.
        // Pipelined alone, an XADD refused (OOM) between two accepted ones
        // left a gap that its retry could not fill: readers take a sender's
        // entries in order and skip what comes after a later one as seen.
        let mut pipe = ::redis::pipe();
        if atomic {
            pipe.atomic();
        }
        for (_, frame) in &batch {
            pipe.cmd("XADD")
                .arg(&bridge.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(bridge.stream_len)
                .arg("*")
                .arg("m")
                .arg(frame.as_slice())
                .ignore();
        }
        let answer = pipe.query_async::<()>(c).await;
        let (lost, tell) = {
            let mut outbox = bridge.outbox();
            let lost = outbox.landed(answer.is_ok());
            (lost, outbox.first_drops(lost))
        };
        if lost > 0 {
            bridge.metrics.dropped.increment(lost);
            if tell {
                log::error!(
                    "sockjs: redis outbox of {:?} over its bound; dropped messages of a batch Redis then \
                     refused (counted in {REDIS_DROPPED}; logged once per outage)",
                    bridge.stream
                );
            }
        }
        match answer {
            Ok(()) => {
                bridge.ok(side);
                delay = bridge.backoff.0;
                bridge.metrics.published.increment(batch.len() as u64);
                next = last + 1;
                let mut outbox = bridge.outbox();
                if outage.ended(Instant::now()).is_some() {
                    outbox.told = false;
                }
                outbox.stored(last, bridge.retain);
                bridge.metrics.outbox.set(outbox.waiting as f64);
                bridge.metrics.outbox_bytes.set(outbox.waiting_bytes as f64);
            }
            Err(e) => {
                outage.failed(format_args!("XADD of a batch failed ({e})"), Instant::now());
                conn = None;
                delay = bridge.back_off(delay).await;
            }
        }
    }
    log::debug!("sockjs: redis publisher of {:?} stopped", bridge.stream);
}

/// What a reader knows of the senders it heard from: the last sequence
/// number of each, and when.
#[derive(Default)]
struct Senders(HashMap<Box<str>, (u64, Instant)>);

/// What to do with an entry.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Deliver it; `missed` entries of its sender never came before it.
    New { missed: u64 },
    /// Seen before (a publisher's retry).
    Seen,
}

impl Senders {
    fn check(&mut self, sender: &str, seq: u64) -> Verdict {
        let now = Instant::now();
        if let Some((last, at)) = self.0.get_mut(sender) {
            if seq <= *last {
                return Verdict::Seen;
            }
            let missed = seq - *last - 1;
            *last = seq;
            *at = now;
            return Verdict::New { missed };
        }
        if self.0.len() >= SENDERS {
            if let Some(oldest) = self.0.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| k.clone()) {
                self.0.remove(&oldest);
            }
        }
        self.0.insert(sender.into(), (seq, now));
        Verdict::New { missed: 0 }
    }
}

/// Reads the stream from the last entry read and hands other nodes'
/// messages to the manager; connects again whenever Redis fails it.
///
/// It starts at the entries added from a few seconds before the bridge
/// started, so that what other nodes publish while this one connects is
/// not skipped, however late it reaches Redis. Sessions that open on this
/// node within those seconds (clients of a restarted node come back at
/// once) get those messages as news: a cluster trial saw broadcasts up to
/// 5 s old reach them. Those seconds are Redis's, which numbers
/// the entries: a node whose clock ran ahead of Redis's would skip what
/// others publish meanwhile.
async fn read(bridge: Arc<Bridge>, manager: Recipient<Relayed>) {
    let side = &bridge.reader;
    let block = bridge.health_timeout / 4;
    let mut last_id: Option<String> = None;
    let mut server: Option<String> = None;
    let mut senders = Senders::default();
    let mut delay = bridge.backoff.0;
    let mut outage = Outage::new(bridge.who("reader"));
    while !bridge.stopped() && manager.connected() {
        let connected = async {
            let mut c = bridge.connect(side, bridge.health_timeout.saturating_add(block)).await?;
            let info = server_info(&mut c).await?;
            Ok::<_, ::redis::RedisError>((c, info))
        };
        let (mut conn, ServerInfo { run_id: id, uptime_ms }) = match connected.await {
            Ok(connected) => connected,
            Err(e) => {
                outage.failed(
                    format_args!("cannot connect ({e}); local sessions still served"),
                    Instant::now(),
                );
                delay = bridge.back_off(delay).await;
                continue;
            }
        };
        // Where to read from, by Redis's clock: at the first connection,
        // the start margin before the bridge started (however long Redis
        // took to answer). A Redis that restarted numbers its entries by
        // its clock from then on, which may be behind the last entry read
        // (another host, a clock set back): the reader then goes back to
        // the margin before the restart, if that is earlier, and the
        // senders' numbers drop what it reads twice.
        let restarted = matches!((&server, &id), (Some(known), Some(id)) if known != id);
        if id.is_some() {
            server = id;
        }
        if last_id.is_none() || restarted {
            // Never further back than the bridge has lived (a promoted
            // replica may have run for days, its stream holding what
            // predates this node), nor than the outbox's age bound (what
            // sessions open now would get as news).
            let lived = bridge.epoch.elapsed().min(bridge.catch_up);
            let lived = u64::try_from(lived.as_millis()).unwrap_or(u64::MAX);
            let back = match last_id {
                None => lived,
                Some(_) => uptime_ms.unwrap_or(0).min(lived),
            };
            let start = match redis_ms(&mut conn).await {
                Ok(ms) => ms.saturating_sub(back).saturating_sub(START_MARGIN_MS),
                Err(e) => {
                    outage.failed(format_args!("TIME failed ({e})"), Instant::now());
                    delay = bridge.back_off(delay).await;
                    continue;
                }
            };
            last_id = Some(match last_id.take() {
                Some(last) if entry_ms(&last) < start => last,
                _ => format!("{start}-0"),
            });
        }
        let Some(last_id) = last_id.as_mut() else { continue };
        while !bridge.stopped() {
            let reply: ::redis::RedisResult<Value> = ::redis::cmd("XREAD")
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(u64::try_from(block.as_millis()).unwrap_or(1000).max(1))
                .arg("STREAMS")
                .arg(&bridge.stream)
                .arg(&*last_id)
                .query_async(&mut conn)
                .await;
            let reply = match reply {
                Ok(reply) => reply,
                Err(e) => {
                    outage.failed(format_args!("XREAD failed ({e})"), Instant::now());
                    delay = bridge.back_off(delay).await;
                    break;
                }
            };
            bridge.ok(side);
            delay = bridge.backoff.0;
            outage.ended(Instant::now());
            for (id, frame) in read_entries(reply) {
                *last_id = id;
                let Some(frame) = frame else { continue };
                if !manager.connected() {
                    log::debug!("sockjs: redis reader stopped (manager gone)");
                    return;
                }
                take(&bridge, &mut senders, &manager, &frame);
            }
        }
    }
    log::debug!("sockjs: redis reader of {:?} stopped", bridge.stream);
}

/// The entries of an `XREAD` reply for one stream (RESP2 arrays or a RESP3
/// map), in order: each entry's id and its `m` field, if it has one that is
/// a string. Read by hand rather than as redis-rs's `StreamReadReply`,
/// which fails a whole reply on one field name that is not UTF-8: anyone
/// who can write to the stream can add one, and every node's reader then
/// read the same entry again, and failed, for as long as it stayed (an
/// audit). Ends at an entry with no id it can read (Redis sends none such:
/// the reader could not go past it).
fn read_entries(reply: Value) -> Vec<(String, Option<Vec<u8>>)> {
    let streams: Vec<Value> = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|stream| match stream {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
        _ => Vec::new(),
    };
    let text = |value: Value| match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        _ => None,
    };
    let mut read = Vec::new();
    for entries in streams {
        let Value::Array(entries) = entries else { continue };
        for entry in entries {
            let mut parts = match entry {
                Value::Array(parts) => parts.into_iter(),
                _ => return read,
            };
            let Some(id) = parts.next().and_then(text).and_then(|id| String::from_utf8(id).ok()) else {
                return read;
            };
            let pairs: Vec<(Value, Value)> = match parts.next() {
                Some(Value::Array(fields)) => {
                    let mut fields = fields.into_iter();
                    std::iter::from_fn(|| Some((fields.next()?, fields.next()?))).collect()
                }
                Some(Value::Map(pairs)) => pairs,
                _ => Vec::new(),
            };
            let frame = pairs
                .into_iter()
                .find(|(name, _)| {
                    matches!(name, Value::BulkString(b) if b == b"m")
                        || matches!(name, Value::SimpleString(s) if s == "m")
                })
                .and_then(|(_, value)| match value {
                    Value::BulkString(bytes) => Some(bytes),
                    _ => None,
                });
            read.push((id, frame));
        }
    }
    read
}

/// Redis's clock (`TIME`), in milliseconds since the Unix epoch: the one
/// that numbers the stream's entries. A server that refuses `TIME` (an ACL
/// without it) gives this node's clock instead, once said in the log.
async fn redis_ms(conn: &mut MultiplexedConnection) -> ::redis::RedisResult<u64> {
    static TOLD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    match ::redis::cmd("TIME").query_async::<(u64, u64)>(conn).await {
        Ok((secs, micros)) => Ok(secs.saturating_mul(1000).saturating_add(micros / 1000)),
        Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => Err(e),
        Err(e) => {
            if !TOLD.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "sockjs: redis refuses TIME ({}); readers start by this node's clock, and one that runs \
                     ahead of Redis's skips what others publish as it starts",
                    util::cut(&e.to_string(), ERROR_IN_LINE)
                );
            }
            Ok(unix_ms())
        }
    }
}

/// The milliseconds of a stream entry id (`<ms>-<seq>`); 0 if it has none.
fn entry_ms(id: &str) -> u64 {
    id.split('-').next().and_then(|ms| ms.parse().ok()).unwrap_or(0)
}

/// Hands one entry to the manager unless it is this node's own or seen.
fn take(bridge: &Bridge, senders: &mut Senders, manager: &Recipient<Relayed>, frame: &[u8]) {
    let Some(entry) = decode(frame) else {
        log::debug!("sockjs: ignored a foreign entry on {:?}", bridge.stream);
        return;
    };
    if entry.sender == bridge.sender {
        return;
    }
    match senders.check(entry.sender, entry.seq) {
        Verdict::Seen => bridge.metrics.duplicates.increment(1),
        Verdict::New { missed } => {
            if missed > 0 {
                log::warn!(
                    "sockjs: {missed} message(s) of {} never reached this node (its outbox dropped them, \
                     or the stream was trimmed before they were read)",
                    entry.sender
                );
                bridge.metrics.missed.increment(missed);
                bridge.missed.fetch_add(missed, Ordering::Relaxed);
            }
            bridge.metrics.received.increment(1);
            // What was sent before this node started comes from the start
            // margin: its age is not cross-node lag.
            if entry.sent_at >= bridge.started_ms {
                let lag = unix_ms().saturating_sub(entry.sent_at);
                bridge.metrics.lag.record(Duration::from_millis(lag));
            }
            // Not try_send: a busy manager's mailbox is full, not gone.
            manager.do_send(Relayed::new(entry.msg));
        }
    }
}

/// Marks each side up or down as Redis answers it, within the health
/// timeout; exports it and logs the changes.
async fn watch_health(bridge: Arc<Bridge>) {
    let tick = (bridge.health_timeout / 10).min(Duration::from_millis(100));
    let limit = u64::try_from(bridge.health_timeout.as_millis()).unwrap_or(u64::MAX);
    let mut interval = time::interval(tick);
    // A side that never worked never goes from up to down: told once
    // instead, when the health timeout has passed since the start.
    let mut never_told = [false; 2];
    while !bridge.stopped() {
        interval.tick().await;
        let now = bridge.now();
        for (side, never_told) in [&bridge.publisher, &bridge.reader].into_iter().zip(&mut never_told) {
            let last = side.last_ok.load(Ordering::Relaxed);
            if last == 0 && now > limit && !std::mem::replace(never_told, true) {
                log::warn!(
                    "sockjs: redis {} is down: no command has worked since the bridge started",
                    bridge.who(side.role)
                );
            }
            let up = last != 0 && now.saturating_sub(last) <= limit;
            if side.up.swap(up, Ordering::Relaxed) != up {
                side.gauge.set(if up { 1.0 } else { 0.0 });
                if up {
                    log::info!("sockjs: redis {} is up", bridge.who(side.role));
                } else {
                    log::warn!(
                        "sockjs: redis {} is down: no command worked within {:?}",
                        bridge.who(side.role),
                        bridge.health_timeout
                    );
                }
            }
        }
        let both = bridge.publisher.up.load(Ordering::Relaxed) && bridge.reader.up.load(Ordering::Relaxed);
        bridge.metrics.up.set(if both { 1.0 } else { 0.0 });
        // Age out what waited too long even while nothing new is published.
        let mut outbox = bridge.outbox();
        let before = outbox.dropped;
        outbox.expire(bridge.retain);
        let dropped = outbox.dropped - before;
        if dropped > 0 {
            bridge.metrics.dropped.increment(dropped);
            if outbox.first_drops(dropped) {
                log::error!(
                    "sockjs: messages waited in the redis outbox of {:?} longer than its bound; dropping them \
                     (counted in {REDIS_DROPPED}; logged once per outage)",
                    bridge.stream
                );
            }
        }
        bridge.metrics.outbox.set(outbox.waiting as f64);
        bridge.metrics.outbox_bytes.set(outbox.waiting_bytes as f64);
    }
    // Stopped (the manager dropped its relay, or was stopped): say so.
    for side in [&bridge.publisher, &bridge.reader] {
        side.up.store(false, Ordering::Relaxed);
        side.gauge.set(0.0);
    }
    bridge.metrics.up.set(0.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read_past_fields_that_are_not_utf8() {
        // An audit: one entry with a field name that is not UTF-8 failed
        // the parse of every reply it was in, on every node, for good.
        let bulk = |b: &[u8]| Value::BulkString(b.to_vec());
        let entry =
            |id: &str, fields: Vec<Value>| Value::Array(vec![bulk(id.as_bytes()), Value::Array(fields)]);
        let entries = vec![
            entry("1-0", vec![bulk(b"m"), bulk(b"first")]),
            entry("2-0", vec![bulk(b"\xff"), bulk(b"x")]),
            entry("3-0", vec![bulk(b"\xff"), bulk(b"\xfe"), bulk(b"m"), bulk(b"third")]),
            entry("4-0", vec![bulk(b"m"), Value::Int(4)]),
            entry("5-0", vec![]),
        ];
        let expected = vec![
            ("1-0".to_owned(), Some(b"first".to_vec())),
            ("2-0".to_owned(), None),
            ("3-0".to_owned(), Some(b"third".to_vec())),
            ("4-0".to_owned(), None),
            ("5-0".to_owned(), None),
        ];
        // RESP2: [[stream, entries]]; RESP3: {stream: entries}.
        let resp2 = Value::Array(vec![Value::Array(vec![bulk(b"s"), Value::Array(entries.clone())])]);
        assert_eq!(read_entries(resp2), expected);
        assert_eq!(read_entries(Value::Map(vec![(bulk(b"s"), Value::Array(entries))])), expected);
        // Nothing new (a BLOCK that timed out).
        assert!(read_entries(Value::Nil).is_empty());
        // An entry with no id to read ends the list there.
        let odd = Value::Array(vec![Value::Array(vec![
            bulk(b"s"),
            Value::Array(vec![entry("1-0", vec![]), Value::Array(vec![bulk(b"\xff")]), entry("3-0", vec![])]),
        ])]);
        assert_eq!(read_entries(odd), vec![("1-0".to_owned(), None)]);
    }

    #[test]
    fn server_info_gives_the_run_id_and_the_uptime() {
        let info =
            parse_server_info("# Server\r\nredis_version:7.0.15\r\nrun_id:ab12\r\nuptime_in_seconds:42\r\n");
        assert_eq!((info.run_id.as_deref(), info.uptime_ms), (Some("ab12"), Some(42_000)));
        let none = parse_server_info("# Server\r\nredis_version:7.0.15\r\n");
        assert_eq!((none.run_id, none.uptime_ms), (None, None));
    }

    #[test]
    fn entry_ids_give_their_milliseconds() {
        assert_eq!(entry_ms("1733400000123-7"), 1_733_400_000_123);
        assert_eq!(entry_ms("42"), 42);
        assert_eq!(entry_ms("0-0"), 0);
        assert_eq!(entry_ms("junk-1"), 0);
    }

    #[test]
    fn wire_format_round_trips() {
        let ids = |list: &[&str]| list.iter().map(|id| Arc::from(*id)).collect::<Box<[Arc<str>]>>();
        let odd = ["a b", "a%20b", "x,y", "tab\there", "\u{85}x", "caf\u{e9}", "a/b", ""];
        let none: [&str; 0] = [];
        let cases = [
            RelayMessage::new(Audience::All, none, "hi \u{2028} x"),
            RelayMessage::new(Audience::All, &odd[..7], "but"),
            RelayMessage::new(Audience::Ids(ids(&odd[..7])), none, ""),
            RelayMessage::new(Audience::Group(Arc::from("room one,2")), ["me"], "to the room"),
            RelayMessage::new(Audience::Session(Arc::from("a b")), none, "for a b only"),
            // With groups left out (`Broadcast::except_groups`).
            RelayMessage::new(Audience::All, none, "x").with_except_groups(["user:ann", "a b,c"]),
            // A group may have an empty name (a review: lost on the wire).
            RelayMessage::new(Audience::All, none, "x").with_except_groups([""]),
            RelayMessage::new(Audience::All, none, "x").with_except_groups(["", "a", ""]),
            RelayMessage::new(Audience::All, ["me"], "x y").with_except_groups(["g"]),
            RelayMessage::new(Audience::Ids(ids(&odd[..3])), none, "").with_except_groups(&odd[..7]),
            RelayMessage::new(Audience::Group(Arc::from("lobby")), none, "t")
                .with_except_groups(["user:ann"]),
            RelayMessage::new(Audience::Group(Arc::from("lobby")), ["me"], "t")
                .with_except_groups(["u 1", "u2"]),
            // Closes (`Broadcast::close`), of every audience.
            RelayMessage::new(Audience::All, none, "Server moving").with_close(1000),
            RelayMessage::new(Audience::All, ["me"], "").with_close(4999).with_except_groups(["g"]),
            RelayMessage::new(Audience::Ids(ids(&odd[..3])), none, "C 4003 x").with_close(4003),
            RelayMessage::new(Audience::Group(Arc::from("user:ann")), none, "Kicked").with_close(4003),
            RelayMessage::new(Audience::Session(Arc::from("a b")), none, "bye").with_close(3000),
        ];
        for (seq, msg) in cases.iter().enumerate() {
            let frame = encode("web%201/00ff", seq as u64 + 1, 1_700_000_000_000, msg);
            let back = decode(&frame).unwrap();
            assert_eq!(
                (back.sender, back.seq, back.sent_at),
                ("web%201/00ff", seq as u64 + 1, 1_700_000_000_000)
            );
            assert_eq!(format!("{:?}", back.msg), format!("{msg:?}"));
        }
        assert!(decode(b"something else").is_none());
        assert!(decode(b"sockjs2 a/1 x 5 b hi").is_none(), "a bad sequence number");
        assert!(decode(b"sockjs2 a/1 1 5 C 70000 b hi").is_none(), "a close code past u16");
        assert!(decode(b"sockjs2 a/1 1 5 C b hi").is_none(), "a close without its code");
        assert_eq!(wire_id("web 1/a"), "web%201%2Fa");
    }

    #[test]
    fn an_outage_counts_from_the_last_command_that_worked() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut outage = Outage::new("reader".into());
        assert_eq!(outage.ended(at(0)), None, "no outage to end");
        // Redis stalls just after 1,000 ms; the first command notices at
        // 2,000 (its timeout), the last failure is at 5,000, and it works
        // again at 6,000: down 5 s, not 4.
        assert_eq!(outage.ended(at(1_000)), None);
        outage.failed("XREAD failed", at(2_000));
        outage.failed("XREAD failed", at(5_000));
        assert_eq!(outage.ended(at(6_000)), Some(Duration::from_secs(5)));
        assert_eq!(outage.ended(at(7_000)), None, "ended once");
        // With nothing that worked before, from the first failure.
        let mut fresh = Outage::new("publisher".into());
        fresh.failed("cannot connect", at(1_000));
        assert_eq!(fresh.ended(at(3_500)), Some(Duration::from_millis(2_500)));
    }

    #[test]
    fn senders_skip_what_they_saw_and_count_gaps() {
        let mut senders = Senders::default();
        assert_eq!(senders.check("a/1", 1), Verdict::New { missed: 0 });
        assert_eq!(senders.check("a/1", 2), Verdict::New { missed: 0 });
        assert_eq!(senders.check("a/1", 2), Verdict::Seen);
        assert_eq!(senders.check("a/1", 1), Verdict::Seen);
        assert_eq!(senders.check("a/1", 5), Verdict::New { missed: 2 });
        // Another start of the same node counts from its own first message.
        assert_eq!(senders.check("a/2", 1), Verdict::New { missed: 0 });
    }

    fn limits(messages: usize) -> Limits {
        Limits { messages, bytes: usize::MAX, age: Duration::from_secs(60) }
    }

    #[test]
    fn messages_of_the_batch_in_flight_the_bound_drops_count_as_dropped_only_if_redis_refuses_it() {
        // An audit: the bound dropping a message of the batch Redis had not
        // answered yet counted it as dropped, and Redis then took it.
        for taken in [true, false] {
            let mut outbox = Outbox::new(limits(3));
            for _ in 0..3 {
                outbox.push(|seq| vec![seq as u8]);
            }
            let batch = outbox.batch(1, 10, usize::MAX);
            assert_eq!(batch.len(), 3);
            outbox.sending(&batch);
            assert_eq!(outbox.push(|seq| vec![seq as u8]), 0, "1 is in flight: not dropped yet");
            assert_eq!(outbox.dropped, 0);
            assert_eq!(outbox.landed(taken), if taken { 0 } else { 1 });
            if taken {
                outbox.stored(3, Duration::from_secs(60));
            }
            assert_eq!(outbox.dropped, if taken { 0 } else { 1 }, "taken: {taken}");
            // Nothing is in flight: the bound drops what waits at once.
            assert_eq!(outbox.push(|seq| vec![seq as u8]), if taken { 0 } else { 1 });
        }
        // A message larger than the bound counts, with what the age drops.
        let mut outbox = Outbox::new(Limits { messages: 10, bytes: 4, age: Duration::from_millis(1) });
        assert_eq!(outbox.push(|seq| vec![seq as u8]), 0);
        // Past the bound's age.
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(outbox.push(|_| vec![0; 5]), 2, "the large one and the old one");
    }

    #[test]
    fn the_outbox_keeps_order_and_drops_the_oldest_unpublished() {
        let mut outbox = Outbox::new(limits(3));
        for _ in 0..3 {
            assert_eq!(outbox.push(|seq| vec![seq as u8]), 0);
        }
        assert_eq!(outbox.batch(1, 10, usize::MAX).iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(outbox.batch(1, 10, 2).len(), 2, "bounded by bytes");
        assert_eq!(outbox.batch(1, 10, 0).len(), 1, "at least one");
        // Redis took 1 and 2: they are kept (retain) until the bound needs room.
        outbox.stored(2, Duration::from_secs(60));
        assert_eq!((outbox.waiting, outbox.resume_from(false, 3), outbox.resume_from(true, 3)), (1, 3, 1));
        // A replay cut short by a failure goes on where it stopped.
        assert_eq!(outbox.resume_from(false, 2), 2);
        assert_eq!(outbox.push(|seq| vec![seq as u8]), 0, "a published one makes room");
        assert_eq!(outbox.push(|seq| vec![seq as u8]), 0);
        assert_eq!(outbox.push(|seq| vec![seq as u8]), 1, "now an unpublished one goes");
        assert_eq!(outbox.batch(3, 10, usize::MAX).iter().map(|(s, _)| *s).collect::<Vec<_>>(), [4, 5, 6]);
        assert_eq!((outbox.dropped, outbox.waiting, outbox.resume_from(false, 7)), (1, 3, 3));
        // Without retain, what Redis took goes at once.
        outbox.stored(5, Duration::ZERO);
        assert_eq!((outbox.entries.len(), outbox.waiting, outbox.bytes), (1, 1, 1));
    }

    #[test]
    fn the_outbox_bounds_bytes() {
        let mut outbox = Outbox::new(Limits { messages: 100, bytes: 10, age: Duration::from_secs(60) });
        assert_eq!(outbox.push(|_| vec![0; 6]), 0);
        assert_eq!(outbox.push(|_| vec![0; 6]), 1);
        assert_eq!((outbox.waiting, outbox.waiting_bytes), (1, 6));
        // Larger than the bound: only it goes.
        assert_eq!(outbox.push(|_| vec![0; 11]), 1);
        assert_eq!((outbox.waiting, outbox.waiting_bytes, outbox.dropped), (1, 6, 2));
    }
}
