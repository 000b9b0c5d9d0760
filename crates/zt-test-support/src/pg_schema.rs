//! A fresh PostgreSQL schema per test, dropped at the end. The server is the one CI starts
//! (`.ci/run`): `postgres://postgres@127.0.0.1:5432/test`, or `ZT_TEST_POSTGRES_URL`. When it
//! is not reachable these tests print `SKIPPED: …` and pass, unless `ZT_REQUIRE_SERVICES=1`
//! (CI), which makes them fail.
#![allow(
    clippy::unwrap_used,
    reason = "test support: a failed database setup fails the test"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The test server when `ZT_TEST_POSTGRES_URL` is not set.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The test server's URL.
pub fn server_url() -> String {
    std::env::var("ZT_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// Runs SQL on its own connection, on its own thread (the synchronous client must not run on
/// an async worker).
fn admin(sql: String) -> Result<(), String> {
    let url = server_url();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).map_err(|e| {
            format!(
                "at `{url}`: {e}: {}; start it (`.ci/run` does) or set ZT_TEST_POSTGRES_URL",
                std::error::Error::source(&e).map_or(String::new(), |c| c.to_string())
            )
        })?;
        client
            .batch_execute(&sql)
            .map_err(|e| format!("`{sql}`: {e:?}"))
    })
    .join()
    .map_err(|_| "admin thread panicked".to_string())?
}

/// A schema name no other test uses; the schema is dropped (with its tables) on drop.
#[derive(Debug)]
pub struct TestSchema {
    /// The schema's name, unique to this test.
    pub name: String,
}

impl TestSchema {
    /// Picks a fresh name and checks the server is reachable: `None` (after printing
    /// `SKIPPED: …`) when it is not, so the test returns; a panic under
    /// `ZT_REQUIRE_SERVICES=1`.
    pub fn new() -> Option<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "zt_test_{}_{}_{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        crate::service_or_skip("PostgreSQL", admin("SELECT 1".into())).then_some(Self { name })
    }

    /// The store URL, `?schema=` included.
    pub fn url(&self) -> String {
        let base = server_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}schema={}", self.name)
    }
}

impl TestSchema {
    /// Runs `sql` in this schema on a connection of its own, e.g. to damage what a store
    /// wrote.
    pub fn execute(&self, sql: &str) {
        admin(format!("SET search_path TO {}; {sql}", self.name)).unwrap();
    }

    /// Ends every database session of the stores on this schema, as a database restart or
    /// a network cut would.
    pub fn terminate_sessions(&self) -> usize {
        let url = server_url();
        let name = format!("zt-infra/{}", self.name);
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            client
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = $1",
                    &[&name],
                )
                .unwrap()
                .len()
        })
        .join()
        .unwrap()
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        if let Err(e) = admin(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name)) {
            eprintln!("cannot drop test schema `{}`: {e}", self.name);
        }
    }
}
