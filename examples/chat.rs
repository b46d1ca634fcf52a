//! A chat room: every message goes to everyone in the room.
//!
//! Run `cargo run --example chat` and open `http://127.0.0.1:8080/` in two
//! browser windows. The page loads sockjs-client 1.6.1 from a CDN, so the
//! browser needs internet access (the server does not).

use std::sync::atomic::{AtomicUsize, Ordering};

use actix::prelude::*;
use actix_sockjs::{Broadcast, CloseReason, Session, SessionContext, SessionManager, SockJs};
use actix_web::{web, App, HttpResponse, HttpServer};

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
        ctx.send(format!("welcome, you are {}", self.name));
        self.room.do_send(Broadcast::text(format!("{} joined", self.name)));
    }

    fn on_message(&mut self, msg: String, _ctx: &mut SessionContext<Self>) {
        self.room.do_send(Broadcast::text(format!("{}: {msg}", self.name)));
    }

    fn on_close(&mut self, _reason: CloseReason, _ctx: &mut SessionContext<Self>) {
        self.room.do_send(Broadcast::text(format!("{} left", self.name)));
    }
}

async fn page() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=UTF-8").body(include_str!("chat.html"))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    static GUESTS: AtomicUsize = AtomicUsize::new(1);
    let room = SessionManager::start_with(|room| {
        move || Member {
            name: format!("guest-{}", GUESTS.fetch_add(1, Ordering::Relaxed)),
            room: room.clone(),
        }
    });
    log::info!("chat on http://127.0.0.1:8080/");
    let signal = actix_sockjs::shutdown_signal([room.clone().recipient()]);
    HttpServer::new(move || {
        App::new().route("/", web::get().to(page)).service(SockJs::new("/chat", room.clone()))
    })
    .on_connect(actix_sockjs::on_connect)
    .shutdown_signal(signal)
    .bind(("127.0.0.1", 8080))?
    .run()
    .await
}
