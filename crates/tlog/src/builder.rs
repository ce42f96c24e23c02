//! Incremental tile building: the right edge of the tree.

use crate::{
    Hash, ProofError, Tile, TileId, TileIndex, TileLevel, TileReader, TileWidth, TreeSize,
    coords::{FULL_TILE_WIDTH, low_byte, shift_levels},
    empty_root, node_hash,
};

/// Tile levels a `u64` tree size can fill: level 7 holds at most 255 hashes.
const MAX_LEVELS: u8 = 8;

/// The partial tile being filled at one level, with the roots of the perfect subtrees that
/// cover it (one per set bit of its width, largest first).
#[derive(Debug, Clone)]
struct Level {
    level: TileLevel,
    /// Index of the tile being filled.
    index: u64,
    /// Its hashes (fewer than 256 between calls).
    row: Vec<Hash>,
    /// Roots of the perfect subtrees covering `row`, left to right.
    stack: Vec<Hash>,
}

impl Level {
    fn new(level: TileLevel, index: u64) -> Self {
        Level {
            level,
            index,
            row: Vec::new(),
            stack: Vec::with_capacity(usize::from(crate::TILE_HEIGHT) + 1),
        }
    }

    fn width(&self) -> Option<TileWidth> {
        u16::try_from(self.row.len()).ok().and_then(TileWidth::new)
    }

    /// Adds one hash to the row. If the tile becomes full, returns it and its subtree hash,
    /// and starts the next tile.
    fn push(&mut self, hash: Hash) -> Option<(Tile, Hash)> {
        if self.row.capacity() == 0 {
            self.row.reserve_exact(usize::from(FULL_TILE_WIDTH));
        }
        self.row.push(hash);
        self.stack.push(hash);
        // Each trailing zero bit of the new width completes one more perfect subtree.
        let mut width = self.row.len();
        while width & 1 == 0 {
            match (self.stack.pop(), self.stack.pop()) {
                (Some(right), Some(left)) => self.stack.push(node_hash(&left, &right)),
                _ => break,
            }
            width >>= 1;
        }
        if self.row.len() < usize::from(FULL_TILE_WIDTH) {
            return None;
        }
        let tile_hash = self.stack.pop()?;
        self.stack.clear();
        let hashes = std::mem::replace(
            &mut self.row,
            Vec::with_capacity(usize::from(FULL_TILE_WIDTH)),
        );
        let id = TileId::new(self.level, TileIndex::new(self.index), TileWidth::FULL);
        self.index += 1;
        Some((Tile { id, hashes }, tile_hash))
    }

    fn partial_tile(&self) -> Option<Tile> {
        Some(Tile {
            id: TileId::new(self.level, TileIndex::new(self.index), self.width()?),
            hashes: self.row.clone(),
        })
    }
}

/// Builds hash tiles incrementally, holding only the right edge of the tree: the partial tile
/// at each level (at most 8 × 255 hashes).
///
/// Appending costs one node hash per leaf plus one per completed subtree (about one per leaf
/// overall, never re-hashing a tile), and no allocation per leaf.
#[derive(Debug, Clone, Default)]
pub struct TreeBuilder {
    size: u64,
    levels: Vec<Level>,
}

impl TreeBuilder {
    /// A builder for the empty tree.
    #[must_use]
    pub fn new() -> Self {
        TreeBuilder::default()
    }

    /// The partial tiles that [`TreeBuilder::resume`] reads to resume at `size`: one per level
    /// whose hash count is not a multiple of 256, lowest level first.
    #[must_use]
    pub fn edge_tile_ids(size: TreeSize) -> Vec<TileId> {
        let mut out = Vec::new();
        for raw_level in 0..MAX_LEVELS {
            let row = shift_levels(size.get(), raw_level);
            if row == 0 {
                break;
            }
            if let (Some(level), Some(width)) =
                (TileLevel::new(raw_level), TileWidth::partial(low_byte(row)))
            {
                out.push(TileId::new(level, TileIndex::new(row >> 8), width));
            }
        }
        out
    }

    /// Rebuilds the right edge of a tree of `size` leaves from its partial tiles only
    /// ([`TreeBuilder::edge_tile_ids`]). Compare [`TreeBuilder::root`] with the checkpoint's
    /// root to make sure the tiles were the right ones.
    ///
    /// Every edge tile is requested, even after a read fails, so a
    /// [`TileRecorder`](crate::TileRecorder) lists them all.
    ///
    /// # Errors
    ///
    /// The first read error ([`ProofError::TileRead`]), or [`ProofError::ShortTile`] if the
    /// reader returned fewer hashes than requested.
    pub fn resume<R: TileReader + ?Sized>(size: TreeSize, reader: &R) -> Result<Self, ProofError> {
        let mut levels = Vec::new();
        let mut first_error = None;
        for raw_level in 0..MAX_LEVELS {
            let row = shift_levels(size.get(), raw_level);
            let Some(level) = TileLevel::new(raw_level).filter(|_| row != 0) else {
                break;
            };
            let mut edge = Level::new(level, row >> 8);
            if let Some(width) = TileWidth::partial(low_byte(row)) {
                let tile = TileId::new(level, TileIndex::new(edge.index), width);
                match reader.read_tile(level, tile.index, width) {
                    Ok(hashes) => match hashes.get(..width.to_usize()) {
                        Some(hashes) => {
                            for hash in hashes {
                                // A partial tile never fills up here: width < 256.
                                let _ = edge.push(*hash);
                            }
                        }
                        None => {
                            first_error.get_or_insert(ProofError::ShortTile {
                                tile,
                                len: hashes.len(),
                            });
                        }
                    },
                    Err(error) => {
                        first_error.get_or_insert(ProofError::TileRead(error));
                    }
                }
            }
            levels.push(edge);
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(TreeBuilder {
                size: size.get(),
                levels,
            }),
        }
    }

    /// Number of leaves in the tree.
    #[must_use]
    pub fn size(&self) -> TreeSize {
        TreeSize::new(self.size)
    }

    /// The root hash of the tree (RFC 6962 MTH); [`empty_root`] for the empty tree.
    ///
    /// Costs at most one node hash per set bit of the size.
    #[must_use]
    pub fn root(&self) -> Hash {
        let mut root: Option<Hash> = None;
        // Level 0 holds the rightmost (smallest) subtrees; within a level the stack runs left
        // to right. Fold from the right.
        for level in &self.levels {
            for subtree in level.stack.iter().rev() {
                root = Some(match root {
                    None => *subtree,
                    Some(right) => node_hash(subtree, &right),
                });
            }
        }
        root.unwrap_or_else(empty_root)
    }

    /// Appends leaf hashes and returns every hash tile whose contents changed, each with its
    /// new full contents: every tile that became full (as a full tile), and the partial tile at
    /// each level that received hashes. Each tile appears once, ordered by level then index.
    /// The list equals [`new_tile_ids`](crate::new_tile_ids)`(old size, new size)`.
    ///
    /// # Panics
    ///
    /// If the tree would exceed `u64::MAX` leaves, which no log can reach.
    #[expect(
        clippy::expect_used,
        reason = "2^64 leaves cannot be appended in practice; the bound keeps the level count at 8"
    )]
    pub fn append(&mut self, leaves: &[Hash]) -> Vec<Tile> {
        let added = u64::try_from(leaves.len()).expect("slice length fits in u64");
        let new_size = self
            .size
            .checked_add(added)
            .expect("tree size exceeds u64::MAX");
        let mut out = Vec::new();
        let mut changed = [false; 8];
        for leaf in leaves {
            let mut carry = *leaf;
            for raw_level in 0..MAX_LEVELS {
                let slot = usize::from(raw_level);
                if self.levels.len() == slot {
                    let Some(level) = TileLevel::new(raw_level) else {
                        break;
                    };
                    self.levels.push(Level::new(level, 0));
                }
                let Some(level) = self.levels.get_mut(slot) else {
                    break;
                };
                if let Some(flag) = changed.get_mut(slot) {
                    *flag = true;
                }
                match level.push(carry) {
                    None => break,
                    Some((full, tile_hash)) => {
                        out.push(full);
                        carry = tile_hash;
                    }
                }
            }
        }
        self.size = new_size;
        for (level, was_changed) in self.levels.iter().zip(changed) {
            if was_changed && let Some(tile) = level.partial_tile() {
                out.push(tile);
            }
        }
        out.sort_unstable_by_key(|tile| tile.id);
        out
    }

    /// The current partial tile at every level that has one (the right edge of the tree),
    /// lowest level first. Together with the tiles returned by the last
    /// [`TreeBuilder::append`], they hold every hash needed to prove the inclusion of the
    /// appended leaves at the new size, and to compute its root.
    #[must_use]
    pub fn edge_tiles(&self) -> Vec<Tile> {
        self.levels.iter().filter_map(Level::partial_tile).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TileMap, TileRecorder, new_tile_ids};

    /// Distinct leaf hashes; cheap to make (no hashing), since debug-build SHA-256 is slow.
    fn leaves(n: u32) -> Vec<Hash> {
        (0..n)
            .map(|i| {
                let mut bytes = [0x5a; 32];
                bytes[..4].copy_from_slice(&i.to_le_bytes());
                Hash(bytes)
            })
            .collect()
    }

    /// RFC 6962 MTH by its recursive definition, straight over the leaf hashes.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn roots_match_recursive_definition() {
        let all = leaves(1100);
        let mut builder = TreeBuilder::new();
        assert_eq!(builder.root(), empty_root());
        for (i, leaf) in all.iter().enumerate() {
            builder.append(std::slice::from_ref(leaf));
            if i < 300 || i % 97 == 0 || i == all.len() - 1 {
                assert_eq!(builder.root(), mth(&all[..=i]), "size {}", i + 1);
            }
        }
    }

    #[test]
    fn append_returns_exactly_the_changed_tiles() {
        let all = leaves(70_000);
        let mut builder = TreeBuilder::new();
        let mut start = 0usize;
        for batch in [1usize, 255, 1, 1, 300, 65_000, 10, 4432] {
            let old = builder.size();
            let tiles = builder.append(&all[start..start + batch]);
            start += batch;
            let ids: Vec<TileId> = tiles.iter().map(|t| t.id).collect();
            assert_eq!(ids, new_tile_ids(old, builder.size()), "batch {batch}");
            for tile in &tiles {
                assert_eq!(tile.hashes.len(), tile.id.width.to_usize());
            }
        }
        assert_eq!(start, 70_000);
        let edge: Vec<TileId> = builder.edge_tiles().iter().map(|t| t.id).collect();
        assert_eq!(edge, TreeBuilder::edge_tile_ids(TreeSize::new(70_000)));
        assert_eq!(edge.len(), 3);
    }

    #[test]
    fn level_zero_tiles_hold_the_leaves() {
        let all = leaves(600);
        let mut builder = TreeBuilder::new();
        let tiles = builder.append(&all);
        let level0: Vec<&Tile> = tiles
            .iter()
            .filter(|t| t.id.level == TileLevel::ZERO)
            .collect();
        assert_eq!(level0.len(), 3);
        assert_eq!(level0[1].hashes, all[256..512]);
        assert_eq!(level0[2].hashes, all[512..600]);
        let level1 = tiles.iter().find(|t| t.id.level.get() == 1).unwrap();
        assert_eq!(level1.hashes, vec![mth(&all[..256]), mth(&all[256..512])]);
    }

    #[test]
    fn resume_matches_uninterrupted_builder() {
        let all = leaves(67_000);
        let mut reference = TreeBuilder::new();
        let mut map = TileMap::new();
        let mut done = 0usize;
        for stop in [1usize, 255, 256, 257, 65_535, 65_536, 65_537, 66_000] {
            map.extend(reference.append(&all[done..stop]));
            done = stop;
            let size = TreeSize::new(u64::try_from(stop).unwrap());

            let recorder = TileRecorder::new();
            let recorded = TreeBuilder::resume(size, &recorder);
            let edge_ids = TreeBuilder::edge_tile_ids(size);
            assert_eq!(recorded.is_ok(), edge_ids.is_empty());
            assert_eq!(recorder.tile_ids(), edge_ids);

            let edge_only: TileMap = reference.edge_tiles().into_iter().collect();
            let mut resumed = TreeBuilder::resume(size, &edge_only).unwrap();
            assert_eq!(resumed.size(), size);
            assert_eq!(resumed.root(), reference.root());

            let mut from_map = TreeBuilder::resume(size, &map).unwrap();
            let next = &all[stop..stop + 700];
            let mut continued = reference.clone();
            let want = continued.append(next);
            assert_eq!(resumed.append(next), want, "resume at {stop}");
            assert_eq!(from_map.append(next), want);
            assert_eq!(resumed.root(), continued.root());
            assert_eq!(resumed.edge_tiles(), continued.edge_tiles());
        }
    }

    /// The pipeline's contract: after `append(batch)`, the edge tiles plus the returned tiles
    /// alone give the new root and the inclusion proof of every leaf of the batch.
    #[test]
    fn edge_and_changed_tiles_prove_the_batch() {
        // Level 2 (65,536 leaves) is covered by the differential tests; stay small here.
        let all = leaves(5000);
        let mut reference = crate::MemoryTree::new();
        let mut builder = TreeBuilder::new();
        let mut done = 0usize;
        for stop in [
            1usize, 2, 3, 255, 256, 300, 511, 513, 1000, 4000, 4095, 4097, 5000,
        ] {
            let changed = builder.append(&all[done..stop]);
            reference.extend(all[done..stop].iter().copied());
            let size = builder.size();
            let tiles: TileMap = builder.edge_tiles().into_iter().chain(changed).collect();
            let mut prover = crate::Prover::new(size, &tiles);
            assert_eq!(prover.root().unwrap(), reference.root(size).unwrap());
            // Every leaf of small batches; a spread of leaves of the big ones.
            let step = if stop - done > 1000 { 7 } else { 1 };
            for index in (done..stop).step_by(step).chain([stop - 1]) {
                let index = crate::LeafIndex::new(u64::try_from(index).unwrap());
                assert_eq!(
                    prover.inclusion_proof(index).unwrap(),
                    reference.inclusion_proof(index, size).unwrap(),
                    "leaf {index} at size {size}"
                );
            }
            done = stop;
        }
    }

    #[test]
    fn resume_reports_short_tiles() {
        struct Short;
        impl TileReader for Short {
            fn read_tile(
                &self,
                _: TileLevel,
                _: TileIndex,
                _: TileWidth,
            ) -> Result<std::borrow::Cow<'_, [Hash]>, crate::TileReadError> {
                Ok(std::borrow::Cow::Owned(vec![Hash::ZERO; 2]))
            }
        }
        assert!(matches!(
            TreeBuilder::resume(TreeSize::new(3), &Short),
            Err(ProofError::ShortTile { len: 2, .. })
        ));
        assert!(TreeBuilder::resume(TreeSize::new(2), &Short).is_ok());
    }
}
