//! `zt bench`: a closed-loop load generator for `POST /actions`. Each connection sends its next
//! request as soon as the previous answer arrives; latency is measured per request. Over
//! `https://` URLs every connection is TLS (handshaken once, then kept alive), optionally with a
//! client certificate that authenticates the agent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use tokio_rustls::TlsConnector;

use crate::exit::Exit;

/// `zt bench` arguments.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The control plane to load.
    #[arg(long, env = "ZT_URL", default_value = "http://127.0.0.1:3000")]
    pub url: String,
    /// Concurrent connections, each with one request in flight.
    #[arg(long, env = "ZT_BENCH_CONNECTIONS", default_value_t = 32)]
    pub connections: usize,
    /// Seconds to measure (after the warm-up).
    #[arg(long, env = "ZT_BENCH_DURATION", default_value_t = 10)]
    pub duration: u64,
    /// Seconds of load before measuring.
    #[arg(long, env = "ZT_BENCH_WARMUP", default_value_t = 2)]
    pub warmup: u64,
    /// The actor in every request.
    #[arg(long, env = "ZT_BENCH_ACTOR", default_value = "bench-agent")]
    pub actor: String,
    /// The action in every request.
    #[arg(long, env = "ZT_BENCH_ACTION", default_value = "bench.read")]
    pub action: String,
    /// Do not register the actor and allow the action first.
    #[arg(long)]
    pub no_setup: bool,
    /// Admin token, for the setup against a server with credentials (`--auth credentials`);
    /// the agent's token is then obtained and sent with every decision.
    #[arg(long, env = "ZT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Agent token to send with every decision (with `--no-setup`).
    #[arg(long, env = "ZT_AGENT_TOKEN", hide_env_values = true)]
    pub agent_token: Option<String>,
    /// PEM CA bundle that issued the server's certificate (required for an `https://` URL).
    #[arg(long, env = "ZT_BENCH_CA")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate for the load connections (e.g. an X.509-SVID; `--actor` should
    /// then be its SPIFFE ID). The agent is then authenticated by it alone: no token is sent.
    #[arg(long, env = "ZT_BENCH_CERT", requires_all = ["key", "ca"])]
    pub cert: Option<PathBuf>,
    /// PEM private key of `--cert`.
    #[arg(long, env = "ZT_BENCH_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Load-generator threads (keep low: it shares the machine with the server).
    #[arg(long, env = "ZT_BENCH_THREADS", default_value_t = 1)]
    pub threads: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Default)]
struct Tally {
    latencies: Option<Histogram<u64>>,
    allowed: u64,
    denied: u64,
    errors: u64,
    other_status: u64,
}

/// Runs `zt bench`.
pub fn run(args: BenchArgs) -> Exit {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return Exit::Failure;
        }
    };
    match runtime.block_on(bench(&args)) {
        Ok(()) => Exit::Success,
        Err(e) => {
            eprintln!("error: {e:#}");
            Exit::Failure
        }
    }
}

async fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    let uri: Uri = args.url.parse().context("invalid --url")?;
    let host = uri.host().context("--url needs a host")?;
    let transport = Transport::for_url(&uri, args)?;
    let port = uri
        .port_u16()
        .unwrap_or(if transport.is_tls() { 443 } else { 80 });
    let addr: SocketAddr = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await?
        .next()
        .context("--url host does not resolve")?;
    let agent_token = match (&args.admin_token, args.no_setup) {
        (_, true) => args.agent_token.clone(),
        (admin, false) if transport.is_tls() => {
            let token = tls_setup(&transport, addr, admin.as_deref(), args).await?;
            token.or_else(|| args.agent_token.clone())
        }
        (None, false) => {
            let server = zt_client::ControlPlane::new(&args.url)?;
            server.register_agent(&args.actor).await?;
            server
                .allow_action(&args.action, "allowed for benchmarking")
                .await?;
            args.agent_token.clone()
        }
        (Some(admin), false) => {
            let server = zt_client::ControlPlane::new(&args.url)?.with_bearer(admin)?;
            let token = server.agent_token(&args.actor).await?;
            server
                .allow_action(&args.action, "allowed for benchmarking")
                .await?;
            Some(token)
        }
    };
    // A client certificate is the agent's credential: no token rides along.
    let agent_token = agent_token.filter(|_| args.cert.is_none());
    let authorization = agent_token.map(|t| format!("Bearer {t}"));
    let start = Instant::now() + Duration::from_secs(args.warmup);
    let end = start + Duration::from_secs(args.duration.max(1));
    let mut tasks = Vec::new();
    for n in 0..args.connections.max(1) {
        let body_prefix = json!({"actor": args.actor, "action": args.action}).to_string();
        tasks.push(tokio::spawn(connection(
            transport.clone(),
            addr,
            n,
            body_prefix,
            authorization.clone(),
            start,
            end,
        )));
    }
    let mut total = Tally::default();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for task in tasks {
        let tally = task.await??;
        total.allowed += tally.allowed;
        total.denied += tally.denied;
        total.errors += tally.errors;
        total.other_status += tally.other_status;
        if let Some(h) = tally.latencies {
            histogram.add(h)?;
        }
    }
    report(args, &total, &histogram);
    Ok(())
}

/// One connection's loop; errors reconnect, and are counted.
async fn connection(
    transport: Transport,
    addr: SocketAddr,
    n: usize,
    body_prefix: String,
    authorization: Option<String>,
    start: Instant,
    end: Instant,
) -> anyhow::Result<Tally> {
    let mut tally = Tally {
        latencies: Some(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        ..Tally::default()
    };
    let prefix = body_prefix
        .strip_suffix('}')
        .unwrap_or(&body_prefix)
        .to_string();
    let mut i: u64 = 0;
    'reconnect: while Instant::now() < end {
        let Ok(stream) = transport.connect(addr, false).await else {
            tally.errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            tally.errors += 1;
            continue;
        };
        tokio::spawn(conn);
        while Instant::now() < end {
            i += 1;
            let body = format!("{prefix},\"resource\":\"bench-{n}-{i}\"}}");
            let mut request = Request::post("/actions")
                .header("host", addr.to_string())
                .header("content-type", "application/json");
            if let Some(value) = &authorization {
                request = request.header("authorization", value);
            }
            let request = request.body(Full::new(Bytes::from(body)))?;
            // hyper refuses a request sent before the previous exchange is fully wound down.
            if sender.ready().await.is_err() {
                if Instant::now() >= start {
                    tally.errors += 1;
                }
                continue 'reconnect;
            }
            let sent = Instant::now();
            let outcome = match sender.send_request(request).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    response.into_body().collect().await.map(|_| status).ok()
                }
                Err(_) => None,
            };
            let measuring = sent >= start;
            match outcome {
                Some(status) if measuring => {
                    match status {
                        200 => tally.allowed += 1,
                        403 => tally.denied += 1,
                        _ => tally.other_status += 1,
                    }
                    if let Some(h) = tally.latencies.as_mut() {
                        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                        h.saturating_record(micros.max(1));
                    }
                }
                Some(_) => {}
                None => {
                    if measuring {
                        tally.errors += 1;
                    }
                    continue 'reconnect;
                }
            }
        }
    }
    Ok(tally)
}

fn report(args: &BenchArgs, tally: &Tally, h: &Histogram<u64>) {
    let seconds = args.duration.max(1) as f64;
    let decisions = tally.allowed + tally.denied;
    let rate = decisions as f64 / seconds;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    if args.json {
        let out = json!({
            "url": args.url, "connections": args.connections, "duration_s": args.duration,
            "decisions": decisions, "decisions_per_s": rate.round(),
            "allowed": tally.allowed, "denied": tally.denied,
            "errors": tally.errors, "other_status": tally.other_status,
            "latency_ms": {"p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999), "max": h.max() as f64 / 1000.0},
        });
        println!("{out}");
    } else {
        println!(
            "{decisions} decisions in {seconds:.0} s over {} connections: {rate:.0} decisions/s",
            args.connections
        );
        println!(
            "  allowed {}, denied {}, other status {}, connection errors {}",
            tally.allowed, tally.denied, tally.other_status, tally.errors
        );
        println!(
            "  latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            ms(0.5),
            ms(0.99),
            ms(0.999),
            h.max() as f64 / 1000.0
        );
    }
}

/// A connection's byte stream, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// How connections reach the server.
#[derive(Clone)]
enum Transport {
    /// `http://`.
    Plain,
    /// `https://`: `load` presents the client certificate if one is given; `setup` never does
    /// (the admin's setup requests carry the admin token, and one request has one caller).
    Tls {
        load: TlsConnector,
        setup: TlsConnector,
        name: ServerName<'static>,
    },
}

impl Transport {
    fn for_url(uri: &Uri, args: &BenchArgs) -> anyhow::Result<Self> {
        match uri.scheme_str() {
            Some("http") if args.ca.is_none() && args.cert.is_none() => Ok(Transport::Plain),
            Some("http") => bail!("--ca and --cert need an https:// --url"),
            Some("https") => {
                let ca = args
                    .ca
                    .as_ref()
                    .context("an https:// --url needs --ca (the server's CA bundle)")?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca)
                    .with_context(|| format!("--ca `{}`", ca.display()))?
                {
                    roots.add(cert.with_context(|| format!("--ca `{}`", ca.display()))?)?;
                }
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let builder = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots);
                let mut setup = builder.clone().with_no_client_auth();
                let mut load = match (&args.cert, &args.key) {
                    (Some(cert), Some(key)) => {
                        let chain = CertificateDer::pem_file_iter(cert)
                            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                            .with_context(|| format!("--cert `{}`", cert.display()))?;
                        let key = PrivateKeyDer::from_pem_file(key)
                            .with_context(|| format!("--key `{}`", key.display()))?;
                        builder.with_client_auth_cert(chain, key)?
                    }
                    _ => setup.clone(),
                };
                for config in [&mut setup, &mut load] {
                    config.alpn_protocols = vec![b"http/1.1".to_vec()];
                }
                let host = uri
                    .host()
                    .context("--url needs a host")?
                    .trim_matches(['[', ']']);
                let name = ServerName::try_from(host.to_string())
                    .context("--url host is not a valid tls server name")?;
                Ok(Transport::Tls {
                    load: TlsConnector::from(Arc::new(load)),
                    setup: TlsConnector::from(Arc::new(setup)),
                    name,
                })
            }
            _ => bail!("--url must start with http:// or https://"),
        }
    }

    fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls { .. })
    }

    async fn connect(&self, addr: SocketAddr, for_setup: bool) -> std::io::Result<Box<dyn Io>> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        match self {
            Transport::Plain => Ok(Box::new(tcp)),
            Transport::Tls { load, setup, name } => {
                let connector = if for_setup { setup } else { load };
                Ok(Box::new(connector.connect(name.clone(), tcp).await?))
            }
        }
    }
}

/// The setup over TLS (the SDK speaks plain HTTP only): registers the actor and allows the
/// action, with the admin token if given. Returns the agent token when one was issued (a new
/// actor, or a rotation when no client certificate will authenticate the agent).
async fn tls_setup(
    transport: &Transport,
    addr: SocketAddr,
    admin: Option<&str>,
    args: &BenchArgs,
) -> anyhow::Result<Option<String>> {
    let io = transport
        .connect(addr, true)
        .await
        .context("tls connection for the setup")?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let mut send = async |method: &str, path: &str, body: Value| -> anyhow::Result<(u16, Value)> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string())
            .header("content-type", "application/json");
        if let Some(admin) = admin {
            request = request.header("authorization", format!("Bearer {admin}"));
        }
        sender.ready().await?;
        let response = sender
            .send_request(request.body(Full::new(Bytes::from(body.to_string())))?)
            .await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    };
    let (status, registered) = send("POST", "/agents", json!({"actor": args.actor})).await?;
    ensure!(
        status == 201,
        "registering `{}` failed: {status} {registered}",
        args.actor
    );
    let mut token = registered
        .get("token")
        .and_then(Value::as_str)
        .map(str::to_string);
    if token.is_none() && args.cert.is_none() && admin.is_some() {
        let path = format!("/agents/{}/token", percent_encode(&args.actor));
        let (status, rotated) = send("POST", &path, Value::Null).await?;
        ensure!(
            status == 200,
            "issuing a token for `{}` failed: {status} {rotated}",
            args.actor
        );
        token = rotated
            .get("token")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    let allow = json!({"action": args.action, "reason": "allowed for benchmarking"});
    let (status, allowed) = send("POST", "/policies/allow", allow).await?;
    ensure!(
        status == 201,
        "allowing `{}` failed: {status} {allowed}",
        args.action
    );
    Ok(token)
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for a path segment).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
