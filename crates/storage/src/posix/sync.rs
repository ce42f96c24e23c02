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
//! After a sync, the partial tiles and bundles of every tile that is now full and durable are
//! deleted: C2SP tlog-tiles lets a log delete a partial tile once the full tile is available
//! (clients fall back to the full tile), and each batch writes one, so they would otherwise
//! outweigh the log itself.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
    interval: Duration,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay valid if a holder panicked: they are lists of paths and an instant.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The full object a partial object path belongs to: `tile/0/000.p/7` → `tile/0/000`.
fn full_of_partial(path: &str) -> Option<&str> {
    let (full, width) = path.rsplit_once(".p/")?;
    (!width.contains('/')).then_some(full)
}

impl SyncTracker {
    pub(super) fn new(root: PathBuf, repairing: bool, interval: Duration) -> Self {
        SyncTracker {
            root,
            pending: Mutex::default(),
            repairing: AtomicBool::new(repairing),
            running: Mutex::new(Instant::now()),
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

    /// Makes every object written so far durable, then deletes the partial objects of the tiles
    /// that are now full and durable, then runs `release` (the coordinator's commit). Blocking;
    /// waits for a sync already running. On error the objects stay pending for the next attempt
    /// and `release` is not run.
    pub(super) fn sync_then<T>(&self, release: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
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
        self.collect_partials(&pending);
        let released = release()?;
        self.repairing.store(false, Ordering::Relaxed);
        Ok(released)
    }

    fn make_durable(&self, pending: &Pending) -> io::Result<()> {
        let full: BTreeSet<&str> = pending
            .objects
            .iter()
            .map(String::as_str)
            .filter(|path| full_of_partial(path).is_none())
            .collect();
        let mut synced = BTreeSet::new();
        for path in &pending.objects {
            // A partial whose full tile is in this sync is about to be deleted.
            if full_of_partial(path).is_some_and(|of| full.contains(of)) {
                continue;
            }
            if synced.insert(path.as_str()) {
                File::open(self.root.join(path))?.sync_all()?;
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

    /// Deletes `<full>.p/` for every full object in `pending`. A deletion lost in a crash only
    /// leaves a partial object behind, which is harmless; a failed one is logged and left.
    fn collect_partials(&self, pending: &Pending) {
        for path in &pending.objects {
            if full_of_partial(path).is_some() {
                continue;
            }
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
    fn partial_paths_name_their_full_object() {
        assert_eq!(full_of_partial("tile/0/000.p/7"), Some("tile/0/000"));
        assert_eq!(
            full_of_partial("tile/entries/x001/234.p/255"),
            Some("tile/entries/x001/234")
        );
        assert_eq!(full_of_partial("tile/0/000"), None);
        assert_eq!(full_of_partial("tile/1/000.p/3/extra"), None);
    }

    #[test]
    fn a_sync_deletes_the_partials_of_full_tiles_only() {
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
        let released = tracker.sync_then(|| Ok(42)).unwrap();
        assert_eq!(released, 42);
        assert!(root.join("tile/0/000").exists());
        assert!(!root.join("tile/0/000.p").exists());
        assert!(root.join("tile/0/001.p/5").exists());
        assert!(root.join("tile/1/000.p/1").exists());
        assert!(lock(&tracker.pending).objects.is_empty());
    }

    #[test]
    fn a_failed_sync_keeps_the_objects_pending_and_does_not_release() {
        let dir = tempfile::tempdir().unwrap();
        let tracker = SyncTracker::new(dir.path().to_path_buf(), true, Duration::ZERO);
        // Recorded but never written: the fsync fails with NotFound.
        tracker.record("tile/0/000.p/1", BTreeSet::new());
        let mut released = false;
        let result = tracker.sync_then(|| {
            released = true;
            Ok(())
        });
        assert!(result.is_err());
        assert!(!released);
        assert!(tracker.repairing());
        assert_eq!(lock(&tracker.pending).objects, vec!["tile/0/000.p/1"]);
    }
}
