//! The ZT-Infra A2A proxy: a JSON-RPC-aware reverse proxy in front of one A2A agent. Every call
//! is a control-plane decision before anything is forwarded (action
//! `a2a.<agent>.<method_in_snake_case>`, the same name for A2A 1.0 and 0.3 methods); a deny,
//! or no valid decision, is answered in A2A terms and never reaches the agent. The agent's card,
//! and its extended card, are served with every interface URL pointing at the proxy.

mod card;
mod error;
mod extended_card;
mod interfaces;
mod limits;
mod method;
mod proxy;
mod refusal;
mod rpc;
mod upstream;

use axum::http::Uri;
use zt_client::ControlPlane;

pub use interfaces::{CARD_FAILURE_TTL, INTERFACE_PATHS_TTL};
pub use limits::{
    MAX_CALLS_IN_FLIGHT, MAX_CARD_BYTES, MAX_REQUEST_BYTES, RELAY_IDLE_TIMEOUT, UPSTREAM_TIMEOUT,
};
pub use proxy::{router, serve};
pub use refusal::{CONTROL_PLANE_UNAVAILABLE_CODE, DENIED_CODE};

/// The call parser, for the fuzz target in `fuzz/` (`cargo fuzz` builds with `--cfg fuzzing`);
/// not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// A call the proxy would decide on, as (the method as sent, the action's last segment, the
    /// resource); `None` for a body the proxy refuses.
    pub fn parse(body: &[u8]) -> Option<(String, &'static str, String)> {
        let call = crate::rpc::RpcCall::parse(body).ok()?;
        let resource = call.resource().to_string();
        Some((call.method_name, call.method.action, resource))
    }
}

/// A setting the proxy cannot start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The upstream is not an `http://host:port[/path]` URL.
    #[error("invalid upstream URL `{0}` (expected http://host:port)")]
    Upstream(String),
    /// The public URL is not an absolute `http(s)://host[:port]` URL.
    #[error("invalid public URL `{0}` (expected http(s)://host[:port])")]
    PublicUrl(String),
    /// No actor to decide as.
    #[error("the actor is required")]
    ActorRequired,
}

/// Everything the proxy needs, validated once.
pub struct ProxyConfig {
    upstream: upstream::Upstream,
    interface_paths: interfaces::InterfacePaths,
    agent: String,
    public_url: Uri,
    actor: String,
    control_plane: ControlPlane,
}

// Leaves out the control-plane client, which holds the bearer token.
impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("agent", &self.agent)
            .field("public_url", &self.public_url)
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

impl ProxyConfig {
    /// A proxy for the agent at `upstream_url`, named `agent_name` in action names (as a
    /// sanitised segment), reachable by its clients at `public_url`, deciding as `actor`
    /// through `control_plane` (which carries the agent token).
    pub fn new(
        upstream_url: &str,
        agent_name: &str,
        public_url: &str,
        actor: &str,
        control_plane: ControlPlane,
    ) -> Result<Self, ConfigError> {
        let public: Uri = public_url
            .parse()
            .map_err(|_| ConfigError::PublicUrl(public_url.into()))?;
        if !matches!(public.scheme_str(), Some("http" | "https")) || public.authority().is_none() {
            return Err(ConfigError::PublicUrl(public_url.into()));
        }
        if actor.trim().is_empty() {
            return Err(ConfigError::ActorRequired);
        }
        Ok(Self {
            upstream: upstream::Upstream::new(upstream_url)?,
            interface_paths: interfaces::InterfacePaths::default(),
            agent: zt_client::names::segment(agent_name),
            public_url: public,
            actor: actor.to_string(),
            control_plane,
        })
    }

    /// The prefix of every action this proxy asks about: `a2a.<agent>.`.
    pub fn action_prefix(&self) -> String {
        format!("a2a.{}.", self.agent)
    }
}
