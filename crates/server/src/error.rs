//! The one place where failures become HTTP statuses and gRPC codes (STYLE rule 15).
//!
//! | variant            | HTTP | gRPC             | body                                 |
//! |--------------------|------|------------------|--------------------------------------|
//! | `InvalidArgument`  | 400  | InvalidArgument  | `{code, message, details}`           |
//! | `Duplicate`        | 409  | AlreadyExists    | same, plus header `x-log-index: N`   |
//! | `NotFound`         | 404  | NotFound         | same                                 |
//! | `ReadOnly`         | 405  | Unimplemented    | plain text, as rekor-tiles           |
//! | `Unavailable`      | 503  | Unavailable      | `{code, message, details}`           |
//! | `Cancelled`        | 499  | Cancelled        | same                                 |
//! | `Internal`         | 500  | Unknown          | "internal error" (details only logged) |

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tonic::Code;

/// The header that carries the existing index of a duplicate entry.
pub const LOG_INDEX_HEADER: &str = "x-log-index";

/// The body rekor-tiles sends for a frozen log.
pub const FROZEN_MESSAGE: &str = "This log has been frozen, please switch to the latest log.";

/// An API failure, as a client sees it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is malformed or the entry is invalid; the message names the rule.
    #[error("{0}")]
    InvalidArgument(String),
    /// The entry is already in the log.
    #[error("an equivalent entry already exists in the log with index {index}")]
    Duplicate {
        /// The index of the existing entry.
        index: u64,
    },
    /// No such tile, bundle or checkpoint.
    #[error("{0}")]
    NotFound(String),
    /// The log is frozen.
    #[error("log frozen")]
    ReadOnly,
    /// Overloaded or storage failing: retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The client went away.
    #[error("request cancelled")]
    Cancelled,
    /// A bug or an unexpected failure; details are logged, never sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status and gRPC code for this error.
    pub fn status(&self) -> (StatusCode, Code) {
        match self {
            ApiError::InvalidArgument(_) => (StatusCode::BAD_REQUEST, Code::InvalidArgument),
            ApiError::Duplicate { .. } => (StatusCode::CONFLICT, Code::AlreadyExists),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, Code::NotFound),
            ApiError::ReadOnly => (StatusCode::METHOD_NOT_ALLOWED, Code::Unimplemented),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable),
            ApiError::Cancelled => (client_closed_request(), Code::Cancelled),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, Code::Unknown),
        }
    }

    /// Logs the error once: client errors quietly, server errors loudly with their cause.
    /// "Unavailable" is loud at most once per [`UNAVAILABLE_WARNING_INTERVAL`] (see there).
    pub fn log(&self) {
        match self {
            ApiError::Internal(detail) => tracing::error!(error = %detail, "internal error"),
            ApiError::Unavailable(detail) => match UNAVAILABLE_WARNINGS.admit(Instant::now()) {
                Some(0) => tracing::warn!(error = %detail, "unavailable"),
                Some(suppressed) => tracing::warn!(
                    error = %detail,
                    "unavailable (and {suppressed} more since the last warning, at debug level)"
                ),
                None => tracing::debug!(error = %detail, "unavailable"),
            },
            other => tracing::debug!(error = %other, "request refused"),
        }
    }
}

/// The shortest time between two "unavailable" warnings. During a storage outage every request
/// fails the same way: a full disk gave 82,000 identical warnings in 7 s, which bury the
/// pipeline's own report of the cause and can fill the disk the log output goes to. The others
/// are logged at debug level and counted in the next warning; the request metrics count them all.
pub const UNAVAILABLE_WARNING_INTERVAL: Duration = Duration::from_secs(10);

static UNAVAILABLE_WARNINGS: WarningLimiter = WarningLimiter::new(UNAVAILABLE_WARNING_INTERVAL);

/// Lets one warning through per interval and counts the ones held back.
#[derive(Debug)]
struct WarningLimiter {
    interval: Duration,
    /// When the last warning went out, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl WarningLimiter {
    const fn new(interval: Duration) -> Self {
        WarningLimiter {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back since the last one)` if a warning may go out at `now`, else `None`.
    fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, held_back) = &mut *state;
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.interval) {
            *held_back += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(held_back))
    }
}

fn client_closed_request() -> StatusCode {
    // 499 is nginx's "client closed request", which grpc-gateway maps Cancelled to.
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

fn code_number(code: Code) -> i32 {
    code.into()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let (status, code) = self.status();
        if matches!(self, ApiError::ReadOnly) {
            return (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{FROZEN_MESSAGE}\n"),
            )
                .into_response();
        }
        let body = serde_json::json!({
            "code": code_number(code),
            "message": self.to_string(),
            "details": [],
        });
        let mut response = (status, axum::Json(body)).into_response();
        if let ApiError::Duplicate { index } = self
            && let Ok(value) = HeaderValue::from_str(&index.to_string())
        {
            response.headers_mut().insert(LOG_INDEX_HEADER, value);
        }
        response
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        error.log();
        let (_, code) = error.status();
        let mut status = tonic::Status::new(code, error.to_string());
        if let ApiError::Duplicate { index } = error
            && let Ok(value) = index.to_string().parse()
        {
            status.metadata_mut().insert(LOG_INDEX_HEADER, value);
        }
        status
    }
}

impl From<rekor_log::LogError> for ApiError {
    fn from(error: rekor_log::LogError) -> Self {
        use rekor_log::LogError;
        match error {
            LogError::Duplicate { index } => ApiError::Duplicate { index },
            LogError::Pushback { .. } => {
                ApiError::Unavailable("reached max pushback; retry".to_string())
            }
            LogError::EntryTooLarge { size, max } => ApiError::InvalidArgument(format!(
                "canonical entry of {size} bytes exceeds the {max}-byte limit"
            )),
            LogError::ShuttingDown => ApiError::Unavailable("the log is shutting down".into()),
            LogError::Storage(e) if e.is_transient() => {
                ApiError::Unavailable(format!("storage unavailable; retry: {e}"))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    #[test]
    fn unavailable_warnings_go_out_once_per_interval_and_count_the_rest() {
        let limiter = WarningLimiter::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(limiter.admit(start), Some(0));
        for seconds in [0, 1, 9] {
            assert_eq!(limiter.admit(start + Duration::from_secs(seconds)), None);
        }
        assert_eq!(limiter.admit(start + Duration::from_secs(10)), Some(3));
        assert_eq!(limiter.admit(start + Duration::from_secs(11)), None);
        assert_eq!(limiter.admit(start + Duration::from_secs(25)), Some(1));
    }

    fn cases() -> Vec<(ApiError, u16, Code)> {
        vec![
            (
                ApiError::InvalidArgument("bad".into()),
                400,
                Code::InvalidArgument,
            ),
            (ApiError::Duplicate { index: 7 }, 409, Code::AlreadyExists),
            (ApiError::NotFound("no tile".into()), 404, Code::NotFound),
            (ApiError::ReadOnly, 405, Code::Unimplemented),
            (ApiError::Unavailable("busy".into()), 503, Code::Unavailable),
            (ApiError::Cancelled, 499, Code::Cancelled),
            (
                ApiError::Internal("secret detail".into()),
                500,
                Code::Unknown,
            ),
        ]
    }

    #[tokio::test]
    async fn every_variant_maps_on_both_transports() {
        for (error, http, grpc) in cases() {
            let description = format!("{error:?}");
            let status = tonic::Status::from(ApiError::from_debug_clone(&error));
            assert_eq!(status.code(), grpc, "{description}");
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), http, "{description}");
            let duplicate = response.headers().get(LOG_INDEX_HEADER).cloned();
            let body = to_bytes(response.into_body(), 1 << 16).await.unwrap();
            if http == 405 {
                assert_eq!(body, format!("{FROZEN_MESSAGE}\n").as_bytes());
                continue;
            }
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["code"], i32::from(grpc), "{description}");
            assert!(json["details"].as_array().unwrap().is_empty());
            assert!(!json["message"].as_str().unwrap().contains("secret"));
            if http == 409 {
                assert_eq!(duplicate.unwrap(), "7");
                assert_eq!(status.metadata().get(LOG_INDEX_HEADER).unwrap(), "7");
            }
        }
    }

    impl ApiError {
        fn from_debug_clone(error: &ApiError) -> ApiError {
            match error {
                ApiError::InvalidArgument(m) => ApiError::InvalidArgument(m.clone()),
                ApiError::Duplicate { index } => ApiError::Duplicate { index: *index },
                ApiError::NotFound(m) => ApiError::NotFound(m.clone()),
                ApiError::ReadOnly => ApiError::ReadOnly,
                ApiError::Unavailable(m) => ApiError::Unavailable(m.clone()),
                ApiError::Cancelled => ApiError::Cancelled,
                ApiError::Internal(m) => ApiError::Internal(m.clone()),
            }
        }
    }
}
