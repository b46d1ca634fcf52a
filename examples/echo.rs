//! The smallest SockJS server: every message comes back.
//!
//! Run `cargo run --example echo`, then point a sockjs-client at
//! `http://127.0.0.1:8080/echo` (for instance from the browser console of a
//! page that loads sockjs-client: `s = new SockJS("http://127.0.0.1:8080/echo");
//! s.onmessage = e => console.log(e.data); s.onopen = () => s.send("hi")`),
//! or open `http://127.0.0.1:8080/echo/info` to see the endpoint answer.
//!
//! Options: `--port N` (or the `PORT` variable; default 8080, 0 picks a free
//! port). The first line on stdout is `listening on http://HOST:PORT`.

use actix::prelude::*;
use actix_sockjs::{CloseCause, Session, SessionContext, SessionManager, SockJs};
use actix_web::{App, HttpServer};

struct Echo;

impl Actor for Echo {
    type Context = SessionContext<Self>;
}

impl Session for Echo {
    fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
        log::info!("session {} opened from {:?}", ctx.session_tag(), ctx.request().peer_addr());
    }

    fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
        ctx.send(msg);
    }

    fn on_close(&mut self, reason: CloseCause, ctx: &mut SessionContext<Self>) {
        log::info!("session {} closed: {reason}", ctx.session_tag());
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    actix_sockjs::log_panics();
    let port = std::env::args().skip_while(|a| a != "--port").nth(1).or_else(|| std::env::var("PORT").ok());
    let port: u16 = port.map_or(Ok(8080), |p| p.parse()).map_err(std::io::Error::other)?;
    let manager = SessionManager::new(|| Echo).start();
    let signal = actix_sockjs::shutdown_signal([manager.clone().recipient()]);
    let server = HttpServer::new(move || App::new().service(SockJs::new("/echo", manager.clone())))
        .h1_allow_half_closed(false)
        // Close a WebSocket's connection once its closing handshake is done.
        .client_disconnect_timeout(std::time::Duration::ZERO)
        // Each frame leaves at once (README: "Nagle's algorithm").
        .tcp_nodelay(true)
        .shutdown_signal(signal)
        // With the 1 s drain, within the 30 s a process manager waits.
        .shutdown_timeout(25)
        .bind(("127.0.0.1", port))?;
    for addr in server.addrs() {
        println!("listening on http://{addr}");
        log::info!("SockJS echo on http://{addr}/echo");
    }
    server.run().await
}
