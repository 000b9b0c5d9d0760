//! One module per `zt` command.

pub mod a2a_proxy;
pub mod audit;
pub mod bench;
pub mod demo;
pub mod policy;
pub mod serve;
