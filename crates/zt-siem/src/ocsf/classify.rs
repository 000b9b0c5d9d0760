//! The judgement calls of the OCSF mapping, each in one `match`: which API Activity activity a
//! record is, how severe, which disposition, and what kind of actor. `docs/SIEM.md` lists them.

use zt_contract::{AdminAction, Decision, ExecutionOutcome, RecordBody, RecordKind};

/// `api_activity.activity_id` Other: the record is not a create/read/update/delete.
const OTHER: u8 = 99;

/// `activity_id` and `activity_name` of a record.
///
/// Admin changes are create/update/delete of the registry or the policy, so they map to the
/// class's CRUD activities. A decision answers "may this actor do this?" about someone else's
/// API: it is none of them, so it is Other (99) with `activity_name` `Authorize`; so are the
/// refused admin access (`Admin Access`) and rejection summaries (`Rejections Summary`).
pub(super) fn activity(body: &RecordBody) -> (u8, &'static str) {
    match body.kind {
        RecordKind::Decision => (OTHER, "Authorize"),
        RecordKind::Rejections => (OTHER, "Rejections Summary"),
        RecordKind::Execution => (OTHER, "Execution Receipt"),
        RecordKind::Admin => match AdminAction::from_name(&body.action) {
            Some(AdminAction::AgentsRegister | AdminAction::PoliciesPropose) => (1, "Create"),
            Some(
                AdminAction::AgentsRotateToken
                | AdminAction::AgentsSetGroups
                | AdminAction::PoliciesApprove
                | AdminAction::PoliciesActivate
                | AdminAction::PoliciesReload
                | AdminAction::AuditKeyRotate,
            ) => (3, "Update"),
            Some(AdminAction::AgentsRemove | AdminAction::PoliciesWithdraw) => (4, "Delete"),
            Some(AdminAction::Access) => (OTHER, "Admin Access"),
            Some(AdminAction::UnauthenticatedStateAccept) | None => (OTHER, "Admin"),
        },
    }
}

/// The OCSF caption of an `api_activity.activity_id`, for `type_name`.
pub(super) fn activity_caption(activity_id: u8) -> &'static str {
    match activity_id {
        1 => "Create",
        2 => "Read",
        3 => "Update",
        4 => "Delete",
        OTHER => "Other",
        _ => "Unknown",
    }
}

/// `status_id` and `status`: a decision or admin act is a Success when allowed; an execution
/// receipt (always of an allow) only when its command ran and exited 0.
pub(super) fn status(body: &RecordBody) -> (u8, &'static str) {
    let succeeded = match (&body.execution, body.decision) {
        (Some(execution), _) => {
            execution.outcome == ExecutionOutcome::Exited && execution.exit_code == Some(0)
        }
        (None, decision) => decision == Decision::Allow,
    };
    if succeeded {
        (1, "Success")
    } else {
        (2, "Failure")
    }
}

/// `severity_id` and `severity`: allowed actions are Informational; a denied action is Low
/// (policy working as intended); a denial that looks like an attack (a request claiming
/// another actor, a non-admin reaching for admin routes) is Medium; rejection summaries are
/// Low. An execution that ran where the kernel could not enforce its whole sandbox is Medium;
/// one that did not start, or ended on a signal or a failing exit, is Low.
pub(super) fn severity(body: &RecordBody, status_id: u8) -> (u8, &'static str) {
    let suspicious = body.claimed_actor.is_some() || is_admin_access(body);
    if let Some(execution) = &body.execution {
        if execution.degraded.as_ref().is_some_and(|d| !d.is_empty()) {
            return (3, "Medium");
        }
        if status_id != 1 {
            return (2, "Low");
        }
    }
    match (body.decision, body.kind) {
        (Decision::Allow, _) => (1, "Informational"),
        (Decision::Deny, _) if suspicious => (3, "Medium"),
        (
            Decision::Deny,
            RecordKind::Decision
            | RecordKind::Admin
            | RecordKind::Rejections
            | RecordKind::Execution,
        ) => (2, "Low"),
    }
}

/// `disposition_id` and `disposition`: Allowed, Blocked for a denied action, Unauthorized for
/// a refused admin access, Rejected for requests refused before any decision.
pub(super) fn disposition(body: &RecordBody) -> (u8, &'static str) {
    match (body.decision, body.kind) {
        (Decision::Allow, _) => (1, "Allowed"),
        (Decision::Deny, RecordKind::Rejections) => (25, "Rejected"),
        (Decision::Deny, RecordKind::Admin) if is_admin_access(body) => (26, "Unauthorized"),
        (Decision::Deny, RecordKind::Decision | RecordKind::Admin | RecordKind::Execution) => {
            (2, "Blocked")
        }
    }
}

/// Who the record's actor is, for the OCSF `actor` object.
pub(super) enum Actor {
    /// The control plane itself (rejection summaries, policy file reloads): `actor.app_name`.
    Application,
    /// A caller: `actor.user` with an OCSF user type.
    User {
        /// `user.type_id`.
        type_id: u8,
        /// `user.type`, the caption of `type_id` or zt's own word for Other.
        type_name: &'static str,
    },
}

/// Admins are Admin (2); agents and workloads are Other (99) with type `Agent`, as OCSF has
/// no user type for an autonomous agent.
pub(super) fn actor(body: &RecordBody) -> Actor {
    let admin = Actor::User {
        type_id: 2,
        type_name: "Admin",
    };
    let agent = Actor::User {
        type_id: 99,
        type_name: "Agent",
    };
    match body.kind {
        RecordKind::Rejections => Actor::Application,
        RecordKind::Decision | RecordKind::Execution => agent,
        RecordKind::Admin => match AdminAction::from_name(&body.action) {
            Some(AdminAction::PoliciesReload | AdminAction::AuditKeyRotate) => Actor::Application,
            Some(AdminAction::Access) => agent,
            Some(
                AdminAction::AgentsRegister
                | AdminAction::AgentsRotateToken
                | AdminAction::AgentsRemove
                | AdminAction::AgentsSetGroups
                | AdminAction::PoliciesPropose
                | AdminAction::PoliciesApprove
                | AdminAction::PoliciesActivate
                | AdminAction::PoliciesWithdraw
                | AdminAction::UnauthenticatedStateAccept,
            )
            | None => admin,
        },
    }
}

/// The action of an agent's credential refused on an admin route.
fn is_admin_access(body: &RecordBody) -> bool {
    AdminAction::from_name(&body.action) == Some(AdminAction::Access)
}
