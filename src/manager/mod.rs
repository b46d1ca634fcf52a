//! [`SessionManager`]: the sessions of one endpoint, their creation, their
//! groups, and delivering to them (docs/protocol.md knows nothing of this:
//! it is the application model on top).
//!
//! The manager keeps, per session, its command queue, id, transport, phase
//! and groups; group -> members and member -> groups are both kept, so a
//! group broadcast costs per member and a session's close releases its
//! groups. Sessions tell it of their life and their groups through one
//! ordered queue of notes ([`Note`]), read before every message.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    net::IpAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
    },
    task::{Context as TaskContext, Poll, Waker},
    time::{Instant, SystemTime},
};

use ::metrics::{counter, histogram, Counter, Histogram};
use actix::{fut::ActorFuture, Actor, Addr, AsyncContext, Context};

use crate::{
    admission::{Caps, Refusal},
    metrics::{describe, endpoint_label, BROADCAST_FANOUT, BROADCAST_RECEIVERS, SEND_TO},
    protocol::Transport,
    relay::{Audience, Relay, RelayMessage},
    session::{
        Command, CommandTx, Note, NotesRx, NotesTx, RequestInfo, Session, SessionState, Shared, Tombstone,
    },
    util::{SerialMap, SerialSet},
};

mod messages;

pub(crate) use messages::{Acquire, Acquired, GetDirectory, Mounted, RegisterSocket};
pub use messages::{
    Broadcast, CountSessions, Deliver, DeliverGroup, Delivery, GetSession, GroupMembers, GroupSizes, Join,
    Leave, ListSessions, SendTo, SessionCounts, SessionInfo, SessionTarget, Shutdown,
};

/// Builds a session actor for each new session, from its opening request.
pub(crate) type Factory<A> = Arc<dyn Fn(&RequestInfo) -> A + Send + Sync>;

/// What a worker needs to start a session the manager admitted: the
/// factory, and where the session tells the manager of its life.
pub(crate) struct Starter<A: Session> {
    pub(crate) factory: Factory<A>,
    pub(crate) notes: NotesTx,
    pub(crate) arrivals: Arc<Arrivals>,
}

impl<A: Session> Clone for Starter<A> {
    fn clone(&self) -> Self {
        Self { factory: self.factory.clone(), notes: self.notes.clone(), arrivals: self.arrivals.clone() }
    }
}

/// A session the manager has listed, with the starter its opening request
/// is to start it with. Dropped unstarted (the request was cancelled, its
/// client gone, while the manager's answer came back), it tells the
/// manager that the session ended: no actor ever will, and the manager
/// would list the session, and count it against the caps, for good.
pub(crate) struct Unstarted<A: Session> {
    serial: u64,
    starter: Option<Starter<A>>,
}

impl<A: Session> Unstarted<A> {
    fn new(serial: u64, starter: Starter<A>) -> Self {
        Self { serial, starter: Some(starter) }
    }

    /// The starter, for a request that starts the session now: from then
    /// on the session tells the manager of its end. `None` only if taken
    /// before, which no caller does.
    pub(crate) fn start(mut self) -> Option<Starter<A>> {
        self.starter.take()
    }
}

impl<A: Session> Drop for Unstarted<A> {
    fn drop(&mut self) {
        if let Some(starter) = self.starter.take() {
            log::debug!(
                "sockjs: a session's opening request went before it could start the session; unlisted"
            );
            starter.notes.note(self.serial, Note::Ended);
        }
    }
}

/// WebSocket sessions a worker opened without a round trip to the manager
/// (an endpoint without caps has nothing for the manager to check): the
/// manager enters them before it reads any note or message, so it knows a
/// session before anything the session tells it. The round trip was ~8 µs
/// of a WebSocket's set-up (`benches/README.md`).
#[derive(Default)]
pub(crate) struct Arrivals {
    queued: Mutex<Queued>,
    /// Something is queued (read without the lock).
    pending: AtomicBool,
    /// The manager shuts down: workers take the round trip, which refuses.
    closing: AtomicBool,
}

/// The arrivals the manager has yet to enter, and its waker.
#[derive(Default)]
struct Queued {
    list: Vec<Arrival>,
    /// Woken once [`ARRIVALS_WAKE_AT`] wait.
    manager: Option<Waker>,
}

/// A session started without asking: its serial, id, commands and opening.
type Arrival = (u64, Arc<str>, CommandTx, Opening);

/// Arrivals wait for the manager's next turn rather than wake it (a
/// wake-up across threads is a system call on each side), up to this many:
/// a socket's session tells the manager nothing else as it opens, so
/// without it they could wait for as long as the endpoint is quiet.
const ARRIVALS_WAKE_AT: usize = 256;

impl Arrivals {
    /// Queues a session the worker starts at once; `false` when the
    /// manager shuts down (the caller asks it instead).
    pub(crate) fn arrive(&self, serial: u64, id: Arc<str>, tx: CommandTx, opening: Opening) -> bool {
        if self.closing.load(Ordering::Acquire) {
            return false;
        }
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        // Read again under the lock, which shutdown takes to set it: an
        // arrival queued after the manager's last look would never be
        // entered, nor told to shut down.
        if self.closing.load(Ordering::Acquire) {
            return false;
        }
        queued.list.push((serial, id, tx, opening));
        self.pending.store(true, Ordering::Release);
        let wake = if queued.list.len() >= ARRIVALS_WAKE_AT { queued.manager.take() } else { None };
        drop(queued);
        if let Some(manager) = wake {
            manager.wake();
        }
        true
    }

    /// Takes no more arrivals (for shutdown).
    fn close(&self) {
        let _queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        self.closing.store(true, Ordering::Release);
    }

    fn take(&self) -> Vec<Arrival> {
        if !self.pending.swap(false, Ordering::Acquire) {
            return Vec::new();
        }
        std::mem::take(&mut self.queued.lock().unwrap_or_else(PoisonError::into_inner).list)
    }

    /// Takes what is queued, and keeps `manager` to wake once enough is.
    fn take_and_listen(&self, manager: &Waker) -> Vec<Arrival> {
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        if !queued.manager.as_ref().is_some_and(|w| w.will_wake(manager)) {
            queued.manager = Some(manager.clone());
        }
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut queued.list)
    }
}

/// An endpoint's HTTP sessions by id (their serial and command channel),
/// shared with the workers: a request for an existing session finds it
/// here without a round trip to the manager actor. Only the manager writes
/// it, and it is the manager's own index of HTTP sessions by id too.
#[derive(Debug, Clone, Default)]
pub(crate) struct Directory(Arc<RwLock<Listing>>);

/// Id -> (serial, command channel, what the session is bound to).
type Listing = HashMap<Arc<str>, (u64, CommandTx, Option<Arc<Bound>>)>;

/// What an HTTP session is bound to (see `Config::bind_sessions`): the
/// address and the cookie value of the client that opened it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bound {
    pub(crate) ip: Option<IpAddr>,
    pub(crate) cookie: Option<Box<str>>,
}

impl Directory {
    fn read(&self) -> RwLockReadGuard<'_, Listing> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Listing> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live session with this id, if any: its serial, its command
    /// channel and what it is bound to.
    pub(crate) fn find(&self, id: &str) -> Option<(u64, CommandTx, Option<Arc<Bound>>)> {
        let map = self.read();
        let (serial, tx, bound) = map.get(id).filter(|(_, tx, _)| !tx.is_closed())?;
        Some((*serial, tx.clone(), bound.clone()))
    }

    /// What the session listed under this id is bound to.
    fn bound(&self, id: &str) -> Option<Arc<Bound>> {
        self.read().get(id).and_then(|(_, _, bound)| bound.clone())
    }

    /// The serial of the session listed under this id.
    fn serial(&self, id: &str) -> Option<u64> {
        self.read().get(id).map(|(serial, _, _)| *serial)
    }

    fn insert(&self, id: Arc<str>, serial: u64, tx: CommandTx, bound: Option<Arc<Bound>>) {
        self.write().insert(id, (serial, tx, bound));
    }

    /// Unlists `id` if it still lists the session `serial`.
    fn remove(&self, id: &str, serial: u64) {
        let mut map = self.write();
        if map.get(id).is_some_and(|(listed, _, _)| *listed == serial) {
            map.remove(id);
        }
    }

    fn len(&self) -> usize {
        self.read().len()
    }
}

/// A unique number for every session of the process.
pub(crate) fn next_serial() -> u64 {
    static SERIAL: AtomicU64 = AtomicU64::new(1);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// The actor that tracks the sessions of one SockJS endpoint.
///
/// Start one per endpoint, outside the `HttpServer::new` closure, and give
/// its address to [`SockJs::new`](crate::SockJs::new) in every worker: the
/// session table must be shared by all workers (an endpoint whose workers
/// were given different managers is logged as an error when the workers
/// start). Sessions themselves run on the
/// worker threads; the manager only keeps their handles, so that requests
/// find their session by id, [`Broadcast`] reaches all of them or a group,
/// and [`Deliver`] hands one of them a typed message.
///
/// # Examples
///
/// ```
/// use actix::prelude::*;
/// use actix_sockjs::{Broadcast, Session, SessionContext, SessionManager};
///
/// struct Chat {
///     room: Addr<SessionManager<Chat>>,
/// }
///
/// impl Actor for Chat {
///     type Context = SessionContext<Self>;
/// }
///
/// impl Session for Chat {
///     fn on_message(&mut self, msg: String, _ctx: &mut SessionContext<Self>) {
///         self.room.do_send(Broadcast::text(msg));
///     }
/// }
///
/// # actix::System::new().block_on(async {
/// let manager = SessionManager::start_with(|room| move || Chat { room: room.clone() });
/// let counts = manager.send(actix_sockjs::CountSessions).await;
/// assert_eq!(counts.map(|c| c.total()).ok(), Some(0));
/// # });
/// ```
pub struct SessionManager<A: Session> {
    factory: Factory<A>,
    sessions: SerialMap<Entry>,
    /// HTTP sessions by id, shared with the workers.
    directory: Directory,
    /// WebSocket sessions by id (the newest, should a client reuse one),
    /// raw ones under their generated id.
    sockets: HashMap<Arc<str>, u64>,
    /// The older WebSocket sessions of an id that a newer one reuses,
    /// oldest first: when the newest ends or closes, the one before it is
    /// reached by id again. Empty unless clients reuse ids.
    shadowed: HashMap<Arc<str>, Vec<u64>>,
    /// Group -> members.
    groups: HashMap<Arc<str>, SerialSet>,
    per_client: HashMap<IpAddr, usize>,
    /// HTTP sessions whose handler panicked, listed (closed, with no actor
    /// behind them) until the instant given (none: never), to answer their
    /// client's late requests with their close frame ([`Note::Failed`]);
    /// oldest first.
    failed: VecDeque<(Option<Instant>, u64, Box<Tombstone>)>,
    shutting_down: bool,
    /// Where broadcasts also go, to reach other nodes.
    relay: Option<Box<dyn Relay>>,
    notes: NotesTx,
    notes_rx: NotesRx,
    arrivals: Arc<Arrivals>,
    metrics: ManagerMetrics,
}

/// The manager's metric handles, labelled with its endpoint once mounted.
#[derive(Debug)]
pub(crate) struct ManagerMetrics {
    fanout: Histogram,
    receivers: Histogram,
    /// [`SendTo`] and [`Deliver`] answers: delivered, forwarded, unknown.
    sent_to: [Counter; 3],
    /// The `endpoint` label, which log lines name too (empty until mounted).
    endpoint: String,
}

impl ManagerMetrics {
    pub(crate) fn new(prefix: &str) -> Self {
        describe();
        let endpoint = endpoint_label(prefix);
        Self {
            fanout: histogram!(BROADCAST_FANOUT, "endpoint" => endpoint.clone()),
            receivers: histogram!(BROADCAST_RECEIVERS, "endpoint" => endpoint.clone()),
            sent_to: ["delivered", "forwarded", "unknown"]
                .map(|result| counter!(SEND_TO, "endpoint" => endpoint.clone(), "result" => result)),
            endpoint,
        }
    }

    /// Handles that record nothing, until the manager learns its endpoint
    /// ([`Mounted`]): registering them under a made-up label would export
    /// series for an endpoint that does not exist.
    fn unmounted() -> Self {
        Self {
            fanout: Histogram::noop(),
            receivers: Histogram::noop(),
            sent_to: [Counter::noop(), Counter::noop(), Counter::noop()],
            endpoint: String::new(),
        }
    }

    fn broadcast(&self, took: std::time::Duration, receivers: usize) {
        self.fanout.record(took);
        self.receivers.record(receivers as f64);
    }

    pub(crate) fn sent_to(&self, delivery: Delivery) {
        let i = match delivery {
            Delivery::Delivered => 0,
            Delivery::Forwarded => 1,
            Delivery::Unknown => 2,
        };
        self.sent_to[i].increment(1);
    }
}

/// One session, as the manager knows it.
struct Entry {
    tx: CommandTx,
    id: Arc<str>,
    /// Whether `id` is in `sockets` rather than the directory.
    socket: bool,
    transport: Transport,
    phase: SessionState,
    /// When it opened, in milliseconds since the Unix epoch (8 bytes where
    /// a `SystemTime` takes 16: an entry is in every session's cost).
    opened_at: u64,
    client: Option<IpAddr>,
    /// Counted in `per_client` (its endpoint caps sessions per address).
    counted: bool,
    /// The groups it is in (member -> groups).
    groups: Groups,
}

/// The groups a session is in: 8 bytes in its entry, where a boxed slice
/// takes 16 (an entry is in every session's cost, and 72 bytes with the
/// slice put the manager's table of sessions in 80-byte buckets), and a
/// box of the slice only once it is in one. Joins and leaves are rare:
/// they copy the slice.
#[derive(Default)]
struct Groups(Option<Box<Box<[Arc<str>]>>>);

impl Groups {
    fn iter(&self) -> std::slice::Iter<'_, Arc<str>> {
        self.0.as_deref().map_or(&[][..], |groups| &groups[..]).iter()
    }

    fn contains(&self, group: &str) -> bool {
        self.iter().any(|g| &**g == group)
    }

    fn add(&mut self, group: Arc<str>) {
        let groups: Box<[Arc<str>]> = self.iter().cloned().chain([group]).collect();
        self.0 = Some(Box::new(groups));
    }

    fn remove(&mut self, group: &str) {
        if self.contains(group) {
            let groups: Box<[Arc<str>]> = self.iter().filter(|g| &***g != group).cloned().collect();
            self.0 = (!groups.is_empty()).then(|| Box::new(groups));
        }
    }

    /// Empties it, giving what it held.
    fn take(&mut self) -> Vec<Arc<str>> {
        self.0.take().map(|groups| groups.into_vec()).unwrap_or_default()
    }
}

impl Entry {
    /// Not closed: it takes messages.
    fn live(&self) -> bool {
        !matches!(self.phase, SessionState::Closing | SessionState::Closed)
    }

    /// When the session opened.
    fn opened_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(self.opened_at)
    }
}

/// Whose sessions `max_sessions_per_ip` counts together: an IPv4 address
/// (an IPv4-mapped IPv6 one as IPv4), or an IPv6 address's /64, which one
/// client is given whole (SLAAC, privacy addresses: 2^64 addresses to
/// choose from), as rate limiters count IPv6.
fn cap_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// Now, in milliseconds since the Unix epoch, as an entry keeps it.
fn millis_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

/// Who is opening a session, for the caps and the listing.
#[derive(Debug, Clone)]
pub(crate) struct Opening {
    pub(crate) client: Option<IpAddr>,
    pub(crate) caps: Caps,
    pub(crate) transport: Transport,
    /// What an HTTP session is bound to, when the endpoint binds them.
    pub(crate) bound: Option<Arc<Bound>>,
}

impl<A: Session> fmt::Debug for SessionManager<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("sessions", &self.sessions.len())
            .field("http_sessions", &self.directory.len())
            .field("groups", &self.groups.len())
            .finish()
    }
}

impl<A: Session> SessionManager<A> {
    /// A manager whose sessions are built by `factory`, called once per new
    /// session on the worker thread that opens it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::prelude::*;
    /// # use actix_sockjs::{Session, SessionContext, SessionManager};
    /// # struct Echo;
    /// # impl Actor for Echo { type Context = SessionContext<Self>; }
    /// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
    /// # actix::System::new().block_on(async {
    /// let manager = SessionManager::new(|| Echo).start();
    /// # });
    /// ```
    pub fn new<F>(factory: F) -> Self
    where
        F: Fn() -> A + Send + Sync + 'static,
    {
        Self::from_request(move |_: &RequestInfo| factory())
    }

    /// A manager whose factory sees each session's opening request: its
    /// headers (those [`Config::keep_headers`](crate::Config::keep_headers)
    /// keeps), addresses, and what [`SockJs::authorize`](crate::SockJs::authorize)
    /// produced ([`RequestInfo::get`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::prelude::*;
    /// use actix_sockjs::{RequestInfo, Session, SessionContext, SessionManager};
    ///
    /// struct Member {
    ///     name: String,
    /// }
    /// # impl Actor for Member { type Context = SessionContext<Self>; }
    /// # impl Session for Member { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
    ///
    /// # actix::System::new().block_on(async {
    /// let manager = SessionManager::from_request(|req: &RequestInfo| Member {
    ///     name: req.query("name").unwrap_or_else(|| "anonymous".to_owned()),
    /// })
    /// .start();
    /// # });
    /// ```
    pub fn from_request<F>(factory: F) -> Self
    where
        F: Fn(&RequestInfo) -> A + Send + Sync + 'static,
    {
        let (notes, notes_rx) = NotesTx::queue();
        Self {
            factory: Arc::new(factory),
            sessions: SerialMap::default(),
            directory: Directory::default(),
            sockets: HashMap::new(),
            shadowed: HashMap::new(),
            groups: HashMap::new(),
            per_client: HashMap::new(),
            failed: VecDeque::new(),
            shutting_down: false,
            relay: None,
            notes,
            notes_rx,
            arrivals: Arc::default(),
            metrics: ManagerMetrics::unmounted(),
        }
    }

    /// Starts a manager whose factory needs the manager's own address (a
    /// chat room whose sessions broadcast, say). `make` gets the address and
    /// returns the factory.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::prelude::*;
    /// # use actix_sockjs::{Broadcast, Session, SessionContext, SessionManager};
    /// struct Chat {
    ///     room: Addr<SessionManager<Chat>>,
    /// }
    /// # impl Actor for Chat { type Context = SessionContext<Self>; }
    /// # impl Session for Chat { fn on_message(&mut self, m: String, _: &mut SessionContext<Self>) { self.room.do_send(Broadcast::text(m)); } }
    /// # actix::System::new().block_on(async {
    /// let room = SessionManager::start_with(|room| move || Chat { room: room.clone() });
    /// # });
    /// ```
    ///
    /// An actor of the application's that needs the manager and that the
    /// sessions need (a presence tracker, say) starts in `make`, where both
    /// addresses are at hand:
    ///
    /// ```
    /// # use actix::prelude::*;
    /// # use actix_sockjs::{Session, SessionContext, SessionManager};
    /// struct Presence {
    ///     room: Addr<SessionManager<Member>>,
    /// }
    /// impl Actor for Presence {
    ///     type Context = Context<Self>;
    /// }
    ///
    /// struct Member {
    ///     presence: Addr<Presence>,
    /// }
    /// # impl Actor for Member { type Context = SessionContext<Self>; }
    /// # impl Session for Member { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
    ///
    /// # actix::System::new().block_on(async {
    /// let room = SessionManager::start_with(|room| {
    ///     let presence = Presence { room }.start();
    ///     move || Member { presence: presence.clone() }
    /// });
    /// # });
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a running actix system (actix's `Actor::create` needs one):
    /// call it inside `#[actix_web::main]` or `System::block_on`.
    pub fn start_with<M, F>(make: M) -> Addr<Self>
    where
        M: FnOnce(Addr<Self>) -> F,
        F: Fn() -> A + Send + Sync + 'static,
    {
        Self::create(|ctx| Self::new(make(ctx.address())))
    }

    /// Starts a manager whose factory needs both the manager's own address
    /// and each session's opening request (a chat whose sessions broadcast
    /// and know who [`SockJs::authorize`](crate::SockJs::authorize)
    /// identified, say): [`start_with`](Self::start_with) with the factory
    /// of [`from_request`](Self::from_request). `make` gets the address and
    /// returns the factory.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::prelude::*;
    /// # use actix_sockjs::{Broadcast, RequestInfo, Session, SessionContext, SessionManager};
    /// /// Who `authorize` identified (see `SockJs::authorize`).
    /// struct User(String);
    ///
    /// struct Chat {
    ///     room: Addr<SessionManager<Chat>>,
    ///     name: String,
    /// }
    /// # impl Actor for Chat { type Context = SessionContext<Self>; }
    /// # impl Session for Chat { fn on_message(&mut self, m: String, _: &mut SessionContext<Self>) { self.room.do_send(Broadcast::text(format!("{}: {m}", self.name))); } }
    ///
    /// # actix::System::new().block_on(async {
    /// let room = SessionManager::start_with_request(|room| {
    ///     move |req: &RequestInfo| Chat {
    ///         room: room.clone(),
    ///         name: req.get::<User>().map_or_else(|| "anonymous".to_owned(), |user| user.0.clone()),
    ///     }
    /// });
    /// # });
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a running actix system, as [`start_with`](Self::start_with).
    pub fn start_with_request<M, F>(make: M) -> Addr<Self>
    where
        M: FnOnce(Addr<Self>) -> F,
        F: Fn(&RequestInfo) -> A + Send + Sync + 'static,
    {
        Self::create(|ctx| Self::from_request(make(ctx.address())))
    }

    fn starter(&self) -> Starter<A> {
        Starter { factory: self.factory.clone(), notes: self.notes.clone(), arrivals: self.arrivals.clone() }
    }

    /// [`Self::starter`] for the session `serial`, just listed, that a
    /// request is to start.
    fn unstarted(&self, serial: u64) -> Unstarted<A> {
        Unstarted::new(serial, self.starter())
    }

    /// Reads the notes sessions have queued; runs before every message, so
    /// that what a session told before it answered its client is known.
    fn read_notes(&mut self) {
        self.forget_failed();
        self.enter_arrivals();
        while let Some((serial, note)) = self.notes_rx.try_recv() {
            self.note(serial, note);
        }
    }

    /// Enters the sessions workers started without asking ([`Arrivals`]).
    fn enter_arrivals(&mut self) {
        let arrivals = self.arrivals.take();
        self.enter(arrivals);
    }

    fn enter(&mut self, arrivals: Vec<Arrival>) {
        for (serial, id, tx, opening) in arrivals {
            if self.admit(serial, id, tx.clone(), true, opening).is_err() {
                // Shutting down since the worker looked.
                let _ = tx.send(Command::Shutdown);
            }
        }
    }

    /// Stops taking sessions without a round trip (for shutdown).
    pub(crate) fn close_arrivals(&mut self) {
        self.arrivals.close();
        self.enter_arrivals();
    }

    fn note(&mut self, serial: u64, note: Note) {
        self.enter_arrivals();
        match note {
            Note::Opened => self.set_phase(serial, SessionState::Open),
            Note::Deferred => self.set_phase(serial, SessionState::New),
            Note::Closed => self.closed(serial),
            Note::Ended | Note::SocketEnded => self.remove(serial),
            Note::Failed(tombstone) => {
                self.closed(serial);
                match self.sessions.get(&serial).filter(|e| !e.socket) {
                    // No deadline for a disconnect delay too long to add
                    // (`Duration::MAX`: never), as for a closed session.
                    Some(_) => {
                        let until = Instant::now().checked_add(tombstone.keep);
                        self.failed.push_back((until, serial, tombstone));
                    }
                    None => self.remove(serial),
                }
            }
            Note::Join(group) => {
                self.join(serial, group);
            }
            Note::Leave(group) => {
                self.leave(serial, &group);
            }
            Note::Broadcast(broadcast) => self.session_broadcast(serial, broadcast),
        }
    }

    fn set_phase(&mut self, serial: u64, phase: SessionState) {
        if let Some(entry) = self.sessions.get_mut(&serial) {
            entry.phase = phase;
        }
    }

    /// The session `serial` closed: it takes no more messages and leaves
    /// its groups now. An HTTP one stays listed (closed) for the disconnect
    /// delay, to answer its client's late requests with its close frame.
    fn closed(&mut self, serial: u64) {
        let Some(entry) = self.sessions.get_mut(&serial) else { return };
        entry.phase = SessionState::Closed;
        for group in entry.groups.take() {
            self.unlist(serial, &group);
        }
    }

    /// Unlists the failed sessions whose time is up,
    /// before the manager reads its notes and at the deadline of the first
    /// ([`NotesPump`]).
    fn forget_failed(&mut self) {
        if self.failed.is_empty() {
            return;
        }
        let now = Instant::now();
        let due = |until: &Option<Instant>| until.is_some_and(|until| until <= now);
        while let Some(&(_, serial, _)) = self.failed.front().filter(|(until, _, _)| due(until)) {
            self.failed.pop_front();
            self.remove(serial);
        }
    }

    /// The close frame of the session `serial`, if it failed and is still
    /// listed.
    fn tombstone(&self, serial: u64) -> Option<&Tombstone> {
        self.failed.iter().find(|(_, failed, _)| *failed == serial).map(|(_, _, tombstone)| &**tombstone)
    }

    /// Whether the session `serial` is listed and not closed.
    fn live(&self, serial: u64) -> bool {
        self.sessions.get(&serial).is_some_and(Entry::live)
    }

    /// Puts the session `serial` in `group`; `false` if there is no such
    /// session, or it has closed.
    fn join(&mut self, serial: u64, group: Arc<str>) -> bool {
        let Some(entry) = self.sessions.get_mut(&serial).filter(|e| e.live()) else { return false };
        if !entry.groups.contains(&group) {
            entry.groups.add(group.clone());
            let members = self.groups.entry(group.clone()).or_default();
            members.insert(serial);
            if members.len() == 1 {
                if let Some(relay) = self.relay.as_mut() {
                    relay.watch(&group);
                }
            }
        }
        true
    }

    /// Takes the session `serial` out of `group`; `false` if there is no such session.
    fn leave(&mut self, serial: u64, group: &str) -> bool {
        let Some(entry) = self.sessions.get_mut(&serial) else { return false };
        entry.groups.remove(group);
        self.unlist(serial, group);
        true
    }

    /// Removes `serial` from the members of `group`, and the group once empty.
    fn unlist(&mut self, serial: u64, group: &str) {
        if let Some(members) = self.groups.get_mut(group) {
            members.remove(&serial);
            if members.is_empty() {
                if let Some((group, _)) = self.groups.remove_entry(group) {
                    if let Some(relay) = self.relay.as_mut() {
                        relay.unwatch(&group);
                    }
                }
            }
        }
    }

    fn remove(&mut self, serial: u64) {
        let Some(entry) = self.sessions.remove(&serial) else { return };
        if entry.socket {
            self.unlist_socket(&entry.id, serial);
        } else {
            self.directory.remove(&entry.id, serial);
        }
        for group in entry.groups.iter() {
            self.unlist(serial, group);
        }
        if let Some(ip) = entry.client.filter(|_| entry.counted).map(cap_key) {
            if let Some(n) = self.per_client.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_client.remove(&ip);
                }
            }
        }
    }

    /// Takes the WebSocket session `serial` out of the index by id; the
    /// newest older one with its id, if any, takes its place.
    fn unlist_socket(&mut self, id: &Arc<str>, serial: u64) {
        let older = self.shadowed.get_mut(id);
        if self.sockets.get(id) == Some(&serial) {
            match older.and_then(Vec::pop) {
                Some(previous) => self.sockets.insert(id.clone(), previous),
                None => self.sockets.remove(id),
            };
        } else if let Some(older) = older {
            older.retain(|s| *s != serial);
        }
        if self.shadowed.get(id).is_some_and(Vec::is_empty) {
            self.shadowed.remove(id);
        }
    }

    /// Adds a session if the caps allow it.
    fn admit(
        &mut self,
        serial: u64,
        id: Arc<str>,
        tx: CommandTx,
        socket: bool,
        open: Opening,
    ) -> Result<(), Refusal> {
        let caps = open.caps;
        if self.shutting_down {
            return Err(Refusal::ShuttingDown);
        }
        if caps.max_sessions.is_some_and(|max| self.sessions.len() >= max) {
            return Err(Refusal::Full);
        }
        // Sessions per address are counted only where they are capped.
        let counted = match (open.client.map(cap_key), caps.max_per_ip) {
            (Some(ip), Some(max)) => {
                let n = self.per_client.entry(ip).or_insert(0);
                if *n >= max {
                    if *n == 0 {
                        self.per_client.remove(&ip);
                    }
                    return Err(Refusal::TooManyFromClient);
                }
                *n += 1;
                true
            }
            _ => false,
        };
        if socket {
            if let Some(older) = self.sockets.insert(id.clone(), serial) {
                log::debug!(
                    "sockjs: WebSocket session id {} reused; the newest session gets messages sent to it",
                    crate::SessionTag::of(&id)
                );
                self.shadowed.entry(id.clone()).or_default().push(older);
            }
        } else {
            self.directory.insert(id.clone(), serial, tx.clone(), open.bound.clone());
        }
        let entry = Entry {
            tx,
            id,
            socket,
            transport: open.transport,
            // A socket's session opens at its first turn, which attaches
            // the socket before anything else: it tells no `Opened`
            // (`SessionContext::attach`), so it is open from here.
            phase: if socket { SessionState::Open } else { SessionState::New },
            opened_at: millis_now(),
            client: open.client,
            counted,
            groups: Groups::default(),
        };
        self.sessions.insert(serial, entry);
        Ok(())
    }

    /// The serials of the sessions of this node with this id that have not
    /// closed: the HTTP one and the newest such WebSocket one. Closed
    /// sessions take no messages.
    fn serials_of(&self, id: &str) -> impl Iterator<Item = u64> {
        let http = self.directory.serial(id).filter(|s| self.live(*s));
        let socket = self.sockets_of(id).find(|s| self.live(*s));
        [http, socket].into_iter().flatten()
    }

    /// The serials of every session of this node with this id, closed ones
    /// and older WebSockets that reused it included: what `except` leaves
    /// out.
    fn every_serial_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = u64> + 'a {
        self.directory.serial(id).into_iter().chain(self.sockets_of(id))
    }

    /// The WebSocket sessions with this id, newest first.
    fn sockets_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = u64> + 'a {
        let older = self.shadowed.get(id).into_iter().flat_map(|older| older.iter().rev());
        self.sockets.get(id).into_iter().chain(older).copied()
    }

    /// Hands a broadcast to its recipients on this node; answers how many
    /// got it.
    fn fan_out(
        &mut self,
        payload: &Arc<Shared>,
        audience: &Audience,
        except: &[Arc<str>],
        except_groups: &[Arc<str>],
    ) -> usize {
        let start = Instant::now();
        let mut skip: SerialSet = except.iter().flat_map(|id| self.every_serial_of(id)).collect();
        skip.extend(except_groups.iter().filter_map(|group| self.groups.get(group)).flatten().copied());
        let mut recipients: Vec<u64> = Vec::new();
        let mut dead = Vec::new();
        let mut sent = 0;
        let mut push = |serial: u64, entry: &Entry| {
            if skip.contains(&serial) || !entry.live() {
                return;
            }
            if entry.tx.send(Command::Push(payload.clone())).is_ok() {
                sent += 1;
            } else {
                dead.push(serial);
            }
        };
        match audience {
            Audience::All => self.sessions.iter().for_each(|(serial, entry)| push(*serial, entry)),
            Audience::Group(group) => {
                for serial in self.groups.get(group).into_iter().flatten() {
                    if let Some(entry) = self.sessions.get(serial) {
                        push(*serial, entry);
                    }
                }
            }
            Audience::Ids(_) | Audience::Session(_) => {
                let ids = match audience {
                    Audience::Session(id) => std::slice::from_ref(id),
                    Audience::Ids(ids) => &ids[..],
                    _ => &[],
                };
                recipients.extend(ids.iter().flat_map(|id| self.serials_of(id)));
                recipients.sort_unstable();
                recipients.dedup();
                for serial in &recipients {
                    if let Some(entry) = self.sessions.get(serial) {
                        push(*serial, entry);
                    }
                }
            }
        }
        self.metrics.broadcast(start.elapsed(), sent);
        for serial in dead {
            self.remove(serial);
        }
        sent
    }

    /// Hands a message to the sessions `serials` (of this node, open);
    /// `false` if it reached none (a session whose queue has gone is
    /// forgotten).
    fn deliver_to(&mut self, serials: Vec<u64>, payload: &Arc<Shared>) -> bool {
        let mut found = false;
        for serial in serials {
            let sent =
                self.sessions.get(&serial).is_some_and(|e| e.tx.send(Command::Push(payload.clone())).is_ok());
            if sent {
                found = true;
            } else {
                self.remove(serial);
            }
        }
        found
    }

    /// Passes a message to the relay; `false` if there is none.
    fn relay(&mut self, msg: RelayMessage) -> bool {
        let Some(relay) = self.relay.as_mut() else { return false };
        relay.publish(msg);
        true
    }
}

impl<A: Session> Actor for SessionManager<A> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.spawn(NotesPump::default());
    }
}

/// Enters arrivals and reads the notes queue whenever a note or enough
/// arrivals wake the manager (between messages; handlers read both too,
/// first thing). `Opened`, `Closed` and `SocketEnded` notes do not wake
/// it ([`NotesTx::note`]), nor do arrivals up to [`ARRIVALS_WAKE_AT`]: they
/// wait for the next. It also wakes the manager when the first failed
/// session's time is up, so that an endpoint gone quiet lets it go.
#[derive(Default)]
struct NotesPump {
    /// Set to the first failed session's deadline while there is one.
    sweep: Option<Pin<Box<actix_web::rt::time::Sleep>>>,
}

impl<A: Session> ActorFuture<SessionManager<A>> for NotesPump {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut SessionManager<A>,
        _: &mut Context<SessionManager<A>>,
        task: &mut TaskContext<'_>,
    ) -> Poll<()> {
        let this = self.get_mut();
        act.forget_failed();
        let arrivals = act.arrivals.take_and_listen(task.waker());
        act.enter(arrivals);
        // Bounded per turn, so that messages get their turn during churn.
        let mut more = true;
        for _ in 0..1024 {
            match act.notes_rx.poll_recv(task) {
                Poll::Ready(Some((serial, note))) => act.note(serial, note),
                // The manager holds a sender itself: the queue does not end.
                Poll::Ready(None) | Poll::Pending => {
                    more = false;
                    break;
                }
            }
        }
        match act.failed.front() {
            None | Some((None, _, _)) => this.sweep = None,
            Some(&(Some(until), _, _)) => {
                let until = actix_web::rt::time::Instant::from_std(until);
                let sweep =
                    this.sweep.get_or_insert_with(|| Box::pin(actix_web::rt::time::sleep_until(until)));
                if sweep.deadline() != until {
                    sweep.as_mut().reset(until);
                }
                more |= std::future::Future::poll(sweep.as_mut(), task).is_ready();
            }
        }
        if more {
            task.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod size {
    /// A manager's entry is in the cost of every session, with its 8-byte
    /// key and a control byte in each bucket of the table (which is
    /// 44-87% full): 64 bytes, where it took 88 with a `SystemTime` and a
    /// `Vec` of groups, and 72 with a boxed slice of them.
    #[test]
    fn an_entry_fits_in_64_bytes() {
        assert!(std::mem::size_of::<super::Entry>() <= 64);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{atomic::AtomicUsize, Arc},
        task::{Wake, Waker},
    };

    use super::{Arrivals, Opening, ARRIVALS_WAKE_AT};
    use crate::{admission::Caps, protocol::Transport, session::command_channel};

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Sockets' sessions tell the manager nothing as they open: their
    /// arrivals wait for its next turn, but no more than
    /// `ARRIVALS_WAKE_AT` of them, however quiet the endpoint.
    #[test]
    fn arrivals_wake_the_manager_once_enough_wait() {
        let arrivals = Arrivals::default();
        let count = Arc::new(Count::default());
        let manager = Waker::from(count.clone());
        let opening =
            Opening { client: None, caps: Caps::default(), transport: Transport::WebSocket, bound: None };
        let woken = || count.0.load(std::sync::atomic::Ordering::SeqCst);
        assert!(arrivals.take_and_listen(&manager).is_empty());
        for round in 1..=2 {
            for serial in 0..ARRIVALS_WAKE_AT {
                assert_eq!(woken(), round - 1, "woken before {ARRIVALS_WAKE_AT} arrivals");
                let (tx, _rx) = command_channel();
                assert!(arrivals.arrive(serial as u64, Arc::from("id"), tx, opening.clone()));
            }
            assert_eq!(woken(), round);
            // The manager's turn takes them and listens again.
            assert_eq!(arrivals.take_and_listen(&manager).len(), ARRIVALS_WAKE_AT);
        }
        // Once the manager closes them, workers ask it instead.
        arrivals.close();
        let (tx, _rx) = command_channel();
        assert!(!arrivals.arrive(0, Arc::from("id"), tx, opening));
    }
}
