//! The control plane's base URL: `http://HOST[:PORT]` or `https://HOST[:PORT]`, nothing else.

use std::fmt;
use std::str::FromStr;

use hyper::Uri;

/// Why a base URL was refused; each message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// No `http://` or `https://` in front.
    #[error("`{0}` has no scheme: write `http://{0}` (or `https://{0}`)")]
    NoScheme(String),
    /// A scheme other than `http` and `https`.
    #[error("`{0}` is not an http:// or https:// url")]
    Scheme(String),
    /// Not a URL at all, or no host.
    #[error("`{0}` is not a url of the form http://HOST:PORT")]
    Malformed(String),
    /// A path, query or credentials after the host: the base URL is the server's root.
    #[error("`{0}` has a path, query or user part: give only http://HOST:PORT")]
    Extra(String),
}

/// A parsed base URL: scheme, host and port of a control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    tls: bool,
    host: String,
    port: u16,
    text: String,
}

impl BaseUrl {
    /// `https://`.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The host as written, without IPv6 brackets (for DNS and the TLS server name).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (80 or 443 when not written).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `HOST:PORT` for the `Host` header.
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for BaseUrl {
    type Err = UrlError;

    fn from_str(text: &str) -> Result<Self, UrlError> {
        let text = text.trim();
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(UrlError::NoScheme(text.trim_end_matches('/').to_string()));
        };
        let rest = rest.trim_end_matches('/');
        let trimmed = &text[..scheme.len() + 3 + rest.len()];
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return Err(UrlError::Scheme(trimmed.to_string())),
        };
        if rest.contains(['/', '?', '#', '@']) {
            return Err(UrlError::Extra(trimmed.to_string()));
        }
        let uri: Uri = trimmed
            .parse()
            .map_err(|_| UrlError::Malformed(trimmed.to_string()))?;
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| UrlError::Malformed(trimmed.to_string()))?
            .trim_matches(['[', ']'])
            .to_string();
        // `Uri::port` hides a port that is no u16 (`:99999`): read it from the authority.
        let authority = uri.authority().map_or("", |a| a.as_str());
        let after_host = authority.rsplit_once(']').map_or(authority, |(_, r)| r);
        let port = match after_host.rsplit_once(':') {
            Some((_, port)) => port
                .parse::<u16>()
                .map_err(|_| UrlError::Malformed(trimmed.to_string()))?,
            None if tls => 443,
            None => 80,
        };
        Ok(Self {
            tls,
            host,
            port,
            text: trimmed.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_https_base_urls() {
        let url: BaseUrl = "http://127.0.0.1:3000/".parse().unwrap();
        assert_eq!(
            (url.is_tls(), url.host(), url.port()),
            (false, "127.0.0.1", 3000)
        );
        assert_eq!(url.to_string(), "http://127.0.0.1:3000");
        let url: BaseUrl = "https://localhost".parse().unwrap();
        assert_eq!(
            (url.is_tls(), url.host(), url.port()),
            (true, "localhost", 443)
        );
        let url: BaseUrl = "http://[::1]:8080".parse().unwrap();
        assert_eq!(
            (url.host(), url.authority()),
            ("::1", "[::1]:8080".to_string())
        );
    }

    #[test]
    fn refusals_say_what_to_write() {
        let e = "127.0.0.1:3401".parse::<BaseUrl>().unwrap_err();
        assert_eq!(e, UrlError::NoScheme("127.0.0.1:3401".into()));
        assert!(e.to_string().contains("http://127.0.0.1:3401"), "{e}");
        for (bad, want) in [
            ("ftp://x", "not an http:// or https://"),
            ("http://", "not a url"),
            ("not a url", "no scheme"),
            ("http://h:3000/api", "path"),
            ("http://user@h:3000", "user"),
            ("http://h:99999", "not a url"),
        ] {
            let e = match bad.parse::<BaseUrl>() {
                Err(e) => e.to_string(),
                Ok(url) => panic!("{bad} parsed as {url:?}"),
            };
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
