//! Closing sessions when the server stops, and keeping panics to one log
//! line.

use std::{future::Future, time::Duration};

use actix::Recipient;

use crate::manager::Shutdown;

/// A shutdown signal for [`HttpServer::shutdown_signal`] that closes every
/// session before actix-web stops.
///
/// It waits for SIGINT (Ctrl-C), SIGTERM or SIGQUIT, sends [`Shutdown`] to
/// each manager (every open session gets `c[1001,"Server shutting down"]`
/// and its `on_close`; no new session opens: 503), goes on serving for
/// [`SHUTDOWN_DRAIN`], then resolves, and actix-web begins its graceful
/// stop (it stops accepting connections). Long-polls and streams end with
/// the close frame, and WebSockets once their clients answer it (a second
/// at most, which the default drain covers), so the stop does not wait for
/// them; the drain is for a
/// polling client that was between two polls, whose close frame waits for
/// its next poll: without it, that poll would find the port closed (or,
/// behind a balancer, another node), and the client would never learn why
/// its session ended. A second signal ends the drain at once (the
/// managers are told first, however close together two signals come:
/// a process manager's SIGTERM after a terminal's SIGINT, say). The stop
/// that follows takes up to actix-web's
/// `HttpServer::shutdown_timeout` (30 s by default), which a request still
/// reading a stalled body holds to the end: keep drain and timeout within
/// what your process manager waits before it kills (Kubernetes: 30 s; so
/// `shutdown_timeout(25)` with the default drain, as below). A signal
/// during that stop ends the process at once, with exit code 128 + the
/// signal's number (130 for Ctrl-C), as a second Ctrl-C does to actix-web
/// without this signal: actix-web listens for no signal once it has one
/// of its own, and the process would have ignored it (an audit). That
/// watcher lives as long as the runtime: under `#[actix_web::main]`, until
/// `main` returns; an application that goes on after its server stopped
/// (a second server on the same runtime, say) ends at the next signal.
/// Without this signal,
/// actix-web stops on those signals by itself: streams and WebSockets hold
/// its graceful stop for the whole `shutdown_timeout`, and the sessions
/// still open when their worker stops get `on_close` with
/// [`CloseCause::Shutdown`](crate::CloseCause::Shutdown) as they are
/// dropped, their clients no close frame.
///
/// [`HttpServer::shutdown_signal`]: actix_web::HttpServer::shutdown_signal
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{Session, SessionContext, SessionManager, SockJs};
/// # use actix_web::{App, HttpServer};
/// # struct Echo;
/// # impl Actor for Echo { type Context = SessionContext<Self>; }
/// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// # #[actix_web::main]
/// # async fn main() -> std::io::Result<()> {
/// let manager = SessionManager::new(|| Echo).start();
/// let signal = actix_sockjs::shutdown_signal([manager.clone().recipient()]);
/// HttpServer::new(move || App::new().service(SockJs::new("/echo", manager.clone())))
///     .shutdown_signal(signal)
///     .shutdown_timeout(25)
///     .bind(("127.0.0.1", 8080))?
///     .run()
///     .await
/// # }
/// ```
pub fn shutdown_signal<I>(managers: I) -> impl Future<Output = ()> + Send + 'static
where
    I: IntoIterator<Item = Recipient<Shutdown>>,
{
    let managers: Vec<_> = managers.into_iter().collect();
    async move {
        // Listening from the first signal to the end: one that came between
        // two listeners would be lost.
        let mut signals = Signals::listen();
        signals.next().await;
        // Every manager is told, whatever comes meanwhile (a review: two
        // signals close together skipped the ones after the first).
        close_sessions(&managers).await;
        log::info!("sockjs: sessions closed; serving their clients' last polls for {SHUTDOWN_DRAIN:?}");
        // A second signal, come meanwhile or now, ends the drain at once.
        let drain = std::pin::pin!(actix_web::rt::time::sleep(SHUTDOWN_DRAIN));
        futures_util::future::select(drain, std::pin::pin!(signals.next())).await;
        // actix-web's graceful stop begins as this resolves; it ignores
        // signals from then on.
        tokio::spawn(async move {
            if let Some(number) = signals.next().await {
                log::warn!("sockjs: a stop signal during the graceful stop; exiting now");
                std::process::exit(128 + number);
            }
        });
    }
}

/// Like [`shutdown_signal`], with your own trigger instead of the process
/// signals: when `trigger` completes, the managers close their sessions,
/// and [`SHUTDOWN_DRAIN`] later the returned future completes
/// ([`shutdown_on_draining`] takes another drain).
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{Session, SessionContext, SessionManager};
/// # struct Echo;
/// # impl Actor for Echo { type Context = SessionContext<Self>; }
/// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// # fn f(manager: Addr<SessionManager<Echo>>) {
/// // Stop when an admin endpoint fires the channel.
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let signal = actix_sockjs::shutdown_on(async move { stopped.await.ok(); }, [manager.recipient()]);
/// // HttpServer::new(..).shutdown_signal(signal) ...; later: stop.send(()).ok();
/// # drop((stop, signal));
/// # }
/// ```
pub fn shutdown_on<F, I>(trigger: F, managers: I) -> impl Future<Output = ()> + Send + 'static
where
    F: Future<Output = ()> + Send + 'static,
    I: IntoIterator<Item = Recipient<Shutdown>>,
{
    shutdown_on_draining(trigger, managers, SHUTDOWN_DRAIN)
}

/// [`shutdown_on`] with a drain of your choice: `Duration::ZERO` for none
/// (a test, or a deployment that drains the node at its balancer first),
/// longer for clients that poll slowly.
///
/// # Examples
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_sockjs::{Session, SessionContext, SessionManager};
/// # struct Echo;
/// # impl Actor for Echo { type Context = SessionContext<Self>; }
/// # impl Session for Echo { fn on_message(&mut self, _: String, _: &mut SessionContext<Self>) {} }
/// # fn f(manager: Addr<SessionManager<Echo>>) {
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let trigger = async move {
///     stopped.await.ok();
/// };
/// let signal = actix_sockjs::shutdown_on_draining(trigger, [manager.recipient()], std::time::Duration::ZERO);
/// # drop((stop, signal));
/// # }
/// ```
pub fn shutdown_on_draining<F, I>(
    trigger: F,
    managers: I,
    drain: Duration,
) -> impl Future<Output = ()> + Send + 'static
where
    F: Future<Output = ()> + Send + 'static,
    I: IntoIterator<Item = Recipient<Shutdown>>,
{
    let managers: Vec<_> = managers.into_iter().collect();
    async move {
        trigger.await;
        close_sessions(&managers).await;
        if !drain.is_zero() {
            log::info!("sockjs: sessions closed; serving their clients' last polls for {drain:?}");
            actix_web::rt::time::sleep(drain).await;
        }
    }
}

/// Sends [`Shutdown`] to each manager and waits for its answer.
async fn close_sessions(managers: &[Recipient<Shutdown>]) {
    for manager in managers {
        if manager.send(Shutdown).await.is_err() {
            log::warn!("sockjs: a session manager was gone at shutdown");
        }
    }
}

/// How long [`shutdown_signal`] and [`shutdown_on`] keep the server serving
/// after they closed the sessions: enough for a polling client between two
/// polls to come back for its close frame (it polls again within
/// milliseconds of its last answer). Requests that would open a session
/// get 503 meanwhile.
///
/// # Examples
///
/// ```
/// assert_eq!(actix_sockjs::SHUTDOWN_DRAIN, std::time::Duration::from_secs(1));
/// ```
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(1);

/// The stop signals: SIGINT, SIGTERM and SIGQUIT (Ctrl-C elsewhere).
struct Signals {
    #[cfg(unix)]
    streams: Vec<(i32, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let kinds =
                [(2, SignalKind::interrupt()), (15, SignalKind::terminate()), (3, SignalKind::quit())];
            let streams: Vec<_> =
                kinds.into_iter().filter_map(|(number, kind)| Some((number, signal(kind).ok()?))).collect();
            if streams.is_empty() {
                log::warn!("sockjs: cannot listen for stop signals");
            }
            Self { streams }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next signal's number (Ctrl-C's, 2, elsewhere than Unix); never
    /// if none can be heard.
    async fn next(&mut self) -> Option<i32> {
        #[cfg(unix)]
        {
            if self.streams.is_empty() {
                std::future::pending::<()>().await;
            }
            let waits = self.streams.iter_mut().map(|(number, s)| {
                let number = *number;
                Box::pin(async move { s.recv().await.map(|()| number) })
            });
            futures_util::future::select_all(waits).await.0
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.ok().map(|()| 2)
        }
    }
}

/// Logs a panic as one `log::error!` line (thread, place, message) instead
/// of the standard report, which prints a backtrace to stderr whenever
/// `RUST_BACKTRACE` is set. Call it once at start, before the server runs.
///
/// Why a SockJS server wants it: actix-http 3.20 (the latest release as of
/// this writing) panics in its HTTP/1 decoder on a request whose header
/// name is 64 KiB or longer. The panic ends that connection's task only, and
/// the server goes on serving, but every such request would print a
/// backtrace: a cheap way for a client to flood the log. With this hook
/// each one costs a line, and a flood of them from one place in the code
/// ten lines in ten seconds (the next line logged says how many were not);
/// a panic elsewhere is logged all the same.
///
/// It replaces the process's panic hook: skip it if your application
/// installs its own.
///
/// # Examples
///
/// ```no_run
/// env_logger::init();
/// actix_sockjs::log_panics();
/// // ... then build and run the HttpServer.
/// ```
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let place = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        // A panic's message may carry a client's text: escaped, it cannot
        // forge a line of its own.
        let message = crate::util::Escaped(&message);
        // At most ten lines in ten seconds from one place in the code: what
        // a client can cause once a request must not flood the log, nor
        // hide a panic elsewhere.
        let thread = thread.name().unwrap_or("?");
        match panic_admitted(&place) {
            Some(0) => log::error!("panic in thread {thread:?} at {place}: {message}"),
            Some(skipped) => log::error!(
                "panic in thread {thread:?} at {place}: {message} ({skipped} more at this place not logged since the last)"
            ),
            None => {}
        }
    }));
}

/// How many places in the code [`log_panics`] limits each on its own;
/// panics at further places share one limit.
const PANIC_PLACES: usize = 64;

/// Whether a panic at `place` may be logged now ([`crate::util::LogLimit`]
/// of that place).
fn panic_admitted(place: &str) -> Option<u32> {
    use std::{
        collections::HashMap,
        sync::{Mutex, OnceLock, PoisonError},
    };

    use crate::util::LogLimit;

    static PLACES: OnceLock<Mutex<HashMap<String, LogLimit>>> = OnceLock::new();
    static OTHERS: LogLimit = LogLimit::new();
    let mut places = PLACES.get_or_init(Mutex::default).lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(limit) = places.get(place) {
        return limit.admit();
    }
    if places.len() >= PANIC_PLACES {
        return OTHERS.admit();
    }
    places.entry(place.to_owned()).or_insert_with(LogLimit::new).admit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_panics_at_one_place_leaves_others_logged() {
        // A review: with one limit for every panic, ten panics a client
        // causes in ten seconds hid an application's own.
        for _ in 0..crate::util::LOG_BURST {
            assert!(panic_admitted("client.rs:1:1").is_some());
        }
        assert_eq!(panic_admitted("client.rs:1:1"), None);
        assert_eq!(panic_admitted("app.rs:2:2"), Some(0));
    }
}
