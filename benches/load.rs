//! Load comparison: our SockJS WebSocket echo against the raw actix
//! WebSocket floor (`benches/ws_floor.rs`), interleaved in one run, plus the
//! server memory per idle WebSocket session.
//!
//! Run: `cargo bench --bench load` (env: `LOAD_SECONDS`, default 5;
//! `LOAD_SESSIONS`, default "50,500"; `LOAD_IDLE`, default 1000;
//! `LOAD_ROUNDS`, default 2). Loopback only, bounded in count and time.
//! The headline figure is server CPU time per round trip, read from /proc.

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use common::{session, TestServer, WsClient};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Floor,
    SockJs,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Floor => "raw actix ws (floor)",
            Target::SockJs => "actix-sockjs websocket",
        }
    }

    fn example(self) -> &'static str {
        match self {
            Target::Floor => "ws_floor",
            Target::SockJs => "test_server",
        }
    }
}

struct Server {
    server: TestServer,
    port: u16,
}

impl Server {
    fn start(target: Target) -> Self {
        let server = TestServer::start_example(target.example(), &[]);
        Self { port: server.port, server }
    }

    /// utime + stime of the server process, in seconds.
    fn cpu(&self) -> f64 {
        proc_cpu(&format!("/proc/{}/stat", self.server.child.id()))
    }

    fn rss(&self) -> usize {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.server.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
            .unwrap_or(0)
            * 1024
    }
}

fn proc_cpu(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the name.
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn connect(target: Target, port: u16) -> WsClient {
    match target {
        Target::Floor => WsClient::connect(port, "/echo/websocket"),
        Target::SockJs => {
            let mut ws = WsClient::connect(port, &format!("/echo/000/{}/websocket", session()));
            assert_eq!(ws.recv_text(), "o");
            ws
        }
    }
}

struct EchoResult {
    round_trips: usize,
    seconds: f64,
    server_cpu: f64,
    client_cpu: f64,
    p50: Duration,
    p99: Duration,
}

fn echo(target: Target, sessions: usize, seconds: f64) -> EchoResult {
    let server = Server::start(target);
    let clients: Vec<WsClient> = (0..sessions).map(|_| connect(target, server.port)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (send, expect) = match target {
        Target::Floor => {
            ("hello, world: 0123456789abcdef".to_owned(), "hello, world: 0123456789abcdef".to_owned())
        }
        Target::SockJs => (
            r#"["hello, world: 0123456789abcdef"]"#.to_owned(),
            r#"a["hello, world: 0123456789abcdef"]"#.to_owned(),
        ),
    };
    let cpu0 = (server.cpu(), proc_cpu("/proc/self/stat"));
    let start = Instant::now();
    let workers: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            let (stop, send, expect) = (stop.clone(), send.clone(), expect.clone());
            thread::spawn(move || {
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    ws.send_text(&send);
                    assert_eq!(ws.recv_text(), expect);
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(seconds)); // the measuring window
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<Duration> = workers.into_iter().flat_map(|w| w.join().expect("client")).collect();
    let elapsed = start.elapsed().as_secs_f64();
    let cpu1 = (server.cpu(), proc_cpu("/proc/self/stat"));
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    EchoResult {
        round_trips: lat.len(),
        seconds: elapsed,
        server_cpu: cpu1.0 - cpu0.0,
        client_cpu: cpu1.1 - cpu0.1,
        p50: pct(0.5),
        p99: pct(0.99),
    }
}

fn idle(target: Target, sessions: usize) -> f64 {
    let server = Server::start(target);
    // Warm the server up so the baseline includes its workers' buffers.
    drop((0..20).map(|_| connect(target, server.port)).collect::<Vec<_>>());
    let before = server.rss();
    let clients: Vec<WsClient> = (0..sessions).map(|_| connect(target, server.port)).collect();
    let after = server.rss();
    drop(clients);
    (after.saturating_sub(before)) as f64 / sessions as f64
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--release", "--example", "test_server", "--example", "ws_floor"])
        .status()
        .expect("cargo build");
    assert!(built.success(), "building the servers failed");

    let seconds: f64 = env("LOAD_SECONDS", 5.0);
    let rounds: usize = env("LOAD_ROUNDS", 2);
    let idle_sessions: usize = env("LOAD_IDLE", 1000);
    let sessions: Vec<usize> = std::env::var("LOAD_SESSIONS")
        .unwrap_or_else(|_| "50,500".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();

    println!(
        "# WebSocket echo, {seconds} s per run, {rounds} interleaved rounds, {} cores",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<26} {:>8} {:>10} {:>9} {:>9} {:>14} {:>14}",
        "server", "sessions", "rt/s", "p50 µs", "p99 µs", "server µs/rt", "client µs/rt"
    );
    for &n in &sessions {
        let mut per_rt = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (i, target) in [Target::Floor, Target::SockJs].into_iter().enumerate() {
                let r = echo(target, n, seconds);
                let srv = r.server_cpu * 1e6 / r.round_trips.max(1) as f64;
                per_rt[i].push(srv);
                println!(
                    "{:<26} {:>8} {:>10.0} {:>9} {:>9} {:>14.2} {:>14.2}",
                    target.name(),
                    n,
                    r.round_trips as f64 / r.seconds,
                    r.p50.as_micros(),
                    r.p99.as_micros(),
                    srv,
                    r.client_cpu * 1e6 / r.round_trips.max(1) as f64
                );
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let (floor, ours) = (median(&mut per_rt[0]), median(&mut per_rt[1]));
        println!(
            "ratio, {n} sessions: server CPU per round trip {:.2}x the floor ({ours:.2} vs {floor:.2} µs)",
            ours / floor
        );
    }

    println!("# idle WebSocket sessions: {idle_sessions}");
    for target in [Target::Floor, Target::SockJs] {
        println!(
            "{:<26} {:>10.1} KB server RSS per idle session",
            target.name(),
            idle(target, idle_sessions) / 1024.0
        );
    }
}
