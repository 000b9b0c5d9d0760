//! The HTTPS listener: rustls (aws-lc-rs) in front of the same axum router, with optional
//! client certificates whose SPIFFE ID becomes the caller's identity.
//!
//! Connections are accepted and served by [`zt_listener`], which handshakes them with
//! this acceptor. A verified client certificate's SPIFFE ID is inserted into every request of
//! its connection as a [`crate::auth::PeerIdentity`] extension, which the authentication
//! extractors read. A failed handshake (untrusted or missing client certificate, plain HTTP,
//! garbage, or no handshake within [`zt_listener::HANDSHAKE_TIMEOUT`]) ends only that
//! connection, and is counted in `zt_tls_handshake_failures_total`.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, TrustAnchor, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio_rustls::TlsAcceptor;

use crate::auth::{PeerIdentity, SpiffeId, Unproven};
use crate::config::{ClientCerts, TlsConfig};
use crate::reloadable::{Reloadable, ReloadedSetting};

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

/// The largest TLS file read (a certificate chain, a CA bundle, a key): far above any real one.
const MAX_TLS_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The bytes of a TLS file and its metadata, read from one open file: only a regular file of
/// at most [`MAX_TLS_FILE_BYTES`] (a FIFO would block the reader, a device never end).
fn read_tls_file(
    what: &'static str,
    path: &Path,
) -> Result<(Vec<u8>, std::fs::Metadata), TlsSetupError> {
    use std::io::Read as _;
    let shown = || path.display().to_string();
    let refused = |reason: String| TlsSetupError::Pem(what, shown(), reason);
    let meta = std::fs::metadata(path).map_err(|e| refused(e.to_string()))?;
    if !meta.is_file() || meta.len() > MAX_TLS_FILE_BYTES {
        return Err(refused(format!(
            "not a regular file of at most {MAX_TLS_FILE_BYTES} bytes"
        )));
    }
    let mut file = std::fs::File::open(path).map_err(|e| refused(e.to_string()))?;
    // The metadata of the file read, not of whatever the path names a moment later.
    let meta = file.metadata().map_err(|e| refused(e.to_string()))?;
    let mut bytes = Vec::new();
    file.by_ref()
        .take(MAX_TLS_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| refused(e.to_string()))?;
    Ok((bytes, meta))
}

fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let (bytes, _) = read_tls_file(what, path)?;
    CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::Pem(what, path.display().to_string(), e.to_string()))
}

/// Builds the TLS acceptor: the server's chain and key, TLS 1.3 and 1.2 with aws-lc-rs, ALPN
/// `http/1.1`, and the client-certificate policy; and the authorities that give a client
/// certificate's SPIFFE ID its standing ([`ClientAuthorities`]).
pub(crate) fn acceptor(config: &TlsConfig) -> Result<TlsInForce, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = certificates("tls certificate file", &config.cert_chain)?;
    if chain.is_empty() {
        return Err(TlsSetupError::NoCertificate(
            config.cert_chain.display().to_string(),
        ));
    }
    let key_shown = config.private_key.display().to_string();
    let (key_pem, key_meta) = read_tls_file("tls key file", &config.private_key)?;
    // Only the kind of error: some PEM errors quote the offending line, which would put the
    // key itself in the log and in `/health`.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        let kind = match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no private key found",
            _ => "not a PEM private key (PKCS#8, SEC1 or PKCS#1)",
        };
        TlsSetupError::Pem("tls key file", key_shown.clone(), kind.into())
    })?;
    // As for the audit key: a private key others can read is not private (checked on the
    // file that was read).
    if key_meta.permissions().mode() & 0o077 != 0 {
        return Err(TlsSetupError::KeyReadable(key_shown));
    }
    let mut authorities = ClientAuthorities {
        general: Vec::new(),
        by_domain: HashMap::new(),
        algorithms: provider.signature_verification_algorithms.all,
        generation: 0,
    };
    let verifier = match &config.client_certs {
        ClientCerts::NotRequested => {
            if !config.client_ca_by_domain.is_empty() {
                return Err(TlsSetupError::Config(
                    "per-domain client CAs need client certificates (--client-ca)".into(),
                ));
            }
            WebPkiClientVerifier::no_client_auth()
        }
        ClientCerts::Optional { ca } | ClientCerts::Required { ca } => {
            // The handshake accepts a chain to any of the authorities; the identity's own
            // trust domain is checked after it, by `ClientAuthorities::identify`.
            let mut roots = RootCertStore::empty();
            authorities.general = anchors("client ca file", ca, &mut roots)?;
            for (domain, bundle) in &config.client_ca_by_domain {
                let domain_anchors =
                    anchors("client ca file for a trust domain", bundle, &mut roots)?;
                if domain_anchors
                    .iter()
                    .any(|a| authorities.general.contains(a))
                {
                    // Then that CA vouches for every domain without a bundle of its own too.
                    tracing::warn!(
                        domain = %domain,
                        file = %bundle.display(),
                        "a ca given for this trust domain is also in --client-ca: it can name the ids of every domain without a bundle of its own"
                    );
                }
                authorities.by_domain.insert(domain.clone(), domain_anchors);
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
    Ok(TlsInForce {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        authorities,
    })
}

/// What the HTTPS listener serves with: the acceptor of the server's certificate and the
/// client-certificate policy, and the authorities that give a client certificate its standing,
/// built together from the same files.
pub(crate) struct TlsInForce {
    /// Handshakes new connections.
    pub(crate) acceptor: TlsAcceptor,
    /// Names the peer of a handshaken connection.
    pub(crate) authorities: ClientAuthorities,
}

/// The TLS files in force, read again when any of them changes (checked every second) or on
/// SIGHUP, without a restart: a SPIFFE server certificate lives an hour and trust bundles gain
/// and drop CAs as SPIRE rotates them. Files that are refused (a key that does not match its
/// certificate, an empty bundle, a key others can read) never replace what is in force; the
/// error is logged and shown by `/health` until a reload succeeds. New connections use what
/// is in force when they are accepted; on open ones, a client certificate's identity is
/// verified again against changed authorities before its next use (`auth::in_force`).
pub(crate) struct ReloadedTls {
    file: Reloadable<TlsInForce>,
    config: TlsConfig,
}

impl std::fmt::Debug for ReloadedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadedTls")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ReloadedTls {
    /// Reads the files at start.
    pub(crate) fn load(config: &TlsConfig) -> Result<Self, TlsSetupError> {
        let in_force = acceptor(config)?;
        let mut also = vec![config.private_key.clone()];
        if let ClientCerts::Optional { ca } | ClientCerts::Required { ca } = &config.client_certs {
            also.push(ca.clone());
        }
        also.extend(config.client_ca_by_domain.values().cloned());
        Ok(Self {
            file: Reloadable::watching(config.cert_chain.clone(), also, in_force),
            config: config.clone(),
        })
    }

    /// What is in force.
    pub(crate) fn current(&self) -> Arc<TlsInForce> {
        self.file.current()
    }
}

impl ReloadedSetting for ReloadedTls {
    type Value = TlsInForce;

    fn file(&self) -> &Reloadable<TlsInForce> {
        &self.file
    }

    fn reload(&self, trigger: &str) {
        let load = |_: &Path| {
            let mut next = acceptor(&self.config)?;
            // Identities already given are verified again only if the authorities changed
            // (not for a new server certificate alone).
            let current = self.file.current();
            next.authorities.generation = current.authorities.generation.saturating_add(u64::from(
                !next.authorities.same_anchors(&current.authorities),
            ));
            Ok::<_, TlsSetupError>(next)
        };
        match self.file.reload(load) {
            Ok(_) => tracing::info!(
                cert = %self.config.cert_chain.display(),
                trigger,
                "tls certificate and client authorities reloaded"
            ),
            Err(error) => tracing::error!(
                error,
                trigger,
                "tls files refused; the certificate and authorities in force stay"
            ),
        }
    }
}

/// The CA certificates of `path` as trust anchors, also added to `roots`; a file without one
/// is refused.
fn anchors(
    what: &'static str,
    path: &Path,
    roots: &mut RootCertStore,
) -> Result<Vec<TrustAnchor<'static>>, TlsSetupError> {
    let found: Vec<TrustAnchor<'static>> = certificates(what, path)?
        .iter()
        .filter_map(|cert| webpki::anchor_from_trusted_cert(cert).ok())
        .map(|anchor| anchor.to_owned())
        .collect();
    if found.is_empty() {
        return Err(TlsSetupError::NoClientCa(path.display().to_string()));
    }
    roots.extend(found.iter().cloned());
    Ok(found)
}

/// Who may vouch for a client certificate's SPIFFE ID: the authorities given for its trust
/// domain (`--client-ca-for DOMAIN=FILE`) if there are, otherwise those of `--client-ca`.
/// The handshake accepts a chain to any of them; the identity is given only if the chain also
/// leads to an authority of the ID's own trust domain, so one domain's CA cannot name another
/// domain's workloads (SPIFFE's bundles are per trust domain). With `--client-ca` alone, the
/// second verification is the handshake's again.
pub(crate) struct ClientAuthorities {
    general: Vec<TrustAnchor<'static>>,
    by_domain: HashMap<String, Vec<TrustAnchor<'static>>>,
    algorithms: &'static [&'static dyn rustls::pki_types::SignatureVerificationAlgorithm],
    /// Counts the changes of these authorities since start: an identity verified under an
    /// earlier generation is verified again before it is used.
    generation: u64,
}

impl ClientAuthorities {
    /// The identity a connection's client certificate chain (as presented, its leaf first,
    /// already verified by the handshake) proves, given to each of its requests by the
    /// listener; `None` if the leaf names no SPIFFE ID.
    ///
    /// It lasts until the earliest `notAfter` along the verified path (the leaf and the
    /// intermediates it chains through): a connection kept alive must not outlast any of them.
    pub(crate) fn identify(&self, chain: &[CertificateDer<'_>]) -> Option<PeerIdentity> {
        let (leaf, intermediates) = chain.split_first()?;
        // Parsed once, for its SPIFFE ID and for the verification.
        let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
        let spiffe_id = spiffe_id_of(&cert)?;
        let presented = chain.iter().map(|c| c.clone().into_owned()).collect();
        let anchors = self
            .by_domain
            .get(spiffe_id.trust_domain())
            .unwrap_or(&self.general);
        let standing = self.standing(leaf, &cert, intermediates, anchors);
        Some(PeerIdentity {
            spiffe_id,
            standing,
            presented,
            generation: self.generation,
        })
    }

    /// Which change of the authorities these are (0 at start).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether `other` trusts exactly the same authorities for the same domains.
    fn same_anchors(&self, other: &Self) -> bool {
        self.general == other.general && self.by_domain == other.by_domain
    }

    /// Verifies the chain again against `anchors` alone: until when it proves the leaf's
    /// identity, or why it does not.
    fn standing(
        &self,
        leaf: &CertificateDer<'_>,
        cert: &webpki::EndEntityCert<'_>,
        intermediates: &[CertificateDer<'_>],
        anchors: &[TrustAnchor<'_>],
    ) -> Result<std::time::SystemTime, Unproven> {
        let verified = cert.verify_for_usage(
            self.algorithms,
            anchors,
            intermediates,
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        );
        match verified {
            Ok(path) => {
                let path: Vec<CertificateDer<'_>> = std::iter::once(leaf.clone())
                    .chain(path.intermediate_certificates().map(|c| c.der()))
                    .collect();
                earliest_not_after(&path).ok_or(Unproven::Unreadable)
            }
            // Valid at the handshake, not now: expired since (or a clock stepped back).
            Err(webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. }) => {
                Ok(std::time::UNIX_EPOCH)
            }
            Err(error) => {
                tracing::debug!(%error, "client certificate not verified by its trust domain's authorities");
                Err(Unproven::NotByItsDomain)
            }
        }
    }
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
fn spiffe_id_of(cert: &webpki::EndEntityCert<'_>) -> Option<SpiffeId> {
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

    fn ca_params(until: Option<i32>) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        if let Some(year) = until {
            params.not_after = rcgen::date_time_ymd(year, 1, 1);
        }
        params
    }

    fn root() -> CertifiedIssuer<'static, KeyPair> {
        CertifiedIssuer::self_signed(ca_params(None), KeyPair::generate().unwrap()).unwrap()
    }

    fn anchor(ca: &CertifiedIssuer<'static, KeyPair>) -> TrustAnchor<'static> {
        webpki::anchor_from_trusted_cert(ca.der())
            .unwrap()
            .to_owned()
    }

    /// A leaf naming `uri` valid until `leaf_until`, under an intermediate of `root` valid
    /// until `intermediate_until`: the leaf and the intermediate, as a client presents them.
    fn chain(
        root: &CertifiedIssuer<'static, KeyPair>,
        uri: &str,
        intermediate_until: i32,
        leaf_until: i32,
    ) -> Vec<CertificateDer<'static>> {
        let middle = CertifiedIssuer::signed_by(
            ca_params(Some(intermediate_until)),
            KeyPair::generate().unwrap(),
            root,
        )
        .unwrap();
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.subject_alt_names
            .push(SanType::URI(uri.try_into().unwrap()));
        leaf.not_after = rcgen::date_time_ymd(leaf_until, 1, 1);
        let leaf = leaf
            .signed_by(&KeyPair::generate().unwrap(), &middle)
            .unwrap();
        vec![leaf.der().clone(), middle.der().clone()]
    }

    fn authorities(
        general: &[&CertifiedIssuer<'static, KeyPair>],
        by_domain: &[(&str, &CertifiedIssuer<'static, KeyPair>)],
    ) -> ClientAuthorities {
        ClientAuthorities {
            general: general.iter().map(|ca| anchor(ca)).collect(),
            by_domain: by_domain
                .iter()
                .map(|(domain, ca)| (domain.to_string(), vec![anchor(ca)]))
                .collect(),
            algorithms: rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms
                .all,
            generation: 0,
        }
    }

    #[test]
    fn the_identity_lasts_until_the_first_certificate_of_its_path_expires() {
        let ca = root();
        let ours = authorities(&[&ca], &[]);
        let (soon, later) = (2096, 2099);
        let soon_at = Ok(UNIX_EPOCH + Duration::from_secs(new_year(soon)));
        let by_intermediate = ours.identify(&chain(&ca, BILLING, soon, later)).unwrap();
        assert_eq!(by_intermediate.spiffe_id.as_str(), BILLING);
        assert_eq!(by_intermediate.standing, soon_at);
        let by_leaf = ours.identify(&chain(&ca, BILLING, later, soon)).unwrap();
        assert_eq!(by_leaf.standing, soon_at);
        assert!(!by_leaf.expired());

        // A certificate presented beside the path is not part of it.
        let mut presented = chain(&ca, BILLING, soon, later);
        presented.push(CertificateDer::from(b"not a certificate".to_vec()));
        assert_eq!(ours.identify(&presented).unwrap().standing, soon_at);
    }

    #[test]
    fn an_id_must_chain_to_the_authorities_of_its_own_trust_domain() {
        let (ours, theirs) = (root(), root());
        let ours_names_billing = chain(&ours, BILLING, 2096, 2096);
        let theirs_names_billing = chain(&theirs, BILLING, 2096, 2096);
        let theirs_names_their_own = chain(&theirs, "spiffe://other.org/agent/x", 2096, 2096);

        // Federation: example.org's IDs from `--client-ca`, other.org's from its own bundle.
        let federated = authorities(&[&ours], &[("other.org", &theirs)]);
        assert!(federated
            .identify(&ours_names_billing)
            .unwrap()
            .standing
            .is_ok());
        assert!(federated
            .identify(&theirs_names_their_own)
            .unwrap()
            .standing
            .is_ok());
        let forged = federated.identify(&theirs_names_billing).unwrap();
        assert_eq!(forged.standing, Err(Unproven::NotByItsDomain));
        assert!(forged.expired(), "it proves nothing");

        // A domain given its own bundle is named by that bundle alone, even if the general
        // one holds other authorities the handshake accepted.
        let pinned = authorities(&[&ours, &theirs], &[("example.org", &ours)]);
        assert!(pinned
            .identify(&ours_names_billing)
            .unwrap()
            .standing
            .is_ok());
        assert_eq!(
            pinned.identify(&theirs_names_billing).unwrap().standing,
            Err(Unproven::NotByItsDomain)
        );
    }

    #[test]
    fn a_certificate_that_cannot_be_read_has_no_validity() {
        let ca = root();
        let mut presented = chain(&ca, BILLING, 2096, 2099);
        assert!(earliest_not_after(&presented).is_some());
        presented.push(CertificateDer::from(b"not a certificate".to_vec()));
        assert_eq!(earliest_not_after(&presented), None);
    }

    #[test]
    fn a_leaf_without_a_spiffe_id_is_no_identity() {
        let ca = root();
        let mut params = CertificateParams::new(vec!["client.example.org".into()]).unwrap();
        params.is_ca = IsCa::NoCa;
        let leaf = params
            .signed_by(&KeyPair::generate().unwrap(), &ca)
            .unwrap();
        let ours = authorities(&[&ca], &[]);
        assert_eq!(ours.identify(&[leaf.der().clone()]), None);
        assert_eq!(ours.identify(&[]), None);
    }
}
