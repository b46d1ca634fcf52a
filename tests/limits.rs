//! Slow and oversized requests: a body that trickles in gets 408 and its
//! connection closed, a thousand of them do not hold the server back, and
//! overlong CORS headers are not reflected; behind the shipped haproxy
//! config (Debian's `haproxy` on the PATH), each client address has a
//! session cap of its own.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use actix_sockjs::Config;
use common::*;

/// An in-process echo server whose request bodies must arrive within `timeout`.
fn server(timeout: Duration) -> u16 {
    echo_server(Config::default().request_timeout(timeout))
}

/// Starts an `xhr_send` whose body announces 100,000 bytes and sends one.
fn slow_send(port: u16, id: &str) -> TcpStream {
    start_send(port, id, "Content-Length: 100000", b"[")
}

/// Starts an `xhr_send` with the header `framing` (its body's length, or
/// chunked), and sends `first` of its body.
fn start_send(port: u16, id: &str, framing: &str, first: &[u8]) -> TcpStream {
    start_send_to(port, &format!("/echo/000/{id}/xhr_send"), framing, first)
}

/// [`start_send`] to the URL `path`.
fn start_send_to(port: u16, path: &str, framing: &str, first: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    let head =
        format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n{framing}\r\n\r\n");
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(first).expect("write");
    s
}

/// Writes `piece` to `s` every `every`, 60 times, until a write fails (the
/// server closed the connection).
fn trickle(s: &TcpStream, piece: &'static [u8], every: Duration) -> std::thread::JoinHandle<()> {
    let mut writer = s.try_clone().expect("clone");
    std::thread::spawn(move || {
        for _ in 0..60 {
            std::thread::sleep(every);
            if writer.write_all(piece).is_err() {
                return;
            }
        }
    })
}

/// What the server answered before it closed the connection (or before
/// `READ_TIMEOUT`, if it did not).
fn answer_then_close(s: &mut TcpStream) -> String {
    answer_and_whether_closed(s).0
}

/// What the server answered, and whether it then closed the connection
/// within `READ_TIMEOUT`.
fn answer_and_whether_closed(s: &mut TcpStream) -> (String, bool) {
    let mut got = Vec::new();
    let closed = s.read_to_end(&mut got).is_ok();
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

#[test]
fn a_body_that_trickles_in_gets_408_and_the_connection_closes() {
    let port = server(Duration::from_millis(500));
    let id = session();
    assert_eq!(post(port, &format!("/echo/000/{id}/xhr"), "").body, "o\n");
    let mut slow = slow_send(port, &id);
    let (answer, closed) = answer_and_whether_closed(&mut slow);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.ends_with("Request timeout."), "{answer}");
    assert!(closed, "the connection stays open after the 408");
    // The session is still there for a client that sends in time.
    assert_eq!(post(port, &format!("/echo/000/{id}/xhr_send"), r#"["x"]"#).status(), 204);
    assert_eq!(post(port, &format!("/echo/000/{id}/xhr"), "").body, "a[\"x\"]\n");
}

#[test]
fn a_long_body_that_comes_steadily_is_taken_after_the_timeout() {
    // 500 ms for the head's turn and the first bytes, then each byte buys
    // 2 ms more (500 bytes a second): 10 pieces of 400 bytes, one every
    // 150 ms (~2.7 KB/s), take ~1.4 s in all and are in time throughout.
    let port = server(Duration::from_millis(500));
    let id = session();
    assert_eq!(post(port, &format!("/echo/000/{id}/xhr"), "").body, "o\n");
    let text = "y".repeat(3996);
    let body = format!("[\"{text}\"]");
    let length = format!("Content-Length: {}\r\nConnection: close", body.len());
    let mut s = start_send(port, &id, &length, b"");
    let started = std::time::Instant::now();
    for piece in body.as_bytes().chunks(400) {
        s.write_all(piece).expect("piece");
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(started.elapsed() > Duration::from_millis(1000), "the body came too fast to test anything");
    let answer = answer_then_close(&mut s);
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    let polled = post(port, &format!("/echo/000/{id}/xhr"), "").body;
    assert_eq!(polled, format!("a[\"{text}\"]\n"));
}

#[test]
fn a_body_that_trickles_a_byte_at_a_time_gets_408() {
    // Each byte buys 2 ms: one every 100 ms falls behind at once, and the
    // answer comes just after the 500 ms, long before the 100,000 bytes.
    let port = server(Duration::from_millis(500));
    let id = session();
    assert_eq!(post(port, &format!("/echo/000/{id}/xhr"), "").body, "o\n");
    let started = std::time::Instant::now();
    let mut s = slow_send(port, &id);
    let trickle = trickle(&s, b" ", Duration::from_millis(100));
    let answer = answer_then_close(&mut s);
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    // ~0.5 s by the rule; a timeout that each byte restarted would answer
    // only once the trickle stops, after 6 s.
    assert!(took < Duration::from_secs(3), "408 after {took:?}");
    trickle.join().expect("trickle");
}

#[test]
fn a_body_that_comes_fast_then_stops_is_not_held_for_long() {
    // 20,000 bytes at once would buy 40 s by their rate; the wait after
    // the last byte is still 500 ms.
    let port = server(Duration::from_millis(500));
    let id = session();
    assert_eq!(post(port, &format!("/echo/000/{id}/xhr"), "").body, "o\n");
    let started = std::time::Instant::now();
    let mut s = start_send(port, &id, "Content-Length: 100000", &[b' '; 20_000]);
    let answer = answer_then_close(&mut s);
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "after {took:?}: {answer:?}");
    assert!(took < Duration::from_secs(5), "408 after {took:?}");
}

#[test]
fn a_chunked_body_that_stalls_gets_408_and_its_connection_closes() {
    // actix-http drains a chunked body its handler dropped for as long as
    // the client sends; the refused body is kept unread instead, and the
    // connection closes.
    let port = server(Duration::from_millis(500));
    let id = session();
    assert_eq!(post(port, &format!("/echo/000/{id}/xhr"), "").body, "o\n");
    let mut s = start_send(port, &id, "Transfer-Encoding: chunked", b"1\r\n[\r\n");
    let (answer, closed) = answer_and_whether_closed(&mut s);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(closed, "the connection stays open after the 408");
}

#[test]
fn a_chunked_body_to_a_route_that_reads_none_does_not_keep_its_connection() {
    // A 404 (and the 403 of an origin refused, a 405, a poll) leaves the
    // body unread: it is held until the answer is out, and the connection
    // closes, however long the client goes on sending chunks.
    let port = server(Duration::from_millis(500));
    let mut s = start_send_to(port, "/echo/nothing/here", "Transfer-Encoding: chunked", b"1\r\nx\r\n");
    let trickle = trickle(&s, b"1\r\nx\r\n", Duration::from_millis(200));
    let (answer, closed) = answer_and_whether_closed(&mut s);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer:?}");
    assert!(closed, "the connection stays open while the client sends");
    trickle.join().expect("trickle");
}

#[test]
fn a_thousand_slow_bodies_do_not_hold_others_back() {
    // Two descriptors per slow client in this process (client and server ends).
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let port = server(Duration::from_secs(2));
    // One live session for all of them: a body for no session is not read
    // (404 at once), so it holds nothing.
    let target = session();
    assert_eq!(post(port, &format!("/echo/000/{target}/xhr"), "").body, "o\n");
    let before = resident_bytes("self");
    let mut slow: Vec<TcpStream> = (0..1000).map(|_| slow_send(port, &target)).collect();
    // Meanwhile a client that sends in time is served.
    let id = session();
    assert_eq!(post(port, &format!("/echo/000/{id}/xhr"), "").body, "o\n");
    assert_eq!(post(port, &format!("/echo/000/{id}/xhr_send"), r#"["meanwhile"]"#).status(), 204);
    assert_eq!(post(port, &format!("/echo/000/{id}/xhr"), "").body, "a[\"meanwhile\"]\n");
    let grown = resident_bytes("self").saturating_sub(before);
    assert!(grown < 64 << 20, "1,000 slow requests grew the process by {grown} bytes");
    for (i, s) in slow.iter_mut().enumerate() {
        let answer = answer_then_close(s);
        assert!(answer.starts_with("HTTP/1.1 408"), "slow client {i}: {answer:?}");
    }
}

/// The next frame of `ws` that is no heartbeat (`h`, a ping: unanswered,
/// as the server may have closed the connection by then).
fn past_heartbeats(ws: &mut WsClient) -> Ws {
    loop {
        match ws.recv_any() {
            Ws::Ping(_) => {}
            Ws::Text(h) if h == "h" => {}
            other => return other,
        }
    }
}

#[test]
fn a_websocket_message_that_trickles_in_or_never_ends_is_refused_in_time() {
    // A security review: a frame read in part, or a fragmented message
    // never finished, held its bytes (up to `max_message_bytes`) for as
    // long as its client sent a byte now and then, which also answered
    // the pings. Now it has the time an `xhr_send` body has.
    let port = echo_server_at(
        "/trickle",
        Config::default().request_timeout(Duration::from_millis(500)).heartbeat(Duration::from_millis(200)),
    );
    let url = || format!("/trickle/000/{}/websocket", session());
    let frame = WsClient::frame(0x1, true, format!("[\"{}\"]", "x".repeat(996)).as_bytes());
    // A frame whose rest comes in time is taken.
    let mut ws = WsClient::connect(port, &url());
    assert_eq!(ws.recv_text(), "o");
    ws.send_raw(&frame[..20]);
    std::thread::sleep(Duration::from_millis(100));
    ws.send_raw(&frame[20..]);
    assert_eq!(past_heartbeats(&mut ws), Ws::Text(format!("a[\"{}\"]", "x".repeat(996))));
    // One trickled a byte at a time.
    let mut ws = WsClient::connect(port, &url());
    assert_eq!(ws.recv_text(), "o");
    ws.send_raw(&frame[..20]);
    let writer = trickle(&ws.stream(), b"x", Duration::from_millis(100));
    assert_eq!(past_heartbeats(&mut ws), Ws::Close(Some(1008), "Message too slow".into()));
    writer.join().expect("the trickle ends with the connection");
    // A fragmented message whose fragments keep coming and never end.
    let mut ws = WsClient::connect(port, &url());
    assert_eq!(ws.recv_text(), "o");
    ws.send_frame(0x1, false, b"[\"");
    let fragment = WsClient::frame(0x0, false, b"x");
    let fragments: &'static [u8] = Box::leak(fragment.into_boxed_slice());
    let writer = trickle(&ws.stream(), fragments, Duration::from_millis(100));
    assert_eq!(past_heartbeats(&mut ws), Ws::Close(Some(1008), "Message too slow".into()));
    writer.join().expect("the trickle ends with the connection");
}

#[test]
fn a_websocket_message_stalled_for_the_timeout_is_refused_though_its_bytes_bought_more() {
    // A review: 1,000 bytes bought 2 s (capped at 4 x 300 ms); an
    // `xhr_send` body also fails once `request_timeout` passes without a
    // byte, and a WebSocket message did not.
    let port = echo_server_at(
        "/stall",
        Config::default().request_timeout(Duration::from_millis(300)).heartbeat(Duration::from_millis(100)),
    );
    let mut ws = WsClient::connect(port, &format!("/stall/000/{}/websocket", session()));
    assert_eq!(ws.recv_text(), "o");
    let frame = WsClient::frame(0x1, true, format!("[\"{}\"]", "x".repeat(2000)).as_bytes());
    ws.send_raw(&frame[..1000]);
    // The rest after 1 s: past the 300 ms with no byte, within what the
    // bytes bought.
    std::thread::sleep(Duration::from_secs(1));
    let _ = ws.stream().write_all(&frame[1000..]);
    assert_eq!(past_heartbeats(&mut ws), Ws::Close(Some(1008), "Message too slow".into()));
}

/// Echoes, and at the message `wait` waits 2 s on a future of its own (a
/// slow call), holding its inbox.
struct Waits;

impl actix::Actor for Waits {
    type Context = actix_sockjs::SessionContext<Self>;
}

impl actix_sockjs::Session for Waits {
    fn on_message(&mut self, msg: String, ctx: &mut actix_sockjs::SessionContext<Self>) {
        use actix::AsyncContext as _;
        if msg == "wait" {
            ctx.wait(actix::fut::wrap_future(actix::clock::sleep(Duration::from_secs(2))));
        }
        ctx.send(msg);
    }
}

#[test]
fn a_websocket_message_the_server_holds_back_is_not_charged_to_its_client() {
    // A review: a frame read in part when the session's inbox filled (its
    // actor waiting on a slow call) kept its clock running while the
    // socket read no more, and the socket closed 1008 though the client
    // had sent every byte in time (none of its 18 messages came back).
    use actix::Actor as _;
    let config =
        Config::default().request_timeout(Duration::from_millis(500)).heartbeat(Duration::from_millis(200));
    let (port, _manager, _system) =
        serve_endpoint("/waits", config, 1, false, || actix_sockjs::SessionManager::new(|| Waits).start());
    let mut ws = WsClient::connect(port, &format!("/waits/000/{}/websocket", session()));
    assert_eq!(ws.recv_text(), "o");
    ws.send_text(r#"["wait"]"#);
    assert_eq!(ws.recv_frame(), r#"a["wait"]"#);
    // ~64 KiB of messages the waiting session holds, then in one write one
    // more and the first bytes of the next frame (the socket reads them,
    // then no more: the inbox is full), then its rest, well in time.
    let msg = |i: usize| WsClient::frame(0x1, true, format!("[\"m{i:03}{}\"]", "x".repeat(4000)).as_bytes());
    let first: Vec<u8> = (0..16).flat_map(msg).collect();
    ws.send_raw(&first);
    std::thread::sleep(Duration::from_millis(100));
    let last = WsClient::frame(0x1, true, br#"["last"]"#);
    let mut second = msg(16);
    second.extend_from_slice(&last[..6]);
    ws.send_raw(&second);
    std::thread::sleep(Duration::from_millis(50));
    ws.send_raw(&last[6..]);
    // Everything comes back once the session is done waiting.
    let mut echoed = Vec::new();
    while echoed.last().map(String::as_str) != Some("last") {
        match past_heartbeats(&mut ws) {
            Ws::Text(frame) => {
                let batch =
                    frame.strip_prefix('a').unwrap_or_else(|| panic!("expected messages, got {frame}"));
                echoed.extend(serde_json::from_str::<Vec<String>>(batch).expect("a JSON array"));
            }
            other => panic!("after {} messages: {other:?}", echoed.len()),
        }
    }
    assert_eq!(echoed.len(), 18);
}

#[test]
fn overlong_cors_headers_are_not_reflected() {
    let port = server(Duration::from_secs(30));
    let long = format!("http://{}.example", "a".repeat(5000));
    let r = request(
        port,
        "OPTIONS",
        "/echo/info",
        &[("Origin", long.as_str()), ("Access-Control-Request-Headers", long.as_str())],
        None,
    );
    assert_eq!(r.status(), 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-headers"), None);
    assert!(r.head.headers.iter().all(|(_, v)| v.len() < 4096), "a long header went back");
    // Ordinary values still are.
    let r = request(
        port,
        "OPTIONS",
        "/echo/info",
        &[("Origin", "https://a.example"), ("Access-Control-Request-Headers", "x-a")],
        None,
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("https://a.example"));
    assert_eq!(r.header("access-control-allow-headers"), Some("x-a"));
}

#[test]
fn a_huge_header_name_costs_a_log_line_not_a_backtrace() {
    // actix-http 3.20 panics on a header name of 64 KiB or more; test_server
    // installs `log_panics`, so each such request logs one line, and a
    // flood of them ten lines in ten seconds (a security review: 1,001
    // lines for 1,000 requests in 0.2 s).
    let (mut child, port, log) = logging_test_server("panics", "error");
    let name = "a".repeat(65_536);
    for _ in 0..40 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
        let _ = s.write_all(format!("GET /echo/info HTTP/1.1\r\nHost: x\r\n{name}: v\r\n\r\n").as_bytes());
        let _ = answer_then_close(&mut s);
    }
    assert_eq!(get(port, "/echo").body, "Welcome to SockJS!\n", "the server goes on serving");
    let text = stop_and_read_log(&mut child, &log);
    assert!(!text.contains("stack backtrace"), "a backtrace was printed:\n{}", &text[..text.len().min(2000)]);
    let lines = text.lines().count();
    assert!((1..=12).contains(&lines), "{lines} log lines for 40 panics:\n{}", &text[..text.len().min(2000)]);
}

#[test]
fn refusals_log_no_session_id_and_a_flood_of_them_is_cut_short() {
    let (mut child, port, log) = logging_test_server("refusals", "info");
    let id = format!("{}live", session());
    assert_eq!(post(port, &format!("/echo/000/{id}/xhr"), "").body, "o\n");
    // The router decodes `%0A` in a segment into a line feed: it must not
    // start a line of its own in the log.
    let mut forged = start_send_to(
        port,
        &format!("/echo/%0Aforged%1B/{id}/xhr_send"),
        "Content-Length: 2097152\r\nConnection: close",
        b"[",
    );
    assert!(answer_then_close(&mut forged).starts_with("HTTP/1.1 413"));
    // 50 sends announced over the 1 MiB limit: 413 each, unread.
    for i in 0..50 {
        let mut s = start_send(port, &id, "Content-Length: 2097152\r\nConnection: close", b"[");
        let answer = answer_then_close(&mut s);
        assert!(answer.starts_with("HTTP/1.1 413"), "send {i}: {answer:?}");
    }
    assert_eq!(post(port, &format!("/echo/000/{id}/xhr_send"), r#"["still here"]"#).status(), 204);
    let text = stop_and_read_log(&mut child, &log);
    assert!(!text.lines().any(|l| l.trim_start().starts_with("forged")), "a forged line:\n{text}");
    assert!(text.contains("/echo/\\nforged\\u{1b}/#"), "the decoded segment, escaped:\n{text}");
    assert!(!text.contains(&id), "the session id is in the log:\n{text}");
    // The forged request's line, then the flood's, from one place in the
    // code: 10 in a window.
    let refused: Vec<&str> = text.lines().filter(|l| l.contains("bytes refused")).collect();
    assert!((1..=20).contains(&refused.len()), "{} lines for 51 refusals:\n{text}", refused.len());
    // Each names the session by its tag: `#` and six hex digits.
    for line in refused.iter().filter(|l| !l.contains("forged")) {
        let tag = line
            .split("/echo/000/")
            .nth(1)
            .and_then(|rest| rest.strip_suffix(": body over 1048576 bytes refused"));
        let tag = tag.and_then(|t| t.strip_suffix("/xhr_send")).unwrap_or_else(|| panic!("{line}"));
        assert!(
            tag.len() == 7 && tag.starts_with('#') && tag[1..].bytes().all(|b| b.is_ascii_hexdigit()),
            "{line}"
        );
    }
}

/// Starts `test_server` logging at `level` into a file named after `what`;
/// answers the child, its port and the file.
fn logging_test_server(what: &str, level: &str) -> (Proc, u16, std::path::PathBuf) {
    let log = std::env::temp_dir().join(format!("sockjs-{what}-{}.log", std::process::id()));
    let mut child = std::process::Command::new(example_binary("test_server", &[]))
        .args(["--port", "0"])
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LOG", level)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start test_server");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("first line");
    let port: u16 = line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
    // Killed on drop: a failing assertion does not leave it running.
    (Proc(child), port, log)
}

/// Stops a [`logging_test_server`] and answers what it logged.
fn stop_and_read_log(child: &mut Proc, log: &std::path::Path) -> String {
    let _ = child.0.kill();
    let _ = child.0.wait();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let _ = std::fs::remove_file(log);
    text
}

#[test]
fn a_websocket_closed_for_its_client_is_logged_with_the_session_tag() {
    // An operator's trial: the lines for an oversized message and for a
    // silent peer named no session, so an operator could not tell whose
    // socket closed. The session logs them now, with its tag.
    let (mut child, port, log) = logging_test_server("wsfail", "info");
    let mut ws = open_websocket(port, "/echo");
    // A header announcing 2 MiB (over test_server's 1 MiB), and one broken
    // SockJS frame on another socket.
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&(2u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    ws.send_raw(&frame);
    assert_eq!(ws.recv(), Ws::Close(Some(1009), String::new()));
    let mut broken = open_websocket(port, "/echo");
    broken.send_text("[not json");
    assert!(matches!(broken.recv(), Ws::Close(Some(3000), _)));
    let whys = ["a message over 1048576 bytes", "a message that is no SockJS frame"];
    // The socket closes before its session hears of it.
    eventually("both lines are logged", || {
        std::fs::read_to_string(&log).is_ok_and(|text| whys.iter().all(|why| text.contains(why)))
    });
    let text = stop_and_read_log(&mut child, &log);
    for why in whys {
        let line = text
            .lines()
            .find(|l| l.ends_with(&format!("websocket closed for {why}")))
            .unwrap_or_else(|| panic!("no line for {why}:\n{text}"));
        let tag = line.split("sockjs #").nth(1).and_then(|rest| rest.split(':').next()).unwrap_or_default();
        assert!(tag.len() == 6 && tag.bytes().all(|b| b.is_ascii_hexdigit()), "{line}");
    }
}

#[test]
fn behind_the_shipped_haproxy_config_each_client_address_has_its_own_cap() {
    // The operator's trial: behind haproxy, every client was the balancer's
    // one address, and the per-address cap refused them all once it was
    // reached. With `option forwardfor` (examples/cluster/haproxy.cfg) and
    // the balancer in `trusted_proxies`, as the README sets them up, each
    // client counts alone, and one cannot pick its address with a header
    // of its own: haproxy adds the address it saw after it, and passes a
    // `Forwarded` header on as the client wrote it.
    use std::net::{IpAddr, Ipv4Addr};
    capture(log::LevelFilter::Info);
    let node = echo_server_at(
        "/chat",
        Config::default()
            .trusted_proxies([IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .max_sessions_per_ip(2)
            // The sessions opened below stay counted until the test ends.
            .disconnect_delay(Duration::from_secs(120)),
    );
    let (lb, cookie_lb) = (free_port(), free_port());
    let _haproxy = haproxy(lb, cookie_lb, node, node);
    let open = |from: Ipv4Addr, header: &[(&str, &str)]| {
        let mut conn = Conn::open_from(from, lb);
        conn.send("POST", &format!("/chat/000/{}/xhr", session()), header, Some(b""));
        let res = conn.response("POST");
        (res.status(), res.body)
    };
    let (first, second) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));
    for n in 1..=2 {
        assert_eq!(open(first, &[]), (200, "o\n".to_owned()), "session {n} of {first}");
    }
    assert_eq!(open(first, &[]).0, 429, "a third session of {first}");
    assert_eq!(open(first, &[("X-Forwarded-For", "127.0.0.9")]).0, 429, "{first} naming another address");
    // haproxy passes a client's own `Forwarded` on untouched: not read.
    assert_eq!(open(first, &[("Forwarded", "for=127.0.0.9")]).0, 429, "{first} with a Forwarded of its own");
    // Nor by writing what reads as no address (it counted as the balancer).
    assert_eq!(open(first, &[("X-Forwarded-For", "é")]).0, 429, "{first} with a header that is no address");
    assert_eq!(open(second, &[]), (200, "o\n".to_owned()), "{second} has a count of its own");
    // The refusals' log line names the client as the node tells it.
    let refused = |client: &str| logged(|line| line.contains("session refused") && line.contains(client));
    assert!(refused(&format!("(client {first})")), "a refusal logged for {first}");
    assert!(!refused("(client 127.0.0.1)") && !refused("127.0.0.9"), "a refusal logged for another address");
}
