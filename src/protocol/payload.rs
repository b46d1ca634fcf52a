//! Parsing what clients send: a JSON array of strings (docs/protocol.md §5.3).

use std::fmt;

/// Why a client payload was refused. The `Display` text is the body the
/// protocol prescribes for the HTTP send endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PayloadError {
    /// Empty body, a missing `d` field, or valid JSON that is not an array of strings.
    Expected,
    /// The payload is not valid JSON.
    Broken,
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Expected => "Payload expected.",
            Self::Broken => "Broken JSON encoding.",
        })
    }
}

/// Parses a client payload into its messages.
///
/// Accepts a JSON array of strings (`[]` gives no message). When
/// `allow_single` is set (WebSocket frames) a lone JSON string is accepted
/// as one message, as the reference server does.
///
/// Lone UTF-16 surrogates written as `\uXXXX` escapes cannot be part of a
/// Rust `String`; each is replaced by U+FFFD instead of failing the whole
/// payload. A valid surrogate pair becomes its one character.
pub(crate) fn parse_messages(body: &[u8], allow_single: bool) -> Result<Vec<String>, PayloadError> {
    let mut out = Vec::new();
    if plain(body, None, &mut out) {
        return Ok(out);
    }
    parse_slow(body, allow_single)
}

/// [`parse_messages`] for a payload already known to be UTF-8 (a WebSocket
/// text frame), appending its messages to `out` (a session's inbox, whose
/// buffer outlives one message): the common case takes them by slicing,
/// without a second check of the bytes. `out` is as it was on an error.
pub(crate) fn parse_text_into(
    text: &str,
    allow_single: bool,
    out: &mut Vec<String>,
) -> Result<(), PayloadError> {
    if plain(text.as_bytes(), Some(text), out) {
        return Ok(());
    }
    out.extend(parse_slow(text.as_bytes(), allow_single)?);
    Ok(())
}

/// What [`plain`] leaves: serde_json, then the lenient parser.
fn parse_slow(body: &[u8], allow_single: bool) -> Result<Vec<String>, PayloadError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Expected);
    }
    if let Ok(messages) = serde_json::from_slice::<Vec<String>>(body) {
        return Ok(messages);
    }
    if allow_single {
        if let Ok(message) = serde_json::from_slice::<String>(body) {
            return Ok(vec![message]);
        }
    }
    // Slow path: serde_json refuses lone surrogates, so parse leniently.
    if let Some(messages) = Lenient::new(body).messages(allow_single) {
        return Ok(messages);
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(_) => Err(PayloadError::Expected),
        Err(_) => Err(PayloadError::Broken),
    }
}

/// The common payload read by hand: an array of strings none of which has
/// an escape or a control character, which JSON decodes to exactly its
/// bytes. `None` for anything else, which serde_json then reads. serde_json
/// took ~800 instructions of a WebSocket echo's ~9,700 (callgrind,
/// `benches/README.md`).
///
/// `text` is `body` as a `str` when the caller has one. Appends the
/// messages to `out` and answers `true`; leaves `out` as it was and
/// answers `false` for anything else.
fn plain(body: &[u8], text: Option<&str>, out: &mut Vec<String>) -> bool {
    let len = out.len();
    let read = plain_onto(body, text, out).is_some();
    if !read {
        out.truncate(len);
    }
    read
}

/// [`plain`]'s reading, which may leave some messages in `out` when it gives up.
fn plain_onto(body: &[u8], text: Option<&str>, out: &mut Vec<String>) -> Option<()> {
    // Whitespace is rare between a client's tokens: one compare where
    // there is none, the scan out of line (the echo's code is a few cache
    // lines the shorter: benches/README.md, "Instruction cache").
    let skip_ws = |s: &[u8]| -> usize {
        match s.first() {
            Some(b) if json_ws(*b) => skip_ws_from(s),
            _ => 0,
        }
    };
    let mut at = skip_ws(body);
    if body.get(at) != Some(&b'[') {
        return None;
    }
    at += 1;
    at += skip_ws(&body[at..]);
    if body.get(at) == Some(&b']') {
        at += 1;
    } else {
        // Most payloads carry one message: room for exactly one (an inbox
        // that kept its buffer has it already).
        out.reserve_exact(1);
        loop {
            if body.get(at) != Some(&b'"') {
                return None;
            }
            let start = at + 1;
            let len = plain_string_len(&body[start..])?;
            let message = match text {
                // Quotes are ASCII: both ends are on character boundaries.
                Some(text) => text.get(start..start + len)?,
                None => std::str::from_utf8(&body[start..start + len]).ok()?,
            };
            out.push(message.to_owned());
            at = start + len + 1;
            at += skip_ws(&body[at..]);
            match body.get(at)? {
                b',' => {
                    at += 1;
                    at += skip_ws(&body[at..]);
                }
                b']' => {
                    at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (at + skip_ws(&body[at..]) == body.len()).then_some(())
}

/// Whether `b` is whitespace between JSON tokens.
fn json_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// How many whitespace bytes `s` starts with.
#[cold]
#[inline(never)]
fn skip_ws_from(s: &[u8]) -> usize {
    s.iter().position(|&b| !json_ws(b)).unwrap_or(s.len())
}

/// The length of a JSON string's body up to its closing quote, `None` if
/// an escape or a control character comes first (or no quote does). Eight
/// bytes at a time: the two scans it replaced (the quote, then the
/// specials) took ~450 instructions of a WebSocket echo of 32 bytes
/// (callgrind, `benches/README.md`).
fn plain_string_len(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Non-zero exactly when some byte of `w` is below `n` (n <= 0x80).
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS;
    // The specials of `w`: a byte equal to `c` is a zero byte of
    // `w ^ c...c`, below 1. The lowest set bit marks the first special
    // exactly (bits above it may be borrows).
    let specials = |w: u64| {
        below(w ^ (ONES * u64::from(b'"')), 1) | below(w ^ (ONES * u64::from(b'\\')), 1) | below(w, 0x20)
    };
    let first = |w: u64| {
        let flags = specials(w);
        (flags != 0).then(|| (flags.trailing_zeros() / 8) as usize)
    };
    let mut at = 0;
    let end = loop {
        if let Some(chunk) = s.get(at..at + 8) {
            match first(u64::from_le_bytes(chunk.try_into().ok()?)) {
                Some(i) => break at + i,
                None => at += 8,
            }
        } else if let Some(last) = s.len().checked_sub(8).filter(|_| at < s.len()) {
            // Fewer than eight left: the last eight bytes at once. Those
            // before `at` are clean, so the first special is the lowest.
            let word = u64::from_le_bytes(s[last..].try_into().ok()?);
            break last + first(word)?;
        } else {
            break at + s[at..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        }
    };
    (s[end] == b'"').then_some(end)
}

/// A small parser for `[ "..." , ... ]` (or one string) that maps lone
/// surrogate escapes to U+FFFD. Anything else it cannot read makes it give up.
struct Lenient<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Lenient<'a> {
    fn new(b: &'a [u8]) -> Self {
        Self { b, i: 0 }
    }

    fn messages(mut self, allow_single: bool) -> Option<Vec<String>> {
        self.ws();
        let out = match self.peek()? {
            b'[' => {
                self.i += 1;
                let mut out = Vec::new();
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        out.push(self.string()?);
                        self.ws();
                        match self.next()? {
                            b',' => continue,
                            b']' => break,
                            _ => return None,
                        }
                    }
                }
                out
            }
            b'"' if allow_single => vec![self.string()?],
            _ => return None,
        };
        self.ws();
        (self.i == self.b.len()).then_some(out)
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    fn string(&mut self) -> Option<String> {
        if self.next()? != b'"' {
            return None;
        }
        let mut out = Vec::new();
        loop {
            match self.next()? {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let c = match self.next()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => return None,
                c => out.push(c),
            }
        }
    }

    /// Reads the four hex digits after `\u` (and a following low surrogate
    /// escape when this one is a high surrogate).
    fn unicode_escape(&mut self) -> Option<char> {
        let first = self.hex4()?;
        match first {
            0xd800..=0xdbff => {
                let rest = &self.b[self.i..];
                if rest.len() >= 6 && rest[0] == b'\\' && rest[1] == b'u' {
                    let save = self.i;
                    self.i += 2;
                    let second = self.hex4()?;
                    if (0xdc00..=0xdfff).contains(&second) {
                        let cp = 0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00);
                        return char::from_u32(cp);
                    }
                    self.i = save;
                }
                Some(char::REPLACEMENT_CHARACTER)
            }
            0xdc00..=0xdfff => Some(char::REPLACEMENT_CHARACTER),
            cp => char::from_u32(cp),
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.b.get(self.i..self.i + 4)?;
        // Four hex digits and nothing else: `from_str_radix` alone would
        // take a sign (`\u+041`), which JSON does not.
        let v = digits.iter().try_fold(0, |v, &d| Some(v << 4 | char::from(d).to_digit(16)?))?;
        self.i += 4;
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<String>, PayloadError> {
        parse_messages(s.as_bytes(), false)
    }

    /// [`parse_text_into`] onto an inbox that holds a message already,
    /// which it must keep (and keep alone on an error).
    fn parse_text(s: &str, allow_single: bool) -> Result<Vec<String>, PayloadError> {
        let mut inbox = vec!["before".to_owned()];
        let parsed = parse_text_into(s, allow_single, &mut inbox);
        assert_eq!(inbox[0], "before");
        if parsed.is_err() {
            assert_eq!(inbox.len(), 1, "{s:?}: an error leaves the inbox as it was");
        }
        parsed.map(|()| inbox.split_off(1))
    }

    /// [`plain`] onto a vector that holds a message already, the same way.
    fn plain_read(body: &[u8], text: Option<&str>) -> Option<Vec<String>> {
        let mut out = vec!["before".to_owned()];
        let read = plain(body, text, &mut out);
        assert_eq!(out[0], "before");
        if !read {
            assert_eq!(out.len(), 1, "{body:?}: giving up leaves the vector as it was");
        }
        read.then(|| out.split_off(1))
    }

    #[test]
    fn arrays_of_strings() {
        assert_eq!(parse(r#"["a","b"]"#), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(parse("[]"), Ok(vec![]));
        assert_eq!(parse(" [ \"x\" ] "), Ok(vec!["x".into()]));
        assert_eq!(parse(r#"["%61bc"]"#), Ok(vec!["%61bc".into()]));
    }

    #[test]
    fn errors_follow_the_protocol() {
        assert_eq!(parse(""), Err(PayloadError::Expected));
        assert_eq!(parse("  "), Err(PayloadError::Expected));
        assert_eq!(parse(r#"["x"#), Err(PayloadError::Broken));
        assert_eq!(parse("{}"), Err(PayloadError::Expected));
        assert_eq!(parse(r#""x""#), Err(PayloadError::Expected));
        assert_eq!(parse("null"), Err(PayloadError::Expected));
        assert_eq!(parse("[1,null]"), Err(PayloadError::Expected));
        assert_eq!(PayloadError::Broken.to_string(), "Broken JSON encoding.");
    }

    #[test]
    fn a_single_string_is_one_message_on_websockets() {
        assert_eq!(parse_messages(br#""x""#, true), Ok(vec!["x".into()]));
        assert_eq!(parse_messages(br#""\udfff""#, true), Ok(vec!["\u{fffd}".into()]));
    }

    /// The hand-read path gives what serde_json gives, and leaves to it
    /// whatever it cannot read.
    #[test]
    fn plain_payloads_read_as_serde_json_reads_them() {
        for body in [
            r#"["a","b"]"#,
            "[]",
            " [ ] ",
            "\t[\"x\" ,\r\n\"y\"]\n",
            "[\"caf\u{e9} \u{2615}\", \"\", \"%61bc\", \"a/b'c\", \"\u{7f}\"]",
            r#"["esc\"aped"]"#,
            r#"["\n"]"#,
            "[\"tab\there\"]",
            "[\"x\",]",
            "[\"x\"",
            "[\"x\"]x",
            "[\"x\"]\u{c}",
            "\u{c}[\"x\"]",
            "[\"x\" \"y\"]",
            "[,\"x\"]",
            "[1]",
            "\"x\"",
        ] {
            let serde = serde_json::from_slice::<Vec<String>>(body.as_bytes()).ok();
            let read = plain_read(body.as_bytes(), None);
            if let Some(messages) = &read {
                assert_eq!(Some(messages), serde.as_ref(), "{body:?}");
            }
            // A text frame's payload, sliced rather than checked again.
            assert_eq!(plain_read(body.as_bytes(), Some(body)), read, "{body:?}");
            assert_eq!(parse(body).ok(), serde, "{body:?}");
            assert_eq!(parse_text(body, false).ok(), serde, "{body:?}");
        }
        assert_eq!(plain_read(b"[\"a\", \"b\"]", None), Some(vec!["a".into(), "b".into()]));
        assert_eq!(plain_read(br#"["a\"b"]"#, None), None, "an escape is serde_json's");
        assert_eq!(plain_read(b"[\"\xff\"]", None), None, "not UTF-8");
        // Given up after a first message: none of it stays.
        assert_eq!(plain_read(b"[\"a\", 1]", None), None);
    }

    /// The word-at-a-time scan finds what a byte-at-a-time one finds, at
    /// every length and position around its 8-byte steps.
    #[test]
    fn plain_string_len_agrees_with_a_byte_scan() {
        let bytewise = |s: &[u8]| {
            let end = s.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
            (s[end] == b'"').then_some(end)
        };
        for len in 0..20 {
            for at in 0..=len {
                for special in [b'"', b'\\', 0x1f, 0x00, b'\n', 0x20, 0x7f, 0x80, 0xff, b'!', b'#', b'['] {
                    let mut s = vec![b'a'; len];
                    if at < len {
                        s[at] = special;
                    }
                    for tail in [&b""[..], b"\"", b"x\"", b"\\\"", b"\x01\""] {
                        let mut s = s.clone();
                        s.extend_from_slice(tail);
                        assert_eq!(plain_string_len(&s), bytewise(&s), "{s:?}");
                    }
                }
            }
        }
        // UTF-8 bytes (all >= 0x80) are plain.
        let text = "caf\u{e9} \u{2615} and more\"";
        assert_eq!(plain_string_len(text.as_bytes()), Some(text.len() - 1));
    }

    /// `\u` takes four hex digits: no sign, no fewer (a new user's trial
    /// saw `\u+041` read as `A`, where serde_json and sockjs-node's
    /// `JSON.parse` refuse it).
    #[test]
    fn a_unicode_escape_is_four_hex_digits() {
        assert_eq!(parse(r#"["\u0041\u00e9\uFFFD"]"#), Ok(vec!["A\u{e9}\u{fffd}".into()]));
        for broken in [r#"["\u+041"]"#, r#"["\u-041"]"#, r#"["\u 041"]"#, r#"["\u04g1"]"#, r#"["\u041"]"#] {
            assert_eq!(parse(broken), Err(PayloadError::Broken), "{broken}");
            assert!(serde_json::from_str::<Vec<String>>(broken).is_err(), "{broken}");
        }
        // In a low surrogate too.
        assert_eq!(parse(r#"["\ud83d\u+e00"]"#), Err(PayloadError::Broken));
    }

    #[test]
    fn surrogates() {
        assert_eq!(parse(r#"["\ud83d\ude00"]"#), Ok(vec!["😀".into()]));
        assert_eq!(parse(r#"["a\ud800b"]"#), Ok(vec!["a\u{fffd}b".into()]));
        assert_eq!(
            parse(r#"["\udc00","ok","\ud800\u0041"]"#),
            Ok(vec!["\u{fffd}".into(), "ok".into(), "\u{fffd}A".into()])
        );
        assert_eq!(parse(r#"["\ud800\ud800\udc00"]"#), Ok(vec!["\u{fffd}𐀀".into()]));
        // A broken payload stays broken on the lenient path.
        assert_eq!(parse(r#"["\ud800"#), Err(PayloadError::Broken));
        assert_eq!(parse(r#"["\ud800",]"#), Err(PayloadError::Broken));
    }
}
