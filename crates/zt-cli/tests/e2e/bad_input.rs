//! Bad input against the real server: every refusal is a JSON error with the right status (never
//! HTML, never a crash, never a coerced decision), none writes an audit record of its own, and
//! the counts come back exactly in one signed `rejections` summary record, at shutdown or on the
//! summary interval.

// Test code: the workspace's production lints (no unwrap/expect/panic/indexing) are meant to be
// relaxed in tests (clippy.toml), but clippy only relaxes them inside `#[test]` functions, not in
// the helpers they call (nor in `common`).

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{http_raw, parse, zt, Server};
use serde_json::{json, Value};

/// The server's body limit (`zt_server::MAX_BODY_BYTES`).
const MAX_BODY: usize = 16 * 1024;

/// What a refused request must look like.
struct Refusal {
    status: u16,
    /// The `error` text, exactly or as a prefix.
    error: Expect,
    /// The summary counter it belongs to.
    cause: &'static str,
}

impl Refusal {
    /// A refusal with `status` whose error is exactly `error`.
    const fn exactly(status: u16, error: &'static str, cause: &'static str) -> Refusal {
        Refusal {
            status,
            error: Expect::Exactly(error),
            cause,
        }
    }

    /// A refusal with `status` whose error starts with `prefix`.
    const fn starts_with(status: u16, prefix: &'static str, cause: &'static str) -> Refusal {
        Refusal {
            status,
            error: Expect::StartsWith(prefix),
            cause,
        }
    }
}

enum Expect {
    Exactly(&'static str),
    StartsWith(&'static str),
}

/// Sends one raw request and checks the refusal; returns the parsed body.
fn send(
    port: u16,
    what: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    want: &Refusal,
) -> Value {
    let (status, head, raw) = http_raw(port, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{what}: no HTTP answer: {e}"));
    let text = String::from_utf8_lossy(&raw).to_string();
    assert_eq!(status, want.status, "{what}: status; body {text}");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_ascii_lowercase())
        })
        .unwrap_or_else(|| panic!("{what}: no content-type in\n{head}"));
    assert!(
        content_type.starts_with("application/json"),
        "{what}: content-type {content_type}"
    );
    assert!(
        !text.trim_start().starts_with('<') && !text.to_ascii_lowercase().contains("<html"),
        "{what}: HTML body {text}"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {text}"));
    let keys: Vec<&str> = body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 2, "{what}: exactly ok and error: {body}");
    assert_eq!(body["ok"], false, "{what}: {body}");
    let error = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: error is not a string: {body}"));
    match want.error {
        Expect::Exactly(e) => assert_eq!(error, e, "{what}"),
        Expect::StartsWith(p) => assert!(
            error.starts_with(p),
            "{what}: error `{error}` should start with `{p}`"
        ),
    }
    assert!(
        body.get("decision").is_none(),
        "{what}: no decision on a refusal: {body}"
    );
    body
}

/// POSTs a JSON text to `/actions` with an honest content-length.
fn post_actions(
    port: u16,
    what: &str,
    body: &str,
    want: &Refusal,
    counts: &mut BTreeMap<String, u64>,
) -> Value {
    *counts.entry(want.cause.to_string()).or_default() += 1;
    send(
        port,
        what,
        "POST",
        "/actions",
        &[],
        Some(body.as_bytes()),
        want,
    )
}

/// The body of a `transfer-encoding: chunked` request carrying `payload` in `chunk`-byte pieces.
fn chunked(payload: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in payload.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A syntactically valid decision request of exactly `len` bytes (padded in its context: a
/// resource is at most 1024 bytes).
fn request_of_len(len: usize) -> String {
    let empty = json!({"actor": "bad-input-agent", "action": "aws.ec2.terminate_instances", "resource": "", "context": {"pad": ""}}).to_string();
    let pad = len.checked_sub(empty.len()).expect("len too small");
    let body = json!({"actor": "bad-input-agent", "action": "aws.ec2.terminate_instances", "resource": "", "context": {"pad": "r".repeat(pad)}}).to_string();
    assert_eq!(body.len(), len);
    body
}

/// Sends the whole catalogue of bad requests; returns the expected count per cause.
fn send_every_kind_of_bad_request(port: u16) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    let malformed = Refusal::starts_with(400, "request body is not valid JSON", "malformed_json");
    let invalid = Refusal::starts_with(400, "invalid request", "invalid_request");
    let actor_required = Refusal::exactly(400, "actor is required", "missing_field");
    let action_required = Refusal::exactly(400, "action is required", "missing_field");
    let too_large = Refusal::exactly(
        413,
        "request body is larger than 16384 bytes",
        "body_too_large",
    );

    // Not JSON.
    for (what, body) in [
        ("truncated object", r#"{"actor": "bad-input-agent", "#),
        ("not json", "actor=bad-input-agent&action=x"),
        ("empty body", ""),
        (
            "trailing garbage",
            r#"{"actor":"bad-input-agent","action":"x"} trailing"#,
        ),
        ("single quotes", "{'actor': 'a', 'action': 'x'}"),
    ] {
        post_actions(port, what, body, &malformed, &mut counts);
    }

    // JSON of the wrong shape: never coerced into a decision.
    for (what, body) in [
        (
            "action array",
            json!({"actor": "bad-input-agent", "action": ["x"]}),
        ),
        ("actor number", json!({"actor": 42, "action": "x"})),
        (
            "action object",
            json!({"actor": "bad-input-agent", "action": {"name": "x"}}),
        ),
        (
            "resource number",
            json!({"actor": "bad-input-agent", "action": "x", "resource": 7}),
        ),
        (
            "resource array",
            json!({"actor": "bad-input-agent", "action": "x", "resource": ["r"]}),
        ),
        ("actor bool", json!({"actor": true, "action": "x"})),
        (
            "context string",
            json!({"actor": "bad-input-agent", "action": "x", "context": "staging"}),
        ),
        (
            "request_id number",
            json!({"actor": "bad-input-agent", "action": "x", "request_id": 1}),
        ),
        (
            "body array",
            json!([{"actor": "bad-input-agent", "action": "x"}]),
        ),
        ("body string", json!("actor=bad-input-agent")),
        ("body number", json!(12)),
    ] {
        post_actions(port, what, &body.to_string(), &invalid, &mut counts);
    }

    // Ambiguous documents (issue 9, items 14 and 15): one body must not mean two things, so a
    // key given twice at any depth, a positional array and deep nesting are refused, never
    // decided.
    let not_an_object = Refusal::exactly(
        400,
        "invalid request: the request body must be a JSON object, not an array",
        "invalid_request",
    );
    let too_deep = Refusal::starts_with(
        400,
        "invalid request: the request body is nested more than 32 levels deep",
        "invalid_request",
    );
    let deep_context = format!(
        r#"{{"actor":"bad-input-agent","action":"x","context":{}1{}}}"#,
        r#"{"a":"#.repeat(40),
        "}".repeat(40)
    );
    for (what, body, want) in [
        (
            "duplicate key in context",
            r#"{"actor":"bad-input-agent","action":"aws.ec2.terminate_instances","context":{"approval_id":"NOPE","approval_id":"CHG-1"}}"#.to_string(),
            Refusal::starts_with(400, "invalid request: duplicate key `approval_id` in `context` at line 1", "invalid_request"),
        ),
        (
            "duplicate key spelled with an escape",
            r#"{"actor":"bad-input-agent","action":"x","context":{"env":"prod","\u0065nv":"dev"}}"#.to_string(),
            Refusal::starts_with(400, "invalid request: duplicate key `env` in `context`", "invalid_request"),
        ),
        (
            "duplicate key deep in context",
            r#"{"actor":"bad-input-agent","action":"x","context":{"tool":{"args":[{"path":"/a","path":"/etc/shadow"}]}}}"#.to_string(),
            Refusal::starts_with(400, "invalid request: duplicate key `path` in `context.tool.args[0]`", "invalid_request"),
        ),
        (
            "duplicate key with a NUL",
            "{\"actor\":\"bad-input-agent\",\"action\":\"x\",\"context\":{\"a\\u0000\":1,\"a\\u0000\":2}}".to_string(),
            Refusal::starts_with(400, "invalid request: duplicate key `a\u{0}` in `context`", "invalid_request"),
        ),
        (
            "duplicate top-level key",
            r#"{"actor":"bad-input-agent","action":"x","actor":"someone-else"}"#.to_string(),
            Refusal::starts_with(400, "invalid request: duplicate key `actor` at line 1", "invalid_request"),
        ),
        (
            "positional array",
            r#"["bad-input-agent","aws.ec2.terminate_instances","i-1"]"#.to_string(),
            not_an_object,
        ),
        ("context nested 40 deep", deep_context, too_deep),
    ] {
        post_actions(port, what, &body, &want, &mut counts);
    }
    // The same rules on the AuthZEN and admin bodies, which share the extractor.
    for (what, path, body, error) in [
        (
            "authzen positional subject",
            "/access/v1/evaluation",
            r#"{"subject":["agent","bad-input-agent"],"action":{"name":"x"},"resource":{"type":"r","id":"1"}}"#,
            "invalid request: invalid type: sequence, expected struct Subject",
        ),
        (
            "authzen duplicate context key",
            "/access/v1/evaluation",
            r#"{"subject":{"type":"agent","id":"bad-input-agent"},"action":{"name":"x"},"resource":{"type":"r","id":"1"},"context":{"approval_id":"NOPE","approval_id":"CHG-1"}}"#,
            "invalid request: duplicate key `approval_id` in `context`",
        ),
        (
            "authzen batch duplicate key",
            "/access/v1/evaluations",
            r#"{"evaluations":[{"action":{"name":"x","name":"y"}}]}"#,
            "invalid request: duplicate key `name` in `evaluations[0].action`",
        ),
        (
            "admin duplicate actor",
            "/agents",
            r#"{"actor":"bad-input-agent","actor":"intruder"}"#,
            "invalid request: duplicate key `actor`",
        ),
        (
            "admin positional array",
            "/agents",
            r#"["intruder"]"#,
            "invalid request: the request body must be a JSON object, not an array",
        ),
    ] {
        let want = Refusal::starts_with(400, error, "invalid_request");
        *counts.entry(want.cause.to_string()).or_default() += 1;
        send(port, what, "POST", path, &[], Some(body.as_bytes()), &want);
    }

    // Missing or empty required fields.
    for (what, body, want) in [
        ("no actor", json!({"action": "x"}), &actor_required),
        (
            "empty actor",
            json!({"actor": "", "action": "x"}),
            &actor_required,
        ),
        ("empty object", json!({}), &actor_required),
        (
            "no action",
            json!({"actor": "bad-input-agent"}),
            &action_required,
        ),
        (
            "empty action",
            json!({"actor": "bad-input-agent", "action": ""}),
            &action_required,
        ),
        (
            "empty action with resource",
            json!({"actor": "bad-input-agent", "action": "", "resource": "r"}),
            &action_required,
        ),
    ] {
        post_actions(port, what, &body.to_string(), want, &mut counts);
    }

    // Over the limit, with an honest content-length: one byte over, and far over.
    post_actions(
        port,
        "one byte over the limit",
        &request_of_len(MAX_BODY + 1),
        &too_large,
        &mut counts,
    );
    post_actions(
        port,
        "64 KiB",
        &request_of_len(64 * 1024),
        &too_large,
        &mut counts,
    );

    // Over the limit, chunked, no content-length: the server must count what arrives.
    for (what, len, chunk) in [
        ("chunked 20 KiB", 20 * 1024, 4096),
        ("chunked one byte over", MAX_BODY + 1, 1000),
    ] {
        let body = chunked(request_of_len(len).as_bytes(), chunk);
        *counts.entry("body_too_large".into()).or_default() += 1;
        send(
            port,
            what,
            "POST",
            "/actions",
            &[
                ("transfer-encoding", "chunked"),
                ("content-type", "application/json"),
            ],
            Some(&body),
            &too_large,
        );
    }

    // The admin routes use the same extractor.
    let big_agent = json!({"actor": "a".repeat(MAX_BODY)}).to_string();
    *counts.entry("body_too_large".into()).or_default() += 1;
    send(
        port,
        "admin body too large",
        "POST",
        "/agents",
        &[],
        Some(big_agent.as_bytes()),
        &too_large,
    );
    *counts.entry("invalid_request".into()).or_default() += 1;
    send(
        port,
        "admin actor number",
        "POST",
        "/agents",
        &[],
        Some(br#"{"actor": 1}"#),
        &invalid,
    );
    *counts.entry("malformed_json".into()).or_default() += 1;
    send(
        port,
        "admin malformed",
        "POST",
        "/policies/allow",
        &[],
        Some(b"{"),
        &malformed,
    );
    // A query the records route does not know.
    *counts.entry("invalid_request".into()).or_default() += 1;
    send(
        port,
        "unknown query parameter",
        "GET",
        "/audit/records?evil=1",
        &[],
        None,
        &invalid,
    );

    // Unknown routes and methods.
    let not_found = Refusal::starts_with(404, "no route for `/", "unknown_route");
    let no_method = Refusal::exactly(405, "method not allowed", "unknown_route");
    for (what, method, path, want) in [
        ("GET unknown", "GET", "/nope", &not_found),
        ("POST unknown", "POST", "/action", &not_found),
        ("nested unknown", "GET", "/audit/nope/../x", &not_found),
        ("html-looking path", "GET", "/%3Cscript%3E", &not_found),
        ("GET /actions", "GET", "/actions", &no_method),
        ("PUT /actions", "PUT", "/actions", &no_method),
        ("DELETE /actions", "DELETE", "/actions", &no_method),
        ("POST /health", "POST", "/health", &no_method),
    ] {
        *counts.entry(want.cause.to_string()).or_default() += 1;
        let body = (method != "GET").then_some(&b"{}"[..]);
        send(port, what, method, path, &[], body, want);
    }

    // Web pages of other hosts (DNS rebinding makes them same-origin with 127.0.0.1): under
    // --auth none one could register an agent and allow its actions.
    let foreign = Refusal::starts_with(403, "refused: ", "foreign_page");
    let register = br#"{"actor":"page-agent"}"#;
    for (what, headers) in [
        (
            "a page of another host",
            &[("origin", "http://evil.example")][..],
        ),
        ("an opaque origin", &[("origin", "null")][..]),
        (
            "two origins",
            &[
                ("origin", "http://localhost"),
                ("origin", "http://evil.example"),
            ][..],
        ),
    ] {
        *counts.entry("foreign_page".into()).or_default() += 1;
        send(
            port,
            what,
            "POST",
            "/agents",
            headers,
            Some(register),
            &foreign,
        );
    }
    // The page's own name as the Host (http_raw sends 127.0.0.1, so the request is written here).
    *counts.entry("foreign_page".into()).or_default() += 1;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = format!(
        "POST /agents HTTP/1.1\r\nhost: evil.example:{port}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        register.len()
    );
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    std::io::Write::write_all(&mut stream, register).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut raw).unwrap();
    let (status, _, body) = common::parse_http_response(&raw).unwrap();
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    // A page of this machine is a local client like any other.
    let (status, _, _) = http_raw(
        port,
        "GET",
        "/health",
        &[("origin", "http://localhost:5173")],
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    let (_, _, agents) = http_raw(port, "GET", "/agents", &[], None).unwrap();
    let agents = String::from_utf8_lossy(&agents);
    assert!(agents.contains("bad-input-agent"), "{agents}");
    assert!(
        !agents.contains("page-agent"),
        "no page registered an agent: {agents}"
    );
    counts
}

fn health_ok(server: &Server) {
    let (s, h) = server.json("GET", "/health", None);
    assert_eq!(s, 200, "{h}");
    assert_eq!(h["ok"], true, "{h}");
}

fn rejection_records(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| parse(l))
        .filter(|r| r["kind"] == "rejections")
        .collect()
}

fn counts_of(record: &Value) -> BTreeMap<String, u64> {
    serde_json::from_value(record["counts"].clone())
        .unwrap_or_else(|e| panic!("counts: {e}: {record}"))
}

fn assert_summary_shape(record: &Value, counts: &BTreeMap<String, u64>) {
    let total: u64 = counts.values().sum();
    assert_eq!(record["actor"], "zt-server", "{record}");
    assert_eq!(record["action"], "zt.server.rejected_requests", "{record}");
    assert_eq!(record["decision"], "deny", "{record}");
    assert_eq!(
        record["reason"],
        format!("{total} requests were refused before any decision"),
        "{record}"
    );
    assert_eq!(
        record["kms_signature"]["algorithm"], "ECDSA_SHA_256",
        "{record}"
    );
}

fn verify_data_dir(server: &Server, records: usize) {
    let out = zt(&[
        "audit",
        "verify",
        "--data-dir",
        server.data_dir.to_str().unwrap(),
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["records"], records, "{report}");
}

/// Starts a server on `data_dir` with `args` and registers `bad-input-agent`.
fn start_with_agent(data_dir: &std::path::Path, args: &[&str]) -> Server {
    let server = Server::start(data_dir, args);
    let (s, body) = server.json("POST", "/agents", Some(json!({"actor": "bad-input-agent"})));
    assert_eq!(s, 201, "{body}");
    server
}

#[test]
fn bad_input_is_refused_as_json_counted_and_summarized_once_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_agent(dir.path(), &[]);
    let (s, _) = server.decide("bad-input-agent", "aws.ec2.terminate_instances", "i-1");
    assert_eq!(s, 403);
    let before = server.records();
    assert_eq!(before.len(), 2);

    let counts = send_every_kind_of_bad_request(server.port);
    let total: u64 = counts.values().sum();
    assert_eq!(
        counts.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "body_too_large",
            "foreign_page",
            "invalid_request",
            "malformed_json",
            "missing_field",
            "unknown_route"
        ]
    );

    // Still alive, still answering, and not one record written for any of it.
    health_ok(&server);
    assert_eq!(
        server.records(),
        before,
        "refusals must not add records while the server runs"
    );
    let (s, head) = server.json("GET", "/audit/head", None);
    assert_eq!(s, 200);
    assert_eq!(head["records"], 2);
    // A real request still gets a real decision on the same server.
    let (s, b) = server.decide("bad-input-agent", "aws.ec2.terminate_instances", "i-2");
    assert_eq!(s, 403, "{b}");
    let before = server.records();
    assert_eq!(before.len(), 3);

    // The metrics count every refusal by cause as it happens.
    let text = server.metrics();
    for (cause, n) in &counts {
        let name = format!("zt_rejected_requests_total{{cause=\"{cause}\"}}");
        let counted = common::metric(&text, &name).map(|v| v as u64);
        assert_eq!(counted, Some(*n), "{name} in\n{text}");
    }

    assert_eq!(server.terminate(), Some(0));

    let server = Server::start(dir.path(), &[]);
    let after = server.records();
    assert_eq!(
        after.len(),
        before.len() + 1,
        "exactly one summary record at shutdown"
    );
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "the earlier records are untouched"
    );
    let summaries = rejection_records(&after);
    assert_eq!(summaries.len(), 1, "exactly one rejections record");
    let last = parse(after.last().unwrap());
    assert_eq!(last["kind"], "rejections", "{last}");
    assert_eq!(last["seq"], before.len());
    assert_eq!(
        last["previous_hash"],
        parse(&before[before.len() - 1])["current_hash"]
    );
    assert_eq!(counts_of(&last), counts, "summary counts");
    assert_eq!(counts_of(&last).values().sum::<u64>(), total);
    assert_summary_shape(&last, &counts);

    // The chain verifies, with the summary in it, while the server runs and after it stops.
    verify_data_dir(&server, after.len());
    let data_dir = server.data_dir.clone();
    assert_eq!(server.terminate(), Some(0));
    let out = zt(&[
        "audit",
        "verify",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(
        report["records"],
        after.len(),
        "a clean stop with nothing refused writes no empty summary"
    );
}

#[test]
fn rejection_summaries_are_written_on_the_interval_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_agent(dir.path(), &["--rejection-summary-interval", "1"]);
    let before = server.records().len();

    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..3 {
        let (s, b) = server.json("POST", "/actions", None);
        assert_eq!((s, b["ok"].clone()), (400, json!(false)), "{b}");
        *expected.entry("malformed_json".into()).or_default() += 1;
    }
    for _ in 0..2 {
        let (s, b) = server.json("GET", "/no-such-route", None);
        assert_eq!((s, b["ok"].clone()), (404, json!(false)), "{b}");
        *expected.entry("unknown_route".into()).or_default() += 1;
    }
    let (s, b) = server.json(
        "POST",
        "/actions",
        Some(json!({"actor": "bad-input-agent"})),
    );
    assert_eq!((s, b["error"].as_str()), (400, Some("action is required")));
    *expected.entry("missing_field".into()).or_default() += 1;

    std::thread::sleep(Duration::from_millis(2500));
    // Give a slow machine a little longer before calling it missing.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lines = server.records();
    while rejection_records(&lines)
        .iter()
        .map(counts_of)
        .fold(0, |n, c| n + c.values().sum::<u64>())
        < 6
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
        lines = server.records();
    }
    let summaries = rejection_records(&lines);
    assert!(
        !summaries.is_empty(),
        "no rejections record within the interval: {lines:?}"
    );
    // The requests above took milliseconds; a tick may still fall among them and split the
    // counts over two records, but never lose or double one.
    assert!(summaries.len() <= 2, "{summaries:?}");
    let mut summed: BTreeMap<String, u64> = BTreeMap::new();
    for s in &summaries {
        let c = counts_of(s);
        assert_summary_shape(s, &c);
        for (k, v) in c {
            *summed.entry(k).or_default() += v;
        }
    }
    assert_eq!(summed, expected);
    assert_eq!(
        lines.len(),
        before + summaries.len(),
        "only summaries were added"
    );
    health_ok(&server);

    // Quiet intervals write nothing.
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(server.records().len(), lines.len(), "no empty summaries");

    // More refusals: a new summary with only the new counts.
    let (s, _) = server.json("GET", "/actions", None);
    assert_eq!(s, 405);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut later = server.records();
    while later.len() == lines.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        later = server.records();
    }
    assert_eq!(later.len(), lines.len() + 1, "one more summary");
    let newest = parse(later.last().unwrap());
    assert_eq!(newest["kind"], "rejections");
    assert_eq!(
        counts_of(&newest),
        BTreeMap::from([("unknown_route".to_string(), 1)])
    );

    verify_data_dir(&server, later.len());
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn the_body_limit_is_exact_and_chunked_bodies_under_it_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_agent(dir.path(), &[]);

    // Exactly the limit: a decision.
    let body = request_of_len(MAX_BODY);
    let (s, _, raw) =
        http_raw(server.port, "POST", "/actions", &[], Some(body.as_bytes())).unwrap();
    let answer: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(s, 403, "{answer}");
    assert_eq!(answer["decision"], "deny");
    // The padding is in the context, whose hash the answer carries.
    let sent: Value = serde_json::from_str(&body).unwrap();
    let context = zt_contract::canonical::canonical_json(&sent["context"]);
    assert!(context.len() > MAX_BODY - 200);
    assert_eq!(
        answer["evidence"]["context_sha256"],
        zt_contract::Digest32::sha256(context.as_bytes()).to_hex(),
        "the whole body was read"
    );

    // Chunked, under the limit: a decision too.
    let post_chunked = |len: usize| {
        let body = chunked(request_of_len(len).as_bytes(), 3000);
        http_raw(
            server.port,
            "POST",
            "/actions",
            &[
                ("transfer-encoding", "chunked"),
                ("content-type", "application/json"),
            ],
            Some(&body),
        )
        .unwrap()
    };
    let (s, _, raw) = post_chunked(MAX_BODY);
    let answer: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(s, 403, "{answer}");
    assert_eq!(answer["decision"], "deny");

    // One byte more, either way: 413, and no record.
    let before = server.records().len();
    assert_eq!(before, 3);
    let body = request_of_len(MAX_BODY + 1);
    let (s, _, _) = http_raw(server.port, "POST", "/actions", &[], Some(body.as_bytes())).unwrap();
    assert_eq!(s, 413);
    let (s, _, _) = post_chunked(MAX_BODY + 1);
    assert_eq!(s, 413);
    assert_eq!(server.records().len(), before);
    health_ok(&server);
    assert_eq!(server.terminate(), Some(0));
}
