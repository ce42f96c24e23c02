//! The load generator's errors.

/// Why a benchmark run could not be set up or completed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum BenchError {
    /// A command-line value could not be understood.
    #[error("invalid {flag}: {reason}")]
    Flag {
        /// The flag, e.g. `--mix`.
        flag: &'static str,
        /// What was wrong with its value.
        reason: String,
    },
    /// Generating a client key or signing a request failed.
    #[error("signing with {algorithm}: {reason}")]
    Signing {
        /// The algorithm's short name.
        algorithm: &'static str,
        /// What failed.
        reason: String,
    },
    /// The server could not be reached or set up for the run.
    #[error("connecting to {target}: {source}")]
    Connect {
        /// The URL.
        target: String,
        /// The transport error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A worker task ended abnormally.
    #[error("a load worker failed: {source}")]
    Worker {
        /// The join error.
        #[from]
        source: tokio::task::JoinError,
    },
}

/// Why one response failed verification.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum VerifyError {
    /// The response body was not a `TransparencyLogEntry`.
    #[error("response does not parse: {reason}")]
    Parse {
        /// The parser's message.
        reason: String,
    },
    /// A field the proof needs is missing.
    #[error("response has no {field}")]
    Missing {
        /// The protojson name of the field.
        field: &'static str,
    },
    /// The checkpoint's signature or text failed.
    #[error("checkpoint does not verify: {reason}")]
    Checkpoint {
        /// The note verifier's message.
        reason: String,
    },
    /// The proof's fields disagree with the checkpoint or with each other.
    #[error("response fields disagree: {what}")]
    Mismatch {
        /// Which fields.
        what: &'static str,
    },
    /// The canonical body is not the entry the request asked for.
    #[error("canonicalized body does not carry the request's digest")]
    WrongEntry,
    /// The inclusion proof does not lead to the checkpoint's root.
    #[error("inclusion proof fails: {reason}")]
    Proof {
        /// The proof verifier's message.
        reason: String,
    },
}
