//! State an unauthenticated caller chose. Under `--auth none` anyone may register agents (and
//! so mint their bearer tokens), rotate tokens and activate policies as `unauthenticated-admin`;
//! all of it would stay valid when the same state is later served with credentials. So such
//! changes are marked where they are stored: an agent in the registry
//! (`"unauthenticated": true`), the policy in the `unauthenticated` state document (the version
//! an unauthenticated admin activated last). A server with credentials refuses to start while
//! marked agents are registered or the marked policy is active, naming them, unless started
//! with `--accept-unauthenticated-state`: the acceptance is then recorded in the audit log and
//! the marks are cleared.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zt_contract::{AdminAction, RecordDraft, SERVER_ACTOR};

use crate::policy_store::PolicyStore;
use crate::registry::Registry;
use crate::state::SharedState;
use crate::state_docs::{off_thread, DocError, DocName, Documents, SAVE_TRIES};

/// The flag that accepts marked state at start-up.
pub(crate) const ACCEPT_FLAG: &str = "--accept-unauthenticated-state";

/// The `unauthenticated` document.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Marks {
    /// The version of the policy an unauthenticated admin activated last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy_version: Option<String>,
}

impl Marks {
    fn parse(docs: &Documents, body: &str) -> Result<Self, MarksError> {
        serde_json::from_str(body)
            .map_err(|e| MarksError::Parse(docs.describe(DocName::Unauthenticated), e.to_string()))
    }
}

/// Why the marks could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MarksError {
    /// The document could not be read or written.
    #[error("unauthenticated state marks: {0}")]
    Documents(#[from] DocError),
    /// The document is not what this server writes.
    #[error("unauthenticated state marks `{0}` are invalid: {1}")]
    Parse(String, String),
    /// Other writers kept changing the document.
    #[error(
        "unauthenticated state marks: still changed by other servers after {SAVE_TRIES} tries"
    )]
    Contended,
}

/// What in the loaded state an unauthenticated caller chose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UnauthenticatedState {
    /// Registered agents an unauthenticated caller registered or gave a token.
    pub agents: Vec<String>,
    /// The active policy's version, if an unauthenticated admin activated it.
    pub policy_version: Option<String>,
}

impl UnauthenticatedState {
    /// Reads the marks of the loaded registry and active policy (seeding a shared store's
    /// document from `DATA_DIR/unauthenticated.json`, as for the other documents).
    pub(crate) fn find(
        docs: &Documents,
        data_dir: &Path,
        registry: &Registry,
        policy: &PolicyStore,
    ) -> Result<Self, MarksError> {
        let marks = match docs.load_or_seed(DocName::Unauthenticated, data_dir)? {
            Some(doc) => Marks::parse(docs, &doc.body)?,
            None => Marks::default(),
        };
        let active = policy.current().version().to_string();
        Ok(Self {
            agents: registry.unauthenticated_agents(),
            policy_version: marks.policy_version.filter(|v| *v == active),
        })
    }

    /// True if nothing is marked.
    pub(crate) fn is_empty(&self) -> bool {
        self.agents.is_empty() && self.policy_version.is_none()
    }

    /// `agents `a`, `b`; policy `sha256:...``, for messages.
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.agents.is_empty() {
            let names: Vec<String> = self.agents.iter().map(|a| format!("`{a}`")).collect();
            parts.push(format!("agents {}", names.join(", ")));
        }
        if let Some(version) = &self.policy_version {
            parts.push(format!("active policy `{version}`"));
        }
        parts.join("; ")
    }
}

/// The version of the policy an unauthenticated admin activated last, if marked.
pub(crate) async fn marked_policy(docs: &Arc<Documents>) -> Result<Option<String>, MarksError> {
    let Some(doc) = off_thread(docs, |d| d.load(DocName::Unauthenticated)).await? else {
        return Ok(None);
    };
    Ok(Marks::parse(docs, &doc.body)?.policy_version)
}

/// Marks `version` as activated by an unauthenticated admin. Written before the policy is
/// activated: a crash between the two leaves a mark on a version that is not active, which
/// marks nothing.
pub(crate) async fn mark_policy(docs: &Arc<Documents>, version: &str) -> Result<(), MarksError> {
    let version = version.to_string();
    save_marks(docs, move |marks| {
        marks.policy_version = Some(version.clone())
    })
    .await
}

/// Accepts `found` (the server was started with [`ACCEPT_FLAG`]): records the acceptance in
/// the audit log, then clears the marks.
pub(crate) async fn accept(
    state: &SharedState,
    found: &UnauthenticatedState,
) -> Result<(), String> {
    tracing::warn!(
        accepted = %found.describe(),
        "ACCEPTING STATE CHOSEN WITHOUT AUTHENTICATION ({ACCEPT_FLAG}): these agents' tokens and this policy stay in force"
    );
    let record = RecordDraft::admin(
        SERVER_ACTOR,
        true,
        AdminAction::UnauthenticatedStateAccept,
        "",
        format!(
            "started with {ACCEPT_FLAG}: kept {} chosen while authentication was off",
            found.describe()
        ),
    )
    .with_policy_version(found.policy_version.clone());
    state
        .ledger
        .append(record)
        .await
        .map_err(|e| e.to_string())?;
    state
        .registry
        .clear_unauthenticated()
        .await
        .map_err(|e| e.to_string())?;
    if found.policy_version.is_some() {
        save_marks(&state.docs, |marks| marks.policy_version = None)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Applies `change` to the stored marks and saves, again after a conflict.
async fn save_marks(
    docs: &Arc<Documents>,
    change: impl Fn(&mut Marks) + Send + Sync + 'static,
) -> Result<(), MarksError> {
    let change = Arc::new(change);
    for _ in 0..SAVE_TRIES {
        let change = change.clone();
        let saved = off_thread(docs, move |d| {
            let doc = d.load(DocName::Unauthenticated)?;
            let mut marks = match &doc {
                Some(doc) => match Marks::parse(d, &doc.body) {
                    Ok(marks) => marks,
                    Err(e) => return Ok(Err(e)),
                },
                None => Marks::default(),
            };
            change(&mut marks);
            let body = serde_json::to_string(&marks).unwrap_or_else(|_| "{}".into());
            match d.save(DocName::Unauthenticated, &body, doc.map(|doc| doc.version)) {
                Ok(_) => Ok(Ok(true)),
                Err(DocError::Conflict(_)) => Ok(Ok(false)),
                Err(e) => Err(e),
            }
        })
        .await??;
        if saved {
            return Ok(());
        }
    }
    Err(MarksError::Contended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_read_back_and_refuse_what_they_do_not_know() {
        let dir = tempfile::tempdir().unwrap();
        let docs = Documents::Files(crate::state_docs::FileDocs::new(dir.path()));
        let marks = Marks::parse(&docs, r#"{"policy_version":"sha256:ab"}"#).unwrap();
        assert_eq!(marks.policy_version.as_deref(), Some("sha256:ab"));
        assert!(Marks::parse(&docs, r#"{"policy":"x"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&Marks::default()).unwrap(),
            "{}",
            "cleared marks are an empty object"
        );
    }

    #[test]
    fn the_description_names_every_marked_thing() {
        let found = UnauthenticatedState {
            agents: vec!["a".into(), "b".into()],
            policy_version: Some("sha256:ab".into()),
        };
        assert_eq!(
            found.describe(),
            "agents `a`, `b`; active policy `sha256:ab`"
        );
        assert!(UnauthenticatedState::default().is_empty());
    }
}
