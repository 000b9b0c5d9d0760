//! Whether an answer is the answer to the request sent: the control plane's signature and hash
//! prove an answer genuine, not that it answers this request. Someone on the path who rewrote
//! the request (a harmless action in place of the one asked) and kept its `request_id` would
//! get a genuinely signed allow that the caller took for its own.

use zt_contract::names::{ActionName, ResourceName};
use zt_contract::{Decision, DecisionRequest, DecisionResponse};

use crate::ClientError;

/// Checks that `answer` decided `request`: its `request_id` echoed, the same action (as the control plane folds it, to
/// lower case), the same resource (as the control plane stores it, in Unicode NFC), the same context (by its digest), and, for an allow of a
/// request that named its actor, that actor.
pub(crate) fn answers(
    request: &DecisionRequest,
    answer: &DecisionResponse,
) -> Result<(), ClientError> {
    if request.request_id.is_some() && answer.evidence.request_id != request.request_id {
        return Err(ClientError::Evidence(
            "the answer does not echo this request's request_id".into(),
        ));
    }
    let other = |what: &str| {
        Err(ClientError::Evidence(format!(
            "the answer decides another {what} than the one asked"
        )))
    };
    // The control plane folds an action's ASCII letters to lower case and answers it folded.
    let action = ActionName::parse(&request.action)
        .map(ActionName::into_string)
        .unwrap_or_else(|_| request.action.clone());
    if answer.action != action {
        return other("action");
    }
    let resource = ResourceName::parse(&request.resource)
        .map(ResourceName::into_string)
        .unwrap_or_else(|_| request.resource.clone());
    if answer.resource != resource {
        return other("resource");
    }
    if answer.evidence.context_sha256 != request.context_sha256() {
        return other("context");
    }
    if answer.evidence.resource_attributes_sha256 != request.resource_attributes_sha256() {
        return other("resource attributes");
    }
    let named = !request.actor.is_empty();
    if named && answer.decision == Decision::Allow && answer.actor != request.actor {
        return other("actor");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use zt_contract::Digest32;

    use super::*;

    fn asked() -> DecisionRequest {
        DecisionRequest {
            actor: "agent-a".into(),
            action: "files.read".into(),
            resource: "cafe\u{301}".into(),
            context: json!({"ticket": 7}).as_object().cloned(),
            ..DecisionRequest::default()
        }
    }

    fn answer_to(request: &DecisionRequest) -> DecisionResponse {
        serde_json::from_value(json!({
            "ok": true,
            "actor": request.actor,
            "action": request.action,
            "resource": "café",
            "decision": "allow",
            "reason": "allowed",
            "audit": {
                "timestamp": "2026-12-07T00:00:00.000Z",
                "previous_hash": "0".repeat(64),
                "current_hash": "0".repeat(64),
                "kms_signature": {"algorithm": "none", "key_id": "k", "signature": ""},
            },
            "evidence": {
                "kind": "decision",
                "seq": 1,
                "authenticated": true,
                "context_sha256": Digest32::sha256(br#"{"ticket":7}"#).to_hex(),
            },
        }))
        .unwrap()
    }

    #[test]
    fn an_answer_to_another_request_is_refused() {
        let request = asked();
        let genuine = answer_to(&request);
        assert!(answers(&request, &genuine).is_ok());
        type Change = fn(&mut DecisionResponse);
        let cases: [(&str, Change); 5] = [
            ("action", |a| a.action = "files.list".into()),
            ("resource", |a| a.resource = "tea".into()),
            ("context", |a| a.evidence.context_sha256 = None),
            ("resource attributes", |a| {
                a.evidence.resource_attributes_sha256 = Some("0".repeat(64))
            }),
            ("actor", |a| a.actor = "agent-b".into()),
        ];
        for (what, change) in cases {
            let mut other = genuine.clone();
            change(&mut other);
            let refused = answers(&request, &other).unwrap_err().to_string();
            assert!(refused.contains(&format!("another {what}")), "{refused}");
        }
        // A deny names the authenticated actor, whoever the request named: still an answer.
        let mut deny = genuine.clone();
        deny.decision = Decision::Deny;
        deny.actor = "agent-b".into();
        assert!(answers(&request, &deny).is_ok());
    }

    #[test]
    fn an_action_asked_in_upper_case_is_answered_folded() {
        let mut request = asked();
        request.action = "mcp.github.getFile".into();
        let mut folded = answer_to(&request);
        folded.action = "mcp.github.getfile".into();
        assert!(answers(&request, &folded).is_ok());
        // Folding is the control plane's, not a looser comparison: another action still fails.
        folded.action = "mcp.github.getfiles".into();
        assert!(answers(&request, &folded).is_err());
    }
}
