//! [`SpannerSearchIndex`]: the search index in the GCP log's Spanner database, beside the
//! coordinator's tables and shared the same way by every frontend.
//!
//! ```text
//! RekorSearchProgress (Id INT64, IndexedSize INT64) PRIMARY KEY (Id)           -- one row, Id 0
//! RekorSearchPostings (TermPrefix INT64, LeafIndex INT64) PRIMARY KEY (TermPrefix, LeafIndex)
//! ```
//!
//! A posting keeps the first 8 bytes of the term's index key, as a big-endian INT64 (see
//! [`crate::SearchIndex::lookup`] on why a prefix is enough). An append is one read-write
//! transaction: the progress row is read and checked, then the postings (`insert_or_update`,
//! so a retried commit is harmless) and the new size are written together.

use std::sync::Arc;

use async_trait::async_trait;
use gcloud_spanner::key::Key;
use gcloud_spanner::mutation::insert_or_update;
use gcloud_spanner::statement::Statement;
use gcloud_spanner::transaction::Transaction;

use super::GcpError;
use super::spanner::{SpannerCoordinator, to_i64, to_u64};
use crate::search::{MAX_LOOKUP, Posting, SearchIndex, StoredPosting, check_append, key_prefix};
use crate::{Error, Result};

pub(super) const PROGRESS: &str = "RekorSearchProgress";
pub(super) const POSTINGS: &str = "RekorSearchPostings";
pub(super) const PROGRESS_DDL: &str = "CREATE TABLE IF NOT EXISTS RekorSearchProgress (\
     Id INT64 NOT NULL, IndexedSize INT64 NOT NULL) PRIMARY KEY (Id)";
pub(super) const POSTINGS_DDL: &str = "CREATE TABLE IF NOT EXISTS RekorSearchPostings (\
     TermPrefix INT64 NOT NULL, LeafIndex INT64 NOT NULL) PRIMARY KEY (TermPrefix, LeafIndex)";
const PROGRESS_ID: i64 = 0;

/// The search index of a GCP log, in its Spanner database.
#[derive(Clone, Debug)]
pub struct SpannerSearchIndex {
    coordinator: SpannerCoordinator,
}

fn prefix(key: &[u8; 32]) -> i64 {
    i64::from_be_bytes(key_prefix(key))
}

/// A prefix as its column holds it: the same 8 bytes, read as a signed number. The order
/// agrees with the unsigned one within each half of the prefix space.
fn signed(prefix: u64) -> i64 {
    i64::from_be_bytes(prefix.to_be_bytes())
}

fn unsigned(column: i64) -> u64 {
    u64::from_be_bytes(column.to_be_bytes())
}

/// The first prefix of the upper half, the negative numbers as INT64.
const UPPER_HALF: u64 = 1 << 63;

/// The indexed size (0 before the first append: the progress row is written by it).
async fn read_indexed(
    tx: &mut Transaction,
) -> std::result::Result<Result<u64>, gcloud_spanner::client::Error> {
    let row = tx
        .read_row(PROGRESS, &["IndexedSize"], Key::new(&PROGRESS_ID))
        .await?;
    let Some(row) = row else {
        return Ok(Ok(0));
    };
    let size: i64 = row.column_by_name("IndexedSize")?;
    Ok(to_u64(size, "negative search indexed size").map_err(Into::into))
}

impl SpannerSearchIndex {
    pub(super) fn new(coordinator: SpannerCoordinator) -> Self {
        SpannerSearchIndex { coordinator }
    }
}

#[async_trait]
impl SearchIndex for SpannerSearchIndex {
    async fn indexed_size(&self) -> Result<u64> {
        self.coordinator
            .limited("search indexed size", async {
                let mut tx = self
                    .coordinator
                    .client()
                    .single()
                    .await
                    .map_err(GcpError::Spanner)?;
                read_indexed(&mut tx).await.map_err(GcpError::Spanner)?
            })
            .await
    }

    async fn append(&self, from: u64, to: u64, postings: Vec<Posting>) -> Result<()> {
        check_append(super::SPANNER, from, to, &postings)?;
        let rows: Arc<Vec<(i64, i64)>> = Arc::new(
            postings
                .iter()
                .map(|(key, index)| Ok((prefix(key), to_i64(*index)?)))
                .collect::<Result<_, GcpError>>()?,
        );
        let new_size = to_i64(to)?;
        self.coordinator
            .limited(
                "search append",
                self.coordinator.transact(|tx| {
                    let rows = Arc::clone(&rows);
                    Box::pin(async move {
                        let indexed = match read_indexed(tx).await? {
                            Ok(size) => size,
                            Err(error) => return Ok(Err(error)),
                        };
                        if indexed != from {
                            return Ok(Err(Error::Precondition {
                                what: "search indexed size",
                                expected: from.to_string(),
                                found: indexed.to_string(),
                            }));
                        }
                        let mut mutations: Vec<_> = rows
                            .iter()
                            .map(|(term, index)| {
                                insert_or_update(
                                    POSTINGS,
                                    &["TermPrefix", "LeafIndex"],
                                    &[term, index],
                                )
                            })
                            .collect();
                        mutations.push(insert_or_update(
                            PROGRESS,
                            &["Id", "IndexedSize"],
                            &[&PROGRESS_ID, &new_size],
                        ));
                        tx.buffer_write(mutations);
                        Ok(Ok(()))
                    })
                }),
            )
            .await
    }

    async fn lookup(
        &self,
        key: [u8; 32],
        start: u64,
        below: u64,
        limit: usize,
    ) -> Result<Vec<u64>> {
        let limit = i64::try_from(limit.min(MAX_LOOKUP)).unwrap_or(0);
        self.coordinator
            .limited("search lookup", async {
                let mut tx = self
                    .coordinator
                    .client()
                    .read_only_transaction()
                    .await
                    .map_err(GcpError::Spanner)?;
                let indexed = read_indexed(&mut tx).await.map_err(GcpError::Spanner)??;
                let below = below.min(indexed);
                if start >= below {
                    return Ok(Vec::new());
                }
                let mut statement = Statement::new(
                    "SELECT LeafIndex FROM RekorSearchPostings \
                     WHERE TermPrefix = @term AND LeafIndex >= @start AND LeafIndex < @below \
                     ORDER BY LeafIndex LIMIT @limit",
                );
                statement.add_param("term", &prefix(&key));
                statement.add_param("start", &to_i64(start)?);
                statement.add_param("below", &to_i64(below)?);
                statement.add_param("limit", &limit);
                let mut rows = tx.query(statement).await.map_err(GcpError::SpannerStatus)?;
                let mut found = Vec::new();
                while let Some(row) = rows.next().await.map_err(GcpError::SpannerStatus)? {
                    let index: i64 = row
                        .column_by_name("LeafIndex")
                        .map_err(|e| GcpError::Spanner(e.into()))?;
                    found.push(to_u64(index, "negative search posting")?);
                }
                Ok(found)
            })
            .await
    }

    async fn scan(
        &self,
        from: StoredPosting,
        last_prefix: u64,
        below: u64,
        limit: usize,
    ) -> Result<Vec<StoredPosting>> {
        let limit = limit.min(MAX_LOOKUP);
        // In unsigned order the lower half (non-negative columns) comes first; each half is
        // one range of the primary key.
        let mut halves = Vec::with_capacity(2);
        if from.0 < UPPER_HALF {
            halves.push((from, last_prefix.min(UPPER_HALF - 1)));
        }
        let upper_start = if from.0 >= UPPER_HALF {
            from
        } else {
            (UPPER_HALF, 0)
        };
        halves.push((upper_start, last_prefix));
        self.coordinator
            .limited("search scan", async {
                let mut tx = self
                    .coordinator
                    .client()
                    .read_only_transaction()
                    .await
                    .map_err(GcpError::Spanner)?;
                let indexed = read_indexed(&mut tx).await.map_err(GcpError::Spanner)??;
                let below = below.min(indexed);
                let mut found = Vec::new();
                for (start, last) in halves {
                    if start.0 > last || found.len() >= limit {
                        continue;
                    }
                    let mut statement = Statement::new(
                        "SELECT TermPrefix, LeafIndex FROM RekorSearchPostings \
                         WHERE TermPrefix >= @first AND TermPrefix <= @last \
                         AND (TermPrefix > @first OR LeafIndex >= @start) \
                         AND LeafIndex < @below \
                         ORDER BY TermPrefix, LeafIndex LIMIT @limit",
                    );
                    statement.add_param("first", &signed(start.0));
                    statement.add_param("last", &signed(last));
                    statement.add_param("start", &to_i64(start.1.min(below))?);
                    statement.add_param("below", &to_i64(below)?);
                    statement.add_param("limit", &i64::try_from(limit - found.len()).unwrap_or(0));
                    let mut rows = tx.query(statement).await.map_err(GcpError::SpannerStatus)?;
                    while let Some(row) = rows.next().await.map_err(GcpError::SpannerStatus)? {
                        let term: i64 = row
                            .column_by_name("TermPrefix")
                            .map_err(|e| GcpError::Spanner(e.into()))?;
                        let index: i64 = row
                            .column_by_name("LeafIndex")
                            .map_err(|e| GcpError::Spanner(e.into()))?;
                        found.push((unsigned(term), to_u64(index, "negative search posting")?));
                    }
                }
                Ok(found)
            })
            .await
    }
}
