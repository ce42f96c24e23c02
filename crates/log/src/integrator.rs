//! The integrator: turns sequenced leaves into hash tiles and entry bundles.
//!
//! It keeps the right edge of the tree in memory ([`TreeBuilder`], [`BundleBuilder`]), collects the
//! objects that changed since the last write (only the widest version of each tile: intermediate
//! partial tiles that no checkpoint will name are never written), and the tiles changed since the
//! last checkpoint, from which every waiting entry's inclusion proof is computed without reading storage.
//! It also remembers the partial objects it wrote: they can be deleted once the integrated size has
//! passed the end of their tile, whose full object is written then (by this log or another
//! frontend sharing the backend).

use std::collections::BTreeMap;

use bytes::Bytes;
use rekor_storage::{Object, Storage, check_partial_path};
use rekor_tlog::{
    BundleBuilder, Hash, LeafIndex, TileIndex, TileLevel, TileMap, TileWidth, TreeBuilder,
    TreeSize, bundle_for_leaf, tile_width_at,
};

use crate::LogError;
use crate::tiles::{read_bundle, with_stored_tiles};

/// Identifies a tile position independent of its width, so a wider version replaces a narrower one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Hash { level: u8, index: u64 },
    Entries { index: u64 },
}

impl Slot {
    /// Whether this tile or bundle is full in a tree of `size` leaves.
    fn is_full_at(self, size: u64) -> bool {
        let (level, index) = match self {
            Slot::Hash { level, index } => (level, index),
            // An entry bundle covers the same leaves as the level-0 tile of its index.
            Slot::Entries { index } => (0, index),
        };
        TileLevel::new(level).is_some_and(|level| {
            tile_width_at(level, TileIndex::new(index), TreeSize::new(size))
                .is_some_and(TileWidth::is_full)
        })
    }
}

#[derive(Debug)]
pub(crate) struct Integrator {
    tree: TreeBuilder,
    bundles: BundleBuilder,
    unwritten: BTreeMap<Slot, Object>,
    since_checkpoint: TileMap,
    /// Partial objects written, per slot, until the integrated size passes the slot's end.
    partials: BTreeMap<Slot, Vec<String>>,
}

impl Integrator {
    /// Resumes the tree's right edge and partial entry bundle from the objects stored for a tree
    /// of `size` (written by this log before a stop, or by another frontend sharing the backend).
    pub(crate) async fn resume(storage: &dyn Storage, size: u64) -> Result<Self, LogError> {
        let tree_size = TreeSize::new(size);
        let mut tiles = TileMap::new();
        let tree = with_stored_tiles(storage, tree_size, &mut tiles, |reader| {
            TreeBuilder::resume(tree_size, reader)
        })
        .await?;
        let bundles = resume_bundles(storage, tree_size).await?;
        Ok(Integrator::new(tree, bundles))
    }

    fn new(tree: TreeBuilder, bundles: BundleBuilder) -> Self {
        Integrator {
            tree,
            bundles,
            unwritten: BTreeMap::new(),
            since_checkpoint: TileMap::new(),
            partials: BTreeMap::new(),
        }
    }

    pub(crate) fn size(&self) -> TreeSize {
        self.tree.size()
    }

    pub(crate) fn root(&self) -> Hash {
        self.tree.root()
    }

    pub(crate) fn has_unwritten(&self) -> bool {
        !self.unwritten.is_empty()
    }

    /// Appends sequenced leaves (`data[i]` hashes to `hashes[i]`).
    pub(crate) fn append(&mut self, data: &[Bytes], hashes: &[Hash]) -> Result<(), LogError> {
        for tile in self.tree.append(hashes) {
            let slot = Slot::Hash {
                level: tile.id.level.get(),
                index: tile.id.index.get(),
            };
            self.unwritten
                .insert(slot, Object::new(tile.id.path(), tile.to_bytes()));
            self.since_checkpoint.insert(tile);
        }
        let bundles = self
            .bundles
            .append(data)
            .map_err(|e| LogError::internal(format!("entry bundle: {e}")))?;
        for (id, bytes) in bundles {
            let slot = Slot::Entries {
                index: id.index.get(),
            };
            self.unwritten.insert(slot, Object::new(id.path(), bytes));
        }
        Ok(())
    }

    /// Writes every object changed since the last successful write. On error they stay pending.
    pub(crate) async fn write(&mut self, storage: &dyn Storage) -> Result<usize, LogError> {
        let objects: Vec<Object> = self.unwritten.values().cloned().collect();
        let count = objects.len();
        if count > 0 {
            storage.write_objects(objects).await?;
        }
        for (slot, object) in std::mem::take(&mut self.unwritten) {
            if check_partial_path(&object.path).is_ok() {
                self.partials.entry(slot).or_default().push(object.path);
            }
        }
        Ok(count)
    }

    /// Takes the partial objects written for tiles and bundles that are full at or below
    /// `integrated`: their full objects are written, and a start or another frontend resuming the
    /// tree at that size reads those, so the partials are no longer needed.
    pub(crate) fn take_superseded(&mut self, integrated: u64) -> Vec<String> {
        let due: Vec<Slot> = self
            .partials
            .keys()
            .copied()
            .filter(|slot| slot.is_full_at(integrated))
            .collect();
        due.into_iter()
            .filter_map(|slot| self.partials.remove(&slot))
            .flatten()
            .collect()
    }

    /// A reader holding the right edge and every tile changed since the last checkpoint: enough to
    /// prove inclusion of every entry added since then.
    pub(crate) fn proof_tiles(&self) -> TileMap {
        let mut map = self.since_checkpoint.clone();
        for tile in self.tree.edge_tiles() {
            map.insert(tile);
        }
        map
    }

    /// Forgets the tiles kept for proofs once a checkpoint covers them.
    pub(crate) fn checkpoint_published(&mut self) {
        self.since_checkpoint = TileMap::new();
    }
}

/// Reads the partial entry bundle at the end of a tree of `size`, if there is one.
async fn resume_bundles(storage: &dyn Storage, size: TreeSize) -> Result<BundleBuilder, LogError> {
    // The bundle that holds the last entry, unless it is full: the one the builder continues.
    let partial = size
        .get()
        .checked_sub(1)
        .and_then(|last| bundle_for_leaf(LeafIndex::new(last), size))
        .map(|(id, _)| id)
        .filter(|id| !id.is_full());
    let Some(id) = partial else {
        return BundleBuilder::resume(size, None)
            .map_err(|e| LogError::inconsistent(format!("entry bundle: {e}")));
    };
    let bytes = read_bundle(storage, id).await?;
    BundleBuilder::resume(size, Some(&bytes))
        .map_err(|e| LogError::inconsistent(format!("entry bundle {}: {e}", id.path())))
}

#[cfg(test)]
mod tests {
    use rekor_tlog::FULL_TILE_WIDTH;

    use super::*;

    #[test]
    fn a_slot_is_full_once_the_tree_covers_its_last_hash() {
        let full_from = |slot: Slot, size: u64| slot.is_full_at(size) && !slot.is_full_at(size - 1);
        let full = u64::from(FULL_TILE_WIDTH);
        assert!(full_from(Slot::Entries { index: 0 }, full));
        assert!(full_from(Slot::Entries { index: 4 }, 5 * full));
        assert!(full_from(Slot::Hash { level: 0, index: 2 }, 3 * full));
        assert!(full_from(Slot::Hash { level: 1, index: 0 }, full * full));
        assert!(full_from(
            Slot::Hash { level: 2, index: 1 },
            2 * full.pow(3)
        ));
        // Beyond any tree this log can hold.
        assert!(!Slot::Hash { level: 7, index: 0 }.is_full_at(u64::MAX));
        assert!(
            !Slot::Hash {
                level: 6,
                index: 1 << 20
            }
            .is_full_at(u64::MAX)
        );
        assert!(!Slot::Entries { index: u64::MAX }.is_full_at(u64::MAX));
    }
}
