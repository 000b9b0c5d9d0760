//! One conformance suite for both state document backends: files in a data directory and
//! the PostgreSQL audit store's schema (which needs PostgreSQL on 127.0.0.1:5432; skips without
//! it unless `ZT_REQUIRE_SERVICES=1`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use zt_ledger::PostgresLocation;
use zt_test_support::pg_schema;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{DocError, DocName, Documents, FileDocs};
use pg_schema::TestSchema;
use zt_ledger::documents::PostgresDocuments;

/// The shared suite: load, save, conflicts, versions.
fn conformance(docs: &Documents) {
    assert_eq!(docs.load(DocName::Agents).unwrap(), None);
    assert_eq!(docs.versions().unwrap(), BTreeMap::new());

    // Updating a document that does not exist is a conflict, and changes nothing.
    assert!(matches!(
        docs.save(DocName::Agents, "[]", Some(1)),
        Err(DocError::Conflict("agents"))
    ));
    assert_eq!(docs.load(DocName::Agents).unwrap(), None);

    let v1 = docs.save(DocName::Agents, "[1]", None).unwrap();
    assert_eq!(v1, 1);
    let doc = docs.load(DocName::Agents).unwrap().unwrap();
    assert_eq!((doc.body.as_str(), doc.version), ("[1]", 1));

    // Creating it again, or saving over a version that is not the current one, conflicts.
    assert!(matches!(
        docs.save(DocName::Agents, "[x]", None),
        Err(DocError::Conflict(_))
    ));
    assert!(matches!(
        docs.save(DocName::Agents, "[x]", Some(v1 + 1)),
        Err(DocError::Conflict(_))
    ));
    let v2 = docs.save(DocName::Agents, "[1, 2]", Some(v1)).unwrap();
    assert!(v2 > v1);
    assert!(matches!(
        docs.save(DocName::Agents, "[stale]", Some(v1)),
        Err(DocError::Conflict(_))
    ));
    assert_eq!(docs.load(DocName::Agents).unwrap().unwrap().body, "[1, 2]");

    // Documents are independent; versions lists every existing one.
    let p1 = docs
        .save(
            DocName::Policy,
            "permit(principal, action, resource);",
            None,
        )
        .unwrap();
    assert_eq!(
        docs.versions().unwrap(),
        BTreeMap::from([(DocName::Agents, v2), (DocName::Policy, p1)])
    );
    let text = "é ünïcode \"quoted\"\n\ttabs";
    let p2 = docs.save(DocName::Policy, text, Some(p1)).unwrap();
    assert_eq!(docs.load(DocName::Policy).unwrap().unwrap().body, text);
    assert_eq!(docs.versions().unwrap()[&DocName::Policy], p2);
}

/// Writers saving over the same version at once: exactly one wins each round. `writer`
/// gives each writer its handle: one shared handle, or a connection of its own as replicas
/// have.
fn one_winner_per_version(
    docs: &Documents,
    name: DocName,
    writers: usize,
    writer: impl Fn() -> Arc<Documents>,
) {
    let mut version = docs.save(name, "0", None).unwrap();
    for round in 0..5 {
        let winners: usize = (0..writers)
            .map(|n| {
                let mine = writer();
                std::thread::spawn(move || mine.save(name, &format!("{round}-{n}"), Some(version)))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| match t.join().unwrap() {
                Ok(_) => 1,
                Err(DocError::Conflict(_)) => 0,
                Err(e) => panic!("{e}"),
            })
            .sum();
        assert_eq!(winners, 1, "round {round}");
        version = docs.load(name).unwrap().unwrap().version;
    }
}

#[test]
fn conformance_files() {
    let dir = tempfile::tempdir().unwrap();
    conformance(&Documents::Files(FileDocs::new(dir.path())));
    // The documents are the data directory's usual files.
    let agents = std::fs::read_to_string(dir.path().join("agents.json")).unwrap();
    assert_eq!(agents, "[1, 2]");
    assert!(dir.path().join("policy.cedar").exists());
}

#[test]
fn files_written_by_an_earlier_run_are_version_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("agents.json"), "[]").unwrap();
    let docs = Documents::Files(FileDocs::new(dir.path()));
    assert_eq!(docs.versions().unwrap()[&DocName::Agents], 1);
    assert!(matches!(
        docs.save(DocName::Agents, "[]", None),
        Err(DocError::Conflict(_))
    ));
    assert_eq!(docs.save(DocName::Agents, "[1]", Some(1)).unwrap(), 2);
}

#[test]
fn concurrent_saves_on_files_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let docs = Arc::new(Documents::Files(FileDocs::new(dir.path())));
    one_winner_per_version(&docs, DocName::Agents, 8, || docs.clone());
}

/// The documents of `schema`, on a connection of their own (as one server holds them).
fn on_postgres(schema: &TestSchema) -> Documents {
    Documents::Postgres(
        PostgresDocuments::open(&PostgresLocation::parse(&schema.url()).unwrap()).unwrap(),
    )
}

#[test]
fn conformance_postgres() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let docs = on_postgres(&schema);
    conformance(&docs);
    // A second server on the same schema sees the same documents and versions.
    let other = on_postgres(&schema);
    assert_eq!(other.versions().unwrap(), docs.versions().unwrap());
    let v = other.load(DocName::Agents).unwrap().unwrap().version;
    other.save(DocName::Agents, "[3]", Some(v)).unwrap();
    assert_eq!(docs.load(DocName::Agents).unwrap().unwrap().body, "[3]");
}

#[test]
fn concurrent_saves_on_postgres_have_one_winner() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let open = || Arc::new(on_postgres(&schema));
    let docs = open();
    one_winner_per_version(&docs, DocName::Agents, 8, || docs.clone());
    // Now each writer on its own connection, as replicas are.
    one_winner_per_version(&docs, DocName::Policy, 4, open);
}

#[test]
fn a_shared_store_is_seeded_from_the_data_directory_once() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    std::fs::write(a.path().join("agents.json"), "[\"from a\"]").unwrap();
    std::fs::write(b.path().join("agents.json"), "[\"from b\"]").unwrap();
    let docs = on_postgres(&schema);
    let first = docs
        .load_or_seed(DocName::Agents, a.path())
        .unwrap()
        .unwrap();
    assert_eq!(first.body, "[\"from a\"]");
    let second = docs
        .load_or_seed(DocName::Agents, b.path())
        .unwrap()
        .unwrap();
    assert_eq!(second, first, "the first server's registry stays");
    assert_eq!(docs.load_or_seed(DocName::Policy, b.path()).unwrap(), None);
}

/// Two servers' registries on one store, both loaded before either changes it: the second
/// save meets a conflict, reloads, applies its change again, and both agents survive.
#[tokio::test]
async fn registry_changes_on_two_servers_both_survive_a_conflict() {
    use crate::registry::{AgentEntry, Registry};
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let open = || Arc::new(on_postgres(&schema));
    let one = Registry::load(open(), dir.path()).unwrap();
    let two = Registry::load(open(), dir.path()).unwrap();
    let agent = |name: &str| AgentEntry {
        actor: name.into(),
        registered_at: "2026-01-01T00:00:00.000Z".into(),
        attributes: Default::default(),
        token_sha256: Some(format!("hash-of-{name}")),
        unauthenticated: false,
    };
    assert!(one.insert(agent("first")).await.unwrap());
    assert!(two.insert(agent("second")).await.unwrap());
    assert!(two.contains("first") && two.contains("second"));
    assert!(!one.contains("second"), "not reloaded yet");
    one.reload_if_newer(two.version()).await.unwrap();
    assert_eq!(
        one.agent_for_token("hash-of-second")
            .map(|holder| holder.actor)
            .as_deref(),
        Some("second")
    );
    // A rotation on a server that has not seen a removal yet does not bring the agent back.
    assert!(two.remove("first").await.unwrap());
    assert!(one.contains("first"), "not reloaded yet");
    assert!(!one
        .set_token("first", Some("x".into()), false)
        .await
        .unwrap());
    assert!(!one.contains("first"));
    assert_eq!(one.version(), two.version());
}

/// Many registrations at once on two servers sharing one store: each server makes its own
/// one at a time, so only the other server's saves conflict with it, and every registration
/// lands (with every change racing every other, 64 at once ran out of tries).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_registrations_at_once_on_two_servers_all_land() {
    use crate::registry::{AgentEntry, Registry};
    const EACH: usize = 32;
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let open = || Arc::new(on_postgres(&schema));
    let servers = [
        Arc::new(Registry::load(open(), dir.path()).unwrap()),
        Arc::new(Registry::load(open(), dir.path()).unwrap()),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for (side, registry) in servers.iter().enumerate() {
        for n in 0..EACH {
            let registry = registry.clone();
            tasks.spawn(async move {
                let entry = AgentEntry {
                    actor: format!("agent-{side}-{n}"),
                    registered_at: "2026-01-01T00:00:00.000Z".into(),
                    attributes: Default::default(),
                    token_sha256: None,
                    unauthenticated: false,
                };
                registry.insert(entry).await
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        assert!(done.unwrap().unwrap(), "a new agent is inserted");
    }
    for registry in &servers {
        registry.reload_if_newer(None).await.unwrap();
        for side in 0..2 {
            for n in 0..EACH {
                assert!(registry.contains(&format!("agent-{side}-{n}")));
            }
        }
    }
}

/// A policy stored by another server is activated only if valid.
#[tokio::test]
async fn an_invalid_stored_policy_is_never_activated() {
    use crate::policy_store::PolicyStore;
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let docs = Arc::new(on_postgres(&schema));
    let store = PolicyStore::load(docs.clone(), dir.path(), None).unwrap().0;
    let before = store.current().version().to_string();
    let v = store.version();
    let bad = docs.save(DocName::Policy, "permit(principal,", v).unwrap();
    store.reload_if_newer(Some(bad)).await.unwrap();
    assert_eq!(store.current().version(), before, "the active policy stays");
    let good = "permit(principal, action, resource);\n";
    docs.save(DocName::Policy, good, Some(bad)).unwrap();
    store.reload_if_newer(None).await.unwrap();
    assert_ne!(
        store.current().version(),
        before,
        "a valid one is activated"
    );
}

/// What an unauthenticated caller chose on one replica is marked for every replica on the
/// store; the marked policy only while it is the active one.
#[tokio::test]
async fn unauthenticated_marks_are_shared_by_replicas() {
    use crate::policy_store::PolicyStore;
    use crate::registry::{AgentEntry, Registry};
    use crate::unauthenticated_state::{mark_policy, UnauthenticatedState};
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let open = || Arc::new(on_postgres(&schema));
    let docs = open();
    let registry = Registry::load(docs.clone(), dir.path()).unwrap();
    let policy = PolicyStore::load(docs.clone(), dir.path(), None).unwrap().0;
    for (actor, unauthenticated) in [("vetted", false), ("anonymous", true)] {
        let entry = AgentEntry {
            actor: actor.into(),
            registered_at: "2026-01-01T00:00:00.000Z".into(),
            attributes: Default::default(),
            token_sha256: Some(format!("hash-of-{actor}")),
            unauthenticated,
        };
        assert!(registry.insert(entry).await.unwrap());
        // A token's lookup reads its agent's mark with it.
        assert_eq!(
            registry
                .agent_for_token(&format!("hash-of-{actor}"))
                .map(|holder| (holder.actor, holder.unauthenticated)),
            Some((actor.to_string(), unauthenticated))
        );
    }
    let active = policy.current().version().to_string();
    mark_policy(&docs, &active).await.unwrap();

    let other = open();
    let other_registry = Registry::load(other.clone(), dir.path()).unwrap();
    let other_policy = PolicyStore::load(other.clone(), dir.path(), None)
        .unwrap()
        .0;
    let found =
        UnauthenticatedState::find(&other, dir.path(), &other_registry, &other_policy).unwrap();
    assert_eq!(
        found,
        UnauthenticatedState {
            agents: vec!["anonymous".into()],
            policy_version: Some(active),
        }
    );

    // An authenticated admin activates another policy: the mark no longer applies.
    let engine =
        zt_policy::PolicyEngine::from_cedar("permit(principal, action, resource);\n").unwrap();
    policy.activate(Arc::new(engine)).await.unwrap();
    other_policy.reload_if_newer(None).await.unwrap();
    let found =
        UnauthenticatedState::find(&other, dir.path(), &other_registry, &other_policy).unwrap();
    assert_eq!(found.policy_version, None);
    assert_eq!(found.agents, ["anonymous"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewed_policy_never_replaces_one_another_replica_activated_meanwhile() {
    use crate::policy_store::{PolicyStore, PolicyStoreError};
    use zt_policy::PolicyEngine;
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let here = PolicyStore::load(Arc::new(on_postgres(&schema)), dir.path(), None)
        .unwrap()
        .0;
    let there = PolicyStore::load(Arc::new(on_postgres(&schema)), dir.path(), None)
        .unwrap()
        .0;
    let base = here.current().version().to_string();
    assert_eq!(there.current().version(), base);
    let cedar = |id: &str| {
        Arc::new(
            PolicyEngine::from_cedar(&format!(
                "@id(\"{id}\")\npermit(principal, action == Action::\"{id}.read\", resource);\n"
            ))
            .unwrap(),
        )
    };

    // Both changes were reviewed against `base`; the other replica activates its change first.
    let theirs = cedar("theirs");
    there.activate_over(theirs.clone(), &base).await.unwrap();
    // This replica has not polled: in memory it still holds `base`. Its save conflicts, it
    // reloads, and finds a policy its change was not reviewed against.
    assert_eq!(here.current().version(), base);
    let refused = here.activate_over(cedar("ours"), &base).await.unwrap_err();
    match refused {
        PolicyStoreError::Superseded { base: b, current } => {
            assert_eq!(b, base);
            assert_eq!(current, theirs.version());
        }
        other => panic!("expected Superseded, got {other}"),
    }
    // Theirs stays in force, on both.
    assert_eq!(here.current().version(), theirs.version());
    there.reload_if_newer(None).await.unwrap();
    assert_eq!(there.current().version(), theirs.version());

    // A change reviewed against the policy now in force is activated; the `--policy` file's
    // reload (no review) replaces whatever is in force.
    let ours = cedar("ours");
    here.activate_over(ours.clone(), theirs.version())
        .await
        .unwrap();
    let file = cedar("file");
    there.activate(file.clone()).await.unwrap();
    here.reload_if_newer(None).await.unwrap();
    assert_eq!(here.current().version(), file.version());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_an_approval_and_a_withdrawal_on_two_replicas_exactly_one_takes_effect() {
    use crate::proposals::{ProposalStatus, Proposals};
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let here = Proposals::load(Arc::new(on_postgres(&schema)), dir.path()).unwrap();
    let there = Proposals::load(Arc::new(on_postgres(&schema)), dir.path()).unwrap();
    let engine = || {
        Arc::new(
            zt_policy::PolicyEngine::from_cedar("permit(principal, action, resource);\n").unwrap(),
        )
    };
    let file = |seq| {
        here.add(
            seq,
            "alice",
            "2026-12-07T00:00:00.000Z".into(),
            "base",
            engine(),
        )
    };

    // Approved here first: the other replica, which has not polled, cannot withdraw it.
    let approved = file(7).await.unwrap().unwrap();
    assert!(here.mark_activated(&approved.id, "bob").await.unwrap());
    assert!(!there.remove(&approved.id).await.unwrap());
    there.refresh().await.unwrap();
    assert_eq!(
        there.get(&approved.id).unwrap().status,
        ProposalStatus::Activated {
            approved_by: "bob".into()
        }
    );

    // Withdrawn there first: this replica cannot activate it.
    let withdrawn = file(8).await.unwrap().unwrap();
    there.refresh().await.unwrap();
    assert!(there.remove(&withdrawn.id).await.unwrap());
    assert!(!here.mark_activated(&withdrawn.id, "bob").await.unwrap());
    assert!(here.get(&withdrawn.id).is_none());

    // A mark taken back (its policy could not be activated) is taken back only by its approver.
    let retried = file(9).await.unwrap().unwrap();
    assert!(here.mark_activated(&retried.id, "bob").await.unwrap());
    assert!(!here.unmark_activated(&retried.id, "carol").await.unwrap());
    assert!(here.unmark_activated(&retried.id, "bob").await.unwrap());
    assert_eq!(
        here.get(&retried.id).unwrap().status,
        ProposalStatus::Pending
    );
}

#[tokio::test]
async fn a_revocation_holds_from_its_record_and_after_a_failed_save() {
    use crate::registry::{AgentEntry, Registry};
    let dir = tempfile::tempdir().unwrap();
    let docs = Arc::new(Documents::open(None, dir.path()).unwrap());
    let registry = Registry::load(docs, dir.path()).unwrap();
    let agent = |token: &str| AgentEntry {
        actor: "courier".into(),
        registered_at: "2026-12-07T00:00:00.000Z".into(),
        attributes: Default::default(),
        token_sha256: Some(token.into()),
        unauthenticated: false,
    };
    let actor_of = |token: &str| registry.agent_for_token(token).map(|holder| holder.actor);
    assert!(registry.insert(agent("h1")).await.unwrap());
    assert_eq!(actor_of("h1").as_deref(), Some("courier"));

    // A rotation is in force once recorded, before its save; given back if its record is not.
    let rotation = registry.revoke_token_now("courier");
    assert_eq!(actor_of("h1"), None);
    registry.unrevoke(rotation);
    assert_eq!(actor_of("h1").as_deref(), Some("courier"));
    let _recorded = registry.revoke_token_now("courier");
    assert!(registry
        .set_token("courier", Some("h2".into()), false)
        .await
        .unwrap());
    assert_eq!(
        (actor_of("h1"), actor_of("h2").as_deref()),
        (None, Some("courier"))
    );

    // A removal: the name and its token are refused at once, while the registry still holds
    // them (a save not yet made, or failed).
    let _recorded = registry.revoke_agent_now("courier");
    assert!(registry.contains("courier"));
    assert_eq!(
        (actor_of("h2"), registry.attributes("courier")),
        (None, None)
    );
    assert!(registry.remove("courier").await.unwrap());
    // Done once saved: the same name registered again is not refused by it.
    assert!(registry.insert(agent("h3")).await.unwrap());
    assert_eq!(actor_of("h3").as_deref(), Some("courier"));
    assert!(registry.attributes("courier").is_some());
}

/// A revocation takes the write side of the revocation lock: it waits for a record being
/// queued on the word of the token it revokes, and the token is refused from then on.
#[tokio::test]
async fn a_revocation_waits_for_a_record_being_queued_with_its_token() {
    use crate::registry::{AgentEntry, Registry, RevokedSince};
    let dir = tempfile::tempdir().unwrap();
    let docs = Arc::new(Documents::open(None, dir.path()).unwrap());
    let registry = Registry::load(docs, dir.path()).unwrap();
    let entry = AgentEntry {
        actor: "courier".into(),
        registered_at: "2026-12-07T00:00:00.000Z".into(),
        attributes: Default::default(),
        token_sha256: Some("h1".into()),
        unauthenticated: false,
    };
    assert!(registry.insert(entry).await.unwrap());
    let seen = registry.agent_for_token("h1").unwrap().generation;
    let queueing = registry.confirm(seen, "courier", Some("h1")).unwrap();
    assert!(!queueing.removed);
    std::thread::scope(|scope| {
        let revoking = scope.spawn(|| registry.revoke_token_now("courier"));
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            !revoking.is_finished(),
            "the revocation waits for the queueing"
        );
        drop(queueing);
        revoking.join().unwrap();
    });
    assert_eq!(
        registry.confirm(seen, "courier", Some("h1")).err(),
        Some(RevokedSince)
    );
    // A workload identity (no token) of a removed agent: its removal is told.
    let _removal = registry.revoke_agent_now("courier");
    let removed = registry.confirm(seen, "courier", None).unwrap();
    assert!(removed.removed);
}
