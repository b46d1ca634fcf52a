#![doc = include_str!("../README.md")]

mod admission;
mod config;
mod manager;
mod protocol;
mod service;
mod session;
mod shutdown;
mod transport;
mod util;

pub use config::{Config, Transport, DEFAULT_SOCKJS_URL};
pub use manager::{Broadcast, GetSession, SessionCount, SessionManager, Shutdown};
pub use service::SockJs;
pub use session::{
    CloseReason, RequestInfo, Session, SessionContext, CONFLICT_CLOSE, INTERRUPTED_CLOSE, NORMAL_CLOSE,
    OVERFLOW_CLOSE, SHUTDOWN_CLOSE,
};
pub use shutdown::{shutdown_on, shutdown_signal};
pub use transport::on_connect;
