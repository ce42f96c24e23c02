//! Sequencing for the POSIX backend, in an embedded fjall database, and the dedup index.
//!
//! Keyspaces: `sequenced` (index, big-endian u64 → leaf bytes, kept until their tiles are
//! durable) and `meta` (`sequenced`, `integrated` → big-endian u64; how dedup is kept). One write
//! batch per call keeps them consistent; `sequence` commits with fsync.
//!
//! The dedup index is not in the database: it is derived from the log, 5.25 bytes an entry on
//! disk (see [`super::dedup`]). Earlier versions kept every entry's key in a `dedup` keyspace
//! (32-byte keys and 8-byte indices, later 16-byte key prefixes and 5-byte indices). A database
//! from such a version keeps that keyspace as it is, read-only, for the entries it covers; the
//! index starts where it ends (`dedup-runs-from`). A 128-bit prefix of a SHA-256 key does not
//! collide by chance; matching someone else's entry would take a second preimage.
//!
//! `mark_integrated` moves the integrated size in memory at once, but releases leaves (and
//! persists the size) only after a background sync has made their tiles durable (see
//! [`super::sync`]), so a restart after a power loss integrates them again. The dedup index
//! turns its oldest entries into a run after such a sync.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use tracing::warn;

use super::dedup::DedupIndex;
use super::sync::SyncTracker;
use super::{BACKEND, io_error, join_error};
use crate::{Coordinator, Error, Result, SequenceLeaf, SequenceState, dedup_key};

const META_SEQUENCED: &[u8] = b"sequenced";
const META_INTEGRATED: &[u8] = b"integrated";
const META_DEDUP_FORMAT: &[u8] = b"dedup-format";
/// Where the dedup index's runs start; entries below are in a legacy keyspace.
const META_DEDUP_RUNS_FROM: &[u8] = b"dedup-runs-from";
/// The format of the legacy keyspace, if there is one.
const META_DEDUP_LEGACY: &[u8] = b"dedup-legacy";
/// The `dedup-format` of this version: the index in [`super::dedup`].
const DEDUP_FORMAT_RUNS: &[u8] = b"runs";
/// A legacy keyspace of 16-byte key prefixes (and 5-byte indices).
const DEDUP_FORMAT_COMPACT: &[u8] = b"key16-index40";
/// A legacy keyspace that may hold full 32-byte keys (the first format, no `dedup-format`),
/// besides 16-byte prefixes.
const DEDUP_FORMAT_FULL_KEYS: &[u8] = b"key32-index64";
/// The length of a key prefix in a legacy keyspace.
const LEGACY_KEY_BYTES: usize = 16;
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

/// Decodes an index from a legacy dedup keyspace: 5 or 8 big-endian bytes.
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

/// A `dedup` keyspace written by an earlier version: it covers the entries below the index's start.
#[derive(Clone)]
struct LegacyDedup {
    keyspace: Keyspace,
    /// Whether full 32-byte keys may be in it, besides 16-byte prefixes.
    full_keys: bool,
}

impl LegacyDedup {
    fn lookup(&self, key: &[u8; 32]) -> Result<Option<u64>> {
        if let Some(value) = self
            .keyspace
            .get(&key[..LEGACY_KEY_BYTES])
            .map_err(db_error)?
        {
            return decode_dedup_index(&value).map(Some);
        }
        if self.full_keys
            && let Some(value) = self.keyspace.get(key).map_err(db_error)?
        {
            return decode_dedup_index(&value).map(Some);
        }
        Ok(None)
    }
}

#[derive(Clone)]
struct Db {
    db: Database,
    sequenced: Keyspace,
    meta: Keyspace,
    index: Arc<DedupIndex>,
    legacy: Option<LegacyDedup>,
}

impl Db {
    fn lookup(&self, key: &[u8; 32]) -> Result<Option<u64>> {
        if let Some(index) = self.index.lookup(key)? {
            return Ok(Some(index));
        }
        match &self.legacy {
            Some(legacy) => legacy.lookup(key),
            None => Ok(None),
        }
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

/// Whether a legacy keyspace of this format may hold full 32-byte keys.
fn legacy_full_keys(format: &[u8]) -> Result<bool> {
    match format {
        DEDUP_FORMAT_COMPACT => Ok(false),
        DEDUP_FORMAT_FULL_KEYS => Ok(true),
        _ => Err(Error::Corrupt {
            backend: BACKEND,
            what: "legacy dedup format",
        }),
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
        run_unit: u64,
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
            .map_err(db_error)
        };
        let (sequenced, meta) = (open("sequenced")?, open("meta")?);
        let read_meta = |key: &[u8], what| -> Result<u64> {
            match meta.get(key).map_err(db_error)? {
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
        let legacy_keyspace = if db.keyspace_exists("dedup") {
            Some(open("dedup")?)
        } else {
            None
        };
        let (runs_from, legacy) = match meta.get(META_DEDUP_FORMAT).map_err(db_error)? {
            Some(format) if &*format == DEDUP_FORMAT_RUNS => {
                let legacy = match meta.get(META_DEDUP_LEGACY).map_err(db_error)? {
                    None => None,
                    Some(format) => Some(LegacyDedup {
                        keyspace: legacy_keyspace.ok_or(Error::Corrupt {
                            backend: BACKEND,
                            what: "legacy dedup keyspace (missing)",
                        })?,
                        full_keys: legacy_full_keys(&format)?,
                    }),
                };
                (read_meta(META_DEDUP_RUNS_FROM, "dedup runs start")?, legacy)
            }
            Some(format) if &*format != DEDUP_FORMAT_COMPACT => {
                return Err(Error::Corrupt {
                    backend: BACKEND,
                    what: "dedup format (written by a newer version?)",
                });
            }
            // A database from before the index: its keyspace covers everything sequenced.
            format => {
                let legacy_format = if format.is_some() {
                    DEDUP_FORMAT_COMPACT
                } else {
                    DEDUP_FORMAT_FULL_KEYS
                };
                let legacy = match legacy_keyspace {
                    Some(keyspace) if !keyspace.is_empty().map_err(db_error)? => {
                        Some(LegacyDedup {
                            keyspace,
                            full_keys: legacy_full_keys(legacy_format)?,
                        })
                    }
                    _ => None,
                };
                let runs_from = if legacy.is_some() { state.sequenced } else { 0 };
                let mut batch = db.batch().durability(Some(PersistMode::SyncAll));
                batch.insert(&meta, META_DEDUP_FORMAT, DEDUP_FORMAT_RUNS);
                batch.insert(&meta, META_DEDUP_RUNS_FROM, runs_from.to_be_bytes());
                if legacy.is_some() {
                    batch.insert(&meta, META_DEDUP_LEGACY, legacy_format);
                }
                batch.commit().map_err(db_error)?;
                (runs_from, legacy)
            }
        };
        let dedup_dir = path.with_file_name("dedup");
        let index = DedupIndex::open(&dedup_dir, root, runs_from, run_unit)?;
        if index.indexed() > state.sequenced {
            return Err(Error::Corrupt {
                backend: BACKEND,
                what: "dedup runs beyond the sequenced size",
            });
        }
        // The entries the runs do not cover: from the bundles up to the persisted integrated
        // size, and from the kept leaves after it.
        index.load_bundles(state.integrated)?;
        let kept_from = index.indexed().max(state.integrated);
        for first in (kept_from..state.sequenced).step_by(4096) {
            let keys = (first..state.sequenced.min(first + 4096))
                .map(
                    |i| match sequenced.get(i.to_be_bytes()).map_err(db_error)? {
                        Some(leaf) => Ok(dedup_key(&leaf)),
                        None => Err(Error::Corrupt {
                            backend: BACKEND,
                            what: "sequenced leaf missing",
                        }),
                    },
                )
                .collect::<Result<Vec<_>>>()?;
            index.insert(first, keys);
        }
        let db = Db {
            sequenced,
            meta,
            db,
            index: Arc::new(index),
            legacy,
        };
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
                next = next.checked_add(1).ok_or(Error::Corrupt {
                    backend: BACKEND,
                    what: "sequence overflow",
                })?;
            }
            batch.insert(&db.meta, META_SEQUENCED, next.to_be_bytes());
            batch.commit().map_err(db_error)?;
            db.index
                .insert(first, leaves.iter().map(|leaf| leaf.dedup_key));
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
/// next, and a start must not find an older size whose partial objects are gone. Then the dedup
/// index moves the entries that are durable in full bundles into a run.
fn release_through(db: &Db, tracker: &SyncTracker, released: &Mutex<u64>, to: u64) -> Result<()> {
    let durable = tracker
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
        .map_err(io_error)?;
    if let Err(e) = db.index.compact(durable) {
        // The entries stay in memory, and the next sync tries again.
        warn!(error = %e, "could not write a dedup run");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekor_tlog::{BundleId, TileIndex, TileWidth, encode_bundle};

    /// Entries per run in these tests.
    const UNIT: u64 = 512;

    fn open_in(dir: &Path) -> Result<PosixCoordinator> {
        let lock = Arc::new(File::create(dir.join("lock")).unwrap());
        PosixCoordinator::open(
            &dir.join("db"),
            dir,
            lock,
            std::time::Duration::from_secs(3600),
            UNIT,
        )
        .map(|(coordinator, _)| coordinator)
    }

    fn entry(n: u64) -> Vec<u8> {
        format!("{{\"entry\":{n}}}").into_bytes()
    }

    fn leaf(n: u64) -> SequenceLeaf {
        let data = entry(n);
        SequenceLeaf {
            dedup_key: dedup_key(&data),
            data: Bytes::from(data),
        }
    }

    /// Writes the bundles of entries `0..size` under `root`, as the integrator would.
    fn write_bundles(root: &Path, size: u64) {
        let entries: Vec<Vec<u8>> = (0..size).map(entry).collect();
        for (bundle, chunk) in (0u64..).zip(entries.chunks(256)) {
            let width = TileWidth::new(u16::try_from(chunk.len()).unwrap()).unwrap();
            let path = root.join(BundleId::new(TileIndex::new(bundle), width).path());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(
                path,
                encode_bundle(chunk.iter().map(Vec::as_slice)).unwrap(),
            )
            .unwrap();
        }
    }

    fn key(first: u8, last: u8) -> [u8; 32] {
        let mut key = [first; 32];
        key[31] = last;
        key
    }

    fn run_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("dedup"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn dedup_keys_stay_out_of_the_database_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = open_in(dir.path()).unwrap();
        assert!(!coordinator.db.db.keyspace_exists("dedup"));
        assert!(coordinator.db.legacy.is_none());
        let leaves: Vec<SequenceLeaf> = (0..3).map(leaf).collect();
        assert_eq!(coordinator.sequence(&leaves).await.unwrap(), 0);
        let found = coordinator
            .lookup(&[leaf(2).dedup_key, leaf(9).dedup_key, leaf(0).dedup_key])
            .await
            .unwrap();
        assert_eq!(found, [Some(2), None, Some(0)]);
        drop(coordinator);
        // Nothing integrated: the keys come back from the kept leaves.
        let reopened = open_in(dir.path()).unwrap();
        assert!(!reopened.db.db.keyspace_exists("dedup"));
        assert_eq!(
            reopened.lookup(&[leaf(1).dedup_key]).await.unwrap(),
            [Some(1)]
        );
        assert_eq!(
            reopened.db.meta.get(META_DEDUP_FORMAT).unwrap().as_deref(),
            Some(DEDUP_FORMAT_RUNS)
        );
    }

    #[tokio::test]
    async fn durable_entries_move_into_runs_and_a_restart_reads_the_rest_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let size = 2 * UNIT + 300;
        let coordinator = open_in(dir.path()).unwrap();
        let leaves: Vec<SequenceLeaf> = (0..size).map(leaf).collect();
        for chunk in leaves.chunks(100) {
            coordinator.sequence(chunk).await.unwrap();
        }
        write_bundles(dir.path(), 2 * UNIT + 100);
        coordinator
            .mark_integrated(0, 2 * UNIT + 100)
            .await
            .unwrap();
        // Runs are written only once the entries are durable.
        assert!(run_files(dir.path()).is_empty());
        coordinator.sync().await.unwrap();
        assert_eq!(
            run_files(dir.path()),
            ["run-0000000000000000-0000000000000400"]
        );
        let keys: Vec<[u8; 32]> = leaves.iter().map(|l| l.dedup_key).collect();
        let expected: Vec<Option<u64>> = (0..size).map(Some).collect();
        assert_eq!(coordinator.lookup(&keys).await.unwrap(), expected);
        drop(coordinator);

        // Runs below 1024, bundles up to 1124, kept leaves after.
        let reopened = open_in(dir.path()).unwrap();
        assert_eq!(reopened.lookup(&keys).await.unwrap(), expected);
        assert_eq!(
            reopened.lookup(&[leaf(size).dedup_key]).await.unwrap(),
            [None]
        );
    }

    #[tokio::test]
    async fn a_database_with_full_dedup_keys_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        {
            // The first layout: 32-byte keys, 8-byte indices, no format.
            let db = Database::builder(dir.path().join("db")).open().unwrap();
            let dedup = db
                .keyspace("dedup", KeyspaceCreateOptions::default)
                .unwrap();
            let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
            dedup.insert(key(7, 7), 0u64.to_be_bytes()).unwrap();
            dedup.insert(&key(6, 6)[..16], [0, 0, 0, 0, 1]).unwrap();
            meta.insert(META_SEQUENCED, 2u64.to_be_bytes()).unwrap();
            meta.insert(META_INTEGRATED, 2u64.to_be_bytes()).unwrap();
            db.persist(PersistMode::SyncAll).unwrap();
        }
        for start in 0..2 {
            let coordinator = open_in(dir.path()).unwrap();
            assert!(coordinator.db.legacy.as_ref().unwrap().full_keys);
            if start == 0 {
                assert_eq!(coordinator.sequence(&[leaf(8)]).await.unwrap(), 2);
            }
            let found = coordinator
                .lookup(&[key(7, 7), key(6, 6), leaf(8).dedup_key, key(7, 6)])
                .await
                .unwrap();
            assert_eq!(
                found,
                [Some(0), Some(1), Some(2), None],
                "start {start}: old keys match in full, or by their 16-byte prefix"
            );
        }
    }

    #[tokio::test]
    async fn a_database_with_16_byte_dedup_keys_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::builder(dir.path().join("db")).open().unwrap();
            let dedup = db
                .keyspace("dedup", KeyspaceCreateOptions::default)
                .unwrap();
            let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
            dedup.insert(&key(5, 0)[..16], [0, 0, 0, 0, 0]).unwrap();
            meta.insert(META_DEDUP_FORMAT, DEDUP_FORMAT_COMPACT)
                .unwrap();
            meta.insert(META_SEQUENCED, 1u64.to_be_bytes()).unwrap();
            meta.insert(META_INTEGRATED, 1u64.to_be_bytes()).unwrap();
            db.persist(PersistMode::SyncAll).unwrap();
        }
        let coordinator = open_in(dir.path()).unwrap();
        assert!(!coordinator.db.legacy.as_ref().unwrap().full_keys);
        assert_eq!(
            coordinator
                .db
                .meta
                .get(META_DEDUP_RUNS_FROM)
                .unwrap()
                .as_deref(),
            Some(&1u64.to_be_bytes()[..])
        );
        let found = coordinator.lookup(&[key(5, 9), key(4, 0)]).await.unwrap();
        assert_eq!(found, [Some(0), None]);
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
    fn legacy_dedup_indices_are_5_or_8_bytes() {
        assert_eq!(decode_dedup_index(&[0, 0, 0, 1, 2]).unwrap(), 258);
        assert_eq!(
            decode_dedup_index(&[1, 0, 0, 0, 0, 0, 0, 0]).unwrap(),
            1 << 56
        );
        assert!(decode_dedup_index(&[1, 2, 3]).is_err());
    }
}
