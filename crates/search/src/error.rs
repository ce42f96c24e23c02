//! The search crate's error type.

use rekor_tlog::{BundleError, ProofError, TileReadError};

/// Why indexing or a search failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    /// The log's storage or the index failed.
    #[error(transparent)]
    Storage(#[from] rekor_storage::Error),
    /// An entry bundle does not decode.
    #[error("entry bundle {path}: {source}")]
    Bundle {
        /// The bundle's path.
        path: String,
        /// Why it does not decode.
        #[source]
        source: BundleError,
    },
    /// A hash tile does not decode.
    #[error("hash tile {path}: {source}")]
    Tile {
        /// The tile's path.
        path: String,
        /// Why it does not decode.
        #[source]
        source: TileReadError,
    },
    /// A bundle holds fewer entries than the tree size says it must.
    #[error("entry bundle {path} holds {found} entries, fewer than {needed}")]
    ShortBundle {
        /// The bundle's path.
        path: String,
        /// The entries found.
        found: usize,
        /// The entries needed.
        needed: usize,
    },
    /// An inclusion proof could not be built from the tiles, or does not verify against the
    /// checkpoint: the tiles and the checkpoint disagree.
    #[error("inclusion proof for entry {index} in tree {size}: {source}")]
    Proof {
        /// The entry.
        index: u64,
        /// The tree size.
        size: u64,
        /// What failed.
        #[source]
        source: ProofError,
    },
    /// An entry bundle's entries are not the log's: they do not hash to the subtree of the
    /// checkpoint's tree they stand for (or its tiles could not prove it).
    #[error("entry bundle {path} is not part of the log's tree of size {size}: {source}")]
    BundleNotInTree {
        /// The bundle's path.
        path: String,
        /// The tree size.
        size: u64,
        /// What failed.
        #[source]
        source: ProofError,
    },
    /// The index is too far behind the checkpoint to answer completely now.
    #[error(
        "the search index covers {indexed} entries of {size}; it is catching up, retry shortly"
    )]
    IndexBehind {
        /// The indexed size.
        indexed: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// The search-index commitment could not be built or no longer matches the index.
    #[error("search index commitment: {0}")]
    Commitment(String),
}

/// A result with [`SearchError`].
pub type Result<T, E = SearchError> = std::result::Result<T, E>;
