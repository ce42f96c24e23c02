//! Proofs a client computes itself, from tiles and entry bundles fetched over HTTP, so a check
//! never depends on the proof the server chose to send.
//!
//! [`TileCache`] keeps every full tile and bundle it has fetched (they are immutable, C2SP
//! tlog-tiles) and fetches partial ones at the width a tree size needs, falling back to the
//! full tile when the partial one is gone (the spec lets a log delete partial tiles once the
//! full one exists). Proofs are computed with `rekor-tlog` ([`rekor_tlog::Prover`]) over the
//! fetched tiles, verified with `rekor-tlog`, and consistency is checked a second time with the
//! third-party `tlog_tiles` crate.

use std::collections::{BTreeMap, HashMap};

use rekor_tlog::{
    Hash as TlogHash, LeafIndex, Prover, Tile, TileId, TileIndex, TileLevel, TileMap, TileRecorder,
    TileWidth, TreeSize, bundle_for_leaf, tile_ids_for_size,
};

use crate::assertions::{VerifiedCheckpoint, split_bundle};
use crate::client::HttpClient;
use crate::error::{Error, Result, ensure_eq};
use crate::merkle;

/// Full tiles and bundles fetched so far, and the HTTP client to fetch more.
#[derive(Debug)]
pub struct TileCache {
    http: HttpClient,
    full_tiles: HashMap<(u8, u64), Tile>,
    full_bundles: HashMap<u64, Vec<Vec<u8>>>,
    fetches: usize,
}

/// A tree of one size with every tile it needs loaded: the client's own view of the log.
#[derive(Debug)]
pub struct FetchedTree {
    /// The checkpoint the tree was loaded for.
    pub checkpoint: VerifiedCheckpoint,
    tiles: TileMap,
}

impl TileCache {
    /// An empty cache fetching through `http`.
    pub fn new(http: HttpClient) -> Self {
        TileCache {
            http,
            full_tiles: HashMap::new(),
            full_bundles: HashMap::new(),
            fetches: 0,
        }
    }

    /// Fetches from another server address from now on (after a restart); cached full tiles are
    /// kept, because a log never changes them.
    pub fn set_client(&mut self, http: HttpClient) {
        self.http = http;
    }

    /// HTTP fetches made so far.
    pub fn fetches(&self) -> usize {
        self.fetches
    }

    /// `GET /api/v2/<path>`; `None` for a 404.
    async fn get_optional(&mut self, path: &str) -> Result<Option<bytes::Bytes>> {
        self.fetches += 1;
        let reply = self.http.get(&format!("/api/v2/{path}")).await?;
        if reply.status == 404 {
            return Ok(None);
        }
        let reply = reply.expect_status(200)?;
        reply.expect_header("content-type", "application/octet-stream")?;
        Ok(Some(reply.body))
    }

    /// Hash tile `id`, or a wider version of it.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] if neither the tile nor its full version is served, or has the
    /// wrong length; HTTP errors.
    pub async fn tile(&mut self, id: TileId) -> Result<Tile> {
        let key = (id.level.get(), id.index.get());
        if let Some(tile) = self.full_tiles.get(&key) {
            return Ok(tile.clone());
        }
        let mut candidates = vec![id];
        if !id.is_full() {
            candidates.push(TileId::new(id.level, id.index, TileWidth::FULL));
        }
        for candidate in candidates {
            let path = candidate.path();
            if let Some(data) = self.get_optional(&path).await? {
                let tile = Tile::from_bytes(candidate, &data)
                    .map_err(|e| Error::malformed(path.as_str(), e.to_string()))?;
                if candidate.is_full() {
                    self.full_tiles.insert(key, tile.clone());
                }
                return Ok(tile);
            }
        }
        Err(Error::malformed(
            id.path(),
            "not served (nor its full version)",
        ))
    }

    /// The entries of bundle `index` that a tree of `size` holds (at least that many).
    async fn bundle(&mut self, index: u64, size: u64) -> Result<Vec<Vec<u8>>> {
        if let Some(entries) = self.full_bundles.get(&index) {
            return Ok(entries.clone());
        }
        let (bundle, _) = bundle_for_leaf(LeafIndex::new(index * 256), TreeSize::new(size))
            .ok_or_else(|| Error::malformed("bundle", format!("{index} beyond size {size}")))?;
        let mut candidates = vec![bundle];
        if !bundle.is_full() {
            candidates.push(rekor_tlog::BundleId::new(bundle.index, TileWidth::FULL));
        }
        for candidate in candidates {
            let path = candidate.path();
            if let Some(data) = self.get_optional(&path).await? {
                let entries = split_bundle(&path, &data)?;
                ensure_eq(
                    format!("{path} entry count"),
                    candidate.width.to_usize(),
                    entries.len(),
                )?;
                if candidate.is_full() {
                    self.full_bundles.insert(index, entries.clone());
                }
                return Ok(entries);
            }
        }
        Err(Error::malformed(
            bundle.path(),
            "not served (nor its full version)",
        ))
    }

    /// Loads every hash tile of the tree `checkpoint` describes and checks that they hash to its
    /// root.
    ///
    /// # Errors
    ///
    /// Fetch errors; [`Error::Mismatch`] if the tiles do not give the checkpoint root.
    pub async fn tree(&mut self, checkpoint: &VerifiedCheckpoint) -> Result<FetchedTree> {
        let size = TreeSize::new(checkpoint.size);
        let mut tiles = TileMap::new();
        for id in tile_ids_for_size(size) {
            tiles.insert(self.tile(id).await?);
        }
        // Whatever else a root computation asks for (nothing, if the layout is as expected).
        let recorder = TileRecorder::new();
        let _ = Prover::new(size, &recorder).root();
        for id in recorder.into_tile_ids() {
            if tiles
                .get(id.level, id.index)
                .is_none_or(|t| t.hashes.len() < id.width.to_usize())
            {
                tiles.insert(self.tile(id).await?);
            }
        }
        let root = Prover::new(size, &tiles).root()?;
        ensure_eq(
            format!("root of the tiles of size {}", checkpoint.size),
            hex::encode(checkpoint.root),
            hex::encode(root.0),
        )?;
        Ok(FetchedTree {
            checkpoint: checkpoint.clone(),
            tiles,
        })
    }

    /// Entry `index` as the log serves it in its bundle, for a tree of `size` entries.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] if `index >= size` or the bundle is short; fetch errors.
    pub async fn entry(&mut self, index: u64, size: u64) -> Result<Vec<u8>> {
        let (_, position) = bundle_for_leaf(LeafIndex::new(index), TreeSize::new(size))
            .ok_or_else(|| Error::malformed("entry", format!("{index} beyond size {size}")))?;
        let entries = self.bundle(index / 256, size).await?;
        entries
            .get(position)
            .cloned()
            .ok_or_else(|| Error::malformed("bundle", format!("no entry {index}")))
    }
}

impl FetchedTree {
    /// A tree from tiles already at hand (the caller vouches they belong to `checkpoint`).
    pub fn from_tiles(checkpoint: VerifiedCheckpoint, tiles: TileMap) -> Self {
        FetchedTree { checkpoint, tiles }
    }

    /// Checks that `body` is leaf `index`: a proof computed from the fetched tiles verifies
    /// against the checkpoint root, and the level-0 tile holds its leaf hash.
    ///
    /// # Errors
    ///
    /// [`Error::Proof`] or [`Error::Mismatch`].
    pub fn verify_inclusion(&self, index: u64, body: &[u8]) -> Result<()> {
        let size = TreeSize::new(self.checkpoint.size);
        let leaf = TlogHash(merkle::leaf_hash(body));
        let proof = Prover::new(size, &self.tiles).inclusion_proof(LeafIndex::new(index))?;
        rekor_tlog::verify_inclusion(
            &leaf,
            LeafIndex::new(index),
            size,
            &proof,
            &TlogHash(self.checkpoint.root),
        )?;
        let tile = self
            .tiles
            .get(TileLevel::ZERO, TileIndex::new(index / 256))
            .ok_or_else(|| Error::malformed("level-0 tile", format!("missing for {index}")))?;
        let position = usize::try_from(index % 256)
            .map_err(|_| Error::malformed("leaf position", "does not fit"))?;
        ensure_eq(
            format!("leaf hash {index} in tile"),
            Some(hex::encode(leaf.0)),
            tile.hashes.get(position).map(|h| hex::encode(h.0)),
        )
    }

    /// Checks that `old` is a prefix of this tree: a consistency proof computed from the fetched
    /// tiles verifies with `rekor-tlog` and with `tlog_tiles::check_tree`.
    ///
    /// # Errors
    ///
    /// [`Error::Proof`], [`Error::TlogTiles`] or [`Error::Mismatch`] (old larger than new).
    pub fn verify_consistency(&self, old: &VerifiedCheckpoint) -> Result<()> {
        let (old_size, new_size) = (TreeSize::new(old.size), TreeSize::new(self.checkpoint.size));
        if old.size > self.checkpoint.size {
            return Err(Error::mismatch(
                "checkpoint size never decreases",
                format!(">= {}", old.size),
                self.checkpoint.size,
            ));
        }
        let proof = Prover::new(new_size, &self.tiles).consistency_proof(old_size)?;
        rekor_tlog::verify_consistency(
            old_size,
            new_size,
            &TlogHash(old.root),
            &TlogHash(self.checkpoint.root),
            &proof,
        )?;
        if old.size > 0 && old.size < self.checkpoint.size {
            tlog_tiles::check_tree(
                &proof.iter().map(|h| tlog_tiles::Hash(h.0)).collect(),
                self.checkpoint.size,
                tlog_tiles::Hash(self.checkpoint.root),
                old.size,
                tlog_tiles::Hash(old.root),
            )
            .map_err(|source| Error::TlogTiles {
                what: "check_tree",
                source,
            })?;
        }
        Ok(())
    }
}

/// Every checkpoint a client has seen, by size: two different roots for one size are a fork.
#[derive(Clone, Debug, Default)]
pub struct CheckpointHistory {
    by_size: BTreeMap<u64, VerifiedCheckpoint>,
}

impl CheckpointHistory {
    /// An empty history.
    pub fn new() -> Self {
        CheckpointHistory::default()
    }

    /// Records `checkpoint`.
    ///
    /// # Errors
    ///
    /// [`Error::Mismatch`] if a checkpoint of the same size with another root was seen.
    pub fn record(&mut self, checkpoint: &VerifiedCheckpoint) -> Result<()> {
        match self.by_size.get(&checkpoint.size) {
            Some(seen) => ensure_eq(
                format!("root of the two checkpoints of size {}", checkpoint.size),
                hex::encode(seen.root),
                hex::encode(checkpoint.root),
            ),
            None => {
                self.by_size.insert(checkpoint.size, checkpoint.clone());
                Ok(())
            }
        }
    }

    /// The largest size seen (0 if none).
    pub fn max_size(&self) -> u64 {
        self.by_size.keys().next_back().copied().unwrap_or(0)
    }

    /// The number of distinct sizes seen.
    pub fn len(&self) -> usize {
        self.by_size.len()
    }

    /// Whether nothing was seen.
    pub fn is_empty(&self) -> bool {
        self.by_size.is_empty()
    }

    /// The checkpoints seen, one per size, smallest first.
    pub fn checkpoints(&self) -> impl Iterator<Item = &VerifiedCheckpoint> {
        self.by_size.values()
    }

    /// Checks `tree` is consistent with every checkpoint seen (so none is larger).
    ///
    /// # Errors
    ///
    /// As [`FetchedTree::verify_consistency`], naming the old size.
    pub fn verify_all(&self, tree: &FetchedTree) -> Result<()> {
        for old in self.checkpoints() {
            tree.verify_consistency(old).map_err(|e| {
                Error::malformed(
                    format!(
                        "consistency of size {} with earlier size {}",
                        tree.checkpoint.size, old.size
                    ),
                    e.to_string(),
                )
            })?;
        }
        Ok(())
    }
}

/// A small deterministic RNG (SplitMix64) for reproducible test schedules; the seed is printed
/// by the tests that use it.
#[derive(Clone, Debug)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// The generator for `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRng { state: seed }
    }

    /// A seed from `$name` if set (decimal), else from the clock.
    pub fn seed_from_env(name: &str) -> u64 {
        if let Some(seed) = std::env::var(name).ok().and_then(|v| v.parse().ok()) {
            return seed;
        }
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() ^ u64::from(d.subsec_nanos()).rotate_left(32))
            .unwrap_or(0x5eed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `low..=high` (`low` if the range is empty).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        match high.checked_sub(low).and_then(|span| span.checked_add(1)) {
            Some(span) => low + self.next_u64() % span,
            None => low,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_rng_is_deterministic_and_in_range() {
        let mut a = SeededRng::new(7);
        let mut b = SeededRng::new(7);
        let xs: Vec<u64> = (0..100).map(|_| a.range(50, 400)).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.range(50, 400)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| (50..=400).contains(x)));
        assert!(xs.iter().any(|x| *x != xs[0]));
        assert_eq!(SeededRng::new(1).range(5, 5), 5);
        assert_eq!(SeededRng::new(1).range(6, 5), 6);
    }

    /// A tree of `size` leaves built with `rekor-tlog`'s builder, its tiles, and the root by
    /// the independent RFC 6962 recursion.
    fn built(size: u64) -> (Vec<Vec<u8>>, TileMap, [u8; 32]) {
        let bodies: Vec<Vec<u8>> = (0..size)
            .map(|i| format!("entry {i}").into_bytes())
            .collect();
        let leaves: Vec<TlogHash> = bodies
            .iter()
            .map(|b| TlogHash(merkle::leaf_hash(b)))
            .collect();
        let mut builder = rekor_tlog::TreeBuilder::new();
        let tiles: TileMap = builder.append(&leaves).into_iter().collect();
        let root = merkle::root(&leaves.iter().map(|h| h.0).collect::<Vec<_>>());
        (bodies, tiles, root)
    }

    fn checkpoint(size: u64, root: [u8; 32]) -> VerifiedCheckpoint {
        VerifiedCheckpoint {
            size,
            root,
            note: Vec::new(),
        }
    }

    #[test]
    fn proofs_from_tiles_verify_and_catch_tampering() {
        let (bodies, tiles, root) = built(300);
        let tree = FetchedTree::from_tiles(checkpoint(300, root), tiles);
        for index in [0u64, 1, 255, 256, 299] {
            let body = &bodies[usize::try_from(index).unwrap()];
            tree.verify_inclusion(index, body).unwrap();
            assert!(tree.verify_inclusion(index, b"something else").is_err());
        }
        assert!(tree.verify_inclusion(1, &bodies[2]).is_err());
        assert!(tree.verify_inclusion(300, &bodies[0]).is_err());

        for old in [1u64, 7, 256, 257, 299, 300] {
            let (_, _, old_root) = built(old);
            tree.verify_consistency(&checkpoint(old, old_root)).unwrap();
            let mut forked = old_root;
            forked[0] ^= 1;
            assert!(
                tree.verify_consistency(&checkpoint(old, forked)).is_err(),
                "{old}"
            );
        }
        assert!(tree.verify_consistency(&checkpoint(301, root)).is_err());

        let mut history = CheckpointHistory::new();
        history.record(&checkpoint(300, root)).unwrap();
        history.verify_all(&tree).unwrap();
        history.record(&checkpoint(299, [7; 32])).unwrap();
        assert!(history.verify_all(&tree).is_err());
    }

    #[test]
    fn history_refuses_a_fork() {
        let checkpoint = |size, byte| VerifiedCheckpoint {
            size,
            root: [byte; 32],
            note: Vec::new(),
        };
        let mut history = CheckpointHistory::new();
        history.record(&checkpoint(3, 1)).unwrap();
        history.record(&checkpoint(3, 1)).unwrap();
        history.record(&checkpoint(5, 2)).unwrap();
        assert!(history.record(&checkpoint(3, 9)).is_err());
        assert_eq!(history.max_size(), 5);
        assert_eq!(history.len(), 2);
    }
}
