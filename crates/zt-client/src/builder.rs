//! Building a [`ControlPlane`] from explicit settings or from the environment every
//! enforcement point reads: `ZT_CONTROL_PLANE_URL`, `ZT_ACTOR`, `ZT_TOKEN`.

use std::sync::Arc;

use crate::{ClientError, ClientOptions, ControlPlane, PinnedKeys};

/// The control plane's URL.
pub const ENV_CONTROL_PLANE_URL: &str = "ZT_CONTROL_PLANE_URL";
/// The agent decisions are asked for when a request names none.
pub const ENV_ACTOR: &str = "ZT_ACTOR";
/// The agent's token, sent as `Authorization: Bearer`.
pub const ENV_TOKEN: &str = "ZT_TOKEN";
/// The URL used when none is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:3000";

/// Settings of a [`ControlPlane`]; [`ControlPlaneBuilder::from_env`] fills them from the
/// environment, and each setter overrides one.
#[derive(Default)]
pub struct ControlPlaneBuilder {
    url: Option<String>,
    actor: Option<String>,
    token: Option<String>,
    options: ClientOptions,
    pinned: Option<PinnedKeys>,
    no_request_id: bool,
}

impl std::fmt::Debug for ControlPlaneBuilder {
    // Never the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlaneBuilder")
            .field("url", &self.url)
            .field("actor", &self.actor)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("pinned", &self.pinned)
            .finish()
    }
}

/// An environment variable, unset when empty.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl ControlPlaneBuilder {
    /// Settings from `ZT_CONTROL_PLANE_URL`, `ZT_ACTOR` and `ZT_TOKEN` (empty means unset).
    pub fn from_env() -> Self {
        Self {
            url: env(ENV_CONTROL_PLANE_URL),
            actor: env(ENV_ACTOR),
            token: env(ENV_TOKEN),
            ..Self::default()
        }
    }

    /// The control plane's base URL (default `http://127.0.0.1:3000`).
    pub fn url(mut self, url: &str) -> Self {
        self.url = Some(url.to_string());
        self
    }

    /// The agent a request with an empty `actor` is asked for.
    pub fn actor(mut self, actor: &str) -> Self {
        self.actor = Some(actor.to_string());
        self
    }

    /// The bearer token sent with every request.
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    /// Timeout, answer cap and TLS.
    pub fn options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// Keys every decision's signature must verify with (see [`PinnedKeys`]).
    pub fn pinned_keys(mut self, keys: PinnedKeys) -> Self {
        self.pinned = Some(keys);
        self
    }

    /// Sends no `request_id` when the request has none (by default a random one is sent).
    pub fn without_request_id(mut self) -> Self {
        self.no_request_id = true;
        self
    }

    /// The client.
    pub fn build(self) -> Result<ControlPlane, ClientError> {
        let url = self.url.as_deref().unwrap_or(DEFAULT_URL).parse()?;
        let mut plane = ControlPlane::connect(&url, &self.options)?;
        if let Some(token) = &self.token {
            plane = plane.with_bearer(token)?;
        }
        plane.actor = self.actor;
        plane.pinned = self.pinned.map(Arc::new);
        plane.send_request_id = !self.no_request_id;
        Ok(plane)
    }
}
