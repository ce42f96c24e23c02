//! The Rekor v2 server: the write API over gRPC (`dev.sigstore.rekor.v2.Rekor/CreateEntry`) and
//! HTTP protojson (`POST /api/v2/log/entries`), the C2SP tlog-tiles read API, health, metrics and
//! graceful shutdown, over any storage backend.
//!
//! A thin main parses [`ServerArgs`] (plus its backend's flags), builds a [`Backend`] and calls
//! [`run`]. Everything else — signer loading, log recovery, listeners, shutdown — is here, once.
//!
//! - [`http::api`] and [`grpc::service`] build the two transports over one [`AppState`];
//! - [`error::ApiError`] is the only place failures become statuses;
//! - [`keys`] loads or generates the log key and prints the trust material clients need;
//! - [`witness`] has each checkpoint cosigned by the witnesses of `--witness-policy-path`.

pub mod config;
mod duplicate;
pub mod error;
mod freeze;
pub mod grpc;
pub mod http;
pub mod keys;
pub mod kms;
pub mod metrics;
pub mod rate_limit;
mod run;
pub mod search;
mod serve;
mod service;
mod tile_cache;
pub mod tls;
pub mod witness;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

pub use config::ServerArgs;
pub use freeze::{Frozen, freeze};
pub use run::{
    Backend, RunError, RunningServer, identity, init_tracing, init_tracing_as, print_identity, run,
    run_until, shutdown_signal, signer, start,
};
pub use service::{AppState, Created, SearchCommitments};

use crate::metrics::Metrics;

/// The metrics listener's router: `GET /metrics` in the Prometheus text format.
fn metrics_router(metrics: Metrics, log: Option<rekor_log::Log>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state((metrics, log))
}

async fn render_metrics(
    State((metrics, log)): State<(Metrics, Option<rekor_log::Log>)>,
) -> impl IntoResponse {
    if let Some(log) = &log {
        metrics
            .outstanding
            .set(i64::try_from(log.stats().outstanding()).unwrap_or(i64::MAX));
        metrics
            .tree_size
            .set(i64::try_from(log.checkpoint().size).unwrap_or(i64::MAX));
        metrics
            .checkpoints_published
            .set(i64::try_from(log.stats().checkpoints()).unwrap_or(i64::MAX));
        metrics
            .objects_written
            .set(i64::try_from(log.stats().objects_written()).unwrap_or(i64::MAX));
        metrics.record_witnessing(log);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}
