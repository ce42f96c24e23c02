//! The pipeline task: batching, dedup, sequencing, then integration and publication.
//!
//! One task owns the tree. A batch closes when it is full (`batch_max_size`), when its oldest entry
//! has waited `batch_max_age`, or as soon as the pipeline could publish it (the checkpoint interval
//! has passed and nothing is in flight). With the POSIX default (publish every batch) that is group
//! commit: an idle log takes a lone entry at once, and a busy one gathers what arrived meanwhile.
//!
//! Under load the two halves of a batch's way overlap: while batch N is published (objects
//! written, checkpoint swapped, proofs computed), batch N+1 is looked up and sequenced. Both
//! halves mostly wait on storage (fsyncs, round trips), so a batch costs about the longer half
//! instead of their sum. Batch N+1 joins the tree only after N's checkpoint is out, so each
//! checkpoint still covers whole batches and the tree has a single writer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rekor_note::Checkpoint;
use rekor_storage::{Coordinator, SequenceLeaf, Storage, Versioned};
use rekor_tlog::{Hash, LeafIndex, Prover, TileMap, TreeSize, inclusion_proof, verify_inclusion};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tracing::{Instrument, Span, debug, error, info_span, warn};

use crate::dedup::DedupCache;
use crate::integrator::Integrator;
use crate::publisher::Publisher;
use crate::{Appended, LogConfig, LogError, LogStats, PublishedCheckpoint, lock};

/// How many sequenced leaves one coordinator read fetches.
pub(crate) const READ_CHUNK: u64 = 4096;

/// Deletions of superseded partials queued for the collector; beyond this they are left behind.
const COLLECTOR_QUEUE: usize = 64;

/// A request to log one entry.
pub(crate) struct Request {
    pub(crate) leaf: Bytes,
    pub(crate) dedup_key: [u8; 32],
    pub(crate) leaf_hash: Hash,
    pub(crate) reply: oneshot::Sender<Result<Appended, LogError>>,
}

/// A sequenced entry waiting for the checkpoint that covers it.
struct Waiter {
    index: u64,
    leaf_hash: Hash,
    reply: oneshot::Sender<Result<Appended, LogError>>,
}

/// A batch the coordinator sequenced from index `first` on, not yet in the tree.
struct Sequenced {
    first: u64,
    /// The batch's distinct entries, in sequence order.
    fresh: Vec<Request>,
    /// Repeats of an entry earlier in the batch, with that entry's position in `fresh`.
    followers: Vec<(usize, Request)>,
    span: Span,
}

impl Sequenced {
    /// Answers every request of the batch with `error`.
    fn fail(self, error: &LogError) {
        for request in self
            .fresh
            .into_iter()
            .chain(self.followers.into_iter().map(|(_, r)| r))
        {
            let _ = request.reply.send(Err(error.clone()));
        }
    }
}

/// The sequencing half of a batch's way: dedup lookup, then durable indices from the coordinator.
/// It holds only shared handles, so it runs while the pipeline publishes the batch before.
#[derive(Clone)]
struct Sequencer {
    coordinator: Arc<dyn Coordinator>,
    cache: Arc<Mutex<DedupCache>>,
    stats: Arc<LogStats>,
    persistent_dedup: bool,
}

/// How a publication attempt ended.
pub(crate) enum Publication {
    /// A checkpoint for the whole tree is stored: written now, or by another frontend.
    Covered(Arc<PublishedCheckpoint>),
    /// Another frontend holds the checkpoint write (claim or swap). The stored checkpoint, when
    /// there is one, is a verified prefix of this tree: it already covers the waiters below it.
    Deferred(Option<Arc<PublishedCheckpoint>>),
}

/// What the stored checkpoint is to this tree (see `Pipeline::reconcile_with_stored`).
enum Stored {
    /// It covers the whole tree; nothing is left to publish.
    Whole(Arc<PublishedCheckpoint>),
    /// It covers a prefix.
    Prefix(Arc<PublishedCheckpoint>),
}

pub(crate) struct Pipeline {
    pub(crate) config: LogConfig,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) coordinator: Arc<dyn Coordinator>,
    pub(crate) integrator: Integrator,
    pub(crate) publisher: Publisher,
    pub(crate) cache: Arc<Mutex<DedupCache>>,
    pub(crate) stats: Arc<LogStats>,
    /// The size the coordinator has recorded as integrated.
    pub(crate) integrated: u64,
    waiters: Vec<Waiter>,
    /// The last publication failed; retry it before sequencing anything new.
    failing: bool,
    /// While failing, no retry before this instant.
    retry_after: Option<Instant>,
    /// Shutting down: publish what is left without claiming (one last write is worth more than
    /// the storage's rate limit).
    draining: bool,
    /// Deletes superseded partials in the background; `None` when the storage does it itself.
    collector: Option<mpsc::Sender<Vec<String>>>,
}

impl Pipeline {
    #[allow(clippy::too_many_arguments, reason = "built once, by Log::open")]
    pub(crate) fn new(
        config: LogConfig,
        storage: Arc<dyn Storage>,
        coordinator: Arc<dyn Coordinator>,
        integrator: Integrator,
        publisher: Publisher,
        cache: Arc<Mutex<DedupCache>>,
        stats: Arc<LogStats>,
        integrated: u64,
    ) -> Self {
        let collector =
            (!storage.deletes_partials_itself()).then(|| spawn_collector(Arc::clone(&storage)));
        Pipeline {
            config,
            storage,
            coordinator,
            integrator,
            publisher,
            cache,
            stats,
            integrated,
            waiters: Vec::new(),
            failing: false,
            retry_after: None,
            draining: false,
            collector,
        }
    }

    /// Runs until every sender is dropped, then publishes what is left and returns.
    pub(crate) async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let mut pending: Vec<Request> = Vec::new();
        let mut oldest: Option<Instant> = None;
        let mut closed = false;
        loop {
            let publish_at = self.publish_deadline();
            let batch_deadline = oldest.map(|t| t + self.config.batch_max_age);
            let wake = [publish_at, batch_deadline].into_iter().flatten().min();
            let room = self.config.batch_max_size.saturating_sub(pending.len());

            if !closed && room > 0 {
                tokio::select! {
                    biased;
                    received = requests.recv_many(&mut pending, room) => {
                        if received == 0 {
                            closed = true;
                            self.draining = true;
                        } else if oldest.is_none() {
                            oldest = Some(Instant::now());
                        }
                    }
                    () = sleep_until(wake.unwrap_or_else(far_future)), if wake.is_some() => {}
                }
            } else if closed
                && pending.is_empty()
                && let Some(wake) = wake
            {
                // Draining: wait for the next allowed publication instead of spinning.
                sleep_until(wake).await;
            }

            let now = Instant::now();
            let publish_now = self.publish_allowed(now);
            let cut = !pending.is_empty()
                && (pending.len() >= self.config.batch_max_size
                    || closed
                    || publish_now
                    || batch_deadline.is_some_and(|d| d <= now));
            let publish_due = self.has_unpublished() && (closed || publish_now);
            if cut {
                // The next batch is likely as large as this one: one allocation instead of the
                // vector growing again from empty.
                let capacity = pending.len();
                let batch = std::mem::replace(&mut pending, Vec::with_capacity(capacity));
                oldest = None;
                if publish_due && !self.failing {
                    self.sequence_while_publishing(batch).await;
                } else {
                    // Published on the next turn, beside whatever batch has gathered by then.
                    self.sequence(batch).await;
                }
            } else if publish_due {
                self.publish().await;
            }
            if closed && pending.is_empty() && (!self.has_unpublished() || self.failing) {
                // On a failing store, what was sequenced is integrated on the next start. Entries
                // of a batch sequenced beside the last failed publication are still waiting.
                for waiter in self.waiters.drain(..) {
                    let _ = waiter.reply.send(Err(LogError::ShuttingDown));
                }
                break;
            }
        }
    }

    fn has_unpublished(&self) -> bool {
        self.integrator.size().get() != self.publisher.current().size
            || self.integrator.has_unwritten()
    }

    fn publish_allowed(&self, now: Instant) -> bool {
        if self.retry_after.is_some_and(|t| now < t) {
            return false;
        }
        match self.publisher.last_published() {
            None => true,
            Some(last) => now >= last + self.config.checkpoint_interval,
        }
    }

    /// When the next publication may happen, if anything awaits one.
    fn publish_deadline(&self) -> Option<Instant> {
        if !self.has_unpublished() {
            return None;
        }
        let at = self
            .publisher
            .last_published()
            .map_or_else(Instant::now, |last| last + self.config.checkpoint_interval);
        Some(self.retry_after.map_or(at, |retry| at.max(retry)))
    }

    fn sequencer(&self) -> Sequencer {
        Sequencer {
            coordinator: Arc::clone(&self.coordinator),
            cache: Arc::clone(&self.cache),
            stats: Arc::clone(&self.stats),
            persistent_dedup: self.config.persistent_dedup,
        }
    }

    /// Drops duplicates, sequences the rest durably and hands them to the integrator.
    async fn sequence(&mut self, batch: Vec<Request>) {
        if self.failing {
            // Do not sequence more while the store is failing: retry what is pending first.
            if self.publish_allowed(Instant::now()) {
                self.publish().await;
            }
            if self.failing {
                let error = LogError::Storage(Arc::new(rekor_storage::Error::Unavailable {
                    backend: "log",
                    source: "storage is failing; entry not sequenced".into(),
                }));
                for request in batch {
                    let _ = request.reply.send(Err(error.clone()));
                }
                return;
            }
        }
        let floor = self.integrator.size().get();
        if let Some(sequenced) = self.sequencer().sequence(batch).await {
            self.take_in(sequenced, floor).await;
        }
    }

    /// Publishes the tree while sequencing `batch`, then adds the batch to the tree.
    async fn sequence_while_publishing(&mut self, batch: Vec<Request>) {
        let floor = self.integrator.size().get();
        let sequencer = self.sequencer();
        let ((), sequenced) = tokio::join!(self.publish(), sequencer.sequence(batch));
        if let Some(sequenced) = sequenced {
            // Even if the publication failed: the batch is durably sequenced, and its entries
            // wait for the retry like the ones before them.
            self.take_in(sequenced, floor).await;
        }
    }

    /// Adds a sequenced batch to the tree and queues its entries for the next checkpoint.
    /// `floor` is the tree size when its sequencing began: indices below it were given out twice.
    async fn take_in(&mut self, sequenced: Sequenced, floor: u64) {
        let first = sequenced.first;
        let span = sequenced.span.clone();
        if first < floor {
            // The coordinator gave out indices this tree already holds: its state went backwards.
            error!(parent: &span, first, expected = floor, "sequence does not continue the integrated tree");
            sequenced.fail(&LogError::inconsistent(format!(
                "sequencer returned index {first}, integrator expected {floor}"
            )));
            self.failing = true;
            return;
        }
        if first > self.integrator.size().get() {
            // Entries sequenced by another frontend sharing the backend, or by a call of ours
            // whose reply was lost: integrate them first, in sequence order.
            if let Err(e) = self.advance(first).instrument(span.clone()).await {
                warn!(parent: &span, error = %e, "integrating entries sequenced elsewhere failed");
                sequenced.fail(&e);
                return;
            }
        }
        let Sequenced {
            fresh, followers, ..
        } = sequenced;

        {
            let mut cache = lock(&self.cache);
            for (offset, request) in (0u64..).zip(&fresh) {
                cache.insert(request.dedup_key, first + offset);
            }
        }
        for (position, request) in followers {
            self.stats.record_duplicate();
            let index = first + u64::try_from(position).unwrap_or(u64::MAX);
            let _ = request.reply.send(Err(LogError::Duplicate { index }));
        }

        // The tree may already hold part of this batch: catching up took it from the coordinator
        // (a publication running beside this batch's sequencing, or the catch-up above), or
        // another frontend integrated it. Append only what the tree lacks.
        let already = usize::try_from(self.integrator.size().get() - first)
            .unwrap_or(usize::MAX)
            .min(fresh.len());
        let data: Vec<Bytes> = fresh[already..].iter().map(|r| r.leaf.clone()).collect();
        let hashes: Vec<Hash> = fresh[already..].iter().map(|r| r.leaf_hash).collect();
        if let Err(e) = self.integrator.append(&data, &hashes) {
            error!(parent: &span, error = %e, "integration failed");
            for request in fresh {
                let _ = request.reply.send(Err(e.clone()));
            }
            self.failing = true;
            return;
        }
        self.stats.record_sequenced(fresh.len());
        for (offset, request) in (0u64..).zip(fresh) {
            self.waiters.push(Waiter {
                index: first + offset,
                leaf_hash: request.leaf_hash,
                reply: request.reply,
            });
        }
        if already > 0 {
            // A checkpoint published meanwhile may cover entries of this batch already; nothing
            // else would answer them if the tree has nothing more to publish.
            let current = self.publisher.current();
            if self.waiters.iter().any(|w| w.index < current.size) {
                self.answer_covered(&current).instrument(span).await;
            }
        }
    }

    /// Writes pending tiles, publishes a checkpoint over them and answers the waiters.
    async fn publish(&mut self) {
        let span = info_span!("publish", tree_size = self.integrator.size().get());
        let result = self.publish_tree().instrument(span.clone()).await;
        let checkpoint = match result {
            Ok(Publication::Covered(checkpoint)) => checkpoint,
            Ok(Publication::Deferred(prefix)) => {
                if let Some(covering) = prefix {
                    self.answer_covered(&covering)
                        .instrument(span.clone())
                        .await;
                }
                // Another frontend claimed this checkpoint write or keeps winning the swap: look
                // again shortly, to take its checkpoint once it covers these entries, or to write.
                let poll = (self.config.checkpoint_interval / 4)
                    .clamp(Duration::from_millis(20), Duration::from_secs(1));
                self.retry_after = Some(Instant::now() + poll);
                return;
            }
            Err(e) => {
                error!(parent: &span, error = %e, "publishing failed; waiting entries get an error");
                self.stats.record_publish_failure();
                self.failing = true;
                self.retry_after = Some(Instant::now() + self.config.retry_backoff);
                for waiter in self.waiters.drain(..) {
                    let _ = waiter.reply.send(Err(e.clone()));
                }
                return;
            }
        };
        self.failing = false;
        self.retry_after = None;

        self.record_integrated(checkpoint.size)
            .instrument(span.clone())
            .await;
        self.collect_superseded();

        let size = TreeSize::new(checkpoint.size);
        let root = checkpoint.root;
        let mut tiles = self.integrator.proof_tiles();
        let mut unproven = Vec::new();
        {
            // One prover per checkpoint: it hashes each tile once, then every proof is lookups.
            let mut prover = Prover::new(size, &tiles);
            for waiter in self.waiters.drain(..) {
                match prove(&mut prover, waiter.index, size, &waiter.leaf_hash, &root) {
                    Ok(proof) => {
                        let _ = waiter.reply.send(Ok(Appended {
                            index: waiter.index,
                            leaf_hash: waiter.leaf_hash,
                            proof,
                            checkpoint: Arc::clone(&checkpoint),
                        }));
                    }
                    Err(_) => unproven.push(waiter),
                }
            }
        }
        // Tiles another frontend wrote (the tree was resumed from storage) are not in memory.
        for waiter in unproven {
            let reply = self
                .prove_from_storage(&mut tiles, waiter.index, size, &waiter.leaf_hash, &root)
                .await
                .map(|proof| Appended {
                    index: waiter.index,
                    leaf_hash: waiter.leaf_hash,
                    proof,
                    checkpoint: Arc::clone(&checkpoint),
                });
            if let Err(e) = &reply {
                self.stats.record_proof_failure();
                error!(parent: &span, index = waiter.index, error = %e, "inclusion proof failed to verify");
            }
            let _ = waiter.reply.send(reply);
        }
        self.integrator.checkpoint_published();
    }

    /// Writes pending objects and publishes a checkpoint for the whole integrated tree. When the
    /// swap loses to another writer (another frontend, or a write of ours whose reply was lost),
    /// catches up with the stored checkpoint and tries again; returns the stored checkpoint when
    /// it already covers this tree.
    ///
    /// With a checkpoint interval, the write is first claimed from the coordinator, so frontends
    /// sharing a backend write the checkpoint at most once per interval between them.
    /// [`Publication::Deferred`]: another frontend holds the claim, or won every swap, and the
    /// stored checkpoint does not cover this whole tree yet.
    pub(crate) async fn publish_tree(&mut self) -> Result<Publication, LogError> {
        // Swaps lost to other frontends before standing back: each loss means another frontend
        // just published, and its next checkpoint covers everything sequenced before its batch,
        // so waiting a moment beats racing on.
        const ATTEMPTS: usize = 4;
        let mut prefix = None;
        for _ in 0..ATTEMPTS {
            let interval = self.config.checkpoint_interval;
            if !interval.is_zero() && !self.draining {
                let claimed = self
                    .coordinator
                    .claim_publication(interval)
                    .await
                    .unwrap_or_else(|e| {
                        // The waiting entries are sequenced; a failed claim only delays them.
                        warn!(error = %e, "claiming the checkpoint write failed");
                        false
                    });
                if !claimed {
                    self.write_pending().await?;
                    return Ok(match self.storage.read_checkpoint().await? {
                        Some(stored) => match self.reconcile_with_stored(stored).await? {
                            Stored::Whole(checkpoint) => Publication::Covered(checkpoint),
                            Stored::Prefix(checkpoint) => Publication::Deferred(Some(checkpoint)),
                        },
                        None => Publication::Deferred(None),
                    });
                }
                // This write is the only one for a while: take in what the other frontends
                // sequenced, so that it also covers the entries they are waiting on.
                match self.coordinator.state().await {
                    Ok(state) if state.sequenced > self.integrator.size().get() => {
                        if let Err(e) = self.advance(state.sequenced).await {
                            warn!(error = %e, "taking in entries sequenced elsewhere failed");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "reading the sequencing state failed"),
                }
            }
            let objects = self.write_pending().await?;
            let size = self.integrator.size();
            let root = self.integrator.root();
            match self
                .publisher
                .publish(self.storage.as_ref(), size.get(), root)
                .await
            {
                Ok(checkpoint) => {
                    debug!(objects, "checkpoint published");
                    self.stats.record_checkpoint();
                    return Ok(Publication::Covered(checkpoint));
                }
                Err(LogError::Storage(e))
                    if matches!(*e, rekor_storage::Error::Precondition { .. }) =>
                {
                    let stored = self.storage.read_checkpoint().await?.ok_or_else(|| {
                        LogError::inconsistent("the checkpoint vanished from storage")
                    })?;
                    match self.reconcile_with_stored(stored).await? {
                        Stored::Whole(checkpoint) => return Ok(Publication::Covered(checkpoint)),
                        Stored::Prefix(checkpoint) => prefix = Some(checkpoint),
                    }
                    debug!(error = %e, "lost a checkpoint swap to another writer");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Publication::Deferred(prefix))
    }

    /// Writes the objects changed since the last write, and counts them.
    pub(crate) async fn write_pending(&mut self) -> Result<usize, LogError> {
        let objects = self.integrator.write(self.storage.as_ref()).await?;
        self.stats.record_objects_written(objects);
        Ok(objects)
    }

    /// Proves inclusion reading the tiles missing from `tiles` from storage.
    async fn prove_from_storage(
        &self,
        tiles: &mut TileMap,
        index: u64,
        size: TreeSize,
        leaf_hash: &Hash,
        root: &Hash,
    ) -> Result<Vec<Hash>, LogError> {
        let leaf = LeafIndex::new(index);
        let proof = crate::tiles::with_stored_tiles(self.storage.as_ref(), size, tiles, |reader| {
            inclusion_proof(leaf, size, reader)
        })
        .await?;
        verify_inclusion(leaf_hash, leaf, size, &proof, root)
            .map_err(|e| LogError::internal(format!("inclusion proof does not verify: {e}")))?;
        Ok(proof)
    }
}

impl Sequencer {
    /// Drops duplicates (answering them) and has the coordinator sequence the rest; `None` when
    /// nothing is left to add, every request having been answered.
    async fn sequence(&self, batch: Vec<Request>) -> Option<Sequenced> {
        let batch = self.drop_known_duplicates(batch).await?;
        let mut fresh: Vec<Request> = Vec::with_capacity(batch.len());
        let mut followers: Vec<(usize, Request)> = Vec::new();
        let mut positions: HashMap<[u8; 32], usize> = HashMap::new();
        for request in batch {
            if let Some(&position) = positions.get(&request.dedup_key) {
                followers.push((position, request));
            } else {
                positions.insert(request.dedup_key, fresh.len());
                fresh.push(request);
            }
        }
        if fresh.is_empty() {
            return None;
        }

        let leaves: Vec<SequenceLeaf> = fresh
            .iter()
            .map(|r| SequenceLeaf {
                dedup_key: r.dedup_key,
                data: r.leaf.clone(),
            })
            .collect();
        let span = info_span!(
            "batch",
            batch_size = fresh.len(),
            first_index = tracing::field::Empty
        );
        let sequenced = self
            .coordinator
            .sequence(&leaves)
            .instrument(span.clone())
            .await;
        let batch = Sequenced {
            first: 0,
            fresh,
            followers,
            span,
        };
        match sequenced {
            Ok(first) => {
                batch.span.record("first_index", first);
                Some(Sequenced { first, ..batch })
            }
            Err(e) => {
                warn!(parent: &batch.span, error = %e, "sequencing failed");
                batch.fail(&LogError::from(e));
                None
            }
        }
    }

    /// Answers the requests whose entry is already logged (in the cache, or in the coordinator's
    /// persistent index, looked up once per batch) and returns the rest; `None` if the lookup
    /// failed, in which case every request has been answered with the error.
    async fn drop_known_duplicates(&self, batch: Vec<Request>) -> Option<Vec<Request>> {
        let mut unknown = Vec::with_capacity(batch.len());
        {
            let cache = lock(&self.cache);
            for request in batch {
                match cache.get(&request.dedup_key) {
                    Some(index) => {
                        self.stats.record_duplicate();
                        let _ = request.reply.send(Err(LogError::Duplicate { index }));
                    }
                    None => unknown.push(request),
                }
            }
        }
        if !self.persistent_dedup || unknown.is_empty() {
            return Some(unknown);
        }
        let keys: Vec<[u8; 32]> = unknown.iter().map(|r| r.dedup_key).collect();
        let found = match self.coordinator.lookup(&keys).await {
            Ok(found) => found,
            Err(e) => {
                warn!(error = %e, "dedup lookup failed");
                let error = LogError::from(e);
                for request in unknown {
                    let _ = request.reply.send(Err(error.clone()));
                }
                return None;
            }
        };
        let mut cache = lock(&self.cache);
        let mut remaining = Vec::with_capacity(unknown.len());
        for (request, hit) in unknown.into_iter().zip(found) {
            match hit {
                Some(index) => {
                    cache.insert(request.dedup_key, index);
                    self.stats.record_duplicate();
                    let _ = request.reply.send(Err(LogError::Duplicate { index }));
                }
                None => remaining.push(request),
            }
        }
        Some(remaining)
    }
}

impl Pipeline {
    /// Brings the tree to at least `target` leaves with entries sequenced by others: read from
    /// the coordinator while it still holds them, or, once another frontend has integrated and
    /// released them, by resuming the tree from the tiles it wrote.
    pub(crate) async fn advance(&mut self, target: u64) -> Result<(), LogError> {
        // Each resume moves the tree forward, so this ends; the bound only guards against a
        // coordinator that keeps contradicting itself.
        const MAX_RESUMES: usize = 16;
        let mut resumes = 0;
        while self.integrator.size().get() < target {
            let from = self.integrator.size().get();
            let to = target.min(from.saturating_add(READ_CHUNK));
            match self.coordinator.read_sequenced(from, to).await {
                Ok(leaves) => {
                    let hashes: Vec<Hash> = leaves
                        .iter()
                        .map(|leaf| rekor_tlog::leaf_hash(leaf))
                        .collect();
                    self.integrator.append(&leaves, &hashes)?;
                    let mut cache = lock(&self.cache);
                    for (index, leaf) in (from..to).zip(&leaves) {
                        cache.insert(crate::dedup_key(leaf), index);
                    }
                }
                Err(rekor_storage::Error::NotFound { .. }) if resumes < MAX_RESUMES => {
                    resumes += 1;
                    let state = self.coordinator.state().await?;
                    if state.integrated <= from {
                        return Err(LogError::inconsistent(format!(
                            "entries {from}..{to} are neither sequenced nor integrated"
                        )));
                    }
                    debug!(
                        from,
                        to = state.integrated,
                        "resuming the tree from tiles another frontend wrote"
                    );
                    self.integrator =
                        crate::recovery::resume_integrator(self.storage.as_ref(), state.integrated)
                            .await?;
                    self.integrated = self.integrated.max(state.integrated);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Records that tiles up to `size` are written. Not fatal on failure: the entries are in tiles
    /// and a checkpoint, and a restart integrates them again, rewriting identical objects.
    pub(crate) async fn record_integrated(&mut self, size: u64) {
        if size <= self.integrated {
            return;
        }
        let mut result = self
            .coordinator
            .mark_integrated(self.integrated, size)
            .await;
        if let Err(rekor_storage::Error::Precondition { .. }) = &result {
            // Our last mark may have committed with its reply lost, or another frontend marked
            // its own progress: resynchronise and retry.
            match self.coordinator.state().await {
                Ok(state) if state.integrated >= size => {
                    self.integrated = state.integrated;
                    return;
                }
                Ok(state) => {
                    self.integrated = state.integrated;
                    result = self
                        .coordinator
                        .mark_integrated(self.integrated, size)
                        .await;
                }
                Err(e) => result = Err(e),
            }
        }
        match result {
            Ok(()) => self.integrated = size,
            Err(e) => warn!(error = %e, "recording the integrated size failed"),
        }
    }

    /// Hands the partials that full objects superseded below the integrated size to the
    /// collector, or forgets them when the storage deletes its own.
    fn collect_superseded(&mut self) {
        let paths = self.integrator.take_superseded(self.integrated);
        if let Some(collector) = &self.collector
            && !paths.is_empty()
            && collector.try_send(paths).is_err()
        {
            debug!("the partial collector is behind; superseded partials stay");
        }
    }

    /// After a failed checkpoint swap or claim: takes the stored checkpoint, checks that it is signed by
    /// this log and commits to a prefix of the shared sequence (catching the tree up to it when
    /// another frontend published a larger tree), takes over its version, and says whether it
    /// covers the whole tree or a prefix of it. Anything that does not match is
    /// [`LogError::Inconsistent`]: the log refuses to sign on top of it.
    async fn reconcile_with_stored(&mut self, stored: Versioned) -> Result<Stored, LogError> {
        let checkpoint = self.publisher.verify(&stored.data)?;
        if checkpoint.size > self.integrator.size().get() {
            self.advance(checkpoint.size).await?;
        }
        let root = self.check_prefix(&checkpoint).await?;
        let size = self.integrator.size();
        let old_size = TreeSize::new(checkpoint.size);
        debug!(
            size = checkpoint.size,
            "taking over the stored checkpoint's version"
        );
        let published = Arc::new(PublishedCheckpoint {
            size: checkpoint.size,
            root,
            note: stored.data,
        });
        if old_size == size {
            self.publisher
                .adopt_published(stored.version, Arc::clone(&published));
            return Ok(Stored::Whole(published));
        }
        self.publisher.adopt(stored.version);
        Ok(Stored::Prefix(published))
    }

    /// Checks that `checkpoint` commits to a prefix of this tree (its root is the root of the
    /// tree's first `checkpoint.size` leaves) and returns that root. Writes pending objects
    /// first: for a smaller size the root is computed from tiles, some read from storage.
    ///
    /// # Errors
    ///
    /// [`LogError::Inconsistent`] when the roots differ: the log must not sign on top of it.
    pub(crate) async fn check_prefix(&mut self, checkpoint: &Checkpoint) -> Result<Hash, LogError> {
        self.write_pending().await?;
        let size = self.integrator.size();
        let old_size = TreeSize::new(checkpoint.size);
        let root = if old_size == size {
            self.integrator.root()
        } else {
            let mut tiles = self.integrator.proof_tiles();
            crate::tiles::with_stored_tiles(self.storage.as_ref(), size, &mut tiles, |reader| {
                rekor_tlog::tree_root(old_size, reader)
            })
            .await?
        };
        if root.0 != checkpoint.root {
            return Err(LogError::inconsistent(format!(
                "stored checkpoint for size {} has root {}, this log's tree has {root} there",
                checkpoint.size,
                Hash(checkpoint.root),
            )));
        }
        Ok(root)
    }

    /// Answers the waiters that `covering` (a stored checkpoint another frontend published,
    /// checked against this tree) already includes, with proofs for its tree size.
    async fn answer_covered(&mut self, covering: &Arc<PublishedCheckpoint>) {
        let (covered, waiting): (Vec<Waiter>, Vec<Waiter>) = self
            .waiters
            .drain(..)
            .partition(|w| w.index < covering.size);
        self.waiters = waiting;
        if covered.is_empty() {
            return;
        }
        let size = TreeSize::new(covering.size);
        let mut tiles = self.integrator.proof_tiles();
        for waiter in covered {
            let reply = self
                .prove_from_storage(
                    &mut tiles,
                    waiter.index,
                    size,
                    &waiter.leaf_hash,
                    &covering.root,
                )
                .await
                .map(|proof| Appended {
                    index: waiter.index,
                    leaf_hash: waiter.leaf_hash,
                    proof,
                    checkpoint: Arc::clone(covering),
                });
            if let Err(e) = &reply {
                self.stats.record_proof_failure();
                error!(index = waiter.index, error = %e, "inclusion proof failed to verify");
            }
            let _ = waiter.reply.send(reply);
        }
    }
}

/// Builds the inclusion proof from in-memory tiles and checks it with the verifier clients use.
fn prove(
    prover: &mut Prover<'_, TileMap>,
    index: u64,
    size: TreeSize,
    leaf_hash: &Hash,
    root: &Hash,
) -> Result<Vec<Hash>, LogError> {
    let index = LeafIndex::new(index);
    let proof = prover
        .inclusion_proof(index)
        .map_err(|e| LogError::internal(format!("inclusion proof: {e}")))?;
    verify_inclusion(leaf_hash, index, size, &proof, root)
        .map_err(|e| LogError::internal(format!("inclusion proof does not verify: {e}")))?;
    Ok(proof)
}

/// Starts the task that deletes superseded partials, off the pipeline's path. A failed deletion
/// leaves them behind, which is harmless: readers fall back to the full objects.
fn spawn_collector(storage: Arc<dyn Storage>) -> mpsc::Sender<Vec<String>> {
    let (sender, mut receiver) = mpsc::channel::<Vec<String>>(COLLECTOR_QUEUE);
    tokio::spawn(async move {
        while let Some(paths) = receiver.recv().await {
            let count = paths.len();
            if let Err(e) = storage.delete_partials(paths).await {
                warn!(error = %e, count, "deleting superseded partial objects failed; they stay");
            }
        }
    });
    sender
}

fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86_400)
}
