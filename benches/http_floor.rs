//! The polling floor for the load comparison: plain actix-web handlers for
//! the two requests of an xhr-polling echo, no SockJS. `POST
//! /echo/{server}/{session}/xhr` opens a session (`o`) or answers what is
//! queued (`a[...]`), waiting for the next send when nothing is; `POST
//! .../xhr_send` parses the body with serde_json, queues each message back
//! (an echo), wakes a waiting poll and answers 204. A map of session queues
//! behind one mutex, a oneshot per waiting poll, serde_json for the frames.
//!
//! Run: `cargo run --release --example http_floor -- --port 8091` (prints
//! `listening on http://127.0.0.1:PORT` first; `--port 0` picks one).

#[path = "support/serve.rs"]
mod serve;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use actix_web::{http::header, web, App, HttpResponse, HttpServer};
use tokio::sync::oneshot;

#[derive(Default)]
struct Queue {
    messages: Vec<String>,
    waiting: Option<oneshot::Sender<()>>,
}

type Sessions = Arc<Mutex<HashMap<String, Queue>>>;

fn frame(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/javascript; charset=UTF-8"))
        .body(body)
}

fn messages_frame(messages: &[String]) -> HttpResponse {
    let json = serde_json::to_string(messages).unwrap_or_default();
    frame(format!("a{json}\n"))
}

async fn poll(path: web::Path<(String, String)>, sessions: web::Data<Sessions>) -> HttpResponse {
    let (_, id) = path.into_inner();
    let wait = {
        let mut map = sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(queue) = map.get_mut(&id) else {
            map.insert(id, Queue::default());
            return frame("o\n".to_owned());
        };
        if !queue.messages.is_empty() {
            return messages_frame(&std::mem::take(&mut queue.messages));
        }
        let (tx, rx) = oneshot::channel();
        queue.waiting = Some(tx);
        rx
    };
    let _ = tokio::time::timeout(Duration::from_secs(25), wait).await;
    let mut map = sessions.lock().unwrap_or_else(PoisonError::into_inner);
    match map.get_mut(&id) {
        Some(queue) if !queue.messages.is_empty() => messages_frame(&std::mem::take(&mut queue.messages)),
        _ => frame("h\n".to_owned()),
    }
}

async fn send(
    path: web::Path<(String, String)>,
    body: web::Bytes,
    sessions: web::Data<Sessions>,
) -> HttpResponse {
    let (_, id) = path.into_inner();
    let Ok(messages) = serde_json::from_slice::<Vec<String>>(&body) else {
        return HttpResponse::InternalServerError().body("Broken JSON encoding.");
    };
    let mut map = sessions.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(queue) = map.get_mut(&id) else { return HttpResponse::NotFound().finish() };
    queue.messages.extend(messages);
    if let Some(waiting) = queue.waiting.take() {
        let _ = waiting.send(());
    }
    HttpResponse::NoContent().finish()
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port = serve::port(8091);
    let sessions = web::Data::new(Sessions::default());
    let server = HttpServer::new(move || {
        serve::shift_heap();
        App::new()
            .app_data(sessions.clone())
            .route("/echo/{server}/{session}/xhr", web::post().to(poll))
            .route("/echo/{server}/{session}/xhr_send", web::post().to(send))
    })
    .backlog(4096)
    .max_connections(100_000)
    .bind(("127.0.0.1", port))?;
    serve::announce(&server.addrs());
    server.run().await
}
