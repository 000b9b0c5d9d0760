//! The MCP gateway of ZT-Infra (stdio: [`run_stdio`], Streamable HTTP: [`serve_http`]): it stands between an MCP client and an MCP server, turns every
//! `tools/call` into a decision of the control plane (action `mcp.<server>.<tool>`), answers a
//! denied call itself with an error result, and relays everything else unchanged.
//!
//! It is a JSON-RPC message relay rather than an rmcp server and client pair: a relay passes on
//! methods, capabilities and fields it does not know, so the client and server negotiate
//! exactly as they would without it. The SDK's model types parse the intercepted calls and
//! build the gateway's answers, so those have the protocol's shapes.

mod change_watch;
mod gate;
mod http;
mod intercept;
mod lines;
mod resource;
mod sse;
mod stdio;
mod tools;
mod upstream_tools;

pub use gate::{Gate, Verdict};
pub use http::{
    serve_http, HttpOptions, MAX_POSTS_IN_FLIGHT, RELAY_IDLE_TIMEOUT, UPSTREAM_CONNECT_TIMEOUT,
    UPSTREAM_TIMEOUT,
};
pub use resource::{resource_of, RESOURCE_ARGUMENTS};
pub use stdio::{run_stdio, MAX_MESSAGE_BYTES, SHUTDOWN_GRACE};
pub use tools::{DeclaredArguments, ToolsError};

/// The message sorter, for the fuzz target in `fuzz/` (`cargo fuzz` builds with `--cfg
/// fuzzing`); not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    use crate::intercept::{classify, Inbound};

    /// What the gateway does with one client message.
    #[derive(Debug)]
    pub enum Sorted {
        /// Relayed as it came.
        Relay,
        /// Held for a decision on the tool `name`.
        ToolCall {
            /// The tool.
            name: String,
        },
        /// Never relayed; the client gets `answer`, if any.
        Refuse {
            /// The gateway's own JSON-RPC answer.
            answer: Option<Vec<u8>>,
        },
    }

    /// Sorts one message as the gateway does.
    pub fn sort(message: &[u8]) -> Sorted {
        match classify(message) {
            Inbound::Relay(_) => Sorted::Relay,
            Inbound::ToolCall { call, .. } => Sorted::ToolCall {
                name: call.name.to_string(),
            },
            Inbound::Refuse(answer) => Sorted::Refuse { answer },
            Inbound::Blank => Sorted::Refuse { answer: None },
        }
    }
}

/// Why the gateway stopped.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The MCP server could not be started.
    #[error("cannot start the MCP server `{program}`: {source}")]
    Spawn {
        /// The command.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A pipe to the server was not set up.
    #[error("the MCP server's {0} is not a pipe")]
    Pipe(&'static str),
    /// Waiting for the server failed.
    #[error("cannot wait for the MCP server: {0}")]
    Wait(std::io::Error),
    /// The upstream of the HTTP gateway is not an `http://` URL with a host.
    #[error("invalid upstream MCP endpoint `{0}`: expected http://HOST:PORT/PATH")]
    Upstream(String),
    /// The HTTP gateway's listener cannot say its address.
    #[error("the gateway's listener: {0}")]
    Listener(std::io::Error),
}
