//! Which web pages may send requests to a service. With DNS rebinding, a page of any host can
//! make its own name point at the service's address and so become same-origin with it; a
//! gateway holding an agent's credential would then act for the page (the MCP transport asks
//! servers to check `Origin` for this reason). Browsers send `Origin` on every `POST`; clients
//! other than browsers send none.

use std::net::SocketAddr;

use axum::http::{header, HeaderMap, Uri};

use crate::HeaderOnceError;

/// Host names of this machine's loopback interface, as a `Host` or `Origin` gives them
/// (`Uri::host` keeps an IPv6 address's brackets).
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// The web origins (`scheme://host[:port]`) allowed to call a service besides this machine's
/// own (loopback) pages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<String>);

/// An `--allow-origin` that is not `http(s)://host[:port]`.
#[derive(Debug, thiserror::Error)]
#[error("invalid web origin `{0}`: expected http://HOST[:PORT] or https://HOST[:PORT], no path")]
pub struct InvalidOrigin(pub String);

impl AllowedOrigins {
    /// The origins `texts` name, each `http(s)://host[:port]`.
    pub fn new<S: AsRef<str>>(texts: &[S]) -> Result<Self, InvalidOrigin> {
        let mut origins = Vec::with_capacity(texts.len());
        for text in texts {
            let text = text.as_ref();
            let uri: Uri = text.parse().map_err(|_| InvalidOrigin(text.into()))?;
            let has_path = uri.path_and_query().is_some_and(|p| p.as_str() != "/");
            match canonical(&uri) {
                Some(origin) if !has_path => origins.push(origin),
                _ => return Err(InvalidOrigin(text.into())),
            }
        }
        Ok(Self(origins))
    }

    fn allows(&self, origin: &str) -> bool {
        origin
            .parse::<Uri>()
            .ok()
            .and_then(|uri| canonical(&uri))
            .is_some_and(|origin| self.0.contains(&origin))
    }
}

/// `scheme://host:port`, lower case, with the scheme's default port spelled out, so that two
/// spellings of one origin compare equal.
fn canonical(uri: &Uri) -> Option<String> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(default_port);
    Some(format!("{scheme}://{host}:{port}"))
}

fn host_of(text: &str) -> Option<String> {
    text.parse::<Uri>()
        .ok()
        .and_then(|uri| uri.host().map(str::to_ascii_lowercase))
}

fn is_loopback(host: &str) -> bool {
    LOOPBACK_HOSTS.contains(&host)
}

/// Why a request may come from a web page of another host; displayed as every service's
/// refusal: `refused: <why> (a web page of another host)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForeignPage(&'static str);

impl std::fmt::Display for ForeignPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused: {} (a web page of another host)", self.0)
    }
}

/// The pages a service listening at one address accepts requests from.
#[derive(Debug, Clone, Default)]
pub struct PageGuard {
    /// The service listens on a loopback address, so only loopback `Host` names are its own.
    loopback: bool,
    allowed: AllowedOrigins,
}

impl PageGuard {
    /// For a service listening at `local`, accepting pages of `allowed` besides loopback ones.
    pub fn new(local: SocketAddr, allowed: AllowedOrigins) -> Self {
        Self {
            loopback: local.ip().is_loopback(),
            allowed,
        }
    }

    /// Why a request may come from a web page that DNS rebinding made same-origin with the
    /// service, if it may: on a loopback listener a `Host` that is not a loopback name; an
    /// `Origin` that is neither this machine's (a loopback name) nor an allowed one; two of
    /// either, or one that is not text.
    pub fn refusal(&self, headers: &HeaderMap) -> Option<ForeignPage> {
        foreign_page(headers, self.loopback, &self.allowed).map(ForeignPage)
    }
}

fn foreign_page(
    headers: &HeaderMap,
    loopback: bool,
    allowed: &AllowedOrigins,
) -> Option<&'static str> {
    let one = |name| crate::header_once(headers, name);
    let host = match one(header::HOST) {
        Ok(host) => host,
        Err(HeaderOnceError::Repeated) => return Some("more than one Host"),
        Err(HeaderOnceError::NotText) => return Some("a Host that is not valid text"),
    };
    if loopback {
        let host = host.and_then(|h| host_of(&format!("http://{h}")));
        if !host.as_deref().is_some_and(is_loopback) {
            return Some("a Host that is not this machine's loopback");
        }
    }
    match one(header::ORIGIN) {
        Err(HeaderOnceError::Repeated) => Some("more than one Origin"),
        Err(HeaderOnceError::NotText) => Some("an Origin that is not valid text"),
        Ok(None) => None,
        Ok(Some(origin)) if host_of(origin).is_some_and(|h| is_loopback(&h)) => None,
        Ok(Some(origin)) if allowed.allows(origin) => None,
        Ok(Some(_)) => Some("an Origin that is not allowed (see --allow-origin)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn pages_of_other_hosts_are_told_apart_from_clients() {
        let none = AllowedOrigins::default();
        let on_loopback = |pairs: &[(&str, &str)]| foreign_page(&headers(pairs), true, &none);
        // Clients other than browsers, and a browser page served from this machine.
        assert_eq!(on_loopback(&[("host", "127.0.0.1:8080")]), None);
        assert_eq!(on_loopback(&[("host", "[::1]:8080")]), None);
        assert_eq!(
            on_loopback(&[
                ("host", "localhost:8080"),
                ("origin", "http://localhost:6274")
            ]),
            None
        );
        // DNS rebinding: the page's own host name, in Host or in Origin.
        for refused in [
            &[("host", "evil.example:8080")][..],
            &[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example:8080"),
            ],
            &[("host", "127.0.0.1:8080"), ("origin", "null")],
            &[("host", "127.0.0.1"), ("host", "evil.example")],
            &[
                ("host", "127.0.0.1"),
                ("origin", "http://localhost"),
                ("origin", "http://evil.example"),
            ],
            &[],
        ] {
            assert!(on_loopback(refused).is_some(), "{refused:?}");
        }
    }

    #[test]
    fn listening_elsewhere_only_listed_pages_may_call() {
        let allowed = AllowedOrigins::new(&["https://App.Example.com"]).unwrap();
        let elsewhere = |pairs: &[(&str, &str)]| foreign_page(&headers(pairs), false, &allowed);
        // A client that is not a browser, under any name of the gateway's address.
        assert_eq!(elsewhere(&[("host", "mcp.example.com")]), None);
        assert_eq!(elsewhere(&[("host", "10.0.0.7:8080")]), None);
        // A listed page, spelled with or without its default port.
        for origin in ["https://app.example.com", "https://app.example.com:443"] {
            let pairs = [("host", "mcp.example.com"), ("origin", origin)];
            assert_eq!(elsewhere(&pairs), None, "{origin}");
        }
        // DNS rebinding: the page's host names the gateway's address, so Host and Origin
        // agree; it was let through when the gateway trusted an Origin equal to its Host.
        for (host, origin) in [
            ("evil.example:8080", "http://evil.example:8080"),
            ("mcp.example.com", "https://mcp.example.com"),
            ("mcp.example.com", "http://app.example.com"),
            ("mcp.example.com", "https://app.example.com:8443"),
            ("mcp.example.com", "null"),
        ] {
            let pairs = [("host", host), ("origin", origin)];
            assert!(elsewhere(&pairs).is_some(), "{origin} at {host}");
        }
    }

    #[test]
    fn a_header_that_is_not_text_is_refused_as_such_not_as_repeated() {
        let none = AllowedOrigins::default();
        let with = |name, value: &[u8]| {
            let mut map = headers(&[("host", "127.0.0.1")]);
            map.insert(name, HeaderValue::from_bytes(value).unwrap());
            map
        };
        for loopback in [true, false] {
            let refused = |map: &HeaderMap| foreign_page(map, loopback, &none);
            assert_eq!(
                refused(&with(header::HOST, b"caf\xe9.example")),
                Some("a Host that is not valid text")
            );
            assert_eq!(
                refused(&with(header::ORIGIN, b"http://caf\xe9.example")),
                Some("an Origin that is not valid text")
            );
            assert_eq!(
                refused(&headers(&[("host", "127.0.0.1"), ("host", "localhost")])),
                Some("more than one Host")
            );
        }
    }

    #[test]
    fn a_refusal_reads_the_same_in_every_service() {
        let page = PageGuard::new("127.0.0.1:80".parse().unwrap(), AllowedOrigins::default())
            .refusal(&headers(&[("host", "evil.example")]))
            .unwrap();
        assert_eq!(
            page.to_string(),
            "refused: a Host that is not this machine's loopback (a web page of another host)"
        );
    }

    #[test]
    fn the_listener_address_says_which_hosts_are_its_own() {
        let evil = headers(&[("host", "evil.example")]);
        let guard = |addr: &str| PageGuard::new(addr.parse().unwrap(), AllowedOrigins::default());
        assert!(guard("127.0.0.1:80").refusal(&evil).is_some());
        assert!(guard("[::1]:80").refusal(&evil).is_some());
        assert_eq!(guard("0.0.0.0:80").refusal(&evil), None);
    }

    #[test]
    fn an_allowed_origin_is_a_scheme_and_a_host() {
        assert!(AllowedOrigins::new(&["http://localhost:6274", "https://a.example"]).is_ok());
        for bad in [
            "app.example.com",
            "ftp://app.example.com",
            "https://app.example.com/mcp",
            "https://",
            "null",
        ] {
            assert!(AllowedOrigins::new(&[bad]).is_err(), "{bad}");
        }
    }
}
