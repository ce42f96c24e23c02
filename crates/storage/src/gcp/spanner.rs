//! [`Coordinator`] on Cloud Spanner: one coordination row, packed sequenced leaves, a dedup table.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use gcloud_gax::conn::Environment;
use gcloud_gax::grpc::Code;
use gcloud_googleapis::spanner::admin::database::v1::{
    GetDatabaseDdlRequest, UpdateDatabaseDdlRequest,
};
use gcloud_spanner::admin::AdminClientConfig;
use gcloud_spanner::admin::client::Client as AdminClient;
use gcloud_spanner::client::{Client, ClientConfig, Error as SpannerError};
use gcloud_spanner::key::Key;
use gcloud_spanner::mutation::{insert, update};
use gcloud_spanner::row::Row;
use gcloud_spanner::statement::Statement;
use gcloud_spanner::transaction::Transaction;
use gcloud_spanner::transaction_rw::ReadWriteTransaction;

use super::error::status_is_transient;
use super::{DEFAULT_TIMEOUT, GcpError, SPANNER, with_timeout};
use crate::packed;
use crate::{Coordinator, Error, Result, SequenceLeaf, SequenceState};

/// The standard variable that points Spanner clients at an emulator (`host:port` of its gRPC server).
pub const SPANNER_EMULATOR_HOST: &str = "SPANNER_EMULATOR_HOST";

/// The most leaf bytes (with their 4-byte length prefixes) packed into one `RekorSequenced` row,
/// well under Spanner's 10 MiB cell limit.
pub const MAX_CHUNK_BYTES: usize = 8 << 20;

const COORDINATION: &str = "RekorCoordination";
const SEQUENCED: &str = "RekorSequenced";
const DEDUP: &str = "RekorDedup";
/// The key of the one coordination row.
const COORDINATION_ID: i64 = 0;
/// The coordination row's column holding the commit timestamp of the last publication claim.
const PUBLISHED_AT: &str = "PublishedAt";
/// Adds [`PUBLISHED_AT`] to a coordination table created before publication claims existed.
const ADD_PUBLISHED_AT: &str = "ALTER TABLE RekorCoordination ADD COLUMN PublishedAt TIMESTAMP \
     OPTIONS (allow_commit_timestamp = true)";

/// The coordination row's column holding the final size of a frozen log (NULL: not frozen).
const FROZEN_AT: &str = "FrozenAt";
/// Adds [`FROZEN_AT`] to a coordination table created before freezing existed.
const ADD_FROZEN_AT: &str = "ALTER TABLE RekorCoordination ADD COLUMN FrozenAt INT64";

/// Grants a claim, stamped with the commit timestamp, when the last one is at least `@interval`
/// microseconds old by Spanner's clock (or there is none, or `@interval` is 0). Two concurrent
/// claims conflict on the row; Spanner aborts one, and its retry sees the winner's claim.
const CLAIM_PUBLICATION: &str = "UPDATE RekorCoordination SET PublishedAt = PENDING_COMMIT_TIMESTAMP() \
     WHERE Id = 0 AND (@interval = 0 OR PublishedAt IS NULL \
     OR TIMESTAMP_DIFF(CURRENT_TIMESTAMP(), PublishedAt, MICROSECOND) >= @interval)";

const SCHEMA: [(&str, &str); 5] = [
    (
        COORDINATION,
        "CREATE TABLE IF NOT EXISTS RekorCoordination (\
         Id INT64 NOT NULL, NextIndex INT64 NOT NULL, IntegratedSize INT64 NOT NULL, \
         PublishedAt TIMESTAMP OPTIONS (allow_commit_timestamp = true), FrozenAt INT64\
         ) PRIMARY KEY (Id)",
    ),
    (
        SEQUENCED,
        "CREATE TABLE IF NOT EXISTS RekorSequenced (\
         FirstIndex INT64 NOT NULL, LeafCount INT64 NOT NULL, Leaves BYTES(MAX) NOT NULL\
         ) PRIMARY KEY (FirstIndex)",
    ),
    (
        DEDUP,
        "CREATE TABLE IF NOT EXISTS RekorDedup (\
         DedupKey BYTES(32) NOT NULL, LeafIndex INT64 NOT NULL\
         ) PRIMARY KEY (DedupKey)",
    ),
    (super::search::PROGRESS, super::search::PROGRESS_DDL),
    (super::search::POSTINGS, super::search::POSTINGS_DDL),
];

/// Which Spanner database [`SpannerCoordinator`] uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpannerConfig {
    /// `projects/<P>/instances/<I>/databases/<D>` (the `--gcp-spanner` flag). The database must exist;
    /// the tables are created if missing.
    pub database: String,
    /// The emulator's gRPC `host:port`, used with no credentials. `None` means Cloud Spanner with
    /// Application Default Credentials.
    pub emulator_host: Option<String>,
    /// The time limit for each coordinator call (all its round trips and retries together).
    pub timeout: Duration,
}

impl SpannerConfig {
    /// A config for `database`, honouring `SPANNER_EMULATOR_HOST`.
    pub fn new(database: impl Into<String>) -> Self {
        SpannerConfig {
            database: database.into(),
            emulator_host: std::env::var(SPANNER_EMULATOR_HOST)
                .ok()
                .filter(|host| !host.is_empty()),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the emulator's gRPC address.
    #[must_use]
    pub fn with_emulator(mut self, host: impl Into<String>) -> Self {
        self.emulator_host = Some(host.into());
        self
    }
}

/// The Cloud Spanner [`Coordinator`], safe to share between several frontends (processes).
#[derive(Clone)]
pub struct SpannerCoordinator {
    client: Client,
    database: String,
    timeout: Duration,
}

impl std::fmt::Debug for SpannerCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpannerCoordinator")
            .field("database", &self.database)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn is_aborted(error: &SpannerError) -> bool {
    matches!(error, SpannerError::GRPC(status) if status.code() == Code::Aborted)
}

pub(super) fn to_i64(value: u64) -> Result<i64, GcpError> {
    i64::try_from(value).map_err(|_| GcpError::Corrupt {
        what: "index beyond INT64",
    })
}

pub(super) fn to_u64(value: i64, what: &'static str) -> Result<u64, GcpError> {
    u64::try_from(value).map_err(|_| GcpError::Corrupt { what })
}

/// What a transaction body returns: a storage-level result, or a Spanner error (which aborts the
/// transaction and, for `ABORTED`, retries it).
type TxOutput<T> = std::result::Result<Result<T>, SpannerError>;
type TxFuture<'tx, T> = Pin<Box<dyn Future<Output = TxOutput<T>> + Send + 'tx>>;

/// Reads and checks the coordination row.
async fn read_state(tx: &mut Transaction) -> TxOutput<SequenceState> {
    Ok(read_coordination(tx).await?.map(|(state, _)| state))
}

/// Reads and checks the coordination row: the sizes, and the final size if the log is frozen.
async fn read_coordination(tx: &mut Transaction) -> TxOutput<(SequenceState, Option<u64>)> {
    let row = tx
        .read_row(
            COORDINATION,
            &["NextIndex", "IntegratedSize", FROZEN_AT],
            Key::new(&COORDINATION_ID),
        )
        .await?;
    let Some(row) = row else {
        return Ok(Err(GcpError::Corrupt {
            what: "missing coordination row",
        }
        .into()));
    };
    let frozen: Option<i64> = row.column_by_name(FROZEN_AT)?;
    let state = match decode_state(&row)? {
        Ok(state) => state,
        Err(error) => return Ok(Err(error)),
    };
    Ok(frozen
        .map(|size| to_u64(size, "negative frozen size"))
        .transpose()
        .map(|frozen| (state, frozen))
        .map_err(Into::into))
}

fn decode_state(row: &Row) -> std::result::Result<Result<SequenceState>, SpannerError> {
    let next: i64 = row.column_by_name("NextIndex")?;
    let integrated: i64 = row.column_by_name("IntegratedSize")?;
    Ok((|| {
        let state = SequenceState {
            sequenced: to_u64(next, "negative next index")?,
            integrated: to_u64(integrated, "negative integrated size")?,
        };
        if state.integrated > state.sequenced {
            return Err(GcpError::Corrupt {
                what: "integrated size beyond sequenced size",
            }
            .into());
        }
        Ok(state)
    })())
}

/// A run of consecutive leaves stored in one `RekorSequenced` row.
#[derive(Debug, PartialEq, Eq)]
struct Chunk {
    /// The first leaf's position within the batch.
    offset: u64,
    /// How many leaves the row holds.
    count: u64,
    /// Each leaf as a big-endian `u32` length and its bytes.
    packed: Vec<u8>,
}

/// Packs leaves into chunks of at most [`MAX_CHUNK_BYTES`] (a larger leaf gets a chunk of its own).
fn pack(leaves: &[SequenceLeaf]) -> Result<Vec<Chunk>> {
    let mut chunks: Vec<Chunk> = Vec::new();
    for (position, leaf) in (0u64..).zip(leaves) {
        let size = packed::packed_len(&leaf.data);
        let fits = chunks
            .last()
            .is_some_and(|last| last.packed.len() + size <= MAX_CHUNK_BYTES);
        if !fits {
            chunks.push(Chunk {
                offset: position,
                count: 0,
                packed: Vec::with_capacity(size.min(MAX_CHUNK_BYTES)),
            });
        }
        if let Some(chunk) = chunks.last_mut() {
            packed::push(&mut chunk.packed, &leaf.data, SPANNER)?;
            chunk.count += 1;
        }
    }
    Ok(chunks)
}

/// A small random delay factor for retry backoff, without an RNG dependency.
fn jitter(base: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    base + Duration::from_micros(random % 1_000 * u64::try_from(base.as_millis()).unwrap_or(1))
}

impl SpannerCoordinator {
    /// Connects to `config.database`, creates the tables and the coordination row if they are
    /// missing, and returns the coordinator. Uses Application Default Credentials unless an emulator is
    /// configured.
    ///
    /// # Errors
    ///
    /// [`Error::Other`] for a malformed database name, missing credentials or a refused schema change;
    /// [`Error::Unavailable`] when Spanner cannot be reached within the time limit.
    pub async fn connect(config: SpannerConfig) -> Result<SpannerCoordinator> {
        check_database_name(&config.database)?;
        with_timeout(SPANNER, "connect", config.timeout, async {
            ensure_schema(&config).await?;
            let mut client_config = ClientConfig::default();
            client_config.channel_config.timeout = config.timeout;
            client_config.channel_config.connect_timeout = config.timeout;
            let client_config = match &config.emulator_host {
                Some(host) => ClientConfig {
                    environment: Environment::Emulator(host.clone()),
                    ..client_config
                },
                None => client_config
                    .with_auth()
                    .await
                    .map_err(GcpError::SpannerAuth)?,
            };
            let client = Client::new(config.database.clone(), client_config)
                .await
                .map_err(GcpError::Spanner)?;
            let coordinator = SpannerCoordinator {
                client,
                database: config.database.clone(),
                timeout: config.timeout,
            };
            coordinator.ensure_coordination_row().await?;
            Ok(coordinator)
        })
        .await
    }

    /// The database name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The log's search index, in the same database (its tables are created with the
    /// coordinator's).
    pub fn search_index(&self) -> super::SpannerSearchIndex {
        super::SpannerSearchIndex::new(self.clone())
    }

    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    async fn ensure_coordination_row(&self) -> Result<()> {
        self.transact(|tx| {
            Box::pin(async move {
                let row = tx
                    .read_row(COORDINATION, &["Id"], Key::new(&COORDINATION_ID))
                    .await?;
                if row.is_none() {
                    tx.buffer_write(vec![insert(
                        COORDINATION,
                        &["Id", "NextIndex", "IntegratedSize"],
                        &[&COORDINATION_ID, &0i64, &0i64],
                    )]);
                }
                Ok(Ok(()))
            })
        })
        .await
    }

    /// Runs `body` in a read-write transaction, retrying on `ABORTED` (contention) until it commits.
    /// The caller's time limit bounds the retries.
    pub(super) async fn transact<T, F>(&self, body: F) -> Result<T>
    where
        F: for<'tx> Fn(&'tx mut ReadWriteTransaction) -> TxFuture<'tx, T>,
    {
        let mut delay = Duration::from_millis(10);
        loop {
            match self.client.read_write_transaction(&body).await {
                Ok((_, result)) => return result,
                Err(error) if is_aborted(&error) => {
                    tokio::time::sleep(jitter(delay)).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(error) => return Err(GcpError::Spanner(error).into()),
            }
        }
    }

    pub(super) async fn limited<T>(
        &self,
        what: &'static str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        with_timeout(SPANNER, what, self.timeout, work).await
    }
}

fn check_database_name(name: &str) -> Result<()> {
    let parts: Vec<&str> = name.split('/').collect();
    let valid = matches!(
        parts.as_slice(),
        ["projects", p, "instances", i, "databases", d]
            if !p.is_empty() && !i.is_empty() && !d.is_empty()
    );
    if valid {
        Ok(())
    } else {
        Err(GcpError::InvalidDatabaseName(name.to_owned()).into())
    }
}

/// Creates the tables that are missing (one schema change, only when one is missing).
async fn ensure_schema(config: &SpannerConfig) -> Result<()> {
    let admin_config = match &config.emulator_host {
        Some(host) => AdminClientConfig {
            environment: Environment::Emulator(host.clone()),
            timeout: config.timeout,
            connect_timeout: config.timeout,
            ..AdminClientConfig::default()
        },
        None => AdminClientConfig {
            timeout: config.timeout,
            connect_timeout: config.timeout,
            ..AdminClientConfig::default()
        }
        .with_auth()
        .await
        .map_err(GcpError::SpannerAuth)?,
    };
    let admin = AdminClient::new(admin_config)
        .await
        .map_err(GcpError::SpannerAdmin)?;
    let missing = missing_statements(&read_ddl(&admin, &config.database).await?);
    if missing.is_empty() {
        return Ok(());
    }
    tracing::info!(database = %config.database, statements = ?missing, "updating the Spanner schema");
    let result = match admin
        .database()
        .update_database_ddl(
            UpdateDatabaseDdlRequest {
                database: config.database.clone(),
                statements: missing,
                ..UpdateDatabaseDdlRequest::default()
            },
            None,
        )
        .await
    {
        Ok(mut operation) => operation.wait(None).await.map(drop),
        Err(status) => Err(status),
    };
    match result {
        Ok(()) => Ok(()),
        Err(status) if status_is_transient(&status) => Err(GcpError::SpannerStatus(status).into()),
        // Another frontend connecting at the same time may have made the same change first.
        Err(status) => {
            if missing_statements(&read_ddl(&admin, &config.database).await?).is_empty() {
                tracing::debug!(database = %config.database, %status, "schema change raced another connect");
                Ok(())
            } else {
                Err(GcpError::SpannerStatus(status).into())
            }
        }
    }
}

async fn read_ddl(admin: &AdminClient, database: &str) -> Result<Vec<String>> {
    Ok(admin
        .database()
        .get_database_ddl(
            GetDatabaseDdlRequest {
                database: database.to_owned(),
            },
            None,
        )
        .await
        .map_err(GcpError::SpannerStatus)?
        .into_inner()
        .statements)
}

/// The DDL statements that bring a database with schema `ddl` up to date: the missing tables, and
/// the [`PUBLISHED_AT`] column if the coordination table predates it.
fn missing_statements(ddl: &[String]) -> Vec<String> {
    let table = |name: &str| {
        ddl.iter().find(|statement| {
            statement
                .strip_prefix("CREATE TABLE ")
                .and_then(|rest| rest.strip_prefix(name))
                .is_some_and(|rest| rest.starts_with([' ', '(']))
        })
    };
    let mut missing: Vec<String> = SCHEMA
        .iter()
        .filter(|(name, _)| table(name).is_none())
        .map(|(_, statement)| (*statement).to_owned())
        .collect();
    if table(COORDINATION).is_some_and(|statement| !statement.contains(PUBLISHED_AT)) {
        missing.push(ADD_PUBLISHED_AT.to_owned());
    }
    if table(COORDINATION).is_some_and(|statement| !statement.contains(FROZEN_AT)) {
        missing.push(ADD_FROZEN_AT.to_owned());
    }
    missing
}

#[async_trait]
impl Coordinator for SpannerCoordinator {
    /// One read-write transaction: reads the coordination row and the batch's dedup keys, then
    /// commits the packed leaves, the new dedup rows and the next index.
    async fn sequence(&self, leaves: &[SequenceLeaf]) -> Result<u64> {
        if leaves.is_empty() {
            return self.state().await.map(|state| state.sequenced);
        }
        let chunks = Arc::new(pack(leaves)?);
        let keys: Arc<Vec<[u8; 32]>> = Arc::new(leaves.iter().map(|l| l.dedup_key).collect());
        let count =
            u64::try_from(leaves.len()).map_err(|_| GcpError::Corrupt { what: "batch size" })?;
        self.limited(
            "sequence",
            self.transact(|tx| {
                let chunks = Arc::clone(&chunks);
                let keys = Arc::clone(&keys);
                Box::pin(async move {
                    // The freeze is read in the same transaction: a concurrent freeze and
                    // this commit conflict on the row, and one of them goes first.
                    let state = match read_coordination(tx).await? {
                        Ok((_, Some(size))) => return Ok(Err(Error::Frozen { size })),
                        Ok((state, None)) => state,
                        Err(error) => return Ok(Err(error)),
                    };
                    let first = state.sequenced;
                    let Some(next) = first.checked_add(count) else {
                        return Ok(Err(GcpError::Corrupt {
                            what: "sequence overflow",
                        }
                        .into()));
                    };
                    let lookup: Vec<Key> = keys.iter().map(|k| Key::new(&k.to_vec())).collect();
                    let mut existing: HashSet<Vec<u8>> = HashSet::new();
                    let mut rows = tx.read(DEDUP, &["DedupKey"], lookup).await?;
                    while let Some(row) = rows.next().await? {
                        existing.insert(row.column_by_name::<Vec<u8>>("DedupKey")?);
                    }
                    drop(rows);
                    let mut mutations = Vec::with_capacity(chunks.len() + keys.len() + 1);
                    let result = (|| -> Result<()> {
                        for chunk in chunks.iter() {
                            let first_index = to_i64(first + chunk.offset)?;
                            let leaf_count = to_i64(chunk.count)?;
                            mutations.push(insert(
                                SEQUENCED,
                                &["FirstIndex", "LeafCount", "Leaves"],
                                &[&first_index, &leaf_count, &chunk.packed.as_slice()],
                            ));
                        }
                        for (position, key) in (0u64..).zip(keys.iter()) {
                            // The first index wins: keys already recorded, and repeats within
                            // this batch, are not written again.
                            if existing.insert(key.to_vec()) {
                                let index = to_i64(first + position)?;
                                mutations.push(insert(
                                    DEDUP,
                                    &["DedupKey", "LeafIndex"],
                                    &[&key.as_slice(), &index],
                                ));
                            }
                        }
                        let next = to_i64(next)?;
                        mutations.push(update(
                            COORDINATION,
                            &["Id", "NextIndex"],
                            &[&COORDINATION_ID, &next],
                        ));
                        Ok(())
                    })();
                    if let Err(error) = result {
                        return Ok(Err(error));
                    }
                    tx.buffer_write(mutations);
                    Ok(Ok(first))
                })
            }),
        )
        .await
    }

    /// One read-write transaction: sets `FrozenAt` to the next index unless it is set already.
    async fn freeze(&self) -> Result<u64> {
        self.limited(
            "freeze",
            self.transact(|tx| {
                Box::pin(async move {
                    let state = match read_coordination(tx).await? {
                        Ok((_, Some(size))) => return Ok(Ok(size)),
                        Ok((state, None)) => state,
                        Err(error) => return Ok(Err(error)),
                    };
                    let size = match to_i64(state.sequenced) {
                        Ok(size) => size,
                        Err(error) => return Ok(Err(error.into())),
                    };
                    tx.buffer_write(vec![update(
                        COORDINATION,
                        &["Id", FROZEN_AT],
                        &[&COORDINATION_ID, &size],
                    )]);
                    Ok(Ok(state.sequenced))
                })
            }),
        )
        .await
    }

    async fn frozen(&self) -> Result<Option<u64>> {
        self.limited("frozen", async {
            let mut tx = self.client.single().await.map_err(GcpError::Spanner)?;
            read_coordination(&mut tx)
                .await
                .map_err(GcpError::Spanner)?
                .map(|(_, frozen)| frozen)
        })
        .await
    }

    /// One strong single-use read of the dedup table.
    async fn lookup(&self, dedup_keys: &[[u8; 32]]) -> Result<Vec<Option<u64>>> {
        if dedup_keys.is_empty() {
            return Ok(Vec::new());
        }
        self.limited("lookup", async {
            let mut tx = self.client.single().await.map_err(GcpError::Spanner)?;
            let keys: Vec<Key> = dedup_keys.iter().map(|k| Key::new(&k.to_vec())).collect();
            let mut rows = tx
                .read(DEDUP, &["DedupKey", "LeafIndex"], keys)
                .await
                .map_err(GcpError::SpannerStatus)?;
            let mut found: HashMap<Vec<u8>, u64> = HashMap::new();
            while let Some(row) = rows.next().await.map_err(GcpError::SpannerStatus)? {
                let key: Vec<u8> = row
                    .column_by_name("DedupKey")
                    .map_err(|e| GcpError::Spanner(e.into()))?;
                let index: i64 = row
                    .column_by_name("LeafIndex")
                    .map_err(|e| GcpError::Spanner(e.into()))?;
                found.insert(key, to_u64(index, "negative dedup index")?);
            }
            Ok(dedup_keys
                .iter()
                .map(|key| found.get(key.as_slice()).copied())
                .collect())
        })
        .await
    }

    async fn state(&self) -> Result<SequenceState> {
        self.limited("state", async {
            let mut tx = self.client.single().await.map_err(GcpError::Spanner)?;
            read_state(&mut tx).await.map_err(GcpError::Spanner)?
        })
        .await
    }

    /// One read-only transaction: the coordination row, then the rows overlapping `from..to`.
    async fn read_sequenced(&self, from: u64, to: u64) -> Result<Vec<Bytes>> {
        if from >= to {
            return Ok(Vec::new());
        }
        self.limited("read_sequenced", async {
            let mut tx = self
                .client
                .read_only_transaction()
                .await
                .map_err(GcpError::Spanner)?;
            let state = read_state(&mut tx).await.map_err(GcpError::Spanner)??;
            let mut range = packed::LeafRange::new(from, to, state, SPANNER)?;
            let mut statement = Statement::new(
                "SELECT FirstIndex, LeafCount, Leaves FROM RekorSequenced \
                 WHERE FirstIndex < @to AND FirstIndex + LeafCount > @from ORDER BY FirstIndex",
            );
            statement.add_param("from", &to_i64(from)?);
            statement.add_param("to", &to_i64(to)?);
            let mut rows = tx.query(statement).await.map_err(GcpError::SpannerStatus)?;
            while let Some(row) = rows.next().await.map_err(GcpError::SpannerStatus)? {
                let parse = |e: gcloud_spanner::row::Error| GcpError::Spanner(e.into());
                let first: i64 = row.column_by_name("FirstIndex").map_err(parse)?;
                let count: i64 = row.column_by_name("LeafCount").map_err(parse)?;
                let packed: Vec<u8> = row.column_by_name("Leaves").map_err(parse)?;
                range.push_row(
                    to_u64(first, "negative sequenced index")?,
                    to_u64(count, "leaf count")?,
                    &packed,
                )?;
            }
            range.finish()
        })
        .await
    }

    /// One read-write transaction: reads the coordination row, deletes the rows wholly below `to`
    /// and sets the integrated size, if it was still `from`.
    async fn mark_integrated(&self, from: u64, to: u64) -> Result<()> {
        let to_index = to_i64(to)?;
        self.limited(
            "mark_integrated",
            self.transact(|tx| {
                Box::pin(async move {
                    let state = match read_state(tx).await? {
                        Ok(state) => state,
                        Err(error) => return Ok(Err(error)),
                    };
                    if state.integrated != from || to < from || to > state.sequenced {
                        return Ok(Err(Error::Precondition {
                            what: "integrated size",
                            expected: from.to_string(),
                            found: state.integrated.to_string(),
                        }));
                    }
                    let mut statement = Statement::new(
                        "DELETE FROM RekorSequenced WHERE FirstIndex + LeafCount <= @to",
                    );
                    statement.add_param("to", &to_index);
                    tx.update(statement).await?;
                    tx.buffer_write(vec![update(
                        COORDINATION,
                        &["Id", "IntegratedSize"],
                        &[&COORDINATION_ID, &to_index],
                    )]);
                    Ok(Ok(()))
                })
            }),
        )
        .await
    }

    /// One read-write transaction with one DML statement (`CLAIM_PUBLICATION`): the claim's
    /// time is the commit timestamp and its age is measured by Spanner's clock, so the frontends'
    /// clocks do not matter. Granted when the statement updated the row.
    async fn claim_publication(&self, min_interval: Duration) -> Result<bool> {
        // An interval beyond INT64 microseconds (292,000 years) never elapses.
        let interval = i64::try_from(min_interval.as_micros()).unwrap_or(i64::MAX);
        self.limited(
            "claim_publication",
            self.transact(|tx| {
                Box::pin(async move {
                    let mut statement = Statement::new(CLAIM_PUBLICATION);
                    statement.add_param("interval", &interval);
                    let updated = tx.update(statement).await?;
                    Ok(Ok(updated == 1))
                })
            }),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(size: usize, fill: u8) -> SequenceLeaf {
        SequenceLeaf {
            dedup_key: [fill; 32],
            data: Bytes::from(vec![fill; size]),
        }
    }

    #[test]
    fn packs_leaves_into_bounded_chunks() {
        let leaves = vec![
            leaf(3, 1),
            leaf(0, 2),
            leaf(MAX_CHUNK_BYTES / 2, 3),
            leaf(MAX_CHUNK_BYTES / 2, 4),
            leaf(MAX_CHUNK_BYTES + 10, 5),
            leaf(1, 6),
        ];
        let chunks = pack(&leaves).unwrap();
        let shape: Vec<(u64, u64)> = chunks.iter().map(|c| (c.offset, c.count)).collect();
        assert_eq!(shape, vec![(0, 3), (3, 1), (4, 1), (5, 1)]);
        assert!(
            chunks[..2]
                .iter()
                .all(|c| c.packed.len() <= MAX_CHUNK_BYTES)
        );
        let unpacked: Vec<Bytes> = chunks
            .iter()
            .flat_map(|c| packed::unpack(&c.packed, c.count, SPANNER).unwrap())
            .collect();
        let original: Vec<Bytes> = leaves.into_iter().map(|l| l.data).collect();
        assert_eq!(unpacked, original);
    }

    #[test]
    fn unpack_rejects_corrupt_rows() {
        assert!(packed::unpack(&[0, 0, 0, 5, 1], 1, SPANNER).is_err());
        assert!(packed::unpack(&[0, 0, 0, 1, 9], 2, SPANNER).is_err());
        assert!(packed::unpack(&[0, 0], 1, SPANNER).is_err());
        assert_eq!(
            packed::unpack(&[], 0, SPANNER).unwrap(),
            Vec::<Bytes>::new()
        );
    }

    #[test]
    fn schema_updates_add_missing_tables_and_the_claim_column() {
        // As the database reports its schema: no IF NOT EXISTS, its own layout.
        let current: Vec<String> = [
            "CREATE TABLE RekorCoordination (\n  Id INT64 NOT NULL,\n  NextIndex INT64 NOT NULL,\n  \
             IntegratedSize INT64 NOT NULL,\n  PublishedAt TIMESTAMP OPTIONS (\n    \
             allow_commit_timestamp = true\n  ),\n  FrozenAt INT64,\n) PRIMARY KEY(Id)",
            "CREATE TABLE RekorSequenced (\n  FirstIndex INT64 NOT NULL,\n) PRIMARY KEY(FirstIndex)",
            "CREATE TABLE RekorDedup (\n  DedupKey BYTES(32) NOT NULL,\n) PRIMARY KEY(DedupKey)",
            "CREATE TABLE RekorSearchProgress (\n  Id INT64 NOT NULL,\n) PRIMARY KEY(Id)",
            "CREATE TABLE RekorSearchPostings (\n  TermPrefix INT64 NOT NULL,\n) PRIMARY KEY(TermPrefix)",
        ]
        .map(str::to_owned)
        .to_vec();
        assert!(missing_statements(&current).is_empty());
        let older = vec![
            "CREATE TABLE RekorCoordination (\n  Id INT64 NOT NULL,\n  NextIndex INT64 NOT NULL,\n  \
             IntegratedSize INT64 NOT NULL,\n) PRIMARY KEY(Id)"
                .to_owned(),
            "CREATE TABLE RekorDedup (\n  DedupKey BYTES(32) NOT NULL,\n  LeafIndex INT64 NOT NULL,\n) \
             PRIMARY KEY(DedupKey)"
                .to_owned(),
        ];
        assert_eq!(
            missing_statements(&older),
            vec![
                SCHEMA[1].1.to_owned(),
                SCHEMA[3].1.to_owned(),
                SCHEMA[4].1.to_owned(),
                ADD_PUBLISHED_AT.to_owned(),
                ADD_FROZEN_AT.to_owned()
            ]
        );
        assert_eq!(
            missing_statements(&[]),
            SCHEMA
                .iter()
                .map(|(_, s)| (*s).to_owned())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn database_names_are_checked() {
        assert!(check_database_name("projects/p/instances/i/databases/d").is_ok());
        for bad in [
            "",
            "projects/p/instances/i",
            "projects//instances/i/databases/d",
            "x/p/instances/i/databases/d",
        ] {
            assert!(check_database_name(bad).is_err(), "{bad}");
        }
    }
}
