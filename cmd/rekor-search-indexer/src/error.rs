//! The indexer's error types: why it cannot start, why a remote read failed, and why a
//! checkpoint the log served was refused.

use rekor_note::NoteError;
use rekor_tlog::ProofError;

/// Why the indexer cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexerError {
    /// A flag's value is unusable.
    #[error("{flag}: {reason}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The log key could not be loaded.
    #[error(transparent)]
    Trust(#[from] rekor_client::Error),
    /// The index directory could not be opened (or another process holds it).
    #[error("index directory {dir}: {source}")]
    IndexDir {
        /// The directory.
        dir: String,
        /// What failed.
        #[source]
        source: rekor_storage::Error,
    },
    /// The checkpoint the index directory remembers does not verify with the log key: the
    /// directory belongs to another log, or the key is wrong.
    #[error(
        "{path} holds a checkpoint that does not verify with the log key ({source}): is this the index of another log?"
    )]
    ForeignIndex {
        /// The file.
        path: String,
        /// Why it does not verify.
        #[source]
        source: NoteError,
    },
    /// A file in the index directory could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// The listener could not be bound.
    #[error("binding {address}: {source}")]
    Bind {
        /// The address.
        address: std::net::SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

/// Why a checkpoint the log served was not accepted. Nothing is indexed or answered against a
/// refused checkpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The note is not signed by the log key, or its origin is not the key's name.
    #[error("the checkpoint does not verify with the log key: {0}")]
    Unverified(#[source] NoteError),
    /// The checkpoint is smaller than one already verified.
    #[error("rollback: the log served a checkpoint of size {offered} after one of size {verified}")]
    Rollback {
        /// The largest size verified so far.
        verified: u64,
        /// The size served.
        offered: u64,
    },
    /// Two signed checkpoints of one size with different roots.
    #[error("fork: two signed checkpoints of size {size} with different roots")]
    Fork {
        /// The size.
        size: u64,
    },
    /// The log's tiles do not prove the new checkpoint extends the last verified one.
    #[error("checkpoint {new} is not proven consistent with checkpoint {old}: {source}")]
    Inconsistent {
        /// The last verified size.
        old: u64,
        /// The new size.
        new: u64,
        /// What failed.
        #[source]
        source: ProofError,
    },
    /// The log answered 404 for its checkpoint after it had served one.
    #[error("the log no longer serves a checkpoint (it served one of size {verified})")]
    Vanished {
        /// The last verified size.
        verified: u64,
    },
}

/// A remote read that failed, carried inside [`rekor_storage::Error`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The request did not complete.
    #[error("GET {url}: {source}")]
    Transport {
        /// The URL.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The log answered an unexpected status.
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The answer is larger than any valid object of its kind.
    #[error("GET {url}: the answer exceeds {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// The checkpoint was refused.
    #[error("the log's checkpoint was refused: {0}")]
    Refused(#[source] Refusal),
    /// The log is read through HTTP only: nothing can be written to it.
    #[error("the log is followed over HTTP, read-only: cannot {0}")]
    ReadOnly(&'static str),
    /// The verified checkpoint could not be remembered in the index directory.
    #[error("writing {path}: {source}")]
    Persist {
        /// The file.
        path: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}
