//! `zt exec`, the execution broker, against the real `zt serve`: each test proves a negative
//! with a real effect (a file that stays absent, a connection never accepted, a variable the
//! command never sees) and the receipt that closes intent -> decision -> execution in the chain.
//! Tests that run a command need Landlock with TCP rules and scopes (ABI 6+); without it they
//! skip with the reason, or fail under `ZT_REQUIRE_SERVICES=1`. Degraded kernels are shown with
//! `ZT_BROKER_LANDLOCK_ABI_CAP`, which lowers what the broker believes the kernel supports.

use crate::common;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, records_as, zt_bin, Server};
use serde_json::{json, Value};
use zt_contract::Digest32;

const ACTOR: &str = "build-agent";

/// Whether the kernel enforces every part of a profile (else the test skips, saying why).
fn landlock() -> bool {
    let missing = zt_broker::sandbox::unenforceable();
    let probe = if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("; "))
    };
    zt_test_support::service_or_skip("landlock (abi 6 or later)", probe)
}

/// A control plane with credentials, `policy`, and the agent's token.
fn control_plane(dir: &Path, policy: &str) -> (Server, String) {
    Server::with_policy_and_agent(dir, policy, ACTOR)
}

fn register(server: &Server, actor: &str) -> String {
    let (status, _, body) = server.json_as(
        &server.admin_token(),
        "POST",
        "/agents",
        Some(json!({"actor": actor})),
    );
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_string()
}

fn exec_command(url: &str, token: &str, flags: &[&str], command: &[&str]) -> Command {
    let mut cmd = Command::new(zt_bin());
    cmd.args(["exec", "--control-plane-url", url, "--actor", ACTOR])
        .args(flags)
        .arg("--")
        .args(command)
        .env("ZT_TOKEN", token)
        .env("ZT_DECISION_TIMEOUT_MS", "5000");
    cmd
}

fn exec(server: &Server, token: &str, flags: &[&str], command: &[&str]) -> Output {
    exec_command(&server.url(), token, flags, command)
        .output()
        .unwrap()
}

fn bash(script: &str) -> Vec<&str> {
    vec!["/bin/bash", "-c", script]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn records(server: &Server) -> Vec<Value> {
    records_as(server.port, &server.admin_token())
}

fn receipts(server: &Server) -> Vec<Value> {
    records(server)
        .into_iter()
        .filter(|r| r["kind"] == "execution")
        .collect()
}

fn verify(server: &Server, command: &str) -> Output {
    let token_file = server.data_dir.join("admin-token");
    Command::new(zt_bin())
        .args([
            "audit",
            command,
            "--url",
            &server.url(),
            "--admin-token-file",
        ])
        .arg(token_file)
        .output()
        .unwrap()
}

/// `zt audit verify` accepts the server's log.
fn assert_verifies(server: &Server) {
    let check = verify(server, "verify");
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}{}",
        text(&check.stdout),
        text(&check.stderr)
    );
}

fn policy(dir: &Path, port: u16) -> String {
    let out = dir.join("out");
    let input = dir.join("in");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(dir.join("secret")).unwrap();
    std::fs::write(input.join("data.txt"), "readable input\n").unwrap();
    std::fs::write(dir.join("secret/key.txt"), "top secret\n").unwrap();
    format!(
        r#"
@id("build") @reason("builds read their input and write their output")
@sandbox_read("{input}") @sandbox_write("{out}")
permit (principal, action == Action::"ci.build", resource);
@id("fetch") @reason("fetches reach the artifact port") @sandbox_connect("{port}")
permit (principal, action == Action::"ci.fetch", resource);
@id("plain") @reason("the default sandbox")
permit (principal, action == Action::"ci.plain", resource);
"#,
        input = input.display(),
        out = out.display(),
    )
}

#[test]
fn an_allowed_command_reads_and_writes_only_within_its_profile() {
    if !landlock() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (server, token) = control_plane(d, &policy(d, 1));
    let p = |rel: &str| d.join(rel).display().to_string();

    let read = exec(
        &server,
        &token,
        &["--action", "ci.build"],
        &["/bin/cat", &p("in/data.txt")],
    );
    assert_eq!(read.status.code(), Some(0), "{}", text(&read.stderr));
    assert_eq!(text(&read.stdout), "readable input\n");

    let secret = exec(
        &server,
        &token,
        &["--action", "ci.build"],
        &["/bin/cat", &p("secret/key.txt")],
    );
    assert_ne!(secret.status.code(), Some(0));
    assert!(!text(&secret.stdout).contains("top secret"));
    assert!(
        text(&secret.stderr).contains("Permission denied"),
        "{}",
        text(&secret.stderr)
    );

    let outside = format!("echo leak > {}", p("secret/new.txt"));
    let escaped = exec(&server, &token, &["--action", "ci.build"], &bash(&outside));
    assert_ne!(escaped.status.code(), Some(0));
    assert!(
        !d.join("secret/new.txt").exists(),
        "a write outside the profile landed"
    );

    let inside = format!(
        "echo made > {} && echo tmp > \"$TMPDIR/t\" && cat \"$TMPDIR/t\"",
        p("out/made.txt")
    );
    let wrote = exec(&server, &token, &["--action", "ci.build"], &bash(&inside));
    assert_eq!(wrote.status.code(), Some(0), "{}", text(&wrote.stderr));
    assert_eq!(
        std::fs::read_to_string(d.join("out/made.txt")).unwrap(),
        "made\n"
    );
    assert_eq!(text(&wrote.stdout), "tmp\n", "the private tmp is writable");

    // A narrowed path that is a symlink out of the grant (planted in the writable directory)
    // is refused where it really leads: nothing runs.
    std::os::unix::fs::symlink(d.join("secret"), d.join("out/escape")).unwrap();
    let escape = p("out/escape");
    let planted = exec(
        &server,
        &token,
        &["--action", "ci.build", "--read", &escape],
        &["/bin/cat", &format!("{escape}/key.txt")],
    );
    assert_eq!(planted.status.code(), Some(71), "{}", text(&planted.stderr));
    assert!(!text(&planted.stdout).contains("top secret"));
    assert!(
        text(&planted.stderr).contains("outside the granted profile"),
        "{}",
        text(&planted.stderr)
    );

    // The default profile (no annotations) writes nowhere but its private tmp.
    let default = format!("echo x > {}", p("out/default.txt"));
    let plain = exec(&server, &token, &["--action", "ci.plain"], &bash(&default));
    assert_ne!(plain.status.code(), Some(0));
    assert!(!d.join("out/default.txt").exists());

    // The exit status is the command's.
    let status = exec(&server, &token, &["--action", "ci.plain"], &bash("exit 42"));
    assert_eq!(status.status.code(), Some(42));
}

/// A non-blocking loopback listener (a connection shows as an accepted one), and its port.
fn listening() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[test]
fn network_off_blocks_tcp_and_an_allowed_port_connects() {
    if !landlock() {
        return;
    }
    let (listener, port) = listening();
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = control_plane(dir.path(), &policy(dir.path(), port));
    let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected");
    let accepted = || match listener.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => panic!("{e}"),
    };

    let off = exec(&server, &token, &["--action", "ci.plain"], &bash(&connect));
    assert_ne!(off.status.code(), Some(0));
    assert!(!text(&off.stdout).contains("connected"));
    assert!(!accepted(), "a connection got through with the network off");

    let narrowed = exec(
        &server,
        &token,
        &["--action", "ci.fetch", "--no-network"],
        &bash(&connect),
    );
    assert_ne!(narrowed.status.code(), Some(0));
    assert!(!accepted(), "--no-network let a connection through");

    let allowed = exec(&server, &token, &["--action", "ci.fetch"], &bash(&connect));
    assert_eq!(allowed.status.code(), Some(0), "{}", text(&allowed.stderr));
    assert!(text(&allowed.stdout).contains("connected"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !accepted() {
        assert!(
            Instant::now() < deadline,
            "the allowed connection never arrived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_denied_command_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = control_plane(dir.path(), &policy(dir.path(), 1));
    let sentinel = dir.path().join("sentinel");
    let touch = ["/usr/bin/touch", sentinel.to_str().unwrap()];
    let denied = exec(&server, &token, &["--action", "ci.deploy"], &touch);
    assert_eq!(denied.status.code(), Some(77), "{}", text(&denied.stderr));
    assert!(text(&denied.stderr).contains("denied"));
    assert!(!sentinel.exists(), "a denied command ran");
    assert!(receipts(&server).is_empty(), "no receipt for a deny");
}

#[test]
fn a_sandbox_grant_that_cannot_be_read_is_refused_when_the_policy_loads() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "@sandbox_wirte(\"/srv\")",
            "unknown sandbox annotation `@sandbox_wirte`",
        ),
        ("@sandbox_connect(\"https\")", "sandbox port `https`"),
        ("@sandbox_write(\"srv/out\")", "sandbox path `srv/out`"),
    ];
    for (annotation, expected) in cases {
        let file = dir.path().join("bad.cedar");
        std::fs::write(
            &file,
            format!(
                "@id(\"plain\") permit (principal, action == Action::\"ci.plain\", resource);\n\
                 @id(\"typo\") @reason(\"a grant this version cannot read\") {annotation}\n\
                 permit (principal, action == Action::\"ci.typo\", resource);\n"
            ),
        )
        .unwrap();
        let out = Command::new(zt_bin())
            .args(["policy", "validate"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{annotation}: {}",
            text(&out.stdout)
        );
        let said = text(&out.stdout);
        assert!(
            said.contains("policy `typo` at line 2"),
            "{annotation}: {said}"
        );
        assert!(
            said.contains("invalid sandbox grant"),
            "{annotation}: {said}"
        );
        assert!(said.contains(expected), "{annotation}: {said}");
    }
}

/// The kernel as `ZT_BROKER_LANDLOCK_ABI_CAP=3` shows it: no TCP rules, no scopes.
const CAP: (&str, &str) = ("ZT_BROKER_LANDLOCK_ABI_CAP", "3");

fn exec_capped(
    server: &Server,
    token: &str,
    cap: &str,
    flags: &[&str],
    command: &[&str],
) -> Output {
    exec_command(&server.url(), token, flags, command)
        .env(CAP.0, cap)
        .output()
        .unwrap()
}

#[test]
fn a_degraded_kernel_refuses_unless_allowed_and_the_receipt_says_so() {
    if !landlock() {
        return;
    }
    let (listener, port) = listening();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (server, token) = control_plane(d, &policy(d, 1));
    let sentinel = d.join("out/sentinel");
    let touch = ["/usr/bin/touch", sentinel.to_str().unwrap()];

    // Without --allow-degraded: refused, nothing runs, a not_started receipt names what is
    // missing and that the cap withholds it.
    let refused = exec_capped(&server, &token, CAP.1, &["--action", "ci.build"], &touch);
    assert_eq!(refused.status.code(), Some(71), "{}", text(&refused.stderr));
    assert!(!sentinel.exists(), "the command ran on a degraded kernel");
    assert!(
        text(&refused.stderr).contains("tcp bind and connect rules"),
        "{}",
        text(&refused.stderr)
    );
    let receipt = receipts(&server).pop().expect("a receipt for the refusal");
    assert_eq!(receipt["execution"]["outcome"], "not_started");
    let detail = receipt["execution"]["detail"].as_str().unwrap();
    for part in [
        "tcp bind and connect rules (landlock abi 4",
        "signal and abstract unix socket scoping (landlock abi 6",
        "filesystem rights of landlock abi 5",
        "capped at abi 3 by ZT_BROKER_LANDLOCK_ABI_CAP",
    ] {
        assert!(detail.contains(part), "`{part}` missing from {detail}");
    }

    // With --allow-degraded: it runs, warns, and the receipt records what was not enforced.
    let ran = exec_capped(
        &server,
        &token,
        CAP.1,
        &["--action", "ci.build", "--allow-degraded"],
        &touch,
    );
    assert_eq!(ran.status.code(), Some(0), "{}", text(&ran.stderr));
    assert!(sentinel.exists(), "the allowed degraded run did not run");
    assert!(
        text(&ran.stderr).contains("DEGRADED"),
        "{}",
        text(&ran.stderr)
    );
    let receipt = receipts(&server).pop().unwrap();
    assert_eq!(receipt["execution"]["outcome"], "exited");
    let degraded: Vec<&str> = receipt["execution"]["degraded"]
        .as_array()
        .expect("the receipt records the degradation")
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(degraded.len(), 3, "{degraded:?}");
    assert!(degraded
        .iter()
        .any(|d| d.contains("tcp bind and connect rules")));
    assert!(degraded.iter().all(|d| d.contains("capped at abi 3")));

    // What ran is what the receipt says: the filesystem (abi 3) is still enforced, TCP is not.
    let secret = exec_capped(
        &server,
        &token,
        CAP.1,
        &["--action", "ci.build", "--allow-degraded"],
        &["/bin/cat", d.join("secret/key.txt").to_str().unwrap()],
    );
    assert_ne!(secret.status.code(), Some(0));
    assert!(!text(&secret.stdout).contains("top secret"));
    let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected");
    let open = exec_capped(
        &server,
        &token,
        CAP.1,
        &["--action", "ci.plain", "--allow-degraded"],
        &bash(&connect),
    );
    assert_eq!(open.status.code(), Some(0), "{}", text(&open.stderr));
    assert!(
        listener.accept().is_ok(),
        "tcp was not enforced, as recorded"
    );

    assert_verifies(&server);
}

#[test]
fn a_kernel_without_landlock_runs_nothing_unless_allowed() {
    if !landlock() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (server, token) = control_plane(d, &policy(d, 1));
    let secret = d.join("secret/key.txt");
    let cat = ["/bin/cat", secret.to_str().unwrap()];

    let refused = exec_capped(&server, &token, "0", &["--action", "ci.plain"], &cat);
    assert_eq!(refused.status.code(), Some(71), "{}", text(&refused.stderr));
    assert!(!text(&refused.stdout).contains("top secret"));
    // Not a number: capped at 0, refused the same way (fail closed).
    let garbled = exec_capped(&server, &token, "six", &["--action", "ci.plain"], &cat);
    assert_eq!(garbled.status.code(), Some(71), "{}", text(&garbled.stderr));

    let ran = exec_capped(
        &server,
        &token,
        "0",
        &["--action", "ci.plain", "--allow-degraded"],
        &cat,
    );
    assert_eq!(ran.status.code(), Some(0), "{}", text(&ran.stderr));
    assert_eq!(
        text(&ran.stdout),
        "top secret\n",
        "nothing is enforced, as recorded"
    );
    let receipts = receipts(&server);
    assert_eq!(receipts.len(), 3);
    for refusal in &receipts[..2] {
        let detail = refusal["execution"]["detail"].as_str().unwrap();
        assert!(detail.contains("landlock is not available"), "{detail}");
    }
    assert_eq!(
        receipts[2]["execution"]["degraded"],
        json!(["landlock is not available: nothing can be enforced (landlock capped at abi 0 by ZT_BROKER_LANDLOCK_ABI_CAP)"])
    );
    assert_verifies(&server);
}

#[test]
fn the_control_plane_down_means_the_command_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let sentinel = dir.path().join("sentinel");
    let url = format!("http://127.0.0.1:{}", free_port());
    let down = exec_command(
        &url,
        "t",
        &["--action", "ci.plain"],
        &["/usr/bin/touch", sentinel.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert_eq!(down.status.code(), Some(69), "{}", text(&down.stderr));
    assert!(text(&down.stderr).contains("not run"));
    assert!(!sentinel.exists(), "the command ran without a decision");
}

#[test]
fn a_wider_profile_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = control_plane(dir.path(), &policy(dir.path(), 1));
    let sentinel = dir.path().join("sentinel");
    let touch = ["/usr/bin/touch", sentinel.to_str().unwrap()];
    for wider in [
        vec!["--write", "/"],
        vec!["--write", dir.path().to_str().unwrap()],
        vec!["--read", "/home"],
        vec!["--connect", "22"],
    ] {
        let mut flags = vec!["--action", "ci.build"];
        flags.extend(wider.iter().copied());
        let refused = exec(&server, &token, &flags, &touch);
        assert_eq!(
            refused.status.code(),
            Some(78),
            "{wider:?}: {}",
            text(&refused.stderr)
        );
        assert!(!sentinel.exists(), "{wider:?} ran");
    }
    // Each refusal is recorded: a not_started receipt for its decision.
    let receipts = receipts(&server);
    assert_eq!(receipts.len(), 4);
    assert!(receipts
        .iter()
        .all(|r| r["execution"]["outcome"] == "not_started"));
    assert_verifies(&server);
}

#[test]
fn the_environment_is_scrubbed_and_no_descriptor_leaks() {
    if !landlock() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = control_plane(dir.path(), &policy(dir.path(), 1));
    let env = exec_command(
        &server.url(),
        &token,
        &["--action", "ci.plain", "--pass-env", "KEEP_ME"],
        &["/usr/bin/env"],
    )
    .env("SECRET_VAR", "s3cret")
    .env("KEEP_ME", "kept")
    .env("ZT_ADMIN_TOKEN", "admin-secret")
    .output()
    .unwrap();
    assert_eq!(env.status.code(), Some(0), "{}", text(&env.stderr));
    let seen = text(&env.stdout);
    assert!(seen.contains("KEEP_ME=kept"), "{seen}");
    assert!(seen.contains("PATH="), "{seen}");
    for hidden in [
        "SECRET_VAR",
        "ZT_TOKEN",
        "ZT_ADMIN_TOKEN",
        "admin-secret",
        &token,
    ] {
        assert!(
            !seen.contains(hidden),
            "`{hidden}` reached the command: {seen}"
        );
    }
    let refused = exec(
        &server,
        &token,
        &["--action", "ci.plain", "--pass-env", "ZT_TOKEN"],
        &["/usr/bin/env"],
    );
    assert_eq!(refused.status.code(), Some(2));

    // A descriptor the broker's caller left open (no close-on-exec) does not reach the command.
    let script = format!(
        "exec 7<{}; ZT_TOKEN={} {} exec --control-plane-url {} --actor {ACTOR} --action ci.plain -- \
         /bin/bash -c 'if {{ true >&7; }} 2>/dev/null; then echo leaked; else echo closed; fi'",
        dir.path().join("in/data.txt").display(),
        token,
        zt_bin(),
        server.url()
    );
    let fds = Command::new("/bin/bash")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_eq!(fds.status.code(), Some(0), "{}", text(&fds.stderr));
    assert_eq!(text(&fds.stdout), "closed\n");
}

#[test]
fn the_receipt_is_chained_to_its_decision_and_verifies() {
    if !landlock() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = control_plane(dir.path(), &policy(dir.path(), 1));
    let ran = exec(
        &server,
        &token,
        &["--action", "ci.build", "--resource", "repo-1"],
        &bash("echo out; echo err >&2; exit 3"),
    );
    assert_eq!(ran.status.code(), Some(3));
    assert_eq!(text(&ran.stdout), "out\n");
    assert_eq!(text(&ran.stderr), "err\n");

    let all = records(&server);
    let receipt = all
        .iter()
        .find(|r| r["kind"] == "execution")
        .expect("a receipt");
    let seq = receipt["execution"]["decision_seq"].as_u64().unwrap();
    let decision = &all[usize::try_from(seq).unwrap()];
    assert_eq!(decision["kind"], "decision");
    assert_eq!(decision["decision"], "allow");
    assert_eq!(decision["actor"], ACTOR);
    assert_eq!(receipt["actor"], ACTOR);
    assert_eq!(
        receipt["execution"]["decision_hash"],
        decision["current_hash"]
    );
    assert!(receipt["seq"].as_u64().unwrap() > seq);
    assert!(decision["sandbox"]["write"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().ends_with("/out")));
    assert_eq!(receipt["sandbox"], decision["sandbox"]);
    let e = &receipt["execution"];
    assert_eq!(e["outcome"], "exited");
    assert_eq!(e["exit_code"], 3);
    assert_eq!(e["stdout_bytes"], 4);
    assert_eq!(e["stdout_sha256"], Digest32::sha256(b"out\n").to_hex());
    assert_eq!(e["stderr_sha256"], Digest32::sha256(b"err\n").to_hex());
    assert_eq!(receipt["reason"], "exited with status 3");
    assert_eq!(receipt["resource"], "repo-1");

    let check = verify(&server, "verify");
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}{}",
        text(&check.stdout),
        text(&check.stderr)
    );
    assert!(
        !text(&check.stdout).contains("warning"),
        "{}",
        text(&check.stdout)
    );
    let orphans = verify(&server, "orphans");
    assert_eq!(orphans.status.code(), Some(0), "{}", text(&orphans.stdout));
}

/// A broker running `sleep` under `ci.build`, and the marker its command writes once it runs.
fn spawn_sleeper(
    server: &Server,
    token: &str,
    dir: &Path,
    name: &str,
) -> (Child, std::path::PathBuf) {
    let marker = dir.join("out").join(name);
    let script = format!("echo started > {} && exec /bin/sleep 60", marker.display());
    let child = exec_command(
        &server.url(),
        token,
        &["--action", "ci.build"],
        &bash(&script),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    (child, marker)
}

/// Waits until the sandboxed command has written `marker`.
fn wait_running(marker: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the command never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_command_gets_a_receipt_and_a_dead_broker_leaves_an_orphan() {
    if !landlock() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = control_plane(dir.path(), &policy(dir.path(), 1));

    // SIGTERM to the broker is forwarded; the command dies of it and the receipt says so.
    let (mut broker, marker) = spawn_sleeper(&server, &token, dir.path(), "first");
    wait_running(&marker);
    Command::new("kill")
        .args(["-TERM", &broker.id().to_string()])
        .status()
        .unwrap();
    let status = broker.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    let receipts = receipts(&server);
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0]["execution"]["outcome"], "signaled");
    assert_eq!(receipts[0]["execution"]["signal"], 15);
    assert_eq!(receipts[0]["reason"], "ended by signal 15");

    // A broker killed outright leaves its decision without a receipt: an orphan.
    let (mut doomed, marker) = spawn_sleeper(&server, &token, dir.path(), "second");
    wait_running(&marker);
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let check = verify(&server, "verify");
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stdout));
    assert!(
        text(&check.stdout).contains("no execution receipt"),
        "{}",
        text(&check.stdout)
    );
    let orphans = verify(&server, "orphans");
    assert_eq!(orphans.status.code(), Some(1));
    let listed = text(&orphans.stdout);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains("ci.build"), "{listed}");
}

/// `POST /actions` as an agent, asking for a sandbox.
fn decide(server: &Server, token: &str, action: &str, sandbox: bool) -> Value {
    let (_, _, body) = server.json_as(
        token,
        "POST",
        "/actions",
        Some(json!({"actor": ACTOR, "action": action, "sandbox": sandbox})),
    );
    body
}

fn receipt_for(decision: &Value, sandbox: &Value) -> Value {
    let empty = Digest32::sha256(b"").to_hex();
    json!({
        "sandbox": sandbox,
        "execution": {
            "decision_seq": decision["evidence"]["seq"],
            "decision_hash": decision["audit"]["current_hash"],
            "outcome": "exited", "exit_code": 0, "duration_ms": 1,
            "stdout_bytes": 0, "stdout_sha256": empty, "stderr_bytes": 0, "stderr_sha256": empty,
        }
    })
}

#[test]
fn forged_receipts_are_refused_by_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = control_plane(dir.path(), &policy(dir.path(), 1));
    let other = register(&server, "other-agent");
    let post = |token: &str, body: &Value| {
        let (status, _, answer) = server.json_as(token, "POST", "/executions", Some(body.clone()));
        (status, answer)
    };

    let allow = decide(&server, &token, "ci.plain", true);
    assert_eq!(allow["decision"], "allow", "{allow}");
    let granted = allow["evidence"]["sandbox"].clone();
    assert!(granted.is_object(), "{allow}");
    let good = receipt_for(&allow, &granted);

    let (status, answer) = post(&other, &good);
    assert_eq!(status, 403, "another actor's receipt: {answer}");
    let mut wrong_hash = good.clone();
    wrong_hash["execution"]["decision_hash"] = json!("0".repeat(64));
    assert_eq!(post(&token, &wrong_hash).0, 409);
    let mut wider = good.clone();
    wider["sandbox"]["write"] = json!(["/"]);
    assert_eq!(post(&token, &wider).0, 409);

    let (status, answer) = post(&token, &good);
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["record"]["kind"], "execution");
    let (status, answer) = post(&token, &good);
    assert_eq!(status, 409, "a second receipt: {answer}");

    let deny = decide(&server, &token, "ci.deploy", true);
    assert_eq!(deny["decision"], "deny");
    assert_eq!(
        post(&token, &receipt_for(&deny, &granted)).0,
        409,
        "a receipt for a deny"
    );
    let plain = decide(&server, &token, "ci.plain", false);
    assert!(
        plain["evidence"].get("sandbox").is_none(),
        "ordinary decisions carry no sandbox"
    );
    assert_eq!(
        post(&token, &receipt_for(&plain, &granted)).0,
        409,
        "no sandbox was granted"
    );
    let mut missing = good.clone();
    missing["execution"]["decision_seq"] = json!(10_000);
    assert_eq!(post(&token, &missing).0, 404);

    assert_eq!(
        receipts(&server).len(),
        1,
        "only the good receipt was recorded"
    );
    assert_verifies(&server);
    // The server still refuses a second receipt after a restart.
    drop(server);
    let restarted = Server::start_with_auth(
        &dir.path().join("data"),
        "credentials",
        &[
            "--single-admin",
            "--policy",
            dir.path().join("policy.cedar").to_str().unwrap(),
        ],
    );
    let (status, _, answer) = restarted.json_as(&token, "POST", "/executions", Some(good));
    assert_eq!(status, 409, "a second receipt after a restart: {answer}");
}

/// A fake control plane on loopback that answers every request with `answer` (status, body),
/// or never answers when `None`.
fn fake_control_plane(answer: Option<(u16, String)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let answer = answer.clone();
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buffer = [0u8; 65536];
                let _ = stream.read(&mut buffer);
                match answer {
                    Some((status, body)) => {
                        let response = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(response.as_bytes());
                    }
                    None => std::thread::sleep(Duration::from_secs(30)),
                }
            });
        }
    });
    url
}

/// An allow whose evidence hashes correctly but carries no sandbox profile (a control plane
/// that does not grant sandboxes).
fn allow_without_profile() -> String {
    let body = zt_contract::RecordBody {
        action: "ci.plain".into(),
        actor: ACTOR.into(),
        authenticated: true,
        claimed_actor: None,
        context_sha256: None,
        counts: None,
        decision: zt_contract::Decision::Allow,
        execution: None,
        key_rotation: None,
        kind: zt_contract::RecordKind::Decision,
        policies: None,
        policy_version: None,
        previous_hash: zt_contract::GENESIS_HASH.into(),
        reason: "fine".into(),
        request_id: None,
        resource: "".into(),
        sandbox: None,
        seq: 0,
        timestamp: "2026-11-25T00:00:00.000Z".into(),
    };
    let hash = Digest32::sha256(&serde_json::to_vec(&body).unwrap()).to_hex();
    json!({
        "ok": true, "actor": ACTOR, "action": "ci.plain", "resource": "", "decision": "allow",
        "reason": "fine",
        "audit": {"timestamp": body.timestamp, "previous_hash": zt_contract::GENESIS_HASH,
                  "current_hash": hash,
                  "kms_signature": {"algorithm": "ECDSA_SHA_256", "key_id": "k", "signature": "AA=="}},
        "evidence": {"kind": "decision", "seq": 0, "authenticated": true}
    })
    .to_string()
}

#[test]
fn no_valid_decision_means_the_command_never_runs() {
    let mut forged_hash: Value = serde_json::from_str(&allow_without_profile()).unwrap();
    forged_hash["audit"]["current_hash"] = json!("0".repeat(64));
    let cases = [
        (
            "malformed answer",
            Some((200, "{\"ok\": true}".to_string())),
        ),
        ("server error", Some((500, "{}".to_string()))),
        ("bad evidence", Some((200, forged_hash.to_string()))),
        (
            "an allow without a profile",
            Some((200, allow_without_profile())),
        ),
        ("timeout", None),
    ];
    for (case, answer) in cases {
        let dir = tempfile::tempdir().unwrap();
        let sentinel = dir.path().join("sentinel");
        let url = fake_control_plane(answer);
        let ran = exec_command(
            &url,
            "t",
            &["--action", "ci.plain", "--decision-timeout-ms", "500"],
            &["/usr/bin/touch", sentinel.to_str().unwrap()],
        )
        .output()
        .unwrap();
        assert_eq!(ran.status.code(), Some(69), "{case}: {}", text(&ran.stderr));
        assert!(text(&ran.stderr).contains("not run"), "{case}");
        assert!(!sentinel.exists(), "{case}: the command ran");
    }
}

#[test]
fn the_library_runs_a_guarded_sandboxed_child_and_returns_its_receipt() {
    if !landlock() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = control_plane(dir.path(), &policy(dir.path(), 1));
    let client = zt_client::ControlPlane::new(&server.url())
        .unwrap()
        .with_bearer(&token)
        .unwrap();
    let helper = zt_broker::HelperCommand {
        program: zt_bin().into(),
        args: vec!["__sandbox-exec".into()],
    };
    let broker = zt_broker::Broker::new(client, ACTOR, helper);
    let request = zt_broker::ExecRequest {
        action: "ci.build".into(),
        command: vec!["/bin/bash".into(), "-c".into(), "printf library".into()],
        narrowing: zt_contract::Narrowing {
            write: Some(vec!["@tmp".into()]),
            ..zt_contract::Narrowing::default()
        },
        ..zt_broker::ExecRequest::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let execution = runtime.block_on(broker.execute(&request)).unwrap();
    assert_eq!(execution.ended.exit_code, Some(0));
    assert_eq!(execution.ended.stdout.bytes, 7);
    assert_eq!(execution.profile.write(), ["@tmp"], "narrowed");
    let receipt = execution.receipt.unwrap();
    assert_eq!(receipt.record.kind, zt_contract::RecordKind::Execution);
    let e = receipt.record.execution.unwrap();
    assert_eq!(e.decision_seq, execution.decision.evidence.seq);
    assert_eq!(e.decision_hash, execution.decision.audit.current_hash);
    assert_eq!(e.stdout_sha256, Digest32::sha256(b"library").to_hex());
    assert_eq!(receipt.record.sandbox.unwrap().write(), ["@tmp"]);

    // A denied request never reaches the command.
    let denied = zt_broker::ExecRequest {
        action: "ci.deploy".into(),
        ..request
    };
    match runtime.block_on(broker.execute(&denied)) {
        Err(zt_broker::BrokerError::Denied(decision)) => {
            assert_eq!(decision.decision.as_str(), "deny")
        }
        other => panic!("expected a deny, got {other:?}"),
    }
}
