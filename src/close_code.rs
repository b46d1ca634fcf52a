//! The close codes the server puts in close frames (`c[code,"reason"]`),
//! with their reasons (docs/protocol.md §5.4).
//!
//! Codes 3000–4999 may be given to
//! [`SessionContext::close`](crate::SessionContext::close); the ones below
//! are the server's own. The server also uses 3000 on WebSockets, as
//! sockjs-node does: `c[3000,"No response from heartbeat"]` and a close
//! frame with that code for a socket that did not answer a ping, and a
//! close frame 3000 "Broken framing." for a message that is neither a JSON
//! array of strings nor one JSON string; so give your own codes from 4000
//! to 4999.
//!
//! The session's code travels in its `c[code,"reason"]` frame. A SockJS
//! WebSocket then ends with an RFC 6455 close frame of its own, 1000
//! "Normal closure" (as sockjs-node's does), but for a session dropped
//! before it could close (its handler panicked, or
//! [`terminate`](actix::ActorContext::terminate)), whose close frame
//! repeats the `c[..]` frame's code (1011 "Internal error" after a
//! panic). A raw WebSocket (no SockJS frames) carries the session's code
//! in its close frame. Either sends 1011 in place of a code RFC 6455 does
//! not let a server send, and closes a protocol error with RFC 6455's code
//! for it (1002, 1007, 1009).
//!
//! # Examples
//!
//! ```
//! use actix_sockjs::close_code;
//!
//! assert_eq!(close_code::OVERFLOW, 3008);
//! assert_eq!(close_code::reason(close_code::OVERFLOW), Some("Outgoing queue overflow"));
//! assert_eq!(close_code::reason(4001), None);
//! ```

/// A session ended by its actor without [`close`](crate::SessionContext::close):
/// "Normal closure".
pub const NORMAL: u16 = 1000;
/// The server is shutting down: "Server shutting down".
pub const SHUTDOWN: u16 = 1001;
/// A receiving connection was aborted by its client: "Connection interrupted".
pub const INTERRUPTED: u16 = 1002;
/// The session's handler panicked, and the session was dropped:
/// "Internal error" (RFC 6455's 1011).
pub const INTERNAL_ERROR: u16 = 1011;
/// A second receiver while one is attached: "Another connection still open".
pub const ANOTHER_CONNECTION: u16 = 2010;
/// The outgoing queue overflowed: "Outgoing queue overflow".
pub const OVERFLOW: u16 = 3008;

/// The reason the server sends with one of its own codes; `None` for
/// other codes.
///
/// # Examples
///
/// ```
/// assert_eq!(actix_sockjs::close_code::reason(1001), Some("Server shutting down"));
/// ```
pub fn reason(code: u16) -> Option<&'static str> {
    Some(match code {
        NORMAL => "Normal closure",
        SHUTDOWN => "Server shutting down",
        INTERRUPTED => "Connection interrupted",
        INTERNAL_ERROR => "Internal error",
        ANOTHER_CONNECTION => "Another connection still open",
        OVERFLOW => "Outgoing queue overflow",
        _ => return None,
    })
}

/// A code and its reason, for the server's own codes.
pub(crate) fn with_reason(code: u16) -> (u16, &'static str) {
    (code, reason(code).unwrap_or_default())
}
