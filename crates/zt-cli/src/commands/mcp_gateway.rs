//! `zt mcp-gateway`: puts the MCP gateway (crate `zt-mcp`) in front of one MCP server. Stdio
//! mode launches the server (`-- COMMAND ARGS...`) and speaks MCP on the gateway's own stdin and
//! stdout, so an MCP client's server entry launches the gateway instead of the server.
//! Everything the gateway says about itself goes to stderr: stdout carries only MCP.
//! Streamable HTTP mode (`--listen ADDR --upstream URL`) serves the upstream's MCP endpoint.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use zt_mcp::Gate;

use crate::exit::Exit;

/// `zt mcp-gateway` arguments.
#[derive(Args, Debug)]
pub(crate) struct McpGatewayArgs {
    /// The server's name in action names: a call of tool `T` is action `mcp.<NAME>.<T>`.
    #[arg(long, env = "ZT_MCP_SERVER_NAME")]
    pub server_name: String,
    /// The control plane, the agent, its token, the decision timeout and TLS.
    #[command(flatten)]
    pub enforcement: crate::connection::EnforcementArgs,
    /// Streamable HTTP mode: the address to serve the MCP endpoint on (same path as
    /// `--upstream`).
    #[arg(
        long,
        env = "ZT_MCP_LISTEN",
        requires = "upstream",
        conflicts_with = "command"
    )]
    pub listen: Option<SocketAddr>,
    /// Streamable HTTP mode: the MCP server's endpoint, `http://HOST:PORT/PATH`.
    #[arg(long, env = "ZT_MCP_UPSTREAM", requires = "listen")]
    pub upstream: Option<String>,
    /// Streamable HTTP mode: connections, how long a client may take, and which web pages
    /// may call.
    #[command(flatten)]
    pub listener: crate::listener_args::ListenerArgs,
    /// Streamable HTTP mode: seconds the upstream may take to start answering a request
    /// (504 beyond); a tool call answered as JSON answers when the tool is done.
    #[arg(long, env = "ZT_MCP_UPSTREAM_TIMEOUT", value_name = "SECONDS", default_value_t = zt_mcp::UPSTREAM_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86_400), requires = "listen")]
    pub upstream_timeout: u64,
    /// Streamable HTTP mode: longest pause, in seconds, inside an answer being relayed (two
    /// events of a stream); past it the connection closes and the client reconnects.
    #[arg(long, env = "ZT_MCP_RELAY_IDLE_TIMEOUT", value_name = "SECONDS", default_value_t = zt_mcp::RELAY_IDLE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86_400), requires = "listen")]
    pub relay_idle_timeout: u64,
    /// Stdio mode: the MCP server to launch and its arguments, after `--`.
    #[arg(
        last = true,
        required_unless_present = "listen",
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}

/// Runs `zt mcp-gateway`.
pub(crate) fn run(args: McpGatewayArgs) -> Exit {
    crate::logging::init("info");
    let gate = match gate(&args) {
        Ok(gate) => gate,
        Err(error) => {
            eprintln!("error: {error}");
            return Exit::Usage;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start runtime: {error}");
            return Exit::Failure;
        }
    };
    if let (Some(listen), Some(upstream)) = (args.listen, &args.upstream) {
        let allowed_origins = match args.listener.allowed_origins() {
            Ok(origins) => origins,
            Err(exit) => return exit,
        };
        let options = zt_mcp::HttpOptions {
            limits: args.listener.limits(),
            allowed_origins,
            upstream_timeout: Duration::from_secs(args.upstream_timeout),
            relay_idle_timeout: Duration::from_secs(args.relay_idle_timeout),
        };
        return match runtime.block_on(serve_http(gate, listen, upstream, options)) {
            Ok(()) => Exit::Success,
            Err(error) => {
                eprintln!("error: {error:#}");
                Exit::Failure
            }
        };
    }
    let Some((program, program_args)) = args.command.split_first() else {
        eprintln!("error: no MCP server command after `--`");
        return Exit::Usage;
    };
    let mut command = tokio::process::Command::new(program);
    // The agent's token is the gateway's credential, not the server's (a server may even hand
    // its environment to the agent).
    command.args(program_args).env_remove("ZT_TOKEN");
    let ended = runtime.block_on(zt_mcp::run_stdio(
        gate,
        command,
        tokio::io::stdin(),
        tokio::io::stdout(),
    ));
    // stdin is read by a blocking thread that cannot be interrupted: do not wait for it.
    runtime.shutdown_background();
    match ended {
        Ok(status) if status.success() => Exit::Success,
        Ok(status) => {
            tracing::warn!(%status, "the MCP server exited with a failure");
            Exit::Failure
        }
        Err(error) => {
            eprintln!("error: {error}");
            Exit::Failure
        }
    }
}

fn gate(args: &McpGatewayArgs) -> anyhow::Result<Gate> {
    let control_plane = args.enforcement.client()?;
    Ok(Gate::new(
        control_plane,
        &args.enforcement.actor,
        &args.server_name,
    ))
}

async fn serve_http(
    gate: Gate,
    listen: SocketAddr,
    upstream: &str,
    options: zt_mcp::HttpOptions,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, %upstream, "MCP gateway listening");
    let serving = zt_mcp::serve_http(gate, listener, upstream, options);
    tokio::select! {
        served = serving => Ok(served?),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
