//! `zt demo`: the five-minute story, end to end, against a real control plane started in this
//! process on a free port with a temporary data directory.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};
use zt_client::{ControlPlane, Guarded, SkipCause};
use zt_contract::verify::SignaturePolicy;
use zt_contract::{DecisionRequest, PublicKeySet};
use zt_server::ServerConfig;

use crate::exit::Exit;
use crate::verification::{Report, Verification};

const AGENT: &str = "hello-world-agent";
const DANGEROUS: &str = "aws.ec2.terminate_instances";
const SAFE: &str = "hello-world.say_hello";

/// `zt demo` arguments.
#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Print one JSON object instead of the narration.
    #[arg(long)]
    pub json: bool,
}

/// Narrates steps as they happen, and collects them for `--json`.
struct Story {
    json: bool,
    steps: Vec<Value>,
}

impl Story {
    fn step(&mut self, name: &str, ok: bool, text: &str, detail: Value) {
        if !self.json {
            let mark = if ok { "ok  " } else { "FAIL" };
            println!("[{mark}] {text}");
        }
        self.steps
            .push(json!({"step": name, "ok": ok, "detail": detail}));
    }

    fn say(&self, text: &str) {
        if !self.json {
            println!("       {text}");
        }
    }
}

/// Runs `zt demo`.
pub(crate) fn run(args: DemoArgs) -> Exit {
    if !args.json {
        crate::logging::init("error");
    }
    let mut story = Story {
        json: args.json,
        steps: Vec::new(),
    };
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start runtime")
        .and_then(|rt| rt.block_on(demo(&mut story)));
    let ok = outcome.is_ok() && story.steps.iter().all(|s| s["ok"] == true);
    if args.json {
        let error = outcome.as_ref().err().map(|e| format!("{e:#}"));
        println!(
            "{}",
            json!({"ok": ok, "steps": story.steps, "error": error})
        );
    } else if let Err(e) = &outcome {
        println!("[FAIL] {e:#}");
    } else if ok {
        println!(
            "\nEvery step behaved: denied work never ran, allowed work ran, and the log proved it."
        );
    }
    if ok {
        Exit::Success
    } else {
        Exit::Failure
    }
}

async fn demo(story: &mut Story) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let data_dir = dir.path().join("zt-data");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let admins = two_admins(&data_dir)?;
    let config = ServerConfig::new(data_dir.clone());
    let server = tokio::spawn(zt_server::serve(config, listener, async {
        let _ = stopped.await;
    }));
    let result = match wait_ready(&url).await {
        Ok(()) => {
            story.step(
                "start",
                true,
                &format!(
                    "Started a control plane at {url} (data in {}); callers must authenticate",
                    data_dir.display()
                ),
                json!({"url": url, "auth": "credentials"}),
            );
            story_steps(story, &url, &admins).await
        }
        Err(e) => Err(e),
    };
    let _ = stop.send(());
    server.await.context("control plane task failed")??;
    result
}

/// Two admins, so the policy change can be reviewed by a second person: written to the
/// admin token file (mode 0600) before the server starts.
fn two_admins(data_dir: &std::path::Path) -> anyhow::Result<[String; 2]> {
    let file = data_dir.join(zt_server::ADMIN_TOKEN_FILE_NAME);
    std::fs::create_dir_all(data_dir)?;
    let add = |name: &str| zt_server::admin_token_file::add(&file, name);
    Ok([add("alice")?, add("bob")?])
}

/// Waits for the server to answer.
async fn wait_ready(url: &str) -> anyhow::Result<()> {
    let probe = ControlPlane::with_timeout(url, Duration::from_secs(1))?;
    for _ in 0..200 {
        if probe.audit_head().await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("the control plane did not start")
}

async fn story_steps(story: &mut Story, url: &str, admins: &[String; 2]) -> anyhow::Result<()> {
    let admin =
        ControlPlane::with_timeout(url, Duration::from_secs(10))?.with_bearer(&admins[0])?;
    let reviewer =
        ControlPlane::with_timeout(url, Duration::from_secs(10))?.with_bearer(&admins[1])?;
    let token = admin.agent_token(AGENT).await?;
    let agent = ControlPlane::with_timeout(url, Duration::from_secs(10))?.with_bearer(&token)?;
    story.step(
        "register",
        true,
        &format!("Registered agent `{AGENT}` with the admin token; it got its own bearer token"),
        json!({"actor": AGENT}),
    );

    attempt(story, &agent, "dangerous", AGENT, DANGEROUS, false).await?;
    attempt(story, &agent, "spoof", "admin-bot", SAFE, false).await?;
    attempt(story, &agent, "unlisted", AGENT, SAFE, false).await?;

    let (_, proposed) = admin
        .propose_allow(SAFE, "Saying hello is harmless.")
        .await?;
    let id = proposed
        .get("proposal")
        .and_then(|v| v.as_str())
        .context("no proposal id")?
        .to_string();
    let self_approval = admin.approve_proposal(&id).await;
    story.step(
        "propose",
        proposed.get("status").and_then(|v| v.as_str()) == Some("pending")
            && self_approval.is_err(),
        &format!(
            "Admin alice proposed allowing `{SAFE}` ({id}); approving her own change is refused"
        ),
        json!({"proposal": id, "self_approval_refused": self_approval.is_err()}),
    );
    let approved = reviewer.approve_proposal(&id).await?;
    story.step(
        "policy",
        approved.get("approved_by").and_then(|v| v.as_str()) == Some("bob"),
        &format!(
            "Admin bob reviewed and approved it: policy {} is active",
            short(
                approved
                    .get("policy_version")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
            )
        ),
        approved.clone(),
    );
    attempt(story, &agent, "allowed", AGENT, SAFE, true).await?;

    let keys = PublicKeySet::from_jwks(&admin.audit_keys().await?)?;
    let records = admin.audit_records(0, 10_000).await?;
    let mut run = Verification::new(SignaturePolicy::Require(&keys), None, true);
    records.iter().all(|line| run.feed(line));
    let report = run.finish(Some(&admin.audit_head().await?.current_hash), true);
    story.step(
        "verify",
        report.is_valid(),
        &format!("Verified the audit log: {}", report.to_text()),
        report.to_json(),
    );

    tamper(story, &keys, &records)
}

/// One guarded call; `expect_allow` says how it must go for the demo to pass.
async fn attempt(
    story: &mut Story,
    cp: &ControlPlane,
    name: &str,
    actor: &str,
    action: &str,
    expect_allow: bool,
) -> anyhow::Result<()> {
    let request = DecisionRequest {
        actor: actor.into(),
        action: action.into(),
        resource: "demo-resource".into(),
        ..DecisionRequest::default()
    };
    let mut ran = false;
    let outcome = cp
        .guarded_call(&request, || async {
            ran = true;
            "Hello, world!"
        })
        .await;
    let (text, detail) = match &outcome {
        Guarded::Executed { decision, result } => (
            format!(
                "`{actor}` asks for `{action}`: allowed, \"{}\"; executed, returned {result:?}",
                decision.reason
            ),
            json!({"decision": "allow", "reason": decision.reason, "executed": true, "seq": decision.evidence.seq}),
        ),
        Guarded::Skipped {
            decision: Some(d),
            cause: SkipCause::Denied,
        } => (
            format!(
                "`{actor}` asks for `{action}`: denied, \"{}\"; execution skipped",
                d.reason
            ),
            json!({"decision": "deny", "reason": d.reason, "executed": false, "seq": d.evidence.seq}),
        ),
        Guarded::Skipped { cause, .. } => bail!("`{action}`: no decision: {cause:?}"),
    };
    let behaved = ran == expect_allow && outcome.execution_skipped() != expect_allow;
    story.step(name, behaved, &text, detail);
    if let Some(d) = outcome.decision() {
        story.say(&format!(
            "audit record seq {} hash {}",
            d.evidence.seq,
            short(&d.audit.current_hash)
        ));
    }
    Ok(())
}

/// Rewrites the dangerous decision as an allow in a copy of the log and shows the verifier
/// catching it.
fn tamper(story: &mut Story, keys: &PublicKeySet, records: &[String]) -> anyhow::Result<()> {
    let mut copy = records.to_vec();
    let (index, original) = copy
        .iter()
        .enumerate()
        .find(|(_, l)| l.contains(DANGEROUS) && l.contains("\"decision\":\"deny\""))
        .map(|(i, l)| (i, l.clone()))
        .context("the dangerous decision is not in the log")?;
    let forged = original.replacen("\"decision\":\"deny\"", "\"decision\":\"allow\"", 1);
    if let Some(slot) = copy.get_mut(index) {
        *slot = forged;
    }
    let mut run = Verification::new(SignaturePolicy::Require(keys), None, true);
    copy.iter().all(|line| run.feed(line));
    let report = run.finish(None, true);
    let caught = matches!(&report, Report::Invalid { error, .. } if error.index == index as u64);
    story.step(
        "tamper",
        caught,
        &format!(
            "Rewrote record {index} of a copy of the log from deny to allow; the verifier says: {}",
            report.to_text()
        ),
        report.to_json(),
    );
    Ok(())
}

/// The first 16 hex digits of a hash, after its `sha256:` prefix if it has one (a policy
/// version), so every shortened hash shows the same number of digits.
fn short(hash: &str) -> String {
    let (prefix, hex) = match hash.strip_prefix("sha256:") {
        Some(hex) => ("sha256:", hex),
        None => ("", hash),
    };
    format!("{prefix}{}", hex.chars().take(16).collect::<String>())
}
