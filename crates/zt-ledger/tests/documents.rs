//! The documents a server keeps beside its log in a PostgreSQL store (`zt_ledger::documents`):
//! load, optimistic saves, versions, one winner among concurrent writers, and servers starting
//! together. Needs PostgreSQL on 127.0.0.1:5432; skips without it unless
//! `ZT_REQUIRE_SERVICES=1`. The server's suite (zt-server `src/state_docs/tests.rs`) runs its
//! named documents over this store and over files.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use zt_ledger::documents::{Doc, PostgresDocuments};
use zt_ledger::PostgresLocation;
use zt_test_support::pg_schema::TestSchema;

fn open(schema: &TestSchema) -> PostgresDocuments {
    PostgresDocuments::open(&PostgresLocation::parse(&schema.url()).unwrap()).unwrap()
}

#[test]
fn saves_are_optimistic_and_versions_count_them() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let docs = open(&schema);
    assert_eq!(docs.schema(), schema.name);
    assert_eq!(docs.load("a").unwrap(), None);
    assert_eq!(docs.versions().unwrap(), BTreeMap::new());

    // Updating a document that does not exist changes nothing.
    assert_eq!(docs.save("a", "x", Some(1)).unwrap(), None);
    assert_eq!(docs.load("a").unwrap(), None);

    assert_eq!(docs.save("a", "one", None).unwrap(), Some(1));
    // Creating it again, or saving over a version that is not the current one, changes
    // nothing either.
    assert_eq!(docs.save("a", "again", None).unwrap(), None);
    assert_eq!(docs.save("a", "ahead", Some(2)).unwrap(), None);
    assert_eq!(
        docs.load("a").unwrap(),
        Some(Doc {
            body: "one".into(),
            version: 1
        })
    );
    let text = "é ünïcode \"quoted\"\n\ttabs; DROP TABLE server_documents; --";
    assert_eq!(docs.save("a", text, Some(1)).unwrap(), Some(2));
    assert_eq!(docs.save("a", "stale", Some(1)).unwrap(), None);
    assert_eq!(docs.load("a").unwrap().unwrap().body, text);

    // Every name is listed, whoever wrote it; another connection sees the same.
    assert_eq!(docs.save("b", "", None).unwrap(), Some(1));
    let expected = BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 1)]);
    assert_eq!(docs.versions().unwrap(), expected);
    assert_eq!(open(&schema).versions().unwrap(), expected);
}

#[test]
fn concurrent_saves_of_one_version_have_one_winner() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let shared = Arc::new(open(&schema));
    let mut version = shared.save("doc", "0", None).unwrap().unwrap();
    for round in 0..4 {
        // Half the writers share a connection, half have their own, as replicas do.
        let writers: Vec<_> = (0..6)
            .map(|n| {
                let mine = if n % 2 == 0 {
                    shared.clone()
                } else {
                    Arc::new(open(&schema))
                };
                std::thread::spawn(move || mine.save("doc", &format!("{round}-{n}"), Some(version)))
            })
            .collect();
        let won: Vec<u64> = writers
            .into_iter()
            .filter_map(|t| t.join().unwrap().unwrap())
            .collect();
        assert_eq!(won, [version + 1], "round {round}");
        version = won[0];
        assert_eq!(shared.load("doc").unwrap().unwrap().version, version);
    }
}

#[test]
fn servers_starting_together_create_the_table_once() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let location = PostgresLocation::parse(&schema.url()).unwrap();
            std::thread::spawn(move || PostgresDocuments::open(&location).map(|_| ()))
        })
        .collect();
    for t in opened {
        t.join().unwrap().unwrap();
    }
}

#[test]
fn a_negative_stored_version_is_corruption_not_a_version() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let docs = open(&schema);
    docs.save("a", "x", None).unwrap();
    schema.execute("UPDATE server_documents SET version = -1");
    assert!(matches!(
        docs.load("a"),
        Err(zt_ledger::StoreError::Corrupt(_))
    ));
    assert!(docs.versions().is_err());
}
