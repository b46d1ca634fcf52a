//! Relays: how a [`SessionManager`](crate::SessionManager) reaches the other
//! nodes of a cluster.
//!
//! A manager delivers every broadcast to its own sessions, then hands it to
//! its relay, if it has one, as a [`RelayMessage`]; a [`SendTo`](crate::SendTo)
//! whose id has no session on this node goes the same way. The relay carries
//! it to the other nodes, whose relays hand it to their managers with
//! [`Relayed`]; each manager delivers it to its own sessions. A relay is
//! installed with [`SetRelay`].
//!
//! `cluster::RedisBridge` (cargo feature
//! `redis`) is one relay. Another broker (NATS, Kafka, a database's
//! notifications) needs only an implementation of [`Relay`] that publishes
//! what [`Relay::publish`] gets and a task that sends [`Relayed`] for what
//! arrives. It carries each message whole: its audience, the ids and the
//! groups it leaves out ([`RelayMessage::except`],
//! [`RelayMessage::except_groups`]), its text, and whether it is a close
//! ([`RelayMessage::close_code`]). What such a relay should
//! guarantee, as the Redis one does:
//!
//! - **order**: messages of one node arrive in the order it published them;
//! - **once**: a message published once is delivered once per node, even
//!   when the relay retries after a broker failure (tag messages with the
//!   sender and a sequence number and drop what was seen);
//! - **not to oneself**: a node's own messages are not handed back to it
//!   (its manager delivered them already).
//!
//! # Examples
//!
//! A relay between two managers of one process, the smallest relay there
//! is (a broker relay publishes instead of sending):
//!
//! ```
//! use actix::prelude::*;
//! use actix_sockjs::{
//!     relay::{Relay, RelayMessage, Relayed, SetRelay},
//!     Broadcast, Session, SessionContext, SessionManager,
//! };
//!
//! # struct Echo;
//! # impl Actor for Echo { type Context = SessionContext<Self>; }
//! # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
//! /// Hands everything to one other manager.
//! struct Direct(Recipient<Relayed>);
//!
//! impl Relay for Direct {
//!     fn publish(&mut self, msg: RelayMessage) {
//!         self.0.do_send(Relayed::new(msg));
//!     }
//! }
//!
//! # actix::System::new().block_on(async {
//! let one = SessionManager::new(|| Echo).start();
//! let two = SessionManager::new(|| Echo).start();
//! one.do_send(SetRelay::to(Direct(two.clone().recipient())));
//! two.do_send(SetRelay::to(Direct(one.clone().recipient())));
//! // Reaches the sessions of both.
//! one.do_send(Broadcast::text("hello"));
//! # });
//! ```

use std::{fmt, sync::Arc};

use actix::Message;

use crate::{
    protocol::{json_string, Escape},
    session::{Shared, Tags},
};

/// Ids or group names, as messages keep them.
pub(crate) fn names<I, S>(names: I) -> Box<[Arc<str>]>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    names.into_iter().map(|name| Arc::from(name.as_ref())).collect()
}

/// A payload from a text, encoded once for every session that gets it.
pub(crate) fn payload(text: String) -> Arc<Shared> {
    let json = json_string(&text, Escape::SockJs).into_boxed_str();
    Arc::new(Shared { text: text.into_boxed_str(), json, close: None })
}

/// A close with `code` and `reason` for every session that gets it.
pub(crate) fn close_payload(code: u16, reason: String) -> Arc<Shared> {
    Arc::new(Shared { text: reason.into_boxed_str(), json: Box::default(), close: Some(code) })
}

/// Who a [`RelayMessage`] is for.
///
/// # Examples
///
/// ```
/// use actix_sockjs::relay::Audience;
///
/// let room = Audience::Group("lobby".into());
/// assert!(matches!(room, Audience::Group(name) if &*name == "lobby"));
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Audience {
    /// Every session of the endpoint.
    All,
    /// The members of a group.
    Group(Arc<str>),
    /// The sessions with these ids.
    Ids(Box<[Arc<str>]>),
    /// The session with this id (a [`SendTo`](crate::SendTo)).
    Session(Arc<str>),
}

/// Shows session ids by their tags, as log lines do.
impl fmt::Debug for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("All"),
            Self::Group(group) => f.debug_tuple("Group").field(group).finish(),
            Self::Ids(ids) => f.debug_tuple("Ids").field(&Tags(ids)).finish(),
            Self::Session(id) => f.debug_tuple("Session").field(&crate::SessionTag::of(id)).finish(),
        }
    }
}

/// A message for the sessions of other nodes: who it is for, whom to leave
/// out, and its text (encoded once, however many sessions get it).
///
/// # Examples
///
/// ```
/// use actix_sockjs::relay::{Audience, RelayMessage};
///
/// let msg = RelayMessage::new(Audience::All, ["a1"], "hello");
/// assert_eq!(msg.text(), "hello");
/// assert_eq!(msg.audience(), &Audience::All);
/// assert_eq!(&*msg.except()[0], "a1");
/// ```
#[derive(Clone)]
pub struct RelayMessage {
    pub(crate) audience: Audience,
    pub(crate) except: Box<[Arc<str>]>,
    /// The groups whose members it must not reach.
    pub(crate) except_groups: Box<[Arc<str>]>,
    pub(crate) payload: Arc<Shared>,
}

impl fmt::Debug for RelayMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayMessage")
            .field("audience", &self.audience)
            .field("except", &Tags(&self.except))
            .field("except_groups", &self.except_groups)
            .field("text", &self.payload.text)
            .field("close", &self.payload.close)
            .finish()
    }
}

impl RelayMessage {
    /// A message for `audience` but the sessions `except`.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_sockjs::relay::{Audience, RelayMessage};
    ///
    /// let msg = RelayMessage::new(Audience::Session("a1".into()), [] as [&str; 0], "psst");
    /// assert!(msg.except().is_empty());
    /// ```
    pub fn new<I, S>(audience: Audience, except: I, text: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self { audience, except: names(except), except_groups: Box::default(), payload: payload(text.into()) }
    }

    /// The same, but not to the members of these groups either (what
    /// [`Broadcast::except_groups`](crate::Broadcast::except_groups) set):
    /// a relay that carries messages in a format of its own must carry
    /// these too. They do not apply to [`Audience::Session`] (a
    /// [`SendTo`](crate::SendTo), which has none).
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_sockjs::relay::{Audience, RelayMessage};
    ///
    /// let msg = RelayMessage::new(Audience::Group("lobby".into()), [] as [&str; 0], "x")
    ///     .with_except_groups(["user:ann"]);
    /// assert_eq!(&*msg.except_groups()[0], "user:ann");
    /// ```
    #[must_use]
    pub fn with_except_groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.except_groups = names(groups);
        self
    }

    /// The groups whose members it must not reach.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix_sockjs::relay::{Audience, RelayMessage};
    /// let msg = RelayMessage::new(Audience::All, [] as [&str; 0], "x");
    /// assert!(msg.except_groups().is_empty());
    /// ```
    pub fn except_groups(&self) -> &[Arc<str>] {
        &self.except_groups
    }

    /// Who it is for.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix_sockjs::relay::{Audience, RelayMessage};
    /// let msg = RelayMessage::new(Audience::Ids(["a".into(), "b".into()].into()), [] as [&str; 0], "x");
    /// assert!(matches!(msg.audience(), Audience::Ids(ids) if ids.len() == 2));
    /// ```
    pub fn audience(&self) -> &Audience {
        &self.audience
    }

    /// The ids of the sessions it must not reach.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix_sockjs::relay::{Audience, RelayMessage};
    /// let msg = RelayMessage::new(Audience::All, ["me"], "x");
    /// assert_eq!(msg.except().len(), 1);
    /// ```
    pub fn except(&self) -> &[Arc<str>] {
        &self.except
    }

    /// Its text, as the sessions will get it; for a close
    /// ([`close_code`](Self::close_code)), its reason.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix_sockjs::relay::{Audience, RelayMessage};
    /// assert_eq!(RelayMessage::new(Audience::All, [] as [&str; 0], "hi").text(), "hi");
    /// ```
    pub fn text(&self) -> &str {
        &self.payload.text
    }

    /// The same audience, closed with `code` and the text as the reason
    /// rather than sent the text (what
    /// [`Broadcast::close`](crate::Broadcast::close) made): a relay that
    /// carries messages in a format of its own must carry this too, or
    /// the other nodes' sessions get the reason as a message.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_sockjs::relay::{Audience, RelayMessage};
    ///
    /// let kick = RelayMessage::new(Audience::Group("user:ann".into()), [] as [&str; 0], "kicked")
    ///     .with_close(4003);
    /// assert_eq!((kick.close_code(), kick.text()), (Some(4003), "kicked"));
    /// ```
    #[must_use]
    pub fn with_close(mut self, code: u16) -> Self {
        self.payload = close_payload(code, self.payload.text.to_string());
        self
    }

    /// The close code, for a message that closes its audience's sessions
    /// ([`with_close`](Self::with_close)); `None` for a message.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix_sockjs::relay::{Audience, RelayMessage};
    /// assert_eq!(RelayMessage::new(Audience::All, [] as [&str; 0], "hi").close_code(), None);
    /// ```
    pub fn close_code(&self) -> Option<u16> {
        self.payload.close
    }
}

/// Carries a manager's messages to the other nodes of a cluster (see the
/// [module docs](self) for what a relay should guarantee).
///
/// The manager calls it from its own thread, in the order the messages
/// were sent to the manager; no method may block (queue and return).
///
/// # Examples
///
/// A relay that only counts (a real one publishes to a broker):
///
/// ```
/// use actix_sockjs::relay::{Relay, RelayMessage};
///
/// #[derive(Default)]
/// struct Counting(usize);
///
/// impl Relay for Counting {
///     fn publish(&mut self, _: RelayMessage) {
///         self.0 += 1;
///     }
/// }
/// ```
pub trait Relay: Send + 'static {
    /// Carries `msg` to the other nodes.
    ///
    /// It must not block: hand the message to a task that talks to the
    /// broker, and return.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use actix_sockjs::relay::{Audience, Relay, RelayMessage};
    ///
    /// /// Queues each message for a publishing thread.
    /// struct Outbox(mpsc::Sender<RelayMessage>);
    ///
    /// impl Relay for Outbox {
    ///     fn publish(&mut self, msg: RelayMessage) {
    ///         if self.0.send(msg).is_err() {
    ///             log::warn!("the publishing thread is gone; a broadcast stays on this node");
    ///         }
    ///     }
    /// }
    ///
    /// let (tx, rx) = mpsc::channel();
    /// let mut relay = Outbox(tx);
    /// relay.publish(RelayMessage::new(Audience::All, [] as [&str; 0], "hi"));
    /// assert!(rx.recv().is_ok_and(|msg| msg.text() == "hi"));
    /// ```
    fn publish(&mut self, msg: RelayMessage);

    /// This node has members in `group` now (it had none). A broker with
    /// a topic per group subscribes here; the default does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use actix_sockjs::relay::{Relay, RelayMessage};
    /// struct Topics(Vec<Arc<str>>);
    /// impl Relay for Topics {
    ///     fn publish(&mut self, _: RelayMessage) {}
    ///     fn watch(&mut self, group: &Arc<str>) {
    ///         self.0.push(group.clone());
    ///     }
    /// }
    /// ```
    fn watch(&mut self, group: &Arc<str>) {
        let _ = group;
    }

    /// This node has no members in `group` any more. The default does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use actix_sockjs::relay::{Relay, RelayMessage};
    /// struct Topics(Vec<Arc<str>>);
    /// impl Relay for Topics {
    ///     fn publish(&mut self, _: RelayMessage) {}
    ///     fn unwatch(&mut self, group: &Arc<str>) {
    ///         self.0.retain(|g| g != group);
    ///     }
    /// }
    /// ```
    fn unwatch(&mut self, group: &Arc<str>) {
        let _ = group;
    }
}

/// A message from another node, for this manager's sessions: what a relay
/// sends to its manager for each message that arrives.
///
/// # Examples
///
/// ```
/// # use actix::prelude::*;
/// # use actix_sockjs::{Session, SessionContext, SessionManager};
/// use actix_sockjs::relay::{Audience, RelayMessage, Relayed};
/// # struct Echo;
/// # impl Actor for Echo { type Context = SessionContext<Self>; }
/// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// # actix::System::new().block_on(async {
/// let manager = SessionManager::new(|| Echo).start();
/// manager.do_send(Relayed::new(RelayMessage::new(Audience::All, [] as [&str; 0], "from afar")));
/// # });
/// ```
#[must_use = "a message does nothing until it is sent to the manager"]
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Relayed(pub(crate) RelayMessage);

impl Relayed {
    /// `msg`, arrived from another node.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_sockjs::relay::{Audience, RelayMessage, Relayed};
    ///
    /// let arrived = Relayed::new(RelayMessage::new(Audience::Group("lobby".into()), ["a1"], "hi"));
    /// assert_eq!(arrived.message().text(), "hi");
    /// ```
    pub fn new(msg: RelayMessage) -> Self {
        Self(msg)
    }

    /// The message.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_sockjs::relay::{Audience, RelayMessage, Relayed};
    ///
    /// let arrived = Relayed::new(RelayMessage::new(Audience::All, [] as [&str; 0], "hi"));
    /// assert_eq!(arrived.message().audience(), &Audience::All);
    /// ```
    pub fn message(&self) -> &RelayMessage {
        &self.0
    }
}

/// Gives a manager its relay (or, with `None`, takes it away: broadcasts
/// stay on this node from then on). A new relay is told of every group
/// with members here ([`Relay::watch`]).
///
/// # Examples
///
/// ```
/// # use actix::prelude::*;
/// # use actix_sockjs::{Session, SessionContext, SessionManager};
/// use actix_sockjs::relay::{Relay, RelayMessage, SetRelay};
/// # struct Echo;
/// # impl Actor for Echo { type Context = SessionContext<Self>; }
/// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// struct Nowhere;
/// impl Relay for Nowhere {
///     fn publish(&mut self, _: RelayMessage) {}
/// }
/// # actix::System::new().block_on(async {
/// let manager = SessionManager::new(|| Echo).start();
/// manager.do_send(SetRelay::to(Nowhere));
/// manager.do_send(SetRelay::none());
/// # });
/// ```
#[must_use = "a message does nothing until it is sent to the manager"]
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetRelay(pub(crate) Option<Box<dyn Relay>>);

impl SetRelay {
    /// Installs `relay`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix_sockjs::relay::{Relay, RelayMessage, SetRelay};
    /// struct Nowhere;
    /// impl Relay for Nowhere {
    ///     fn publish(&mut self, _: RelayMessage) {}
    /// }
    /// let set = SetRelay::to(Nowhere);
    /// assert!(set.is_some());
    /// ```
    pub fn to(relay: impl Relay) -> Self {
        Self(Some(Box::new(relay)))
    }

    /// Takes the relay away: broadcasts stay on this node from then on.
    ///
    /// # Examples
    ///
    /// ```
    /// let unset = actix_sockjs::relay::SetRelay::none();
    /// assert!(!unset.is_some());
    /// ```
    pub fn none() -> Self {
        Self(None)
    }

    /// Whether it installs a relay (rather than take one away).
    ///
    /// # Examples
    ///
    /// ```
    /// # use actix_sockjs::relay::{Relay, RelayMessage, SetRelay};
    /// # struct Nowhere;
    /// # impl Relay for Nowhere { fn publish(&mut self, _: RelayMessage) {} }
    /// assert!(SetRelay::to(Nowhere).is_some());
    /// ```
    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }
}

impl fmt::Debug for SetRelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SetRelay").field(&self.0.as_ref().map(|_| "Relay")).finish()
    }
}
