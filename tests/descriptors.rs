//! `on_connect` keeps a duplicate descriptor of every connection to watch
//! HTTP receivers; a WebSocket upgrade must give it back. This counts the
//! test process's own descriptors, so it runs alone in its own binary.

mod common;

use std::{sync::mpsc, thread};

use actix::prelude::*;
use actix_sockjs::{SessionManager, SockJs};
use actix_web::{App, HttpServer};
use common::*;

#[test]
fn a_websocket_gives_back_on_connects_duplicate() {
    let (ready_tx, ready) = mpsc::channel();
    thread::spawn(move || {
        let sys = actix::System::new();
        sys.block_on(async move {
            let manager = SessionManager::new(|| Echo).start();
            let server = HttpServer::new(move || App::new().service(SockJs::new("/echo", manager.clone())))
                .workers(2)
                .on_connect(actix_sockjs::on_connect)
                .bind(("127.0.0.1", 0))
                .expect("bind");
            ready_tx.send(server.addrs()[0].port()).expect("ready");
            let _ = server.run().await;
        });
    });
    let port = ready.recv_timeout(READ_TIMEOUT).expect("server started");
    let websocket = || open_websocket(port, "/echo");
    let stream = || open_xhr_stream(port, "/echo");
    // The first connections also make the workers open what they keep.
    let warm: Vec<_> = (0..10).map(|_| (websocket(), stream())).collect();

    let before = open_descriptors("self");
    let sockets: Vec<_> = (0..100).map(|_| websocket()).collect();
    let added = open_descriptors("self").saturating_sub(before);
    // The client's and the server's socket each; with the duplicate kept, 300.
    assert!((200..250).contains(&added), "100 WebSockets took {added} descriptors");

    // So must a hixie-76 one (an audit: it kept it).
    let before = open_descriptors("self");
    let hixie: Vec<_> = (0..100)
        .map(|_| {
            let (mut conn, head) = hixie76_request(port, &format!("/echo/000/{}/websocket", session()));
            assert_eq!(head.status, 101);
            conn.write(b"aaaaaaaa");
            conn.read_exact(16);
            assert_eq!(conn.read_exact(3), b"\x00o\xff");
            conn
        })
        .collect();
    let added = open_descriptors("self").saturating_sub(before);
    assert!((200..250).contains(&added), "100 hixie-76 sockets took {added} descriptors");

    // An HTTP receiver keeps its duplicate: that is what on_connect is for.
    let before = open_descriptors("self");
    let streams: Vec<_> = (0..100).map(|_| stream()).collect();
    let added = open_descriptors("self").saturating_sub(before);
    assert!((300..350).contains(&added), "100 streams took {added} descriptors");
    drop((warm, sockets, hixie, streams));
}
