//! The path router: any path under the prefix, with any method, gets an
//! answer (never a panic), and a session path whose ids are empty or hold
//! a dot is never routed to a transport.
#![no_main]

use std::{cell::RefCell, future::Future, pin::Pin, rc::Rc, time::Duration};

use actix::prelude::*;
use actix_sockjs::{Config, Session, SessionContext, SessionManager, SockJs};
use actix_web::{
    dev::{Service, ServiceResponse},
    http::{Method, StatusCode},
    test, App,
};
use libfuzzer_sys::fuzz_target;

struct Echo;

impl Actor for Echo {
    type Context = SessionContext<Self>;
}

impl Session for Echo {
    fn on_message(&mut self, msg: String, ctx: &mut SessionContext<Self>) {
        ctx.send(msg);
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<ServiceResponse, actix_web::Error>>>>;
type App_ = Rc<dyn Fn(actix_http::Request) -> Answer>;

thread_local! {
    // Leaked: the actix runtime must not be torn down while libFuzzer exits.
    static RUNTIME: &'static actix::SystemRunner = Box::leak(Box::new(actix::System::new()));
    static APP: &'static RefCell<Option<App_>> = Box::leak(Box::new(RefCell::new(None)));
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (method, path) = match text.split_once(' ') {
        Some(("POST", p)) => (Method::POST, p),
        Some(("OPTIONS", p)) => (Method::OPTIONS, p),
        Some((_, p)) => (Method::GET, p),
        None => (Method::GET, text),
    };
    let uri = format!("/echo{path}");
    if uri.parse::<actix_web::http::Uri>().is_err() || !uri.starts_with("/echo") {
        return;
    }
    RUNTIME.with(|rt| {
        rt.block_on(async {
            let app = APP.with(|a| a.borrow_mut().take());
            let app = match app {
                Some(app) => app,
                None => {
                    let manager = SessionManager::new(|| Echo).start();
                    // A poll of a session an earlier input opened waits for
                    // a heartbeat: 10 ms, not 25 s (libFuzzer files a unit
                    // over 10 s as a slow-unit artifact, which fails CI).
                    let config = Config::default().heartbeat(Duration::from_millis(10));
                    let service = Rc::new(
                        test::init_service(App::new().service(SockJs::new("/echo", manager).config(config))).await,
                    );
                    Rc::new(move |req| {
                        let service = service.clone();
                        Box::pin(async move { service.call(req).await }) as Answer
                    }) as App_
                }
            };
            let req = test::TestRequest::default().method(method).uri(&uri).to_request();
            let res = app(req).await.expect("the service answers");
            let status = res.status();
            let rest = uri["/echo".len()..].split(['?', '#']).next().unwrap_or_default();
            let segments: Vec<&str> = rest.split('/').collect();
            if segments.len() == 4
                && (segments[1].is_empty()
                    || segments[2].is_empty()
                    || segments[1].contains('.')
                    || segments[2].contains('.'))
            {
                assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
            }
            APP.with(|a| *a.borrow_mut() = Some(app.clone()));
        })
    });
});
