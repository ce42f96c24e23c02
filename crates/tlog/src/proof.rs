//! Roots, inclusion proofs and consistency proofs computed from hash tiles
//! (RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1).

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::Arc,
};

use crate::{
    Hash, LeafIndex, ProofError, TileId, TileIndex, TileLevel, TileReader, TileWidth, TreeSize,
    coords::{low_byte, tile_width_at},
    empty_root, node_hash,
};

/// The largest power of two strictly below `n`; `n` must be at least 2.
pub(crate) fn split_point(n: u64) -> u64 {
    let bits = 64 - (n.saturating_sub(1)).leading_zeros();
    1_u64 << bits.saturating_sub(1)
}

/// A fast hasher for tile coordinates. The keys are tree coordinates computed by this crate,
/// and a prover holds few tiles, so hash flooding is not a concern; SipHash showed up as a
/// sixth of the cost of batch proofs.
#[derive(Default)]
struct CoordinateHasher(u64);

impl CoordinateHasher {
    fn mix(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for CoordinateHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.mix(u64::from(*byte));
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.mix(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.mix(value);
    }
}

type TileCache =
    HashMap<(TileLevel, TileIndex), Arc<TileNodes>, BuildHasherDefault<CoordinateHasher>>;

/// A hash tile with every inner node of its 8 levels computed: row `r` holds the hashes of the
/// perfect subtrees over tile hashes `j·2^r .. (j+1)·2^r`.
///
/// Expanding a tile costs about 255 SHA-256 computations, the bulk of an inclusion proof's
/// work. A full tile never changes, so its nodes can be kept across provers and tree sizes
/// ([`Prover::insert_nodes`], [`Prover::expanded`]); a partial tile's nodes are only valid for
/// the width they were computed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileNodes {
    width: TileWidth,
    nodes: Vec<Vec<Hash>>,
}

impl TileNodes {
    /// Expands the first `width` hashes of `row`; `None` if `row` holds fewer.
    #[must_use]
    pub fn new(width: TileWidth, row: &[Hash]) -> Option<Self> {
        let row = row.get(..width.to_usize())?;
        let mut nodes = Vec::with_capacity(usize::from(crate::TILE_HEIGHT));
        nodes.push(row.to_vec());
        for _ in 1..crate::TILE_HEIGHT {
            let next: Vec<Hash> = nodes
                .last()
                .map(|below| {
                    below
                        .chunks_exact(2)
                        .map(|pair| match pair {
                            [left, right] => node_hash(left, right),
                            _ => Hash::ZERO,
                        })
                        .collect()
                })
                .unwrap_or_default();
            nodes.push(next);
        }
        Some(TileNodes { width, nodes })
    }

    /// The number of tile hashes expanded.
    #[must_use]
    pub fn width(&self) -> TileWidth {
        self.width
    }

    /// The bytes of hashes held (about 16 KiB for a full tile), for callers that bound a
    /// cache of expanded tiles by memory.
    #[must_use]
    pub fn hashes_size(&self) -> usize {
        self.nodes.iter().map(Vec::len).sum::<usize>() * crate::HASH_SIZE
    }

    fn node(&self, height_in_tile: u8, position: usize) -> Option<Hash> {
        self.nodes
            .get(usize::from(height_in_tile))?
            .get(position)
            .copied()
    }
}

/// Computes roots and proofs for one tree size from hash tiles, caching every tile it reads
/// (with all its internal nodes) so that many proofs cost little more than one.
///
/// Use one `Prover` per batch: after appending a batch, the inclusion proofs of all its leaves
/// share the same tiles, and each further proof costs only lookups (no hashing beyond the
/// first). The free functions [`tree_root`], [`inclusion_proof`] and [`consistency_proof`] each
/// build a throwaway `Prover`.
///
/// Every operation requests each tile it needs even after a read fails (computing with
/// placeholders, which are then discarded), so a run on a [`TileRecorder`](crate::TileRecorder)
/// lists all the tiles the operation needs. Tiles are requested at their width for this tree
/// size.
#[derive(Debug)]
pub struct Prover<'r, R: TileReader + ?Sized> {
    size: u64,
    reader: &'r R,
    tiles: TileCache,
    /// Tiles that failed to read during the current operation.
    failed: Vec<(TileLevel, TileIndex)>,
    /// The first error of the current operation.
    error: Option<ProofError>,
    /// Hashes of ranges `[lo, hi)` that are not perfect subtrees (they end at the tree size).
    composites: Vec<(u64, u64, Hash)>,
}

impl<'r, R: TileReader + ?Sized> Prover<'r, R> {
    /// A prover for the tree of `size` leaves whose tiles `reader` serves.
    pub fn new(size: TreeSize, reader: &'r R) -> Self {
        Prover {
            size: size.get(),
            reader,
            tiles: TileCache::default(),
            failed: Vec::new(),
            error: None,
            composites: Vec::new(),
        }
    }

    /// The tree size this prover works on.
    #[must_use]
    pub fn size(&self) -> TreeSize {
        TreeSize::new(self.size)
    }

    /// Gives the prover tile `id` already expanded (kept from an earlier prover), so that it
    /// neither reads nor hashes that tile. Returns whether the nodes were taken: only if
    /// `id.width` and the nodes' width are the tile's width at this tree size (a full tile's
    /// nodes serve every tree that holds the whole tile; a partial tile's, only its own width).
    pub fn insert_nodes(&mut self, id: TileId, nodes: Arc<TileNodes>) -> bool {
        let needed = tile_width_at(id.level, id.index, TreeSize::new(self.size));
        if needed != Some(id.width) || nodes.width() != id.width {
            return false;
        }
        self.tiles.insert((id.level, id.index), nodes);
        true
    }

    /// The tiles this prover holds expanded (read, or given by [`Prover::insert_nodes`]), each
    /// with its id at this tree size, so that a caller may keep the full ones.
    pub fn expanded(&self) -> impl Iterator<Item = (TileId, &Arc<TileNodes>)> {
        self.tiles
            .iter()
            .map(|(&(level, index), nodes)| (TileId::new(level, index, nodes.width()), nodes))
    }

    /// The root hash of the tree (RFC 9162 §2.1.1 MTH).
    ///
    /// # Errors
    ///
    /// The first tile read error ([`ProofError::TileRead`] or [`ProofError::ShortTile`]).
    pub fn root(&mut self) -> Result<Hash, ProofError> {
        if self.size == 0 {
            return Ok(empty_root());
        }
        let root = self.range_hash(0, self.size);
        self.finish(root)
    }

    /// The inclusion proof (audit path) of leaf `index`, leaf to root (RFC 9162 §2.1.3.1).
    ///
    /// # Errors
    ///
    /// [`ProofError::IndexOutOfRange`] if `index >= size`; otherwise the first tile read error.
    pub fn inclusion_proof(&mut self, index: LeafIndex) -> Result<Vec<Hash>, ProofError> {
        if index.get() >= self.size {
            return Err(ProofError::IndexOutOfRange {
                index: index.get(),
                size: self.size,
            });
        }
        let mut proof = Vec::with_capacity(64);
        self.path(index.get(), 0, self.size, &mut proof);
        self.finish(proof)
    }

    /// The consistency proof from the tree of `old` leaves to this one (RFC 9162 §2.1.4.1),
    /// empty when `old` is 0 or equals the size.
    ///
    /// # Errors
    ///
    /// [`ProofError::SizeOrder`] if `old` is larger than the size; otherwise the first tile read
    /// error.
    pub fn consistency_proof(&mut self, old: TreeSize) -> Result<Vec<Hash>, ProofError> {
        let old = old.get();
        if old > self.size {
            return Err(ProofError::SizeOrder {
                old,
                new: self.size,
            });
        }
        let mut proof = Vec::with_capacity(64);
        if old != 0 && old != self.size {
            self.subproof(old, 0, self.size, true, &mut proof);
        }
        self.finish(proof)
    }

    /// Ends an operation: returns its result, or its first error (discarding anything computed
    /// from placeholders).
    fn finish<T>(&mut self, value: T) -> Result<T, ProofError> {
        self.failed.clear();
        match self.error.take() {
            None => Ok(value),
            Some(error) => {
                self.composites.clear();
                Err(error)
            }
        }
    }

    fn fail(&mut self, error: ProofError) -> Hash {
        self.error.get_or_insert(error);
        Hash::ZERO
    }

    /// PATH(m, D[lo:hi]) of RFC 9162 §2.1.3.1, appended leaf to root.
    fn path(&mut self, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) {
        if hi - lo <= 1 {
            return;
        }
        let k = split_point(hi - lo);
        if m < lo + k {
            self.path(m, lo, lo + k, out);
            let sibling = self.range_hash(lo + k, hi);
            out.push(sibling);
        } else {
            self.path(m, lo + k, hi, out);
            let sibling = self.range_hash(lo, lo + k);
            out.push(sibling);
        }
    }

    /// SUBPROOF(m, D[lo:hi], b) of RFC 9162 §2.1.4.1, with `m` an absolute tree size.
    fn subproof(&mut self, m: u64, lo: u64, hi: u64, complete: bool, out: &mut Vec<Hash>) {
        if m == hi {
            if !complete {
                let hash = self.range_hash(lo, hi);
                out.push(hash);
            }
            return;
        }
        let k = split_point(hi - lo);
        if m <= lo + k {
            self.subproof(m, lo, lo + k, complete, out);
            let sibling = self.range_hash(lo + k, hi);
            out.push(sibling);
        } else {
            self.subproof(m, lo + k, hi, false, out);
            let sibling = self.range_hash(lo, lo + k);
            out.push(sibling);
        }
    }

    /// MTH(D[lo:hi]) for `lo < hi <= size`.
    fn range_hash(&mut self, lo: u64, hi: u64) -> Hash {
        let count = hi - lo;
        if count.is_power_of_two() && lo.is_multiple_of(count) {
            let height = low_byte(u64::from(count.trailing_zeros()));
            return self.node(height, lo >> height);
        }
        if let Some((_, _, hash)) = self
            .composites
            .iter()
            .find(|(l, h, _)| *l == lo && *h == hi)
        {
            return *hash;
        }
        let k = split_point(count);
        let left = self.range_hash(lo, lo + k);
        let right = self.range_hash(lo + k, hi);
        let hash = node_hash(&left, &right);
        if self.error.is_none() {
            self.composites.push((lo, hi, hash));
        }
        hash
    }

    /// The hash of the perfect subtree of height `height` (2^height leaves) at position `index`.
    fn node(&mut self, height: u8, index: u64) -> Hash {
        let level_number = height / crate::TILE_HEIGHT;
        let height_in_tile = height % crate::TILE_HEIGHT;
        let Some(level) = TileLevel::new(level_number) else {
            return Hash::ZERO;
        };
        // Position of the subtree's first hash within its tile level.
        let first = index << height_in_tile;
        let tile_index = TileIndex::new(first >> 8);
        let position = usize::from(low_byte(first) >> height_in_tile);
        let key = (level, tile_index);

        if !self.tiles.contains_key(&key) {
            if self.failed.contains(&key) {
                return Hash::ZERO;
            }
            if let Err(error) = self.load(level, tile_index) {
                self.failed.push(key);
                return self.fail(error);
            }
        }
        match self
            .tiles
            .get(&key)
            .and_then(|tile| tile.node(height_in_tile, position))
        {
            Some(hash) => hash,
            // Only reachable for a subtree beyond the tree size, which no caller asks for.
            None => self.fail(ProofError::SizeUnavailable {
                size: index.saturating_add(1).saturating_mul(1 << height),
                available: self.size,
            }),
        }
    }

    fn load(&mut self, level: TileLevel, index: TileIndex) -> Result<(), ProofError> {
        let size = TreeSize::new(self.size);
        let Some(width) = tile_width_at(level, index, size) else {
            return Ok(());
        };
        let tile = TileId::new(level, index, width);
        let hashes = self.reader.read_tile(level, index, width)?;
        let nodes = TileNodes::new(width, &hashes).ok_or(ProofError::ShortTile {
            tile,
            len: hashes.len(),
        })?;
        self.tiles.insert((level, index), Arc::new(nodes));
        Ok(())
    }
}

/// The root hash of the tree of `size` leaves whose tiles `reader` serves.
///
/// # Errors
///
/// The first tile read error.
pub fn tree_root<R: TileReader + ?Sized>(size: TreeSize, reader: &R) -> Result<Hash, ProofError> {
    Prover::new(size, reader).root()
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves, leaf to root.
///
/// For many proofs at one size, reuse a [`Prover`] instead: it reads and hashes each tile once.
///
/// # Errors
///
/// [`ProofError::IndexOutOfRange`] if `index >= size`; otherwise the first tile read error.
pub fn inclusion_proof<R: TileReader + ?Sized>(
    index: LeafIndex,
    size: TreeSize,
    reader: &R,
) -> Result<Vec<Hash>, ProofError> {
    Prover::new(size, reader).inclusion_proof(index)
}

/// The consistency proof between the trees of `old` and `new` leaves; empty when `old` is 0 or
/// equals `new`.
///
/// # Errors
///
/// [`ProofError::SizeOrder`] if `old > new`; otherwise the first tile read error.
pub fn consistency_proof<R: TileReader + ?Sized>(
    old: TreeSize,
    new: TreeSize,
    reader: &R,
) -> Result<Vec<Hash>, ProofError> {
    Prover::new(new, reader).consistency_proof(old)
}

#[cfg(test)]
mod tests {
    use std::{borrow::Cow, cell::RefCell};

    use super::*;
    use crate::{MemoryTree, Tile, TileMap, TileReadError, TileWidth, TreeBuilder};

    /// A tile map that can gain tiles while a prover borrows it.
    struct Growing(RefCell<TileMap>);

    impl TileReader for Growing {
        fn read_tile(
            &self,
            level: TileLevel,
            index: TileIndex,
            width: TileWidth,
        ) -> Result<Cow<'_, [Hash]>, TileReadError> {
            let map = self.0.borrow();
            let tile = map.read_tile(level, index, width)?;
            Ok(Cow::Owned(tile.into_owned()))
        }
    }

    fn leaves(n: u32) -> Vec<Hash> {
        (0..n)
            .map(|i| {
                let mut bytes = [0xa5; 32];
                bytes[..4].copy_from_slice(&i.to_be_bytes());
                Hash(bytes)
            })
            .collect()
    }

    #[test]
    fn kept_tile_nodes_serve_a_grown_tree_and_partial_ones_only_their_width() {
        let all = leaves(1000);
        let reference: MemoryTree = all.iter().copied().collect();
        let mut builder = TreeBuilder::new();
        let small: TileMap = builder.append(&all[..600]).into_iter().collect();
        let mut earlier = Prover::new(TreeSize::new(600), &small);
        for index in [0, 300, 599] {
            earlier.inclusion_proof(LeafIndex::new(index)).unwrap();
        }
        let kept: Vec<(TileId, Arc<TileNodes>)> = earlier
            .expanded()
            .map(|(id, nodes)| (id, Arc::clone(nodes)))
            .collect();
        assert!(kept.iter().any(|(id, _)| id.is_full()));
        assert!(kept.iter().any(|(id, _)| !id.is_full()));

        // The grown tree's own tiles, without the full level-0 tiles the kept nodes stand for.
        let mut grown = TileMap::new();
        grown.extend(small.tiles().cloned());
        grown.extend(builder.append(&all[600..]));
        for (id, _) in kept.iter().filter(|(id, _)| id.is_full()) {
            grown.remove(id.level, id.index);
        }
        let size = TreeSize::new(1000);
        let mut prover = Prover::new(size, &grown);
        for (id, nodes) in &kept {
            // Full nodes are taken; the 600-tree's partial tiles are narrower than this tree's.
            assert_eq!(prover.insert_nodes(*id, Arc::clone(nodes)), id.is_full());
        }
        for index in [0, 255, 300, 599, 999] {
            let leaf = LeafIndex::new(index);
            assert_eq!(
                prover.inclusion_proof(leaf).unwrap(),
                reference.inclusion_proof(leaf, size).unwrap()
            );
        }
        // Nodes whose width does not match their id are refused.
        let (full_id, full_nodes) = kept.iter().find(|(id, _)| id.is_full()).unwrap();
        let narrow = TileId::new(full_id.level, full_id.index, TileWidth::new(7).unwrap());
        assert!(!prover.insert_nodes(narrow, Arc::clone(full_nodes)));
    }

    #[test]
    fn failed_operations_leave_no_trace() {
        let all = leaves(1000);
        let reference: MemoryTree = all.iter().copied().collect();
        let size = TreeSize::new(1000);
        let mut builder = TreeBuilder::new();
        let tiles = builder.append(&all);
        // Hold back the level-0 edge tile (index 3, 232 hashes).
        let (held_back, rest): (Vec<Tile>, Vec<Tile>) = tiles
            .into_iter()
            .partition(|t| t.id.level == TileLevel::ZERO && t.id.index.get() == 3);
        let reader = Growing(RefCell::new(rest.into_iter().collect()));
        let mut prover = Prover::new(size, &reader);
        assert!(matches!(
            prover.root(),
            Err(ProofError::TileRead(TileReadError::Missing { tile })) if tile.index.get() == 3
        ));
        assert!(prover.inclusion_proof(LeafIndex::new(999)).is_err());
        // Proofs that do not touch the missing tile still work, and are right.
        let index = LeafIndex::new(5);
        assert!(
            prover.inclusion_proof(index).is_err(),
            "the path's right sibling needs tile 3"
        );
        let old = TreeSize::new(512);
        assert!(prover.consistency_proof(old).is_err());
        // Once the tile arrives, the same prover gives correct answers.
        reader.0.borrow_mut().extend(held_back);
        assert_eq!(prover.root().unwrap(), reference.root(size).unwrap());
        assert_eq!(
            prover.inclusion_proof(LeafIndex::new(999)).unwrap(),
            reference
                .inclusion_proof(LeafIndex::new(999), size)
                .unwrap()
        );
        assert_eq!(
            prover.inclusion_proof(index).unwrap(),
            reference.inclusion_proof(index, size).unwrap()
        );
        assert_eq!(
            prover.consistency_proof(old).unwrap(),
            reference.consistency_proof(old, size).unwrap()
        );
    }

    #[test]
    fn largest_tree_reads_exactly_its_edge_tiles() {
        for size in [u64::MAX, u64::MAX - 255, 1 << 63, (1 << 56) + 1] {
            let recorder = crate::TileRecorder::new();
            assert!(tree_root(TreeSize::new(size), &recorder).is_err());
            assert_eq!(
                recorder.tile_ids(),
                TreeBuilder::edge_tile_ids(TreeSize::new(size)),
                "size {size}"
            );
            let recorder = crate::TileRecorder::new();
            assert!(
                inclusion_proof(LeafIndex::new(size - 1), TreeSize::new(size), &recorder).is_err()
            );
            assert!(!recorder.tile_ids().is_empty());
        }
    }

    #[test]
    fn out_of_range_requests() {
        let reference: MemoryTree = leaves(10).into_iter().collect();
        let mut prover = Prover::new(TreeSize::new(10), &reference);
        assert!(matches!(
            prover.inclusion_proof(LeafIndex::new(10)),
            Err(ProofError::IndexOutOfRange {
                index: 10,
                size: 10
            })
        ));
        assert!(matches!(
            prover.consistency_proof(TreeSize::new(11)),
            Err(ProofError::SizeOrder { old: 11, new: 10 })
        ));
        assert!(
            prover
                .consistency_proof(TreeSize::new(0))
                .unwrap()
                .is_empty()
        );
        assert!(
            prover
                .consistency_proof(TreeSize::new(10))
                .unwrap()
                .is_empty()
        );
        let mut empty = Prover::new(TreeSize::new(0), &reference);
        assert_eq!(empty.root().unwrap(), empty_root());
        assert!(empty.inclusion_proof(LeafIndex::new(0)).is_err());
        assert_eq!(
            tree_root(TreeSize::new(11), &reference).ok(),
            None,
            "a reader without the tile must fail, not guess"
        );
    }

    #[test]
    fn split_points() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(8), 4);
        assert_eq!(split_point(9), 8);
        assert_eq!(split_point(u64::MAX), 1 << 63);
        assert_eq!(split_point((1 << 63) + 1), 1 << 63);
        assert_eq!(split_point(1 << 63), 1 << 62);
    }
}
