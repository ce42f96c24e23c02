//! The HTTP API: protojson writes, the C2SP tile read API, health. Built by [`router`].

use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use rekor_log::Log;
use rekor_storage::ObjectKind;

use crate::error::{ApiError, LOG_INDEX_HEADER};
use crate::service::{AppState, Created};

mod guard;

/// Builds the HTTP router over `state`.
pub fn router(state: AppState, timeout: Duration) -> Router {
    let routes = read_routes().route("/api/v2/log/entries", post(create_entry));
    finish(routes, state, timeout)
}

/// Builds the read-only HTTP router over `state`: the tile read API, the checkpoint, search and
/// health, with no write endpoint (`POST /api/v2/log/entries` is an unknown route). For a
/// server that follows a log rather than being it, such as the standalone search indexer.
pub fn read_router(state: AppState, timeout: Duration) -> Router {
    finish(read_routes(), state, timeout)
}

/// The routes every server answers: reads only.
fn read_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v2/checkpoint", get(checkpoint))
        .route("/api/v2/tile/{*path}", get(tile))
        .route("/api/v2/search", get(search))
        .route("/api/v2/search/completeness", get(search_completeness))
        .route("/healthz", get(healthz))
}

/// Adds the fallback and the guard (deadline, request observation, panic recovery) to `routes`.
fn finish(routes: Router<AppState>, state: AppState, timeout: Duration) -> Router {
    routes
        .fallback(not_found)
        .layer(guard::GuardLayer::new(state.clone(), timeout))
        .with_state(state)
}

/// POST /api/v2/log/entries: a protojson `CreateEntryRequest`; answers 201 and a
/// `TransparencyLogEntry`, with `x-log-index: N` when the entry was in the log already (under
/// `--duplicate-returns-entry`).
async fn create_entry(State(state): State<AppState>, request: Request) -> Response {
    match create_entry_inner(&state, request).await {
        Ok(created) => {
            let mut response = (
                StatusCode::CREATED,
                [(header::CONTENT_TYPE, "application/json")],
                rekor_api::transparency_log_entry_to_json(&created.entry),
            )
                .into_response();
            if created.duplicate {
                response
                    .headers_mut()
                    .insert(LOG_INDEX_HEADER, HeaderValue::from(created.entry.log_index));
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn create_entry_inner(state: &AppState, request: Request) -> Result<Created, ApiError> {
    if state.log().is_none() {
        return Err(ApiError::ReadOnly);
    }
    let peer = request
        .extensions()
        .get::<crate::serve::Peer>()
        .map(|peer| peer.0.ip());
    state.admit_write(peer, request.headers())?;
    let limits = state.request_limits();
    let body = read_body(request.into_body(), limits.max_bytes).await?;
    let request = rekor_api::from_json(&body, limits).map_err(ApiError::InvalidRequest)?;
    state.create_entry(request).await
}

/// Reads at most `limit` bytes; a larger body is [`ApiError::BodyTooLarge`].
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::BodyTooLarge { limit }
        } else {
            ApiError::BodyUnreadable(e.to_string())
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

/// GET /api/v2/search?digest=|key=|identity=…[&pageSize=N][&pageToken=T]: matching entries with
/// inclusion proofs against the checkpoint returned (see [`crate::search`]).
async fn search(
    State(state): State<AppState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let answer = match crate::search::SearchQuery::parse(query.as_deref().unwrap_or_default()) {
        Ok(query) => state.search(&query).await,
        Err(e) => Err(ApiError::InvalidSearch(e)),
    };
    json_answer(answer)
}

/// GET /api/v2/search/completeness?digest=|key=|identity=…: the term's bucket under the latest
/// signed search-index commitment, with its proof (see [`crate::search`]).
async fn search_completeness(
    State(state): State<AppState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let answer = match crate::search::SearchQuery::parse(query.as_deref().unwrap_or_default()) {
        Ok(query) => state.search_completeness(&query.term).await,
        Err(e) => Err(ApiError::InvalidSearch(e)),
    };
    json_answer(answer)
}

fn json_answer(answer: Result<Vec<u8>, ApiError>) -> Response {
    match answer {
        Ok(body) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
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
        return ApiError::NotServing(e.to_string()).into_response();
    }
    crate::error::serving_response()
}

async fn not_found() -> Response {
    ApiError::NoSuchRoute.into_response()
}
