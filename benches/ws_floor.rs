//! The floor for the load comparison: plain actix-web + actix-web-actors
//! WebSocket servers, no SockJS. `/echo/websocket` sends every text message
//! back as is; `/broadcast/websocket` sends it to every connected socket,
//! through a hub actor, as an idiomatic actix chat would.
//!
//! Run: `cargo run --release --example ws_floor -- --port 8090` (prints
//! `listening on http://127.0.0.1:PORT` first; `--port 0` picks one).

#[path = "support/serve.rs"]
mod serve;

use std::collections::HashMap;

use actix::{fut::ActorFutureExt, Actor, Addr, AsyncContext, Context, Handler, Message, StreamHandler};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actix_web_actors::ws;

struct Echo;

impl Actor for Echo {
    type Context = ws::WebsocketContext<Self>;
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Echo {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match msg {
            Ok(ws::Message::Text(text)) => ctx.text(text),
            Ok(ws::Message::Ping(p)) => ctx.pong(&p),
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                actix::ActorContext::stop(ctx);
            }
            _ => {}
        }
    }
}

async fn echo(req: HttpRequest, stream: web::Payload) -> Result<HttpResponse, actix_web::Error> {
    ws::start(Echo, &req, stream)
}

/// Every member of the broadcast room.
#[derive(Default)]
struct Hub {
    members: HashMap<u64, Addr<Member>>,
    next: u64,
}

impl Actor for Hub {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "u64")]
struct Join(Addr<Member>);

#[derive(Message)]
#[rtype(result = "()")]
struct Leave(u64);

/// A text for everyone (from a member) or for one member (from the hub).
#[derive(Message, Clone)]
#[rtype(result = "()")]
struct Text(std::sync::Arc<str>);

impl Handler<Join> for Hub {
    type Result = u64;

    fn handle(&mut self, msg: Join, _: &mut Context<Self>) -> u64 {
        self.next += 1;
        self.members.insert(self.next, msg.0);
        self.next
    }
}

impl Handler<Leave> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) {
        self.members.remove(&msg.0);
    }
}

impl Handler<Text> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Text, _: &mut Context<Self>) {
        for member in self.members.values() {
            member.do_send(msg.clone());
        }
    }
}

struct Member {
    hub: Addr<Hub>,
    id: Option<u64>,
}

impl Actor for Member {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let join = self.hub.send(Join(ctx.address()));
        ctx.wait(actix::fut::wrap_future(join).map(|id, act: &mut Self, _| act.id = id.ok()));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(id) = self.id {
            self.hub.do_send(Leave(id));
        }
    }
}

impl Handler<Text> for Member {
    type Result = ();

    fn handle(&mut self, msg: Text, ctx: &mut Self::Context) {
        ctx.text(&*msg.0);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Member {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match msg {
            Ok(ws::Message::Text(text)) => self.hub.do_send(Text(std::sync::Arc::from(&*text))),
            Ok(ws::Message::Ping(p)) => ctx.pong(&p),
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                actix::ActorContext::stop(ctx);
            }
            _ => {}
        }
    }
}

async fn broadcast(
    req: HttpRequest,
    stream: web::Payload,
    hub: web::Data<Addr<Hub>>,
) -> Result<HttpResponse, actix_web::Error> {
    ws::start(Member { hub: hub.get_ref().clone(), id: None }, &req, stream)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port = serve::port(8090);
    let hub = web::Data::new(Hub::default().start());
    let server = HttpServer::new(move || {
        serve::shift_heap();
        App::new()
            .app_data(hub.clone())
            .route("/echo/websocket", web::get().to(echo))
            .route("/broadcast/websocket", web::get().to(broadcast))
    })
    .backlog(4096)
    .max_connections(100_000)
    .bind(("127.0.0.1", port))?;
    serve::announce(&server.addrs());
    server.run().await
}
