//! A [SockJS](https://github.com/sockjs/sockjs-client) server for
//! [actix-web](https://actix.rs) 4.
//!
//! Browsers running `sockjs-client` get a WebSocket-like object that falls
//! back to HTTP transports (xhr-streaming, EventSource, htmlfile, polling,
//! JSONP) where a WebSocket cannot pass. This crate is the server side of
//! protocol 0.3.x, every transport included: each session is an actix actor
//! of yours, an endpoint is one `App::service` call, and a manager actor per
//! endpoint broadcasts to all sessions, to groups, or to one session by id.
//!
//! # Installation
//!
//! Until the first release on crates.io, depend on a checkout of this
//! repository, by path or by git (the URL you cloned it from):
//!
//! ```toml
//! [dependencies]
//! actix-sockjs = { path = "../actix-sockjs" }        # or: { git = "<repository URL>" }
//! actix = "0.13"
//! actix-web = "4.13"  # 4.13 or later for HttpServer::tcp_nodelay, which the quick start sets
//! log = "0.4"
//! env_logger = "0.11"
//! ```
//!
//! From the 0.1 release on, the line will be `actix-sockjs = "0.1"` (add
//! `features = ["redis"]` for several nodes). Rust 1.89 or newer.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `redis` | off | `cluster::RedisBridge`: broadcasts, groups and [`SendTo`] across nodes over a Redis stream, nothing lost across a Redis restart or stall within the outbox's bound (by default 30 s, 10,000 messages or 16 MiB a node; beyond, the oldest are dropped, counted and logged); what a restarted Redis had taken and lost is sent again from the last 10 s (`RedisBridge::retain`) |
//!
//! # Quick start
//!
//! ```no_run
//! use actix::prelude::*;
//! use actix_sockjs::{CloseCause, Session, SessionContext, SessionManager, SockJs};
//! use actix_web::{App, HttpServer};
//!
//! /// One actor per session: it echoes every message.
//! struct Echo;
//!
//! impl Actor for Echo {
//!     type Context = SessionContext<Self>;
//! }
//!
//! impl Session for Echo {
//!     fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
//!         ctx.send(msg);
//!     }
//!
//!     fn on_close(&mut self, cause: CloseCause, ctx: &mut SessionContext<Self>) {
//!         log::info!("session {} closed: {cause}", ctx.session_tag());
//!     }
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
//!     // One manager per endpoint, started outside the closure and shared by every worker.
//!     let manager = SessionManager::new(|| Echo).start();
//!     let signal = actix_sockjs::shutdown_signal([manager.clone().recipient()]);
//!     HttpServer::new(move || App::new().service(SockJs::new("/echo", manager.clone())))
//!         .h1_allow_half_closed(false)
//!         .client_disconnect_timeout(std::time::Duration::ZERO)
//!         // Frames leave at once; see the README's "Nagle's algorithm" (actix-web 4.13+).
//!         .tcp_nodelay(true)
//!         .shutdown_signal(signal)
//!         // Drain and stop within what a process manager waits (see `shutdown_signal`).
//!         .shutdown_timeout(25)
//!         .bind(("127.0.0.1", 8080))?
//!         .run()
//!         .await
//! }
//! ```
//!
//! Point `new SockJS("http://127.0.0.1:8080/echo")` at it.
//!
//! # The main types
//!
//! | type | what it is |
//! |---|---|
//! | [`SockJs`] | the endpoint: mount it with `App::service`; [`Config`] sets its options, `authorize` decides who may open a session |
//! | [`Session`] | the trait your session actor implements: `on_open`, `on_message`, `on_close` |
//! | [`SessionContext`] | your actor's context: `send`, `close`, `join`/`leave` groups, the opening [`RequestInfo`], timers and your own messages |
//! | [`SessionManager`] | one actor per endpoint: [`Broadcast`] (all, a group, a list), [`SendTo`] and [`Deliver`] by id or [`SessionKey`], [`DeliverGroup`] to a group, [`ListSessions`], [`Shutdown`] |
//! | [`CloseCause`], [`close_code`] | why a session ended, and the codes on the wire |
//! | [`Transport`] | the transports, to switch off or to tell apart |
//! | [`metrics`] | the names of the metrics reported through the `metrics` facade |
//! | `cluster` | the Redis bridge between nodes (feature `redis`: `cargo doc` documents it once your dependency enables the feature; docs.rs has every feature) |
//!
//! # Testing your sessions
//!
//! The HTTP transports run in `actix_web::test::init_service`, with no
//! server and no socket: a poll (`xhr`) answers what the session queued, a
//! send (`xhr_send`) takes a JSON array of strings and answers `204`.
//!
//! ```
//! use actix::prelude::*;
//! use actix_sockjs::{Session, SessionContext, SessionManager, SockJs};
//! use actix_web::{test, App};
//!
//! struct Greeter;
//!
//! impl Actor for Greeter {
//!     type Context = SessionContext<Self>;
//! }
//!
//! impl Session for Greeter {
//!     fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
//!         ctx.send("welcome");
//!     }
//!
//!     fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
//!         ctx.send(format!("you said {msg}"));
//!     }
//! }
//!
//! actix_web::rt::System::new().block_on(async {
//!     let manager = SessionManager::new(|| Greeter).start();
//!     let app = test::init_service(App::new().service(SockJs::new("/greet", manager))).await;
//!     let poll = || test::TestRequest::post().uri("/greet/000/s1/xhr").to_request();
//!     // The first poll opens the session and answers the open frame alone;
//!     // what `on_open` sent comes with the next one.
//!     assert_eq!(test::call_and_read_body(&app, poll()).await, "o\n");
//!     assert_eq!(test::call_and_read_body(&app, poll()).await, "a[\"welcome\"]\n");
//!     let send = test::TestRequest::post().uri("/greet/000/s1/xhr_send").set_payload(r#"["hi"]"#);
//!     assert_eq!(test::call_service(&app, send.to_request()).await.status(), 204);
//!     assert_eq!(test::call_and_read_body(&app, poll()).await, "a[\"you said hi\"]\n");
//! });
//! ```
//!
//! A poll that finds nothing waits for the next heartbeat (25 s by
//! default): poll when you know something is queued, or shorten
//! [`Config::heartbeat`] for the test. A WebSocket needs a real server:
//! `init_service` answers its upgrade with `101` but carries no frames, so
//! the session opens and then ends as interrupted. Bind an `HttpServer` to
//! `127.0.0.1` port 0, and stop it through [`shutdown_on_draining`] with a
//! drain of `Duration::ZERO`. The README's "Testing your sessions" has
//! more: per-address limits, metrics, waiting without sleeping.
//!
//! # Where to go next
//!
//! The repository's README covers the options with their defaults, the
//! behaviour worth knowing (client aborts, closing WebSockets, Nagle's
//! algorithm, slow clients, shutdown), running several nodes behind a
//! balancer, and the metrics; `examples/` has an echo server, a rooms
//! chat and the server the protocol suites use; `docs/protocol.md` is the
//! protocol, endpoint by endpoint.

#![cfg_attr(docsrs, feature(doc_cfg))]

// Layers, bottom up; each module uses only those above it in this list
// (`../shared/tools/modgraph.py --modules` shows the graph):
// util, clock, admission, protocol, close_code, cause, config, metrics
mod admission;
mod cause;
mod clock;
pub mod close_code;
mod config;
pub mod metrics;
mod protocol;
mod util;
// receiver: the session <-> transport contract (framing, queue, backlog)
mod receiver;
// session: the Session trait, its state machine and context
mod session;
// relay: what a manager hands other nodes (the Relay trait)
pub mod relay;
// manager: the sessions of an endpoint, broadcast, groups
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
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod cluster;

pub use admission::ProxyHeader;
pub use cause::CloseCause;
pub use config::{BindTo, Config, BODY_MIN_RATE, DEFAULT_SOCKJS_URL};
pub use endpoint::Refuse;
pub use manager::{
    Broadcast, CountSessions, Deliver, DeliverGroup, Delivery, GetSession, GroupMembers, GroupSizes, Join,
    Leave, ListSessions, SendTo, SessionCounts, SessionInfo, SessionManager, SessionTarget, Shutdown,
};
pub use protocol::Transport;
pub use receiver::on_connect;
pub use service::SockJs;
pub use session::{log_path, RequestInfo, Session, SessionContext, SessionKey, SessionState, SessionTag};
pub use shutdown::{log_panics, shutdown_on, shutdown_on_draining, shutdown_signal, SHUTDOWN_DRAIN};

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
