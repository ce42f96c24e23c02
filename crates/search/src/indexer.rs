//! [`Indexer`]: follows a log's published checkpoints and records each entry's search terms.

use std::sync::Arc;
use std::time::Duration;

use rekor_entries::search::search_terms;
use rekor_storage::{Error as StorageError, Posting, SearchIndex, Storage};
use rekor_tlog::{BundleId, LeafIndex, TreeSize, bundle_for_leaf};
use tokio::sync::watch;

use crate::error::Result;
use crate::source::read_bundle;

/// Entries per index commit: a multiple of 256, so every commit but the last of a catch-up
/// ends at a full bundle.
pub const COMMIT_ENTRIES: u64 = 4096;

/// Records the search terms of a log's entries in a [`SearchIndex`], reading them from the
/// entry bundles in order. Several indexers may follow one log into one shared index: the
/// index's compare-and-swap on its size lets one commit each range, and the others move on.
#[derive(Clone, Debug)]
pub struct Indexer {
    storage: Arc<dyn Storage>,
    index: Arc<dyn SearchIndex>,
}

impl Indexer {
    /// An indexer reading `storage` into `index`.
    pub fn new(storage: Arc<dyn Storage>, index: Arc<dyn SearchIndex>) -> Self {
        Indexer { storage, index }
    }

    /// Indexes every entry below `size`, which must be the size of a checkpoint the log has
    /// published (its bundles, partial or full, are in storage). Returns the indexed size,
    /// which may be larger if another indexer went further.
    ///
    /// # Errors
    ///
    /// Storage and index failures, and bundles that do not decode. What was committed stays.
    pub async fn catch_up(&self, size: u64) -> Result<u64> {
        let mut from = self.index.indexed_size().await?;
        while from < size {
            let to = size.min((from / COMMIT_ENTRIES + 1) * COMMIT_ENTRIES);
            let postings = self.postings(from, to, size).await?;
            match self.index.append(from, to, postings).await {
                Ok(()) => from = to,
                // Another indexer committed first: carry on from where it is.
                Err(StorageError::Precondition { .. }) => {
                    from = self.index.indexed_size().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(from)
    }

    /// The postings of entries `from..to`, read from the bundles of a tree of `size`.
    async fn postings(&self, from: u64, to: u64, size: u64) -> Result<Vec<Posting>> {
        let mut postings = Vec::new();
        let mut next = from;
        while next < to {
            let Some((bundle, first)) = bundle_for_leaf(LeafIndex::new(next), TreeSize::new(size))
            else {
                break;
            };
            let entries = read_bundle(self.storage.as_ref(), bundle).await?;
            let base = bundle_base(bundle);
            for (index, entry) in (base..).zip(&entries).skip(first) {
                if index >= to {
                    break;
                }
                postings.extend(search_terms(entry).iter().map(|t| (t.index_key(), index)));
            }
            next = base + u64::from(bundle.width.get());
        }
        Ok(postings)
    }

    /// Follows `sizes` (the sizes of published checkpoints) until the sender is dropped,
    /// catching up after each. Failures are logged and retried after `retry`.
    pub async fn follow(self, mut sizes: watch::Receiver<u64>, retry: Duration) {
        loop {
            let size = *sizes.borrow_and_update();
            match self.catch_up(size).await {
                Ok(indexed) => tracing::debug!(indexed, "search index caught up"),
                Err(error) => {
                    tracing::warn!(%error, size, "search indexing failed; retrying");
                    tokio::time::sleep(retry).await;
                    continue;
                }
            }
            if sizes.changed().await.is_err() {
                return;
            }
        }
    }
}

/// The index of a bundle's first entry.
pub(crate) fn bundle_base(bundle: BundleId) -> u64 {
    bundle.index.get() << 8
}
