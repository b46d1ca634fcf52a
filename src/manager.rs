//! [`SessionManager`]: the sessions of one endpoint, their creation, and
//! broadcasting to them.

use std::{
    collections::HashMap,
    fmt,
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
    },
    time::Instant,
};

use actix::{
    Actor, Addr, AsyncContext, Context, Handler, Message, MessageResult, ResponseFuture, StreamHandler,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::{
    admission::{Caps, Refusal},
    metrics::broadcast_fanout,
    protocol::{json_string, Escape},
    receiver::queue,
    session::{command_channel, AddressRequest, Command, CommandRx, CommandTx, EndedTx, Session, Shared},
};

/// Builds a session actor for each new session.
pub(crate) type Factory<A> = Arc<dyn Fn() -> A + Send + Sync>;

/// What a worker needs to start a session the manager admitted: the
/// factory, and where the session reports its end.
pub(crate) struct Starter<A: Session> {
    pub(crate) factory: Factory<A>,
    pub(crate) on_end: EndedTx,
}

/// An endpoint's HTTP sessions by id (their serial and command channel),
/// shared with the workers: a request for an existing session finds it
/// here without a round trip to the manager actor. Only the manager writes
/// it, and it is the manager's own index of HTTP sessions by id too.
#[derive(Debug, Clone, Default)]
pub(crate) struct Directory(Arc<RwLock<Listing>>);

/// Id -> (serial, command channel).
type Listing = HashMap<Arc<str>, (u64, CommandTx)>;

impl Directory {
    fn read(&self) -> RwLockReadGuard<'_, Listing> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Listing> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live session with this id, if any.
    pub(crate) fn find(&self, id: &str) -> Option<CommandTx> {
        self.read().get(id).map(|(_, tx)| tx).filter(|tx| !tx.is_closed()).cloned()
    }

    /// The serial of the session listed under this id.
    fn serial(&self, id: &str) -> Option<u64> {
        self.read().get(id).map(|(serial, _)| *serial)
    }

    fn insert(&self, id: Arc<str>, serial: u64, tx: CommandTx) {
        self.write().insert(id, (serial, tx));
    }

    /// Unlists `id` if it still lists the session `serial`.
    fn remove(&self, id: &str, serial: u64) {
        let mut map = self.write();
        if map.get(id).is_some_and(|(listed, _)| *listed == serial) {
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
/// session table must be shared by all workers. Sessions themselves run on
/// the worker threads; the manager only keeps their handles, so that HTTP
/// requests find their session by id and [`Broadcast`] reaches all of them.
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
/// assert_eq!(manager.send(actix_sockjs::SessionCount).await.ok(), Some(0));
/// # });
/// ```
pub struct SessionManager<A: Session> {
    factory: Factory<A>,
    sessions: HashMap<u64, Entry>,
    /// HTTP sessions by id, shared with the workers.
    directory: Directory,
    /// SockJS WebSocket sessions by id (the newest, should a client reuse one).
    sockets_by_id: HashMap<Arc<str>, u64>,
    per_client: HashMap<IpAddr, usize>,
    shutting_down: bool,
    /// Where broadcasts also go, to reach other nodes.
    relay: Option<UnboundedSender<ClusterMessage>>,
    ended: EndedTx,
    /// Taken when the actor starts, which drains it.
    ended_rx: Option<queue::Rx<u64>>,
}

struct Entry {
    tx: CommandTx,
    id: Option<Arc<str>>,
    /// Whether `id` is in `sockets_by_id` rather than the directory.
    socket: bool,
    client: Option<IpAddr>,
}

/// Who is opening a session, for the caps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opening {
    pub(crate) client: Option<IpAddr>,
    pub(crate) caps: Caps,
}

impl<A: Session> fmt::Debug for SessionManager<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("sessions", &self.sessions.len())
            .field("http_sessions", &self.directory.len())
            .finish()
    }
}

impl<A: Session> SessionManager<A> {
    /// A manager whose sessions are built by `factory`, called once per new
    /// session on the worker thread that opens it.
    pub fn new<F>(factory: F) -> Self
    where
        F: Fn() -> A + Send + Sync + 'static,
    {
        let (ended, ended_rx) = EndedTx::queue();
        Self {
            factory: Arc::new(factory),
            sessions: HashMap::new(),
            directory: Directory::default(),
            sockets_by_id: HashMap::new(),
            per_client: HashMap::new(),
            shutting_down: false,
            relay: None,
            ended,
            ended_rx: Some(ended_rx),
        }
    }

    fn starter(&self) -> Starter<A> {
        Starter { factory: self.factory.clone(), on_end: self.ended.clone() }
    }

    /// Starts a manager whose factory needs the manager's own address (a
    /// chat room whose sessions broadcast, say). `make` gets the address and
    /// returns the factory.
    pub fn start_with<M, F>(make: M) -> Addr<Self>
    where
        M: FnOnce(Addr<Self>) -> F,
        F: Fn() -> A + Send + Sync + 'static,
    {
        Self::create(|ctx| Self::new(make(ctx.address())))
    }

    fn remove(&mut self, serial: u64) {
        if let Some(entry) = self.sessions.remove(&serial) {
            match entry.id {
                Some(id) if entry.socket && self.sockets_by_id.get(&id) == Some(&serial) => {
                    self.sockets_by_id.remove(&id);
                }
                Some(id) if !entry.socket => self.directory.remove(&id, serial),
                _ => {}
            }
            if let Some(ip) = entry.client {
                if let Some(n) = self.per_client.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_client.remove(&ip);
                    }
                }
            }
        }
    }

    /// Adds a session if the caps allow it.
    fn admit(&mut self, serial: u64, entry: Entry, caps: Caps) -> Result<(), Refusal> {
        if self.shutting_down {
            return Err(Refusal::ShuttingDown);
        }
        if caps.max_sessions.is_some_and(|max| self.sessions.len() >= max) {
            return Err(Refusal::Full);
        }
        if let Some(ip) = entry.client {
            let n = self.per_client.get(&ip).copied().unwrap_or(0);
            if caps.max_per_ip.is_some_and(|max| n >= max) {
                return Err(Refusal::TooManyFromClient);
            }
            self.per_client.insert(ip, n + 1);
        }
        match &entry.id {
            Some(id) if entry.socket => {
                self.sockets_by_id.insert(id.clone(), serial);
            }
            Some(id) => self.directory.insert(id.clone(), serial, entry.tx.clone()),
            None => {}
        }
        self.sessions.insert(serial, entry);
        Ok(())
    }

    /// Hands a broadcast to every session of this node.
    fn fan_out(&mut self, payload: &Arc<Shared>) {
        let start = Instant::now();
        let mut dead = Vec::new();
        for (serial, entry) in &self.sessions {
            if entry.tx.send(Command::Push(payload.clone())).is_err() {
                dead.push(*serial);
            }
        }
        broadcast_fanout(start.elapsed(), self.sessions.len());
        for serial in dead {
            self.remove(serial);
        }
    }

    /// Hands a message to the sessions of this node with this id; `false`
    /// if there are none.
    fn deliver_to(&mut self, id: &str, payload: &Arc<Shared>) -> bool {
        let mut found = false;
        let serials = [self.directory.serial(id), self.sockets_by_id.get(id).copied()];
        for serial in serials.into_iter().flatten() {
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

    /// Passes a message to the relay, if there is one and it is running.
    fn relay(&mut self, msg: ClusterMessage) {
        if let Some(relay) = &self.relay {
            if relay.send(msg).is_err() {
                log::warn!("sockjs: cluster relay stopped; broadcasts stay on this node");
                self.relay = None;
            }
        }
    }
}

impl<A: Session> Actor for SessionManager<A> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(mut ended) = self.ended_rx.take() {
            ctx.add_stream(futures_util::stream::poll_fn(move |cx| ended.poll_recv(cx)));
        }
    }
}

/// A session actor has stopped (its serial, from the queue of ended sessions).
impl<A: Session> StreamHandler<u64> for SessionManager<A> {
    fn handle(&mut self, serial: u64, _: &mut Context<Self>) {
        self.remove(serial);
    }

    // The manager holds a sender itself: the stream does not end.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

/// Sends one message to every open session of the endpoint.
///
/// The message is encoded once, when the `Broadcast` is built, and shared by
/// all sessions; each session puts it in its own queue, so a broadcast keeps
/// its order with the session's other messages and a slow client delays
/// nobody else.
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{Broadcast, Session, SessionContext, SessionManager};
/// # struct Echo;
/// # impl Actor for Echo { type Context = SessionContext<Self>; }
/// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// # fn f(manager: Addr<SessionManager<Echo>>) {
/// manager.do_send(Broadcast::text("server restarting in 5 minutes"));
/// # }
/// ```
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Broadcast {
    payload: Arc<Shared>,
}

impl Broadcast {
    /// A broadcast of one text message.
    pub fn text(msg: impl Into<String>) -> Self {
        let text = msg.into();
        let json = json_string(&text, Escape::SockJs).into_boxed_str();
        Self { payload: Arc::new(Shared { text: text.into_boxed_str(), json }) }
    }
}

impl<A: Session> Handler<Broadcast> for SessionManager<A> {
    type Result = ();

    fn handle(&mut self, msg: Broadcast, _: &mut Context<Self>) {
        self.fan_out(&msg.payload);
        self.relay(ClusterMessage::Broadcast(msg.payload));
    }
}

/// Sends one message to the session with this id, wherever it is.
///
/// On this node the message goes to the HTTP session with that id and to
/// the newest SockJS WebSocket session that used it (raw WebSocket sessions
/// have no id of the client's). When no session here has the id and the
/// manager is bridged to other nodes (see the `redis` feature), the message
/// goes to them, and the node that holds the session delivers it. A session
/// that exists nowhere gets nothing; no error is reported.
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{SendTo, Session, SessionContext, SessionManager};
/// # struct Echo;
/// # impl Actor for Echo { type Context = SessionContext<Self>; }
/// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// # fn f(manager: Addr<SessionManager<Echo>>) {
/// manager.do_send(SendTo::text("a1b2c3", "only for you"));
/// # }
/// ```
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SendTo {
    id: Arc<str>,
    payload: Arc<Shared>,
}

impl SendTo {
    /// A text message for the session `id`.
    pub fn text(id: impl Into<String>, msg: impl Into<String>) -> Self {
        let Broadcast { payload } = Broadcast::text(msg);
        Self { id: Arc::from(id.into()), payload }
    }
}

impl<A: Session> Handler<SendTo> for SessionManager<A> {
    type Result = ();

    fn handle(&mut self, msg: SendTo, _: &mut Context<Self>) {
        if !self.deliver_to(&msg.id, &msg.payload) {
            self.relay(ClusterMessage::SendTo(msg.id, msg.payload));
        }
    }
}

/// A message that crosses nodes: what a manager hands its relay, and what
/// a relay hands the manager from other nodes.
#[derive(Debug, Clone)]
pub(crate) enum ClusterMessage {
    /// To every session.
    Broadcast(Arc<Shared>),
    /// To the session with this id.
    SendTo(Arc<str>, Arc<Shared>),
}

// Used by the relays, which are behind features.
#[cfg_attr(
    not(feature = "redis"),
    expect(dead_code, reason = "used by the relays, which are behind features")
)]
impl ClusterMessage {
    /// A message to relay: a broadcast when `to` is `None`.
    pub(crate) fn new(to: Option<&str>, text: String) -> Self {
        let Broadcast { payload } = Broadcast::text(text);
        match to {
            Some(id) => Self::SendTo(Arc::from(id), payload),
            None => Self::Broadcast(payload),
        }
    }

    /// The session it is for (`None`: everyone) and the message text.
    pub(crate) fn parts(&self) -> (Option<&str>, &str) {
        match self {
            Self::Broadcast(p) => (None, &p.text),
            Self::SendTo(id, p) => (Some(id), &p.text),
        }
    }
}

/// A message from another node, for this node's sessions only.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Relayed(pub(crate) ClusterMessage);

impl<A: Session> Handler<Relayed> for SessionManager<A> {
    type Result = ();

    fn handle(&mut self, Relayed(msg): Relayed, _: &mut Context<Self>) {
        match msg {
            ClusterMessage::Broadcast(payload) => self.fan_out(&payload),
            ClusterMessage::SendTo(id, payload) => {
                self.deliver_to(&id, &payload);
            }
        }
    }
}

/// Gives the manager a relay to other nodes (or takes it away).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct SetRelay(pub(crate) Option<UnboundedSender<ClusterMessage>>);

impl<A: Session> Handler<SetRelay> for SessionManager<A> {
    type Result = ();

    fn handle(&mut self, SetRelay(relay): SetRelay, _: &mut Context<Self>) {
        self.relay = relay;
    }
}

/// Closes every session of the endpoint because the server is stopping,
/// and refuses new ones (503) from then on.
///
/// Each open session's client gets `c[1001,"Server shutting down"]` and
/// [`Session::on_close`] runs with
/// [`CloseCause::Shutdown`](crate::CloseCause::Shutdown). The answer comes
/// once every session has been told. [`shutdown_signal`](crate::shutdown_signal)
/// sends it when the process is asked to stop.
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{Session, SessionContext, SessionManager};
/// # struct Echo;
/// # impl Actor for Echo { type Context = SessionContext<Self>; }
/// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// # async fn f(manager: Addr<SessionManager<Echo>>) {
/// // Before a deploy: tell every client, then stop accepting sessions.
/// manager.send(actix_sockjs::Shutdown).await.ok();
/// # }
/// ```
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl<A: Session> Handler<Shutdown> for SessionManager<A> {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) {
        if !self.shutting_down {
            log::info!("sockjs: closing {} sessions for shutdown", self.sessions.len());
        }
        self.shutting_down = true;
        for entry in self.sessions.values() {
            let _ = entry.tx.send(Command::Shutdown);
        }
    }
}

/// Asks for the number of sessions the manager tracks (open, opening, and
/// closed ones still within their disconnect delay).
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{Session, SessionContext, SessionManager};
/// # struct Echo;
/// # impl Actor for Echo { type Context = SessionContext<Self>; }
/// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// # async fn f(manager: Addr<SessionManager<Echo>>) {
/// let sessions = manager.send(actix_sockjs::SessionCount).await.unwrap_or(0);
/// log::info!("{sessions} sessions");
/// # }
/// ```
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "usize")]
pub struct SessionCount;

impl<A: Session> Handler<SessionCount> for SessionManager<A> {
    type Result = usize;

    fn handle(&mut self, _: SessionCount, _: &mut Context<Self>) -> usize {
        self.sessions.len()
    }
}

/// Looks up an HTTP-transport session by its id; answers the session
/// actor's address. WebSocket sessions are not looked up by id (two
/// WebSockets may use the same id), so they are not found.
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{Session, SessionContext, SessionManager};
/// # struct Echo;
/// # impl Actor for Echo { type Context = SessionContext<Self>; }
/// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// # async fn f(manager: Addr<SessionManager<Echo>>) {
/// use actix_sockjs::GetSession;
/// if let Ok(Some(session)) = manager.send(GetSession::new("a1b2c3")).await {
///     // Any message the session actor handles, from outside.
///     # let _ = session;
/// }
/// # }
/// ```
#[derive(Debug, Clone, Message)]
#[rtype(result = "Option<Addr<A>>")]
pub struct GetSession<A: Session> {
    id: String,
    _actor: std::marker::PhantomData<fn() -> A>,
}

impl<A: Session> GetSession<A> {
    /// A lookup of the session with this id.
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into(), _actor: std::marker::PhantomData }
    }
}

impl<A: Session> Handler<GetSession<A>> for SessionManager<A> {
    type Result = ResponseFuture<Option<Addr<A>>>;

    fn handle(&mut self, msg: GetSession<A>, _: &mut Context<Self>) -> Self::Result {
        // The manager keeps no `Addr` per session (an actix address costs a
        // shared allocation of its own); the session answers with one.
        let (reply, answer) = tokio::sync::oneshot::channel();
        let ask = AddressRequest::new(move |addr| {
            let _ = reply.send(addr.downcast::<Addr<A>>().ok().map(|addr| *addr));
        });
        let tx = self.directory.serial(&msg.id).and_then(|serial| self.sessions.get(&serial));
        let asked = tx.is_some_and(|entry| entry.tx.send(Command::Address(Box::new(ask))).is_ok());
        Box::pin(async move {
            if asked {
                answer.await.ok().flatten()
            } else {
                None
            }
        })
    }
}

/// Asks for the manager's [`Directory`].
#[derive(Debug, Message)]
#[rtype(result = "Directory")]
pub(crate) struct GetDirectory;

impl<A: Session> Handler<GetDirectory> for SessionManager<A> {
    type Result = MessageResult<GetDirectory>;

    fn handle(&mut self, _: GetDirectory, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.directory.clone())
    }
}

/// The answer to [`Acquire`].
pub(crate) enum Acquired<A: Session> {
    /// The session exists.
    Found(CommandTx),
    /// It did not; the caller must start it with this channel and starter.
    Created { serial: u64, tx: CommandTx, rx: CommandRx, starter: Starter<A> },
    /// It does not exist and was not to be created.
    Missing,
    /// It does not exist and the caps forbid creating it.
    Refused(Refusal),
}

/// Finds the session with an id, creating an entry for it if `open` says
/// who opens it.
pub(crate) struct Acquire<A: Session> {
    id: Arc<str>,
    open: Option<Opening>,
    _actor: std::marker::PhantomData<fn() -> A>,
}

impl<A: Session> Acquire<A> {
    pub(crate) fn new(id: Arc<str>, open: Option<Opening>) -> Self {
        Self { id, open, _actor: std::marker::PhantomData }
    }
}

impl<A: Session> Message for Acquire<A> {
    type Result = Acquired<A>;
}

impl<A: Session> Handler<Acquire<A>> for SessionManager<A> {
    type Result = MessageResult<Acquire<A>>;

    fn handle(&mut self, msg: Acquire<A>, _: &mut Context<Self>) -> Self::Result {
        let Acquire { id, open, .. } = msg;
        if let Some(serial) = self.directory.serial(&id) {
            match self.sessions.get(&serial) {
                Some(entry) if !entry.tx.is_closed() => {
                    return MessageResult(Acquired::Found(entry.tx.clone()))
                }
                _ => self.remove(serial),
            }
        }
        let Some(open) = open else {
            return MessageResult(Acquired::Missing);
        };
        let serial = next_serial();
        let (tx, rx) = command_channel();
        let entry = Entry { tx: tx.clone(), id: Some(id), socket: false, client: open.client };
        if let Err(refusal) = self.admit(serial, entry, open.caps) {
            return MessageResult(Acquired::Refused(refusal));
        }
        MessageResult(Acquired::Created { serial, tx, rx, starter: self.starter() })
    }
}

/// Registers a WebSocket session (not looked up by id); answers the starter.
pub(crate) struct RegisterSocket<A: Session> {
    serial: u64,
    id: Option<Arc<str>>,
    tx: CommandTx,
    open: Opening,
    _actor: std::marker::PhantomData<fn() -> A>,
}

impl<A: Session> RegisterSocket<A> {
    /// `id` is the session id to find the socket by for [`SendTo`] (none
    /// for raw WebSockets).
    pub(crate) fn new(serial: u64, id: Option<Arc<str>>, tx: CommandTx, open: Opening) -> Self {
        Self { serial, id, tx, open, _actor: std::marker::PhantomData }
    }
}

impl<A: Session> Message for RegisterSocket<A> {
    type Result = Result<Starter<A>, Refusal>;
}

impl<A: Session> Handler<RegisterSocket<A>> for SessionManager<A> {
    type Result = MessageResult<RegisterSocket<A>>;

    fn handle(&mut self, msg: RegisterSocket<A>, _: &mut Context<Self>) -> Self::Result {
        let entry = Entry { tx: msg.tx, id: msg.id, socket: true, client: msg.open.client };
        MessageResult(self.admit(msg.serial, entry, msg.open.caps).map(|()| self.starter()))
    }
}
