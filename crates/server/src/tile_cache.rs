//! A memory cache for the read API's full tiles and entry bundles.
//!
//! A full tile (`tile/<L>/<N>`, `tile/entries/<N>`, no `.p/<W>`) never changes once written, so
//! the bytes served for its path are final: caching them is as safe as a CDN caching them, and it
//! spares the storage a read (a file read and a blocking-pool hand-off on POSIX, a GET on GCS or
//! S3). Partial tiles are not cached: each is superseded as the tree grows. The cache evicts in
//! insertion order; for immutable objects whose hot set is the newest tiles, that is close
//! enough to LRU and needs no bookkeeping on hits.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;

/// A byte-bounded cache of full tiles, shared by every request handler.
#[derive(Debug)]
pub(crate) struct TileCache {
    capacity: usize,
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    bytes: usize,
    map: HashMap<String, Bytes>,
    order: VecDeque<String>,
}

impl TileCache {
    /// A cache holding at most `capacity` bytes of tile data; `None` for zero (no cache).
    pub(crate) fn new(capacity: usize) -> Option<Self> {
        (capacity > 0).then(|| TileCache {
            capacity,
            inner: Mutex::new(Entries::default()),
        })
    }

    /// Whether objects at `path` (a canonical tile path) are cacheable: full tiles only.
    pub(crate) fn is_cacheable(path: &str) -> bool {
        !path.contains(".p/")
    }

    pub(crate) fn get(&self, path: &str) -> Option<Bytes> {
        self.lock().map.get(path).cloned()
    }

    pub(crate) fn insert(&self, path: &str, data: Bytes) {
        if data.len() > self.capacity {
            return;
        }
        let mut entries = self.lock();
        if entries.map.contains_key(path) {
            return;
        }
        while entries.bytes + data.len() > self.capacity {
            let Some(oldest) = entries.order.pop_front() else {
                break;
            };
            if let Some(evicted) = entries.map.remove(&oldest) {
                entries.bytes -= evicted.len();
            }
        }
        entries.bytes += data.len();
        entries.order.push_back(path.to_owned());
        entries.map.insert(path.to_owned(), data);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Every holder leaves the entries consistent before any point that could panic.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]
    use super::*;

    #[test]
    fn only_full_tiles_are_cacheable() {
        assert!(TileCache::is_cacheable("tile/0/x001/234"));
        assert!(TileCache::is_cacheable("tile/entries/000"));
        assert!(!TileCache::is_cacheable("tile/0/000.p/17"));
        assert!(!TileCache::is_cacheable("tile/entries/x001/002.p/255"));
    }

    #[test]
    fn the_cache_stays_within_its_capacity_evicting_the_oldest() {
        let cache = TileCache::new(100).unwrap();
        cache.insert("a", Bytes::from(vec![1u8; 40]));
        cache.insert("b", Bytes::from(vec![2u8; 40]));
        assert_eq!(cache.get("a").unwrap().len(), 40);
        cache.insert("c", Bytes::from(vec![3u8; 40]));
        assert!(cache.get("a").is_none(), "the oldest entry is evicted");
        assert_eq!(cache.get("b").unwrap()[0], 2);
        assert_eq!(cache.get("c").unwrap()[0], 3);
        assert!(cache.lock().bytes <= 100);
        // Larger than the whole cache: not kept, nothing evicted for it.
        cache.insert("huge", Bytes::from(vec![0u8; 101]));
        assert!(cache.get("huge").is_none());
        assert!(cache.get("c").is_some());
        assert!(TileCache::new(0).is_none());
    }
}
