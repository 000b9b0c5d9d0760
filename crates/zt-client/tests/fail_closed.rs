//! The SDK fails closed: protected work runs only on a complete, consistent `allow`, and is
//! reachable only through the [`Allowed`] proof. Each case puts a raw TCP fake behind the
//! client (tests/support) that misbehaves in one way.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use support::{answer, answer_to, fake_server, Reply, Seen, TestKey};
use zt_client::{
    Allowed, ClientError, ControlPlane, Guarded, PinnedKeys, PinnedKeysError, SkipCause,
};
use zt_contract::{Decision, DecisionRequest};

fn request() -> DecisionRequest {
    DecisionRequest {
        actor: "agent".into(),
        action: "hello-world.say_hello".into(),
        resource: "r".into(),
        ..DecisionRequest::default()
    }
}

/// One guarded call against a fake answering with `reply`; returns the outcome and whether
/// the work ran. The work returns the seq its proof carries.
async fn guarded_with<F>(reply: F, pinned: Option<PinnedKeys>) -> (Guarded<u64>, bool)
where
    F: Fn(&Seen) -> Reply + Send + Sync + 'static,
{
    let (url, _) = fake_server(reply).await;
    let mut cp = ControlPlane::with_timeout(&url, Duration::from_millis(500)).unwrap();
    if let Some(keys) = pinned {
        cp = cp.with_pinned_keys(keys);
    }
    let flag = AtomicBool::new(false);
    let ran = &flag;
    let outcome = cp
        .guarded(&request(), |allowed: Allowed| async move {
            ran.store(true, Ordering::SeqCst);
            allowed.decision().evidence.seq
        })
        .await;
    (outcome, flag.load(Ordering::SeqCst))
}

/// A fake answering every request with `body(request_id)` and `status`.
async fn answering(
    status: u16,
    body: impl Fn(Option<String>) -> String + Send + Sync + 'static,
    pinned: Option<PinnedKeys>,
) -> (Guarded<u64>, bool) {
    guarded_with(
        move |seen| Reply::Answer(status, body(seen.request_id())),
        pinned,
    )
    .await
}

/// The error of a fail-closed skip; fails the test if the work ran or a decision came back.
fn skipped_with_error(outcome: &Guarded<u64>, ran: bool) -> String {
    assert!(!ran, "protected work must not run");
    assert!(outcome.execution_skipped());
    match outcome {
        Guarded::Skipped {
            decision: None,
            cause: SkipCause::Error(e),
        } => e.to_string(),
        other => panic!("expected a fail-closed skip, got {other:?}"),
    }
}

/// A well-formed allow for the request whose `request_id` is `id`, unsigned.
fn allow(id: Option<String>) -> Value {
    answer(Decision::Allow, id, None)
}

/// An answer body built from the request's `request_id`.
type Body = fn(Option<String>) -> Value;

/// Runs each `(name, body-with-request-id -> json)` case under `status` and checks the error
/// mentions `expected`.
async fn expect_errors(cases: Vec<(&str, u16, Body, &str)>, key: Option<&TestKey>) {
    for (name, status, body, expected) in cases {
        let pinned = key.map(|k| PinnedKeys::from_jwks(&k.jwks()).unwrap());
        let (outcome, ran) = answering(status, move |id| body(id).to_string(), pinned).await;
        let error = skipped_with_error(&outcome, ran);
        assert!(
            error.contains(expected),
            "{name}: `{error}` should mention `{expected}`"
        );
    }
}

#[tokio::test]
async fn a_valid_allow_hands_the_proof_to_the_work() {
    let (outcome, ran) = answering(
        200,
        |id| answer(Decision::Allow, id, None).to_string(),
        None,
    )
    .await;
    assert!(ran);
    assert!(matches!(outcome, Guarded::Executed { result: 0, .. }));
}

#[tokio::test]
async fn a_deny_skips_the_work_and_keeps_the_decision() {
    let (outcome, ran) =
        answering(403, |id| answer(Decision::Deny, id, None).to_string(), None).await;
    assert!(!ran);
    assert!(matches!(
        outcome,
        Guarded::Skipped {
            decision: Some(_),
            cause: SkipCause::Denied
        }
    ));
}

#[tokio::test]
async fn a_random_request_id_is_sent_and_must_be_echoed() {
    let (url, seen) = fake_server(|seen| {
        Reply::Answer(
            200,
            answer(Decision::Allow, seen.request_id(), None).to_string(),
        )
    })
    .await;
    let cp = ControlPlane::new(&url).unwrap();
    let first = cp.decide(&request()).await.unwrap();
    let second = cp.decide(&request()).await.unwrap();
    let ids: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(Seen::request_id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids
        .iter()
        .all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    assert_ne!(ids[0], ids[1]);
    assert_eq!(first.evidence.request_id.as_deref(), Some(ids[0].as_str()));
    assert_eq!(second.evidence.request_id.as_deref(), Some(ids[1].as_str()));

    // The caller's own id is sent as given.
    let mine = DecisionRequest {
        request_id: Some("caller-chosen".into()),
        ..request()
    };
    cp.decide(&mine).await.unwrap();
    assert_eq!(
        seen.lock().unwrap().last().unwrap().request_id().as_deref(),
        Some("caller-chosen")
    );
}

#[tokio::test]
async fn statuses_other_than_200_and_403_skip_the_work() {
    for status in [201, 204, 302, 400, 401, 404, 429, 500, 502, 503] {
        let (outcome, ran) = answering(
            status,
            |id| answer(Decision::Allow, id, None).to_string(),
            None,
        )
        .await;
        let error = skipped_with_error(&outcome, ran);
        assert!(error.contains(&status.to_string()), "{status}: {error}");
    }
}

#[tokio::test]
async fn transport_failures_skip_the_work() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let cp = ControlPlane::new(&closed).unwrap();
    let ran = AtomicBool::new(false);
    let outcome = cp
        .guarded(&request(), |_: Allowed| async {
            ran.store(true, Ordering::SeqCst);
            0
        })
        .await;
    let error = skipped_with_error(&outcome, ran.load(Ordering::SeqCst));
    assert!(error.contains("unreachable"), "refused: {error}");

    let (outcome, ran) = guarded_with(|_| Reply::Silent, None).await;
    let error = skipped_with_error(&outcome, ran);
    assert!(error.contains("did not answer"), "timeout: {error}");

    let (outcome, ran) = guarded_with(
        |seen| Reply::ResetMidBody(answer(Decision::Allow, seen.request_id(), None).to_string()),
        None,
    )
    .await;
    let error = skipped_with_error(&outcome, ran);
    assert!(error.contains("unreachable"), "reset mid-body: {error}");

    let (outcome, ran) = guarded_with(|_| Reply::Raw(b"SSH-2.0-OpenSSH\r\n".to_vec()), None).await;
    let error = skipped_with_error(&outcome, ran);
    assert!(error.contains("unreachable"), "not http: {error}");

    let (outcome, ran) = guarded_with(|_| Reply::Raw(Vec::new()), None).await;
    let error = skipped_with_error(&outcome, ran);
    assert!(
        error.contains("unreachable"),
        "closed without answer: {error}"
    );
}

#[tokio::test]
async fn malformed_truncated_and_type_wrong_json_skip_the_work() {
    let truncated = |id: Option<String>| {
        let text = allow(id).to_string();
        text[..text.len() / 2].to_string()
    };
    let (outcome, ran) = answering(200, truncated, None).await;
    assert!(skipped_with_error(&outcome, ran).contains("malformed"));
    let (outcome, ran) = answering(200, |_| "not json".into(), None).await;
    assert!(skipped_with_error(&outcome, ran).contains("malformed"));
    let (outcome, ran) = answering(200, |_| String::new(), None).await;
    assert!(skipped_with_error(&outcome, ran).contains("malformed"));

    expect_errors(
        vec![
            ("array", 200, |_| json!([1, 2]), "malformed"),
            (
                "ok as a string",
                200,
                |id| {
                    let mut a = allow(id);
                    a["ok"] = json!("true");
                    a
                },
                "malformed",
            ),
            (
                "seq as a string",
                200,
                |id| {
                    let mut a = allow(id);
                    a["evidence"]["seq"] = json!("0");
                    a
                },
                "malformed",
            ),
            (
                "unknown decision",
                200,
                |id| {
                    let mut a = allow(id);
                    a["decision"] = json!("maybe");
                    a
                },
                "malformed",
            ),
            (
                "audit as an array",
                200,
                |id| {
                    let mut a = allow(id);
                    a["audit"] = json!([]);
                    a
                },
                "malformed",
            ),
            (
                "reason as a number",
                200,
                |id| {
                    let mut a = allow(id);
                    a["reason"] = json!(7);
                    a
                },
                "malformed",
            ),
            (
                "extra audit key",
                200,
                |id| {
                    let mut a = allow(id);
                    a["audit"]["extra"] = json!(1);
                    a
                },
                "malformed",
            ),
            (
                "empty reason",
                200,
                |id| {
                    let mut a = allow(id);
                    a["reason"] = json!(" ");
                    a
                },
                "empty reason",
            ),
        ],
        None,
    )
    .await;
}

#[tokio::test]
async fn ambiguous_answers_skip_the_work() {
    // Two `decision`s: one reader takes the first, another the last.
    let doubled = |id: Option<String>| {
        let text = allow(id).to_string();
        text.replacen('{', r#"{"decision":"deny","#, 1)
    };
    let (outcome, ran) = answering(200, doubled, None).await;
    assert!(skipped_with_error(&outcome, ran).contains("duplicate"));
    // A duplicate deeper down, in the evidence.
    let deeper = |id: Option<String>| {
        let text = allow(id).to_string();
        text.replacen(r#""seq":"#, r#""seq":7,"seq":"#, 1)
    };
    let (outcome, ran) = answering(200, deeper, None).await;
    assert!(skipped_with_error(&outcome, ran).contains("duplicate"));
    // The allow's values as an array, in field order: no names, so nothing says which is which.
    let positional = |id: Option<String>| {
        let a = allow(id);
        let fields = [
            "ok", "actor", "action", "resource", "decision", "reason", "audit", "evidence",
        ];
        Value::Array(fields.iter().map(|f| a[*f].clone()).collect()).to_string()
    };
    let (outcome, ran) = answering(200, positional, None).await;
    assert!(skipped_with_error(&outcome, ran).contains("malformed"));
}

#[tokio::test]
async fn ok_status_and_decision_must_agree() {
    expect_errors(
        vec![
            (
                "ok false on allow",
                200,
                |id| {
                    let mut a = answer(Decision::Allow, id, None);
                    a["ok"] = json!(false);
                    a
                },
                "malformed",
            ),
            (
                "ok true on deny",
                403,
                |id| {
                    let mut a = answer(Decision::Deny, id, None);
                    a["ok"] = json!(true);
                    a
                },
                "malformed",
            ),
            (
                "403 with allow",
                403,
                |id| answer(Decision::Allow, id, None),
                "malformed",
            ),
            (
                "200 with deny",
                200,
                |id| answer(Decision::Deny, id, None),
                "malformed",
            ),
        ],
        None,
    )
    .await;
}

#[tokio::test]
async fn missing_or_inconsistent_evidence_skips_the_work() {
    expect_errors(
        vec![
            (
                "no audit",
                200,
                |id| {
                    let mut a = answer(Decision::Allow, id, None);
                    a.as_object_mut().unwrap().remove("audit");
                    a
                },
                "malformed",
            ),
            (
                "no evidence",
                200,
                |id| {
                    let mut a = answer(Decision::Allow, id, None);
                    a.as_object_mut().unwrap().remove("evidence");
                    a
                },
                "malformed",
            ),
            (
                "no signature",
                200,
                |id| {
                    let mut a = answer(Decision::Allow, id, None);
                    a["audit"].as_object_mut().unwrap().remove("kms_signature");
                    a
                },
                "malformed",
            ),
            (
                "forged resource",
                200,
                |id| {
                    let mut a = answer(Decision::Allow, id, None);
                    a["resource"] = json!("another");
                    a
                },
                "evidence",
            ),
            (
                "forged hash",
                200,
                |id| {
                    let mut a = answer(Decision::Allow, id, None);
                    a["audit"]["current_hash"] = json!("0".repeat(64));
                    a
                },
                "evidence",
            ),
            (
                "another request's id",
                200,
                |_| answer(Decision::Allow, Some("replayed".into()), None),
                "request_id",
            ),
            (
                "no request id echoed",
                200,
                |_| answer(Decision::Allow, None, None),
                "request_id",
            ),
        ],
        None,
    )
    .await;
}

#[tokio::test]
async fn pinned_keys_accept_a_signature_that_verifies() {
    let key = TestKey::new("audit-1");
    let jwks = serde_json::to_value(key.jwks()).unwrap();
    let pinned = PinnedKeys::from_json(&jwks).unwrap();
    let signed = move |id| answer(Decision::Allow, id, Some(&key)).to_string();
    let (outcome, ran) = answering(200, signed, Some(pinned)).await;
    assert!(ran, "{outcome:?}");
}

#[tokio::test]
async fn a_genuine_answer_to_another_request_skips_the_work() {
    // Signed by the pinned key and echoing the request id, but deciding a harmless action in
    // place of the one asked (as someone on the path who rewrote the request would get).
    let key = TestKey::new("audit-1");
    let pinned = PinnedKeys::from_jwks(&key.jwks()).unwrap();
    let other = move |id| {
        answer_to("agent", "hello-world.list", Decision::Allow, id, Some(&key)).to_string()
    };
    let (outcome, ran) = answering(200, other, Some(pinned)).await;
    let error = skipped_with_error(&outcome, ran);
    assert!(
        error.contains("another action than the one asked"),
        "{error}"
    );
}

#[tokio::test]
async fn pinned_keys_refuse_bad_and_unknown_key_signatures() {
    let pinned = TestKey::new("audit-1");
    // Same key id, another key: the signature does not verify.
    let impostor = TestKey::new("audit-1");
    let unknown = TestKey::new("audit-2");
    for (name, signer, expected) in [
        ("impostor", impostor, "does not verify"),
        ("unknown key id", unknown, "key id `audit-2`"),
    ] {
        let keys = PinnedKeys::from_jwks(&pinned.jwks()).unwrap();
        let body = move |id| answer(Decision::Allow, id, Some(&signer)).to_string();
        let (outcome, ran) = answering(200, body, Some(keys)).await;
        let error = skipped_with_error(&outcome, ran);
        assert!(error.contains(expected), "{name}: {error}");
        assert!(error.contains("signature"), "{name}: {error}");
    }
    // A deny's signature is checked too: a forged deny is an error, not a decision.
    let keys = PinnedKeys::from_jwks(&pinned.jwks()).unwrap();
    let (outcome, ran) = answering(
        403,
        |id| answer(Decision::Deny, id, None).to_string(),
        Some(keys),
    )
    .await;
    assert!(skipped_with_error(&outcome, ran).contains("signature"));
    expect_errors(
        vec![
            (
                "placeholder signature",
                200,
                |id| answer(Decision::Allow, id, None),
                "signature",
            ),
            (
                "other algorithm",
                200,
                |id| {
                    let mut a = answer(Decision::Allow, id, None);
                    a["audit"]["kms_signature"]["algorithm"] = json!("NONE");
                    a
                },
                "algorithm",
            ),
            (
                "undecodable",
                200,
                |id| {
                    let mut a = answer(Decision::Allow, id, None);
                    a["audit"]["kms_signature"]["signature"] = json!("%%%");
                    a
                },
                "signature",
            ),
        ],
        Some(&pinned),
    )
    .await;
}

#[test]
fn pinned_keys_must_be_a_non_empty_jwks() {
    assert!(PinnedKeys::from_json(&json!({"keys": []})).is_err());
    assert!(PinnedKeys::from_json(&json!({"nope": 1})).is_err());
    assert!(PinnedKeys::from_json(
        &json!({"keys": [{"kty": "RSA", "crv": "", "x": "", "y": "", "kid": "a"}]})
    )
    .is_err());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&TestKey::new("k").jwks()).unwrap(),
    )
    .unwrap();
    assert_eq!(PinnedKeys::from_file(&path).unwrap().len(), 1);
    assert!(PinnedKeys::from_file(&dir.path().join("absent")).is_err());
}

#[test]
fn ambiguous_pinned_keys_are_refused() {
    let (pinned, other) = (TestKey::new("k"), TestKey::new("k"));
    let jwk = pinned.jwks().keys.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    // A second `x` before the real one: a file that names two keys.
    let text = serde_json::to_string(&pinned.jwks()).unwrap();
    let doubled = text.replacen(
        "\"kty\"",
        &format!("\"x\":\"{}\",\"kty\"", other.jwks().keys[0].x),
        1,
    );
    assert_ne!(doubled, text);
    std::fs::write(&path, &doubled).unwrap();
    let refused = PinnedKeys::from_file(&path).unwrap_err();
    assert!(
        matches!(&refused, PinnedKeysError::NotJwks(why) if why.contains("duplicate")),
        "{refused}"
    );
    // A key written as a positional array, which serde_json alone reads field by field.
    let positional = json!({"keys": [[jwk.kty, jwk.crv, jwk.x, jwk.y, jwk.kid]]});
    assert!(matches!(
        PinnedKeys::from_json(&positional),
        Err(PinnedKeysError::NotJwks(_))
    ));
    std::fs::write(&path, positional.to_string()).unwrap();
    assert!(matches!(
        PinnedKeys::from_file(&path),
        Err(PinnedKeysError::NotJwks(_))
    ));
    // Larger than 1 MiB: refused before it is parsed.
    std::fs::write(&path, vec![b' '; (1 << 20) + 1]).unwrap();
    assert!(matches!(
        PinnedKeys::from_file(&path),
        Err(PinnedKeysError::TooLarge(_))
    ));
}

#[test]
fn only_http_base_urls_are_accepted() {
    for bad in ["ftp://x", "not a url", "http://"] {
        assert!(
            matches!(ControlPlane::new(bad), Err(ClientError::BadUrl(_))),
            "{bad}"
        );
    }
}
