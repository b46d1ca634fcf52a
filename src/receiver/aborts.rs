//! Noticing clients that abort an idle long-poll or stream: the optional
//! [`on_connect`] hook and the duplicate socket handle it keeps. The other
//! remedy, `HttpServer::h1_allow_half_closed(false)`, needs no code here.

use std::{
    any::Any,
    io,
    mem::MaybeUninit,
    sync::{Arc, Mutex},
};

use actix_web::{dev::Extensions, rt::net::TcpStream};

/// A duplicate handle of a connection's TCP socket, stored in the
/// connection's extensions by [`on_connect`]. A WebSocket upgrade releases
/// it: WebSockets report their end themselves, and the duplicate costs a
/// descriptor for as long as the connection lives.
#[derive(Debug, Clone)]
pub(crate) struct PeerSocket(Arc<Mutex<Option<socket2::Socket>>>);

impl PeerSocket {
    /// `false` once the peer has closed its end (EOF or reset).
    pub(super) fn alive(&self) -> bool {
        let guard = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(socket) = guard.as_ref() else { return true };
        let mut buf = [MaybeUninit::<u8>::uninit(); 1];
        match socket.peek(&mut buf) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => true,
            Err(_) => false,
        }
    }

    /// Closes the duplicate descriptor.
    pub(crate) fn release(&self) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    }
}

/// Lets the server notice clients that abort an idle long-poll or stream,
/// by checking their sockets.
///
/// By default actix-web does not report that a client closed the socket of
/// a response that has nothing to write: the abort is only noticed at the
/// next write (at the latest the next heartbeat), and the client's next
/// request gets `c[2010,...]` until then. The cheaper remedy is
/// [`HttpServer::h1_allow_half_closed(false)`](actix_web::HttpServer::h1_allow_half_closed),
/// which makes actix-web end the connection, and with it the receiver, as
/// soon as it reads the client's EOF.
///
/// This function is the other remedy. Pass it to
/// [`HttpServer::on_connect`](actix_web::HttpServer::on_connect): it keeps a
/// duplicate handle of each TCP socket so that, when a second receiving
/// request arrives for a session, the server can peek at the first one's
/// socket. That sees an abort even while the worker serving the aborted
/// request is busy, but costs a second descriptor for every HTTP connection
/// (a WebSocket upgrade gives it back) and ~0.2 KB: count two descriptors
/// per HTTP client when you set the descriptor limit. The two can be used
/// together.
///
/// # Examples
///
/// ```no_run
/// use actix_web::{App, HttpServer};
///
/// # async fn run() -> std::io::Result<()> {
/// HttpServer::new(|| App::new())
///     .on_connect(actix_sockjs::on_connect)
///     .bind(("127.0.0.1", 8080))?
///     .run()
///     .await
/// # }
/// ```
pub fn on_connect(connection: &dyn Any, extensions: &mut Extensions) {
    let Some(stream) = connection.downcast_ref::<TcpStream>() else {
        return;
    };
    match socket2::SockRef::from(stream).try_clone() {
        Ok(socket) => {
            extensions.insert(PeerSocket(Arc::new(Mutex::new(Some(socket)))));
        }
        Err(e) => log::debug!("sockjs: cannot watch connection for aborts: {e}"),
    }
}
