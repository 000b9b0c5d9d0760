//! The ZT-Infra control plane: `POST /actions` decides, durably logs a signed, hash-chained
//! record, and only then answers. Who may call a route is declared by its handler's extractor
//! (`auth::AgentCaller`, `auth::AdminCaller`), so no route depends on a router layer for its
//! authentication; `routes` merges one router per area into the application.

mod auth;
mod checkpoints;
mod config;
mod decision;
mod error;
mod evaluation;
mod extract;
mod housekeeping;
mod key_rotation;
mod limits;
mod lock;
mod metrics;
mod nats;
mod policy_reload;
mod policy_store;
mod proposals;
mod receipts;
mod recent;
mod registry;
mod rejections;
mod reload;
mod reloadable;
mod replay;
mod routes;
mod sandbox_grant;
mod server;
mod state;
mod state_docs;
mod tasks;
mod tls;
mod unauthenticated_state;

// The public surface: what `zt serve` and `zt demo` configure and run, the admin-token file,
// the data directory's lock (`zt keys` takes it), and the parsers the fuzz targets (fuzz/)
// exercise. The crate's own tests are unit tests, so nothing is public for them alone.
pub use auth::admin_token_file;
pub use auth::admin_tokens::{AdminTokenError, ADMIN_TOKEN_FILE_NAME};
pub use auth::spiffe::SpiffeId;
pub use config::{
    default_rate_limit, AuthMode, ClientCerts, JwtSvidConfig, ServerConfig, TlsConfig,
    WorkloadIdentityConfig, MAX_BODY_BYTES, MAX_REPLAY_WINDOW_SECS,
};
pub use error::ApiError;
pub use limits::{RateLimit, RateSetting};
pub use lock::{DataDirLock, LockError};
pub use nats::{
    NatsAuth, NatsConfig, NatsSettingError, NatsUrl, StreamName, Subject,
    DEFAULT_STREAM as DEFAULT_NATS_STREAM, DEFAULT_SUBJECT as DEFAULT_NATS_SUBJECT,
};
pub use server::{serve, ServerError};

pub use auth::jwt_svid::JwtSvidVerifier;
pub use extract::parse_json;
