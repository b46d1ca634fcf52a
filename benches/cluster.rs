//! Cross-node delivery through Redis: latency (p50, p99) and throughput
//! from a session on node 1 to a session on node 2.
//!
//! Run: `cargo bench --bench cluster --features redis` (needs
//! `redis-server` on the PATH). It starts a redis-server and two
//! `examples/test_server --redis` processes (release build) on free
//! loopback ports; a WebSocket client on node 1's `/broadcast` sends, one
//! on node 2's receives. Options (environment): `CLUSTER_RATE` (latency
//! run, messages a second, default 1000), `CLUSTER_LATENCY` (messages,
//! default 5000), `CLUSTER_BURST` (throughput run, messages, default
//! 100000), `CLUSTER_ROUNDS` (default 3; medians are printed).

// The tests' helpers (their module allows what the bench leaves unused).
#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use common::{free_port, request, wait_for, Proc, TestServer, Ws, WsClient};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn unix_micros() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros()).unwrap_or(0)
}

/// The `/broadcast` bridge's health from `GET /cluster`.
fn bridge(port: u16) -> serde_json::Value {
    let res = request(port, "GET", "/cluster", &[], None);
    let health: serde_json::Value = serde_json::from_str(&res.body).expect("JSON health");
    health["bridges"]["/broadcast"].clone()
}

/// A SockJS WebSocket session on `/broadcast`, past its `o`.
fn session(port: u16) -> WsClient {
    let mut ws = WsClient::connect(port, &format!("/broadcast/000/{}/websocket", common::session()));
    assert_eq!(ws.recv_text(), "o");
    ws
}

/// The messages of the next message frame (heartbeats skipped).
fn messages(ws: &mut WsClient) -> Vec<String> {
    loop {
        match ws.recv_any() {
            Ws::Text(frame) if frame.starts_with('a') => {
                return serde_json::from_str(&frame[1..]).expect("a JSON array");
            }
            Ws::Text(_) | Ws::Ping(_) | Ws::Pong(_) => {}
            other => panic!("the receiver's socket ended: {other:?}"),
        }
    }
}

/// Reads and drops everything the sender's own session gets (its own
/// broadcasts), so that it never counts as a slow reader.
fn drain(ws: &WsClient) {
    let mut reader = ws.split_reader();
    std::thread::spawn(move || while !matches!(reader.recv_any(), Ws::Eof | Ws::Close(..)) {});
}

/// One latency run: `n` messages at `rate` a second; answers the delays
/// in microseconds, sorted.
fn latency(sender: &mut WsClient, receiver: &mut WsClient, n: usize, rate: u32, round: usize) -> Vec<u64> {
    let tag = format!("L{round}");
    let reader = {
        let mut receiver = receiver.split_reader();
        let tag = tag.clone();
        std::thread::spawn(move || {
            let mut delays = Vec::with_capacity(n);
            while delays.len() < n {
                for msg in messages(&mut receiver) {
                    let now = unix_micros();
                    let Some(rest) = msg.strip_prefix(&format!("{tag} ")) else { continue };
                    let sent: u64 = rest.parse().expect("a time");
                    delays.push(now.saturating_sub(sent));
                }
            }
            delays
        })
    };
    let start = Instant::now();
    let gap = Duration::from_secs(1) / rate;
    for i in 0..n {
        sender.send_text(&serde_json::to_string(&[format!("{tag} {}", unix_micros())]).expect("json"));
        let next = start + gap * (i as u32 + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let mut delays = reader.join().expect("the receiver");
    delays.sort_unstable();
    delays
}

/// One throughput run: `n` broadcasts, 100 a frame (one broadcast each),
/// with at most `window` sent and not yet arrived on node 2 (so that no
/// queue on the way overflows); answers messages a second from the first
/// send to the last arrival.
fn throughput(sender: &mut WsClient, receiver: &mut WsClient, n: usize, window: usize, round: usize) -> f64 {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };
    let tag = format!("T{round} ");
    let arrived = Arc::new(AtomicUsize::new(0));
    let reader = {
        let mut receiver = receiver.split_reader();
        let (tag, arrived) = (tag.clone(), arrived.clone());
        std::thread::spawn(move || {
            let mut got = 0;
            while got < n {
                got += messages(&mut receiver).iter().filter(|m| m.starts_with(&tag)).count();
                arrived.store(got, Ordering::Release);
            }
            Instant::now()
        })
    };
    let start = Instant::now();
    let mut sent = 0;
    while sent < n {
        if sent - arrived.load(Ordering::Acquire) >= window {
            std::thread::yield_now();
            continue;
        }
        let frame: Vec<String> = (sent..(sent + 100).min(n)).map(|i| format!("{tag}{i}")).collect();
        sender.send_text(&serde_json::to_string(&frame).expect("json"));
        sent += frame.len();
    }
    let done = reader.join().expect("the receiver");
    n as f64 / done.duration_since(start).as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (rate, n_latency, burst, rounds) = (
        env("CLUSTER_RATE", 1000u32),
        env("CLUSTER_LATENCY", 5000usize),
        env("CLUSTER_BURST", 100_000usize),
        env("CLUSTER_ROUNDS", 3usize),
    );
    let window = env("CLUSTER_WINDOW", 5000usize);
    let redis_port = free_port();
    let redis = Proc(
        Command::new("redis-server")
            .args([
                "--port",
                &redis_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server (Debian package redis-server)"),
    );
    wait_for("redis", || std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_ok());
    let url = format!("redis://127.0.0.1:{redis_port}/");
    let outbox = (burst + 1000).to_string();
    let nodes = ["n1", "n2"].map(|name| {
        TestServer::start_example_with(
            "test_server",
            &["redis"],
            &["--redis", &url, "--node", name, "--redis-outbox", &outbox],
        )
    });
    for node in &nodes {
        wait_for("the bridges", || bridge(node.port)["up"] == true);
    }
    let mut sender = session(nodes[0].port);
    drain(&sender);
    let mut receiver = session(nodes[1].port);

    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    let mut rates = Vec::new();
    for round in 0..rounds {
        let delays = latency(&mut sender, &mut receiver, n_latency, rate, round);
        p50.push(percentile(&delays, 0.50) as f64);
        p99.push(percentile(&delays, 0.99) as f64);
        rates.push(throughput(&mut sender, &mut receiver, burst, window, round));
        println!(
            "round {}: latency p50 {} µs, p99 {} µs ({n_latency} messages at {rate}/s); \
             throughput {:.0} messages/s ({burst} broadcasts, at most {window} in flight)",
            round + 1,
            p50[round],
            p99[round],
            rates[round]
        );
    }
    let dropped: u64 = nodes.iter().map(|n| bridge(n.port)["dropped"].as_u64().unwrap_or(0)).sum();
    println!();
    println!("| node 1 -> Redis -> node 2, one session each | median of {rounds} rounds |");
    println!("|---|---|");
    println!("| latency p50, {rate} messages/s | {:.0} µs |", median(p50));
    println!("| latency p99, {rate} messages/s | {:.0} µs |", median(p99));
    println!(
        "| throughput, {burst} broadcasts, {window} in flight at most | {:.0} messages/s |",
        median(rates)
    );
    println!("| dropped by the outboxes | {dropped} |");
    drop((sender, receiver));
    drop(nodes);
    drop(redis);
}
