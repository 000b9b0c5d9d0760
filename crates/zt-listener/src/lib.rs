//! The listener of every HTTP service here (the control plane, the MCP gateway, the A2A proxy),
//! plain HTTP or HTTPS: accepts connections, caps how many are open, and serves each with
//! hyper's HTTP/1.1 connection builder under time limits, so that slow or idle clients cannot
//! hold the service's sockets.
//!
//! - Headers: a request's headers must arrive within [`Limits::header_timeout`], counted from
//!   the connection's start or the end of the previous response; this is also the keep-alive
//!   idle timeout. TLS handshakes must end within [`HANDSHAKE_TIMEOUT`].
//! - Bodies: every request carries a [`BodyTimeout`] extension ([`Limits::body_timeout`]);
//!   the service enforces it where it reads a body.
//! - Connections: at most [`Limits::max_connections`] are served at once, lowered to the
//!   open-file limit minus [`RESERVED_FDS`] (the service needs descriptors for its own files and
//!   connections too). Past the cap, up to [`OVERFLOW_CONNECTIONS`] more are accepted, each
//!   for one request with a [`OVERFLOW_HEADER_TIMEOUT`] header timeout, and served by
//!   [`Apps::overflow`] (the control plane answers `GET /health` and `GET /metrics` there and a
//!   503 to anything else); past those, one accepted connection waits for a place and the
//!   others wait in the kernel's backlog.
//!
//! Web pages: [`PageGuard`] says whether a request may come from a web page of another host
//! (DNS rebinding); each service refuses those in its own format, with the text of
//! [`ForeignPage`].
//!
//! Counts: a service that shows metrics passes [`ConnectionGauges`] and reads them at any time
//! (open connections, the cap in force, connections accepted past it).
//!
//! Shutdown: stop accepting, abandon unfinished handshakes, let hyper close idle connections
//! and finish in-flight requests, and after [`DRAIN_TIMEOUT`] abort what is still open.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::rt::{Read, Write};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

mod origin;
pub use origin::{AllowedOrigins, ForeignPage, InvalidOrigin, PageGuard};

/// Longest a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest shutdown waits for in-flight requests before closing their connections.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// File descriptors kept free for everything but client connections.
pub const RESERVED_FDS: u64 = 128;
/// Connections accepted past the cap, each for one request (served by [`Apps::overflow`]).
pub const OVERFLOW_CONNECTIONS: usize = 32;
/// Header (and TLS handshake) timeout of a connection accepted past the cap.
pub const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// How many connections, and how long a client may take (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections served at once; lowered to the open-file limit minus [`RESERVED_FDS`].
    pub max_connections: usize,
    /// Longest a client may take to send a request's headers, counted from the connection's
    /// start or the end of the previous response (so it is also the keep-alive idle timeout).
    pub header_timeout: Duration,
    /// Longest a client may take to send a request's body once its headers are in (handed to
    /// every request as its [`BodyTimeout`]).
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_timeout: Duration::from_secs(30),
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }
}

/// How long a request's body may take to arrive once its headers are in: set on every request
/// from [`Limits::body_timeout`]; a service reading a body enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeout(pub Duration);

impl BodyTimeout {
    /// The body deadline of the request with these extensions ([`DEFAULT_BODY_TIMEOUT`] for a
    /// request that did not come through the listener).
    pub fn of(extensions: &axum::http::Extensions) -> Duration {
        extensions
            .get::<BodyTimeout>()
            .map_or(DEFAULT_BODY_TIMEOUT, |timeout| timeout.0)
    }
}

/// What a service answers to a body that is not [`is_utf8_json`].
pub const NOT_UTF8_JSON: &str = "content-type must be application/json (utf-8), once";

/// Whether `headers` say the body is JSON in UTF-8: one `Content-Type`, `application/json`,
/// with no charset or `charset=utf-8`. A gateway decides on the body as UTF-8 and relays it
/// to a server that may honour another charset (under UTF-7, `+ACI-` is a quote, so a `ping`
/// with one string member becomes a `tools/call`), or read another of two `Content-Type`
/// headers; it refuses anything else.
pub fn is_utf8_json(headers: &axum::http::HeaderMap) -> bool {
    let Ok(Some(value)) = header_once(headers, axum::http::header::CONTENT_TYPE) else {
        return false;
    };
    let mut parts = value.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|media| media.eq_ignore_ascii_case("application/json"))
    {
        return false;
    }
    parts.all(|parameter| match parameter.split_once('=') {
        Some((name, charset)) if name.trim().eq_ignore_ascii_case("charset") => charset
            .trim()
            .trim_matches('"')
            .eq_ignore_ascii_case("utf-8"),
        _ => true,
    })
}

/// Why a header that may appear at most once cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderOnceError {
    /// It appears more than once.
    Repeated,
    /// Its value is not visible ASCII text.
    NotText,
}

/// The value of the header `name`, if present, refusing a second one: which of two counts
/// would be a guess, and a proxy and the service behind it might guess differently.
pub fn header_once<K: axum::http::header::AsHeaderName>(
    headers: &axum::http::HeaderMap,
    name: K,
) -> Result<Option<&str>, HeaderOnceError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(HeaderOnceError::Repeated);
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| HeaderOnceError::NotText)
}

/// The body timeout of [`Limits::default`], and of a request that carries none.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the listener serves: the application for connections under the cap, and the one
/// for connections past it (see the module documentation).
pub struct Apps {
    /// The whole application.
    pub regular: Router,
    /// What a connection past the cap gets for its one request (e.g. `/health`, and 503 for
    /// anything else).
    pub overflow: Router,
}

impl std::fmt::Debug for Apps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Apps").finish_non_exhaustive()
    }
}

/// What a connection's client certificate chain (as presented, its leaf first) tells about
/// the peer.
pub type Identify<P> = Arc<dyn Fn(&[CertificateDer<'_>]) -> Option<P> + Send + Sync>;

/// The TLS acceptor in force when a connection is accepted.
pub type CurrentAcceptor = Arc<dyn Fn() -> TlsAcceptor + Send + Sync>;

/// HTTPS: the acceptor, and what a client certificate tells about the peer.
pub struct Tls<P> {
    /// The server's TLS configuration in force, asked for each new connection (it may be
    /// replaced while the listener runs: a rotated certificate, a new CA bundle).
    pub acceptor: CurrentAcceptor,
    /// The peer's identity from the certificates it presented (its leaf first, then any
    /// intermediates), handed to every request of the connection as an extension (`None`: no
    /// identity, nothing inserted).
    pub identify: Identify<P>,
    /// Called for every handshake that fails or times out (for a metric).
    pub on_handshake_failure: Arc<dyn Fn() + Send + Sync>,
}

impl<P> std::fmt::Debug for Tls<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl<P> Clone for Tls<P> {
    fn clone(&self) -> Self {
        Self {
            acceptor: self.acceptor.clone(),
            identify: self.identify.clone(),
            on_handshake_failure: self.on_handshake_failure.clone(),
        }
    }
}

/// The listener's connections as they stand, kept current as they open and close, for a
/// service's metrics: how close it is to the cap, and how often the cap turned clients away.
#[derive(Debug, Default)]
pub struct ConnectionGauges {
    max_connections: AtomicUsize,
    open: AtomicUsize,
    past_cap_open: AtomicUsize,
    past_cap_total: AtomicU64,
}

/// One reading of [`ConnectionGauges`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionCounts {
    /// The cap in force ([`effective_max_connections`]; 0 until the listener starts).
    pub max_connections: usize,
    /// Connections served under the cap now.
    pub open: usize,
    /// Connections accepted past the cap and open now (each for its one request).
    pub past_cap_open: usize,
    /// Connections accepted past the cap since the listener started.
    pub past_cap_total: u64,
}

impl ConnectionGauges {
    /// The counts now.
    pub fn read(&self) -> ConnectionCounts {
        ConnectionCounts {
            max_connections: self.max_connections.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
            past_cap_open: self.past_cap_open.load(Ordering::Relaxed),
            past_cap_total: self.past_cap_total.load(Ordering::Relaxed),
        }
    }

    fn opened(&self, past_cap: bool) {
        if past_cap {
            self.past_cap_open.fetch_add(1, Ordering::Relaxed);
            self.past_cap_total.fetch_add(1, Ordering::Relaxed);
        } else {
            self.open.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn closed(&self, past_cap: bool) {
        let gauge = if past_cap {
            &self.past_cap_open
        } else {
            &self.open
        };
        gauge.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A plain-HTTP service's `tls` argument to [`serve_connections`].
pub const PLAIN_HTTP: Option<Tls<()>> = None;

/// The connection cap actually enforced: `configured`, lowered to the open-file limit minus
/// [`RESERVED_FDS`] (at least 1) when that limit is known.
pub fn effective_max_connections(configured: usize) -> usize {
    let configured = configured.min(Semaphore::MAX_PERMITS);
    let Some(limit) = open_file_limit() else {
        return configured.max(1);
    };
    let allowed = usize::try_from(limit.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    configured.min(allowed).max(1)
}

/// The soft limit on open files of this process (Linux: `/proc/self/limits`).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Serves `apps` on `listener` (over TLS if `tls` is given) until `shutdown` resolves, then
/// drains (see the module documentation); keeps `gauges` (if any) current meanwhile.
pub async fn serve_connections<P: Clone + std::fmt::Debug + Send + Sync + 'static>(
    listener: TcpListener,
    tls: Option<Tls<P>>,
    apps: Apps,
    limits: Limits,
    gauges: Option<Arc<ConnectionGauges>>,
    shutdown: impl Future<Output = ()>,
) {
    let max_connections = effective_max_connections(limits.max_connections);
    let gauges = gauges.unwrap_or_default();
    gauges
        .max_connections
        .store(max_connections, Ordering::Relaxed);
    if max_connections < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            enforced = max_connections,
            "the connection cap lowered to fit the open-file limit"
        );
    }
    tracing::info!(
        max_connections,
        header_timeout_s = limits.header_timeout.as_secs_f64(),
        body_timeout_s = limits.body_timeout.as_secs_f64(),
        "connection limits"
    );
    let regular_slots = Arc::new(Semaphore::new(max_connections));
    let overflow_slots = Arc::new(Semaphore::new(OVERFLOW_CONNECTIONS));
    let mut at_cap = false;
    let graceful = GracefulShutdown::new();
    let (stop, stopped) = watch::channel(false);
    let mut regular_http = http1::Builder::new();
    regular_http
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut overflow_http = http1::Builder::new();
    overflow_http
        .timer(TokioTimer::new())
        .header_read_timeout(OVERFLOW_HEADER_TIMEOUT)
        .keep_alive(false);
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
        // The place is taken once the connection is here, so that a place freed meanwhile
        // is not missed; when none is free, this one connection waits for one.
        let slot = tokio::select! {
            slot = next_slot(&regular_slots, &overflow_slots, &gauges) => slot,
            () = &mut shutdown => break,
        };
        let Some(slot) = slot else { break };
        let _ = tcp.set_nodelay(true);
        let overflow = slot.overflow;
        if overflow != std::mem::replace(&mut at_cap, overflow) {
            if overflow {
                tracing::warn!(
                    max_connections,
                    "connection cap reached: new connections get one request each on an overflow place until others close"
                );
            } else {
                tracing::info!("connections below the cap again");
            }
        }
        let (app, http, handshake_timeout) = if overflow {
            (
                apps.overflow.clone(),
                overflow_http.clone(),
                OVERFLOW_HEADER_TIMEOUT,
            )
        } else {
            (
                apps.regular.clone(),
                regular_http.clone(),
                HANDSHAKE_TIMEOUT,
            )
        };
        connections.spawn(connection(
            Accepted {
                tcp,
                tls: tls.clone(),
                handshake_timeout,
                http: Http {
                    remote,
                    app,
                    builder: http,
                    body_timeout: BodyTimeout(limits.body_timeout),
                    watcher: graceful.watcher(),
                },
                slot,
            },
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

/// A connection's place: under the cap, or one of the overflow places past it. Held for the
/// connection's lifetime, and counted in the gauges as long.
struct Slot {
    overflow: bool,
    _permit: OwnedSemaphorePermit,
    gauges: Arc<ConnectionGauges>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauges.closed(self.overflow);
    }
}

/// Waits for a free place, preferring one under the cap; `None` only if the semaphores were
/// closed (they never are).
async fn next_slot(
    regular: &Arc<Semaphore>,
    overflow: &Arc<Semaphore>,
    gauges: &Arc<ConnectionGauges>,
) -> Option<Slot> {
    let slot = |overflow, permit| {
        gauges.opened(overflow);
        Slot {
            overflow,
            _permit: permit,
            gauges: gauges.clone(),
        }
    };
    if let Ok(permit) = regular.clone().try_acquire_owned() {
        return Some(slot(false, permit));
    }
    tokio::select! {
        biased;
        Ok(permit) = regular.clone().acquire_owned() => Some(slot(false, permit)),
        Ok(permit) = overflow.clone().acquire_owned() => Some(slot(true, permit)),
        else => None,
    }
}

/// One accepted connection and what serving it needs.
struct Accepted<P> {
    tcp: TcpStream,
    tls: Option<Tls<P>>,
    handshake_timeout: Duration,
    http: Http,
    slot: Slot,
}

async fn connection<P: Clone + std::fmt::Debug + Send + Sync + 'static>(
    conn: Accepted<P>,
    mut stopped: watch::Receiver<bool>,
) {
    let Accepted {
        tcp,
        tls,
        handshake_timeout,
        http,
        slot: _held_until_closed,
    } = conn;
    let remote = http.remote;
    let Some(tls) = tls else {
        http.serve::<_, P>(TokioIo::new(tcp), None).await;
        return;
    };
    let handshake = tokio::time::timeout(handshake_timeout, (tls.acceptor)().accept(tcp));
    let stream = tokio::select! {
        result = handshake => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                (tls.on_handshake_failure)();
                tracing::debug!(%remote, error = %e, "tls handshake failed");
                return;
            }
            Err(_) => {
                (tls.on_handshake_failure)();
                tracing::debug!(%remote, "tls handshake timed out");
                return;
            }
        },
        _ = stopped.wait_for(|stop| *stop) => return,
    };
    let peer = stream
        .get_ref()
        .1
        .peer_certificates()
        .filter(|chain| !chain.is_empty())
        .and_then(|chain| (tls.identify)(chain));
    tracing::debug!(%remote, identity = ?peer, "tls connection");
    http.serve(TokioIo::new(stream), peer).await;
}

/// HTTP/1.1 on one connection, once its stream is ready (plain, or after the TLS handshake).
struct Http {
    remote: SocketAddr,
    app: Router,
    builder: http1::Builder,
    body_timeout: BodyTimeout,
    watcher: Watcher,
}

impl Http {
    /// Serves `io`, giving every request the connection's identity (if any) and body deadline.
    async fn serve<I, P: Clone + Send + Sync + 'static>(self, io: I, peer: Option<P>)
    where
        I: Read + Write + Unpin + Send + 'static,
    {
        let Http {
            remote,
            app,
            builder,
            body_timeout,
            watcher,
        } = self;
        let service = service_fn(move |mut request: Request<Incoming>| {
            if let Some(peer) = &peer {
                request.extensions_mut().insert(peer.clone());
            }
            request.extensions_mut().insert(body_timeout);
            app.clone().oneshot(request)
        });
        let served = watcher.watch(builder.serve_connection(io, service));
        if let Err(e) = served.await {
            tracing::debug!(%remote, error = %e, "connection ended with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_utf8_json_is_json() {
        let headers = |values: &[&str]| {
            let mut map = axum::http::HeaderMap::new();
            for v in values {
                map.append(
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_str(v).unwrap(),
                );
            }
            map
        };
        for good in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
            "application/json; profile=x",
        ] {
            assert!(is_utf8_json(&headers(&[good])), "{good}");
        }
        for bad in [
            "application/json; charset=utf-7",
            "application/json; charset=utf-16",
            "application/json; charset=latin1",
            "text/plain",
            "application/jsonx",
        ] {
            assert!(!is_utf8_json(&headers(&[bad])), "{bad}");
        }
        assert!(!is_utf8_json(&headers(&[])), "no content type");
        assert!(
            !is_utf8_json(&headers(&[
                "application/json",
                "application/json; charset=utf-7"
            ])),
            "two content types"
        );
    }

    /// Polls the gauges until `want` holds (connections open and close in the server's time).
    async fn until(gauges: &ConnectionGauges, want: impl Fn(ConnectionCounts) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !want(gauges.read()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "gauges stuck at {:?}",
                gauges.read()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn the_gauges_count_open_connections_and_those_past_the_cap() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let gauges = Arc::new(ConnectionGauges::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = Limits {
            max_connections: 1,
            ..Limits::default()
        };
        let apps = Apps {
            regular: Router::new(),
            overflow: Router::new(),
        };
        let server = tokio::spawn(serve_connections(
            listener,
            PLAIN_HTTP,
            apps,
            limits,
            Some(gauges.clone()),
            async {
                let _ = stopped.await;
            },
        ));
        until(&gauges, |c| c.max_connections == 1).await;
        assert_eq!(gauges.read().open, 0);

        // Idle sockets hold their places until they close.
        let first = TcpStream::connect(address).await.unwrap();
        until(&gauges, |c| c.open == 1).await;
        let second = TcpStream::connect(address).await.unwrap();
        until(&gauges, |c| c.past_cap_open == 1).await;
        assert_eq!(
            gauges.read(),
            ConnectionCounts {
                max_connections: 1,
                open: 1,
                past_cap_open: 1,
                past_cap_total: 1,
            }
        );
        drop(first);
        drop(second);
        until(&gauges, |c| c.open == 0 && c.past_cap_open == 0).await;
        assert_eq!(gauges.read().past_cap_total, 1, "a total never goes down");

        let _ = stop.send(());
        server.await.unwrap();
    }

    #[test]
    fn the_cap_fits_under_the_open_file_limit() {
        let limit = open_file_limit().expect("linux reports the open-file limit");
        let enforced = effective_max_connections(usize::MAX);
        assert_eq!(
            enforced,
            usize::try_from(limit.saturating_sub(RESERVED_FDS))
                .unwrap()
                .max(1)
        );
        assert_eq!(effective_max_connections(3), 3.min(enforced));
        assert_eq!(effective_max_connections(0), 1);
    }
}
