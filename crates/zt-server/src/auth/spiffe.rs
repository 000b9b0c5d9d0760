//! The identity a verified client certificate proves. The SPIFFE ID grammar itself belongs to
//! the contract ([`zt_contract::names::SpiffeId`]), shared with the actor-name rules.

pub use zt_contract::names::SpiffeId;

/// The identity named by the TLS client certificate of the connection a request arrived on.
/// The TLS listener inserts it as a request extension, only after the certificate chain was
/// verified by the handshake, and only if the leaf certificate carries exactly one URI SAN and
/// that URI is a valid SPIFFE ID. It never comes from anything the client sends inside HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerIdentity {
    /// The SPIFFE ID of the client certificate.
    pub spiffe_id: SpiffeId,
    /// Until when it proves that ID: the earliest `notAfter` of its verified path (checked at
    /// the handshake by the verifier, and again on every request, since a connection kept
    /// alive can outlive its certificate); or why it proves nothing.
    pub standing: Result<std::time::SystemTime, Unproven>,
    /// The chain the client presented, to verify again if the authorities change while its
    /// connection is open.
    pub presented: std::sync::Arc<[rustls::pki_types::CertificateDer<'static>]>,
    /// Which authorities verified it ([`crate::tls::ClientAuthorities::generation`]).
    pub generation: u64,
}

/// Why a verified client certificate's SPIFFE ID is not proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unproven {
    /// The chain does not lead to an authority of the ID's own trust domain (another
    /// domain's CA named it).
    NotByItsDomain,
    /// A certificate of its path cannot be read for its validity.
    Unreadable,
}

impl PeerIdentity {
    /// Whether the certificate has expired since the handshake, or proves nothing.
    pub(crate) fn expired(&self) -> bool {
        !self
            .standing
            .is_ok_and(|not_after| std::time::SystemTime::now() <= not_after)
    }
}
