//! POSIX directory backend: the layout rekor-tiles and Tessera use, so any static file server can serve it.
//!
//! ```text
//! <root>/checkpoint                 the signed checkpoint (replaced atomically)
//! <root>/tile/<L>/<N>[.p/<W>]       hash tiles (written once)
//! <root>/tile/entries/<N>[.p/<W>]   entry bundles (written once)
//! <root>/.rekor/lock                held exclusively while a process owns the log
//! <root>/.rekor/db/                 sequencing and dedup (fjall)
//! <root>/.rekor/tmp/                staging for atomic writes
//! ```
//!
//! Every write goes to a temp file that is fsynced, then linked into place (create-only) or renamed
//! over the checkpoint, and the directories it touched are fsynced before the call returns, so a
//! checkpoint is never durable before the tiles it names.

mod coordinator;

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

pub use coordinator::PosixCoordinator;

use crate::{
    BoxError, CHECKPOINT_PATH, Error, Object, ObjectVersion, Result, Storage, Versioned,
    check_object_path,
};

const BACKEND: &str = "posix";

/// The hidden directory that holds the log's private state. Never served: [`check_object_path`]
/// refuses every component that starts with a dot.
pub const PRIVATE_DIR: &str = ".rekor";

fn io_error(error: io::Error) -> Error {
    if error.kind() == io::ErrorKind::NotFound {
        return Error::NotFound {
            path: error.to_string(),
        };
    }
    // Disk full, I/O errors and permission problems are all conditions an operator can clear;
    // clients should retry later rather than treat their entry as bad.
    Error::Unavailable {
        backend: BACKEND,
        source: Box::new(error),
    }
}

fn join_error(error: tokio::task::JoinError) -> Error {
    Error::Other {
        backend: BACKEND,
        source: Box::new(error) as BoxError,
    }
}

/// A POSIX log directory, opened and locked by this process.
#[derive(Debug, Clone)]
pub struct PosixBackend {
    /// The public objects.
    pub storage: Arc<PosixStorage>,
    /// Sequencing and dedup.
    pub coordinator: Arc<PosixCoordinator>,
}

impl PosixBackend {
    /// Opens (creating if needed) the log directory `root` and takes its exclusive lock.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if another process holds the directory; I/O and database errors otherwise.
    pub fn open(root: &Path) -> Result<PosixBackend> {
        fs::create_dir_all(root).map_err(io_error)?;
        let private = root.join(PRIVATE_DIR);
        create_private_dir(&private)?;
        let lock_path = private.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: lock_path.display().to_string(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_error(e)),
        }
        let lock = Arc::new(lock);
        let tmp_dir = private.join("tmp");
        // Leftover staging files are from writes that never completed; nothing references them.
        if tmp_dir.exists() {
            fs::remove_dir_all(&tmp_dir).map_err(io_error)?;
        }
        create_private_dir(&tmp_dir)?;
        let coordinator = PosixCoordinator::open(&private.join("db"), Arc::clone(&lock))?;
        Ok(PosixBackend {
            storage: Arc::new(PosixStorage {
                root: root.to_path_buf(),
                tmp_dir,
                next_tmp: AtomicU64::new(0),
                checkpoint_version: tokio::sync::Mutex::new(None),
                _lock: lock,
            }),
            coordinator: Arc::new(coordinator),
        })
    }
}

fn create_private_dir(path: &Path) -> Result<()> {
    match fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error(e)),
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io_error)?;
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
    _lock: Arc<File>,
}

impl PosixStorage {
    /// The storage root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn tmp_path(&self) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.tmp_dir.join(format!("{}-{n}", std::process::id()))
    }
}

/// Writes `data` to a new file at `path` and fsyncs it.
fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
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

/// Writes one immutable object create-only; returns the directories to fsync.
fn write_object(root: &Path, tmp: &Path, object: &Object) -> Result<BTreeSet<PathBuf>> {
    let target = root.join(&object.path);
    let mut to_sync = BTreeSet::new();
    let parent = target.parent().unwrap_or(root);
    ensure_dir(root, parent, &mut to_sync).map_err(io_error)?;
    let existing_matches = |target: &Path| -> Result<bool> {
        let existing = fs::read(target).map_err(io_error)?;
        if existing == object.data.as_ref() {
            Ok(true)
        } else {
            Err(Error::AlreadyExists {
                path: object.path.clone(),
            })
        }
    };
    if target.exists() && existing_matches(&target)? {
        return Ok(to_sync);
    }
    write_synced(tmp, &object.data).map_err(io_error)?;
    // A hard link creates the name only if it does not exist: create-only, atomically.
    let linked = fs::hard_link(tmp, &target);
    let removed = fs::remove_file(tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            existing_matches(&target)?;
        }
        Err(e) => return Err(io_error(e)),
    }
    removed.map_err(io_error)?;
    Ok(to_sync)
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
        let mut tasks = Vec::with_capacity(objects.len());
        for object in objects {
            let root = self.root.clone();
            let tmp = self.tmp_path();
            tasks.push(tokio::task::spawn_blocking(move || {
                write_object(&root, &tmp, &object)
            }));
        }
        let mut to_sync = BTreeSet::new();
        let mut first_error = None;
        for task in tasks {
            match task.await.map_err(join_error).and_then(|r| r) {
                Ok(dirs) => to_sync.extend(dirs),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        tokio::task::spawn_blocking(move || {
            to_sync
                .iter()
                .try_for_each(|dir| sync_dir(dir))
                .map_err(io_error)
        })
        .await
        .map_err(join_error)?
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        check_object_path(path)?;
        match tokio::fs::read(self.root.join(path)).await {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::NotFound { path: path.into() })
            }
            // A path through a file (e.g. tile/0/000/001 when tile/0/000 is a tile) is simply absent.
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                Err(Error::NotFound { path: path.into() })
            }
            Err(e) => Err(io_error(e)),
        }
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
        .map_err(join_error)?
        .map_err(io_error)?;
        *known = Some(Some(version.clone()));
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Coordinator;

    #[tokio::test]
    async fn posix_backend_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let backend = PosixBackend::open(dir.path()).unwrap();
        crate::conformance::storage_suite(backend.storage.as_ref()).await;
        crate::conformance::coordinator_suite(backend.coordinator.as_ref()).await;
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
                dedup_key: [5; 32],
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
            backend.coordinator.lookup(&[[5; 32]]).await.unwrap(),
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
