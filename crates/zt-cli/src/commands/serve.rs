//! `zt serve`: run the control plane until SIGTERM or SIGINT, then drain and exit 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use zt_server::{AuthMode, ServerConfig};

use crate::exit::Exit;

/// Authentication modes `--auth` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthFlag {
    /// No authentication: the request body's `actor` is trusted if registered. Loudly logged,
    /// reported by /health, and recorded as authenticated=false in every record.
    None,
}

/// `zt serve` arguments.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ZT_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Directory holding all state (audit log, signing key, registry, policy); created on first start.
    #[arg(long, env = "ZT_DATA_DIR", default_value = "./zt-data")]
    pub data_dir: PathBuf,
    /// Policy file (reference JSON action-policy format) to activate at start.
    #[arg(long, env = "ZT_POLICY")]
    pub policy: Option<PathBuf>,
    /// Authentication mode. Required for now: `none` is the only mode until authenticated
    /// actors land, and it must be asked for by name.
    #[arg(long, env = "ZT_AUTH", value_enum)]
    pub auth: Option<AuthFlag>,
    /// Decisions that may wait for an audit commit; past this, new requests get 503 at once.
    #[arg(long, env = "ZT_QUEUE_CAPACITY", default_value_t = 8192)]
    pub queue_capacity: usize,
    /// Seconds between summary records of requests refused before any decision.
    #[arg(long, env = "ZT_REJECTION_SUMMARY_INTERVAL", default_value_t = 60)]
    pub rejection_summary_interval: u64,
    /// Tokio worker threads (default: one per core).
    #[arg(long, env = "ZT_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
}

/// Runs `zt serve`.
pub fn run(args: ServeArgs) -> Exit {
    crate::logging::init("info");
    let Some(AuthFlag::None) = args.auth else {
        eprintln!("error: authenticated mode is not available in this version; start with `--auth none` (ZT_AUTH=none) to run without authentication");
        return Exit::Usage;
    };
    let config = ServerConfig {
        data_dir: args.data_dir,
        policy_file: args.policy,
        auth: AuthMode::DangerousNone,
        queue_capacity: args.queue_capacity,
        rejection_summary_interval: Duration::from_secs(args.rejection_summary_interval.max(1)),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.worker_threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return Exit::Failure;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return Exit::Failure;
            }
        };
        match zt_server::serve(config, listener, shutdown_signal()).await {
            Ok(()) => Exit::Success,
            Err(e) => {
                eprintln!("error: {e}");
                Exit::Failure
            }
        }
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT will stop the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
}
