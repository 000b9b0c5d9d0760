//! One module per `zt` command.

pub mod audit;
pub mod bench;
pub mod demo;
pub mod mcp_gateway;
pub mod policy;
pub mod serve;
