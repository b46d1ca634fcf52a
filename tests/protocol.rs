//! The SockJS protocol, group by group as docs/protocol.md §9 lists it, checked
//! on the wire against `examples/test_server`.

mod common;

use common::*;

const NEVER_CACHE: &str = "no-store, no-cache, no-transform, must-revalidate, max-age=0";

fn content_type(r: &Response) -> String {
    r.header("content-type").unwrap_or_default().replace(' ', "")
}

fn assert_never_cached(r: &Response) {
    assert_eq!(r.header("cache-control"), Some(NEVER_CACHE));
    assert!(r.header("expires").is_none() && r.header("last-modified").is_none());
}

fn assert_cors(r: &Response, origin: Option<&str>) {
    match origin {
        Some(o) => {
            assert_eq!(r.header("access-control-allow-origin"), Some(o));
            assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        }
        None => {
            assert_eq!(r.header("access-control-allow-origin"), Some("*"));
            assert!(r.header("access-control-allow-credentials").is_none());
        }
    }
}

fn assert_405(r: &Response) {
    assert_eq!(r.status(), 405);
    assert!(r.header("content-type").is_none());
    assert!(!r.header("allow").unwrap_or_default().is_empty());
    assert!(r.body.is_empty());
}

fn assert_preflight(port: u16, path: &str, methods: &str) {
    for origin in ["test", "null"] {
        let r = request(
            port,
            "OPTIONS",
            path,
            &[("Origin", origin), ("Access-Control-Request-Method", methods)],
            None,
        );
        assert!(r.status() == 204 || r.status() == 200, "{path}: {}", r.status());
        let cc = r.header("cache-control").unwrap_or_default();
        assert!(cc.contains("public") && cc.contains("max-age=31536000"), "{cc}");
        assert!(r.header("expires").is_some());
        assert!(r.header("access-control-max-age").unwrap().parse::<u64>().unwrap() > 1_000_000);
        for m in methods.split(',') {
            assert!(r.header("access-control-allow-methods").unwrap().contains(m.trim()));
        }
        assert!(r.body.is_empty());
        assert_cors(&r, Some(origin));
    }
}

// BaseUrlGreeting

#[test]
fn greeting_and_not_found() {
    let s = TestServer::start();
    for path in ["/echo", "/echo/"] {
        let r = get(s.port, path);
        assert_eq!(r.status(), 200);
        assert_eq!(content_type(&r), "text/plain;charset=UTF-8");
        assert_eq!(r.body, "Welcome to SockJS!\n");
        assert!(r.header("set-cookie").is_none());
    }
    for suffix in ["/a", "/a.html", "//", "///", "/a/a", "/a/a/", "/a/"] {
        assert_eq!(get(s.port, &format!("/echo{suffix}")).status(), 404, "{suffix}");
    }
}

// IframePage

#[test]
fn iframe_page() {
    let s = TestServer::start();
    let mut etags = Vec::new();
    for suffix in [
        "/iframe.html",
        "/iframe-a.html",
        "/iframe-.html",
        "/iframe-0.1.2.html",
        "/iframe-0.1.2abc-dirty.2144.html",
        "/iframe-a.html?t=1234",
        "/iframe-0.1.2abc-dirty.2144.html?t=qweqweq123",
    ] {
        let r = get(s.port, &format!("/echo{suffix}"));
        assert_eq!(r.status(), 200, "{suffix}");
        assert_eq!(content_type(&r), "text/html;charset=UTF-8");
        let cc = r.header("cache-control").unwrap();
        assert!(cc.contains("public") && cc.contains("max-age=31536000"));
        assert!(r.header("expires").is_some() && r.header("last-modified").is_none());
        assert!(r.header("set-cookie").is_none());
        let body = r.body.trim();
        assert!(body.starts_with("<!DOCTYPE html>\n<html>\n<head>\n"));
        assert!(body.contains("  <script src=\"/static/sockjs.js\"></script>\n  <script>\n    document.domain = document.domain;\n    SockJS.bootstrap_iframe();\n  </script>\n"));
        assert!(body.ends_with("</body>\n</html>"));
        etags.push(r.header("etag").unwrap().to_owned());
    }
    assert!(etags.windows(2).all(|w| w[0] == w[1]));
    let r = request(s.port, "GET", "/echo/iframe.html", &[("If-None-Match", &etags[0])], None);
    assert_eq!(r.status(), 304);
    assert!(r.header("content-type").is_none());
    assert!(r.body.is_empty());
    for suffix in
        ["/iframe.htm", "/iframe", "/IFRAME.HTML", "/IFRAME", "/iframe.HTML", "/iframe.xml", "/iframe-/.html"]
    {
        assert_eq!(get(s.port, &format!("/echo{suffix}")).status(), 404, "{suffix}");
    }
}

// InfoTest

#[test]
fn info() {
    let s = TestServer::start();
    let r = request(s.port, "GET", "/echo/info", &[("Origin", "test")], None);
    assert_eq!(r.status(), 200);
    assert_eq!(content_type(&r), "application/json;charset=UTF-8");
    assert!(r.header("set-cookie").is_none());
    assert_never_cached(&r);
    assert_cors(&r, Some("test"));
    let a: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(a["websocket"], true);
    assert_eq!(a["cookie_needed"], false);
    assert_eq!(a["origins"], serde_json::json!(["*:*"]));
    let b: serde_json::Value = serde_json::from_str(&get(s.port, "/echo/info").body).unwrap();
    assert!(a["entropy"].is_u64() && b["entropy"].is_u64());
    assert_ne!(a["entropy"], b["entropy"]);
    assert_preflight(s.port, "/echo/info", "OPTIONS, GET");
    let r = request(
        s.port,
        "OPTIONS",
        "/echo/info",
        &[("Origin", "null"), ("Access-Control-Request-Method", "POST")],
        None,
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("null"));
    let off: serde_json::Value =
        serde_json::from_str(&get(s.port, "/disabled_websocket_echo/info").body).unwrap();
    assert_eq!(off["websocket"], false);
    let cookie = get(s.port, "/cookie_needed_echo/info");
    assert!(cookie.header("set-cookie").is_none());
    assert_eq!(serde_json::from_str::<serde_json::Value>(&cookie.body).unwrap()["cookie_needed"], true);
}

// SessionURLs

#[test]
fn session_urls() {
    let s = TestServer::start();
    let id = session();
    for prefix in ["/a/a", "/_/_", "/1/", "/abcdefgh_i-j%20/abcdefg_i-j%20"] {
        let r = post(s.port, &format!("/echo{prefix}{id}/xhr"), "");
        assert_eq!((r.status(), r.body.as_str()), (200, "o\n"), "{prefix}");
    }
    for suffix in ["//", "/a./a", "/a/a.", "/./.", "/", "///"] {
        let path = format!("/echo{suffix}/xhr");
        assert_eq!(get(s.port, &path).status(), 404, "GET {path}");
        assert_eq!(post(s.port, &path, "").status(), 404, "POST {path}");
    }
    let id = session();
    assert_eq!(post(s.port, &format!("/echo/000/{id}/xhr"), "").body, "o\n");
    let r = post(s.port, &format!("/echo/000/{id}/xhr_send"), r#"["a"]"#);
    assert_eq!((r.status(), r.body.as_str()), (204, ""));
    assert_eq!(post(s.port, &format!("/echo/999/{id}/xhr"), "").body, "a[\"a\"]\n");
}

// Protocol

#[test]
fn simple_session_and_second_receiver() {
    let s = TestServer::start();
    let url = format!("/echo/000/{}", session());
    assert_eq!(post(s.port, &format!("{url}/xhr"), "").body, "o\n");
    assert_eq!(post(s.port, &format!("{url}/xhr_send"), r#"["a"]"#).status(), 204);
    assert_eq!(post(s.port, &format!("{url}/xhr"), "").body, "a[\"a\"]\n");
    assert_eq!(post(s.port, "/echo/000/bad_session/xhr_send", r#"["a"]"#).status(), 404);

    // A long-poll stays attached; a second one is refused with 2010.
    let mut first = Conn::open(s.port);
    first.send("POST", &format!("{url}/xhr"), &[], Some(b""));
    std::thread::sleep(std::time::Duration::from_millis(250)); // the suite's own pacing
    let second = post(s.port, &format!("{url}/xhr"), "");
    assert_eq!((second.status(), second.body.as_str()), (200, "c[2010,\"Another connection still open\"]\n"));
    // The first poll still works and gets the next message.
    assert_eq!(post(s.port, &format!("{url}/xhr_send"), r#"["b"]"#).status(), 204);
    assert_eq!(first.response("POST").body, "a[\"b\"]\n");
}

#[test]
fn close_session_repeats_the_close_frame() {
    let s = TestServer::start();
    let url = format!("/close/000/{}/xhr", session());
    assert_eq!(post(s.port, &url, "").body, "o\n");
    for _ in 0..2 {
        let r = post(s.port, &url, "");
        assert_eq!((r.status(), r.body.as_str()), (200, "c[3000,\"Go away!\"]\n"));
    }
}

// WebsocketHttpErrors

#[test]
fn websocket_http_errors() {
    let s = TestServer::start();
    assert_eq!(get(s.port, "/echo/0/0/websocket").status(), 400);
    let r = request(
        s.port,
        "GET",
        "/echo/0/0/websocket",
        &[("Upgrade", "WebSocket"), ("Connection", "close")],
        None,
    );
    assert_eq!(r.status(), 400);
    assert_405(&post(s.port, "/echo/0/0/websocket", ""));
    let r = request(
        s.port,
        "POST",
        "/echo/0/0/websocket",
        &[
            ("Upgrade", "WebSocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "x3JJHMbDL1EzLkh9GBhXDw=="),
        ],
        Some(b""),
    );
    assert_405(&r);
    assert_eq!(get(s.port, "/disabled_websocket_echo/0/0/websocket").status(), 404);
    assert_eq!(get(s.port, "/disabled_websocket_echo/websocket").status(), 404);
}

/// The WebSocket handshake reads its headers as RFC 6455 does (and
/// actix-web-actors, whose errors name what is wrong): in any case, a
/// token among others, over several `Connection` headers, versions 13, 8
/// and 7; and answers 400 to anything else.
#[test]
fn websocket_handshake_headers_are_read_as_tokens() {
    let s = TestServer::start();
    let key = ("Sec-WebSocket-Key", "x3JJHMbDL1EzLkh9GBhXDw==");
    let accepted: [&[(&str, &str)]; 3] = [
        &[
            ("Upgrade", "WebSocket"),
            ("Connection", "keep-alive, Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            key,
        ],
        &[
            ("Upgrade", "websocket"),
            ("Connection", "keep-alive"),
            ("Connection", "upgrade"),
            ("Sec-WebSocket-Version", "8"),
            key,
        ],
        &[("Upgrade", "h2c, WEBSOCKET"), ("Connection", " UPGRADE "), ("Sec-WebSocket-Version", "7"), key],
    ];
    for headers in accepted {
        let mut conn = Conn::open(s.port);
        conn.send("GET", &format!("/echo/000/{}/websocket", session()), headers, None);
        let head = conn.head();
        assert_eq!(head.status, 101, "{headers:?}");
        assert_eq!(head.header("sec-websocket-accept"), Some("HSmrc0sMlYUkAGmm5OPpG2HaGWk="), "{headers:?}");
    }
    let refused: [(&[(&str, &str)], &str); 6] = [
        (
            &[("Upgrade", "h2c"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13"), key],
            "WebSocket upgrade is expected",
        ),
        (
            &[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade, close"),
                ("Sec-WebSocket-Version", "13"),
                key,
            ],
            "connection upgrade is expected",
        ),
        (
            &[("Upgrade", "websocket"), ("Connection", "keep-alive"), ("Sec-WebSocket-Version", "13"), key],
            "connection upgrade is expected",
        ),
        (&[("Upgrade", "websocket"), ("Connection", "Upgrade"), key], "WebSocket version header is required"),
        (
            &[("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "12"), key],
            "unsupported WebSocket version",
        ),
        (
            &[("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13")],
            "unknown WebSocket key",
        ),
    ];
    for (headers, why) in refused {
        let r = request(s.port, "GET", &format!("/echo/000/{}/websocket", session()), headers, None);
        assert_eq!(
            (r.status(), r.body.as_str()),
            (400, format!("Not a valid websocket request: {why}").as_str()),
            "{headers:?}"
        );
    }
}

// Websocket

#[test]
fn websocket_transport() {
    let s = TestServer::start();
    let mut ws = WsClient::connect(s.port, &format!("/echo/000/{}/websocket", session()));
    assert_eq!(ws.head.header("sec-websocket-accept"), Some("HSmrc0sMlYUkAGmm5OPpG2HaGWk="));
    assert_eq!(ws.head.header("connection").map(str::to_ascii_lowercase).as_deref(), Some("upgrade"));
    assert_eq!(ws.head.header("upgrade").map(str::to_ascii_lowercase).as_deref(), Some("websocket"));
    assert!(ws.head.header("content-length").is_none());
    assert!(ws.head.header("content-type").is_none(), "a 101 answer has no body to describe");
    assert_eq!(ws.recv_text(), "o");
    ws.send_text(r#"["a"]"#);
    assert_eq!(ws.recv_text(), r#"a["a"]"#);
    // Empty messages and empty arrays are ignored; a single string is one message.
    ws.send_text("");
    ws.send_text("[]");
    ws.send_text(r#""b""#);
    assert_eq!(ws.recv_text(), r#"a["b"]"#);
    ws.send_text(r#"["x","\u2028"]"#);
    assert_eq!(ws.recv_text(), r#"a["x","\u2028"]"#);
}

#[test]
fn websocket_close_and_broken_json() {
    let s = TestServer::start();
    let mut ws = WsClient::connect(s.port, &format!("/close/000/{}/websocket", session()));
    assert_eq!(ws.recv_text(), "o");
    assert_eq!(ws.recv_text(), r#"c[3000,"Go away!"]"#);
    ws.expect_end();

    let mut ws = WsClient::connect(s.port, &format!("/echo/000/{}/websocket", session()));
    assert_eq!(ws.recv_text(), "o");
    ws.send_text(r#"["a"#);
    ws.expect_end();
}

#[test]
fn a_websocket_whose_client_never_answers_the_close_frame_still_ends() {
    // After its close frame the server reads on until the client's (RFC
    // 6455 §7.1.1), so that it does not reset a connection with the
    // client's frames unread; but not for ever: a client that neither
    // answers nor closes has its connection ended (after a second).
    let s = TestServer::start();
    let mut ws = WsClient::connect(s.port, &format!("/close/000/{}/websocket", session()));
    assert_eq!(ws.recv_text(), "o");
    assert_eq!(ws.recv_text(), r#"c[3000,"Go away!"]"#);
    assert!(matches!(ws.recv(), Ws::Close(..)));
    assert!(ws.ends_within(READ_TIMEOUT), "the connection outlived the wait for the client's close frame");
}

#[test]
fn a_closed_websocket_ends_its_connection_at_once() {
    // After the closing handshake the server closes the TCP connection
    // itself, as sockjs-node does, without waiting for the client (which
    // waits for the server). actix-web would otherwise hold it for its
    // client disconnect timeout, 0.5 to 1 s; the bound here is under that
    // floor and far above what closing takes.
    let s = TestServer::start();
    let limit = std::time::Duration::from_millis(400);
    // The client closes.
    let mut ws = WsClient::connect(s.port, &format!("/echo/000/{}/websocket", session()));
    assert_eq!(ws.recv_text(), "o");
    ws.send_close(1000);
    assert!(matches!(ws.recv(), Ws::Close(Some(1000), _)));
    assert!(ws.ends_within(limit), "the connection outlived the closing handshake initiated by the client");
    // The session closes.
    let mut ws = WsClient::connect(s.port, &format!("/close/000/{}/websocket", session()));
    assert_eq!(ws.recv_text(), "o");
    assert_eq!(ws.recv_text(), r#"c[3000,"Go away!"]"#);
    assert!(matches!(ws.recv(), Ws::Close(..)));
    ws.send_close(1000);
    assert!(ws.ends_within(limit), "the connection outlived the closing handshake initiated by the server");
}

#[test]
fn test_server_prints_its_usage() {
    let exe = example_binary("test_server", &[]);
    let out = std::process::Command::new(&exe).arg("--help").output().expect("run test_server --help");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "--help failed: {out:?}");
    assert!(text.starts_with("Usage: test_server") && text.contains("--port"), "{text}");
    let out = std::process::Command::new(&exe).arg("--bogus").output().expect("run test_server --bogus");
    assert!(!out.status.success(), "an unknown option is an error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--help lists them"));
}

#[test]
fn websocket_sessions_are_not_shared() {
    let s = TestServer::start();
    let url = format!("/echo/000/{}/websocket", session());
    let mut a = WsClient::connect(s.port, &url);
    let mut b = WsClient::connect(s.port, &url);
    assert_eq!(a.recv_text(), "o");
    assert_eq!(b.recv_text(), "o");
    a.send_text(r#"["a"]"#);
    b.send_text(r#"["b"]"#);
    assert_eq!(a.recv_text(), r#"a["a"]"#);
    assert_eq!(b.recv_text(), r#"a["b"]"#);
    a.send_close(1000);
    a.expect_end();
    b.send_close(1000);
    b.expect_end();
    let mut c = WsClient::connect(s.port, &url);
    assert_eq!(c.recv_text(), "o");
    c.send_text(r#"["c"]"#);
    assert_eq!(c.recv_text(), r#"a["c"]"#);
}

#[test]
fn websocket_hixie76_handshake() {
    let s = TestServer::start();
    let path = format!("/echo/000/{}/websocket", session());
    let (mut conn, head) = hixie76_request(s.port, &path);
    assert_eq!(head.status, 101);
    assert_eq!(head.header("connection").map(str::to_ascii_lowercase).as_deref(), Some("upgrade"));
    assert_eq!(head.header("upgrade").map(str::to_ascii_lowercase).as_deref(), Some("websocket"));
    assert_eq!(head.header("sec-websocket-location"), Some(format!("ws://127.0.0.1{path}").as_str()));
    assert_eq!(head.header("sec-websocket-origin"), Some("http://127.0.0.1:8081"));
    assert!(head.header("content-length").is_none());
    assert!(head.header("content-type").is_none());
    conn.write(b"aaaaaaaa");
    let digest: String = conn.read_exact(16).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(digest, "ca3400d8a50847972cd5715ababf437b");
    assert_eq!(conn.read_exact(3), b"\x00o\xff");
    conn.write(b"\x00[\"hi\"]\xff");
    assert_eq!(conn.read_exact(9), b"\x00a[\"hi\"]\xff");
}

#[test]
fn websocket_hixie76_echoes_many_frames() {
    // The handshake's 16-byte answer once made the session's count of
    // unread bytes wrap below zero, so that the first message after `o`
    // closed the session with c[3008,"Outgoing queue overflow"].
    let s = TestServer::start();
    let (mut conn, head) = hixie76_request(s.port, &format!("/echo/000/{}/websocket", session()));
    assert_eq!(head.status, 101);
    conn.write(b"aaaaaaaa");
    conn.read_exact(16);
    assert_eq!(conn.read_exact(3), b"\x00o\xff");
    let frame = |text: String| [&[0u8][..], text.as_bytes(), &[0xff]].concat();
    for i in 0..20 {
        conn.write(&frame(format!("[\"m{i:02}\"]")));
        let echo = frame(format!("a[\"m{i:02}\"]"));
        assert_eq!(conn.read_exact(echo.len()), echo, "message {i}");
    }
    // A frame in one-byte pieces, after bytes that are no frame: the
    // garbage is dropped, the frame read whole.
    let sent = [&b"junk"[..], &frame(r#"["pieces"]"#.into())].concat();
    for byte in sent.chunks(1) {
        conn.write(byte);
    }
    let echo = frame(r#"a["pieces"]"#.into());
    assert_eq!(conn.read_exact(echo.len()), echo);
}

#[test]
fn websocket_hixie76_bad_frames_end_the_connection() {
    // Broken JSON, and a frame never ended with 0xFF past the message size
    // limit (1 MiB), close the session and its connection; the server keeps
    // no more than one message's worth of an unfinished frame.
    let s = TestServer::start();
    let endless = [&b"\x00[\""[..], &vec![b'x'; 2 << 20]].concat();
    for (what, sent) in [("broken JSON", b"\x00[\"hi\xff".to_vec()), ("an endless frame", endless)] {
        let (mut conn, head) = hixie76_request(s.port, &format!("/echo/000/{}/websocket", session()));
        assert_eq!(head.status, 101);
        conn.write(b"aaaaaaaa");
        conn.read_exact(16 + 3);
        // The server may close while this is still being written.
        let _ = conn.try_write(&sent);
        assert!(conn.wait_closed(), "{what}: the connection stays open");
    }
}

// XhrPolling

#[test]
fn xhr_polling() {
    let s = TestServer::start();
    for path in ["/echo/abc/abc/xhr", "/echo/abc/abc/xhr_send", "/echo/abc/abc/xhr_streaming"] {
        assert_preflight(s.port, path, "OPTIONS, POST");
    }
    let url = format!("/echo/000/{}", session());
    let r = request(s.port, "POST", &format!("{url}/xhr"), &[("Origin", "test")], Some(b""));
    assert_eq!((r.status(), r.body.as_str()), (200, "o\n"));
    assert_eq!(content_type(&r), "application/javascript;charset=UTF-8");
    assert_cors(&r, Some("test"));
    assert_never_cached(&r);
    let r = request(s.port, "POST", &format!("{url}/xhr_send"), &[("Origin", "test")], Some(br#"["x"]"#));
    assert_eq!((r.status(), r.body.as_str()), (204, ""));
    assert_eq!(content_type(&r), "text/plain;charset=UTF-8");
    assert_cors(&r, Some("test"));
    assert_never_cached(&r);
    assert_eq!(post(s.port, &format!("{url}/xhr"), "").body, "a[\"x\"]\n");
    assert_eq!(post(s.port, &format!("/echo/000/{}/xhr_send", session()), r#"["x"]"#).status(), 404);
}

#[test]
fn xhr_send_errors_and_content_types() {
    let s = TestServer::start();
    let url = format!("/echo/000/{}", session());
    assert_eq!(post(s.port, &format!("{url}/xhr"), "").body, "o\n");
    let r = post(s.port, &format!("{url}/xhr_send"), r#"["x"#);
    assert_eq!(r.status(), 500);
    assert!(r.body.contains("Broken JSON encoding."));
    let r = post(s.port, &format!("{url}/xhr_send"), "");
    assert_eq!(r.status(), 500);
    assert!(r.body.contains("Payload expected."));
    assert_eq!(post(s.port, &format!("{url}/xhr_send"), "[]").status(), 204);
    for ct in [
        "text/plain",
        "T",
        "application/json",
        "application/xml",
        "",
        "application/json; charset=utf-8",
        "text/xml; charset=utf-8",
        "text/xml",
    ] {
        let r =
            request(s.port, "POST", &format!("{url}/xhr_send"), &[("Content-Type", ct)], Some(br#"["a"]"#));
        assert_eq!((r.status(), r.body.as_str()), (204, ""), "{ct:?}");
    }
    assert_eq!(post(s.port, &format!("{url}/xhr"), "").body, format!("a[{}]\n", ["\"a\""; 8].join(",")));
    // A broken payload to an unknown session is still a 500: parse before lookup.
    assert_eq!(post(s.port, "/echo/000/nobody/xhr_send", "[").status(), 500);
}

#[test]
fn request_headers_cors() {
    let s = TestServer::start();
    let path = "/echo/000/abc/xhr";
    let r = request(
        s.port,
        "OPTIONS",
        path,
        &[("Origin", "test"), ("Access-Control-Request-Headers", "a, b, c")],
        None,
    );
    assert_eq!(r.header("access-control-allow-headers"), Some("a, b, c"));
    assert_cors(&r, Some("test"));
    let r =
        request(s.port, "OPTIONS", path, &[("Origin", "test"), ("Access-Control-Request-Headers", "")], None);
    assert!(r.header("access-control-allow-headers").unwrap_or_default().is_empty());
    let r = request(s.port, "OPTIONS", path, &[("Origin", "test")], None);
    assert!(r.header("access-control-allow-headers").is_none());
}

#[test]
fn post_without_content_length_is_an_empty_body() {
    let s = TestServer::start();
    let mut conn = Conn::open(s.port);
    conn.write(format!("POST /echo/000/{}/xhr HTTP/1.1\r\nHost: x\r\n\r\n", session()).as_bytes());
    let r = conn.response("POST");
    assert_eq!((r.status(), r.body.as_str()), (200, "o\n"));
}

// XhrStreaming

fn xhr_streaming_prelude(conn: &mut Conn) -> Head {
    let head = conn.head();
    assert_eq!(head.status, 200);
    assert_eq!(conn.chunk().unwrap(), format!("{}\n", "h".repeat(2048)));
    head
}

#[test]
fn xhr_streaming_transport() {
    let s = TestServer::start();
    let url = format!("/echo/000/{}", session());
    let mut conn = Conn::open(s.port);
    conn.send("POST", &format!("{url}/xhr_streaming"), &[("Origin", "test")], Some(b""));
    let head = xhr_streaming_prelude(&mut conn);
    assert_eq!(head.header("content-type").unwrap().replace(' ', ""), "application/javascript;charset=UTF-8");
    assert_eq!(head.header("access-control-allow-origin"), Some("test"));
    assert_eq!(head.header("cache-control"), Some(NEVER_CACHE));
    assert!(head.chunked());
    assert_eq!(conn.chunk().unwrap(), "o\n");
    assert_eq!(post(s.port, &format!("{url}/xhr_send"), r#"["x"]"#).status(), 204);
    assert_eq!(conn.chunk().unwrap(), "a[\"x\"]\n");
}

#[test]
fn xhr_streaming_response_limit() {
    let s = TestServer::start();
    let url = format!("/echo/000/{}", session());
    let mut conn = Conn::open(s.port);
    conn.send("POST", &format!("{url}/xhr_streaming"), &[], Some(b""));
    xhr_streaming_prelude(&mut conn);
    assert_eq!(conn.chunk().unwrap(), "o\n");
    let msg = "x".repeat(128);
    for _ in 0..31 {
        assert_eq!(post(s.port, &format!("{url}/xhr_send"), &format!("[\"{msg}\"]")).status(), 204);
        assert_eq!(conn.chunk().unwrap(), format!("a[\"{msg}\"]\n"));
    }
    assert_eq!(conn.chunk(), None, "the response ends after the 31st message");
    // The session lives on: a new stream carries on without a second `o`.
    assert_eq!(post(s.port, &format!("{url}/xhr_send"), r#"["y"]"#).status(), 204);
    let mut conn = Conn::open(s.port);
    conn.send("POST", &format!("{url}/xhr_streaming"), &[], Some(b""));
    xhr_streaming_prelude(&mut conn);
    assert_eq!(conn.chunk().unwrap(), "a[\"y\"]\n");
}

// EventSource

#[test]
fn eventsource() {
    let s = TestServer::start();
    let url = format!("/echo/000/{}", session());
    let mut conn = Conn::open(s.port);
    conn.send("GET", &format!("{url}/eventsource"), &[], None);
    let head = conn.head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("cache-control"), Some(NEVER_CACHE));
    assert_eq!(conn.chunk().unwrap(), "\r\n");
    assert_eq!(conn.chunk().unwrap(), "data: o\r\n\r\n");
    assert_eq!(post(s.port, &format!("{url}/xhr_send"), r#"["x"]"#).status(), 204);
    assert_eq!(conn.chunk().unwrap(), "data: a[\"x\"]\r\n\r\n");
    assert_eq!(post(s.port, &format!("{url}/xhr_send"), r#"["  \u0000\n\r "]"#).status(), 204);
    assert_eq!(conn.chunk().unwrap(), "data: a[\"  \\u0000\\n\\r \"]\r\n\r\n");
    // `%` is escaped because the browser client URI-decodes each message.
    assert_eq!(post(s.port, &format!("{url}/xhr_send"), r#"["%41"]"#).status(), 204);
    assert_eq!(conn.chunk().unwrap(), "data: a[\"%2541\"]\r\n\r\n");
    let big = "x".repeat(4096);
    assert_eq!(post(s.port, &format!("{url}/xhr_send"), &format!("[\"{big}\"]")).status(), 204);
    assert_eq!(conn.chunk().unwrap(), format!("data: a[\"{big}\"]\r\n\r\n"));
    assert_eq!(conn.chunk(), None);
}

// HtmlFile

#[test]
fn htmlfile() {
    let s = TestServer::start();
    let url = format!("/echo/000/{}", session());
    let mut conn = Conn::open(s.port);
    conn.send("GET", &format!("{url}/htmlfile?c=%63allback"), &[], None);
    let head = conn.head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type").unwrap().replace(' ', ""), "text/html;charset=UTF-8");
    assert_eq!(head.header("cache-control"), Some(NEVER_CACHE));
    let prelude = conn.chunk().unwrap();
    assert!(prelude.len() > 1024);
    assert!(prelude.trim().starts_with("<!doctype html>\n<html><head>"));
    assert!(prelude
        .contains("    var c = parent.callback;\n    c.start();\n    function p(d) {c.message(d);};\n"));
    assert!(prelude.trim().ends_with("window.onload = function() {c.stop();};\n  </script>"));
    assert_eq!(conn.chunk().unwrap(), "<script>\np(\"o\");\n</script>\r\n");
    assert_eq!(post(s.port, &format!("{url}/xhr_send"), r#"["x"]"#).status(), 204);
    assert_eq!(conn.chunk().unwrap(), "<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n");
    // Markup inside a message cannot end the script block.
    assert_eq!(post(s.port, &format!("{url}/xhr_send"), r#"["</script><!--"]"#).status(), 204);
    assert_eq!(
        conn.chunk().unwrap(),
        "<script>\np(\"a[\\\"\\u003c/script>\\u003c!--\\\"]\");\n</script>\r\n"
    );
    let big = "x".repeat(4096);
    assert_eq!(post(s.port, &format!("{url}/xhr_send"), &format!("[\"{big}\"]")).status(), 204);
    assert!(conn.chunk().unwrap().contains(&big));
    assert_eq!(conn.chunk(), None);
}

#[test]
fn callbacks_are_checked() {
    let s = TestServer::start();
    for transport in ["htmlfile", "jsonp"] {
        let url = format!("/echo/000/{}/{transport}", session());
        let r = get(s.port, &url);
        assert_eq!(r.status(), 500);
        assert!(r.body.contains("\"callback\" parameter required"));
        for bad in ["%20", "*", "abc(", "abc%28"] {
            let r = get(s.port, &format!("{url}?c={bad}"));
            assert_eq!(r.status(), 500, "{bad}");
            assert!(r.body.contains("invalid \"callback\" parameter"));
        }
    }
}

// JsonPolling

#[test]
fn jsonp_polling() {
    let s = TestServer::start();
    let url = format!("/echo/000/{}", session());
    let r = get(s.port, &format!("{url}/jsonp?c=%63allback"));
    assert_eq!((r.status(), r.body.as_str()), (200, "/**/callback(\"o\");\r\n"));
    assert_eq!(content_type(&r), "application/javascript;charset=UTF-8");
    assert_never_cached(&r);
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = request(s.port, "POST", &format!("{url}/jsonp_send"), &form, Some(b"d=%5B%22x%22%5D"));
    assert_eq!((r.status(), r.body.as_str()), (200, "ok"));
    assert_eq!(content_type(&r), "text/plain;charset=UTF-8");
    assert_never_cached(&r);
    assert_eq!(get(s.port, &format!("{url}/jsonp?c=callback")).body, "/**/callback(\"a[\\\"x\\\"]\");\r\n");

    for (body, error) in [
        ("d=%5B%22x", "Broken JSON encoding."),
        ("", "Payload expected."),
        ("d=", "Payload expected."),
        ("p=p", "Payload expected."),
    ] {
        let r = request(s.port, "POST", &format!("{url}/jsonp_send"), &form, Some(body.as_bytes()));
        assert_eq!(r.status(), 500, "{body}");
        assert!(r.body.contains(error), "{body}: {}", r.body);
    }
    let send = |ct: &str, body: &str| {
        request(s.port, "POST", &format!("{url}/jsonp_send"), &[("Content-Type", ct)], Some(body.as_bytes()))
    };
    assert_eq!(send("application/x-www-form-urlencoded", "d=%5B%22abc%22%5D").body, "ok");
    assert_eq!(send("text/plain", r#"["%61bc"]"#).body, "ok");
    assert_eq!(send("application/x-www-form-urlencoded", "d=%5B%5D").body, "ok");
    assert_eq!(get(s.port, &format!("{url}/jsonp?c=x")).body, "/**/x(\"a[\\\"abc\\\",\\\"%61bc\\\"]\");\r\n");
    assert_eq!(post(s.port, &format!("/echo/000/{}/jsonp_send", session()), r#"["x"]"#).status(), 404);
}

#[test]
fn jsonp_close() {
    let s = TestServer::start();
    let url = format!("/close/000/{}/jsonp?c=x", session());
    assert_eq!(get(s.port, &url).body, "/**/x(\"o\");\r\n");
    for _ in 0..2 {
        assert_eq!(get(s.port, &url).body, "/**/x(\"c[3000,\\\"Go away!\\\"]\");\r\n");
    }
}

// JsessionidCookie

#[test]
fn jsessionid_cookie() {
    let s = TestServer::start();
    let base = "/cookie_needed_echo/000";
    let check = |r: &Response, value: &str| {
        let cookies = r.head.all("set-cookie");
        assert_eq!(cookies.len(), 1, "{cookies:?}");
        let mut parts = cookies[0].split(';');
        assert_eq!(parts.next(), Some(format!("JSESSIONID={value}").as_str()));
        assert_eq!(parts.next().map(|p| p.trim().to_ascii_lowercase()).as_deref(), Some("path=/"));
    };
    let r = post(s.port, &format!("{base}/{}/xhr", session()), "");
    assert_eq!(r.body, "o\n");
    check(&r, "dummy");
    let r = request(
        s.port,
        "POST",
        &format!("{base}/{}/xhr", session()),
        &[("Cookie", "JSESSIONID=abcdef")],
        Some(b""),
    );
    check(&r, "abcdef");
    // A value too long to echo (a security review: 60,000 bytes came back
    // as a 60,032-byte header line) is answered as none.
    for (len, echoed) in [(256, true), (257, false)] {
        let value = "j".repeat(len);
        let cookie = format!("JSESSIONID={value}");
        let r =
            request(s.port, "POST", &format!("{base}/{}/xhr", session()), &[("Cookie", &cookie)], Some(b""));
        check(&r, if echoed { &value } else { "dummy" });
    }
    for (method, transport) in [("POST", "xhr_streaming"), ("GET", "eventsource"), ("GET", "htmlfile?c=x")] {
        let mut conn = Conn::open(s.port);
        conn.send(
            method,
            &format!("{base}/{}/{transport}", session()),
            &[],
            if method == "POST" { Some(b"") } else { None },
        );
        let head = conn.head();
        assert_eq!(head.status, 200);
        check(&Response { head, body: String::new(), chunks: vec![] }, "dummy");
    }
    let id = session();
    let r = get(s.port, &format!("{base}/{id}/jsonp?c=x"));
    assert_eq!(r.body, "/**/x(\"o\");\r\n");
    check(&r, "dummy");
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = request(s.port, "POST", &format!("{base}/{id}/jsonp_send"), &form, Some(b"d=%5B%22x%22%5D"));
    assert_eq!(r.body, "ok");
    check(&r, "dummy");
    // The session URLs' preflights too, as sockjs-node's (its `h_sid`),
    // and not /info's.
    for transport in ["xhr", "xhr_send", "xhr_streaming"] {
        let r = request(s.port, "OPTIONS", &format!("{base}/{id}/{transport}"), &[("Origin", "test")], None);
        assert_eq!(r.status(), 204);
        check(&r, "dummy");
    }
    let info = request(s.port, "OPTIONS", "/cookie_needed_echo/info", &[("Origin", "test")], None);
    assert!(info.header("set-cookie").is_none());
    // Elsewhere: no cookie.
    assert!(post(s.port, &format!("/echo/000/{}/xhr", session()), "").header("set-cookie").is_none());
}

/// Errors on session URLs carry the CORS headers and the cookie of the
/// transport's other answers, as sockjs-node's do: a page on another
/// origin sees a 404 for an expired session, not a CORS failure.
#[test]
fn errors_on_session_urls_carry_cors_and_the_cookie() {
    let s = TestServer::start();
    let base = "/cookie_needed_echo/000";
    let headers = [("Origin", "https://a.example"), ("Cookie", "JSESSIONID=n1")];
    let check = |r: &Response, status: u16, body: &str| {
        assert_eq!((r.status(), r.body.as_str()), (status, body));
        assert_eq!(r.header("access-control-allow-origin"), Some("https://a.example"));
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(r.header("set-cookie"), Some("JSESSIONID=n1; path=/"));
    };
    let r = request(s.port, "POST", &format!("{base}/nosuch/xhr_send"), &headers, Some(b"[\"x\"]"));
    check(&r, 404, "Session not found.");
    let url = format!("{base}/{}", session());
    assert_eq!(request(s.port, "POST", &format!("{url}/xhr"), &headers, Some(b"")).body, "o\n");
    let r = request(s.port, "POST", &format!("{url}/xhr_send"), &headers, Some(b"[\"x"));
    check(&r, 500, "Broken JSON encoding.");
    let r = request(s.port, "POST", &format!("{url}/xhr_send"), &headers, Some(b""));
    check(&r, 500, "Payload expected.");
}

// RawWebsocket

#[test]
fn raw_websocket() {
    let s = TestServer::start();
    let mut ws = WsClient::connect(s.port, "/echo/websocket");
    ws.send_text("Hello world!\u{ffff}");
    assert_eq!(ws.recv_text(), "Hello world!\u{ffff}");
    // Messages sent together come back whole and in order.
    for i in 0..20 {
        ws.send_text(&format!("m{i}"));
    }
    for i in 0..20 {
        assert_eq!(ws.recv_text(), format!("m{i}"));
    }
    let mut ws = WsClient::connect(s.port, "/close/websocket");
    assert_eq!(ws.recv(), Ws::Close(Some(3000), "Go away!".into()));
}

// JSONEncoding

#[test]
fn json_encoding() {
    let s = TestServer::start();
    let url = format!("/echo/000/{}", session());
    assert_eq!(post(s.port, &format!("{url}/xhr"), "").body, "o\n");
    let mut text = String::new();
    let mut want = String::new();
    for range in [0x200c..=0x200f, 0x2028..=0x202f, 0x2060..=0x206f, 0xfff0..=0xffff] {
        for cp in range {
            text.push(char::from_u32(cp).unwrap());
            want.push_str(&format!("\\u{cp:04x}"));
        }
    }
    let payload = serde_json::to_string(&[&text]).unwrap();
    assert_eq!(post(s.port, &format!("{url}/xhr_send"), &payload).status(), 204);
    assert_eq!(post(s.port, &format!("{url}/xhr"), "").body, format!("a[\"{want}\"]\n"));

    // Client-side escapes of every kind decode back to the same text.
    let mut escaped = String::from("[\"");
    let mut plain = String::new();
    for cp in (0..0x20).chain([0x22, 0x5c, 0x7f, 0x9f, 0xad, 0x2000, 0x20ff, 0xfeff, 0xfff0, 0xffff]) {
        escaped.push_str(&format!("\\u{cp:04x}"));
        plain.push(char::from_u32(cp).unwrap());
    }
    escaped.push_str("\"]");
    assert_eq!(post(s.port, &format!("{url}/xhr_send"), &escaped).status(), 204);
    let body = post(s.port, &format!("{url}/xhr"), "").body;
    let decoded: Vec<String> = serde_json::from_str(&body.trim_end()[1..]).unwrap();
    assert_eq!(decoded, vec![plain]);

    // Surrogates: a pair is one character, a lone one becomes U+FFFD.
    let r = post(s.port, &format!("{url}/xhr_send"), r#"["\ud83d\ude00","\ud800x"]"#);
    assert_eq!(r.status(), 204);
    assert_eq!(post(s.port, &format!("{url}/xhr"), "").body, "a[\"😀\",\"\\ufffdx\"]\n");
}

// HandlingClose

#[test]
fn close_frame_on_streaming() {
    let s = TestServer::start();
    let url = format!("/close/000/{}/xhr_streaming", session());
    let mut conn = Conn::open(s.port);
    conn.send("POST", &url, &[], Some(b""));
    xhr_streaming_prelude(&mut conn);
    assert_eq!(conn.chunk().unwrap(), "o\n");
    assert_eq!(conn.chunk().unwrap(), "c[3000,\"Go away!\"]\n");
    assert_eq!(conn.chunk(), None);
    let mut conn = Conn::open(s.port);
    conn.send("POST", &url, &[], Some(b""));
    xhr_streaming_prelude(&mut conn);
    assert_eq!(conn.chunk().unwrap(), "c[3000,\"Go away!\"]\n");
    assert_eq!(conn.chunk(), None);
}

/// The answer to a receiving request once the server has seen its
/// session's previous receiver aborted: actix-web reads that client's EOF
/// on its own connection, and a request racing it on a loaded machine can
/// still find the old receiver attached (`2010`, which ends only that
/// request). Asks until the answer is another; fails after `READ_TIMEOUT`.
fn after_the_abort_is_seen(mut ask: impl FnMut() -> String) -> String {
    let deadline = std::time::Instant::now() + READ_TIMEOUT;
    loop {
        let answer = ask();
        if answer != "c[2010,\"Another connection still open\"]\n" {
            return answer;
        }
        assert!(std::time::Instant::now() < deadline, "the abort was not seen within {READ_TIMEOUT:?}");
        // Nothing the client can wait on tells when the server has read
        // the EOF; ask again shortly.
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn aborted_stream_is_noticed_by_a_later_request() {
    let s = TestServer::start();
    let url = format!("/echo/000/{}/xhr_streaming", session());
    let mut first = Conn::open(s.port);
    first.send("POST", &url, &[], Some(b""));
    xhr_streaming_prelude(&mut first);
    assert_eq!(first.chunk().unwrap(), "o\n");
    let mut second = Conn::open(s.port);
    second.send("POST", &url, &[], Some(b""));
    xhr_streaming_prelude(&mut second);
    assert_eq!(second.chunk().unwrap(), "c[2010,\"Another connection still open\"]\n");
    assert_eq!(second.chunk(), None);
    drop(first);
    let frame = after_the_abort_is_seen(|| {
        let mut next = Conn::open(s.port);
        next.send("POST", &url, &[], Some(b""));
        xhr_streaming_prelude(&mut next);
        next.chunk().unwrap()
    });
    assert!(frame == "o\n" || frame == "c[1002,\"Connection interrupted\"]\n", "{frame:?}");
}

#[test]
fn aborted_long_poll_is_noticed_by_a_later_request() {
    let s = TestServer::start();
    let url = format!("/echo/000/{}/xhr", session());
    assert_eq!(post(s.port, &url, "").body, "o\n");
    let mut first = Conn::open(s.port);
    first.send("POST", &url, &[], Some(b""));
    std::thread::sleep(std::time::Duration::from_millis(250)); // the suite's own pacing
    assert_eq!(post(s.port, &url, "").body, "c[2010,\"Another connection still open\"]\n");
    drop(first);
    let body = after_the_abort_is_seen(|| post(s.port, &url, "").body);
    assert!(body == "o\n" || body == "c[1002,\"Connection interrupted\"]\n", "{body:?}");
}

// Http10 and Http11

#[test]
fn http10() {
    let s = TestServer::start();
    let mut conn = Conn::open(s.port);
    conn.send_version("GET", "/echo", "HTTP/1.0", &[("Connection", "Keep-Alive")], None);
    let head = conn.head();
    assert_eq!(head.status, 200);
    assert!(head.header("transfer-encoding").is_none());
    assert_eq!(head.header("content-length"), Some("19"));
    assert_eq!(conn.read_exact(19), b"Welcome to SockJS!\n");
    if head.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("keep-alive")) {
        conn.send_version("GET", "/echo", "HTTP/1.0", &[("Connection", "Keep-Alive")], None);
        assert_eq!(conn.head().status, 200);
    }

    let mut conn = Conn::open(s.port);
    conn.send_version("POST", &format!("/close/000/{}/xhr_streaming", session()), "HTTP/1.0", &[], Some(b""));
    let head = conn.head();
    assert_eq!(head.status, 200);
    assert!(head.header("transfer-encoding").is_none());
    assert!(head.header("content-length").is_none());
    let body = conn.read_to_end();
    assert_eq!(String::from_utf8(body).unwrap(), format!("{}\no\nc[3000,\"Go away!\"]\n", "h".repeat(2048)));
}

#[test]
fn http11() {
    let s = TestServer::start();
    let mut conn = Conn::open(s.port);
    conn.send("GET", "/echo", &[("Connection", "keep-alive")], None);
    let r = conn.response("GET");
    assert_eq!(r.status(), 200);
    assert!(r.header("connection").is_none_or(|c| c.eq_ignore_ascii_case("keep-alive")));
    assert_eq!(r.body, "Welcome to SockJS!\n");
    conn.send("GET", "/echo", &[], None);
    assert_eq!(conn.response("GET").status(), 200);

    let mut conn = Conn::open(s.port);
    conn.send("POST", &format!("/close/000/{}/xhr_streaming", session()), &[], Some(b""));
    let head = xhr_streaming_prelude(&mut conn);
    assert!(head.chunked() && head.header("content-length").is_none());
    assert_eq!(conn.chunk().unwrap(), "o\n");
    assert_eq!(conn.chunk().unwrap(), "c[3000,\"Go away!\"]\n");
    assert_eq!(conn.chunk(), None);
}

#[test]
fn wrong_methods_get_405() {
    let s = TestServer::start();
    let id = session();
    for (method, path) in [
        ("GET", format!("/echo/000/{id}/xhr")),
        ("GET", format!("/echo/000/{id}/xhr_send")),
        ("POST", format!("/echo/000/{id}/eventsource")),
        ("POST", format!("/echo/000/{id}/jsonp")),
        ("GET", format!("/echo/000/{id}/jsonp_send")),
        ("POST", "/echo/info".to_owned()),
        ("POST", "/echo".to_owned()),
    ] {
        assert_405(&request(s.port, method, &path, &[], if method == "POST" { Some(b"") } else { None }));
    }
}
