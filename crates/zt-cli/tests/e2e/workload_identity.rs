//! Workload identity, end to end: `zt serve` over HTTPS with client certificates (X.509-SVIDs)
//! and JWT-SVID bearer tokens, against the real binary over real sockets. Every certificate and
//! key is made here at test time (rcgen, aws-lc-rs); nothing is checked in.

use crate::common;
use crate::workload;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair, RSA_PKCS1_SHA256};
use common::{http_raw, parse_http_response, zt, Server};
use rcgen::KeyPair;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use serde_json::{json, Value};
use workload::*;

#[test]
fn a_client_certificate_is_the_agents_identity() {
    let pki = Pki::new("zt test ca");
    let dir = tempfile::tempdir().unwrap();
    let server = start_tls(
        &pki,
        dir.path(),
        &["--spiffe-trust-domain", "example.org"],
        &[],
    );
    let admin = server.admin_token();
    let anonymous = pki.client_config(None);
    let billing = pki.client_config(Some(&pki.client(&[BILLING])));
    // `POST /actions` with the billing certificate, and a token when given.
    let as_billing =
        |token: Option<&str>, body: Value| post(&server, &billing, token, "/actions", body);

    // Bearer tokens still work over TLS: the admin registers the SPIFFE ID like any actor.
    let [billing_token, plain_token] =
        [BILLING, "plain-agent"].map(|actor| register_tls(&server, &anonymous, &admin, actor));
    admin_created(
        &server,
        &anonymous,
        &admin,
        "/policies/allow",
        json!({"action": "invoices.read", "reason": "ok"}),
    );

    // The certificate alone authenticates; the actor is the full SPIFFE ID.
    let (s, _, decision) = as_billing(
        None,
        json!({"action": "invoices.read", "resource": "inv-1"}),
    );
    assert_eq!(s, 200, "{decision}");
    assert_eq!(decision["actor"], BILLING);
    assert_eq!(decision["decision"], "allow");
    assert_eq!(decision["evidence"]["authenticated"], true);
    let (s, _, _) = as_billing(None, json!({"actor": BILLING, "action": "invoices.read"}));
    assert_eq!(s, 200, "the body may repeat the actor");

    // Claiming another actor in the body is a logged deny, as with tokens.
    let (s, _, spoof) = as_billing(
        None,
        json!({"actor": "plain-agent", "action": "invoices.read"}),
    );
    assert_eq!(s, 403);
    assert_eq!(
        (
            spoof["actor"].as_str(),
            spoof["evidence"]["claimed_actor"].as_str()
        ),
        (Some(BILLING), Some("plain-agent"))
    );

    // Certificate and token together must name the same caller.
    let (s, _, _) = as_billing(Some(&billing_token), json!({"action": "invoices.read"}));
    assert_eq!(s, 200, "agreeing certificate and token");
    let before = decisions(&records(&server, &anonymous, &admin));
    let (s, headers, refused) = as_billing(Some(&plain_token), json!({"action": "invoices.read"}));
    assert_eq!(s, 401, "{refused}");
    assert!(headers
        .to_ascii_lowercase()
        .contains("www-authenticate: bearer"));
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("different callers"),
        "{refused}"
    );
    assert_eq!(
        decisions(&records(&server, &anonymous, &admin)),
        before,
        "no decision for a refused caller"
    );

    // A plain bearer token over TLS, no certificate.
    let (s, _, decision) = post(
        &server,
        &anonymous,
        Some(&plain_token),
        "/actions",
        json!({"action": "invoices.read"}),
    );
    assert_eq!((s, decision["actor"].as_str()), (200, Some("plain-agent")));
    // No credential at all.
    let (s, _, _) = post(
        &server,
        &anonymous,
        None,
        "/actions",
        json!({"actor": BILLING, "action": "invoices.read"}),
    );
    assert_eq!(s, 401);

    // A valid certificate for an unregistered SPIFFE ID: authenticated, and denied on the record.
    let stranger = pki.client_config(Some(&pki.client(&["spiffe://example.org/agent/stranger"])));
    let (s, _, denied) = post(
        &server,
        &stranger,
        None,
        "/actions",
        json!({"action": "invoices.read"}),
    );
    assert_eq!(s, 403);
    assert_eq!(denied["reason"], "agent is not registered");
    assert_eq!(denied["evidence"]["authenticated"], true);

    // No session is resumed: each connection's certificate is verified by its own handshake
    // (a resumed one carries the first handshake's certificate, however expired since).
    for _ in 0..3 {
        assert_eq!(
            workload::handshake_kind(server.port, &billing),
            rustls::HandshakeKind::Full
        );
    }

    // The same CA naming an ID of another trust domain: no caller at all, never decided.
    let foreign = pki.client_config(Some(&pki.client(&["spiffe://evil.example/agent/billing"])));
    let (s, _, refused) = post(
        &server,
        &foreign,
        None,
        "/actions",
        json!({"action": "invoices.read"}),
    );
    assert_eq!(s, 401, "{refused}");
    assert!(refused["error"]
        .as_str()
        .unwrap()
        .contains("not of a trust domain this server trusts"));

    let log = records(&server, &anonymous, &admin);
    let by_cert: Vec<&Value> = log
        .iter()
        .filter(|r| r["kind"] == "decision" && r["actor"] == BILLING)
        .collect();
    assert_eq!(by_cert.len(), 4);
    assert!(by_cert.iter().all(|r| r["authenticated"] == true));
    assert!(log
        .iter()
        .filter(|r| r["kind"] == "admin")
        .all(|r| r["actor"] == "admin"));
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn failed_handshakes_never_stop_the_server() {
    let pki = Pki::new("zt test ca");
    let rogue = Pki::new("rogue ca");
    let dir = tempfile::tempdir().unwrap();
    let server = start_tls(&pki, dir.path(), &[], &[]);
    let admin = server.admin_token();
    let anonymous = pki.client_config(None);
    register_tls(&server, &anonymous, &admin, BILLING);

    // A client certificate from another CA (with the very SPIFFE ID that is registered).
    let forged = pki.client_config(Some(&rogue.client(&[BILLING])));
    let attempt = https(
        server.port,
        &forged,
        "POST",
        "/actions",
        &[],
        Some(br#"{"action":"invoices.read"}"#),
    );
    assert!(
        attempt.is_err(),
        "an untrusted client certificate must fail the handshake: {attempt:?}"
    );
    // Plain HTTP on the TLS port, and garbage bytes.
    assert!(http_raw(server.port, "GET", "/health", &[], None).is_err());
    let mut junk = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    junk.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    junk.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0xde, 0xad, 0xbe, 0xef])
        .unwrap();
    junk.write_all(&[0x5a; 70_000]).unwrap_or(());
    let mut rest = Vec::new();
    let _ = junk.read_to_end(&mut rest);
    // A connection that never starts its handshake, left open.
    let _idle = TcpStream::connect(("127.0.0.1", server.port)).unwrap();

    // The server keeps serving everyone else.
    let billing = pki.client_config(Some(&pki.client(&[BILLING])));
    let (s, _, decision) = post(
        &server,
        &billing,
        None,
        "/actions",
        json!({"action": "invoices.read"}),
    );
    assert_eq!(
        (s, decision["actor"].as_str()),
        (403, Some(BILLING)),
        "{decision}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut failures = 0;
    while Instant::now() < deadline {
        let (_, _, raw) = https(server.port, &anonymous, "GET", "/metrics", &[], None).unwrap();
        let text = String::from_utf8(raw).unwrap();
        failures = common::metric(&text, "zt_tls_handshake_failures_total").unwrap_or(0.0) as u64;
        if failures >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(failures, 3, "wrong CA, plain HTTP and garbage are counted");

    // SIGTERM drains promptly even with a connection stuck before its handshake.
    let stopping = Instant::now();
    assert_eq!(server.terminate(), Some(0));
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );

    // With --require-client-cert, a client without a certificate cannot connect at all.
    let server = start_required(&pki, dir.path());
    let attempt = https(server.port, &anonymous, "GET", "/health", &[], None);
    assert!(attempt.is_err(), "{attempt:?}");
    let (s, _, _) = call(&server, &billing, None, "GET", "/health", None);
    assert_eq!(s, 200);
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn sigterm_drains_in_flight_requests_over_tls() {
    let pki = Pki::new("zt test ca");
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_tls(&pki, dir.path(), &[], &[]);
    let (admin, anonymous) = billing_may_read_invoices(&server, &pki);
    let billing = pki.client_config(Some(&pki.client(&[BILLING])));
    let open = || {
        let tcp = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let conn =
            ClientConnection::new(billing.clone(), ServerName::try_from("localhost").unwrap())
                .unwrap();
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap();
        }
        tls
    };
    // An idle keep-alive connection, and a request whose body is only half sent.
    let _idle = open();
    let mut in_flight = open();
    let body = br#"{"action":"invoices.read","resource":"in-flight"}"#;
    let head = format!(
        "POST /actions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    in_flight.write_all(head.as_bytes()).unwrap();
    in_flight.write_all(&body[..10]).unwrap();
    in_flight.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));

    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server waits for the request in flight"
    );
    in_flight.write_all(&body[10..]).unwrap();
    in_flight.flush().unwrap();
    let mut raw = Vec::new();
    let _ = in_flight.read_to_end(&mut raw);
    let (status, _, answer) = parse_http_response(&raw).unwrap();
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(
        (status, answer["actor"].as_str()),
        (200, Some(BILLING)),
        "{answer}"
    );
    assert_eq!(server.child.wait().unwrap().code(), Some(0));

    // The answered decision was committed before the answer.
    drop(server);
    let server = start_tls(&pki, dir.path(), &[], &[]);
    let log = records(&server, &anonymous, &admin);
    let stored = log
        .iter()
        .find(|r| r["resource"] == "in-flight")
        .expect("the drained decision is on the record");
    assert_eq!(stored["current_hash"], answer["audit"]["current_hash"]);
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn a_connection_kept_alive_past_its_certificate_proves_nothing() {
    kept_alive_past(|pki, not_after| pki.client_until(&[BILLING], not_after));
}

#[test]
fn a_connection_kept_alive_past_its_intermediate_proves_nothing() {
    // The leaf is valid for a day; the intermediate it was issued by, for 4 seconds.
    kept_alive_past(|pki, not_after| {
        pki.client_via(&pki.intermediate_until(not_after), &[BILLING])
    });
}

/// A connection whose client certificate chain (`identity`, given the time it must end) ends
/// 4 s from now: decided before, 401 on the same connection after, and no new handshake.
fn kept_alive_past(identity: impl FnOnce(&Pki, time::OffsetDateTime) -> Identity) {
    let pki = Pki::new("zt test ca");
    let dir = tempfile::tempdir().unwrap();
    let server = start_tls(&pki, dir.path(), &[], &[]);
    let (admin, anonymous) = billing_may_read_invoices(&server, &pki);
    let not_after = time::OffsetDateTime::now_utc() + time::Duration::seconds(4);
    let config = pki.client_config(Some(&identity(&pki, not_after)));
    let mut connection = KeepAlive::open(server.port, &config);
    let ask = json!({"action": "invoices.read"}).to_string();
    let (s, first) = connection.post("/actions", &ask);
    assert_eq!(
        (s, first["actor"].as_str()),
        (200, Some(BILLING)),
        "{first}"
    );

    // notAfter has whole seconds: wait until it is past, then ask on the same connection.
    let past = not_after + time::Duration::milliseconds(1500) - time::OffsetDateTime::now_utc();
    std::thread::sleep(past.try_into().unwrap());
    let (s, second) = connection.post("/actions", &ask);
    assert_eq!(s, 401, "{second}");
    assert!(
        second["error"].as_str().unwrap().contains("has expired"),
        "{second}"
    );
    // A new connection with it fails its handshake.
    assert!(https(server.port, &config, "GET", "/health", &[], None).is_err());
    let log = records(&server, &anonymous, &admin);
    assert_eq!(decisions(&log), 1, "the refused request was not decided");
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn rotated_tls_files_are_put_in_force_without_a_restart() {
    let pki = Pki::new("zt test ca");
    let next = Pki::new("zt next ca");
    let dir = tempfile::tempdir().unwrap();
    let server = start_tls(&pki, dir.path(), &[], &[]);
    let (admin, old_trusting) = billing_may_read_invoices(&server, &pki);
    let ask = json!({"action": "invoices.read"}).to_string();
    let post = |config: &std::sync::Arc<rustls::ClientConfig>| {
        https(
            server.port,
            config,
            "POST",
            "/actions",
            &[],
            Some(ask.as_bytes()),
        )
        .map(|(s, _, _)| s)
    };
    // Trusting the next CA for the server, and holding its client certificate.
    let next_trusting = next.client_config(Some(&next.client(&[BILLING])));
    assert!(
        post(&next_trusting).is_err(),
        "neither side trusts the other yet"
    );

    // The rotation: the bundle gains the next CA, the server certificate is the next CA's
    // (each file written as it comes; a certificate without its key is refused meanwhile).
    let both = format!("{}{}", pki.ca.pem(), next.ca.pem());
    std::fs::write(pki.path("ca.pem"), both).unwrap();
    std::fs::copy(next.path("server.pem"), pki.path("server.pem")).unwrap();
    std::fs::copy(next.path("server.key"), pki.path("server.key")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while post(&next_trusting).ok() != Some(200) {
        assert!(
            Instant::now() < deadline,
            "the rotated files were not put in force"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        post(&old_trusting).is_err(),
        "the old server certificate is no longer served"
    );

    // A broken bundle keeps what is in force, and /health says why.
    std::fs::write(pki.path("ca.pem"), "not a bundle").unwrap();
    let auth = format!("Bearer {admin}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, raw) = https(
            server.port,
            &next_trusting,
            "GET",
            "/health",
            &[("authorization", &auth)],
            None,
        )
        .unwrap();
        let health: Value = serde_json::from_slice(&raw).unwrap();
        if health["reload_errors"]["tls"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "{health}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(post(&next_trusting).ok(), Some(200));
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn a_ca_withdrawn_from_the_bundle_names_nothing_on_connections_already_open() {
    let pki = Pki::new("zt test ca");
    let withdrawn = Pki::new("zt withdrawn ca");
    let both = format!("{}{}", pki.ca.pem(), withdrawn.ca.pem());
    std::fs::write(pki.path("ca.pem"), both).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start_tls(&pki, dir.path(), &[], &[]);
    let (admin, anonymous) = billing_may_read_invoices(&server, &pki);
    let config = pki.client_config(Some(&withdrawn.client(&[BILLING])));
    let mut connection = KeepAlive::open(server.port, &config);
    let ask = json!({"action": "invoices.read"}).to_string();
    let (s, first) = connection.post("/actions", &ask);
    assert_eq!(
        (s, first["actor"].as_str()),
        (200, Some(BILLING)),
        "{first}"
    );

    std::fs::write(pki.path("ca.pem"), pki.ca.pem()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while https(server.port, &config, "GET", "/health", &[], None).is_ok() {
        assert!(Instant::now() < deadline, "the bundle was not reloaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The connection opened under the old bundle: its certificate proves nothing now.
    let (s, second) = connection.post("/actions", &ask);
    assert_eq!(s, 401, "{second}");
    assert!(
        second["error"].as_str().unwrap().contains("does not chain"),
        "{second}"
    );
    let log = records(&server, &anonymous, &admin);
    assert_eq!(decisions(&log), 1, "the refused request was not decided");
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn a_federated_domains_authority_cannot_name_our_workloads() {
    const PARTNER: &str = "spiffe://other.org/agent/partner";
    let ours = Pki::new("zt test ca");
    let theirs = Pki::new("other.org ca");
    let dir = tempfile::tempdir().unwrap();
    let their_bundle = format!("other.org={}", theirs.path("ca.pem").display());
    let server = start_tls(&ours, dir.path(), &["--client-ca-for", &their_bundle], &[]);
    let (admin, anonymous) = billing_may_read_invoices(&server, &ours);
    register_tls(&server, &anonymous, &admin, PARTNER);
    let ask = json!({"action": "invoices.read"}).to_string();
    // Our server certificate is under our CA; each client certificate under the CA given.
    let call = |issuer: &Pki, uri: &str| {
        let config = ours.client_config(Some(&issuer.client(&[uri])));
        let (s, _, body) = https(
            server.port,
            &config,
            "POST",
            "/actions",
            &[],
            Some(ask.as_bytes()),
        )
        .expect("the handshake accepts every configured authority");
        (s, serde_json::from_slice::<Value>(&body).unwrap())
    };

    let (s, answer) = call(&ours, BILLING);
    assert_eq!(
        (s, answer["actor"].as_str()),
        (200, Some(BILLING)),
        "{answer}"
    );
    let (s, answer) = call(&theirs, PARTNER);
    assert_eq!(
        (s, answer["actor"].as_str()),
        (200, Some(PARTNER)),
        "{answer}"
    );
    for (issuer, uri) in [(&theirs, BILLING), (&ours, PARTNER)] {
        let (s, answer) = call(issuer, uri);
        assert_eq!(s, 401, "{uri}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("trust domain"),
            "{answer}"
        );
    }
    let log = records(&server, &anonymous, &admin);
    assert_eq!(decisions(&log), 2, "the forged identities were not decided");
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn a_trust_domain_given_twice_is_refused_at_start() {
    let pki = Pki::new("zt test ca");
    let dir = tempfile::tempdir().unwrap();
    let bundle = format!("other.org={}", pki.path("ca.pem").display());
    let out = Command::new(common::zt_bin())
        .args(["serve", "--auth", "credentials", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .args(pki.serve_args())
        .args(["--client-ca-for", &bundle, "--client-ca-for", &bundle])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("names `other.org` twice"), "{stderr}");
}

#[test]
fn an_audit_stream_opened_with_a_certificate_ends_when_it_expires() {
    let pki = Pki::new("zt test ca");
    let dir = tempfile::tempdir().unwrap();
    let server = start_tls(&pki, dir.path(), &[], &[("ZT_ADMIN_SPIFFE_IDS", ADMIN)]);
    let anonymous = pki.client_config(None);
    let admin_token = server.admin_token();
    let not_after = time::OffsetDateTime::now_utc() + time::Duration::seconds(4);
    let admin = pki.client_config(Some(&pki.client_until(&[ADMIN], not_after)));
    let mut stream = KeepAlive::open(server.port, &admin);
    register_tls(&server, &anonymous, &admin_token, "first");
    assert!(
        stream.get_until("/audit/stream", "\"first\"", Duration::from_secs(10)),
        "the stream shows the record"
    );
    let past = not_after + time::Duration::milliseconds(1500) - time::OffsetDateTime::now_utc();
    std::thread::sleep(past.try_into().unwrap());
    register_tls(&server, &anonymous, &admin_token, "second");
    assert!(
        stream.read_until(
            "the admin credential of this stream is no longer valid",
            Duration::from_secs(10)
        ),
        "the stream ends instead of showing the record"
    );
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn a_federated_domains_jwt_svid_keys_cannot_name_our_workloads() {
    const PARTNER: &str = "spiffe://other.org/agent/partner";
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (EcSigner::new(), EcSigner::new());
    let write = |name: &str, jwk: Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, json!({ "keys": [jwk] }).to_string()).unwrap();
        path.display().to_string()
    };
    let our_jwks = write("ours.jwks", ours.jwk("ours"));
    let their_jwks = format!("other.org={}", write("theirs.jwks", theirs.jwk("theirs")));
    let server = Server::start_with_auth(
        &dir.path().join("data"),
        "credentials",
        &[
            "--single-admin",
            "--jwt-svid-jwks",
            &our_jwks,
            "--jwt-svid-jwks-for",
            &their_jwks,
            "--jwt-svid-audience",
            AUDIENCE,
        ],
    );
    let admin = server.admin_token();
    for actor in [BILLING, PARTNER] {
        let (s, _, _) = server.json_as(&admin, "POST", "/agents", Some(json!({"actor": actor})));
        assert_eq!(s, 201);
    }
    let ask = |jwt: &str| server.json_as(jwt, "POST", "/actions", Some(json!({"action": "a.b"})));
    // Decided (403: nothing allows `a.b`) under the caller each key may name.
    for (key, kid, sub) in [(&ours, "ours", BILLING), (&theirs, "theirs", PARTNER)] {
        let (s, _, answer) = ask(&key.sign(es256(kid), svid_claims(sub)));
        assert_eq!((s, answer["actor"].as_str()), (403, Some(sub)), "{answer}");
    }
    // Never decided under a caller of another domain: only the claimed domain's keys may
    // verify a token, whatever key id it names.
    for (key, kid, sub) in [
        (&theirs, "theirs", BILLING),
        (&ours, "ours", PARTNER),
        (&theirs, "ours", BILLING),
    ] {
        let (s, _, answer) = ask(&key.sign(es256(kid), svid_claims(sub)));
        assert_eq!(s, 401, "{sub}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains("is not in the trust bundle") || error.contains("signature"),
            "{answer}"
        );
    }
    let log = common::records_as(server.port, &admin);
    assert_eq!(decisions(&log), 2, "the forged identities were not decided");
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn a_jwt_svid_lifetime_cap_can_be_tightened() {
    let dir = tempfile::tempdir().unwrap();
    let key = EcSigner::new();
    let jwks = dir.path().join("bundle.jwks");
    std::fs::write(&jwks, json!({ "keys": [key.jwk("k1")] }).to_string()).unwrap();
    let jwks = jwks.display().to_string();
    let server = Server::start_with_auth(
        &dir.path().join("data"),
        "credentials",
        &[
            "--single-admin",
            "--jwt-svid-jwks",
            &jwks,
            "--jwt-svid-audience",
            AUDIENCE,
            "--jwt-svid-max-lifetime",
            "10m",
        ],
    );
    let admin = server.admin_token();
    let (s, _, _) = server.json_as(&admin, "POST", "/agents", Some(json!({"actor": BILLING})));
    assert_eq!(s, 201);
    let ask = |valid_for: u64| {
        let mut claims = svid_claims(BILLING);
        claims["exp"] = json!(now() + valid_for);
        let jwt = key.sign(es256("k1"), claims);
        server.json_as(&jwt, "POST", "/actions", Some(json!({"action": "a.b"})))
    };
    assert_eq!(ask(300).0, 403, "a five-minute token is decided");
    let (s, _, answer) = ask(3600);
    assert_eq!(s, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("valid for more than 10 minutes"),
        "{answer}"
    );
    assert_eq!(server.terminate(), Some(0));

    // Never above 24 hours.
    let out = zt(&[
        "serve",
        "--jwt-svid-jwks",
        &jwks,
        "--jwt-svid-audience",
        AUDIENCE,
        "--jwt-svid-max-lifetime",
        "25h",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at most 24h"));
}

#[test]
fn a_rotated_jwt_svid_bundle_is_put_in_force_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (EcSigner::new(), EcSigner::new());
    let jwks_file = dir.path().join("bundle.jwks");
    let write = |keys: Value| {
        // Replaced as a rotation tool does: written beside, then renamed over.
        let next = dir.path().join("bundle.jwks.next");
        std::fs::write(&next, json!({ "keys": keys }).to_string()).unwrap();
        std::fs::rename(&next, &jwks_file).unwrap();
    };
    write(json!([old.jwk("es-1")]));
    let server = Server::start_with_auth(
        &dir.path().join("data"),
        "credentials",
        &[
            "--single-admin",
            "--jwt-svid-jwks",
            jwks_file.to_str().unwrap(),
            "--jwt-svid-audience",
            AUDIENCE,
        ],
    );
    let admin = server.admin_token();
    let (s, _, _) = server.json_as(&admin, "POST", "/agents", Some(json!({"actor": BILLING})));
    assert_eq!(s, 201);
    let status = |jwt: &str| {
        let (s, _, _) = server.json_as(jwt, "POST", "/actions", Some(json!({"action": "a.b"})));
        s
    };
    let by_old = old.sign(es256("es-1"), svid_claims(BILLING));
    let by_new = new.sign(es256("es-2"), svid_claims(BILLING));
    assert_eq!((status(&by_old), status(&by_new)), (403, 401));

    write(json!([new.jwk("es-2")]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&by_new) != 403 {
        assert!(
            Instant::now() < deadline,
            "the new bundle was not put in force"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        status(&by_old),
        401,
        "the removed key verifies nothing, however remembered"
    );

    // A broken bundle keeps the one in force, and /health says why.
    std::fs::write(&jwks_file, "not json").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, health) = server.json_as(&admin, "GET", "/health", None);
        if health["reload_errors"]["jwt_svid_jwks"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "{health}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status(&by_new), 403);
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn a_certificate_without_exactly_one_spiffe_id_proves_nothing() {
    let pki = Pki::new("zt test ca");
    let dir = tempfile::tempdir().unwrap();
    let server = start_tls(&pki, dir.path(), &[], &[]);
    let admin = server.admin_token();
    let anonymous = pki.client_config(None);
    for actor in [BILLING, "spiffe://example.org/agent/other"] {
        register_tls(&server, &anonymous, &admin, actor);
    }
    let token = register_tls(&server, &anonymous, &admin, "token-agent");

    let cases: [(&str, &[&str]); 5] = [
        ("no uri san", &[]),
        (
            "two spiffe ids",
            &[BILLING, "spiffe://example.org/agent/other"],
        ),
        (
            "a spiffe id and another uri",
            &[BILLING, "https://example.org/agent"],
        ),
        ("not a spiffe uri", &["https://example.org/agent/billing"]),
        (
            "an invalid spiffe id",
            &["spiffe://Example.org/agent/billing"],
        ),
    ];
    for (name, uris) in cases {
        let config = pki.client_config(Some(&pki.client(uris)));
        let (s, _, body) = post(
            &server,
            &config,
            None,
            "/actions",
            json!({"actor": BILLING, "action": "a.b"}),
        );
        assert_eq!(s, 401, "{name}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("credential is required"),
            "{name}: {body}"
        );
        // The connection is still good for a bearer token, which then names the caller alone.
        let (s, _, body) = post(
            &server,
            &config,
            Some(&token),
            "/actions",
            json!({"action": "a.b"}),
        );
        assert_eq!(
            (s, body["actor"].as_str()),
            (403, Some("token-agent")),
            "{name}: {body}"
        );
    }
    let log = records(&server, &anonymous, &admin);
    assert!(log
        .iter()
        .filter(|r| r["kind"] == "decision")
        .all(|r| r["actor"] == "token-agent"));
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn admin_spiffe_ids_may_administer_and_agent_certificates_may_not() {
    let pki = Pki::new("zt test ca");
    let dir = tempfile::tempdir().unwrap();
    // The environment twin, comma-separated.
    let ids = format!("{ADMIN},spiffe://example.org/ops/backup");
    let server = start_tls(
        &pki,
        dir.path(),
        &[],
        &[("ZT_ADMIN_SPIFFE_IDS", ids.as_str())],
    );
    let admin_token = server.admin_token();
    let anonymous = pki.client_config(None);
    let admin = pki.client_config(Some(&pki.client(&[ADMIN])));
    let billing = pki.client_config(Some(&pki.client(&[BILLING])));
    let other = pki.client_config(Some(&pki.client(&["spiffe://example.org/agent/unlisted"])));

    let (s, _, body) = post(&server, &admin, None, "/agents", json!({"actor": BILLING}));
    assert_eq!(s, 201, "{body}");
    let (s, _, _) = post(
        &server,
        &admin,
        None,
        "/policies/allow",
        json!({"action": "invoices.read", "reason": "ok"}),
    );
    assert_eq!(s, 201);
    let (s, _, agents) = call(&server, &admin, None, "GET", "/agents", None);
    assert_eq!((s, agents["agents"].as_array().unwrap().len()), (200, 1));
    let (s, _, _) = post(
        &server,
        &billing,
        None,
        "/actions",
        json!({"action": "invoices.read"}),
    );
    assert_eq!(s, 200);

    // Agent and unlisted certificates on admin routes: 403, audited under their SPIFFE IDs.
    for (config, who) in [
        (&billing, BILLING),
        (&other, "spiffe://example.org/agent/unlisted"),
    ] {
        for (method, path, body) in [
            ("GET", "/agents", None),
            ("POST", "/policies/allow", Some(json!({"action": "*"}))),
            ("GET", "/audit/records", None),
        ] {
            let (s, _, refused) = call(&server, config, None, method, path, body);
            assert_eq!(s, 403, "{who} {method} {path}: {refused}");
            assert!(refused["error"]
                .as_str()
                .unwrap()
                .contains("cannot use admin routes"));
        }
    }
    // An admin certificate with an admin token of another name: one request, one caller.
    let (s, _, body) = call(&server, &admin, Some(&admin_token), "GET", "/agents", None);
    assert_eq!(s, 401, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("different callers"));

    let log = records(&server, &anonymous, &admin_token);
    let changes: Vec<&Value> = log
        .iter()
        .filter(|r| r["kind"] == "admin" && r["decision"] == "allow")
        .collect();
    // The registration, and the policy change (filed and approved: more than one record).
    assert!(changes
        .iter()
        .any(|r| r["action"] == "zt.admin.agents.register"));
    assert!(changes.len() >= 2, "{changes:?}");
    assert!(changes
        .iter()
        .all(|r| r["actor"] == ADMIN && r["authenticated"] == true));
    let attempts: Vec<&Value> = log
        .iter()
        .filter(|r| r["action"] == "zt.admin.access")
        .collect();
    assert_eq!(attempts.len(), 6);
    assert_eq!(attempts.iter().filter(|r| r["actor"] == BILLING).count(), 3);
    assert!(attempts
        .iter()
        .all(|r| r["decision"] == "deny" && r["authenticated"] == true));
    let (s, _, _) = call(&server, &admin, None, "GET", "/policies", None);
    assert_eq!(s, 200);
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn jwt_svids_authenticate_and_every_bad_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let es = EcSigner::new();
    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let rsa_public = PublicKeyComponents::<Vec<u8>>::from(rsa.public_key());
    let jwks = json!({"keys": [
        es.jwk("es-1"),
        {"kty": "RSA", "kid": "rs-1", "alg": "RS256", "n": b64(&rsa_public.n), "e": b64(&rsa_public.e)},
    ]});
    let jwks_file = dir.path().join("bundle.jwks");
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with_auth(
        &data,
        "credentials",
        &[
            "--single-admin",
            "--jwt-svid-jwks",
            jwks_file.to_str().unwrap(),
            "--jwt-svid-audience",
            AUDIENCE,
            "--admin-spiffe-id",
            ADMIN,
            "--spiffe-trust-domain",
            "example.org",
        ],
    );
    let admin = server.admin_token();
    for actor in [BILLING, "spiffe://example.org/agent/rsa"] {
        let (s, _, _) = server.json_as(&admin, "POST", "/agents", Some(json!({"actor": actor})));
        assert_eq!(s, 201);
    }
    let (s, _, _) = server.json_as(
        &admin,
        "POST",
        "/policies/allow",
        Some(json!({"action": "invoices.read", "reason": "ok"})),
    );
    assert_eq!(s, 201);
    let decide = |token: &str| {
        server.json_as(
            token,
            "POST",
            "/actions",
            Some(json!({"action": "invoices.read"})),
        )
    };

    let valid = es.sign(es256("es-1"), svid_claims(BILLING));
    let (s, _, decision) = decide(&valid);
    assert_eq!(s, 200, "{decision}");
    assert_eq!(decision["actor"], BILLING);
    assert_eq!(decision["evidence"]["authenticated"], true);

    let input = format!(
        "{}.{}",
        b64(json!({"alg": "RS256", "kid": "rs-1"})
            .to_string()
            .as_bytes()),
        b64(svid_claims("spiffe://example.org/agent/rsa")
            .to_string()
            .as_bytes())
    );
    let mut sig = vec![0; rsa.public_modulus_len()];
    rsa.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    let (s, _, decision) = decide(&format!("{input}.{}", b64(&sig)));
    assert_eq!(
        (s, decision["actor"].as_str()),
        (200, Some("spiffe://example.org/agent/rsa")),
        "{decision}"
    );

    let log_before = decisions(&plain_records(&server, &admin));
    let claims_with = |f: &dyn Fn(&mut Value)| {
        let mut c = svid_claims(BILLING);
        f(&mut c);
        c
    };
    let none_header = b64(json!({"alg": "none", "kid": "es-1"}).to_string().as_bytes());
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            es.sign(
                es256("es-1"),
                claims_with(&|c| c["exp"] = json!(now() - 120)),
            ),
            "expired",
        ),
        (
            "valid for a year",
            es.sign(
                es256("es-1"),
                claims_with(&|c| c["exp"] = json!(now() + 365 * 86_400)),
            ),
            "valid for more than 24 hours",
        ),
        (
            "forged",
            EcSigner::new().sign(es256("es-1"), svid_claims(BILLING)),
            "signature is not valid",
        ),
        (
            "wrong audience",
            es.sign(
                es256("es-1"),
                claims_with(&|c| c["aud"] = json!(["another-service"])),
            ),
            "audience",
        ),
        (
            "unknown kid",
            es.sign(es256("es-9"), svid_claims(BILLING)),
            "not in the trust bundle",
        ),
        (
            "alg none",
            format!(
                "{none_header}.{}.",
                b64(svid_claims(BILLING).to_string().as_bytes())
            ),
            "`none` is not allowed",
        ),
        (
            "non-spiffe sub",
            es.sign(es256("es-1"), svid_claims("billing-agent")),
            "not a spiffe id",
        ),
        // Any key of the bundle can name any ID: one of another trust domain is no caller.
        (
            "another trust domain",
            es.sign(
                es256("es-1"),
                svid_claims("spiffe://evil.example/agent/billing"),
            ),
            "not of a trust domain this server trusts",
        ),
        (
            "an admin's path in another trust domain",
            es.sign(
                es256("es-1"),
                svid_claims("spiffe://evil.example/ops/admin"),
            ),
            "not of a trust domain this server trusts",
        ),
    ];
    for (name, token, message) in &cases {
        let (s, headers, body) = decide(token);
        assert_eq!(s, 401, "{name}: {body}");
        assert_eq!(body["ok"], false);
        assert!(
            body["error"].as_str().unwrap().contains(message),
            "{name}: {body}"
        );
        assert!(headers.contains("invalid_token"), "{name}: {headers}");
    }
    let log = plain_records(&server, &admin);
    assert_eq!(
        decisions(&log),
        log_before,
        "no refused token reached a decision"
    );

    // A JWT-SVID naming an admin SPIFFE ID may administer; an agent's may not (403, audited).
    let admin_svid = es.sign(es256("es-1"), svid_claims(ADMIN));
    let (s, _, _) = server.json_as(&admin_svid, "GET", "/agents", None);
    assert_eq!(s, 200);
    let (s, _, _) = server.json_as(&valid, "GET", "/agents", None);
    assert_eq!(s, 403);
    let log = plain_records(&server, &admin);
    assert_eq!(log.last().unwrap()["action"], "zt.admin.access");
    assert_eq!(log.last().unwrap()["actor"], BILLING);

    let text = server.metrics();
    assert_eq!(
        common::sample(
            &text,
            "zt_rejected_requests_total{cause=\"unauthenticated\"}"
        ) as u64,
        cases.len() as u64,
        "{text}"
    );

    // At shutdown the refusals join the chain as one summary.
    assert_eq!(server.terminate(), Some(0));
    let server = Server::start_with_auth(&data, "credentials", &[]);
    let log = plain_records(&server, &admin);
    let summary = log
        .iter()
        .rev()
        .find(|r| r["kind"] == "rejections")
        .unwrap();
    assert_eq!(summary["counts"]["unauthenticated"], cases.len());
}

#[test]
fn bad_tls_and_identity_settings_are_refused_at_start() {
    let pki = Pki::new("zt test ca");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = |n: &str| pki.path(n).display().to_string();
    let run = |args: &[&str]| {
        let mut all = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let out = zt(&all);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (cert, key, ca) = (p("server.pem"), p("server.key"), p("ca.pem"));
    // Usage errors (exit 2).
    for args in [
        vec!["--tls-cert", cert.as_str()],
        vec!["--client-ca", ca.as_str()],
        vec!["--jwt-svid-jwks", ca.as_str()],
        vec!["--jwt-svid-audience", "x"],
        vec!["--admin-spiffe-id", "admin"],
        vec!["--admin-spiffe-id", "spiffe://example.org/"],
        vec!["--spiffe-trust-domain", "Example.org"],
        vec!["--spiffe-trust-domain", "example.org/path"],
        vec![
            "--admin-spiffe-id",
            ADMIN,
            "--spiffe-trust-domain",
            "other.org",
        ],
        vec![
            "--tls-cert",
            cert.as_str(),
            "--tls-key",
            key.as_str(),
            "--require-client-cert",
        ],
    ] {
        let (code, stderr) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
    }
    let (code, stderr) = run(&[
        "--auth",
        "none",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--client-ca",
        &ca,
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("needs `--auth credentials`"), "{stderr}");
    let (code, _) = run(&["--auth", "none", "--admin-spiffe-id", ADMIN]);
    assert_eq!(code, Some(2));
    // A private key others can read is refused, as the audit key is.
    let shared_key = dir.path().join("shared.key");
    std::fs::copy(&key, &shared_key).unwrap();
    std::fs::set_permissions(
        &shared_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let (code, stderr) = run(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        shared_key.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("readable by other users"), "{stderr}");

    // Unusable files (exit 1), refused before the data directory is touched.
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let symmetric = dir.path().join("hmac.jwks");
    std::fs::write(
        &symmetric,
        r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#,
    )
    .unwrap();
    let other_key = dir.path().join("other.key");
    std::fs::write(&other_key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let private = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap()
    };
    private(&other_key, 0o600);
    let g = garbage.display().to_string();
    let o = other_key.display().to_string();
    let s = symmetric.display().to_string();
    for (args, expected) in [
        (
            vec!["--tls-cert", g.as_str(), "--tls-key", key.as_str()],
            "holds no certificate",
        ),
        (
            vec!["--tls-cert", cert.as_str(), "--tls-key", g.as_str()],
            "tls key file",
        ),
        (
            vec!["--tls-cert", cert.as_str(), "--tls-key", o.as_str()],
            "tls configuration",
        ),
        (
            vec![
                "--tls-cert",
                cert.as_str(),
                "--tls-key",
                key.as_str(),
                "--client-ca",
                g.as_str(),
            ],
            "client ca file",
        ),
        (
            vec!["--jwt-svid-jwks", s.as_str(), "--jwt-svid-audience", "zt"],
            "key type `oct` is not supported",
        ),
        (
            vec!["--jwt-svid-jwks", g.as_str(), "--jwt-svid-audience", "zt"],
            "not a jwks document",
        ),
    ] {
        let (code, stderr) = run(&args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert!(!data.exists(), "nothing was created for a refused start");
}

#[test]
fn zt_bench_drives_load_over_mutual_tls() {
    let pki = Pki::new("zt test ca");
    let dir = tempfile::tempdir().unwrap();
    let server = start_tls(
        &pki,
        &dir.path().join("data"),
        &["--rate-limit", "1000000/s"],
        &[],
    );
    let admin = server.admin_token();
    let id = pki.client(&[BILLING]);
    std::fs::write(pki.path("billing.pem"), &id.cert).unwrap();
    std::fs::write(pki.path("billing.key"), &id.key).unwrap();
    let url = format!("https://localhost:{}", server.port);
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("billing.pem"),
        pki.path("billing.key"),
    );
    let out = zt(&[
        "bench",
        "--url",
        &url,
        "--ca",
        ca.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--actor",
        BILLING,
        "--admin-token",
        &admin,
        "--connections",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["allowed"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        (
            report["denied"].as_u64(),
            report["other_status"].as_u64(),
            report["errors"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{report}"
    );
    let log = records(&server, &pki.client_config(None), &admin);
    assert!(log
        .iter()
        .filter(|r| r["kind"] == "decision")
        .all(|r| r["actor"] == BILLING && r["authenticated"] == true));
    // Without --ca an https URL is refused (usage stays explicit about whom it trusts).
    let out = zt(&[
        "bench",
        "--url",
        &url,
        "--no-setup",
        "--duration",
        "1",
        "--warmup",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --ca"));
    assert_eq!(server.terminate(), Some(0));
}
