//! The log pipeline: dedup, pushback, batching, sequencing, integration and publication.
//!
//! A [`Log`] is a handle to one pipeline task that owns the tree. [`Log::add`] takes the canonical
//! bytes of a validated entry and resolves once a signed checkpoint that covers the entry is
//! durable, with the entry's index, its inclusion proof (computed from in-memory tiles and verified
//! before it is returned) and that checkpoint:
//!
//! ```text
//! add ──dedup (cache, coordinator)──pushback──▶ batch ──▶ sequence (durable indices, dedup index)
//!     ──▶ integrate (tiles, entry bundles) ──▶ publish (sign + swap checkpoint) ──▶ wake each waiter
//! ```
//!
//! The log never acknowledges an entry before its checkpoint is durable, and never signs a
//! checkpoint that is not an extension of the one in storage: [`Log::open`] finishes integrating
//! whatever was sequenced before a crash, and checks the stored checkpoint against the tiles.
//!
//! With [`LogConfig::witnesses`] set, each checkpoint is cosigned by witnesses (see
//! [`Witnessing`]) between signing and storing it, and the stored note carries their lines.

mod dedup;
mod error;
mod integrator;
mod pipeline;
mod publisher;
mod recovery;
mod tiles;
mod witness;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rekor_storage::{Coordinator, Storage};
use rekor_tlog::{Hash, MAX_ENTRY_SIZE, leaf_hash};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use error::LogError;
pub use witness::{ConsistencyProofs, WitnessRequest, WitnessRequestCount, Witnessed, Witnessing};

use dedup::DedupCache;
use pipeline::Request;

/// How the pipeline batches and publishes. Defaults match rekor-tiles' flags, except that the
/// checkpoint is published as soon as each batch is integrated (`checkpoint_interval` zero).
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// The most entries in one batch.
    pub batch_max_size: usize,
    /// The longest an entry waits for its batch to close.
    pub batch_max_age: Duration,
    /// The least time between two checkpoints (zero: publish every batch).
    pub checkpoint_interval: Duration,
    /// Requests in flight beyond which new ones are refused with [`LogError::Pushback`].
    pub pushback_max_outstanding: usize,
    /// How many recent dedup keys to keep in memory in front of the coordinator's index.
    pub dedup_cache_size: usize,
    /// How long to wait before retrying a failing store.
    pub retry_backoff: Duration,
    /// Consult the coordinator's persistent dedup index (not only the in-memory cache), so
    /// duplicates are refused after a restart and beyond the cache's reach.
    pub persistent_dedup: bool,
    /// Witnesses to cosign each checkpoint before it is stored; `None`: no witnessing.
    pub witnesses: Option<Arc<dyn Witnessing>>,
    /// Without the witness quorum, do not publish the checkpoint: its entries get an error and
    /// publication is retried, as for a storage failure. Otherwise (the default, and what
    /// rekor-tiles does) the checkpoint is published with whatever cosignatures came in time.
    pub witness_fail_closed: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            batch_max_size: 1024,
            batch_max_age: Duration::from_millis(250),
            checkpoint_interval: Duration::ZERO,
            pushback_max_outstanding: 4096,
            dedup_cache_size: 100_000,
            retry_backoff: Duration::from_millis(500),
            persistent_dedup: true,
            witnesses: None,
            witness_fail_closed: false,
        }
    }
}

/// A checkpoint the log has published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedCheckpoint {
    /// The tree size.
    pub size: u64,
    /// The tree's root hash.
    pub root: Hash,
    /// The signed note, exactly as stored.
    pub note: Bytes,
}

/// The result of adding an entry.
#[derive(Clone, Debug)]
pub struct Appended {
    /// The entry's index.
    pub index: u64,
    /// The entry's RFC 6962 leaf hash.
    pub leaf_hash: Hash,
    /// The inclusion proof (leaf to root) in the tree of `checkpoint`.
    pub proof: Vec<Hash>,
    /// The first checkpoint that covers the entry.
    pub checkpoint: Arc<PublishedCheckpoint>,
}

/// Counters the server exports as metrics.
#[derive(Debug, Default)]
pub struct LogStats {
    entries_sequenced: AtomicU64,
    duplicates: AtomicU64,
    pushbacks: AtomicU64,
    checkpoints: AtomicU64,
    objects_written: AtomicU64,
    publish_failures: AtomicU64,
    proof_failures: AtomicU64,
    outstanding: AtomicUsize,
    unwitnessed: AtomicU64,
    withheld: AtomicU64,
}

impl LogStats {
    /// Entries given an index since start.
    pub fn entries_sequenced(&self) -> u64 {
        self.entries_sequenced.load(Ordering::Relaxed)
    }
    /// Requests answered as duplicates since start.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
    /// Requests refused by pushback since start.
    pub fn pushbacks(&self) -> u64 {
        self.pushbacks.load(Ordering::Relaxed)
    }
    /// Checkpoints this log wrote since start (not counting those another frontend wrote and
    /// this one adopted).
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints.load(Ordering::Relaxed)
    }
    /// Tiles and entry bundles written since start (each publication writes only the widest
    /// version of every tile that changed).
    pub fn objects_written(&self) -> u64 {
        self.objects_written.load(Ordering::Relaxed)
    }
    /// Failed attempts to write tiles or a checkpoint.
    pub fn publish_failures(&self) -> u64 {
        self.publish_failures.load(Ordering::Relaxed)
    }
    /// Inclusion proofs that failed to verify before being returned (should stay zero).
    pub fn proof_failures(&self) -> u64 {
        self.proof_failures.load(Ordering::Relaxed)
    }
    /// Requests currently waiting in the pipeline.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }
    /// Checkpoints published without the witness quorum (failing open).
    pub fn checkpoints_without_quorum(&self) -> u64 {
        self.unwitnessed.load(Ordering::Relaxed)
    }
    /// Checkpoints not published for want of the witness quorum (failing closed).
    pub fn checkpoints_withheld(&self) -> u64 {
        self.withheld.load(Ordering::Relaxed)
    }

    fn record_sequenced(&self, n: usize) {
        self.entries_sequenced
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
    fn record_duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }
    fn record_checkpoint(&self) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
    }
    fn record_objects_written(&self, n: usize) {
        self.objects_written
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
    fn record_publish_failure(&self) {
        self.publish_failures.fetch_add(1, Ordering::Relaxed);
    }
    fn record_proof_failure(&self) {
        self.proof_failures.fetch_add(1, Ordering::Relaxed);
    }
    fn record_unwitnessed(&self) {
        self.unwitnessed.fetch_add(1, Ordering::Relaxed);
    }
    fn record_withheld(&self) {
        self.withheld.fetch_add(1, Ordering::Relaxed);
    }
}

/// A handle to a running log. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Log {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    sender: Mutex<Option<mpsc::Sender<Request>>>,
    task: Mutex<Option<JoinHandle<()>>>,
    storage: Arc<dyn Storage>,
    coordinator: Arc<dyn Coordinator>,
    cache: Arc<Mutex<DedupCache>>,
    checkpoint: watch::Receiver<Arc<PublishedCheckpoint>>,
    stats: Arc<LogStats>,
    max_outstanding: usize,
    witnesses: Option<Arc<dyn Witnessing>>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every holder leaves the value consistent before any point that could panic.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Decrements the outstanding count when a request leaves, however it leaves.
struct OutstandingGuard<'a>(&'a AtomicUsize);

impl Drop for OutstandingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// SHA-256 of the canonical entry: the dedup key (see [`rekor_storage::dedup_key`]).
pub fn dedup_key(leaf: &[u8]) -> [u8; 32] {
    rekor_storage::dedup_key(leaf)
}

impl Log {
    /// `Err` once the coordinator has stopped after a failure only a restart recovers from
    /// (see [`Coordinator::health`]); health checks report it.
    ///
    /// # Errors
    ///
    /// [`LogError::Storage`] with the coordinator's reason.
    pub fn health(&self) -> Result<(), LogError> {
        Ok(self.shared.coordinator.health()?)
    }

    /// The latest published checkpoint.
    pub fn checkpoint(&self) -> Arc<PublishedCheckpoint> {
        Arc::clone(&self.shared.checkpoint.borrow())
    }

    /// A receiver that sees every newly published checkpoint.
    pub fn watch_checkpoints(&self) -> watch::Receiver<Arc<PublishedCheckpoint>> {
        self.shared.checkpoint.clone()
    }

    /// The log's counters.
    pub fn stats(&self) -> &LogStats {
        &self.shared.stats
    }

    /// The storage the log publishes to.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.shared.storage
    }

    /// The witnesses that cosign its checkpoints, if any.
    pub fn witnesses(&self) -> Option<&Arc<dyn Witnessing>> {
        self.shared.witnesses.as_ref()
    }

    /// Adds one canonical entry and waits until a durable checkpoint covers it.
    ///
    /// Dropping the future does not withdraw the entry; it may still be logged.
    ///
    /// # Errors
    ///
    /// [`LogError::Duplicate`] with the existing index if the same bytes were logged before;
    /// [`LogError::Pushback`] when too many requests are outstanding; [`LogError::EntryTooLarge`];
    /// [`LogError::ShuttingDown`]; [`LogError::Storage`] when storage fails (the entry may have been
    /// sequenced, and a retry then reports it as a duplicate).
    pub async fn add(&self, leaf: Bytes) -> Result<Appended, LogError> {
        if leaf.len() > MAX_ENTRY_SIZE {
            return Err(LogError::EntryTooLarge {
                size: leaf.len(),
                max: MAX_ENTRY_SIZE,
            });
        }
        let key = dedup_key(&leaf);
        if let Some(index) = lock(&self.shared.cache).get(&key) {
            self.shared.stats.record_duplicate();
            return Err(LogError::Duplicate { index });
        }
        // The persistent index is consulted by the pipeline, once per batch.

        let outstanding = &self.shared.stats.outstanding;
        if outstanding.fetch_add(1, Ordering::Relaxed) >= self.shared.max_outstanding {
            outstanding.fetch_sub(1, Ordering::Relaxed);
            self.shared.stats.pushbacks.fetch_add(1, Ordering::Relaxed);
            return Err(LogError::Pushback {
                max: self.shared.max_outstanding,
            });
        }
        let _guard = OutstandingGuard(outstanding);

        let (reply, response) = oneshot::channel();
        let request = Request {
            leaf_hash: leaf_hash(&leaf),
            dedup_key: key,
            leaf,
            reply,
        };
        {
            // The sender clone must not outlive the send: shutdown closes the channel by dropping
            // every sender, and waiting requests must not keep it open.
            let sender = lock(&self.shared.sender)
                .clone()
                .ok_or(LogError::ShuttingDown)?;
            sender
                .send(request)
                .await
                .map_err(|_| LogError::ShuttingDown)?;
        }
        response.await.map_err(|_| LogError::ShuttingDown)?
    }

    /// Stops taking entries, lets the pipeline sequence and publish what it holds, and waits for it.
    pub async fn shutdown(&self) {
        drop(lock(&self.shared.sender).take());
        let task = lock(&self.shared.task).take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "the log pipeline task failed");
        }
    }
}
