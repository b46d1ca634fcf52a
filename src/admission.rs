//! Who may open a session: the origin allow-list, the client's address
//! behind trusted proxies, and the session caps.

use std::net::IpAddr;

use actix_web::{http::header, HttpRequest};

/// The header in which [trusted proxies](crate::Config::trusted_proxies)
/// tell the client's address ([`Config::proxy_header`](crate::Config::proxy_header)).
///
/// # Examples
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr};
/// use actix_sockjs::{Config, ProxyHeader};
///
/// // haproxy with `option forwarded` (RFC 7239) in front.
/// let config = Config::default()
///     .trusted_proxies([IpAddr::V4(Ipv4Addr::LOCALHOST)])
///     .proxy_header(ProxyHeader::Forwarded);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProxyHeader {
    /// `X-Forwarded-For`: haproxy's `option forwardfor`, nginx's
    /// `$proxy_add_x_forwarded_for`, and most cloud load balancers. The
    /// default.
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239, its `for=` parameters): haproxy's `option
    /// forwarded`, or nginx told to write it.
    Forwarded,
}

/// Whether a request's `Origin` is allowed by `allowed` (empty: any).
///
/// Entries match the whole origin (`https://app.example.com`,
/// `http://127.0.0.1:8080`, `null`); an entry `https://*.example.com`
/// matches any subdomain of `example.com` over https; `*` matches all.
///
/// A request without `Origin` is a client that is no browser, a browser's
/// same-origin GET, or a browser loading a script or a frame: a page of
/// any site may include `<script src=".../jsonp?c=f">` and read the
/// session's frames, with the user's cookies. Browsers tell that last case
/// by `Sec-Fetch-Site` (`cross-site`, `same-site`); it is then allowed
/// only when its `Referer` names an allowed origin. Others are allowed.
pub(crate) fn origin_allowed(req: &HttpRequest, allowed: &[String]) -> bool {
    if allowed.is_empty() || allowed.iter().any(|entry| entry == "*") {
        return true;
    }
    let Some(origin) = origin_header(req) else {
        return !from_another_site(req) || referer_origin(req).is_some_and(|o| any_matches(allowed, o));
    };
    origin.to_str().is_ok_and(|origin| any_matches(allowed, origin))
}

/// The page's origin as the browser tells it: `Origin`, or, in a WebSocket
/// handshake of versions 7 and 8 (RFC 6455's drafts, which we accept),
/// `Sec-WebSocket-Origin`.
pub(crate) fn origin_header(req: &HttpRequest) -> Option<&header::HeaderValue> {
    let headers = req.headers();
    headers.get(header::ORIGIN).or_else(|| {
        let draft =
            headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| matches!(v.as_bytes(), b"7" | b"8"));
        headers.get("sec-websocket-origin").filter(|_| draft)
    })
}

fn any_matches(allowed: &[String], origin: &str) -> bool {
    allowed.iter().any(|entry| origin_matches(entry, origin))
}

/// Whether a browser says the request comes from a page of another origin
/// (`Sec-Fetch-Site`; browsers from 2020-2023 on send it).
fn from_another_site(req: &HttpRequest) -> bool {
    req.headers()
        .get("sec-fetch-site")
        .is_some_and(|site| matches!(site.as_bytes(), b"cross-site" | b"same-site"))
}

/// The origin (`scheme://host[:port]`) of the request's `Referer`.
fn referer_origin(req: &HttpRequest) -> Option<&str> {
    let referer = req.headers().get(header::REFERER)?.to_str().ok()?;
    let (_, rest) = referer.split_once("://")?;
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&referer[..referer.len() - rest.len() + host_end])
}

fn origin_matches(entry: &str, origin: &str) -> bool {
    if entry == "*" || entry.eq_ignore_ascii_case(origin) {
        return true;
    }
    let Some((scheme, rest)) = entry.split_once("://*.") else {
        return false;
    };
    let Some((o_scheme, o_host)) = origin.split_once("://") else {
        return false;
    };
    let o_host = o_host.to_ascii_lowercase();
    let suffix = format!(".{}", rest.to_ascii_lowercase());
    scheme.eq_ignore_ascii_case(o_scheme) && o_host.ends_with(&suffix) && o_host.len() > suffix.len()
}

/// The client's address: the peer's, or, when the peer is a trusted proxy,
/// the last address in the header `via` that is not one (a proxy appends
/// the address it saw to what came before it, which the client may have
/// written). The entries are read from the nearest on, so that nothing the
/// client wrote is read before the nearest proxy's entry; one that does
/// not read as an address ends the search with the nearest proxy's address
/// (what lies before it cannot be told from what the client wrote). IPv4
/// addresses mapped into IPv6 (`::ffff:1.2.3.4`, the peers of a dual-stack
/// listener) count as the IPv4 address, in `trusted` as in the answer.
pub(crate) fn client_ip(req: &HttpRequest, trusted: &[IpAddr], via: ProxyHeader) -> Option<IpAddr> {
    let trusts = |ip: IpAddr| trusted.iter().any(|proxy| proxy.to_canonical() == ip);
    let mut nearest = req.peer_addr()?.ip().to_canonical();
    if !trusts(nearest) {
        return Some(nearest);
    }
    let lines: Vec<&[u8]> = req.headers().get_all(via.name()).map(header::HeaderValue::as_bytes).collect();
    for line in lines.into_iter().rev() {
        for entry in via.entries(line).into_iter().rev() {
            let ip = via.address(entry).and_then(|node| std::str::from_utf8(node).ok()).and_then(parse_node);
            let Some(ip) = ip.map(|ip| ip.to_canonical()) else { return Some(nearest) };
            if !trusts(ip) {
                return Some(ip);
            }
            nearest = ip;
        }
    }
    Some(nearest)
}

impl ProxyHeader {
    fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }

    /// The entries of one line of the header, in order. `X-Forwarded-For`
    /// has no quoting: a quote a client wrote must not hide the entries a
    /// proxy appended after it.
    fn entries(self, line: &[u8]) -> Vec<&[u8]> {
        match self {
            Self::XForwardedFor => line.split(|&b| b == b',').collect(),
            Self::Forwarded => split_unquoted(line, b','),
        }
    }

    /// The address part of an entry.
    fn address(self, entry: &[u8]) -> Option<&[u8]> {
        match self {
            Self::XForwardedFor => Some(entry),
            Self::Forwarded => forwarded_for(entry),
        }
    }
}

/// The `for=` value of one element of a `Forwarded` header.
fn forwarded_for(element: &[u8]) -> Option<&[u8]> {
    split_unquoted(element, b';').into_iter().find_map(|pair| {
        let eq = pair.iter().position(|&b| b == b'=')?;
        pair[..eq].trim_ascii().eq_ignore_ascii_case(b"for").then_some(&pair[eq + 1..])
    })
}

/// `bytes` split at each `sep` outside double-quoted strings (RFC 7230's
/// quoted-string, `\` escaping the next byte), as `Forwarded` quotes
/// values that hold `,` or `;`. Read from the end, so that what the
/// nearest proxy appended reads as it wrote it, whatever quote a client
/// left open before it on the same line.
fn split_unquoted(bytes: &[u8], sep: u8) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let (mut end, mut quoted) = (bytes.len(), false);
    for i in (0..bytes.len()).rev() {
        let b = bytes[i];
        if b == b'"' {
            let escapes = bytes[..i].iter().rev().take_while(|&&c| c == b'\\').count();
            if escapes % 2 == 0 {
                quoted = !quoted;
            }
        } else if b == sep && !quoted {
            parts.push(&bytes[i + 1..end]);
            end = i;
        }
    }
    parts.push(&bytes[..end]);
    parts.reverse();
    parts
}

/// Parses one node of a forwarding header: `1.2.3.4`, `1.2.3.4:80`,
/// `"[2001:db8::1]:443"`, `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    node.rsplit_once(':').and_then(|(host, _)| host.parse().ok())
}

/// The session caps, as the manager applies them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Caps {
    pub(crate) max_sessions: Option<usize>,
    pub(crate) max_per_ip: Option<usize>,
}

/// Why the manager refused to open a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The endpoint holds its maximum number of sessions.
    Full,
    /// This client address holds its maximum number of sessions.
    TooManyFromClient,
    /// The endpoint is shutting down.
    ShuttingDown,
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn req(headers: &[(&str, &str)], peer: &str) -> HttpRequest {
        let mut r = TestRequest::default().peer_addr(peer.parse().unwrap());
        for (k, v) in headers {
            r = r.insert_header((*k, *v));
        }
        r.to_http_request()
    }

    #[test]
    fn origins() {
        let list =
            vec!["https://app.example.com".to_owned(), "https://*.example.org".to_owned(), "null".to_owned()];
        let ok = |o: &str| origin_allowed(&req(&[("Origin", o)], "127.0.0.1:1"), &list);
        assert!(ok("https://app.example.com"));
        assert!(ok("https://a.b.example.org"));
        assert!(ok("null"));
        assert!(!ok("https://example.org"));
        assert!(!ok("http://a.example.org"));
        assert!(!ok("https://app.example.com.evil.net"));
        assert!(!ok("https://evilexample.org"));
        assert!(origin_allowed(&req(&[], "127.0.0.1:1"), &list), "no Origin header");
        // A script or frame load (JSONP, htmlfile) carries no Origin: a page
        // of another site is told by Sec-Fetch-Site, and its Referer decides.
        let load = |site: &str, referer: Option<&str>| {
            let mut headers = vec![("Sec-Fetch-Site", site)];
            headers.extend(referer.map(|r| ("Referer", r)));
            origin_allowed(&req(&headers, "127.0.0.1:1"), &list)
        };
        assert!(!load("cross-site", Some("https://evil.example/page")), "a page of another site");
        assert!(!load("same-site", None), "no Referer to tell");
        assert!(load("cross-site", Some("https://app.example.com/chat?room=1")), "an allowed page");
        assert!(load("cross-site", Some("https://a.b.example.org")), "an allowed page, no path");
        assert!(!load("cross-site", Some("https://app.example.com.evil.net/")), "a look-alike");
        assert!(load("same-origin", None) && load("none", None), "the endpoint's own pages, or typed in");
        let any = ["*".to_owned()];
        let load_any = |site: &str| origin_allowed(&req(&[("Sec-Fetch-Site", site)], "127.0.0.1:1"), &any);
        assert!(load_any("cross-site"), "`*` allows every page, one that sends no Referer too");
        assert!(
            origin_allowed(&req(&[("Origin", "https://x")], "127.0.0.1:1"), &[]),
            "empty list allows all"
        );
    }

    #[test]
    fn client_addresses() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let trusted = [proxy, "10.0.0.2".parse().unwrap()];
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let xff = |headers: &[(&str, &str)], peer: &str| {
            client_ip(&req(headers, peer), &trusted, ProxyHeader::XForwardedFor)
        };
        let fwd = |headers: &[(&str, &str)], peer: &str| {
            client_ip(&req(headers, peer), &trusted, ProxyHeader::Forwarded)
        };
        let chain = [("X-Forwarded-For", "6.6.6.6, 1.2.3.4, 10.0.0.2")];
        assert_eq!(xff(&chain, "10.0.0.1:5"), ip("1.2.3.4"), "the last address no trusted proxy has");
        assert_eq!(xff(&chain, "9.9.9.9:5"), ip("9.9.9.9"), "untrusted peer");
        let lines = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "1.2.3.4")];
        assert_eq!(xff(&lines, "10.0.0.1:5"), ip("1.2.3.4"), "the last header line is the nearest");
        // A dual-stack listener's IPv4 peers: mapped into IPv6.
        assert_eq!(xff(&chain, "[::ffff:10.0.0.1]:5"), ip("1.2.3.4"), "a mapped trusted proxy");
        assert_eq!(xff(&chain, "[::ffff:9.9.9.9]:5"), ip("9.9.9.9"), "a mapped client, told as IPv4");
        let mapped = [("X-Forwarded-For", "::ffff:1.2.3.4")];
        assert_eq!(xff(&mapped, "10.0.0.1:5"), ip("1.2.3.4"));
        // What a proxy appended cannot be read: nothing before it is believed.
        assert_eq!(xff(&[("X-Forwarded-For", "unknown, nonsense")], "10.0.0.1:5"), Some(proxy));
        assert_eq!(xff(&[("X-Forwarded-For", "6.6.6.6, unknown")], "10.0.0.1:5"), Some(proxy));
        assert_eq!(xff(&[], "10.0.0.1:5"), Some(proxy), "no header");
        // What the client wrote is not read before the proxy's entry: bytes
        // that are no text, or a stray quote, do not make it the proxy.
        let raw = |value: &[u8]| header::HeaderValue::from_bytes(value).unwrap();
        let mut junk = TestRequest::default().peer_addr("10.0.0.1:5".parse().unwrap());
        junk = junk
            .append_header(("X-Forwarded-For", raw(b"\xff")))
            .append_header(("X-Forwarded-For", "1.2.3.4"));
        assert_eq!(client_ip(&junk.to_http_request(), &trusted, ProxyHeader::XForwardedFor), ip("1.2.3.4"));
        let one_line = TestRequest::default()
            .peer_addr("10.0.0.1:5".parse().unwrap())
            .insert_header(("X-Forwarded-For", raw(b"\xff, \", 1.2.3.4")))
            .to_http_request();
        assert_eq!(client_ip(&one_line, &trusted, ProxyHeader::XForwardedFor), ip("1.2.3.4"), "one line");
        let forwarded = TestRequest::default()
            .peer_addr("10.0.0.1:5".parse().unwrap())
            .append_header(("Forwarded", raw(b"for=\xff")))
            .append_header(("Forwarded", "for=1.2.3.4"))
            .to_http_request();
        assert_eq!(client_ip(&forwarded, &trusted, ProxyHeader::Forwarded), ip("1.2.3.4"), "Forwarded");
        // One header only: a client's own copy of the other is not read.
        let rfc = [("Forwarded", r#"for=192.0.2.60;proto=http, for="[2001:db8::1]:4711""#)];
        assert_eq!(fwd(&rfc, "10.0.0.1:5"), ip("2001:db8::1"));
        let both = [("Forwarded", "for=6.6.6.6"), ("X-Forwarded-For", "1.2.3.4")];
        assert_eq!(xff(&both, "10.0.0.1:5"), ip("1.2.3.4"), "a client's Forwarded through an XFF proxy");
        let both = [("X-Forwarded-For", "6.6.6.6"), ("Forwarded", "for=1.2.3.4")];
        assert_eq!(fwd(&both, "10.0.0.1:5"), ip("1.2.3.4"), "a client's XFF through a Forwarded proxy");
        assert_eq!(fwd(&[("Forwarded", "for=6.6.6.6, by=10.0.0.1")], "10.0.0.1:5"), Some(proxy), "no for=");
        assert_eq!(fwd(&[("Forwarded", "for=_hidden")], "10.0.0.1:5"), Some(proxy), "an obfuscated node");
        // Quoted values may hold `,` and `;`: a client's part of a proxy's
        // element (its `host`, say) names no address.
        let quoted = [("Forwarded", r#"for=1.2.3.4;host="a,for=9.9.9.9""#)];
        assert_eq!(fwd(&quoted, "10.0.0.1:5"), ip("1.2.3.4"));
        let quoted = [("Forwarded", r#"host="a;for=9.9.9.9";for=1.2.3.4"#)];
        assert_eq!(fwd(&quoted, "10.0.0.1:5"), ip("1.2.3.4"));
        let escaped = [("Forwarded", r#"for=1.2.3.4;host="a\",for=9.9.9.9""#)];
        assert_eq!(fwd(&escaped, "10.0.0.1:5"), ip("1.2.3.4"), "an escaped quote");
        // A quote a client left open before a proxy's entry on its line.
        let stray = [("Forwarded", r#"for="6.6.6.6, for=1.2.3.4"#)];
        assert_eq!(fwd(&stray, "10.0.0.1:5"), ip("1.2.3.4"), "a stray quote");
    }
}
