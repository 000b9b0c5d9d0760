//! Prometheus metrics: decisions by outcome, decision latency, audit commit latency and batch
//! size, chain length, refusals by cause, connections against the cap, failed TLS handshakes,
//! and (when on) the NATS publisher's progress.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use zt_ledger::{CommitStats, LatencyHistogram, SIGNER_LATENCY_BOUNDS};
use zt_listener::ConnectionGauges;

use crate::rejections::RejectionCause;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

/// The server's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    decision_seconds: Histogram,
    commit_seconds: Histogram,
    commit_batch_records: Histogram,
    commit_stages: Family<StageLabels, Histogram>,
    chain_length: Gauge<u64, AtomicU64>,
    rejected: Family<CauseLabels, Counter>,
    tls_handshake_failures: Counter,
    connections: Connections,
    nats_published: Gauge<u64, AtomicU64>,
    nats_lag: Gauge<u64, AtomicU64>,
    nats_connected: Gauge,
    signer_up: Gauge,
    signer_can_sign: Gauge,
    signer_last_call_seconds: Gauge<f64, AtomicU64>,
    signer_calls: Counter<u64, AtomicU64>,
    signer_failures: Counter<u64, AtomicU64>,
    signer_latency: SignerLatency,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let decisions = Family::<DecisionLabels, Counter>::default();
        let decision_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        let commit_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        let commit_batch_records = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let commit_stages = Family::<StageLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.000_025, 2.0, 16))) as fn() -> Histogram,
        );
        let chain_length = Gauge::<u64, AtomicU64>::default();
        let rejected = Family::<CauseLabels, Counter>::default();
        let tls_handshake_failures = Counter::default();
        let connections = Connections::default();
        let mut registry = Registry::with_prefix("zt");
        registry.register(
            "decisions",
            "Decisions answered, by outcome",
            decisions.clone(),
        );
        registry.register(
            "decision_duration_seconds",
            "Time from request to answer, audit commit included",
            decision_seconds.clone(),
        );
        registry.register(
            "audit_commit_duration_seconds",
            "Time to sequence, sign and durably commit one batch",
            commit_seconds.clone(),
        );
        registry.register(
            "audit_commit_batch_records",
            "Records per committed batch",
            commit_batch_records.clone(),
        );
        registry.register(
            "audit_commit_stage_duration_seconds",
            "Per batch: the oldest record's wait in the queue, sealing (sequence, hash, sign), the wait for the writer, the durable write; upkeep: each time the writer ran the store's upkeep (its WAL copy) between two batches, which the next one waited for",
            commit_stages.clone(),
        );
        registry.register(
            "audit_chain_length",
            "Records in the audit chain",
            chain_length.clone(),
        );
        registry.register(
            "rejected_requests",
            "Requests refused before any decision, by cause",
            rejected.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS connections that failed or timed out before a request (bad or missing client certificate, not TLS)",
            tls_handshake_failures.clone(),
        );
        registry.register(
            "connections_open",
            "Client connections served now (under the cap)",
            connections.open.clone(),
        );
        registry.register(
            "connections_max",
            "The connection cap in force (--max-connections, lowered to fit the open-file limit)",
            connections.max.clone(),
        );
        registry.register(
            "connections_past_cap_open",
            "Connections accepted past the cap and open now, each for one request (GET /health and /metrics answer, anything else 503)",
            connections.past_cap_open.clone(),
        );
        registry.register(
            "connections_past_cap",
            "Connections accepted past the cap since start",
            connections.past_cap.clone(),
        );
        let signer = SignerMetrics::default();
        registry.register(
            "audit_signer_up",
            "1 while the last call to the audit custody key (KMS, HSM) succeeded",
            signer.up.clone(),
        );
        registry.register(
            "audit_signer_can_sign",
            "1 while records can be signed: the custody key is up, or (session keys) the current session key is inside its certified period",
            signer.can_sign.clone(),
        );
        registry.register(
            "audit_signer_last_call_seconds",
            "Duration of the last call to the audit custody key",
            signer.last_call_seconds.clone(),
        );
        registry.register(
            "audit_signer_call_duration_seconds",
            "Duration of each call to the audit custody key (a batch of records counts once)",
            signer.latency.clone(),
        );
        registry.register(
            "audit_signer_calls",
            "Calls to the audit custody key since start (a batch of records counts once)",
            signer.calls.clone(),
        );
        registry.register(
            "audit_signer_failures",
            "Failed calls to the audit custody key since start (errors, throttling, timeouts, wrong signatures)",
            signer.failures.clone(),
        );
        Self {
            signer_up: signer.up,
            signer_can_sign: signer.can_sign,
            signer_last_call_seconds: signer.last_call_seconds,
            signer_calls: signer.calls,
            signer_failures: signer.failures,
            signer_latency: signer.latency,
            registry,
            decisions,
            decision_seconds,
            commit_seconds,
            commit_batch_records,
            commit_stages,
            chain_length,
            rejected,
            tls_handshake_failures,
            connections,
            nats_published: Gauge::default(),
            nats_lag: Gauge::default(),
            nats_connected: Gauge::default(),
        }
    }
}

/// The listener's connection counts ([`ConnectionGauges`], which it keeps current), copied
/// into these when metrics are rendered.
#[derive(Default)]
struct Connections {
    gauges: Arc<ConnectionGauges>,
    open: Gauge<u64, AtomicU64>,
    max: Gauge<u64, AtomicU64>,
    past_cap_open: Gauge<u64, AtomicU64>,
    past_cap: Counter<u64, AtomicU64>,
}

impl Connections {
    fn refresh(&self) {
        let now = self.gauges.read();
        let wide = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        self.open.set(wide(now.open));
        self.max.set(wide(now.max_connections));
        self.past_cap_open.set(wide(now.past_cap_open));
        self.past_cap
            .inner()
            .fetch_max(now.past_cap_total, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct SignerMetrics {
    up: Gauge,
    can_sign: Gauge,
    last_call_seconds: Gauge<f64, AtomicU64>,
    calls: Counter<u64, AtomicU64>,
    failures: Counter<u64, AtomicU64>,
    latency: SignerLatency,
}

/// The custody calls' latency histogram, counted by the signer (which also times the calls
/// made for checkpoints and session certificates) and copied here when metrics are read.
#[derive(Debug, Clone, Default)]
struct SignerLatency(Arc<Mutex<LatencyHistogram>>);

impl EncodeMetric for SignerLatency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let latency = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // Per-bucket counts, the last one unbounded, as `Histogram` hands them to the encoder.
        let buckets: Vec<(f64, u64)> = SIGNER_LATENCY_BOUNDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(latency.counts.iter().copied())
            .collect();
        encoder.encode_histogram::<NoLabelSet>(latency.sum_seconds, latency.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

impl Metrics {
    /// Shows the signer's state (read when metrics are rendered). Its counts only grow, so the
    /// counters move up to them and never back.
    pub(crate) fn signer(&self, status: &zt_ledger::SignerStatus) {
        self.signer_up.set(i64::from(status.up));
        self.signer_can_sign.set(i64::from(status.can_sign));
        self.signer_last_call_seconds
            .set(status.last_latency_seconds);
        self.signer_calls
            .inner()
            .fetch_max(status.calls, Ordering::Relaxed);
        self.signer_failures
            .inner()
            .fetch_max(status.failures, Ordering::Relaxed);
        *self
            .signer_latency
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = status.latency.clone();
    }

    /// Counts one answered decision.
    pub(crate) fn decision(&self, allowed: bool, elapsed: Duration) {
        let decision = if allowed { "allow" } else { "deny" };
        self.decisions
            .get_or_create(&DecisionLabels { decision })
            .inc();
        self.decision_seconds.observe(elapsed.as_secs_f64());
    }

    /// Records one batch commit.
    pub(crate) fn commit(&self, stats: &CommitStats) {
        self.commit_seconds.observe(stats.duration.as_secs_f64());
        self.commit_batch_records.observe(stats.records as f64);
        self.chain_length.set(stats.head_seq.map_or(0, |s| s + 1));
        if let Some(stages) = &stats.stages {
            for (stage, took) in [
                ("queue", stages.queue_wait),
                ("seal", stages.seal),
                ("handoff", stages.handoff),
                ("store", stages.store),
            ] {
                self.commit_stages
                    .get_or_create(&StageLabels { stage })
                    .observe(took.as_secs_f64());
            }
            // Counted only when it ran, so its count is how often the writer paused for it.
            if !stages.upkeep.is_zero() {
                self.commit_stages
                    .get_or_create(&StageLabels { stage: "upkeep" })
                    .observe(stages.upkeep.as_secs_f64());
            }
        }
    }

    /// Sets the chain length (at start).
    pub(crate) fn set_chain_length(&self, records: u64) {
        self.chain_length.set(records);
    }

    /// Counts one refused request.
    pub(crate) fn rejected(&self, cause: RejectionCause) {
        self.rejected
            .get_or_create(&CauseLabels {
                cause: cause.as_str(),
            })
            .inc();
    }

    /// What the listener keeps current about its connections (shown by [`Metrics::render`]).
    pub(crate) fn connection_gauges(&self) -> Arc<ConnectionGauges> {
        self.connections.gauges.clone()
    }

    /// Counts one failed TLS handshake.
    pub(crate) fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.inc();
    }

    /// Shows the NATS publisher's gauges (registered only when publishing is on).
    pub(crate) fn enable_nats(&mut self) {
        self.registry.register(
            "nats_published_records",
            "Records JetStream has acknowledged (the next seq to publish)",
            self.nats_published.clone(),
        );
        self.registry.register(
            "nats_lag_records",
            "Records committed but not yet acknowledged by JetStream",
            self.nats_lag.clone(),
        );
        self.registry.register(
            "nats_connected",
            "1 while the NATS publisher is connected and publishing",
            self.nats_connected.clone(),
        );
    }

    /// The NATS publisher's progress: records acknowledged, of those committed.
    pub(crate) fn nats_progress(&self, published: u64, committed: u64) {
        self.nats_published.set(published);
        self.nats_lag.set(committed.saturating_sub(published));
    }

    /// Whether the NATS publisher is connected.
    pub(crate) fn nats_connected(&self, connected: bool) {
        self.nats_connected.set(i64::from(connected));
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        self.connections.refresh();
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use zt_ledger::{CommitStats, Stages};

    use super::Metrics;

    fn batch(upkeep: Duration) -> CommitStats {
        CommitStats {
            records: 1,
            duration: Duration::from_micros(500),
            head_seq: Some(0),
            stages: Some(Stages {
                upkeep,
                ..Stages::default()
            }),
        }
    }

    #[test]
    fn the_writers_upkeep_is_counted_only_when_it_ran() {
        let metrics = Metrics::default();
        metrics.commit(&batch(Duration::ZERO));
        let text = metrics.render();
        assert!(text.contains(r#"zt_audit_commit_stage_duration_seconds_count{stage="store"} 1"#));
        assert!(!text.contains(r#"stage="upkeep""#), "{text}");

        metrics.commit(&batch(Duration::from_millis(3)));
        metrics.commit(&batch(Duration::ZERO));
        let text = metrics.render();
        assert!(text.contains(r#"zt_audit_commit_stage_duration_seconds_count{stage="store"} 3"#));
        assert!(text.contains(r#"zt_audit_commit_stage_duration_seconds_count{stage="upkeep"} 1"#));
        assert!(
            text.contains(r#"zt_audit_commit_stage_duration_seconds_sum{stage="upkeep"} 0.003"#)
        );
    }
}
