//! `zt a2a-proxy`: put the control plane in front of one A2A agent. Every JSON-RPC call is a
//! decision before it is forwarded (see docs/GATEWAYS.md).

use std::net::SocketAddr;

use clap::Args;

use crate::exit::Exit;

/// `zt a2a-proxy` arguments.
#[derive(Args, Debug)]
pub(crate) struct A2aProxyArgs {
    /// Base URL of the A2A agent (its card is at `<URL>/.well-known/agent-card.json`).
    #[arg(long, env = "ZT_A2A_UPSTREAM", value_name = "URL")]
    pub upstream: String,
    /// The agent's name in action names: `a2a.<NAME>.<method>` (sanitised like every client).
    #[arg(long, env = "ZT_A2A_AGENT_NAME", value_name = "NAME")]
    pub agent_name: String,
    /// Address to listen on.
    #[arg(long, env = "ZT_A2A_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// URL clients reach the proxy at, written into the served agent card (default:
    /// `http://<listen>`).
    #[arg(long, env = "ZT_A2A_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// The control plane, the agent, its token, the decision timeout and TLS.
    #[command(flatten)]
    pub enforcement: crate::connection::EnforcementArgs,
    /// Connections, how long a client may take, and which web pages may call.
    #[command(flatten)]
    pub listener: crate::listener_args::ListenerArgs,
}

/// Runs `zt a2a-proxy` until SIGTERM or SIGINT.
pub(crate) fn run(args: A2aProxyArgs) -> Exit {
    crate::logging::init("info");
    let config = match config(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let allowed_origins = match args.listener.allowed_origins() {
        Ok(origins) => origins,
        Err(exit) => return exit,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return Exit::Failure;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return Exit::Failure;
            }
        };
        tracing::info!(
            listen = %args.listen,
            upstream = %args.upstream,
            actions = %format!("{}*", config.action_prefix()),
            "a2a proxy ready"
        );
        let shutdown = crate::commands::serve::shutdown_signal();
        let limits = args.listener.limits();
        match zt_a2a::serve(listener, config, limits, allowed_origins, shutdown).await {
            Ok(()) => Exit::Success,
            Err(e) => {
                eprintln!("error: {e}");
                Exit::Failure
            }
        }
    })
}

fn config(args: &A2aProxyArgs) -> anyhow::Result<zt_a2a::ProxyConfig> {
    let control_plane = args.enforcement.client()?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", args.listen));
    Ok(zt_a2a::ProxyConfig::new(
        &args.upstream,
        &args.agent_name,
        &public_url,
        &args.enforcement.actor,
        control_plane,
    )?)
}
