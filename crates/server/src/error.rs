//! The one place where failures become HTTP statuses and gRPC codes: every
//! refusal the server sends, including timeouts, health and panics, is built here.
//!
//! | variants                                                  | HTTP | gRPC             |
//! |-----------------------------------------------------------|------|------------------|
//! | `BodyTooLarge`, `BodyUnreadable`, `InvalidRequest`,       | 400  | InvalidArgument  |
//! | `MissingEntry`, `InvalidEntry`, `EntryTooLarge`           |      |                  |
//! | `Duplicate` (header `x-log-index: N`)                     | 409  | AlreadyExists    |
//! | `NoSuchRoute`, `NotATilePath`, `NoCheckpoint`, `ObjectNotFound` | 404 | NotFound    |
//! | `InvalidSearch`                                           | 400  | InvalidArgument  |
//! | `ReadOnly` (plain text, as rekor-tiles)                   | 405  | Unimplemented    |
//! | `SearchNotEnabled`                                        | 501  | Unimplemented    |
//! | `SearchIndexBehind`, `SearchCommitmentPending`             | 503  | Unavailable      |
//! | `SearchCommitmentsOff`, `CommitmentsOnlyFromLog`           | 501  | Unimplemented    |
//! | `RateLimited` (header `Retry-After: S`)                   | 429  | ResourceExhausted |
//! | `Pushback`, `ShuttingDown`, `NoWitnessQuorum`,            | 503  | Unavailable      |
//! | `StorageUnavailable`                                      |      |                  |
//! | `Timeout` (`--server-timeout`)                            | 503  | DeadlineExceeded |
//! | `NotServing` (body `{"status":"NOT_SERVING"}`)            | 503  | Unavailable      |
//! | `Cancelled`                                               | 499  | Cancelled        |
//! | `Panicked`, `Internal` ("internal error"; details only logged) | 500 | Unknown      |
//!
//! Every JSON error body is `{code, message, details}`, as grpc-gateway writes it.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tonic::Code;

/// The header that carries the existing index of a duplicate entry.
pub const LOG_INDEX_HEADER: &str = "x-log-index";

/// The body rekor-tiles sends for a frozen log.
pub const FROZEN_MESSAGE: &str = "This log has been frozen, please switch to the latest log.";

/// An API failure, as a client sees it. Each variant is one reason; its status comes from
/// [`ApiError::status`] alone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request body is over `--max-request-body-size`.
    #[error("request body exceeds {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The request body could not be read from the connection.
    #[error("reading request body: {0}")]
    BodyUnreadable(String),
    /// The body is not a protojson `CreateEntryRequest`.
    #[error("invalid request body: {0}")]
    InvalidRequest(#[source] rekor_api::ApiError),
    /// The request names neither entry type.
    #[error("invalid type, must be either hashedrekord or dsse")]
    MissingEntry,
    /// The entry breaks a rule of its type; the message names the rule.
    #[error("{0}")]
    InvalidEntry(#[source] rekor_entries::EntryError),
    /// The canonical entry does not fit an entry bundle.
    #[error("canonical entry of {size} bytes exceeds the {max}-byte limit")]
    EntryTooLarge {
        /// The canonical entry's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The entry is already in the log. (With `--duplicate-returns-entry` the server answers
    /// a resubmission with the existing entry instead, except when the logged bytes differ.)
    #[error("an equivalent entry already exists in the log with index {index}")]
    Duplicate {
        /// The index of the existing entry.
        index: u64,
    },
    /// No handler for this method and path.
    #[error("no such route")]
    NoSuchRoute,
    /// The path is not a C2SP tlog-tiles tile or bundle path.
    #[error("not a tile path: {0}")]
    NotATilePath(#[source] rekor_tlog::PathError),
    /// The log has not published a checkpoint yet.
    #[error("no checkpoint has been published")]
    NoCheckpoint,
    /// No such tile or bundle (yet).
    #[error("{path} not found")]
    ObjectNotFound {
        /// The storage path asked for.
        path: String,
    },
    /// The log is frozen.
    #[error("log frozen")]
    ReadOnly,
    /// A search query that names no term, several, or a malformed one.
    #[error("invalid search: {0}")]
    InvalidSearch(#[source] crate::search::SearchQueryError),
    /// The server keeps no search index (`--search-index` is off).
    #[error("search is not enabled on this log (the server runs without --search-index)")]
    SearchNotEnabled,
    /// The search index is too far behind the checkpoint to answer completely; it is catching up.
    #[error("the search index covers {indexed} of {size} entries; retry shortly")]
    SearchIndexBehind {
        /// The indexed size.
        indexed: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// The search index has not been committed to yet (it is being built or caught up).
    #[error("the search index has no signed commitment yet; retry shortly")]
    SearchCommitmentPending,
    /// The server commits to no search index (`--search-commitment-interval 0s`).
    #[error(
        "this log signs no search-index commitments (the server runs with --search-commitment-interval 0s)"
    )]
    SearchCommitmentsOff,
    /// This server is a standalone search indexer following the log, not the log: it does not
    /// hold the log's key, and only the log signs search-index commitments.
    #[error(
        "this is a standalone search indexer, not the log: completeness commitments are signed only by the log; ask the log for /api/v2/search/completeness"
    )]
    CommitmentsOnlyFromLog,
    /// The client is over `--rate-limit-per-ip`; it may write again after the wait.
    #[error("rate limit exceeded for this client; retry after {0}")]
    RateLimited(crate::rate_limit::RetryAfter),
    /// Too many requests are waiting for the log.
    #[error("reached max pushback; retry")]
    Pushback,
    /// The server is stopping.
    #[error("the log is shutting down")]
    ShuttingDown,
    /// Failing closed, the checkpoint that would cover the entry was not published: its witness
    /// quorum did not cosign in time. Publication is retried.
    #[error("checkpoint {size} withheld: no witness quorum in time; retry")]
    NoWitnessQuorum {
        /// The size of the withheld checkpoint.
        size: u64,
    },
    /// Storage is failing in a way that may pass.
    #[error("storage unavailable; retry: {0}")]
    StorageUnavailable(String),
    /// The request took longer than `--server-timeout`.
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    /// The log stopped after a failure only a restart recovers from (health checks).
    #[error("not serving: {0}")]
    NotServing(String),
    /// The client went away.
    #[error("request cancelled")]
    Cancelled,
    /// A handler panicked; the panic is logged where it is caught.
    #[error("internal error")]
    Panicked,
    /// A bug or an unexpected failure; details are logged, never sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status and gRPC code for this error.
    pub fn status(&self) -> (StatusCode, Code) {
        use ApiError as E;
        match self {
            E::BodyTooLarge { .. }
            | E::BodyUnreadable(_)
            | E::InvalidRequest(_)
            | E::MissingEntry
            | E::InvalidEntry(_)
            | E::EntryTooLarge { .. }
            | E::InvalidSearch(_) => (StatusCode::BAD_REQUEST, Code::InvalidArgument),
            E::Duplicate { .. } => (StatusCode::CONFLICT, Code::AlreadyExists),
            E::NoSuchRoute | E::NotATilePath(_) | E::NoCheckpoint | E::ObjectNotFound { .. } => {
                (StatusCode::NOT_FOUND, Code::NotFound)
            }
            E::ReadOnly => (StatusCode::METHOD_NOT_ALLOWED, Code::Unimplemented),
            E::SearchNotEnabled | E::SearchCommitmentsOff | E::CommitmentsOnlyFromLog => {
                (StatusCode::NOT_IMPLEMENTED, Code::Unimplemented)
            }
            E::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, Code::ResourceExhausted),
            E::Pushback
            | E::ShuttingDown
            | E::NoWitnessQuorum { .. }
            | E::StorageUnavailable(_)
            | E::SearchIndexBehind { .. }
            | E::SearchCommitmentPending
            | E::NotServing(_) => (StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable),
            // 503 over HTTP, as before; gRPC has a code of its own for it.
            E::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, Code::DeadlineExceeded),
            E::Cancelled => (client_closed_request(), Code::Cancelled),
            E::Panicked | E::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, Code::Unknown),
        }
    }

    /// What the log output says about this error, built before the error becomes a response.
    fn report(&self) -> FailureReport {
        let severity = match self {
            ApiError::Internal(_) => Severity::Internal,
            ApiError::Pushback
            | ApiError::ShuttingDown
            | ApiError::NoWitnessQuorum { .. }
            | ApiError::StorageUnavailable(_)
            | ApiError::SearchIndexBehind { .. }
            | ApiError::SearchCommitmentPending
            | ApiError::Timeout(_)
            | ApiError::NotServing(_) => Severity::Unavailable,
            _ => Severity::Refused,
        };
        let detail = match self {
            ApiError::Internal(detail) => detail.clone(),
            other => other.to_string(),
        };
        FailureReport { severity, detail }
    }
}

/// How loudly a failure is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Severity {
    /// The client's mistake: debug level.
    Refused,
    /// The server cannot serve now: a warning, rate-limited.
    Unavailable,
    /// A bug or unexpected failure: always an error.
    Internal,
}

/// A failure to log, carried from where the error became a response to where the server's
/// [`ErrorLog`] is at hand (the HTTP request middleware, the gRPC call wrapper).
#[derive(Clone, Debug)]
pub struct FailureReport {
    severity: Severity,
    detail: String,
}

/// The shortest time between two "unavailable" warnings. During a storage outage every request
/// fails the same way: a full disk gave 82,000 identical warnings in 7 s, which bury the
/// pipeline's own report of the cause and can fill the disk the log output goes to. The others
/// are logged at debug level and counted in the next warning; the request metrics count them all.
pub const UNAVAILABLE_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Logs failed requests, one server's worth: owned by its state, not shared process-wide, so two
/// servers in one process (tests) do not hold back each other's warnings.
#[derive(Debug)]
pub struct ErrorLog {
    unavailable: WarningLimiter,
}

impl Default for ErrorLog {
    fn default() -> Self {
        ErrorLog {
            unavailable: WarningLimiter::new(UNAVAILABLE_WARNING_INTERVAL),
        }
    }
}

impl ErrorLog {
    /// Logs `error` once: client errors quietly, server errors loudly with their cause.
    pub fn record(&self, error: &ApiError) {
        self.record_report(&error.report());
    }

    /// Logs a failure that has already become a response.
    pub fn record_report(&self, report: &FailureReport) {
        let detail = &report.detail;
        match report.severity {
            Severity::Internal => tracing::error!(error = %detail, "internal error"),
            Severity::Unavailable => match self.unavailable.admit(Instant::now()) {
                Some(0) => tracing::warn!(error = %detail, "unavailable"),
                Some(suppressed) => tracing::warn!(
                    error = %detail,
                    "unavailable (and {suppressed} more since the last warning, at debug level)"
                ),
                None => tracing::debug!(error = %detail, "unavailable"),
            },
            Severity::Refused => tracing::debug!(error = %detail, "request refused"),
        }
    }
}

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

/// The answer of a health check while the log serves (`GET /healthz`), as grpc-gateway's health
/// endpoint writes it; [`ApiError::NotServing`] is the other answer.
pub fn serving_response() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"SERVING"}"#,
    )
        .into_response()
}

/// The gRPC answer to a panicking handler: `Internal`, instead of a dropped connection.
pub fn grpc_panic_response() -> http::Response<tonic::body::Body> {
    tonic::Status::internal(ApiError::Panicked.to_string()).into_http()
}

/// Builds the HTTP answer; the [`FailureReport`] rides along in the response's extensions for
/// the request middleware to log (see [`ErrorLog`]).
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let report = self.report();
        let (status, code) = self.status();
        let mut response = match &self {
            ApiError::ReadOnly => (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{FROZEN_MESSAGE}\n"),
            )
                .into_response(),
            ApiError::NotServing(_) => (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"status":"NOT_SERVING"}"#,
            )
                .into_response(),
            _ => {
                let body = serde_json::json!({
                    "code": code_number(code),
                    "message": self.to_string(),
                    "details": [],
                });
                (status, axum::Json(body)).into_response()
            }
        };
        if let ApiError::Duplicate { index } = self
            && let Ok(value) = HeaderValue::from_str(&index.to_string())
        {
            response.headers_mut().insert(LOG_INDEX_HEADER, value);
        }
        if let ApiError::RateLimited(retry) = &self
            && let Ok(value) = HeaderValue::from_str(&retry.header_value())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response.extensions_mut().insert(report);
        response
    }
}

/// Builds the gRPC answer; the caller logs the error first with [`ErrorLog::record`].
impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        let (_, code) = error.status();
        let mut status = tonic::Status::new(code, error.to_string());
        if let ApiError::Duplicate { index } = error
            && let Ok(value) = index.to_string().parse()
        {
            status.metadata_mut().insert(LOG_INDEX_HEADER, value);
        }
        if let ApiError::RateLimited(retry) = &error
            && let Ok(value) = retry.header_value().parse()
        {
            status.metadata_mut().insert("retry-after", value);
        }
        status
    }
}

impl From<rekor_log::LogError> for ApiError {
    fn from(error: rekor_log::LogError) -> Self {
        use rekor_log::LogError;
        match error {
            LogError::Duplicate { index } => ApiError::Duplicate { index },
            LogError::Pushback { .. } => ApiError::Pushback,
            LogError::EntryTooLarge { size, max } => ApiError::EntryTooLarge { size, max },
            LogError::ShuttingDown => ApiError::ShuttingDown,
            // Frozen by `freeze` while this frontend was running: as rekor-tiles answers a
            // frozen log.
            LogError::Frozen { .. } => ApiError::ReadOnly,
            LogError::WitnessQuorum { size, .. } => ApiError::NoWitnessQuorum { size },
            LogError::Storage(e) if e.is_transient() => ApiError::StorageUnavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<rekor_storage::Error> for ApiError {
    fn from(error: rekor_storage::Error) -> Self {
        match error {
            rekor_storage::Error::NotFound { path } => ApiError::ObjectNotFound { path },
            // A path the storage refuses is one no tile or bundle lives at.
            rekor_storage::Error::InvalidPath { path, .. } => ApiError::ObjectNotFound { path },
            e if e.is_transient() => ApiError::StorageUnavailable(e.to_string()),
            e => ApiError::Internal(format!("storage: {e}")),
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

    /// One of every variant (built anew per call: the errors are not `Clone`), with its statuses.
    fn cases() -> Vec<(ApiError, u16, Code)> {
        let bad_json = rekor_api::create_entry_request_from_json(b"{").unwrap_err();
        let bad_path = rekor_tlog::TilePath::parse("tile/x").unwrap_err();
        vec![
            (
                ApiError::BodyTooLarge { limit: 9 },
                400,
                Code::InvalidArgument,
            ),
            (
                ApiError::BodyUnreadable("reset".into()),
                400,
                Code::InvalidArgument,
            ),
            (
                ApiError::InvalidRequest(bad_json),
                400,
                Code::InvalidArgument,
            ),
            (ApiError::MissingEntry, 400, Code::InvalidArgument),
            (
                ApiError::InvalidEntry(rekor_entries::EntryError::MissingEnvelope),
                400,
                Code::InvalidArgument,
            ),
            (
                ApiError::EntryTooLarge { size: 9, max: 8 },
                400,
                Code::InvalidArgument,
            ),
            (ApiError::Duplicate { index: 7 }, 409, Code::AlreadyExists),
            (ApiError::NoSuchRoute, 404, Code::NotFound),
            (ApiError::NotATilePath(bad_path), 404, Code::NotFound),
            (ApiError::NoCheckpoint, 404, Code::NotFound),
            (
                ApiError::InvalidSearch(crate::search::SearchQueryError::NoTerm),
                400,
                Code::InvalidArgument,
            ),
            (ApiError::SearchNotEnabled, 501, Code::Unimplemented),
            (ApiError::SearchCommitmentsOff, 501, Code::Unimplemented),
            (ApiError::CommitmentsOnlyFromLog, 501, Code::Unimplemented),
            (ApiError::SearchCommitmentPending, 503, Code::Unavailable),
            (
                ApiError::SearchIndexBehind {
                    indexed: 1,
                    size: 20_000,
                },
                503,
                Code::Unavailable,
            ),
            (
                ApiError::ObjectNotFound {
                    path: "tile/0/000".into(),
                },
                404,
                Code::NotFound,
            ),
            (ApiError::ReadOnly, 405, Code::Unimplemented),
            (ApiError::Pushback, 503, Code::Unavailable),
            (ApiError::ShuttingDown, 503, Code::Unavailable),
            (
                ApiError::NoWitnessQuorum { size: 5 },
                503,
                Code::Unavailable,
            ),
            (
                ApiError::StorageUnavailable("busy".into()),
                503,
                Code::Unavailable,
            ),
            (
                ApiError::Timeout(Duration::from_secs(1)),
                503,
                Code::DeadlineExceeded,
            ),
            (
                ApiError::RateLimited(crate::rate_limit::RetryAfter::new(Duration::from_millis(
                    1_500,
                ))),
                429,
                Code::ResourceExhausted,
            ),
            (
                ApiError::NotServing("journal".into()),
                503,
                Code::Unavailable,
            ),
            (ApiError::Cancelled, 499, Code::Cancelled),
            (ApiError::Panicked, 500, Code::Unknown),
            (
                ApiError::Internal("secret detail".into()),
                500,
                Code::Unknown,
            ),
        ]
    }

    #[tokio::test]
    async fn every_variant_maps_on_both_transports() {
        for ((error, http, grpc), (twin, _, _)) in cases().into_iter().zip(cases()) {
            let description = format!("{error:?}");
            let status = tonic::Status::from(twin);
            assert_eq!(status.code(), grpc, "{description}");
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), http, "{description}");
            assert!(
                response.extensions().get::<FailureReport>().is_some(),
                "{description}: no report for the request log"
            );
            let duplicate = response.headers().get(LOG_INDEX_HEADER).cloned();
            let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
            let body = to_bytes(response.into_body(), 1 << 16).await.unwrap();
            let json: serde_json::Value = match http {
                405 => {
                    assert_eq!(body, format!("{FROZEN_MESSAGE}\n").as_bytes());
                    continue;
                }
                _ => serde_json::from_slice(&body).unwrap(),
            };
            if description.starts_with("NotServing") {
                assert_eq!(json, serde_json::json!({"status": "NOT_SERVING"}));
                continue;
            }
            assert_eq!(json["code"], i32::from(grpc), "{description}");
            assert!(json["details"].as_array().unwrap().is_empty());
            assert!(!json["message"].as_str().unwrap().contains("secret"));
            assert!(!status.message().contains("secret"));
            if http == 409 {
                assert_eq!(duplicate.unwrap(), "7");
                assert_eq!(status.metadata().get(LOG_INDEX_HEADER).unwrap(), "7");
            }
            if http == 429 {
                assert_eq!(retry_after.unwrap(), "2", "rounded up to whole seconds");
                assert_eq!(status.metadata().get("retry-after").unwrap(), "2");
            }
        }
    }

    #[test]
    fn reports_are_as_loud_as_the_failure() {
        assert_eq!(
            ApiError::Internal("x".into()).report().severity,
            Severity::Internal
        );
        assert_eq!(ApiError::Internal("x".into()).report().detail, "x");
        assert_eq!(ApiError::Pushback.report().severity, Severity::Unavailable);
        assert_eq!(ApiError::MissingEntry.report().severity, Severity::Refused);
    }

    #[test]
    fn a_grpc_panic_is_internal() {
        let response = grpc_panic_response();
        assert_eq!(response.headers().get("grpc-status").unwrap(), "13");
    }
}
