//! Deferred durability for tiles and entry bundles, and collection of superseded partial objects.
//!
//! Tiles and bundles are a pure function of the sequenced leaves, and the coordinator keeps those
//! leaves (fsynced at sequencing) until [`Coordinator::mark_integrated`](crate::Coordinator)
//! releases them. So an object need not be fsynced before the checkpoint that names it: after a
//! power loss, recovery integrates the kept leaves again and rewrites any object that came back
//! missing or damaged. What must hold is that leaves are released only once the objects made from
//! them are durable. This module keeps the list of objects written since the last sync, fsyncs them
//! in the background about every [`DEFAULT_SYNC_INTERVAL`] (or as configured), and only then lets
//! the coordinator release.
//!
//! A batch then costs one fsync at sequencing and two for the checkpoint (file and directory)
//! instead of one per object and directory as well.
//!
//! After a sync, the partial tiles and bundles of every full tile that is durable and lies wholly
//! below the persisted integrated size are deleted: C2SP tlog-tiles lets a log delete a partial
//! tile once the full tile is available (clients fall back to the full tile), and each batch
//! writes one, so they would otherwise outweigh the log itself. (A start resumes the tree at the
//! persisted size from the partial objects at that size, so those must outlive it.)

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rekor_tlog::{TileId, TilePath, TileWidth, TreeSize, tile_width_at};
use tracing::warn;

/// How often written objects are fsynced in the background (and their leaves released), by default.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(500);

/// Objects written since the last sync.
#[derive(Debug, Default)]
struct Pending {
    /// Object paths relative to the root, in write order (a path may repeat after a repair).
    objects: Vec<String>,
    /// Directories whose entries changed (new objects or new subdirectories).
    dirs: BTreeSet<PathBuf>,
}

/// Shared by [`PosixStorage`](super::PosixStorage), which records what it writes, and
/// [`PosixCoordinator`](super::PosixCoordinator), which syncs before releasing leaves.
#[derive(Debug)]
pub(super) struct SyncTracker {
    root: PathBuf,
    pending: Mutex<Pending>,
    /// Objects beyond the last sync may be damaged (the last stop was not clean): an existing
    /// object whose bytes differ is replaced instead of refused, until the next sync.
    repairing: AtomicBool,
    /// One sync at a time; holds when the last one started (or when the tracker was made).
    running: Mutex<Instant>,
    /// Durable full objects (and their tiles) whose partials wait for the persisted size to
    /// pass their end.
    full: Mutex<Vec<(TileId, String)>>,
    interval: Duration,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay valid if a holder panicked: they are lists of paths and an instant.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The hash tile a tile or bundle path names (a bundle by the level-0 tile of its entries), or
/// `None` for any other path.
fn tile_of(path: &str) -> Option<TileId> {
    match TilePath::parse(path).ok()? {
        TilePath::Hash(tile) => Some(tile),
        TilePath::Entries(bundle) => Some(bundle.hash_tile()),
    }
}

/// Whether `tile` is full in a tree of `size` leaves: every leaf it covers lies below `size`.
fn full_below(tile: &TileId, size: u64) -> bool {
    tile_width_at(tile.level, tile.index, TreeSize::new(size)).is_some_and(TileWidth::is_full)
}

impl SyncTracker {
    pub(super) fn new(root: PathBuf, repairing: bool, interval: Duration) -> Self {
        SyncTracker {
            root,
            pending: Mutex::default(),
            repairing: AtomicBool::new(repairing),
            running: Mutex::new(Instant::now()),
            full: Mutex::default(),
            interval,
        }
    }

    /// The objects recorded since the last sync.
    #[cfg(test)]
    pub(super) fn pending_objects(&self) -> Vec<String> {
        lock(&self.pending).objects.clone()
    }

    pub(super) fn repairing(&self) -> bool {
        self.repairing.load(Ordering::Relaxed)
    }

    /// Records an object written (not yet durable) and the directories whose entries it changed.
    pub(super) fn record(&self, path: &str, dirs: BTreeSet<PathBuf>) {
        let mut pending = lock(&self.pending);
        pending.objects.push(path.to_owned());
        pending.dirs.extend(dirs);
    }

    /// Whether a background sync should start now: none is running and the last one started at
    /// least the sync interval ago.
    pub(super) fn due(&self) -> bool {
        match self.running.try_lock() {
            Ok(last) => last.elapsed() >= self.interval,
            Err(_) => false,
        }
    }

    /// Makes every object written so far durable, then runs `release` (the coordinator's durable
    /// commit, which returns the integrated size now persisted), then deletes the partial objects
    /// of full tiles that lie wholly below that size. Blocking; waits for a sync already running.
    /// On error the objects stay pending for the next attempt and `release` is not run.
    ///
    /// The order matters: a start resumes the tree at the persisted size and reads the partial
    /// objects at that size, so no partial is deleted before the persisted size has passed the
    /// end of its full tile.
    pub(super) fn sync_then(&self, release: impl FnOnce() -> io::Result<u64>) -> io::Result<u64> {
        let mut running = lock(&self.running);
        *running = Instant::now();
        let pending = std::mem::take(&mut *lock(&self.pending));
        if let Err(e) = self.make_durable(&pending) {
            let mut current = lock(&self.pending);
            let newer = std::mem::replace(&mut *current, pending);
            current.objects.extend(newer.objects);
            current.dirs.extend(newer.dirs);
            return Err(e);
        }
        {
            let mut full = lock(&self.full);
            for path in &pending.objects {
                if let Some(tile) = tile_of(path).filter(TileId::is_full) {
                    full.push((tile, path.clone()));
                }
            }
        }
        let released = release()?;
        self.repairing.store(false, Ordering::Relaxed);
        self.collect_partials(released);
        Ok(released)
    }

    fn make_durable(&self, pending: &Pending) -> io::Result<()> {
        let mut synced = BTreeSet::new();
        for path in &pending.objects {
            if !synced.insert(path.as_str()) {
                continue;
            }
            match File::open(self.root.join(path)) {
                Ok(file) => file.sync_all()?,
                // A partial collected since (its full tile lies below the persisted size).
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        && tile_of(path).is_some_and(|tile| !tile.is_full()) => {}
                Err(e) => return Err(e),
            }
        }
        for dir in &pending.dirs {
            match File::open(dir) {
                Ok(file) => file.sync_all()?,
                // The partials directory of a tile collected in an earlier sync.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Deletes `<full>.p/` for every durable full object that ends at or below `released`; the
    /// others wait for a later sync. A deletion lost in a crash only leaves a partial object
    /// behind, which is harmless; a failed one is logged and left.
    fn collect_partials(&self, released: u64) {
        let due: Vec<String> = {
            let mut full = lock(&self.full);
            let (due, waiting): (Vec<_>, Vec<_>) = full
                .drain(..)
                .partition(|(tile, _)| full_below(tile, released));
            *full = waiting;
            due.into_iter().map(|(_, path)| path).collect()
        };
        for path in due {
            let partials = self.root.join(format!("{path}.p"));
            match fs::remove_dir_all(&partials) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(path = %partials.display(), error = %e, "could not delete superseded partial objects");
                }
            }
        }
    }
}

/// Fsyncs a directory, so the entries created in it survive a power loss.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_and_bundle_paths_name_their_tile() {
        let partial = tile_of("tile/0/000.p/7").unwrap();
        assert!(!partial.is_full());
        assert_eq!((partial.level.get(), partial.index.get()), (0, 0));
        let bundle = tile_of("tile/entries/x001/234.p/255").unwrap();
        assert!(!bundle.is_full());
        assert_eq!((bundle.level.get(), bundle.index.get()), (0, 1_234));
        assert!(tile_of("tile/0/000").unwrap().is_full());
        assert_eq!(tile_of("tile/1/000.p/3/extra"), None);
        assert_eq!(tile_of("checkpoint"), None);
    }

    #[test]
    fn partials_are_deleted_once_the_persisted_size_passes_their_full_tile() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let tracker = SyncTracker::new(root.to_path_buf(), false, Duration::ZERO);
        for path in [
            "tile/0/000.p/1",
            "tile/0/000.p/2",
            "tile/0/000",
            "tile/0/001.p/5",
            "tile/1/000.p/1",
        ] {
            let file = root.join(path);
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(&file, b"x").unwrap();
            tracker.record(path, BTreeSet::from([file.parent().unwrap().to_path_buf()]));
        }
        // The full tile was written after the size being persisted: a start would resume at
        // 204 and read tile/0/000.p/204's siblings, so they stay.
        assert_eq!(tracker.sync_then(|| Ok(204)).unwrap(), 204);
        assert!(root.join("tile/0/000.p/2").exists());
        assert!(lock(&tracker.pending).objects.is_empty());
        // A later sync, with nothing new written, persists a size past the full tile's end.
        assert_eq!(tracker.sync_then(|| Ok(261)).unwrap(), 261);
        assert!(root.join("tile/0/000").exists());
        assert!(!root.join("tile/0/000.p").exists());
        assert!(root.join("tile/0/001.p/5").exists());
        assert!(root.join("tile/1/000.p/1").exists());
    }

    #[test]
    fn a_full_tile_is_below_a_size_from_its_last_leaf_on() {
        for (path, end) in [
            ("tile/0/000", 256),
            ("tile/entries/001", 512),
            ("tile/1/000", 65_536),
            ("tile/0/x001/234", 1_235 * 256),
        ] {
            let tile = tile_of(path).unwrap();
            assert!(full_below(&tile, end), "{path} at {end}");
            assert!(!full_below(&tile, end - 1), "{path} at {}", end - 1);
        }
    }

    #[test]
    fn a_failed_sync_keeps_the_objects_pending_and_does_not_release() {
        let dir = tempfile::tempdir().unwrap();
        let tracker = SyncTracker::new(dir.path().to_path_buf(), true, Duration::ZERO);
        // Recorded but never written: the fsync fails with NotFound.
        tracker.record("tile/0/000", BTreeSet::new());
        let mut released = false;
        let result = tracker.sync_then(|| {
            released = true;
            Ok(256)
        });
        assert!(result.is_err());
        assert!(!released);
        assert!(tracker.repairing());
        assert_eq!(lock(&tracker.pending).objects, vec!["tile/0/000"]);
    }
}
