//! Search over a transparency log's entries, with answers a client can check.
//!
//! The index is a derived view of the log. An [`Indexer`] reads the entry bundles (C2SP
//! tlog-tiles) in order and records each entry's search terms ([`rekor_entries::search`]:
//! artifact digests, signer keys, certificate identities) in a [`rekor_storage::SearchIndex`],
//! so it can always be rebuilt from the tiles and never decides what the log contains.
//! [`search`] answers one page of a query against a signed checkpoint's tree: every candidate
//! is confirmed against the entry's own bytes, entries the index has not reached yet are
//! scanned directly, and each entry comes with its inclusion proof, verified before it is
//! returned. [`proven_entry`] reads one entry by its index the same way, with its verified
//! proof: what the server answers for a resubmitted entry it already holds.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use rekor_search::{Indexer, SearchTree, search};
//! use rekor_entries::search::SearchTerm;
//! use rekor_storage::{MemorySearchIndex, memory::MemoryStorage};
//!
//! let storage = Arc::new(MemoryStorage::default());
//! let index = Arc::new(MemorySearchIndex::default());
//! // An empty log: nothing to index, nothing found.
//! let indexer = Indexer::new(storage.clone(), index.clone());
//! assert_eq!(indexer.catch_up(0).await?, 0);
//! let tree = SearchTree { size: 0, root: rekor_tlog::empty_root() };
//! let term = SearchTerm::digest(&format!("sha256:{}", "00".repeat(32)))?;
//! let page = search(storage.as_ref(), index.as_ref(), tree, &term, 0, 100).await?;
//! assert!(page.entries.is_empty() && page.next.is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod answer;
mod commitment;
mod error;
mod indexer;
mod source;

pub use answer::{
    FoundEntry, MAX_PAGE_SIZE, MAX_UNINDEXED_SCAN, SearchPage, SearchTree, proven_entry, search,
};
pub use commitment::{BucketProof, Commitment, Committer, Pace};
pub use error::{Result, SearchError};
pub use indexer::{COMMIT_ENTRIES, Indexer};
pub use source::read_tiles;
