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
//!
//! This module holds the task's state and the loop that decides when to cut a batch and when to
//! publish. The stages a batch goes through each have a module: `sequencer` (dedup lookup,
//! durable indices, then into the tree), `publish` (objects, then the checkpoint), `waiters`
//! (each request answered with its verified inclusion proof), `reconcile` (catching up with
//! other frontends that share the backend), and `cosign` (witnesses cosign the checkpoint between
//! signing and storing it).

mod cosign;
mod publish;
mod reconcile;
mod sequencer;
mod waiters;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rekor_storage::{Coordinator, Storage};
use rekor_tlog::{Hash, TreeSize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use crate::dedup::DedupCache;
use crate::integrator::Integrator;
use crate::publisher::Publisher;
use crate::{Appended, LogConfig, LogError, LogStats};

pub(crate) use publish::Publication;
use waiters::Waiter;

/// A request to log one entry.
pub(crate) struct Request {
    pub(crate) leaf: Bytes,
    pub(crate) dedup_key: [u8; 32],
    pub(crate) leaf_hash: Hash,
    pub(crate) reply: oneshot::Sender<Result<Appended, LogError>>,
}

/// The state of the one task that owns the tree.
pub(crate) struct Pipeline {
    config: LogConfig,
    storage: Arc<dyn Storage>,
    coordinator: Arc<dyn Coordinator>,
    integrator: Integrator,
    publisher: Publisher,
    cache: Arc<Mutex<DedupCache>>,
    stats: Arc<LogStats>,
    /// The size the coordinator has recorded as integrated.
    integrated: u64,
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
    /// Missed witness quorums, for the rate-limited warning.
    quorum_misses: cosign::MissLog,
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
        let collector = (!storage.deletes_partials_itself())
            .then(|| publish::spawn_collector(Arc::clone(&storage)));
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
            quorum_misses: cosign::MissLog::default(),
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

    /// Writes the objects changed since the last write, and counts them.
    pub(crate) async fn write_pending(&mut self) -> Result<usize, LogError> {
        let objects = self.integrator.write(self.storage.as_ref()).await?;
        self.stats.record_objects_written(objects);
        Ok(objects)
    }

    /// The size of the tree in memory.
    pub(crate) fn tree_size(&self) -> TreeSize {
        self.integrator.size()
    }

    /// Forgets the tiles kept for proofs once a checkpoint covers them.
    pub(crate) fn checkpoint_published(&mut self) {
        self.integrator.checkpoint_published();
    }
}

fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86_400)
}
