//! Two real `zt serve --auth credentials` replicas on one PostgreSQL store share one agent
//! registry and one active policy: a token issued on one works on the other, a rotated or
//! removed token stops working on every replica within the documented bound, a policy
//! proposed on one and approved on the other is in force on both, and concurrent
//! registrations on both survive.
//! Needs PostgreSQL on 127.0.0.1:5432 (`.ci/run` starts it); skips (prints `SKIPPED: …`)
//! without it unless `ZT_REQUIRE_SERVICES=1`.

use crate::common;
use crate::pg_schema;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Server;
use pg_schema::TestSchema;
use serde_json::json;

const ALICE: &str = "zt_admin_test-alice-0123456789abcdefghijklmnopqrstu";
const BOB: &str = "zt_admin_test-bob-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456";

/// The documented bound (`docs/STORAGE.md`) is 250 ms plus a round trip; the tests allow
/// slack for a loaded CI machine.
const BOUND: Duration = Duration::from_secs(3);

/// Two replicas on one store, with one admin token file, each with its own data directory.
/// Bind `_dirs` and `_schema` when taking it apart: dropped, they delete the store.
struct Pair {
    a: Server,
    b: Server,
    store: String,
    admins: PathBuf,
    _dirs: Vec<tempfile::TempDir>,
    _schema: TestSchema,
}

fn admin_token_file(dir: &Path) -> PathBuf {
    let file = dir.join("admins");
    std::fs::write(&file, format!("alice {ALICE}\nbob {BOB}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    file
}

fn replica(dir: &Path, store: &str, admins: &Path) -> Server {
    Server::start_with_auth(
        dir,
        "credentials",
        &[
            "--store",
            store,
            "--admin-token-file",
            admins.to_str().unwrap(),
        ],
    )
}

/// Two replicas on a fresh schema, or `None` (after `SKIPPED: …`) without PostgreSQL.
fn pair() -> Option<Pair> {
    let schema = TestSchema::new()?;
    let shared = tempfile::tempdir().unwrap();
    let admins = admin_token_file(shared.path());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = replica(da.path(), &schema.url(), &admins);
    let b = replica(db.path(), &schema.url(), &admins);
    Some(Pair {
        a,
        b,
        store: schema.url(),
        admins,
        _dirs: vec![shared, da, db],
        _schema: schema,
    })
}

fn register(server: &Server, actor: &str) -> String {
    let (s, _, b) = server.json_as(ALICE, "POST", "/agents", Some(json!({"actor": actor})));
    assert_eq!(s, 201, "{b}");
    b["token"].as_str().unwrap().to_string()
}

/// The status of a decision asked with `token` (401: the token is not accepted).
fn decide(server: &Server, token: &str, action: &str) -> u16 {
    server
        .json_as(token, "POST", "/actions", Some(json!({"action": action})))
        .0
}

/// Asks until `done` holds of the status; returns how long that took.
fn until(what: &str, mut status: impl FnMut() -> u16, done: impl Fn(u16) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let s = status();
        if done(s) {
            return start.elapsed();
        }
        assert!(start.elapsed() < BOUND, "{what}: still {s} after {BOUND:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn agents(server: &Server) -> Vec<String> {
    let (s, _, v) = server.json_as(ALICE, "GET", "/agents", None);
    assert_eq!(s, 200, "{v}");
    v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["actor"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn tokens_issued_rotated_and_revoked_on_one_replica_hold_on_the_other() {
    let Some(Pair {
        a,
        b,
        _dirs,
        _schema,
        ..
    }) = pair()
    else {
        return;
    };
    // Once B has loaded a registry, an agent registered on A is at once usable on B (B reloads
    // the registry on an unknown token rather than waiting for its next poll).
    register(&a, "earlier");
    until(
        "earlier agent listed on B",
        || u16::from(agents(&b).contains(&"earlier".to_string())),
        |s| s == 1,
    );
    let first = register(&a, "courier");
    assert_ne!(decide(&b, &first, "docs.read"), 401);

    // Rotated on B: the old token is refused on A within the bound, the new one works.
    let (s, _, rotated) = b.json_as(BOB, "POST", "/agents/courier/token", None);
    assert_eq!(s, 200, "{rotated}");
    let second = rotated["token"].as_str().unwrap().to_string();
    assert_eq!(
        decide(&b, &first, "docs.read"),
        401,
        "refused at once where rotated"
    );
    let revoked = until(
        "old token on A",
        || decide(&a, &first, "docs.read"),
        |s| s == 401,
    );
    assert_ne!(decide(&a, &second, "docs.read"), 401);
    eprintln!("rotation reached the other replica after {revoked:?}");

    // Removed on A: refused on B within the bound.
    let (s, _, _) = a.json_as(ALICE, "DELETE", "/agents/courier", None);
    assert_eq!(s, 200);
    let removed = until(
        "removed agent on B",
        || decide(&b, &second, "docs.read"),
        |s| s == 401,
    );
    eprintln!("removal reached the other replica after {removed:?}");
    assert!(!agents(&b).contains(&"courier".to_string()));
}

#[test]
fn a_request_id_used_on_one_replica_is_a_replay_on_the_other() {
    let Some(Pair {
        a,
        b,
        _dirs,
        _schema,
        ..
    }) = pair()
    else {
        return;
    };
    let token = register(&a, "courier");
    let ask = |server: &Server, id: &str| {
        let body = json!({"action": "docs.read", "request_id": id});
        server.json_as(&token, "POST", "/actions", Some(body)).0
    };
    // B knows the agent (a fresh id each time, so nothing is spent on B meanwhile).
    let mut probe = 0;
    until(
        "agent known on B",
        || {
            probe += 1;
            ask(&b, &format!("probe-{probe}"))
        },
        |s| s != 401,
    );
    // Decided on A (denied: no policy allows it), which spends the id: at once a replay on B,
    // never decided again, and B's own ids are replays on A in turn.
    assert_eq!(ask(&a, "nonce-1"), 403);
    assert_eq!(ask(&b, "nonce-1"), 409, "the id A spent is a replay on B");
    assert_eq!(ask(&b, "nonce-2"), 403, "a new id is decided");
    assert_eq!(ask(&a, "nonce-2"), 409, "and is a replay on A in turn");

    // The same ids given to both replicas at the same moment (a thread each): each is decided
    // exactly once.
    let ids: Vec<String> = (0..40).map(|i| format!("race-{i}")).collect();
    let (on_a, on_b): (Vec<u16>, Vec<u16>) = ids
        .iter()
        .map(|id| {
            std::thread::scope(|scope| {
                let on_a = scope.spawn(|| ask(&a, id));
                let on_b = scope.spawn(|| ask(&b, id));
                (on_a.join().unwrap(), on_b.join().unwrap())
            })
        })
        .unzip();
    for ((id, at_a), at_b) in ids.iter().zip(&on_a).zip(&on_b) {
        let mut statuses = [*at_a, *at_b];
        statuses.sort_unstable();
        assert_eq!(statuses, [403, 409], "{id}: A answered {at_a}, B {at_b}");
    }
    // And the shared log holds, for each, one decision and one replay's denial.
    let log = common::records_as(a.port, ALICE);
    for id in &ids {
        let reasons: Vec<&str> = log
            .iter()
            .filter(|record| record["request_id"] == id.as_str())
            .map(|record| record["reason"].as_str().unwrap())
            .collect();
        let replayed = reasons
            .iter()
            .filter(|r| r.contains("already used"))
            .count();
        assert_eq!((reasons.len(), replayed), (2, 1), "{id}: {reasons:?}");
    }
}

#[test]
fn a_policy_approved_on_one_replica_is_in_force_on_the_other() {
    let Some(Pair {
        a,
        b,
        store,
        admins,
        _dirs,
        _schema,
    }) = pair()
    else {
        return;
    };
    let agent = register(&a, "reader");
    assert_eq!(decide(&b, &agent, "docs.read"), 403);

    let cedar = "@id(\"docs\")\n@reason(\"documents are public\")\npermit(principal, action in Action::\"docs.*\", resource);\n";
    let (s, _, proposal) = a.json_as(
        ALICE,
        "POST",
        "/policies/proposals",
        Some(json!({"cedar": cedar})),
    );
    assert_eq!(s, 201, "{proposal}");
    let id = proposal["id"].as_str().unwrap();
    let approve = format!("/policies/proposals/{id}/approve");
    // Proposals are shared: the second admin approves on the other replica.
    let (s, _, approved) = b.json_as(BOB, "POST", &approve, None);
    assert_eq!(s, 200, "{approved}");
    assert_eq!(decide(&b, &agent, "docs.read"), 200);
    let (s, _, again) = a.json_as(BOB, "POST", &approve, None);
    assert_eq!(
        s, 409,
        "activated once, whichever replica is asked: {again}"
    );

    let took = until(
        "new policy on A",
        || decide(&a, &agent, "docs.read"),
        |s| s == 200,
    );
    eprintln!("policy reached the other replica after {took:?}");

    // A restarted replica loads the shared policy and registry, not its own files.
    let dir = b.data_dir.clone();
    assert_eq!(b.terminate(), Some(0));
    let b = replica(&dir, &store, &admins);
    assert_eq!(decide(&b, &agent, "docs.read"), 200);
}

#[test]
fn a_proposal_reviewed_against_a_policy_another_replica_replaced_is_stale() {
    let Some(Pair {
        a,
        b,
        _dirs,
        _schema,
        ..
    }) = pair()
    else {
        return;
    };
    let agent = register(&a, "reader");
    let propose = |area: &str| {
        let cedar = format!(
            "@id(\"{area}\")\n@reason(\"{area} are public\")\npermit(principal, action in Action::\"{area}.*\", resource);\n"
        );
        let (s, _, proposal) = a.json_as(
            ALICE,
            "POST",
            "/policies/proposals",
            Some(json!({"cedar": cedar})),
        );
        assert_eq!(s, 201, "{proposal}");
        format!(
            "/policies/proposals/{}/approve",
            proposal["id"].as_str().unwrap()
        )
    };
    // Two changes reviewed against the same policy, approved on different replicas back to
    // back: the second replica has not polled yet, but approval reads the stored policy.
    let (docs, mail) = (propose("docs"), propose("mail"));
    let (s, _, approved) = a.json_as(BOB, "POST", &docs, None);
    assert_eq!(s, 200, "{approved}");
    let (s, _, refused) = b.json_as(BOB, "POST", &mail, None);
    assert_eq!(s, 409, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("the active policy changed since proposal"),
        "{refused}"
    );
    // The first change is in force on both replicas, and the second never was.
    for server in [&a, &b] {
        until(
            "the approved policy",
            || decide(server, &agent, "docs.read"),
            |s| s == 200,
        );
        assert_eq!(decide(server, &agent, "mail.read"), 403);
    }
}

#[test]
fn an_agent_registered_on_one_replica_can_be_changed_on_the_other_at_once() {
    let Some(Pair {
        a,
        b,
        _dirs,
        _schema,
        ..
    }) = pair()
    else {
        return;
    };
    // Within the other replica's polling interval: its admin routes read the stored registry
    // (a removal there answered 404 and left the token working everywhere).
    let first = register(&a, "courier");
    let (s, _, rotated) = b.json_as(ALICE, "POST", "/agents/courier/token", None);
    assert_eq!(s, 200, "{rotated}");
    let second = rotated["token"].as_str().unwrap().to_string();
    let (s, _, removed) = a.json_as(ALICE, "DELETE", "/agents/courier", None);
    assert_eq!(s, 200, "{removed}");
    let registered = register(&b, "scout");
    let (s, _, removed) = a.json_as(ALICE, "DELETE", "/agents/scout", None);
    assert_eq!(s, 200, "{removed}");
    for server in [&a, &b] {
        for token in [&first, &second, &registered] {
            until(
                "a removed agent's token refused",
                || decide(server, token, "docs.read"),
                |s| s == 401,
            );
        }
    }
}

#[test]
fn concurrent_registrations_on_both_replicas_all_survive() {
    let Some(Pair {
        a,
        b,
        _dirs,
        _schema,
        ..
    }) = pair()
    else {
        return;
    };
    const EACH: usize = 12;
    let names = |side: &'static str| (0..EACH).map(move |n| format!("{side}-{n}"));
    std::thread::scope(|scope| {
        for (server, side) in [(&a, "a"), (&b, "b")] {
            for name in names(side) {
                scope.spawn(move || register(server, &name));
            }
        }
    });
    let mut want: Vec<String> = names("a").chain(names("b")).collect();
    want.sort();
    for server in [&a, &b] {
        until(
            "every agent listed",
            || {
                let mut listed = agents(server);
                listed.sort();
                if listed == want {
                    200
                } else {
                    0
                }
            },
            |s| s == 200,
        );
    }
}

#[test]
fn the_first_replica_on_a_new_store_seeds_it_from_its_data_directory() {
    // An agent registered while the server used its embedded store...
    let dir = tempfile::tempdir().unwrap();
    let shared = tempfile::tempdir().unwrap();
    let admins = admin_token_file(shared.path());
    let alone = Server::start_with_auth(
        dir.path(),
        "credentials",
        &["--admin-token-file", admins.to_str().unwrap()],
    );
    let token = register(&alone, "veteran");
    assert_eq!(alone.terminate(), Some(0));
    assert!(dir.path().join("agents.json").exists());

    // ...is known to every replica once that server joins a PostgreSQL store.
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let a = replica(dir.path(), &schema.url(), &admins);
    let other = tempfile::tempdir().unwrap();
    let b = replica(other.path(), &schema.url(), &admins);
    assert_ne!(decide(&b, &token, "docs.read"), 401);
    assert_ne!(decide(&a, &token, "docs.read"), 401);
}

#[test]
fn a_replica_without_authentication_cannot_vouch_to_one_with_credentials() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let admins = admin_token_file(dir_a.path());
    let a = replica(dir_a.path(), &schema.url(), &admins);
    let vetted = register(&a, "vetted");
    let checker = register(&a, "checker");
    assert_eq!(decide(&a, &vetted, "files.read"), 403);

    // A second replica of the same store, serving without authentication: anyone may re-token
    // an agent and allow an action there. Its marks reach the store with its changes.
    let b = Server::start(dir_b.path(), &["--store", &schema.url()]);
    let (status, rotated) = b.json("POST", "/agents/vetted/token", None);
    assert_eq!(status, 200, "{rotated}");
    let rotated = rotated["token"].as_str().unwrap().to_string();
    let (status, allowed) = b.json(
        "POST",
        "/policies/allow",
        Some(json!({"action": "files.read", "reason": "anyone said so"})),
    );
    assert_eq!(status, 201, "{allowed}");

    // On the replica with credentials, the token chosen without authentication is refused
    // (the old one was rotated away)...
    until(
        "the rotation reaches A",
        || decide(&a, &vetted, "files.read"),
        |s| s == 401,
    );
    let (status, _, refused) = a.json_as(
        &rotated,
        "POST",
        "/actions",
        Some(json!({"action": "files.read"})),
    );
    assert_eq!(status, 401, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("without authentication"),
        "{refused}"
    );
    // ...and so is the policy: for as long as it would have taken to arrive, A keeps its own.
    let started = Instant::now();
    while started.elapsed() < BOUND {
        assert_eq!(
            decide(&a, &checker, "files.read"),
            403,
            "A put in force a policy chosen without authentication"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // B itself serves what it chose: the policy did reach the store.
    assert_eq!(b.decide("checker", "files.read", "").0, 200);
}
