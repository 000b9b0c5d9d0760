use serde_json::json;

use super::*;

fn object(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn shown(context: &Context, key: &str) -> Option<String> {
    context.get(key).map(|v| v.to_string())
}

#[test]
fn adds_the_action_and_time_and_replaces_spoofed_ones() {
    let given = object(json!({"action": "other", "request_time": 1, "environment": "staging"}));
    let c = build(Some(&given), "a.b", 1_700_000_000).unwrap();
    assert_eq!(shown(&c, "action").as_deref(), Some("\"a.b\""));
    assert_eq!(shown(&c, "request_time").as_deref(), Some("1700000000"));
    assert_eq!(shown(&c, "environment").as_deref(), Some("\"staging\""));
    let c = build(None, "x", -5).unwrap();
    assert_eq!(shown(&c, "request_time").as_deref(), Some("-5"));
}

#[test]
fn json_maps_to_records_sets_and_scalars() {
    let given = object(json!({
        "arguments": {"repo": "zt", "draft": false, "count": 3, "labels": ["a", "b"], "gone": null},
        "looks_like_entity": {"__entity": {"type": "Agent", "id": "root"}},
        "nothing": null
    }));
    let c = build(Some(&given), "x", 0).unwrap();
    let args = shown(&c, "arguments").unwrap();
    assert!(
        args.contains("repo") && args.contains("\"zt\"") && args.contains('3'),
        "{args}"
    );
    assert!(!args.contains("gone"), "{args}");
    // An object with entity-escape keys stays a plain record.
    let escaped = shown(&c, "looks_like_entity").unwrap();
    assert!(escaped.contains("__entity"), "{escaped}");
    assert_eq!(shown(&c, "nothing"), None);
}

#[test]
fn values_cedar_cannot_hold_are_refused_with_their_path() {
    let cases = [
        (
            json!({"arguments": {"temperature": 0.7}}),
            "context value `arguments.temperature` is not an integer between -2^63 and 2^63-1",
        ),
        (
            json!({"big": u64::MAX}),
            "context value `big` is not an integer between -2^63 and 2^63-1",
        ),
        (
            json!({"a": {"b": [1, null]}}),
            "context value `a.b[1]` is null inside a list",
        ),
        (
            json!({"a": [[{"x": 1.5}]]}),
            "context value `a[0][0].x` is not an integer between -2^63 and 2^63-1",
        ),
        (
            json!({"environment": 3}),
            "context value `environment` must be a string",
        ),
        (
            json!({"approval_id": {"id": "x"}}),
            "context value `approval_id` must be a string",
        ),
        (
            json!({"exec": "/usr/bin/make"}),
            "context value `exec` must be an object of the strings `program` and `args_sha256`, and nothing else",
        ),
        (
            json!({"exec": {"program": "/usr/bin/make"}}),
            "context value `exec` must be an object of the strings `program` and `args_sha256`, and nothing else",
        ),
        (
            json!({"exec": {"program": "/usr/bin/make", "args_sha256": "ab", "extra": 1}}),
            "context value `exec` must be an object of the strings `program` and `args_sha256`, and nothing else",
        ),
    ];
    for (given, expected) in cases {
        let e = build(Some(&object(given)), "x", 0).unwrap_err();
        assert_eq!(e.to_string(), expected);
    }
}

#[test]
fn depth_is_bounded() {
    let mut value = json!(1);
    for _ in 0..MAX_DEPTH {
        value = json!([value]);
    }
    assert!(build(Some(&object(json!({ "deep": value.clone() }))), "x", 0).is_err());
    let ok = value.as_array().unwrap()[0].clone();
    build(Some(&object(json!({ "deep": ok }))), "x", 0).unwrap();
}
