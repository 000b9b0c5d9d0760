//! The background tasks of a serving control plane, and the order they stop in. Each is given
//! only the parts of the server's state it uses, so its signature says what it can touch:
//!
//! - housekeeping (`housekeeping::run`): the log and the refusal, request-id and rate-limit
//!   counters;
//! - the file watcher (`reload::watch`): the admin token set, and the policy store, admin lock
//!   and log a policy file reload needs;
//! - checkpoints (`checkpoints::run`): the log and the checkpoint issuer;
//! - the state-document follower (`state_docs::follow::run`): the documents and the registry,
//!   policy store and proposals it reloads from them;
//! - the NATS publisher (`nats::Publisher`): the log and the metrics.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::ServerConfig;
use crate::housekeeping::{self, Housekeeping};
use crate::nats::Publisher;
use crate::policy_reload::Reloader;
use crate::state::AppState;
use crate::state_docs::follow::{self, Followed};

/// How long a stopping server lets the NATS publisher publish what is committed.
const NATS_DRAIN: Duration = Duration::from_secs(5);

/// The running background tasks.
pub(crate) struct Tasks {
    housekeeping: JoinHandle<()>,
    stop_housekeeping: oneshot::Sender<()>,
    file_watch: JoinHandle<()>,
    checkpointing: JoinHandle<()>,
    following: JoinHandle<()>,
    nats: Option<Publisher>,
}

impl Tasks {
    /// Starts every task `config` asks for, each with its parts of `state`.
    pub(crate) fn spawn(state: &AppState, config: &ServerConfig) -> Self {
        let (stop_housekeeping, housekeeping_stopped) = oneshot::channel();
        let housekeeping = tokio::spawn(housekeeping::run(
            Housekeeping {
                ledger: state.ledger.clone(),
                rejections: state.rejections.clone(),
                replay: state.replay.clone(),
                limiter: state.limiter.clone(),
                refused_admin: state.refused_admin.clone(),
            },
            config.rejection_summary_interval,
            housekeeping_stopped,
        ));
        let file_watch = tokio::spawn(crate::reload::watch(
            state.admin_tokens.clone(),
            state.workload.jwt_bundles(),
            state.tls.clone(),
            Reloader {
                policy: state.policy.clone(),
                admin_lock: state.admin_lock.clone(),
                ledger: state.ledger.clone(),
            },
        ));
        let checkpointing = tokio::spawn(crate::checkpoints::run(
            state.ledger.clone(),
            state.checkpoints.clone(),
        ));
        let following = tokio::spawn(follow::run(Followed {
            docs: state.docs.clone(),
            registry: state.registry.clone(),
            policy: state.policy.clone(),
            proposals: state.proposals.clone(),
        }));
        let nats = (config.nats.clone())
            .map(|n| Publisher::spawn(state.ledger.clone(), state.metrics.clone(), n));
        Self {
            housekeeping,
            stop_housekeeping,
            file_watch,
            checkpointing,
            following,
            nats,
        }
    }

    /// Stops every task once the server has drained: the watcher, checkpoints and follower at
    /// once, housekeeping after its last rejection summary, then the NATS publisher once it
    /// has published what is committed (that summary included), or after [`NATS_DRAIN`]. Every
    /// ledger handle the tasks held is dropped when this returns.
    pub(crate) async fn stop(self) {
        let tasks = [self.file_watch, self.checkpointing, self.following];
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        let _ = self.stop_housekeeping.send(());
        let _ = self.housekeeping.await;
        if let Some(publisher) = self.nats {
            publisher.finish(NATS_DRAIN).await;
        }
    }
}
