//! A chat room: every message goes to everyone in the room, on every node.
//!
//! Run `cargo run --example chat --features redis` and open
//! `http://127.0.0.1:8080/` in two browser windows. The page loads
//! sockjs-client 1.6.1 from a CDN, so the browser needs internet access (the
//! server does not).
//!
//! Options: `--port N` (default 8080; 0 picks a free one), `--node NAME`
//! (shown in guest names), `--redis URL` to share the room with other nodes
//! through Redis (see `examples/cluster/`), `--jsessionid` to ask clients for
//! the JSESSIONID cookie that a balancer can route on. A message `/to <session id> <text>` goes to that
//! session only, on whichever node holds it. `GET /metrics` answers the
//! server's metrics in Prometheus text.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use actix::prelude::*;
use actix_sockjs::{
    cluster::RedisBridge, Broadcast, CloseCause, Config, SendTo, Session, SessionContext, SessionManager,
    SockJs,
};
use actix_web::{web, App, HttpResponse, HttpServer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// One chat participant.
struct Member {
    name: String,
    room: Addr<SessionManager<Member>>,
}

impl Actor for Member {
    type Context = SessionContext<Self>;
}

impl Session for Member {
    fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
        ctx.send(format!("welcome, you are {} (session {})", self.name, ctx.session_id()));
        self.room.do_send(Broadcast::text(format!("{} joined", self.name)));
    }

    fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
        match msg.strip_prefix("/to ").and_then(|rest| rest.split_once(' ')) {
            Some((to, text)) => {
                self.room.do_send(SendTo::text(to, format!("{} (private): {text}", self.name)));
                ctx.send(format!("to {to}: {text}"));
            }
            None => self.room.do_send(Broadcast::text(format!("{}: {msg}", self.name))),
        }
    }

    fn on_close(&mut self, _reason: CloseCause, _ctx: &mut SessionContext<Self>) {
        self.room.do_send(Broadcast::text(format!("{} left", self.name)));
    }
}

async fn page() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=UTF-8").body(include_str!("chat.html"))
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
    // Installed before the server starts, so that every handle is live.
    let prometheus = PrometheusBuilder::new().install_recorder().map_err(std::io::Error::other)?;
    let upkeep = prometheus.clone();
    actix_web::rt::spawn(async move {
        let mut every = actix_web::rt::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });

    let port: u16 = arg("--port").map_or(Ok(8080), |p| p.parse()).map_err(std::io::Error::other)?;
    let node = arg("--node").unwrap_or_else(|| "guest".to_owned());
    static GUESTS: AtomicUsize = AtomicUsize::new(1);
    let room = SessionManager::start_with(|room| {
        move || Member {
            name: format!("{node}-{}", GUESTS.fetch_add(1, Ordering::Relaxed)),
            room: room.clone(),
        }
    });
    let _bridge = match arg("--redis") {
        Some(url) => Some(RedisBridge::new(&url, "chat").map_err(std::io::Error::other)?.start(&room)),
        None => None,
    };

    // Behind a balancer that routes by the JSESSIONID cookie.
    let config = Config::default().cookie_needed(std::env::args().any(|a| a == "--jsessionid"));
    let signal = actix_sockjs::shutdown_signal([room.clone().recipient()]);
    let prometheus = web::Data::new(prometheus);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(prometheus.clone())
            .route("/", web::get().to(page))
            .route("/metrics", web::get().to(metrics))
            .service(SockJs::new("/chat", room.clone()).config(config.clone()))
    })
    .h1_allow_half_closed(false)
    // Close a WebSocket's connection once its closing handshake is done.
    .client_disconnect_timeout(std::time::Duration::ZERO)
    .shutdown_signal(signal)
    .bind(("127.0.0.1", port))?;
    for addr in server.addrs() {
        // The first line on stdout, for scripts and tests that pass `--port 0`.
        println!("listening on http://{addr}");
    }
    server.run().await
}
