//! The HTTP API: protojson writes, the C2SP tile read API, health. Built by [`router`].

use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use rekor_log::Log;
use rekor_storage::ObjectKind;

use crate::error::ApiError;
use crate::service::AppState;

/// Builds the HTTP router over `state`.
pub fn router(state: AppState, timeout: Duration) -> Router {
    Router::new()
        .route("/api/v2/log/entries", post(create_entry))
        .route("/api/v2/checkpoint", get(checkpoint))
        .route("/api/v2/tile/{*path}", get(tile))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            PanicResponder {
                metrics: state.metrics().clone(),
            },
        ))
        .with_state(state)
}

/// Counts requests by route and status, inside a `request` span.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = route_name(request.method(), request.uri().path());
    let span = tracing::info_span!(
        "request",
        transport = "http",
        method,
        log_index = tracing::field::Empty
    );
    let response = tracing::Instrument::instrument(next.run(request), span).await;
    state
        .metrics()
        .record_request("http", method, response.status().as_u16());
    response
}

fn route_name(method: &axum::http::Method, path: &str) -> &'static str {
    match (method.as_str(), path) {
        ("POST", "/api/v2/log/entries") => "CreateEntry",
        ("GET", "/api/v2/checkpoint") => "GetCheckpoint",
        ("GET", p) if p.starts_with("/api/v2/tile/entries/") => "GetEntryBundle",
        ("GET", p) if p.starts_with("/api/v2/tile/") => "GetTile",
        ("GET", "/healthz") => "Healthz",
        _ => "other",
    }
}

#[derive(Clone)]
struct PanicResponder {
    metrics: crate::metrics::Metrics,
}

impl tower_http::catch_panic::ResponseForPanic for PanicResponder {
    type ResponseBody = Body;

    fn response_for_panic(
        &mut self,
        _panic: Box<dyn std::any::Any + Send + 'static>,
    ) -> axum::http::Response<Body> {
        self.metrics.panics_recovered.inc();
        ApiError::Internal("handler panicked".into()).into_response()
    }
}

/// POST /api/v2/log/entries: a protojson `CreateEntryRequest`; answers 201 and a `TransparencyLogEntry`.
async fn create_entry(State(state): State<AppState>, request: Request) -> Response {
    match create_entry_inner(&state, request).await {
        Ok(body) => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn create_entry_inner(state: &AppState, request: Request) -> Result<String, ApiError> {
    if state.log().is_none() {
        return Err(ApiError::ReadOnly);
    }
    let limit = state.max_request_body_size();
    let body = read_body(request.into_body(), limit).await?;
    let request = rekor_api::create_entry_request_from_json(&body)
        .map_err(|e| ApiError::InvalidArgument(format!("invalid request body: {e}")))?;
    let entry = state.create_entry(request).await?;
    entry_json(&entry)
}

/// Encodes a `TransparencyLogEntry` as rekor-tiles does (protojson with `EmitUnpopulated`): zero
/// values are written, not omitted, because clients such as sigstore-python require `logIndex`,
/// `inclusionProof.logIndex` and `inclusionProof.hashes` even for entry 0 of a new log.
fn entry_json(entry: &rekor_api::rekor::v1::TransparencyLogEntry) -> Result<String, ApiError> {
    let encode_error =
        |e: &dyn std::fmt::Display| ApiError::Internal(format!("encoding response: {e}"));
    let mut value: serde_json::Value =
        serde_json::from_str(&rekor_api::to_json(entry).map_err(|e| encode_error(&e))?)
            .map_err(|e| encode_error(&e))?;
    if let Some(object) = value.as_object_mut() {
        for (key, default) in [
            ("logIndex", serde_json::json!("0")),
            ("integratedTime", serde_json::json!("0")),
            ("inclusionPromise", serde_json::Value::Null),
            ("canonicalizedBody", serde_json::json!("")),
        ] {
            object.entry(key).or_insert(default);
        }
        if let Some(proof) = object
            .get_mut("inclusionProof")
            .and_then(serde_json::Value::as_object_mut)
        {
            for (key, default) in [
                ("logIndex", serde_json::json!("0")),
                ("treeSize", serde_json::json!("0")),
                ("hashes", serde_json::json!([])),
            ] {
                proof.entry(key).or_insert(default);
            }
        }
    }
    serde_json::to_string(&value).map_err(|e| encode_error(&e))
}

/// Reads at most `limit` bytes; a larger body is a 400 that says the limit.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::InvalidArgument(format!("request body exceeds {limit} bytes"))
        } else {
            ApiError::InvalidArgument(format!("reading request body: {e}"))
        }
    })
}

/// GET /api/v2/checkpoint: the signed checkpoint, `text/plain`, never cached.
async fn checkpoint(State(state): State<AppState>) -> Response {
    match state.checkpoint().await {
        Ok(data) => object_response(data, ObjectKind::Checkpoint),
        Err(e) => e.into_response(),
    }
}

/// GET /api/v2/tile/{L}/{N}[.p/{W}] and /api/v2/tile/entries/{N}[.p/{W}]: immutable tiles.
async fn tile(State(state): State<AppState>, Path(path): Path<String>) -> Response {
    match state.tile(&format!("tile/{path}")).await {
        Ok((data, kind)) => object_response(data, kind),
        Err(e) => e.into_response(),
    }
}

fn object_response(data: Bytes, kind: ObjectKind) -> Response {
    let mut response = data.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(kind.content_type()),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(kind.cache_control()),
    );
    response
}

/// GET /healthz: `{"status":"SERVING"}`, as grpc-gateway's health endpoint answers; 503 with
/// `{"status":"NOT_SERVING"}` once the log has stopped after a failure only a restart recovers
/// from, so an orchestrator's liveness probe restarts the process.
async fn healthz(State(state): State<AppState>) -> Response {
    if let Some(Err(e)) = state.log().map(Log::health) {
        tracing::error!(error = %e, "health check failed");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"NOT_SERVING"}"#,
        )
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"SERVING"}"#,
    )
        .into_response()
}

async fn not_found() -> Response {
    ApiError::NotFound("no such route".into()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekor_api::rekor::v1::{InclusionProof, TransparencyLogEntry};

    #[test]
    fn entry_zero_keeps_its_zero_fields() {
        let entry = TransparencyLogEntry {
            inclusion_proof: Some(InclusionProof {
                tree_size: 1,
                root_hash: vec![1; 32],
                ..InclusionProof::default()
            }),
            canonicalized_body: b"{}".to_vec(),
            ..TransparencyLogEntry::default()
        };
        let json: serde_json::Value = serde_json::from_str(&entry_json(&entry).unwrap()).unwrap();
        assert_eq!(json["logIndex"], "0");
        assert_eq!(json["integratedTime"], "0");
        assert!(json["inclusionPromise"].is_null());
        assert_eq!(json["inclusionProof"]["logIndex"], "0");
        assert_eq!(json["inclusionProof"]["treeSize"], "1");
        assert_eq!(json["inclusionProof"]["hashes"], serde_json::json!([]));
        // Still a valid TransparencyLogEntry for a strict protojson reader.
        let parsed: TransparencyLogEntry = rekor_api::from_json(
            entry_json(&entry).unwrap().as_bytes(),
            rekor_api::JsonLimits::default(),
        )
        .unwrap();
        assert_eq!(parsed, entry);
    }
}
