#![doc = include_str!("../README.md")]

mod admission;
mod config;
mod manager;
mod protocol;
mod service;
mod session;
mod transport;
mod util;

pub use config::{Config, Transport, DEFAULT_SOCKJS_URL};
pub use manager::{Broadcast, GetSession, SessionCount, SessionManager};
pub use service::SockJs;
pub use session::{
    CloseReason, RequestInfo, Session, SessionContext, CONFLICT_CLOSE, INTERRUPTED_CLOSE, NORMAL_CLOSE,
    OVERFLOW_CLOSE,
};
pub use transport::on_connect;
