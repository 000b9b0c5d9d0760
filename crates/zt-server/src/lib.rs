//! The ZT-Infra control plane: `POST /actions` decides, durably logs a signed, hash-chained
//! record, and only then answers. Who may call a route is declared by its handler's extractor
//! (`auth::AgentCaller`, `auth::AdminCaller`), so no route depends on a router layer for its
//! authentication; `routes` merges one router per area into the application.

pub mod auth;
pub mod checkpoints;
pub mod config;
pub mod connections;
pub mod decision;
pub mod error;
pub mod evaluation;
pub mod extract;
pub mod key_rotation;
pub mod limits;
pub mod lock;
pub mod metrics;
pub mod nats;
pub mod policy_reload;
pub mod policy_store;
pub mod proposals;
pub mod receipts;
pub mod recent;
pub mod registry;
pub mod rejections;
pub mod reload;
pub mod replay;
pub mod routes;
pub mod sandbox_grant;
pub mod server;
pub mod state;
pub mod state_docs;
pub mod tls;
pub mod unauthenticated_state;

pub use config::{AuthMode, ServerConfig};
pub use error::ApiError;
pub use server::{serve, ServerError};
