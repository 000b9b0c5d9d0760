//! The OCSF mapping against its golden vectors (`tests/vectors/*.record.json` → `*.ocsf.json`)
//! and against the OCSF 1.7.0 attribute lists transcribed in `zt-test-support` (`data/api_activity-1.7.0.json`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use zt_test_support::ocsf_schema as check;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use zt_siem::{ocsf, Format};

/// A named way to break a conforming event.
type Breakage = (&'static str, Box<dyn Fn(&mut Value)>);

fn vectors() -> Vec<(String, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".record.json"))
        .map(|p| (std::fs::read_to_string(&p).unwrap(), p))
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    assert!(out.len() >= 6, "golden vectors are missing");
    out
}

/// `ZT_BLESS=1 cargo test -p zt-siem --test ocsf` rewrites the expected files; review the diff.
#[test]
fn golden_vectors_map_to_their_expected_events() {
    for (record, path) in vectors() {
        let expected_path =
            PathBuf::from(path.to_string_lossy().replace(".record.json", ".ocsf.json"));
        let event = ocsf::event(record.trim()).unwrap();
        if std::env::var_os("ZT_BLESS").is_some() {
            let pretty = serde_json::to_string_pretty(&event).unwrap();
            std::fs::write(&expected_path, pretty + "\n").unwrap();
        }
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
        assert_eq!(event, expected, "{}", path.display());
    }
}

#[test]
fn every_golden_event_conforms_to_the_ocsf_schema() {
    let schema = check::Schema::load();
    for (record, path) in vectors() {
        let event = ocsf::event(record.trim()).unwrap();
        let errors = schema.check(&event);
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
}

#[test]
fn the_jsonl_format_is_the_stored_line() {
    for (record, _) in vectors() {
        assert_eq!(Format::Jsonl.render(&record).unwrap(), record.trim_end());
        let line = Format::Ocsf.render(&record).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(
            serde_json::from_str::<Value>(&line).unwrap(),
            ocsf::event(&record).unwrap()
        );
    }
}

/// The check is not vacuous: each kind of violation is caught.
#[test]
fn the_schema_check_catches_violations() {
    let schema = check::Schema::load();
    let (record, _) = vectors().remove(0);
    let good = ocsf::event(record.trim()).unwrap();
    let cases: Vec<Breakage> = vec![
        (
            "unknown top-level",
            Box::new(|e| e["decision"] = json!("allow")),
        ),
        (
            "unknown nested",
            Box::new(|e| e["metadata"]["product"]["nickname"] = json!("x")),
        ),
        (
            "missing required",
            Box::new(|e| {
                e["api"].as_object_mut().unwrap().remove("operation");
            }),
        ),
        ("enum id", Box::new(|e| e["action_id"] = json!(7))),
        (
            "sibling caption",
            Box::new(|e| e["disposition"] = json!("Blocked")),
        ),
        ("type_uid", Box::new(|e| e["type_uid"] = json!(600301))),
        ("wrong type", Box::new(|e| e["time"] = json!("yesterday"))),
        (
            "undeclared profile attribute",
            Box::new(|e| e["metadata"]["profiles"] = json!([])),
        ),
        (
            "untranscribed attribute",
            Box::new(|e| e["count"] = json!(1)),
        ),
        (
            "constraint",
            Box::new(|e| e["policy"] = json!({"version": "v"})),
        ),
    ];
    for (what, break_it) in cases {
        let mut event = good.clone();
        break_it(&mut event);
        assert!(!schema.check(&event).is_empty(), "not caught: {what}");
    }
    let mut free = good.clone();
    free["unmapped"]["anything"] = json!({"goes": [1, 2]});
    assert!(schema.check(&free).is_empty());
}

#[test]
fn malformed_records_are_errors_not_panics() {
    for bad in ["", "{}", "[]", "{\"seq\":1}", "not json"] {
        assert!(ocsf::event(bad).is_err(), "{bad:?}");
    }
    let (record, _) = vectors()
        .into_iter()
        .find(|(r, _)| r.contains("2026-05-01T12:00:00.123Z"))
        .unwrap();
    let bad_time = record.replace("2026-05-01T12:00:00.123Z", "yesterday");
    assert!(matches!(
        ocsf::event(&bad_time),
        Err(zt_siem::SiemError::BadTimestamp(_))
    ));
}
