//! The POSIX backend's search index: a fjall database in `.rekor/search/`.
//!
//! Each posting is one key, the first [`KEY_PREFIX_BYTES`] bytes of the term's index key
//! followed by the entry's index (big-endian, so a term's entries sort by index), with an
//! empty value; `meta/indexed` holds the indexed size. A commit is one fjall batch, so the
//! size never runs ahead of its postings. Commits are not fsynced: the index is derived, and a
//! start after a crash resumes from whatever size the journal kept.
//!
//! An 8-byte prefix identifies a term among 2^32 others with a chance of about 2^-32; the
//! search layer confirms every candidate against its entry, as [`crate::SearchIndex::lookup`]
//! allows, so a shared prefix costs a bundle read and never a wrong answer.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions};

use super::BACKEND;
use super::error::PosixError;
use crate::search::{MAX_LOOKUP, Posting, SearchIndex, StoredPosting, check_append, key_prefix};
use crate::{Error, Result};

/// The directory in the private directory.
pub(super) const SEARCH_DIR: &str = "search";
/// The lock file of a standalone index's directory.
const STANDALONE_LOCK: &str = "lock";
/// How much of each index key a posting keeps.
const KEY_PREFIX_BYTES: usize = 8; // the length of `key_prefix`
const META_INDEXED: &[u8] = b"indexed";

/// The search index of a POSIX log directory.
#[derive(Clone)]
pub struct PosixSearchIndex {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    postings: Keyspace,
    meta: Keyspace,
    /// Serialises commits, so the compare-and-swap on the size holds within this process (the
    /// directory lock keeps other processes out).
    commit: tokio::sync::Mutex<()>,
    /// For an index in a directory of its own ([`PosixSearchIndex::open_standalone`]): its
    /// lock file, held exclusively while the index is open. (An index inside a log directory
    /// is covered by the log's lock.)
    _lock: Option<std::fs::File>,
}

impl std::fmt::Debug for PosixSearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PosixSearchIndex").finish_non_exhaustive()
    }
}

impl PosixSearchIndex {
    /// Opens (creating if needed) the index in the private directory `private`.
    pub(super) fn open(private: &Path) -> Result<PosixSearchIndex, PosixError> {
        PosixSearchIndex::open_at(private, None)
    }

    /// Opens (creating if needed) a search index kept in a directory of its own, not inside a
    /// log directory: what a standalone indexer that follows a remote log uses.
    ///
    /// ```text
    /// <dir>/lock      held exclusively while a process has the index open
    /// <dir>/search/   the fjall database
    /// ```
    ///
    /// The caller may keep files of its own beside them. The index is held open until the
    /// last handle is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if another process has the index open; I/O and database errors.
    pub fn open_standalone(dir: &Path) -> Result<PosixSearchIndex> {
        Ok(PosixSearchIndex::open_standalone_dir(dir)?)
    }

    fn open_standalone_dir(dir: &Path) -> Result<PosixSearchIndex, PosixError> {
        std::fs::create_dir_all(dir)?;
        let lock_path = dir.join(STANDALONE_LOCK);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(PosixError::Locked {
                    path: lock_path.display().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        PosixSearchIndex::open_at(dir, Some(lock))
    }

    fn open_at(parent: &Path, lock: Option<std::fs::File>) -> Result<PosixSearchIndex, PosixError> {
        let db = Database::builder(parent.join(SEARCH_DIR)).open()?;
        let postings = db.keyspace("postings", KeyspaceCreateOptions::default)?;
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
        Ok(PosixSearchIndex {
            inner: Arc::new(Inner {
                db,
                postings,
                meta,
                commit: tokio::sync::Mutex::new(()),
                _lock: lock,
            }),
        })
    }

    fn read_indexed(&self) -> Result<u64, PosixError> {
        match self.inner.meta.get(META_INDEXED)? {
            None => Ok(0),
            Some(bytes) => {
                let array: [u8; 8] =
                    bytes.as_ref().try_into().map_err(|_| PosixError::Corrupt {
                        what: "search indexed size",
                    })?;
                Ok(u64::from_be_bytes(array))
            }
        }
    }
}

fn posting_key(key: &[u8; 32], index: u64) -> [u8; KEY_PREFIX_BYTES + 8] {
    stored_key((u64::from_be_bytes(key_prefix(key)), index))
}

fn stored_key((prefix, index): StoredPosting) -> [u8; KEY_PREFIX_BYTES + 8] {
    let mut out = [0u8; KEY_PREFIX_BYTES + 8];
    out[..KEY_PREFIX_BYTES].copy_from_slice(&prefix.to_be_bytes());
    out[KEY_PREFIX_BYTES..].copy_from_slice(&index.to_be_bytes());
    out
}

fn parse_stored(key: &[u8]) -> Result<StoredPosting, PosixError> {
    let bytes: [u8; KEY_PREFIX_BYTES + 8] = key.try_into().map_err(|_| PosixError::Corrupt {
        what: "search posting",
    })?;
    let [
        p0,
        p1,
        p2,
        p3,
        p4,
        p5,
        p6,
        p7,
        i0,
        i1,
        i2,
        i3,
        i4,
        i5,
        i6,
        i7,
    ] = bytes;
    Ok((
        u64::from_be_bytes([p0, p1, p2, p3, p4, p5, p6, p7]),
        u64::from_be_bytes([i0, i1, i2, i3, i4, i5, i6, i7]),
    ))
}

#[async_trait]
impl SearchIndex for PosixSearchIndex {
    async fn indexed_size(&self) -> Result<u64> {
        Ok(self.read_indexed()?)
    }

    async fn append(&self, from: u64, to: u64, postings: Vec<Posting>) -> Result<()> {
        check_append(BACKEND, from, to, &postings)?;
        let _commit = self.inner.commit.lock().await;
        let this = self.clone();
        tokio::task::spawn_blocking(move || -> Result<(), Error> {
            let indexed = this.read_indexed()?;
            if indexed != from {
                return Err(Error::Precondition {
                    what: "search indexed size",
                    expected: from.to_string(),
                    found: indexed.to_string(),
                });
            }
            let inner = &this.inner;
            let mut batch = inner.db.batch().durability(None);
            for (key, index) in &postings {
                batch.insert(&inner.postings, posting_key(key, *index), []);
            }
            batch.insert(&inner.meta, META_INDEXED, to.to_be_bytes());
            batch.commit().map_err(PosixError::from)?;
            Ok(())
        })
        .await
        .map_err(PosixError::from)?
    }

    async fn lookup(
        &self,
        key: [u8; 32],
        start: u64,
        below: u64,
        limit: usize,
    ) -> Result<Vec<u64>> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<u64>, Error> {
            let below = below.min(this.read_indexed()?);
            if start >= below {
                return Ok(Vec::new());
            }
            let range = posting_key(&key, start)..posting_key(&key, below);
            let mut found = Vec::new();
            for guard in this.inner.postings.range(range) {
                if found.len() >= limit.min(MAX_LOOKUP) {
                    break;
                }
                let stored = guard.key().map_err(PosixError::from)?;
                found.push(parse_stored(&stored)?.1);
            }
            Ok(found)
        })
        .await
        .map_err(PosixError::from)?
    }

    async fn scan(
        &self,
        from: StoredPosting,
        last_prefix: u64,
        below: u64,
        limit: usize,
    ) -> Result<Vec<StoredPosting>> {
        let this = self.clone();
        let limit = limit.min(MAX_LOOKUP);
        tokio::task::spawn_blocking(move || -> Result<Vec<StoredPosting>, Error> {
            let below = below.min(this.read_indexed()?);
            let mut found = Vec::new();
            if from.0 > last_prefix || limit == 0 {
                return Ok(found);
            }
            let range = stored_key(from)..=stored_key((last_prefix, u64::MAX));
            for guard in this.inner.postings.range(range) {
                let posting = parse_stored(&guard.key().map_err(PosixError::from)?)?;
                if posting.1 < below {
                    found.push(posting);
                    if found.len() >= limit {
                        break;
                    }
                }
            }
            Ok(found)
        })
        .await
        .map_err(PosixError::from)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_conformance_suite_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let index = PosixSearchIndex::open(dir.path()).unwrap();
            let again = index.clone();
            crate::conformance::search_index_suite(&index, &again).await;
        }
        let reopened = PosixSearchIndex::open(dir.path()).unwrap();
        assert_eq!(reopened.indexed_size().await.unwrap(), (1 << 40) + 6);
        assert_eq!(
            reopened.lookup([2; 32], 0, u64::MAX, 10).await.unwrap(),
            vec![1, 7]
        );
    }

    #[tokio::test]
    async fn a_standalone_index_is_locked_while_open_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let index_dir = dir.path().join("index");
        {
            let index = PosixSearchIndex::open_standalone(&index_dir).unwrap();
            index.append(0, 3, vec![([5; 32], 2)]).await.unwrap();
            assert!(matches!(
                PosixSearchIndex::open_standalone(&index_dir),
                Err(Error::Locked { .. })
            ));
        }
        let reopened = PosixSearchIndex::open_standalone(&index_dir).unwrap();
        assert_eq!(reopened.indexed_size().await.unwrap(), 3);
        assert_eq!(reopened.lookup([5; 32], 0, 3, 10).await.unwrap(), vec![2]);
        assert!(index_dir.join("search").is_dir());
    }
}
