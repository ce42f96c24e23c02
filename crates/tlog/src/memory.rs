//! An in-memory reference tree for tests and clients.

use std::borrow::Cow;

use crate::{
    Hash, LeafIndex, ProofError, TileId, TileIndex, TileLevel, TileReadError, TileReader,
    TileWidth, TreeSize, empty_root, node_hash,
};

/// A whole Merkle tree held in memory: every leaf hash and every complete interior node
/// (about two hashes per leaf).
///
/// Its roots and proofs follow the recursive definitions of RFC 9162 §2.1 directly, without
/// tiles, so it serves as a reference for the tile-based code. It also implements
/// [`TileReader`], serving any tile of the tree it holds.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    /// `levels[h][k]`: hash of the perfect subtree of 2^h leaves starting at leaf k·2^h.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// The empty tree.
    #[must_use]
    pub fn new() -> Self {
        MemoryTree::default()
    }

    /// Number of leaves held.
    #[must_use]
    pub fn size(&self) -> TreeSize {
        TreeSize::new(u64::try_from(self.leaf_count()).unwrap_or(u64::MAX))
    }

    fn leaf_count(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    /// The leaf hash at `index`, if held.
    #[must_use]
    pub fn leaf(&self, index: LeafIndex) -> Option<Hash> {
        let index = usize::try_from(index.get()).ok()?;
        self.levels.first()?.get(index).copied()
    }

    /// Appends one leaf hash.
    pub fn append(&mut self, leaf: Hash) {
        let mut height = 0;
        let mut hash = leaf;
        loop {
            if self.levels.len() == height {
                self.levels.push(Vec::new());
            }
            let Some(level) = self.levels.get_mut(height) else {
                return;
            };
            level.push(hash);
            let position = level.len() - 1;
            if position % 2 == 0 {
                return;
            }
            let Some(left) = level.get(position - 1) else {
                return;
            };
            hash = node_hash(left, &hash);
            height += 1;
        }
    }

    /// The root of the tree of the first `size` leaves.
    ///
    /// # Errors
    ///
    /// [`ProofError::SizeUnavailable`] if `size` exceeds the leaves held.
    pub fn root(&self, size: TreeSize) -> Result<Hash, ProofError> {
        let n = self.check_size(size)?;
        if n == 0 {
            return Ok(empty_root());
        }
        Ok(self.mth(0, n))
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves
    /// (RFC 9162 §2.1.3.1 PATH).
    ///
    /// # Errors
    ///
    /// [`ProofError::SizeUnavailable`] if `size` exceeds the leaves held;
    /// [`ProofError::IndexOutOfRange`] if `index >= size`.
    pub fn inclusion_proof(
        &self,
        index: LeafIndex,
        size: TreeSize,
    ) -> Result<Vec<Hash>, ProofError> {
        let n = self.check_size(size)?;
        let m = usize::try_from(index.get()).ok().filter(|m| *m < n).ok_or(
            ProofError::IndexOutOfRange {
                index: index.get(),
                size: size.get(),
            },
        )?;
        let mut proof = Vec::new();
        self.path(m, 0, n, &mut proof);
        Ok(proof)
    }

    /// The consistency proof between the trees of the first `old` and `new` leaves
    /// (RFC 9162 §2.1.4.1 PROOF); empty when `old` is 0 or equals `new`.
    ///
    /// # Errors
    ///
    /// [`ProofError::SizeUnavailable`] if `new` exceeds the leaves held;
    /// [`ProofError::SizeOrder`] if `old > new`.
    pub fn consistency_proof(&self, old: TreeSize, new: TreeSize) -> Result<Vec<Hash>, ProofError> {
        let n = self.check_size(new)?;
        if old > new {
            return Err(ProofError::SizeOrder {
                old: old.get(),
                new: new.get(),
            });
        }
        let m = self.check_size(old)?;
        let mut proof = Vec::new();
        if m != 0 && m != n {
            self.subproof(m, 0, n, true, &mut proof);
        }
        Ok(proof)
    }

    fn check_size(&self, size: TreeSize) -> Result<usize, ProofError> {
        usize::try_from(size.get())
            .ok()
            .filter(|n| *n <= self.leaf_count())
            .ok_or(ProofError::SizeUnavailable {
                size: size.get(),
                available: self.size().get(),
            })
    }

    /// MTH(D[lo:hi]) for `lo < hi <= leaf count`, by the RFC recursion; perfect aligned
    /// subtrees come from storage.
    fn mth(&self, lo: usize, hi: usize) -> Hash {
        let n = hi - lo;
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            let height = usize::try_from(n.trailing_zeros()).unwrap_or(usize::MAX);
            if let Some(hash) = self.levels.get(height).and_then(|l| l.get(lo >> height)) {
                return *hash;
            }
        }
        if n <= 1 {
            // Unreachable for lo < hi <= leaf count: single leaves are always stored.
            return Hash::ZERO;
        }
        let k = largest_power_of_two_below(n);
        node_hash(&self.mth(lo, lo + k), &self.mth(lo + k, hi))
    }

    fn path(&self, m: usize, lo: usize, hi: usize, out: &mut Vec<Hash>) {
        if hi - lo <= 1 {
            return;
        }
        let k = largest_power_of_two_below(hi - lo);
        if m < lo + k {
            self.path(m, lo, lo + k, out);
            out.push(self.mth(lo + k, hi));
        } else {
            self.path(m, lo + k, hi, out);
            out.push(self.mth(lo, lo + k));
        }
    }

    fn subproof(&self, m: usize, lo: usize, hi: usize, complete: bool, out: &mut Vec<Hash>) {
        if m == hi {
            if !complete {
                out.push(self.mth(lo, hi));
            }
            return;
        }
        let k = largest_power_of_two_below(hi - lo);
        if m <= lo + k {
            self.subproof(m, lo, lo + k, complete, out);
            out.push(self.mth(lo + k, hi));
        } else {
            self.subproof(m, lo + k, hi, false, out);
            out.push(self.mth(lo, lo + k));
        }
    }
}

/// The largest power of two strictly below `n` (1 for n <= 2).
fn largest_power_of_two_below(n: usize) -> usize {
    let mut k = 1;
    while k < n - k {
        k *= 2;
    }
    k
}

impl Extend<Hash> for MemoryTree {
    fn extend<T: IntoIterator<Item = Hash>>(&mut self, iter: T) {
        for leaf in iter {
            self.append(leaf);
        }
    }
}

impl FromIterator<Hash> for MemoryTree {
    fn from_iter<T: IntoIterator<Item = Hash>>(iter: T) -> Self {
        let mut tree = MemoryTree::new();
        tree.extend(iter);
        tree
    }
}

impl TileReader for MemoryTree {
    /// Serves exactly `width` hashes of any tile of the tree held.
    fn read_tile(
        &self,
        level: TileLevel,
        index: TileIndex,
        width: TileWidth,
    ) -> Result<Cow<'_, [Hash]>, TileReadError> {
        let missing = || TileReadError::Missing {
            tile: TileId::new(level, index, width),
        };
        let height = usize::from(level.get()) * usize::from(crate::TILE_HEIGHT);
        let start = usize::try_from(index.get())
            .ok()
            .and_then(|i| i.checked_mul(usize::from(crate::FULL_TILE_WIDTH)))
            .ok_or_else(missing)?;
        let end = start.checked_add(width.to_usize()).ok_or_else(missing)?;
        self.levels
            .get(height)
            .and_then(|row| row.get(start..end))
            .map(Cow::Borrowed)
            .ok_or_else(missing)
    }
}
