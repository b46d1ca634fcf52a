//! Opens and ends 10,000 sessions across transports and checks that the
//! manager ends empty and every session actor has stopped.

mod common;

use std::{sync::mpsc, thread, time::Duration};

use actix::prelude::*;
use actix_sockjs::{Config, CountSessions, Session, SessionContext, SessionManager, SockJs};
use actix_web::{App, HttpServer};
use common::*;

const SESSIONS: usize = 10_000;
const CLIENT_THREADS: usize = 4;

/// Echoes, and reports when its actor is dropped.
struct Churn {
    dropped: mpsc::Sender<()>,
}

impl Actor for Churn {
    type Context = SessionContext<Self>;
}

impl Session for Churn {
    fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
        ctx.send(msg);
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        let _ = self.dropped.send(());
    }
}

/// One session's life on one transport, ended the way clients end them.
fn one_session(port: u16, n: usize) {
    let id = session();
    match n % 5 {
        // A WebSocket that echoes once and closes.
        0 | 1 => {
            let mut ws = WsClient::connect(port, &format!("/churn/000/{id}/websocket"));
            assert_eq!(ws.recv_text(), "o");
            ws.send_text(r#"["x"]"#);
            assert_eq!(ws.recv_text(), r#"a["x"]"#);
            ws.send_close(1000);
            ws.expect_end();
        }
        // A raw WebSocket dropped without a close frame.
        2 => {
            let mut ws = WsClient::connect(port, "/churn/websocket");
            ws.send_text("y");
            assert_eq!(ws.recv_text(), "y");
        }
        // xhr polling abandoned after one exchange: the disconnect delay ends it.
        3 => {
            assert_eq!(post(port, &format!("/churn/000/{id}/xhr"), "").body, "o\n");
            assert_eq!(post(port, &format!("/churn/000/{id}/xhr_send"), r#"["z"]"#).status(), 204);
            assert_eq!(post(port, &format!("/churn/000/{id}/xhr"), "").body, "a[\"z\"]\n");
        }
        // An xhr_streaming response the client aborts.
        _ => {
            let mut conn = Conn::open(port);
            conn.send("POST", &format!("/churn/000/{id}/xhr_streaming"), &[], Some(b""));
            conn.head();
            conn.chunk();
            assert_eq!(conn.chunk().unwrap(), "o\n");
        }
    }
}

#[test]
fn ten_thousand_sessions_leave_nothing_behind() {
    let (dropped_tx, dropped) = mpsc::channel();
    let (ready_tx, ready) = mpsc::channel();
    thread::spawn(move || {
        actix::System::new().block_on(async move {
            let manager = SessionManager::new(move || Churn { dropped: dropped_tx.clone() }).start();
            let m = manager.clone();
            // An aborted idle stream is noticed at its next write (a
            // heartbeat, every 500 ms here). The disconnect delay is the
            // default 5 s: a polling client's requests follow each other
            // within it however loaded the machine, so an abandoned
            // session ends only when its client is done with it (a 200 ms
            // delay let sessions expire between two requests on a busy
            // two-core machine).
            let config = Config::default().heartbeat(Duration::from_millis(500));
            let server = HttpServer::new(move || {
                App::new().service(SockJs::new("/churn", m.clone()).config(config.clone()))
            })
            .workers(2)
            .backlog(4096)
            .bind(("127.0.0.1", 0))
            .expect("bind");
            ready_tx.send((server.addrs()[0].port(), manager, actix::System::current())).expect("ready");
            let _ = server.run().await;
        });
    });
    let (port, manager, system) = ready.recv_timeout(READ_TIMEOUT).expect("server started");

    let clients: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            thread::spawn(move || (t..SESSIONS).step_by(CLIENT_THREADS).for_each(|n| one_session(port, n)))
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }

    // Every session actor stops: aborted streams and abandoned polls after
    // the disconnect delay, WebSockets when they close.
    for n in 0..SESSIONS {
        dropped
            .recv_timeout(READ_TIMEOUT)
            .unwrap_or_else(|_| panic!("only {n} of {SESSIONS} session actors stopped"));
    }
    // The manager hears of each end; ask until its table is empty.
    let (count_tx, count_rx) = mpsc::channel();
    let remaining = (0..100)
        .map(|_| {
            let (m, tx) = (manager.clone(), count_tx.clone());
            system.arbiter().spawn(async move {
                let _ = tx.send(m.send(CountSessions).await.map_or(usize::MAX, |c| c.total()));
            });
            count_rx.recv_timeout(READ_TIMEOUT).expect("manager answers")
        })
        .find(|&n| n == 0);
    assert_eq!(remaining, Some(0), "the manager still tracks sessions");
    system.stop();
}
