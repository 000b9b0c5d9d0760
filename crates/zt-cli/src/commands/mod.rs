//! One module per `zt` command.

pub mod admin;
pub mod audit;
pub mod bench;
pub mod demo;
pub mod policy;
pub mod serve;
