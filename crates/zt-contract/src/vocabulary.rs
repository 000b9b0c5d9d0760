//! The words audit records share across crates: the admin actions (`zt.admin.*`) the server
//! records and the SIEM mapping classifies, the control plane's own actor and action names,
//! and the deny reasons the server gives itself (before or instead of the policy engine).
//! Each is one enum or constant, so a rename cannot silently break a reader on the other side
//! of a crate boundary.

/// The actor of records the control plane makes on its own behalf (rejection summaries, the
/// acceptance of state chosen without authentication).
pub const SERVER_ACTOR: &str = "zt-server";

/// The context key the execution broker writes the command it will run under, and its fields
/// (`{"program": "/usr/bin/make", "args_sha256": "..."}`); the policy schema declares exactly
/// these.
pub const EXEC_CONTEXT_KEY: &str = "exec";
/// The resolved program's path, in [`EXEC_CONTEXT_KEY`].
pub const EXEC_PROGRAM: &str = "program";
/// The SHA-256 of the arguments, in [`EXEC_CONTEXT_KEY`].
pub const EXEC_ARGS_SHA256: &str = "args_sha256";

/// The action of a rejection summary record ([`crate::RecordKind::Rejections`]).
pub const REJECTIONS_ACTION: &str = "zt.server.rejected_requests";

/// Reason given when the actor is not in the registry.
pub const REASON_UNREGISTERED: &str = "agent is not registered";
/// Reason given when no rule allows the action.
pub const REASON_NOT_ALLOWED: &str = "action is not in the allow list";
/// Reason of the record of an agent credential used on an admin route.
pub const REASON_ADMIN_ACCESS_REFUSED: &str = "agent credentials cannot use admin routes";

/// Declares [`AdminAction`], its list and its names from one table, so that a new action is
/// one line and can never be missing from [`AdminAction::ALL`] (and so from
/// [`AdminAction::from_name`]).
macro_rules! admin_actions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// The `action` of an admin record ([`crate::RecordKind::Admin`]). Adding one means
        /// deciding its OCSF activity in `zt-siem` (an exhaustive `match` there fails to compile
        /// until then).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AdminAction {
            $($(#[$doc])* $variant,)*
        }

        impl AdminAction {
            /// Every admin action.
            pub const ALL: &'static [AdminAction] = &[$(AdminAction::$variant,)*];

            /// The record's `action`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(AdminAction::$variant => $name,)*
                }
            }
        }
    };
}

admin_actions! {
    /// An agent registered.
    AgentsRegister => "zt.admin.agents.register",
    /// An agent's token replaced by a new one.
    AgentsRotateToken => "zt.admin.agents.rotate_token",
    /// An agent removed, its token revoked.
    AgentsRemove => "zt.admin.agents.remove",
    /// An agent's groups set (`principal in Group::"…"`).
    AgentsSetGroups => "zt.admin.agents.set_groups",
    /// A policy proposal filed.
    PoliciesPropose => "zt.admin.policies.propose",
    /// A policy proposal approved.
    PoliciesApprove => "zt.admin.policies.approve",
    /// An approved policy made active.
    PoliciesActivate => "zt.admin.policies.activate",
    /// A pending policy proposal withdrawn.
    PoliciesWithdraw => "zt.admin.policies.withdraw",
    /// The policy file reloaded (`--policy FILE`).
    PoliciesReload => "zt.admin.policies.reload",
    /// State chosen while authentication was off, kept at start.
    UnauthenticatedStateAccept => "zt.admin.unauthenticated_state.accept",
    /// An agent credential used on an admin route (a deny record).
    Access => "zt.admin.access",
    /// The audit custody key changed; the record carries the outgoing key's endorsement of
    /// the new one (`zt_contract::key_rotation`). Written by the server at its first start
    /// with the new key.
    AuditKeyRotate => "zt.audit.key.rotate",
}

impl AdminAction {
    /// The admin action a record's `action` names, if any.
    pub fn from_name(action: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.as_str() == action)
    }
}

impl std::fmt::Display for AdminAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A deny the server decides itself, before asking the policy engine. Each has one text, the
/// record's `reason`; the server maps each to its HTTP status in one `match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// The request's `request_id` was already used within the replay window.
    Replayed {
        /// The id.
        request_id: String,
    },
    /// The body names another actor than the one the credential authenticates.
    ClaimedActor {
        /// The actor the body claims.
        claimed: String,
        /// The actor the credential authenticates.
        authenticated: String,
    },
    /// The actor is not in the registry.
    Unregistered,
    /// A broker asked for a sandbox and the deciding permits' grant cannot be read.
    SandboxGrantInvalid {
        /// Why the grant is invalid.
        error: String,
    },
}

/// The text of [`DenyReason::Replayed`] around its id.
const REPLAYED_BEFORE_ID: &str = "request_id `";
const REPLAYED_AFTER_ID: &str = "` was already used within the replay window";

/// Whether a record carrying `request_id` with `decision` and `reason` spends the id for its
/// actor: every one does except the denial of a replay, which names the id it refused without
/// spending it again (an allow whose policy reason reads the same still spends it).
pub fn spends_request_id(request_id: &str, decision: crate::Decision, reason: &str) -> bool {
    decision != crate::Decision::Deny
        || reason
            .strip_prefix(REPLAYED_BEFORE_ID)
            .and_then(|rest| rest.strip_suffix(REPLAYED_AFTER_ID))
            != Some(request_id)
}

impl DenyReason {
    /// The record's `reason`.
    pub fn text(&self) -> String {
        match self {
            DenyReason::Replayed { request_id } => {
                format!("{REPLAYED_BEFORE_ID}{request_id}{REPLAYED_AFTER_ID}")
            }
            DenyReason::ClaimedActor {
                claimed,
                authenticated,
            } => format!(
                "the request claims actor `{claimed}` but its credential authenticates \
                 `{authenticated}`"
            ),
            DenyReason::Unregistered => REASON_UNREGISTERED.to_string(),
            DenyReason::SandboxGrantInvalid { error } => {
                format!("the deciding policy's sandbox grant is invalid: {error}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Decision;

    #[test]
    fn admin_action_names_are_distinct_and_read_back() {
        let mut names: Vec<&str> = AdminAction::ALL.iter().map(|a| a.as_str()).collect();
        for &action in AdminAction::ALL {
            assert_eq!(AdminAction::from_name(action.as_str()), Some(action));
            // The key rotation kept the name its records have had since the first rotation.
            assert!(
                action.as_str().starts_with("zt.admin.") || action == AdminAction::AuditKeyRotate,
                "{action}"
            );
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), AdminAction::ALL.len());
        assert_eq!(AdminAction::from_name("zt.admin.policies"), None);
    }

    #[test]
    fn deny_reasons_keep_their_wire_text() {
        assert_eq!(DenyReason::Unregistered.text(), "agent is not registered");
        assert_eq!(
            DenyReason::Replayed {
                request_id: "r-1".into()
            }
            .text(),
            "request_id `r-1` was already used within the replay window"
        );
        let replayed = DenyReason::Replayed {
            request_id: "r-1".into(),
        }
        .text();
        assert!(!spends_request_id("r-1", Decision::Deny, &replayed));
        // Another id's denial, any other reason, or an allow spends the id the record carries.
        assert!(spends_request_id("r-2", Decision::Deny, &replayed));
        assert!(spends_request_id(
            "r-1",
            Decision::Deny,
            "permitted by policy p"
        ));
        assert!(spends_request_id("r-1", Decision::Allow, &replayed));
        assert_eq!(
            DenyReason::ClaimedActor {
                claimed: "a".into(),
                authenticated: "b".into()
            }
            .text(),
            "the request claims actor `a` but its credential authenticates `b`"
        );
    }
}
