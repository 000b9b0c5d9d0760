//! `zt bench`: a closed-loop load generator for `POST /actions`. Each connection sends its next
//! request as soon as the previous answer arrives; latency is measured per request.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::json;

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
    let port = uri.port_u16().unwrap_or(80);
    let addr: SocketAddr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .context("--url host does not resolve")?;
    if !args.no_setup {
        let server = zt_client::ControlPlane::new(&args.url)?;
        server.register_agent(&args.actor).await?;
        server
            .allow_action(&args.action, "allowed for benchmarking")
            .await?;
    }
    let start = Instant::now() + Duration::from_secs(args.warmup);
    let end = start + Duration::from_secs(args.duration.max(1));
    let mut tasks = Vec::new();
    for n in 0..args.connections.max(1) {
        let body_prefix = json!({"actor": args.actor, "action": args.action}).to_string();
        tasks.push(tokio::spawn(connection(addr, n, body_prefix, start, end)));
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
    addr: SocketAddr,
    n: usize,
    body_prefix: String,
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
        let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
            tally.errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
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
            let request = Request::post("/actions")
                .header("host", addr.to_string())
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))?;
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
