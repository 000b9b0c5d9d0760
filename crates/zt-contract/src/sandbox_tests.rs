use std::collections::BTreeMap;

use super::*;

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn strings(list: &[&str]) -> Option<Vec<String>> {
    Some(list.iter().map(|s| s.to_string()).collect())
}

#[test]
fn the_default_profile_has_no_network_and_writes_only_the_private_tmp_and_dev_null() {
    let p = SandboxProfile::default_profile();
    assert!(p.connect().is_empty());
    assert_eq!(p.write(), ["/dev/null", "@tmp"]);
    assert!(p.exec().contains(&"/usr".to_string()));
    assert!(p.read().contains(&"/etc".to_string()));
    assert_eq!(SandboxProfile::from_annotations(&BTreeMap::new()), Ok(p));
}

#[test]
fn serialization_is_canonical_and_round_trips() {
    let p = SandboxProfile::new(
        vec!["/b".into(), "/a".into(), "/a".into()],
        vec![],
        vec![],
        vec![443, 80],
    )
    .unwrap();
    let text = serde_json::to_string(&p).unwrap();
    assert_eq!(
        text,
        r#"{"connect":[80,443],"exec":[],"read":["/a","/b"],"write":[]}"#
    );
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(crate::canonical::canonical_json(&value), text);
    assert_eq!(serde_json::from_str::<SandboxProfile>(&text).unwrap(), p);
    assert_eq!(p.sha256().len(), 64);
}

#[test]
fn a_degraded_run_is_granted_only_by_the_policy_and_never_widened() {
    let plain = SandboxProfile::from_annotations(&annotations(&[])).unwrap();
    assert!(!plain.allows_degraded());
    let text = serde_json::to_string(&plain).unwrap();
    assert!(!text.contains("degraded"), "unchanged bytes: {text}");
    let allowed =
        SandboxProfile::from_annotations(&annotations(&[("sandbox_degraded", "allow")])).unwrap();
    assert!(allowed.allows_degraded());
    let text = serde_json::to_string(&allowed).unwrap();
    assert!(
        text.starts_with(r#"{"connect":[],"degraded":true,"exec":"#),
        "{text}"
    );
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(crate::canonical::canonical_json(&value), text);
    assert_eq!(
        serde_json::from_str::<SandboxProfile>(&text).unwrap(),
        allowed
    );
    assert_ne!(allowed.sha256(), plain.sha256());
    // Every permit must allow it; a narrowed profile keeps what was granted, no more.
    let both = SandboxProfile::intersection(&[allowed.clone(), plain.clone()]).unwrap();
    assert!(!both.allows_degraded());
    assert!(allowed.check_within(&plain).is_err());
    assert!(plain.check_within(&allowed).is_ok());
    let narrowed = plain.narrowed(&Narrowing::default()).unwrap();
    assert!(!narrowed.allows_degraded());
    assert!(
        SandboxProfile::from_annotations(&annotations(&[("sandbox_degraded", "yes")])).is_err()
    );
}

#[test]
fn bad_profiles_are_refused_on_the_wire() {
    for bad in [
        r#"{"connect":[],"exec":[],"read":["relative"],"write":[]}"#,
        r#"{"connect":[],"exec":[],"read":["/a/../etc"],"write":[]}"#,
        r#"{"connect":[],"exec":[],"read":["/a/"],"write":[]}"#,
        r#"{"connect":[],"exec":[],"read":["/a//b"],"write":[]}"#,
        r#"{"connect":[],"exec":[],"read":["@tmp"],"write":[]}"#,
        r#"{"connect":[0],"exec":[],"read":[],"write":[]}"#,
        r#"{"connect":[],"exec":[],"read":[],"write":[],"extra":1}"#,
        r#"{"connect":[],"exec":[],"read":[]}"#,
    ] {
        assert!(
            serde_json::from_str::<SandboxProfile>(bad).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn annotations_add_to_the_default_or_to_nothing() {
    let p = SandboxProfile::from_annotations(&annotations(&[
        ("sandbox_write", "/srv/out, /srv/cache"),
        ("sandbox_connect", "443,5432"),
        ("reason", "ignored"),
    ]))
    .unwrap();
    assert!(p.write().contains(&"/srv/out".to_string()));
    assert!(p.write().contains(&"@tmp".to_string()));
    assert_eq!(p.connect(), [443, 5432]);
    let empty = SandboxProfile::from_annotations(&annotations(&[
        ("sandbox_base", "empty"),
        ("sandbox_exec", "/opt/tool"),
    ]))
    .unwrap();
    assert_eq!(empty.exec(), ["/opt/tool"]);
    assert!(empty.write().is_empty());
    let none = SandboxProfile::from_annotations(&annotations(&[("sandbox_connect", "none")]));
    assert!(none.unwrap().connect().is_empty());
}

#[test]
fn unknown_or_bad_annotations_fail_closed() {
    for pairs in [
        [("sandbox_wirte", "/x")],
        [("sandbox_connect", "http")],
        [("sandbox_read", "etc")],
        [("sandbox_base", "all")],
    ] {
        assert!(SandboxProfile::from_annotations(&annotations(&pairs)).is_err());
    }
}

#[test]
fn narrowing_keeps_within_the_grant_and_refuses_wider() {
    let granted = SandboxProfile::from_annotations(&annotations(&[
        ("sandbox_write", "/srv/out"),
        ("sandbox_connect", "443"),
    ]))
    .unwrap();
    let narrow = granted
        .narrowed(&Narrowing {
            write: strings(&["/srv/out/sub"]),
            connect: Some(vec![]),
            ..Narrowing::default()
        })
        .unwrap();
    assert_eq!(narrow.write(), ["/srv/out/sub"]);
    assert!(narrow.connect().is_empty());
    assert_eq!(narrow.exec(), granted.exec());
    for wider in [
        Narrowing {
            write: strings(&["/srv"]),
            ..Narrowing::default()
        },
        Narrowing {
            write: strings(&["/srv/outside"]),
            ..Narrowing::default()
        },
        Narrowing {
            read: strings(&["/home"]),
            ..Narrowing::default()
        },
        Narrowing {
            exec: strings(&["/etc"]),
            ..Narrowing::default()
        },
        Narrowing {
            connect: Some(vec![22]),
            ..Narrowing::default()
        },
    ] {
        assert!(
            matches!(granted.narrowed(&wider), Err(ProfileError::Wider(_))),
            "{wider:?}"
        );
    }
    // Reading beneath a writable or executable path is within the grant.
    let read = granted.narrowed(&Narrowing {
        read: strings(&["/srv/out/x", "/usr/share"]),
        ..Narrowing::default()
    });
    assert!(read.is_ok());
}

#[test]
fn several_permits_grant_only_what_they_all_grant() {
    let a = SandboxProfile::from_annotations(&annotations(&[
        ("sandbox_write", "/a, /b"),
        ("sandbox_connect", "1, 2"),
    ]))
    .unwrap();
    let b = SandboxProfile::from_annotations(&annotations(&[
        ("sandbox_write", "/b"),
        ("sandbox_connect", "2, 3"),
    ]))
    .unwrap();
    let both = SandboxProfile::intersection(&[a.clone(), b]).unwrap();
    assert_eq!(both.connect(), [2]);
    assert!(both.write().contains(&"/b".to_string()));
    assert!(!both.write().contains(&"/a".to_string()));
    assert_eq!(
        SandboxProfile::intersection(std::slice::from_ref(&a)),
        Some(a)
    );
    assert_eq!(SandboxProfile::intersection(&[]), None);
}
