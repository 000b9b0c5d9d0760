//! `zt bench`: a load generator for `POST /actions`. Closed loop by default: each connection
//! sends its next request as soon as the previous answer arrives, latency is measured from the
//! send, and the figures are corrected for coordinated omission afterwards as wrk's and
//! HdrHistogram's are (`latency.rs`; the uncorrected ones are reported beside them). Open loop
//! with `--rate R`: each connection has its own schedule, one request every `connections / R`
//! seconds, and latency is measured from the moment a request was due, not from when it could
//! be sent, so a server that stalls is charged for every request the stall held back
//! (coordinated omission, avoided as wrk2 avoids it). Every request goes
//! through the SDK client (`zt-client`): plain HTTP or TLS, kept-alive connections, optionally
//! a client certificate that authenticates the agent.
//!
//! The setup (unless `--no-setup`) registers the actor and allows the action, and the end
//! undoes what the setup changed (unless `--keep`): the agent it registered is removed and the
//! policy it changed is restored. A server that would only file the policy change as a pending
//! proposal (two-admin review), and answers that are 401 or 429 (rate limit), are explained with
//! the flags that fix them.

mod latency;
mod setup;

use std::io::IsTerminal;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use zt_client::{BaseUrl, ControlPlane};

use crate::connection::{self, AdminArgs, TlsArgs};
use crate::exit::Exit;

/// Time allowed for one request under load.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `zt bench` arguments.
#[derive(Args, Debug)]
#[command(
    after_help = "Over https://, --cert and --key (e.g. an X.509-SVID; --actor is then \
    its SPIFFE ID) are presented on the load connections only, and authenticate the agent: no \
    agent token is sent. The setup's requests carry the admin credential alone."
)]
pub(crate) struct BenchArgs {
    /// The control plane to load.
    #[arg(long, env = "ZT_URL", default_value = "http://127.0.0.1:3000")]
    pub url: BaseUrl,
    /// Concurrent connections, each with one request in flight.
    #[arg(long, env = "ZT_BENCH_CONNECTIONS", default_value_t = 32)]
    pub connections: usize,
    /// Seconds to measure (after the warm-up).
    #[arg(long, env = "ZT_BENCH_DURATION", default_value_t = 10)]
    pub duration: u64,
    /// Seconds of load before measuring.
    #[arg(long, env = "ZT_BENCH_WARMUP", default_value_t = 2)]
    pub warmup: u64,
    /// Open loop: offer R requests per second in all, spread evenly over the connections,
    /// whatever the answers' pace; latency counts from when each request was due. Default:
    /// closed loop, each connection sending as soon as its previous answer arrives.
    #[arg(long, env = "ZT_BENCH_RATE", value_name = "R")]
    pub rate: Option<NonZeroU32>,
    /// The actor in every request.
    #[arg(long, env = "ZT_BENCH_ACTOR", default_value = "bench-agent")]
    pub actor: String,
    /// The action in every request.
    #[arg(long, env = "ZT_BENCH_ACTION", default_value = "bench.read")]
    pub action: String,
    /// Do not register the actor and allow the action first (nothing to clean up then).
    #[arg(long)]
    pub no_setup: bool,
    /// Leave what the setup created (the agent, the allow rule) in place afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Agent token to send with every decision (with `--no-setup`).
    #[arg(long, env = "ZT_AGENT_TOKEN", hide_env_values = true)]
    pub agent_token: Option<String>,
    /// Give every request a `request_id` of its own, unique to this run, as an agent that asks
    /// for replay protection does: the server then spends one id per decision.
    #[arg(long, env = "ZT_BENCH_REQUEST_IDS")]
    pub request_ids: bool,
    /// Load-generator threads (keep low: it shares the machine with the server).
    #[arg(long, env = "ZT_BENCH_THREADS", default_value_t = 1)]
    pub threads: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    // The admin credential for the setup against a server with `--auth credentials`.
    #[command(flatten)]
    pub admin: AdminArgs,
    // TLS for an https:// --url; see `after_help` for the client certificate.
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// What the load connections counted.
#[derive(Default)]
struct Tally {
    latencies: Option<Histogram<u64>>,
    allowed: u64,
    denied: u64,
    rate_limited: u64,
    unauthenticated: u64,
    other_status: u64,
    errors: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) -> anyhow::Result<()> {
        self.allowed += other.allowed;
        self.denied += other.denied;
        self.rate_limited += other.rate_limited;
        self.unauthenticated += other.unauthenticated;
        self.other_status += other.other_status;
        self.errors += other.errors;
        if let (Some(mine), Some(theirs)) = (self.latencies.as_mut(), other.latencies) {
            mine.add(theirs)?;
        }
        Ok(())
    }
}

/// Runs `zt bench`.
pub(crate) fn run(args: BenchArgs) -> Exit {
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
        Ok(exit) => exit,
        Err(e) => connection::fail(&e),
    }
}

async fn bench(args: &BenchArgs) -> anyhow::Result<Exit> {
    let admin_token = args.admin.token().context("the admin credential")?;
    // The setup never presents the client certificate: its requests carry the admin token,
    // and one request has one caller.
    let admin = connection::client(
        &args.url,
        args.tls.options(false),
        REQUEST_TIMEOUT,
        admin_token.as_deref(),
    )?;
    let with_cert = args.tls.cert.is_some();
    let prepared = if args.no_setup {
        setup::Prepared::none(args.agent_token.clone())
    } else {
        setup::prepare(&admin, args, admin_token.is_some()).await?
    };
    // A client certificate is the agent's credential: no token rides along.
    let agent_token = prepared.agent_token.clone().filter(|_| !with_cert);
    let load = connection::client(
        &args.url,
        args.tls.options(true),
        REQUEST_TIMEOUT,
        agent_token.as_deref(),
    );
    let measured = match load {
        Ok(load) => drive(args, load).await,
        Err(e) => Err(e),
    };
    let cleaned = if args.keep {
        Vec::new()
    } else {
        setup::clean_up(&admin, &prepared, args).await
    };
    let (tally, histogram, interrupted) = measured?;
    report(args, &tally, &histogram, interrupted);
    for note in &prepared.notes {
        eprintln!("note: {note}");
    }
    for problem in &cleaned {
        eprintln!("warning: {problem}");
    }
    Ok(explain(args, &tally))
}

/// Runs the load until the end or Ctrl-C; returns the tallies and whether it was cut short.
async fn drive(
    args: &BenchArgs,
    load: ControlPlane,
) -> anyhow::Result<(Tally, Histogram<u64>, bool)> {
    let start = Instant::now() + Duration::from_secs(args.warmup);
    let end = start + Duration::from_secs(args.duration.max(1));
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let interrupt = {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::Relaxed);
            }
        })
    };
    let progress = Progress::start(args, start, end, answered.clone());
    let bodies = Bodies::new(args);
    let connections = args.connections.max(1);
    let began = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..connections {
        tasks.push(tokio::spawn(connection_loop(
            load.clone(),
            n,
            bodies.clone(),
            Pace::new(args.rate, connections, n, began),
            (start, end),
            stop.clone(),
            answered.clone(),
        )));
    }
    let mut total = Tally {
        latencies: Some(latency::histogram()?),
        ..Tally::default()
    };
    for task in tasks {
        total.add(task.await??)?;
    }
    interrupt.abort();
    progress.finish();
    let histogram = total.latencies.take().context("no latency histogram")?;
    Ok((total, histogram, stop.load(Ordering::Relaxed)))
}

/// When a connection's requests are due.
enum Pace {
    /// Closed loop: as soon as the previous answer arrives.
    Closed,
    /// Open loop: the next is due at `next`, then every `interval`.
    Open { next: Instant, interval: Duration },
}

impl Pace {
    /// Connection `n` of `connections`: with a rate, the connections' schedules are staggered
    /// so that the requests are evenly spaced in all.
    fn new(rate: Option<NonZeroU32>, connections: usize, n: usize, began: Instant) -> Self {
        let Some(rate) = rate else {
            return Pace::Closed;
        };
        let spacing = Duration::from_secs_f64(1.0 / f64::from(rate.get()));
        let offset = u32::try_from(n).unwrap_or(u32::MAX);
        let count = u32::try_from(connections).unwrap_or(u32::MAX);
        Pace::Open {
            next: began + spacing.saturating_mul(offset),
            interval: spacing.saturating_mul(count),
        }
    }

    /// Waits until the next request is due; returns when latency counts from. In the open
    /// loop that is the due time when the connection is behind (its previous answer came late:
    /// the wait is the server's doing), else the moment the timer let it go (the timer's own
    /// lateness, under a millisecond, is the generator's, not the server's).
    async fn next(&mut self) -> Instant {
        match self {
            Pace::Closed => Instant::now(),
            Pace::Open { next, interval } => {
                let due = *next;
                *next += *interval;
                if Instant::now() >= due {
                    return due;
                }
                tokio::time::sleep_until(due.into()).await;
                Instant::now()
            }
        }
    }
}

/// The request bodies: the actor and action, a resource of each request's own and, with
/// `--request-ids`, a `request_id` of its own.
#[derive(Clone)]
struct Bodies {
    /// The body's JSON up to its last member, without the closing brace.
    prefix: String,
    /// What makes this run's request ids differ from any earlier run's.
    run: Option<String>,
}

impl Bodies {
    fn new(args: &BenchArgs) -> Self {
        let whole = json!({"actor": args.actor, "action": args.action}).to_string();
        let prefix = whole.strip_suffix('}').unwrap_or(&whole).to_string();
        let run = args.request_ids.then(|| {
            let started = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos());
            format!("{:x}-{started:x}", std::process::id())
        });
        Self { prefix, run }
    }

    /// The body of connection `n`'s request `i`.
    fn body(&self, n: usize, i: u64) -> Bytes {
        let prefix = &self.prefix;
        Bytes::from(match &self.run {
            None => format!("{prefix},\"resource\":\"bench-{n}-{i}\"}}"),
            Some(run) => format!(
                "{prefix},\"resource\":\"bench-{n}-{i}\",\"request_id\":\"bench-{run}-{n}-{i}\"}}"
            ),
        })
    }
}

/// One connection's loop, closed or open.
async fn connection_loop(
    load: ControlPlane,
    n: usize,
    bodies: Bodies,
    mut pace: Pace,
    (start, end): (Instant, Instant),
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
) -> anyhow::Result<Tally> {
    let mut tally = Tally {
        latencies: Some(latency::histogram()?),
        ..Tally::default()
    };
    let mut i: u64 = 0;
    loop {
        let due = pace.next().await;
        if due >= end || Instant::now() >= end || stop.load(Ordering::Relaxed) {
            break;
        }
        i += 1;
        let body = bodies.body(n, i);
        let outcome = load.post_action_status(body).await;
        let measuring = due >= start;
        if measuring {
            answered.fetch_add(1, Ordering::Relaxed);
        }
        match outcome {
            Ok(status) if measuring => {
                match status {
                    200 => tally.allowed += 1,
                    403 => tally.denied += 1,
                    429 => tally.rate_limited += 1,
                    401 => tally.unauthenticated += 1,
                    _ => tally.other_status += 1,
                }
                if let Some(h) = tally.latencies.as_mut() {
                    let micros = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
                    h.saturating_record(micros.max(1));
                }
            }
            Ok(_) => {}
            Err(_) => {
                if measuring {
                    tally.errors += 1;
                }
                // Do not spin on a server that refuses connections.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    Ok(tally)
}

/// A progress line on a terminal (never with `--json` or when stderr is not a terminal).
struct Progress {
    bar: ProgressBar,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(args: &BenchArgs, start: Instant, end: Instant, answered: Arc<AtomicU64>) -> Self {
        if args.json || !std::io::stderr().is_terminal() {
            return Self {
                bar: ProgressBar::hidden(),
                ticker: None,
            };
        }
        let bar = ProgressBar::with_draw_target(
            Some(args.warmup + args.duration.max(1)),
            ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} s  {msg}") {
            bar.set_style(style);
        }
        let ticking = bar.clone();
        let began = Instant::now();
        let ticker = tokio::spawn(async move {
            loop {
                let now = Instant::now();
                ticking.set_position(now.duration_since(began).as_secs());
                let count = answered.load(Ordering::Relaxed);
                if now < start {
                    ticking.set_message("warming up");
                } else {
                    let seconds = now.duration_since(start).as_secs_f64().max(0.001);
                    ticking.set_message(format!(
                        "{count} decisions, {:.0}/s",
                        count as f64 / seconds
                    ));
                }
                if now >= end {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Self {
            bar,
            ticker: Some(ticker),
        }
    }

    fn finish(self) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
        }
        self.bar.finish_and_clear();
    }
}

fn report(args: &BenchArgs, tally: &Tally, answered: &Histogram<u64>, interrupted: bool) {
    let seconds = args.duration.max(1) as f64;
    let decisions = tally.allowed + tally.denied;
    let rate = decisions as f64 / seconds;
    // The open loop already counts from when each request was due; the closed loop is
    // corrected afterwards, from its own pace.
    let correction = match args.rate {
        Some(_) => None,
        None => {
            match latency::corrected(answered, args.connections, args.duration.max(1) * 1_000_000) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("warning: the coordinated-omission correction failed ({e}); the figures are uncorrected");
                    None
                }
            }
        }
    };
    let (h, interval) = match &correction {
        Some((corrected, interval)) => (corrected, Some(*interval)),
        None => (answered, None),
    };
    if args.json {
        let out = json!({
            "url": args.url.to_string(), "connections": args.connections, "duration_s": args.duration,
            "decisions": decisions, "decisions_per_s": rate.round(),
            "allowed": tally.allowed, "denied": tally.denied,
            "rate_limited": tally.rate_limited, "unauthenticated": tally.unauthenticated,
            "errors": tally.errors, "other_status": tally.other_status,
            "interrupted": interrupted,
            "mode": if args.rate.is_some() { "open" } else { "closed" },
            "rate": args.rate.map(NonZeroU32::get),
            "latency_ms": latency::summary(h),
            "uncorrected_latency_ms": interval.map(|_| latency::summary(answered)),
            "expected_interval_ms": interval.map(|i| i as f64 / 1000.0),
        });
        println!("{out}");
    } else {
        if interrupted {
            println!("interrupted: the figures cover less than the planned duration");
        }
        let offered = match args.rate {
            Some(r) => format!(" (open loop, {r} offered/s; latency from when each was due)"),
            None => " (closed loop)".to_string(),
        };
        println!(
            "{decisions} decisions in {seconds:.0} s over {} connections: {rate:.0} decisions/s{offered}",
            args.connections
        );
        println!(
            "  allowed {}, denied {}, rate-limited (429) {}, unauthenticated (401) {}, other status {}, connection errors {}",
            tally.allowed,
            tally.denied,
            tally.rate_limited,
            tally.unauthenticated,
            tally.other_status,
            tally.errors
        );
        println!("  latency {}", latency::line(h));
        if let Some(interval) = interval {
            println!(
                "  (corrected for coordinated omission, as wrk and HdrHistogram do, at one request every {:.2} ms a connection; as answered: {})",
                interval as f64 / 1000.0,
                latency::line(answered)
            );
        }
    }
}

/// Explains answers that make the figures meaningless; exit 1 when there were any.
fn explain(args: &BenchArgs, tally: &Tally) -> Exit {
    let mut bad = false;
    if tally.rate_limited > 0 {
        bad = true;
        eprintln!(
            "error: {} requests were refused by the server's per-actor rate limit (429): the \
             figures measure the limit, not the server. Start the server for benchmarking with \
             `--rate-limit none` (or a high rate such as `--rate-limit 1000000/s`)",
            tally.rate_limited
        );
    }
    if tally.unauthenticated > 0 {
        bad = true;
        let how = if args.no_setup {
            "pass the agent's token (--agent-token, ZT_AGENT_TOKEN) or its client certificate (--cert, --key)"
        } else {
            "pass an admin credential (--admin-token-file DATA_DIR/admin-token) so the setup obtains the agent's token"
        };
        eprintln!(
            "error: {} requests were refused as unauthenticated (401): {how}",
            tally.unauthenticated
        );
    }
    if tally.allowed + tally.denied == 0 && !bad {
        bad = true;
        eprintln!(
            "error: no decision was made ({} other answers, {} connection errors)",
            tally.other_status, tally.errors
        );
    }
    if bad {
        Exit::Failure
    } else {
        Exit::Success
    }
}
