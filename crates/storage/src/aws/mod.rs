//! AWS backend: tiles and checkpoint in S3, sequencing and dedup in MySQL (Aurora, MariaDB).
//!
//! # AWS backend
//!
//! [`S3Storage`] keeps the public objects in one bucket, at the same keys as the POSIX layout
//! (`checkpoint`, `tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]`), each with the `Content-Type` and
//! `Cache-Control` of [`crate::ObjectKind`], so the bucket (or a CDN in front of it) is the read API.
//! [`MysqlCoordinator`] keeps sequencing and the dedup index in a MySQL-compatible database shared by
//! every frontend.
//!
//! ## S3 requirements
//!
//! The bucket must honour conditional writes, as S3 has since 2024 (and moto, MinIO, R2 do):
//! `If-None-Match: *` on `PUT` (create-only tiles, bundles and the first checkpoint; 412 when the object
//! exists, or 409 `ConditionalRequestConflict` during a concurrent write) and `If-Match: <etag>` (checkpoint
//! compare-and-swap; 412 on mismatch). The ETag is the checkpoint's [`crate::ObjectVersion`].
//! One `write_objects` call costs one `PUT` per object, up to [`S3Config::concurrency`] at a time,
//! plus one `GET` per object that already existed (to check its bytes are identical).
//!
//! Configuration ([`S3Config::from_env`]): `AWS_REGION` (or `AWS_DEFAULT_REGION`), `AWS_ENDPOINT_URL`
//! (or `AWS_ENDPOINT_URL_S3`; an `http://` endpoint allows plain HTTP; with an endpoint, requests use
//! path-style addressing), and credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, or whatever else the standard chain finds (web identity, container or instance
//! credentials). Every request is bounded by [`S3Config::request_timeout`] and retried at most
//! [`S3Config::max_retries`] times on 5xx, throttling and connection errors; when that is exhausted the
//! call fails with [`crate::Error::Unavailable`].
//!
//! ## MySQL schema
//!
//! Created on connect if missing (`CREATE TABLE IF NOT EXISTS`; the single coordination row with
//! `INSERT IGNORE`, so concurrent connects are harmless; a `rekor_coordination` table from before
//! publication claims gets its `published_at` column added with `ALTER TABLE`):
//!
//! ```sql
//! rekor_coordination (id TINYINT UNSIGNED PRIMARY KEY,        -- always 0: one row
//!                     next_index BIGINT UNSIGNED NOT NULL,    -- SequenceState::sequenced
//!                     integrated BIGINT UNSIGNED NOT NULL,    -- SequenceState::integrated
//!                     published_at DATETIME(6) NULL)          -- last publication claim, UTC
//! rekor_sequenced    (first_index BIGINT UNSIGNED PRIMARY KEY,
//!                     leaf_count INT UNSIGNED NOT NULL,
//!                     leaves LONGBLOB NOT NULL)               -- each leaf: u32 big-endian length, bytes
//! rekor_dedup        (dedup_key BINARY(32) PRIMARY KEY,
//!                     leaf_index BIGINT UNSIGNED NOT NULL)
//! ```
//!
//! A sequenced batch is one row, not one row per leaf: a `sequence` call then writes one blob whatever its
//! size, and `read_sequenced` reads a handful of rows. The leaves are only kept until `mark_integrated`
//! deletes the batches wholly below the new integrated size.
//!
//! One `sequence` call is one transaction of five round trips: `START TRANSACTION`;
//! `UPDATE rekor_coordination SET next_index = LAST_INSERT_ID(next_index + n)` (takes the row lock and returns
//! the new value, so every writer is serialised on that row and no index is given twice); one `INSERT`
//! of the batch; one multi-row `INSERT … ON DUPLICATE KEY UPDATE` of the dedup keys (first index wins:
//! existing keys are left as they are); `COMMIT`. A connection's first use of each statement adds one
//! `PREPARE`. `lookup` is one `SELECT … WHERE dedup_key IN (…)`; `state` one `SELECT`; `mark_integrated`
//! one transaction (`SELECT … FOR UPDATE`, compare, `UPDATE`, `DELETE`, `COMMIT`); `read_sequenced` one
//! consistent-snapshot transaction (state, then the overlapping batches).
//!
//! `claim_publication` (frontends taking turns to write the checkpoint) is one autocommit statement,
//! timed by the database's clock rather than the frontends':
//!
//! ```sql
//! UPDATE rekor_coordination SET published_at = UTC_TIMESTAMP(6)
//! WHERE id = 0 AND (? = 0 OR published_at IS NULL
//!       OR published_at <= UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND)
//! ```
//!
//! granted when one row changed (always, for a zero interval). The row lock serialises concurrent
//! claims and the later one re-checks the condition against the earlier one's stamp. For a non-zero
//! interval a matching row always gets a new value, so the count is the same with or without
//! `CLIENT_FOUND_ROWS`.
//!
//! The DSN ([`MysqlConfig::from_dsn`]) is rekor-tiles' `--aws-mysql-dsn` form,
//! `user:password@tcp(host:3306)/dbname?params`, or a `mysql://user:password@host:port/dbname` URL.
//!
//! A commit whose reply is lost (connection dropped after `COMMIT` was sent) is reported as
//! [`crate::Error::Unavailable`] although it may have been applied; the log recovers as for any lost
//! reply (the dedup index then names the entries' indices).

mod dsn;
mod mysql;
mod s3;

pub use dsn::{MysqlConfig, MysqlTls};
pub use mysql::MysqlCoordinator;
pub use s3::{S3Config, S3Storage};

use crate::Error;

const S3_BACKEND: &str = "aws-s3";
const MYSQL_BACKEND: &str = "aws-mysql";

/// The backend's own failures, boxed into [`Error::Other`] or [`Error::Unavailable`].
#[derive(Debug, thiserror::Error)]
enum AwsError {
    /// A DSN that does not parse.
    #[error("invalid MySQL DSN: {reason}")]
    Dsn {
        /// What is wrong with it.
        reason: String,
    },
    /// A call took longer than its bound.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The bound.
        after: std::time::Duration,
    },
    /// S3 answered without a header this backend relies on.
    #[error("S3 returned no ETag for {path}")]
    MissingEtag {
        /// The object.
        path: String,
    },
    /// Stored rows that contradict each other.
    #[error("inconsistent coordination state: {what}")]
    Inconsistent {
        /// What was found.
        what: String,
    },
    /// A configuration value out of range.
    #[error("invalid configuration: {what}")]
    Config {
        /// What is wrong.
        what: String,
    },
}

impl AwsError {
    fn other(self, backend: &'static str) -> Error {
        Error::Other {
            backend,
            source: Box::new(self),
        }
    }
}

fn timeout(backend: &'static str, operation: &'static str, after: std::time::Duration) -> Error {
    Error::Unavailable {
        backend,
        source: Box::new(AwsError::Timeout { operation, after }),
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

fn s3_error(error: object_store::Error, path: &str) -> Error {
    match error {
        object_store::Error::NotFound { .. } => Error::NotFound {
            path: path.to_owned(),
        },
        error if s3_is_transient(&error) => Error::Unavailable {
            backend: S3_BACKEND,
            source: Box::new(error),
        },
        error => Error::Other {
            backend: S3_BACKEND,
            source: Box::new(error),
        },
    }
}

fn mysql_error(error: mysql_async::Error) -> Error {
    use mysql_async::{DriverError, Error as E};
    let transient = match &error {
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
    };
    if transient {
        Error::Unavailable {
            backend: MYSQL_BACKEND,
            source: Box::new(error),
        }
    } else {
        Error::Other {
            backend: MYSQL_BACKEND,
            source: Box::new(error),
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
        let deadlock = mysql_async::Error::Server(mysql_async::ServerError {
            code: 1213,
            message: "Deadlock found".into(),
            state: "40001".into(),
        });
        assert!(mysql_error(deadlock).is_transient());
        let syntax = mysql_async::Error::Server(mysql_async::ServerError {
            code: 1064,
            message: "syntax".into(),
            state: "42000".into(),
        });
        assert!(!mysql_error(syntax).is_transient());
    }
}
