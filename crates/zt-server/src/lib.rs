//! The ZT-Infra control plane: `POST /actions` decides, durably logs a signed, hash-chained
//! record, and only then answers. Admin routes (registry, policy) are kept in their own router
//! so authentication can be laid over them alone.

pub mod auth;
pub mod checkpoints;
pub mod config;
pub mod connections;
pub mod decision;
pub mod error;
pub mod evaluation;
pub mod extract;
pub mod limits;
pub mod lock;
pub mod metrics;
pub mod nats;
pub mod persist;
pub mod policy_reload;
pub mod policy_store;
pub mod proposals;
pub mod recent;
pub mod registry;
pub mod rejections;
pub mod reload;
pub mod replay;
pub mod routes;
pub mod server;
pub mod state;
pub mod state_docs;
pub mod tls;
pub mod unauthenticated_state;

pub use config::{AuthMode, ServerConfig};
pub use error::ApiError;
pub use server::{serve, ServerError};
