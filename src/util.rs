//! Small helpers: percent-decoding, query strings, cookies, forms, the
//! hash of maps keyed by session serial, and log lines that a client
//! cannot flood.

use std::{
    fmt,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Mutex, OnceLock,
    },
    time::Instant,
};

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

/// How many lines one call site of [`log_limited!`] logs per
/// [`LOG_WINDOW_MS`]; the lines past them are counted, not logged.
pub(crate) const LOG_BURST: u32 = 10;

/// The window of [`LOG_BURST`]: ten seconds.
pub(crate) const LOG_WINDOW_MS: u64 = 10_000;

/// The lines one call site of [`log_limited!`] logged and skipped: lines
/// that a client can cause one per request (refusals, bodies too large or
/// too slow, frames refused) must not let it fill a disk or bury other
/// lines. The first line logged after some were skipped says how many.
/// Races between threads can let a line or two more through; the counts
/// are a guard, not a meter (the metrics count every refusal).
pub(crate) struct LogLimit {
    /// The start of the current window, in [`log_clock`] milliseconds.
    window: AtomicU64,
    /// Lines asked for in the current window.
    count: AtomicU32,
    /// Lines skipped since the last one logged.
    skipped: AtomicU32,
}

impl LogLimit {
    pub(crate) const fn new() -> Self {
        Self { window: AtomicU64::new(0), count: AtomicU32::new(0), skipped: AtomicU32::new(0) }
    }

    /// Whether a line may be logged now: with how many were skipped since
    /// the last one, or `None` to skip it.
    pub(crate) fn admit(&self) -> Option<u32> {
        self.admit_at(log_clock())
    }

    fn admit_at(&self, now: u64) -> Option<u32> {
        let start = self.window.load(Ordering::Relaxed);
        if now.saturating_sub(start) >= LOG_WINDOW_MS
            && self.window.compare_exchange(start, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.count.store(0, Ordering::Relaxed);
        }
        if self.count.fetch_add(1, Ordering::Relaxed) < LOG_BURST {
            Some(self.skipped.swap(0, Ordering::Relaxed))
        } else {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Whether `line` is new to this process (for a warning that every
/// worker would repeat as it builds the same endpoint). Remembers every
/// line it is given: only for a few, such as configuration warnings.
pub(crate) fn first_time(line: &str) -> bool {
    static SEEN: OnceLock<Mutex<std::collections::HashSet<String>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Mutex::default);
    seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(line.to_owned())
}

/// Milliseconds since the process's first limited line (one clock for all
/// threads: [`crate::clock`]'s is per thread).
fn log_clock() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// `log::log!` through a [`LogLimit`] of its own call site: at most
/// [`LOG_BURST`] lines per ten seconds, and the next one logged after
/// that says how many it skipped.
macro_rules! log_limited {
    ($level:expr, $($arg:tt)+) => {{
        static LIMIT: $crate::util::LogLimit = $crate::util::LogLimit::new();
        if log::log_enabled!($level) {
            match LIMIT.admit() {
                Some(0) => log::log!($level, $($arg)+),
                Some(skipped) => log::log!(
                    $level,
                    "{} ({skipped} more like it not logged since the last)",
                    format_args!($($arg)+)
                ),
                None => {}
            }
        }
    }};
}
pub(crate) use log_limited;

/// A header value as a log line shows it: quoted and escaped, cut to 100
/// bytes (an `Origin` can be as long as actix-web lets a header be).
pub(crate) struct LogValue<'a>(pub(crate) Option<&'a [u8]>);

impl fmt::Display for LogValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 100;
        let Some(bytes) = self.0 else { return f.write_str("none") };
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
        // A character cut in two shows as U+FFFD.
        write!(f, "{text:?}")?;
        if bytes.len() > MAX {
            write!(f, " (cut from {} bytes)", bytes.len())?;
        }
        Ok(())
    }
}

/// Text for a log line, escaped as Rust's `escape_debug` does: control
/// characters, line and paragraph separators, direction overrides and the
/// backslash itself (`\n`, `\u{2028}`, `\\`). A client's bytes must not
/// start lines of their own, drive a terminal, or pass for an escape.
pub(crate) struct Escaped<'a>(pub(crate) &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.escape_debug())
    }
}

/// `s` cut to `max` bytes at most, at a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    /// A review: two workers with six configuration warnings each came to
    /// more than a call site's ten lines, and some were never logged.
    #[test]
    fn a_line_is_new_once() {
        let lines: Vec<String> = (0..12).map(|i| format!("util test line {i}")).collect();
        assert!(lines.iter().all(|line| first_time(line)), "each new");
        assert!(lines.iter().all(|line| !first_time(line)), "each seen");
    }

    #[test]
    fn a_call_site_logs_ten_lines_in_ten_seconds_then_says_how_many_it_skipped() {
        let limit = LogLimit::new();
        for at in 0..10 {
            assert_eq!(limit.admit_at(at), Some(0), "line {at}");
        }
        for at in 10..15 {
            assert_eq!(limit.admit_at(at * 100), None, "line {at} is skipped");
        }
        assert_eq!(limit.admit_at(9_999), None, "still the first window");
        // The next window: its first line says six were skipped.
        assert_eq!(limit.admit_at(10_000), Some(6));
        assert_eq!(limit.admit_at(10_001), Some(0));
    }

    #[test]
    fn logged_values_are_escaped_and_cut() {
        assert_eq!(LogValue(None).to_string(), "none");
        assert_eq!(LogValue(Some(b"https://a.example")).to_string(), "\"https://a.example\"");
        assert_eq!(LogValue(Some(b"a\nb")).to_string(), "\"a\\nb\"");
        let long = "x".repeat(30_000);
        let shown = LogValue(Some(long.as_bytes())).to_string();
        assert_eq!(shown, format!("{:?} (cut from 30000 bytes)", "x".repeat(100)));
        assert_eq!(Escaped("a\nb\u{1b}[31mc\r").to_string(), "a\\nb\\u{1b}[31mc\\r");
        assert_eq!(Escaped("x\u{2028}y\u{202e}z\\n").to_string(), "x\\u{2028}y\\u{202e}z\\\\n");
        assert_eq!(Escaped("plain é").to_string(), "plain é");
        assert_eq!(cut("aé", 2), "a", "at a character boundary");
        assert_eq!(cut("abc", 10), "abc");
    }

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
