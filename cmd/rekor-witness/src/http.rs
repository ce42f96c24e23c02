//! The HTTP interface (c2sp.org/tlog-witness): `POST /add-checkpoint` and the monitoring
//! endpoint `GET /<origin hash>/checkpoint`. Both URL prefixes are the server root.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::AddError;
use crate::witness::Witness;

/// Content type of the 409 body that carries the witness's latest size (tlog-witness).
pub(crate) const TLOG_SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

const TEXT: &str = "text/plain; charset=utf-8";

/// Builds the router. Bodies above `max_body` bytes get 413; requests still running after
/// `timeout` get 503 (an `add-checkpoint` already under way still completes, so a client that
/// retries learns the outcome from the 409 size).
pub(crate) fn router(witness: Arc<Witness>, max_body: usize, timeout: Duration) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/{origin_hash}/checkpoint", get(checkpoint))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(timeout, deadline))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
        .with_state(witness)
}

/// `POST /add-checkpoint`: verifies the checkpoint and answers its cosignature line.
///
/// 200 with the cosignature line; 400 malformed or `old` above the size; 403 no trusted log
/// signature verifies (or one fails); 404 unknown origin; 409 `old` is not the latest cosigned
/// size (`text/x.tlog.size` body: that size and a newline); 409 (plain text) same size but
/// another root; 422 bad consistency proof, or a size-0 checkpoint without the empty root;
/// 413 body too large; 500 state could not be written.
async fn add_checkpoint(
    State(witness): State<Arc<Witness>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            tracing::debug!(error = %rejection, "add-checkpoint body rejected");
            return text(rejection.status(), format!("{}\n", rejection.body_text()));
        }
    };
    // Its own task: once the checks start, a dropped connection or a timeout must not cancel
    // the state update half-way.
    let task = tokio::spawn(async move {
        let result = witness.add_checkpoint(&body).await;
        (result, body)
    });
    let (result, body) = match task.await {
        Ok(done) => done,
        Err(_) => return error_response(&AddError::Task, &[]),
    };
    match result {
        Ok(lines) => text(StatusCode::OK, lines),
        Err(error) => error_response(&error, &body),
    }
}

fn error_response(error: &AddError, body: &[u8]) -> Response {
    let status = error.status();
    if status.is_server_error() {
        tracing::error!(error = %error, source = ?std::error::Error::source(error), "add-checkpoint failed");
        return text(status, "internal error\n".to_owned());
    }
    if error.is_evidence() {
        // The log's signature verified: this may be proof of misbehaviour, so keep the request.
        tracing::warn!(
            error = %error,
            request = %String::from_utf8_lossy(body),
            "refused a signed checkpoint that is inconsistent with the cosigned one"
        );
    } else {
        tracing::debug!(status = status.as_u16(), error = %error, "add-checkpoint refused");
    }
    if let AddError::OldSizeMismatch { latest, .. } = error {
        return (
            StatusCode::CONFLICT,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(TLOG_SIZE_CONTENT_TYPE),
            )],
            format!("{latest}\n"),
        )
            .into_response();
    }
    text(status, format!("{error}\n"))
}

/// `GET /<origin hash>/checkpoint`: the latest cosigned checkpoint of the log whose origin has
/// this lowercase hex SHA-256, with the verified log signatures and the witness's cosignature;
/// 404 if the log is unknown or was never cosigned.
async fn checkpoint(
    State(witness): State<Arc<Witness>>,
    Path(origin_hash): Path<String>,
) -> Response {
    match witness.latest_checkpoint(&origin_hash).await {
        Some(note) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(TEXT)),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            note,
        )
            .into_response(),
        None => text(
            StatusCode::NOT_FOUND,
            "no cosigned checkpoint for this origin hash\n".to_owned(),
        ),
    }
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "not found\n".to_owned())
}

/// Answers 503 for a request still running after the timeout.
async fn deadline(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("request timed out after {timeout:?}\n"),
        ),
    }
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error\n".to_owned(),
    )
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(TEXT))],
        body,
    )
        .into_response()
}
