//! Catching up with other frontends that share the backend: take in the entries they sequenced
//! (from the coordinator while it holds them, or by resuming the tree from the tiles they wrote),
//! and reconcile with a checkpoint they stored, which must commit to a prefix of this tree.

use std::sync::Arc;

use rekor_note::Checkpoint;
use rekor_storage::Versioned;
use rekor_tlog::{Hash, TreeSize};
use tracing::debug;

use super::Pipeline;
use crate::integrator::Integrator;
use crate::{LogError, PublishedCheckpoint, lock};

/// How many sequenced leaves one coordinator read fetches.
const READ_CHUNK: u64 = 4096;

/// What the stored checkpoint is to this tree (see `Pipeline::reconcile_with_stored`).
pub(super) enum Stored {
    /// It covers the whole tree; nothing is left to publish.
    Whole(Arc<PublishedCheckpoint>),
    /// It covers a prefix.
    Prefix(Arc<PublishedCheckpoint>),
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
                        Integrator::resume(self.storage.as_ref(), state.integrated).await?;
                    self.integrated = self.integrated.max(state.integrated);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// After a failed checkpoint swap or claim: takes the stored checkpoint, checks that it is signed by
    /// this log and commits to a prefix of the shared sequence (catching the tree up to it when
    /// another frontend published a larger tree), takes over its version, and says whether it
    /// covers the whole tree or a prefix of it. Anything that does not match is
    /// [`LogError::Inconsistent`]: the log refuses to sign on top of it.
    pub(super) async fn reconcile_with_stored(
        &mut self,
        stored: Versioned,
    ) -> Result<Stored, LogError> {
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
}
