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
    // An aborted idle stream is noticed at its next write (a heartbeat,
    // every 500 ms here). The disconnect delay is the default 5 s: a
    // polling client's requests follow each other within it however
    // loaded the machine, so an abandoned session ends only when its
    // client is done with it (a 200 ms delay let sessions expire between
    // two requests on a busy two-core machine).
    let config = Config::default().heartbeat(Duration::from_millis(500));
    let (port, manager, system) = serve_endpoint("/churn", config, 2, true, move || {
        SessionManager::new(move || Churn { dropped: dropped_tx.clone() }).start()
    });

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
    let remaining = (0..100).map(|_| sessions_listed(&manager, &system)).find(|&n| n == 0);
    assert_eq!(remaining, Some(0), "the manager still tracks sessions");
    system.stop();
}

/// What a polling client of `/broadcast` saw of one session's life: the
/// broadcasts' numbers must follow each other, whatever its polls met,
/// unless the session then ends as interrupted.
#[derive(Default)]
struct Life {
    last: Option<u64>,
    gaps: Vec<(u64, u64)>,
    /// The session's close frame, once it came.
    end: Option<String>,
    /// Messages frames after the first gap's.
    after_gap: usize,
}

impl Life {
    /// Whether the session told its client that it lost the messages of
    /// its gaps: it closed as interrupted right after them, as it does when
    /// a frame its request could not deliver comes back after the next
    /// request was written to. "Right after": within two more messages
    /// frames, as the request that drops the frame may be dropped a little
    /// after its client has gone and come back, on a loaded machine.
    fn announced(&self) -> bool {
        self.end.as_deref() == Some(r#"c[1002,"Connection interrupted"]"#) && self.after_gap <= 2
    }

    /// Takes one poll's body; `false` when the session has ended (`c`).
    fn take(&mut self, body: &str) -> bool {
        let frame = body.trim_end_matches('\n');
        if frame.starts_with('c') {
            self.end = Some(frame.to_owned());
            return false;
        }
        if frame == "o" {
            self.last = None;
        } else if let Some(messages) = frame.strip_prefix('a') {
            let messages: Vec<String> = serde_json::from_str(messages).expect("a messages frame");
            if !self.gaps.is_empty() {
                self.after_gap += 1;
            }
            for n in messages.iter().map(|m| m.parse::<u64>().expect("a broadcast number")) {
                if let Some(last) = self.last.filter(|last| n != last + 1) {
                    self.gaps.push((last, n));
                }
                self.last = Some(n);
            }
        }
        true
    }
}

/// The body of the one response in `raw` (a connection read to its end),
/// if the server answered before it closed.
fn body_of(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).expect("utf-8 response");
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some(body.to_owned())
}

/// The whole chunks of a chunked response in `raw` (read to the end of a
/// connection that may have been cut): one frame each.
fn chunks_of(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let Some((_, mut rest)) = text.split_once("\r\n\r\n") else { return Vec::new() };
    let mut chunks = Vec::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size, 16) else { break };
        if size == 0 || after.len() < size + 2 {
            break;
        }
        chunks.push(after[..size].to_owned());
        rest = &after[size + 2..];
    }
    chunks
}

/// What the receiving clients of a churn run saw.
#[derive(Default)]
struct Seen {
    /// Gaps in lives that went on.
    gaps: Vec<String>,
    /// Gaps right before the session closed as interrupted.
    announced: usize,
    aborts: usize,
}

/// `RECEIVERS` clients of the broadcast endpoint at `prefix` receive over
/// `transport` (xhr or xhr_streaming) for 6 s, leaving a third of their
/// requests at once or after up to 20 ms (a FIN; what comes after it is
/// read), while a WebSocket client sends numbered bursts.
fn churn(port: u16, prefix: &'static str, transport: &'static str) -> Seen {
    const RECEIVERS: u64 = 40;
    const BURST: usize = 80;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut sender = WsClient::connect(port, &format!("{prefix}/000/{}/websocket", session()));
    assert_eq!(sender.recv_text(), "o");
    let mut drain = sender.split_reader();
    thread::spawn(move || while let Ws::Text(_) = drain.recv() {});
    let burster = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let burst: Vec<String> = (0..BURST).map(|i| (n + i as u64).to_string()).collect();
                sender.send_text(&serde_json::to_string(&burst).expect("json"));
                n += BURST as u64;
                // The pace of the trial's sender, between bursts.
                thread::sleep(Duration::from_millis(40));
            }
        })
    };
    let until = std::time::Instant::now() + Duration::from_secs(6);
    let receivers: Vec<_> = (0..RECEIVERS)
        .map(|r| {
            thread::spawn(move || {
                let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (r + 1);
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut seen = Seen::default();
                while std::time::Instant::now() < until {
                    let (id, mut life) = (session(), Life::default());
                    let mut conn = Conn::open(port);
                    // A life with a gap is followed to its end (20 more
                    // requests at most): the session must tell its client.
                    let mut after_gap = 20;
                    'life: loop {
                        conn.send("POST", &format!("{prefix}/000/{id}/{transport}"), &[], Some(b""));
                        let frames = if next() % 3 == 0 {
                            // Leave as the request waits or as its frames come.
                            seen.aborts += 1;
                            thread::sleep(Duration::from_micros(next() % 20_000));
                            conn.shut_write();
                            let raw = conn.read_to_end();
                            conn = Conn::open(port);
                            if transport == "xhr" {
                                body_of(&raw).into_iter().collect()
                            } else {
                                chunks_of(&raw)
                            }
                        } else if transport == "xhr" {
                            vec![conn.response("POST").body]
                        } else {
                            // To its end, at the response limit.
                            conn.head();
                            std::iter::from_fn(|| conn.chunk()).collect()
                        };
                        for frame in frames {
                            if !life.take(&frame) {
                                break 'life;
                            }
                        }
                        if !life.gaps.is_empty() {
                            after_gap -= 1;
                        }
                        let over = std::time::Instant::now() >= until;
                        if (over && life.gaps.is_empty()) || after_gap == 0 {
                            break;
                        }
                    }
                    if life.announced() {
                        seen.announced += life.gaps.len();
                    } else {
                        seen.gaps.extend(life.gaps.iter().map(|&(a, b)| format!("{id}: {a} then {b}")));
                    }
                }
                seen
            })
        })
        .collect();
    let mut seen = Seen::default();
    for receiver in receivers {
        let one = receiver.join().expect("receiver");
        seen.gaps.extend(one.gaps);
        seen.announced += one.announced;
        seen.aborts += one.aborts;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    burster.join().expect("sender");
    println!(
        "{transport}: {} requests left by their clients; gaps: {} unannounced, {} announced",
        seen.aborts,
        seen.gaps.len(),
        seen.announced
    );
    seen
}

#[test]
fn polls_whose_clients_leave_as_a_burst_arrives_lose_no_message() {
    // A churn trial: a poll whose client closed its connection (a FIN) as
    // a burst of broadcasts came lost the frame written to it: actix-web
    // dropped the request with the frame unread, and the session, which
    // had written to a live receiver, went on without those messages
    // (8 gaps in 40 s of 100 such clients). The frame now goes back to the
    // session. What a client legitimately misses comes before its `o` or
    // after its `c`, and a poll answered after the client's FIN is read,
    // as a half-closed client can: so any gap in a session's life is a
    // loss, unless the session closes as interrupted right after it.
    let s = TestServer::start();
    let seen = churn(s.port, "/broadcast", "xhr");
    assert!(seen.gaps.is_empty(), "messages lost inside a session's life, which went on: {:?}", seen.gaps);
}

/// Sends every message to every session of its endpoint.
struct Relay {
    room: Addr<SessionManager<Relay>>,
}

impl Actor for Relay {
    type Context = SessionContext<Self>;
}

impl Session for Relay {
    fn on_message(&mut self, msg: String, _: &mut SessionContext<Self>) {
        self.room.do_send(actix_sockjs::Broadcast::text(msg));
    }
}

#[test]
fn streams_whose_clients_leave_at_their_response_limit_lose_no_message() {
    // The same for a stream: one that reached its response limit is
    // detached from its session with its last frames still queued for the
    // response, which a client that leaves then never gets (a review).
    // A limit of 256 bytes ends a stream at about every frame here.
    let (ready_tx, ready) = mpsc::channel();
    thread::spawn(move || {
        actix::System::new().block_on(async move {
            let room = SessionManager::start_with(|room| move || Relay { room: room.clone() });
            let config = Config::default().response_limit(256);
            let server = HttpServer::new(move || {
                App::new().service(SockJs::new("/relay", room.clone()).config(config.clone()))
            })
            .workers(2)
            .h1_allow_half_closed(false)
            .bind(("127.0.0.1", 0))
            .expect("bind");
            ready_tx.send((server.addrs()[0].port(), actix::System::current())).expect("ready");
            let _ = server.run().await;
        });
    });
    let (port, system) = ready.recv_timeout(READ_TIMEOUT).expect("server started");
    let seen = churn(port, "/relay", "xhr_streaming");
    system.stop();
    // Before the give-back, 13-26 gaps in a run; then one frame lost in 2
    // of about 20 runs, written by the session between the give-back's
    // last look at the queue and the queue's drop (a pause put there made
    // it 6-8 gaps a run; the queue now closes as it is emptied).
    assert!(seen.gaps.is_empty(), "messages lost inside a session's life, which went on: {:?}", seen.gaps);
}

#[test]
fn opening_requests_whose_clients_leave_at_once_leave_no_session_listed() {
    // A race trial: an opening poll cancelled (its client's FIN; this
    // server refuses half-closed connections) after the manager had listed
    // its new session and before the answer came back left the session
    // listed for good, in phase `New`: no actor was started to tell the
    // manager of its end, so it counted in `CountSessions` and held a place
    // under `max_sessions` and the per-address cap (146 and 174 of 4,000
    // here). Such an answer now unlists the session when it is dropped
    // unstarted.
    let left = opened_and_left(Config::default(), |conn, id| {
        conn.send("POST", &format!("/opens/000/{id}/xhr"), &[], Some(b""));
    });
    assert_eq!(left, 0, "sessions still listed {}s after their clients left", READ_TIMEOUT.as_secs());
}

#[test]
fn websockets_whose_clients_leave_at_once_leave_no_session_listed() {
    // The same for a WebSocket on a capped endpoint, which the manager
    // registers before the session starts.
    let config = Config::default().max_sessions(1_000_000);
    let left = opened_and_left(config, |conn, id| {
        let headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ];
        conn.send("GET", &format!("/opens/000/{id}/websocket"), &headers, None);
    });
    assert_eq!(left, 0, "sessions still listed {}s after their clients left", READ_TIMEOUT.as_secs());
}

/// Opens 4,000 sessions at `/opens` (with `config`, a 100 ms disconnect
/// delay) by `open`'s request, each from a client that leaves as soon as
/// it has sent it, and answers how many sessions the manager still lists
/// once every one should have ended (or `READ_TIMEOUT` has passed). The
/// race is narrow (the manager must answer between two polls of the
/// cancelled request), hence the many clients.
fn opened_and_left(config: Config, open: fn(&mut Conn, &str)) -> usize {
    const OPENS: usize = 4_000;
    let config = config.disconnect_delay(Duration::from_millis(100));
    let (port, manager, system) = serve_endpoint("/opens", config, 2, false, || {
        SessionManager::start_with(|room| move || Relay { room: room.clone() })
    });
    let clients: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            thread::spawn(move || {
                let mut answered = 0;
                for _ in (t..OPENS).step_by(CLIENT_THREADS) {
                    let mut conn = Conn::open(port);
                    open(&mut conn, &session());
                    conn.shut_write();
                    let raw = conn.read_to_end();
                    answered +=
                        usize::from(raw.starts_with(b"HTTP/1.1 200") || raw.starts_with(b"HTTP/1.1 101"));
                }
                answered
            })
        })
        .collect();
    let answered: usize = clients.into_iter().map(|c| c.join().expect("client thread")).sum();
    // Not a vacuous pass: sessions did open (the rest were dropped before
    // the manager heard of them, or as they started).
    println!("{answered} of {OPENS} opening requests answered before their clients' ends were seen");
    assert!(answered > 0, "no session opened");
    // Every session that started ends within its disconnect delay and is
    // removed; one listed and never started stays.
    let deadline = std::time::Instant::now() + READ_TIMEOUT;
    let left = loop {
        let left = sessions_listed(&manager, &system);
        if left == 0 || std::time::Instant::now() >= deadline {
            break left;
        }
        thread::sleep(Duration::from_millis(20));
    };
    system.stop();
    left
}

/// How many sessions `manager` lists, asked from the test thread through
/// `system` (`usize::MAX` if the manager is gone).
fn sessions_listed<A: Session>(manager: &Addr<SessionManager<A>>, system: &actix::System) -> usize {
    let (tx, rx) = mpsc::channel();
    let m = manager.clone();
    system.arbiter().spawn(async move {
        let _ = tx.send(m.send(CountSessions).await.map_or(usize::MAX, |c| c.total()));
    });
    rx.recv_timeout(READ_TIMEOUT).expect("manager answers")
}
