//! Keeps this server's registry, active policy and policy proposals up to date with what
//! other servers sharing the store save: polls the documents' versions every [`POLL_EVERY`]
//! and reloads any that changed. [`POLL_EVERY`] (plus one round trip) is therefore the longest
//! a token rotated or an agent removed on one replica still works on another, and the longest a
//! policy activated on one replica takes to be in force on all.

use std::sync::Arc;
use std::time::Duration;

use crate::policy_store::PolicyStore;
use crate::proposals::Proposals;
use crate::registry::Registry;
use crate::state_docs::{off_thread, DocName, Documents};

/// How often the shared documents' versions are read.
pub(crate) const POLL_EVERY: Duration = Duration::from_millis(250);

/// All the follower touches: the documents whose versions it reads, and what it reloads
/// from them.
pub(crate) struct Followed {
    /// The shared documents.
    pub(crate) docs: Arc<Documents>,
    /// Reloaded from [`DocName::Agents`].
    pub(crate) registry: Arc<Registry>,
    /// Reloaded from [`DocName::Policy`].
    pub(crate) policy: Arc<PolicyStore>,
    /// Reloaded from [`DocName::Proposals`].
    pub(crate) proposals: Arc<Proposals>,
}

/// Follows the shared documents until the server stops (the task is aborted with the server).
/// Does nothing when the documents are not shared.
pub(crate) async fn run(followed: Followed) {
    if !followed.docs.is_shared() {
        return;
    }
    let mut ticker = tokio::time::interval(POLL_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        let versions = match off_thread(&followed.docs, |d| d.versions()).await {
            Ok(versions) => versions,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot read the shared state documents; retrying");
                }
                failing = true;
                continue;
            }
        };
        if failing {
            tracing::info!("shared state documents readable again");
            failing = false;
        }
        let agents = versions.get(&DocName::Agents).copied();
        if agents.is_some() && agents > followed.registry.version() {
            if let Err(e) = followed.registry.reload_if_newer(agents).await {
                tracing::error!(error = %e, "agent registry reload failed; the loaded one stays");
            }
        }
        let policy = versions.get(&DocName::Policy).copied();
        if policy.is_some() && policy > followed.policy.version() {
            if let Err(e) = followed.policy.reload_if_newer(policy).await {
                tracing::error!(error = %e, "policy reload failed; the active policy stays");
            }
        }
        let proposals = versions.get(&DocName::Proposals).copied();
        if proposals.is_some() && proposals > followed.proposals.version() {
            if let Err(e) = followed.proposals.reload_if_newer(proposals).await {
                tracing::error!(error = %e, "policy proposals reload failed; the loaded ones stay");
            }
        }
    }
}
