//! The server the SockJS protocol suite and the sockjs-client test suite
//! expect.
//!
//! Run: `cargo run --example test_server -- --port 8081`, then point the
//! protocol suite at `http://localhost:8081`. Options: `--port N` (or the
//! `PORT` variable; default 8081, `0` picks a free port), `--host ADDR`
//! (default 127.0.0.1), `--sockjs-url URL` (the client script the iframe
//! page loads), `--static DIR` (serve the files of DIR under `/static/`, for
//! pages that load a local sockjs-client build; off by default). The first
//! line printed is `listening on http://HOST:PORT`. It raises its soft
//! descriptor limit to the hard one, so that a shell's default of 1,024
//! does not cap the clients it serves.
//!
//! Endpoints: `/echo`, `/close`, `/disabled_websocket_echo`,
//! `/cookie_needed_echo`, `/ticker`, `/amplify`, `/broadcast`, `/groups`.
//! Every one but `/broadcast` and `/groups` has a 4,096-byte response
//! limit, as the protocol suite expects of `/echo`; those two keep the
//! default options (128 KiB). `/groups` takes commands (see [`Grouper`]):
//! `id`, `join:G`, `leave:G`, `to:G:TEXT`, `except:G:TEXT`, `list:G`,
//! `ids:ID1,ID2:TEXT`; anything else is echoed.
//!
//! Built with the `redis` feature, `--redis URL` joins a cluster: the
//! `/broadcast` and `/groups` endpoints of every test server on that Redis
//! share their broadcasts (streams `sockjs-test:broadcast` and
//! `sockjs-test:groups`), `--node NAME` names this one, `--redis-outbox N`
//! bounds each bridge's outbox to N messages (default 10,000), and
//! `GET /cluster` answers the bridges' health as JSON. Without `--redis`
//! nothing changes.

use std::{path::PathBuf, time::Duration};

use actix::prelude::*;
use actix_sockjs::{Broadcast, Config, GroupMembers, Session, SessionContext, SessionManager, SockJs};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

/// Sends every message back.
struct Echo;

impl Actor for Echo {
    type Context = SessionContext<Self>;
}

impl Session for Echo {
    fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
        ctx.send(msg);
    }
}

/// Closes every session as soon as it opens.
struct Close;

impl Actor for Close {
    type Context = SessionContext<Self>;
}

impl Session for Close {
    fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
        ctx.close(3000, "Go away!");
    }

    fn on_message(&mut self, _msg: String, _ctx: &mut SessionContext<Self>) {}
}

/// Sends "tick!" every second.
struct Ticker;

impl Actor for Ticker {
    type Context = SessionContext<Self>;
}

impl Session for Ticker {
    fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
        ctx.run_interval(Duration::from_secs(1), |_, ctx| ctx.send("tick!"));
    }

    fn on_message(&mut self, _msg: String, _ctx: &mut SessionContext<Self>) {}
}

/// Answers message `n` with "x" repeated 2^n times (n rounded down; outside 1..=18 it counts as 1).
struct Amplify;

impl Actor for Amplify {
    type Context = SessionContext<Self>;
}

impl Session for Amplify {
    fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
        let n = msg
            .trim()
            .parse::<f64>()
            .map(f64::floor)
            .ok()
            .filter(|n| (1.0..=18.0).contains(n))
            .unwrap_or(1.0);
        ctx.send("x".repeat(1 << n as u32));
    }
}

/// Sends every message to every open session of the endpoint.
struct Broadcaster {
    room: Addr<SessionManager<Broadcaster>>,
}

impl Actor for Broadcaster {
    type Context = SessionContext<Self>;
}

impl Session for Broadcaster {
    fn on_message(&mut self, msg: String, _ctx: &mut SessionContext<Self>) {
        self.room.do_send(Broadcast::text(msg));
    }
}

/// Drives groups from the client: each message is a command.
///
/// - `id`: answers the session's own id;
/// - `join:G`, `leave:G`: joins or leaves group `G`, then answers `ok`;
/// - `to:G:TEXT`: every member of `G` (on this node) gets `TEXT`;
/// - `except:G:TEXT`: every member of `G` but the sender gets `TEXT`;
/// - `list:G`: answers the sorted member ids of `G` as one JSON array;
/// - `ids:ID1,ID2:TEXT`: each listed session gets `TEXT`;
/// - anything else is echoed back.
struct Grouper {
    manager: Addr<SessionManager<Grouper>>,
}

impl Actor for Grouper {
    type Context = SessionContext<Self>;
}

impl Session for Grouper {
    fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
        let (command, rest) = msg.split_once(':').unwrap_or((msg.as_str(), ""));
        let group_and_text = || rest.split_once(':').unwrap_or((rest, ""));
        match command {
            "id" if rest.is_empty() && !msg.contains(':') => {
                let id = ctx.session_id().to_owned();
                ctx.send(id);
            }
            "join" => {
                ctx.join(rest);
                ctx.send("ok");
            }
            "leave" => {
                ctx.leave(rest);
                ctx.send("ok");
            }
            "to" => {
                let (group, text) = group_and_text();
                self.manager.do_send(Broadcast::text(text).group(group));
            }
            "except" => {
                let (group, text) = group_and_text();
                self.manager.do_send(Broadcast::text(text).group(group).except([ctx.session_id()]));
            }
            "ids" => {
                let (ids, text) = group_and_text();
                self.manager.do_send(Broadcast::text(text).ids(ids.split(',')));
            }
            "list" => {
                let ask = self.manager.send(GroupMembers::new(rest));
                ctx.wait(actix::fut::wrap_future(ask).map(
                    |members, _: &mut Self, ctx: &mut SessionContext<Self>| match members {
                        Ok(members) => {
                            if let Err(e) = ctx.send_json(&members) {
                                log::warn!("list not sent: {e}");
                            }
                        }
                        Err(e) => log::warn!("the manager did not answer: {e}"),
                    },
                ));
            }
            _ => ctx.send(msg),
        }
    }
}

/// Serves one file of the `--static` directory (no subdirectories).
async fn static_file(req: HttpRequest, dir: web::Data<Option<PathBuf>>) -> HttpResponse {
    let name = req.match_info().get("file").unwrap_or_default();
    let safe = !name.starts_with('.') && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    let Some(dir) = dir.as_ref().as_ref().filter(|_| safe) else {
        return HttpResponse::NotFound().finish();
    };
    let content_type = match name.rsplit('.').next() {
        Some("js") => "application/javascript; charset=UTF-8",
        Some("html") => "text/html; charset=UTF-8",
        _ => "application/octet-stream",
    };
    match std::fs::read(dir.join(name)) {
        Ok(bytes) => HttpResponse::Ok().content_type(content_type).body(bytes),
        Err(_) => HttpResponse::NotFound().finish(),
    }
}

struct Options {
    host: String,
    port: u16,
    sockjs_url: String,
    static_dir: Option<PathBuf>,
    cluster: Cluster,
}

/// `--redis`, `--node`, `--redis-outbox`.
#[derive(Default)]
struct Cluster {
    redis: Option<String>,
    node: Option<String>,
    outbox: Option<usize>,
}

/// What `--help` prints.
const USAGE: &str = "\
Usage: test_server [OPTIONS]

The server the SockJS protocol suite and sockjs-client's tests expect.

Options:
  --port N            port to listen on (or the PORT variable; default 8081, 0 picks a free port)
  --host ADDR         address to listen on (default 127.0.0.1)
  --sockjs-url URL    the client script the iframe page loads
  --static DIR        serve the files of DIR under /static/ (off by default)
  --redis URL         join the cluster on this Redis: /broadcast and /groups
                      reach every test server on it (needs the redis feature)
  --node NAME         this node's name in the cluster (with --redis)
  --redis-outbox N    messages each bridge keeps while Redis is away (default 10000)
  -h, --help          print this and exit

Endpoints: /echo, /close, /disabled_websocket_echo, /cookie_needed_echo,
/ticker, /amplify (4,096-byte response limit), /broadcast and /groups
(default options). /groups takes commands: id, join:G, leave:G, to:G:TEXT,
except:G:TEXT, list:G, ids:ID1,ID2:TEXT; anything else is echoed.
With --redis, GET /cluster answers the bridges' health as JSON.
The first line printed is `listening on http://HOST:PORT`.
";

/// The command line: the options to run with, or `None` when the usage was
/// asked for.
fn options() -> Result<Option<Options>, String> {
    let mut opts = Options {
        host: "127.0.0.1".to_owned(),
        port: std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8081),
        sockjs_url: actix_sockjs::DEFAULT_SOCKJS_URL.to_owned(),
        static_dir: None,
        cluster: Cluster::default(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => opts.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--host" => opts.host = value()?,
            "--sockjs-url" => opts.sockjs_url = value()?,
            "--static" => opts.static_dir = Some(PathBuf::from(value()?)),
            "--redis" => opts.cluster.redis = Some(value()?),
            "--node" => opts.cluster.node = Some(value()?),
            "--redis-outbox" => {
                opts.cluster.outbox = Some(value()?.parse().map_err(|e| format!("--redis-outbox: {e}"))?);
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown option {other} (--help lists them)")),
        }
    }
    if opts.cluster.redis.is_none() && (opts.cluster.node.is_some() || opts.cluster.outbox.is_some()) {
        return Err("--node and --redis-outbox need --redis".to_owned());
    }
    if opts.cluster.redis.is_some() && !cfg!(feature = "redis") {
        return Err(
            "--redis needs a build with the redis feature (cargo run --features redis ...)".to_owned()
        );
    }
    Ok(Some(opts))
}

/// The bridges' health, for `GET /cluster`.
type Health = web::Data<Vec<(&'static str, Bridge)>>;

#[cfg(feature = "redis")]
type Bridge = actix_sockjs::cluster::BridgeHandle;
#[cfg(not(feature = "redis"))]
type Bridge = std::convert::Infallible;

#[cfg(feature = "redis")]
fn join_cluster<A: Session>(
    cluster: &Cluster,
    stream: &str,
    manager: &Addr<SessionManager<A>>,
) -> std::io::Result<Option<Bridge>> {
    let Some(url) = &cluster.redis else { return Ok(None) };
    let invalid = |e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--redis: {e}"));
    let mut bridge = actix_sockjs::cluster::RedisBridge::new(url, stream).map_err(invalid)?;
    if let Some(node) = &cluster.node {
        bridge = bridge.node(node.clone());
    }
    if let Some(outbox) = cluster.outbox {
        bridge = bridge.outbox(outbox, 16 << 20, Duration::from_secs(30));
    }
    Ok(Some(bridge.start(manager)))
}

#[cfg(not(feature = "redis"))]
fn join_cluster<A: Session>(
    _: &Cluster,
    _: &str,
    _: &Addr<SessionManager<A>>,
) -> std::io::Result<Option<Bridge>> {
    Ok(None)
}

/// `GET /cluster`: `{"node": .., "bridges": {"/broadcast": {"publisher_up": ..}}}`.
async fn cluster_health(bridges: Health, node: web::Data<Option<String>>) -> HttpResponse {
    #[cfg_attr(not(feature = "redis"), expect(unused_mut, reason = "filled with the redis feature"))]
    let mut out = serde_json::Map::new();
    #[cfg(feature = "redis")]
    for (endpoint, bridge) in bridges.iter() {
        let h = bridge.health();
        out.insert(
            (*endpoint).to_owned(),
            serde_json::json!({
                "up": bridge.is_up(),
                "publisher_up": h.publisher_up,
                "reader_up": h.reader_up,
                "outbox_messages": h.outbox_messages,
                "outbox_bytes": h.outbox_bytes,
                "dropped": h.dropped,
                "missed": h.missed,
            }),
        );
    }
    #[cfg(not(feature = "redis"))]
    let _ = bridges;
    HttpResponse::Ok().json(serde_json::json!({ "node": node.as_ref(), "bridges": out }))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // A panic (actix-http's, on a header name of 64 KiB or more) costs one
    // log line, not a backtrace.
    actix_sockjs::log_panics();
    let Some(opts) = options().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))? else {
        print!("{USAGE}");
        return Ok(());
    };

    let echo = SessionManager::new(|| Echo).start();
    let close = SessionManager::new(|| Close).start();
    let disabled_ws = SessionManager::new(|| Echo).start();
    let cookie = SessionManager::new(|| Echo).start();
    let ticker = SessionManager::new(|| Ticker).start();
    let amplify = SessionManager::new(|| Amplify).start();
    let broadcast = SessionManager::start_with(|room| move || Broadcaster { room: room.clone() });
    let groups = SessionManager::start_with(|manager| move || Grouper { manager: manager.clone() });
    let mut bridges: Vec<(&'static str, Bridge)> = Vec::new();
    if let Some(bridge) = join_cluster(&opts.cluster, "sockjs-test:broadcast", &broadcast)? {
        bridges.push(("/broadcast", bridge));
    }
    if let Some(bridge) = join_cluster(&opts.cluster, "sockjs-test:groups", &groups)? {
        bridges.push(("/groups", bridge));
    }
    let clustered = !bridges.is_empty();
    let health: Health = web::Data::new(bridges);
    let node = web::Data::new(opts.cluster.node.clone());
    let signal = actix_sockjs::shutdown_signal([
        echo.clone().recipient(),
        close.clone().recipient(),
        disabled_ws.clone().recipient(),
        cookie.clone().recipient(),
        ticker.clone().recipient(),
        amplify.clone().recipient(),
        broadcast.clone().recipient(),
        groups.clone().recipient(),
    ]);

    // Every client holds a descriptor. Take the hard limit rather than the
    // soft one, often 1,024 (Node.js does the same for sockjs-node), so that
    // idle-session loads meet the machine's limit, not a shell default.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => log::info!("descriptor limit: {limit}"),
        Err(e) => log::warn!("cannot raise the descriptor limit: {e}"),
    }

    let static_dir = opts.static_dir.clone();
    let base = Config::default().response_limit(4096).sockjs_url(opts.sockjs_url.clone());
    // The issue sets no response limit for `/broadcast`: the default (128
    // KiB), so that load runs fanning out on xhr_streaming measure
    // broadcasts, not a reconnect every 4 KB.
    let fan_out = Config::default().sockjs_url(opts.sockjs_url.clone());
    let server = HttpServer::new(move || {
        let app = App::new()
            .service(SockJs::new("/echo", echo.clone()).config(base.clone()))
            .service(SockJs::new("/close", close.clone()).config(base.clone()))
            .service(
                SockJs::new("/disabled_websocket_echo", disabled_ws.clone())
                    .config(base.clone().websocket(false)),
            )
            .service(
                SockJs::new("/cookie_needed_echo", cookie.clone()).config(base.clone().cookie_needed(true)),
            )
            .service(SockJs::new("/ticker", ticker.clone()).config(base.clone()))
            .service(SockJs::new("/amplify", amplify.clone()).config(base.clone()))
            .service(SockJs::new("/broadcast", broadcast.clone()).config(fan_out.clone()))
            .service(SockJs::new("/groups", groups.clone()).config(fan_out.clone()))
            .app_data(web::Data::new(static_dir.clone()))
            .route("/static/{file}", web::get().to(static_file));
        if clustered {
            app.app_data(health.clone())
                .app_data(node.clone())
                .route("/cluster", web::get().to(cluster_health))
        } else {
            app
        }
    })
    // Aborted long-polls end at the client's EOF (no duplicate descriptor
    // per connection, as `actix_sockjs::on_connect` would keep).
    .h1_allow_half_closed(false)
    // Close a connection as soon as its response is done, WebSockets
    // included: actix-web otherwise waits up to this long for the client to
    // close first after a WebSocket's closing handshake (see SockJs's docs).
    .client_disconnect_timeout(Duration::ZERO)
    // actix-web's default is 25,000 connections per worker; idle-session
    // loads go past that.
    .max_connections(100_000)
    .backlog(4096)
    .shutdown_signal(signal)
    .bind((opts.host.as_str(), opts.port))?;
    for addr in server.addrs() {
        println!("listening on http://{addr}");
    }
    server.run().await
}
