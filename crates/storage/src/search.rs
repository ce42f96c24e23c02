//! The search index: which entries carry a search term, by the term's 32-byte index key.
//!
//! The index is derived from the log: an indexer reads the entry bundles in order and records,
//! for each entry, the index keys of its search terms. Nothing in it is authoritative; it can
//! be dropped and rebuilt from the tiles at any time, and answers built on it carry the log's
//! own inclusion proofs. That is why it is a trait of its own rather than part of the
//! [`crate::Coordinator`]: it may live beside the log's state (POSIX, Spanner, MySQL) or in a
//! separate process that follows a log over HTTP.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::{Error, Result};

/// One posting: an entry (by its index in the log) carries the term with this index key.
pub type Posting = ([u8; 32], u64);

/// The most entries [`SearchIndex::lookup`] returns in one call.
pub const MAX_LOOKUP: usize = 10_000;

/// A search index backend. Shared by every frontend of a backend: indexers on several
/// frontends may race to index the same entries, and the compare-and-swap on the indexed size
/// lets one of them win.
#[async_trait]
pub trait SearchIndex: Send + Sync + Debug + 'static {
    /// The log size the index covers: every entry below it is indexed, none at or above it is.
    async fn indexed_size(&self) -> Result<u64>;

    /// Records the postings of the entries `from..to` and moves the indexed size from `from`
    /// to `to`, atomically: a reader sees the new size only with all of its postings.
    ///
    /// Contract: if the indexed size is not `from`, nothing changes and the call fails with
    /// [`Error::Precondition`] (another indexer got there first). Every posting's index must
    /// lie in `from..to`. Need not be durable: a lost commit is redone from the log.
    async fn append(&self, from: u64, to: u64, postings: Vec<Posting>) -> Result<()>;

    /// The indices of entries below `below` recorded under `key`, ascending, starting at
    /// `start`, at most `limit` (capped at [`MAX_LOOKUP`]).
    ///
    /// A backend may store only part of each key, so the answer may hold entries whose terms
    /// merely share that part: callers confirm each against the entry itself. It never leaves
    /// out an indexed entry that carries the key.
    async fn lookup(&self, key: [u8; 32], start: u64, below: u64, limit: usize)
    -> Result<Vec<u64>>;

    /// The postings as the backend keeps them ([`StoredPosting`]), in key order (prefix, then
    /// index): those at or after `from` whose prefix is at most `last_prefix`, of entries
    /// below `below` (capped at the indexed size), at most `limit` (capped at
    /// [`MAX_LOOKUP`]). Fewer than `limit` means none are left. This is what a search-index
    /// commitment is built from, a bucket (a range of prefixes) at a time or whole.
    async fn scan(
        &self,
        from: StoredPosting,
        last_prefix: u64,
        below: u64,
        limit: usize,
    ) -> Result<Vec<StoredPosting>>;
}

/// A posting as the POSIX, MySQL and Spanner backends keep it: the first 8 bytes of the index
/// key as a big-endian number, and the entry's index. Two keys of one entry that share the
/// prefix are one stored posting.
pub type StoredPosting = (u64, u64);

/// The part of an index key the POSIX, MySQL and Spanner backends keep: its first 8 bytes
/// (see [`SearchIndex::lookup`] on why a prefix is enough).
#[cfg(any(feature = "posix", feature = "gcp", feature = "aws"))]
pub(crate) fn key_prefix(key: &[u8; 32]) -> [u8; 8] {
    prefix_bytes(key)
}

fn prefix_bytes(key: &[u8; 32]) -> [u8; 8] {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&key[..8]);
    prefix
}

/// Checks [`SearchIndex::append`]'s arguments, for every backend.
///
/// # Errors
///
/// [`Error::Other`] if `to < from` or a posting lies outside `from..to`.
pub(crate) fn check_append(
    backend: &'static str,
    from: u64,
    to: u64,
    postings: &[Posting],
) -> Result<()> {
    if to < from
        || postings
            .iter()
            .any(|(_, index)| !(from..to).contains(index))
    {
        return Err(Error::Other {
            backend,
            source: format!("search postings outside the appended range {from}..{to}").into(),
        });
    }
    Ok(())
}

/// A search index in memory, for tests and for a log in memory.
#[derive(Debug, Default)]
pub struct MemorySearchIndex {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    indexed: u64,
    postings: BTreeSet<Posting>,
}

impl MemorySearchIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl SearchIndex for MemorySearchIndex {
    async fn indexed_size(&self) -> Result<u64> {
        Ok(self.lock().indexed)
    }

    async fn append(&self, from: u64, to: u64, postings: Vec<Posting>) -> Result<()> {
        check_append("memory", from, to, &postings)?;
        let mut inner = self.lock();
        if inner.indexed != from {
            return Err(Error::Precondition {
                what: "search indexed size",
                expected: from.to_string(),
                found: inner.indexed.to_string(),
            });
        }
        inner.postings.extend(postings);
        inner.indexed = to;
        Ok(())
    }

    async fn lookup(
        &self,
        key: [u8; 32],
        start: u64,
        below: u64,
        limit: usize,
    ) -> Result<Vec<u64>> {
        let inner = self.lock();
        let below = below.min(inner.indexed);
        if start >= below {
            return Ok(Vec::new());
        }
        Ok(inner
            .postings
            .range((key, start)..(key, below))
            .map(|(_, index)| *index)
            .take(limit.min(MAX_LOOKUP))
            .collect())
    }

    async fn scan(
        &self,
        from: StoredPosting,
        last_prefix: u64,
        below: u64,
        limit: usize,
    ) -> Result<Vec<StoredPosting>> {
        let inner = self.lock();
        let below = below.min(inner.indexed);
        // Postings sort by the whole key here, so those sharing a prefix are gathered and
        // sorted: this index is for tests and logs in memory.
        let mut found: Vec<StoredPosting> = inner
            .postings
            .iter()
            .map(|(key, index)| (u64::from_be_bytes(prefix_bytes(key)), *index))
            .filter(|p| *p >= from && p.0 <= last_prefix && p.1 < below)
            .collect();
        found.sort_unstable();
        found.dedup();
        found.truncate(limit.min(MAX_LOOKUP));
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_index_passes_the_conformance_suite() {
        let index = MemorySearchIndex::default();
        crate::conformance::search_index_suite(&index, &index).await;
    }
}
