//! `zt bench`'s setup and its undoing: register the actor, allow the action, and afterwards
//! remove the agent and restore the policy if the setup created or changed them.

use anyhow::bail;
use serde_json::Value;
use zt_client::ControlPlane;

use super::BenchArgs;

const REASON: &str = "allowed for benchmarking";

/// What the setup did, so that the end can undo exactly that.
pub(super) struct Prepared {
    /// The token the load presents (none under `--auth none` or with a client certificate).
    pub agent_token: Option<String>,
    /// The setup registered the agent (it did not exist before).
    created_agent: bool,
    /// The policy text to restore: the setup activated a change.
    restore_policy: Option<String>,
    /// Things the user should know (printed after the report).
    pub notes: Vec<String>,
}

impl Prepared {
    /// No setup (`--no-setup`): nothing to undo.
    pub(super) fn none(agent_token: Option<String>) -> Self {
        Self {
            agent_token,
            created_agent: false,
            restore_policy: None,
            notes: Vec::new(),
        }
    }
}

/// Registers the actor and allows the action. A server that would need a second admin to
/// approve the change is explained, and nothing is left behind: the pending proposal is
/// withdrawn and the agent removed.
pub(super) async fn prepare(
    admin: &ControlPlane,
    args: &BenchArgs,
    has_admin_token: bool,
) -> anyhow::Result<Prepared> {
    let health = admin.health().await?;
    let authenticated = health.get("auth").and_then(Value::as_str) != Some("none");
    if authenticated && !has_admin_token {
        bail!(
            "this server authenticates its callers (`--auth credentials`), and the setup \
             (registering `{}`, allowing `{}`) needs an admin credential: pass \
             --admin-token-file DATA_DIR/admin-token (or set ZT_ADMIN_TOKEN), or run with \
             --no-setup and --agent-token",
            args.actor,
            args.action
        );
    }
    let before = admin.active_policy().await?;
    let registered = admin.register_agent(&args.actor).await?;
    let mut prepared = Prepared {
        created_agent: registered.token.is_some(),
        agent_token: registered.token,
        restore_policy: None,
        notes: Vec::new(),
    };
    if !prepared.created_agent && authenticated && args.tls.cert.is_none() {
        match admin.rotate_token(&args.actor).await {
            Ok(rotated) => prepared.agent_token = Some(rotated.token),
            Err(e) => return Err(undo_agent(admin, &prepared, args, e.into()).await),
        }
        prepared.notes.push(format!(
            "`{}` was already registered: its token was rotated (the old one no longer works)",
            args.actor
        ));
    }
    match admin.propose_allow(&args.action, REASON).await {
        Ok((202, answer)) => {
            let id = answer
                .get("proposal")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            let why = anyhow::anyhow!(
                "this server reviews policy changes with two admins: allowing `{}` was filed as \
                 proposal `{id}`, which would need a second admin's approval (it was withdrawn \
                 again). Start the server for benchmarking with \
                 `--single-admin --rate-limit none`, or have `{}` allowed first (a proposal \
                 approved by a second admin) and run `zt bench` again",
                args.action,
                args.action
            );
            let why = match admin.withdraw_proposal(&id).await {
                Ok(_) => why,
                Err(e) => why.context(format!(
                    "and withdrawing the proposal `{id}` it filed failed: {e}"
                )),
            };
            return Err(undo_agent(admin, &prepared, args, why).await);
        }
        Ok((_, answer)) => {
            if answer.get("policy_version") != before.get("policy_version") {
                prepared.restore_policy = before
                    .get("cedar")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
        }
        Err(e) => return Err(undo_agent(admin, &prepared, args, e.into()).await),
    }
    Ok(prepared)
}

/// Removes the agent the setup registered, then returns `why`.
async fn undo_agent(
    admin: &ControlPlane,
    prepared: &Prepared,
    args: &BenchArgs,
    why: anyhow::Error,
) -> anyhow::Error {
    if prepared.created_agent {
        if let Err(e) = admin.remove_agent(&args.actor).await {
            return why.context(format!(
                "and removing the agent `{}` it registered failed: {e}",
                args.actor
            ));
        }
    }
    why
}

/// Undoes the setup: restores the policy it changed, removes the agent it registered.
/// Returns what could not be undone.
pub(super) async fn clean_up(
    admin: &ControlPlane,
    prepared: &Prepared,
    args: &BenchArgs,
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(cedar) = &prepared.restore_policy {
        let restored = async {
            let proposal = admin.propose_cedar(cedar).await?;
            let id = proposal
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let approved = admin.approve_proposal(id).await;
            if approved.is_err() {
                // Leave no pending proposal behind (a second admin could still approve it).
                let _ = admin.withdraw_proposal(id).await;
            }
            approved
        };
        if let Err(e) = restored.await {
            problems.push(format!(
                "the policy before the benchmark could not be restored (`{}` stays allowed): {e}",
                args.action
            ));
        }
    }
    if prepared.created_agent {
        if let Err(e) = admin.remove_agent(&args.actor).await {
            problems.push(format!(
                "the agent `{}` could not be removed: {e}",
                args.actor
            ));
        }
    }
    problems
}
