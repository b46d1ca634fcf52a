//! Small parsing helpers: percent-decoding, query strings, cookies, forms.

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
