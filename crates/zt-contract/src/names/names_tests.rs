use super::*;

#[test]
fn existing_clients_action_names_stay_valid() {
    for name in [
        "mcp.github.create_pull_request",
        "a2a.planner.tasks-send",
        "openai.responses.function.get_weather",
        "openai.agents.tool.ns.lookup",
        "hello-world.say_hello",
        "aws.ec2.terminate_instances",
        "zt.status.read",
        "x",
    ] {
        assert_eq!(ActionName::parse(name).unwrap().as_str(), name);
    }
}

#[test]
fn actions_are_folded_to_lower_case() {
    assert_eq!(
        ActionName::parse("aws.s3.DELETE_bucket").unwrap().as_str(),
        "aws.s3.delete_bucket"
    );
    assert_eq!(
        ActionName::parse("MCP.GitHub.createIssue")
            .unwrap()
            .into_string(),
        "mcp.github.createissue"
    );
}

#[test]
fn actions_that_evade_deny_rules_are_refused() {
    type Check = fn(&NameError) -> bool;
    let cases: [(&str, Check); 9] = [
        ("aws.s3.\u{0}delete", |e| {
            matches!(
                e,
                NameError::Character {
                    at: 7,
                    character: Shown('\u{0}'),
                    ..
                }
            )
        }),
        ("aws.s3.\u{200b}delete", |e| {
            matches!(e, NameError::Character { at: 7, .. })
        }),
        ("aws.s3.\u{ff44}elete", |e| {
            matches!(e, NameError::Character { at: 7, .. })
        }),
        ("aws.s3.*", |e| {
            matches!(e, NameError::Wildcard { at: 7, .. })
        }),
        ("aws..s3", |e| {
            matches!(e, NameError::EmptySegment { at: 4, .. })
        }),
        (".aws", |e| {
            matches!(e, NameError::EmptySegment { at: 0, .. })
        }),
        ("aws.", |e| {
            matches!(e, NameError::EmptySegment { at: 3, .. })
        }),
        ("aws s3", |e| {
            matches!(e, NameError::Character { at: 3, .. })
        }),
        ("", |e| matches!(e, NameError::Empty(NameKind::Action))),
    ];
    for (text, expected) in cases {
        let error = ActionName::parse(text).unwrap_err();
        assert!(expected(&error), "{text:?}: {error:?}");
    }
}

#[test]
fn long_actions_are_refused_without_echoing_them() {
    let dots = format!("h{}", ".".repeat(16_300));
    let error = ActionName::parse(&dots).unwrap_err();
    assert_eq!(
        error,
        NameError::TooLong {
            kind: NameKind::Action,
            max: MAX_ACTION_BYTES
        }
    );
    let at_limit = "a".repeat(MAX_ACTION_BYTES);
    assert!(ActionName::parse(&at_limit).is_ok());
    assert!(ActionName::parse(&format!("{at_limit}a")).is_err());
    let segments = vec!["a"; MAX_ACTION_SEGMENTS].join(".");
    assert!(ActionName::parse(&segments).is_ok());
    assert_eq!(
        ActionName::parse(&format!("{segments}.a")).unwrap_err(),
        NameError::TooManySegments {
            kind: NameKind::Action,
            max: MAX_ACTION_SEGMENTS
        }
    );
}

#[test]
fn errors_name_the_character_by_code_point() {
    let error = ActionName::parse("aws.s3.\u{202e}x")
        .unwrap_err()
        .to_string();
    assert!(error.contains("U+202E at byte 7"), "{error}");
    assert!(!error.contains('\u{202e}'), "{error}");
    let error = ActorName::parse("a/b").unwrap_err().to_string();
    assert!(error.contains("`/` (U+002F) at byte 1"), "{error}");
}

#[test]
fn patterns_are_lower_case_actions_groups_and_prefixes() {
    assert_eq!(ActionPattern::parse("*").unwrap(), ActionPattern::All);
    assert_eq!(
        ActionPattern::parse("aws.s3.*").unwrap(),
        ActionPattern::Group("aws.s3.".into())
    );
    assert_eq!(
        ActionPattern::parse("aws.s3.delete*").unwrap(),
        ActionPattern::Prefix("aws.s3.delete".into())
    );
    assert_eq!(
        ActionPattern::parse("aws.s3.get").unwrap(),
        ActionPattern::Exact(ActionName::parse("aws.s3.get").unwrap())
    );
    for (text, at) in [("aws.s3.DELETE*", 7), ("Aws.*", 0)] {
        assert!(
            matches!(
                ActionPattern::parse(text),
                Err(NameError::UpperCase { at: a, .. }) if a == at
            ),
            "{text}"
        );
    }
    for text in ["a*b.*", "aws..*", "", ".*", "aws.\u{200b}*", "**"] {
        assert!(ActionPattern::parse(text).is_err(), "{text:?}");
    }
}

#[test]
fn actor_names_are_spiffe_ids_or_safe_ascii() {
    for name in [
        "coder",
        "hello-world-agent",
        "ops-1",
        "bot@example.org",
        "svc:billing",
        "Agent_7.v2",
        "spiffe://example.org/agent/billing",
    ] {
        assert_eq!(ActorName::parse(name).unwrap().as_str(), name);
    }
}

#[test]
fn look_alike_and_invisible_actors_are_refused() {
    for name in [
        "\u{430}gent-a",   // Cyrillic a
        "\u{ff41}gent-a",  // full-width a
        "agent\u{200b}-a", // zero-width space
        "agent-\u{202e}a", // right-to-left override
        "agent\u{0}",      // NUL
        "agent\n",         // newline
        " agent-a",        // leading space
        "agent-a ",        // trailing space
        "cafe\u{301}",     // NFD
        "caf\u{e9}",       // NFC, still not ASCII
        "-agent",          // starts with punctuation
        "team/agent",      // a path that is not a SPIFFE ID
        "",
    ] {
        assert!(ActorName::parse(name).is_err(), "{name:?}");
    }
    assert_eq!(
        ActorName::parse(&"a".repeat(MAX_ACTOR_BYTES + 1)).unwrap_err(),
        NameError::TooLong {
            kind: NameKind::Actor,
            max: MAX_ACTOR_BYTES
        }
    );
}

#[test]
fn an_actor_claiming_spiffe_must_be_a_valid_spiffe_id() {
    for name in [
        "spiffe://Example.org/a",
        "SPIFFE://example.org/a",
        "spiffe:agent",
        "Spiffe:agent",
        "spiffe://example.org/a/../b",
    ] {
        assert!(
            matches!(ActorName::parse(name), Err(NameError::Spiffe(_))),
            "{name:?}"
        );
    }
}

#[test]
fn resources_keep_paths_and_urls_and_are_normalized() {
    for id in [
        "",
        "zt-infra",
        "s3://bucket/key with spaces/é.txt",
        "https://example.org/a?b=c#d",
        "/home/user/données",
        "数据库",
    ] {
        assert_eq!(ResourceName::parse(id).unwrap().as_str(), id);
    }
    assert_eq!(
        ResourceName::parse("cafe\u{301}").unwrap().as_str(),
        "caf\u{e9}"
    );
}

#[test]
fn hidden_characters_in_resources_are_refused() {
    for id in [
        "prod\u{0}db",
        "prod\ndb",
        "prod\u{7f}db",
        "prod\u{85}db",
        "prod\u{200b}db",
        "prod\u{200d}db",
        "prod\u{202e}db",
        "prod\u{2066}db",
        "prod\u{feff}db",
        "prod\u{a0}db",
        "prod\u{3000}db",
        "prod\u{2028}db",
        "prod\u{e0041}db",
        "prod\u{fe0f}db",
        "prod\u{ffff}db",
        " prod",
        "prod ",
    ] {
        assert!(ResourceName::parse(id).is_err(), "{id:?}");
    }
    let long = "r".repeat(MAX_RESOURCE_BYTES + 1);
    assert!(ResourceName::parse(&long).is_err());
    assert!(ResourceName::parse(&long[1..]).is_ok());
}
