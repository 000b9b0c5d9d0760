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
/// requests by the listener.
pub(crate) fn peer_identity(leaf: &CertificateDer<'_>) -> Option<crate::auth::PeerIdentity> {
    let spiffe_id = spiffe_id_of(leaf)?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let not_after = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    Some(crate::auth::PeerIdentity {
        spiffe_id,
        not_after: std::time::UNIX_EPOCH + std::time::Duration::from_secs(not_after),
    })
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
