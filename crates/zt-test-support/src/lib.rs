//! Helpers shared by the workspace's test suites.
//!
//! Tests that need an outside service (PostgreSQL, NATS) call [`service_or_skip`] first: on a
//! machine without the service they print `SKIPPED: <test>: <why>` and return, so the README's
//! `cargo test --workspace` passes with only the Rust toolchain. CI sets
//! `ZT_REQUIRE_SERVICES=1` (`.ci/run`), which turns every such skip into a failure.

pub mod moto;
pub mod ocsf_schema;
pub mod pg_schema;

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The variable that turns a skip into a failure.
pub const REQUIRE_SERVICES: &str = "ZT_REQUIRE_SERVICES";

/// How long a reachability probe waits for a connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the calling test should go on: true when `probe` succeeded. Otherwise prints
/// `SKIPPED: <test>: <service> not reachable (<reason>)` and returns false, or panics with
/// the same message when `ZT_REQUIRE_SERVICES=1`.
#[expect(
    clippy::panic,
    reason = "a required service that is missing fails the test"
)]
pub fn service_or_skip(service: &str, probe: Result<(), String>) -> bool {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    let required = std::env::var(REQUIRE_SERVICES).is_ok_and(|v| v == "1");
    match decide(&test, service, probe, required) {
        Ok(true) => true,
        Ok(false) => false,
        Err(message) => panic!("{message}"),
    }
}

/// Run (`Ok(true)`), skip after saying why (`Ok(false)`), or fail with a message (`Err`).
fn decide(
    test: &str,
    service: &str,
    probe: Result<(), String>,
    required: bool,
) -> Result<bool, String> {
    let Err(reason) = probe else {
        return Ok(true);
    };
    let message = format!("{test}: {service} not reachable ({reason})");
    if required {
        return Err(format!(
            "{message}; {REQUIRE_SERVICES}=1 requires it (start it, or unset the variable to skip)"
        ));
    }
    // Straight to stderr, not `eprintln!`: the test harness captures the macros' output of a
    // passing test, and a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {message}; set {REQUIRE_SERVICES}=1 to make this a failure"
    );
    Ok(false)
}

/// A TCP connection to `address` (`HOST:PORT`) can be opened within two seconds.
pub fn tcp_reachable(address: &str) -> Result<(), String> {
    let addrs = address
        .to_socket_addrs()
        .map_err(|e| format!("`{address}` does not resolve: {e}"))?;
    let mut last = format!("`{address}` resolves to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("`{address}`: {e}"),
        }
    }
    Err(last)
}

/// The first of `candidates` that is an existing file, for a service binary a test starts
/// itself.
pub fn binary(candidates: &[&str]) -> Result<String, String> {
    candidates
        .iter()
        .find(|path| std::path::Path::new(path).is_file())
        .map(|path| (*path).to_string())
        .ok_or_else(|| format!("none of {} exists", candidates.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reachable_service_runs_the_test() {
        assert_eq!(decide("t", "svc", Ok(()), false), Ok(true));
        assert_eq!(decide("t", "svc", Ok(()), true), Ok(true));
    }

    #[test]
    fn an_unreachable_service_skips_unless_required() {
        assert_eq!(decide("t", "svc", Err("down".into()), false), Ok(false));
        let failure = decide("t", "svc", Err("down".into()), true).unwrap_err();
        assert!(failure.contains("t: svc not reachable (down)"), "{failure}");
        assert!(failure.contains(REQUIRE_SERVICES), "{failure}");
    }

    #[test]
    fn a_closed_port_is_not_reachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        assert!(tcp_reachable(&address).is_ok());
        drop(listener);
        assert!(tcp_reachable(&address).is_err());
    }
}
