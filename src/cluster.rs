//! Broadcast across nodes over Redis pub/sub (cargo feature `redis`).
//!
//! A [`RedisBridge`] joins one endpoint's [`SessionManager`] to a Redis
//! channel. Every node of the cluster runs the same endpoint with a bridge on
//! the same channel; a [`Broadcast`](crate::Broadcast) sent to any node's
//! manager then reaches the sessions of every node, and a
//! [`SendTo`](crate::SendTo) reaches its session on whichever node holds it.
//!
//! How it works: the manager delivers a broadcast to its own sessions at once
//! and hands it to the bridge, which publishes it once, tagged with the
//! node's id. Every bridge is subscribed to the channel and hands what other
//! nodes published to its manager, which delivers it to its own sessions
//! (each node builds the SockJS frame once per message, not per session).
//! One publishing connection per node, pipelined, keeps each node's
//! broadcasts in the order it sent them.
//!
//! Groups: a broadcast to a group goes to the group's own channel,
//! `<channel>:g:<group>`, which a node subscribes to only while it has
//! members in the group, so a node receives a group's traffic only while
//! it needs it. A list broadcast goes to the other nodes with the ids that
//! have no session here; an `except` list travels with its broadcast.
//!
//! While Redis is unreachable a node keeps serving its own sessions, local
//! broadcasts included; what it could not publish is dropped (counted in
//! [`REDIS_DROPPED`] and logged), and both
//! connections are retried with exponential backoff. Requests of one session
//! must all reach the same node: see the README's "Running more than one
//! node" for a load balancer configuration.

use std::{
    collections::HashSet,
    fmt,
    future::Future,
    hash::{BuildHasher, Hasher},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use ::metrics::{counter, gauge, Counter};
use actix::{Addr, Recipient};
use actix_web::rt::{task::JoinHandle, time};
use futures_util::StreamExt;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::{
    manager::{shared_text, ClusterMessage, Relayed, SessionManager, SetRelay, Target},
    metrics::{REDIS_CONNECTS, REDIS_DROPPED, REDIS_PUBLISHED, REDIS_RECEIVED, REDIS_UP},
    session::Session,
};

/// Marks the bridge's messages on the channel, and their format's version.
const MAGIC: &str = "sockjs1";
/// Messages published in one pipeline at most.
const BATCH: usize = 256;
/// How long connecting may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Joins a [`SessionManager`] to a Redis pub/sub channel so that its
/// broadcasts reach every node of a cluster.
///
/// # Examples
///
/// ```no_run
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
///     let bridge = RedisBridge::new("redis://127.0.0.1:6379/", "chat")?.start(&room);
///     // ... mount `SockJs::new("/chat", room)` on an HttpServer and run it ...
///     # drop(bridge);
///     Ok(())
/// }
/// ```
#[must_use]
pub struct RedisBridge {
    client: ::redis::Client,
    channel: String,
    min_backoff: Duration,
    max_backoff: Duration,
}

impl fmt::Debug for RedisBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBridge")
            .field("server", &self.client.get_connection_info().addr())
            .field("channel", &self.channel)
            .field("min_backoff", &self.min_backoff)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

impl RedisBridge {
    /// A bridge to the Redis server at `url` (such as
    /// `redis://127.0.0.1:6379/`) on `channel`. Nothing connects until
    /// [`start`](Self::start); the error is for a malformed URL.
    pub fn new(url: &str, channel: impl Into<String>) -> Result<Self, ::redis::RedisError> {
        Ok(Self {
            client: ::redis::Client::open(url)?,
            channel: channel.into(),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        })
    }

    /// How long to wait before reconnecting after a failure: `min` at
    /// first, doubling up to `max`. Default: 100 ms to 5 s.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min.max(Duration::from_millis(1));
        self.max_backoff = max.max(self.min_backoff);
        self
    }

    /// Connects the bridge to `manager` and starts it on the current actix
    /// system (call it inside one, as in `#[actix_web::main]`). The bridge
    /// runs until its [`BridgeHandle`] is stopped or the manager stops;
    /// dropping the handle leaves it running.
    pub fn start<A: Session>(self, manager: &Addr<SessionManager<A>>) -> BridgeHandle {
        let node = node_id();
        let up = Arc::new(AtomicBool::new(false));
        let (tx, rx) = unbounded_channel();
        manager.do_send(SetRelay(Some(tx)));
        let shared = Arc::new(Shared {
            client: self.client,
            channel: self.channel,
            node,
            backoff: (self.min_backoff, self.max_backoff),
            up: up.clone(),
        });
        log::info!("sockjs: redis bridge for channel {:?} starting (node {node:016x})", shared.channel);
        let (watch_tx, watch_rx) = unbounded_channel();
        let publisher = actix_web::rt::spawn(publish(shared.clone(), rx, watch_tx));
        let subscriber =
            actix_web::rt::spawn(subscribe(shared.clone(), manager.clone().recipient(), watch_rx));
        BridgeHandle {
            up,
            channel: shared.channel.clone(),
            relay: manager.clone().recipient(),
            tasks: vec![publisher, subscriber],
        }
    }
}

/// A running [`RedisBridge`].
pub struct BridgeHandle {
    up: Arc<AtomicBool>,
    channel: String,
    relay: Recipient<SetRelay>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for BridgeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgeHandle").field("channel", &self.channel).field("up", &self.is_up()).finish()
    }
}

impl BridgeHandle {
    /// Whether the bridge is subscribed to its channel now, that is,
    /// whether broadcasts from other nodes reach this one.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Stops the bridge: broadcasts stay on this node from then on.
    pub fn stop(self) {
        self.relay.do_send(SetRelay(None));
        for task in &self.tasks {
            task.abort();
        }
        self.up.store(false, Ordering::Relaxed);
        gauge!(REDIS_UP, "channel" => self.channel.clone()).set(0.0);
    }
}

/// What the bridge's two tasks share.
struct Shared {
    client: ::redis::Client,
    channel: String,
    node: u64,
    backoff: (Duration, Duration),
    up: Arc<AtomicBool>,
}

impl Shared {
    fn counter(&self, name: &'static str) -> Counter {
        counter!(name, "channel" => self.channel.clone())
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
        gauge!(REDIS_UP, "channel" => self.channel.clone()).set(if up { 1.0 } else { 0.0 });
    }

    fn next_backoff(&self, delay: Duration) -> Duration {
        (delay * 2).min(self.backoff.1)
    }
}

/// A random id for this node, so that it can skip its own messages.
fn node_id() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    );
    h.finish()
}

/// A session id or group name as it goes on the wire: `%`, `,`, spaces
/// and control characters percent-escaped, so that no id (a URL may carry
/// `a%20b`) can break the format.
fn wire_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        if matches!(c, '%' | ',' | ' ') || c.is_control() {
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

fn read_id(wire: &str) -> Arc<str> {
    Arc::from(crate::util::percent_decode(wire, false))
}

fn read_list(wire: &str) -> Box<[Arc<str>]> {
    wire.split(',').filter(|id| !id.is_empty()).map(read_id).collect()
}

/// The channel of a group's traffic.
fn group_channel(channel: &str, group: &str) -> String {
    format!("{channel}:g:{}", wire_id(group))
}

/// One message on the wire, after `sockjs1 <node> `:
///
/// - `b <text>`: to everyone;
/// - `x <except ids> <text>`: to everyone but these;
/// - `t <id> <text>`: to one session;
/// - `l <ids> <text>`: to these sessions;
/// - `g <group> <except ids> <text>`: to a group's members but these (on
///   the group's channel).
///
/// Ids and names are [`wire_id`]s, lists comma-separated; `None` for what
/// is not published (the relay's own instructions).
fn encode(node: u64, msg: &ClusterMessage) -> Option<Vec<u8>> {
    let mut out = format!("{MAGIC} {node:016x} ");
    let payload = match msg {
        ClusterMessage::Deliver { to, except, payload } => {
            match (to, except.is_empty()) {
                (Target::All, true) => out.push_str("b "),
                (Target::All, false) => out.push_str(&format!("x {} ", wire_list(except))),
                (Target::Ids(ids), _) => out.push_str(&format!("l {} ", wire_list(ids))),
                (Target::Group(group), _) => {
                    out.push_str(&format!("g {} {} ", wire_id(group), wire_list(except)));
                }
            }
            payload
        }
        ClusterMessage::SendTo(id, payload) => {
            out.push_str(&format!("t {} ", wire_id(id)));
            payload
        }
        ClusterMessage::Watch(_) | ClusterMessage::Unwatch(_) => return None,
    };
    out.push_str(&payload.text);
    Some(out.into_bytes())
}

/// The sending node and the message; `None` for anything else on the channel.
fn decode(payload: &[u8]) -> Option<(u64, ClusterMessage)> {
    let payload = std::str::from_utf8(payload).ok()?;
    let rest = payload.strip_prefix(MAGIC)?.strip_prefix(' ')?;
    let (node, rest) = rest.split_once(' ')?;
    let node = u64::from_str_radix(node, 16).ok()?;
    let deliver = |to, except, text: &str| ClusterMessage::Deliver {
        to,
        except,
        payload: shared_text(text.to_owned()),
    };
    let msg = match rest.split_once(' ')? {
        ("b", text) => deliver(Target::All, Box::default(), text),
        ("x", rest) => {
            let (except, text) = rest.split_once(' ')?;
            deliver(Target::All, read_list(except), text)
        }
        ("l", rest) => {
            let (ids, text) = rest.split_once(' ')?;
            deliver(Target::Ids(read_list(ids)), Box::default(), text)
        }
        ("g", rest) => {
            let (group, rest) = rest.split_once(' ')?;
            let (except, text) = rest.split_once(' ')?;
            deliver(Target::Group(read_id(group)), read_list(except), text)
        }
        ("t", rest) => {
            let (id, text) = rest.split_once(' ')?;
            let id = Some(id).filter(|id| !id.is_empty())?;
            ClusterMessage::SendTo(read_id(id), shared_text(text.to_owned()))
        }
        _ => return None,
    };
    Some((node, msg))
}

/// A connection attempt within [`CONNECT_TIMEOUT`]; the error as text.
async fn connecting<T>(attempt: impl Future<Output = ::redis::RedisResult<T>>) -> Result<T, String> {
    match time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// The channel a message is published on.
fn channel_of(shared: &Shared, msg: &ClusterMessage) -> String {
    match msg {
        ClusterMessage::Deliver { to: Target::Group(group), .. } => group_channel(&shared.channel, group),
        _ => shared.channel.clone(),
    }
}

/// Publishes what the manager hands over, pipelined, in order; passes the
/// groups to watch on to the subscriber.
async fn publish(
    shared: Arc<Shared>,
    mut rx: UnboundedReceiver<ClusterMessage>,
    watch: UnboundedSender<(bool, Arc<str>)>,
) {
    let (published, dropped) = (shared.counter(REDIS_PUBLISHED), shared.counter(REDIS_DROPPED));
    let mut conn: Option<::redis::aio::MultiplexedConnection> = None;
    let mut delay = shared.backoff.0;
    let mut retry_at = Instant::now();
    let mut batch = Vec::new();
    let mut next = rx.recv().await;
    while let Some(first) = next.take() {
        let take = |batch: &mut Vec<(String, Vec<u8>)>, msg: ClusterMessage| match msg {
            ClusterMessage::Watch(group) => {
                let _ = watch.send((true, group));
            }
            ClusterMessage::Unwatch(group) => {
                let _ = watch.send((false, group));
            }
            msg => {
                if let Some(frame) = encode(shared.node, &msg) {
                    batch.push((channel_of(&shared, &msg), frame));
                }
            }
        };
        take(&mut batch, first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(msg) => take(&mut batch, msg),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            next = rx.recv().await;
            continue;
        }
        let mut pipe = ::redis::pipe();
        for (channel, frame) in &batch {
            pipe.cmd("PUBLISH").arg(channel).arg(frame).ignore();
        }
        // Two tries: a connection idle since its last use may have died.
        let mut sent = false;
        for _ in 0..2 {
            if conn.is_none() && Instant::now() >= retry_at {
                match connecting(shared.client.get_multiplexed_async_connection()).await {
                    Ok(c) => {
                        log::debug!("sockjs: redis publisher connected");
                        delay = shared.backoff.0;
                        conn = Some(c);
                    }
                    Err(why) => {
                        log::debug!("sockjs: redis publisher cannot connect ({why}); next try in {delay:?}");
                        retry_at = Instant::now() + delay;
                        delay = shared.next_backoff(delay);
                    }
                }
            }
            let Some(c) = conn.as_mut() else { break };
            match pipe.query_async::<()>(c).await {
                Ok(()) => {
                    sent = true;
                    break;
                }
                Err(e) => {
                    log::debug!("sockjs: redis publish failed: {e}");
                    conn = None;
                }
            }
        }
        if sent {
            published.increment(batch.len() as u64);
        } else {
            log::warn!(
                "sockjs: redis unreachable, {} message(s) reached this node's sessions only",
                batch.len()
            );
            dropped.increment(batch.len() as u64);
        }
        batch.clear();
        next = rx.recv().await;
    }
    log::debug!("sockjs: redis publisher stopped (manager gone)");
}

/// What the subscriber waits for.
enum Event {
    /// A group to watch (`true`) or to stop watching; `None`: the bridge is done.
    Watch(Option<(bool, Arc<str>)>),
    /// A message on a subscribed channel; `None`: the subscription is lost.
    Message(Option<::redis::Msg>),
}

/// Subscribes to the channel, and to the channels of the groups this node
/// has members in, and hands other nodes' messages to the manager;
/// reconnects with backoff whenever the subscription is lost.
async fn subscribe(
    shared: Arc<Shared>,
    manager: Recipient<Relayed>,
    mut watch: UnboundedReceiver<(bool, Arc<str>)>,
) {
    let (connects, received) = (shared.counter(REDIS_CONNECTS), shared.counter(REDIS_RECEIVED));
    let mut delay = shared.backoff.0;
    let mut warned = false;
    let mut watched: HashSet<Arc<str>> = HashSet::new();
    let note = |watched: &mut HashSet<Arc<str>>, (on, group): (bool, Arc<str>)| {
        if on {
            watched.insert(group)
        } else {
            watched.remove(&group)
        }
    };
    loop {
        while let Ok(change) = watch.try_recv() {
            note(&mut watched, change);
        }
        let channels: Vec<String> = std::iter::once(shared.channel.clone())
            .chain(watched.iter().map(|group| group_channel(&shared.channel, group)))
            .collect();
        let attempt = async {
            let mut pubsub = shared.client.get_async_pubsub().await?;
            pubsub.subscribe(&channels).await?;
            Ok::<_, ::redis::RedisError>(pubsub)
        };
        match connecting(attempt).await {
            Ok(pubsub) => {
                log::info!(
                    "sockjs: redis bridge subscribed to {:?} and {} group(s)",
                    shared.channel,
                    watched.len()
                );
                connects.increment(1);
                shared.set_up(true);
                delay = shared.backoff.0;
                warned = false;
                let (mut sink, mut stream) = pubsub.split();
                loop {
                    let event = futures_util::future::poll_fn(|cx| {
                        if let std::task::Poll::Ready(change) = watch.poll_recv(cx) {
                            return std::task::Poll::Ready(Event::Watch(change));
                        }
                        stream.poll_next_unpin(cx).map(Event::Message)
                    })
                    .await;
                    match event {
                        Event::Watch(None) => {
                            shared.set_up(false);
                            return;
                        }
                        Event::Watch(Some((on, group))) => {
                            if !note(&mut watched, (on, group.clone())) {
                                continue;
                            }
                            let channel = group_channel(&shared.channel, &group);
                            let done = if on {
                                sink.subscribe(&channel).await
                            } else {
                                sink.unsubscribe(&channel).await
                            };
                            if let Err(e) = done {
                                log::debug!("sockjs: redis (un)subscribe of {channel:?} failed: {e}");
                                break;
                            }
                        }
                        Event::Message(None) => break,
                        Event::Message(Some(msg)) => match decode(msg.get_payload_bytes()) {
                            Some((node, _)) if node == shared.node => {}
                            Some((_, msg)) => {
                                received.increment(1);
                                // Not try_send: a busy manager's mailbox is full, not gone.
                                if !manager.connected() {
                                    log::debug!("sockjs: redis subscriber stopped (manager gone)");
                                    shared.set_up(false);
                                    return;
                                }
                                manager.do_send(Relayed(msg));
                            }
                            None => log::debug!("sockjs: ignored a foreign message on {:?}", shared.channel),
                        },
                    }
                }
                shared.set_up(false);
                log::warn!(
                    "sockjs: lost the redis subscription to {:?}; local sessions still served, reconnecting",
                    shared.channel
                );
            }
            Err(why) => {
                if !warned {
                    log::warn!("sockjs: cannot subscribe to redis ({why}); retrying with backoff");
                    warned = true;
                } else {
                    log::debug!("sockjs: cannot subscribe to redis ({why}); next try in {delay:?}");
                }
            }
        }
        time::sleep(delay).await;
        delay = shared.next_backoff(delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_round_trips() {
        let text = |msg: &ClusterMessage| match msg {
            ClusterMessage::Deliver { payload, .. } | ClusterMessage::SendTo(_, payload) => {
                payload.text.to_string()
            }
            _ => String::new(),
        };
        let ids = |list: &[&str]| list.iter().map(|id| Arc::from(*id)).collect::<Box<[Arc<str>]>>();
        let odd = ["a b", "a%20b", "x,y", "tab\there", "\u{85}x", "caf\u{e9}", ""];
        let cases = [
            ClusterMessage::Deliver {
                to: Target::All,
                except: ids(&[]),
                payload: shared_text("hi \u{2028} x".into()),
            },
            ClusterMessage::Deliver {
                to: Target::All,
                except: ids(&odd[..6]),
                payload: shared_text("but".into()),
            },
            ClusterMessage::Deliver {
                to: Target::Ids(ids(&odd[..6])),
                except: ids(&[]),
                payload: shared_text(String::new()),
            },
            ClusterMessage::Deliver {
                to: Target::Group(Arc::from("room one,2")),
                except: ids(&["me"]),
                payload: shared_text("to the room".into()),
            },
            ClusterMessage::SendTo(Arc::from("a b"), shared_text("for a b only".into())),
        ];
        for msg in &cases {
            let (node, back) = decode(&encode(7, msg).unwrap()).unwrap();
            assert_eq!(node, 7);
            assert_eq!(format!("{back:?}"), format!("{msg:?}"));
            assert_eq!(text(&back), text(msg));
        }
        assert!(encode(1, &ClusterMessage::Watch(Arc::from("g"))).is_none(), "not published");
        assert!(decode(b"something else").is_none());
        assert_eq!(group_channel("chat", "a b"), "chat:g:a%20b");
    }
}
