//! The client commands and the command line as a newcomer meets them, with the real `zt`
//! binary over real sockets: usage errors that name the fix (exit 2), the admin token read from
//! the token file and a 401 that says how to authenticate, `https://` with a self-signed server
//! certificate or `zt dev-certs`, listen addresses, the configuration file, logs without colour
//! codes or as JSON, credential hints on the server, completions and the man page.

use crate::common;
use crate::workload;

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, http, http_raw, zt, zt_bin};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use serde_json::{json, Value};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A `zt serve` started with exactly `args` (plus `--data-dir`), stderr to `log`; waits until
/// its port accepts connections. Killed on drop.
struct Serve {
    child: Child,
}

impl Serve {
    fn start(port: u16, data_dir: &Path, args: &[&str], env: &[(&str, &str)], log: &Path) -> Serve {
        let child = Command::new(zt_bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut serve = Serve { child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = serve.child.try_wait() {
                panic!(
                    "zt serve exited ({status}): {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "zt serve did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        serve
    }

    /// SIGTERM, then the exit code.
    fn terminate(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().ok()?.code()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the server has created its admin token file.
fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "`{}` never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `/health` over plain HTTP answers 200 at `port`.
fn healthy(port: u16) -> bool {
    matches!(http(port, "GET", "/health", None), Ok((200, _)))
}

/// POSTs `body` to `path` with the `authorization` header given; the status and the body.
fn post_authorized(port: u16, path: &str, authorization: &str, body: &Value) -> (u16, Vec<u8>) {
    let (status, _, raw) = http_raw(
        port,
        "POST",
        path,
        &[("authorization", authorization)],
        Some(body.to_string().as_bytes()),
    )
    .unwrap();
    (status, raw)
}

#[test]
fn a_url_without_a_scheme_is_a_usage_error_that_names_the_fix() {
    for args in [
        vec!["audit", "verify", "--url", "127.0.0.1:3401"],
        vec!["audit", "export", "--url", "127.0.0.1:3401"],
        vec![
            "audit",
            "checkpoint",
            "save",
            "--url",
            "127.0.0.1:3401",
            "--out",
            "c",
        ],
        vec!["bench", "--url", "127.0.0.1:3401"],
    ] {
        let out = zt(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("write `http://127.0.0.1:3401`"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // TLS options that cannot apply are usage errors too.
    let out = zt(&[
        "audit",
        "verify",
        "--url",
        "http://127.0.0.1:1",
        "--ca",
        "ca.pem",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("need an https:// url"),
        "{}",
        stderr(&out)
    );
    let out = zt(&["audit", "verify", "--url", "https://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("needs --ca"), "{}", stderr(&out));
}

#[test]
fn listen_takes_a_bare_port_or_a_host_name_and_explains_what_it_refuses() {
    let dir = tempfile::tempdir().unwrap();
    for (i, form) in ["{port}", "localhost:{port}"].iter().enumerate() {
        let port = free_port();
        let listen = form.replace("{port}", &port.to_string());
        let serve = Serve::start(
            port,
            &dir.path().join(format!("data-{i}")),
            &["--auth", "none", "--listen", &listen],
            &[],
            &dir.path().join(format!("serve-{i}.log")),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !healthy(port) {
            assert!(
                Instant::now() < deadline,
                "`--listen {listen}` never served"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(serve.terminate(), Some(0));
    }
    for bad in ["localhost", "http://127.0.0.1:3000", "70000"] {
        let out = zt(&["serve", "--listen", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("bare port"),
            "{bad}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn the_token_file_authenticates_client_commands_and_a_401_says_how() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let log = dir.path().join("serve.log");
    let serve = Serve::start(
        port,
        &data,
        &["--listen", &format!("127.0.0.1:{port}")],
        &[("ZT_LOG", "info")],
        &log,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !healthy(port) {
        assert!(Instant::now() < deadline, "never healthy");
        std::thread::sleep(Duration::from_millis(20));
    }
    let token_file = data.join("admin-token");
    let token_line = std::fs::read_to_string(&token_file).unwrap();
    let token = token_line.split_whitespace().nth(1).unwrap().to_string();
    let url = format!("http://127.0.0.1:{port}");

    // The first start says where the token file is and how to use it, never the token; and a
    // log written to a file carries no colour codes.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("created the admin token file"), "{text}");
    // One record to read (a fresh log verifies without reading any).
    let (status, _) = post_authorized(
        port,
        "/agents",
        &format!("Bearer {token}"),
        &json!({"actor": "reader"}),
    );
    assert_eq!(status, 201);
    assert!(text.contains("--admin-token-file"), "{text}");
    assert!(!text.contains(&token), "the token must never be logged");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file: {text:?}"
    );

    // Without a credential: 401, and the error says how to authenticate.
    for args in [
        vec!["audit", "verify", "--url", &url],
        vec!["audit", "export", "--url", &url],
    ] {
        let out = Command::new(zt_bin())
            .args(&args)
            .env_remove("ZT_ADMIN_TOKEN")
            .env_remove("ZT_ADMIN_TOKEN_FILE")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("401"), "{args:?}: {err}");
        assert!(
            err.contains("--admin-token-file") && err.contains("ZT_ADMIN_TOKEN"),
            "{args:?}: {err}"
        );
    }

    // With the token file (first entry, or by name): verified.
    let file = token_file.to_str().unwrap();
    let out = zt(&["audit", "verify", "--url", &url, "--admin-token-file", file]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("valid"), "{}", stdout(&out));
    let verify_as = |name: &str| {
        zt(&[
            "audit",
            "verify",
            "--url",
            &url,
            "--admin-token-file",
            file,
            "--admin-name",
            name,
        ])
    };
    let out = verify_as("admin");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = verify_as("carol");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no entry named `carol`"),
        "{}",
        stderr(&out)
    );
    let out = Command::new(zt_bin())
        .args(["audit", "export", "--url", &url])
        .env("ZT_ADMIN_TOKEN_FILE", &token_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).lines().count() >= 1);

    // The server's hints for credentials sent the wrong way.
    let cases = [
        (format!("Bearer {token}"), "this is an admin credential"),
        (token.clone(), "must be `Bearer <token>`"),
        (
            format!("Bearer {}", token_line.trim()),
            "not the `NAME TOKEN` line",
        ),
    ];
    for (header, expected) in cases {
        let (status, raw) = post_authorized(
            port,
            "/actions",
            &header,
            &json!({"actor": "a", "action": "b"}),
        );
        let answer: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(status, 401, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(expected),
            "{expected}: {answer}"
        );
    }
    assert_eq!(serve.terminate(), Some(0));
}

/// A self-signed certificate for `localhost` marked as a CA, as `openssl req -x509` makes it
/// by default, and its key.
fn self_signed(dir: &Path) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("self.pem"), dir.join("self.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    std::fs::set_permissions(
        &key_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    (
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}

#[test]
fn https_client_commands_trust_a_self_signed_certificate_or_a_dev_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let port = free_port();
    let data = dir.path().join("data");
    let serve = Serve::start(
        port,
        &data,
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        &[],
        &dir.path().join("serve.log"),
    );
    wait_for_file(&data.join("admin-token"));
    let token_file = data.join("admin-token").display().to_string();
    let url = format!("https://localhost:{port}");
    // The server may still be starting: the client's timeout covers it.
    let verify = |ca: &str| {
        zt(&[
            "audit",
            "verify",
            "--url",
            &url,
            "--ca",
            ca,
            "--admin-token-file",
            &token_file,
        ])
    };
    let out = verify(&cert);
    assert!(out.status.success(), "{}", stderr(&out));
    let saved = dir.path().join("checkpoint");
    let out = zt(&[
        "audit",
        "checkpoint",
        "save",
        "--url",
        &url,
        "--ca",
        &cert,
        "--out",
        saved.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Another certificate as the trust: the handshake fails, with a hint.
    let other = tempfile::tempdir().unwrap();
    let (other_cert, _) = self_signed(other.path());
    let out = verify(&other_cert);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("tls handshake"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--ca"), "{}", stderr(&out));
    assert_eq!(serve.terminate(), Some(0));

    // `zt dev-certs`: a CA, a server certificate, client certificates; private files.
    let certs = dir.path().join("dev");
    let out = zt(&["dev-certs", "--out-dir", certs.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("--tls-cert"), "{}", stdout(&out));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&certs), 0o700);
    for name in [
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "agent-dev.pem",
        "admin-dev.key",
    ] {
        assert_eq!(mode(&certs.join(name)), 0o600, "{name}");
    }
    let again = zt(&["dev-certs", "--out-dir", certs.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "never overwrites");
    let p = |n: &str| certs.join(n).display().to_string();
    let port = free_port();
    let data = dir.path().join("data-dev");
    let serve = Serve::start(
        port,
        &data,
        &[
            "--listen",
            &port.to_string(),
            "--tls-cert",
            &p("server.pem"),
            "--tls-key",
            &p("server.key"),
            "--client-ca",
            &p("ca.pem"),
            "--admin-spiffe-id",
            "spiffe://zt.local/admin/dev",
        ],
        &[],
        &dir.path().join("serve-dev.log"),
    );
    wait_for_file(&data.join("admin-token"));
    let token_file = data.join("admin-token").display().to_string();
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{port}");
        let out = zt(&[
            "audit",
            "verify",
            "--url",
            &url,
            "--ca",
            &p("ca.pem"),
            "--admin-token-file",
            &token_file,
        ]);
        assert!(out.status.success(), "{host}: {}", stderr(&out));
    }
    // A record to read, so that reading the log needs an admin.
    let trust = {
        let mut roots = rustls::RootCertStore::empty();
        let ca = std::fs::read(p("ca.pem")).unwrap();
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_slice(&ca).unwrap())
            .unwrap();
        std::sync::Arc::new(
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    };
    let token = std::fs::read_to_string(&token_file).unwrap();
    let bearer = format!("Bearer {}", token.split_whitespace().nth(1).unwrap());
    let body = json!({"actor": "reader"}).to_string();
    let (status, _, _) = workload::https(
        port,
        &trust,
        "POST",
        "/agents",
        &[("authorization", bearer.as_str())],
        Some(body.as_bytes()),
    )
    .unwrap();
    assert_eq!(status, 201);
    // An admin by client certificate alone, no token; an agent's certificate is refused.
    let url = format!("https://localhost:{port}");
    let verify_as = |name: &str| {
        Command::new(zt_bin())
            .args(["audit", "verify", "--url", &url, "--ca", &p("ca.pem")])
            .args([
                "--cert",
                &p(&format!("{name}.pem")),
                "--key",
                &p(&format!("{name}.key")),
            ])
            .env_remove("ZT_ADMIN_TOKEN")
            .env_remove("ZT_ADMIN_TOKEN_FILE")
            .output()
            .unwrap()
    };
    let out = verify_as("admin-dev");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = verify_as("agent-dev");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
    assert_eq!(serve.terminate(), Some(0));
}

#[test]
fn the_configuration_file_sets_flags_that_the_command_line_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let (file_port, flag_port) = (free_port(), free_port());
    let config = dir.path().join("zt.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{file_port}\"\nauth = \"none\"\nlog-format = \"json\"\nreplay-window = 60\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let config_arg = config.to_str().unwrap();
    let serve = Serve::start(
        file_port,
        &dir.path().join("a"),
        &["--config", config_arg],
        &[("ZT_LOG", "info")],
        &log,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !healthy(file_port) {
        assert!(
            Instant::now() < deadline,
            "the file's --listen never served"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, raw) = http(file_port, "GET", "/health", None).unwrap();
    let health: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(health["auth"], "none", "{health}");
    assert_eq!(serve.terminate(), Some(0));
    // `log-format = "json"`: every log line is one JSON object.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.is_empty());
    for line in text.lines() {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value.get("level").is_some(), "{line}");
    }

    // A flag on the command line wins over the file.
    let serve = Serve::start(
        flag_port,
        &dir.path().join("b"),
        &[
            "--config",
            config_arg,
            "--listen",
            &format!("127.0.0.1:{flag_port}"),
        ],
        &[],
        &dir.path().join("serve-b.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !healthy(flag_port) {
        assert!(
            Instant::now() < deadline,
            "the flag's --listen never served"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(TcpStream::connect(("127.0.0.1", file_port)).is_err());
    assert_eq!(serve.terminate(), Some(0));

    // An unknown key, or a value the flag refuses: exit 2, naming the key or value.
    for (text, expected) in [
        ("listne = \"127.0.0.1:1\"\n", "unknown key `listne`"),
        ("auth = \"nobody\"\n", "nobody"),
        ("listen = [1, 2\n", "zt.toml"),
    ] {
        std::fs::write(&config, text).unwrap();
        let out = zt(&["serve", "--config", config_arg]);
        assert_eq!(out.status.code(), Some(2), "{text}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{text}: {}", stderr(&out));
    }
}

#[test]
fn completions_and_the_man_page_come_from_the_cli_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let out = zt(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(
            script.contains("serve") && script.contains("--admin-token-file"),
            "{shell}"
        );
    }
    let out = zt(&["man"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains(".TH zt") && stdout(&out).contains("serve"));
    let dir = tempfile::tempdir().unwrap();
    let out = zt(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut page = String::new();
    std::fs::File::open(dir.path().join("zt-serve.1"))
        .unwrap()
        .read_to_string(&mut page)
        .unwrap();
    assert!(page.contains("listen"), "{page}");
}
