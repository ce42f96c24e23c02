//! Publishing the tree: write the pending tiles and entry bundles, sign and swap the checkpoint
//! (claimed from the coordinator first when frontends share a checkpoint interval), record the
//! integrated size, and hand the partials that full objects superseded to a background collector.

use std::sync::Arc;
use std::time::Duration;

use rekor_storage::Storage;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, debug, error, info_span, warn};

use super::Pipeline;
use super::reconcile::Stored;
use crate::{LogError, PublishedCheckpoint};

/// Deletions of superseded partials queued for the collector; beyond this they are left behind.
const COLLECTOR_QUEUE: usize = 64;

/// How a publication attempt ended.
pub(crate) enum Publication {
    /// A checkpoint for the whole tree is stored: written now, or by another frontend.
    Covered(Arc<PublishedCheckpoint>),
    /// Another frontend holds the checkpoint write (claim or swap). The stored checkpoint, when
    /// there is one, is a verified prefix of this tree: it already covers the waiters below it.
    Deferred(Option<Arc<PublishedCheckpoint>>),
}

impl Pipeline {
    /// Writes pending tiles, publishes a checkpoint over them and answers the waiters.
    pub(super) async fn publish(&mut self) {
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
                if !matches!(e, LogError::WitnessQuorum { .. }) {
                    // A missed quorum is logged, rate-limited, where it is decided.
                    error!(parent: &span, error = %e, "publishing failed; waiting entries get an error");
                }
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

        self.answer_published(&checkpoint, &span).await;
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
            let note = self.publisher.sign(size.get(), root)?;
            // After the tiles are durable (a witness may see the checkpoint before it is stored),
            // before the swap (the stored note carries the cosignatures).
            let note = self.cosign(note, size.get(), root).await?;
            match self
                .publisher
                .write(self.storage.as_ref(), note, size.get(), root)
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

    /// Marks the publication as failed, to be retried after the backoff (as [`Pipeline::publish`]
    /// does when it fails); new entries are refused until it succeeds.
    pub(crate) fn retry_publication_later(&mut self) {
        self.failing = true;
        self.retry_after = Some(Instant::now() + self.config.retry_backoff);
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
}

/// Starts the task that deletes superseded partials, off the pipeline's path. A failed deletion
/// leaves them behind, which is harmless: readers fall back to the full objects.
pub(super) fn spawn_collector(storage: Arc<dyn Storage>) -> mpsc::Sender<Vec<String>> {
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
