//! Sequencing and dedup for the POSIX backend, in an embedded fjall database.
//!
//! Keyspaces: `sequenced` (index, big-endian u64 → leaf bytes, kept until their tiles are
//! durable), `dedup` (the dedup key's first 16 bytes → index, 5 big-endian bytes) and `meta`
//! (`sequenced`, `integrated` → big-endian u64; `dedup-format`). One write batch per call keeps
//! them consistent; `sequence` commits with fsync.
//!
//! The dedup index is most of this database at scale, so it is kept compact: 21 bytes an entry
//! instead of 40. A 128-bit prefix of a SHA-256 key does not collide by chance; matching someone
//! else's entry would take a second preimage, and two entries made to share a prefix (about 2^64
//! work) only keep their maker's second entry out. Databases written before this format (full
//! 32-byte keys, 8-byte indices) are read as they are: a lookup that misses the short key tries
//! the full one, and new entries are written short.
//!
//! `mark_integrated` moves the integrated size in memory at once, but releases leaves (and
//! persists the size) only after a background sync has made their tiles durable (see
//! [`super::sync`]), so a restart after a power loss integrates them again.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use tracing::warn;

use super::sync::SyncTracker;
use super::{BACKEND, io_error, join_error};
use crate::{Coordinator, Error, Result, SequenceLeaf, SequenceState};

const META_SEQUENCED: &[u8] = b"sequenced";
const META_INTEGRATED: &[u8] = b"integrated";
const META_DEDUP_FORMAT: &[u8] = b"dedup-format";
/// The `dedup-format` of a database whose dedup keys are all [`DEDUP_KEY_BYTES`] long.
const DEDUP_FORMAT_COMPACT: &[u8] = b"key16-index40";
/// How much of a dedup key the index stores.
const DEDUP_KEY_BYTES: usize = 16;
/// Indices below 2^40 are stored in 5 bytes; larger ones (never, in practice) in 8.
const COMPACT_INDEX_LIMIT: u64 = 1 << 40;
/// The journal bound (fjall's least).
const MAX_JOURNAL_BYTES: u64 = 64 * 1024 * 1024;
/// The memtable bound of each keyspace: about two seconds of leaves at full load.
const MAX_MEMTABLE_BYTES: u64 = 16 * 1024 * 1024;

fn db_error(error: fjall::Error) -> Error {
    Error::Unavailable {
        backend: BACKEND,
        source: Box::new(error),
    }
}

/// Encodes an index for the dedup keyspace: 5 big-endian bytes, or 8 from 2^40 on.
fn encode_dedup_index(index: u64) -> Vec<u8> {
    let bytes = index.to_be_bytes();
    if index < COMPACT_INDEX_LIMIT {
        bytes[3..].to_vec()
    } else {
        bytes.to_vec()
    }
}

/// Decodes a dedup index of 5 or 8 big-endian bytes.
fn decode_dedup_index(bytes: &[u8]) -> Result<u64> {
    match bytes.len() {
        5 => {
            let mut wide = [0u8; 8];
            wide[3..].copy_from_slice(bytes);
            Ok(u64::from_be_bytes(wide))
        }
        _ => decode_u64(bytes, "dedup index"),
    }
}

fn decode_u64(bytes: &[u8], what: &'static str) -> Result<u64> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| Error::Corrupt {
        backend: BACKEND,
        what,
    })?;
    Ok(u64::from_be_bytes(array))
}

#[derive(Clone)]
struct Db {
    db: Database,
    sequenced: Keyspace,
    dedup: Keyspace,
    meta: Keyspace,
    /// The dedup keyspace may hold full 32-byte keys, written before the compact format.
    legacy_dedup: bool,
}

impl Db {
    fn lookup(&self, key: &[u8; 32]) -> Result<Option<u64>> {
        let short = &key[..DEDUP_KEY_BYTES];
        if let Some(value) = self.dedup.get(short).map_err(db_error)? {
            return decode_dedup_index(&value).map(Some);
        }
        if self.legacy_dedup
            && let Some(value) = self.dedup.get(key).map_err(db_error)?
        {
            return decode_dedup_index(&value).map(Some);
        }
        Ok(None)
    }
}

/// The POSIX backend's [`Coordinator`].
pub struct PosixCoordinator {
    db: Db,
    /// The sizes as committed; locked only briefly, never across an fsync, so the integrated
    /// size moves (the publication of one batch) while the next batch's commit syncs.
    state: Arc<Mutex<SequenceState>>,
    /// Held across a sequencing commit: one at a time, each continuing from the last.
    sequencing: Arc<Mutex<()>>,
    /// The integrated size persisted in `meta`: leaves below it are released.
    released: Arc<Mutex<u64>>,
    tracker: Arc<SyncTracker>,
    _lock: Arc<File>,
}

impl std::fmt::Debug for PosixCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PosixCoordinator")
            .field("state", &*lock_state(&self.state))
            .finish_non_exhaustive()
    }
}

fn lock_state(state: &Mutex<SequenceState>) -> MutexGuard<'_, SequenceState> {
    // The guarded value is only replaced after a successful commit, so it is valid even if a
    // holder panicked.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PosixCoordinator {
    /// Opens the database at `path`, and the sync tracker for the objects under `root`.
    pub(super) fn open(
        path: &Path,
        root: &Path,
        lock: Arc<File>,
        sync_interval: std::time::Duration,
    ) -> Result<(Self, Arc<SyncTracker>)> {
        // fjall's defaults (512 MiB of journal, 64 MiB memtables per keyspace) suit a database
        // that is the main store. Here every leaf passes through the journal and is deleted
        // within about a sync interval, so smaller bounds keep the memory in use and the journal
        // replayed at start-up small (about 64 MiB at most) without extra disk writes.
        let db = Database::builder(path)
            .max_journaling_size(MAX_JOURNAL_BYTES)
            .open()
            .map_err(db_error)?;
        let open = |name| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(MAX_MEMTABLE_BYTES)
            })
        };
        let (sequenced, dedup, meta) = (
            open("sequenced").map_err(db_error)?,
            open("dedup").map_err(db_error)?,
            open("meta").map_err(db_error)?,
        );
        let legacy_dedup = match meta.get(META_DEDUP_FORMAT).map_err(db_error)? {
            Some(format) if &*format == DEDUP_FORMAT_COMPACT => false,
            Some(_) => {
                return Err(Error::Corrupt {
                    backend: BACKEND,
                    what: "dedup format (written by a newer version?)",
                });
            }
            None if dedup.is_empty().map_err(db_error)? => {
                meta.insert(META_DEDUP_FORMAT, DEDUP_FORMAT_COMPACT)
                    .map_err(db_error)?;
                db.persist(PersistMode::SyncAll).map_err(db_error)?;
                false
            }
            None => true,
        };
        let db = Db {
            sequenced,
            dedup,
            meta,
            db,
            legacy_dedup,
        };
        let read_meta = |key: &[u8], what| -> Result<u64> {
            match db.meta.get(key).map_err(db_error)? {
                Some(value) => decode_u64(&value, what),
                None => Ok(0),
            }
        };
        let state = SequenceState {
            integrated: read_meta(META_INTEGRATED, "integrated size")?,
            sequenced: read_meta(META_SEQUENCED, "sequenced size")?,
        };
        if state.integrated > state.sequenced {
            return Err(Error::Corrupt {
                backend: BACKEND,
                what: "integrated size beyond sequenced size",
            });
        }
        // Leaves kept beyond the persisted integrated size: objects made from them may not
        // have reached the disk before the last stop.
        let tracker = Arc::new(SyncTracker::new(
            root.to_path_buf(),
            state.sequenced > state.integrated,
            sync_interval,
        ));
        let coordinator = PosixCoordinator {
            db,
            state: Arc::new(Mutex::new(state)),
            sequencing: Arc::new(Mutex::new(())),
            released: Arc::new(Mutex::new(state.integrated)),
            tracker: Arc::clone(&tracker),
            _lock: lock,
        };
        Ok((coordinator, tracker))
    }

    /// Syncs every object written so far, then releases the leaves below the integrated size.
    pub(super) async fn sync(&self) -> Result<()> {
        let release = self.release_through(lock_state(&self.state).integrated);
        tokio::task::spawn_blocking(release)
            .await
            .map_err(join_error)?
    }

    /// The blocking work of a sync that releases the leaves below `to` (see [`release_through`]).
    fn release_through(&self, to: u64) -> impl FnOnce() -> Result<()> + Send + 'static {
        let (db, released, tracker) = (
            self.db.clone(),
            Arc::clone(&self.released),
            Arc::clone(&self.tracker),
        );
        move || release_through(&db, &tracker, &released, to)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Db, &Mutex<SequenceState>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || work(&db, &state))
            .await
            .map_err(join_error)?
    }
}

#[async_trait]
impl Coordinator for PosixCoordinator {
    async fn sequence(&self, leaves: &[SequenceLeaf]) -> Result<u64> {
        let leaves = leaves.to_vec();
        let sequencing = Arc::clone(&self.sequencing);
        self.blocking(move |db, state| {
            let _sequencing = sequencing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Only this commit moves the sequenced size, so it stays put until the commit ends.
            let first = lock_state(state).sequenced;
            let mut batch = db.db.batch().durability(Some(PersistMode::SyncAll));
            let mut next = first;
            for leaf in &leaves {
                batch.insert(&db.sequenced, next.to_be_bytes(), leaf.data.as_ref());
                batch.insert(
                    &db.dedup,
                    &leaf.dedup_key[..DEDUP_KEY_BYTES],
                    encode_dedup_index(next),
                );
                next = next.checked_add(1).ok_or(Error::Corrupt {
                    backend: BACKEND,
                    what: "sequence overflow",
                })?;
            }
            batch.insert(&db.meta, META_SEQUENCED, next.to_be_bytes());
            batch.commit().map_err(db_error)?;
            lock_state(state).sequenced = next;
            Ok(first)
        })
        .await
    }

    async fn lookup(&self, dedup_keys: &[[u8; 32]]) -> Result<Vec<Option<u64>>> {
        let keys = dedup_keys.to_vec();
        self.blocking(move |db, _| keys.iter().map(|key| db.lookup(key)).collect())
            .await
    }

    async fn state(&self) -> Result<SequenceState> {
        Ok(*lock_state(&self.state))
    }

    async fn read_sequenced(&self, from: u64, to: u64) -> Result<Vec<Bytes>> {
        self.blocking(move |db, state| {
            // Leaves below the integrated size may still be kept (until their tiles are
            // synced), but they are released as far as callers are concerned.
            let integrated = lock_state(state).integrated;
            if from < integrated {
                return Err(Error::NotFound {
                    path: format!("sequenced leaf {from} (released; integrated size {integrated})"),
                });
            }
            (from..to)
                .map(
                    |index| match db.sequenced.get(index.to_be_bytes()).map_err(db_error)? {
                        Some(value) => Ok(Bytes::copy_from_slice(&value)),
                        None => Err(Error::NotFound {
                            path: format!("sequenced leaf {index}"),
                        }),
                    },
                )
                .collect()
        })
        .await
    }

    async fn mark_integrated(&self, from: u64, to: u64) -> Result<()> {
        {
            let mut state = lock_state(&self.state);
            if state.integrated != from || to < from || to > state.sequenced {
                return Err(Error::Precondition {
                    what: "integrated size",
                    expected: from.to_string(),
                    found: state.integrated.to_string(),
                });
            }
            state.integrated = to;
        }
        if self.tracker.due() {
            let release = self.release_through(to);
            // In the background: the next batch need not wait for these fsyncs.
            tokio::task::spawn_blocking(move || {
                if let Err(e) = release() {
                    warn!(error = %e, "background sync of tiles failed; leaves are kept and the sync retried");
                }
            });
        }
        Ok(())
    }
}

/// Makes the objects written so far durable, then releases the leaves below `to` and persists
/// `to` as the integrated size, with fsync: partial objects below the persisted size are deleted
/// next, and a start must not find an older size whose partial objects are gone.
fn release_through(db: &Db, tracker: &SyncTracker, released: &Mutex<u64>, to: u64) -> Result<()> {
    tracker
        .sync_then(|| {
            let mut released = released
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if to <= *released {
                return Ok(*released);
            }
            let mut batch = db.db.batch().durability(Some(PersistMode::SyncAll));
            for index in *released..to {
                batch.remove(&db.sequenced, index.to_be_bytes());
            }
            batch.insert(&db.meta, META_INTEGRATED, to.to_be_bytes());
            batch.commit().map_err(io::Error::other)?;
            *released = to;
            Ok(to)
        })
        .map(|_| ())
        .map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_in(dir: &Path) -> Result<PosixCoordinator> {
        let lock = Arc::new(File::create(dir.join("lock")).unwrap());
        PosixCoordinator::open(
            &dir.join("db"),
            dir,
            lock,
            std::time::Duration::from_secs(3600),
        )
        .map(|(coordinator, _)| coordinator)
    }

    fn leaf(key: [u8; 32]) -> SequenceLeaf {
        SequenceLeaf {
            dedup_key: key,
            data: Bytes::from_static(b"{}"),
        }
    }

    fn key(first: u8, last: u8) -> [u8; 32] {
        let mut key = [first; 32];
        key[31] = last;
        key
    }

    #[tokio::test]
    async fn a_new_index_stores_16_byte_keys_and_5_byte_indices() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = open_in(dir.path()).unwrap();
        assert!(!coordinator.db.legacy_dedup);
        coordinator
            .sequence(&[leaf(key(1, 0)), leaf(key(2, 0))])
            .await
            .unwrap();
        let stored: Vec<(usize, usize)> = coordinator
            .db
            .dedup
            .iter()
            .map(|guard| {
                let (k, v) = guard.into_inner().unwrap();
                (k.len(), v.len())
            })
            .collect();
        assert_eq!(stored, [(16, 5), (16, 5)]);
        let found = coordinator
            .lookup(&[key(2, 0), key(3, 0), key(1, 0)])
            .await
            .unwrap();
        assert_eq!(found, [Some(1), None, Some(0)]);
        // Only the first 16 bytes count (see the module docs).
        assert_eq!(coordinator.lookup(&[key(1, 9)]).await.unwrap(), [Some(0)]);
        drop(coordinator);
        let reopened = open_in(dir.path()).unwrap();
        assert!(!reopened.db.legacy_dedup);
        assert_eq!(reopened.lookup(&[key(2, 0)]).await.unwrap(), [Some(1)]);
    }

    #[tokio::test]
    async fn an_index_written_with_full_keys_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        {
            // The layout before the compact format: 32-byte keys, 8-byte indices, no format.
            let db = Database::builder(dir.path().join("db")).open().unwrap();
            let dedup = db
                .keyspace("dedup", KeyspaceCreateOptions::default)
                .unwrap();
            let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
            dedup.insert(key(7, 7), 0u64.to_be_bytes()).unwrap();
            meta.insert(META_SEQUENCED, 1u64.to_be_bytes()).unwrap();
            meta.insert(META_INTEGRATED, 1u64.to_be_bytes()).unwrap();
            db.persist(PersistMode::SyncAll).unwrap();
        }
        let coordinator = open_in(dir.path()).unwrap();
        assert!(coordinator.db.legacy_dedup);
        assert_eq!(coordinator.sequence(&[leaf(key(8, 8))]).await.unwrap(), 1);
        let found = coordinator
            .lookup(&[key(7, 7), key(8, 8), key(7, 6)])
            .await
            .unwrap();
        assert_eq!(
            found,
            [Some(0), Some(1), None],
            "old keys match in full only"
        );
    }

    #[tokio::test]
    async fn an_unknown_dedup_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::builder(dir.path().join("db")).open().unwrap();
            let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
            meta.insert(META_DEDUP_FORMAT, b"key8").unwrap();
            db.persist(PersistMode::SyncAll).unwrap();
        }
        assert!(matches!(
            open_in(dir.path()),
            Err(Error::Corrupt { what, .. }) if what.starts_with("dedup format")
        ));
    }

    #[test]
    fn dedup_indices_round_trip_in_5_or_8_bytes() {
        for index in [0, 1, 255, 1 << 32, COMPACT_INDEX_LIMIT - 1] {
            let encoded = encode_dedup_index(index);
            assert_eq!(encoded.len(), 5);
            assert_eq!(decode_dedup_index(&encoded).unwrap(), index);
        }
        for index in [COMPACT_INDEX_LIMIT, u64::MAX] {
            let encoded = encode_dedup_index(index);
            assert_eq!(encoded.len(), 8);
            assert_eq!(decode_dedup_index(&encoded).unwrap(), index);
        }
        assert!(decode_dedup_index(&[1, 2, 3]).is_err());
    }
}
