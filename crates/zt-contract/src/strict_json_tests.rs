use crate::authzen::EvaluationRequest;
use crate::DecisionRequest;
use serde_json::json;

use super::*;

fn shape_error(body: &str) -> String {
    let e = parse_document(body.as_bytes()).unwrap_err();
    assert_eq!(
        e.classify(),
        serde_json::error::Category::Data,
        "{body}: {e}"
    );
    e.to_string()
}

#[test]
fn a_duplicate_key_is_refused_at_every_depth_and_named() {
    let e = shape_error(r#"{"actor":"a","action":"x","actor":"b"}"#);
    assert!(e.starts_with("duplicate key `actor` at"), "{e}");
    let e = shape_error(
        r#"{"actor":"a","action":"x","context":{"approval_id":"NOPE","approval_id":"CHG-1"}}"#,
    );
    assert!(
        e.starts_with("duplicate key `approval_id` in `context` at"),
        "{e}"
    );
    let e = shape_error(r#"{"context":{"tool":{"args":[{"k":1,"k":1}]}}}"#);
    assert!(
        e.starts_with("duplicate key `k` in `context.tool.args[0]` at"),
        "{e}"
    );
}

#[test]
fn keys_equal_after_unescaping_are_duplicates() {
    let e = shape_error(r#"{"context":{"a":1,"\u0061":2}}"#);
    assert!(e.starts_with("duplicate key `a` in `context`"), "{e}");
}

#[test]
fn equal_keys_in_different_objects_are_fine() {
    let doc = parse_document(br#"{"context":{"a":{"id":1},"b":{"id":2}},"id":3}"#).unwrap();
    assert_eq!(doc["context"]["b"]["id"], 2);
}

#[test]
fn anything_but_an_object_at_the_top_is_refused() {
    for (body, kind) in [
        (r#"["agent-a","x.y","res"]"#, "an array"),
        (r#""actor""#, "a string"),
        ("12", "a number"),
        ("true", "a boolean"),
        ("null", "null"),
    ] {
        let e = shape_error(body);
        assert_eq!(
            e,
            format!("the request body must be a JSON object, not {kind}")
        );
    }
}

#[test]
fn nesting_is_bounded() {
    let nested = |levels: usize| {
        // `levels` objects deep, counting the body itself.
        let mut body = "1".to_string();
        for _ in 1..levels {
            body = format!(r#"{{"a":{body}}}"#);
        }
        format!(r#"{{"context":{body}}}"#)
    };
    assert!(parse_document(nested(MAX_DEPTH).as_bytes()).is_ok());
    let e = shape_error(&nested(MAX_DEPTH + 1));
    assert!(
        e.starts_with("the request body is nested more than 32 levels deep"),
        "{e}"
    );
    let arrays = format!("{{\"a\":{}{}}}", "[".repeat(40), "]".repeat(40));
    assert!(shape_error(&arrays).contains("nested more than"));
}

#[test]
fn syntax_errors_stay_syntax_errors() {
    for body in ["", "{", r#"{"a":1} x"#, "{'a':1}", r#"{"a":1,}"#] {
        let e = parse_document(body.as_bytes()).unwrap_err();
        assert_ne!(e.classify(), serde_json::error::Category::Data, "{body}");
    }
}

#[test]
fn a_struct_is_never_read_from_an_array() {
    let doc = parse_document(br#"{"subject":["agent","agent-a"],"action":["x.y"]}"#).unwrap();
    let e = from_document::<EvaluationRequest>(&doc).unwrap_err();
    assert!(e.to_string().starts_with("invalid type: sequence"), "{e}");
}

#[test]
fn a_good_request_reads_as_before() {
    let body = json!({
        "actor": "agent-a",
        "action": "x.y",
        "resource": "r",
        "resource_attributes": {"environment": "prod"},
        "context": {"n": -1, "f": 1.5, "big": u64::MAX, "list": [null, true, "s"]},
        "request_id": "id-1",
    });
    let doc = parse_document(body.to_string().as_bytes()).unwrap();
    let strict: DecisionRequest = from_document(&doc).unwrap();
    let lax: DecisionRequest = serde_json::from_value(body).unwrap();
    assert_eq!(strict, lax);
}

#[test]
fn wrong_types_are_refused_without_coercion() {
    for body in [
        json!({"actor": 1}),
        json!({"actor": "a", "action": ["x"]}),
        json!({"actor": "a", "context": "prod"}),
        json!({"actor": "a", "resource_attributes": {"environment": 1}}),
        json!({"actor": "a", "request_id": null, "resource": null}),
    ] {
        let doc = parse_document(body.to_string().as_bytes()).unwrap();
        assert!(from_document::<DecisionRequest>(&doc).is_err(), "{body}");
    }
}

#[test]
fn long_keys_are_cut_in_messages() {
    let key = "k".repeat(1000);
    let e = shape_error(&format!(r#"{{"{key}":1,"{key}":2}}"#));
    assert!(e.len() < 200, "{e}");
}
