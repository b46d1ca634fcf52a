//! Who may open a session: the origin allow-list, the client's address
//! behind trusted proxies, and the session caps.

use std::net::IpAddr;

use actix_web::{http::header, HttpRequest};

/// Whether a request's `Origin` is allowed by `allowed` (empty: any).
///
/// A request without `Origin` (not a browser, or a same-origin GET) is
/// allowed. Entries match the whole origin (`https://app.example.com`,
/// `http://127.0.0.1:8080`, `null`); an entry `https://*.example.com`
/// matches any subdomain of `example.com` over https; `*` matches all.
pub(crate) fn origin_allowed(req: &HttpRequest, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    allowed.iter().any(|entry| origin_matches(entry, origin))
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
/// the last address in `Forwarded` / `X-Forwarded-For` that is not one.
pub(crate) fn client_ip(req: &HttpRequest, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in req.headers().get_all(header::FORWARDED).filter_map(|v| v.to_str().ok()) {
        for element in value.split(',') {
            for pair in element.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=') {
                    if k.trim().eq_ignore_ascii_case("for") {
                        if let Some(ip) = parse_node(v) {
                            hops.push(ip);
                        }
                    }
                }
            }
        }
    }
    if hops.is_empty() {
        for value in req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()) {
            hops.extend(value.split(',').filter_map(parse_node));
        }
    }
    Some(hops.into_iter().rev().find(|ip| !trusted.contains(ip)).unwrap_or(peer))
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
        assert!(
            origin_allowed(&req(&[("Origin", "https://x")], "127.0.0.1:1"), &[]),
            "empty list allows all"
        );
    }

    #[test]
    fn client_addresses() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let trusted = [proxy];
        let xff = [("X-Forwarded-For", "6.6.6.6, 1.2.3.4, 10.0.0.1")];
        assert_eq!(client_ip(&req(&xff, "10.0.0.1:5"), &trusted), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(
            client_ip(&req(&xff, "9.9.9.9:5"), &trusted),
            Some("9.9.9.9".parse().unwrap()),
            "untrusted peer"
        );
        let fwd = [("Forwarded", r#"for=192.0.2.60;proto=http, for="[2001:db8::1]:4711""#)];
        assert_eq!(client_ip(&req(&fwd, "10.0.0.1:5"), &trusted), Some("2001:db8::1".parse().unwrap()));
        let junk = [("X-Forwarded-For", "unknown, nonsense")];
        assert_eq!(client_ip(&req(&junk, "10.0.0.1:5"), &trusted), Some(proxy));
    }
}
