//! `zt serve --nats-url`: the real binary publishing its audit log to real NATS JetStream.
//! Every record arrives once, in order, equal to its `/audit/records` line, across a `kill -9`
//! mid-load and a restart; a NATS that is down never holds up a decision, shows as lag in
//! `/metrics`, and is caught up with once it is back, also after it dies mid-session.
//!
//! Needs NATS with JetStream on 127.0.0.1:4222 (a service of this machine; `.ci/run` starts
//! it if it is down; `ZT_TEST_NATS_URL` overrides) and the `nats-server` binary for the
//! outage test; without them each test prints `SKIPPED: …` and passes, unless
//! `ZT_REQUIRE_SERVICES=1` (CI), which makes it fail. Each test uses its own stream and subject
//! and deletes the stream at the end.

use crate::common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::Context;
use common::{free_port, http, zt, Server};
use serde_json::json;

const MACHINE_NATS: &str = "nats://127.0.0.1:4222";

fn machine_nats() -> String {
    std::env::var("ZT_TEST_NATS_URL").unwrap_or_else(|_| MACHINE_NATS.to_string())
}

/// The machine's NATS, or `None` (after printing `SKIPPED: …`) when it is not reachable.
fn machine_nats_or_skip() -> Option<String> {
    let url = machine_nats();
    let address = url
        .split("://")
        .last()
        .unwrap_or(&url)
        .rsplit('@')
        .next()
        .unwrap_or(&url)
        .trim_end_matches('/')
        .to_string();
    zt_test_support::service_or_skip("NATS", zt_test_support::tcp_reachable(&address))
        .then_some(url)
}

/// The `nats-server` binary the outage test starts, or `None` (after printing `SKIPPED: …`).
fn nats_server_binary_or_skip() -> Option<String> {
    let found = zt_test_support::binary(&["/usr/sbin/nats-server", "/usr/bin/nats-server"]);
    let probe = found.as_ref().map(|_| ()).map_err(Clone::clone);
    zt_test_support::service_or_skip("the nats-server binary", probe)
        .then(|| found.ok())
        .flatten()
}

/// One message as stored: its `Zt-Seq` and `Nats-Msg-Id` headers and its payload.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    seq: u64,
    msg_id: String,
    line: String,
}

/// A stream and subject of one test on one NATS server; the stream is deleted on drop.
struct TestStream {
    rt: tokio::runtime::Runtime,
    url: String,
    name: String,
    subject: String,
}

impl TestStream {
    fn new(url: &str, tag: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let unique = format!("{tag}_{}_{nanos}", std::process::id());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        Self {
            rt,
            url: url.to_string(),
            name: format!("ZT_TEST_{}", unique.to_uppercase()),
            subject: format!("zt.test.{unique}"),
        }
    }

    /// The `zt serve` arguments that publish to this stream.
    fn serve_args(&self) -> Vec<String> {
        vec![
            "--nats-url".into(),
            self.url.clone(),
            "--nats-stream".into(),
            self.name.clone(),
            "--nats-subject".into(),
            self.subject.clone(),
        ]
    }

    fn jetstream(&self) -> Context {
        let url = self.url.clone();
        let client = self
            .rt
            .block_on(async_nats::connect(url.as_str()))
            .unwrap_or_else(|e| panic!("NATS must be reachable at {url}: {e}"));
        let _runtime = self.rt.enter();
        async_nats::jetstream::new(client)
    }

    /// Every message in the stream, in stream order (empty if the stream does not exist yet).
    fn messages(&self) -> Vec<Stored> {
        let js = self.jetstream();
        self.rt.block_on(async {
            let Ok(mut stream) = js.get_stream(&self.name).await else {
                return Vec::new();
            };
            let state = stream.info().await.unwrap().state.clone();
            if state.messages == 0 {
                return Vec::new();
            }
            let mut out = Vec::new();
            for n in state.first_sequence..=state.last_sequence {
                let m = stream.get_raw_message(n).await.unwrap();
                let header = |name: &str| m.headers.get(name).unwrap().as_str().to_string();
                out.push(Stored {
                    seq: header("Zt-Seq").parse().unwrap(),
                    msg_id: header("Nats-Msg-Id"),
                    line: String::from_utf8(m.payload.to_vec()).unwrap(),
                });
            }
            out
        })
    }

    /// Waits until the stream holds `n` messages; returns them.
    fn wait_for(&self, n: usize, within: Duration) -> Vec<Stored> {
        let deadline = Instant::now() + within;
        loop {
            let messages = self.messages();
            if messages.len() >= n || Instant::now() > deadline {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Publishes `line` again under an existing message id; true if JetStream called it a
    /// duplicate.
    fn republish(&self, stored: &Stored) -> bool {
        let js = self.jetstream();
        self.rt.block_on(async {
            let message = PublishMessage::build()
                .payload(stored.line.clone().into())
                .message_id(&stored.msg_id)
                .header("Zt-Seq", stored.seq.to_string());
            let ack = js
                .send_publish(self.subject.clone(), message)
                .await
                .unwrap();
            ack.await.unwrap().duplicate
        })
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let Ok(client) = self.rt.block_on(async_nats::connect(self.url.as_str())) else {
            return;
        };
        let _runtime = self.rt.enter();
        let js = async_nats::jetstream::new(client);
        let _ = self.rt.block_on(js.delete_stream(&self.name));
    }
}

/// Asserts the stream holds exactly the server's records: each seq once, in order, each
/// payload equal to its `/audit/records` line, one log id in every message id.
fn assert_same_log(stored: &[Stored], records: &[String]) {
    let seqs: Vec<u64> = stored.iter().map(|s| s.seq).collect();
    let expected: Vec<u64> = (0..records.len() as u64).collect();
    assert_eq!(seqs, expected, "every seq once, in order, no gap");
    let log_id = common::parse(&records[0])["current_hash"]
        .as_str()
        .unwrap()
        .to_string();
    for (s, line) in stored.iter().zip(records) {
        assert_eq!(&s.line, line, "seq {}", s.seq);
        assert_eq!(s.msg_id, format!("{log_id}:{}", s.seq));
    }
}

fn register(server: &Server, actor: &str) {
    let (status, body) = server.json("POST", "/agents", Some(json!({ "actor": actor })));
    assert_eq!(status, 201, "{body}");
}

fn decide_n(server: &Server, n: usize, tag: &str) {
    for i in 0..n {
        let (status, body) = server.decide("nats-agent", "files.read", &format!("{tag}-{i}"));
        assert!(status == 200 || status == 403, "{status}: {body}");
    }
}

/// A gauge from `/metrics`.
fn gauge(server: &Server, name: &str) -> u64 {
    common::sample(&server.metrics(), name) as u64
}

/// Waits until the gauge `name` reads `value`.
fn wait_gauge(server: &Server, name: &str, value: u64, within: Duration) {
    let deadline = Instant::now() + within;
    while gauge(server, name) != value {
        assert!(Instant::now() < deadline, "{name} never reached {value}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_record_reaches_jetstream_once_and_in_order_across_kill_9() {
    let Some(nats) = machine_nats_or_skip() else {
        return;
    };
    let stream = TestStream::new(&nats, "crash");
    let args = stream.serve_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().unwrap();

    let first = Server::start(dir.path(), &args);
    register(&first, "nats-agent");
    let started = Instant::now();
    decide_n(&first, 300, "first");
    let records = first.records();
    let stored = stream.wait_for(records.len(), Duration::from_secs(20));
    let elapsed = started.elapsed();
    assert_same_log(&stored, &records);
    wait_gauge(&first, "zt_nats_lag_records", 0, Duration::from_secs(5));
    assert_eq!(
        gauge(&first, "zt_nats_published_records"),
        records.len() as u64
    );
    assert_eq!(gauge(&first, "zt_nats_connected"), 1);
    eprintln!(
        "{} records decided and published in {elapsed:?}",
        records.len()
    );

    // A re-send under the same message id is dropped by the duplicate window.
    assert!(
        stream.republish(&stored[7]),
        "a re-send must be a duplicate"
    );
    assert_eq!(stream.messages().len(), records.len());

    // kill -9 under concurrent load: whatever was committed is published after the restart.
    let port = first.port;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (stop, answered) = (stop.clone(), answered.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let body = json!({"actor": "nats-agent", "action": "files.read", "resource": format!("load-{t}-{i}")});
                    let body = body.to_string();
                    match http(port, "POST", "/actions", Some(body.as_bytes())) {
                        Ok((200 | 403, _)) => answered.fetch_add(1, Ordering::Relaxed),
                        _ => return,
                    };
                }
            })
        })
        .collect();
    while answered.load(Ordering::Relaxed) < 400 {
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill9();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }

    let second = Server::start(dir.path(), &args);
    decide_n(&second, 50, "second");
    let records = second.records();
    assert!(records.len() >= 300 + 1 + 400 + 50);
    let stored = stream.wait_for(records.len(), Duration::from_secs(20));
    assert_same_log(&stored, &records);
    wait_gauge(&second, "zt_nats_lag_records", 0, Duration::from_secs(5));

    // SIGTERM publishes what the drain commits (the last rejection summary) before exit.
    assert_eq!(second.terminate(), Some(0));
}

/// A NATS server of the test's own, on a free port, storing into `dir`; killed on drop.
struct OwnNats {
    child: Child,
}

impl OwnNats {
    fn start(binary: &str, port: u16, dir: &Path) -> Self {
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("the outage test needs nats-server ({binary}): {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child }
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_nats_outage_never_holds_up_decisions_and_is_caught_up_with() {
    let Some(binary) = nats_server_binary_or_skip() else {
        return;
    };
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let nats_dir = tempfile::tempdir().unwrap();
    let stream = TestStream::new(&url, "outage");
    let args = stream.serve_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().unwrap();

    // Nothing listens on the NATS port: decisions are answered as fast as ever.
    let server = Server::start(dir.path(), &args);
    register(&server, "nats-agent");
    let started = Instant::now();
    decide_n(&server, 50, "down");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "50 decisions took {:?} with nats down",
        started.elapsed()
    );
    let committed = server.records().len() as u64;
    wait_gauge(
        &server,
        "zt_nats_lag_records",
        committed,
        Duration::from_secs(5),
    );
    assert_eq!(gauge(&server, "zt_nats_connected"), 0);

    // NATS comes up: the publisher catches up by itself.
    let nats = OwnNats::start(&binary, port, nats_dir.path());
    let records = server.records();
    let stored = stream.wait_for(records.len(), Duration::from_secs(30));
    assert_same_log(&stored, &records);
    wait_gauge(&server, "zt_nats_lag_records", 0, Duration::from_secs(5));

    // NATS dies mid-session and comes back on the same storage: no gap, no duplicate.
    nats.kill9();
    decide_n(&server, 50, "dead");
    // The session fails (its PubAcks time out or the client gives up reconnecting).
    wait_gauge(&server, "zt_nats_connected", 0, Duration::from_secs(30));
    let nats = OwnNats::start(&binary, port, nats_dir.path());
    decide_n(&server, 20, "back");
    let records = server.records();
    let stored = stream.wait_for(records.len(), Duration::from_secs(30));
    assert_same_log(&stored, &records);
    wait_gauge(&server, "zt_nats_lag_records", 0, Duration::from_secs(5));
    assert_eq!(server.terminate(), Some(0));
    drop(stream);
    drop(nats);
}

#[test]
fn a_message_forged_under_a_records_id_is_never_counted_as_that_record() {
    let Some(nats) = machine_nats_or_skip() else {
        return;
    };
    let stream = TestStream::new(&nats, "forged");
    let args = stream.serve_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &args);
    register(&server, "nats-agent");
    decide_n(&server, 3, "before");
    let records = server.records();
    let stored = stream.wait_for(records.len(), Duration::from_secs(20));
    assert_same_log(&stored, &records);
    wait_gauge(&server, "zt_nats_lag_records", 0, Duration::from_secs(5));

    // Someone else who may publish on the subject stores a message under the id the next
    // record will have (ids are the log's first hash, which is public, and the seq).
    let log_id = stored[0].msg_id.rsplit_once(':').unwrap().0.to_string();
    let next = records.len() as u64;
    let forged = Stored {
        seq: next,
        msg_id: format!("{log_id}:{next}"),
        line: "{\"forged\":true}".into(),
    };
    assert!(!stream.republish(&forged), "stored as a new message");
    decide_n(&server, 1, "after");

    // The record's own publish is a duplicate of the forgery: the publisher reads it back,
    // sees another payload, and never counts the record as published.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        gauge(&server, "zt_nats_lag_records"),
        1,
        "the forged message passed for the record"
    );
    let messages = stream.messages();
    assert_eq!(messages.last().unwrap().line, forged.line);
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    let said = server.stderr();
    assert!(said.contains("that is not that record"), "{said}");
    drop(stream);
}

#[test]
fn a_bad_nats_url_is_a_usage_error_that_never_echoes_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let out = zt(&[
        "serve",
        "--data-dir",
        data_dir,
        "--nats-url",
        "http://alice:hunter2@127.0.0.1:4222",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--nats-url"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    let out = zt(&["serve", "--data-dir", data_dir, "--nats-subject", "zt.>"]);
    assert_eq!(out.status.code(), Some(2));
}
