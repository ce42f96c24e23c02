//! Sequencing and dedup for the POSIX backend, in an embedded fjall database.
//!
//! Keyspaces: `sequenced` (index, big-endian u64 → leaf bytes, kept until their tiles are
//! durable), `dedup` (32-byte key → index) and `meta` (`sequenced`, `integrated` → big-endian u64).
//! One write batch per call keeps them consistent; `sequence` commits with fsync.
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
        let db = Db {
            sequenced: open("sequenced").map_err(db_error)?,
            dedup: open("dedup").map_err(db_error)?,
            meta: open("meta").map_err(db_error)?,
            db,
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
                batch.insert(&db.dedup, leaf.dedup_key, next.to_be_bytes());
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
        self.blocking(move |db, _| {
            keys.iter()
                .map(|key| match db.dedup.get(key).map_err(db_error)? {
                    Some(value) => decode_u64(&value, "dedup index").map(Some),
                    None => Ok(None),
                })
                .collect()
        })
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
