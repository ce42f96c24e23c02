//! Google Cloud backend: tiles and checkpoint in GCS ([`GcsStorage`]), sequencing and dedup in
//! Cloud Spanner ([`SpannerCoordinator`]).
//!
//! # GCP backend
//!
//! **Objects.** Every tile, entry bundle and the `checkpoint` is one object at the bucket root, named by
//! its tlog-tiles path, so the bucket (or a CDN in front of it) is the read API. Each carries the
//! `Content-Type` and `Cache-Control` of its [`crate::ObjectKind`]. Tiles and bundles are uploaded with
//! `ifGenerationMatch=0` (create-only); a 412 is followed by a download and a byte comparison.
//! The checkpoint's version is its GCS generation, and it is replaced with
//! `ifGenerationMatch=<generation>`. GCS allows about one write per second to one object name, so the
//! checkpoint must not be published more often than once a second (the server enforces this interval).
//!
//! **Sequencing.** Three tables, created on connect if missing (`CREATE TABLE IF NOT EXISTS`; a
//! `RekorCoordination` table from before publication claims gets its `PublishedAt` column added):
//!
//! ```text
//! RekorCoordination (Id INT64, NextIndex INT64, IntegratedSize INT64,                     -- one row, Id = 0
//!                    PublishedAt TIMESTAMP OPTIONS (allow_commit_timestamp = true))       PRIMARY KEY (Id)
//! RekorSequenced    (FirstIndex INT64, LeafCount INT64, Leaves BYTES(MAX)) PRIMARY KEY (FirstIndex)
//! RekorDedup        (DedupKey BYTES(32), LeafIndex INT64)               PRIMARY KEY (DedupKey)
//! ```
//!
//! A `RekorSequenced` row holds consecutive leaves, each as a big-endian `u32` length and the bytes;
//! a batch is split into rows of at most [`MAX_CHUNK_BYTES`] so no cell nears Spanner's 10 MiB limit
//! (a single larger leaf gets a row of its own). One [`crate::Coordinator::sequence`] call is one
//! read-write transaction: `BeginTransaction`, a read of the coordination row, a read of the batch's
//! dedup keys, and `Commit` with one insert per chunk row (usually one), one insert per new dedup key
//! (the first index wins: existing keys, and repeats within the batch, are not written) and one update of
//! `NextIndex`, i.e. 4 round trips and about `n + 2` row mutations for `n` leaves. Concurrent frontends
//! conflict on the coordination row, and Spanner aborts and retries one of them, so no index is given
//! twice. [`crate::Coordinator::mark_integrated`] is a compare-and-swap of `IntegratedSize` in one
//! transaction that also deletes the rows wholly below the new size.
//!
//! **Publication claims.** Frontends sharing the database take turns writing the checkpoint through
//! [`crate::Coordinator::claim_publication`]: one read-write transaction with one DML statement,
//!
//! ```sql
//! UPDATE RekorCoordination SET PublishedAt = PENDING_COMMIT_TIMESTAMP()
//! WHERE Id = 0 AND (@interval = 0 OR PublishedAt IS NULL
//!       OR TIMESTAMP_DIFF(CURRENT_TIMESTAMP(), PublishedAt, MICROSECOND) >= @interval)
//! ```
//!
//! granted when it updated the row. The claim's time is its commit timestamp and its age is
//! measured by Spanner's clock, so the frontends' clocks play no part; two concurrent claims
//! conflict on the row and the retried one sees the winner's timestamp.
//!
//! **Credentials.** Without an endpoint override both clients use Application Default Credentials
//! (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's user credentials, or the metadata server).
//! `STORAGE_EMULATOR_HOST` and `SPANNER_EMULATOR_HOST` (or [`GcsConfig::endpoint`] and
//! [`SpannerConfig::emulator_host`]) switch to an emulator with no credentials.

mod error;
mod gcs;
mod search;
mod spanner;

pub use gcs::{GcsConfig, GcsStorage, STORAGE_EMULATOR_HOST};
pub use search::SpannerSearchIndex;
pub use spanner::{MAX_CHUNK_BYTES, SPANNER_EMULATOR_HOST, SpannerConfig, SpannerCoordinator};

use std::time::Duration;

use error::GcpError;

use crate::Error;

const GCS: &str = "gcs";
const SPANNER: &str = "spanner";

/// The default time limit for one storage request or one coordinator call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `work` with a time limit; running out is [`GcpError::Timeout`] for `backend`.
async fn with_timeout<T>(
    backend: &'static str,
    what: &'static str,
    limit: Duration,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => Err(GcpError::Timeout {
            backend,
            what,
            limit,
        }
        .into()),
    }
}
