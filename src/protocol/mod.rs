//! The SockJS wire protocol: frames, escaping, payloads and the fixed pages.
//!
//! Plain functions and types, no actors and no I/O.

mod escape;
mod pages;
mod payload;
mod transport;
pub(crate) mod wsframe;

pub(crate) use escape::{json_string, push_json_string, Escape};
pub(crate) use pages::{
    hixie76_digest, htmlfile_prelude, iframe_page, info_body, validate_callback, GREETING,
};
pub(crate) use payload::{parse_messages, parse_text_into, PayloadError};
pub use transport::Transport;

/// The open frame, sent once at the start of every session.
pub(crate) const OPEN_FRAME: &str = "o";
/// The heartbeat frame.
pub(crate) const HEARTBEAT_FRAME: &str = "h";

/// Builds a close frame: `c[code,"reason"]`.
pub(crate) fn close_frame(code: u16, reason: &str) -> String {
    let mut out = String::with_capacity(reason.len() + 12);
    out.push_str("c[");
    out.push_str(&code.to_string());
    out.push(',');
    push_json_string(&mut out, reason, Escape::SockJs);
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_frames() {
        assert_eq!(close_frame(3000, "Go away!"), r#"c[3000,"Go away!"]"#);
        assert_eq!(
            close_frame(2010, "Another connection still open"),
            r#"c[2010,"Another connection still open"]"#
        );
        assert_eq!(close_frame(1002, "a\"b"), r#"c[1002,"a\"b"]"#);
    }
}
