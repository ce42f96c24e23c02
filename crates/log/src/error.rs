//! The log pipeline's error type.

use std::sync::Arc;

/// Errors from opening a log and from adding entries to it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The entry is already in the log (or sequenced for it) at `index`.
    #[error("entry already exists in the log at index {index}")]
    Duplicate {
        /// The index the first copy was given.
        index: u64,
    },
    /// Too many requests are waiting; the caller should retry later.
    #[error("the log has {max} requests outstanding; try again later")]
    Pushback {
        /// The configured limit.
        max: usize,
    },
    /// The entry does not fit an entry bundle.
    #[error("entry of {size} bytes exceeds the {max}-byte limit")]
    EntryTooLarge {
        /// The entry's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The log is shutting down and takes no more entries.
    #[error("the log is shutting down")]
    ShuttingDown,
    /// Storage or coordination failed; the entry may or may not have been sequenced.
    #[error("storage failure: {0}")]
    Storage(#[source] Arc<rekor_storage::Error>),
    /// The stored checkpoint does not verify with the log's key or does not parse.
    #[error("the stored checkpoint is invalid: {reason}")]
    BadCheckpoint {
        /// Why it was refused.
        reason: String,
    },
    /// Stored state disagrees with itself; the log refuses to sign anything on top of it.
    #[error("stored state is inconsistent: {reason}")]
    Inconsistent {
        /// What disagreed.
        reason: String,
    },
    /// The log is frozen at `size` entries (see `Coordinator::freeze`) and takes no more.
    #[error("the log is frozen at size {size}")]
    Frozen {
        /// The final tree size.
        size: u64,
    },
    /// A tile, proof or signing step failed where it must not; a bug or corrupt storage.
    #[error("internal error: {reason}")]
    Internal {
        /// What failed.
        reason: String,
    },
    /// Failing closed (`LogConfig::witness_fail_closed`), the checkpoint was not published: its
    /// witness quorum was not reached in time. Publication is retried; transient, like an
    /// unavailable store.
    #[error("checkpoint {size} withheld: no witness quorum in time ({cosignatures} cosignatures)")]
    WitnessQuorum {
        /// The tree size of the withheld checkpoint.
        size: u64,
        /// How many cosignatures came in time.
        cosignatures: usize,
    },
}

impl From<rekor_storage::Error> for LogError {
    fn from(error: rekor_storage::Error) -> Self {
        match error {
            rekor_storage::Error::Frozen { size } => LogError::Frozen { size },
            other => LogError::Storage(Arc::new(other)),
        }
    }
}

impl LogError {
    pub(crate) fn internal(reason: impl std::fmt::Display) -> Self {
        LogError::Internal {
            reason: reason.to_string(),
        }
    }

    pub(crate) fn inconsistent(reason: impl std::fmt::Display) -> Self {
        LogError::Inconsistent {
            reason: reason.to_string(),
        }
    }
}
