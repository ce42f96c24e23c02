//! The AWS backend's own failures (S3 through object_store, MySQL, configuration), and the one
//! place that names them by meaning as [`crate::Error`].

use std::time::Duration;

use super::{MYSQL_BACKEND, S3_BACKEND};
use crate::{BoxError, Error};

/// A failure inside the AWS backend, before it is named by meaning.
#[derive(Debug, thiserror::Error)]
pub(super) enum AwsError {
    /// An S3 request about the object at `path` failed (after the client's own retries).
    #[error("S3 request for {path}: {source}")]
    S3 {
        /// The object.
        path: String,
        /// The client's error.
        source: object_store::Error,
    },
    /// object_store refused the S3 configuration (a bad endpoint URL, region or credentials).
    #[error(transparent)]
    S3Client(object_store::Error),
    /// object_store refused an object path that passed [`crate::check_object_path`].
    #[error(transparent)]
    S3Path(object_store::path::Error),
    /// S3 answered without a header this backend relies on.
    #[error("S3 returned no ETag for {path}")]
    MissingEtag {
        /// The object.
        path: String,
    },
    /// A MySQL call failed.
    #[error(transparent)]
    Mysql(mysql_async::Error),
    /// A DSN that does not parse.
    #[error("invalid MySQL DSN: {reason}")]
    Dsn {
        /// What is wrong with it (never quoting the password).
        reason: String,
    },
    /// Stored rows that contradict each other.
    #[error("inconsistent coordination state: {what}")]
    Inconsistent {
        /// What was found.
        what: String,
    },
    /// A stored dedup key that is not 32 bytes.
    #[error("corrupt dedup key")]
    CorruptDedupKey,
    /// A configuration value out of range.
    #[error("invalid configuration: {what}")]
    Config {
        /// [`S3_BACKEND`] or [`MYSQL_BACKEND`].
        backend: &'static str,
        /// What is wrong.
        what: String,
    },
    /// A call took longer than its bound.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// [`S3_BACKEND`] or [`MYSQL_BACKEND`].
        backend: &'static str,
        /// What was being done.
        operation: &'static str,
        /// The bound.
        after: Duration,
    },
}

impl AwsError {
    /// An [`AwsError::Inconsistent`] saying `what`.
    pub(super) fn inconsistent(what: impl Into<String>) -> AwsError {
        AwsError::Inconsistent { what: what.into() }
    }
}

/// Walks an error's source chain.
fn chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}

/// Whether an object_store failure is worth retrying later: connection failures, timeouts, and
/// (after the client's own retries) 5xx and 429 answers.
fn s3_is_transient(error: &object_store::Error) -> bool {
    use object_store::client::HttpErrorKind;
    chain(error).any(|e| {
        if let Some(http) = e.downcast_ref::<object_store::client::HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        if e.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        // object_store keeps the status in a private type; its message names it as
        // "status code: <code> <reason>".
        status_in_message(&e.to_string()).is_some_and(|s| s == 429 || (500..600).contains(&s))
    })
}

fn status_in_message(message: &str) -> Option<u16> {
    let (_, rest) = message.split_once("status code: ")?;
    rest.get(..3)?.parse().ok()
}

/// Whether a MySQL failure is worth retrying later.
fn mysql_is_transient(error: &mysql_async::Error) -> bool {
    use mysql_async::{DriverError, Error as E};
    match error {
        E::Io(_) => true,
        E::Driver(d) => matches!(
            d,
            DriverError::ConnectionClosed | DriverError::PoolDisconnected
        ),
        // Lock wait timeout, deadlock, too many connections, server shutting down, read-only
        // (failover in progress), query interrupted.
        E::Server(s) => matches!(
            s.code,
            1205 | 1213 | 1040 | 1053 | 1290 | 1317 | 1927 | 2006 | 2013
        ),
        E::Other(_) | E::Url(_) => false,
    }
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

/// Names a failure by meaning. The client libraries' errors become the source as they are, so
/// the message an operator reads is theirs.
impl From<AwsError> for Error {
    fn from(error: AwsError) -> Self {
        match error {
            AwsError::S3 {
                path,
                source: object_store::Error::NotFound { .. },
            } => Error::NotFound { path },
            AwsError::S3 { source, .. } if s3_is_transient(&source) => {
                unavailable(S3_BACKEND, source)
            }
            AwsError::S3 { source, .. } | AwsError::S3Client(source) => other(S3_BACKEND, source),
            AwsError::S3Path(e) => other(S3_BACKEND, e),
            error @ AwsError::MissingEtag { .. } => other(S3_BACKEND, error),
            AwsError::Mysql(e) if mysql_is_transient(&e) => unavailable(MYSQL_BACKEND, e),
            AwsError::Mysql(e) => other(MYSQL_BACKEND, e),
            error @ (AwsError::Dsn { .. } | AwsError::Inconsistent { .. }) => {
                other(MYSQL_BACKEND, error)
            }
            AwsError::CorruptDedupKey => Error::Corrupt {
                backend: MYSQL_BACKEND,
                what: "dedup key",
            },
            error @ AwsError::Config { backend, .. } => other(backend, error),
            error @ AwsError::Timeout { backend, .. } => unavailable(backend, error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_found_in_messages() {
        assert_eq!(
            status_in_message(
                "Server returned non-2xx status code: 503 Service Unavailable: slow down"
            ),
            Some(503)
        );
        assert_eq!(status_in_message("connection refused"), None);
        assert_eq!(status_in_message("status code: 5"), None);
    }

    #[test]
    fn mysql_errors_are_classified() {
        let server = |code: u16| {
            AwsError::Mysql(mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: "from the server".into(),
                state: "HY000".into(),
            }))
        };
        assert!(Error::from(server(1213)).is_transient(), "deadlock");
        assert!(!Error::from(server(1064)).is_transient(), "syntax");
        let closed = AwsError::Mysql(mysql_async::DriverError::ConnectionClosed.into());
        assert!(Error::from(closed).is_transient());
        assert!(matches!(
            Error::from(AwsError::CorruptDedupKey),
            Error::Corrupt {
                backend: "aws-mysql",
                what: "dedup key"
            }
        ));
    }

    #[test]
    fn s3_errors_are_classified() {
        let s3 = |source| AwsError::S3 {
            path: "tile/0/000".to_owned(),
            source,
        };
        let missing = object_store::Error::NotFound {
            path: "tile/0/000".to_owned(),
            source: "gone".into(),
        };
        assert!(
            matches!(Error::from(s3(missing)), Error::NotFound { path } if path == "tile/0/000")
        );
        let busy = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 503 Service Unavailable".into(),
        };
        assert!(Error::from(s3(busy)).is_transient());
        let denied = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 403 Forbidden".into(),
        };
        assert!(matches!(
            Error::from(s3(denied)),
            Error::Other {
                backend: "aws-s3",
                ..
            }
        ));
        // A refused configuration is never retried, whatever its message says.
        let config = object_store::Error::Generic {
            store: "S3",
            source: "status code: 503".into(),
        };
        assert!(!Error::from(AwsError::S3Client(config)).is_transient());
    }

    #[test]
    fn own_failures_name_their_service() {
        let timeout = |backend| {
            Error::from(AwsError::Timeout {
                backend,
                operation: "sequence",
                after: Duration::from_secs(10),
            })
        };
        assert!(matches!(
            timeout(MYSQL_BACKEND),
            Error::Unavailable {
                backend: "aws-mysql",
                ..
            }
        ));
        assert!(matches!(
            timeout(S3_BACKEND),
            Error::Unavailable {
                backend: "aws-s3",
                ..
            }
        ));
        let config = Error::from(AwsError::Config {
            backend: S3_BACKEND,
            what: "S3 write concurrency must be at least 1".to_owned(),
        });
        assert!(matches!(
            config,
            Error::Other {
                backend: "aws-s3",
                ..
            }
        ));
        let dsn = Error::from(AwsError::Dsn {
            reason: "bad port".to_owned(),
        });
        assert!(matches!(
            dsn,
            Error::Other {
                backend: "aws-mysql",
                ..
            }
        ));
        assert!(
            dsn.to_string().contains("invalid MySQL DSN: bad port"),
            "{dsn}"
        );
    }
}
