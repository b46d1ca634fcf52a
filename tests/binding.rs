//! Sessions bound to the client that opened them (`Config::bind_sessions`):
//! a request for a bound session from another address, or without its
//! cookie, gets 404 on every HTTP transport.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
};

use actix_sockjs::{BindTo, Config};
use common::*;

fn server(to: BindTo) -> u16 {
    echo_server(Config::default().bind_sessions(to))
}

/// One request from the loopback address `from` (`Connection: close`);
/// answers the status and the body.
fn request_from(
    from: [u8; 4],
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&SocketAddr::from((from, 0)).into()).expect("bind the source address");
    socket.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(body.as_bytes()).expect("write");
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

const OWNER: [u8; 4] = [127, 0, 0, 1];
const OTHER: [u8; 4] = [127, 0, 0, 2];

#[test]
fn a_session_bound_to_an_address_is_not_found_from_another() {
    let port = server(BindTo::Address);
    // A session opened by each receiving transport.
    let opened: Vec<(String, String)> = [
        ("POST", "xhr"),
        ("POST", "xhr_streaming"),
        ("GET", "eventsource"),
        ("GET", "htmlfile?c=cb"),
        ("GET", "jsonp?c=cb"),
    ]
    .iter()
    .map(|(method, t)| {
        let url = format!("/echo/000/{}", session());
        let mut conn = Conn::open(port);
        conn.send(method, &format!("{url}/{t}"), &[], Some(b""));
        assert_eq!(conn.head().status, 200, "{t} opens");
        (url, t.to_string())
    })
    .collect();
    for (url, t) in &opened {
        let method = if t.starts_with("xhr") { "POST" } else { "GET" };
        let (status, body) = request_from(OTHER, port, method, &format!("{url}/{t}"), &[], "");
        assert_eq!((status, body.as_str()), (404, "Session not found."), "{t} from another address");
        let (status, _) = request_from(OTHER, port, "POST", &format!("{url}/xhr_send"), &[], r#"["x"]"#);
        assert_eq!(status, 404, "xhr_send into the {t} session from another address");
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        let (status, _) =
            request_from(OTHER, port, "POST", &format!("{url}/jsonp_send"), &form, "d=%5B%22x%22%5D");
        assert_eq!(status, 404, "jsonp_send into the {t} session from another address");
        let (status, _) = request_from(OWNER, port, "POST", &format!("{url}/xhr_send"), &[], r#"["x"]"#);
        assert_eq!(status, 204, "the owner still sends into the {t} session");
    }
}

#[test]
fn a_session_bound_to_a_cookie_needs_it() {
    let port = server(BindTo::Cookie);
    let url = format!("/echo/000/{}", session());
    let open = post(port, &format!("{url}/xhr"), "");
    assert_eq!(open.body, "o\n");
    let set = open.header("set-cookie").expect("a binding cookie").to_owned();
    assert!(set.starts_with("sockjs_bind=") && set.contains("HttpOnly") && !set.contains("Secure"), "{set}");
    // Over https (here as a TLS-ending proxy reports it) the cookie is `Secure`.
    let https = [("X-Forwarded-Proto", "https")];
    let secure = request(port, "POST", &format!("/echo/000/{}/xhr", session()), &https, Some(b""));
    assert!(
        secure.header("set-cookie").is_some_and(|c| c.ends_with("; Secure")),
        "{:?}",
        secure.header("set-cookie")
    );
    let cookie = set.split(';').next().unwrap_or_default().to_owned();
    let with = [("Cookie", cookie.as_str())];
    let wrong = [("Cookie", "sockjs_bind=0123456789abcdef0123456789abcdef")];
    for headers in [&[][..], &wrong[..]] {
        let (status, _) = request_from(OWNER, port, "POST", &format!("{url}/xhr_send"), headers, r#"["x"]"#);
        assert_eq!(status, 404, "xhr_send with {headers:?}");
        let (status, _) = request_from(OWNER, port, "POST", &format!("{url}/xhr"), headers, "");
        assert_eq!(status, 404, "a poll with {headers:?}");
    }
    assert_eq!(request(port, "POST", &format!("{url}/xhr_send"), &with, Some(br#"["x"]"#)).status(), 204);
    assert_eq!(request(port, "POST", &format!("{url}/xhr"), &with, Some(b"")).body, "a[\"x\"]\n");
    // A browser that has the cookie keeps it for its next session.
    let next = request(port, "POST", &format!("/echo/000/{}/xhr", session()), &with, Some(b""));
    assert_eq!(next.body, "o\n");
    assert_eq!(next.header("set-cookie"), None, "the client's cookie is reused");
}

#[test]
fn a_websocket_cannot_take_the_id_of_a_session_bound_to_another_client() {
    // A security review: a WebSocket opened under a bound HTTP session's id
    // got what the application sent to that id (`SendTo`), as the session
    // did, from a client the binding kept out of the session itself.
    let port = server(BindTo::Cookie);
    let url = format!("/echo/000/{}", session());
    let mut conn = Conn::open(port);
    conn.send("POST", &format!("{url}/xhr"), &[], Some(b""));
    let head = conn.head();
    assert_eq!(head.status, 200);
    let cookie =
        head.header("set-cookie").and_then(|c| c.split(';').next()).expect("the bind cookie").to_owned();
    let refused = WsClient::connect_with(port, &format!("{url}/websocket"), &[]);
    assert_eq!(
        refused.err().map(|res| (res.status(), res.body)),
        Some((404, "Session not found.".to_owned()))
    );
    // Its own client may.
    let mut own = WsClient::connect_with(port, &format!("{url}/websocket"), &[("Cookie", &cookie)])
        .unwrap_or_else(|res| panic!("the owner's socket: {}", res.status()));
    assert_eq!(own.recv_text(), "o");
}
