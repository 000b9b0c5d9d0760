//! Reviewed policy changes. A proposal holds a validated policy set and the version it was
//! made against; approving it activates it atomically, and only if the active policy is still
//! that version (no lost updates).
//!
//! Proposals are kept in the `proposals` state document (`DATA_DIR/proposals.json`, mode 0600,
//! or the shared PostgreSQL store), so a restart keeps pending ones and every replica sees
//! them. A proposal's id is `prop-<seq>`, the sequence number of the audit record that filed
//! it: unique for the life of the log, and it points at its own record. Ids are matched
//! exactly (`prop-01` and `prop-+1` are not `prop-1`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use zt_policy::PolicyEngine;

use crate::state_docs::{
    after_conflict, off_thread, DocError, DocName, Documents, SaveTurn, SAVE_TRIES,
};

/// How many proposals are kept. Past it, filing one forgets the oldest that can no longer be
/// approved (activated, or made against a policy that is no longer active); when every kept
/// proposal is still pending, a new one is refused (409).
pub(crate) const MAX_PROPOSALS_KEPT: usize = 256;

/// Where a proposal stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", deny_unknown_fields)]
pub(crate) enum ProposalStatus {
    /// Waiting for approval.
    Pending,
    /// Approved and activated.
    Activated {
        /// Who approved it.
        approved_by: String,
    },
}

/// One proposed policy set.
#[derive(Clone)]
pub(crate) struct Proposal {
    /// The sequence number of the record that filed it.
    pub seq: u64,
    /// `prop-<seq>`.
    pub id: String,
    /// The admin who proposed it.
    pub proposed_by: String,
    /// When (wire timestamp).
    pub proposed_at: String,
    /// The active version it was made against.
    pub base_version: String,
    /// The proposed policy set, validated.
    pub engine: Arc<PolicyEngine>,
    /// Where it stands.
    pub status: ProposalStatus,
}

impl std::fmt::Debug for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proposal")
            .field("seq", &self.seq)
            .field("id", &self.id)
            .field("proposed_by", &self.proposed_by)
            .field("proposed_at", &self.proposed_at)
            .field("base_version", &self.base_version)
            .finish_non_exhaustive()
    }
}

impl Proposal {
    /// True if it can still be approved while `active_version` is in force.
    fn is_open(&self, active_version: &str) -> bool {
        self.status == ProposalStatus::Pending && self.base_version == active_version
    }
}

/// The id of the proposal filed by record `seq`.
pub(crate) fn proposal_id(seq: u64) -> String {
    format!("prop-{seq}")
}

/// The record sequence number `id` names, if `id` is a canonical proposal id.
fn seq_of(id: &str) -> Option<u64> {
    let seq: u64 = id.strip_prefix("prop-")?.parse().ok()?;
    (proposal_id(seq) == id).then_some(seq)
}

/// A proposal as stored: the policy as its canonical Cedar text.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredProposal {
    seq: u64,
    proposed_by: String,
    proposed_at: String,
    base_version: String,
    policy_version: String,
    cedar: String,
    status: ProposalStatus,
}

/// Why proposals could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum ProposalsError {
    /// The document could not be read or written.
    #[error("policy proposals: {0}")]
    Documents(#[from] DocError),
    /// The document is not a list of proposals.
    #[error("policy proposals `{0}` are invalid: {1}")]
    Parse(String, serde_json::Error),
    /// Other writers kept changing the proposals while this change was being saved.
    #[error("policy proposals: still changed by other servers after {SAVE_TRIES} tries")]
    Contended,
}

#[derive(Clone, Default)]
struct Kept {
    by_seq: BTreeMap<u64, Proposal>,
    /// The document version these were read from or saved as.
    version: Option<u64>,
}

impl Kept {
    /// Parses the stored document, reusing the engines of `known` proposals whose policy is
    /// unchanged (parsing and validating Cedar is the expensive part).
    fn parse(
        body: &str,
        version: u64,
        known: &Kept,
        shown: impl Fn() -> String,
    ) -> Result<Self, ProposalsError> {
        let stored: Vec<StoredProposal> =
            serde_json::from_str(body).map_err(|e| ProposalsError::Parse(shown(), e))?;
        let mut kept = Kept {
            version: Some(version),
            ..Kept::default()
        };
        for s in stored {
            let engine = match known.by_seq.get(&s.seq) {
                Some(p) if p.engine.version() == s.policy_version => p.engine.clone(),
                _ => match PolicyEngine::from_cedar(&s.cedar) {
                    Ok(engine) => Arc::new(engine),
                    Err(e) => {
                        tracing::error!(proposal = %proposal_id(s.seq), error = %e, "stored policy proposal is invalid; skipped");
                        continue;
                    }
                },
            };
            kept.by_seq.insert(
                s.seq,
                Proposal {
                    seq: s.seq,
                    id: proposal_id(s.seq),
                    proposed_by: s.proposed_by,
                    proposed_at: s.proposed_at,
                    base_version: s.base_version,
                    engine,
                    status: s.status,
                },
            );
        }
        Ok(kept)
    }

    fn to_json(&self) -> Result<String, serde_json::Error> {
        let stored: Vec<StoredProposal> = self
            .by_seq
            .values()
            .map(|p| StoredProposal {
                seq: p.seq,
                proposed_by: p.proposed_by.clone(),
                proposed_at: p.proposed_at.clone(),
                base_version: p.base_version.clone(),
                policy_version: p.engine.version().to_string(),
                cedar: p.engine.source().to_string(),
                status: p.status.clone(),
            })
            .collect();
        serde_json::to_string_pretty(&stored)
    }

    /// Forgets the oldest proposals that can no longer be approved until one more fits.
    fn make_room(&mut self, active_version: &str) {
        while self.by_seq.len() >= MAX_PROPOSALS_KEPT {
            let Some(oldest_closed) = self
                .by_seq
                .values()
                .find(|p| !p.is_open(active_version))
                .map(|p| p.seq)
            else {
                return;
            };
            self.by_seq.remove(&oldest_closed);
        }
    }
}

/// Every kept proposal.
pub(crate) struct Proposals {
    docs: Arc<Documents>,
    kept: RwLock<Arc<Kept>>,
    saving: SaveTurn,
}

impl std::fmt::Debug for Proposals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proposals").finish_non_exhaustive()
    }
}

impl Proposals {
    /// Loads the `proposals` document (seeding a shared store from `DATA_DIR/proposals.json`
    /// if it has none yet), or starts with none.
    pub(crate) fn load(docs: Arc<Documents>, data_dir: &Path) -> Result<Self, ProposalsError> {
        let kept = match docs.load_or_seed(DocName::Proposals, data_dir)? {
            Some(doc) => Kept::parse(&doc.body, doc.version, &Kept::default(), || {
                docs.describe(DocName::Proposals)
            })?,
            None => Kept::default(),
        };
        Ok(Self {
            docs,
            kept: RwLock::new(Arc::new(kept)),
            saving: SaveTurn::default(),
        })
    }

    /// True if a new proposal can be kept while `active_version` is in force.
    pub(crate) fn has_room(&self, active_version: &str) -> bool {
        let kept = self.read();
        kept.by_seq.len() < MAX_PROPOSALS_KEPT
            || kept.by_seq.values().any(|p| !p.is_open(active_version))
    }

    /// Keeps the proposal filed by record `seq` and returns it; `None` if the stored document
    /// has no room for it (other servers filed proposals since [`Self::has_room`] said so).
    pub(crate) async fn add(
        &self,
        seq: u64,
        proposed_by: &str,
        proposed_at: String,
        base_version: &str,
        engine: Arc<PolicyEngine>,
    ) -> Result<Option<Proposal>, ProposalsError> {
        let proposal = Proposal {
            seq,
            id: proposal_id(seq),
            proposed_by: proposed_by.to_string(),
            proposed_at,
            base_version: base_version.to_string(),
            engine,
            status: ProposalStatus::Pending,
        };
        let added = proposal.clone();
        let active_version = base_version.to_string();
        let kept = self
            .change(move |kept| {
                let mut next = kept.clone();
                next.make_room(&active_version);
                if next.by_seq.len() >= MAX_PROPOSALS_KEPT {
                    return None;
                }
                next.by_seq.insert(added.seq, added.clone());
                Some(next)
            })
            .await?;
        Ok(kept.then_some(proposal))
    }

    /// The proposal with exactly this id.
    pub(crate) fn get(&self, id: &str) -> Option<Proposal> {
        self.read().by_seq.get(&seq_of(id)?).cloned()
    }

    /// Marks a proposal activated, in the stored document, if it is still pending there; false
    /// if another server withdrew or activated it first. Approval takes this step before it
    /// activates the policy, so that of an approval and a withdrawal on two replicas exactly one
    /// wins.
    pub(crate) async fn mark_activated(
        &self,
        id: &str,
        approved_by: &str,
    ) -> Result<bool, ProposalsError> {
        let Some(seq) = seq_of(id) else {
            return Ok(false);
        };
        let approved_by = approved_by.to_string();
        self.change(move |kept| {
            let mut next = kept.clone();
            let proposal = next
                .by_seq
                .get_mut(&seq)
                .filter(|p| p.status == ProposalStatus::Pending)?;
            proposal.status = ProposalStatus::Activated {
                approved_by: approved_by.clone(),
            };
            Some(next)
        })
        .await
    }

    /// Gives a proposal marked activated by `approved_by` back its pending state (its policy
    /// could not be activated after all); false if it is no longer so marked.
    pub(crate) async fn unmark_activated(
        &self,
        id: &str,
        approved_by: &str,
    ) -> Result<bool, ProposalsError> {
        let Some(seq) = seq_of(id) else {
            return Ok(false);
        };
        let approved_by = approved_by.to_string();
        self.change(move |kept| {
            let mut next = kept.clone();
            let proposal = next.by_seq.get_mut(&seq)?;
            let marked = ProposalStatus::Activated {
                approved_by: approved_by.clone(),
            };
            if proposal.status != marked {
                return None;
            }
            proposal.status = ProposalStatus::Pending;
            Some(next)
        })
        .await
    }

    /// Forgets a proposal (withdrawn), in the stored document, if it is still pending there;
    /// false if another server activated or withdrew it first.
    pub(crate) async fn remove(&self, id: &str) -> Result<bool, ProposalsError> {
        let Some(seq) = seq_of(id) else {
            return Ok(false);
        };
        self.change(move |kept| {
            let mut next = kept.clone();
            let pending = next
                .by_seq
                .get(&seq)
                .is_some_and(|p| p.status == ProposalStatus::Pending);
            if !pending {
                return None;
            }
            next.by_seq.remove(&seq);
            Some(next)
        })
        .await
    }

    /// The version of the document the proposals in memory were read from or saved as.
    pub(crate) fn version(&self) -> Option<u64> {
        self.read().version
    }

    /// Reloads the proposals if the stored document is newer than `seen` (`None`: whatever is
    /// stored).
    pub(crate) async fn reload_if_newer(&self, seen: Option<u64>) -> Result<(), ProposalsError> {
        if seen.is_some() && seen <= self.version() {
            return Ok(());
        }
        let known = self.read();
        let docs = self.docs.clone();
        let parsed = tokio::task::spawn_blocking(move || {
            let Some(doc) = docs.load(DocName::Proposals)? else {
                return Ok(None);
            };
            Kept::parse(&doc.body, doc.version, &known, || {
                docs.describe(DocName::Proposals)
            })
            .map(Some)
        })
        .await
        .map_err(|_| ProposalsError::Documents(DocError::Stopped))??;
        if let Some(kept) = parsed {
            self.install(kept);
        }
        Ok(())
    }

    /// On a shared store, picks up what other servers filed or approved (one cheap read when
    /// nothing changed); does nothing otherwise.
    pub(crate) async fn refresh(&self) -> Result<(), ProposalsError> {
        if !self.docs.is_shared() {
            return Ok(());
        }
        let stored = off_thread(&self.docs, |d| d.versions()).await?;
        self.reload_if_newer(stored.get(&DocName::Proposals).copied())
            .await
    }

    /// Applies `change` to the proposals as stored and saves the result; reloads and tries
    /// again when another server saved first. `change` returns `None` when there is nothing
    /// to do (the result is then false).
    async fn change(&self, change: impl Fn(&Kept) -> Option<Kept>) -> Result<bool, ProposalsError> {
        let _turn = self.saving.take().await;
        for attempt in 0..SAVE_TRIES {
            let current = self.read();
            let Some(mut next) = change(&current) else {
                return Ok(false);
            };
            let body = next
                .to_json()
                .map_err(|e| ProposalsError::Parse(self.docs.describe(DocName::Proposals), e))?;
            let expected = current.version;
            match off_thread(&self.docs, move |d| {
                d.save(DocName::Proposals, &body, expected)
            })
            .await
            {
                Ok(version) => {
                    next.version = Some(version);
                    self.install(next);
                    return Ok(true);
                }
                Err(DocError::Conflict(_)) => {
                    after_conflict(attempt).await;
                    self.reload_if_newer(None).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ProposalsError::Contended)
    }

    /// Replaces the proposals in memory, unless a newer version is already there.
    fn install(&self, kept: Kept) {
        let mut current = self.kept.write().unwrap_or_else(PoisonError::into_inner);
        if kept.version >= current.version {
            *current = Arc::new(kept);
        }
    }

    fn read(&self) -> Arc<Kept> {
        self.kept
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_matched_exactly() {
        assert_eq!(seq_of("prop-1"), Some(1));
        assert_eq!(seq_of("prop-12"), Some(12));
        for alias in [
            "prop-+1", "prop-01", "prop- 1", "prop-1 ", "PROP-1", "prop-", "1",
        ] {
            assert_eq!(seq_of(alias), None, "{alias}");
        }
    }

    #[tokio::test]
    async fn proposals_survive_a_reload_and_make_room_only_by_forgetting_closed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let docs = Arc::new(Documents::open(None, dir.path()).unwrap());
        let proposals = Proposals::load(docs.clone(), dir.path()).unwrap();
        let engine = Arc::new(PolicyEngine::default_policy());
        let active = engine.version().to_string();
        let first = proposals
            .add(7, "alice", "t".into(), &active, engine.clone())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.id, "prop-7");
        proposals.mark_activated("prop-7", "bob").await.unwrap();
        for seq in 8..(7 + MAX_PROPOSALS_KEPT as u64) {
            proposals
                .add(seq, "alice", "t".into(), &active, engine.clone())
                .await
                .unwrap();
        }
        assert!(proposals.has_room(&active), "the activated one can go");
        proposals
            .add(1000, "alice", "t".into(), &active, engine.clone())
            .await
            .unwrap();
        assert!(
            proposals.get("prop-7").is_none(),
            "the closed one was forgotten"
        );
        assert!(
            !proposals.has_room(&active),
            "every kept proposal is pending"
        );
        // Filed anyway (another replica's view said there was room): not kept, and the
        // stored document stays at the cap.
        let refused = proposals
            .add(1001, "alice", "t".into(), &active, engine.clone())
            .await
            .unwrap();
        assert!(refused.is_none());
        assert!(proposals.get("prop-1001").is_none());
        assert!(
            proposals.has_room("sha256:other"),
            "proposals made against an older policy can go"
        );

        let reloaded = Proposals::load(
            Arc::new(Documents::open(None, dir.path()).unwrap()),
            dir.path(),
        )
        .unwrap();
        let kept = reloaded.get("prop-1000").unwrap();
        assert_eq!(kept.status, ProposalStatus::Pending);
        assert_eq!(kept.engine.version(), engine.version());
        assert_eq!(reloaded.get("prop-8").unwrap().proposed_by, "alice");

        reloaded.remove("prop-8").await.unwrap();
        assert!(reloaded.get("prop-8").is_none());
        let again = Proposals::load(
            Arc::new(Documents::open(None, dir.path()).unwrap()),
            dir.path(),
        )
        .unwrap();
        assert!(again.get("prop-8").is_none(), "a withdrawal is saved");
        assert!(again.get("prop-9").is_some());
    }
}
