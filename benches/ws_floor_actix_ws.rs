//! The second WebSocket floor for the load comparison: actix-web
//! WebSockets without actors (`actix-ws`), no SockJS. `/echo/websocket`
//! sends every text message back; `/broadcast/websocket` sends it to every
//! connected socket, through a shared list of the sockets' sessions.
//!
//! Run: `cargo run --release --example ws_floor_actix_ws -- --port 8092`
//! (prints `listening on http://127.0.0.1:PORT` first; `--port 0` picks one).

#[path = "support/serve.rs"]
mod serve;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actix_ws::{Message, Session};

type Members = Arc<Mutex<HashMap<u64, Session>>>;

async fn echo(req: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
    let (response, mut session, mut messages) = actix_ws::handle(&req, body)?;
    actix_web::rt::spawn(async move {
        while let Some(Ok(msg)) = messages.recv().await {
            let sent = match msg {
                Message::Text(text) => session.text(text).await,
                Message::Ping(bytes) => session.pong(&bytes).await,
                Message::Close(reason) => {
                    let _ = session.close(reason).await;
                    return;
                }
                _ => Ok(()),
            };
            if sent.is_err() {
                return;
            }
        }
    });
    Ok(response)
}

async fn broadcast(
    req: HttpRequest,
    body: web::Payload,
    members: web::Data<Members>,
) -> actix_web::Result<HttpResponse> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let (response, mut session, mut messages) = actix_ws::handle(&req, body)?;
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let members = members.get_ref().clone();
    members.lock().unwrap_or_else(PoisonError::into_inner).insert(id, session.clone());
    actix_web::rt::spawn(async move {
        while let Some(Ok(msg)) = messages.recv().await {
            match msg {
                Message::Text(text) => {
                    let everyone: Vec<Session> =
                        members.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
                    for mut member in everyone {
                        let _ = member.text(text.clone()).await;
                    }
                }
                Message::Ping(bytes) => {
                    let _ = session.pong(&bytes).await;
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        members.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        let _ = session.close(None).await;
    });
    Ok(response)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port = serve::port(8092);
    let members = web::Data::new(Members::default());
    let server = HttpServer::new(move || {
        serve::shift_heap();
        App::new()
            .app_data(members.clone())
            .route("/echo/websocket", web::get().to(echo))
            .route("/broadcast/websocket", web::get().to(broadcast))
    })
    .backlog(4096)
    .max_connections(100_000)
    .bind(("127.0.0.1", port))?;
    serve::announce(&server.addrs());
    server.run().await
}
