//! Sequencing and dedup for the POSIX backend, under `.rekor/`:
//!
//! - `journal/`: the sequenced leaves, fsynced before they are answered and kept (on disk and in
//!   memory) until the tiles made from them are durable (see [`super::journal`]);
//! - `state`: the persisted integrated size and where the dedup index starts, replaced atomically;
//! - `frozen`: present once the log is frozen, with its final size (see [`Coordinator::freeze`]);
//! - `dedup/`: the dedup index's runs, derived from the log (see [`super::dedup`]);
//! - `db/`: only in logs begun by an earlier version, which kept everything in a fjall database.
//!   The first start of this version moves out of it; its dedup keys may stay, read-only, for the
//!   entries below where the dedup index starts (see [`super::legacy`]).
//!
//! `mark_integrated` moves the integrated size in memory at once, but releases leaves (and
//! persists the size) only after a background sync has made their tiles durable (see
//! [`super::sync`]), so a restart after a power loss integrates them again. After such a sync,
//! the dedup index turns its oldest entries into a run.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use tracing::{error, warn};

use super::dedup::DedupIndex;
use super::error::PosixError;
use super::journal::Journal;
use super::legacy::{self, LegacyDedup};
use super::sync::{SyncTracker, sync_dir};
use crate::{Coordinator, Error, Result, SequenceLeaf, SequenceState, dedup_key};

const STATE_FILE: &str = "state";
const FROZEN_FILE: &str = "frozen";
const FROZEN_PREFIX: &str = "rekor posix frozen at ";

/// Reads `.rekor/frozen`: the final size of a frozen log, `None` if it is not frozen.
fn read_frozen(private: &Path) -> Result<Option<u64>, PosixError> {
    match fs::read_to_string(private.join(FROZEN_FILE)) {
        Ok(text) => text
            .strip_prefix(FROZEN_PREFIX)
            .and_then(|rest| rest.strip_suffix('\n'))
            .and_then(|size| size.parse().ok())
            .map(Some)
            .ok_or(PosixError::Corrupt {
                what: "frozen file",
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes `.rekor/frozen` durably (temporary file, fsync, rename, directory fsync).
fn write_frozen(private: &Path, size: u64) -> io::Result<()> {
    let temp = private.join(format!("{FROZEN_FILE}.tmp"));
    let mut file = File::create(&temp)?;
    file.write_all(format!("{FROZEN_PREFIX}{size}\n").as_bytes())?;
    file.sync_all()?;
    fs::rename(&temp, private.join(FROZEN_FILE))?;
    sync_dir(private)
}
const STATE_HEADER: &str = "rekor posix state v1";

/// The state persisted in `.rekor/state`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PersistedState {
    integrated: u64,
    /// Where the dedup index starts: entries below are in the legacy keyspace.
    runs_from: u64,
    /// The legacy keyspace's format, if there is one to read.
    legacy: Option<legacy::Format>,
}

impl PersistedState {
    fn encode(&self) -> String {
        format!(
            "{STATE_HEADER}\nintegrated {}\ndedup-runs-from {}\ndedup-legacy {}\n",
            self.integrated,
            self.runs_from,
            self.legacy.map_or("none", legacy::Format::name)
        )
    }

    fn decode(text: &str) -> Option<PersistedState> {
        let mut lines = text.strip_suffix('\n')?.split('\n');
        if lines.next()? != STATE_HEADER {
            return None;
        }
        let mut field = |name: &str| lines.next()?.strip_prefix(name)?.strip_prefix(' ');
        let integrated = field("integrated")?.parse().ok()?;
        let runs_from = field("dedup-runs-from")?.parse().ok()?;
        let legacy = match field("dedup-legacy")? {
            "none" => None,
            name => Some(legacy::Format::from_name(name)?),
        };
        lines.next().is_none().then_some(PersistedState {
            integrated,
            runs_from,
            legacy,
        })
    }

    /// Reads the state file in `private`, if there is one.
    fn read(private: &Path) -> Result<Option<PersistedState>, PosixError> {
        match fs::read_to_string(private.join(STATE_FILE)) {
            Ok(text) => PersistedState::decode(&text)
                .map(Some)
                .ok_or(PosixError::Corrupt { what: "state file" }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the state file in `private`, durably.
    fn write(&self, private: &Path) -> io::Result<()> {
        let temp = private.join(format!("{STATE_FILE}.tmp"));
        let mut file = File::create(&temp)?;
        file.write_all(self.encode().as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, private.join(STATE_FILE))?;
        sync_dir(private)
    }
}

/// The leaves from the integrated size on (some below it until they are released).
#[derive(Debug, Default)]
struct KeptLeaves {
    first: u64,
    leaves: VecDeque<Bytes>,
}

/// What the blocking calls share.
struct Inner {
    private: PathBuf,
    journal: Journal,
    kept: Mutex<KeptLeaves>,
    index: DedupIndex,
    legacy: Option<LegacyDedup>,
    /// The persisted state; its integrated size moves at each release.
    persisted: Mutex<PersistedState>,
    /// The final size once frozen; set under the sequencing lock, after `frozen` is durable.
    frozen: Mutex<Option<u64>>,
    /// Why a sync failed, if one did. It is not retried: after a failed fsync the kernel may
    /// have dropped the dirty pages and a second fsync can succeed with the data never written,
    /// so nothing more is released (the journal keeps every leaf from here on), the coordinator
    /// reports itself unhealthy, and the next start writes the objects again from the journal.
    sync_failure: Mutex<Option<String>>,
}

impl Inner {
    fn lookup(&self, keys: &[[u8; 32]]) -> Result<Vec<Option<u64>>, PosixError> {
        let mut found = self.index.lookup(keys)?;
        if let Some(legacy) = &self.legacy {
            for (key, slot) in keys.iter().zip(&mut found) {
                if slot.is_none() {
                    *slot = legacy.lookup(key)?;
                }
            }
        }
        Ok(found)
    }
}

/// The POSIX backend's [`Coordinator`].
pub struct PosixCoordinator {
    inner: Arc<Inner>,
    /// The sizes as committed; locked only briefly, never across an fsync, so the integrated
    /// size moves (the publication of one batch) while the next batch's commit syncs.
    state: Arc<Mutex<SequenceState>>,
    /// Held across a sequencing commit: one at a time, each continuing from the last.
    sequencing: Arc<Mutex<()>>,
    tracker: Arc<SyncTracker>,
    _lock: Arc<File>,
}

impl std::fmt::Debug for PosixCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PosixCoordinator")
            .field("state", &*lock(&self.state))
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values are only replaced whole after a successful commit, so they are valid
    // even if a holder panicked.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts the state of a log in `private` that has none: a new log, or one begun by an earlier
/// version, whose leaves and sizes move to the journal and state file (see [`legacy::migrate`]).
fn first_start(private: &Path, journal_dir: &Path) -> Result<PersistedState, PosixError> {
    // The state file is the commit point: until it exists, the next start begins again.
    let commit = |state: PersistedState| {
        state.write(private)?;
        Ok(state)
    };
    let migrated = legacy::migrate(private, journal_dir, |moved| {
        commit(PersistedState {
            integrated: moved.integrated,
            runs_from: moved.runs_from,
            legacy: moved.dedup,
        })
    })?;
    match migrated {
        Some(state) => Ok(state),
        None => commit(PersistedState {
            integrated: 0,
            runs_from: 0,
            legacy: None,
        }),
    }
}

impl PosixCoordinator {
    /// Opens the private state in `private` (see the module docs), and the sync tracker for the
    /// objects under `root`. New runs of the dedup index hold `run_unit` entries.
    pub(super) fn open(
        private: &Path,
        root: &Path,
        lock: Arc<File>,
        sync_interval: std::time::Duration,
        run_unit: u64,
    ) -> Result<(Self, Arc<SyncTracker>), PosixError> {
        let journal_dir = private.join("journal");
        let persisted = match PersistedState::read(private)? {
            Some(state) => state,
            None => first_start(private, &journal_dir)?,
        };
        let legacy = persisted
            .legacy
            .map(|format| LegacyDedup::open(private, format))
            .transpose()?;
        let frozen = read_frozen(private)?;
        let (journal, recovered) =
            Journal::open(&journal_dir, persisted.integrated).map_err(PosixError::Journal)?;
        let state = SequenceState {
            integrated: persisted.integrated,
            sequenced: recovered.sequenced,
        };
        let index = DedupIndex::open(&private.join("dedup"), root, persisted.runs_from, run_unit)?;
        if index.indexed() > state.sequenced {
            return Err(PosixError::Corrupt {
                what: "dedup runs beyond the sequenced size",
            });
        }
        // The entries the runs do not cover: from the bundles up to the persisted integrated
        // size, and from the kept leaves after it.
        index.load_bundles(state.integrated)?;
        let skip = index.indexed().saturating_sub(state.integrated);
        index.insert(
            state.integrated + skip,
            recovered
                .kept
                .iter()
                .skip(usize::try_from(skip).unwrap_or(usize::MAX))
                .map(|leaf| dedup_key(leaf)),
        );
        let inner = Inner {
            private: private.to_path_buf(),
            journal,
            kept: Mutex::new(KeptLeaves {
                first: state.integrated,
                leaves: recovered.kept.into(),
            }),
            index,
            legacy,
            persisted: Mutex::new(persisted),
            frozen: Mutex::new(frozen),
            sync_failure: Mutex::new(None),
        };
        // Leaves kept beyond the persisted integrated size: objects made from them may not
        // have reached the disk before the last stop.
        let tracker = Arc::new(SyncTracker::new(
            root.to_path_buf(),
            state.sequenced > state.integrated,
            sync_interval,
        ));
        let coordinator = PosixCoordinator {
            inner: Arc::new(inner),
            state: Arc::new(Mutex::new(state)),
            sequencing: Arc::new(Mutex::new(())),
            tracker: Arc::clone(&tracker),
            _lock: lock,
        };
        Ok((coordinator, tracker))
    }

    /// Syncs every object written so far, then releases the leaves below the integrated size.
    pub(super) async fn sync(&self) -> Result<()> {
        let release = self.release_through(lock(&self.state).integrated);
        tokio::task::spawn_blocking(release)
            .await
            .map_err(PosixError::Task)?
    }

    /// The blocking work of a sync that releases the leaves below `to` (see [`release_through`]).
    fn release_through(&self, to: u64) -> impl FnOnce() -> Result<()> + Send + 'static {
        let (inner, tracker) = (Arc::clone(&self.inner), Arc::clone(&self.tracker));
        move || Ok(release_through(&inner, &tracker, to)?)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner, &Mutex<SequenceState>) -> Result<T, PosixError> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        let state = Arc::clone(&self.state);
        let result = tokio::task::spawn_blocking(move || work(&inner, &state))
            .await
            .map_err(PosixError::Task)?;
        Ok(result?)
    }
}

#[async_trait]
impl Coordinator for PosixCoordinator {
    async fn sequence(&self, leaves: &[SequenceLeaf]) -> Result<u64> {
        let leaves = leaves.to_vec();
        let sequencing = Arc::clone(&self.sequencing);
        self.blocking(move |inner, state| {
            let _sequencing = lock(&sequencing);
            if let Some(size) = *lock(&inner.frozen) {
                return Err(PosixError::Frozen { size });
            }
            // Only this commit moves the sequenced size, so it stays put until the commit ends.
            let first = lock(state).sequenced;
            let overflow = || PosixError::Corrupt {
                what: "sequence overflow",
            };
            let count = u64::try_from(leaves.len()).map_err(|_| overflow())?;
            let next = first.checked_add(count).ok_or_else(overflow)?;
            let data: Vec<Bytes> = leaves.iter().map(|leaf| leaf.data.clone()).collect();
            inner.journal.append(first, &data)?;
            lock(&inner.kept).leaves.extend(data);
            inner
                .index
                .insert(first, leaves.iter().map(|leaf| leaf.dedup_key));
            lock(state).sequenced = next;
            Ok(first)
        })
        .await
    }

    async fn freeze(&self) -> Result<u64> {
        let sequencing = Arc::clone(&self.sequencing);
        self.blocking(move |inner, state| {
            // Under the sequencing lock: no commit is half done, and none starts until the
            // flag is set, so the final size is exactly what was sequenced.
            let _sequencing = lock(&sequencing);
            if let Some(size) = *lock(&inner.frozen) {
                return Ok(size);
            }
            let size = lock(state).sequenced;
            write_frozen(&inner.private, size)?;
            *lock(&inner.frozen) = Some(size);
            Ok(size)
        })
        .await
    }

    async fn frozen(&self) -> Result<Option<u64>> {
        Ok(*lock(&self.inner.frozen))
    }

    async fn lookup(&self, dedup_keys: &[[u8; 32]]) -> Result<Vec<Option<u64>>> {
        let keys = dedup_keys.to_vec();
        self.blocking(move |inner, _| inner.lookup(&keys)).await
    }

    async fn state(&self) -> Result<SequenceState> {
        Ok(*lock(&self.state))
    }

    async fn read_sequenced(&self, from: u64, to: u64) -> Result<Vec<Bytes>> {
        // Leaves below the integrated size may still be kept (until their tiles are synced),
        // but they are released as far as callers are concerned.
        let integrated = lock(&self.state).integrated;
        if from < integrated {
            return Err(Error::NotFound {
                path: format!("sequenced leaf {from} (released; integrated size {integrated})"),
            });
        }
        let kept = lock(&self.inner.kept);
        (from..to)
            .map(|index| {
                index
                    .checked_sub(kept.first)
                    .and_then(|offset| usize::try_from(offset).ok())
                    .and_then(|offset| kept.leaves.get(offset))
                    .cloned()
                    .ok_or_else(|| Error::NotFound {
                        path: format!("sequenced leaf {index}"),
                    })
            })
            .collect()
    }

    fn health(&self) -> Result<()> {
        self.inner.journal.health().map_err(PosixError::Io)?;
        match lock(&self.inner.sync_failure).as_deref() {
            Some(failure) => Err(PosixError::SyncFailed {
                failure: failure.to_owned(),
            }
            .into()),
            None => Ok(()),
        }
    }

    async fn mark_integrated(&self, from: u64, to: u64) -> Result<()> {
        {
            let mut state = lock(&self.state);
            if state.integrated != from || to < from || to > state.sequenced {
                return Err(Error::Precondition {
                    what: "integrated size",
                    expected: from.to_string(),
                    found: state.integrated.to_string(),
                });
            }
            state.integrated = to;
        }
        // After a failed sync nothing more is released (see `Inner::sync_failure`); health
        // reports it, so the error is not logged again at every interval.
        if self.tracker.due() && lock(&self.inner.sync_failure).is_none() {
            let release = self.release_through(to);
            // In the background: the next batch need not wait for these fsyncs.
            tokio::task::spawn_blocking(move || {
                if let Err(e) = release() {
                    error!(error = %e, "background sync of tiles failed; leaves are kept, and the log reports itself unhealthy until a restart writes the objects again");
                }
            });
        }
        Ok(())
    }
}

/// Makes the objects written so far durable, then persists `to` as the integrated size and
/// releases the leaves below it (from memory and the journal): partial objects below the
/// persisted size are deleted next, and a start must not find an older size whose partial
/// objects are gone. Then the dedup index moves the entries that are durable in full bundles
/// into a run.
///
/// A failure is final for this process (see `Inner::sync_failure`): every later call fails too.
fn release_through(inner: &Inner, tracker: &SyncTracker, to: u64) -> Result<(), PosixError> {
    if let Some(failure) = lock(&inner.sync_failure).as_deref() {
        return Err(PosixError::SyncFailed {
            failure: failure.to_owned(),
        });
    }
    let durable = tracker
        .sync_then(|| {
            let mut persisted = lock(&inner.persisted);
            if to <= persisted.integrated {
                return Ok(persisted.integrated);
            }
            let next = PersistedState {
                integrated: to,
                ..persisted.clone()
            };
            next.write(&inner.private)?;
            *persisted = next;
            {
                let mut kept = lock(&inner.kept);
                while kept.first < to && kept.leaves.pop_front().is_some() {
                    kept.first += 1;
                }
            }
            inner.journal.release(to)?;
            Ok(to)
        })
        .map_err(|e| {
            lock(&inner.sync_failure).get_or_insert_with(|| e.to_string());
            PosixError::Io(e)
        })?;
    if let Err(e) = inner.index.compact(durable) {
        // The entries stay in memory, and the next sync tries again.
        warn!(error = %e, "could not write a dedup run");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::posix::test_support::{
        UNIT, entry, file_names, leaf, open_coordinator, write_bundles,
    };

    fn keys(range: std::ops::Range<u64>) -> Vec<[u8; 32]> {
        range.map(|n| leaf(n).dedup_key).collect()
    }

    /// Writes the bundles of entries `0..size` under `root`, as the integrator would.
    fn write_log(root: &Path, size: u64) {
        write_bundles(root, &(0..size).map(entry).collect::<Vec<_>>());
    }

    #[test]
    fn the_state_file_round_trips_and_refuses_anything_else() {
        let state = PersistedState {
            integrated: 1_234,
            runs_from: 56,
            legacy: Some(legacy::Format::Compact),
        };
        let text = state.encode();
        assert_eq!(
            text,
            "rekor posix state v1\nintegrated 1234\ndedup-runs-from 56\ndedup-legacy key16-index40\n"
        );
        assert_eq!(PersistedState::decode(&text), Some(state));
        for bad in [
            text.trim_end(),
            &text.replace("v1", "v2"),
            &text.replace("1234", "-1"),
            &text.replace("key16-index40", "key8"),
            &format!("{text}extra\n"),
        ] {
            assert_eq!(PersistedState::decode(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn leaves_and_dedup_keys_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = open_coordinator(dir.path()).unwrap();
        assert!(!dir.path().join(legacy::DB_DIR).exists());
        assert!(coordinator.inner.legacy.is_none());
        let leaves: Vec<SequenceLeaf> = (0..3).map(leaf).collect();
        assert_eq!(coordinator.sequence(&leaves).await.unwrap(), 0);
        let found = coordinator
            .lookup(&[leaf(2).dedup_key, leaf(9).dedup_key, leaf(0).dedup_key])
            .await
            .unwrap();
        assert_eq!(found, [Some(2), None, Some(0)]);
        drop(coordinator);
        // Nothing integrated: the leaves and keys come back from the journal.
        let reopened = open_coordinator(dir.path()).unwrap();
        assert_eq!(reopened.state().await.unwrap().sequenced, 3);
        assert_eq!(
            reopened.read_sequenced(0, 3).await.unwrap(),
            leaves.iter().map(|l| l.data.clone()).collect::<Vec<_>>()
        );
        assert_eq!(reopened.lookup(&keys(1..2)).await.unwrap(), [Some(1)]);
    }

    #[tokio::test]
    async fn durable_entries_leave_the_journal_for_runs_and_a_restart_reads_the_rest_from_the_log()
    {
        let dir = tempfile::tempdir().unwrap();
        let size = 2 * UNIT + 300;
        let coordinator = open_coordinator(dir.path()).unwrap();
        let leaves: Vec<SequenceLeaf> = (0..size).map(leaf).collect();
        for chunk in leaves.chunks(100) {
            coordinator.sequence(chunk).await.unwrap();
        }
        write_log(dir.path(), 2 * UNIT + 100);
        coordinator
            .mark_integrated(0, 2 * UNIT + 100)
            .await
            .unwrap();
        // Runs are written, and journal segments deleted, only once the entries are durable.
        assert!(file_names(&dir.path().join("dedup")).is_empty());
        assert_eq!(file_names(&dir.path().join("journal")).len(), 1);
        coordinator.sync().await.unwrap();
        assert_eq!(
            file_names(&dir.path().join("dedup")),
            ["run-0000000000000000-0000000000000400"]
        );
        assert!(matches!(
            coordinator.read_sequenced(2 * UNIT, 2 * UNIT + 1).await,
            Err(Error::NotFound { .. })
        ));
        let expected: Vec<Option<u64>> = (0..size).map(Some).collect();
        assert_eq!(coordinator.lookup(&keys(0..size)).await.unwrap(), expected);
        drop(coordinator);

        // Runs below 1024, bundles up to 1124, kept leaves after.
        let reopened = open_coordinator(dir.path()).unwrap();
        assert_eq!(
            reopened.state().await.unwrap(),
            SequenceState {
                integrated: 2 * UNIT + 100,
                sequenced: size
            }
        );
        assert_eq!(reopened.lookup(&keys(0..size)).await.unwrap(), expected);
        assert_eq!(
            reopened.lookup(&keys(size..size + 1)).await.unwrap(),
            [None]
        );
        assert_eq!(
            reopened.read_sequenced(size - 1, size).await.unwrap(),
            [leaves[usize::try_from(size - 1).unwrap()].data.clone()]
        );
        // Everything integrated and synced: the journal is empty.
        write_log(dir.path(), size);
        reopened
            .mark_integrated(2 * UNIT + 100, size)
            .await
            .unwrap();
        reopened.sync().await.unwrap();
        assert!(file_names(&dir.path().join("journal")).is_empty());
    }

    #[tokio::test]
    async fn a_failed_sync_is_not_retried_and_keeps_every_leaf() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = open_coordinator(dir.path()).unwrap();
        let leaves: Vec<SequenceLeaf> = (0..300).map(leaf).collect();
        coordinator.sequence(&leaves).await.unwrap();
        write_log(dir.path(), 300);
        coordinator.mark_integrated(0, 300).await.unwrap();
        // A full tile recorded as written but missing: its fsync fails.
        coordinator
            .tracker
            .record("tile/0/000", std::collections::BTreeSet::new());
        assert!(coordinator.health().is_ok());
        assert!(coordinator.sync().await.is_err());
        assert!(coordinator.health().is_err());
        // The file is there now, so a retried fsync would succeed; the coordinator does not retry.
        std::fs::create_dir_all(dir.path().join("tile/0")).unwrap();
        std::fs::write(dir.path().join("tile/0/000"), [0u8; 8192]).unwrap();
        assert!(coordinator.sync().await.is_err());
        assert!(coordinator.health().is_err());
        assert_eq!(file_names(&dir.path().join("journal")).len(), 1);
        drop(coordinator);

        // A restart keeps every leaf beyond the last persisted size, and is healthy.
        let reopened = open_coordinator(dir.path()).unwrap();
        assert!(reopened.health().is_ok());
        assert_eq!(
            reopened.state().await.unwrap(),
            SequenceState {
                integrated: 0,
                sequenced: 300
            }
        );
        assert_eq!(
            reopened.read_sequenced(0, 300).await.unwrap(),
            leaves.iter().map(|l| l.data.clone()).collect::<Vec<_>>()
        );
    }
}
