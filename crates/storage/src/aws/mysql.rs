//! [`MysqlCoordinator`]: sequencing, dedup and the integrated size in a MySQL-compatible database.

use std::fmt::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use mysql_async::prelude::Queryable;
use mysql_async::{Pool, TxOpts};

use super::{AwsError, MYSQL_BACKEND, MysqlConfig};
use crate::packed;
use crate::{Coordinator, Error, Result, SequenceLeaf, SequenceState};

/// Dedup keys per `INSERT` / `SELECT … IN` statement, to keep statements well under
/// `max_allowed_packet`.
const DEDUP_CHUNK: usize = 1000;

const SCHEMA: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS rekor_coordination (
        id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
        next_index BIGINT UNSIGNED NOT NULL,
        integrated BIGINT UNSIGNED NOT NULL,
        published_at DATETIME(6) NULL,
        frozen_at BIGINT UNSIGNED NULL
    ) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS rekor_sequenced (
        first_index BIGINT UNSIGNED NOT NULL PRIMARY KEY,
        leaf_count INT UNSIGNED NOT NULL,
        leaves LONGBLOB NOT NULL
    ) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS rekor_dedup (
        dedup_key BINARY(32) NOT NULL PRIMARY KEY,
        leaf_index BIGINT UNSIGNED NOT NULL
    ) ENGINE=InnoDB",
    "INSERT IGNORE INTO rekor_coordination (id, next_index, integrated) VALUES (0, 0, 0)",
];

/// Adds `published_at` to a coordination table created before publication claims existed.
const ADD_PUBLISHED_AT: &str =
    "ALTER TABLE rekor_coordination ADD COLUMN published_at DATETIME(6) NULL";
/// Adds `frozen_at` (the final size of a frozen log) to a table created before freezing existed.
const ADD_FROZEN_AT: &str =
    "ALTER TABLE rekor_coordination ADD COLUMN frozen_at BIGINT UNSIGNED NULL";

/// Grants a publication claim when the last one is at least `?` microseconds old by the database's
/// clock (or there is none, or the interval is 0), stamping it with that clock. `UTC_TIMESTAMP(6)`
/// and a `DATETIME` column avoid every session time-zone conversion. The row lock serialises
/// concurrent claims, and the second re-evaluates the condition against the first's committed
/// stamp. For a non-zero interval a matched row always gets a new value, so the affected-row count
/// is the same whether or not the connection reports found rows.
const CLAIM_PUBLICATION: &str = "UPDATE rekor_coordination SET published_at = UTC_TIMESTAMP(6) \
     WHERE id = 0 AND (? = 0 OR published_at IS NULL \
     OR published_at <= UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND)";

/// The longest claim interval passed to the database: a century, in microseconds.
const MAX_CLAIM_INTERVAL_MICROS: u64 = 100 * 366 * 86_400 * 1_000_000;

/// MySQL's "unknown column" error.
const ER_BAD_FIELD_ERROR: u16 = 1054;
/// MySQL's "duplicate column name" error.
const ER_DUP_FIELDNAME: u16 = 1060;

/// The private half of an AWS log: durable sequencing and the dedup index in MySQL, shared safely by
/// several frontends (see the [module docs](super) for the schema and costs).
#[derive(Clone)]
pub struct MysqlCoordinator {
    pool: Pool,
    timeout: Duration,
    target: String,
}

impl std::fmt::Debug for MysqlCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlCoordinator")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn count(n: usize) -> Result<u64, AwsError> {
    u64::try_from(n).map_err(|_| AwsError::inconsistent("batch length does not fit in u64"))
}

/// Packs a batch into one cell (see [`crate::packed`]).
fn pack(leaves: &[SequenceLeaf]) -> Result<Vec<u8>> {
    let mut packed = Vec::with_capacity(leaves.iter().map(|l| packed::packed_len(&l.data)).sum());
    for leaf in leaves {
        packed::push(&mut packed, &leaf.data, MYSQL_BACKEND)?;
    }
    Ok(packed)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `INSERT … VALUES (X'…', i), … ON DUPLICATE KEY UPDATE leaf_index = leaf_index`: keys already
/// present keep their first index; a key repeated within the batch keeps its lowest index because
/// rows are applied in order. Only hex digits and integers are interpolated.
fn dedup_insert(first: u64, leaves: &[SequenceLeaf]) -> String {
    let mut sql = String::from("INSERT INTO rekor_dedup (dedup_key, leaf_index) VALUES ");
    for (i, (index, leaf)) in (first..).zip(leaves).enumerate() {
        if i > 0 {
            sql.push(',');
        }
        let _ = write!(sql, "(X'{}',{index})", hex(&leaf.dedup_key));
    }
    sql.push_str(" ON DUPLICATE KEY UPDATE leaf_index = leaf_index");
    sql
}

fn server_code(error: &mysql_async::Error) -> Option<u16> {
    match error {
        mysql_async::Error::Server(server) => Some(server.code),
        _ => None,
    }
}

/// Adds `column` with `statement` if the coordination table predates it; a concurrent connect
/// adding it first is fine.
async fn ensure_column(conn: &mut impl Queryable, column: &str, statement: &str) -> Result<()> {
    let probe = conn
        .query_drop(format!(
            "SELECT {column} FROM rekor_coordination WHERE id = 0"
        ))
        .await;
    match probe {
        Ok(()) => Ok(()),
        Err(error) if server_code(&error) == Some(ER_BAD_FIELD_ERROR) => {
            tracing::info!("adding {column} to rekor_coordination");
            match conn.query_drop(statement).await {
                Err(error) if server_code(&error) != Some(ER_DUP_FIELDNAME) => {
                    Err(AwsError::Mysql(error).into())
                }
                _ => Ok(()),
            }
        }
        Err(error) => Err(AwsError::Mysql(error).into()),
    }
}

impl MysqlCoordinator {
    /// Connects, creates the tables and the coordination row if missing, and checks the row.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] when the server cannot be reached in time; [`Error::Other`] for refused
    /// credentials, missing privileges or a bad configuration.
    pub async fn connect(config: &MysqlConfig) -> Result<MysqlCoordinator> {
        let target = match &config.socket {
            Some(socket) => format!("unix:{socket}/{}", config.database),
            None => format!("{}:{}/{}", config.host, config.port, config.database),
        };
        let coordinator = MysqlCoordinator {
            pool: Pool::new(config.opts()?),
            timeout: config.timeout,
            target,
        };
        coordinator
            .bounded("connect", async {
                let mut conn = coordinator.pool.get_conn().await.map_err(AwsError::Mysql)?;
                for statement in SCHEMA {
                    conn.query_drop(statement).await.map_err(AwsError::Mysql)?;
                }
                ensure_column(&mut conn, "published_at", ADD_PUBLISHED_AT).await?;
                ensure_column(&mut conn, "frozen_at", ADD_FROZEN_AT).await
            })
            .await?;
        coordinator.state().await?;
        Ok(coordinator)
    }

    /// The log's search index, in the same database (its tables are created if missing).
    ///
    /// # Errors
    ///
    /// As for [`MysqlCoordinator::connect`].
    pub async fn search_index(&self) -> Result<super::MysqlSearchIndex> {
        super::MysqlSearchIndex::open(self.clone()).await
    }

    /// Closes the pool's connections.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] or [`Error::Other`] when a connection does not close cleanly.
    pub async fn disconnect(self) -> Result<()> {
        Ok(self.pool.disconnect().await.map_err(AwsError::Mysql)?)
    }

    pub(super) fn pool(&self) -> &Pool {
        &self.pool
    }

    pub(super) async fn bounded<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(AwsError::Timeout {
                    backend: MYSQL_BACKEND,
                    operation,
                    after: self.timeout,
                }
                .into())
            })
    }

    async fn read_frozen(conn: &mut impl Queryable) -> Result<Option<u64>> {
        let row: Option<(Option<u64>,)> = conn
            .query_first("SELECT frozen_at FROM rekor_coordination WHERE id = 0")
            .await
            .map_err(AwsError::Mysql)?;
        let (frozen,) =
            row.ok_or_else(|| AwsError::inconsistent("the coordination row is missing"))?;
        Ok(frozen)
    }

    async fn read_state(conn: &mut impl Queryable) -> Result<SequenceState> {
        let row: Option<(u64, u64)> = conn
            .query_first("SELECT integrated, next_index FROM rekor_coordination WHERE id = 0")
            .await
            .map_err(AwsError::Mysql)?;
        let (integrated, sequenced) =
            row.ok_or_else(|| AwsError::inconsistent("the coordination row is missing"))?;
        if integrated > sequenced {
            return Err(AwsError::inconsistent(format!(
                "integrated size {integrated} above sequenced size {sequenced}"
            ))
            .into());
        }
        Ok(SequenceState {
            integrated,
            sequenced,
        })
    }
}

#[async_trait]
impl Coordinator for MysqlCoordinator {
    async fn sequence(&self, leaves: &[SequenceLeaf]) -> Result<u64> {
        if leaves.is_empty() {
            return Ok(self.state().await?.sequenced);
        }
        let n = count(leaves.len())?;
        let packed = pack(leaves)?;
        self.bounded("sequence", async {
            let mut tx = self
                .pool
                .start_transaction(TxOpts::default())
                .await
                .map_err(AwsError::Mysql)?;
            // Takes the coordination row's lock until commit and returns the new value; a
            // frozen log's row matches nothing (a freeze holds the same row lock).
            tx.exec_drop(
                "UPDATE rekor_coordination SET next_index = LAST_INSERT_ID(next_index + ?) \
                 WHERE id = 0 AND frozen_at IS NULL",
                (n,),
            )
            .await
            .map_err(AwsError::Mysql)?;
            if tx.affected_rows() != 1 {
                let frozen = Self::read_frozen(&mut tx).await?;
                return Err(match frozen {
                    Some(size) => Error::Frozen { size },
                    None => AwsError::inconsistent("the coordination row is missing").into(),
                });
            }
            let next = tx
                .last_insert_id()
                .ok_or_else(|| AwsError::inconsistent("no next index returned"))?;
            let first = next
                .checked_sub(n)
                .ok_or_else(|| AwsError::inconsistent("next index below the batch size"))?;
            tx.exec_drop(
                "INSERT INTO rekor_sequenced (first_index, leaf_count, leaves) VALUES (?, ?, ?)",
                (first, n, packed),
            )
            .await
            .map_err(AwsError::Mysql)?;
            let mut chunk_first = first;
            for chunk in leaves.chunks(DEDUP_CHUNK) {
                tx.query_drop(dedup_insert(chunk_first, chunk))
                    .await
                    .map_err(AwsError::Mysql)?;
                chunk_first = chunk_first.saturating_add(count(chunk.len())?);
            }
            tx.commit().await.map_err(AwsError::Mysql)?;
            Ok(first)
        })
        .await
    }

    /// One statement under the row lock: `frozen_at` becomes the next index, unless it is set.
    async fn freeze(&self) -> Result<u64> {
        self.bounded("freeze", async {
            let mut tx = self
                .pool
                .start_transaction(TxOpts::default())
                .await
                .map_err(AwsError::Mysql)?;
            tx.query_drop(
                "UPDATE rekor_coordination SET frozen_at = next_index \
                 WHERE id = 0 AND frozen_at IS NULL",
            )
            .await
            .map_err(AwsError::Mysql)?;
            let frozen = Self::read_frozen(&mut tx).await?;
            tx.commit().await.map_err(AwsError::Mysql)?;
            frozen.ok_or_else(|| AwsError::inconsistent("the freeze did not stick").into())
        })
        .await
    }

    async fn frozen(&self) -> Result<Option<u64>> {
        self.bounded("frozen", async {
            let mut conn = self.pool.get_conn().await.map_err(AwsError::Mysql)?;
            Self::read_frozen(&mut conn).await
        })
        .await
    }

    async fn lookup(&self, dedup_keys: &[[u8; 32]]) -> Result<Vec<Option<u64>>> {
        if dedup_keys.is_empty() {
            return Ok(Vec::new());
        }
        self.bounded("lookup", async {
            let mut conn = self.pool.get_conn().await.map_err(AwsError::Mysql)?;
            let mut found = std::collections::HashMap::with_capacity(dedup_keys.len());
            for chunk in dedup_keys.chunks(DEDUP_CHUNK) {
                let mut sql = String::from(
                    "SELECT dedup_key, leaf_index FROM rekor_dedup WHERE dedup_key IN (",
                );
                for (i, key) in chunk.iter().enumerate() {
                    if i > 0 {
                        sql.push(',');
                    }
                    let _ = write!(sql, "X'{}'", hex(key));
                }
                sql.push(')');
                let rows: Vec<(Vec<u8>, u64)> = conn.query(sql).await.map_err(AwsError::Mysql)?;
                for (key, index) in rows {
                    let key = <[u8; 32]>::try_from(key.as_slice())
                        .map_err(|_| AwsError::CorruptDedupKey)?;
                    found.insert(key, index);
                }
            }
            Ok(dedup_keys.iter().map(|k| found.get(k).copied()).collect())
        })
        .await
    }

    async fn state(&self) -> Result<SequenceState> {
        self.bounded("state", async {
            let mut conn = self.pool.get_conn().await.map_err(AwsError::Mysql)?;
            Self::read_state(&mut conn).await
        })
        .await
    }

    async fn read_sequenced(&self, from: u64, to: u64) -> Result<Vec<Bytes>> {
        if from >= to {
            return Ok(Vec::new());
        }
        self.bounded("read_sequenced", async {
            // One consistent snapshot for the state and the batches.
            let mut options = TxOpts::default();
            options.with_consistent_snapshot(true);
            let mut tx = self
                .pool
                .start_transaction(options)
                .await
                .map_err(AwsError::Mysql)?;
            let state = Self::read_state(&mut tx).await?;
            let mut range = packed::LeafRange::new(from, to, state, MYSQL_BACKEND)?;
            let rows: Vec<(u64, u64, Vec<u8>)> = tx
                .exec(
                    "SELECT first_index, leaf_count, leaves FROM rekor_sequenced \
                     WHERE first_index < ? AND first_index + leaf_count > ? ORDER BY first_index",
                    (to, from),
                )
                .await
                .map_err(AwsError::Mysql)?;
            tx.commit().await.map_err(AwsError::Mysql)?;
            for (first, leaf_count, packed) in rows {
                range.push_row(first, leaf_count, &packed)?;
            }
            range.finish()
        })
        .await
    }

    async fn mark_integrated(&self, from: u64, to: u64) -> Result<()> {
        self.bounded("mark_integrated", async {
            let mut tx = self
                .pool
                .start_transaction(TxOpts::default())
                .await
                .map_err(AwsError::Mysql)?;
            let row: Option<(u64, u64)> = tx
                .query_first(
                    "SELECT integrated, next_index FROM rekor_coordination WHERE id = 0 FOR UPDATE",
                )
                .await
                .map_err(AwsError::Mysql)?;
            let (integrated, sequenced) =
                row.ok_or_else(|| AwsError::inconsistent("the coordination row is missing"))?;
            if integrated != from || to < from || to > sequenced {
                // Dropping the transaction rolls it back; nothing was changed.
                return Err(Error::Precondition {
                    what: "integrated size",
                    expected: from.to_string(),
                    found: integrated.to_string(),
                });
            }
            tx.exec_drop(
                "UPDATE rekor_coordination SET integrated = ? WHERE id = 0",
                (to,),
            )
            .await
            .map_err(AwsError::Mysql)?;
            tx.exec_drop(
                "DELETE FROM rekor_sequenced WHERE first_index < ? AND first_index + leaf_count <= ?",
                (to, to),
            )
            .await
            .map_err(AwsError::Mysql)?;
            tx.commit().await.map_err(AwsError::Mysql)?;
            Ok(())
        })
        .await
    }

    /// One autocommit `UPDATE` (`CLAIM_PUBLICATION`) on the coordination row; granted when it
    /// changed the row (always, for a zero interval).
    async fn claim_publication(&self, min_interval: Duration) -> Result<bool> {
        // Longer intervals are cut to a century, so the subtraction stays in the DATETIME range.
        let interval = u64::try_from(min_interval.as_micros())
            .unwrap_or(u64::MAX)
            .min(MAX_CLAIM_INTERVAL_MICROS);
        self.bounded("claim_publication", async {
            let mut conn = self.pool.get_conn().await.map_err(AwsError::Mysql)?;
            conn.exec_drop(CLAIM_PUBLICATION, (interval, interval))
                .await
                .map_err(AwsError::Mysql)?;
            Ok(interval == 0 || conn.affected_rows() == 1)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(key: u8, data: &[u8]) -> SequenceLeaf {
        SequenceLeaf {
            dedup_key: [key; 32],
            data: Bytes::copy_from_slice(data),
        }
    }

    #[test]
    fn batches_pack_and_unpack() {
        let leaves = [leaf(1, b""), leaf(2, b"abc"), leaf(3, &[0u8; 300])];
        let packed = pack(&leaves).unwrap();
        assert_eq!(packed.len(), 4 * 3 + 3 + 300);
        let unpacked = packed::unpack(&packed, 3, MYSQL_BACKEND).unwrap();
        assert_eq!(
            unpacked,
            leaves.iter().map(|l| l.data.clone()).collect::<Vec<_>>()
        );
        assert!(packed::unpack(&packed, 2, MYSQL_BACKEND).is_err());
        assert!(packed::unpack(packed.get(..packed.len() - 1).unwrap(), 3, MYSQL_BACKEND).is_err());
    }

    #[test]
    fn dedup_statement_interpolates_only_hex_and_numbers() {
        let sql = dedup_insert(7, &[leaf(0xab, b"x"), leaf(1, b"y")]);
        assert!(sql.contains(&format!(
            "(X'{}',7),(X'{}',8)",
            "ab".repeat(32),
            "01".repeat(32)
        )));
        assert!(sql.ends_with("ON DUPLICATE KEY UPDATE leaf_index = leaf_index"));
    }
}
