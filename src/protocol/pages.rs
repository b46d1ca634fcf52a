//! The fixed responses: greeting, `/info`, the iframe page, the htmlfile
//! prelude, callback names and the hixie-76 handshake digest.

use std::{
    collections::hash_map::RandomState,
    fmt,
    hash::{BuildHasher, Hasher},
    sync::atomic::{AtomicU64, Ordering},
};

use md5::{Digest, Md5};

/// The greeting body (docs/protocol.md §6.1).
pub(crate) const GREETING: &str = "Welcome to SockJS!\n";

/// The `/info` body with fresh entropy (docs/protocol.md §6.3).
pub(crate) fn info_body(websocket: bool, cookie_needed: bool) -> String {
    format!(
        r#"{{"websocket":{websocket},"cookie_needed":{cookie_needed},"origins":["*:*"],"entropy":{}}}"#,
        entropy()
    )
}

/// A random number in `0..2^32` that differs from call to call. Not for
/// cryptography: the client only uses it to seed its own ids.
fn entropy() -> u32 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let v = h.finish();
    (v ^ (v >> 32)) as u32
}

/// The iframe page for `client_url` and its ETag (docs/protocol.md §6.2).
pub(crate) fn iframe_page(client_url: &str) -> (String, String) {
    let body = format!(
        r#"<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="{}"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"#,
        html_attribute(client_url)
    );
    let digest = Md5::digest(body.as_bytes());
    let etag = format!("\"{}\"", hex(&digest));
    (body, etag)
}

/// Escapes the characters that could leave a double-quoted attribute.
fn html_attribute(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The htmlfile prelude for a (validated) callback: the page head padded
/// past 1024 bytes so that browsers start rendering (docs/protocol.md §6.8).
pub(crate) fn htmlfile_prelude(callback: &str) -> String {
    const HEAD: &str = r#"<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.{{ callback }};
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>"#;
    const PADDED: usize = 1037;
    let mut page = String::with_capacity(PADDED + callback.len() + 4);
    page.push_str(HEAD);
    while page.len() < PADDED {
        page.push(' ');
    }
    let mut page = page.replacen("{{ callback }}", callback, 1);
    page.push_str("\r\n\r\n");
    page
}

/// Why a JSONP/htmlfile callback name was refused; `Display` is the
/// protocol's error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallbackError {
    /// No `c` (or `callback`) query parameter.
    Missing,
    /// A character outside `A-Z a-z 0-9 - _ .`, or longer than 64 characters.
    Invalid,
}

impl fmt::Display for CallbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "\"callback\" parameter required",
            Self::Invalid => "invalid \"callback\" parameter",
        })
    }
}

/// Longest callback name accepted.
const MAX_CALLBACK: usize = 64;

/// Checks a (percent-decoded) callback name.
pub(crate) fn validate_callback(callback: Option<&str>) -> Result<&str, CallbackError> {
    let cb = callback.filter(|c| !c.is_empty()).ok_or(CallbackError::Missing)?;
    let ok = cb.len() <= MAX_CALLBACK
        && cb.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(cb)
    } else {
        Err(CallbackError::Invalid)
    }
}

/// The 16-byte answer of the hixie-76 handshake (docs/protocol.md §6.11b), or
/// `None` when a key has no spaces or its number overflows.
pub(crate) fn hixie76_digest(key1: &str, key2: &str, key3: &[u8]) -> Option<[u8; 16]> {
    fn part(key: &str) -> Option<u32> {
        let spaces = key.bytes().filter(|&b| b == b' ').count() as u64;
        let digits: String = key.chars().filter(char::is_ascii_digit).collect();
        let number: u64 = digits.parse().ok()?;
        if spaces == 0 {
            return None;
        }
        u32::try_from(number / spaces).ok()
    }
    let mut md5 = Md5::new();
    md5.update(part(key1)?.to_be_bytes());
    md5.update(part(key2)?.to_be_bytes());
    md5.update(key3);
    Some(md5.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_has_fresh_entropy() {
        let a: serde_json::Value = serde_json::from_str(&info_body(true, false)).unwrap();
        let b: serde_json::Value = serde_json::from_str(&info_body(false, true)).unwrap();
        assert_eq!(a["websocket"], true);
        assert_eq!(b["cookie_needed"], true);
        assert_eq!(a["origins"], serde_json::json!(["*:*"]));
        assert!(a["entropy"].is_u64() && b["entropy"].is_u64());
        assert_ne!(a["entropy"], b["entropy"]);
    }

    #[test]
    fn iframe_page_and_etag() {
        let (page, etag) = iframe_page("/sockjs.js");
        assert!(page.contains(r#"<script src="/sockjs.js"></script>"#));
        assert_eq!(page.lines().count(), 16);
        assert_eq!(iframe_page("/sockjs.js").1, etag);
        assert_ne!(iframe_page("/other.js").1, etag);
        assert!(iframe_page("x\"><script>").0.contains("x&quot;>&lt;script>"));
    }

    #[test]
    fn htmlfile_prelude_is_padded() {
        let page = htmlfile_prelude("callback");
        assert_eq!(page.len(), 1035);
        assert!(page.contains("var c = parent.callback;"));
        assert!(page.ends_with("  \r\n\r\n"));
    }

    #[test]
    fn callbacks() {
        assert_eq!(validate_callback(Some("jQuery_1.2-x")), Ok("jQuery_1.2-x"));
        assert_eq!(validate_callback(None), Err(CallbackError::Missing));
        assert_eq!(validate_callback(Some("")), Err(CallbackError::Missing));
        for bad in [" ", "*", "abc(", "a;b", "</script>"] {
            assert_eq!(validate_callback(Some(bad)), Err(CallbackError::Invalid));
        }
        assert_eq!(validate_callback(Some(&"a".repeat(65))), Err(CallbackError::Invalid));
    }

    #[test]
    fn hixie76_example() {
        let d = hixie76_digest("4 @1  46546xW%0l 1 5", "12998 5 Y3 1  .P00", b"aaaaaaaa").unwrap();
        assert_eq!(hex(&d), "ca3400d8a50847972cd5715ababf437b");
        assert_eq!(hixie76_digest("123", "1 2", b"aaaaaaaa"), None);
    }
}
