//! Proofs computed from the log's tiles: consistency between checkpoints, roots at old sizes,
//! single entries with their inclusion proofs. Each computation runs once on a [`TileRecorder`]
//! to learn the tiles it needs, the client fetches them, and it runs again on a [`TileMap`].

use bytes::Bytes;
use rekor_api::common::v1::LogId;
use rekor_api::rekor::v1::{Checkpoint, InclusionProof, KindVersion, TransparencyLogEntry};
use rekor_api::rekor::v2::CreateEntryRequest;
use rekor_note::LogVerifier;
use rekor_tlog::{
    Hash, LeafIndex, ProofError, TileMap, TileRecorder, TreeSize, bundle_for_leaf,
    consistency_proof, inclusion_proof, leaf_hash, tree_root, verify_consistency, verify_inclusion,
};

use crate::checkpoint::SignedCheckpoint;
use crate::error::{Error, Result};
use crate::http::Client;
use crate::verify::{EntryBody, VerifiedEntry, expected_body, verify_entry};

/// One log entry read from the tiles, with its inclusion proof verified against a checkpoint.
#[derive(Clone, Debug)]
pub struct LogEntry {
    /// The entry's index.
    pub index: u64,
    /// The entry bytes (the canonical body).
    pub body: Bytes,
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// The inclusion proof, leaf to root.
    pub proof: Vec<Hash>,
    /// The checkpoint the proof leads to.
    pub checkpoint: SignedCheckpoint,
}

impl LogEntry {
    /// The entry as a `TransparencyLogEntry`, as the log answered when it was created (with the
    /// proof to `checkpoint` instead), for [`verify_entry`] and for files.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidJson`] or [`Error::BodyNotCanonical`] if the body is not an entry;
    /// [`Error::OutOfRange`] for an index or size beyond `int64`.
    pub fn to_transparency_log_entry(&self, log_id: [u8; 32]) -> Result<TransparencyLogEntry> {
        let body = EntryBody::parse(&self.body)?;
        let index = i64::try_from(self.index).map_err(|_| Error::OutOfRange {
            field: "logIndex",
            value: i64::MAX,
        })?;
        let size =
            i64::try_from(self.checkpoint.checkpoint.size).map_err(|_| Error::OutOfRange {
                field: "treeSize",
                value: i64::MAX,
            })?;
        Ok(TransparencyLogEntry {
            log_index: index,
            log_id: Some(LogId {
                key_id: log_id.to_vec(),
            }),
            kind_version: Some(KindVersion {
                kind: body.kind().to_string(),
                version: body.api_version().to_string(),
            }),
            integrated_time: 0,
            inclusion_promise: None,
            inclusion_proof: Some(InclusionProof {
                log_index: index,
                root_hash: self.checkpoint.root().0.to_vec(),
                tree_size: size,
                hashes: self.proof.iter().map(|h| h.0.to_vec()).collect(),
                checkpoint: Some(Checkpoint {
                    envelope: self.checkpoint.note().to_string(),
                }),
            }),
            canonicalized_body: self.body.to_vec(),
        })
    }
}

impl Client {
    /// Runs `compute` on a recorder and fetches every tile it asked for.
    pub(crate) async fn preload<T>(
        &self,
        compute: impl FnOnce(&TileRecorder) -> Result<T, ProofError>,
    ) -> Result<TileMap> {
        let recorder = TileRecorder::new();
        // The recorder holds no tiles, so this fails; it only lists what is needed.
        let _ = compute(&recorder);
        self.tiles(recorder.into_tile_ids()).await
    }

    /// Proves from the log's tiles that `new` extends `old`: computes the consistency proof at
    /// `new`'s size and verifies it against both signed roots (RFC 9162 §2.1.4.2).
    ///
    /// # Errors
    ///
    /// [`Error::Rollback`] if `old` is larger; [`Error::Fork`] for equal sizes with different
    /// roots; [`Error::NotFound`] naming a tile the log does not serve; [`Error::Inconsistent`]
    /// if the tiles do not prove `new` extends `old`.
    pub async fn prove_consistency(
        &self,
        old: &SignedCheckpoint,
        new: &SignedCheckpoint,
    ) -> Result<Vec<Hash>> {
        let (old_size, new_size) = (old.size(), new.size());
        if old_size > new_size {
            return Err(Error::Rollback {
                verified: old_size.get(),
                current: new_size.get(),
            });
        }
        if old_size == new_size {
            if old.root() != new.root() {
                return Err(Error::Fork {
                    size: old_size.get(),
                    first: old.root(),
                    second: new.root(),
                });
            }
            return Ok(Vec::new());
        }
        let tiles = self
            .preload(|reader| consistency_proof(old_size, new_size, reader))
            .await?;
        let proof = consistency_proof(old_size, new_size, &tiles)
            .map_err(|source| Error::Proof { source })?;
        verify_consistency(old_size, new_size, &old.root(), &new.root(), &proof).map_err(
            |source| Error::Inconsistent {
                old: old_size.get(),
                new: new_size.get(),
                source,
            },
        )?;
        Ok(proof)
    }

    /// The root of the log's first `size` entries, computed from its tiles. Unverified by itself:
    /// compare it with a root you trust, or prove the current checkpoint extends it.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] naming a missing tile; [`Error::Proof`].
    pub async fn root_from_tiles(&self, size: TreeSize) -> Result<Hash> {
        let tiles = self.preload(|reader| tree_root(size, reader)).await?;
        tree_root(size, &tiles).map_err(|source| Error::Proof { source })
    }

    /// Proves the old root of the log's first `old` entries from the tiles and checks that
    /// `current` extends it; returns that old root and the proof.
    ///
    /// # Errors
    ///
    /// [`Error::Rollback`] if `old` is beyond `current`; otherwise as
    /// [`Client::root_from_tiles`] and [`Client::prove_consistency`].
    pub async fn prove_extends_size(
        &self,
        old: TreeSize,
        current: &SignedCheckpoint,
    ) -> Result<(Hash, Vec<Hash>)> {
        if old > current.size() {
            return Err(Error::Rollback {
                verified: old.get(),
                current: current.size().get(),
            });
        }
        let tiles = self
            .preload(|reader| {
                let root = tree_root(old, reader);
                let proof = consistency_proof(old, current.size(), reader);
                root.and(proof)
            })
            .await?;
        let root = tree_root(old, &tiles).map_err(|source| Error::Proof { source })?;
        let proof = consistency_proof(old, current.size(), &tiles)
            .map_err(|source| Error::Proof { source })?;
        verify_consistency(old, current.size(), &root, &current.root(), &proof).map_err(
            |source| Error::Inconsistent {
                old: old.get(),
                new: current.size().get(),
                source,
            },
        )?;
        Ok((root, proof))
    }

    /// Reads entry `index` from its entry bundle, and proves its inclusion in `checkpoint` from
    /// the tiles.
    ///
    /// # Errors
    ///
    /// [`Error::IndexBeyondTree`]; [`Error::NotFound`] naming a missing tile or bundle;
    /// [`Error::Bundle`]; [`Error::Inclusion`] if the entry is not the one the root commits to.
    pub async fn entry_at(&self, index: u64, checkpoint: &SignedCheckpoint) -> Result<LogEntry> {
        let size = checkpoint.size();
        let leaf_index = LeafIndex::new(index);
        let (bundle, position) =
            bundle_for_leaf(leaf_index, size).ok_or(Error::IndexBeyondTree {
                index,
                size: size.get(),
            })?;
        let (entries, tiles) = futures::try_join!(
            self.bundle(bundle),
            self.preload(|reader| inclusion_proof(leaf_index, size, reader))
        )?;
        let body = entries
            .get(position)
            .cloned()
            .ok_or(Error::IndexBeyondTree {
                index,
                size: size.get(),
            })?;
        let proof =
            inclusion_proof(leaf_index, size, &tiles).map_err(|source| Error::Proof { source })?;
        let leaf = leaf_hash(&body);
        verify_inclusion(&leaf, leaf_index, size, &proof, &checkpoint.root()).map_err(
            |source| Error::Inclusion {
                index,
                size: size.get(),
                source,
            },
        )?;
        Ok(LogEntry {
            index,
            body,
            leaf_hash: leaf,
            proof,
            checkpoint: checkpoint.clone(),
        })
    }

    /// Submits an entry and verifies the answer: the request is validated locally first (so the
    /// expected canonical body is known), and the returned entry must carry exactly that body and
    /// pass [`verify_entry`].
    ///
    /// # Errors
    ///
    /// [`Error::BodyRejected`] for an invalid request (nothing is sent); the errors of
    /// [`Client::submit`] (including [`Error::Duplicate`]); any [`verify_entry`] error;
    /// [`Error::WrongBody`] if the log logged something else.
    pub async fn submit_verified(
        &self,
        request: &CreateEntryRequest,
        verifier: &LogVerifier,
    ) -> Result<(TransparencyLogEntry, VerifiedEntry)> {
        let expected = expected_body(request)?;
        let entry = self.submit(request).await?;
        if entry.canonicalized_body != expected {
            return Err(Error::WrongBody);
        }
        let verified = verify_entry(&entry, verifier)?;
        Ok((entry, verified))
    }
}
