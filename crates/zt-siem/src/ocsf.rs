//! The `ocsf` format: one OCSF 1.7.0 API Activity event (`class_uid` 6003, category 6
//! Application Activity) per record, with the Security Control profile: `action_id`
//! (Allowed/Denied), `disposition_id`, and the deciding `policy`. Fields zt records carry that
//! OCSF has no home for go under `unmapped`. The mapping table is in `docs/SIEM.md`; the
//! golden vectors in `tests/vectors/` and the schema check in `tests/ocsf.rs` hold it.

mod classify;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use zt_contract::{Decision, KmsSignature, RecordBody, RecordKind};

use crate::time::epoch_millis;
use crate::SiemError;
use classify::{activity, disposition, severity, Actor};

/// The OCSF schema version the events follow (`metadata.version`).
pub const OCSF_VERSION: &str = "1.7.0";
/// OCSF API Activity.
pub const CLASS_UID: u32 = 6003;
/// OCSF category Application Activity.
pub const CATEGORY_UID: u32 = 6;
/// `metadata.product.name` and `vendor_name`.
pub const PRODUCT: &str = "zt-infra";
/// `metadata.log_name`: the signed, hash-chained audit log.
pub const LOG_NAME: &str = "zt-audit";
/// The profiles every event declares in `metadata.profiles`.
pub const PROFILES: [&str; 1] = ["security_control"];

/// A stored line: the hashed body plus its hash and signature.
#[derive(Deserialize)]
struct Stored {
    #[serde(flatten)]
    body: RecordBody,
    current_hash: String,
    #[serde(default)]
    kms_signature: Option<KmsSignature>,
}

/// The OCSF event of one stored record line, as one line of JSON.
pub fn event_line(stored: &str) -> Result<String, SiemError> {
    let event = event(stored)?;
    serde_json::to_string(&event).map_err(|e| SiemError::NotARecord(e.to_string()))
}

/// The OCSF event of one stored record line.
pub fn event(stored: &str) -> Result<Value, SiemError> {
    let Stored {
        body,
        current_hash,
        kms_signature,
    } = serde_json::from_str(stored).map_err(|e| SiemError::NotARecord(e.to_string()))?;
    let time = epoch_millis(&body.timestamp)?;
    let (activity_id, activity_name) = activity(&body);
    let (status_id, status) = classify::status(&body);
    let (severity_id, severity_name) = severity(&body, status_id);
    let (disposition_id, disposition_name) = disposition(&body);
    let (action_id, action) = match body.decision {
        Decision::Allow => (1, "Allowed"),
        Decision::Deny => (2, "Denied"),
    };
    let mut event = json!({
        "activity_id": activity_id,
        "activity_name": activity_name,
        "category_uid": CATEGORY_UID,
        "category_name": "Application Activity",
        "class_uid": CLASS_UID,
        "class_name": "API Activity",
        "type_uid": u64::from(CLASS_UID) * 100 + u64::from(activity_id),
        "type_name": format!("API Activity: {}", classify::activity_caption(activity_id)),
        "severity_id": severity_id,
        "severity": severity_name,
        "time": time,
        "status_id": status_id,
        "status": status,
        "message": body.reason,
        "action_id": action_id,
        "action": action,
        "disposition_id": disposition_id,
        "disposition": disposition_name,
        "metadata": metadata(&body, &current_hash),
        "actor": actor(&body),
        "api": api(&body),
    });
    let fields = event.as_object_mut().ok_or_else(not_an_object)?;
    if !body.resource.is_empty() {
        fields.insert(
            "resources".into(),
            json!([{"name": body.resource, "role_id": 1, "role": "Target"}]),
        );
    }
    if let Some(policy) = policy(&body) {
        fields.insert("policy".into(), policy);
    }
    fields.insert("unmapped".into(), unmapped(&body, kms_signature.as_ref()));
    Ok(event)
}

fn not_an_object() -> SiemError {
    SiemError::NotARecord("event is not an object".into())
}

fn metadata(body: &RecordBody, current_hash: &str) -> Value {
    json!({
        "version": OCSF_VERSION,
        "product": {"name": PRODUCT, "vendor_name": PRODUCT},
        "profiles": PROFILES,
        "uid": current_hash,
        "original_event_uid": body.seq.to_string(),
        "sequence": body.seq,
        "log_name": LOG_NAME,
        "original_time": body.timestamp,
    })
}

fn actor(body: &RecordBody) -> Value {
    match classify::actor(body) {
        Actor::Application => json!({"app_name": body.actor}),
        Actor::User { type_id, type_name } => json!({
            "user": {"name": body.actor, "type_id": type_id, "type": type_name}
        }),
    }
}

fn api(body: &RecordBody) -> Value {
    let mut api = Map::new();
    api.insert("operation".into(), json!(body.action));
    if let Some(request_id) = &body.request_id {
        api.insert("request".into(), json!({"uid": request_id}));
    }
    Value::Object(api)
}

/// The policy set that decided: its version (hash) and the deciding policy ids.
fn policy(body: &RecordBody) -> Option<Value> {
    let ids = body.policies.as_deref().unwrap_or_default();
    if body.policy_version.is_none() && ids.is_empty() {
        return None;
    }
    let mut policy = Map::new();
    policy.insert("type".into(), json!("Cedar policy set"));
    if let Some(version) = &body.policy_version {
        policy.insert("version".into(), json!(version));
    }
    if !ids.is_empty() {
        policy.insert("name".into(), json!(ids.join(", ")));
    }
    if body.kind == RecordKind::Decision {
        policy.insert("is_applied".into(), json!(!ids.is_empty()));
    }
    Some(Value::Object(policy))
}

/// What a record carries that OCSF has no attribute for, under zt's own names.
fn unmapped(body: &RecordBody, signature: Option<&KmsSignature>) -> Value {
    let mut zt = Map::new();
    zt.insert("kind".into(), json!(body.kind));
    zt.insert("decision".into(), json!(body.decision));
    zt.insert("previous_hash".into(), json!(body.previous_hash));
    zt.insert("authenticated".into(), json!(body.authenticated));
    if let Some(signature) = signature {
        zt.insert(
            "kms_signature".into(),
            json!({"algorithm": signature.algorithm, "key_id": signature.key_id}),
        );
    }
    if let Some(claimed) = &body.claimed_actor {
        zt.insert("claimed_actor".into(), json!(claimed));
    }
    if let Some(digest) = &body.context_sha256 {
        zt.insert("context_sha256".into(), json!(digest));
    }
    if let Some(digest) = &body.resource_attributes_sha256 {
        zt.insert("resource_attributes_sha256".into(), json!(digest));
    }
    if let Some(policies) = &body.policies {
        zt.insert("policies".into(), json!(policies));
    }
    if let Some(counts) = &body.counts {
        zt.insert("counts".into(), json!(counts));
    }
    // A receipt's whole story: which decision, how it ended, what was not enforced, and the
    // profile it ran under (a SIEM cannot otherwise tell an unsandboxed run from a clean one).
    if let Some(execution) = &body.execution {
        zt.insert("execution".into(), json!(execution));
    }
    if let Some(sandbox) = &body.sandbox {
        zt.insert("sandbox".into(), json!(sandbox));
    }
    json!({ "zt": zt })
}
