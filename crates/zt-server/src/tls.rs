//! The HTTPS listener: rustls (aws-lc-rs) in front of the same axum router, with optional
//! client certificates whose SPIFFE ID becomes the caller's identity.
//!
//! `axum::serve` cannot terminate TLS, so connections are accepted here, handshaken with
//! tokio-rustls, and served with hyper's HTTP/1.1 connection builder. A verified client
//! certificate's SPIFFE ID is inserted into every request of its connection as a
//! [`PeerIdentity`] extension, which the authentication extractors read. A failed handshake
//! (untrusted or missing client certificate, plain HTTP, garbage, or no handshake within
//! [`HANDSHAKE_TIMEOUT`]) ends only that connection, and is counted in
//! `zt_tls_handshake_failures_total`.
//!
//! Shutdown: stop accepting, abandon unfinished handshakes, let hyper close idle connections
//! and finish in-flight requests (their records commit), and after [`DRAIN_TIMEOUT`] abort
//! what is still open.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::auth::{PeerIdentity, SpiffeId};
use crate::config::{ClientCerts, TlsConfig};
use crate::metrics::Metrics;

/// Longest a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest shutdown waits for in-flight requests before closing their connections.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

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
pub fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, TlsSetupError> {
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
    if std::fs::metadata(&config.private_key).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
        tracing::warn!(key = %key_shown, "the tls private key is readable by other users; consider `chmod 600`");
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
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// The SPIFFE ID of a (verified) leaf certificate: its only URI SAN, if that is a valid SPIFFE
/// ID. No URI SAN, several URI SANs, or a URI that is not a SPIFFE ID: no identity.
pub fn spiffe_id_of(leaf: &CertificateDer<'_>) -> Option<SpiffeId> {
    let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
    let mut uris = cert.valid_uri_names();
    let only = uris.next()?;
    if uris.next().is_some() {
        return None;
    }
    SpiffeId::parse(only).ok()
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then drains (see the module
/// documentation).
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let (stop, stopped) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let (tcp, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        connections.spawn(connection(
            Accepted {
                tcp,
                remote,
                acceptor: acceptor.clone(),
                app: app.clone(),
                metrics: metrics.clone(),
                http: http.clone(),
            },
            graceful.watcher(),
            stopped.clone(),
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain deadline; closing them");
        connections.abort_all();
    }
    while connections.join_next().await.is_some() {}
}

/// One accepted connection and what serving it needs.
struct Accepted {
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
    metrics: Arc<Metrics>,
    http: http1::Builder,
}

async fn connection(conn: Accepted, watcher: Watcher, mut stopped: watch::Receiver<bool>) {
    let Accepted {
        tcp,
        remote,
        acceptor,
        app,
        metrics,
        http,
    } = conn;
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
    let tls = tokio::select! {
        result = handshake => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                metrics.tls_handshake_failed();
                tracing::debug!(%remote, error = %e, "tls handshake failed");
                return;
            }
            Err(_) => {
                metrics.tls_handshake_failed();
                tracing::debug!(%remote, "tls handshake timed out");
                return;
            }
        },
        _ = stopped.wait_for(|stop| *stop) => return,
    };
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(<[CertificateDer<'_>]>::first)
        .and_then(spiffe_id_of)
        .map(|spiffe_id| PeerIdentity { spiffe_id });
    tracing::debug!(%remote, identity = ?peer.as_ref().map(|p| p.spiffe_id.as_str()), "tls connection");
    let service = service_fn(move |mut request: Request<Incoming>| {
        if let Some(peer) = &peer {
            request.extensions_mut().insert(peer.clone());
        }
        app.clone().oneshot(request)
    });
    let served = watcher.watch(http.serve_connection(TokioIo::new(tls), service));
    if let Err(e) = served.await {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}
