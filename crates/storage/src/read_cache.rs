//! A bounded memory cache of decoded, immutable log content, kept by a storage for the readers
//! that prove entries from it (search answers, a resubmitted duplicate's answer).
//!
//! Two things are worth keeping across requests, because they never change once the tree holds
//! them and are costly to get again:
//!
//! - the inner nodes of **full** hash tiles ([`TileNodes`]): about 255 SHA-256 per tile, most of
//!   an inclusion proof's work. A full tile is final, so its nodes serve every tree size that
//!   covers it, however the log grows.
//! - the nodes of the **partial** tiles at the tree's edge, by their width: a partial tile of
//!   a given width never changes either (a later one is wider, under another path), but each
//!   checkpoint of a growing log has new ones, so only the latest of each tile is kept, a few
//!   in all.
//! - **entries** by leaf index: an entry's bytes never change once sequenced, and reading one
//!   otherwise means reading (and copying) its whole bundle, about 256 entries.
//!
//! What fills the cache is the caller's choice: `rekor_search` keeps only what was part of an
//! inclusion proof it verified against a signed root. Each part is bounded by the bytes it
//! holds (plus a fixed allowance per item for the map), and evicts by second chance: the oldest
//! item goes unless it was used since it was last considered, which keeps a hot set without
//! reordering on every hit.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash as StdHash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use rekor_tlog::{TileId, TileIndex, TileLevel, TileNodes};

/// The memory a storage gives expanded full tiles by default: 4,096 level-0 tiles, the trees
/// over about a million entries (a full tile's nodes take about 16 KiB).
pub const DEFAULT_TILE_NODES_BYTES: usize = 64 << 20;

/// The memory a storage gives entries by default: about 50,000 entries of 600 bytes.
pub const DEFAULT_ENTRY_BYTES: usize = 32 << 20;

/// The most partial tiles kept: one per tile level of a few trees' edges.
const MAX_EDGE_TILES: usize = 64;

/// The bytes counted per item beyond its content: the map slot, the eviction queue slot and
/// the allocation's header, roughly.
const ITEM_OVERHEAD: usize = 96;

/// Expanded full tiles and entries, each part bounded in memory. See the module docs.
#[derive(Debug)]
pub struct ReadCache {
    tiles: Bounded<TileId, Arc<TileNodes>>,
    /// Partial tiles by level and index, each at the width last kept.
    edges: Mutex<HashMap<(TileLevel, TileIndex), Arc<TileNodes>>>,
    entries: Bounded<u64, Bytes>,
}

impl Default for ReadCache {
    fn default() -> Self {
        ReadCache::new(DEFAULT_TILE_NODES_BYTES, DEFAULT_ENTRY_BYTES)
    }
}

impl ReadCache {
    /// A cache holding at most `tile_bytes` of expanded tiles and `entry_bytes` of entries
    /// (zero turns that part off).
    #[must_use]
    pub fn new(tile_bytes: usize, entry_bytes: usize) -> Self {
        ReadCache {
            tiles: Bounded::new(tile_bytes),
            edges: Mutex::new(HashMap::new()),
            entries: Bounded::new(entry_bytes),
        }
    }

    /// The kept nodes of tile `id` at its width `id.width`, if kept.
    #[must_use]
    pub fn tile_nodes(&self, id: TileId) -> Option<Arc<TileNodes>> {
        if id.is_full() {
            return self.tiles.get(&id);
        }
        self.lock_edges()
            .get(&(id.level, id.index))
            .filter(|nodes| nodes.width() == id.width)
            .cloned()
    }

    /// Keeps `nodes` as tile `id`'s, if they are its nodes at width `id.width`. For a partial
    /// tile they replace any other width kept.
    pub fn keep_tile_nodes(&self, id: TileId, nodes: &Arc<TileNodes>) {
        if nodes.width() != id.width {
            return;
        }
        if id.is_full() {
            let size = nodes.hashes_size();
            self.tiles.insert(id, Arc::clone(nodes), size, false);
            return;
        }
        let mut edges = self.lock_edges();
        let key = (id.level, id.index);
        if edges.len() >= MAX_EDGE_TILES && !edges.contains_key(&key) {
            // Many trees' edges at once (old checkpoints asked for): start over, the current
            // edge comes back with the next answer.
            edges.clear();
        }
        edges.insert(key, Arc::clone(nodes));
    }

    fn lock_edges(&self) -> MutexGuard<'_, HashMap<(TileLevel, TileIndex), Arc<TileNodes>>> {
        // Every holder leaves the map consistent before any point that could panic.
        self.edges.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The kept bytes of the entry at leaf `index`.
    #[must_use]
    pub fn entry(&self, index: u64) -> Option<Bytes> {
        self.entries.get(&index)
    }

    /// Keeps the bytes of the entry at leaf `index`. They are copied: a slice of a whole
    /// bundle would keep the bundle's memory alive beyond what the bound counts.
    pub fn keep_entry(&self, index: u64, body: &[u8]) {
        if self.entries.takes(body.len()) && self.entries.get(&index).is_none() {
            self.entries
                .insert(index, Bytes::copy_from_slice(body), body.len(), false);
        }
    }

    /// The bytes held, tiles then entries (with the per-item allowance).
    #[must_use]
    pub fn held_bytes(&self) -> (usize, usize) {
        (self.tiles.held(), self.entries.held())
    }
}

/// A map bounded by the bytes of its values, evicting by second chance.
#[derive(Debug)]
pub(crate) struct Bounded<K, V> {
    capacity: usize,
    inner: Mutex<Slots<K, V>>,
}

#[derive(Debug)]
struct Slots<K, V> {
    bytes: usize,
    map: HashMap<K, Slot<V>>,
    /// Keys oldest first; every key in `map` appears exactly once.
    order: VecDeque<K>,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    size: usize,
    /// Used since eviction last passed over it.
    used: bool,
}

impl<K: Eq + StdHash + Clone, V: Clone> Bounded<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Bounded {
            capacity,
            inner: Mutex::new(Slots {
                bytes: 0,
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    fn takes(&self, size: usize) -> bool {
        size.saturating_add(ITEM_OVERHEAD) <= self.capacity
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let mut slots = self.lock();
        let slot = slots.map.get_mut(key)?;
        slot.used = true;
        Some(slot.value.clone())
    }

    /// Keeps `value` (of `size` bytes) under `key`; an item already there stays, unless
    /// `replace`. The bound may be passed by a replaced item's growth until the next insert.
    pub(crate) fn insert(&self, key: K, value: V, size: usize, replace: bool) {
        let size = size.saturating_add(ITEM_OVERHEAD);
        if size > self.capacity {
            return;
        }
        let mut guard = self.lock();
        let slots = &mut *guard;
        if let Some(held) = slots.map.get_mut(&key) {
            if replace {
                let old = std::mem::replace(&mut held.size, size);
                held.value = value;
                held.used = true;
                slots.bytes = slots.bytes - old + size;
            }
            return;
        }
        // Each pass over a used item clears its mark, so this ends within two rounds of the queue.
        while slots.bytes + size > self.capacity {
            let Some(oldest) = slots.order.pop_front() else {
                break;
            };
            match slots.map.get_mut(&oldest) {
                Some(slot) if slot.used => {
                    slot.used = false;
                    slots.order.push_back(oldest);
                }
                Some(_) => {
                    if let Some(evicted) = slots.map.remove(&oldest) {
                        slots.bytes -= evicted.size;
                    }
                }
                None => {}
            }
        }
        slots.bytes += size;
        slots.order.push_back(key.clone());
        slots.map.insert(
            key,
            Slot {
                value,
                size,
                used: false,
            },
        );
    }

    #[cfg_attr(
        not(feature = "posix"),
        allow(dead_code, reason = "only POSIX forgets an item")
    )]
    pub(crate) fn remove(&self, key: &K) {
        let mut slots = self.lock();
        if let Some(removed) = slots.map.remove(key) {
            slots.bytes -= removed.size;
            slots.order.retain(|k| k != key);
        }
    }

    fn held(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> MutexGuard<'_, Slots<K, V>> {
        // Every holder leaves the slots consistent before any point that could panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]
    use rekor_tlog::{Hash, TileIndex, TileLevel, TileWidth};

    use super::*;

    fn nodes(width: TileWidth) -> Arc<TileNodes> {
        let row = vec![Hash([7; 32]); 256];
        Arc::new(TileNodes::new(width, &row).unwrap())
    }

    fn id(index: u64, width: TileWidth) -> TileId {
        TileId::new(TileLevel::ZERO, TileIndex::new(index), width)
    }

    #[test]
    fn tiles_are_kept_at_their_width_and_partial_ones_only_the_latest() {
        let cache = ReadCache::default();
        let nine = TileWidth::new(9).unwrap();
        let ten = TileWidth::new(10).unwrap();
        cache.keep_tile_nodes(id(1, nine), &nodes(nine));
        assert_eq!(cache.tile_nodes(id(1, nine)).unwrap().width(), nine);
        // Another width of the tile is not served by these nodes.
        assert!(cache.tile_nodes(id(1, ten)).is_none());
        assert!(cache.tile_nodes(id(1, TileWidth::FULL)).is_none());
        // The wider edge of a grown tree replaces it.
        cache.keep_tile_nodes(id(1, ten), &nodes(ten));
        assert!(cache.tile_nodes(id(1, nine)).is_none());
        assert!(cache.tile_nodes(id(1, ten)).is_some());
        // Partial tiles do not count against the full tiles' bound.
        assert_eq!(cache.held_bytes().0, 0);
        // Nodes of another width than the id claims are refused.
        cache.keep_tile_nodes(id(2, TileWidth::FULL), &nodes(nine));
        assert!(cache.tile_nodes(id(2, TileWidth::FULL)).is_none());
        cache.keep_tile_nodes(id(2, nine), &nodes(TileWidth::FULL));
        assert!(cache.tile_nodes(id(2, nine)).is_none());
        cache.keep_tile_nodes(id(3, TileWidth::FULL), &nodes(TileWidth::FULL));
        assert!(cache.tile_nodes(id(3, TileWidth::FULL)).is_some());
        // The edges stay few.
        let edges = u64::try_from(MAX_EDGE_TILES).unwrap();
        for index in 10..(10 + 2 * edges) {
            cache.keep_tile_nodes(id(index, nine), &nodes(nine));
            assert!(cache.lock_edges().len() <= MAX_EDGE_TILES);
        }
    }

    #[test]
    fn the_bound_holds_and_used_items_get_a_second_chance() {
        let cache = ReadCache::new(0, 10 * (100 + ITEM_OVERHEAD));
        for index in 0..10 {
            cache.keep_entry(index, &[1; 100]);
        }
        assert_eq!(cache.held_bytes().1, 10 * (100 + ITEM_OVERHEAD));
        // Entry 0 is used, so the next insert evicts entry 1 instead.
        assert!(cache.entry(0).is_some());
        cache.keep_entry(10, &[2; 100]);
        assert!(cache.entry(0).is_some());
        assert!(cache.entry(1).is_none());
        assert_eq!(cache.entry(10).unwrap().as_ref(), &[2; 100]);
        for index in 11..100 {
            cache.keep_entry(index, &[3; 100]);
            assert!(cache.held_bytes().1 <= 10 * (100 + ITEM_OVERHEAD));
        }
        // Too large for the bound: not kept, nothing evicted for it.
        cache.keep_entry(1000, &[4; 2000]);
        assert!(cache.entry(1000).is_none());
        assert!(cache.entry(99).is_some());
        // Zero capacity keeps nothing.
        cache.keep_tile_nodes(id(0, TileWidth::FULL), &nodes(TileWidth::FULL));
        assert_eq!(cache.held_bytes().0, 0);
    }

    #[test]
    fn kept_entries_do_not_hold_their_bundle() {
        let cache = ReadCache::default();
        let bundle = Bytes::from(vec![5u8; 4096]);
        cache.keep_entry(3, &bundle.slice(10..20));
        let kept = cache.entry(3).unwrap();
        assert_eq!(kept.as_ref(), &[5; 10]);
        // A copy, not a view into the bundle's buffer.
        assert!(!bundle.as_ptr_range().contains(&kept.as_ptr()));
    }
}
