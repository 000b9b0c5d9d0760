//! The one client's transport: `/agents/{actor}` paths carry an actor such as a SPIFFE ID as
//! one percent-encoded segment, answers are capped, connections are reused, and `https://`
//! works with a CA or with exactly the server's own self-signed certificate as the trust.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zt_client::{BaseUrl, ClientError, ClientOptions, ControlPlane, TlsOptions};

const SPIFFE_ACTOR: &str = "spiffe://example.org/agent/a";

/// What a fake server saw: request lines, and how many connections it accepted.
#[derive(Default)]
struct Seen {
    request_lines: Mutex<Vec<String>>,
    connections: AtomicUsize,
}

/// Reads one request head (and its body, by content-length) from `io`; `None` at end of stream.
async fn read_request<S: AsyncRead + Unpin>(io: &mut S) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if io.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    io.read_exact(&mut body).await.ok()?;
    Some(head.lines().next().unwrap_or_default().to_string())
}

/// Answers every request on `io` with `status` and `body`, keeping the connection alive.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    seen: Arc<Seen>,
    status: u16,
    body: Arc<String>,
) {
    while let Some(line) = read_request(&mut io).await {
        seen.request_lines.lock().unwrap().push(line);
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if io.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A plain HTTP server answering `status` + `body` to every request.
async fn fake_server(status: u16, body: String) -> (String, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let (seen2, body) = (seen.clone(), Arc::new(body));
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            seen2.connections.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(serve_connection(
                socket,
                seen2.clone(),
                status,
                body.clone(),
            ));
        }
    });
    (url, seen)
}

#[tokio::test]
async fn a_spiffe_actor_is_one_percent_encoded_path_segment() {
    let (url, seen) = fake_server(
        200,
        r#"{"ok": true, "actor": "x", "token": "zt_agent_t"}"#.into(),
    )
    .await;
    let client = ControlPlane::new(&url).unwrap();
    let rotated = client.rotate_token(SPIFFE_ACTOR).await.unwrap();
    assert_eq!(rotated.token, "zt_agent_t");
    client.remove_agent(SPIFFE_ACTOR).await.unwrap();
    let lines = seen.request_lines.lock().unwrap().clone();
    assert_eq!(
        lines,
        [
            "POST /agents/spiffe%3A%2F%2Fexample.org%2Fagent%2Fa/token HTTP/1.1",
            "DELETE /agents/spiffe%3A%2F%2Fexample.org%2Fagent%2Fa HTTP/1.1",
        ]
    );
    // Both requests went over one kept-alive connection.
    assert_eq!(seen.connections.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn an_existing_agent_gets_a_rotated_token_on_the_encoded_path() {
    // Registration of an existing agent issues no token: `agent_token` rotates.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let lines = Arc::new(Mutex::new(Vec::new()));
    let lines2 = lines.clone();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        while let Some(line) = read_request(&mut socket).await {
            let body = if line.starts_with("POST /agents ") {
                r#"{"ok": true, "actor": "spiffe://example.org/agent/a", "registered": true}"#
            } else {
                r#"{"ok": true, "actor": "spiffe://example.org/agent/a", "token": "zt_agent_new"}"#
            };
            lines2.lock().unwrap().push(line);
            let response = format!(
                "HTTP/1.1 {} X\r\ncontent-length: {}\r\n\r\n{body}",
                if body.contains("registered") {
                    201
                } else {
                    200
                },
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
        }
    });
    let token = ControlPlane::new(&url)
        .unwrap()
        .agent_token(SPIFFE_ACTOR)
        .await
        .unwrap();
    assert_eq!(token, "zt_agent_new");
    assert_eq!(
        lines.lock().unwrap().clone(),
        [
            "POST /agents HTTP/1.1",
            "POST /agents/spiffe%3A%2F%2Fexample.org%2Fagent%2Fa/token HTTP/1.1"
        ]
    );
}

#[tokio::test]
async fn an_answer_over_the_cap_is_refused() {
    let big = format!(r#"{{"keys": [], "pad": "{}"}}"#, "x".repeat(4096));
    let (url, _) = fake_server(200, big).await;
    let options = ClientOptions {
        max_answer: 1024,
        ..ClientOptions::default()
    };
    let client = ControlPlane::connect(&url.parse().unwrap(), &options).unwrap();
    match client.audit_keys().await {
        Err(ClientError::TooLarge(1024)) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Under the default cap the same answer is read.
    let client = ControlPlane::new(&url).unwrap();
    assert!(client.audit_keys().await.is_ok());
}

// ---------------------------------------------------------------------------------------------
// TLS

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A self-signed certificate for `localhost` marked as a CA, as `openssl req -x509` makes it
/// with its default configuration: (certificate PEM, key PEM).
fn self_signed_ca_leaf() -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// An HTTPS server with this certificate and key answering 200 `{"ok":true,"keys":[]}`.
async fn tls_server(cert_pem: &str, key_pem: &str) -> String {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let seen = Arc::new(Seen::default());
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(socket).await {
                    serve_connection(tls, seen, 200, Arc::new(r#"{"keys":[]}"#.into())).await;
                }
            });
        }
    });
    url
}

fn tls_client(url: &str, ca: &Path) -> ControlPlane {
    let url: BaseUrl = url.parse().unwrap();
    let options = ClientOptions {
        tls: TlsOptions {
            ca: Some(ca.to_path_buf()),
            client_cert: None,
        },
        ..ClientOptions::default()
    };
    ControlPlane::connect(&url, &options).unwrap()
}

#[tokio::test]
async fn a_self_signed_server_certificate_given_as_the_trust_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_ca_leaf();
    let url = tls_server(&cert, &key).await;
    let pinned = write(dir.path(), "server.pem", &cert);
    tls_client(&url, &pinned).audit_keys().await.unwrap();

    // Any other certificate as the trust: the handshake fails, nothing is read.
    let (other, _) = self_signed_ca_leaf();
    let other = write(dir.path(), "other.pem", &other);
    match tls_client(&url, &other).audit_keys().await {
        Err(ClientError::Tls(message)) => assert!(message.contains("localhost"), "{message}"),
        answer => panic!("an untrusted certificate must fail the handshake: {answer:?}"),
    }
}

#[tokio::test]
async fn tls_options_are_checked_against_the_scheme() {
    let url: BaseUrl = "https://localhost:1".parse().unwrap();
    let refused = ControlPlane::connect(&url, &ClientOptions::default())
        .err()
        .unwrap();
    assert!(refused.to_string().contains("needs --ca"), "{refused}");
    let url: BaseUrl = "http://localhost:1".parse().unwrap();
    let options = ClientOptions {
        tls: TlsOptions {
            ca: Some("ca.pem".into()),
            client_cert: None,
        },
        ..ClientOptions::default()
    };
    let refused = ControlPlane::connect(&url, &options).err().unwrap();
    assert!(refused.to_string().contains("https://"), "{refused}");
    let url: BaseUrl = "https://localhost:1".parse().unwrap();
    let options = ClientOptions {
        tls: TlsOptions {
            ca: Some("/nonexistent/ca.pem".into()),
            client_cert: None,
        },
        ..ClientOptions::default()
    };
    let refused = ControlPlane::connect(&url, &options).err().unwrap();
    assert!(
        refused.to_string().contains("--ca `/nonexistent/ca.pem`"),
        "{refused}"
    );
}
