//! Server settings, validated before anything starts.

use std::path::PathBuf;
use std::time::Duration;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// How callers are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// No authentication: the body's `actor` is trusted if registered. Every record says the
    /// actor was not authenticated, and `/health` and the start-up log say so loudly.
    DangerousNone,
}

impl AuthMode {
    /// The spelling used on the command line and in `/health`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::DangerousNone => "none",
        }
    }
}

/// Everything `serve` needs besides its listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where all state lives; created on first start.
    pub data_dir: PathBuf,
    /// A policy file to activate at start (reference JSON action-policy format).
    pub policy_file: Option<PathBuf>,
    /// How callers are authenticated.
    pub auth: AuthMode,
    /// Decisions that may wait for an audit commit before new ones get 503.
    pub queue_capacity: usize,
    /// How often counts of rejected requests are written to the log as one summary record.
    pub rejection_summary_interval: Duration,
}

impl ServerConfig {
    /// Defaults for a data directory, with authentication off.
    pub fn dangerous_unauthenticated(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            policy_file: None,
            auth: AuthMode::DangerousNone,
            queue_capacity: 8192,
            rejection_summary_interval: Duration::from_secs(60),
        }
    }
}
