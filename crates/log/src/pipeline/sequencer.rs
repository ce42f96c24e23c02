//! Sequencing a batch: drop the entries already logged, have the coordinator give the rest
//! durable indices, then take the sequenced batch into the tree and queue its entries for the
//! next checkpoint.
//!
//! The first half (`Sequencer`) runs beside the publication of the batch before; the second
//! (`Pipeline::take_in`) changes the tree, so it waits for that publication to end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rekor_storage::{Coordinator, SequenceLeaf};
use rekor_tlog::Hash;
use tracing::{Instrument, Span, debug, error, info_span, warn};

use super::{Pipeline, Request, Waiter};
use crate::dedup::DedupCache;
use crate::{LogError, LogStats, lock};

/// A batch the coordinator sequenced from index `first` on, not yet in the tree.
pub(super) struct Sequenced {
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
pub(super) struct Sequencer {
    coordinator: Arc<dyn Coordinator>,
    cache: Arc<Mutex<DedupCache>>,
    stats: Arc<LogStats>,
    persistent_dedup: bool,
}

impl Pipeline {
    pub(super) fn sequencer(&self) -> Sequencer {
        Sequencer {
            coordinator: Arc::clone(&self.coordinator),
            cache: Arc::clone(&self.cache),
            stats: Arc::clone(&self.stats),
            persistent_dedup: self.config.persistent_dedup,
        }
    }

    /// Adds a sequenced batch to the tree and queues its entries for the next checkpoint.
    /// `floor` is the tree size when its sequencing began: indices below it were given out twice.
    pub(super) async fn take_in(&mut self, sequenced: Sequenced, floor: u64) {
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
}

impl Sequencer {
    /// Drops duplicates (answering them) and has the coordinator sequence the rest; `None` when
    /// nothing is left to add, every request having been answered.
    pub(super) async fn sequence(&self, batch: Vec<Request>) -> Option<Sequenced> {
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
                let error = LogError::from(e);
                if matches!(error, LogError::Frozen { .. }) {
                    // Every write to a frozen log ends here: not worth a warning each.
                    debug!(parent: &batch.span, "refused: the log is frozen");
                } else {
                    warn!(parent: &batch.span, error = %error, "sequencing failed");
                }
                batch.fail(&error);
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
