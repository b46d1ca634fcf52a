//! Our side of the load comparison: an actix-sockjs server with `/echo`
//! (every message back to its sender), `/broadcast` (every message to
//! every session) and `/groups` (every message to the group `g`, which a
//! session opened with `?member=1` joins), default options (128 KiB response limit, unlike
//! `test_server`'s 4 KiB, which the protocol suite asks for).
//!
//! Like the examples it notices aborted long-polls with
//! `h1_allow_half_closed(false)`, not `actix_sockjs::on_connect`, which
//! keeps a duplicate descriptor per HTTP connection.
//!
//! Run: `cargo run --release --example sockjs_bench -- --port 0` (prints
//! `listening on http://127.0.0.1:PORT` first).

#[path = "support/serve.rs"]
mod serve;

use actix::prelude::*;
use actix_sockjs::{Broadcast, Session, SessionContext, SessionManager, SockJs};
use actix_web::{App, HttpServer};

struct Echo;

impl Actor for Echo {
    type Context = SessionContext<Self>;
}

impl Session for Echo {
    fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
        ctx.send(msg);
    }
}

struct Member {
    room: Addr<SessionManager<Member>>,
}

impl Actor for Member {
    type Context = SessionContext<Self>;
}

impl Session for Member {
    fn on_message(&mut self, msg: String, _ctx: &mut SessionContext<Self>) {
        self.room.do_send(Broadcast::text(msg));
    }
}

/// Sends every message to the group `g`; joins it when opened with `?member=1`.
struct Grouped {
    room: Addr<SessionManager<Grouped>>,
}

impl Actor for Grouped {
    type Context = SessionContext<Self>;
}

impl Session for Grouped {
    fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
        if ctx.request().query("member").is_some() {
            ctx.join("g");
        }
    }

    fn on_message(&mut self, msg: String, _ctx: &mut SessionContext<Self>) {
        self.room.do_send(Broadcast::text(msg).group("g"));
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port = serve::port(8083);
    let echo = SessionManager::new(|| Echo).start();
    let room = SessionManager::start_with(|room| move || Member { room: room.clone() });
    let groups = SessionManager::start_with(|room| move || Grouped { room: room.clone() });
    let server = HttpServer::new(move || {
        serve::shift_heap();
        App::new()
            .service(SockJs::new("/echo", echo.clone()))
            .service(SockJs::new("/broadcast", room.clone()))
            .service(SockJs::new("/groups", groups.clone()))
    })
    .h1_allow_half_closed(false)
    .client_disconnect_timeout(std::time::Duration::ZERO)
    .backlog(4096)
    .max_connections(100_000);
    // Nagle's algorithm off, for the load bench's interactive scenario
    // only: every other scenario measures the OS default, as the floors do.
    let server =
        if std::env::var_os("SOCKJS_BENCH_NODELAY").is_some() { server.tcp_nodelay(true) } else { server };
    let server = server.bind(("127.0.0.1", port))?;
    serve::announce(&server.addrs());
    server.run().await
}
