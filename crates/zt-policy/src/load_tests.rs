use super::*;

#[test]
fn ids_come_from_annotations_or_position() {
    let text = r#"
@id("first") @reason("because")
permit(principal, action, resource);
forbid(principal, action, resource);
"#;
    let loaded = parse(text).unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[0].id, "first");
    assert_eq!(loaded[0].reason.as_deref(), Some("because"));
    assert_eq!(loaded[0].effect, Effect::Permit);
    assert_eq!(loaded[0].policy.id().to_string(), "first");
    assert_eq!(loaded[0].location, Location { line: 2, column: 1 });
    assert_eq!(loaded[1].id, "policy-2");
    assert_eq!(loaded[1].reason, None);
    assert_eq!(loaded[1].effect, Effect::Forbid);
    assert_eq!(loaded[1].location, Location { line: 4, column: 1 });
}

#[test]
fn identical_policies_get_their_own_locations() {
    let text = "permit(principal, action, resource);\n  permit(principal, action, resource);";
    let loaded = parse(text).unwrap();
    assert_eq!(loaded[1].location, Location { line: 2, column: 3 });
}

#[test]
fn duplicate_ids_are_refused_with_both_places() {
    let text = "@id(\"a\") permit(principal, action, resource);\n@id(\"a\") forbid(principal, action, resource);";
    match parse(text).unwrap_err() {
        PolicyError::DuplicateId {
            id,
            location,
            first,
        } => {
            assert_eq!(id, "a");
            assert_eq!(location.line, 2);
            assert_eq!(first.line, 1);
        }
        other => panic!("unexpected {other}"),
    }
    // A chosen id may not take a generated one either.
    let text = "permit(principal, action, resource);\n@id(\"policy-1\") forbid(principal, action, resource);";
    assert!(matches!(parse(text), Err(PolicyError::DuplicateId { .. })));
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let text = "permit(principal, action, resource);\npermit(principal, action resource);";
    match parse(text).unwrap_err() {
        PolicyError::Syntax { location, message } => {
            assert_eq!(location.line, 2);
            assert!(location.column > 1, "{location}");
            assert!(!message.is_empty());
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn empty_annotations_and_templates_are_refused() {
    for text in [
        r#"@id("") permit(principal, action, resource);"#,
        r#"@reason(" ") permit(principal, action, resource);"#,
        r#"@unvalidated permit(principal, action, resource);"#,
        r#"permit(principal == ?principal, action, resource);"#,
    ] {
        let e = parse(text).unwrap_err();
        assert!(matches!(e, PolicyError::Invalid { .. }), "{text}: {e}");
    }
    let loaded =
        parse(r#"@unvalidated("reads tool arguments") permit(principal, action, resource);"#)
            .unwrap();
    assert!(loaded[0].unvalidated);
}

#[test]
fn canonical_text_ignores_layout_and_names_the_id() {
    let a = parse("// c\npermit(principal,action,resource) when {context.environment==\"x\"};")
        .unwrap();
    let b =
        parse("permit(\n  principal, action, resource\n)\nwhen { context.environment == \"x\" };")
            .unwrap();
    let ca = canonical_text(&a[0]).unwrap();
    assert_eq!(ca, canonical_text(&b[0]).unwrap());
    assert!(ca.starts_with("@id(\"policy-1\")"), "{ca}");
    // The canonical text parses back to the same canonical text.
    let again = parse(&ca).unwrap();
    assert_eq!(canonical_text(&again[0]).unwrap(), ca);
}
