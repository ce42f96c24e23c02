//! The in-memory dedup cache: recently sequenced dedup keys and their indices, in front of the
//! coordinator's persistent index.

use std::collections::{HashMap, VecDeque};

/// A bounded map from dedup key to index; the oldest keys are evicted first.
#[derive(Debug)]
pub(crate) struct DedupCache {
    capacity: usize,
    map: HashMap<[u8; 32], u64>,
    order: VecDeque<[u8; 32]>,
}

impl DedupCache {
    pub(crate) fn new(capacity: usize) -> Self {
        DedupCache {
            capacity,
            map: HashMap::with_capacity(capacity.min(1 << 16)),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
        }
    }

    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<u64> {
        self.map.get(key).copied()
    }

    pub(crate) fn insert(&mut self, key: [u8; 32], index: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.map.insert(key, index).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_first() {
        let mut cache = DedupCache::new(2);
        cache.insert([1; 32], 1);
        cache.insert([2; 32], 2);
        cache.insert([3; 32], 3);
        assert_eq!(cache.get(&[1; 32]), None);
        assert_eq!(cache.get(&[2; 32]), Some(2));
        assert_eq!(cache.get(&[3; 32]), Some(3));
    }

    #[test]
    fn zero_capacity_stores_nothing() {
        let mut cache = DedupCache::new(0);
        cache.insert([1; 32], 1);
        assert_eq!(cache.get(&[1; 32]), None);
    }
}
