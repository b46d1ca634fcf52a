//! The messages a [`SessionManager`] answers: the public ones (broadcasts,
//! delivery by id, groups, listings, counts, shutdown) and the crate's own
//! (opening sessions, the workers' directory, the cluster relay).

use std::{fmt, net::IpAddr, sync::Arc, time::SystemTime};

use actix::{Addr, Context, Handler, Message, MessageResult, ResponseFuture};

use super::{next_serial, Directory, Opening, SessionManager, Unstarted};
use crate::{
    admission::Refusal,
    protocol::Transport,
    relay::{close_payload, names, payload, Audience, RelayMessage, Relayed, SetRelay},
    session::{
        command_channel, AddressRequest, Command, CommandRx, CommandTx, Session, SessionState, Shared, Tags,
        TypedMessage,
    },
    SessionKey, SessionTag,
};

/// Sends one message to every open session of the endpoint, or to a group,
/// or to a list of sessions, optionally leaving some out.
///
/// The message is encoded once, when the `Broadcast` is built, and shared by
/// all recipients; each session puts it in its own queue, so a broadcast
/// keeps its order with the other messages that reach a session through
/// the manager, and a slow client delays nobody else. A session's own
/// [`send`](crate::SessionContext::send) does not go through the manager
/// and may come first: from inside a session, send it with
/// [`SessionContext::broadcast`](crate::SessionContext::broadcast), which
/// keeps it in order with what the session sends after. A broadcast to a group or a list costs per
/// recipient, whatever the endpoint's number of sessions.
///
/// With a [relay](crate::relay) (the `redis` feature's
/// `cluster::RedisBridge`), every kind of broadcast reaches its recipients
/// on every node, once each, in the order this node sent them; for a list
/// of [`ids`](Self::ids), an id that has an open session on this node is
/// not looked for on the others (as [`SendTo`] does: a SockJS client's
/// session lives on one node), and a list whose every id is here goes to
/// no other node.
///
/// The manager answers how many sessions of this node it queued the
/// message for (open ones, less those left out): `0` tells that no one
/// here got it, a user without a session here, say. With a relay the
/// sessions of other nodes are not counted; for one user's sessions
/// across nodes, keep your own presence (the manager's
/// [`GroupSizes`](crate::GroupSizes) is this node's too).
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{Broadcast, Session, SessionContext, SessionManager};
/// # struct Echo;
/// # impl Actor for Echo { type Context = SessionContext<Self>; }
/// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// # fn f(manager: Addr<SessionManager<Echo>>, sender_id: &str) {
/// manager.do_send(Broadcast::text("server restarting in 5 minutes"));
/// // Everyone in the room but the one who spoke:
/// manager.do_send(Broadcast::text("ann: hello").group("lobby").except([sender_id]));
/// // A chosen list of sessions (sockjs-tornado's broadcast(clients, msg)):
/// manager.do_send(Broadcast::text("you two").ids(["a1b2", "c3d4"]));
/// # }
/// # async fn g(manager: Addr<SessionManager<Echo>>) -> Result<(), MailboxError> {
/// // Whether anyone here got a direct message:
/// let reached = manager.send(Broadcast::text("ping").group("user:bob")).await?;
/// if reached == 0 {
///     log::info!("bob has no session on this node");
/// }
/// # Ok(())
/// # }
/// ```
///
/// From an ordinary actix-web route: the manager's address is app data.
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{Session, SessionContext};
/// # struct Chat;
/// # impl Actor for Chat { type Context = SessionContext<Self>; }
/// # impl Session for Chat { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// use actix_sockjs::{Broadcast, SessionManager, SockJs};
/// use actix_web::{post, web, App, HttpResponse, HttpServer};
///
/// type Manager = web::Data<Addr<SessionManager<Chat>>>;
///
/// /// `POST /announce/lobby` with a text body: every session in `lobby`
/// /// gets it; the answer says how many on this node did.
/// #[post("/announce/{room}")]
/// async fn announce(room: web::Path<String>, text: String, manager: Manager) -> HttpResponse {
///     match manager.send(Broadcast::text(text).group(room.as_str())).await {
///         Ok(reached) => HttpResponse::Ok().body(reached.to_string()),
///         Err(_) => HttpResponse::ServiceUnavailable().finish(),
///     }
/// }
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let manager = SessionManager::new(|| Chat).start();
///     HttpServer::new(move || {
///         App::new()
///             .app_data(web::Data::new(manager.clone()))
///             .service(announce)
///             .service(SockJs::new("/chat", manager.clone()))
///     })
///     .bind(("127.0.0.1", 8080))?
///     .run()
///     .await
/// }
/// ```
#[must_use = "a message does nothing until it is sent to the manager"]
#[derive(Clone, Message)]
#[rtype(result = "usize")]
pub struct Broadcast {
    payload: Arc<Shared>,
    target: Audience,
    except: Box<[Arc<str>]>,
    except_groups: Box<[Arc<str>]>,
}

impl std::fmt::Debug for Broadcast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcast")
            .field("payload", &self.payload)
            .field("target", &self.target)
            .field("except", &Tags(&self.except))
            .field("except_groups", &self.except_groups)
            .finish()
    }
}

impl Broadcast {
    /// A broadcast of one text message to every session.
    ///
    /// # Examples
    ///
    /// ```
    /// let notice = actix_sockjs::Broadcast::text("maintenance at noon");
    /// ```
    pub fn text(msg: impl Into<String>) -> Self {
        Self::of(payload(msg.into()))
    }

    /// `payload` for every session, leaving out none.
    fn of(payload: Arc<Shared>) -> Self {
        Self { payload, target: Audience::All, except: Box::default(), except_groups: Box::default() }
    }

    /// A broadcast of one value as JSON (`serde_json`'s encoding).
    ///
    /// # Errors
    ///
    /// The value's `Serialize` implementation failed.
    ///
    /// # Examples
    ///
    /// ```
    /// let scores = actix_sockjs::Broadcast::json(&serde_json::json!({ "ann": 3 }));
    /// assert!(scores.is_ok());
    /// ```
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Self::text(serde_json::to_string(value)?))
    }

    /// Closes the sessions of the audience, on every node, rather than
    /// sending them a message (Socket.IO's `disconnectSockets`): a kick of
    /// every tab of a user, say, where each session joins a group of its
    /// user's. Each gets `c[code,"reason"]` after what was sent to it
    /// before, and [`Session::on_close`] runs with
    /// [`CloseCause::Application`](crate::CloseCause::Application), as if it
    /// had called [`SessionContext::close`](crate::SessionContext::close)
    /// (whose docs say which codes a client may get). The audience is
    /// everyone unless [`group`](Self::group) or [`ids`](Self::ids) narrow
    /// it; the manager answers how many sessions of this node it closes.
    /// A session still opening (an HTTP session listed before its first
    /// request reached it) is counted, and opens, with `on_open`, before
    /// it closes, as with anything sent to it then; one that had more than
    /// the 4,096 messages such a session keeps closes with 3008 instead.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use actix::prelude::*;
    /// # use actix_sockjs::{Broadcast, Session, SessionContext, SessionManager};
    /// # struct S;
    /// # impl Actor for S { type Context = SessionContext<Self>; }
    /// # impl Session for S { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
    /// # async fn f(manager: Addr<SessionManager<S>>) -> Result<(), MailboxError> {
    /// // Every tab of ann's, on every node: each session joined "user:<name>".
    /// manager.send(Broadcast::text("an admin closed your sessions").group("user:ann")).await?;
    /// let here = manager.send(Broadcast::close(4003, "Kicked").group("user:ann")).await?;
    /// log::info!("closed {here} of ann's sessions on this node");
    /// # Ok(())
    /// # }
    /// ```
    pub fn close(code: u16, reason: impl Into<String>) -> Self {
        Self::of(close_payload(code, reason.into()))
    }

    /// Only to the members of `group` (see [`SessionContext::join`](crate::SessionContext::join)).
    ///
    /// A broadcast has one audience: everyone, a group, or a list of ids.
    /// `group` and [`ids`](Self::ids) each set it, and the later call
    /// replaces the earlier; [`except`](Self::except) and
    /// [`except_groups`](Self::except_groups) apply to any.
    ///
    /// # Examples
    ///
    /// ```
    /// let news = actix_sockjs::Broadcast::text("goal!").group("match-42");
    /// ```
    pub fn group(mut self, group: impl AsRef<str>) -> Self {
        self.target = Audience::Group(Arc::from(group.as_ref()));
        self
    }

    /// Only to the sessions with these ids (for each id, the HTTP session
    /// and the newest open WebSocket session with it). Replaces a
    /// [`group`](Self::group) set before. With a relay, the ids with no
    /// open session on this node are looked for on the others.
    ///
    /// # Examples
    ///
    /// ```
    /// let pair = actix_sockjs::Broadcast::text("your turn").ids(["a1", "b2"]);
    /// // `Debug` shows the sessions by their tags, as log lines do.
    /// let listed = actix_sockjs::Broadcast::text("hi").ids(["ann-tab"]).except(["bob-tab"]);
    /// let shown = format!("{listed:?}");
    /// assert!(!shown.contains("ann-tab") && !shown.contains("bob-tab"));
    /// ```
    pub fn ids<I, S>(mut self, list: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.target = Audience::Ids(names(list));
        self
    }

    /// Not to the sessions with these ids (the sender, say).
    ///
    /// # Examples
    ///
    /// ```
    /// let others = actix_sockjs::Broadcast::text("bob joined").group("lobby").except(["bob-session"]);
    /// ```
    pub fn except<I, S>(mut self, list: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.except = names(list);
        self
    }

    /// Not to the members of these groups, on every node (Socket.IO's
    /// `except(room)`): every tab of the sender's user, say, where each
    /// session joins a group of its user's. A session in the audience and
    /// in one of these groups does not get it; applies to any audience,
    /// with [`except`](Self::except) or without.
    ///
    /// # Examples
    ///
    /// ```
    /// // Ann types in the lobby: everyone there sees it but ann's own tabs.
    /// let typing = actix_sockjs::Broadcast::text(r#"{"typing":"ann"}"#)
    ///     .group("lobby")
    ///     .except_groups(["user:ann"]);
    /// ```
    pub fn except_groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.except_groups = names(groups);
        self
    }
}

impl<A: Session> crate::SessionContext<A> {
    /// Sends a [`Broadcast`] through this session's manager, in order with
    /// this session's own output: what the session sends or closes after
    /// this call reaches its client after its own copy of the broadcast
    /// (when it is in the audience), as writes to each connection of a
    /// room are in sockjs-node.
    ///
    /// A `Broadcast` sent to the manager's address is fanned out later, on
    /// the manager's thread: a [`send`](Self::send) right after it reaches
    /// this session's client first, and a [`close`](Self::close) right
    /// after it drops this session's copy. This method sends the broadcast
    /// through the queue that also carries [`join`](Self::join) and
    /// [`leave`](Self::leave) (a join before it counts), and holds what the
    /// session sends, closes or stops after it until the manager has fanned
    /// it out (a round trip to the manager's thread), then lets it go in
    /// order: after two broadcasts, what came between them goes after the
    /// first copy, the rest after the second. Other sessions get it as any
    /// broadcast.
    ///
    /// A held close counts at once: [`is_open`](Self::is_open) is `false`,
    /// [`state`](Self::state) is `Closing`, and client messages after it
    /// are dropped; [`Session::on_close`](crate::Session::on_close) runs
    /// when it goes out. Up to
    /// [`Config::max_queue_bytes`](crate::Config::max_queue_bytes) is held;
    /// beyond, the session closes with 3008, as an overflowing queue does.
    /// While the actor waits on a future of its own (`ctx.wait`, an
    /// `AtomicResponse`), the manager's answer waits too, and so does what
    /// the session holds.
    ///
    /// It is ordered with this session's own [`join`](Self::join) and
    /// [`leave`](Self::leave), and with other sessions' `ctx.broadcast`s
    /// (one queue, in the order of the calls, whatever their worker), not
    /// with messages sent to the manager's address ([`Join`](crate::Join),
    /// [`DeliverGroup`](crate::DeliverGroup)): await the manager's answer
    /// to those before broadcasting where it matters.
    ///
    /// It answers no count (send the `Broadcast` to the manager's address
    /// for that). With a relay it reaches other nodes too. A
    /// [`Shutdown`](crate::Shutdown) fans out the broadcasts sessions sent
    /// before it, then closes them after what they hold. A
    /// [`Broadcast::close`] that reaches this session (its own, or one
    /// fanned out before it) closes it as it comes, and what it holds is
    /// dropped, as anything sent after a close is.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::Actor;
    /// # use actix_sockjs::{Broadcast, Session, SessionContext};
    /// # struct Member;
    /// # impl Actor for Member { type Context = SessionContext<Self>; }
    /// impl Session for Member {
    ///     fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
    ///         ctx.join("lobby");
    ///     }
    ///
    ///     fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
    ///         if msg == "/quit" {
    ///             // Everyone in the lobby, this client included, reads this
    ///             // line; this client reads it before the close.
    ///             ctx.broadcast(Broadcast::text("someone left").group("lobby"));
    ///             ctx.close(4000, "Bye");
    ///         } else {
    ///             ctx.broadcast(Broadcast::text(msg).group("lobby"));
    ///             ctx.send("sent");
    ///         }
    ///     }
    /// }
    /// ```
    pub fn broadcast(&mut self, broadcast: Broadcast) {
        self.broadcast_fenced(Box::new(broadcast));
    }
}

impl<A: Session> Handler<Broadcast> for SessionManager<A> {
    type Result = usize;

    fn handle(&mut self, msg: Broadcast, _: &mut Context<Self>) -> usize {
        self.read_notes();
        self.broadcast(msg)
    }
}

impl<A: Session> SessionManager<A> {
    /// A broadcast a session sent through its notes
    /// ([`SessionContext::broadcast`]): fanned out, then the session's
    /// fence, after its own copy.
    pub(super) fn session_broadcast(&mut self, serial: u64, broadcast: Box<dyn std::any::Any + Send>) {
        match broadcast.downcast::<Broadcast>() {
            Ok(broadcast) => {
                self.broadcast(*broadcast);
            }
            // Only `SessionContext::broadcast` makes these.
            Err(_) => log::error!("sockjs: a session's broadcast of an unknown type dropped"),
        }
        if let Some(entry) = self.sessions.get(&serial) {
            let _ = entry.tx.send(Command::Fence);
        }
    }

    /// Fans `msg` out on this node and passes it to the relay; answers how
    /// many sessions of this node it was queued for.
    fn broadcast(&mut self, msg: Broadcast) -> usize {
        let Broadcast { payload, target, except, except_groups } = msg;
        let reached = self.fan_out(&payload, &target, &except, &except_groups);
        if self.relay.is_none() {
            return reached;
        }
        // Other nodes get what this one could not deliver: a list's ids
        // that have no session here (less those left out: the relay
        // carries no `except` with a list); everything else as it is.
        let audience = match target {
            Audience::Ids(ids) => {
                let elsewhere: Box<[Arc<str>]> = ids
                    .iter()
                    .filter(|id| self.serials_of(id).next().is_none() && !except.contains(id))
                    .cloned()
                    .collect();
                if elsewhere.is_empty() {
                    return reached;
                }
                Audience::Ids(elsewhere)
            }
            audience => audience,
        };
        self.relay(RelayMessage { audience, except, except_groups, payload });
        reached
    }
}

/// Whether a message sent to one session by id reached it.
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{Session, SessionContext, SessionManager};
/// # struct S;
/// # impl Actor for S { type Context = SessionContext<Self>; }
/// # impl Session for S { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// use actix_sockjs::{Delivery, SendTo};
///
/// /// Whether the mail surely reached a session of the user's.
/// async fn notify(manager: &Addr<SessionManager<S>>, id: &str) -> bool {
///     match manager.send(SendTo::text(id, "you have mail")).await {
///         Ok(Delivery::Delivered) => true,
///         // Another node holds the session, or none does: keep the mail
///         // until the client acknowledges it.
///         Ok(Delivery::Forwarded) => false,
///         // Gone, or never there: keep the mail for the next visit.
///         Ok(_) | Err(_) => false,
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// A session of this node that has not closed has it in its queue.
    Delivered,
    /// No open session of this node has the id; the message went to the
    /// other nodes (the `redis` feature), and the one holding the session,
    /// if any, delivers it.
    Forwarded,
    /// No open session has the id (none on this node, and no other node to
    /// ask). A session that has closed counts as none, though an HTTP one
    /// stays listed until its disconnect delay ends.
    Unknown,
}

/// Whom [`SendTo`], [`Deliver`], [`Join`], [`Leave`] and [`GetSession`]
/// are for: a session id (`&str`,
/// `String`, anything that is `AsRef<str>`), for the sessions that use it
/// (on any node, for text), or a [`SessionKey`] (or a reference to one),
/// for that session only. Sealed: those are the only kinds.
///
/// # Examples
///
/// ```
/// use actix_sockjs::{SendTo, SessionTarget};
///
/// fn notice(to: impl SessionTarget) -> SendTo {
///     SendTo::text(to, "maintenance at noon")
/// }
/// let by_id = notice("a1b2c3");
/// let by_owned_id = notice(String::from("a1b2c3"));
/// ```
pub trait SessionTarget: sealed::Target {}

impl<T: AsRef<str>> SessionTarget for T {}
impl SessionTarget for SessionKey {}
impl SessionTarget for &SessionKey {}

mod sealed {
    use std::sync::Arc;

    use crate::SessionKey;

    /// A session id, or one session's key.
    #[derive(Clone)]
    pub enum To {
        Id(Arc<str>),
        Key(u64),
    }

    impl std::fmt::Debug for To {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Self::Id(id) => write!(f, "{}", crate::SessionTag::of(id)),
                Self::Key(serial) => write!(f, "{:?}", SessionKey(*serial)),
            }
        }
    }

    /// What makes a [`SessionTarget`](super::SessionTarget); out of
    /// reach, so that no other type can be one.
    pub trait Target {
        /// Whom it names; only this crate can ask (it alone makes a
        /// [`Token`]).
        fn to(self, _: Token) -> To;
    }

    /// What only this crate can make.
    #[derive(Debug)]
    pub struct Token(());

    impl Token {
        pub(crate) fn new() -> Self {
            Self(())
        }
    }

    impl<T: AsRef<str>> Target for T {
        fn to(self, _: Token) -> To {
            To::Id(Arc::from(self.as_ref()))
        }
    }

    impl Target for SessionKey {
        fn to(self, _: Token) -> To {
            To::Key(self.0)
        }
    }

    impl Target for &SessionKey {
        fn to(self, _: Token) -> To {
            To::Key(self.0)
        }
    }
}

use sealed::{To, Token};

/// Sends one message to the session with this id, wherever it is, or to
/// the session with this [`SessionKey`]; answers a [`Delivery`].
///
/// On this node the message goes to the open HTTP session with that id
/// and to the newest open WebSocket session that used it (a raw
/// WebSocket's id is the one
/// [`SessionContext::session_id`](crate::SessionContext::session_id)
/// gives, `raw.`, 8 hex digits of the process and a number). When no open session here has the id and
/// the manager is bridged to other nodes, the message goes to them.
///
/// Session ids are chosen by clients, and two WebSocket clients may choose
/// the same one: an id reaches its HTTP session and the newest open
/// WebSocket that used it, not a user. To answer exactly the session that asked, send to its
/// [`SessionKey`] ([`SessionContext::key`](crate::SessionContext::key));
/// to reach a user wherever they are connected, see the README's
/// "Reaching a user, not a session" (a group per user).
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{Delivery, SendTo, Session, SessionContext, SessionManager};
/// # struct Echo;
/// # impl Actor for Echo { type Context = SessionContext<Self>; }
/// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// # async fn f(manager: Addr<SessionManager<Echo>>) {
/// match manager.send(SendTo::text("a1b2c3", "only for you")).await {
///     Ok(Delivery::Unknown) => log::info!("no such session"),
///     Ok(_) => {}
///     Err(e) => log::warn!("manager gone: {e}"),
/// }
/// # }
/// ```
#[must_use = "a message does nothing until it is sent to the manager"]
#[derive(Clone, Message)]
#[rtype(result = "Delivery")]
pub struct SendTo {
    to: To,
    payload: Arc<Shared>,
}

impl std::fmt::Debug for SendTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendTo").field("to", &self.to).field("payload", &self.payload).finish()
    }
}

impl SendTo {
    /// A text message for the session `to`: an id, or a [`SessionKey`].
    ///
    /// # Examples
    ///
    /// ```
    /// let private = actix_sockjs::SendTo::text("ann-tab", "psst");
    /// // `Debug` shows the session by its tag, as log lines do.
    /// assert!(!format!("{private:?}").contains("ann-tab"));
    /// ```
    pub fn text(to: impl SessionTarget, msg: impl Into<String>) -> Self {
        Self { to: to.to(Token::new()), payload: payload(msg.into()) }
    }

    /// A value as JSON for the session `to`: an id, or a [`SessionKey`].
    ///
    /// # Errors
    ///
    /// The value's `Serialize` implementation failed.
    ///
    /// # Examples
    ///
    /// ```
    /// let hint = actix_sockjs::SendTo::json("a1b2c3", &serde_json::json!({ "hint": 1 }));
    /// assert!(hint.is_ok());
    /// ```
    pub fn json<T: serde::Serialize + ?Sized>(
        to: impl SessionTarget,
        value: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self::text(to, serde_json::to_string(value)?))
    }
}

impl<A: Session> Handler<SendTo> for SessionManager<A> {
    type Result = MessageResult<SendTo>;

    fn handle(&mut self, msg: SendTo, _: &mut Context<Self>) -> Self::Result {
        self.read_notes();
        let here: Vec<u64> = self.named(&msg.to).collect();
        let delivery = match msg.to {
            _ if self.deliver_to(here, &msg.payload) => Delivery::Delivered,
            // A key names a session of this node only.
            To::Id(id)
                if self.relay(RelayMessage {
                    audience: Audience::Session(id.clone()),
                    except: Box::default(),
                    except_groups: Box::default(),
                    payload: msg.payload,
                }) =>
            {
                Delivery::Forwarded
            }
            to => {
                log::debug!("sockjs: message for unknown session {to:?}");
                Delivery::Unknown
            }
        };
        self.metrics.sent_to(delivery);
        MessageResult(delivery)
    }
}

/// Hands one of the application's own messages to the session actor with
/// this id (or this [`SessionKey`]), whatever its transport; answers
/// whether an open session of this node took it ([`Delivery::Delivered`])
/// or none has the id ([`Delivery::Unknown`]; typed messages do not cross
/// nodes). By id, an HTTP session comes before a WebSocket that used the
/// id; by key, only that session.
///
/// The message joins the session's queue, as [`SendTo`] and [`Broadcast`]
/// text does: what the manager gets after it reaches the session after it,
/// and the handler runs before what follows it in the queue (a handler
/// that waits, with `ctx.wait` or an `AtomicResponse`, holds back what
/// follows until it is done, as actix's mailbox does). A session whose
/// first request is still on its way keeps the message until it has
/// opened: the handler runs after `on_open`. (That is an HTTP session in
/// the moment between the manager listing it and its request reaching it,
/// about a round trip between two threads. It keeps 4,096 messages, text
/// and typed; if more come, it drops them, handles those it kept, and,
/// if it is still open, closes as a session whose queue overflowed does:
/// its client gets `c[3008,"Outgoing queue overflow"]` after the kept
/// ones (those within [`Config::max_queue_bytes`](crate::Config::max_queue_bytes)),
/// and `on_close` runs with [`CloseCause::Overflow`](crate::CloseCause::Overflow).)
/// A session that has closed
/// but not yet stopped (an HTTP session answers its client's late requests
/// for its disconnect delay) still runs the handler, and drops what it
/// sends: [`SessionContext::is_open`](crate::SessionContext::is_open)
/// tells. `Delivered` says the message is queued, not that the handler has
/// run; the handler's result is dropped (use `#[rtype(result = "()")]`),
/// so a reply travels in the message (a oneshot sender, say). A message
/// sent to the actor's own address ([`GetSession`](crate::GetSession))
/// goes through actix's mailbox instead, which keeps no order with the
/// queue.
///
/// # Examples
///
/// ```no_run
/// use actix::prelude::*;
/// use actix_sockjs::{Deliver, Delivery, Session, SessionContext, SessionManager};
///
/// #[derive(Message)]
/// #[rtype(result = "()")]
/// struct Kick(String);
///
/// struct Player;
/// impl Actor for Player {
///     type Context = SessionContext<Self>;
/// }
/// impl Session for Player {
///     fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
/// }
/// impl Handler<Kick> for Player {
///     type Result = ();
///     fn handle(&mut self, Kick(why): Kick, ctx: &mut SessionContext<Self>) {
///         ctx.close(4000, why);
///     }
/// }
///
/// # async fn f(manager: Addr<SessionManager<Player>>) {
/// match manager.send(Deliver::new("a1b2c3", Kick("cheating".into()))).await {
///     Ok(Delivery::Delivered) => log::info!("a1b2c3 kicked"),
///     // Typed messages do not cross nodes: never `Forwarded`.
///     Ok(_) => log::info!("no session a1b2c3 on this node"),
///     Err(_) => log::error!("the session manager has stopped"),
/// }
/// # }
/// ```
#[must_use = "a message does nothing until it is sent to the manager"]
pub struct Deliver<M> {
    to: To,
    msg: M,
}

impl<M> std::fmt::Debug for Deliver<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliver").field("to", &self.to).finish_non_exhaustive()
    }
}

impl<M> Deliver<M> {
    /// `msg` for the session `to`: an id, or a [`SessionKey`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(actix::Message)] #[rtype(result = "()")] struct Ping;
    /// let ping = actix_sockjs::Deliver::new("a1b2c3", Ping);
    /// ```
    pub fn new(to: impl SessionTarget, msg: M) -> Self {
        Self { to: to.to(Token::new()), msg }
    }
}

impl<M> Message for Deliver<M> {
    type Result = Delivery;
}

impl<A, M> Handler<Deliver<M>> for SessionManager<A>
where
    A: Session + Handler<M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    type Result = MessageResult<Deliver<M>>;

    fn handle(&mut self, Deliver { to, msg }: Deliver<M>, _: &mut Context<Self>) -> Self::Result {
        self.read_notes();
        let Some(entry) = self.named(&to).find_map(|serial| self.sessions.get(&serial)) else {
            self.metrics.sent_to(Delivery::Unknown);
            return MessageResult(Delivery::Unknown);
        };
        MessageResult(self.deliver_typed(&entry.tx, msg))
    }
}

impl<A: Session> SessionManager<A> {
    /// The open sessions of this node that `to` names: by id, its HTTP
    /// session, then the newest open WebSocket that used it; by key, that
    /// session.
    fn named<'a>(&'a self, to: &'a To) -> impl Iterator<Item = u64> + 'a {
        let (id, key) = match to {
            To::Id(id) => (Some(id), None),
            To::Key(serial) => (None, Some(*serial)),
        };
        id.into_iter().flat_map(|id| self.serials_of(id)).chain(key.filter(|serial| self.live(*serial)))
    }

    /// Hands the application's message `msg` to the session behind `tx`
    /// and counts the outcome: through the session's command queue, where
    /// text sent to it later queues behind it, and its handler runs in the
    /// message's turn (an actix address would have its own queue, which
    /// text overtakes).
    fn deliver_typed<M>(&self, tx: &CommandTx, msg: M) -> Delivery
    where
        A: Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        let typed = TypedMessage::new::<A, M>(msg);
        let delivery = match tx.send(Command::Typed(Box::new(typed))) {
            Ok(()) => Delivery::Delivered,
            Err(_) => Delivery::Unknown,
        };
        self.metrics.sent_to(delivery);
        delivery
    }
}

/// A message of the application's own for every session of a group on
/// this node, delivered as [`Deliver`] delivers one: through each
/// session's command queue, so that its handler runs after what was sent
/// to the session before (a kick comes after the messages queued ahead of
/// it). Answers how many sessions it was queued for. Closed sessions get
/// none; one that joined and has not opened yet runs it after `on_open`.
///
/// To act on exactly a group's sessions, every session of one user, say
/// (each joined `user:<name>` at open), this is the way: a group's
/// members are sessions, where ids are not unique (two WebSockets may
/// share one, as the protocol lets them), so that [`GroupMembers`] then
/// [`Deliver`] by id could reach another user's session that has one of
/// the ids. The message is cloned for each session. It does not cross
/// nodes (a relay carries text broadcasts only).
///
/// # Examples
///
/// ```no_run
/// use actix::prelude::*;
/// use actix_sockjs::{DeliverGroup, Session, SessionContext, SessionManager};
///
/// #[derive(Clone, Message)]
/// #[rtype(result = "()")]
/// struct Kick(String);
///
/// struct Member;
/// impl Actor for Member {
///     type Context = SessionContext<Self>;
/// }
/// impl Session for Member {
///     fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
/// }
/// impl Handler<Kick> for Member {
///     type Result = ();
///     fn handle(&mut self, Kick(why): Kick, ctx: &mut SessionContext<Self>) {
///         ctx.close(4003, why);
///     }
/// }
///
/// # async fn f(manager: Addr<SessionManager<Member>>) {
/// // Every session of ann's, on this node.
/// let kicked = manager.send(DeliverGroup::new("user:ann", Kick("spam".into()))).await.unwrap_or(0);
/// log::info!("ann's {kicked} sessions kicked");
/// # }
/// ```
#[must_use = "a message does nothing until it is sent to the manager"]
pub struct DeliverGroup<M> {
    group: Arc<str>,
    msg: M,
}

impl<M> std::fmt::Debug for DeliverGroup<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliverGroup").field("group", &self.group).finish_non_exhaustive()
    }
}

impl<M: Clone> DeliverGroup<M> {
    /// `msg` for every session of `group`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, actix::Message)] #[rtype(result = "()")] struct Ping;
    /// let ping = actix_sockjs::DeliverGroup::new("lobby", Ping);
    /// ```
    pub fn new(group: impl AsRef<str>, msg: M) -> Self {
        Self { group: Arc::from(group.as_ref()), msg }
    }
}

impl<M> Message for DeliverGroup<M> {
    type Result = usize;
}

impl<A, M> Handler<DeliverGroup<M>> for SessionManager<A>
where
    A: Session + Handler<M>,
    M: Message + Clone + Send + 'static,
    M::Result: Send,
{
    type Result = MessageResult<DeliverGroup<M>>;

    fn handle(
        &mut self,
        DeliverGroup { group, msg }: DeliverGroup<M>,
        _: &mut Context<Self>,
    ) -> Self::Result {
        self.read_notes();
        let mut queued = 0;
        for serial in self.groups.get(&group).into_iter().flatten() {
            let Some(entry) = self.sessions.get(serial).filter(|e| e.live()) else { continue };
            queued += usize::from(self.deliver_typed(&entry.tx, msg.clone()) == Delivery::Delivered);
        }
        MessageResult(queued)
    }
}

/// Puts the session with this id (or this [`SessionKey`]) in a group,
/// from outside the session; answers `false` if no open session of this
/// node has it.
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{Join, Session, SessionContext, SessionManager};
/// # struct Echo;
/// # impl Actor for Echo { type Context = SessionContext<Self>; }
/// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// # async fn f(manager: Addr<SessionManager<Echo>>) {
/// let joined = manager.send(Join::new("a1b2c3", "admins")).await.unwrap_or(false);
/// # }
/// ```
#[must_use = "a message does nothing until it is sent to the manager"]
#[derive(Clone, Message)]
#[rtype(result = "bool")]
pub struct Join {
    to: To,
    group: Arc<str>,
}

impl std::fmt::Debug for Join {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_membership(f, "Join", &self.to, &self.group)
    }
}

/// The `Debug` of [`Join`] and [`Leave`]: the session by its tag.
fn debug_membership(f: &mut std::fmt::Formatter<'_>, name: &str, to: &To, group: &str) -> std::fmt::Result {
    f.debug_struct(name).field("to", to).field("group", &group).finish()
}

impl Join {
    /// The session `to` (an id, or a [`SessionKey`]) joins `group`.
    ///
    /// # Examples
    ///
    /// ```
    /// let join = actix_sockjs::Join::new("a1b2c3", "admins");
    /// ```
    pub fn new(to: impl SessionTarget, group: impl AsRef<str>) -> Self {
        Self { to: to.to(Token::new()), group: Arc::from(group.as_ref()) }
    }
}

impl<A: Session> Handler<Join> for SessionManager<A> {
    type Result = bool;

    fn handle(&mut self, msg: Join, _: &mut Context<Self>) -> bool {
        self.read_notes();
        let serials: Vec<u64> = self.named(&msg.to).collect();
        // Every session with the id (an HTTP one and a WebSocket one may share it).
        let mut found = false;
        for serial in serials {
            found |= self.join(serial, msg.group.clone());
        }
        found
    }
}

/// Takes the session with this id (or this [`SessionKey`]) out of a
/// group, from outside the session; answers `false` if no open session of
/// this node has it.
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{Leave, Session, SessionContext, SessionManager};
/// # struct Echo;
/// # impl Actor for Echo { type Context = SessionContext<Self>; }
/// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// # fn f(manager: Addr<SessionManager<Echo>>) {
/// manager.do_send(Leave::new("a1b2c3", "admins"));
/// # }
/// ```
#[must_use = "a message does nothing until it is sent to the manager"]
#[derive(Clone, Message)]
#[rtype(result = "bool")]
pub struct Leave {
    to: To,
    group: Arc<str>,
}

impl std::fmt::Debug for Leave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_membership(f, "Leave", &self.to, &self.group)
    }
}

impl Leave {
    /// The session `to` (an id, or a [`SessionKey`]) leaves `group`.
    ///
    /// # Examples
    ///
    /// ```
    /// let leave = actix_sockjs::Leave::new("a1b2c3", "admins");
    /// ```
    pub fn new(to: impl SessionTarget, group: impl AsRef<str>) -> Self {
        Self { to: to.to(Token::new()), group: Arc::from(group.as_ref()) }
    }
}

impl<A: Session> Handler<Leave> for SessionManager<A> {
    type Result = bool;

    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) -> bool {
        self.read_notes();
        let serials: Vec<u64> = self.named(&msg.to).collect();
        let mut found = false;
        for serial in serials {
            found |= self.leave(serial, &msg.group);
        }
        found
    }
}

/// One session as [`ListSessions`] describes it.
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{Session, SessionContext, SessionManager};
/// # struct S;
/// # impl Actor for S { type Context = SessionContext<Self>; }
/// # impl Session for S { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// use actix_sockjs::{ListSessions, SessionState};
///
/// /// The open sessions of one room, with where they come from.
/// async fn who(manager: &Addr<SessionManager<S>>, room: &str) -> Vec<String> {
///     let sessions = manager.send(ListSessions).await.unwrap_or_default();
///     sessions
///         .into_iter()
///         .filter(|s| s.state == SessionState::Open && s.groups.iter().any(|g| g == room))
///         .map(|s| format!("{:?} ({:?}, {})", s.tag, s.client_ip, s.transport.name()))
///         .collect()
/// }
///
/// /// Tells the sessions that came from `ip`, each exactly (by its key: a
/// /// session that took one's id since is left alone).
/// async fn tell_from(manager: &Addr<SessionManager<S>>, ip: std::net::IpAddr) {
///     for s in manager.send(ListSessions).await.unwrap_or_default() {
///         if s.client_ip == Some(ip) && s.state == SessionState::Open {
///             let _ = manager.send(actix_sockjs::SendTo::text(s.key, "maintenance at noon")).await;
///         }
///     }
/// }
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The session id: the client's, from the URL, which on HTTP transports
    /// is the only credential of the session's requests; show
    /// [`tag`](Self::tag) where others see it (logs, admin pages).
    pub id: String,
    /// The session itself, for [`SendTo`], [`Deliver`], [`Join`] and
    /// [`Leave`]: unlike the id, it never reaches another session (a
    /// WebSocket that reuses the id, or a new session under it).
    pub key: SessionKey,
    /// The id's tag ([`SessionTag::of`]), to show in its place.
    pub tag: SessionTag,
    /// The transport that opened it.
    pub transport: Transport,
    /// Where it is in its life.
    pub state: SessionState,
    /// When the manager admitted it, to the millisecond.
    pub opened_at: SystemTime,
    /// The client's address (the peer's, or a trusted proxy's report).
    pub client_ip: Option<IpAddr>,
    /// Its groups, in the order it joined them.
    pub groups: Vec<String>,
}

/// Shows the session by its tag, never its id (a credential), as every
/// `Debug` and log line of the crate does: `log::info!("{info:?}")` is safe.
impl fmt::Debug for SessionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionInfo")
            .field("tag", &self.tag)
            .field("key", &self.key)
            .field("transport", &self.transport)
            .field("state", &self.state)
            .field("opened_at", &self.opened_at)
            .field("client_ip", &self.client_ip)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// Lists the sessions of this node, ordered by id: open ones, ones still
/// opening, and closed HTTP sessions that answer their client's late
/// requests until the disconnect delay ends ([`SessionState::Closed`], in no
/// group). Filter on [`SessionInfo::state`] for the open ones.
///
/// A [`SessionInfo::id`] is the key to its HTTP session, as
/// [`GroupMembers`] says: show and log [`SessionInfo::tag`] instead.
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{ListSessions, Session, SessionContext, SessionManager};
/// # struct Echo;
/// # impl Actor for Echo { type Context = SessionContext<Self>; }
/// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// # async fn f(manager: Addr<SessionManager<Echo>>) {
/// for s in manager.send(ListSessions).await.unwrap_or_default() {
///     println!("{} {} {:?} since {:?} from {:?} in {:?}", s.tag, s.transport, s.state, s.opened_at, s.client_ip, s.groups);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Vec<SessionInfo>")]
pub struct ListSessions;

impl<A: Session> Handler<ListSessions> for SessionManager<A> {
    type Result = MessageResult<ListSessions>;

    fn handle(&mut self, _: ListSessions, _: &mut Context<Self>) -> Self::Result {
        self.read_notes();
        let mut list: Vec<SessionInfo> = self
            .sessions
            .iter()
            .map(|(serial, e)| SessionInfo {
                id: e.id.to_string(),
                key: SessionKey(*serial),
                tag: SessionTag::of(&e.id),
                transport: e.transport,
                state: e.phase,
                opened_at: e.opened_at(),
                client_ip: e.client,
                groups: e.groups.iter().map(ToString::to_string).collect(),
            })
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        MessageResult(list)
    }
}

/// The ids of a group's members on this node, sorted.
///
/// An HTTP session's id is the key to it (README, "Security"): whoever
/// learns it can read the session's messages. Use these ids to reach the
/// sessions; do not send them to clients (show names of your own, or a
/// [`SessionTag`]).
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{GroupMembers, Session, SessionContext, SessionManager};
/// # struct Echo;
/// # impl Actor for Echo { type Context = SessionContext<Self>; }
/// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// # async fn f(manager: Addr<SessionManager<Echo>>) {
/// let who = manager.send(GroupMembers::new("lobby")).await.unwrap_or_default();
/// # }
/// ```
#[must_use = "a message does nothing until it is sent to the manager"]
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<String>")]
pub struct GroupMembers {
    group: Arc<str>,
}

impl GroupMembers {
    /// The members of `group`.
    ///
    /// # Examples
    ///
    /// ```
    /// let ask = actix_sockjs::GroupMembers::new("lobby");
    /// ```
    pub fn new(group: impl AsRef<str>) -> Self {
        Self { group: Arc::from(group.as_ref()) }
    }
}

impl<A: Session> Handler<GroupMembers> for SessionManager<A> {
    type Result = MessageResult<GroupMembers>;

    fn handle(&mut self, msg: GroupMembers, _: &mut Context<Self>) -> Self::Result {
        self.read_notes();
        let mut ids: Vec<String> = self
            .groups
            .get(&msg.group)
            .into_iter()
            .flatten()
            .filter_map(|serial| self.sessions.get(serial))
            .map(|e| e.id.to_string())
            .collect();
        ids.sort_unstable();
        MessageResult(ids)
    }
}

/// Every group of this node with its number of members, sorted by name.
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{GroupSizes, Session, SessionContext, SessionManager};
/// # struct Echo;
/// # impl Actor for Echo { type Context = SessionContext<Self>; }
/// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// # async fn f(manager: Addr<SessionManager<Echo>>) {
/// for (group, members) in manager.send(GroupSizes).await.unwrap_or_default() {
///     println!("{group}: {members}");
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Vec<(String, usize)>")]
pub struct GroupSizes;

impl<A: Session> Handler<GroupSizes> for SessionManager<A> {
    type Result = MessageResult<GroupSizes>;

    fn handle(&mut self, _: GroupSizes, _: &mut Context<Self>) -> Self::Result {
        self.read_notes();
        let mut sizes: Vec<(String, usize)> =
            self.groups.iter().map(|(g, m)| (g.to_string(), m.len())).collect();
        sizes.sort_unstable();
        MessageResult(sizes)
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
        // Broadcasts that sessions sent before it go out first (and their
        // fences: `SessionContext::broadcast`).
        self.read_notes();
        self.close_arrivals();
        if !self.shutting_down {
            let open = self.sessions.values().filter(|e| e.live()).count();
            // A manager learns its endpoint at its first request.
            let endpoint = match self.metrics.endpoint.as_str() {
                "" => "an endpoint with no request yet",
                mounted => mounted,
            };
            log::info!("sockjs: closing {open} sessions of {endpoint} for shutdown");
        }
        self.shutting_down = true;
        // Sessions whose handler panicked stay listed until their delay
        // ends, as closed ones do: the drain is there for their clients'
        // next poll too, which hears 1011 rather than 503 (an audit).
        self.forget_failed();
        for entry in self.sessions.values() {
            let _ = entry.tx.send(Command::Shutdown);
        }
    }
}

/// The sessions the manager tracks, by phase.
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{Session, SessionContext, SessionManager};
/// # struct S;
/// # impl Actor for S { type Context = SessionContext<Self>; }
/// # impl Session for S { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// use actix_sockjs::CountSessions;
///
/// async fn gauge(manager: &Addr<SessionManager<S>>) -> String {
///     match manager.send(CountSessions).await {
///         Ok(counts) => format!("{} open, {} opening, {} closing", counts.open, counts.opening, counts.closing),
///         Err(_) => "manager gone".to_owned(),
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionCounts {
    /// Admitted, not yet answered with their open frame. A WebSocket's
    /// session opens in the request that admits it, unless its actor waits
    /// on a future from `started` (`ctx.wait`), which holds the socket back.
    pub opening: usize,
    /// Open.
    pub open: usize,
    /// Closed ([`SessionState::Closing`] or [`SessionState::Closed`]), and
    /// still answering late requests with their close frame (an HTTP
    /// session, for the disconnect delay). They take no messages and are in
    /// no group.
    pub closing: usize,
}

impl SessionCounts {
    /// Every session the manager tracks, closed ones included (`open` is
    /// the number that takes messages).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(actix_sockjs::SessionCounts::default().total(), 0);
    /// ```
    pub fn total(&self) -> usize {
        self.opening + self.open + self.closing
    }
}

/// Asks for the number of sessions the manager tracks, by phase.
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
/// if let Ok(counts) = manager.send(actix_sockjs::CountSessions).await {
///     log::info!("{} open, {} closing", counts.open, counts.closing);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "SessionCounts")]
pub struct CountSessions;

impl<A: Session> Handler<CountSessions> for SessionManager<A> {
    type Result = MessageResult<CountSessions>;

    fn handle(&mut self, _: CountSessions, _: &mut Context<Self>) -> Self::Result {
        self.read_notes();
        let mut counts = SessionCounts::default();
        for entry in self.sessions.values() {
            match entry.phase {
                SessionState::Open => counts.open += 1,
                SessionState::New => counts.opening += 1,
                _ => counts.closing += 1,
            }
        }
        MessageResult(counts)
    }
}

/// Looks up an open session by its id (or its [`SessionKey`]), whatever
/// its transport; answers the session actor's address (`None` if no open
/// session of this node has it).
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
#[must_use = "a message does nothing until it is sent to the manager"]
#[derive(Message)]
#[rtype(result = "Option<Addr<A>>")]
pub struct GetSession<A: Session> {
    to: To,
    _actor: std::marker::PhantomData<fn() -> A>,
}

// By hand: derived, they would ask the session actor for `Debug` and
// `Clone` too.
impl<A: Session> std::fmt::Debug for GetSession<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetSession").field("to", &self.to).finish()
    }
}

impl<A: Session> Clone for GetSession<A> {
    fn clone(&self) -> Self {
        Self { to: self.to.clone(), _actor: std::marker::PhantomData }
    }
}

impl<A: Session> GetSession<A> {
    /// A lookup of the session `to`: an id, or a [`SessionKey`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix::prelude::*;
    /// # use actix_sockjs::{Session, SessionContext};
    /// # struct Echo;
    /// # impl Actor for Echo { type Context = SessionContext<Self>; }
    /// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
    /// let lookup = actix_sockjs::GetSession::<Echo>::new("ann-tab");
    /// // Neither `Debug` nor `Clone` asks anything of the session type.
    /// let again = lookup.clone();
    /// // The id shows as its tag, as in log lines.
    /// assert!(!format!("{again:?}").contains("ann-tab"));
    /// ```
    pub fn new(to: impl SessionTarget) -> Self {
        Self { to: to.to(Token::new()), _actor: std::marker::PhantomData }
    }
}

impl<A: Session> Handler<GetSession<A>> for SessionManager<A> {
    type Result = ResponseFuture<Option<Addr<A>>>;

    fn handle(&mut self, msg: GetSession<A>, _: &mut Context<Self>) -> Self::Result {
        self.read_notes();
        let (reply, answer) = tokio::sync::oneshot::channel();
        let ask = AddressRequest::new(move |addr| {
            let _ = reply.send(addr.downcast::<Addr<A>>().ok().map(|addr| *addr));
        });
        let entry = self.named(&msg.to).find_map(|serial| self.sessions.get(&serial));
        let asked = entry.is_some_and(|entry| entry.tx.send(Command::Address(Box::new(ask))).is_ok());
        Box::pin(async move {
            if asked {
                answer.await.ok().flatten()
            } else {
                None
            }
        })
    }
}

impl<A: Session> Handler<Relayed> for SessionManager<A> {
    type Result = ();

    fn handle(&mut self, Relayed(msg): Relayed, _: &mut Context<Self>) {
        self.read_notes();
        let RelayMessage { audience, except, except_groups, payload } = msg;
        if let Audience::Session(id) = &audience {
            let here: Vec<u64> = self.serials_of(id).collect();
            if !self.deliver_to(here, &payload) {
                log::trace!(
                    "sockjs: a relayed message for {} found no session here",
                    crate::SessionTag::of(id)
                );
            }
            return;
        }
        self.fan_out(&payload, &audience, &except, &except_groups);
    }
}

impl<A: Session> Handler<SetRelay> for SessionManager<A> {
    type Result = ();

    fn handle(&mut self, SetRelay(relay): SetRelay, _: &mut Context<Self>) {
        self.read_notes();
        self.relay = relay;
        // With a relay, a WebSocket session's end wakes the manager, so
        // that the relay hears of a group left without a member here at
        // once (`NotesTx::note`).
        self.notes.set_relayed(self.relay.is_some());
        // A new relay is told of the groups that have members here.
        if let Some(relay) = self.relay.as_mut() {
            for group in self.groups.keys() {
                relay.watch(group);
            }
        }
    }
}

/// Tells a manager the prefix it is mounted at: its metrics' `endpoint` label.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Mounted(pub(crate) String);

impl<A: Session> Handler<Mounted> for SessionManager<A> {
    type Result = ();

    fn handle(&mut self, Mounted(prefix): Mounted, _: &mut Context<Self>) {
        self.metrics = super::ManagerMetrics::new(&prefix);
    }
}

/// Asks for the manager's [`Directory`] and its identity: a worker checks
/// that every worker of an endpoint was given the same manager.
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
    /// The session exists (and is bound to this, if anything).
    Found(u64, CommandTx, Option<Arc<super::Bound>>),
    /// It did not; the caller must start it with this channel and starter
    /// (which unlists it if dropped unstarted).
    Created { serial: u64, tx: CommandTx, rx: CommandRx, starter: Unstarted<A> },
    /// It does not exist and was not to be created.
    Missing,
    /// It does not exist and the caps forbid creating it.
    Refused(Refusal),
    /// Its handler panicked; its receivers get this close frame until its
    /// disconnect delay ends (and it is bound to this, if anything).
    Failed(Option<Arc<super::Bound>>, (u16, Box<str>)),
}

/// Finds the HTTP session with an id, creating an entry for it if `open`
/// says who opens it.
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
        self.read_notes();
        let Acquire { id, open, .. } = msg;
        if let Some(serial) = self.directory.serial(&id) {
            match self.directory.find(&id) {
                Some((serial, tx, bound)) => return MessageResult(Acquired::Found(serial, tx, bound)),
                None => match self.tombstone(serial) {
                    Some(t) => {
                        let close = (t.code, t.reason.clone());
                        return MessageResult(Acquired::Failed(self.directory.bound(&id), close));
                    }
                    None => self.remove(serial),
                },
            }
        }
        let Some(open) = open else {
            return MessageResult(Acquired::Missing);
        };
        let serial = next_serial();
        let (tx, rx) = command_channel();
        if let Err(refusal) = self.admit(serial, id, tx.clone(), false, open) {
            return MessageResult(Acquired::Refused(refusal));
        }
        MessageResult(Acquired::Created { serial, tx, rx, starter: self.unstarted(serial) })
    }
}

/// Registers a WebSocket session; answers the starter.
pub(crate) struct RegisterSocket<A: Session> {
    serial: u64,
    id: Arc<str>,
    tx: CommandTx,
    open: Opening,
    _actor: std::marker::PhantomData<fn() -> A>,
}

impl<A: Session> RegisterSocket<A> {
    pub(crate) fn new(serial: u64, id: Arc<str>, tx: CommandTx, open: Opening) -> Self {
        Self { serial, id, tx, open, _actor: std::marker::PhantomData }
    }
}

impl<A: Session> Message for RegisterSocket<A> {
    type Result = Result<Unstarted<A>, Refusal>;
}

impl<A: Session> Handler<RegisterSocket<A>> for SessionManager<A> {
    type Result = MessageResult<RegisterSocket<A>>;

    fn handle(&mut self, msg: RegisterSocket<A>, _: &mut Context<Self>) -> Self::Result {
        self.read_notes();
        let (serial, admitted) = (msg.serial, self.admit(msg.serial, msg.id, msg.tx, true, msg.open));
        MessageResult(admitted.map(|()| self.unstarted(serial)))
    }
}
