//! The proxy's bounds on what strangers send and on how long it waits.

use std::time::Duration;

/// Largest JSON-RPC request body accepted (413 beyond).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Largest agent card accepted from the upstream (502 beyond).
pub const MAX_CARD_BYTES: usize = 1024 * 1024;

/// How long the upstream may take to start answering a forwarded call or the card (504
/// beyond). A stream, once started, is relayed for as long as it lasts.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
