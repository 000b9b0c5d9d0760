//! One envelope across enforcement points, against the real `zt serve`: a decision asked
//! directly with the Rust SDK, a `tools/call` denied by `zt mcp-gateway` (the result's
//! `structuredContent.zt`) and a message denied by `zt a2a-proxy` (the task's `metadata.zt`)
//! carry the same fields, each verifies with the keys pinned from `GET /audit/keys`, and the
//! resulting log passes `zt audit verify --data-dir`. Also: the SDK's pinned keys against the
//! real server, the proxy's rewritten extended card, and a gateway deciding over TLS.
//!
//! The agent behind the proxy is a stub (it is reached only by allowed calls; denied ones are
//! answered by the proxy), and the MCP server behind the stdio gateway is a stub that answers
//! no tool call: a denied call is answered by the gateway alone.

use crate::common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, http_raw, start_a2a_proxy, zt, zt_bin, Running, Server};
use serde_json::{json, Value};
use zt_client::{Authorization, ControlPlane, Guarded, PinnedKeys};
use zt_contract::{DecisionRequest, DecisionResponse, Jwk, Jwks};

const ACTOR: &str = "envelope-agent";

const POLICY: &str = r#"@id("everything")
@reason("agents may do anything but touch the vault")
permit(principal, action, resource);

@id("vault")
@reason("the vault is off limits")
forbid(principal, action, resource == Resource::"vault");
"#;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A control plane with credentials and the test policy, and the agent's token.
fn control_plane(dir: &Path) -> (Server, String) {
    Server::with_policy_and_agent(dir, POLICY, ACTOR)
}

/// The SDK client of the test agent, with the server's keys pinned.
fn sdk(server: &Server, token: &str) -> ControlPlane {
    let keys = runtime()
        .block_on(ControlPlane::new(&server.url()).unwrap().audit_keys())
        .unwrap();
    ControlPlane::builder()
        .url(&server.url())
        .actor(ACTOR)
        .token(token)
        .pinned_keys(PinnedKeys::from_jwks(&keys).unwrap())
        .build()
        .unwrap()
}

/// The field names of a decision, level by level.
fn shape(decision: &Value) -> Vec<(&'static str, BTreeSet<String>)> {
    let keys = |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    vec![
        ("fields", keys(decision)),
        ("audit", keys(&decision["audit"])),
        ("signature", keys(&decision["audit"]["kms_signature"])),
        ("evidence", keys(&decision["evidence"])),
    ]
}

/// A stub MCP server's tools: `tool` taking one `path` argument.
fn path_tool(tool: &str) -> Value {
    json!([{"name": tool, "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}}}])
}

/// A denied `tools/call` through `zt mcp-gateway` in stdio mode: the gateway's answer line.
fn mcp_denied_call(url: &str, token: Option<&str>, ca: Option<&Path>) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(zt_bin());
    command.args(["mcp-gateway", "--server-name", "env-server"]);
    if let Some(ca) = ca {
        command.arg("--ca").arg(ca);
    }
    command
        .arg("--")
        .args(common::stub_mcp_server(
            &path_tool("delete_file"),
            &dir.path().join("received.jsonl"),
        ))
        .env("ZT_CONTROL_PLANE_URL", url)
        .env("ZT_ACTOR", ACTOR)
        .env_remove("ZT_TOKEN")
        .env("ZT_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(token) = token {
        command.env("ZT_TOKEN", token);
    }
    let mut gateway = Running(command.spawn().expect("start zt mcp-gateway"));
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "delete_file", "arguments": {"path": "vault"}}});
    let mut stdin = gateway.0.stdin.take().unwrap();
    for message in common::mcp_opening().iter().chain([&call]) {
        writeln!(stdin, "{message}").unwrap();
    }
    let mut stdout = BufReader::new(gateway.0.stdout.take().unwrap());
    let answer = loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "no answer");
        let answer: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if answer["id"] != json!("init") {
            break answer;
        }
    };
    drop(stdin);
    assert_eq!(answer["id"], json!(7), "{answer}");
    assert_eq!(answer["result"]["isError"], json!(true), "{answer}");
    answer["result"]["structuredContent"]["zt"].clone()
}

/// A stub A2A agent: its card, and a JSON-RPC answer to every call; the extended card names
/// the agent's own address, which the proxy must replace.
fn stub_agent() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let origin = format!("http://127.0.0.1:{port}");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let origin = origin.clone();
            std::thread::spawn(move || answer_one(stream, &origin));
        }
    });
    port
}

fn card(origin: &str, extended: bool) -> Value {
    let mut card = json!({"name": "env agent", "version": "1.0", "description": "stub",
        "supportedInterfaces": [
            {"url": format!("{origin}/"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": format!("{origin}/v1"), "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
        ],
        "capabilities": {}, "skills": [], "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"]});
    if extended {
        card["skills"] = json!([{"id": "secret", "name": "secret", "description": "", "tags": []}]);
    }
    card
}

fn answer_one(mut stream: TcpStream, origin: &str) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let Ok(n) = stream.read(&mut chunk) else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < head_end + length {
        let Ok(n) = stream.read(&mut chunk) else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = if head.starts_with("get ") {
        card(origin, false)
    } else {
        let call: Value = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
        let result = if call["method"] == "GetExtendedAgentCard" {
            card(origin, true)
        } else {
            json!({"id": "task-1", "contextId": "c", "status": {"state": "TASK_STATE_COMPLETED"}})
        };
        json!({"jsonrpc": "2.0", "id": call["id"], "result": result})
    }
    .to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// `zt a2a-proxy` in front of the stub agent; returns its port.
fn a2a_proxy(agent: u16, url: &str, token: &str) -> (Running, u16) {
    start_a2a_proxy(agent, "env_agent", url, ACTOR, token)
}

fn rpc(port: u16, body: &Value) -> Value {
    let (status, _, raw) =
        http_raw(port, "POST", "/", &[], Some(body.to_string().as_bytes())).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&raw));
    serde_json::from_slice(&raw).unwrap()
}

#[test]
fn one_envelope_through_the_sdk_and_both_gateways() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = control_plane(dir.path());
    let plane = sdk(&server, &token);
    let rt = runtime();

    // Directly: with a context (as the MCP gateway sends one) and without (as the A2A proxy).
    let direct = |context: Option<Value>| -> Value {
        let request = DecisionRequest {
            context: context.map(|c| c.as_object().unwrap().clone()),
            ..plane.request("envelope.delete", "vault")
        };
        match rt.block_on(plane.authorize(&request)).unwrap() {
            Authorization::Denied(decision) => serde_json::to_value(decision).unwrap(),
            Authorization::Allowed(_) => panic!("the vault was allowed"),
        }
    };
    let with_context = direct(Some(json!({"why": "compare"})));
    let without_context = direct(None);

    let mcp = mcp_denied_call(&server.url(), Some(&token), None);
    let agent = stub_agent();
    let (_proxy, proxy_port) = a2a_proxy(agent, &server.url(), &token);
    let message = json!({"jsonrpc": "2.0", "id": "m1", "method": "SendMessage", "params": {
        "message": {"messageId": "1", "role": "ROLE_USER", "parts": [{"text": "open it"}],
                    "metadata": {"resource": "vault"}}}});
    let denied = rpc(proxy_port, &message);
    let a2a = denied["result"]["task"]["metadata"]["zt"].clone();
    assert!(a2a.is_object(), "{denied}");

    for (name, gateway, reference) in [
        ("mcp gateway", &mcp, &with_context),
        ("a2a proxy", &a2a, &without_context),
    ] {
        assert_eq!(shape(gateway), shape(reference), "{name}: {gateway}");
        assert_eq!(gateway["decision"], "deny", "{name}");
        assert_eq!(gateway["reason"], reference["reason"], "{name}");
        assert_eq!(gateway["evidence"]["policies"], json!(["vault"]), "{name}");
        assert_eq!(
            gateway["evidence"]["request_id"].as_str().map(str::len),
            Some(32),
            "{name}: the gateway sends a request id by default"
        );
        // The gateway passed the decision on intact: it verifies as the SDK's own does.
        let decision: DecisionResponse = serde_json::from_value(gateway.clone()).unwrap();
        let keys = rt
            .block_on(ControlPlane::new(&server.url()).unwrap().audit_keys())
            .unwrap();
        PinnedKeys::from_jwks(&keys)
            .unwrap()
            .verify(&decision)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert_eq!(mcp["action"], "mcp.env-server.delete_file");
    assert_eq!(a2a["action"], "a2a.env_agent.send_message");

    // An allowed extended-card call reaches the agent; the card comes back pointing at the
    // proxy (its HTTP+JSON interface dropped), as the public card does.
    let extended = rpc(
        proxy_port,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "GetExtendedAgentCard", "params": {}}),
    );
    let proxy_origin = format!("http://127.0.0.1:{proxy_port}");
    let card = &extended["result"];
    assert_eq!(card["skills"][0]["id"], "secret", "{extended}");
    assert_eq!(
        card["supportedInterfaces"],
        json!([{"url": format!("{proxy_origin}/"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}]),
        "{extended}"
    );
    assert!(!extended.to_string().contains(&format!("127.0.0.1:{agent}")));

    // The log holding all of it verifies offline.
    let data = server.data_dir.clone();
    assert_eq!(server.terminate(), Some(0));
    let out = zt(&["audit", "verify", "--data-dir", data.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("valid: "), "{stdout}");
}

#[test]
fn keys_pinned_from_the_server_verify_its_allow_and_refuse_others() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = control_plane(dir.path());
    let plane = sdk(&server, &token);
    let rt = runtime();
    let request = plane.request("envelope.read", "docs");
    let outcome = rt.block_on(plane.guarded(&request, |allowed| async move {
        allowed.decision().audit.current_hash.clone()
    }));
    let Guarded::Executed { decision, result } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(result, decision.audit.current_hash);
    assert_eq!(decision.actor, ACTOR);
    assert_eq!(
        decision.evidence.request_id.as_ref().map(String::len),
        Some(32)
    );

    // Another key under the server's key id: the same allow is refused, and the work never
    // runs.
    let keys = rt
        .block_on(ControlPlane::new(&server.url()).unwrap().audit_keys())
        .unwrap();
    let kid = keys.keys[0].kid.clone();
    let other = aws_lc_rs::signature::EcdsaKeyPair::generate(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
    )
    .unwrap();
    use aws_lc_rs::signature::KeyPair;
    let impostor = Jwks {
        keys: vec![Jwk::from_uncompressed_p256(&kid, other.public_key().as_ref()).unwrap()],
    };
    let mistrusting = ControlPlane::builder()
        .url(&server.url())
        .actor(ACTOR)
        .token(&token)
        .pinned_keys(PinnedKeys::from_jwks(&impostor).unwrap())
        .build()
        .unwrap();
    let outcome = rt.block_on(mistrusting.guarded(&request, |_| async { panic!("ran") }));
    let Guarded::Skipped {
        decision: None,
        cause,
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert!(format!("{cause:?}").contains("signature"), "{cause:?}");
}

#[test]
fn a_gateway_decides_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let out = zt(&["dev-certs", "--out-dir", certs.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policy = dir.path().join("policy.cedar");
    std::fs::write(&policy, POLICY).unwrap();
    let port = free_port();
    let _serve = Running(
        Command::new(zt_bin())
            .args([
                "serve",
                "--auth",
                "none",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--policy")
            .arg(&policy)
            .arg("--tls-cert")
            .arg(certs.join("server.pem"))
            .arg("--tls-key")
            .arg(certs.join("server.key"))
            .env("ZT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "zt serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("https://localhost:{port}");
    // The SDK over the same TLS registers the agent (`--auth none`: no admin token).
    let options = zt_client::ClientOptions {
        tls: zt_client::TlsOptions {
            ca: Some(certs.join("ca.pem")),
            client_cert: None,
        },
        ..zt_client::ClientOptions::default()
    };
    let admin = ControlPlane::connect(&url.parse().unwrap(), &options).unwrap();
    runtime().block_on(admin.register_agent(ACTOR)).unwrap();
    let decided = mcp_denied_call(&url, None, Some(&certs.join("ca.pem")));
    assert_eq!(decided["decision"], "deny", "{decided}");
    assert_eq!(
        decided["evidence"]["policies"],
        json!(["vault"]),
        "{decided}"
    );
    assert!(decided["audit"]["current_hash"].is_string(), "{decided}");

    // Trusting another CA, the gateway cannot reach the server: a local deny, no decision.
    let other = dir.path().join("other-certs");
    assert!(zt(&["dev-certs", "--out-dir", other.to_str().unwrap()])
        .status
        .success());
    let untrusted = mcp_denied_call(&url, None, Some(&other.join("ca.pem")));
    assert_eq!(untrusted["decision"], "deny", "{untrusted}");
    assert!(untrusted.get("audit").is_none(), "{untrusted}");
}

#[test]
fn the_stdio_gateway_relays_in_the_client_order() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = control_plane(dir.path());
    let received = dir.path().join("received.jsonl");
    let mut gateway = Running(
        Command::new(zt_bin())
            .args(["mcp-gateway", "--server-name", "env-server", "--"])
            .args(common::stub_mcp_server(&path_tool("read_file"), &received))
            .env("ZT_CONTROL_PLANE_URL", server.url())
            .env("ZT_ACTOR", ACTOR)
            .env("ZT_TOKEN", &token)
            .env("ZT_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let call = |id: u64, path: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "read_file", "arguments": {"path": path}}})
    };
    let cancel = |id: u64| json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id}});
    // Calls are decided concurrently; what reaches the server keeps the client's order, so a
    // cancellation never overtakes its call.
    let [initialize, initialized] = common::mcp_opening();
    let sent = [
        initialize,
        initialized,
        call(1, "docs"),
        cancel(1),
        call(2, "vault"),
        call(3, "docs"),
        cancel(3),
        call(4, "readme"),
    ];
    let mut stdin = gateway.0.stdin.take().unwrap();
    for message in &sent {
        writeln!(stdin, "{message}").unwrap();
    }
    drop(stdin);
    let mut out = String::new();
    gateway
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(gateway.0.wait().unwrap().success());
    let relayed: Vec<Value> = std::fs::read_to_string(&received)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected: Vec<Value> = sent.iter().filter(|m| m["id"] != 2).cloned().collect();
    assert_eq!(relayed, expected);
    let answers: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 2, "{out}");
    assert_eq!(answers[0]["id"], "init");
    assert_eq!(answers[1]["id"], 2);
    assert_eq!(
        answers[1]["result"]["structuredContent"]["zt"]["decision"],
        "deny"
    );
}
