//! [`CloseCause`]: why a session ended.

use std::fmt;

/// Why a session ended, as given to [`Session::on_close`](crate::Session::on_close).
///
/// # Examples
///
/// ```
/// use actix::Actor;
/// use actix_sockjs::{CloseCause, Session, SessionContext};
///
/// struct Player;
/// impl Actor for Player {
///     type Context = SessionContext<Self>;
/// }
/// impl Session for Player {
///     fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {}
///
///     fn on_close(&mut self, cause: CloseCause, _: &mut SessionContext<Self>) {
///         match cause {
///             // Worth a reconnect grace period: the network dropped.
///             CloseCause::Interrupted | CloseCause::Timeout => log::info!("player lost: {cause}"),
///             // The player left or was kicked: free the seat now.
///             _ => log::info!("player gone: {cause}"),
///         }
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCause {
    /// The application called [`SessionContext::close`](crate::SessionContext::close)
    /// with this code and reason.
    Application {
        /// The close code sent to the client.
        code: u16,
        /// The close reason sent to the client.
        reason: String,
    },
    /// The client closed its WebSocket (it began the closing handshake).
    ClientClosed,
    /// The client went away: it aborted a long-poll or a stream (later
    /// requests get `c[1002,"Connection interrupted"]`), or its WebSocket
    /// connection ended without a closing handshake (a killed browser, a
    /// lost network) or stopped answering pings.
    Interrupted,
    /// No receiving request came within the disconnect delay.
    Timeout,
    /// The outgoing queue exceeded [`Config::max_queue_bytes`](crate::Config::max_queue_bytes),
    /// or more than the 4,096 messages an HTTP session keeps came before
    /// its first request reached it (see [`Deliver`](crate::Deliver)); the
    /// client got `c[3008,"Outgoing queue overflow"]`.
    Overflow,
    /// The client broke the protocol (undecodable WebSocket data, a message
    /// over the size limit).
    ProtocolError,
    /// The server is shutting down (see [`Shutdown`](crate::Shutdown)); the
    /// client got `c[1001,"Server shutting down"]`.
    Shutdown,
    /// The session actor stopped itself (`ctx.stop()`); the client got
    /// `c[1000,"Normal closure"]`.
    Stopped,
}

impl CloseCause {
    /// The `cause` label of [`SESSIONS_CLOSED`](crate::metrics::SESSIONS_CLOSED),
    /// and its index in [`LABELS`](Self::LABELS); `None` stands for a session
    /// session actor that ended without closing (its arbiter stopped).
    pub(crate) fn label(cause: Option<&Self>) -> (usize, &'static str) {
        let index = match cause {
            Some(Self::Application { .. }) => 0,
            Some(Self::ClientClosed) => 1,
            Some(Self::Interrupted) => 2,
            Some(Self::Timeout) => 3,
            Some(Self::Overflow) => 4,
            Some(Self::ProtocolError) => 5,
            Some(Self::Shutdown) => 6,
            Some(Self::Stopped) | None => 7,
        };
        (index, Self::LABELS[index])
    }

    /// The label of a session whose handler panicked: it is dropped
    /// without a cause, and counted apart from those that stopped.
    pub(crate) const PANICKED_LABEL: usize = 8;

    /// Every label of [`label`](Self::label), by index, and
    /// [`PANICKED_LABEL`](Self::PANICKED_LABEL)'s.
    pub(crate) const LABELS: [&'static str; 9] = [
        "application",
        "client_closed",
        "interrupted",
        "timeout",
        "overflow",
        "protocol_error",
        "shutdown",
        "stopped",
        "panicked",
    ];
}

impl fmt::Display for CloseCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Application { code, reason } => write!(f, "closed by the application ({code}, {reason:?})"),
            Self::ClientClosed => f.write_str("closed by the client"),
            Self::Interrupted => f.write_str("client connection interrupted"),
            Self::Timeout => f.write_str("no receiver within the disconnect delay"),
            Self::Overflow => f.write_str("outgoing queue overflow"),
            Self::ProtocolError => f.write_str("protocol error from the client"),
            Self::Shutdown => f.write_str("server shutting down"),
            Self::Stopped => f.write_str("the session actor stopped"),
        }
    }
}
