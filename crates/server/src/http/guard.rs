//! What every HTTP request goes through around its handler: the deadline, the `request` span,
//! metrics by route and status, failure logging, and panic recovery.
//!
//! This was three tower layers (two `axum::middleware::from_fn` and tower-http's
//! `CatchPanicLayer`), then one layer per route. Each layer clones the inner service and boxes a
//! future per request; a profile of `make bench-pinned` put about 7 µs of the server's CPU per
//! write in that machinery. Now it is a plain async function the connection's service awaits,
//! so a write's whole request is one boxed future (see `super::HttpService`).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use axum::http::Method;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;

use crate::error::{ApiError, FailureReport};
use crate::service::AppState;

/// Runs `handler` under the guard: `handle()` is called inside the unwind guard too, since a
/// handler may panic before its first await.
pub(super) async fn guard<F, Fut>(
    state: &AppState,
    timeout: Duration,
    method: &'static str,
    handle: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Response>,
{
    let span = tracing::info_span!(
        "request",
        transport = "http",
        method,
        log_index = tracing::field::Empty
    );
    let handled = AssertUnwindSafe(async move { tokio::time::timeout(timeout, handle()).await })
        .catch_unwind();
    let response = match tracing::Instrument::instrument(handled, span.clone()).await {
        Ok(Ok(response)) => response,
        // Timed-out requests are counted and logged like any other failure.
        Ok(Err(_elapsed)) => ApiError::Timeout(timeout).into_response(),
        Err(_panic) => {
            state.metrics().panics_recovered.inc();
            tracing::error!(parent: &span, "HTTP handler panicked");
            ApiError::Panicked.into_response()
        }
    };
    if let Some(report) = response.extensions().get::<FailureReport>() {
        let _entered = span.enter();
        state.errors().record_report(report);
    }
    state
        .metrics()
        .record_request("http", method, response.status().as_u16());
    response
}

/// The name requests to `path` are counted and logged under.
pub(super) fn route_name(method: &Method, path: &str) -> &'static str {
    match (method.as_str(), path) {
        ("POST", "/api/v2/log/entries") => "CreateEntry",
        ("GET", "/api/v2/checkpoint") => "GetCheckpoint",
        ("GET", p) if p.starts_with("/api/v2/tile/entries/") => "GetEntryBundle",
        ("GET", p) if p.starts_with("/api/v2/tile/") => "GetTile",
        ("GET", "/healthz") => "Healthz",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;
    use crate::http::tests::state;

    fn counted(state: &AppState, status: &str) -> bool {
        state.metrics().encode().lines().any(|line| {
            line.contains("method=\"CreateEntry\"")
                && line.contains(&format!("code=\"{status}\""))
                && line.ends_with(" 1")
        })
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_is_counted() {
        let state = state();
        let response = guard(&state, Duration::from_secs(5), "CreateEntry", || async {
            tokio::task::yield_now().await;
            if true {
                panic!("handler bug");
            }
            StatusCode::OK.into_response()
        })
        .await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(state.metrics().panics_recovered.get(), 1);
        assert!(counted(&state, "500"), "{}", state.metrics().encode());
    }

    #[tokio::test]
    async fn a_handler_that_panics_before_awaiting_is_caught_too() {
        let state = state();
        let response = guard(
            &state,
            Duration::from_secs(5),
            "CreateEntry",
            || -> std::future::Ready<Response> { panic!("synchronous handler bug") },
        )
        .await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(state.metrics().panics_recovered.get(), 1);
    }

    #[tokio::test]
    async fn a_slow_handler_times_out_and_is_counted() {
        let state = state();
        let limit = Duration::from_millis(50);
        let response = guard(&state, limit, "CreateEntry", || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::OK.into_response()
        })
        .await;
        assert_eq!(
            response.status(),
            ApiError::Timeout(limit).into_response().status()
        );
        assert_eq!(state.metrics().panics_recovered.get(), 0);
        let status = response.status().as_u16().to_string();
        assert!(counted(&state, &status), "{}", state.metrics().encode());
    }
}
