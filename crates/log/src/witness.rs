//! Witnessing: before a checkpoint is stored, the log may ask witnesses to cosign it
//! (c2sp.org/tlog-witness) and append their cosignature lines to the note, so the checkpoint
//! that is stored, served and returned with each entry carries them.
//!
//! The log stays free of HTTP: [`Witnessing`] is implemented elsewhere (the server's witness
//! client) and set in [`LogConfig::witnesses`](crate::LogConfig::witnesses). The pipeline hands
//! it the signed note and a [`ConsistencyProofs`] source for the tree being published, whose
//! tiles are durable by then: a witness may see the checkpoint before it is stored, and after a
//! crash the log rebuilds the same tree from the sequenced entries, so what the witness saw stays
//! consistent with what the log publishes.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use rekor_note::{Note, NoteSignature};
use rekor_storage::Storage;
use rekor_tlog::{Hash, TileMap, TreeSize, consistency_proof, tree_root, verify_consistency};

use crate::LogError;

/// Gets checkpoints cosigned by witnesses.
///
/// Contract: [`Witnessing::cosign`] returns within the implementation's own timeout (the
/// pipeline waits for it, and so do the entries the checkpoint covers); it returns only
/// cosignatures it has verified over `request.note`'s text; requests still in flight when it
/// returns may go on in the background, but their cosignatures are not used.
#[async_trait]
pub trait Witnessing: Send + Sync + fmt::Debug + 'static {
    /// Asks the witnesses to cosign `request.note`, the log-signed checkpoint of a tree of
    /// `request.size` leaves, and says whether the cosignatures it got satisfy its quorum.
    async fn cosign(&self, request: WitnessRequest) -> Witnessed;

    /// Requests sent since start, by witness and outcome, for metrics.
    fn request_counts(&self) -> Vec<WitnessRequestCount> {
        Vec::new()
    }
}

/// A checkpoint to be witnessed.
#[derive(Clone, Debug)]
pub struct WitnessRequest {
    /// The signed checkpoint note, with the log's signature only.
    pub note: Bytes,
    /// Its tree size.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
    /// Consistency proofs from earlier sizes to `size`.
    pub proofs: Arc<ConsistencyProofs>,
}

/// What [`Witnessing::cosign`] got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Witnessed {
    /// Verified cosignature lines, to append to the note.
    pub cosignatures: Vec<NoteSignature>,
    /// Whether they satisfy the witness policy's quorum.
    pub quorum: bool,
}

/// How many requests one witness answered one way (see [`Witnessing::request_counts`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessRequestCount {
    /// The witness (its name in the policy).
    pub witness: String,
    /// The outcome, a short fixed label (`cosigned`, `conflict`, `timeout`, ...).
    pub outcome: &'static str,
    /// How many.
    pub count: u64,
}

/// Consistency proofs to one tree from any smaller size, built from the tiles the pipeline
/// holds and, for older parts of the tree, from storage. Each proof is checked against the two
/// roots before it is returned, and kept: witnesses usually share their last size.
pub struct ConsistencyProofs {
    storage: Arc<dyn Storage>,
    size: TreeSize,
    root: Hash,
    state: tokio::sync::Mutex<ProofState>,
}

struct ProofState {
    tiles: TileMap,
    proofs: HashMap<u64, Vec<Hash>>,
}

impl fmt::Debug for ConsistencyProofs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsistencyProofs")
            .field("size", &self.size.get())
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl ConsistencyProofs {
    /// Proofs to the tree of `size` with `root`, whose tiles are in `storage` (or in `tiles`).
    pub fn new(storage: Arc<dyn Storage>, size: u64, root: Hash, tiles: TileMap) -> Self {
        ConsistencyProofs {
            storage,
            size: TreeSize::new(size),
            root,
            state: tokio::sync::Mutex::new(ProofState {
                tiles,
                proofs: HashMap::new(),
            }),
        }
    }

    /// The size the proofs lead to.
    pub fn size(&self) -> u64 {
        self.size.get()
    }

    /// The consistency proof from the tree of `old` leaves to this tree (empty from 0 or from
    /// this size), verified.
    ///
    /// # Errors
    ///
    /// [`LogError::Internal`] if `old` is larger than this tree or the proof does not verify;
    /// [`LogError::Storage`] if a tile cannot be read.
    pub async fn proof(&self, old: u64) -> Result<Vec<Hash>, LogError> {
        if old > self.size.get() {
            return Err(LogError::internal(format!(
                "no consistency proof from size {old} to the smaller size {}",
                self.size.get()
            )));
        }
        let mut state = self.state.lock().await;
        if let Some(proof) = state.proofs.get(&old) {
            return Ok(proof.clone());
        }
        let size = self.size;
        let old_size = TreeSize::new(old);
        let (old_root, proof) = crate::tiles::with_stored_tiles(
            self.storage.as_ref(),
            size,
            &mut state.tiles,
            |reader| {
                let root = tree_root(old_size, reader)?;
                Ok::<_, rekor_tlog::ProofError>((root, consistency_proof(old_size, size, reader)?))
            },
        )
        .await?;
        verify_consistency(old_size, size, &old_root, &self.root, &proof).map_err(|e| {
            LogError::internal(format!("consistency proof from {old} does not verify: {e}"))
        })?;
        state.proofs.insert(old, proof.clone());
        Ok(proof)
    }
}

/// Appends `cosignatures` to the signed `note`, skipping lines it already has.
pub(crate) fn cosigned_note(
    note: &Bytes,
    cosignatures: &[NoteSignature],
) -> Result<Bytes, LogError> {
    if cosignatures.is_empty() {
        return Ok(note.clone());
    }
    let mut parsed = Note::parse(note)
        .map_err(|e| LogError::internal(format!("the signed checkpoint does not parse: {e}")))?;
    for cosignature in cosignatures {
        if parsed.signatures().contains(cosignature) {
            continue;
        }
        parsed
            .push_signature(cosignature.clone())
            .map_err(|e| LogError::internal(format!("adding a cosignature: {e}")))?;
    }
    Ok(Bytes::from(parsed.to_bytes()))
}

#[cfg(test)]
mod tests {
    use rekor_note::{Checkpoint, CosignatureSigner, KeyName, LogSigner, Origin};
    use rekor_storage::memory::MemoryStorage;
    use rekor_tlog::{MemoryTree, leaf_hash};

    use super::*;

    #[tokio::test]
    async fn proofs_come_from_stored_tiles_and_verify() {
        // A tree of 300 leaves whose tiles are all in storage, none in memory.
        let storage = Arc::new(MemoryStorage::default());
        let mut integrator = crate::integrator::Integrator::resume(storage.as_ref(), 0)
            .await
            .unwrap();
        let leaves: Vec<Bytes> = (0..300u32)
            .map(|n| Bytes::from(format!("leaf {n}")))
            .collect();
        let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
        integrator.append(&leaves, &hashes).unwrap();
        integrator.write(storage.as_ref()).await.unwrap();
        let root = integrator.root();

        let mut reference = MemoryTree::new();
        for hash in &hashes {
            reference.append(*hash);
        }
        let proofs = ConsistencyProofs::new(storage, 300, root, TileMap::new());
        for old in [0, 1, 7, 256, 299, 300] {
            let proof = proofs.proof(old).await.unwrap();
            assert_eq!(
                proof,
                reference
                    .consistency_proof(TreeSize::new(old), TreeSize::new(300))
                    .unwrap(),
                "from {old}"
            );
        }
        assert!(matches!(
            proofs.proof(301).await,
            Err(LogError::Internal { .. })
        ));
    }

    #[test]
    fn cosignatures_are_appended_once() {
        let name = KeyName::new("log.example").unwrap();
        let signer = LogSigner::from_ed25519_seed([1; 32], name.clone());
        let note = Bytes::from(
            signer
                .sign_checkpoint(&Checkpoint::new(Origin::from(name), 3, [2; 32]))
                .unwrap(),
        );
        let text = Note::parse(&note).unwrap().text().to_string();
        let witness =
            CosignatureSigner::from_ed25519_seed([3; 32], KeyName::new("w.example").unwrap());
        let line = witness.cosign(&text, 1_700_000_000).unwrap();

        assert_eq!(cosigned_note(&note, &[]).unwrap(), note);
        let cosigned = cosigned_note(&note, &[line.clone(), line.clone()]).unwrap();
        let mut expected = note.to_vec();
        expected.extend_from_slice(line.to_line().as_bytes());
        assert_eq!(cosigned.as_ref(), expected.as_slice());
        assert_eq!(cosigned_note(&cosigned, &[line]).unwrap(), cosigned);
        // The log still verifies its own checkpoint, ignoring the witness line.
        assert!(signer.verifier().verify_checkpoint(&cosigned).is_ok());
    }
}
