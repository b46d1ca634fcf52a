//! Test clients that speak HTTP/1.x and WebSocket on raw TCP sockets, so
//! that tests see the wire exactly (chunk boundaries, framing, headers), and
//! a handle on `examples/test_server` running on a free loopback port.
#![allow(dead_code, unreachable_pub, reason = "each test binary uses its own part of the helpers")]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// A session that sends every message back, for in-process servers.
pub struct Echo;

impl actix::Actor for Echo {
    type Context = actix_sockjs::SessionContext<Self>;
}

impl actix_sockjs::Session for Echo {
    fn on_message(&mut self, msg: String, ctx: &mut actix_sockjs::SessionContext<Self>) {
        ctx.send(msg);
    }
}

/// How long any single read may block before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// An example server (by default `examples/test_server`), started on a free
/// port and killed on drop.
pub struct TestServer {
    pub child: Child,
    pub port: u16,
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_example("test_server", &["--sockjs-url", "/static/sockjs.js"])
    }

    /// Starts an example that takes `--port 0` and prints `listening on
    /// http://HOST:PORT` first, from the profile the caller was built with.
    pub fn start_example(name: &str, args: &[&str]) -> Self {
        Self::start_example_with(name, &[], args)
    }

    /// Like `start_example`, for an example that needs cargo features.
    pub fn start_example_with(name: &str, features: &[&str], args: &[&str]) -> Self {
        Self::start_example_env(name, features, args, &[])
    }

    /// Like `start_example_with`, with these environment variables.
    pub fn start_example_env(name: &str, features: &[&str], args: &[&str], env: &[(&str, &str)]) -> Self {
        let exe = example_binary(name, features);
        let mut command = Command::new(&exe);
        command.args(["--port", "0"]).args(args).envs(env.iter().copied());
        Self::spawn(command)
    }

    /// test_server started by a shell that first lowered its soft descriptor
    /// limit to `soft`, as a harness with a small default limit would.
    pub fn start_with_soft_descriptor_limit(soft: u64) -> Self {
        let exe = example_binary("test_server", &[]);
        let mut command = Command::new("sh");
        command.arg("-c").arg(format!("ulimit -Sn {soft} && exec \"$0\" \"$@\"")).arg(exe);
        command.args(["--port", "0", "--sockjs-url", "/static/sockjs.js"]);
        Self::spawn(command)
    }

    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("first line");
        let port =
            line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).expect("listening line with a port");
        Self { child, port }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of an example binary, built (or brought up to date) once per
/// test process, in the profile the tests were built with: `cargo test
/// --test x` alone does not rebuild examples, and a stale one would test old
/// code.
///
/// It is built with `features` and every feature this test crate was
/// built with: `cargo test --all-features` has just built the examples so,
/// and asking cargo for another set would rebuild the library (and leave
/// the binary built with that set for the next test binary). Asking for
/// one feature set, whatever `features` says, also keeps a binary built
/// without a feature from being taken for one built with it.
pub fn example_binary(name: &str, features: &[&str]) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut dir = std::env::current_exe().expect("test exe");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let exe = dir.join("examples").join(name);
    // The crate's features (Cargo.toml's `[features]`: keep in step).
    let ours: &[&str] = &[
        #[cfg(feature = "redis")]
        "redis",
        #[cfg(feature = "fuzzing")]
        "fuzzing",
    ];
    let missing: Vec<&&str> = features.iter().filter(|f| !ours.contains(f)).collect();
    assert!(
        missing.is_empty(),
        "example {name} needs features {missing:?}, which this test was not built with"
    );
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "--example", name]);
        if dir.ends_with("release") {
            build.arg("--release");
        }
        if !ours.is_empty() {
            build.args(["--features", &ours.join(",")]);
        }
        let status = build.status().expect("cargo build");
        assert!(status.success(), "building example {name} failed");
        built.push(name.to_owned());
    }
    exe
}

/// Resident memory of a process (`"self"` or a pid), in bytes.
pub fn resident_bytes(process: impl std::fmt::Display) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).expect("/proc/<pid>/status");
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).expect("VmRSS line");
    kb.trim().trim_end_matches("kB").trim().parse::<usize>().expect("VmRSS number") * 1024
}

/// Open descriptors of a process (`"self"` or a pid).
pub fn open_descriptors(process: impl std::fmt::Display) -> usize {
    std::fs::read_dir(format!("/proc/{process}/fd")).map_or(0, Iterator::count)
}

/// A fresh session id for each call.
pub fn session() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("s{}x{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A new session on `prefix` over WebSocket, past its `o` frame.
pub fn open_websocket(port: u16, prefix: &str) -> WsClient {
    let mut ws = WsClient::connect(port, &format!("{prefix}/000/{}/websocket", session()));
    assert_eq!(ws.recv_text(), "o");
    ws
}

/// A new session on `prefix` over xhr_streaming, past its prelude and `o`.
pub fn open_xhr_stream(port: u16, prefix: &str) -> Conn {
    open_xhr_stream_at(port, &format!("{prefix}/000/{}", session()))
}

/// The same for the session at `url` (`{prefix}/{server}/{session}`), to
/// send to it afterwards.
pub fn open_xhr_stream_at(port: u16, url: &str) -> Conn {
    let mut conn = Conn::open(port);
    conn.send("POST", &format!("{url}/xhr_streaming"), &[], Some(b""));
    assert_eq!(conn.head().status, 200);
    assert_eq!(conn.chunk().unwrap(), format!("{}\n", "h".repeat(2048)));
    assert_eq!(conn.chunk().unwrap(), "o\n");
    conn
}

/// A response head: status line and headers (names lower-cased).
#[derive(Debug, Clone)]
pub struct Head {
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().filter(|(k, _)| *k == name).map(|(_, v)| v.as_str()).collect()
    }

    pub fn chunked(&self) -> bool {
        self.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    }
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Response {
    pub head: Head,
    pub body: String,
    /// The body's chunks as sent, when the response was chunked.
    pub chunks: Vec<String>,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head.status
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }
}

/// One client connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(port: u16) -> Self {
        Self::on(TcpStream::connect(("127.0.0.1", port)).expect("connect"))
    }

    /// A connection to 127.0.0.1:`port` from the local address `from` (any
    /// 127.x.y.z): a client of its own address.
    pub fn open_from(from: std::net::Ipv4Addr, port: u16) -> Self {
        use std::net::SocketAddr;
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
        socket.bind(&SocketAddr::from((from, 0)).into()).expect("bind the source address");
        socket.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into()).expect("connect");
        Self::on(socket.into())
    }

    fn on(stream: TcpStream) -> Self {
        stream.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Self { reader: BufReader::new(stream) }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("write");
    }

    /// The socket, for a writer of its own.
    pub fn stream(&self) -> TcpStream {
        self.reader.get_ref().try_clone().expect("clone the socket")
    }

    /// Closes our sending half (a FIN, as a client that aborts does); what
    /// the server sends after it can still be read.
    pub fn shut_write(&self) {
        let _ = self.reader.get_ref().shutdown(std::net::Shutdown::Write);
    }

    /// Whether the server has sent something not read yet (looks without
    /// reading or waiting).
    pub fn has_data(&self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let stream = self.reader.get_ref();
        stream.set_nonblocking(true).expect("nonblocking");
        let sent = matches!(stream.peek(&mut [0u8; 1]), Ok(n) if n > 0);
        stream.set_nonblocking(false).expect("blocking");
        sent
    }

    /// Writes bytes; an error (the server closed first) is the caller's.
    pub fn try_write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// Sends an HTTP/1.1 request; a body gets a `Content-Length`.
    pub fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) {
        self.send_version(method, path, "HTTP/1.1", headers, body);
    }

    pub fn send_version(
        &mut self,
        method: &str,
        path: &str,
        version: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) {
        let mut req = format!("{method} {path} {version}\r\nHost: 127.0.0.1\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(body) = body {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        self.write(&bytes);
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read line");
        line.trim_end_matches(['\r', '\n']).to_owned()
    }

    pub fn head(&mut self) -> Head {
        let status_line = self.line();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_owned();
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').expect("header line");
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        Head { version, status, headers }
    }

    /// The next chunk of a chunked body; `None` at the terminating chunk.
    pub fn chunk(&mut self) -> Option<String> {
        let size_line = self.line();
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
        let mut data = vec![0; size];
        self.reader.read_exact(&mut data).expect("chunk data");
        let crlf = self.line();
        assert!(crlf.is_empty(), "chunk not followed by CRLF");
        if size == 0 {
            return None;
        }
        Some(String::from_utf8(data).expect("utf-8 chunk"))
    }

    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut data = vec![0; n];
        self.reader.read_exact(&mut data).expect("read_exact");
        data
    }

    /// Reads until the server closes the connection.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut data = Vec::new();
        self.reader.read_to_end(&mut data).expect("read to end");
        data
    }

    /// Reads and drops what the server sends until it ends the connection:
    /// `true` at its end (EOF, or a reset when it closed with our bytes
    /// unread), `false` if it is still open after `READ_TIMEOUT`.
    pub fn wait_closed(&mut self) -> bool {
        let mut buf = [0; 4096];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        }
    }

    /// Reads a whole response after its head.
    pub fn body(&mut self, head: &Head, method: &str) -> (String, Vec<String>) {
        if method == "HEAD" || matches!(head.status, 101 | 204 | 304) {
            return (String::new(), Vec::new());
        }
        if head.chunked() {
            let mut chunks = Vec::new();
            while let Some(c) = self.chunk() {
                chunks.push(c);
            }
            return (chunks.concat(), chunks);
        }
        if let Some(len) = head.header("content-length") {
            let data = self.read_exact(len.parse().expect("content-length"));
            return (String::from_utf8(data).expect("utf-8 body"), Vec::new());
        }
        (String::from_utf8(self.read_to_end()).expect("utf-8 body"), Vec::new())
    }

    pub fn response(&mut self, method: &str) -> Response {
        let head = self.head();
        let (body, chunks) = self.body(&head, method);
        Response { head, body, chunks }
    }
}

/// One request on a fresh connection.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    let mut conn = Conn::open(port);
    conn.send(method, path, headers, body);
    conn.response(method)
}

pub fn get(port: u16, path: &str) -> Response {
    request(port, "GET", path, &[], None)
}

pub fn post(port: u16, path: &str, body: &str) -> Response {
    request(port, "POST", path, &[], Some(body.as_bytes()))
}

/// A WebSocket client frame or message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ws {
    Text(String),
    Close(Option<u16>, String),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Binary(Vec<u8>),
    /// The server closed the TCP connection.
    Eof,
}

/// A minimal RFC 6455 client.
pub struct WsClient {
    conn: Conn,
    pub head: Head,
}

impl WsClient {
    pub fn connect(port: u16, path: &str) -> Self {
        Self::connect_with(port, path, &[]).expect("websocket upgrade")
    }

    pub fn connect_with(port: u16, path: &str, extra: &[(&str, &str)]) -> Result<Self, Response> {
        let mut conn = Conn::open(port);
        let mut headers = vec![
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "x3JJHMbDL1EzLkh9GBhXDw=="),
        ];
        headers.extend_from_slice(extra);
        conn.send("GET", path, &headers, None);
        let head = conn.head();
        if head.status != 101 {
            let (body, chunks) = conn.body(&head, "GET");
            return Err(Response { head, body, chunks });
        }
        Ok(Self { conn, head })
    }

    pub fn send_frame(&mut self, opcode: u8, fin: bool, payload: &[u8]) {
        self.conn.write(&Self::frame(opcode, fin, payload));
    }

    /// A masked client frame, for several frames in one write.
    pub fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len < 65536 {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [0x12, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    /// A second client on the same socket, for reading on another thread
    /// while this one writes (it must not answer pings: use `recv_any`).
    pub fn split_reader(&self) -> WsClient {
        WsClient { conn: Conn { reader: BufReader::new(self.stream()) }, head: self.head.clone() }
    }

    /// The client's socket, for writing from another thread.
    pub fn stream(&self) -> TcpStream {
        self.conn.stream()
    }

    /// Writes bytes as they are: for frames no client should send.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.conn.write(bytes);
    }

    pub fn send_text(&mut self, text: &str) {
        self.send_frame(0x1, true, text.as_bytes());
    }

    pub fn send_close(&mut self, code: u16) {
        self.send_frame(0x8, true, &code.to_be_bytes());
    }

    /// The next frame from the server, answering and skipping pings, as a
    /// browser does.
    pub fn recv(&mut self) -> Ws {
        loop {
            match self.recv_any() {
                Ws::Ping(p) => self.send_frame(0xA, true, &p),
                Ws::Pong(_) => {}
                other => return other,
            }
        }
    }

    /// The next frame from the server, pings included and unanswered
    /// (continuations are joined).
    pub fn recv_any(&mut self) -> Ws {
        let mut message = Vec::new();
        let mut message_op = 0;
        loop {
            let mut h = [0u8; 2];
            if self.conn.reader.read_exact(&mut h).is_err() {
                return Ws::Eof;
            }
            let fin = h[0] & 0x80 != 0;
            let op = h[0] & 0x0f;
            let mut len = u64::from(h[1] & 0x7f);
            if len == 126 {
                len = u64::from(u16::from_be_bytes(self.conn.read_exact(2).try_into().unwrap()));
            } else if len == 127 {
                len = u64::from_be_bytes(self.conn.read_exact(8).try_into().unwrap());
            }
            let payload = self.conn.read_exact(len as usize);
            match op {
                0x8 => {
                    let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned();
                    return Ws::Close(code, reason);
                }
                0x9 => return Ws::Ping(payload),
                0xA => return Ws::Pong(payload),
                0x0 => message.extend_from_slice(&payload),
                op => {
                    message_op = op;
                    message = payload;
                }
            }
            if fin {
                return match message_op {
                    0x1 => Ws::Text(String::from_utf8(message).expect("utf-8 text frame")),
                    _ => Ws::Binary(message),
                };
            }
        }
    }

    pub fn recv_text(&mut self) -> String {
        match self.recv() {
            Ws::Text(t) => t,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next SockJS frame but heartbeats (`h`), as text.
    pub fn recv_frame(&mut self) -> String {
        loop {
            match self.recv_text() {
                h if h == "h" => {}
                frame => return frame,
            }
        }
    }

    /// Whether the server ends the connection (EOF or reset) within
    /// `limit`, while this client keeps its own side open.
    pub fn ends_within(&mut self, limit: Duration) -> bool {
        let socket = self.conn.reader.get_ref();
        socket.set_read_timeout(Some(limit)).expect("timeout");
        let mut byte = [0u8; 1];
        let ended = loop {
            match self.conn.reader.read(&mut byte) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    break false
                }
                Err(_) => break true,
            }
        };
        self.conn.reader.get_ref().set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
        ended
    }

    /// After a close frame (or without one) the server must end the
    /// connection. Like a browser, the client closes its side once it has
    /// the close frame.
    pub fn expect_end(&mut self) {
        match self.recv() {
            Ws::Close(..) => {
                let _ = self.conn.reader.get_ref().shutdown(std::net::Shutdown::Write);
                assert_eq!(self.recv(), Ws::Eof);
            }
            Ws::Eof => {}
            other => panic!("expected the end of the connection, got {other:?}"),
        }
    }
}

/// A SockJS client on one of three transports, reading messages one at a
/// time (frames may carry several; heartbeats are skipped).
pub struct Client {
    port: u16,
    /// `<prefix>/000/<id>`.
    url: String,
    link: Link,
    inbox: std::collections::VecDeque<String>,
}

enum Link {
    Ws(WsClient),
    Stream(Stream),
    Poll,
}

/// An xhr_streaming client's response.
struct Stream {
    conn: Conn,
    /// Takes the session on in a new request once a response that carried
    /// this many bytes ends, as sockjs-client does at the endpoint's
    /// response limit; `None`: the stream must go on.
    take_on: Option<usize>,
    /// Bytes of frames the current response carried.
    read: usize,
}

/// The messages of a frame; `None` for the open and heartbeat frames.
fn frame_messages(frame: &str) -> Option<Vec<String>> {
    let frame = frame.trim_end_matches('\n');
    match frame.as_bytes().first() {
        Some(b'a') => Some(serde_json::from_str(&frame[1..]).expect("a JSON array of strings")),
        Some(b'o' | b'h') => None,
        _ => panic!("unexpected frame {frame:?}"),
    }
}

impl Client {
    /// A session over the SockJS WebSocket, past its `o`.
    pub fn websocket(port: u16, prefix: &str) -> Self {
        Self::websocket_at(port, &format!("{prefix}/000/{}", session()))
    }

    /// A session over the SockJS WebSocket at `url` (`<prefix>/000/<id>`),
    /// past its `o`: under an id of the caller's choice.
    pub fn websocket_at(port: u16, url: &str) -> Self {
        let mut ws = WsClient::connect(port, &format!("{url}/websocket"));
        assert_eq!(ws.recv_text(), "o");
        Self { port, url: url.to_owned(), link: Link::Ws(ws), inbox: Default::default() }
    }

    /// A session over xhr_streaming, past its prelude and `o`; its
    /// response must not end.
    pub fn stream(port: u16, prefix: &str) -> Self {
        Self::stream_taken_on(port, prefix, None)
    }

    /// [`Client::stream`] that takes its session on in a new request, as
    /// sockjs-client does, when a response that carried `limit` bytes (the
    /// endpoint's response limit) ends.
    pub fn stream_taken_on(port: u16, prefix: &str, limit: Option<usize>) -> Self {
        let url = format!("{prefix}/000/{}", session());
        let conn = open_xhr_stream_at(port, &url);
        let link = Link::Stream(Stream { conn, take_on: limit, read: 0 });
        Self { port, url, link, inbox: Default::default() }
    }

    /// A session over xhr polling, past its `o`.
    pub fn poll(port: u16, prefix: &str) -> Self {
        let url = format!("{prefix}/000/{}", session());
        assert_eq!(post(port, &format!("{url}/xhr"), "").body, "o\n");
        Self { port, url, link: Link::Poll, inbox: Default::default() }
    }

    /// Sends one message.
    pub fn send(&mut self, msg: &str) {
        let payload = serde_json::to_string(&[msg]).expect("json");
        match &mut self.link {
            Link::Ws(ws) => ws.send_text(&payload),
            _ => assert_eq!(post(self.port, &format!("{}/xhr_send", self.url), &payload).status(), 204),
        }
    }

    /// The next message.
    pub fn recv(&mut self) -> String {
        while self.inbox.is_empty() {
            let frame = match &mut self.link {
                Link::Ws(ws) => ws.recv_text(),
                Link::Stream(stream) => match stream.conn.chunk() {
                    Some(chunk) => {
                        stream.read += chunk.len();
                        chunk
                    }
                    None => {
                        let limit = stream.take_on.expect("the stream goes on");
                        assert!(stream.read >= limit, "the stream ended after {} bytes", stream.read);
                        let mut next = Conn::open(self.port);
                        next.send("POST", &format!("{}/xhr_streaming", self.url), &[], Some(b""));
                        assert_eq!(next.head().status, 200, "the stream taken on");
                        assert_eq!(next.chunk().as_deref(), Some(&*format!("{}\n", "h".repeat(2048))));
                        *stream = Stream { conn: next, take_on: stream.take_on, read: 0 };
                        // The same session: an `o` would be a new one.
                        let first = stream.conn.chunk().expect("the stream taken on goes on");
                        assert_ne!(first, "o\n", "the stream taken on opened a new session");
                        stream.read += first.len();
                        first
                    }
                },
                Link::Poll => post(self.port, &format!("{}/xhr", self.url), "").body,
            };
            // A chunk may carry several frames, a line each.
            for frame in frame.split_inclusive('\n') {
                self.inbox.extend(frame_messages(frame).unwrap_or_default());
            }
        }
        self.inbox.pop_front().expect("a message")
    }

    /// Sends `msg` and returns the next message.
    pub fn ask(&mut self, msg: &str) -> String {
        self.send(msg);
        self.recv()
    }

    /// The session's URL, `<prefix>/000/<id>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Reads an xhr_streaming client's response to its last chunk
    /// (heartbeats and frames before it are dropped); fails the test if it
    /// does not end within `READ_TIMEOUT`.
    pub fn expect_stream_end(&mut self) {
        let Link::Stream(stream) = &mut self.link else { panic!("not an xhr_streaming client") };
        while stream.conn.chunk().is_some() {}
    }

    /// The WebSocket of a WebSocket client.
    pub fn ws(&mut self) -> &mut WsClient {
        match &mut self.link {
            Link::Ws(ws) => ws,
            _ => panic!("not a WebSocket client"),
        }
    }
}

/// An in-process server with one `/echo` endpoint ([`Echo`]) using
/// `config`, on two workers, set up as the examples are (aborts noticed at
/// EOF, connections closed as soon as their response is done); answers its
/// port. It runs until the test process ends.
pub fn echo_server(config: actix_sockjs::Config) -> u16 {
    echo_server_at("/echo", config)
}

/// [`echo_server`] with its endpoint at `prefix`.
pub fn echo_server_at(prefix: &'static str, config: actix_sockjs::Config) -> u16 {
    use actix::Actor as _;
    let (ready_tx, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix::System::new().block_on(async move {
            let manager = actix_sockjs::SessionManager::new(|| Echo).start();
            let server = actix_web::HttpServer::new(move || {
                actix_web::App::new()
                    .service(actix_sockjs::SockJs::new(prefix, manager.clone()).config(config.clone()))
            })
            .workers(2)
            .max_connections(10_000)
            .h1_allow_half_closed(false)
            .client_disconnect_timeout(Duration::ZERO)
            .bind(("127.0.0.1", 0))
            .expect("bind");
            ready_tx.send(server.addrs()[0].port()).expect("ready");
            let _ = server.run().await;
        });
    });
    ready.recv_timeout(READ_TIMEOUT).expect("server started")
}

/// An in-process server with one SockJS endpoint at `prefix` (with
/// `config`, whose manager `start` starts), on `workers` workers and a
/// backlog of 4,096, refusing half-closed connections unless
/// `half_closed`; runs on a thread of its own, inside an actix system,
/// until that system is stopped. Answers its port, the manager and the
/// system.
pub fn serve_endpoint<A: actix_sockjs::Session>(
    prefix: &'static str,
    config: actix_sockjs::Config,
    workers: usize,
    half_closed: bool,
    start: impl FnOnce() -> actix::Addr<actix_sockjs::SessionManager<A>> + Send + 'static,
) -> (u16, actix::Addr<actix_sockjs::SessionManager<A>>, actix::System) {
    let (ready_tx, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix::System::new().block_on(async move {
            let manager = start();
            let m = manager.clone();
            let server = actix_web::HttpServer::new(move || {
                actix_web::App::new()
                    .service(actix_sockjs::SockJs::new(prefix, m.clone()).config(config.clone()))
            })
            .workers(workers)
            .backlog(4096)
            .h1_allow_half_closed(half_closed)
            .bind(("127.0.0.1", 0))
            .expect("bind");
            ready_tx.send((server.addrs()[0].port(), manager, actix::System::current())).expect("ready");
            let _ = server.run().await;
        });
    });
    ready.recv_timeout(READ_TIMEOUT).expect("server started")
}

/// haproxy with the shipped `examples/cluster/haproxy.cfg`: the path-hash
/// frontend on `lb`, the cookie one on `cookie_lb`, in front of two nodes
/// (the same port twice for one node); returns once it answers
/// `/chat/info`, which it also checks on the nodes.
pub fn haproxy(lb: u16, cookie_lb: u16, node1: u16, node2: u16) -> Proc {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cluster/haproxy.cfg");
    let child = cluster_ports(
        Command::new(program("haproxy")).arg("-f").arg(config).arg("-db"),
        [lb, cookie_lb, node1, node2],
    )
    .stdout(Stdio::null())
    .spawn()
    .expect("start haproxy");
    wait_for("haproxy to answer", || {
        std::net::TcpStream::connect(("127.0.0.1", lb)).is_ok()
            && request(lb, "GET", "/chat/info", &[], None).status() == 200
    });
    Proc(child)
}

/// Gives `command` the ports of `examples/cluster` (haproxy.cfg, run.sh):
/// the two balancers', then the two nodes'.
pub fn cluster_ports(command: &mut Command, [lb, cookie_lb, node1, node2]: [u16; 4]) -> &mut Command {
    command
        .env("SOCKJS_LB_PORT", lb.to_string())
        .env("SOCKJS_COOKIE_LB_PORT", cookie_lb.to_string())
        .env("SOCKJS_NODE1_PORT", node1.to_string())
        .env("SOCKJS_NODE2_PORT", node2.to_string())
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Fails the test with a hint when a program is not installed.
pub fn program(name: &str) -> &str {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| Path::new(&dir).join(name).is_file()));
    assert!(found, "{name} is not installed (Debian package {name}); .ci/run installs it");
    name
}

/// Polls `check` until it holds; for states no event announces (a metric,
/// a process accepting connections).
pub fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends a hixie-76 upgrade request for `path` and reads the head.
pub fn hixie76_request(port: u16, path: &str) -> (Conn, Head) {
    let mut conn = Conn::open(port);
    conn.send(
        "GET",
        path,
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "WebSocket"),
            ("Origin", "http://127.0.0.1:8081"),
            ("Sec-WebSocket-Key1", "4 @1  46546xW%0l 1 5"),
            ("Sec-WebSocket-Key2", "12998 5 Y3 1  .P00"),
        ],
        None,
    );
    let head = conn.head();
    (conn, head)
}

/// Keeps the lines the crate logs at the level [`capture`] was given, to
/// read back with [`logged`].
struct Captured;

static LOGGED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

impl log::Log for Captured {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            LOGGED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

/// From now on, keeps every error line logged in this test process.
pub fn capture_errors() {
    capture(log::LevelFilter::Error);
}

/// From now on, keeps every line logged at `level` or above in this test
/// process (one level for the process: the first call's).
pub fn capture(level: log::LevelFilter) {
    if log::set_boxed_logger(Box::new(Captured)).is_ok() {
        log::set_max_level(level);
    }
}

/// Whether a line kept since [`capture`] satisfies `matches`.
pub fn logged(matches: impl Fn(&str) -> bool) -> bool {
    LOGGED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().any(|line| matches(line))
}

/// The lines kept since [`capture`] that satisfy `matches`.
pub fn logged_lines(matches: impl Fn(&str) -> bool) -> Vec<String> {
    let lines = LOGGED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    lines.iter().filter(|line| matches(line)).cloned().collect()
}

/// Asks until `check` holds, for states only the manager's next notes
/// settle (a session that ended is forgotten once its note is read).
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + READ_TIMEOUT;
    while !check() {
        assert!(std::time::Instant::now() < deadline, "{what}: not within {READ_TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
