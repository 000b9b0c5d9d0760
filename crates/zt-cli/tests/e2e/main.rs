//! The end-to-end suite: one integration binary whose modules start the real `zt` binary over
//! real sockets (and, where a test says so, real PostgreSQL, NATS and protocol peers). One
//! binary links once and shares one set of helpers (`common`, `workload`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap or index is a failed test"
)]

mod a2a;
mod admin;
mod auth;
mod bad_input;
mod bench;
mod broker;
mod clients;
mod common;
mod concurrency;
mod contract;
mod crash;
mod export;
mod gateway_limits;
mod limits;
mod mcp_gateway;
mod names;
mod nats;
mod ops;
mod policy;
mod policy_cli;
mod postgres_store;
mod proofs;
mod replicas;
mod replicas_shared_state;
mod sdk_gateways;
mod tamper;
mod unauthenticated_state;
mod workload;

use zt_test_support::{ocsf_schema, pg_schema};
mod custody;
mod custody_support;
mod policy_groups;
mod verify_jobs;
mod workload_identity;
