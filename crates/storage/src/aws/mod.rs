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
mod error;
mod mysql;
mod s3;
mod search;

pub use dsn::{MysqlConfig, MysqlTls};
pub use mysql::MysqlCoordinator;
pub use s3::{S3Config, S3Storage};
pub use search::MysqlSearchIndex;

use error::AwsError;

const S3_BACKEND: &str = "aws-s3";
const MYSQL_BACKEND: &str = "aws-mysql";
