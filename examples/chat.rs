//! A chat with rooms, on one node or several.
//!
//! Run `cargo run --example chat` and open `http://127.0.0.1:8080/` in two
//! browser windows. Pick a name: the page asks `/login` for a token, and
//! the token names the user on every request of the session (the
//! endpoint's authorisation hook checks it). Without a token a client is a
//! guest (`<node>-<n>`).
//!
//! Commands: `/join ROOM` (everyone starts in `lobby`), `/leave`, `/to NAME
//! TEXT` (to that user only, wherever they are), `/who` (who is in your
//! room on this node); anything else goes to everyone in your room.
//!
//! Options: `--port N` (or `PORT`; default 8080, 0 picks a free one),
//! `--node NAME` (shown in guest names), `--redis URL` to share rooms with
//! other nodes through Redis (needs `--features redis`; see
//! `examples/cluster/`), `--jsessionid` to ask clients for the JSESSIONID
//! cookie a balancer can route on, `--secret S` (the key tokens are signed
//! with; nodes of one cluster share it). `GET /metrics` answers the
//! server's metrics in Prometheus text. The page loads sockjs-client from
//! `/sockjs.min.js`, which serves `--client-script PATH` (default
//! `examples/static/sockjs.min.js`; see `examples/static/README.md` for the
//! npm steps), and from a CDN when that fails; if neither loads, the page
//! says so. `http://127.0.0.1:8080/?name=ann&room=blue` logs in and joins
//! at once.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use actix::prelude::*;
use actix_sockjs::{
    Broadcast, CloseCause, Config, ListSessions, Refuse, RequestInfo, Session, SessionContext,
    SessionManager, SockJs,
};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The user a token names.
#[derive(Debug, Clone)]
struct User(String);

/// One chat participant.
struct Member {
    name: String,
    /// The room the member talks to, if any.
    room: Option<String>,
    manager: Addr<SessionManager<Member>>,
}

impl Member {
    /// To the room, this member included: through `ctx.broadcast`, so that
    /// the member's own copy comes before what it is sent next.
    fn say(room: &str, text: String, ctx: &mut SessionContext<Self>) {
        ctx.broadcast(Broadcast::text(text).group(room));
    }

    fn enter(&mut self, room: &str, ctx: &mut SessionContext<Self>) {
        self.leave_room(ctx);
        ctx.join(room);
        self.room = Some(room.to_owned());
        self.manager.do_send(
            Broadcast::text(format!("{} joined {room}", self.name)).group(room).except([ctx.session_id()]),
        );
    }

    fn leave_room(&mut self, ctx: &mut SessionContext<Self>) {
        if let Some(room) = self.room.take() {
            ctx.leave(&room);
            Self::say(&room, format!("{} left {room}", self.name), ctx);
        }
    }
}

impl Actor for Member {
    type Context = SessionContext<Self>;
}

impl Session for Member {
    fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
        ctx.send(format!("welcome, you are {} (session {})", self.name, ctx.session_id()));
        // A group of one per user: `/to NAME` reaches it on any node.
        ctx.join(format!("user:{}", self.name));
        self.enter("lobby", ctx);
    }

    fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
        let (command, rest) = msg.split_once(' ').unwrap_or((msg.as_str(), ""));
        match command {
            "/join" if !rest.trim().is_empty() && !rest.contains(':') => {
                let room = rest.trim().to_owned();
                self.enter(&room, ctx);
                ctx.send(format!("you are in {room}"));
            }
            "/leave" => match self.room.clone() {
                Some(room) => {
                    self.leave_room(ctx);
                    ctx.send(format!("you left {room}"));
                }
                None => ctx.send("you are in no room"),
            },
            "/to" => match rest.split_once(' ') {
                Some((to, text)) => {
                    ctx.broadcast(
                        Broadcast::text(format!("{} (private): {text}", self.name))
                            .group(format!("user:{to}")),
                    );
                    ctx.send(format!("to {to}: {text}"));
                }
                None => ctx.send("usage: /to NAME TEXT"),
            },
            "/who" => {
                let Some(room) = self.room.clone() else {
                    ctx.send("you are in no room");
                    return;
                };
                let ask = self.manager.send(ListSessions);
                ctx.spawn(actix::fut::wrap_future(ask).map(
                    move |list, _: &mut Self, ctx: &mut SessionContext<Self>| {
                        let mut names: Vec<String> = list
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|s| s.groups.contains(&room))
                            .filter_map(|s| {
                                s.groups.iter().find_map(|g| g.strip_prefix("user:").map(str::to_owned))
                            })
                            .collect();
                        names.sort();
                        ctx.send(format!("in {room} on this node: {}", names.join(", ")));
                    },
                ));
            }
            _ if msg.starts_with('/') => ctx.send("commands: /join ROOM, /leave, /to NAME TEXT, /who"),
            _ => match &self.room {
                Some(room) => Self::say(room, format!("{}: {msg}", self.name), ctx),
                None => ctx.send("join a room first: /join ROOM"),
            },
        }
    }

    fn on_close(&mut self, _cause: CloseCause, ctx: &mut SessionContext<Self>) {
        self.leave_room(ctx);
    }
}

/// A token for `name`: the name and a digest of the name with the secret.
/// (A demo: a real application would use its identity provider, or an HMAC.)
fn token(secret: &str, name: &str) -> String {
    use md5::{Digest, Md5};
    let digest = Md5::digest(format!("{secret}:{name}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{name}.{hex}")
}

/// The user a token names, if its digest is right.
fn user_of(secret: &str, token: &str) -> Option<User> {
    let (name, _) = token.rsplit_once('.')?;
    (token == self::token(secret, name)).then(|| User(name.to_owned()))
}

/// Whether a name is fit for a user: 1 to 32 letters, digits, `-` or `_`.
fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_')
}

/// `GET /login?name=NAME`: a token for that name.
async fn login(req: HttpRequest, secret: web::Data<String>) -> HttpResponse {
    let query = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string());
    match query.ok().and_then(|q| q.get("name").cloned()).filter(|n| valid_name(n)) {
        Some(name) => HttpResponse::Ok().content_type("text/plain").body(token(&secret, &name)),
        None => HttpResponse::BadRequest().body("name: 1 to 32 letters, digits, - or _"),
    }
}

async fn page() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=UTF-8").body(include_str!("chat.html"))
}

/// `GET /sockjs.min.js`: a local copy of sockjs-client, when there is one.
async fn client_script(path: web::Data<std::path::PathBuf>) -> HttpResponse {
    match std::fs::read(path.as_path()) {
        Ok(script) => HttpResponse::Ok().content_type("application/javascript; charset=UTF-8").body(script),
        Err(_) => HttpResponse::NotFound().body("no local sockjs-client: see examples/static/README.md"),
    }
}

async fn metrics(handle: web::Data<PrometheusHandle>) -> HttpResponse {
    handle.run_upkeep();
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(handle.render())
}

/// The value after `--name` on the command line.
fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next().and(args.next())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    actix_sockjs::log_panics();
    // Installed before the server starts, so that every handle is live.
    // Histograms with buckets (not summaries), which add up across nodes.
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in [
        (actix_sockjs::metrics::BROADCAST_FANOUT, actix_sockjs::metrics::FANOUT_BUCKETS),
        (actix_sockjs::metrics::BROADCAST_RECEIVERS, actix_sockjs::metrics::RECEIVER_BUCKETS),
        (actix_sockjs::metrics::REDIS_LAG, actix_sockjs::metrics::LAG_BUCKETS),
    ] {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
            .map_err(std::io::Error::other)?;
    }
    let prometheus = builder.install_recorder().map_err(std::io::Error::other)?;
    let upkeep = prometheus.clone();
    actix_web::rt::spawn(async move {
        let mut every = actix_web::rt::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });

    let port = arg("--port").or_else(|| std::env::var("PORT").ok());
    let port: u16 = port.map_or(Ok(8080), |p| p.parse()).map_err(std::io::Error::other)?;
    let node = arg("--node").unwrap_or_else(|| "guest".to_owned());
    let secret = arg("--secret").unwrap_or_else(|| "change me".to_owned());
    static GUESTS: AtomicUsize = AtomicUsize::new(1);
    let manager = SessionManager::start_with_request(|manager| {
        move |req: &RequestInfo| Member {
            // What the authorisation hook below found.
            name: req.get::<User>().map_or_else(|| "anonymous".to_owned(), |u| u.0.clone()),
            room: None,
            manager: manager.clone(),
        }
    });
    // Redis is chosen at run time; the bridge needs the `redis` feature.
    #[cfg(feature = "redis")]
    let _bridge = match arg("--redis") {
        Some(url) => {
            Some(actix_sockjs::cluster::RedisBridge::new(&url, "chat")?.node(node.clone()).start(&manager))
        }
        None => None,
    };
    #[cfg(not(feature = "redis"))]
    if arg("--redis").is_some() {
        return Err(std::io::Error::other("--redis needs the example built with --features redis"));
    }

    let script_path =
        std::path::PathBuf::from(arg("--client-script").unwrap_or_else(|| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/static/sockjs.min.js").to_owned()
        }));
    // Behind a balancer that routes by the JSESSIONID cookie.
    let mut config = Config::default().cookie_needed(std::env::args().any(|a| a == "--jsessionid"));
    if script_path.is_file() {
        // The iframe transports' page loads the local client too: no internet needed.
        config = config.sockjs_url("/sockjs.min.js");
    }
    let signal = actix_sockjs::shutdown_signal([manager.clone().recipient()]);
    let prometheus = web::Data::new(prometheus);
    let secret = web::Data::new(secret);
    let script = web::Data::new(script_path);
    let server = HttpServer::new(move || {
        let (key, node) = (secret.clone(), node.clone());
        // The user the token names, or a guest without one; a bad token is
        // refused with a close frame the page shows.
        let chat = SockJs::new("/chat", manager.clone()).config(config.clone()).authorize(move |req| {
            let query =
                web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string());
            match query.ok().and_then(|q| q.get("token").cloned()) {
                None => Ok(User(format!("{node}-{}", GUESTS.fetch_add(1, Ordering::Relaxed)))),
                Some(token) => user_of(&key, &token).ok_or(Refuse::close(4401, "Unauthorized")),
            }
        });
        App::new()
            .app_data(prometheus.clone())
            .app_data(secret.clone())
            .app_data(script.clone())
            .route("/", web::get().to(page))
            .route("/login", web::get().to(login))
            .route("/sockjs.min.js", web::get().to(client_script))
            .route("/metrics", web::get().to(metrics))
            .service(chat)
    })
    .h1_allow_half_closed(false)
    // Close a WebSocket's connection once its closing handshake is done.
    .client_disconnect_timeout(Duration::ZERO)
    // A chat page sends as well as reads: without this, a message that
    // follows another within the page's delayed-ACK time waits for it
    // (README: "Nagle's algorithm").
    .tcp_nodelay(true)
    .shutdown_signal(signal)
    // With the 1 s drain, within the 30 s a process manager waits.
    .shutdown_timeout(25)
    .bind(("127.0.0.1", port))?;
    for addr in server.addrs() {
        // The first line on stdout, for scripts and tests that pass `--port 0`.
        println!("listening on http://{addr}");
    }
    server.run().await
}
