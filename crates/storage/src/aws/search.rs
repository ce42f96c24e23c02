//! [`MysqlSearchIndex`]: the search index in the AWS log's MySQL database, beside the
//! coordinator's tables and shared the same way by every frontend.
//!
//! ```text
//! rekor_search_progress (id TINYINT PRIMARY KEY, indexed BIGINT UNSIGNED)  -- one row, id 0
//! rekor_search_postings (term_prefix BIGINT UNSIGNED, leaf_index BIGINT UNSIGNED,
//!                        PRIMARY KEY (term_prefix, leaf_index))
//! ```
//!
//! A posting keeps the first 8 bytes of the term's index key (see [`crate::SearchIndex::lookup`]
//! on why a prefix is enough). An append is one transaction: it locks the progress row, checks
//! the size, inserts the postings (`INSERT IGNORE`, so a retry of a lost commit is harmless)
//! and moves the size.

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Pool, TxOpts};
use std::fmt::Write as _;

use super::{AwsError, MYSQL_BACKEND, MysqlCoordinator};
use crate::search::{MAX_LOOKUP, Posting, SearchIndex, StoredPosting, check_append, key_prefix};
use crate::{Error, Result};

/// Postings per `INSERT` statement, well under `max_allowed_packet`.
const INSERT_CHUNK: usize = 2000;

const SCHEMA: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS rekor_search_progress (
        id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
        indexed BIGINT UNSIGNED NOT NULL
    ) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS rekor_search_postings (
        term_prefix BIGINT UNSIGNED NOT NULL,
        leaf_index BIGINT UNSIGNED NOT NULL,
        PRIMARY KEY (term_prefix, leaf_index)
    ) ENGINE=InnoDB",
    "INSERT IGNORE INTO rekor_search_progress (id, indexed) VALUES (0, 0)",
];

/// The search index of an AWS log, in its MySQL database.
#[derive(Clone)]
pub struct MysqlSearchIndex {
    coordinator: MysqlCoordinator,
}

impl std::fmt::Debug for MysqlSearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlSearchIndex")
            .field("coordinator", &self.coordinator)
            .finish()
    }
}

fn prefix(key: &[u8; 32]) -> u64 {
    u64::from_be_bytes(key_prefix(key))
}

impl MysqlSearchIndex {
    /// Creates the tables if missing, on the coordinator's pool.
    pub(super) async fn open(coordinator: MysqlCoordinator) -> Result<MysqlSearchIndex> {
        let index = MysqlSearchIndex { coordinator };
        index
            .bounded("open search index", async {
                let mut conn = index.pool().get_conn().await.map_err(AwsError::Mysql)?;
                for statement in SCHEMA {
                    conn.query_drop(statement).await.map_err(AwsError::Mysql)?;
                }
                Ok(())
            })
            .await?;
        Ok(index)
    }

    fn pool(&self) -> &Pool {
        self.coordinator.pool()
    }

    async fn bounded<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.coordinator.bounded(operation, call).await
    }

    async fn read_indexed(conn: &mut impl Queryable, lock: bool) -> Result<u64> {
        let sql = if lock {
            "SELECT indexed FROM rekor_search_progress WHERE id = 0 FOR UPDATE"
        } else {
            "SELECT indexed FROM rekor_search_progress WHERE id = 0"
        };
        let row: Option<u64> = conn.query_first(sql).await.map_err(AwsError::Mysql)?;
        Ok(row.ok_or_else(|| AwsError::inconsistent("the search progress row is missing"))?)
    }
}

#[async_trait]
impl SearchIndex for MysqlSearchIndex {
    async fn indexed_size(&self) -> Result<u64> {
        self.bounded("search indexed size", async {
            let mut conn = self.pool().get_conn().await.map_err(AwsError::Mysql)?;
            Self::read_indexed(&mut conn, false).await
        })
        .await
    }

    async fn append(&self, from: u64, to: u64, postings: Vec<Posting>) -> Result<()> {
        check_append(MYSQL_BACKEND, from, to, &postings)?;
        self.bounded("search append", async {
            let mut tx = self
                .pool()
                .start_transaction(TxOpts::default())
                .await
                .map_err(AwsError::Mysql)?;
            let indexed = Self::read_indexed(&mut tx, true).await?;
            if indexed != from {
                return Err(Error::Precondition {
                    what: "search indexed size",
                    expected: from.to_string(),
                    found: indexed.to_string(),
                });
            }
            for chunk in postings.chunks(INSERT_CHUNK) {
                // Only integers are interpolated.
                let mut sql = String::from(
                    "INSERT IGNORE INTO rekor_search_postings (term_prefix, leaf_index) VALUES ",
                );
                for (i, (key, index)) in chunk.iter().enumerate() {
                    if i > 0 {
                        sql.push(',');
                    }
                    let _ = write!(sql, "({},{index})", prefix(key));
                }
                tx.query_drop(sql).await.map_err(AwsError::Mysql)?;
            }
            tx.exec_drop(
                "UPDATE rekor_search_progress SET indexed = ? WHERE id = 0",
                (to,),
            )
            .await
            .map_err(AwsError::Mysql)?;
            tx.commit().await.map_err(AwsError::Mysql)?;
            Ok(())
        })
        .await
    }

    async fn lookup(
        &self,
        key: [u8; 32],
        start: u64,
        below: u64,
        limit: usize,
    ) -> Result<Vec<u64>> {
        let limit = u64::try_from(limit.min(MAX_LOOKUP)).unwrap_or(0);
        self.bounded("search lookup", async {
            let mut conn = self.pool().get_conn().await.map_err(AwsError::Mysql)?;
            let below = below.min(Self::read_indexed(&mut conn, false).await?);
            if start >= below {
                return Ok(Vec::new());
            }
            let found: Vec<u64> = conn
                .exec(
                    "SELECT leaf_index FROM rekor_search_postings \
                     WHERE term_prefix = ? AND leaf_index >= ? AND leaf_index < ? \
                     ORDER BY leaf_index LIMIT ?",
                    (prefix(&key), start, below, limit),
                )
                .await
                .map_err(AwsError::Mysql)?;
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
        let limit = u64::try_from(limit.min(MAX_LOOKUP)).unwrap_or(0);
        self.bounded("search scan", async {
            let mut conn = self.pool().get_conn().await.map_err(AwsError::Mysql)?;
            let below = below.min(Self::read_indexed(&mut conn, false).await?);
            if from.0 > last_prefix || limit == 0 {
                return Ok(Vec::new());
            }
            // The prefix bounds come first so the primary key's range does the work.
            let found: Vec<StoredPosting> = conn
                .exec(
                    "SELECT term_prefix, leaf_index FROM rekor_search_postings \
                     WHERE term_prefix >= ? AND term_prefix <= ? \
                     AND (term_prefix > ? OR leaf_index >= ?) AND leaf_index < ? \
                     ORDER BY term_prefix, leaf_index LIMIT ?",
                    (from.0, last_prefix, from.0, from.1, below, limit),
                )
                .await
                .map_err(AwsError::Mysql)?;
            Ok(found)
        })
        .await
    }
}
