//! The HTTPS listener: rustls (aws-lc-rs) in front of the same axum router, with optional
//! client certificates whose SPIFFE ID becomes the caller's identity.
//!
//! Connections are accepted and served by [`zt_listener`], which handshakes them with
//! this acceptor. A verified client certificate's SPIFFE ID is inserted into every request of
//! its connection as a [`crate::auth::PeerIdentity`] extension, which the authentication
//! extractors read. A failed handshake (untrusted or missing client certificate, plain HTTP,
//! garbage, or no handshake within [`zt_listener::HANDSHAKE_TIMEOUT`]) ends only that
//! connection, and is counted in `zt_tls_handshake_failures_total`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio_rustls::TlsAcceptor;

use crate::auth::SpiffeId;
use crate::config::{ClientCerts, TlsConfig};

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A PEM file could not be read or parsed.
    #[error("{0} `{1}`: {2}")]
    Pem(&'static str, String, String),
    /// The certificate file holds no certificate.
    #[error("tls certificate file `{0}` holds no certificate")]
    NoCertificate(String),
    /// The client CA file holds no usable certificate.
    #[error("client ca file `{0}` holds no usable ca certificate")]
    NoClientCa(String),
    /// The private key file is readable or writable by group or others.
    #[error("tls key file `{0}` is readable by other users; run `chmod 600` on it")]
    KeyReadable(String),
    /// rustls refused the combination (e.g. the key does not match the certificate).
    #[error("tls configuration: {0}")]
    Config(String),
}

fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let shown = path.display().to_string();
    let pem =
        |e: rustls::pki_types::pem::Error| TlsSetupError::Pem(what, shown.clone(), e.to_string());
    CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)
}

/// Builds the TLS acceptor: the server's chain and key, TLS 1.3 and 1.2 with aws-lc-rs, ALPN
/// `http/1.1`, and the client-certificate policy.
pub(crate) fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = certificates("tls certificate file", &config.cert_chain)?;
    if chain.is_empty() {
        return Err(TlsSetupError::NoCertificate(
            config.cert_chain.display().to_string(),
        ));
    }
    let key_shown = config.private_key.display().to_string();
    let key = PrivateKeyDer::from_pem_file(&config.private_key)
        .map_err(|e| TlsSetupError::Pem("tls key file", key_shown.clone(), e.to_string()))?;
    // As for the audit key: a private key others can read is not private.
    if std::fs::metadata(&config.private_key).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
        return Err(TlsSetupError::KeyReadable(key_shown));
    }
    let verifier = match &config.client_certs {
        ClientCerts::NotRequested => WebPkiClientVerifier::no_client_auth(),
        ClientCerts::Optional { ca } | ClientCerts::Required { ca } => {
            let mut roots = RootCertStore::empty();
            let (added, _ignored) =
                roots.add_parsable_certificates(certificates("client ca file", ca)?);
            if added == 0 {
                return Err(TlsSetupError::NoClientCa(ca.display().to_string()));
            }
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = match &config.client_certs {
                ClientCerts::Optional { .. } => builder.allow_unauthenticated(),
                _ => builder,
            };
            builder
                .build()
                .map_err(|e| TlsSetupError::Config(e.to_string()))?
        }
    };
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsSetupError::Config(e.to_string()))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    // A resumed session carries the client certificate of the first handshake without
    // verifying it again, for as long as its ticket lives (a day): an SVID expired or
    // withdrawn meanwhile would still name its caller. Every connection shows its own.
    if config.client_certs != ClientCerts::NotRequested {
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
    }
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// The identity a connection's (verified) client certificate proves, given to each of its
/// requests by the listener. `chain` is what the client presented, its leaf first.
///
/// The identity lasts until the earliest `notAfter` among those certificates: the handshake
/// checked the validity of the leaf and of the intermediates it chained through, and a
/// connection kept alive must not outlast any of them. A certificate presented but not read
/// (which rustls may accept, as an intermediate it did not need) leaves the identity without
/// a validity, and then it proves nothing ([`crate::auth::PeerIdentity::expired`]).
pub(crate) fn peer_identity(chain: &[CertificateDer<'_>]) -> Option<crate::auth::PeerIdentity> {
    let spiffe_id = spiffe_id_of(chain.first()?)?;
    Some(crate::auth::PeerIdentity {
        spiffe_id,
        not_after: earliest_not_after(chain),
    })
}

/// The earliest `notAfter` of `chain`, or `None` if one of its certificates cannot be read.
fn earliest_not_after(chain: &[CertificateDer<'_>]) -> Option<std::time::SystemTime> {
    let mut earliest: Option<std::time::SystemTime> = None;
    for cert in chain {
        let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
        let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
        let not_after = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        earliest = Some(earliest.map_or(not_after, |e| e.min(not_after)));
    }
    earliest
}

/// The SPIFFE ID of a (verified) leaf certificate: its only URI SAN, if that is a valid SPIFFE
/// ID. No URI SAN, several URI SANs, or a URI that is not a SPIFFE ID: no identity.
pub(crate) fn spiffe_id_of(leaf: &CertificateDer<'_>) -> Option<SpiffeId> {
    let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
    let mut uris = cert.valid_uri_names();
    let only = uris.next()?;
    if uris.next().is_some() {
        return None;
    }
    SpiffeId::parse(only).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
    use std::time::{Duration, UNIX_EPOCH};

    const BILLING: &str = "spiffe://example.org/agent/billing";

    /// The first of January of `year`, in seconds since the epoch.
    fn new_year(year: i32) -> u64 {
        u64::try_from(rcgen::date_time_ymd(year, 1, 1).unix_timestamp()).unwrap()
    }

    /// A root, an intermediate valid until `intermediate_until`, and a SPIFFE leaf under it
    /// valid until `leaf_until`: the leaf and the intermediate, as a client presents them.
    fn chain(intermediate_until: i32, leaf_until: i32) -> Vec<CertificateDer<'static>> {
        let ca = |params: &mut CertificateParams| {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        };
        let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca(&mut root);
        let root = CertifiedIssuer::self_signed(root, KeyPair::generate().unwrap()).unwrap();
        let mut middle = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca(&mut middle);
        middle.not_after = rcgen::date_time_ymd(intermediate_until, 1, 1);
        let middle =
            CertifiedIssuer::signed_by(middle, KeyPair::generate().unwrap(), &root).unwrap();
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.subject_alt_names
            .push(SanType::URI(BILLING.try_into().unwrap()));
        leaf.not_after = rcgen::date_time_ymd(leaf_until, 1, 1);
        let key = KeyPair::generate().unwrap();
        let leaf = leaf.signed_by(&key, &middle).unwrap();
        vec![leaf.der().clone(), middle.der().clone()]
    }

    #[test]
    fn the_identity_lasts_until_the_first_certificate_of_the_chain_expires() {
        let (soon, later) = (2096, 2099);
        let soon_at = Some(UNIX_EPOCH + Duration::from_secs(new_year(soon)));
        let by_intermediate = peer_identity(&chain(soon, later)).unwrap();
        assert_eq!(by_intermediate.spiffe_id.as_str(), BILLING);
        assert_eq!(by_intermediate.not_after, soon_at);
        let by_leaf = peer_identity(&chain(later, soon)).unwrap();
        assert_eq!(by_leaf.not_after, soon_at);
        assert!(!by_leaf.expired());

        let past = peer_identity(&chain(2001, later)).unwrap();
        assert!(past.expired(), "an expired intermediate ends the identity");
    }

    #[test]
    fn a_presented_certificate_that_cannot_be_read_leaves_an_identity_that_proves_nothing() {
        let mut presented = chain(2096, 2099);
        presented.push(CertificateDer::from(b"not a certificate".to_vec()));
        let peer = peer_identity(&presented).unwrap();
        assert_eq!(peer.not_after, None);
        assert!(peer.expired());
    }

    #[test]
    fn a_leaf_without_a_spiffe_id_is_no_identity() {
        let mut params = CertificateParams::new(vec!["client.example.org".into()]).unwrap();
        params.is_ca = IsCa::NoCa;
        let key = KeyPair::generate().unwrap();
        let leaf = params.self_signed(&key).unwrap();
        assert_eq!(peer_identity(&[leaf.der().clone()]), None);
        assert_eq!(peer_identity(&[]), None);
    }
}
