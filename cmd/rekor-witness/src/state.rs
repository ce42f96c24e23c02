//! The witness's durable state: per log, the latest cosigned checkpoint.
//!
//! Layout under `--storage-dir`:
//!
//! ```text
//! witness.pem              the Ed25519 key (see `keys`)
//! witness.lock             held (flock) while a witness process uses the directory
//! logs/<sha256(origin)>    the latest cosigned checkpoint of one log, as a signed note: the
//!                          checkpoint text, the log signatures that verified, the cosignature
//! ```
//!
//! A state file is replaced atomically (write a temporary file, fsync it, rename it over the old
//! one, fsync the directory) before the cosignature is returned, so after a crash at any point the
//! file holds either the previous or the new checkpoint, and never one older than a cosignature
//! the witness handed out. Blocking calls: run them off the async runtime.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rekor_note::{Checkpoint, Note, Origin};
use rekor_tlog::Hash;
use sha2::{Digest as _, Sha256};

use crate::error::StateError;

/// The lock file inside the storage directory.
pub(crate) const LOCK_FILE: &str = "witness.lock";
/// The directory of per-log state files inside the storage directory.
pub(crate) const LOGS_DIR: &str = "logs";

/// The latest checkpoint cosigned for one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// Its tree size.
    pub(crate) size: u64,
    /// Its root hash.
    pub(crate) root: Hash,
    /// The stored note: checkpoint text, verified log signatures, the witness's cosignature.
    pub(crate) note: Vec<u8>,
}

impl Record {
    /// Parses a stored note and checks that it is a checkpoint of `origin`.
    fn parse(bytes: Vec<u8>, origin: &Origin, path: &Path) -> Result<Self, StateError> {
        let corrupt = |source| StateError::Corrupt {
            path: path.to_path_buf(),
            source,
        };
        let note = Note::parse(&bytes).map_err(corrupt)?;
        let checkpoint = Checkpoint::parse(note.text()).map_err(corrupt)?;
        if &checkpoint.origin != origin {
            return Err(StateError::WrongOrigin {
                path: path.to_path_buf(),
                expected: origin.as_str().to_owned(),
                found: checkpoint.origin.as_str().to_owned(),
            });
        }
        Ok(Self {
            size: checkpoint.size,
            root: Hash(checkpoint.root),
            note: bytes,
        })
    }
}

/// Lowercase hex SHA-256 of an origin: the state file name and the monitoring path element
/// (`GET /<origin hash>/checkpoint`).
pub(crate) fn origin_hash(origin: &Origin) -> String {
    hex::encode(Sha256::digest(origin.as_str().as_bytes()))
}

/// An open, locked state directory.
#[derive(Debug)]
pub(crate) struct StateDir {
    logs: PathBuf,
    /// Held for the life of the process; the OS drops the lock when the process dies.
    _lock: File,
}

impl StateDir {
    /// Creates (if needed) and locks `root`.
    ///
    /// # Errors
    /// [`StateError::Locked`] if another process holds the lock, [`StateError::Io`] otherwise.
    pub(crate) fn open(root: &Path) -> Result<Self, StateError> {
        let logs = root.join(LOGS_DIR);
        std::fs::create_dir_all(&logs).map_err(|source| io(&logs, source))?;
        let lock_path = root.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| io(&lock_path, source))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked { path: lock_path });
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(io(&lock_path, source)),
        }
        Ok(Self { logs, _lock: lock })
    }

    fn path_of(&self, origin: &Origin) -> PathBuf {
        self.logs.join(origin_hash(origin))
    }

    /// The latest cosigned checkpoint of `origin`, or `None` if it was never cosigned.
    ///
    /// # Errors
    /// [`StateError::Io`], [`StateError::Corrupt`] or [`StateError::WrongOrigin`]. A file that
    /// exists but cannot be read is an error, never "no state": that would let the witness
    /// cosign a fork.
    pub(crate) fn load(&self, origin: &Origin) -> Result<Option<Record>, StateError> {
        let path = self.path_of(origin);
        match std::fs::read(&path) {
            Ok(bytes) => Record::parse(bytes, origin, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(io(&path, source)),
        }
    }

    /// Durably replaces the state of `origin` with `note` (see the module docs).
    ///
    /// # Errors
    /// [`StateError::Io`]; the old file may or may not have been replaced then.
    pub(crate) fn store(&self, origin: &Origin, note: &[u8]) -> Result<(), StateError> {
        let path = self.path_of(origin);
        let name = origin_hash(origin);
        let tmp = self.logs.join(format!(".{name}.tmp"));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .map_err(|source| io(&tmp, source))?;
        file.write_all(note).map_err(|source| io(&tmp, source))?;
        file.sync_all().map_err(|source| io(&tmp, source))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(|source| io(&path, source))?;
        File::open(&self.logs)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| io(&self.logs, source))
    }
}

fn io(path: &Path, source: std::io::Error) -> StateError {
    StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(origin: &str, size: u64) -> Vec<u8> {
        format!(
            "{origin}\n{size}\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u{2014} w AAAAAAA=\n"
        )
        .into_bytes()
    }

    #[test]
    fn store_then_load_round_trips_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let origin = Origin::new("log.example").unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        assert_eq!(state.load(&origin).unwrap(), None);
        state.store(&origin, &note("log.example", 3)).unwrap();
        state.store(&origin, &note("log.example", 9)).unwrap();
        let record = state.load(&origin).unwrap().unwrap();
        assert_eq!(record.size, 9);
        assert_eq!(record.root, Hash([0; 32]));
        assert_eq!(record.note, note("log.example", 9));
        let names: Vec<_> = std::fs::read_dir(dir.path().join(LOGS_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [origin_hash(&origin)], "no temporary file left");
    }

    #[test]
    fn a_second_open_is_refused_while_locked() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateDir::open(dir.path()).unwrap();
        assert!(matches!(
            StateDir::open(dir.path()),
            Err(StateError::Locked { .. })
        ));
        drop(first);
        StateDir::open(dir.path()).unwrap();
    }

    #[test]
    fn corrupt_or_misplaced_state_is_an_error_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let origin = Origin::new("log.example").unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        state.store(&origin, b"garbage").unwrap();
        assert!(matches!(
            state.load(&origin),
            Err(StateError::Corrupt { .. })
        ));
        state.store(&origin, &note("other.example", 1)).unwrap();
        assert!(matches!(
            state.load(&origin),
            Err(StateError::WrongOrigin { .. })
        ));
    }

    #[test]
    fn origin_hash_is_lowercase_hex_sha256() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            origin_hash(&Origin::new("abc").unwrap()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
