#![doc = include_str!("../README.md")]

// Layers, bottom up; each module uses only those above it in this list
// (`../shared/tools/modgraph.py --modules` shows the graph):
// util, admission, protocol, close_code, cause, config, metrics
mod admission;
mod cause;
pub mod close_code;
mod config;
pub mod metrics;
mod protocol;
mod util;
// receiver: the session <-> transport contract (framing, queue, backlog)
mod receiver;
// session: the Session trait, its state machine and context
mod session;
// manager: the sessions of an endpoint, broadcast, the relay to other nodes
mod manager;
mod shutdown;
// endpoint: what every answer shares; transport: the transport table and
// its handlers; service: SockJs, which mounts them
mod endpoint;
mod transport;
// (the last of the layers)
mod service;
// cluster: the Redis relay
#[cfg(feature = "redis")]
pub mod cluster;

pub use cause::CloseCause;
pub use config::{Config, DEFAULT_SOCKJS_URL};
pub use endpoint::Refuse;
pub use manager::{
    Broadcast, Deliver, Delivery, GetSession, GroupMembers, GroupSizes, Join, Leave, ListSessions, SendTo,
    SessionCount, SessionCounts, SessionInfo, SessionManager, Shutdown,
};
pub use protocol::Transport;
pub use receiver::on_connect;
pub use service::SockJs;
pub use session::{RequestInfo, Session, SessionContext, SessionState};
pub use shutdown::{shutdown_on, shutdown_signal};

/// Entry points for the fuzz targets in `fuzz/`; not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// Parses a client payload; `Err` carries the protocol's error text.
    pub fn parse_messages(body: &[u8], allow_single: bool) -> Result<Vec<String>, String> {
        crate::protocol::parse_messages(body, allow_single).map_err(|e| e.to_string())
    }

    /// Checks a callback name as htmlfile and jsonp do.
    pub fn validate_callback(callback: Option<&str>) -> Result<&str, String> {
        crate::protocol::validate_callback(callback).map_err(|e| e.to_string())
    }

    /// Encodes a message as it appears inside an `a[...]` frame.
    pub fn encode_message(msg: &str) -> String {
        crate::protocol::json_string(msg, crate::protocol::Escape::SockJs)
    }
}
