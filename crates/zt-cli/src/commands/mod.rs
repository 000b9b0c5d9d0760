//! One module per `zt` command.

pub mod a2a_proxy;
pub mod admin;
pub mod audit;
pub mod bench;
pub mod completions;
pub mod demo;
pub mod dev_certs;
pub mod exec;
pub mod keys;
pub mod man;
pub mod mcp_gateway;
pub mod policy;
pub mod serve;
