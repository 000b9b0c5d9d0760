//! The A2A proxy end to end: the real `zt serve` decides, the real `zt a2a-proxy` enforces, and
//! the official `a2a-sdk` (Python) is on both sides: an agent whose executor leaves a side
//! effect for every message it runs, and a client that finds the agent through the proxy's
//! card. Skipped, with the reason printed, when python with a2a-sdk is absent (the venv made
//! by `scripts/setup-peers.sh`), unless `ZT_REQUIRE_SERVICES=1`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{free_port, http_raw, records_as, start_a2a_proxy, wait_for_card, Running, Server};
use serde_json::{json, Value};

const AGENT: &str = "echo_agent";
const ACTOR: &str = "a2a-caller";

const POLICY: &str = r#"@id("echo-agent")
@reason("the echo agent may be used")
permit(principal, action in Action::"a2a.echo_agent.*", resource);

@id("vault")
@reason("the vault is off limits")
forbid(principal, action, resource == Resource::"vault");
"#;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn peers_dir() -> PathBuf {
    workspace().join("crates/zt-a2a/tests/peers")
}

/// The python with a2a-sdk, or `None` (the test is skipped) with the reason printed.
fn python() -> Option<PathBuf> {
    let python = std::env::var_os("ZT_A2A_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/python"));
    let usable = Command::new(&python)
        .args(["-c", "import a2a.server, a2a.client, uvicorn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if usable {
        return Some(python);
    }
    let reason = format!(
        "{} cannot import a2a-sdk (run scripts/setup-peers.sh or set ZT_A2A_PYTHON)",
        python.display()
    );
    if std::env::var("ZT_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("ZT_REQUIRE_SERVICES=1 but {reason}");
    }
    eprintln!("skipped: {reason}");
    None
}

/// The test agent (a2a-sdk server) and the file its executor appends to.
struct Agent {
    port: u16,
    side_effects: PathBuf,
    _process: Running,
}

impl Agent {
    fn start(python: &Path, dir: &Path) -> Agent {
        let port = free_port();
        let side_effects = dir.join("side-effects.jsonl");
        let mut child = Command::new(python)
            .arg(peers_dir().join("agent_server.py"))
            .args(["--port", &port.to_string()])
            .arg("--side-effects")
            .arg(&side_effects)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the agent");
        wait_for_card(port, &mut child, "the a2a-sdk agent");
        Agent {
            port,
            side_effects,
            _process: Running(child),
        }
    }

    /// The texts the agent's executor ran.
    fn executed(&self) -> Vec<String> {
        std::fs::read_to_string(&self.side_effects)
            .unwrap_or_default()
            .lines()
            .map(|l| common::parse(l)["text"].as_str().unwrap().to_string())
            .collect()
    }
}

/// A running `zt a2a-proxy`.
struct Proxy {
    port: u16,
    _process: Running,
}

impl Proxy {
    fn start(upstream: u16, control_plane: &str, token: &str) -> Proxy {
        let (process, port) = start_a2a_proxy(upstream, AGENT, control_plane, ACTOR, token);
        Proxy {
            port,
            _process: process,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One raw JSON-RPC call; returns the status and the parsed answer.
    fn rpc(&self, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
        let (status, _, raw) = http_raw(
            self.port,
            "POST",
            "/",
            headers,
            Some(body.to_string().as_bytes()),
        )
        .expect("proxy answers");
        let answer = serde_json::from_slice(&raw)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&raw)));
        (status, answer)
    }
}

/// Runs the official client: `--url` the proxy; returns its JSON output lines.
fn client(python: &Path, url: &str, text: &str, extra: &[&str]) -> Vec<Value> {
    let output = Command::new(python)
        .arg(peers_dir().join("client.py"))
        .args(["--url", url, "--text", text])
        .args(extra)
        .output()
        .expect("run the client");
    assert!(
        output.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(common::parse)
        .collect()
}

/// The events of a client run (after the line listing the card's URLs).
fn events_of(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| l.get("event").cloned())
        .collect()
}

/// A control plane with credentials, the test policy, and a registered actor.
fn control_plane(dir: &Path) -> (Server, String, String) {
    let policy = dir.join("a2a.cedar");
    std::fs::write(&policy, POLICY).unwrap();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let server = Server::start_with_auth(
        &data,
        "credentials",
        &["--single-admin", "--policy", policy.to_str().unwrap()],
    );
    let admin = server.admin_token();
    let (status, _, body) =
        server.json_as(&admin, "POST", "/agents", Some(json!({"actor": ACTOR})));
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    (server, admin, token)
}

/// What most tests run: the control plane, the agent, and the proxy in front of it deciding
/// as the registered actor. `None` (skipped) without python and a2a-sdk.
struct Setup {
    python: PathBuf,
    server: Server,
    admin: String,
    agent: Agent,
    proxy: Proxy,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn start() -> Option<Setup> {
        let python = python()?;
        let dir = tempfile::tempdir().unwrap();
        let (server, admin, token) = control_plane(dir.path());
        let agent = Agent::start(&python, dir.path());
        let proxy = Proxy::start(agent.port, &server.url(), &token);
        Some(Setup {
            python,
            server,
            admin,
            agent,
            proxy,
            _dir: dir,
        })
    }

    /// The official client through the proxy (see [`client`]).
    fn client(&self, text: &str, extra: &[&str]) -> Vec<Value> {
        client(&self.python, &self.proxy.url(), text, extra)
    }

    /// The decision records the proxy caused: (action, resource, decision).
    fn decisions(&self) -> Vec<(String, String, String)> {
        records_as(self.server.port, &self.admin)
            .iter()
            .filter(|r| r["actor"] == ACTOR)
            .map(|r| {
                (
                    r["action"].as_str().unwrap().to_string(),
                    r["resource"].as_str().unwrap().to_string(),
                    r["decision"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

fn decision(action: &str, resource: &str, decision: &str) -> (String, String, String) {
    (action.into(), resource.into(), decision.into())
}

/// A client run refused by the proxy: exactly one event, a rejected task whose message says
/// `why`, carrying the deny. Returns the task.
fn assert_rejected(lines: &[Value], why: &str) -> Value {
    let events = events_of(lines);
    assert_eq!(events.len(), 1, "{lines:?}");
    let task = events[0]["task"].clone();
    assert_eq!(task["status"]["state"], "TASK_STATE_REJECTED", "{task}");
    let said = task["status"]["message"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(said.contains(why), "`{why}` not in `{said}`");
    assert_eq!(task["metadata"]["zt"]["decision"], "deny", "{task}");
    task
}

/// The last event of a run is the task's completion.
fn assert_completed(events: &[Value]) {
    let last = events.last().expect("events");
    assert_eq!(
        last["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{events:?}"
    );
}

#[test]
fn messages_are_decided_before_they_reach_the_agent() {
    let Some(setup) = Setup::start() else { return };
    let Setup { agent, proxy, .. } = &setup;

    // The card the client resolves points at the proxy only.
    let lines = setup.client("hello through the proxy", &["--resource", "docs"]);
    let card_urls = lines[0]["card_urls"].as_array().unwrap();
    assert!(!card_urls.is_empty());
    for url in card_urls {
        assert_eq!(url.as_str().unwrap(), format!("{}/", proxy.url()));
    }
    // Allowed: the agent ran it and answered through the proxy.
    let events = events_of(&lines);
    assert_eq!(events.len(), 1, "{lines:?}");
    let task = &events[0]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(
        task["artifacts"][0]["parts"][0]["text"],
        "echo: hello through the proxy"
    );
    assert_eq!(agent.executed(), ["hello through the proxy"]);

    // Denied: a rejected task saying why, with the signed decision; the agent never saw it.
    let lines = setup.client("open the vault", &["--resource", "vault"]);
    let task = assert_rejected(&lines, "the vault is off limits");
    let zt = &task["metadata"]["zt"];
    assert_eq!(zt["action"], "a2a.echo_agent.send_message");
    assert_eq!(zt["audit"]["current_hash"].as_str().unwrap().len(), 64);
    assert_eq!(agent.executed(), ["hello through the proxy"]);

    // Without a resource in the metadata, the message text is the resource.
    let long = "x".repeat(150);
    setup.client(&long, &[]);

    // Another method, denied: a JSON-RPC error carrying the decision, not forwarded.
    let (status, body) = proxy.rpc(
        &[("a2a-version", "1.0")],
        &json!({"jsonrpc": "2.0", "id": 9, "method": "GetTask", "params": {"id": "vault"}}),
    );
    assert_eq!(status, 200);
    assert_eq!(body["id"], 9);
    assert_eq!(body["error"]["code"], zt_a2a::DENIED_CODE);
    assert_eq!(
        body["error"]["data"]["zt"]["action"],
        "a2a.echo_agent.get_task"
    );
    // Allowed, it reaches the agent, whose own answer comes back (the task does not exist).
    let (_, body) = proxy.rpc(
        &[("a2a-version", "1.0")],
        &json!({"jsonrpc": "2.0", "id": 10, "method": "GetTask", "params": {"id": "no-such-task"}}),
    );
    assert_eq!(body["error"]["code"], -32001, "{body}");
    // A second name for the task, which the agent ignores (it reads `id`): refused, neither
    // decided on nor forwarded (it was decided on `docs`, allowed, while the agent looked up
    // `vault`).
    let (status, body) = proxy.rpc(
        &[("a2a-version", "1.0")],
        &json!({"jsonrpc": "2.0", "id": 11, "method": "GetTask", "params": {"id": "vault", "taskId": "docs"}}),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["id"], 11);
    assert_eq!(body["error"]["code"], -32602, "{body}");
    // A body in another charset is refused before anything is decided or forwarded.
    let (status, _) = common::post_with_content_type(
        proxy.port,
        "/",
        "application/json; charset=utf-7",
        br#"{"jsonrpc":"2.0","id":13,"method":"GetTask","params":{"id":"docs"}}"#,
    );
    assert_eq!(status, 415);
    // A web page of another host, which DNS rebinding made same-origin with the proxy, would
    // call with the proxy's agent token: refused before anything is decided or forwarded.
    let (status, body) = proxy.rpc(
        &[("a2a-version", "1.0"), ("origin", "http://evil.example")],
        &json!({"jsonrpc": "2.0", "id": 14, "method": "GetTask", "params": {"id": "docs"}}),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], -32600, "{body}");
    // A resource the control plane would refuse: the caller's error, not an outage.
    let (status, body) = proxy.rpc(
        &[("a2a-version", "1.0")],
        &json!({"jsonrpc": "2.0", "id": 12, "method": "GetTask", "params": {"id": "line\nbreak"}}),
    );
    assert_eq!((status, body["id"].clone()), (400, json!(12)), "{body}");
    assert_eq!(body["error"]["code"], -32602, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("resource"),
        "{body}"
    );

    assert_eq!(
        setup.decisions(),
        [
            decision("a2a.echo_agent.send_message", "docs", "allow"),
            decision("a2a.echo_agent.send_message", "vault", "deny"),
            decision("a2a.echo_agent.send_message", &"x".repeat(120), "allow"),
            decision("a2a.echo_agent.get_task", "vault", "deny"),
            decision("a2a.echo_agent.get_task", "no-such-task", "allow"),
        ]
    );
}

#[test]
fn a2a_0_3_method_names_are_decided_under_the_same_actions() {
    let Some(setup) = Setup::start() else { return };
    let proxy = &setup.proxy;

    let send = |id: u64, text: &str, resource: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "message/send", "params": {"message": {
            "kind": "message", "messageId": format!("m{id}"), "role": "user",
            "parts": [{"kind": "text", "text": text}], "metadata": {"resource": resource}}}})
    };
    let (status, body) = proxy.rpc(&[], &send(1, "old style", "docs"));
    assert_eq!(status, 200);
    assert_eq!(body["result"]["kind"], "task", "{body}");
    assert_eq!(body["result"]["status"]["state"], "completed");

    let (_, body) = proxy.rpc(&[], &send(2, "old style vault", "vault"));
    assert_eq!(body["id"], 2);
    assert_eq!(body["result"]["kind"], "task");
    assert_eq!(body["result"]["status"]["state"], "rejected");
    assert_eq!(body["result"]["metadata"]["zt"]["decision"], "deny");

    // The official client speaking 0.3 (streaming) through the proxy.
    let lines = setup.client(
        "sdk in 0.3",
        &["--protocol", "0.3", "--stream", "--resource", "docs"],
    );
    assert_completed(&events_of(&lines));

    assert_eq!(setup.agent.executed(), ["old style", "sdk in 0.3"]);
    assert_eq!(
        setup.decisions(),
        [
            decision("a2a.echo_agent.send_message", "docs", "allow"),
            decision("a2a.echo_agent.send_message", "vault", "deny"),
            decision("a2a.echo_agent.send_streaming_message", "docs", "allow"),
        ]
    );
}

#[test]
fn streams_are_relayed_event_by_event_and_refused_as_one_event() {
    let Some(setup) = Setup::start() else { return };

    let lines = setup.client("stream me", &["--stream", "--resource", "docs"]);
    let events = events_of(&lines);
    assert!(events.len() >= 3, "{lines:?}");
    assert_eq!(events[0]["task"]["status"]["state"], "TASK_STATE_SUBMITTED");
    assert!(events
        .iter()
        .any(|e| e["artifactUpdate"]["artifact"]["parts"][0]["text"] == "echo: stream me"));
    assert_completed(&events);

    let lines = setup.client("stream the vault", &["--stream", "--resource", "vault"]);
    let refused = assert_rejected(&lines, "the vault is off limits");
    assert_eq!(
        refused["metadata"]["zt"]["reason"],
        "the vault is off limits"
    );

    assert_eq!(setup.agent.executed(), ["stream me"]);
    assert_eq!(
        setup.decisions(),
        [
            decision("a2a.echo_agent.send_streaming_message", "docs", "allow"),
            decision("a2a.echo_agent.send_streaming_message", "vault", "deny"),
        ]
    );
}

#[test]
fn the_control_plane_down_fails_closed() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&python, dir.path());
    // Nothing listens there.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let proxy = Proxy::start(agent.port, &dead, "some-token");

    for extra in [
        &["--resource", "docs"][..],
        &["--stream", "--resource", "docs"][..],
    ] {
        let lines = client(&python, &proxy.url(), "while it is down", extra);
        assert_rejected(&lines, "control plane unavailable");
    }
    let (_, body) = proxy.rpc(
        &[],
        &json!({"jsonrpc": "2.0", "id": "x", "method": "tasks/get", "params": {"id": "t"}}),
    );
    assert_eq!(
        body["error"]["code"],
        zt_a2a::CONTROL_PLANE_UNAVAILABLE_CODE
    );
    assert!(agent.executed().is_empty());
}

/// The agent holds the stream after its working event until the test, having received that
/// event through the proxy, opens a gate: a proxy buffering the stream would deadlock it (the
/// agent then fails the task after its own 60 s wait, and this test fails).
#[test]
fn a_stream_reaches_the_client_before_it_ends() {
    use std::io::{BufRead, BufReader};

    let Some(setup) = Setup::start() else { return };
    let Setup {
        python,
        agent,
        proxy,
        ..
    } = &setup;

    let mut child = Command::new(python)
        .arg(peers_dir().join("client.py"))
        .args([
            "--url",
            &proxy.url(),
            "--text",
            "gated: hold",
            "--stream",
            "--resource",
            "docs",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the client");
    let stdout = child.stdout.take().unwrap();
    let _client = Running(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let event = common::parse(&line.unwrap());
        let working = event["event"]["statusUpdate"]["status"]["state"] == "TASK_STATE_WORKING";
        seen.push(event);
        if working {
            break;
        }
    }
    assert!(
        seen.iter()
            .all(|e| e["event"]["statusUpdate"]["status"]["state"] != "TASK_STATE_COMPLETED"),
        "{seen:?}"
    );
    std::fs::write(format!("{}.gate", agent.side_effects.display()), "open").unwrap();
    let rest: Vec<Value> = lines.map(|l| common::parse(&l.unwrap())).collect();
    let last = rest.last().expect("events after the gate opened");
    assert_eq!(
        last["event"]["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{rest:?}"
    );
    assert!(rest.iter().any(
        |e| e["event"]["artifactUpdate"]["artifact"]["parts"][0]["text"] == "echo: gated: hold"
    ));
}
