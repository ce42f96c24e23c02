//! Answering the waiting requests once a checkpoint covers them: each gets its inclusion proof,
//! built from the tiles in memory (reading from storage only those another frontend wrote) and
//! checked with the verifier clients use before it is returned.

use std::sync::Arc;

use rekor_tlog::{Hash, LeafIndex, Prover, TileMap, TreeSize, inclusion_proof, verify_inclusion};
use tokio::sync::oneshot;
use tracing::{Span, error};

use super::Pipeline;
use crate::{Appended, LogError, PublishedCheckpoint};

/// A sequenced entry waiting for the checkpoint that covers it.
pub(super) struct Waiter {
    pub(super) index: u64,
    pub(super) leaf_hash: Hash,
    pub(super) reply: oneshot::Sender<Result<Appended, LogError>>,
}

impl Pipeline {
    /// Answers every waiter with its inclusion proof in `checkpoint`, just published for the
    /// whole tree.
    pub(super) async fn answer_published(
        &mut self,
        checkpoint: &Arc<PublishedCheckpoint>,
        span: &Span,
    ) {
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
                            checkpoint: Arc::clone(checkpoint),
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
                    checkpoint: Arc::clone(checkpoint),
                });
            if let Err(e) = &reply {
                self.stats.record_proof_failure();
                error!(parent: span, index = waiter.index, error = %e, "inclusion proof failed to verify");
            }
            let _ = waiter.reply.send(reply);
        }
    }

    /// Answers the waiters that `covering` (a stored checkpoint another frontend published,
    /// checked against this tree) already includes, with proofs for its tree size.
    pub(super) async fn answer_covered(&mut self, covering: &Arc<PublishedCheckpoint>) {
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
