//! What `--nats-url`, `--nats-stream` and `--nats-subject` accept, checked once at start.

use std::fmt;
use std::str::FromStr;

use async_nats::ServerAddr;

/// The stream used when none is named.
pub const DEFAULT_STREAM: &str = "ZT_AUDIT";
/// The subject used when none is named.
pub const DEFAULT_SUBJECT: &str = "zt.audit.records";

/// Publishing the audit log to NATS JetStream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// The NATS server, and the credentials its URL carried.
    pub url: NatsUrl,
    /// The JetStream stream holding the records; created (file storage, capturing `subject`)
    /// if missing.
    pub stream: StreamName,
    /// The subject every record is published to.
    pub subject: Subject,
}

/// Why a NATS setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatsSettingError {
    /// Not a `nats://` or `tls://` URL.
    #[error("not a nats url ({0}); expected nats://[USER:PASSWORD@|TOKEN@]HOST[:PORT] or tls://…")]
    Url(String),
    /// The stream name has a character JetStream does not allow.
    #[error("`{0}` is not a stream name: use letters, digits, `-` and `_`")]
    Stream(String),
    /// The subject has a wildcard, whitespace or an empty token.
    #[error("`{0}` is not a subject: dot-separated non-empty tokens, no wildcards or whitespace")]
    Subject(String),
}

/// Credentials taken out of the URL, so that the address handed to the client, and every
/// log line, carries none. `Debug` shows only the kind.
#[derive(Clone, PartialEq, Eq)]
pub enum NatsAuth {
    /// No credentials.
    None,
    /// `nats://TOKEN@host`.
    Token(String),
    /// `nats://USER:PASSWORD@host`.
    UserPassword(String, String),
}

/// A NATS server address without credentials, and the credentials apart. `Display` and
/// `Debug` never show a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsUrl {
    server: ServerAddr,
    auth: NatsAuth,
}

impl NatsUrl {
    /// The server address, without credentials.
    pub fn server(&self) -> &ServerAddr {
        &self.server
    }

    /// The credentials the URL carried.
    pub fn auth(&self) -> &NatsAuth {
        &self.auth
    }
}

impl FromStr for NatsUrl {
    type Err = NatsSettingError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // Parse errors never echo the text: it may hold a password.
        let invalid = |why: &str| NatsSettingError::Url(why.to_string());
        let server = ServerAddr::from_str(text).map_err(|_| invalid("unparsable"))?;
        let mut url = server.into_inner();
        if url.scheme() != "nats" && url.scheme() != "tls" {
            return Err(invalid("the scheme must be nats or tls"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        let user = percent_decode(url.username()).ok_or_else(|| invalid("bad user"))?;
        let password = url.password().map(percent_decode);
        let auth = match (user.is_empty(), password) {
            (true, None) => NatsAuth::None,
            (false, None) => NatsAuth::Token(user),
            (_, Some(Some(password))) => NatsAuth::UserPassword(user, password),
            (_, Some(None)) => return Err(invalid("bad password")),
        };
        if url.set_username("").is_err() || url.set_password(None).is_err() {
            return Err(invalid("cannot remove the credentials"));
        }
        let server = ServerAddr::from_url(url).map_err(|_| invalid("unparsable"))?;
        Ok(Self { server, auth })
    }
}

impl fmt::Display for NatsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.server.as_url_str())
    }
}

impl fmt::Debug for NatsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsUrl")
            .field("server", &self.server.as_url_str())
            .field("auth", &self.auth)
            .finish()
    }
}

impl fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NatsAuth::None => "None",
            NatsAuth::Token(_) => "Token(…)",
            NatsAuth::UserPassword(..) => "UserPassword(…)",
        })
    }
}

/// Decodes `%XX` escapes (URL user info); `None` if an escape is malformed or the result is
/// not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = char::from(bytes.next()?).to_digit(16)?;
            let lo = char::from(bytes.next()?).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// A JetStream stream name: letters, digits, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamName(String);

impl StreamName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for StreamName {
    type Err = NatsSettingError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let ok = !text.is_empty()
            && text.len() <= 255
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Self(text.to_string()))
        } else {
            Err(NatsSettingError::Stream(text.to_string()))
        }
    }
}

/// A subject to publish to: dot-separated non-empty tokens without wildcards or whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject(String);

impl Subject {
    /// The subject.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Subject {
    type Err = NatsSettingError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let token_ok = |t: &str| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_graphic() && c != '*' && c != '>')
        };
        if text.len() <= 255 && text.split('.').all(token_ok) {
            Ok(Self(text.to_string()))
        } else {
            Err(NatsSettingError::Subject(text.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;

    #[test]
    fn credentials_leave_the_url_and_never_show() {
        let url: NatsUrl = "nats://alice:s%40cret@127.0.0.1:4222".parse().unwrap();
        assert!(url.auth() == &NatsAuth::UserPassword("alice".into(), "s@cret".into()));
        assert_eq!(url.to_string(), "nats://127.0.0.1:4222");
        let debug = format!("{url:?}");
        assert!(
            !debug.contains("s%40cret") && !debug.contains("alice"),
            "{debug}"
        );

        let url: NatsUrl = "nats://tok3n@localhost".parse().unwrap();
        assert!(url.auth() == &NatsAuth::Token("tok3n".into()));
        assert_eq!(url.server().port(), 4222);
        assert!(!url.to_string().contains("tok3n"));

        let url: NatsUrl = "127.0.0.1:4222".parse().unwrap();
        assert!(url.auth() == &NatsAuth::None);
        assert_eq!(url.to_string(), "nats://127.0.0.1:4222");
    }

    #[test]
    fn other_schemes_and_bad_urls_are_refused_without_echoing_them() {
        for bad in [
            "http://u:hunter2@host",
            "ws://host",
            "nats://",
            "nats://u:%zz@h",
        ] {
            let err = bad.parse::<NatsUrl>().unwrap_err().to_string();
            assert!(!err.contains("hunter2") && !err.contains("%zz"), "{err}");
        }
    }

    #[test]
    fn stream_names_and_subjects_are_checked() {
        assert!("ZT_AUDIT".parse::<StreamName>().is_ok());
        assert!("zt-audit-2".parse::<StreamName>().is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", "a/b"] {
            assert!(bad.parse::<StreamName>().is_err(), "{bad}");
        }
        assert!("zt.audit.records".parse::<Subject>().is_ok());
        for bad in ["", "a..b", ".a", "a.", "a.*", "a.>", "a b"] {
            assert!(bad.parse::<Subject>().is_err(), "{bad}");
        }
    }
}
