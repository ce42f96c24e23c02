//! The POSIX backend's own failures, and the one place that names them by meaning as
//! [`crate::Error`] (what is transient, what is corruption, what is missing).

use std::io;

use tracing::error;

use super::BACKEND;
use crate::Error;

/// A failure inside the POSIX backend, before it is named by meaning.
#[derive(Debug, thiserror::Error)]
pub(super) enum PosixError {
    /// A file system call failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// Opening the sequencing journal failed; `InvalidData` means it is damaged.
    #[error(transparent)]
    Journal(io::Error),
    /// The database of a log begun by an earlier version failed (see [`super::legacy`]).
    #[error(transparent)]
    Database(#[from] fjall::Error),
    /// A blocking task panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// Stored state does not decode.
    #[error("corrupt {what}")]
    Corrupt {
        /// What failed to decode.
        what: &'static str,
    },
    /// A background sync failed earlier in this process, so nothing more is released until a
    /// restart (see the coordinator's `sync_failure`).
    #[error(
        "a sync of tiles and bundles failed ({failure}); restart to write them again from the journal"
    )]
    SyncFailed {
        /// Why the sync failed.
        failure: String,
    },
    /// The log is frozen at `size`.
    #[error("the log is frozen at size {size}")]
    Frozen {
        /// The final size.
        size: u64,
    },
    /// Another process holds the directory's lock.
    #[error("{path} is held by another process")]
    Locked {
        /// The lock file.
        path: String,
    },
}

impl From<PosixError> for Error {
    fn from(error: PosixError) -> Self {
        match error {
            PosixError::Journal(e) if e.kind() == io::ErrorKind::InvalidData => {
                // `Error::Corrupt` carries no source, so the damage is logged in full here.
                error!(error = %e, "the sequencing journal is damaged");
                Error::Corrupt {
                    backend: BACKEND,
                    what: "sequencing journal",
                }
            }
            PosixError::Io(e) | PosixError::Journal(e) => {
                if e.kind() == io::ErrorKind::NotFound {
                    return Error::NotFound {
                        path: e.to_string(),
                    };
                }
                // Disk full, I/O errors and permission problems are all conditions an operator
                // can clear; clients should retry later rather than treat their entry as bad.
                Error::Unavailable {
                    backend: BACKEND,
                    source: Box::new(e),
                }
            }
            PosixError::Frozen { size } => Error::Frozen { size },
            PosixError::Database(e) => Error::Unavailable {
                backend: BACKEND,
                source: Box::new(e),
            },
            // Cleared by a restart only, like the failed fsync behind it, but the log keeps
            // every leaf meanwhile: clients should retry (against the restarted process).
            error @ PosixError::SyncFailed { .. } => Error::Unavailable {
                backend: BACKEND,
                source: Box::new(error),
            },
            PosixError::Task(e) => Error::Other {
                backend: BACKEND,
                source: Box::new(e),
            },
            PosixError::Corrupt { what } => Error::Corrupt {
                backend: BACKEND,
                what,
            },
            PosixError::Locked { path } => Error::Locked { path },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_transient_and_says_so() {
        // ENOSPC: the log line an operator reads must name the cause, not only the backend.
        let error = Error::from(PosixError::Io(io::Error::from_raw_os_error(28)));
        assert!(error.is_transient());
        let message = error.to_string();
        assert!(
            message.starts_with("posix storage unavailable: "),
            "{message}"
        );
        assert!(message.contains("No space left on device"), "{message}");
    }

    #[test]
    fn failures_are_named_by_meaning() {
        let missing = || io::Error::from(io::ErrorKind::NotFound);
        let damaged = || io::Error::new(io::ErrorKind::InvalidData, "gap in the journal");
        assert!(matches!(
            Error::from(PosixError::Io(missing())),
            Error::NotFound { .. }
        ));
        assert!(matches!(
            Error::from(PosixError::Journal(missing())),
            Error::NotFound { .. }
        ));
        assert!(matches!(
            Error::from(PosixError::Journal(damaged())),
            Error::Corrupt {
                what: "sequencing journal",
                ..
            }
        ));
        // Damage found outside the journal's start is an I/O failure like any other.
        assert!(Error::from(PosixError::Io(damaged())).is_transient());
        let sync = Error::from(PosixError::SyncFailed {
            failure: "EIO".into(),
        });
        assert!(sync.is_transient());
        assert!(sync.to_string().contains("restart to write them again"));
        assert!(matches!(
            Error::from(PosixError::Corrupt { what: "state file" }),
            Error::Corrupt {
                backend: "posix",
                what: "state file"
            }
        ));
        assert!(matches!(
            Error::from(PosixError::Locked {
                path: "lock".into()
            }),
            Error::Locked { .. }
        ));
    }
}
