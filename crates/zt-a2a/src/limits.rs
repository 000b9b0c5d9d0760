//! The proxy's bounds on what strangers send and on how long it waits.

use std::time::Duration;

/// Largest JSON-RPC request body accepted (413 beyond).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Calls being decided at once, counted once their body is read whole (each holds its parsed
/// tree for the moment it is reduced to what the decision needs, and waits for the control
/// plane); past it 503. A call still being read, or being forwarded, holds at most
/// [`MAX_REQUEST_BYTES`] of body and does not count, so slow clients cannot take every place:
/// the connection cap bounds those.
pub const MAX_CALLS_IN_FLIGHT: usize = 64;

/// Largest agent card accepted from the upstream (502 beyond).
pub const MAX_CARD_BYTES: usize = 1024 * 1024;

/// How long the upstream may take to start answering a forwarded call or the card (504
/// beyond). A stream, once started, is relayed for as long as it lasts, within
/// [`RELAY_IDLE_TIMEOUT`].
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest pause inside an answer being relayed (between two chunks of a body, two events of a
/// stream; the official SDK's server sends a ping every 15 s): past it the relay ends and the
/// connection closes, so an agent that stalls mid-answer cannot hold the client's connection,
/// and its place under the connection cap, for ever.
pub const RELAY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
