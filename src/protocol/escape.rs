//! JSON string encoding with the SockJS escape pass (docs/protocol.md §5.2).
//!
//! One pass over the bytes: the standard JSON escapes (`\"`, `\\`, short
//! escapes for control characters where JSON has one, `\u00xx` otherwise)
//! plus the code points SockJS clients need escaped, written as lower-case
//! `\uXXXX`. Runs of bytes that need nothing are found eight bytes at a
//! time and copied as slices.

/// Which extra characters an encoding must escape besides standard JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Escape {
    /// Standard JSON plus the SockJS ranges: messages inside `a[...]` frames.
    SockJs,
    /// Standard JSON plus `<` as `\u003c`: a frame embedded in a `<script>`
    /// block (htmlfile) or a JSONP body, so that `</script>` and `<!--`
    /// cannot end or comment out the script.
    Script,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The bytes that may need an escape in each mode: control characters,
/// `"`, `\`, and `<` (script) or the lead bytes of the SockJS ranges.
const fn flagged(script: bool) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    if script {
        table[b'<' as usize] = true;
    } else {
        table[0xe2] = true;
        table[0xef] = true;
    }
    table
}

static FLAGGED_SOCKJS: [bool; 256] = flagged(false);
static FLAGGED_SCRIPT: [bool; 256] = flagged(true);

/// The flagged bytes among the eight of `word` (little-endian: byte 0 is
/// the first), tested all at once: `v - 0x0101..` borrows into a byte's top
/// bit where that byte was zero (or below `n` when `n` is subtracted). The
/// lowest set bit marks the first flagged byte exactly; bits above it may
/// be borrows, which is why only the lowest is used.
fn flag_mask(word: u64, escape: Escape) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const TOPS: u64 = u64::from_ne_bytes([0x80; 8]);
    let zeros = |v: u64| v.wrapping_sub(ONES) & !v & TOPS;
    let equal = |b: u8| zeros(word ^ (ONES * u64::from(b)));
    let control = word.wrapping_sub(ONES * 0x20) & !word & TOPS;
    let extra = match escape {
        Escape::SockJs => equal(0xe2) | equal(0xef),
        Escape::Script => equal(b'<'),
    };
    control | equal(b'"') | equal(b'\\') | extra
}

/// Where a skip over clean bytes, eight at a time, stopped.
enum Skip {
    /// At this flagged byte.
    Flagged(usize),
    /// Here, with fewer than eight bytes left.
    Tail(usize),
}

/// Skips clean bytes from `i` on, eight at a time while eight remain.
fn skip_clean_words(bytes: &[u8], mut i: usize, escape: Escape) -> Skip {
    while let Some(word) = bytes.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
        match flag_mask(u64::from_le_bytes(word), escape) {
            0 => i += 8,
            mask => return Skip::Flagged(i + (mask.trailing_zeros() / 8) as usize),
        }
    }
    // Fewer than eight left: the string's last eight bytes at once (some
    // of them seen already), most often all clean, rather than one by one.
    // Any flag among them, even on a byte seen already, leaves the tail to
    // the byte loop: only the lowest flag is exact (see `flag_mask`).
    let last =
        bytes.len().checked_sub(8).and_then(|at| bytes.get(at..)).and_then(|w| <[u8; 8]>::try_from(w).ok());
    if i < bytes.len() && last.is_some_and(|word| flag_mask(u64::from_le_bytes(word), escape) == 0) {
        return Skip::Tail(bytes.len());
    }
    Skip::Tail(i)
}

/// Appends `s` as a quoted JSON string literal to `out`.
pub(crate) fn push_json_string(out: &mut String, s: &str, escape: Escape) {
    let flagged = match escape {
        Escape::SockJs => &FLAGGED_SOCKJS,
        Escape::Script => &FLAGGED_SCRIPT,
    };
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !flagged[usize::from(bytes[i])] {
            // The table comes first because escapes tend to come in runs;
            // past a clean byte, skip eight at a time while eight remain.
            match skip_clean_words(bytes, i, escape) {
                Skip::Flagged(at) => i = at,
                Skip::Tail(at) => {
                    i = at.max(i + 1);
                    continue;
                }
            }
        }
        (i, start) = escape_at(out, s, start, i);
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Writes what [`push_json_string`] has not written of `s` before the
/// flagged byte at `i`, then that byte escaped, if it needs one; answers
/// where to go on and where the bytes not yet written start. Out of line:
/// a clean message's encoding stays a few cache lines of code
/// (benches/README.md, "Instruction cache").
#[inline(never)]
fn escape_at(out: &mut String, s: &str, start: usize, i: usize) -> (usize, usize) {
    let b = s.as_bytes()[i];
    if b < 0x80 {
        out.push_str(&s[start..i]);
        if b == b'"' || b == b'\\' {
            // The common escapes (JSON text in a message) as two pushes
            // of a char, cheaper than copying a two-byte str.
            out.push('\\');
            out.push(char::from(b));
        } else {
            out.push_str(ascii_escape(b));
        }
        return (i + 1, i + 1);
    }
    // 0xe2 or 0xef (SockJS mode only): a three-byte sequence that may be
    // in one of the escaped ranges.
    match sockjs_special(&s.as_bytes()[i..]) {
        Some(cp) => {
            out.push_str(&s[start..i]);
            push_unicode_escape(out, cp);
            (i + 3, i + 3)
        }
        None => (i + 1, start),
    }
}

/// Returns `s` as a quoted JSON string literal.
pub(crate) fn json_string(s: &str, escape: Escape) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_string(&mut out, s, escape);
    out
}

/// The escape of a flagged ASCII byte: a control character, `"`, `\\` or `<`.
fn ascii_escape(b: u8) -> &'static str {
    const CONTROL: [&str; 32] = [
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007", "\\b", "\\t",
        "\\n", "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f", "\\u0010", "\\u0011", "\\u0012", "\\u0013",
        "\\u0014", "\\u0015", "\\u0016", "\\u0017", "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c",
        "\\u001d", "\\u001e", "\\u001f",
    ];
    match b {
        b'"' => "\\\"",
        b'\\' => "\\\\",
        b'<' => "\\u003c",
        _ => CONTROL[usize::from(b & 0x1f)],
    }
}

fn push_unicode_escape(out: &mut String, cp: u32) {
    out.push_str("\\u");
    for shift in [12, 8, 4, 0] {
        out.push(char::from(HEX[((cp >> shift) & 0xf) as usize]));
    }
}

/// The code point of a three-byte UTF-8 sequence at the start of `b` if it is
/// one SockJS escapes: U+200C–U+200F, U+2028–U+202F, U+2060–U+206F,
/// U+FFF0–U+FFFF.
fn sockjs_special(b: &[u8]) -> Option<u32> {
    if b.len() < 3 {
        return None;
    }
    let cp = (u32::from(b[0] & 0x0f) << 12) | (u32::from(b[1] & 0x3f) << 6) | u32::from(b[2] & 0x3f);
    let special = matches!(cp, 0x200c..=0x200f | 0x2028..=0x202f | 0x2060..=0x206f | 0xfff0..=0xffff);
    special.then_some(cp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sockjs(s: &str) -> String {
        json_string(s, Escape::SockJs)
    }

    #[test]
    fn standard_escapes_match_the_suite() {
        assert_eq!(sockjs("  \u{0}\n\r "), r#""  \u0000\n\r ""#);
        assert_eq!(sockjs("a\"b\\c\td\u{8}\u{c}\u{1f}"), r#""a\"b\\c\td\b\f\u001f""#);
        assert_eq!(sockjs("%61bc"), r#""%61bc""#);
        assert_eq!(sockjs(""), r#""""#);
    }

    #[test]
    fn sockjs_ranges_are_lower_case_escapes() {
        assert_eq!(sockjs("\u{200c}\u{2028}\u{ffff}"), r#""\u200c\u2028\uffff""#);
        let mut all = String::new();
        let mut want = String::from("\"");
        for range in [0x200c..=0x200f, 0x2028..=0x202f, 0x2060..=0x206f, 0xfff0..=0xffff] {
            for cp in range {
                all.push(char::from_u32(cp).unwrap());
                want.push_str(&format!("\\u{cp:04x}"));
            }
        }
        want.push('"');
        assert_eq!(sockjs(&all), want);
    }

    #[test]
    fn neighbours_of_the_ranges_stay_raw() {
        for s in [
            "\u{200b}", "\u{2010}", "\u{2027}", "\u{2030}", "\u{205f}", "\u{2070}", "\u{ffef}", "é", "漢字",
            "😀",
        ] {
            assert_eq!(sockjs(s), format!("\"{s}\""));
        }
    }

    #[test]
    fn script_escape_hides_markup() {
        let out = json_string("a[\"</script><!--\"]", Escape::Script);
        assert_eq!(out, r#""a[\"\u003c/script>\u003c!--\"]""#);
        assert!(!out.contains('<'));
        // U+2028 is left to the inner (SockJS) encoding in script frames.
        assert_eq!(json_string("\u{2028}", Escape::Script), "\"\u{2028}\"");
    }

    /// The first flagged byte of `word` by table, if any.
    fn first_flagged(word: [u8; 8], escape: Escape) -> Option<usize> {
        let table = if escape == Escape::SockJs { &FLAGGED_SOCKJS } else { &FLAGGED_SCRIPT };
        word.iter().position(|&b| table[usize::from(b)])
    }

    fn first_by_mask(word: [u8; 8], escape: Escape) -> Option<usize> {
        let mask = flag_mask(u64::from_le_bytes(word), escape);
        (mask != 0).then(|| (mask.trailing_zeros() / 8) as usize)
    }

    #[test]
    fn word_scan_finds_the_first_flagged_byte_as_the_table_does() {
        for escape in [Escape::SockJs, Escape::Script] {
            // Every pair of byte values, the second at every position.
            for fill in 0..=255u8 {
                for b in 0..=255u8 {
                    for at in 0..8 {
                        let mut word = [fill; 8];
                        word[at] = b;
                        assert_eq!(first_by_mask(word, escape), first_flagged(word, escape), "{word:?}");
                    }
                }
            }
            // And pseudo-random words, dense in flagged bytes and borrows.
            let mut x = 0x9e37_79b9_7f4a_7c15_u64;
            for _ in 0..200_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let word = x.to_le_bytes().map(|b| if b & 0x40 == 0 { b & 0x27 } else { b });
                assert_eq!(first_by_mask(word, escape), first_flagged(word, escape), "{word:?}");
            }
        }
    }

    /// The encoding written out character by character, for comparison.
    fn reference(s: &str, escape: Escape) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            let cp = u32::from(c);
            let sockjs = matches!(cp, 0x200c..=0x200f | 0x2028..=0x202f | 0x2060..=0x206f | 0xfff0..=0xffff);
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '<' if escape == Escape::Script => out.push_str("\\u003c"),
                _ if cp < 0x20 || (sockjs && escape == Escape::SockJs) => {
                    out.push_str(&format!("\\u{cp:04x}"));
                }
                _ => out.push(c),
            }
        }
        out.push('"');
        out
    }

    #[test]
    fn escapes_are_found_at_every_offset_of_a_word() {
        let specials = ["\"", "\\", "\u{0}", "\u{1f}", "<", "\u{2028}", "\u{ffff}", "\u{2027}", "é", "😀"];
        for escape in [Escape::SockJs, Escape::Script] {
            for before in 0..20 {
                for after in 0..12 {
                    for special in specials {
                        for second in ["", "\"", "\u{206f}"] {
                            let s = format!("{}{special}{second}{}", "a".repeat(before), "b".repeat(after));
                            assert_eq!(json_string(&s, escape), reference(&s, escape), "{s:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_output_decodes_back() {
        let bmp: String = (0..=0xffff).filter_map(char::from_u32).collect();
        let samples = [
            "plain",
            "\u{0}\u{1}\u{7f}\u{9f}\u{ad}",
            "\u{d7ff}\u{e000}\u{fffe}",
            "</script>",
            "😀\u{2029}x",
            &bmp,
        ];
        for s in samples {
            for esc in [Escape::SockJs, Escape::Script] {
                let back: String = serde_json::from_str(&json_string(s, esc)).unwrap();
                assert_eq!(back, s);
            }
        }
    }
}
