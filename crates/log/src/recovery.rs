//! Opening a log: resume the tree from storage, finish integrating what was sequenced before a
//! crash, check the stored checkpoint against the tiles, and publish before taking new entries.

use std::sync::{Arc, Mutex};

use rekor_note::{LogSigner, Origin};
use rekor_storage::{Coordinator, Storage};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::dedup::DedupCache;
use crate::integrator::Integrator;
use crate::pipeline::{Pipeline, Publication};
use crate::publisher::Publisher;
use crate::{Log, LogConfig, LogError, LogStats, PublishedCheckpoint, Shared};

impl Log {
    /// Opens the log in `storage` + `coordinator`, recovers it, and starts its pipeline.
    ///
    /// Recovery needs no manual step: leaves sequenced but not integrated before a crash are
    /// integrated now, and a checkpoint for the whole sequenced tree is published before this
    /// returns. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`LogError::BadCheckpoint`] if the stored checkpoint is not signed by `signer` for `origin`;
    /// [`LogError::Inconsistent`] if the stored checkpoint is not a prefix of the stored tree (the
    /// log then refuses to sign anything); [`LogError::Storage`] for storage failures.
    pub async fn open(
        storage: Arc<dyn Storage>,
        coordinator: Arc<dyn Coordinator>,
        signer: Arc<LogSigner>,
        origin: Origin,
        config: LogConfig,
    ) -> Result<Log, LogError> {
        // The checkpoint first: the sequenced size read after it is at least its size, even while
        // other frontends sharing the backend keep sequencing.
        let stored = storage.read_checkpoint().await?;
        let state = coordinator.state().await?;
        let verifier = signer.verifier();
        let stored_checkpoint = match &stored {
            Some(versioned) => {
                let checkpoint = verifier.verify_checkpoint(&versioned.data).map_err(|e| {
                    LogError::BadCheckpoint {
                        reason: e.to_string(),
                    }
                })?;
                if checkpoint.origin != origin {
                    return Err(LogError::BadCheckpoint {
                        reason: format!(
                            "origin {:?} differs from the configured origin {:?}",
                            checkpoint.origin.as_str(),
                            origin.as_str()
                        ),
                    });
                }
                if checkpoint.size > state.sequenced {
                    return Err(LogError::inconsistent(format!(
                        "checkpoint size {} exceeds the {} sequenced entries",
                        checkpoint.size, state.sequenced
                    )));
                }
                Some((checkpoint, versioned.data.clone()))
            }
            None => None,
        };

        let integrator = Integrator::resume(storage.as_ref(), state.integrated).await?;
        let cache = Arc::new(Mutex::new(DedupCache::new(config.dedup_cache_size)));
        let initial = match &stored_checkpoint {
            Some((checkpoint, note)) => PublishedCheckpoint {
                size: checkpoint.size,
                root: rekor_tlog::Hash(checkpoint.root),
                note: note.clone(),
            },
            None => PublishedCheckpoint {
                size: u64::MAX,
                root: rekor_tlog::empty_root(),
                note: bytes::Bytes::new(),
            },
        };
        let (checkpoint_sender, checkpoint_receiver) = watch::channel(Arc::new(initial));
        let publisher =
            Publisher::new(signer, origin, stored.map(|v| v.version), checkpoint_sender);
        let stats = Arc::new(LogStats::default());
        let (sender, receiver) = mpsc::channel(config.pushback_max_outstanding.max(1));
        let max_outstanding = config.pushback_max_outstanding;
        let witnesses = config.witnesses.clone();
        let mut pipeline = Pipeline::new(
            config,
            Arc::clone(&storage),
            Arc::clone(&coordinator),
            integrator,
            publisher,
            Arc::clone(&cache),
            Arc::clone(&stats),
            state.integrated,
        );

        if state.sequenced > state.integrated {
            info!(
                from = state.integrated,
                to = state.sequenced,
                "integrating entries sequenced but not yet integrated"
            );
        }
        pipeline.advance(state.sequenced).await?;
        // The recovered objects are identical to any written before the crash; write them so
        // the stored checkpoint can be checked against the stored tiles.
        pipeline.write_pending().await?;
        if let Some((checkpoint, _)) = &stored_checkpoint {
            pipeline.check_prefix(checkpoint).await?;
        }
        let size = pipeline.tree_size();

        let published_size = if stored_checkpoint
            .as_ref()
            .is_none_or(|(checkpoint, _)| checkpoint.size != size.get())
        {
            match pipeline.publish_tree().await {
                Ok(Publication::Covered(published)) => {
                    info!(
                        tree_size = published.size,
                        "published the recovered checkpoint"
                    );
                    Some(published.size)
                }
                Ok(Publication::Deferred(_)) => {
                    info!(
                        "another frontend holds the checkpoint write; publishing on a later turn"
                    );
                    None
                }
                Err(e @ LogError::WitnessQuorum { .. }) => {
                    // Failing closed: a witness outage must not keep the log from starting. The
                    // pipeline retries, and refuses new entries meanwhile.
                    warn!(error = %e, "the recovered checkpoint is not published yet");
                    pipeline.retry_publication_later();
                    None
                }
                Err(e) => return Err(e),
            }
        } else {
            Some(size.get())
        };
        if let Some(published_size) = published_size {
            pipeline.record_integrated(published_size).await;
            pipeline.checkpoint_published();
        }

        let task = tokio::spawn(pipeline.run(receiver));
        Ok(Log {
            shared: Arc::new(Shared {
                sender: Mutex::new(Some(sender)),
                task: Mutex::new(Some(task)),
                storage,
                coordinator,
                cache,
                checkpoint: checkpoint_receiver,
                stats,
                max_outstanding,
                witnesses,
            }),
        })
    }
}
