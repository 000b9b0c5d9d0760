//! Support for the workload-identity end-to-end tests: a test CA and certificates (rcgen), a
//! small blocking HTTPS client (rustls), a TLS-aware server launcher, and JWT-SVID signing
//! (aws-lc-rs). Everything is made at test time; nothing is checked in.
#![allow(
    dead_code,
    reason = "each test crate uses a different part of the shared helpers"
)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{json, Value};

use crate::common::{free_port, http_raw, parse, parse_http_response, zt_bin, Server};

pub(crate) const BILLING: &str = "spiffe://example.org/agent/billing";
pub(crate) const ADMIN: &str = "spiffe://example.org/ops/admin";
pub(crate) const AUDIENCE: &str = "zt-control-plane";

// ---------------------------------------------------------------------------------------------
// Certificates

/// A test CA and the files a server needs (its CA bundle, its own chain and key).
pub(crate) struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: CertifiedIssuer<'static, KeyPair>,
}

/// A client certificate and key, PEM.
pub(crate) struct Identity {
    pub cert: String,
    pub key: String,
}

impl Pki {
    pub(crate) fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pki = Self {
            dir: tempfile::tempdir().unwrap(),
            ca,
        };
        std::fs::write(pki.path("ca.pem"), pki.ca.pem()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &pki.ca).unwrap();
        std::fs::write(pki.path("server.pem"), cert.pem()).unwrap();
        std::fs::write(pki.path("server.key"), key.serialize_pem()).unwrap();
        std::fs::set_permissions(
            pki.path("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        pki
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A client certificate with these URI SANs (and a DNS SAN, which is not an identity).
    pub(crate) fn client(&self, uris: &[&str]) -> Identity {
        self.client_params(
            uris,
            CertificateParams::new(vec!["client.example.org".to_string()]).unwrap(),
        )
    }

    /// [`Pki::client`], valid until `not_after`.
    pub(crate) fn client_until(&self, uris: &[&str], not_after: time::OffsetDateTime) -> Identity {
        let mut params = CertificateParams::new(vec!["client.example.org".to_string()]).unwrap();
        params.not_after = not_after;
        self.client_params(uris, params)
    }

    /// An intermediate CA under this one, valid until `not_after`.
    pub(crate) fn intermediate_until(
        &self,
        not_after: time::OffsetDateTime,
    ) -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, "zt test intermediate");
        params.not_after = not_after;
        CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), &self.ca).unwrap()
    }

    /// A client certificate with these URI SANs issued by `intermediate`, presented with it.
    pub(crate) fn client_via(
        &self,
        intermediate: &CertifiedIssuer<'static, KeyPair>,
        uris: &[&str],
    ) -> Identity {
        let params = CertificateParams::new(vec!["client.example.org".to_string()]).unwrap();
        let leaf = issue(uris, params, intermediate);
        Identity {
            cert: format!("{}{}", leaf.cert, intermediate.pem()),
            key: leaf.key,
        }
    }

    fn client_params(&self, uris: &[&str], params: CertificateParams) -> Identity {
        issue(uris, params, &self.ca)
    }

    /// Client settings trusting this CA, presenting `identity` if given.
    pub(crate) fn client_config(&self, identity: Option<&Identity>) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca.pem().as_bytes()).unwrap())
            .unwrap();
        let builder = ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        Arc::new(match identity {
            None => builder.with_no_client_auth(),
            Some(id) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(id.cert.as_bytes())
                        .collect::<Result<Vec<_>, _>>()
                        .unwrap(),
                    PrivateKeyDer::from_pem_slice(id.key.as_bytes()).unwrap(),
                )
                .unwrap(),
        })
    }

    /// `--tls-cert`, `--tls-key` and `--client-ca` for this CA.
    pub(crate) fn serve_args(&self) -> Vec<String> {
        let p = |n: &str| self.path(n).display().to_string();
        vec![
            "--tls-cert".into(),
            p("server.pem"),
            "--tls-key".into(),
            p("server.key"),
            "--client-ca".into(),
            p("ca.pem"),
        ]
    }
}

/// A client certificate with these URI SANs (and `params`' names), issued by `issuer`.
fn issue(
    uris: &[&str],
    mut params: CertificateParams,
    issuer: &CertifiedIssuer<'static, KeyPair>,
) -> Identity {
    let key = KeyPair::generate().unwrap();
    for uri in uris {
        params
            .subject_alt_names
            .push(SanType::URI(uri.to_string().try_into().unwrap()));
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer).unwrap();
    Identity {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

// ---------------------------------------------------------------------------------------------
// An HTTPS client: one request per connection, `Connection: close`.

pub(crate) fn https(
    port: u16,
    config: &Arc<ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<(u16, String, Vec<u8>)> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut tls = StreamOwned::new(conn, tcp);
    let body = body.unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes())?;
    tls.write_all(body)?;
    tls.flush()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A peer that closes without close_notify after a full response is fine here.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    parse_http_response(&raw)
}

/// One HTTPS connection kept alive across requests.
pub(crate) struct KeepAlive {
    tls: StreamOwned<ClientConnection, TcpStream>,
}

impl KeepAlive {
    pub(crate) fn open(port: u16, config: &Arc<ClientConfig>) -> Self {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(config.clone(), name).unwrap();
        Self {
            tls: StreamOwned::new(conn, tcp),
        }
    }

    /// Sends `GET path`, then [`KeepAlive::read_until`] `wanted`.
    pub(crate) fn get_until(&mut self, path: &str, wanted: &str, within: Duration) -> bool {
        let head = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
        self.tls.write_all(head.as_bytes()).unwrap();
        self.tls.flush().unwrap();
        self.read_until(wanted, within)
    }

    /// Reads until what came holds `wanted` (true), or the connection ends or `within` passes
    /// (false).
    pub(crate) fn read_until(&mut self, wanted: &str, within: Duration) -> bool {
        self.tls.get_ref().set_read_timeout(Some(within)).unwrap();
        let deadline = Instant::now() + within;
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.tls.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
            if String::from_utf8_lossy(&raw).contains(wanted) {
                return true;
            }
        }
        false
    }

    /// `POST`s `body` to `path` on this connection; the status and the JSON answer.
    pub(crate) fn post(&mut self, path: &str, body: &str) -> (u16, Value) {
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        self.tls.write_all(head.as_bytes()).unwrap();
        self.tls.write_all(body.as_bytes()).unwrap();
        self.tls.flush().unwrap();
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            self.tls.read_exact(&mut byte).unwrap();
            raw.push(byte[0]);
        }
        let head = String::from_utf8(raw).unwrap().to_ascii_lowercase();
        let status: u16 = head[9..12].parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map(|n| n.trim().parse().unwrap())
            .unwrap_or(0);
        let mut answer = vec![0u8; length];
        self.tls.read_exact(&mut answer).unwrap();
        (
            status,
            serde_json::from_slice(&answer).unwrap_or(Value::Null),
        )
    }
}

/// How the TLS handshake of a fresh connection with `config` went: `Resumed` when the server
/// accepted a session of an earlier connection.
pub(crate) fn handshake_kind(port: u16, config: &Arc<ClientConfig>) -> rustls::HandshakeKind {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config.clone(), name).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    tls.conn.handshake_kind().unwrap()
}

/// A JSON request over HTTPS with an optional bearer token.
pub(crate) fn call(
    server: &Server,
    config: &Arc<ClientConfig>,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, String, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let bytes = body.map(|b| b.to_string().into_bytes());
    let (status, headers, raw) = https(
        server.port,
        config,
        method,
        path,
        &headers,
        bytes.as_deref(),
    )
    .expect("https");
    (
        status,
        headers,
        serde_json::from_slice(&raw).unwrap_or(Value::Null),
    )
}

/// A JSON `POST` over HTTPS with an optional bearer token.
pub(crate) fn post(
    server: &Server,
    config: &Arc<ClientConfig>,
    token: Option<&str>,
    path: &str,
    body: Value,
) -> (u16, String, Value) {
    call(server, config, token, "POST", path, Some(body))
}

/// Registers [`BILLING`] and allows `invoices.read`, as the admin over a connection without a
/// client certificate; the admin token and those client settings.
pub(crate) fn billing_may_read_invoices(server: &Server, pki: &Pki) -> (String, Arc<ClientConfig>) {
    let admin = server.admin_token();
    let anonymous = pki.client_config(None);
    register_tls(server, &anonymous, &admin, BILLING);
    admin_created(
        server,
        &anonymous,
        &admin,
        "/policies/allow",
        json!({"action": "invoices.read", "reason": "ok"}),
    );
    (admin, anonymous)
}

/// As the admin (a bearer token; `config` may carry no certificate): `POST` `body` to `path`,
/// which must answer 201; the answer.
pub(crate) fn admin_created(
    server: &Server,
    config: &Arc<ClientConfig>,
    admin: &str,
    path: &str,
    body: Value,
) -> Value {
    let (status, _, answer) = post(server, config, Some(admin), path, body);
    assert_eq!(status, 201, "{path}: {answer}");
    answer
}

/// As the admin: registers `actor` over HTTPS; its token.
pub(crate) fn register_tls(
    server: &Server,
    config: &Arc<ClientConfig>,
    admin: &str,
    actor: &str,
) -> String {
    let answer = admin_created(server, config, admin, "/agents", json!({"actor": actor}));
    answer["token"].as_str().unwrap().to_string()
}

pub(crate) fn records(server: &Server, config: &Arc<ClientConfig>, admin: &str) -> Vec<Value> {
    let auth = format!("Bearer {admin}");
    let (status, _, raw) = https(
        server.port,
        config,
        "GET",
        "/audit/records?limit=10000",
        &[("authorization", &auth)],
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    String::from_utf8(raw).unwrap().lines().map(parse).collect()
}

pub(crate) fn decisions(log: &[Value]) -> usize {
    log.iter().filter(|r| r["kind"] == "decision").count()
}

/// Starts `zt serve --auth credentials` over HTTPS and waits until `/health` answers over TLS.
pub(crate) fn start_tls(
    pki: &Pki,
    data_dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Server {
    let probe = pki.client_config(None);
    for _ in 0..5 {
        let port = free_port();
        let child = Command::new(zt_bin())
            .args([
                "serve",
                "--auth",
                "credentials",
                // One admin approves their own policy changes (the review flow is not under
                // test here).
                "--single-admin",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .args(pki.serve_args())
            .args(extra)
            .envs(env.iter().copied())
            .env("ZT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn zt serve");
        let mut server = Server {
            child,
            port,
            data_dir: data_dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = server.child.try_wait() {
                break;
            }
            if let Ok((200, _, _)) = https(port, &probe, "GET", "/health", &[], None) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = server.child.kill();
        let _ = server.child.wait();
    }
    panic!("zt serve over tls did not become ready");
}

// ---------------------------------------------------------------------------------------------
// JWT-SVIDs, signed here with aws-lc-rs

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(crate) struct EcSigner(pub EcdsaKeyPair);

impl EcSigner {
    pub(crate) fn new() -> Self {
        Self(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
    }
    pub(crate) fn jwk(&self, kid: &str) -> Value {
        let point = self.0.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "jwt-svid", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
    }
    pub(crate) fn sign(&self, header: Value, claims: Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.0.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }
}

pub(crate) fn svid_claims(sub: &str) -> Value {
    json!({"sub": sub, "aud": [AUDIENCE], "exp": now() + 300, "iat": now()})
}

pub(crate) fn es256(kid: &str) -> Value {
    json!({"alg": "ES256", "kid": kid, "typ": "JWT"})
}

/// A server with `--require-client-cert` (whose readiness probe needs a certificate).
pub(crate) fn start_required(pki: &Pki, data_dir: &Path) -> Server {
    let probe = pki.client_config(Some(&pki.client(&["spiffe://example.org/probe"])));
    let port = free_port();
    let child = Command::new(zt_bin())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--require-client-cert",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(pki.serve_args())
        .env("ZT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        port,
        data_dir: data_dir.to_path_buf(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok((200, _, _)) = https(port, &probe, "GET", "/health", &[], None) {
            return server;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("zt serve --require-client-cert did not become ready");
}

/// [`records`] over plain HTTP (the JWT-SVID server does not use TLS).
pub(crate) fn plain_records(server: &Server, admin: &str) -> Vec<Value> {
    let auth = format!("Bearer {admin}");
    let (status, _, raw) = http_raw(
        server.port,
        "GET",
        "/audit/records?limit=10000",
        &[("authorization", &auth)],
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    String::from_utf8(raw).unwrap().lines().map(parse).collect()
}
