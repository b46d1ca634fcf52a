//! Small helpers: percent-decoding, query strings, cookies, forms, and the
//! hash of maps keyed by session serial.

use actix_web::http::header::{HeaderMap, COOKIE};

/// Decodes `%XX` escapes (and `+` as space when `plus` is set). Invalid
/// escapes are kept as they are; invalid UTF-8 becomes U+FFFD.
pub(crate) fn percent_decode(s: &str, plus: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Iterates the decoded `name=value` pairs of a query string or a form body.
pub(crate) fn form_pairs(s: &str) -> impl Iterator<Item = (String, String)> + '_ {
    s.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k, true), percent_decode(v, true))
    })
}

/// The first value of one query parameter, decoded.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    form_pairs(query).find(|(k, _)| k == name).map(|(_, v)| v)
}

/// A fresh unguessable token of 32 hex digits: SipHash with the process's
/// random keys over a counter and the time (no random-number crate needed
/// for it).
pub(crate) fn random_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    static STATE: std::sync::OnceLock<std::collections::hash_map::RandomState> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let state = STATE.get_or_init(std::collections::hash_map::RandomState::new);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let half = |salt: u64| {
        let mut h = state.build_hasher();
        h.write_u64(salt);
        h.write_u64(n);
        h.write_u128(now);
        h.finish()
    };
    format!("{:016x}{:016x}", half(1), half(2))
}

/// The value of one cookie in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    cookie_in(headers.get_all(COOKIE).filter_map(|v| v.to_str().ok()), name)
}

/// The value of one cookie in these `Cookie` header values.
pub(crate) fn cookie_in<'a>(values: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    values
        .into_iter()
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// Sessions by serial. Serials are this process's own, handed out in
/// order, so they need no hash that withstands chosen keys: one multiply
/// spreads them (SipHash was ~a third of entering a session, callgrind).
pub(crate) type SerialMap<V> = std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<SerialHasher>>;
/// A set of serials (a group's members).
pub(crate) type SerialSet = std::collections::HashSet<u64, std::hash::BuildHasherDefault<SerialHasher>>;

/// See [`SerialMap`]: Fibonacci hashing, whose low bits tell consecutive
/// serials apart and whose high bits (hashbrown's tags) are mixed.
#[derive(Default)]
pub(crate) struct SerialHasher(u64);

impl std::hash::Hasher for SerialHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(29) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("%63allback", false), "callback");
        assert_eq!(percent_decode("%5B%22x%22%5D", false), "[\"x\"]");
        assert_eq!(percent_decode("a+b%2", true), "a b%2");
        assert_eq!(percent_decode("%", true), "%");
        assert_eq!(percent_decode("%zz%41", false), "%zzA");
        assert_eq!(percent_decode("%e2%82%ac", false), "€");
    }

    #[test]
    fn queries_and_cookies() {
        assert_eq!(query_param("t=1&c=%63b", "c").as_deref(), Some("cb"));
        assert_eq!(query_param("d=", "d").as_deref(), Some(""));
        assert_eq!(query_param("p=p", "d"), None);
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; JSESSIONID=abcdef"));
        assert_eq!(cookie(&h, "JSESSIONID"), Some("abcdef"));
        assert_eq!(cookie(&h, "b"), None);
    }
}
