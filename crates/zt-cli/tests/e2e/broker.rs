//! `zt exec`, the execution broker, against the real `zt serve`: each test proves a negative
//! with a real effect (a file that stays absent, a connection never accepted, a variable the
//! command never sees) and the receipt that closes intent -> decision -> execution in the chain.
//! Tests that run a command need Landlock with TCP rules and scopes (ABI 6+); without it they
//! skip with the reason, or fail under `ZT_REQUIRE_SERVICES=1`. Degraded kernels are shown with
//! `ZT_BROKER_LANDLOCK_ABI_CAP`, which lowers what the broker believes the kernel supports.

use crate::common;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

/// [`Setup::start`] where the kernel enforces every part of a profile; elsewhere `None`, and
/// the test skips, saying why.
fn sandboxed(port: u16) -> Option<Setup> {
    landlock().then(|| Setup::start(port))
}

/// A control plane whose policy is [`policy`] (fetches may reach `port`), with the agent
/// registered, in its own temporary directory.
struct Setup {
    dir: tempfile::TempDir,
    server: Server,
    token: String,
}

impl Setup {
    fn start(port: u16) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (server, token) =
            Server::with_policy_and_agent(dir.path(), &policy(dir.path(), port), ACTOR);
        Setup { dir, server, token }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `zt exec FLAGS -- COMMAND` as the agent, against this control plane.
    fn command(&self, flags: &[&str], command: &[&str]) -> Command {
        exec_command(&self.server.url(), &self.token, flags, command)
    }

    fn exec(&self, flags: &[&str], command: &[&str]) -> Ran {
        Ran::of(&mut self.command(flags, command))
    }

    /// As [`exec`](Self::exec), on a kernel capped at Landlock ABI `cap` (see [`CAP`]).
    fn exec_capped(&self, cap: &str, flags: &[&str], command: &[&str]) -> Ran {
        Ran::of(self.command(flags, command).env(CAP.0, cap))
    }
}

/// What a command did: its exit status and output, and its arguments (named in every failure).
struct Ran {
    args: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn of(command: &mut Command) -> Ran {
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let out = command.output().unwrap();
        Ran {
            args: args.join(" "),
            code: out.status.code(),
            stdout: text(&out.stdout),
            stderr: text(&out.stderr),
        }
    }

    /// It exited with `code`.
    #[track_caller]
    fn exited(&self, code: i32) -> &Ran {
        assert_eq!(
            self.code,
            Some(code),
            "{}\nstdout: {}\nstderr: {}",
            self.args,
            self.stdout,
            self.stderr
        );
        self
    }

    /// It did not exit 0.
    #[track_caller]
    fn failed(&self) -> &Ran {
        assert_ne!(self.code, Some(0), "{}\nstdout: {}", self.args, self.stdout);
        self
    }

    /// Its stderr says `part`.
    #[track_caller]
    fn said(&self, part: &str) -> &Ran {
        assert!(
            self.stderr.contains(part),
            "{}: `{part}` not in stderr: {}",
            self.args,
            self.stderr
        );
        self
    }

    /// Its stdout never shows `secret`.
    #[track_caller]
    fn never_printed(&self, secret: &str) -> &Ran {
        assert!(
            !self.stdout.contains(secret),
            "{}: `{secret}` printed: {}",
            self.args,
            self.stdout
        );
        self
    }
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

/// `zt audit COMMAND` (`verify`, `orphans`) against the server's log.
fn verify(server: &Server, command: &str) -> Ran {
    Ran::of(
        Command::new(zt_bin())
            .args([
                "audit",
                command,
                "--url",
                &server.url(),
                "--admin-token-file",
            ])
            .arg(server.data_dir.join("admin-token")),
    )
}

/// `zt audit verify` accepts the server's log.
#[track_caller]
fn assert_verifies(server: &Server) {
    verify(server, "verify").exited(0);
}

fn policy(dir: &Path, port: u16) -> String {
    let out = dir.join("out");
    let input = dir.join("in");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(dir.join("secret")).unwrap();
    std::fs::create_dir_all(dir.join("build/bin")).unwrap();
    std::fs::create_dir_all(dir.join("tools")).unwrap();
    std::fs::write(input.join("data.txt"), "readable input\n").unwrap();
    std::fs::write(dir.join("secret/key.txt"), "top secret\n").unwrap();
    format!(
        r#"
@id("build") @reason("builds read their input and write their output")
@sandbox_read("{input}") @sandbox_write("{out}") @sandbox_degraded("allow")
permit (principal, action == Action::"ci.build", resource);
@id("strict") @reason("strict builds never run unsandboxed")
@sandbox_read("{input}") @sandbox_write("{out}")
permit (principal, action == Action::"ci.strict", resource);
@id("fetch") @reason("fetches reach the artifact port") @sandbox_connect("{port}")
permit (principal, action == Action::"ci.fetch", resource);
@id("plain") @reason("the default sandbox") @sandbox_degraded("allow")
permit (principal, action == Action::"ci.plain", resource);
@id("tool") @reason("this action runs touch and nothing else")
@sandbox_write("{out}")
permit (principal, action == Action::"ci.tool", resource)
when {{ context has exec && context.exec.program == "/usr/bin/touch" }};
@id("bin") @reason("builds write their tree and run the tools they put in its bin")
@sandbox_write("{build}") @sandbox_exec("{build}/bin")
permit (principal, action == Action::"ci.bin", resource);
@id("tools") @reason("this action runs the tools of one directory")
@sandbox_exec("{tools}")
permit (principal, action == Action::"ci.tools", resource)
when {{ context has exec && context.exec.program like "{tools}/*" }};
"#,
        input = input.display(),
        out = out.display(),
        build = dir.join("build").display(),
        tools = std::fs::canonicalize(dir.join("tools")).unwrap().display(),
    )
}

#[test]
fn an_allowed_command_reads_and_writes_only_within_its_profile() {
    let Some(s) = sandboxed(1) else { return };
    let p = |rel: &str| s.path(rel).display().to_string();
    let build = ["--action", "ci.build"];

    let read = s.exec(&build, &["/bin/cat", &p("in/data.txt")]);
    read.exited(0);
    assert_eq!(read.stdout, "readable input\n");

    s.exec(&build, &["/bin/cat", &p("secret/key.txt")])
        .failed()
        .never_printed("top secret")
        .said("Permission denied");

    let outside = format!("echo leak > {}", p("secret/new.txt"));
    s.exec(&build, &bash(&outside)).failed();
    assert!(
        !s.path("secret/new.txt").exists(),
        "a write outside the profile landed"
    );

    let inside = format!(
        "echo made > {} && echo tmp > \"$TMPDIR/t\" && cat \"$TMPDIR/t\"",
        p("out/made.txt")
    );
    let wrote = s.exec(&build, &bash(&inside));
    wrote.exited(0);
    assert_eq!(
        std::fs::read_to_string(s.path("out/made.txt")).unwrap(),
        "made\n"
    );
    assert_eq!(wrote.stdout, "tmp\n", "the private tmp is writable");

    // A narrowed path that is a symlink out of the grant (planted in the writable directory)
    // is refused where it really leads: nothing runs.
    std::os::unix::fs::symlink(s.path("secret"), s.path("out/escape")).unwrap();
    let escape = p("out/escape");
    s.exec(
        &["--action", "ci.build", "--read", &escape],
        &["/bin/cat", &format!("{escape}/key.txt")],
    )
    .exited(71)
    .never_printed("top secret")
    .said("outside the granted profile");

    // The default profile (no annotations) writes nowhere but its private tmp.
    let default = format!("echo x > {}", p("out/default.txt"));
    s.exec(&["--action", "ci.plain"], &bash(&default)).failed();
    assert!(!s.path("out/default.txt").exists());

    // The exit status is the command's.
    s.exec(&["--action", "ci.plain"], &bash("exit 42"))
        .exited(42);
}

#[test]
fn a_grant_replaced_through_a_writable_grant_widens_nothing() {
    let Some(s) = sandboxed(1) else { return };
    let build = s.path("build").display().to_string();
    // Run 1, allowed: it may write `build`, so it can replace the granted `build/bin`.
    let plant = format!("rm -rf {build}/bin && ln -s / {build}/bin");
    s.exec(&["--action", "ci.bin"], &["/bin/sh", "-c", &plant])
        .exited(0);
    assert!(s.path("build/bin").is_symlink());
    // Run 2: `build/bin` leads to `/`. Bounded by where it leads, it granted read and
    // execute on everything; now nothing runs and the receipt says so.
    let secret = s.path("secret/key.txt");
    s.exec(
        &["--action", "ci.bin"],
        &["/bin/cat", secret.to_str().unwrap()],
    )
    .exited(71)
    .never_printed("top secret")
    .said("outside the granted profile");
    let receipt = receipts(&s.server)
        .pop()
        .expect("a receipt for the refusal");
    assert_eq!(receipt["execution"]["outcome"], "not_started", "{receipt}");
    assert_verifies(&s.server);
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
    let (listener, port) = listening();
    let Some(s) = sandboxed(port) else { return };
    let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected");
    let accepted = || match listener.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => panic!("{e}"),
    };

    s.exec(&["--action", "ci.plain"], &bash(&connect))
        .failed()
        .never_printed("connected");
    assert!(!accepted(), "a connection got through with the network off");

    s.exec(&["--action", "ci.fetch", "--no-network"], &bash(&connect))
        .failed();
    assert!(!accepted(), "--no-network let a connection through");

    let allowed = s.exec(&["--action", "ci.fetch"], &bash(&connect));
    allowed.exited(0);
    assert!(allowed.stdout.contains("connected"));
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
    let s = Setup::start(1);
    let sentinel = s.path("sentinel");
    s.exec(
        &["--action", "ci.deploy"],
        &["/usr/bin/touch", sentinel.to_str().unwrap()],
    )
    .exited(77)
    .said("denied");
    assert!(!sentinel.exists(), "a denied command ran");
    assert!(receipts(&s.server).is_empty(), "no receipt for a deny");
}

#[test]
fn a_context_with_a_key_twice_is_refused_before_any_decision() {
    let dir = tempfile::tempdir().unwrap();
    let sentinel = dir.path().join("sentinel");
    let context = r#"{"branch":"main","branch":"release"}"#;
    // Nothing listens on port 9: a context taken as valid would end in 69 (no decision).
    let out = exec_command(
        "http://127.0.0.1:9",
        "token",
        &["--action", "ci.build", "--context", context],
        &["/usr/bin/touch", sentinel.to_str().unwrap()],
    )
    .output()
    .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a usage error: {stderr}");
    assert!(stderr.contains("duplicate key `branch`"), "{stderr}");
    assert!(!sentinel.exists(), "the command ran");
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

#[test]
fn a_degraded_kernel_refuses_unless_allowed_and_the_receipt_says_so() {
    let (listener, port) = listening();
    let Some(s) = sandboxed(1) else { return };
    let sentinel = s.path("out/sentinel");
    let touch = ["/usr/bin/touch", sentinel.to_str().unwrap()];

    // Without --allow-degraded: refused, nothing runs, a not_started receipt names what is
    // missing and that the cap withholds it.
    s.exec_capped(CAP.1, &["--action", "ci.build"], &touch)
        .exited(71)
        .said("tcp bind and connect rules");
    assert!(!sentinel.exists(), "the command ran on a degraded kernel");
    let receipt = receipts(&s.server)
        .pop()
        .expect("a receipt for the refusal");
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

    // --allow-degraded is the caller's wish; a policy without @sandbox_degraded("allow")
    // refuses it all the same, and the receipt says why.
    s.exec_capped(
        CAP.1,
        &["--action", "ci.strict", "--allow-degraded"],
        &touch,
    )
    .exited(71)
    .said("the deciding policy does not allow a degraded run");
    assert!(
        !sentinel.exists(),
        "the caller's flag alone ran it unsandboxed"
    );
    let receipt = receipts(&s.server).pop().unwrap();
    assert_eq!(receipt["execution"]["outcome"], "not_started");
    assert!(receipt["execution"]["detail"]
        .as_str()
        .unwrap()
        .contains("@sandbox_degraded"));

    // Allowed by both: it runs, warns, and the receipt records what was not enforced.
    let degraded_build = ["--action", "ci.build", "--allow-degraded"];
    s.exec_capped(CAP.1, &degraded_build, &touch)
        .exited(0)
        .said("DEGRADED");
    assert!(sentinel.exists(), "the allowed degraded run did not run");
    let receipt = receipts(&s.server).pop().unwrap();
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
    let secret = s.path("secret/key.txt");
    s.exec_capped(
        CAP.1,
        &degraded_build,
        &["/bin/cat", secret.to_str().unwrap()],
    )
    .failed()
    .never_printed("top secret");
    let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected");
    s.exec_capped(
        CAP.1,
        &["--action", "ci.plain", "--allow-degraded"],
        &bash(&connect),
    )
    .exited(0);
    assert!(
        listener.accept().is_ok(),
        "tcp was not enforced, as recorded"
    );

    assert_verifies(&s.server);
}

#[test]
fn a_kernel_without_landlock_runs_nothing_unless_allowed() {
    let Some(s) = sandboxed(1) else { return };
    let secret = s.path("secret/key.txt");
    let cat = ["/bin/cat", secret.to_str().unwrap()];

    s.exec_capped("0", &["--action", "ci.plain"], &cat)
        .exited(71)
        .never_printed("top secret");
    // Not a number: capped at 0, refused the same way (fail closed).
    s.exec_capped("six", &["--action", "ci.plain"], &cat)
        .exited(71);

    let ran = s.exec_capped("0", &["--action", "ci.plain", "--allow-degraded"], &cat);
    ran.exited(0);
    assert_eq!(
        ran.stdout, "top secret\n",
        "nothing is enforced, as recorded"
    );
    let receipts = receipts(&s.server);
    assert_eq!(receipts.len(), 3);
    for refusal in &receipts[..2] {
        let detail = refusal["execution"]["detail"].as_str().unwrap();
        assert!(detail.contains("landlock is not available"), "{detail}");
    }
    assert_eq!(
        receipts[2]["execution"]["degraded"],
        json!(["landlock is not available: nothing can be enforced (landlock capped at abi 0 by ZT_BROKER_LANDLOCK_ABI_CAP)"])
    );
    assert_verifies(&s.server);
}

#[test]
fn the_control_plane_down_means_the_command_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let sentinel = dir.path().join("sentinel");
    let url = format!("http://127.0.0.1:{}", free_port());
    Ran::of(&mut exec_command(
        &url,
        "t",
        &["--action", "ci.plain"],
        &["/usr/bin/touch", sentinel.to_str().unwrap()],
    ))
    .exited(69)
    .said("not run");
    assert!(!sentinel.exists(), "the command ran without a decision");
}

#[test]
fn a_wider_profile_is_refused_before_anything_runs() {
    let s = Setup::start(1);
    let sentinel = s.path("sentinel");
    let touch = ["/usr/bin/touch", sentinel.to_str().unwrap()];
    let dir = s.dir.path().to_str().unwrap();
    for wider in [
        vec!["--write", "/"],
        vec!["--write", dir],
        vec!["--read", "/home"],
        vec!["--connect", "22"],
    ] {
        let mut flags = vec!["--action", "ci.build"];
        flags.extend(wider.iter().copied());
        s.exec(&flags, &touch).exited(78);
        assert!(!sentinel.exists(), "{wider:?} ran");
    }
    // Each refusal is recorded: a not_started receipt for its decision.
    let receipts = receipts(&s.server);
    assert_eq!(receipts.len(), 4);
    assert!(receipts
        .iter()
        .all(|r| r["execution"]["outcome"] == "not_started"));
    assert_verifies(&s.server);
}

#[test]
fn the_environment_is_scrubbed_and_no_descriptor_leaks() {
    let Some(s) = sandboxed(1) else { return };
    let env = Ran::of(
        s.command(
            &["--action", "ci.plain", "--pass-env", "KEEP_ME"],
            &["/usr/bin/env"],
        )
        .env("SECRET_VAR", "s3cret")
        .env("KEEP_ME", "kept")
        .env("ZT_ADMIN_TOKEN", "admin-secret"),
    );
    env.exited(0);
    let seen = &env.stdout;
    assert!(seen.contains("KEEP_ME=kept"), "{seen}");
    assert!(seen.contains("PATH="), "{seen}");
    for hidden in [
        "SECRET_VAR",
        "ZT_TOKEN",
        "ZT_ADMIN_TOKEN",
        "admin-secret",
        &s.token,
    ] {
        env.never_printed(hidden);
    }
    s.exec(
        &["--action", "ci.plain", "--pass-env", "ZT_TOKEN"],
        &["/usr/bin/env"],
    )
    .exited(2);

    // A descriptor the broker's caller left open (no close-on-exec) does not reach the command.
    let script = format!(
        "exec 7<{}; ZT_TOKEN={} {} exec --control-plane-url {} --actor {ACTOR} --action ci.plain -- \
         /bin/bash -c 'if {{ true >&7; }} 2>/dev/null; then echo leaked; else echo closed; fi'",
        s.path("in/data.txt").display(),
        s.token,
        zt_bin(),
        s.server.url()
    );
    let fds = Ran::of(Command::new("/bin/bash").args(["-c", &script]));
    fds.exited(0);
    assert_eq!(fds.stdout, "closed\n");
}

#[test]
fn the_receipt_is_chained_to_its_decision_and_verifies() {
    let Some(s) = sandboxed(1) else { return };
    let ran = s.exec(
        &["--action", "ci.build", "--resource", "repo-1"],
        &bash("echo out; echo err >&2; exit 3"),
    );
    ran.exited(3);
    assert_eq!(ran.stdout, "out\n");
    assert_eq!(ran.stderr, "err\n");

    let all = records(&s.server);
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

    let check = verify(&s.server, "verify");
    check.exited(0);
    assert!(!check.stdout.contains("warning"), "{}", check.stdout);
    verify(&s.server, "orphans").exited(0);
}

#[test]
fn output_held_open_by_a_background_process_is_hashed_up_to_the_grace() {
    let Some(s) = sandboxed(1) else { return };
    // The command exits at once; the `sleep` it leaves holds its stdout open.
    let ran = s.exec(
        &["--action", "ci.build", "--resource", "repo-1"],
        &bash("echo hello; sleep 10 &"),
    );
    ran.exited(0);
    assert_eq!(ran.stdout, "hello\n");
    let receipt = receipts(&s.server).pop().expect("a receipt");
    let e = &receipt["execution"];
    assert_eq!(e["outcome"], "exited");
    // What arrived is in the digest (it was recorded as nothing at all).
    assert_eq!(e["stdout_bytes"], 6, "{receipt}");
    assert_eq!(e["stdout_sha256"], Digest32::sha256(b"hello\n").to_hex());
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .starts_with("output still open 2 s after the command ended"),
        "{receipt}"
    );
    assert_verifies(&s.server);
}

#[test]
fn a_policy_can_name_the_program_an_action_runs() {
    let Some(s) = sandboxed(1) else { return };
    let marker = s.path("out/touched");
    let marker = marker.to_str().unwrap();
    // The program the broker will run, resolved as execvp would, is in the context.
    s.exec(&["--action", "ci.tool"], &["touch", marker])
        .exited(0);
    assert!(Path::new(marker).exists());
    s.exec(&["--action", "ci.tool"], &["/usr/bin/touch", marker])
        .exited(0);
    // An action asked in upper case is decided, and answered, folded: still this request's.
    s.exec(&["--action", "CI.Tool"], &["/usr/bin/touch", marker])
        .exited(0);
    // Another program under the same action is denied before anything runs.
    let secret = s.path("secret/key.txt");
    s.exec(
        &["--action", "ci.tool"],
        &["/bin/cat", secret.to_str().unwrap()],
    )
    .exited(77)
    .never_printed("top secret");
    // A caller's context cannot say which program it is.
    let claimed = r#"{"exec": {"program": "/usr/bin/touch"}}"#;
    s.exec(
        &["--action", "ci.tool", "--context", claimed],
        &["/bin/cat", secret.to_str().unwrap()],
    )
    .exited(2)
    .said("the broker writes the command there")
    .never_printed("top secret");
    // The decision's context digest covers the program and the arguments' digest.
    let decisions: Vec<Value> = common::records_as(s.server.port, &s.server.admin_token())
        .into_iter()
        .filter(|r| r["kind"] == "decision" && r["action"] == "ci.tool")
        .collect();
    assert_eq!(
        decisions.len(),
        4,
        "the refused --context was never decided"
    );
    assert_eq!(
        decisions[0]["context_sha256"],
        decisions[1]["context_sha256"]
    );
    assert_ne!(
        decisions[1]["context_sha256"],
        decisions[3]["context_sha256"]
    );
    assert_verifies(&s.server);
}

#[test]
fn a_program_is_decided_on_as_the_file_it_really_is() {
    let Some(s) = sandboxed(1) else { return };
    let tools = std::fs::canonicalize(s.path("tools")).unwrap();
    std::fs::copy("/usr/bin/true", tools.join("true")).unwrap();
    let tool = tools.join("true");
    s.exec(&["--action", "ci.tools"], &[tool.to_str().unwrap()])
        .exited(0);
    // `tools/../../../bin/sh` is like "<tools>/*" by name; it is /bin/sh.
    let up = "../".repeat(tools.components().count() - 1);
    let dotted = format!("{}/{up}bin/sh", tools.display());
    s.exec(&["--action", "ci.tools"], &[&dotted, "-c", "echo ran"])
        .exited(77)
        .never_printed("ran")
        .said("denied");
    // So is a symlink to it placed among the tools.
    let link = tools.join("sh");
    std::os::unix::fs::symlink("/bin/sh", &link).unwrap();
    s.exec(
        &["--action", "ci.tools"],
        &[link.to_str().unwrap(), "-c", "echo ran"],
    )
    .exited(77)
    .never_printed("ran");
    let decided: Vec<Value> = records(&s.server)
        .into_iter()
        .filter(|r| r["kind"] == "decision" && r["action"] == "ci.tools")
        .collect();
    assert_eq!(decided.len(), 3);
}

#[test]
fn a_command_that_cannot_start_is_not_started_however_long_its_name() {
    let Some(s) = sandboxed(1) else { return };
    // The helper's message names the program: over the 4096 bytes read of it, cut inside a
    // character, it was once taken for no message, and the run for one that exited.
    let program = format!("/{}", "é".repeat(3000));
    let ran = s.exec(
        &["--action", "ci.build", "--resource", "repo-1"],
        &[&program],
    );
    ran.failed();
    let receipt = receipts(&s.server).pop().expect("a receipt");
    assert_eq!(receipt["execution"]["outcome"], "not_started", "{receipt}");
    assert!(receipt["execution"].get("exit_code").is_none(), "{receipt}");
    assert_verifies(&s.server);
}

/// A broker running `sleep` under `ci.build`, and the marker its command writes once it runs.
fn spawn_sleeper(s: &Setup, name: &str) -> (Child, PathBuf) {
    let marker = s.path("out").join(name);
    let script = format!("echo started > {} && exec /bin/sleep 60", marker.display());
    let child = s
        .command(&["--action", "ci.build"], &bash(&script))
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
    let Some(s) = sandboxed(1) else { return };

    // SIGTERM to the broker is forwarded; the command dies of it and the receipt says so.
    let (mut broker, marker) = spawn_sleeper(&s, "first");
    wait_running(&marker);
    Command::new("kill")
        .args(["-TERM", &broker.id().to_string()])
        .status()
        .unwrap();
    let status = broker.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    let receipts = receipts(&s.server);
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0]["execution"]["outcome"], "signaled");
    assert_eq!(receipts[0]["execution"]["signal"], 15);
    assert_eq!(receipts[0]["reason"], "ended by signal 15");

    // A broker killed outright leaves its decision without a receipt: an orphan.
    let (mut doomed, marker) = spawn_sleeper(&s, "second");
    wait_running(&marker);
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let check = verify(&s.server, "verify");
    check.exited(0);
    assert!(
        check.stdout.contains("no execution receipt"),
        "{}",
        check.stdout
    );
    let orphans = verify(&s.server, "orphans");
    orphans.exited(1);
    let listed = &orphans.stdout;
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
    let Setup { dir, server, token } = Setup::start(1);
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
    // Of another actor's records, every kind gets the same answer: an agent cannot sort them
    // into broker allows and the rest.
    for theirs in [&deny, &plain] {
        assert_eq!(post(&other, &receipt_for(theirs, &granted)).0, 403);
    }
    let mut missing = good.clone();
    missing["execution"]["decision_seq"] = json!(10_000);
    assert_eq!(post(&token, &missing).0, 404);
    // Past what the store can be asked (2^63 and over): still no such decision, not an outage.
    missing["execution"]["decision_seq"] = json!(u64::MAX);
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
        resource_attributes_sha256: None,
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
        let ran = Ran::of(&mut exec_command(
            &url,
            "t",
            &["--action", "ci.plain", "--decision-timeout-ms", "500"],
            &["/usr/bin/touch", sentinel.to_str().unwrap()],
        ));
        assert_eq!(ran.code, Some(69), "{case}: {}", ran.stderr);
        assert!(ran.stderr.contains("not run"), "{case}");
        assert!(!sentinel.exists(), "{case}: the command ran");
    }
}

#[test]
fn the_library_runs_a_guarded_sandboxed_child_and_returns_its_receipt() {
    let Some(Setup {
        dir: _dir,
        server,
        token,
    }) = sandboxed(1)
    else {
        return;
    };
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
