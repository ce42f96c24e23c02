//! The integrator: turns sequenced leaves into hash tiles and entry bundles.
//!
//! It keeps the right edge of the tree in memory ([`TreeBuilder`], [`BundleBuilder`]), collects the
//! objects that changed since the last write (only the widest version of each tile: intermediate
//! partial tiles that no checkpoint will name are never written), and the tiles changed since the
//! last checkpoint, from which every waiting entry's inclusion proof is computed without reading storage.

use std::collections::BTreeMap;

use bytes::Bytes;
use rekor_storage::{Object, Storage};
use rekor_tlog::{BundleBuilder, Hash, TileMap, TreeBuilder, TreeSize};

use crate::LogError;

/// Identifies a tile position independent of its width, so a wider version replaces a narrower one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Hash { level: u8, index: u64 },
    Entries { index: u64 },
}

#[derive(Debug)]
pub(crate) struct Integrator {
    tree: TreeBuilder,
    bundles: BundleBuilder,
    unwritten: BTreeMap<Slot, Object>,
    since_checkpoint: TileMap,
}

impl Integrator {
    pub(crate) fn new(tree: TreeBuilder, bundles: BundleBuilder) -> Self {
        Integrator {
            tree,
            bundles,
            unwritten: BTreeMap::new(),
            since_checkpoint: TileMap::new(),
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
        self.unwritten.clear();
        Ok(count)
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
