//! One module per `zt` command.

pub(crate) mod a2a_proxy;
pub(crate) mod admin;
pub(crate) mod audit;
pub(crate) mod bench;
pub(crate) mod completions;
pub(crate) mod demo;
pub(crate) mod dev_certs;
pub(crate) mod exec;
pub(crate) mod keys;
pub(crate) mod man;
pub(crate) mod mcp_gateway;
pub(crate) mod policy;
pub(crate) mod serve;
