//! Identity flows in: what the authorisation hook produced and what
//! middleware put in the request reach the session factory and the
//! session; a refusal with a close frame reaches the client on every
//! transport; an endpoint whose workers have different managers is
//! reported.

mod common;

use std::{sync::mpsc, thread, time::Duration};

use actix::prelude::*;
use actix_sockjs::{Config, Refuse, RequestInfo, Session, SessionContext, SessionManager, SockJs};
use actix_web::{dev::Service as _, App, HttpMessage as _, HttpServer};
use common::*;

/// Who the hook found.
#[derive(Debug, Clone, PartialEq)]
struct User(String);

/// What a middleware put in the request's extensions.
#[derive(Debug, Clone, PartialEq)]
struct Account(u64);

/// Greets with what it was built with and what its request carries.
struct Greeter {
    built_for: Option<String>,
}

impl Actor for Greeter {
    type Context = SessionContext<Self>;
}

impl Session for Greeter {
    fn on_open(&mut self, ctx: &mut SessionContext<Self>) {
        let user = ctx.request().get::<User>().map(|u| u.0.clone());
        let account = ctx.request().get::<Account>().map(|a| a.0);
        let mut greeting = format!("built for {:?}, user {user:?}, account {account:?}", self.built_for);
        if ctx.request().query("count").is_some() {
            // The headers the session kept (`Config::keep_headers`).
            greeting += &format!(", {} headers", ctx.request().headers().len());
        }
        ctx.send(greeting);
    }

    fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
        ctx.send(msg);
    }
}

/// Starts a server whose app is made by `app` (called once per worker)
/// and answers its port.
fn serve<F>(workers: usize, app: F) -> u16
where
    F: Fn(Addr<SessionManager<Greeter>>) -> SockJs<Greeter> + Send + Clone + 'static,
{
    let (ready_tx, ready) = mpsc::channel();
    thread::spawn(move || {
        actix::System::new().block_on(async move {
            let manager = SessionManager::from_request(|req: &RequestInfo| Greeter {
                built_for: req.get::<User>().map(|u| u.0.clone()),
            })
            .start();
            let server = HttpServer::new(move || {
                App::new()
                    .wrap_fn(|req, srv| {
                        if let Some(n) = req.headers().get("x-account").and_then(|v| v.to_str().ok()) {
                            if let Ok(n) = n.parse() {
                                req.extensions_mut().insert(Account(n));
                            }
                        }
                        srv.call(req)
                    })
                    .service(app(manager.clone()))
            })
            .workers(workers)
            .client_disconnect_timeout(Duration::ZERO)
            .bind(("127.0.0.1", 0))
            .expect("bind");
            ready_tx.send(server.addrs()[0].port()).expect("ready");
            let _ = server.run().await;
        });
    });
    ready.recv_timeout(READ_TIMEOUT).expect("server started")
}

/// The user named by the `x-user` header; no header, no session.
fn by_header(req: &actix_web::HttpRequest) -> Result<User, Refuse> {
    match req.headers().get("x-user").and_then(|v| v.to_str().ok()) {
        Some(name) => Ok(User(name.to_owned())),
        None => Err(Refuse::close(4401, "Unauthorized")),
    }
}

#[test]
fn the_hooks_value_and_carried_extensions_reach_the_factory_and_the_session() {
    let port = serve(2, |m| SockJs::new("/id", m).authorize(by_header).carry::<Account>());
    let expected = r#"a["built for Some(\"ann\"), user Some(\"ann\"), account Some(7)"]"#;
    let headers = [("X-User", "ann"), ("X-Account", "7")];
    let mut ws = WsClient::connect_with(port, &format!("/id/000/{}/websocket", session()), &headers)
        .unwrap_or_else(|r| panic!("refused: {r:?}"));
    assert_eq!(ws.recv_text(), "o");
    assert_eq!(ws.recv_text(), expected);
    let url = format!("/id/000/{}", session());
    let r = request(port, "POST", &format!("{url}/xhr"), &headers, Some(b""));
    assert_eq!(r.body, "o\n");
    assert_eq!(post(port, &format!("{url}/xhr"), "").body, format!("{expected}\n"));
    // Without the middleware's value the session still opens.
    let r = request(port, "POST", &format!("/id/000/{}/xhr", session()), &[("X-User", "bob")], Some(b""));
    assert_eq!(r.body, "o\n");
}

#[test]
fn the_hook_and_carry_see_headers_the_session_does_not_keep() {
    let port = serve(1, |m| {
        SockJs::new("/bare", m)
            .config(Config::default().keep_headers(Vec::<String>::new()))
            .authorize(by_header)
            .carry::<Account>()
    });
    let expected = r#"a["built for Some(\"ann\"), user Some(\"ann\"), account Some(7), 0 headers"]"#;
    let headers = [("X-User", "ann"), ("X-Account", "7"), ("Cookie", "a=1")];
    let mut ws = WsClient::connect_with(port, &format!("/bare/000/{}/websocket?count", session()), &headers)
        .unwrap_or_else(|r| panic!("refused: {r:?}"));
    assert_eq!(ws.recv_text(), "o");
    assert_eq!(ws.recv_text(), expected);
    let url = format!("/bare/000/{}", session());
    let r = request(port, "POST", &format!("{url}/xhr?count"), &headers, Some(b""));
    assert_eq!(r.body, "o\n");
    assert_eq!(post(port, &format!("{url}/xhr"), "").body, format!("{expected}\n"));
}

#[test]
fn an_async_hook_decides_later() {
    let port = serve(1, |m| {
        SockJs::new("/slow", m).authorize_async(|req| {
            let user = by_header(req);
            async move {
                actix_web::rt::time::sleep(Duration::from_millis(20)).await;
                user
            }
        })
    });
    let mut ws =
        WsClient::connect_with(port, &format!("/slow/000/{}/websocket", session()), &[("X-User", "cy")])
            .unwrap_or_else(|r| panic!("refused: {r:?}"));
    assert_eq!(ws.recv_text(), "o");
    assert_eq!(ws.recv_text(), r#"a["built for Some(\"cy\"), user Some(\"cy\"), account None"]"#);
    let r = post(port, &format!("/slow/000/{}/xhr", session()), "");
    assert_eq!(r.body, "c[4401,\"Unauthorized\"]\n");
}

#[test]
fn a_close_refusal_reaches_the_client_on_every_transport() {
    let port = serve(1, |m| SockJs::new("/locked", m).authorize(by_header));
    let url = || format!("/locked/000/{}", session());
    let frame = r#"c[4401,"Unauthorized"]"#;

    let r = post(port, &format!("{}/xhr", url()), "");
    assert_eq!((r.status(), r.body.as_str()), (200, format!("{frame}\n").as_str()));
    let r = post(port, &format!("{}/xhr_streaming", url()), "");
    assert_eq!(r.status(), 200);
    assert_eq!(r.body, format!("{}\n{frame}\n", "h".repeat(2048)), "prelude, the frame, the end");
    let r = get(port, &format!("{}/eventsource", url()));
    assert_eq!(r.body, format!("\r\ndata: {frame}\r\n\r\n"));
    let r = get(port, &format!("{}/htmlfile?c=cb", url()));
    assert!(r.body.ends_with("<script>\np(\"c[4401,\\\"Unauthorized\\\"]\");\n</script>\r\n"), "{}", r.body);
    let r = get(port, &format!("{}/jsonp?c=cb", url()));
    assert_eq!(r.body, "/**/cb(\"c[4401,\\\"Unauthorized\\\"]\");\r\n");

    let mut ws = WsClient::connect(port, &format!("{}/websocket", url()));
    assert_eq!(ws.recv_text(), frame);
    assert_eq!(ws.recv(), Ws::Close(Some(1000), "Normal closure".into()));
    let mut raw = WsClient::connect(port, "/locked/websocket");
    assert_eq!(raw.recv(), Ws::Close(Some(4401), "Unauthorized".into()));
    // hixie-76: the handshake's answer, the frame, then the end.
    let mut conn = Conn::open(port);
    let keys = [("Sec-WebSocket-Key1", "4 @1  46546xW%0l 1 5"), ("Sec-WebSocket-Key2", "12998 5 Y3 1  .P00")];
    let headers = [("Connection", "Upgrade"), ("Upgrade", "WebSocket"), keys[0], keys[1]];
    conn.send("GET", &format!("{}/websocket", url()), &headers, None);
    assert_eq!(conn.head().status, 101);
    conn.write(b"aaaaaaaa");
    conn.read_exact(16);
    assert_eq!(conn.read_to_end(), [&[0u8][..], frame.as_bytes(), &[0xff]].concat());

    // No session was opened, and an allowed client still gets one.
    let id = session();
    let r = request(port, "POST", &format!("/locked/000/{id}/xhr"), &[("X-User", "ann")], Some(b""));
    assert_eq!(r.body, "o\n");
}

#[test]
fn an_http_refusal_answers_its_status() {
    let port = serve(1, |m| {
        SockJs::new("/forbidden", m)
            .authorize(|_| Err::<(), _>(actix_web::error::ErrorForbidden("log in first")))
    });
    let r = post(port, &format!("/forbidden/000/{}/xhr", session()), "");
    assert_eq!((r.status(), r.body.as_str()), (403, "log in first"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let refused = WsClient::connect_with(port, &format!("/forbidden/000/{}/websocket", session()), &[]);
    assert_eq!(refused.err().map(|r| r.status()), Some(403));

    // A page on another origin sees the status and the body: the refusal
    // carries the transport's CORS headers (it had none: a CORS failure).
    let page = [("Origin", "http://app.example")];
    for transport in ["xhr", "xhr_streaming"] {
        let r = request(port, "POST", &format!("/forbidden/000/{}/{transport}", session()), &page, Some(b""));
        assert_eq!((r.status(), r.body.as_str()), (403, "log in first"), "{transport}");
        assert_eq!(r.header("access-control-allow-origin"), Some("http://app.example"), "{transport}");
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"), "{transport}");
        assert!(r.head.all("vary").iter().any(|v| v.contains("Origin")), "{transport}: {:?}", r.head);
    }
}

#[test]
fn an_http_refusal_keeps_cors_headers_of_its_own() {
    let port = serve(1, |m| {
        SockJs::new("/own", m).authorize(|_| {
            let answer = actix_web::HttpResponse::Unauthorized()
                .insert_header(("Access-Control-Allow-Origin", "http://login.example"))
                .body("who are you?");
            Err::<(), _>(Refuse::http(actix_web::error::InternalError::from_response("no user", answer)))
        })
    });
    let page = [("Origin", "http://app.example")];
    let r = request(port, "POST", &format!("/own/000/{}/xhr", session()), &page, Some(b""));
    assert_eq!((r.status(), r.body.as_str()), (401, "who are you?"));
    assert_eq!(r.head.all("access-control-allow-origin"), ["http://login.example"]);
    assert_eq!(r.header("access-control-allow-credentials"), None);
}

#[test]
fn a_hook_that_panics_answers_500() {
    // An audit: a panic in the hook cut the connection with no answer (a
    // network error to the client), where one in the session's factory
    // answers 500.
    let port = serve(1, |m| {
        SockJs::new("/fragile", m).authorize(|req| {
            assert!(!req.query_string().contains("boom"), "a bug in the hook");
            Ok::<(), Refuse>(())
        })
    });
    let r = post(port, &format!("/fragile/000/{}/xhr?boom=1", session()), "");
    assert_eq!(r.status(), 500);
    let refused = WsClient::connect_with(port, &format!("/fragile/000/{}/websocket?boom=1", session()), &[]);
    assert_eq!(refused.err().map(|r| r.status()), Some(500));
    // The worker goes on.
    assert_eq!(post(port, &format!("/fragile/000/{}/xhr", session()), "").body, "o\n");
}

/// `log_panics` writes a panic's message escaped: a message carrying a
/// client's text cannot forge a log line of its own.
#[test]
fn a_logged_panic_cannot_forge_a_line() {
    capture_errors();
    actix_sockjs::log_panics();
    let port = serve(1, |m| {
        SockJs::new("/forged", m).authorize(|req| {
            let name = req.headers().get("x-name").and_then(|v| v.to_str().ok()).unwrap_or_default();
            // What an application might do with a client's text.
            assert!(!name.contains("evil"), "no {}", name.replace('_', "\n"));
            Ok::<(), Refuse>(())
        })
    });
    let r = request(
        port,
        "POST",
        &format!("/forged/000/{}/xhr", session()),
        &[("X-Name", "evil_ERROR root")],
        Some(b""),
    );
    let deadline = std::time::Instant::now() + READ_TIMEOUT;
    let escaped = || logged(|line| line.contains("no evil\\nERROR root"));
    while !escaped() && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    // The default hook again before any assertion, so that a failing test
    // of this binary shows its message on stderr.
    drop(std::panic::take_hook());
    assert_eq!(r.status(), 500);
    assert!(escaped(), "no escaped panic line logged");
    assert!(!logged(|line| line.contains("no evil\n")), "the panic's line holds a line break");
}

#[test]
fn one_manager_per_worker_is_reported_at_start() {
    capture_errors();
    let (ready_tx, ready) = mpsc::channel();
    thread::spawn(move || {
        actix::System::new().block_on(async move {
            // The mistake: a manager per worker, made inside the closure.
            let server = HttpServer::new(|| {
                let manager = SessionManager::new(|| Greeter { built_for: None }).start();
                App::new().service(SockJs::new("/per_worker", manager))
            })
            .workers(2)
            .bind(("127.0.0.1", 0))
            .expect("bind");
            let server = server.run();
            ready_tx.send(()).expect("ready");
            let _ = server.await;
        });
    });
    ready.recv_timeout(READ_TIMEOUT).expect("server started");
    let deadline = std::time::Instant::now() + READ_TIMEOUT;
    let reported = || {
        logged(|line| {
            line.contains("\"/per_worker\"") && line.contains("different SessionManager in another worker")
        })
    };
    while !reported() {
        assert!(std::time::Instant::now() < deadline, "no error logged for per-worker managers");
        thread::sleep(Duration::from_millis(20));
    }
}
