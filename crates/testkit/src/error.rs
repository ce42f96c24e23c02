//! The one error type of the testkit: every helper returns it, so a test can use `?` and see
//! exactly which check failed and on which value.

use std::path::PathBuf;
use std::time::Duration;

/// Why a testkit step failed: a process, transport or crypto failure, or a check on the
/// server's answer that did not hold.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server binary could not be started.
    #[error("starting {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server did not log all its listening addresses in time.
    #[error("the server did not report its listeners within {waited:?}; its stderr:\n{stderr}")]
    StartTimeout {
        /// How long we waited.
        waited: Duration,
        /// What it wrote to stderr meanwhile.
        stderr: String,
    },
    /// The server exited while we waited for it to start.
    #[error("the server exited during startup ({status}); its stderr:\n{stderr}")]
    ExitedEarly {
        /// Its exit status.
        status: String,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// The server did not exit in time after SIGTERM.
    #[error("the server did not exit within {waited:?} of SIGTERM; its stderr tail:\n{stderr}")]
    StopTimeout {
        /// How long we waited.
        waited: Duration,
        /// The last lines it wrote to stderr.
        stderr: String,
    },
    /// An external command (`kill`, `openssl`) failed.
    #[error("{program} failed ({status}): {stderr}")]
    Command {
        /// The program.
        program: &'static str,
        /// Its exit status.
        status: String,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// A local I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An HTTP request failed below the status level.
    #[error("HTTP {url}: {source}")]
    Http {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The gRPC channel could not be set up.
    #[error("gRPC transport: {0}")]
    GrpcTransport(#[from] tonic::transport::Error),
    /// A gRPC call returned an error status where success was expected.
    #[error("gRPC call failed: {0}")]
    Grpc(#[from] tonic::Status),
    /// A response had another HTTP status than expected.
    #[error("{url}: expected HTTP {expected}, got {actual}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// The expected status.
        expected: u16,
        /// The status received.
        actual: u16,
        /// The response body (lossy UTF-8).
        body: String,
    },
    /// A value differs from what the protocol or the request requires.
    #[error("{what}: expected {expected}, got {actual}")]
    Mismatch {
        /// The field or object checked (e.g. `inclusionProof.treeSize`).
        what: String,
        /// The required value.
        expected: String,
        /// The value found.
        actual: String,
    },
    /// A value is not well-formed.
    #[error("{what}: {reason}")]
    Malformed {
        /// The field or object checked.
        what: String,
        /// The rule it breaks.
        reason: String,
    },
    /// A JSON document could not be parsed.
    #[error("{what} is not JSON: {source}")]
    Json {
        /// The document.
        what: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A key could not be generated, loaded or used.
    #[error("client key ({what}): {reason}")]
    Crypto {
        /// The operation.
        what: &'static str,
        /// The cause, as the crypto library reports it.
        reason: String,
    },
    /// The checkpoint note or the log key was refused by `rekor-note`.
    #[error("checkpoint: {0}")]
    Note(#[from] rekor_note::NoteError),
    /// The inclusion proof was refused by `rekor-tlog`.
    #[error("inclusion proof (rekor-tlog): {0}")]
    Proof(#[from] rekor_tlog::ProofError),
    /// The third-party `tlog_tiles` crate refused a proof or tile.
    #[error("tlog_tiles ({what}): {source}")]
    TlogTiles {
        /// The check.
        what: &'static str,
        /// The cause.
        #[source]
        source: tlog_tiles::Error,
    },
}

impl Error {
    /// A [`Error::Mismatch`] from any two displayable values.
    pub fn mismatch(
        what: impl Into<String>,
        expected: impl std::fmt::Display,
        actual: impl std::fmt::Display,
    ) -> Self {
        Error::Mismatch {
            what: what.into(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }
    }

    /// A [`Error::Malformed`].
    pub fn malformed(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Malformed {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Io`].
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// Fails with [`Error::Mismatch`] unless `expected == actual`.
///
/// # Errors
///
/// [`Error::Mismatch`] naming `what` and showing both values.
pub fn ensure_eq<T: PartialEq + std::fmt::Debug>(
    what: impl Into<String>,
    expected: T,
    actual: T,
) -> Result<(), Error> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::mismatch(
            what,
            format!("{expected:?}"),
            format!("{actual:?}"),
        ))
    }
}

/// The testkit's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
