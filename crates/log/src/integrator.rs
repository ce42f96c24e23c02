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
use rekor_storage::{Object, Storage};
use rekor_tlog::{BundleBuilder, Hash, TileMap, TilePath, TreeBuilder, TreeSize};

use crate::LogError;

/// Identifies a tile position independent of its width, so a wider version replaces a narrower one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Hash { level: u8, index: u64 },
    Entries { index: u64 },
}

impl Slot {
    /// The tree size at which this tile or bundle is full.
    fn full_at(self) -> u64 {
        // Each hash at level L stands for 256^L leaves.
        let (shift, index) = match self {
            Slot::Hash { level, index } => (u32::from(level) * 8, index),
            Slot::Entries { index } => (0, index),
        };
        match index.checked_add(1).and_then(|n| n.checked_mul(256)) {
            Some(end) if shift < 64 && end.leading_zeros() >= shift => end << shift,
            // Beyond any tree this log can hold.
            _ => u64::MAX,
        }
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
    pub(crate) fn new(tree: TreeBuilder, bundles: BundleBuilder) -> Self {
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
            if is_partial(&object.path) {
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
            .filter(|slot| slot.full_at() <= integrated)
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

/// Whether `path` names a partial hash tile or entry bundle.
fn is_partial(path: &str) -> bool {
    match TilePath::parse(path) {
        Ok(TilePath::Hash(tile)) => !tile.is_full(),
        Ok(TilePath::Entries(bundle)) => !bundle.is_full(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_full_once_the_tree_covers_its_last_hash() {
        assert_eq!(Slot::Entries { index: 0 }.full_at(), 256);
        assert_eq!(Slot::Entries { index: 4 }.full_at(), 5 * 256);
        assert_eq!(Slot::Hash { level: 0, index: 2 }.full_at(), 3 * 256);
        assert_eq!(Slot::Hash { level: 1, index: 0 }.full_at(), 65_536);
        assert_eq!(Slot::Hash { level: 2, index: 1 }.full_at(), 2 << 24);
        assert_eq!(Slot::Hash { level: 7, index: 0 }.full_at(), u64::MAX);
        assert_eq!(
            Slot::Hash {
                level: 6,
                index: 1 << 20
            }
            .full_at(),
            u64::MAX
        );
        assert_eq!(Slot::Entries { index: u64::MAX }.full_at(), u64::MAX);
    }
}
