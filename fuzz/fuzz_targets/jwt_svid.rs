//! JWT-SVID bearer tokens (`zt_server::JwtSvidVerifier`): any token, never a panic and never
//! accepted (nobody holds the bundle key's private half here).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use zt_server::JwtSvidVerifier;

/// The P-256 generator as the one trusted key.
const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"fuzz","use":"jwt-svid",
  "x":"axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
  "y":"T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"}]}"#;

fn verifier() -> &'static JwtSvidVerifier {
    static VERIFIER: OnceLock<JwtSvidVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        JwtSvidVerifier::from_jwks(JWKS, "zt-fuzz", "fuzz bundle").expect("the bundle loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    assert!(
        verifier().verify(token).is_err(),
        "a forged token was accepted"
    );
    let _ = JwtSvidVerifier::from_jwks(token, "zt-fuzz", "fuzz input");
});
