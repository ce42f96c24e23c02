//! In-memory backend for tests: both traits over maps behind a mutex. Nothing survives a drop.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    CHECKPOINT_PATH, Coordinator, Error, Object, ObjectVersion, ReadCache, Result, SequenceLeaf,
    SequenceState, Storage, Versioned, check_object_path, check_partial_path,
};

const BACKEND: &str = "memory";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-updated (each update is one
    // insert or a loop of inserts of independent keys), so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// In-memory [`Storage`].
#[derive(Debug, Default)]
pub struct MemoryStorage {
    objects: Mutex<HashMap<String, Bytes>>,
    checkpoint: Mutex<Option<(Bytes, u64)>>,
    /// Kept like a real backend's, so that what reads through the cache is tested against it.
    read_cache: ReadCache,
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn write_objects(&self, objects: Vec<Object>) -> Result<()> {
        let mut map = lock(&self.objects);
        for object in &objects {
            check_object_path(&object.path)?;
            if let Some(existing) = map.get(&object.path)
                && *existing != object.data
            {
                return Err(Error::AlreadyExists {
                    path: object.path.clone(),
                });
            }
        }
        for object in objects {
            map.insert(object.path, object.data);
        }
        Ok(())
    }

    fn read_cache(&self) -> Option<&ReadCache> {
        Some(&self.read_cache)
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        check_object_path(path)?;
        if path == CHECKPOINT_PATH {
            return lock(&self.checkpoint)
                .as_ref()
                .map(|(data, _)| data.clone())
                .ok_or_else(|| Error::NotFound { path: path.into() });
        }
        lock(&self.objects)
            .get(path)
            .cloned()
            .ok_or_else(|| Error::NotFound { path: path.into() })
    }

    async fn read_checkpoint(&self) -> Result<Option<Versioned>> {
        Ok(lock(&self.checkpoint)
            .as_ref()
            .map(|(data, generation)| Versioned {
                data: data.clone(),
                version: ObjectVersion(generation.to_string()),
            }))
    }

    async fn write_checkpoint(
        &self,
        data: Bytes,
        expected: Option<&ObjectVersion>,
    ) -> Result<ObjectVersion> {
        let mut checkpoint = lock(&self.checkpoint);
        let current = checkpoint
            .as_ref()
            .map(|(_, generation)| ObjectVersion(generation.to_string()));
        if current.as_ref() != expected {
            return Err(Error::Precondition {
                what: "checkpoint",
                expected: expected.map_or_else(|| "none".into(), ToString::to_string),
                found: current.map_or_else(|| "none".into(), |v| v.0),
            });
        }
        let generation = checkpoint.as_ref().map_or(1, |(_, g)| g.saturating_add(1));
        *checkpoint = Some((data, generation));
        Ok(ObjectVersion(generation.to_string()))
    }

    async fn delete_partials(&self, paths: Vec<String>) -> Result<()> {
        for path in &paths {
            check_partial_path(path)?;
        }
        let mut map = lock(&self.objects);
        for path in &paths {
            map.remove(path);
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct CoordinatorState {
    state: SequenceState,
    leaves: BTreeMap<u64, Bytes>,
    dedup: HashMap<[u8; 32], u64>,
    last_claim: Option<std::time::Instant>,
    frozen: Option<u64>,
}

/// In-memory [`Coordinator`].
#[derive(Debug, Default)]
pub struct MemoryCoordinator {
    inner: Mutex<CoordinatorState>,
}

#[async_trait]
impl Coordinator for MemoryCoordinator {
    async fn sequence(&self, leaves: &[SequenceLeaf]) -> Result<u64> {
        let mut inner = lock(&self.inner);
        if let Some(size) = inner.frozen {
            return Err(Error::Frozen { size });
        }
        let first = inner.state.sequenced;
        let count = u64::try_from(leaves.len()).map_err(|e| Error::Other {
            backend: BACKEND,
            source: Box::new(e),
        })?;
        let next = first.checked_add(count).ok_or(Error::Corrupt {
            backend: BACKEND,
            what: "sequence overflow",
        })?;
        for (index, leaf) in (first..next).zip(leaves) {
            inner.leaves.insert(index, leaf.data.clone());
            inner.dedup.insert(leaf.dedup_key, index);
        }
        inner.state.sequenced = next;
        Ok(first)
    }

    async fn freeze(&self) -> Result<u64> {
        let mut inner = lock(&self.inner);
        let sequenced = inner.state.sequenced;
        Ok(*inner.frozen.get_or_insert(sequenced))
    }

    async fn frozen(&self) -> Result<Option<u64>> {
        Ok(lock(&self.inner).frozen)
    }

    async fn lookup(&self, dedup_keys: &[[u8; 32]]) -> Result<Vec<Option<u64>>> {
        let inner = lock(&self.inner);
        Ok(dedup_keys
            .iter()
            .map(|k| inner.dedup.get(k).copied())
            .collect())
    }

    async fn state(&self) -> Result<SequenceState> {
        Ok(lock(&self.inner).state)
    }

    async fn read_sequenced(&self, from: u64, to: u64) -> Result<Vec<Bytes>> {
        let inner = lock(&self.inner);
        (from..to)
            .map(|index| {
                inner.leaves.get(&index).cloned().ok_or(Error::NotFound {
                    path: format!("sequenced leaf {index}"),
                })
            })
            .collect()
    }

    async fn mark_integrated(&self, from: u64, to: u64) -> Result<()> {
        let mut inner = lock(&self.inner);
        if inner.state.integrated != from || to < from || to > inner.state.sequenced {
            return Err(Error::Precondition {
                what: "integrated size",
                expected: from.to_string(),
                found: inner.state.integrated.to_string(),
            });
        }
        inner.leaves = inner.leaves.split_off(&to);
        inner.state.integrated = to;
        Ok(())
    }

    async fn claim_publication(&self, min_interval: std::time::Duration) -> Result<bool> {
        let mut inner = lock(&self.inner);
        let now = std::time::Instant::now();
        if inner
            .last_claim
            .is_some_and(|last| now.duration_since(last) < min_interval)
        {
            return Ok(false);
        }
        inner.last_claim = Some(now);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_backend_passes_the_conformance_suite() {
        crate::conformance::storage_suite(&MemoryStorage::default()).await;
        crate::conformance::coordinator_suite(&MemoryCoordinator::default()).await;
        let shared = MemoryCoordinator::default();
        crate::conformance::publication_claim_suite(&shared, &shared).await;
    }
}
