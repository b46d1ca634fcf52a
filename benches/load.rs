//! Load comparison of three servers in one run, interleaved:
//! actix-sockjs (`benches/sockjs_bench.rs`), sockjs-node 0.3.24
//! (`benches/sockjs-node/server.js`, installed here with `npm ci`) and the
//! raw actix WebSocket floor (`benches/ws_floor.rs`).
//!
//! Run: `cargo bench --bench load`. Scenarios (each bounded in time and
//! count, loopback only):
//! - WebSocket echo, `LOAD_SESSIONS` concurrent sessions (default 50,500),
//!   each sending its next message once its answer is in; the summary
//!   compares server CPU per round trip and, from the same runs, the p99;
//! - WebSocket echo at a pace, `LOAD_PACED` as `sessions:round trips per
//!   second` (default `500:100000`; the floors and ours): each session
//!   sends on its own schedule, latency counted from the time a round
//!   trip was due, and the summary compares the p99 (the generator keeps
//!   up, where the closed-loop echo at 500 sessions takes ~90% of its CPU);
//! - WebSocket set-up, `LOAD_CONNECT` sessions opened 50 at a time
//!   (default 5000): server CPU and latency per session opened (a SockJS
//!   session counts as open at its `o`; the sessions stay open until the
//!   CPU is read, so that their close is not counted);
//! - WebSocket close, `LOAD_CLOSE` sessions (default 5000): opened as in
//!   set-up and left to settle, then all closed by the client at once (a
//!   FIN and no close frame, as when a tab or a network goes away),
//!   server CPU per session closed until the server's CPU stops moving;
//! - xhr-polling echo, `LOAD_POLL_SESSIONS` sessions (default 50,500),
//!   against the SockJS servers and the raw actix-web polling floor
//!   (`benches/http_floor.rs`: the same two requests, plain handlers);
//! - fan-out from one broadcaster to `LOAD_FANOUT` receivers (default
//!   100,10000): xhr_streaming receivers for the SockJS servers, WebSockets
//!   for the floor; and again with SockJS WebSocket receivers for ours
//!   ("ws fan-out"), against the same floor;
//! - an interactive client, `LOAD_INTERACTIVE` round trips (default 100;
//!   0 skips it): the client sends a message on `/broadcast` and waits for
//!   it, a second session broadcasts 5 ms later, and the latency is that
//!   broadcast's (the p50 is the summary's figure). Ours runs twice, the
//!   second time with Nagle's algorithm off (`sockjs_bench` under
//!   `SOCKJS_BENCH_NODELAY`); every other scenario keeps the OS default;
//! - a broadcast to a group among many sessions, `LOAD_GROUP` (`N:TOTAL`,
//!   default `100:10000`: 100 xhr_streaming members among 10,000 open
//!   sessions, the rest idle WebSockets), ours only, compared with the
//!   fan-out to N alone;
//! - the CPU of `LOAD_IDLE_CPU` idle WebSocket sessions (default 10000)
//!   over `LOAD_IDLE_SECONDS` (default 30: a SockJS heartbeat comes every
//!   25 s), in ms of CPU per second;
//! - idle HTTP sessions, `LOAD_IDLE_HTTP` (default 10000): server RSS per
//!   polling session between polls (no receiver) and per idle
//!   xhr_streaming session (SockJS servers);
//! - idle WebSocket sessions, `LOAD_IDLE` (default 1000,10000,100000), from
//!   several 127.0.0.x source addresses: server RSS per session, and the
//!   heap committed per session (`VmData`), which does not depend on where
//!   the untouched pages of each connection's buffers fall. The bench raises its descriptor
//!   limit to the hard limit (the servers inherit it) and skips a count
//!   that does not fit: the server and the generator each hold one
//!   descriptor per session. With `LOAD_HEAP_PHASES=1` each round starts
//!   the servers with their heaps moved by another phase (`shift_heap` in
//!   benches/support/serve.rs) and the scenario also prints each server's
//!   mean RSS over the rounds.
//!
//! `LOAD_SECONDS` (default 5) is the length of a measuring window,
//! `LOAD_ROUNDS` (default 3) the number of interleaved rounds, `LOAD_SERVERS`
//! a comma list to run a subset (ours,node,floor,actixws,httpfloor), `LOAD_OURS` the example
//! that plays our server (default `sockjs_bench`; `test_server` measures
//! the server the independent checks use, whose `/echo` has a 4,096-byte
//! response limit), `LOAD_PIN` (default 1 on two or more cores; 0 turns it
//! off) puts the generator on the last CPU and each server on the others,
//! so that the two never take turns on one core: servers that size their
//! worker pool by the CPUs they may use (actix-web) then start one worker
//! fewer. The headline figure is
//! server CPU time per operation (each thread's nanoseconds on a CPU, from
//! /proc/PID/task/TID/schedstat; utime + stime, in 10 ms ticks, if a
//! thread ended during the window); the generator
//! is one thread and reports its own CPU per operation beside it.

use std::{
    cell::{Cell, RefCell},
    io::{self, BufRead},
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    rc::Rc,
    time::{Duration, Instant},
};

use std::pin::pin;

use futures_util::future::{join_all, select, Either};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpSocket, TcpStream},
    sync::Notify,
};

const MESSAGE: &str = "hello, world: 0123456789abcdef";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Server {
    Ours,
    /// Ours with `HttpServer::tcp_nodelay(true)` (`sockjs_bench` reads
    /// `SOCKJS_BENCH_NODELAY`): the interactive scenario only.
    OursNoDelay,
    Node,
    /// The raw actix WebSocket floor (`benches/ws_floor.rs`).
    Floor,
    /// The actix-ws WebSocket floor (`benches/ws_floor_actix_ws.rs`).
    WsFloor,
    /// The raw actix-web polling floor (`benches/http_floor.rs`).
    HttpFloor,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Ours => "actix-sockjs",
            Server::OursNoDelay => "actix-sockjs, nodelay",
            Server::Node => "sockjs-node 0.3.24",
            Server::Floor => "raw actix ws (floor)",
            Server::WsFloor => "actix-ws (floor)",
            Server::HttpFloor => "raw actix-web (floor)",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Server::Ours => "ours",
            Server::OursNoDelay => "oursnodelay",
            Server::Node => "node",
            Server::Floor => "floor",
            Server::WsFloor => "actixws",
            Server::HttpFloor => "httpfloor",
        }
    }

    fn sockjs(self) -> bool {
        matches!(self, Server::Ours | Server::OursNoDelay | Server::Node)
    }

    /// Serves WebSockets (SockJS or raw).
    fn websocket(self) -> bool {
        self != Server::HttpFloor
    }
}

/// A server process, killed on drop.
struct Proc {
    child: Child,
    port: u16,
}

impl Proc {
    fn start(server: Server) -> Self {
        Self::start_with(server, None)
    }

    /// Starts `server` with its workers' heaps moved by `heap_phase` bytes
    /// (`serve::shift_heap`; sockjs-node ignores it).
    fn start_with(server: Server, heap_phase: Option<usize>) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let release = root.join("target/release/examples");
        let mut cmd = match server {
            Server::Ours => Command::new(release.join(ours_example())),
            Server::OursNoDelay => {
                let mut c = Command::new(release.join(ours_example()));
                c.env("SOCKJS_BENCH_NODELAY", "1");
                c
            }
            Server::Floor => Command::new(release.join("ws_floor")),
            Server::HttpFloor => Command::new(release.join("http_floor")),
            Server::WsFloor => Command::new(release.join("ws_floor_actix_ws")),
            Server::Node => {
                let mut c = Command::new("node");
                c.arg(root.join("benches/sockjs-node/server.js"));
                c
            }
        };
        if let Some(phase) = heap_phase {
            cmd.env("BENCH_HEAP_PHASE", phase.to_string());
        }
        if let Some(cpus) = &pinned().servers {
            // taskset execs the server: the child's pid is the server's.
            let program = cmd.get_program().to_owned();
            let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
            let envs: Vec<_> =
                cmd.get_envs().map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned))).collect();
            cmd = Command::new("taskset");
            cmd.args(["-c", cpus]).arg(program).args(args);
            for (key, value) in envs {
                match value {
                    Some(value) => cmd.env(key, value),
                    None => cmd.env_remove(key),
                };
            }
        }
        let mut child = cmd
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.name()));
        let mut line = String::new();
        io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("first line");
        let port = line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).expect("a listening line");
        Self { child, port }
    }

    fn cpu(&self) -> Cpu {
        Cpu::of(&self.child.id().to_string())
    }

    fn rss(&self) -> usize {
        self.status("VmRSS:")
    }

    /// The process's writable private mappings (`VmData`), in bytes: the
    /// heap the allocator has committed, whether its pages were written or
    /// not. RSS counts only written pages, and where a connection's
    /// untouched buffer pages fall decides it (see benches/README.md, "Idle
    /// memory"); this does not move with that.
    fn data(&self) -> usize {
        self.status("VmData:")
    }

    /// A `kB` line of `/proc/PID/status`, in bytes (0 if unreadable).
    fn status(&self, field: &str) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
            .unwrap_or(0)
            * 1024
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's CPU time at one moment: each thread's time on a CPU in
/// nanoseconds (`/proc/PID/task/TID/schedstat`), and utime + stime in
/// clock ticks. Ticks are 10 ms: 5,000 set-ups of 40 µs are 20 of them, a
/// figure good to ±5%; the nanoseconds are exact.
struct Cpu {
    threads: Vec<(u32, u64)>,
    ticks: f64,
}

impl Cpu {
    /// `pid` is a process id or `self`.
    fn of(pid: &str) -> Self {
        let mut threads = Vec::new();
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else { continue };
                let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
                if let Some(ns) = stat.split_whitespace().next().and_then(|v| v.parse().ok()) {
                    threads.push((tid, ns));
                }
            }
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or_default();
        let fields: Vec<&str> = after.split_whitespace().collect();
        // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the name.
        let ticks = fields.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + fields.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        Self { threads, ticks }
    }

    /// Seconds of CPU from `self` to `later`: from the threads' nanoseconds
    /// when every thread of `self` still runs (a thread started since is
    /// counted whole), else from the ticks (an ended thread's time is only
    /// in those).
    fn seconds_to(&self, later: &Self) -> f64 {
        let all_alive = self.threads.iter().all(|(tid, _)| later.threads.iter().any(|(t, _)| t == tid));
        if all_alive && !self.threads.is_empty() {
            let sum = |cpu: &Self| cpu.threads.iter().map(|(_, ns)| ns).sum::<u64>();
            sum(later).saturating_sub(sum(self)) as f64 / 1e9
        } else {
            (later.ticks - self.ticks) / 100.0
        }
    }
}

/// One client connection: HTTP/1.1 keep-alive or a WebSocket.
struct Conn {
    io: BufReader<TcpStream>,
}

fn id() -> String {
    thread_local!(static N: Cell<u64> = const { Cell::new(0) });
    N.with(|n| {
        n.set(n.get() + 1);
        format!("b{}x{}", std::process::id(), n.get())
    })
}

fn broken(what: impl Into<String>) -> io::Error {
    io::Error::other(what.into())
}

struct Head {
    status: u16,
    chunked: bool,
    length: Option<usize>,
}

impl Conn {
    async fn open(port: u16, source: Option<Ipv4Addr>) -> io::Result<Self> {
        let socket = TcpSocket::new_v4()?;
        if let Some(ip) = source {
            socket.bind(SocketAddr::from((ip, 0)))?;
        }
        let stream = socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        stream.set_nodelay(true)?;
        Ok(Self { io: BufReader::new(stream) })
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.get_mut().write_all(bytes).await
    }

    async fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.io.read_line(&mut line).await? == 0 {
            return Err(broken("connection closed"));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    async fn send(&mut self, method: &str, path: &str, extra: &str, body: &[u8]) -> io::Result<()> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}");
        if method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.write(&bytes).await
    }

    async fn head(&mut self) -> io::Result<Head> {
        let status_line = self.line().await?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| broken(status_line.clone()))?;
        let (mut chunked, mut length) = (false, None);
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').ok_or_else(|| broken(line.clone()))?;
            if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.trim().eq_ignore_ascii_case("chunked");
            } else if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok();
            }
        }
        Ok(Head { status, chunked, length })
    }

    /// The next chunk of a chunked body; `None` at its end.
    async fn chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let size_line = self.line().await?;
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| broken(size_line.clone()))?;
        let mut data = vec![0; size];
        self.io.read_exact(&mut data).await?;
        self.line().await?;
        Ok((size > 0).then_some(data))
    }

    async fn body(&mut self, head: &Head) -> io::Result<Vec<u8>> {
        if head.chunked {
            let mut body = Vec::new();
            while let Some(c) = self.chunk().await? {
                body.extend_from_slice(&c);
            }
            return Ok(body);
        }
        let mut body = vec![0; head.length.unwrap_or(0)];
        self.io.read_exact(&mut body).await?;
        Ok(body)
    }

    async fn post(&mut self, path: &str, body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        self.send("POST", path, "Content-Type: text/plain\r\n", body).await?;
        let head = self.head().await?;
        let body = if head.status == 204 { Vec::new() } else { self.body(&head).await? };
        Ok((head.status, body))
    }

    /// A WebSocket on `path`.
    async fn websocket(port: u16, path: &str, source: Option<Ipv4Addr>) -> io::Result<Self> {
        let mut conn = Self::open(port, source).await?;
        let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                       Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n";
        conn.send("GET", path, upgrade, b"").await?;
        let head = conn.head().await?;
        if head.status != 101 {
            return Err(broken(format!("upgrade answered {}", head.status)));
        }
        Ok(conn)
    }

    async fn ws_send(&mut self, text: &str) -> io::Result<()> {
        self.write(&ws_frame(text)).await
    }

    /// The next text message; pings are answered.
    async fn ws_recv(&mut self) -> io::Result<String> {
        loop {
            let mut h = [0u8; 2];
            self.io.read_exact(&mut h).await?;
            let mut len = u64::from(h[1] & 0x7f);
            if len == 126 {
                len = u64::from(self.io.read_u16().await?);
            } else if len == 127 {
                len = self.io.read_u64().await?;
            }
            let mut payload = vec![0; len as usize];
            self.io.read_exact(&mut payload).await?;
            match h[0] & 0x0f {
                0x1 => return String::from_utf8(payload).map_err(|_| broken("not utf-8")),
                0x8 => return Err(broken("closed by the server")),
                0x9 => {
                    let mut pong = vec![0x8a, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                    pong.extend_from_slice(&payload);
                    self.write(&pong).await?;
                }
                _ => {}
            }
        }
    }

    /// The next SockJS frame on a WebSocket, heartbeats skipped.
    async fn sockjs_frame(&mut self) -> io::Result<String> {
        loop {
            let frame = self.ws_recv().await?;
            if frame != "h" {
                return Ok(frame);
            }
        }
    }
}

/// A masked client text frame.
fn ws_frame(text: &str) -> Vec<u8> {
    let len = text.len();
    let mut frame = Vec::with_capacity(len + 14);
    frame.push(0x81);
    if len < 126 {
        frame.push(0x80 | len as u8);
    } else if len < 65536 {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        frame.push(0x80 | 127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
    }
    // A zero mask leaves the payload as it is.
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// A session on a WebSocket: SockJS-framed for the SockJS servers.
async fn open_ws(server: Server, port: u16, prefix: &str, source: Option<Ipv4Addr>) -> io::Result<Conn> {
    if !server.sockjs() {
        return Conn::websocket(port, &format!("{prefix}/websocket"), source).await;
    }
    let mut conn = Conn::websocket(port, &format!("{prefix}/000/{}/websocket", id()), source).await?;
    match conn.sockjs_frame().await?.as_str() {
        "o" => Ok(conn),
        other => Err(broken(format!("expected o, got {other:?}"))),
    }
}

/// What one measuring window saw.
#[derive(Default)]
struct Sample {
    ops: usize,
    seconds: f64,
    server_cpu: f64,
    client_cpu: f64,
    /// Latencies in microseconds.
    lat: Vec<u32>,
}

impl Sample {
    fn percentile(&mut self, p: f64) -> u32 {
        self.lat.sort_unstable();
        let at = ((self.lat.len() as f64 * p) as usize).min(self.lat.len().saturating_sub(1));
        self.lat.get(at).copied().unwrap_or(0)
    }

    fn server_us(&self) -> f64 {
        self.server_cpu * 1e6 / self.ops.max(1) as f64
    }

    fn client_us(&self) -> f64 {
        self.client_cpu * 1e6 / self.ops.max(1) as f64
    }
}

/// Measures CPU and time around `work`, which returns (operations, latencies).
async fn measure<F>(proc: &Proc, work: F) -> Sample
where
    F: std::future::Future<Output = (usize, Vec<u32>)>,
{
    let cpu0 = (proc.cpu(), Cpu::of("self"));
    let start = Instant::now();
    let (ops, lat) = work.await;
    let seconds = start.elapsed().as_secs_f64();
    let cpu1 = (proc.cpu(), Cpu::of("self"));
    Sample {
        ops,
        seconds,
        server_cpu: cpu0.0.seconds_to(&cpu1.0),
        client_cpu: cpu0.1.seconds_to(&cpu1.1),
        lat,
    }
}

/// Measures `work`, each session's round-trip latencies, as one sample. A
/// session that failed would leave its round trips out of the figures:
/// the run fails instead, as it does with no round trip at all.
async fn sessions_sample<F>(proc: &Proc, work: F) -> io::Result<Sample>
where
    F: std::future::Future<Output = Vec<io::Result<Vec<u32>>>>,
{
    let mut failed = None;
    let sample = measure(proc, async {
        let lat: Vec<u32> = work
            .await
            .into_iter()
            .filter_map(|session| session.map_err(|e| failed = Some(e)).ok())
            .flatten()
            .collect();
        (lat.len(), lat)
    })
    .await;
    match failed {
        Some(e) => Err(e),
        None if sample.ops == 0 => Err(broken("no round trip in the window")),
        None => Ok(sample),
    }
}

/// The load generator: one thread (the bench's), a current-thread
/// runtime, and a `LocalSet` so that each session can run as a task of
/// its own ([`Tasks`]).
struct Generator {
    // Declared first: dropped first, so that tasks still in it go before
    // the runtime.
    local: tokio::task::LocalSet,
    rt: tokio::runtime::Runtime,
}

impl Generator {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        Self { local: tokio::task::LocalSet::new(), rt }
    }

    fn run<F: std::future::Future>(&self, work: F) -> F::Output {
        self.local.block_on(&self.rt, work)
    }
}

/// Sessions, each run as a task of its own on the generator's
/// `LocalSet`. Polled together in one task (`join_all`), sessions did not
/// get their turns evenly: at 500 sessions some waited 50-720 ms for one
/// round trip while the others went round, in every server, and that
/// made the p99. Tokio's cooperative budget meeting the
/// `FuturesUnordered` inside `join_all` does it (benches/README.md, "The
/// generator's own tail, 2026-12-07"). Those still running when this is
/// dropped are aborted.
struct Tasks<T: 'static>(std::collections::VecDeque<tokio::task::JoinHandle<T>>);

impl<T: 'static> Tasks<T> {
    fn spawn<F>(sessions: impl IntoIterator<Item = F>) -> Self
    where
        F: std::future::Future<Output = T> + 'static,
    {
        Self(sessions.into_iter().map(tokio::task::spawn_local).collect())
    }

    /// Their outputs, in order, once all have ended; a panic in one is
    /// passed on.
    async fn join(&mut self) -> Vec<T> {
        let mut outputs = Vec::with_capacity(self.0.len());
        while let Some(ended) = self.next_ended().await {
            match ended {
                Ok(output) => outputs.push(output),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        outputs
    }

    /// Aborts those still running and answers once every one has been
    /// dropped (their sockets closed); a panic in one is passed on.
    async fn end(mut self) {
        for task in &self.0 {
            task.abort();
        }
        while let Some(ended) = self.next_ended().await {
            if let Err(e) = ended {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
    }

    /// How the first task still held ended, once it has; it is let go only
    /// then, so that a drop while waiting still aborts it.
    async fn next_ended(&mut self) -> Option<Result<T, tokio::task::JoinError>> {
        let ended = self.0.front_mut()?.await;
        self.0.pop_front();
        Some(ended)
    }
}

impl<T: 'static> Drop for Tasks<T> {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Runs each session as a task of its own ([`Tasks`]) and answers their
/// outputs in order.
async fn apart<F>(sessions: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + 'static,
{
    Tasks::spawn(sessions).join().await
}

fn micros(since: Instant) -> u32 {
    since.elapsed().as_micros().min(u128::from(u32::MAX)) as u32
}

/// `sessions` WebSocket echo sessions opened on `/echo`, with the message
/// each sends and the answer it expects back (a SockJS frame for ours).
async fn echo_sessions(
    server: Server,
    proc: &Proc,
    sessions: usize,
) -> io::Result<(Vec<Conn>, String, String)> {
    let mut conns = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        conns.push(open_ws(server, proc.port, "/echo", None).await?);
    }
    Ok(if server.sockjs() {
        (conns, format!("[\"{MESSAGE}\"]"), format!("a[\"{MESSAGE}\"]"))
    } else {
        (conns, MESSAGE.to_owned(), MESSAGE.to_owned())
    })
}

/// The next echo answer on `conn`: a SockJS frame for ours, a text
/// message for the floors.
async fn echo_answer(conn: &mut Conn, server: Server) -> io::Result<String> {
    if server.sockjs() {
        conn.sockjs_frame().await
    } else {
        conn.ws_recv().await
    }
}

fn check_echo(got: String, expect: &str) -> io::Result<()> {
    if got == expect {
        Ok(())
    } else {
        Err(broken(format!("echo answered {got:?}")))
    }
}

async fn ws_echo(server: Server, proc: &Proc, sessions: usize, window: Duration) -> io::Result<Sample> {
    let (conns, send, expect) = echo_sessions(server, proc, sessions).await?;
    let deadline = Instant::now() + window;
    let work = apart(conns.into_iter().map(|mut conn| {
        let (send, expect) = (send.clone(), expect.clone());
        async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                conn.ws_send(&send).await?;
                check_echo(echo_answer(&mut conn, server).await?, &expect)?;
                lat.push(micros(t));
            }
            Ok::<_, io::Error>(lat)
        }
    }));
    sessions_sample(proc, work).await
}

/// WebSocket echo at a set pace: `sessions` sessions, `rate` round trips a
/// second in all, each session sending on its own schedule (every
/// `sessions / rate` seconds, the sessions' schedules spread over that
/// interval) and only once its previous answer is in. A round trip's
/// latency runs from the time it was due, so a send held back by a late
/// answer counts its wait. Below the generator's limit, unlike the
/// closed-loop echo, which keeps the one-thread generator ~90% busy at
/// 500 sessions. Tokio's timer ticks every millisecond and releases the
/// round trips due in a tick together (about 100 at the default pace):
/// every figure counts that grain and the generator's way through each
/// batch, the same for every server; what differs between servers is
/// theirs and the host's.
async fn ws_paced(
    server: Server,
    proc: &Proc,
    sessions: usize,
    rate: f64,
    window: Duration,
) -> io::Result<Sample> {
    let (conns, send, expect) = echo_sessions(server, proc, sessions).await?;
    let every = Duration::from_secs_f64(sessions as f64 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(10);
    let deadline = start + window;
    let work = apart(conns.into_iter().enumerate().map(|(i, mut conn)| {
        let (send, expect) = (send.clone(), expect.clone());
        async move {
            let mut lat = Vec::new();
            let mut due = start + every.mul_f64(i as f64 / sessions as f64);
            while due < deadline {
                tokio::time::sleep_until(due).await;
                conn.ws_send(&send).await?;
                let got = tokio::time::timeout(Duration::from_secs(10), echo_answer(&mut conn, server))
                    .await
                    .map_err(|_| broken("no answer within 10 s"))??;
                check_echo(got, &expect)?;
                lat.push(micros(due.into_std()));
                due += every;
            }
            Ok::<_, io::Error>(lat)
        }
    }));
    sessions_sample(proc, work).await
}

async fn xhr_echo(_: Server, proc: &Proc, sessions: usize, window: Duration) -> io::Result<Sample> {
    let mut clients = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        let mut conn = Conn::open(proc.port, None).await?;
        let url = format!("/echo/000/{}", id());
        let (_, body) = conn.post(&format!("{url}/xhr"), b"").await?;
        if body != b"o\n" {
            return Err(broken(format!("xhr open answered {:?}", String::from_utf8_lossy(&body))));
        }
        clients.push((conn, url));
    }
    let send = format!("[\"{MESSAGE}\"]");
    let expect = format!("a[\"{MESSAGE}\"]\n");
    let deadline = Instant::now() + window;
    let work = apart(clients.into_iter().map(|(mut conn, url)| {
        let (send, expect) = (send.clone(), expect.clone());
        let (send_url, poll_url) = (format!("{url}/xhr_send"), format!("{url}/xhr"));
        async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let (status, _) = conn.post(&send_url, send.as_bytes()).await?;
                if status != 204 {
                    return Err(broken(format!("xhr_send answered {status}")));
                }
                let (_, body) = conn.post(&poll_url, b"").await?;
                if body != expect.as_bytes() {
                    return Err(broken(format!("poll answered {:?}", String::from_utf8_lossy(&body))));
                }
                lat.push(micros(t));
            }
            Ok::<_, io::Error>(lat)
        }
    }));
    sessions_sample(proc, work).await
}

/// How many broadcasts may be on their way at once.
const WINDOW: usize = 8;

/// Broadcast bookkeeping shared by the broadcaster and the receivers.
struct FanOut {
    receivers: usize,
    start: Instant,
    /// Receivers that got broadcast `i`.
    got: RefCell<Vec<usize>>,
    /// When broadcast `i` was sent, in µs since `start`.
    sent: RefCell<Vec<u32>>,
    lat: RefCell<Vec<u32>>,
    complete: Notify,
}

impl FanOut {
    fn delivered(&self, text: &str) {
        let Some(seq) = text.split(':').next().and_then(|s| s.parse::<usize>().ok()) else { return };
        let now = micros(self.start);
        if let Some(sent) = self.sent.borrow().get(seq) {
            self.lat.borrow_mut().push(now.saturating_sub(*sent));
        }
        let mut got = self.got.borrow_mut();
        if let Some(n) = got.get_mut(seq) {
            *n += 1;
            if *n == self.receivers {
                self.complete.notify_one();
            }
        }
    }
}

/// A receiver of broadcasts: xhr_streaming or a WebSocket (SockJS
/// frames on a SockJS server).
async fn receive(server: Server, ws: bool, mut conn: Conn, url: String, fan: Rc<FanOut>) -> io::Result<()> {
    if ws && !server.sockjs() {
        loop {
            let text = conn.ws_recv().await?;
            fan.delivered(&text);
        }
    }
    if ws {
        loop {
            let frame = conn.sockjs_frame().await?;
            for msg in sockjs_messages(&frame).into_iter().flatten() {
                fan.delivered(msg);
            }
        }
    }
    let mut line = Vec::new();
    loop {
        // A stream ends at the response limit; the session goes on in a new request.
        while let Some(chunk) = conn.chunk().await? {
            for &b in &chunk {
                if b != b'\n' {
                    line.push(b);
                    continue;
                }
                if let Some(msgs) = line.strip_prefix(b"a[").and_then(|l| l.strip_suffix(b"]")) {
                    for msg in String::from_utf8_lossy(msgs).split(',') {
                        fan.delivered(msg.trim_matches('"'));
                    }
                }
                line.clear();
            }
        }
        conn.send("POST", &url, "", b"").await?;
        conn.head().await?;
    }
}

/// Where a fan-out's sessions live: everyone at `/broadcast`, or a group
/// at `/groups` among `bystanders` idle sessions that are not in it.
#[derive(Debug, Clone, Copy)]
enum Audience {
    All,
    /// Everyone at `/broadcast`, receiving over (SockJS) WebSockets.
    AllOverWebSocket,
    Group {
        bystanders: usize,
    },
}

async fn fan_out(server: Server, proc: &Proc, receivers: usize, window: Duration) -> io::Result<Sample> {
    fan_out_to(server, proc, receivers, Audience::All, window).await
}

async fn fan_out_to(
    server: Server,
    proc: &Proc,
    receivers: usize,
    audience: Audience,
    window: Duration,
) -> io::Result<Sample> {
    let (prefix, member) = match audience {
        Audience::All | Audience::AllOverWebSocket => ("/broadcast", ""),
        Audience::Group { .. } => ("/groups", "?member=1"),
    };
    let over_ws = matches!(audience, Audience::AllOverWebSocket) || !server.sockjs();
    let mut bystanders = Vec::new();
    if let Audience::Group { bystanders: n } = audience {
        for _ in 0..n {
            bystanders.push(open_ws(server, proc.port, prefix, Some(source_address())).await?);
        }
    }
    let fan = Rc::new(FanOut {
        receivers,
        start: Instant::now(),
        got: RefCell::new(Vec::new()),
        sent: RefCell::new(Vec::new()),
        lat: RefCell::new(Vec::new()),
        complete: Notify::new(),
    });
    let mut tasks = Vec::with_capacity(receivers);
    for _ in 0..receivers {
        let source = Some(source_address());
        let (conn, url) = if over_ws {
            (open_ws(server, proc.port, prefix, source).await?, String::new())
        } else {
            let mut conn = Conn::open(proc.port, source).await?;
            let url = format!("{prefix}/000/{}/xhr_streaming{member}", id());
            conn.send("POST", &url, "", b"").await?;
            conn.head().await?;
            // The prelude, then `o`.
            let mut seen = Vec::new();
            while !seen.ends_with(b"o\n") {
                seen.extend(conn.chunk().await?.ok_or_else(|| broken("stream ended before o"))?);
            }
            (conn, url)
        };
        tasks.push(receive(server, over_ws, conn, url, fan.clone()));
    }
    // The broadcaster is a session too and gets every broadcast: a reader
    // drains its socket so that it never holds the server back.
    let sender = open_ws(server, proc.port, prefix, None).await?;
    let (mut sender_rd, mut sender_wr) = sender.io.into_inner().into_split();
    let drain = async move {
        let mut buf = vec![0; 64 * 1024];
        while matches!(sender_rd.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    let broadcaster = async {
        let deadline = Instant::now() + window;
        let mut seq = 0;
        while Instant::now() < deadline {
            while seq >= WINDOW && fan.got.borrow()[seq - WINDOW] < receivers {
                fan.complete.notified().await;
            }
            fan.got.borrow_mut().push(0);
            fan.sent.borrow_mut().push(micros(fan.start));
            let text = format!("{seq}:x");
            let text = if server.sockjs() { format!("[\"{text}\"]") } else { text };
            sender_wr.write_all(&ws_frame(&text)).await?;
            seq += 1;
        }
        // Let the last ones arrive (bounded).
        let last = Instant::now() + Duration::from_secs(10);
        while (seq.saturating_sub(WINDOW)..seq).any(|i| fan.got.borrow()[i] < receivers)
            && Instant::now() < last
        {
            let _ = tokio::time::timeout(Duration::from_millis(50), fan.complete.notified()).await;
        }
        Ok::<_, io::Error>(())
    };
    let sample = measure(proc, async {
        let mut receivers = Tasks::spawn(tasks);
        let rest = futures_util::future::join(receivers.join(), drain);
        if let Either::Left((Err(e), _)) = select(pin!(broadcaster), pin!(rest)).await {
            println!("broadcaster failed: {e}");
        }
        // The receivers' sockets close here, before the CPU is read, as
        // they did when they were polled within this future.
        receivers.end().await;
        let lat = std::mem::take(&mut *fan.lat.borrow_mut());
        (lat.len(), lat)
    })
    .await;
    drop(bystanders);
    Ok(sample)
}

/// The gap between an interactive client's message coming back and the
/// next sender's broadcast ([`interactive`]).
const INTERACTIVE_GAP: Duration = Duration::from_millis(5);

/// The messages of a SockJS `a[...]` frame; `None` for any other frame.
/// The bench's messages hold no commas and no escapes.
fn sockjs_messages(frame: &str) -> Option<impl Iterator<Item = &str>> {
    let msgs = frame.strip_prefix("a[")?.strip_suffix(']')?;
    Some(msgs.split(',').map(|m| m.trim_matches('"')))
}

/// The messages of the next text frame that carries any: SockJS `a[...]`
/// frames on a SockJS server (heartbeats and other frames skipped), the
/// frame itself on a raw one.
async fn messages(server: Server, conn: &mut Conn) -> io::Result<Vec<String>> {
    loop {
        let frame = conn.ws_recv().await?;
        if !server.sockjs() {
            return Ok(vec![frame]);
        }
        let Some(msgs) = sockjs_messages(&frame) else { continue };
        return Ok(msgs.map(str::to_owned).collect());
    }
}

/// Waits for the message `text` on `conn`, for 5 s at most: a lost
/// message fails the run instead of hanging the bench.
async fn until_message(server: Server, conn: &mut Conn, text: &str) -> io::Result<()> {
    let wait = async {
        while !messages(server, conn).await?.iter().any(|m| m == text) {}
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .unwrap_or_else(|_| Err(broken(format!("no {text} within 5 s"))))
}

/// An interactive client and a second sender on `/broadcast`, `rounds`
/// times: the client sends a message and waits for it to come back, then
/// the sender broadcasts [`INTERACTIVE_GAP`] later; the latency is that
/// broadcast's, from the sender's write to the client's read. A client
/// that answers what it reads keeps its kernel holding back its ACKs, to
/// send them with its next message; with Nagle's algorithm on (the OS
/// default, which actix-web keeps) the server's second small write then
/// waits for the ACK of its first, up to the client's delayed-ACK timer.
async fn interactive(server: Server, proc: &Proc, rounds: usize) -> io::Result<Sample> {
    let mut client = open_ws(server, proc.port, "/broadcast", None).await?;
    let sender = open_ws(server, proc.port, "/broadcast", None).await?;
    // The sender gets every broadcast too: drained, so that it never holds
    // the server back.
    let (mut sender_rd, mut sender_wr) = sender.io.into_inner().into_split();
    let drain = async move {
        let mut buf = vec![0; 64 * 1024];
        while matches!(sender_rd.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    let text = |t: String| if server.sockjs() { format!("[\"{t}\"]") } else { t };
    let work = async {
        let mut lat = Vec::with_capacity(rounds);
        for i in 0..rounds {
            client.write(&ws_frame(&text(format!("c{i}")))).await?;
            until_message(server, &mut client, &format!("c{i}")).await?;
            tokio::time::sleep(INTERACTIVE_GAP).await;
            let sent = Instant::now();
            sender_wr.write_all(&ws_frame(&text(format!("s{i}")))).await?;
            until_message(server, &mut client, &format!("s{i}")).await?;
            lat.push(micros(sent));
        }
        Ok::<_, io::Error>(lat)
    };
    let mut failed = None;
    let sample = measure(proc, async {
        match select(pin!(work), pin!(drain)).await {
            Either::Left((Ok(lat), _)) => (lat.len(), lat),
            Either::Left((Err(e), _)) => {
                failed = Some(e);
                (0, Vec::new())
            }
            Either::Right(((), _)) => {
                failed = Some(broken("the sender's connection ended"));
                (0, Vec::new())
            }
        }
    })
    .await;
    failed.map_or(Ok(sample), Err)
}

/// Opens `n` WebSocket sessions, 50 at a time (a SockJS one counts as open
/// at its `o`), and closes them; answers server CPU and latency per
/// session opened.
async fn connect(server: Server, proc: &Proc, n: usize) -> io::Result<Sample> {
    // The first connections make the workers set up what they keep.
    let warm = join_all((0..20).map(|_| open_ws(server, proc.port, "/echo", None))).await;
    let port = proc.port;
    // Held until the CPU is read: closing them is not set-up, and the
    // server's work on their close would race the reading.
    let open = RefCell::new(Vec::with_capacity(n));
    let work = async {
        let mut lat = Vec::with_capacity(n);
        for start in (0..n).step_by(50) {
            let batch = apart((start..n.min(start + 50)).map(|_| async move {
                let t = Instant::now();
                let conn = open_ws(server, port, "/echo", Some(source_address())).await;
                (conn, micros(t))
            }))
            .await;
            for (conn, took) in batch {
                if let Ok(conn) = conn {
                    open.borrow_mut().push(conn);
                    lat.push(took);
                }
            }
        }
        (lat.len(), lat)
    };
    let sample = measure(proc, work).await;
    drop((open, warm));
    Ok(sample)
}

/// Server CPU per session closed: `n` WebSocket sessions opened (50 at a
/// time, not measured) and left to settle, then all closed by the client at
/// once, measured until the server's CPU stops moving. The client's sockets
/// close with nothing unread (a SockJS session's `o` is read at its open,
/// and its first heartbeat is 25 s away), so each sends a FIN, not a reset.
async fn close(server: Server, proc: &Proc, n: usize) -> io::Result<Sample> {
    let warm = join_all((0..20).map(|_| open_ws(server, proc.port, "/echo", None))).await;
    let mut open = Vec::with_capacity(n);
    for start in (0..n).step_by(50) {
        let batch = join_all(
            (start..n.min(start + 50)).map(|_| open_ws(server, proc.port, "/echo", Some(source_address()))),
        )
        .await;
        for conn in batch {
            open.push(conn?);
        }
    }
    settle(proc).await;
    let sample = measure(proc, async {
        let count = open.len();
        drop(open);
        settle(proc).await;
        (count, Vec::new())
    })
    .await;
    drop(warm);
    Ok(sample)
}

/// Returns once the server's CPU has stopped moving: under half a
/// millisecond of it in 100 ms (a busy server takes ~100); after 30 s in
/// any case.
async fn settle(proc: &Proc) {
    let mut last = proc.cpu();
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = proc.cpu();
        if last.seconds_to(&now) < 0.0005 {
            return;
        }
        last = now;
    }
}

/// Server CPU per second of `sessions` idle WebSocket sessions over
/// `seconds` (heartbeats, pings, timers), in milliseconds.
async fn idle_cpu(server: Server, proc: &Proc, sessions: usize, seconds: f64) -> io::Result<f64> {
    let mut conns = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        conns.push(open_ws(server, proc.port, "/echo", Some(source_address())).await?);
    }
    // SockJS heartbeats come every 25 s; the clients read them (an idle
    // browser's socket is read too).
    let readers =
        join_all(conns.into_iter().map(|mut conn| async move { while conn.ws_recv().await.is_ok() {} }));
    let before = proc.cpu();
    let _ = tokio::time::timeout(Duration::from_secs_f64(seconds), readers).await;
    Ok(before.seconds_to(&proc.cpu()) * 1e3 / seconds)
}

/// Server RSS per HTTP session, in bytes: `sessions` polling sessions
/// between polls (opened with one `xhr` each over 50 keep-alive
/// connections, then left without a receiver; measured well within the
/// 5 s disconnect delay), or `sessions` xhr_streaming sessions each holding
/// its stream open.
async fn idle_http(proc: &Proc, sessions: usize, streaming: bool) -> io::Result<f64> {
    let warm = join_all((0..20).map(|_| Conn::open(proc.port, None))).await;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = proc.rss();
    let mut held = Vec::new();
    if streaming {
        for _ in 0..sessions {
            let mut conn = Conn::open(proc.port, Some(source_address())).await?;
            conn.send("POST", &format!("/echo/000/{}/xhr_streaming", id()), "", b"").await?;
            conn.head().await?;
            let mut seen = Vec::new();
            while !seen.ends_with(b"o\n") {
                seen.extend(conn.chunk().await?.ok_or_else(|| broken("stream ended before o"))?);
            }
            held.push(conn);
        }
    } else {
        let per = sessions.div_ceil(50);
        let opened = join_all((0..50).map(|_| async move {
            let mut conn = Conn::open(proc.port, Some(source_address())).await?;
            for _ in 0..per {
                let (_, body) = conn.post(&format!("/echo/000/{}/xhr", id()), b"").await?;
                if body != b"o\n" {
                    return Err(broken("no open frame"));
                }
            }
            Ok::<_, io::Error>(conn)
        }))
        .await;
        for conn in opened {
            held.push(conn?);
        }
    }
    let after = proc.rss();
    let count = if streaming { sessions } else { sessions.div_ceil(50) * 50 };
    drop(held);
    Ok(after.saturating_sub(before) as f64 / count as f64)
}

/// Spreads connections over 127.0.0.2 .. 127.0.0.251 in turn: one source
/// address has ~28,000 ephemeral ports, and closed connections hold theirs
/// in TIME_WAIT for a minute, across runs.
fn source_address() -> Ipv4Addr {
    thread_local!(static NEXT: Cell<u32> = const { Cell::new(0) });
    let n = NEXT.with(|c| {
        c.set(c.get().wrapping_add(1));
        c.get()
    });
    Ipv4Addr::new(127, 0, 0, 2 + (n % 250) as u8)
}

/// RSS and committed heap ([`Proc::data`]) per idle WebSocket session, in bytes.
async fn idle(server: Server, proc: &Proc, sessions: usize) -> io::Result<(f64, f64)> {
    let mut warm = Vec::new();
    for _ in 0..20 {
        warm.push(open_ws(server, proc.port, "/echo", None).await?);
    }
    drop(warm);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = (proc.rss(), proc.data());
    let mut conns = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        conns.push(open_ws(server, proc.port, "/echo", Some(source_address())).await?);
    }
    let after = (proc.rss(), proc.data());
    drop(conns);
    let per = |after: usize, before: usize| after.saturating_sub(before) as f64 / sessions as f64;
    Ok((per(after.0, before.0), per(after.1, before.1)))
}

/// The heap phase of the idle scenario's round `round` with
/// `LOAD_HEAP_PHASES=1`: 16-byte steps over 512 bytes (the floor's
/// buffers fall 512 bytes apart), halving the gaps as rounds are added
/// (0, 256, 128, 384, 64, ...): the first 2, 4, 8, 16 or 32 rounds cover
/// those bytes evenly.
fn heap_phase(round: usize) -> usize {
    16 * ((round % 32) as u32).reverse_bits().rotate_left(5) as usize
}

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Raises this process's soft descriptor limit to the hard one, so that the
/// servers started after this inherit it. Returns (soft, hard) as they are
/// then.
fn raise_descriptor_limit() -> (u64, u64) {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        println!("# cannot raise the descriptor limit: {e}");
    }
    rlimit::Resource::NOFILE.get().unwrap_or((1024, 1024))
}

/// The example that plays our server: `LOAD_OURS`, default `sockjs_bench`.
fn ours_example() -> String {
    std::env::var("LOAD_OURS").unwrap_or_else(|_| "sockjs_bench".into())
}

fn prepare() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--release", "--example", &ours_example(), "--example", "ws_floor"])
        .args(["--example", "http_floor", "--example", "ws_floor_actix_ws"])
        .status()
        .expect("cargo build");
    assert!(built.success(), "building our servers failed");
    let node_dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/sockjs-node");
    if !node_dir.join("node_modules/sockjs").exists() {
        let npm = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&node_dir)
            .status()
            .expect("npm (Node.js) is needed for the sockjs-node server");
        assert!(npm.success(), "npm ci in benches/sockjs-node failed");
    }
}

struct Row {
    scenario: String,
    server: Server,
    sample: Sample,
}

fn print_row(row: &mut Row) {
    let s = &mut row.sample;
    let (p50, p99) = (s.percentile(0.5), s.percentile(0.99));
    println!(
        "{:<28} {:<22} {:>10.0} {:>9} {:>9} {:>12.2} {:>12.2}",
        row.scenario,
        row.server.name(),
        s.ops as f64 / s.seconds,
        p50,
        p99,
        s.server_us(),
        s.client_us()
    );
}

/// Where the servers and the generator run ([`LOAD_PIN`](self)).
struct Pinning {
    /// The servers' CPU list for `taskset -c`; `None`: not pinned.
    servers: Option<String>,
    /// The generator's CPU.
    generator: Option<usize>,
    /// The CPUs this process could use before it was pinned.
    cpus: usize,
}

fn pinned() -> &'static Pinning {
    static PINNING: std::sync::OnceLock<Pinning> = std::sync::OnceLock::new();
    PINNING.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let none = Pinning { servers: None, generator: None, cpus };
        if cpus < 2 || env("LOAD_PIN", 1u8) == 0 {
            return none;
        }
        let last = cpus - 1;
        let servers = if last == 1 { "0".to_owned() } else { format!("0-{}", last - 1) };
        // The generator is this thread (a current-thread runtime): taskset
        // -p sets the affinity of the thread whose id is the process's.
        let me = std::process::id().to_string();
        match Command::new("taskset")
            .args(["-p", "-c", &last.to_string(), &me])
            .stdout(Stdio::null())
            .status()
        {
            Ok(status) if status.success() => Pinning { servers: Some(servers), generator: Some(last), cpus },
            other => {
                println!("# LOAD_PIN: taskset failed ({other:?}); not pinned");
                none
            }
        }
    })
}

/// The servers' indices in round `round`: each round starts with the next
/// server, so that no server always runs first.
fn rotation(round: usize, servers: usize) -> impl Iterator<Item = usize> {
    (0..servers).map(move |k| (round + k) % servers)
}

/// A summary line's figures round by round, server by server (`None` for a
/// run that failed).
type Rounds = Vec<(Server, Vec<Option<f64>>)>;

/// The lowest and highest of ours over `other` taken round by round (the
/// two runs of one round are minutes apart at most, those of two rounds
/// further): how far the host moved a ratio while the rounds ran. `None`
/// with fewer than two rounds that both servers finished.
fn paired_ratios(rounds: &Rounds, other: Server) -> Option<(f64, f64)> {
    let of = |server: Server| rounds.iter().find(|(s, _)| *s == server).map(|(_, v)| v);
    let (ours, theirs) = (of(Server::Ours)?, of(other)?);
    let ratios: Vec<f64> =
        ours.iter().zip(theirs).filter_map(|(a, b)| Some(a.as_ref()? / b.as_ref()?)).collect();
    if ratios.len() < 2 {
        return None;
    }
    Some(ratios.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| (lo.min(*r), hi.max(*r))))
}

/// A summary figure: the median of a server's rounds that ran.
fn median_of(rounds: &[Option<f64>]) -> f64 {
    median(rounds.iter().flatten().copied().collect())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 0 => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        n => v[n / 2],
    }
}

/// One run of a scenario against a server.
type Run<'a> = Box<dyn Fn(Server, &Proc) -> io::Result<Sample> + 'a>;

/// A scenario: its name, the servers it runs against, one run of it, and
/// what its summary compares.
struct Scenario<'a> {
    name: String,
    targets: Vec<Server>,
    run: Run<'a>,
    /// What the summary compares: a line for each, from the same runs.
    figures: &'static [Figure],
}

/// A scenario's summary figure.
#[derive(Clone, Copy, PartialEq)]
enum Figure {
    /// Server CPU per operation.
    Cpu,
    /// The p50 latency, in ms.
    P50,
    /// The p99 latency, in ms.
    P99,
}

impl<'a> Scenario<'a> {
    /// Compared by server CPU per operation.
    fn cpu(name: String, targets: Vec<Server>, run: Run<'a>) -> Self {
        Self { name, targets, run, figures: &[Figure::Cpu] }
    }

    /// Compared by server CPU per operation and by p99 latency, from the
    /// same runs.
    fn cpu_and_tail(name: String, targets: Vec<Server>, run: Run<'a>) -> Self {
        Self { name, targets, run, figures: &[Figure::Cpu, Figure::P99] }
    }

    /// Compared by p50 latency.
    fn latency(name: String, targets: Vec<Server>, run: Run<'a>) -> Self {
        Self { name, targets, run, figures: &[Figure::P50] }
    }

    /// Compared by p99 latency.
    fn tail(name: String, targets: Vec<Server>, run: Run<'a>) -> Self {
        Self { name, targets, run, figures: &[Figure::P99] }
    }
}

fn main() {
    prepare();
    let (descriptors, hard_limit) = raise_descriptor_limit();
    let window = Duration::from_secs_f64(env("LOAD_SECONDS", 5.0));
    let rounds: usize = env("LOAD_ROUNDS", 3);
    let wanted = std::env::var("LOAD_SERVERS").unwrap_or_else(|_| "ours,node,floor,actixws,httpfloor".into());
    let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
    let all: Vec<Server> = [Server::Ours, Server::Node, Server::Floor, Server::WsFloor, Server::HttpFloor]
        .into_iter()
        .filter(|s| wanted.contains(&s.key()))
        .collect();
    // The WebSocket scenarios' servers; the polling one adds the HTTP floor.
    let servers: Vec<Server> = all.iter().copied().filter(|s| s.websocket()).collect();
    let runtime = Generator::new();

    let pinning = pinned();
    println!(
        "# {} cores, descriptor limit {}, {} s windows, {rounds} interleaved rounds, actix-sockjs is examples/{}",
        pinning.cpus,
        descriptors,
        window.as_secs_f64(),
        ours_example()
    );
    match (&pinning.servers, pinning.generator) {
        (Some(servers), Some(generator)) => {
            println!(
                "# pinned: servers on CPU {servers}, the generator on CPU {generator} (LOAD_PIN=0 to share)"
            );
        }
        _ => println!("# not pinned: servers and generator share the CPUs"),
    }
    println!(
        "{:<28} {:<22} {:>10} {:>9} {:>9} {:>12} {:>12}",
        "scenario", "server", "ops/s", "p50 µs", "p99 µs", "server µs/op", "client µs/op"
    );
    let mut scenarios: Vec<Scenario<'_>> = Vec::new();
    let rt = &runtime;
    for n in env_list("LOAD_SESSIONS", "50,500") {
        scenarios.push(Scenario::cpu_and_tail(
            format!("websocket echo, {n}"),
            servers.clone(),
            Box::new(move |s, p| rt.run(ws_echo(s, p, n, window))),
        ));
    }
    // Echo at a pace the generator keeps up with, compared by p99
    // (sockjs-node cannot keep the default pace: left out).
    for spec in std::env::var("LOAD_PACED").unwrap_or_else(|_| "500:100000".into()).split(',') {
        let Some((n, rate)) = spec
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<f64>().ok()?)))
            // At least a microsecond between one session's round trips.
            .filter(|(n, rate)| *n > 0 && rate.is_finite() && *rate > 0.0 && *n as f64 / *rate >= 1e-6)
        else {
            continue;
        };
        scenarios.push(Scenario::tail(
            format!("paced echo, {n} at {rate}/s"),
            servers.iter().copied().filter(|s| *s != Server::Node).collect(),
            Box::new(move |s, p| rt.run(ws_paced(s, p, n, rate, window))),
        ));
    }
    for n in env_list("LOAD_CONNECT", "5000") {
        scenarios.push(Scenario::cpu(
            format!("websocket connect, {n}"),
            servers.clone(),
            Box::new(move |s, p| rt.run(connect(s, p, n))),
        ));
    }
    for n in env_list("LOAD_CLOSE", "5000") {
        scenarios.push(Scenario::cpu(
            format!("websocket close, {n}"),
            servers.clone(),
            Box::new(move |s, p| rt.run(close(s, p, n))),
        ));
    }
    for n in env_list("LOAD_POLL_SESSIONS", "50,500") {
        scenarios.push(Scenario::cpu(
            format!("xhr-polling echo, {n}"),
            all.iter().copied().filter(|s| !matches!(s, Server::Floor | Server::WsFloor)).collect(),
            Box::new(move |s, p| rt.run(xhr_echo(s, p, n, window))),
        ));
    }
    for n in env_list("LOAD_FANOUT", "100,10000") {
        scenarios.push(Scenario::cpu(
            format!("fan-out to {n} (deliveries)"),
            servers.clone(),
            Box::new(move |s, p| rt.run(fan_out(s, p, n, window))),
        ));
        scenarios.push(Scenario::cpu(
            format!("ws fan-out to {n} (deliveries)"),
            servers.iter().copied().filter(|s| *s != Server::Node).collect(),
            Box::new(move |s, p| rt.run(fan_out_to(s, p, n, Audience::AllOverWebSocket, window))),
        ));
    }
    // A group among many sessions (ours: the floor has no groups), beside
    // a fan-out to as many receivers alone (LOAD_FANOUT's first count).
    for spec in std::env::var("LOAD_GROUP").unwrap_or_else(|_| "100:10000".into()).split(',') {
        let Some((n, among)) = spec
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
        else {
            continue;
        };
        let audience = Audience::Group { bystanders: among.saturating_sub(n) };
        scenarios.push(Scenario::cpu(
            format!("group of {n} among {among}"),
            servers.iter().copied().filter(|s| *s == Server::Ours).collect(),
            Box::new(move |s, p| rt.run(fan_out_to(s, p, n, audience, window))),
        ));
    }
    let interactive_rounds: usize = env("LOAD_INTERACTIVE", 100);
    if interactive_rounds > 0 {
        // Ours also with Nagle's algorithm off, as the README recommends
        // (only `sockjs_bench` reads the variable).
        let mut targets = servers.clone();
        let at = targets.iter().position(|s| *s == Server::Ours).filter(|_| ours_example() == "sockjs_bench");
        if let Some(at) = at {
            targets.insert(at + 1, Server::OursNoDelay);
        }
        scenarios.push(Scenario::latency(
            format!("interactive, {interactive_rounds}"),
            targets,
            Box::new(move |s, p| rt.run(interactive(s, p, interactive_rounds))),
        ));
    }
    // Each summary line and its rounds, server by server: the medians and
    // the spread of the ratios (`paired_ratios`) come from them.
    let mut summary: Vec<(String, Rounds)> = Vec::new();
    for Scenario { name, targets, run, figures } in &scenarios {
        // Figure by figure, server by server, round by round.
        let mut per_op: Vec<Vec<Vec<Option<f64>>>> = vec![vec![Vec::new(); targets.len()]; figures.len()];
        // One run first, not counted: the first run of a scenario was slow
        // for whichever server went first (its connect figure up to 1.9x
        // that server's later rounds, the kernel setting up for thousands
        // of new connections).
        if let Some(&server) = targets.first() {
            let proc = Proc::start(server);
            let _ = run(server, &proc);
        }
        for round in 0..rounds {
            for i in rotation(round, targets.len()) {
                let server = targets[i];
                let proc = Proc::start(server);
                match run(server, &proc) {
                    Ok(mut sample) => {
                        for (f, figure) in figures.iter().enumerate() {
                            per_op[f][i].push(Some(match figure {
                                Figure::P50 => f64::from(sample.percentile(0.5)) / 1000.0,
                                Figure::P99 => f64::from(sample.percentile(0.99)) / 1000.0,
                                Figure::Cpu => sample.server_us(),
                            }));
                        }
                        print_row(&mut Row { scenario: name.clone(), server, sample });
                    }
                    Err(e) => {
                        for figure_rounds in &mut per_op {
                            figure_rounds[i].push(None);
                        }
                        println!("{name:<28} {:<22} failed: {e}", server.name());
                    }
                }
            }
        }
        for (figure, per_op) in figures.iter().zip(per_op) {
            let line = match figure {
                Figure::Cpu => name.clone(),
                Figure::P50 => format!("{name} (p50 ms)"),
                Figure::P99 => format!("{name} (p99 ms)"),
            };
            summary.push((line, targets.iter().copied().zip(per_op).collect()));
        }
    }

    let idle_cpu_sessions: usize = env("LOAD_IDLE_CPU", 10_000);
    let idle_seconds: f64 = env("LOAD_IDLE_SECONDS", 30.0);
    if idle_cpu_sessions > 0 && (idle_cpu_sessions as u64 + 500) <= descriptors {
        println!("# {idle_cpu_sessions} idle WebSocket sessions: server CPU over {idle_seconds} s");
        let mut figures: Rounds = Vec::new();
        for &server in &servers {
            let proc = Proc::start(server);
            match runtime.run(idle_cpu(server, &proc, idle_cpu_sessions, idle_seconds)) {
                Ok(ms) => {
                    println!(
                        "{:<28} {:<22} {:>10.2} ms CPU per second",
                        format!("idle cpu, {idle_cpu_sessions}"),
                        server.name(),
                        ms
                    );
                    figures.push((server, vec![Some(ms)]));
                }
                Err(e) => println!("{:<28} {:<22} failed: {e}", "idle cpu", server.name()),
            }
        }
        summary.push((format!("idle cpu {idle_cpu_sessions} (ms/s)"), figures));
    }

    let idle_http_sessions: usize = env("LOAD_IDLE_HTTP", 10_000);
    if idle_http_sessions > 0 && (idle_http_sessions as u64 + 500) <= descriptors {
        println!("# idle HTTP sessions: server RSS per session");
        for (streaming, what) in [(false, "between polls"), (true, "xhr_streaming")] {
            let mut figures: Rounds = Vec::new();
            for &server in servers.iter().filter(|s| s.sockjs()) {
                let proc = Proc::start(server);
                match runtime.run(idle_http(&proc, idle_http_sessions, streaming)) {
                    Ok(bytes) => {
                        let name = format!("idle {what}, {idle_http_sessions}");
                        println!("{name:<28} {:<22} {:>10.1} KB", server.name(), bytes / 1024.0);
                        figures.push((server, vec![Some(bytes / 1024.0)]));
                    }
                    Err(e) => println!("{:<28} {:<22} failed: {e}", what, server.name()),
                }
            }
            summary.push((format!("idle {what} {idle_http_sessions} (KB/session)"), figures));
        }
    }

    println!("# idle WebSocket sessions: server RSS per session");
    let phases = env("LOAD_HEAP_PHASES", 0u8) == 1;
    for n in env_list("LOAD_IDLE", "1000,10000,100000") {
        // Each side holds a descriptor per session, plus a few hundred of
        // its own (listeners, the runtime, the warm-up sockets).
        let needed = n as u64 + 500;
        if needed > descriptors {
            println!(
                "{:<28} skipped: needs a descriptor limit of {needed} (the hard limit here is {})",
                format!("idle, {n}"),
                hard_limit
            );
            continue;
        }
        // Rounds too: a server's RSS grows in steps (the floor measured
        // 10.4-11.5 KB per session from one run to the next), so one
        // reading each is not enough to compare two servers by 3%.
        let mut per_server: Vec<Vec<Option<(f64, f64)>>> = vec![Vec::new(); servers.len()];
        for round in 0..rounds {
            let phase = phases.then(|| heap_phase(round));
            for i in rotation(round, servers.len()) {
                let server = servers[i];
                let proc = Proc::start_with(server, phase);
                match runtime.run(idle(server, &proc, n)) {
                    Ok((rss, heap)) => {
                        println!(
                            "{:<28} {:<22} {:>10.2} KB ({:.2} KB of heap){}",
                            format!("idle, {n}"),
                            server.name(),
                            rss / 1024.0,
                            heap / 1024.0,
                            phase.map(|p| format!(", heap phase {p}")).unwrap_or_default()
                        );
                        per_server[i].push(Some((rss / 1024.0, heap / 1024.0)));
                    }
                    Err(e) => {
                        per_server[i].push(None);
                        println!("{:<28} {:<22} failed: {e}", format!("idle, {n}"), server.name());
                    }
                }
            }
        }
        // A server none of whose rounds ran is left out of these lines.
        let rounds_by = |pick: fn(&(f64, f64)) -> f64| -> Rounds {
            servers
                .iter()
                .zip(&per_server)
                .filter(|(_, v)| v.iter().any(Option::is_some))
                .map(|(server, v)| (*server, v.iter().map(|f| f.as_ref().map(pick)).collect()))
                .collect()
        };
        if phases {
            let mean = |v: &[Option<(f64, f64)>]| {
                let rss: Vec<f64> = v.iter().flatten().map(|f| f.0).collect();
                (!rss.is_empty()).then(|| rss.iter().sum::<f64>() / rss.len() as f64)
            };
            let means: Vec<(Server, f64)> =
                servers.iter().zip(&per_server).filter_map(|(s, v)| Some((*s, mean(v)?))).collect();
            let ours = means.iter().find(|(s, _)| *s == Server::Ours).map(|m| m.1);
            let mut line = format!("idle, {n}, mean over {rounds} heap phases (KB RSS/session):");
            for (server, m) in &means {
                line.push_str(&format!(" {}: {m:.2}", server.key()));
            }
            for (server, m) in means.iter().filter(|(s, _)| *s != Server::Ours) {
                if let Some(ours) = ours {
                    line.push_str(&format!(" | ours/{}: {:.3}x", server.key(), ours / m));
                }
            }
            println!("{line}");
        }
        summary.push((format!("idle {n} (KB/session)"), rounds_by(|f| f.0)));
        summary.push((format!("idle {n} heap (KB/session)"), rounds_by(|f| f.1)));
    }

    // A group's broadcast against a broadcast to as many sessions alone.
    let ours_of = |name: &str| {
        let (_, rounds) = summary.iter().find(|(n, _)| n == name)?;
        rounds.iter().find(|(s, _)| *s == Server::Ours).map(|(_, r)| median_of(r))
    };
    let mut group_lines = Vec::new();
    for (name, _) in &summary {
        let Some(rest) = name.strip_prefix("group of ") else { continue };
        let n = rest.split(' ').next().unwrap_or_default();
        if let (Some(group), Some(alone)) = (ours_of(name), ours_of(&format!("fan-out to {n} (deliveries)")))
        {
            group_lines
                .push(format!("{name} / fan-out to {n}: {:.2}x (server CPU per delivery)", group / alone));
        }
    }
    println!(
        "# summary: medians; ratios are actix-sockjs over the other server, the median of the rounds' \
         figures, and in brackets the lowest and highest ratio of one round's two runs"
    );
    for line in group_lines {
        println!("{line}");
    }
    for (name, rounds) in &summary {
        let figures: Vec<(Server, f64)> = rounds.iter().map(|(server, r)| (*server, median_of(r))).collect();
        let ours = figures.iter().find(|(s, _)| *s == Server::Ours).map(|f| f.1);
        let mut line = format!("{name:<32}");
        for (server, v) in &figures {
            line.push_str(&format!(" {}: {v:.2}", server.key()));
        }
        for (server, v) in &figures {
            if let (Some(ours), true) = (ours, *server != Server::Ours) {
                line.push_str(&format!(" | ours/{}: {:.2}x", server.key(), ours / v));
                if let Some((low, high)) = paired_ratios(rounds, *server) {
                    line.push_str(&format!(" [{low:.2}-{high:.2}]"));
                }
            }
        }
        println!("{line}");
    }
}
