//! SIEM export end to end, against the real `zt` binary: `zt audit export` in both formats
//! and from every kind of source, and the live `GET /audit/stream` (server-sent events) with
//! resumption, authentication and parameter errors.

use crate::common;
use crate::ocsf_schema;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{http_raw, zt, Server};
use serde_json::Value;

/// Makes `n` decisions (unregistered actors: each is a logged deny).
fn decide(server: &Server, n: usize, tag: &str) {
    for i in 0..n {
        let (status, _) = server.decide(&format!("{tag}-{i}"), "demo.action", "res");
        assert_eq!(status, 403);
    }
}

fn export(args: &[&str], out: &Path) -> String {
    let mut all = vec!["audit", "export", "--output", out.to_str().unwrap()];
    all.extend_from_slice(args);
    let run = zt(&all);
    assert!(
        run.status.success(),
        "{all:?}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::read_to_string(out).unwrap()
}

#[test]
fn export_jsonl_is_the_stored_log_from_every_source() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    decide(&server, 5, "a");
    let records = server.records();
    assert_eq!(records.len(), 5);
    let out = dir.path().join("out.jsonl");

    let via_url = export(&["--format", "jsonl", "--url", &server.url()], &out);
    assert_eq!(via_url.lines().collect::<Vec<_>>(), records);
    let via_dir = export(&["--data-dir", server.data_dir.to_str().unwrap()], &out);
    assert_eq!(via_dir, via_url, "jsonl is the default format");

    // The export still verifies as a log: it is the stored lines, byte for byte.
    let keys = dir.path().join("keys.json");
    let (_, raw) = common::http(server.port, "GET", "/audit/keys", None).unwrap();
    std::fs::write(&keys, raw).unwrap();
    let verify = zt(&[
        "audit",
        "verify",
        "--file",
        out.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
    ]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    let from = export(&["--from", "3", "--url", &server.url()], &out);
    assert_eq!(from.lines().collect::<Vec<_>>(), records[3..]);
    let past_end = export(&["--from", "99", "--url", &server.url()], &out);
    assert!(past_end.is_empty());

    // The whole audit content: private like the log, even over a file others could read, and
    // never written through a link someone placed where the export goes.
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out), 0o600);
    let shared = dir.path().join("shared.jsonl");
    std::fs::write(&shared, "").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
    export(&["--url", &server.url()], &shared);
    assert_eq!(mode(&shared), 0o600);
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, "kept").unwrap();
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let refused = zt(&[
        "audit",
        "export",
        "--url",
        &server.url(),
        "--output",
        link.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("symbolic link"));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "kept");
}

#[test]
fn export_ocsf_conforms_to_the_ocsf_schema() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (status, _) = server.json(
        "POST",
        "/agents",
        Some(serde_json::json!({"actor": "agent-1"})),
    );
    assert_eq!(status, 201);
    decide(&server, 3, "b");
    let records = server.records();
    let out = dir.path().join("out.ocsf");
    let exported = export(&["--format", "ocsf", "--url", &server.url()], &out);
    let events: Vec<Value> = exported.lines().map(common::parse).collect();
    assert_eq!(events.len(), records.len());
    let schema = ocsf_schema::Schema::load();
    for (seq, (event, record)) in events.iter().zip(&records).enumerate() {
        let errors = schema.check(event);
        assert!(errors.is_empty(), "event {seq}: {errors:#?}");
        let record = common::parse(record);
        assert_eq!(event["metadata"]["sequence"], seq as u64);
        assert_eq!(event["metadata"]["uid"], record["current_hash"]);
        assert_eq!(event["api"]["operation"], record["action"]);
        let action = if record["decision"] == "allow" { 1 } else { 2 };
        assert_eq!(event["action_id"], action);
    }
    let from = export(
        &[
            "--format",
            "ocsf",
            "--from",
            "2",
            "--data-dir",
            server.data_dir.to_str().unwrap(),
        ],
        &out,
    );
    let firsts: Vec<Value> = from.lines().map(common::parse).collect();
    assert_eq!(firsts.len(), records.len() - 2);
    assert_eq!(firsts[0]["metadata"]["sequence"], 2);
}

#[test]
fn export_usage_errors_exit_2_and_unreachable_sources_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad_format = zt(&[
        "audit",
        "export",
        "--format",
        "xml",
        "--url",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(bad_format.status.code(), Some(2));
    let no_source = zt(&["audit", "export"]);
    assert_eq!(no_source.status.code(), Some(2));
    let unreachable = zt(&[
        "audit",
        "export",
        "--url",
        &format!("http://127.0.0.1:{}", common::free_port()),
    ]);
    assert_eq!(unreachable.status.code(), Some(1));
    let missing = zt(&[
        "audit",
        "export",
        "--data-dir",
        dir.path().join("nothing").to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(1));
}

/// One server-sent event.
#[derive(Debug)]
struct SseEvent {
    id: Option<String>,
    event: String,
    data: String,
}

/// A raw HTTP/1.0 client reading a `text/event-stream` as it arrives.
struct SseClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl SseClient {
    /// Sends the request; returns status, header block and the client positioned at the body.
    fn connect(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String, SseClient) {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut head = format!("GET {path} HTTP/1.0\r\nhost: 127.0.0.1\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        let mut client = SseClient {
            stream,
            buf: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let split = loop {
            if let Some(at) = client.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            assert!(client.fill(), "connection closed before the response head");
            assert!(Instant::now() < deadline, "no response head");
        };
        let header = String::from_utf8_lossy(&client.buf[..split]).to_string();
        client.buf.drain(..split + 4);
        let status = header.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, header, client)
    }

    /// Reads what is available; false once the server closed the connection.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                true
            }
            Err(e) => panic!("read: {e}"),
        }
    }

    /// The next event (keep-alive comments skipped), or `None` if none came within `wait`.
    fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + wait;
        loop {
            while let Some(at) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block = String::from_utf8(self.buf.drain(..at + 2).collect()).unwrap();
                let mut event = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim_start().to_string());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim_start().to_string();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        event.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        any = true;
                    }
                }
                if any {
                    return Some(event);
                }
            }
            if Instant::now() > deadline || !self.fill() {
                return None;
            }
        }
    }

    /// Exactly the records `from..to`, in order, with contiguous ids.
    fn expect_records(&mut self, from: usize, to: usize, records: &[String]) {
        for (seq, record) in records.iter().enumerate().take(to).skip(from) {
            let event = self
                .next(Duration::from_secs(10))
                .unwrap_or_else(|| panic!("record {seq} did not arrive"));
            assert_eq!(event.event, "record");
            assert_eq!(event.id.as_deref(), Some(seq.to_string().as_str()));
            assert_eq!(&event.data, record, "record {seq}");
        }
        assert!(records.len() >= to, "only {} records", records.len());
    }
}

#[test]
fn stream_sends_history_then_live_commits_and_resumes_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    decide(&server, 4, "early");

    let (status, headers, mut client) =
        SseClient::connect(server.port, "/audit/stream?from=1", &[]);
    assert_eq!(status, 200);
    assert!(headers
        .to_ascii_lowercase()
        .contains("content-type: text/event-stream"));
    client.expect_records(1, 4, &server.records());

    decide(&server, 3, "live");
    client.expect_records(4, 7, &server.records());
    assert!(
        client.next(Duration::from_millis(600)).is_none(),
        "nothing more was committed"
    );
    drop(client);

    // Records committed while disconnected arrive on resumption, from Last-Event-ID + 1
    // (which wins over `from`), and nothing before it.
    decide(&server, 2, "gap");
    let (status, _, mut resumed) = SseClient::connect(
        server.port,
        "/audit/stream?from=0",
        &[("Last-Event-ID", "6")],
    );
    assert_eq!(status, 200);
    let records = server.records();
    assert_eq!(records.len(), 9);
    resumed.expect_records(7, 9, &records);
    decide(&server, 1, "after");
    resumed.expect_records(9, 10, &server.records());
    assert!(resumed.next(Duration::from_millis(600)).is_none());
}

#[test]
fn stream_in_ocsf_conforms_to_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    decide(&server, 2, "o");
    let (status, _, mut client) = SseClient::connect(server.port, "/audit/stream?format=ocsf", &[]);
    assert_eq!(status, 200);
    let schema = ocsf_schema::Schema::load();
    for seq in 0..2u64 {
        let event = client.next(Duration::from_secs(10)).unwrap();
        assert_eq!(event.id, Some(seq.to_string()));
        let ocsf: Value = serde_json::from_str(&event.data).unwrap();
        assert!(schema.check(&ocsf).is_empty(), "{:#?}", schema.check(&ocsf));
        assert_eq!(ocsf["metadata"]["sequence"], seq);
    }
}

#[test]
fn stream_bad_parameters_are_400_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    for (path, headers) in [
        ("/audit/stream?format=xml", vec![]),
        ("/audit/stream?from=-1", vec![]),
        ("/audit/stream?limit=5", vec![]),
        ("/audit/stream", vec![("last-event-id", "abc")]),
    ] {
        let (status, _, body) = http_raw(server.port, "GET", path, &headers, None).unwrap();
        assert_eq!(status, 400, "{path}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["ok"], false);
        assert!(body["error"].is_string());
    }
}

#[test]
fn stream_needs_an_admin_credential_under_credentials_auth() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_auth(&dir.path().join("data"), "credentials", &[]);
    let (status, _, body) = http_raw(server.port, "GET", "/audit/stream", &[], None).unwrap();
    assert_eq!(status, 401);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["ok"], false);
    let bearer = format!("Bearer {}", server.admin_token());
    let (status, _, mut client) = SseClient::connect(
        server.port,
        "/audit/stream",
        &[("authorization", bearer.as_str())],
    );
    assert_eq!(status, 200);
    assert!(
        client.next(Duration::from_millis(300)).is_none(),
        "empty log, no events"
    );
}

#[test]
fn an_open_stream_does_not_hold_up_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    decide(&server, 1, "s");
    let (status, _, mut client) = SseClient::connect(server.port, "/audit/stream", &[]);
    assert_eq!(status, 200);
    assert!(client.next(Duration::from_secs(10)).is_some());
    let started = Instant::now();
    assert_eq!(server.terminate(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_stream_ends_once_its_admin_is_removed() {
    use std::os::unix::fs::PermissionsExt;
    const ALICE: &str = "zt_admin_test-alice-0123456789abcdefghijklmnopqrstu";
    const BOB: &str = "zt_admin_test-bob-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456";
    let dir = tempfile::tempdir().unwrap();
    let admins = dir.path().join("admins");
    let write_admins = |text: String| {
        std::fs::write(&admins, text).unwrap();
        std::fs::set_permissions(&admins, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    write_admins(format!("alice {ALICE}\nbob {BOB}\n"));
    let server = Server::start_with_auth(
        &dir.path().join("data"),
        "credentials",
        &["--admin-token-file", admins.to_str().unwrap()],
    );
    let register = |actor: &str| {
        let (status, _, body) = server.json_as(
            ALICE,
            "POST",
            "/agents",
            Some(serde_json::json!({"actor": actor})),
        );
        assert_eq!(status, 201, "{body}");
    };
    let bearer = format!("Bearer {BOB}");
    let (status, _, mut client) = SseClient::connect(
        server.port,
        "/audit/stream",
        &[("authorization", bearer.as_str())],
    );
    assert_eq!(status, 200);
    register("first");
    let event = client.next(Duration::from_secs(10)).expect("the record");
    assert_eq!(event.event, "record");

    // Bob is removed from the file; once the server has reloaded it, his token is refused...
    write_admins(format!("alice {ALICE}\n"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.json_as(BOB, "GET", "/agents", None).0 != 401 {
        assert!(
            Instant::now() < deadline,
            "the admin token file was not reloaded"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // ...and the stream he opened before sends no further record: it ends with an error.
    register("second");
    let event = client.next(Duration::from_secs(10)).expect("an event");
    assert_eq!(event.event, "error", "{}", event.data);
    assert!(event.data.contains("no longer valid"), "{}", event.data);
    assert!(
        client.next(Duration::from_secs(2)).is_none(),
        "the stream ended"
    );
}

#[test]
fn a_stream_opened_with_a_jwt_svid_ends_when_it_expires() {
    use crate::workload::{es256, now, svid_claims, EcSigner, ADMIN, AUDIENCE};
    let dir = tempfile::tempdir().unwrap();
    let signer = EcSigner::new();
    let jwks = dir.path().join("bundle.jwks");
    std::fs::write(
        &jwks,
        serde_json::json!({"keys": [signer.jwk("es-1")]}).to_string(),
    )
    .unwrap();
    let server = Server::start_with_auth(
        &dir.path().join("data"),
        "credentials",
        &[
            "--single-admin",
            "--jwt-svid-jwks",
            jwks.to_str().unwrap(),
            "--jwt-svid-audience",
            AUDIENCE,
            "--admin-spiffe-id",
            ADMIN,
        ],
    );
    // An admin's JWT-SVID past its `exp`, still inside the 30 s leeway for about 8 s more.
    let mut claims = svid_claims(ADMIN);
    claims["exp"] = serde_json::json!(now() - 22);
    let jwt = signer.sign(es256("es-1"), claims);
    let bearer = format!("Bearer {jwt}");
    let (status, _, mut client) = SseClient::connect(
        server.port,
        "/audit/stream",
        &[("authorization", bearer.as_str())],
    );
    assert_eq!(status, 200);
    let admin = server.admin_token();
    let register = |actor: &str| {
        let body = Some(serde_json::json!({"actor": actor}));
        let (status, _, answer) = server.json_as(&admin, "POST", "/agents", body);
        assert_eq!(status, 201, "{answer}");
    };
    register("first");
    assert_eq!(
        client.next(Duration::from_secs(10)).unwrap().event,
        "record"
    );
    // Once the leeway is over, the stream sends no further record: it ends with an error.
    std::thread::sleep(Duration::from_secs(10));
    register("second");
    let event = client.next(Duration::from_secs(10)).expect("an event");
    assert_eq!(event.event, "error", "{}", event.data);
    assert!(event.data.contains("no longer valid"), "{}", event.data);
}
