//! JSON string encoding with the SockJS escape pass (PROTOCOL.md §5.2).
//!
//! One pass over the bytes: the standard JSON escapes (`\"`, `\\`, short
//! escapes for control characters where JSON has one, `\u00xx` otherwise)
//! plus the code points SockJS clients need escaped, written as lower-case
//! `\uXXXX`. Runs of bytes that need nothing are copied as slices.

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

/// Appends `s` as a quoted JSON string literal to `out`.
pub(crate) fn push_json_string(out: &mut String, s: &str, escape: Escape) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (skip, esc) = match b {
            b'"' => (1, Some(Esc::Short('"'))),
            b'\\' => (1, Some(Esc::Short('\\'))),
            b'\n' => (1, Some(Esc::Short('n'))),
            b'\r' => (1, Some(Esc::Short('r'))),
            b'\t' => (1, Some(Esc::Short('t'))),
            0x08 => (1, Some(Esc::Short('b'))),
            0x0c => (1, Some(Esc::Short('f'))),
            0x00..=0x1f => (1, Some(Esc::Unicode(u32::from(b)))),
            b'<' if escape == Escape::Script => (1, Some(Esc::Unicode(0x3c))),
            0xe2 | 0xef if escape == Escape::SockJs => match sockjs_special(&bytes[i..]) {
                Some(cp) => (3, Some(Esc::Unicode(cp))),
                None => (1, None),
            },
            _ => (1, None),
        };
        if let Some(esc) = esc {
            out.push_str(&s[start..i]);
            match esc {
                Esc::Short(c) => {
                    out.push('\\');
                    out.push(c);
                }
                Esc::Unicode(cp) => push_unicode_escape(out, cp),
            }
            start = i + skip;
        }
        i += skip;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Returns `s` as a quoted JSON string literal.
pub(crate) fn json_string(s: &str, escape: Escape) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_string(&mut out, s, escape);
    out
}

enum Esc {
    Short(char),
    Unicode(u32),
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

    #[test]
    fn every_output_decodes_back() {
        let samples =
            ["plain", "\u{0}\u{1}\u{7f}\u{9f}\u{ad}", "\u{d7ff}\u{e000}\u{fffe}", "</script>", "😀\u{2029}x"];
        for s in samples {
            for esc in [Escape::SockJs, Escape::Script] {
                let back: String = serde_json::from_str(&json_string(s, esc)).unwrap();
                assert_eq!(back, s);
            }
        }
    }
}
