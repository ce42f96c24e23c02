//! Errors from starting an emulator.

/// Why an emulator is not running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The program is not installed.
    #[error("{program} not found ({hint})")]
    Missing {
        /// The program looked for.
        program: String,
        /// How to install it.
        hint: &'static str,
    },
    /// The program started but did not become ready, or exited.
    #[error("{program} did not start: {reason}")]
    NotReady {
        /// The program.
        program: String,
        /// What was seen (exit status, last lines of its output).
        reason: String,
    },
    /// An I/O failure while launching.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}
