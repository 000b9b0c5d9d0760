//! A local AWS KMS for tests: moto's server on loopback, started by `python/moto_kms.py` with
//! ECC_NIST_P256 keys made for the test (patched to honour `MessageType: DIGEST`, or as
//! released). Killed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The launcher beside this crate.
const LAUNCHER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/moto_kms.py");

/// The workspace's Python (`.venv`, made by `.ci/run`) or `ZT_PYTHON`, if it has moto.
pub fn python() -> Result<String, String> {
    let python = std::env::var("ZT_PYTHON").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python").to_string()
    });
    let ok = Command::new(&python)
        .args(["-c", "import moto.server, boto3"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(python)
    } else {
        Err(format!(
            "`{python}` cannot import moto (pip install -r crates/zt-test-support/python/requirements-moto.txt)"
        ))
    }
}

/// A running moto KMS.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The ARNs of its keys.
    pub arns: Vec<String>,
}

impl Moto {
    /// Starts moto with `keys` keys (patched for `DIGEST` unless `unpatched`), or skips the
    /// calling test (see [`crate::service_or_skip`]).
    pub fn start(unpatched: bool, keys: usize) -> Option<Moto> {
        Self::launch(unpatched, keys, 0)
    }

    /// Starts moto with one key whose `Sign` calls past `per_second` a second are answered
    /// `ThrottlingException`, as KMS past an account's request quota answers them.
    pub fn start_throttled(per_second: u32) -> Option<Moto> {
        Self::launch(false, 1, per_second)
    }

    #[expect(
        clippy::expect_used,
        reason = "a launcher that was found but does not start fails the test"
    )]
    fn launch(unpatched: bool, keys: usize, sign_rate: u32) -> Option<Moto> {
        let probe = python();
        if !crate::service_or_skip("moto (local AWS KMS)", probe.clone().map(|_| ())) {
            return None;
        }
        let mut cmd = Command::new(probe.ok()?);
        cmd.arg(LAUNCHER)
            .args(["--keys", &keys.to_string()])
            .args(["--sign-rate", &sign_rate.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if unpatched {
            cmd.arg("--unpatched");
        }
        let mut child = cmd.spawn().expect("start moto");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("moto's stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("moto's first line");
        let mut words = line.split_whitespace();
        let ready = words.next() == Some("READY");
        let port = words.next().and_then(|p| p.parse().ok());
        if !ready || port.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(ready && port.is_some(), "moto did not start: {line}");
        let port = port.unwrap_or_default();
        let arns = words.map(str::to_string).collect();
        Some(Moto { child, port, arns })
    }

    /// The environment that points the AWS SDK at `127.0.0.1:port` with test credentials and
    /// nothing from this machine's AWS configuration.
    pub fn env(port: u16) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/nonexistent".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
