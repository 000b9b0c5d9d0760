//! Log set-up: human-readable lines on stderr, level from `ZT_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once.
pub fn init(default_level: &str) {
    let filter =
        EnvFilter::try_from_env("ZT_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
