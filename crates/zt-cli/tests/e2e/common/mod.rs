//! Helpers for end-to-end tests: the real `zt` binary, real sockets, raw HTTP.
#![allow(
    dead_code,
    reason = "each test crate uses a different part of the shared helpers"
)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use zt_contract::{record_hash, Digest32, GENESIS_HASH};
use zt_ledger::{LocalKeySigner, Signer};

/// Path of the `zt` binary under test.
pub(crate) fn zt_bin() -> &'static str {
    env!("CARGO_BIN_EXE_zt")
}

/// Runs `zt ARGS` to completion.
pub(crate) fn zt(args: &[&str]) -> Output {
    Command::new(zt_bin()).args(args).output().expect("run zt")
}

/// A free TCP port on loopback (bound then released; the server binds it right after).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process (a peer, a gateway) killed on drop.
pub(crate) struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// Starts `command` (output discarded) and returns once something listens on `port`
    /// (at most 60 s).
    pub(crate) fn listening(command: &mut Command, port: u16) -> Running {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let running = Running(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nothing listens on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        running
    }
}

/// Sends `POST path` headers announcing 100 bytes of body, then one byte every read timeout
/// of the underlying socket, until the peer closes the connection (at most a minute or so);
/// returns what the peer answered.
pub(crate) fn trickle_body<S: Read + Write>(
    stream: &mut S,
    path: &str,
    extra_headers: &str,
) -> Vec<u8> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n{extra_headers}\r\n{{"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.flush();
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    for _ in 0..120 {
        let _ = stream.write_all(b" ").and_then(|()| stream.flush());
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    raw
}

/// Waits (up to 90 s) until the process on `port` serves an A2A agent card; fails the test if
/// `child` exits first or never serves it.
pub(crate) fn wait_for_card(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early: {status}");
        }
        if let Ok((200, _)) = http(port, "GET", "/.well-known/agent-card.json", None) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not serve its card");
}

/// `zt a2a-proxy --agent-name AGENT` in front of the agent on `upstream`, deciding through
/// `control_plane` as `actor` with `token` (settings from the environment); returns it once it
/// serves its card, and its port.
pub(crate) fn start_a2a_proxy(
    upstream: u16,
    agent: &str,
    control_plane: &str,
    actor: &str,
    token: &str,
) -> (Running, u16) {
    start_a2a_proxy_with(upstream, agent, control_plane, actor, token, &[])
}

/// [`start_a2a_proxy`] with extra arguments.
pub(crate) fn start_a2a_proxy_with(
    upstream: u16,
    agent: &str,
    control_plane: &str,
    actor: &str,
    token: &str,
    extra: &[&str],
) -> (Running, u16) {
    let port = free_port();
    let mut child = Command::new(zt_bin())
        .args(["a2a-proxy", "--agent-name", agent])
        .args(["--upstream", &format!("http://127.0.0.1:{upstream}")])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .env("ZT_CONTROL_PLANE_URL", control_plane)
        .env("ZT_ACTOR", actor)
        .env("ZT_TOKEN", token)
        .env("ZT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start zt a2a-proxy");
    wait_for_card(port, &mut child, "zt a2a-proxy");
    (Running(child), port)
}

/// Opens a connection to `port` and sends the start of a `POST path` request's headers, never
/// their end.
pub(crate) fn slow_header_socket(port: u16, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(format!("POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n").as_bytes())
        .unwrap();
    stream
}

/// True once the peer has closed `stream` (EOF or reset) within `within`.
pub(crate) fn closed_by_peer(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// A running `zt serve --auth none`, killed on drop.
pub(crate) struct Server {
    pub child: Child,
    pub port: u16,
    pub data_dir: PathBuf,
}

impl Server {
    /// A control plane with credentials (one admin, `--single-admin`) whose policy file holds
    /// `policy`, and `actor` registered; returns the server and the agent's token.
    pub(crate) fn with_policy_and_agent(dir: &Path, policy: &str, actor: &str) -> (Server, String) {
        let policy_file = dir.join("policy.cedar");
        std::fs::write(&policy_file, policy).unwrap();
        let server = Server::start_with_auth(
            &dir.join("data"),
            "credentials",
            &["--single-admin", "--policy", policy_file.to_str().unwrap()],
        );
        let (status, _, body) = server.json_as(
            &server.admin_token(),
            "POST",
            "/agents",
            Some(serde_json::json!({ "actor": actor })),
        );
        assert_eq!(status, 201, "{body}");
        let token = body["token"].as_str().expect("agent token").to_string();
        (server, token)
    }

    /// Starts a `--auth none` server on `data_dir` with extra arguments and waits until
    /// `/health` answers.
    pub(crate) fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_with_auth(data_dir, "none", extra)
    }

    /// Starts a server with `--auth MODE`.
    pub(crate) fn start_with_auth(data_dir: &Path, mode: &str, extra: &[&str]) -> Server {
        Self::start_with_env(data_dir, mode, extra, &[])
    }

    /// Starts a server with `--auth MODE` and extra environment variables.
    pub(crate) fn start_with_env(
        data_dir: &Path,
        mode: &str,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Server {
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(zt_bin());
            cmd.args([
                "serve",
                "--auth",
                mode,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("ZT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
            let child = cmd.spawn().expect("spawn zt serve");
            let mut server = Server {
                child,
                port,
                data_dir: data_dir.to_path_buf(),
            };
            if server.wait_ready(Duration::from_secs(20)) {
                return server;
            }
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
        panic!("zt serve did not become ready");
    }

    fn wait_ready(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok((200, _)) = http(self.port, "GET", "/health", None) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Base URL.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// JSON request; returns status and parsed body.
    pub(crate) fn json(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let (status, raw) = http(self.port, method, path, bytes.as_deref()).expect("http");
        (status, serde_json::from_slice(&raw).unwrap_or(Value::Null))
    }

    /// JSON request with `Authorization: Bearer <token>`; returns status, headers, parsed body.
    pub(crate) fn json_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String, Value) {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let auth = format!("Bearer {token}");
        let (status, headers, raw) = http_raw(
            self.port,
            method,
            path,
            &[("authorization", auth.as_str())],
            bytes.as_deref(),
        )
        .expect("http");
        (
            status,
            headers,
            serde_json::from_slice(&raw).unwrap_or(Value::Null),
        )
    }

    /// The admin token the server created in its data directory.
    pub(crate) fn admin_token(&self) -> String {
        let text =
            std::fs::read_to_string(self.data_dir.join("admin-token")).expect("admin token file");
        text.split_whitespace().nth(1).expect("a token").to_string()
    }

    /// `POST /actions`.
    pub(crate) fn decide(&self, actor: &str, action: &str, resource: &str) -> (u16, Value) {
        self.json(
            "POST",
            "/actions",
            Some(serde_json::json!({"actor": actor, "action": action, "resource": resource})),
        )
    }

    /// `GET /metrics`, which must answer 200.
    pub(crate) fn metrics(&self) -> String {
        let (status, body) = http(self.port, "GET", "/metrics", None).unwrap();
        assert_eq!(status, 200);
        String::from_utf8(body).unwrap()
    }

    /// Every stored record line.
    pub(crate) fn records(&self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let path = format!("/audit/records?from={}&limit=10000", out.len());
            let (status, raw) = http(self.port, "GET", &path, None).expect("records");
            assert_eq!(status, 200);
            let text = String::from_utf8(raw).unwrap();
            let page: Vec<String> = text.lines().map(str::to_string).collect();
            let n = page.len();
            out.extend(page);
            if n < 10000 {
                return out;
            }
        }
    }

    /// Sends SIGTERM and waits for exit; returns the exit code.
    pub(crate) fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        status.code()
    }

    /// SIGKILL, no drain.
    pub(crate) fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the server wrote to stderr (after it exited).
    pub(crate) fn stderr(mut self) -> String {
        let _ = self.child.wait();
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw HTTP/1.1 request with `Connection: close`; returns status and body.
pub(crate) fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let (status, _headers, body) = http_raw(port, method, path, &[], body)?;
    Ok((status, body))
}

/// One raw HTTP/1.1 request with extra headers; returns status, header block and body.
/// A `POST` whose only `Content-Type` is `content_type` (`http_raw` always sends
/// `application/json`): status and body.
pub(crate) fn post_with_content_type(
    port: u16,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: {content_type}\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let (status, _, body) = parse_http_response(&raw).unwrap();
    (status, body)
}

pub(crate) fn http_raw(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"))
    {
        head.push_str(&format!(
            "content-length: {}\r\ncontent-type: application/json\r\n",
            body.len()
        ));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_http_response(&raw)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
    out
}

/// As `admin`: registers `actor` with high trust; its token.
pub(crate) fn register(server: &Server, admin: &str, actor: &str) -> String {
    let (status, _, body) = server.json_as(
        admin,
        "POST",
        "/agents",
        Some(json!({"actor": actor, "trust_level": "high"})),
    );
    assert_eq!(status, 201, "{body}");
    body["token"]
        .as_str()
        .expect("a new agent gets a token")
        .to_string()
}

/// As `admin`: allows `action` for every agent.
pub(crate) fn allow(server: &Server, admin: &str, action: &str) {
    let (status, _, body) = server.json_as(
        admin,
        "POST",
        "/policies/allow",
        Some(json!({"action": action, "reason": "ok"})),
    );
    assert_eq!(status, 201, "{body}");
}

/// The custody key rotation records of `server`'s log, oldest first.
pub(crate) fn rotation_records(server: &Server) -> Vec<Value> {
    server
        .records()
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["action"] == "zt.audit.key.rotate")
        .collect()
}

/// Every stored record, read with an admin token (a server with credentials).
pub(crate) fn records_as(port: u16, admin: &str) -> Vec<Value> {
    let auth = format!("Bearer {admin}");
    let (status, _, raw) = http_raw(
        port,
        "GET",
        "/audit/records?limit=10000",
        &[("authorization", auth.as_str())],
        None,
    )
    .expect("records");
    assert_eq!(status, 200);
    String::from_utf8(raw)
        .expect("utf-8")
        .lines()
        .map(parse)
        .collect()
}

/// Sets `current_hash` to the hash of the record's (possibly edited) body.
pub(crate) fn rehash(record: &mut Map<String, Value>) {
    let hash = record_hash(record).to_hex();
    record.insert("current_hash".into(), Value::String(hash));
}

/// Signs the record's current hash with `signer`, as the server would.
pub(crate) fn resign(record: &mut Map<String, Value>, signer: &LocalKeySigner) {
    let digest = Digest32::from_hex(record["current_hash"].as_str().unwrap()).unwrap();
    let sig = signer.sign_digest(&digest).unwrap();
    record.insert("kms_signature".into(), serde_json::to_value(sig).unwrap());
}

/// Rewrites records from `from` on so each links to the one before and carries its own hash,
/// signed again by `signer` when given: what an attacker without the signing key would do to
/// hide an edit, or the holder of `signer` to re-chain a log as its own.
pub(crate) fn relink(
    records: &mut [Map<String, Value>],
    from: usize,
    signer: Option<&LocalKeySigner>,
) {
    for i in from..records.len() {
        if i > 0 {
            let previous = records[i - 1]["current_hash"].clone();
            records[i].insert("previous_hash".into(), previous);
        }
        rehash(&mut records[i]);
        if let Some(signer) = signer {
            resign(&mut records[i], signer);
        }
    }
}

/// Parses every stored line and checks one contiguous, unforked chain from genesis: seqs in
/// order, each record linked to the one before, every hash 64 hex digits that recomputes,
/// every signature ECDSA P-256. `when` names the moment in failures. Returns the records.
pub(crate) fn assert_one_chain(lines: &[String], when: &str) -> Vec<Value> {
    let records: Vec<Value> = lines.iter().map(|l| parse(l)).collect();
    let mut previous = GENESIS_HASH.to_string();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            r["seq"].as_u64(),
            Some(i as u64),
            "{when}: record at index {i} has seq {}",
            r["seq"]
        );
        assert_eq!(
            r["previous_hash"].as_str(),
            Some(previous.as_str()),
            "{when}: record {i} does not link to the record before it"
        );
        let hash = r["current_hash"].as_str().unwrap();
        assert_eq!(hash.len(), 64, "{when}: record {i}: {hash}");
        assert!(
            hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "{when}: record {i}: {hash}"
        );
        assert_eq!(
            record_hash(r.as_object().unwrap()).to_hex(),
            hash,
            "{when}: record {i}: current_hash does not recompute"
        );
        assert_eq!(
            r["kms_signature"]["algorithm"], "ECDSA_SHA_256",
            "{when}: record {i}"
        );
        previous = hash.to_string();
    }
    records
}

/// `zt ARGS --json` (an `audit verify`) exits 0 and reports the log valid; returns the report.
/// `when` names the moment in failures.
pub(crate) fn verify_report(args: &[&str], when: &str) -> Value {
    let out = Command::new(zt_bin())
        .args(args)
        .arg("--json")
        .output()
        .expect("run zt");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{when}: zt {} failed\nstdout: {stdout}\nstderr: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{when}: {e}: {stdout}"));
    assert_eq!(report["valid"], true, "{when}: {stdout}");
    report
}

/// The value of the sample `name` (its labels, if any, written as the exposition writes them)
/// in a Prometheus exposition, if it is there.
pub(crate) fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// [`metric`] for a sample the test needs: panics, showing the exposition, when it is absent.
pub(crate) fn sample(text: &str, name: &str) -> f64 {
    metric(text, name).unwrap_or_else(|| panic!("no sample {name} in {text}"))
}

/// Parses a JSON line.
pub(crate) fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap()
}

/// Splits a raw HTTP/1.1 response read to its end (any transport, e.g. TLS) into status,
/// header block and (de-chunked) body.
pub(crate) fn parse_http_response(raw: &[u8]) -> std::io::Result<(u16, String, Vec<u8>)> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let header_text = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = header_text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    let mut body = raw[split + 4..].to_vec();
    if header_text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, header_text, body))
}

/// The command of a stub MCP server over stdio, as strict as the protocol allows: it answers
/// `initialize`, refuses every other request with a JSON-RPC error until the client sent
/// `notifications/initialized`, then answers `tools/list` with `tools` (a JSON array of tool
/// objects). It appends every line it receives but `tools/list` to `record`, and answers no
/// tool call.
pub(crate) fn stub_mcp_server(tools: &Value, record: &Path) -> Vec<String> {
    let script = format!(
        r#"ready=no
           while IFS= read -r line; do
             id=$(printf '%s' "$line" | sed -n 's/.*"id":\([^,}}]*\).*/\1/p')
             case "$line" in
               *'"method":"tools/list"'*)
                 if [ $ready = yes ]; then
                   printf '{{"jsonrpc":"2.0","id":%s,"result":{{"tools":%s}}}}\n' "$id" '{tools}'
                 else
                   printf '{{"jsonrpc":"2.0","id":%s,"error":{{"code":-32600,"message":"not initialized"}}}}\n' "$id"
                 fi
                 continue;;
               *'"method":"initialize"'*)
                 printf '{{"jsonrpc":"2.0","id":%s,"result":{{"protocolVersion":"2025-06-18","capabilities":{{"tools":{{}}}},"serverInfo":{{"name":"stub","version":"1"}}}}}}\n' "$id";;
               *'"method":"notifications/initialized"'*) ready=yes;;
               *'"method":'*)
                 if [ $ready = no ] && [ -n "$id" ]; then
                   printf '{{"jsonrpc":"2.0","id":%s,"error":{{"code":-32600,"message":"not initialized"}}}}\n' "$id"
                 fi;;
             esac
             printf '%s\n' "$line" >> '{record}'
           done"#,
        record = record.display()
    );
    vec!["sh".into(), "-c".into(), script]
}

/// The client's `initialize` of a raw stdio session, and its `notifications/initialized`.
pub(crate) fn mcp_opening() -> [Value; 2] {
    [
        json!({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    ]
}
