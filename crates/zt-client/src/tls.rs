//! TLS for `https://` control planes: whom to trust (`--ca`) and which client certificate to
//! present (`--cert`, `--key`). rustls with the aws-lc-rs provider, as the server.
//!
//! Every certificate in the trust file is a trust anchor for WebPKI path validation (a CA that
//! issued the server's certificate), and is also accepted as exactly itself when the server
//! presents it: a self-signed server certificate (`openssl req -x509 …`) given explicitly is
//! trusted, which WebPKI alone refuses (`CaUsedAsEndEntity`). Such a pinned certificate is
//! taken as it is: its names and validity dates are not checked, the signature of the
//! handshake is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{what} `{path}`: {reason}")]
    File {
        /// Which option (`--ca`, `--cert`, `--key`).
        what: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// An `https://` URL without a trust file.
    #[error("an https:// url needs --ca: the PEM certificate of the server's CA, or the server's own self-signed certificate")]
    NoTrust,
    /// Trust or client-certificate options with an `http://` URL.
    #[error("--ca, --cert and --key need an https:// url")]
    NotHttps,
    /// rustls refused the configuration.
    #[error("tls configuration: {0}")]
    Config(String),
}

/// The TLS options of a client.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM certificates to trust: CA certificates, or the server's self-signed certificate.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain (leaf first) and its PEM private key, presented in the
    /// handshake (an X.509-SVID authenticates its SPIFFE ID).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl TlsOptions {
    /// True when no option is set.
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.client_cert.is_none()
    }

    /// The rustls configuration: HTTP/1.1 over TLS 1.2 or 1.3.
    pub(crate) fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let ca = self.ca.as_deref().ok_or(TlsError::NoTrust)?;
        let anchors = read_certs("--ca", ca)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = AnchoredVerifier::new(anchors, provider.clone());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = read_certs("--cert", cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
                    what: "--key",
                    path: key.display().to_string(),
                    reason: e.to_string(),
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError::Config(e.to_string()))?
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::File {
        what,
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| error(e.to_string()))?;
    if certs.is_empty() {
        return Err(error("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// WebPKI validation against the anchors, or exactly one of the anchors as the server's
/// certificate.
#[derive(Debug)]
struct AnchoredVerifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl AnchoredVerifier {
    fn new(anchors: Vec<CertificateDer<'static>>, provider: Arc<CryptoProvider>) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        // A certificate that is no usable anchor can still be pinned.
        let _ = roots.add_parsable_certificates(anchors.iter().cloned());
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .ok();
        Self {
            webpki,
            pinned: anchors,
            provider,
        }
    }
}

impl ServerCertVerifier for AnchoredVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return Ok(ServerCertVerified::assertion());
        }
        match &self.webpki {
            Some(webpki) => webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
