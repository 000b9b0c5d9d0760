//! How the client commands (`audit verify|export|checkpoint|verify-* --url`, `bench`) reach a
//! control plane: the one SDK client, TLS options (`--ca`, `--cert`, `--key`), the admin
//! credential (`--admin-token-file`, `--admin-token`), and the hints that turn a refusal into
//! what to do about it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use zt_client::{BaseUrl, ClientError, ClientOptions, ControlPlane, TlsError, TlsOptions};

use crate::exit::Exit;

/// Time allowed for one request of the audit commands (a page of records can be large).
pub(crate) const AUDIT_TIMEOUT: Duration = Duration::from_secs(60);

/// TLS options for an `https://` `--url`.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct TlsArgs {
    /// PEM certificates to trust for an https:// --url: the CA that issued the server's
    /// certificate, or the server's own self-signed certificate (trusted exactly as it is).
    #[arg(long, env = "ZT_CA", value_name = "PEM", help_heading = "Connection")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain to present over https (e.g. an X.509-SVID).
    #[arg(
        long,
        env = "ZT_CLIENT_CERT",
        value_name = "PEM",
        requires = "key",
        help_heading = "Connection"
    )]
    pub cert: Option<PathBuf>,
    /// PEM private key of `--cert`.
    #[arg(
        long,
        env = "ZT_CLIENT_KEY",
        value_name = "PEM",
        requires = "cert",
        help_heading = "Connection"
    )]
    pub key: Option<PathBuf>,
}

impl TlsArgs {
    /// The SDK's TLS options; `with_client_cert` false leaves the client certificate out.
    pub(crate) fn options(&self, with_client_cert: bool) -> TlsOptions {
        TlsOptions {
            ca: self.ca.clone(),
            client_cert: match (&self.cert, &self.key) {
                (Some(cert), Some(key)) if with_client_cert => Some((cert.clone(), key.clone())),
                _ => None,
            },
        }
    }
}

/// The admin credential of a client command.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct AdminArgs {
    /// Read the admin token from this file: the server's admin token file
    /// (DATA_DIR/admin-token, `NAME TOKEN` per line), first entry unless --admin-name.
    #[arg(
        long,
        env = "ZT_ADMIN_TOKEN_FILE",
        value_name = "FILE",
        help_heading = "Connection"
    )]
    pub admin_token_file: Option<PathBuf>,
    /// The entry of --admin-token-file to use.
    #[arg(
        long,
        value_name = "NAME",
        requires = "admin_token_file",
        help_heading = "Connection"
    )]
    pub admin_name: Option<String>,
    /// The admin token itself (prefer --admin-token-file or ZT_ADMIN_TOKEN: a command line
    /// is visible to other users in `ps`).
    #[arg(
        long,
        env = "ZT_ADMIN_TOKEN",
        hide_env_values = true,
        help_heading = "Connection"
    )]
    pub admin_token: Option<String>,
}

impl AdminArgs {
    /// The admin token, if one was given: `--admin-token` first, then the file.
    pub(crate) fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(token) = &self.admin_token {
            return Ok(Some(token.trim().to_string()));
        }
        match &self.admin_token_file {
            None => Ok(None),
            Some(path) => Ok(Some(zt_client::read_admin_token(
                path,
                self.admin_name.as_deref(),
            )?)),
        }
    }
}

/// What every enforcement point (`mcp-gateway`, `a2a-proxy`) takes, as the existing clients
/// do: the control plane, the agent and its token, how long a decision may take, TLS.
#[derive(Args, Debug, Clone)]
pub(crate) struct EnforcementArgs {
    /// The control plane that decides.
    #[arg(
        long,
        env = "ZT_CONTROL_PLANE_URL",
        default_value = "http://127.0.0.1:3000",
        help_heading = "Control plane"
    )]
    pub control_plane_url: String,
    /// The agent every decision is asked for (registered with the control plane).
    #[arg(long, env = "ZT_ACTOR", help_heading = "Control plane")]
    pub actor: String,
    /// The agent's token, sent as `Authorization: Bearer` (prefer the environment variable: a
    /// flag is visible to other users of the machine).
    #[arg(
        long,
        env = "ZT_TOKEN",
        hide_env_values = true,
        help_heading = "Control plane"
    )]
    pub token: Option<String>,
    /// Milliseconds to wait for a decision; past that the action is refused (fail closed).
    #[arg(long, env = "ZT_DECISION_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=60_000),
          help_heading = "Control plane")]
    pub decision_timeout_ms: u64,
    /// TLS to an `https://` control plane (a client certificate authenticates the agent by
    /// its SPIFFE ID).
    #[command(flatten)]
    pub tls: TlsArgs,
}

impl EnforcementArgs {
    /// The client every decision of this enforcement point goes through.
    pub(crate) fn client(&self) -> anyhow::Result<ControlPlane> {
        client(
            &self.control_plane_url.parse()?,
            self.tls.options(true),
            Duration::from_millis(self.decision_timeout_ms),
            self.token.as_deref(),
        )
    }
}

/// A client for `url` with these options, presenting `bearer` if given.
pub(crate) fn client(
    url: &BaseUrl,
    tls: TlsOptions,
    timeout: Duration,
    bearer: Option<&str>,
) -> anyhow::Result<ControlPlane> {
    let options = ClientOptions {
        timeout,
        tls,
        ..ClientOptions::default()
    };
    let client = ControlPlane::connect(url, &options)?;
    match bearer {
        Some(token) => Ok(client.with_bearer(token)?),
        None => Ok(client),
    }
}

/// An admin client: `--admin-token-file`/`--admin-token` as the bearer, TLS from `tls`
/// (with its client certificate).
pub(crate) fn admin_client(
    url: &BaseUrl,
    tls: &TlsArgs,
    admin: &AdminArgs,
    timeout: Duration,
) -> anyhow::Result<ControlPlane> {
    let token = admin.token().context("the admin credential")?;
    client(url, tls.options(true), timeout, token.as_deref())
}

/// What to do about an error, when there is something to say.
pub(crate) fn hint(error: &anyhow::Error) -> Option<&'static str> {
    let client = error
        .chain()
        .find_map(|e| e.downcast_ref::<ClientError>())?;
    match client {
        ClientError::Status { status: 401, .. } => Some(
            "the server requires an admin credential: pass --admin-token-file DATA_DIR/admin-token \
             (the server's admin token file), or set ZT_ADMIN_TOKEN",
        ),
        ClientError::Status { status: 403, body } if body.contains("admin") => Some(
            "this credential is not an admin's: use a token from the server's admin token file \
             (--admin-token-file) or a SPIFFE ID listed with `zt serve --admin-spiffe-id`",
        ),
        ClientError::Tls(_) => Some(
            "check that --ca holds the certificate of the CA that issued the server's \
             certificate (or the server's own self-signed certificate) and that the --url host \
             is one of its names",
        ),
        _ => None,
    }
}

/// The exit code for a failed client command: 2 for options that cannot work together
/// (TLS options on `http://`, `https://` without `--ca`), 1 otherwise.
pub(crate) fn exit_code(error: &anyhow::Error) -> Exit {
    let usage = error.chain().any(|e| {
        matches!(
            e.downcast_ref::<ClientError>(),
            Some(ClientError::TlsConfig(
                TlsError::NoTrust | TlsError::NotHttps
            ))
        ) || matches!(
            e.downcast_ref::<TlsError>(),
            Some(TlsError::NoTrust | TlsError::NotHttps)
        )
    });
    if usage {
        Exit::Usage
    } else {
        Exit::Failure
    }
}

/// Prints `error: …` and the hint, if any, on stderr; returns the exit code.
pub(crate) fn fail(error: &anyhow::Error) -> Exit {
    eprintln!("error: {}", message(error));
    exit_code(error)
}

/// The error with its hint, as one message.
pub(crate) fn message(error: &anyhow::Error) -> String {
    match hint(error) {
        Some(hint) => format!("{error:#}\nhint: {hint}"),
        None => format!("{error:#}"),
    }
}
