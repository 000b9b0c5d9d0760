//! JWT-SVID checks, one refusal at a time. Tokens are signed here with aws-lc-rs directly (not
//! with the crate under test), so a bug shared by signer and verifier cannot hide.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::*;
use crate::reloadable::ReloadedSetting;

const AUD: &str = "zt-control-plane";
const SUB: &str = "spiffe://example.org/agent/billing";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

struct EcKey(EcdsaKeyPair);

impl EcKey {
    fn new() -> Self {
        Self(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
    }
    fn jwk(&self, kid: &str) -> Value {
        let point = self.0.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "jwt-svid",
               "x": b64(&point[1..33]), "y": b64(&point[33..65])})
    }
    fn sign(&self, header: Value, claims: Value) -> String {
        self.sign_raw(&header.to_string(), claims)
    }
    fn sign_raw(&self, header: &str, claims: Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.0.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Value {
    json!({"sub": SUB, "aud": [AUD], "exp": now() + 300, "iat": now()})
}

fn es256(kid: &str) -> Value {
    json!({"alg": "ES256", "kid": kid, "typ": "JWT"})
}

fn verifier(keys: &[Value]) -> JwtSvidVerifier {
    JwtSvidVerifier::from_jwks(&json!({"keys": keys}).to_string(), AUD, "test").unwrap()
}

#[test]
fn a_valid_es256_svid_names_its_subject() {
    let key = EcKey::new();
    let v = verifier(&[key.jwk("k1")]);
    let id = v.verify(&key.sign(es256("k1"), claims())).unwrap();
    assert_eq!(id.as_str(), SUB);
    // `aud` may be a single string; `typ` may be absent; a small clock skew is tolerated.
    let mut c = claims();
    c["aud"] = json!(AUD);
    c["exp"] = json!(now() - 10);
    assert!(v
        .verify(&key.sign(json!({"alg": "ES256", "kid": "k1"}), c))
        .is_ok());
}

#[test]
fn an_svid_valid_for_up_to_a_day_is_taken() {
    let key = EcKey::new();
    let mut c = claims();
    c["exp"] = json!(now() + MAX_LIFETIME_SECONDS - 60);
    let token = key.sign(es256("k1"), c);
    assert!(verifier(&[key.jwk("k1")]).verify(&token).is_ok());
}

#[test]
fn a_valid_rs256_svid_names_its_subject() {
    let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let public = PublicKeyComponents::<Vec<u8>>::from(key.public_key());
    let jwk = json!({"kty": "RSA", "kid": "r1", "n": b64(&public.n), "e": b64(&public.e)});
    let v = verifier(&[jwk]);
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "RS256", "kid": "r1"}).to_string().as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    let token = format!("{input}.{}", b64(&sig));
    assert_eq!(v.verify(&token).unwrap().as_str(), SUB);
    // The same token claiming ES256 for an RSA key is refused before any crypto.
    let header = b64(json!({"alg": "ES256", "kid": "r1"}).to_string().as_bytes());
    let swapped = format!("{header}{}", &token[token.find('.').unwrap()..]);
    assert_eq!(
        v.verify(&swapped),
        Err(JwtSvidError::Algorithm("ES256".into()))
    );
}

#[test]
fn every_invalid_svid_is_refused_with_its_reason() {
    let key = EcKey::new();
    let other = EcKey::new();
    let v = verifier(&[key.jwk("k1")]);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        key.sign(es256("k1"), c)
    };
    let cases: Vec<(&str, String, JwtSvidError)> = vec![
        (
            "expired",
            with(&|c| c["exp"] = json!(now() - 120)),
            JwtSvidError::Expired,
        ),
        (
            "valid for more than a day",
            with(&|c| c["exp"] = json!(now() + MAX_LIFETIME_SECONDS + 120)),
            JwtSvidError::TooLong("24 hours".into()),
        ),
        (
            "not yet valid",
            with(&|c| c["nbf"] = json!(now() + 120)),
            JwtSvidError::NotYetValid,
        ),
        (
            "wrong audience",
            with(&|c| c["aud"] = json!(["someone-else"])),
            JwtSvidError::Audience,
        ),
        (
            "no audience",
            with(&|c| drop(c.as_object_mut().unwrap().remove("aud"))),
            JwtSvidError::Claim("aud".into()),
        ),
        (
            "no expiry",
            with(&|c| drop(c.as_object_mut().unwrap().remove("exp"))),
            JwtSvidError::Claim("exp".into()),
        ),
        (
            "no subject",
            with(&|c| drop(c.as_object_mut().unwrap().remove("sub"))),
            JwtSvidError::Claim("sub".into()),
        ),
        (
            "subject not a string",
            with(&|c| c["sub"] = json!(7)),
            JwtSvidError::Claim("sub".into()),
        ),
        (
            "subject not spiffe",
            with(&|c| c["sub"] = json!("billing-agent")),
            JwtSvidError::Subject,
        ),
        (
            "subject bad spiffe",
            with(&|c| c["sub"] = json!("spiffe://example.org/a/../b")),
            JwtSvidError::Subject,
        ),
        (
            "forged",
            other.sign(es256("k1"), claims()),
            JwtSvidError::Signature,
        ),
        (
            "unknown kid",
            key.sign(es256("k2"), claims()),
            JwtSvidError::UnknownKeyId("k2".into()),
        ),
        (
            "no kid",
            key.sign(json!({"alg": "ES256"}), claims()),
            JwtSvidError::MissingKeyId,
        ),
        (
            "wrong typ",
            key.sign(
                json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"}),
                claims(),
            ),
            JwtSvidError::Type("at+jwt".into()),
        ),
        (
            "rs256 on an ec key",
            key.sign(json!({"alg": "RS256", "kid": "k1"}), claims()),
            JwtSvidError::Algorithm("RS256".into()),
        ),
        (
            "es384 on a p-256 key",
            key.sign(json!({"alg": "ES384", "kid": "k1"}), claims()),
            JwtSvidError::Algorithm("ES384".into()),
        ),
        (
            "unknown alg",
            key.sign(json!({"alg": "XX1", "kid": "k1"}), claims()),
            JwtSvidError::Algorithm("XX1".into()),
        ),
        (
            "no alg",
            key.sign(json!({"kid": "k1"}), claims()),
            JwtSvidError::Malformed,
        ),
        (
            "critical extension",
            key.sign(
                json!({"alg": "ES256", "kid": "k1", "crit": ["exp"], "exp": 1}),
                claims(),
            ),
            JwtSvidError::Critical("exp".into()),
        ),
        (
            "two critical extensions",
            key.sign(
                json!({"alg": "ES256", "kid": "k1", "crit": ["b64", "x-zt"], "b64": false}),
                claims(),
            ),
            JwtSvidError::Critical("b64, x-zt".into()),
        ),
        (
            "empty crit",
            key.sign(json!({"alg": "ES256", "kid": "k1", "crit": []}), claims()),
            JwtSvidError::Malformed,
        ),
        (
            "crit not a list",
            key.sign(
                json!({"alg": "ES256", "kid": "k1", "crit": "exp"}),
                claims(),
            ),
            JwtSvidError::Malformed,
        ),
        ("garbage", "a.b.c".into(), JwtSvidError::Malformed),
        (
            "two parts",
            "eyJhbGciOiJFUzI1NiJ9.e30".into(),
            JwtSvidError::Malformed,
        ),
        (
            "huge",
            format!("{}.{}.x", "a".repeat(5000), "b".repeat(5000)),
            JwtSvidError::Malformed,
        ),
    ];
    for (name, token, expected) in cases {
        assert_eq!(v.verify(&token), Err(expected), "{name}");
    }

    // `alg: none` with no signature, and HS256 keyed with the public key (algorithm confusion).
    let body = b64(claims().to_string().as_bytes());
    for alg in ["none", "None", "NONE"] {
        let header = b64(json!({"alg": alg, "kid": "k1"}).to_string().as_bytes());
        assert_eq!(
            v.verify(&format!("{header}.{body}.")),
            Err(JwtSvidError::AlgorithmNone),
            "{alg}"
        );
    }
    let hs = key.sign(json!({"alg": "HS256", "kid": "k1"}), claims());
    assert_eq!(v.verify(&hs), Err(JwtSvidError::Algorithm("HS256".into())));
}

#[test]
fn bundles_hold_only_usable_asymmetric_keys() {
    let key = EcKey::new();
    let load =
        |keys: Value| JwtSvidVerifier::from_jwks(&json!({"keys": keys}).to_string(), AUD, "b.json");
    // X.509 authorities of a SPIFFE bundle are skipped; the JWT key is kept.
    let x509 =
        json!({"kty": "EC", "crv": "P-256", "use": "x509-svid", "x5c": ["AAAA"], "x": "", "y": ""});
    let v = load(json!([x509, key.jwk("k1")])).unwrap();
    assert_eq!(v.key_count(), 1);
    // Top-level SPIFFE bundle fields are fine.
    let doc = json!({"spiffe_sequence": 3, "spiffe_refresh_hint": 60, "keys": [key.jwk("k1")]});
    assert!(JwtSvidVerifier::from_jwks(&doc.to_string(), AUD, "b.json").is_ok());

    let mut no_kid = key.jwk("k1");
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut bad_point = key.jwk("k1");
    bad_point["y"] = bad_point["x"].clone();
    let mut wrong_alg = key.jwk("k1");
    wrong_alg["alg"] = json!("RS256");
    let mut enc = key.jwk("k1");
    enc["use"] = json!("enc");
    let small_rsa = json!({"kty": "RSA", "kid": "r", "n": b64(&[0xc5; 128]), "e": "AQAB"});
    for (name, keys) in [
        (
            "symmetric",
            json!([{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]),
        ),
        (
            "okp",
            json!([{"kty": "OKP", "crv": "Ed25519", "kid": "e", "x": "AAAA"}]),
        ),
        (
            "p-521",
            json!([{"kty": "EC", "crv": "P-521", "kid": "p", "x": "AA", "y": "AA"}]),
        ),
        ("no kid", json!([no_kid])),
        ("bad point", json!([bad_point])),
        ("alg of another key type", json!([wrong_alg])),
        ("encryption key", json!([enc])),
        ("rsa 1024", json!([small_rsa])),
        (
            "duplicate kid",
            json!([key.jwk("k1"), EcKey::new().jwk("k1")]),
        ),
    ] {
        assert!(matches!(load(keys), Err(JwksError::Key(..))), "{name}");
    }
    assert!(matches!(load(json!([])), Err(JwksError::NoKeys(_))));
    assert!(matches!(
        load(json!([x509_only()])),
        Err(JwksError::NoKeys(_))
    ));
    assert!(matches!(
        JwtSvidVerifier::from_jwks("[]", AUD, "b"),
        Err(JwksError::Format(..))
    ));
    assert!(matches!(
        JwtSvidVerifier::from_jwks("{", AUD, "b"),
        Err(JwksError::Format(..))
    ));
    let one = json!({"keys": [key.jwk("k1")]}).to_string();
    assert!(matches!(
        JwtSvidVerifier::from_jwks(&one, " ", "b"),
        Err(JwksError::Audience)
    ));
}

fn x509_only() -> Value {
    json!({"kty": "EC", "crv": "P-256", "use": "x509-svid", "x5c": ["AAAA"]})
}

#[test]
fn only_three_part_tokens_are_taken_for_jwts() {
    assert!(looks_like_jwt("a.b.c"));
    assert!(looks_like_jwt("a.b."));
    assert!(!looks_like_jwt("zt_agent_abc"));
    assert!(!looks_like_jwt("a.b"));
    assert!(!looks_like_jwt("a.b.c.d.e"));
}

#[test]
fn a_remembered_svid_is_still_bound_by_its_expiry() {
    let key = EcKey::new();
    let v = verifier(&[key.jwk("k1")]);
    let mut c = claims();
    c["nbf"] = json!(now() - 5);
    let token = key.sign(es256("k1"), c);
    assert_eq!(v.verify(&token).unwrap().as_str(), SUB);
    assert_eq!(v.verify(&token).unwrap().as_str(), SUB, "remembered");
    assert_eq!(v.read_cache().len(), 1);
    // Within the leeway after `exp` (300 s from now), then past it.
    assert!(v.verify_at(&token, now() + 300 + LEEWAY_SECONDS).is_ok());
    assert_eq!(
        v.verify_at(&token, now() + 300 + LEEWAY_SECONDS + 5),
        Err(JwtSvidError::Expired)
    );
    assert_eq!(v.read_cache().len(), 0, "an expired token is forgotten");
    // Before `nbf` (only reachable for a remembered token with a clock that went back).
    assert!(v.verify(&token).is_ok());
    assert_eq!(
        v.verify_at(&token, now() - 3600),
        Err(JwtSvidError::NotYetValid)
    );
    // Refused tokens are never remembered.
    let forged = EcKey::new().sign(es256("k1"), claims());
    assert_eq!(v.verify(&forged), Err(JwtSvidError::Signature));
    assert_eq!(v.verify(&forged), Err(JwtSvidError::Signature));
    assert_eq!(v.read_cache().len(), 1);
}

#[test]
fn a_header_that_repeats_a_parameter_is_malformed() {
    let key = EcKey::new();
    let v = verifier(&[key.jwk("k1")]);
    let good = key.sign_raw(r#"{"alg":"ES256","kid":"k1"}"#, claims());
    assert!(v.verify(&good).is_ok());
    for header in [
        r#"{"alg":"ES256","kid":"k1","kid":"k1"}"#,
        r#"{"alg":"none","alg":"ES256","kid":"k1"}"#,
    ] {
        let token = key.sign_raw(header, claims());
        assert_eq!(v.verify(&token), Err(JwtSvidError::Malformed), "{header}");
    }
}

#[test]
fn a_bundle_that_repeats_a_member_is_refused() {
    let key = EcKey::new();
    let other = EcKey::new();
    let one = json!({"keys": [key.jwk("k1")]}).to_string();
    assert!(JwtSvidVerifier::from_jwks(&one, AUD, "b.json").is_ok());
    // A second `x` before the real one names another key to a reader that keeps the first.
    let doubled = one.replacen(
        "\"kty\"",
        &format!("\"x\":{},\"kty\"", other.jwk("k1")["x"]),
        1,
    );
    let refused = JwtSvidVerifier::from_jwks(&doubled, AUD, "b.json");
    assert!(
        matches!(&refused, Err(JwksError::Format(_, why)) if why.contains("duplicate")),
        "{:?}",
        refused.err()
    );
    let keys_twice = format!("{{\"keys\":[],{}", &one[1..]);
    assert!(matches!(
        JwtSvidVerifier::from_jwks(&keys_twice, AUD, "b.json"),
        Err(JwksError::Format(..))
    ));
}

#[test]
fn a_reloaded_bundle_trusts_only_its_own_keys() {
    use crate::auth::jwt_bundle::JwtSvidBundle;
    let (old, new) = (EcKey::new(), EcKey::new());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.jwks");
    let write = |keys: Value| std::fs::write(&path, json!({ "keys": keys }).to_string()).unwrap();
    write(json!([old.jwk("k1")]));
    let bundle = JwtSvidBundle::load(&path, AUD).unwrap();
    let by_old = old.sign(es256("k1"), claims());
    let by_new = new.sign(es256("k2"), claims());
    assert!(
        bundle.verifier().verify(&by_old).is_ok(),
        "remembered from here on"
    );
    assert!(bundle.verifier().verify(&by_new).is_err());

    // The bundle rotates: k1 is gone, even for a token verified (and remembered) before.
    write(json!([new.jwk("k2")]));
    bundle.reload("test");
    assert_eq!(
        bundle.verifier().verify(&by_old),
        Err(JwtSvidError::UnknownKeyId("k1".into()))
    );
    assert!(bundle.verifier().verify(&by_new).is_ok());

    // A file that is not a bundle keeps the one in force, and says why.
    std::fs::write(&path, "not json").unwrap();
    bundle.reload("test");
    assert!(bundle.verifier().verify(&by_new).is_ok());
    assert!(bundle.last_error().is_some());

    // An empty bundle is how the last key is withdrawn: nothing verifies.
    write(json!([]));
    bundle.reload("test");
    assert_eq!(
        bundle.verifier().verify(&by_new),
        Err(JwtSvidError::UnknownKeyId("k2".into()))
    );
    assert_eq!(bundle.last_error(), None);
}

#[test]
fn a_domain_with_its_own_bundle_is_named_by_its_keys_alone() {
    use crate::auth::jwt_bundle::JwtSvidBundle;
    use crate::auth::workload::WorkloadAuth;
    const PARTNER: &str = "spiffe://other.org/agent/partner";
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (EcKey::new(), EcKey::new());
    let bundle = |name: &str, jwk: Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, json!({"keys": [jwk]}).to_string()).unwrap();
        JwtSvidBundle::load(&path, AUD).unwrap()
    };
    let workload = WorkloadAuth::new([], Some(bundle("ours.json", ours.jwk("ours"))), [])
        .with_jwt_bundles_by_domain([(
            "other.org".to_string(),
            bundle("theirs.json", theirs.jwk("theirs")),
        )]);
    let token = |key: &EcKey, kid: &str, sub: &str| {
        let mut c = claims();
        c["sub"] = json!(sub);
        key.sign(es256(kid), c)
    };

    let id = |token: &str| workload.verify_jwt(token).unwrap().map(|id| id.to_string());
    assert_eq!(id(&token(&ours, "ours", SUB)), Ok(SUB.to_string()));
    assert_eq!(
        id(&token(&theirs, "theirs", PARTNER)),
        Ok(PARTNER.to_string())
    );
    // Their key naming our workload, and ours naming theirs: neither proves anything.
    assert_eq!(
        id(&token(&theirs, "theirs", SUB)),
        Err(JwtSvidError::UnknownKeyId("theirs".into()))
    );
    assert_eq!(
        id(&token(&ours, "ours", PARTNER)),
        Err(JwtSvidError::UnknownKeyId("ours".into()))
    );
    // The bundle follows the claimed domain, not the key id: a partner publishing our key id
    // changes nothing for our tokens, and its key under our id still names nothing of ours.
    assert_eq!(
        id(&token(&theirs, "ours", SUB)),
        Err(JwtSvidError::Signature)
    );
    let colliding = bundle("theirs-too.json", theirs.jwk("ours"));
    let workload = WorkloadAuth::new([], Some(bundle("ours2.json", ours.jwk("ours"))), [])
        .with_jwt_bundles_by_domain([("other.org".to_string(), colliding)]);
    let verified = |t: &str| workload.verify_jwt(t).unwrap().map(|id| id.to_string());
    assert_eq!(verified(&token(&ours, "ours", SUB)), Ok(SUB.to_string()));
    assert_eq!(
        verified(&token(&theirs, "ours", PARTNER)),
        Ok(PARTNER.to_string())
    );
    assert!(workload.verify_jwt("zt_agent_opaque").is_none());
}

#[test]
fn a_shorter_lifetime_cap_refuses_what_it_must_and_says_so() {
    let key = EcKey::new();
    let v = verifier(&[key.jwk("k1")]).with_max_lifetime(600);
    let valid_for = |seconds: u64| {
        let mut c = claims();
        c["exp"] = json!(now() + seconds);
        v.verify(&key.sign(es256("k1"), c))
    };
    assert!(valid_for(540).is_ok());
    let refused = valid_for(1200).unwrap_err();
    assert_eq!(refused, JwtSvidError::TooLong("10 minutes".into()));
    assert_eq!(
        refused.to_string(),
        "the jwt-svid is valid for more than 10 minutes; use a short-lived one"
    );
    // Never longer than the built-in cap.
    let lenient = verifier(&[key.jwk("k1")]).with_max_lifetime(7 * 86_400);
    let mut c = claims();
    c["exp"] = json!(now() + 2 * 86_400);
    assert_eq!(
        lenient.verify(&key.sign(es256("k1"), c)),
        Err(JwtSvidError::TooLong("24 hours".into()))
    );
    assert_eq!(spelled(90), "90 seconds");
    assert_eq!(spelled(60), "1 minute");
}
