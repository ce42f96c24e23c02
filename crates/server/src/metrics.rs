//! Prometheus metrics, registered per server instance (no process-wide registry), exported on
//! `--http-metrics-port` at `/metrics`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a request counter: transport, method and outcome status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `http` or `grpc`.
    pub transport: &'static str,
    /// The route or gRPC method.
    pub method: &'static str,
    /// The HTTP status code (gRPC outcomes are reported as their HTTP equivalent).
    pub code: u16,
}

/// Labels of the witness request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WitnessLabels {
    /// The witness, by its name in the policy.
    pub witness: String,
    /// How the request ended (`cosigned`, `conflict`, `timeout`, `transport`, ...).
    pub outcome: &'static str,
}

/// The server's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// hashedrekord entries added.
    pub new_hashedrekord_entries: Counter,
    /// dsse entries added.
    pub new_dsse_entries: Counter,
    /// Requests by transport, method and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Write latency in seconds, from request decoded to response built.
    pub write_latency: Histogram,
    /// Inclusion proofs that failed verification before a reply.
    pub inclusion_proof_failures: Counter,
    /// Panics caught in request handlers.
    pub panics_recovered: Counter,
    /// Writes refused by the per-client rate limit.
    pub rate_limited: Counter,
    /// The latest published tree size.
    pub tree_size: Gauge,
    /// Checkpoints published since start.
    pub checkpoints_published: Gauge,
    /// Tiles and entry bundles written since start.
    pub objects_written: Gauge,
    /// Requests waiting in the pipeline.
    pub outstanding: Gauge,
    /// `add-checkpoint` requests to witnesses, by witness and outcome.
    pub witness_requests: Family<WitnessLabels, Counter>,
    /// Checkpoints published without the witness quorum (failing open).
    pub checkpoints_unwitnessed: Counter,
    /// Checkpoints withheld for want of the witness quorum (`--witness-fail-closed`).
    pub checkpoints_withheld: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rekor_v2");
        let new_hashedrekord_entries = Counter::default();
        registry.register(
            "new_hashedrekord_entries",
            "hashedrekord entries added to the log",
            new_hashedrekord_entries.clone(),
        );
        let new_dsse_entries = Counter::default();
        registry.register(
            "new_dsse_entries",
            "dsse entries added to the log",
            new_dsse_entries.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "requests by transport, method and status",
            requests.clone(),
        );
        let write_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "write_latency_seconds",
            "time to add an entry, from decoded request to response",
            write_latency.clone(),
        );
        let inclusion_proof_failures = Counter::default();
        registry.register(
            "inclusion_proof_failure",
            "inclusion proofs that failed to verify before a reply",
            inclusion_proof_failures.clone(),
        );
        let panics_recovered = Counter::default();
        registry.register(
            "grpc_req_panics_recovered",
            "panics recovered in request handlers (HTTP and gRPC)",
            panics_recovered.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited_requests",
            "writes refused by --rate-limit-per-ip (HTTP 429 / gRPC RESOURCE_EXHAUSTED)",
            rate_limited.clone(),
        );
        let tree_size = Gauge::default();
        registry.register(
            "tree_size",
            "size of the latest published tree",
            tree_size.clone(),
        );
        let outstanding = Gauge::default();
        registry.register(
            "outstanding_requests",
            "add requests waiting in the pipeline",
            outstanding.clone(),
        );
        let checkpoints_published = Gauge::default();
        registry.register(
            "checkpoints_published",
            "checkpoints this frontend published since start",
            checkpoints_published.clone(),
        );
        let objects_written = Gauge::default();
        registry.register(
            "storage_objects_written",
            "tiles and entry bundles this frontend wrote since start",
            objects_written.clone(),
        );
        let witness_requests = Family::<WitnessLabels, Counter>::default();
        registry.register(
            "witness_requests",
            "add-checkpoint requests to witnesses, by witness and outcome",
            witness_requests.clone(),
        );
        let checkpoints_unwitnessed = Counter::default();
        registry.register(
            "checkpoints_unwitnessed",
            "checkpoints published without the witness quorum (failing open)",
            checkpoints_unwitnessed.clone(),
        );
        let checkpoints_withheld = Counter::default();
        registry.register(
            "checkpoints_withheld",
            "checkpoints withheld for want of the witness quorum (--witness-fail-closed)",
            checkpoints_withheld.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            witness_requests,
            checkpoints_unwitnessed,
            checkpoints_withheld,
            checkpoints_published,
            objects_written,
            new_hashedrekord_entries,
            new_dsse_entries,
            requests,
            write_latency,
            inclusion_proof_failures,
            panics_recovered,
            rate_limited,
            tree_size,
            outstanding,
        }
    }

    /// Counts one request.
    pub fn record_request(&self, transport: &'static str, method: &'static str, code: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                transport,
                method,
                code,
            })
            .inc();
    }

    /// Copies the log's witnessing counts, kept by the log and its witness client, into the
    /// counters (they only grow, so the counters stay monotonic).
    pub fn record_witnessing(&self, log: &rekor_log::Log) {
        let stats = log.stats();
        self.checkpoints_unwitnessed
            .inner()
            .store(stats.checkpoints_without_quorum(), Ordering::Relaxed);
        self.checkpoints_withheld
            .inner()
            .store(stats.checkpoints_withheld(), Ordering::Relaxed);
        if let Some(witnesses) = log.witnesses() {
            for count in witnesses.request_counts() {
                self.witness_requests
                    .get_or_create(&WitnessLabels {
                        witness: count.witness,
                        outcome: count.outcome,
                    })
                    .inner()
                    .store(count.count, Ordering::Relaxed);
            }
        }
    }

    /// The registry in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        text
    }
}
