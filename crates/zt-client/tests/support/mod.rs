//! A raw TCP control plane the test scripts: it reads one HTTP request per connection and
//! answers as told, including the ways a transport misbehaves (silence, a reset mid-body,
//! bytes that are not HTTP). Answers echo the request's `request_id` and hash correctly, and
//! can be signed with a test key.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zt_contract::{Decision, Digest32, Jwk, Jwks, RecordBody, RecordKind, GENESIS_HASH};

/// One request the fake received.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// Request line and headers, as sent.
    pub head: String,
    /// The body as JSON (`Null` if it was not JSON).
    pub body: Value,
}

impl Seen {
    /// The request's `request_id`, if it sent one.
    pub(crate) fn request_id(&self) -> Option<String> {
        self.body["request_id"].as_str().map(str::to_string)
    }
}

/// What the fake does with one request.
pub(crate) enum Reply {
    /// A complete HTTP/1.1 response with this status and body.
    Answer(u16, String),
    /// Accepts, reads, never answers.
    Silent,
    /// Sends the headers and part of the body, then resets the connection (RST).
    ResetMidBody(String),
    /// These bytes, then closes.
    Raw(Vec<u8>),
}

/// Starts a fake on a loopback port; returns its URL and the requests it received.
pub(crate) async fn fake_server<F>(reply: F) -> (String, Arc<Mutex<Vec<Seen>>>)
where
    F: Fn(&Seen) -> Reply + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reply = Arc::new(reply);
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let (reply, log) = (reply.clone(), log.clone());
            tokio::spawn(async move { serve_one(socket, &*reply, &log).await });
        }
    });
    (url, seen)
}

async fn serve_one<F: Fn(&Seen) -> Reply>(
    mut socket: TcpStream,
    reply: &F,
    log: &Mutex<Vec<Seen>>,
) {
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    log.lock().unwrap().push(request.clone());
    match reply(&request) {
        Reply::Answer(status, body) => {
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
        Reply::Silent => tokio::time::sleep(Duration::from_secs(30)).await,
        Reply::ResetMidBody(body) => {
            let half = &body[..body.len() / 2];
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{half}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            socket.set_zero_linger().unwrap();
            drop(socket);
        }
        Reply::Raw(bytes) => {
            let _ = socket.write_all(&bytes).await;
        }
    }
}

/// Reads one request: headers, then `content-length` bytes of body.
async fn read_request(socket: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
    Some(Seen { head, body })
}

/// A signing key and the JWKS that publishes it.
pub(crate) struct TestKey {
    pair: EcdsaKeyPair,
    /// The key id records name.
    pub kid: String,
}

impl TestKey {
    /// A fresh P-256 key named `kid`.
    pub(crate) fn new(kid: &str) -> Self {
        Self {
            pair: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap(),
            kid: kid.into(),
        }
    }

    /// The JWKS of this key.
    pub(crate) fn jwks(&self) -> Jwks {
        Jwks {
            keys: vec![
                Jwk::from_uncompressed_p256(&self.kid, self.pair.public_key().as_ref()).unwrap(),
            ],
        }
    }

    /// Base64 of the DER signature over `message` (its SHA-256 is the record hash).
    fn sign(&self, message: &[u8]) -> String {
        let signature = self.pair.sign(&SystemRandom::new(), message).unwrap();
        base64::engine::general_purpose::STANDARD.encode(signature.as_ref())
    }
}

/// A decision answer whose evidence hashes correctly and echoes `request_id`; signed by
/// `key` when given (otherwise a placeholder signature under key id `k`).
pub(crate) fn answer(
    decision: Decision,
    request_id: Option<String>,
    key: Option<&TestKey>,
) -> Value {
    answer_to("agent", "hello-world.say_hello", decision, request_id, key)
}

/// As [`answer`], deciding `action` for `actor` (resource `r`).
pub(crate) fn answer_to(
    actor: &str,
    action: &str,
    decision: Decision,
    request_id: Option<String>,
    key: Option<&TestKey>,
) -> Value {
    let body = RecordBody {
        action: action.into(),
        actor: actor.into(),
        authenticated: false,
        claimed_actor: None,
        context_sha256: None,
        counts: None,
        policies: None,
        decision,
        execution: None,
        key_rotation: None,
        kind: RecordKind::Decision,
        policy_version: Some("sha256:00".into()),
        previous_hash: GENESIS_HASH.into(),
        reason: "because".into(),
        request_id: request_id.clone(),
        resource: "r".into(),
        resource_attributes_sha256: None,
        sandbox: None,
        seq: 0,
        timestamp: "2026-11-25T00:00:00.000Z".into(),
    };
    let canonical = serde_json::to_vec(&body).unwrap();
    let hash = Digest32::sha256(&canonical).to_hex();
    let (kid, signature) = match key {
        Some(key) => (key.kid.clone(), key.sign(&canonical)),
        None => ("k".to_string(), "AA==".to_string()),
    };
    let mut evidence = json!({"kind": "decision", "seq": 0, "authenticated": false, "policy_version": "sha256:00"});
    if let Some(id) = request_id {
        evidence["request_id"] = json!(id);
    }
    json!({
        "ok": decision == Decision::Allow, "actor": actor, "action": action, "resource": "r",
        "decision": decision.as_str(), "reason": "because",
        "audit": {"timestamp": body.timestamp, "previous_hash": GENESIS_HASH, "current_hash": hash,
                  "kms_signature": {"algorithm": "ECDSA_SHA_256", "key_id": kid, "signature": signature}},
        "evidence": evidence
    })
}
