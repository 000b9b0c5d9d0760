//! Log set-up: lines on stderr, level from `ZT_LOG` (default as the command says), text or
//! JSON. Text is coloured only on a terminal, and never when `NO_COLOR` is set (no-color.org),
//! so logs written to a file or a pipe carry no escape codes.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// The log line format (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields), for log collectors.
    Json,
}

/// Installs the global subscriber once, as text.
pub(crate) fn init(default_level: &str) {
    init_with(default_level, LogFormat::Text);
}

/// Installs the global subscriber once, in `format`.
pub(crate) fn init_with(default_level: &str, format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("ZT_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour()).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// Colour only on a terminal, and not when `NO_COLOR` is set to anything but the empty string.
fn colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}
