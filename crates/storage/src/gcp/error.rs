//! The GCP backend's own failures (GCS HTTP errors, Spanner gRPC statuses and client errors), and
//! the one place that names them by meaning as [`crate::Error`].

use std::time::Duration;

use gcloud_gax::grpc::{Code, Status};
use gcloud_spanner::client::Error as SpannerError;
use gcloud_storage::http::Error as HttpError;

use super::{GCS, SPANNER};
use crate::{BoxError, Error};

/// A failure inside the GCP backend, before it is named by meaning.
#[derive(Debug, thiserror::Error)]
pub(super) enum GcpError {
    /// A GCS request about the object at `path` failed.
    #[error("GCS request for {path}: {source}")]
    Gcs {
        /// The object.
        path: String,
        /// The client's error, with the HTTP status if there was a reply.
        source: HttpError,
    },
    /// No credentials for GCS could be found.
    #[error(transparent)]
    GcsAuth(gcloud_storage::client::google_cloud_auth::error::Error),
    /// The checkpoint was replaced between its metadata and its bytes at every attempt.
    #[error("the checkpoint kept changing while it was being read")]
    CheckpointChurn,
    /// A Spanner call failed with a gRPC status.
    #[error(transparent)]
    SpannerStatus(Status),
    /// The Spanner client failed (a status, no session, the connection, a row that does not parse).
    #[error(transparent)]
    Spanner(SpannerError),
    /// The Spanner admin client could not connect.
    #[error(transparent)]
    SpannerAdmin(gcloud_gax::conn::Error),
    /// No credentials for Spanner could be found.
    #[error(transparent)]
    SpannerAuth(gcloud_spanner::client::google_cloud_auth::error::Error),
    /// The database name does not have the `projects/P/instances/I/databases/D` shape.
    #[error("invalid Spanner database name {0:?}: want projects/<P>/instances/<I>/databases/<D>")]
    InvalidDatabaseName(String),
    /// Spanner holds rows that do not decode or contradict each other.
    #[error("corrupt {what}")]
    Corrupt {
        /// What failed to decode.
        what: &'static str,
    },
    /// A call that ran past its time limit.
    #[error("{what} timed out after {limit:?}")]
    Timeout {
        /// [`GCS`] or [`SPANNER`].
        backend: &'static str,
        /// The call.
        what: &'static str,
        /// Its time limit.
        limit: Duration,
    },
}

impl GcpError {
    /// Whether this is a GCS 404: the object does not exist.
    pub(super) fn is_not_found(&self) -> bool {
        self.gcs_status() == Some(404)
    }

    /// Whether this is a GCS 412: a generation precondition failed.
    pub(super) fn is_precondition_failed(&self) -> bool {
        self.gcs_status() == Some(412)
    }

    fn gcs_status(&self) -> Option<u16> {
        match self {
            GcpError::Gcs { source, .. } => http_status(source),
            _ => None,
        }
    }
}

fn http_status(error: &HttpError) -> Option<u16> {
    match error {
        HttpError::Response(response) => Some(response.code),
        HttpError::HttpClient(e) | HttpError::RawResponse(e, _) => e.status().map(|s| s.as_u16()),
        _ => None,
    }
}

/// Whether a GCS request that got no HTTP status may succeed later: the connection failed, timed
/// out or broke, or the token source failed. A reply that did not decode will not.
fn no_reply_is_transient(error: &HttpError) -> bool {
    match error {
        HttpError::HttpClient(e) | HttpError::RawResponse(e, _) => {
            e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
        }
        HttpError::TokenSource(_) => true,
        _ => false,
    }
}

/// Whether a Spanner status is worth retrying later.
pub(super) fn status_is_transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::Cancelled
    )
}

fn unavailable(backend: &'static str, source: impl Into<BoxError>) -> Error {
    Error::Unavailable {
        backend,
        source: source.into(),
    }
}

fn other(backend: &'static str, source: impl Into<BoxError>) -> Error {
    Error::Other {
        backend,
        source: source.into(),
    }
}

fn status_error(status: Status) -> Error {
    if status_is_transient(&status) {
        unavailable(SPANNER, status)
    } else {
        other(SPANNER, status)
    }
}

/// Names a failure by meaning. The client libraries' errors become the source as they are, so
/// the message an operator reads is theirs.
impl From<GcpError> for Error {
    fn from(error: GcpError) -> Self {
        match error {
            GcpError::Gcs { path, source } => match http_status(&source) {
                Some(404) => Error::NotFound { path },
                Some(412) => Error::Precondition {
                    what: "object generation",
                    expected: "a matching generation".to_owned(),
                    found: "another generation".to_owned(),
                },
                Some(408 | 429 | 500..=599) => unavailable(GCS, source),
                Some(_) => other(GCS, source),
                None if no_reply_is_transient(&source) => unavailable(GCS, source),
                None => other(GCS, source),
            },
            GcpError::GcsAuth(e) => other(GCS, e),
            error @ GcpError::CheckpointChurn => other(GCS, error),
            GcpError::SpannerStatus(status) => status_error(status),
            GcpError::Spanner(SpannerError::GRPC(status)) => status_error(status),
            // No session could be had in time, or the connection failed: try again later.
            GcpError::Spanner(
                e @ (SpannerError::InvalidSession(_) | SpannerError::Connection(_)),
            ) => unavailable(SPANNER, e),
            GcpError::Spanner(e) => other(SPANNER, e),
            GcpError::SpannerAdmin(e) => unavailable(SPANNER, e),
            GcpError::SpannerAuth(e) => other(SPANNER, e),
            error @ GcpError::InvalidDatabaseName(_) => other(SPANNER, error),
            GcpError::Corrupt { what } => Error::Corrupt {
                backend: SPANNER,
                what,
            },
            error @ GcpError::Timeout { backend, .. } => unavailable(backend, error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spanner_failures_are_named_by_meaning() {
        for (code, transient) in [
            (Code::Unavailable, true),
            (Code::Aborted, true),
            (Code::DeadlineExceeded, true),
            (Code::ResourceExhausted, true),
            (Code::Cancelled, true),
            (Code::PermissionDenied, false),
            (Code::InvalidArgument, false),
            (Code::NotFound, false),
        ] {
            let status = || Status::new(code, "status");
            let direct = Error::from(GcpError::SpannerStatus(status()));
            let wrapped = Error::from(GcpError::Spanner(SpannerError::GRPC(status())));
            assert_eq!(direct.is_transient(), transient, "{code:?}");
            assert_eq!(wrapped.is_transient(), transient, "{code:?}");
            assert!(matches!(
                direct,
                Error::Unavailable {
                    backend: "spanner",
                    ..
                } | Error::Other {
                    backend: "spanner",
                    ..
                }
            ));
        }
        let invalid = Error::from(GcpError::Spanner(SpannerError::InvalidConfig("x".into())));
        assert!(matches!(invalid, Error::Other { .. }));
        let name = Error::from(GcpError::InvalidDatabaseName("db".into()));
        assert!(matches!(name, Error::Other { .. }));
        assert!(name.to_string().contains("invalid Spanner database name"));
        assert!(matches!(
            Error::from(GcpError::Corrupt { what: "row" }),
            Error::Corrupt {
                backend: "spanner",
                what: "row"
            }
        ));
    }

    #[test]
    fn timeouts_are_transient_for_the_service_that_timed_out() {
        for backend in [GCS, SPANNER] {
            let error = Error::from(GcpError::Timeout {
                backend,
                what: "upload",
                limit: Duration::from_secs(3),
            });
            assert!(error.is_transient());
            assert!(matches!(error, Error::Unavailable { backend: b, .. } if b == backend));
            assert!(
                error.to_string().ends_with("upload timed out after 3s"),
                "{error}"
            );
        }
        let churn = Error::from(GcpError::CheckpointChurn);
        assert!(matches!(churn, Error::Other { backend: "gcs", .. }));
    }
}
