//! The identity a verified client certificate proves. The SPIFFE ID grammar itself belongs to
//! the contract ([`zt_contract::names::SpiffeId`]), shared with the actor-name rules.

pub use zt_contract::names::SpiffeId;

/// The identity proven by the TLS client certificate of the connection a request arrived on.
/// The TLS listener inserts it as a request extension, only after the certificate chain was
/// verified against the client CA bundle, and only if the leaf certificate carries exactly one
/// URI SAN and that URI is a valid SPIFFE ID. It never comes from anything the client sends
/// inside HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerIdentity {
    /// The SPIFFE ID of the client certificate.
    pub spiffe_id: SpiffeId,
    /// The earliest `notAfter` of the certificates the client presented (checked at the
    /// handshake by the verifier, and again on every request, since a connection kept alive
    /// can outlive its certificate), or `None` if one of them could not be read.
    pub not_after: Option<std::time::SystemTime>,
}

impl PeerIdentity {
    /// Whether the certificate has expired since the handshake, or its validity is unknown.
    pub(crate) fn expired(&self) -> bool {
        self.not_after
            .is_none_or(|not_after| std::time::SystemTime::now() > not_after)
    }
}
