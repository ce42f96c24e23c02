//! POSIX directory backend: the layout rekor-tiles and Tessera use, so any static file server can serve it.
//!
//! ```text
//! <root>/checkpoint                 the signed checkpoint (replaced atomically)
//! <root>/tile/<L>/<N>[.p/<W>]       hash tiles (written once; partials deleted once full)
//! <root>/tile/entries/<N>[.p/<W>]   entry bundles (written once; partials deleted once full)
//! <root>/.rekor/lock                held exclusively while a process owns the log
//! <root>/.rekor/journal/            sequenced leaves until their tiles are durable
//! <root>/.rekor/state               the persisted integrated size (replaced atomically)
//! <root>/.rekor/dedup/              the dedup index's runs (derived from the bundles)
//! <root>/.rekor/search/             the search index's runs (derived, with --search-index)
//! <root>/.rekor/db/                 only in logs begun by an earlier version (fjall)
//! <root>/.rekor/tmp/                staging for atomic writes
//! ```
//!
//! Every write goes to a temp file, then is moved into place create-only (`renameat2` with
//! `RENAME_NOREPLACE`, or link and unlink) or renamed over the checkpoint, so readers never see a
//! partly written object. The checkpoint is fsynced (file and directory) before the call returns.
//! Tiles and entry bundles are fsynced in the background instead (see the `sync` module): the
//! leaves they are made from stay in the fsynced sequencing journal until they are, and recovery
//! rewrites any object a power loss damaged.

mod coordinator;
mod dedup;
mod error;
mod journal;
mod legacy;
mod runs;
mod search;
mod sync;
#[cfg(test)]
mod test_support;

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use tracing::warn;

pub use coordinator::PosixCoordinator;
use error::PosixError;
pub use search::PosixSearchIndex;
pub use sync::DEFAULT_SYNC_INTERVAL;
use sync::{SyncTracker, sync_dir};

use crate::{
    BundleRead, CHECKPOINT_PATH, Error, Object, ObjectVersion, ReadCache, Result, Storage,
    Versioned, check_object_path, check_partial_path, read_cache::Bounded,
};

const BACKEND: &str = "posix";

/// The hidden directory that holds the log's private state. Never served: [`check_object_path`]
/// refuses every component that starts with a dot.
pub const PRIVATE_DIR: &str = ".rekor";

/// A POSIX log directory, opened and locked by this process.
#[derive(Debug, Clone)]
pub struct PosixBackend {
    /// The public objects.
    pub storage: Arc<PosixStorage>,
    /// Sequencing and dedup.
    pub coordinator: Arc<PosixCoordinator>,
}

impl PosixBackend {
    /// Opens (creating if needed) the log directory `root` and takes its exclusive lock, with
    /// the default sync interval.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if another process holds the directory; I/O and database errors otherwise.
    pub fn open(root: &Path) -> Result<PosixBackend> {
        PosixBackend::open_with_sync_interval(root, DEFAULT_SYNC_INTERVAL)
    }

    /// Like [`PosixBackend::open`], fsyncing written tiles and bundles in the background at most
    /// every `sync_interval` (the leaves they are made from are kept until then).
    ///
    /// # Errors
    ///
    /// As for [`PosixBackend::open`].
    pub fn open_with_sync_interval(
        root: &Path,
        sync_interval: std::time::Duration,
    ) -> Result<PosixBackend> {
        Ok(PosixBackend::open_dir(root, sync_interval)?)
    }

    /// [`PosixBackend::open_with_sync_interval`], before its errors are named by meaning.
    fn open_dir(
        root: &Path,
        sync_interval: std::time::Duration,
    ) -> Result<PosixBackend, PosixError> {
        fs::create_dir_all(root)?;
        let private = root.join(PRIVATE_DIR);
        create_private_dir(&private)?;
        let lock = Arc::new(lock_exclusively(&private.join("lock"))?);
        let tmp_dir = private.join("tmp");
        // Leftover staging files are from writes that never completed; nothing references them.
        if tmp_dir.exists() {
            fs::remove_dir_all(&tmp_dir)?;
        }
        create_private_dir(&tmp_dir)?;
        let (coordinator, tracker) = PosixCoordinator::open(
            &private,
            root,
            Arc::clone(&lock),
            sync_interval,
            dedup::RUN_UNIT,
        )?;
        Ok(PosixBackend {
            storage: Arc::new(PosixStorage {
                root: root.to_path_buf(),
                tmp_dir,
                next_tmp: AtomicU64::new(0),
                checkpoint_version: tokio::sync::Mutex::new(None),
                tracker,
                read_cache: ReadCache::default(),
                bundle_bounds: Arc::new(Bounded::new(BUNDLE_BOUNDS_BYTES)),
                _lock: lock,
            }),
            coordinator: Arc::new(coordinator),
        })
    }

    /// Opens (creating if needed) the directory's search index, in `.rekor/search/`. Call it
    /// once per process: the index is held open until the last handle is dropped.
    ///
    /// # Errors
    ///
    /// I/O and database errors.
    pub fn open_search_index(&self) -> Result<PosixSearchIndex> {
        Ok(PosixSearchIndex::open(
            &self.storage.root.join(PRIVATE_DIR),
        )?)
    }

    /// Makes every tile and bundle written so far durable and releases their leaves from the
    /// sequencing journal, without waiting for the background sync. Call it after the log is
    /// closed, so the next start has nothing to integrate again.
    ///
    /// # Errors
    ///
    /// I/O and database errors; the objects stay pending and the leaves kept.
    pub async fn sync(&self) -> Result<()> {
        self.coordinator.sync().await
    }
}

/// Opens (creating if needed) the lock file at `path` and locks it exclusively, for as long as
/// the returned file is open: one process at a time in a directory.
///
/// # Errors
///
/// [`PosixError::Locked`] if another process holds it; I/O errors.
fn lock_exclusively(path: &Path) -> Result<fs::File, PosixError> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(fs::TryLockError::WouldBlock) => Err(PosixError::Locked {
            path: path.display().to_string(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

fn create_private_dir(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The public objects of a POSIX log directory.
#[derive(Debug)]
pub struct PosixStorage {
    root: PathBuf,
    tmp_dir: PathBuf,
    next_tmp: AtomicU64,
    /// Serialises checkpoint writes and remembers the version last written (`None`: not known yet).
    /// This process holds the directory's lock, so no one else changes the file behind it.
    checkpoint_version: tokio::sync::Mutex<Option<Option<ObjectVersion>>>,
    /// Objects written but not yet fsynced.
    tracker: Arc<SyncTracker>,
    /// Decoded tiles and entries kept for readers that prove entries (searches).
    read_cache: ReadCache,
    /// Where the entries of bundle files read before start and end: see [`BundleBounds`].
    bundle_bounds: Arc<Bounded<String, BundleBounds>>,
    _lock: Arc<File>,
}

impl PosixStorage {
    /// The storage root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads `reads` ([`Storage::read_bundle_entries`]) on one blocking thread, started now.
    fn bundle_entries_task(
        &self,
        reads: Vec<BundleRead>,
    ) -> impl std::future::Future<Output = Vec<Result<Vec<Bytes>>>> + use<> {
        let root = self.root.clone();
        let count = reads.len();
        let bounds = Arc::clone(&self.bundle_bounds);
        let task = tokio::task::spawn_blocking(move || {
            reads
                .iter()
                .map(|read| {
                    check_object_path(&read.path)?;
                    let known = bounds.get(&read.path);
                    let file = root.join(&read.path);
                    match read_bundle_file(&file, &read.positions, known.as_deref()) {
                        Ok((entries, Some(learned))) => {
                            let size = learned.len() * 4;
                            bounds.insert(read.path.clone(), Arc::new(learned), size, true);
                            Ok(entries)
                        }
                        Ok((entries, None)) => Ok(entries),
                        Err(e) => {
                            // The file did not match what was learned of it (it cannot change
                            // under its path, but a damaged one may be rewritten at a start):
                            // forget it, and read it afresh next time.
                            bounds.remove(&read.path);
                            read_answer(&read.path, Err(e))
                        }
                    }
                })
                .collect::<Vec<_>>()
        });
        async move { answers_or_failed(task.await, count) }
    }

    fn tmp_path(&self) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.tmp_dir.join(format!("{}-{n}", std::process::id()))
    }
}

/// Writes `data` to a new file at `path`.
fn write_new(path: &Path, data: &[u8]) -> io::Result<File> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(data)?;
    Ok(file)
}

/// Writes `data` to a new file at `path` and fsyncs it.
fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    write_new(path, data)?.sync_all()
}

/// Creates the missing directories between `root` and `dir`, adding to `to_sync` every directory
/// whose entries changed (the parent of each directory created, and `dir` itself).
fn ensure_dir(root: &Path, dir: &Path, to_sync: &mut BTreeSet<PathBuf>) -> io::Result<()> {
    if !dir.is_dir() {
        let mut missing = Vec::new();
        let mut current = dir;
        while !current.is_dir() && current != root {
            missing.push(current.to_path_buf());
            match current.parent() {
                Some(parent) => current = parent,
                None => break,
            }
        }
        for created in missing.iter().rev() {
            match fs::create_dir(created) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            if let Some(parent) = created.parent() {
                to_sync.insert(parent.to_path_buf());
            }
        }
    }
    to_sync.insert(dir.to_path_buf());
    Ok(())
}

/// Writes one immutable object create-only, without fsync; returns the directories whose entries
/// may have changed. Outside repair, an identical object already there (another writer's, or
/// this one's retried) is left as it is, but it is synced like a new one.
///
/// With `repair`, an existing object is replaced (atomically, by rename) instead of refused or
/// kept: after an unclean stop, objects beyond the last sync may be damaged, and recovery
/// rewrites them from the kept leaves.
fn write_object(
    root: &Path,
    tmp: &Path,
    object: &Object,
    repair: bool,
) -> Result<BTreeSet<PathBuf>> {
    let target = root.join(&object.path);
    let mut to_sync = BTreeSet::new();
    let parent = target.parent().unwrap_or(root);
    ensure_dir(root, parent, &mut to_sync).map_err(PosixError::Io)?;
    // Ok(true): identical; Ok(false): differs and may be replaced.
    let existing_matches = |target: &Path| -> Result<bool> {
        let existing = fs::read(target).map_err(PosixError::Io)?;
        if existing == object.data.as_ref() {
            Ok(true)
        } else if repair {
            Ok(false)
        } else {
            Err(Error::AlreadyExists {
                path: object.path.clone(),
            })
        }
    };
    if !repair && target.exists() && existing_matches(&target)? {
        return Ok(to_sync);
    }
    write_new(tmp, &object.data).map_err(PosixError::Io)?;
    if !place_new(tmp, &target).map_err(PosixError::Io)? {
        if !existing_matches(&target)? {
            warn!(path = %object.path, "replacing an object left damaged by an unclean stop");
        } else if !repair {
            fs::remove_file(tmp).map_err(PosixError::Io)?;
            return Ok(to_sync);
        }
        // While repairing, an identical object is replaced too: after a failed fsync the
        // kernel may keep its pages in memory, marked clean but never written, so what a read
        // returns is not what is on disk, and only a new file puts it there.
        fs::rename(tmp, &target).map_err(PosixError::Io)?;
    }
    Ok(to_sync)
}

/// Moves the file `tmp` to `target` if nothing is there yet, atomically; `Ok(false)` (and `tmp`
/// left in place) if `target` exists.
fn place_new(tmp: &Path, target: &Path) -> io::Result<bool> {
    // A rename that refuses to replace is one call and leaves no inode to delete: deleting
    // inodes at this rate makes ext4's inode allocation scan past the recently deleted ones.
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, tmp, CWD, target, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::EXIST) => return Ok(false),
            // The file system does not support the flag: fall back to link and unlink.
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // A hard link creates the name only if it does not exist: create-only, atomically.
    match fs::hard_link(tmp, target) {
        Ok(()) => fs::remove_file(tmp).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// A cheap, stable content hash (FNV-1a, 64-bit) used as the checkpoint's version. Only this
/// process writes the checkpoint (it holds the lock), so the version only has to tell apart
/// contents this process has seen.
fn content_version(data: &[u8]) -> ObjectVersion {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in data {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    ObjectVersion(format!("{hash:016x}"))
}

/// The answers of a blocking task that read `count` objects, or, if it panicked or was
/// cancelled, a failure for each, as it would have failed each read.
fn answers_or_failed<T>(
    read: std::result::Result<Vec<Result<T>>, tokio::task::JoinError>,
    count: usize,
) -> Vec<Result<T>> {
    match read {
        Ok(answers) => answers,
        Err(e) => {
            let message = e.to_string();
            (0..count)
                .map(|_| {
                    Err(Error::Other {
                        backend: BACKEND,
                        source: message.clone().into(),
                    })
                })
                .collect()
        }
    }
}

/// Bundle reads one blocking thread does before they are split between two.
const SPLIT_BUNDLE_READS: usize = 16;

/// How much of a bundle file is read at a time when scanning it: a few entries' worth, so a
/// file is read little past its last wanted entry.
const BUNDLE_READ_CHUNK: usize = 16 * 1024;

/// The memory for [`BundleBounds`]: about 16,000 bundles' (4 million entries) at most 1 KiB each.
const BUNDLE_BOUNDS_BYTES: usize = 16 << 20;

/// What a scan of a bundle file learned: `bounds[i]` is where entry `i` starts (its length
/// prefix) and `bounds[i + 1]` where it ends, for the entries scanned so far. A bundle file
/// never changes under its path (create-only), so a later read of an entry already passed is
/// one positioned read of its own bytes instead of a scan through the entries before it.
type BundleBounds = Arc<Vec<u32>>;

/// The entries at `positions` (ascending) of the entry bundle file at `path`, each in a
/// buffer of its own, reading the file no further than the last of them; fewer if the file
/// ends first (see [`Storage::read_bundle_entries`]). Entries within `known` bounds are read
/// directly; beyond them the file is scanned from the last known bound, and the bounds learned
/// are returned (`None` if none were).
///
/// # Errors
///
/// A failed read, or [`io::ErrorKind::InvalidData`] if the file does not match `known`.
fn read_bundle_file(
    path: &Path,
    positions: &[usize],
    known: Option<&Vec<u32>>,
) -> io::Result<(Vec<Bytes>, Option<Vec<u32>>)> {
    use std::io::Seek as _;
    use std::os::unix::fs::FileExt as _;

    let file = File::open(path)?;
    let mut out = Vec::with_capacity(positions.len());
    let mut bounds: Vec<u32> = known.map_or_else(|| vec![0], |known| known.clone());
    let learned_from = bounds.len();
    let mut reader: Option<io::BufReader<&File>> = None;
    for &wanted in positions {
        // A known entry: one read of its prefix and bytes, the prefix checked against the bounds.
        if let (Some(&start), Some(&end)) = (bounds.get(wanted), bounds.get(wanted + 1)) {
            let len = end.checked_sub(start).and_then(|n| n.checked_sub(2));
            let Some(len) = len.and_then(|n| u16::try_from(n).ok()) else {
                return Err(io::Error::from(io::ErrorKind::InvalidData));
            };
            let mut entry = vec![0u8; usize::from(len) + 2];
            // A file shorter than its bounds does not match them either.
            file.read_exact_at(&mut entry, u64::from(start))
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
            if entry.get(..2) != Some(&len.to_be_bytes()[..]) {
                return Err(io::Error::from(io::ErrorKind::InvalidData));
            }
            out.push(Bytes::from(entry).slice(2..));
            continue;
        }
        // Beyond what is known: scan on from the last known bound.
        let scan = match &mut reader {
            Some(scan) => scan,
            None => {
                let mut scan = io::BufReader::with_capacity(BUNDLE_READ_CHUNK, &file);
                let from = bounds.last().copied().unwrap_or(0);
                scan.seek(io::SeekFrom::Start(u64::from(from)))?;
                reader.insert(scan)
            }
        };
        // Positions not ascending are skipped, so the answer comes up short.
        while bounds.len() <= wanted + 1 {
            let position = bounds.len() - 1;
            let start = bounds.last().copied().unwrap_or(0);
            let mut prefix = [0u8; 2];
            if !read_whole(scan, &mut prefix)? {
                // The file ends early: the last bound passed may lie beyond it, so keep none.
                return Ok((out, None));
            }
            let len = u16::from_be_bytes(prefix);
            if position == wanted {
                let mut entry = vec![0u8; usize::from(len)];
                if !read_whole(scan, &mut entry)? {
                    // The file ends early: the last bound passed may lie beyond it, so keep none.
                    return Ok((out, None));
                }
                out.push(Bytes::from(entry));
            } else {
                // Past the end is allowed: the next read then finds the end.
                scan.seek_relative(i64::from(len))?;
            }
            // A bundle holds at most 256 entries of at most 65,537 bytes each: far below 4 GiB.
            let Some(end) = start.checked_add(2 + u32::from(len)) else {
                return Err(io::Error::from(io::ErrorKind::InvalidData));
            };
            bounds.push(end);
        }
    }
    Ok((out, learned(bounds, learned_from)))
}

/// `bounds` if it learned more than the first `known` bounds.
fn learned(bounds: Vec<u32>, known: usize) -> Option<Vec<u32>> {
    (bounds.len() > known).then_some(bounds)
}

/// Fills `buf`; `false` if the reader ends first.
fn read_whole(reader: &mut impl io::Read, buf: &mut [u8]) -> io::Result<bool> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// [`Storage::read`]'s answer for a file read of `path`.
fn read_answer<T>(path: &str, read: io::Result<T>) -> Result<T> {
    match read {
        Ok(data) => Ok(data),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound { path: path.into() }),
        // A path through a file (e.g. tile/0/000/001 when tile/0/000 is a tile) is simply absent.
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            Err(Error::NotFound { path: path.into() })
        }
        Err(e) => Err(PosixError::Io(e).into()),
    }
}

#[async_trait]
impl Storage for PosixStorage {
    async fn write_objects(&self, objects: Vec<Object>) -> Result<()> {
        for object in &objects {
            check_object_path(&object.path)?;
            if object.path == CHECKPOINT_PATH {
                return Err(Error::InvalidPath {
                    path: object.path.clone(),
                    reason: "the checkpoint is written with write_checkpoint",
                });
            }
        }
        // No fsyncs here (see `sync`), so one blocking task writes them all: a batch's few
        // objects cost less than handing each to its own thread.
        let root = self.root.clone();
        let tmps: Vec<PathBuf> = objects.iter().map(|_| self.tmp_path()).collect();
        let tracker = Arc::clone(&self.tracker);
        tokio::task::spawn_blocking(move || {
            let repair = tracker.repairing();
            for (object, tmp) in objects.iter().zip(&tmps) {
                let dirs = write_object(&root, tmp, object, repair)?;
                tracker.record(&object.path, dirs);
            }
            Ok(())
        })
        .await
        .map_err(PosixError::Task)?
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        check_object_path(path)?;
        read_answer(path, tokio::fs::read(self.root.join(path)).await).map(Bytes::from)
    }

    async fn read_many(&self, paths: Vec<String>) -> Vec<Result<Bytes>> {
        // One hand-off for all of them: each file read is short (the page cache, mostly), and
        // a blocking-pool round trip per read cost more than the read.
        let root = self.root.clone();
        let count = paths.len();
        let read = tokio::task::spawn_blocking(move || {
            paths
                .iter()
                .map(|path| {
                    check_object_path(path)?;
                    read_answer(path, std::fs::read(root.join(path))).map(Bytes::from)
                })
                .collect::<Vec<_>>()
        })
        .await;
        answers_or_failed(read, count)
    }

    async fn read_bundle_entries(&self, mut reads: Vec<BundleRead>) -> Vec<Result<Vec<Bytes>>> {
        // Few hand-offs, and each file read only up to its last wanted entry: a search page
        // wants one entry from each of about 100 bundles, and reading whole bundles (about
        // 150 KB each) was most of its cost. Past a few files the reads are split between two
        // blocking threads, so a page not read before takes both cores of a small machine.
        let second = if reads.len() > SPLIT_BUNDLE_READS {
            let half = reads.split_off(reads.len() / 2);
            Some(self.bundle_entries_task(half))
        } else {
            None
        };
        let mut answers = self.bundle_entries_task(reads).await;
        if let Some(second) = second {
            answers.extend(second.await);
        }
        answers
    }

    fn read_cache(&self) -> Option<&ReadCache> {
        Some(&self.read_cache)
    }

    async fn read_checkpoint(&self) -> Result<Option<Versioned>> {
        match self.read(CHECKPOINT_PATH).await {
            Ok(data) => Ok(Some(Versioned {
                version: content_version(&data),
                data,
            })),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn write_checkpoint(
        &self,
        data: Bytes,
        expected: Option<&ObjectVersion>,
    ) -> Result<ObjectVersion> {
        let mut known = self.checkpoint_version.lock().await;
        let current = match known.as_ref() {
            Some(version) => version.clone(),
            None => self.read_checkpoint().await?.map(|v| v.version),
        };
        if current.as_ref() != expected {
            return Err(Error::Precondition {
                what: "checkpoint",
                expected: expected.map_or_else(|| "none".into(), ToString::to_string),
                found: current.map_or_else(|| "none".into(), |v| v.0),
            });
        }
        let version = content_version(&data);
        let root = self.root.clone();
        let tmp = self.tmp_path();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            write_synced(&tmp, &data)?;
            fs::rename(&tmp, root.join(CHECKPOINT_PATH))?;
            sync_dir(&root)
        })
        .await
        .map_err(PosixError::Task)?
        .map_err(PosixError::Io)?;
        *known = Some(Some(version.clone()));
        Ok(version)
    }

    async fn delete_partials(&self, paths: Vec<String>) -> Result<()> {
        for path in &paths {
            check_partial_path(path)?;
        }
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            for path in paths {
                match fs::remove_file(root.join(path)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
        .await
        .map_err(PosixError::Task)?
        .map_err(PosixError::Io)?;
        Ok(())
    }

    /// The background sync deletes each `<N>.p/` directory once the full object is durable and
    /// the persisted integrated size has passed it (see [`sync`]).
    fn deletes_partials_itself(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Coordinator;

    #[test]
    fn bundle_files_are_read_by_their_learned_bounds_and_a_mismatch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle");
        // Entries "ab", "", "xyz", "!".
        fs::write(
            &path,
            [0, 2, b'a', b'b', 0, 0, 0, 3, b'x', b'y', b'z', 0, 1, b'!'],
        )
        .unwrap();
        let (first, learned) = read_bundle_file(&path, &[1], None).unwrap();
        assert_eq!(first, [Bytes::new()]);
        let learned = learned.unwrap();
        assert_eq!(learned, [0, 4, 6]);
        // Known entries are read directly, the others scanned from the last known bound.
        let (read, more) = read_bundle_file(&path, &[0, 1, 3], Some(&learned)).unwrap();
        assert_eq!(
            read,
            [
                Bytes::from_static(b"ab"),
                Bytes::new(),
                Bytes::from_static(b"!")
            ]
        );
        assert_eq!(more.unwrap(), [0, 4, 6, 11, 14]);
        // Nothing new learned: nothing returned to keep.
        let (_, none) = read_bundle_file(&path, &[0], Some(&learned)).unwrap();
        assert!(none.is_none());
        // Past the end: fewer entries, and no bounds (the last may lie beyond the file).
        let (short, none) = read_bundle_file(&path, &[3, 7], Some(&learned)).unwrap();
        assert_eq!(short, [Bytes::from_static(b"!")]);
        assert!(none.is_none());
        // Bounds the file does not match are refused, never used to cut wrong bytes.
        let wrong = vec![0, 3, 6];
        let err = read_bundle_file(&path, &[0], Some(&wrong)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let beyond = vec![0, 4, 6, 11, 40];
        let err = read_bundle_file(&path, &[3], Some(&beyond)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn posix_backend_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let backend = PosixBackend::open(dir.path()).unwrap();
        crate::conformance::storage_suite(backend.storage.as_ref()).await;
        crate::conformance::coordinator_suite(backend.coordinator.as_ref()).await;
        // The suite froze the log; the freeze is durable: a restart is still frozen.
        drop(backend);
        let again = PosixBackend::open(dir.path()).unwrap();
        assert_eq!(again.coordinator.frozen().await.unwrap(), Some(3));
        let late = crate::SequenceLeaf {
            dedup_key: [7; 32],
            data: bytes::Bytes::from_static(b"late"),
        };
        assert!(matches!(
            again.coordinator.sequence(&[late]).await,
            Err(crate::Error::Frozen { size: 3 })
        ));
        assert_eq!(again.coordinator.freeze().await.unwrap(), 3);
    }

    #[tokio::test]
    async fn an_identical_object_already_on_disk_is_still_synced() {
        // Left by a process that crashed before its background sync: the page cache may hold
        // it without its being on disk, so rewriting it must queue it for the next sync.
        let dir = tempfile::tempdir().unwrap();
        let backend = PosixBackend::open(dir.path()).unwrap();
        let path = "tile/0/000.p/1";
        fs::create_dir_all(dir.path().join("tile/0/000.p")).unwrap();
        fs::write(dir.path().join(path), [7u8; 32]).unwrap();
        backend
            .storage
            .write_objects(vec![Object::new(path, vec![7u8; 32])])
            .await
            .unwrap();
        assert_eq!(backend.storage.tracker.pending_objects(), vec![path]);
        backend.sync().await.unwrap();
        assert!(backend.storage.tracker.pending_objects().is_empty());
        // Different bytes are refused when the last stop was clean.
        assert!(matches!(
            backend
                .storage
                .write_objects(vec![Object::new(path, vec![8u8; 32])])
                .await,
            Err(Error::AlreadyExists { .. })
        ));
    }

    #[tokio::test]
    async fn after_an_unclean_stop_even_identical_objects_are_written_anew() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let backend = PosixBackend::open(dir.path()).unwrap();
        let data = Bytes::from_static(b"an entry");
        backend
            .coordinator
            .sequence(&[crate::SequenceLeaf {
                dedup_key: crate::dedup_key(&data),
                data,
            }])
            .await
            .unwrap();
        let path = "tile/0/000.p/1";
        backend
            .storage
            .write_objects(vec![Object::new(path, vec![7u8; 32])])
            .await
            .unwrap();
        let before = fs::metadata(dir.path().join(path)).unwrap().ino();
        // Stopped with a leaf sequenced but not integrated: the next start repairs.
        drop(backend);
        let backend = PosixBackend::open(dir.path()).unwrap();
        assert!(backend.storage.tracker.repairing());
        backend
            .storage
            .write_objects(vec![Object::new(path, vec![7u8; 32])])
            .await
            .unwrap();
        let after = fs::metadata(dir.path().join(path)).unwrap();
        assert_ne!(after.ino(), before, "the object was left as it was");
        assert_eq!(fs::read(dir.path().join(path)).unwrap(), [7u8; 32]);
        assert_eq!(backend.storage.tracker.pending_objects(), vec![path]);
    }

    #[tokio::test]
    async fn partials_a_start_would_resume_from_outlive_the_sync() {
        // The tree was integrated to 204 (its partials written), then to 300 (tile 0 full), and
        // a sync ran for 204 only: a start resumes at 204 from tile/0/000.p/204, so it must stay.
        let dir = tempfile::tempdir().unwrap();
        let backend =
            PosixBackend::open_with_sync_interval(dir.path(), std::time::Duration::from_secs(3600))
                .unwrap();
        let leaves: Vec<crate::SequenceLeaf> = (0..300u32)
            .map(|n| {
                let data = Bytes::from(n.to_string());
                crate::SequenceLeaf {
                    dedup_key: crate::dedup_key(&data),
                    data,
                }
            })
            .collect();
        backend.coordinator.sequence(&leaves).await.unwrap();
        // A tile and the bundle of the same entries (a start reads the bundles the dedup index
        // lacks).
        let write = |tile: &'static str, entries: std::ops::Range<usize>| {
            let bundle = rekor_tlog::encode_bundle(leaves[entries].iter().map(|l| &l.data[..]));
            backend.storage.write_objects(vec![
                Object::new(tile, vec![1u8; 32]),
                Object::new(tile.replace("tile/0/", "tile/entries/"), bundle.unwrap()),
            ])
        };
        write("tile/0/000.p/204", 0..204).await.unwrap();
        backend.coordinator.mark_integrated(0, 204).await.unwrap();
        write("tile/0/000", 0..256).await.unwrap();
        write("tile/0/001.p/44", 256..300).await.unwrap();
        backend.sync().await.unwrap();
        assert!(dir.path().join("tile/0/000.p/204").exists());

        backend.coordinator.mark_integrated(204, 300).await.unwrap();
        backend.sync().await.unwrap();
        assert!(!dir.path().join("tile/0/000.p").exists());
        assert!(!dir.path().join("tile/entries/000.p").exists());
        assert!(dir.path().join("tile/0/001.p/44").exists());
        drop(backend);
        let backend = PosixBackend::open(dir.path()).unwrap();
        assert_eq!(backend.coordinator.state().await.unwrap().integrated, 300);
        assert_eq!(
            backend
                .coordinator
                .lookup(&[leaves[10].dedup_key, leaves[299].dedup_key])
                .await
                .unwrap(),
            [Some(10), Some(299)]
        );
    }

    #[tokio::test]
    async fn a_second_open_is_refused_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let first = PosixBackend::open(dir.path()).unwrap();
        assert!(matches!(
            PosixBackend::open(dir.path()),
            Err(Error::Locked { .. })
        ));
        drop(first);
        PosixBackend::open(dir.path()).unwrap();
    }

    #[tokio::test]
    async fn state_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let backend = PosixBackend::open(dir.path()).unwrap();
            let leaf = crate::SequenceLeaf {
                dedup_key: crate::dedup_key(b"leaf"),
                data: Bytes::from_static(b"leaf"),
            };
            backend.coordinator.sequence(&[leaf]).await.unwrap();
            backend
                .storage
                .write_objects(vec![Object::new("tile/0/000.p/1", vec![1u8; 32])])
                .await
                .unwrap();
            backend
                .storage
                .write_checkpoint(Bytes::from_static(b"cp\n"), None)
                .await
                .unwrap();
        }
        let backend = PosixBackend::open(dir.path()).unwrap();
        assert_eq!(backend.coordinator.state().await.unwrap().sequenced, 1);
        assert_eq!(
            backend
                .coordinator
                .lookup(&[crate::dedup_key(b"leaf")])
                .await
                .unwrap(),
            vec![Some(0)]
        );
        assert_eq!(
            backend.coordinator.read_sequenced(0, 1).await.unwrap(),
            vec![Bytes::from_static(b"leaf")]
        );
        assert_eq!(
            backend.storage.read("tile/0/000.p/1").await.unwrap().len(),
            32
        );
        let checkpoint = backend.storage.read_checkpoint().await.unwrap().unwrap();
        assert_eq!(checkpoint.data, Bytes::from_static(b"cp\n"));
        // The private directory is never served.
        assert!(matches!(
            backend.storage.read(".rekor/lock").await,
            Err(Error::InvalidPath { .. })
        ));
    }
}
