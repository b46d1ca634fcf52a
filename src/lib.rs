#![doc = include_str!("../README.md")]

mod admission;
#[cfg(feature = "redis")]
pub mod cluster;
mod config;
mod manager;
pub mod metrics;
mod protocol;
mod queue;
mod service;
mod session;
mod shutdown;
mod transport;
mod util;

pub use config::{Config, Transport, DEFAULT_SOCKJS_URL};
pub use manager::{Broadcast, GetSession, SendTo, SessionCount, SessionManager, Shutdown};
pub use service::SockJs;
pub use session::{
    CloseReason, RequestInfo, Session, SessionContext, CONFLICT_CLOSE, INTERRUPTED_CLOSE, NORMAL_CLOSE,
    OVERFLOW_CLOSE, SHUTDOWN_CLOSE,
};
pub use shutdown::{shutdown_on, shutdown_signal};
pub use transport::on_connect;

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
