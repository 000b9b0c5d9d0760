//! The connection limits and allowed web pages of every command that listens (`zt serve`,
//! `zt mcp-gateway --listen`, `zt a2a-proxy`): one set of flags for the one listener (crate
//! `zt-listener`).

use std::time::Duration;

use clap::Args;

/// How many connections a listening command serves at once and how long a client may take.
#[derive(Args, Debug, Clone)]
pub(crate) struct ListenerArgs {
    /// Most client connections served at once (lowered to the open-file limit minus 128); past
    /// it, a few more connections are accepted for one request each (`zt serve` answers
    /// `GET /health` there, anything else gets a 503).
    #[arg(long, env = "ZT_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// Seconds a client may take to send a request's headers, counted from the connection's
    /// start or the previous response (also the keep-alive idle timeout).
    #[arg(long, env = "ZT_HEADER_TIMEOUT", value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,
    /// Seconds a client may take to send a request's body once its headers are in (408).
    #[arg(long, env = "ZT_BODY_TIMEOUT", value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout: u64,
    /// A web origin (`https://HOST[:PORT]`) whose pages may send requests, besides this
    /// machine's own (loopback) pages; repeat, or separate with commas. A browser's request
    /// from any other page (its `Origin`), or to a loopback listener under a `Host` that is not
    /// a loopback name, is refused with 403: DNS rebinding makes any page same-origin.
    #[arg(
        long = "allow-origin",
        env = "ZT_ALLOW_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub allow_origins: Vec<String>,
}

impl ListenerArgs {
    /// The web origins `--allow-origin` names; a usage error (printed) if one is not an
    /// origin.
    pub(crate) fn allowed_origins(&self) -> Result<zt_listener::AllowedOrigins, crate::exit::Exit> {
        zt_listener::AllowedOrigins::new(&self.allow_origins).map_err(|e| {
            eprintln!("error: --allow-origin: {e}");
            crate::exit::Exit::Usage
        })
    }

    /// The limits these flags give.
    pub(crate) fn limits(&self) -> zt_listener::Limits {
        zt_listener::Limits {
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            header_timeout: Duration::from_secs(self.header_timeout),
            body_timeout: Duration::from_secs(self.body_timeout),
        }
    }
}
