//! The storage error type, shared by every backend.

/// A boxed error from a backend's own client library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors returned by [`crate::Storage`] and [`crate::Coordinator`], named by meaning so callers can branch.
///
/// Each backend converts its private errors into one of these variants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object does not exist.
    #[error("object not found: {path}")]
    NotFound {
        /// The object's path.
        path: String,
    },
    /// A create-only write found an object with different contents at the path.
    #[error("object already exists with different contents: {path}")]
    AlreadyExists {
        /// The object's path.
        path: String,
    },
    /// A compare-and-swap found a different version than the caller expected.
    #[error("precondition failed for {what}: expected {expected}, found {found}")]
    Precondition {
        /// What was being swapped (an object path or a state name).
        what: &'static str,
        /// The version the caller expected.
        expected: String,
        /// The version that was found.
        found: String,
    },
    /// The path is not one this storage accepts (escapes the root, names private state, or is malformed).
    #[error("invalid object path {path:?}: {reason}")]
    InvalidPath {
        /// The rejected path.
        path: String,
        /// The rule it broke.
        reason: &'static str,
    },
    /// Stored state does not decode; the backend refuses to guess.
    #[error("corrupt {what} in {backend} storage")]
    Corrupt {
        /// The backend name.
        backend: &'static str,
        /// What failed to decode.
        what: &'static str,
    },
    /// The storage is held by another process (POSIX lock) or is otherwise not usable by this one.
    #[error("storage is locked by another process: {path}")]
    Locked {
        /// The lock file.
        path: String,
    },
    /// The log is frozen ([`crate::Coordinator::freeze`]): nothing more is sequenced, ever.
    #[error("the log is frozen at size {size}")]
    Frozen {
        /// The final tree size.
        size: u64,
    },
    /// A transient failure: the caller may retry later. Clients see 503.
    ///
    /// The message carries the cause ("No space left on device", a timeout): it is what an
    /// operator reads in the log line, which prints the error's message and not its chain.
    #[error("{backend} storage unavailable: {source}")]
    Unavailable {
        /// The backend name.
        backend: &'static str,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// Any other backend failure. The message carries the cause, as for `Unavailable`.
    #[error("{backend} storage error: {source}")]
    Other {
        /// The backend name.
        backend: &'static str,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

/// Result alias for storage operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether a retry of the same call might succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }
}
