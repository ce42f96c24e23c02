//! The witness's error types: why a request was refused ([`AddError`], [`Malformed`]), why the
//! state directory, the key or the config file could not be used ([`StateError`], [`KeyError`],
//! [`ConfigError`]). [`AddError::status`] is the one place where reasons become HTTP statuses.

use std::path::PathBuf;

use axum::http::StatusCode;
use rekor_note::NoteError;
use rekor_tlog::ProofError;

/// Why an `add-checkpoint` body is malformed (c2sp.org/tlog-witness, "add-checkpoint": 400).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Malformed {
    /// The body has no newline-terminated first line.
    #[error("the body does not start with a newline-terminated `old <size>` line")]
    OldLineMissing,
    /// The first line is not `old`, one space and a decimal size without leading zeros.
    #[error("the first line is not `old <size>` with a decimal size without leading zeros")]
    OldLine,
    /// A consistency proof line is not the standard base64 of a 32-byte hash.
    #[error("consistency proof line {line} is not the base64 encoding of a 32-byte hash")]
    ProofLine {
        /// One-based number of the proof line (the old size line is not counted).
        line: usize,
    },
    /// More proof lines than the spec allows.
    #[error("more than {max} consistency proof lines")]
    TooManyProofLines {
        /// The limit (63).
        max: usize,
    },
    /// The body ends before the empty line that separates the proof from the checkpoint.
    #[error("the body has no empty line before the checkpoint")]
    NoBlankLine,
    /// The checkpoint is not a well-formed signed note.
    #[error("the checkpoint is not a signed note: {0}")]
    Note(#[source] NoteError),
    /// The note text is not a checkpoint.
    #[error("the note text is not a checkpoint: {0}")]
    Checkpoint(#[source] NoteError),
}

/// Why an `add-checkpoint` request was not cosigned. Each variant names one rule of
/// c2sp.org/tlog-witness v1.0.0, "add-checkpoint"; [`AddError::status`] gives its status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AddError {
    /// The body is malformed (400).
    #[error("malformed request: {0}")]
    Malformed(#[from] Malformed),
    /// The old size is larger than the checkpoint size (400).
    #[error("old size {old} is larger than the checkpoint size {size}")]
    OldSizeAboveSize {
        /// The `old` line.
        old: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// No log with this origin is configured (404).
    #[error("unknown log origin {origin:?}")]
    UnknownOrigin {
        /// The checkpoint's origin line.
        origin: String,
    },
    /// No signature from a trusted key verifies, or one from a trusted key fails (403).
    #[error("checkpoint signature from log {origin:?} not verified: {source}")]
    Signature {
        /// The checkpoint's origin line.
        origin: String,
        /// What the note verifier said.
        #[source]
        source: NoteError,
    },
    /// The old size is not the size of the latest checkpoint cosigned for the log (409 with
    /// `Content-Type: text/x.tlog.size` and the latest size as the body).
    #[error("old size {old} is not the latest cosigned size {latest}")]
    OldSizeMismatch {
        /// The `old` line.
        old: u64,
        /// The size of the latest cosigned checkpoint (0 if none).
        latest: u64,
    },
    /// Same size as the latest cosigned checkpoint but another root hash (409, plain text).
    #[error(
        "checkpoint of size {size} has a different root hash than the one cosigned at that size"
    )]
    Fork {
        /// The common size.
        size: u64,
    },
    /// A checkpoint of size zero whose root is not the empty tree's hash (422).
    #[error("a checkpoint of size 0 must have the root hash of the empty tree")]
    EmptyTreeRoot,
    /// The consistency proof does not verify, or is not empty when the old size is zero (422).
    #[error("consistency proof from size {old} to size {size} does not verify: {source}")]
    Proof {
        /// The `old` line.
        old: u64,
        /// The checkpoint's size.
        size: u64,
        /// What the verifier said.
        #[source]
        source: ProofError,
    },
    /// The state of this log could not be written; the witness refuses to cosign it until
    /// restarted (500).
    #[error("the witness state for this log is unavailable")]
    StateUnavailable,
    /// Writing the new state failed (500).
    #[error("persisting the new checkpoint failed: {0}")]
    Persist(#[source] StateError),
    /// The clock reads before 1970 or beyond 2^63 - 1 seconds (500).
    #[error("the system clock is out of range")]
    Clock,
    /// Signing or assembling the cosigned note failed (500).
    #[error("cosigning failed: {0}")]
    Cosign(#[source] NoteError),
    /// The request task did not finish (500).
    #[error("the request task failed")]
    Task,
}

impl AddError {
    /// The HTTP status c2sp.org/tlog-witness v1.0.0 assigns to this reason.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Malformed(_) | Self::OldSizeAboveSize { .. } => StatusCode::BAD_REQUEST,
            Self::UnknownOrigin { .. } => StatusCode::NOT_FOUND,
            Self::Signature { .. } => StatusCode::FORBIDDEN,
            Self::OldSizeMismatch { .. } | Self::Fork { .. } => StatusCode::CONFLICT,
            Self::EmptyTreeRoot | Self::Proof { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::StateUnavailable
            | Self::Persist(_)
            | Self::Clock
            | Self::Cosign(_)
            | Self::Task => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the refusal may be evidence of log misbehaviour: the log's signature verified,
    /// but the checkpoint is not consistent with what was cosigned before.
    pub(crate) fn is_evidence(&self) -> bool {
        matches!(
            self,
            Self::Fork { .. } | Self::EmptyTreeRoot | Self::Proof { .. }
        )
    }
}

/// Why the state directory could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    /// A file system call failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the lock on the directory.
    #[error("{path} is locked by another rekor-witness process")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A state file does not hold a checkpoint note.
    #[error("state file {path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: NoteError,
    },
    /// A state file holds the checkpoint of another origin than its name says.
    #[error("state file {path} holds a checkpoint for origin {found:?}, not {expected:?}")]
    WrongOrigin {
        /// The file.
        path: PathBuf,
        /// The origin the file name stands for.
        expected: String,
        /// The origin in the file.
        found: String,
    },
}

/// Why the witness key could not be loaded or generated.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    /// A file system call failed.
    #[error("witness key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key file is readable by others or writable by group or others.
    #[error("witness key {path} has mode {mode:o}; run `chmod 600 {path}`")]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not an Ed25519 PKCS#8 PEM private key.
    #[error("witness key {path} is not an unencrypted Ed25519 PKCS#8 PEM private key")]
    Parse {
        /// The key file.
        path: PathBuf,
    },
    /// The key could not be encoded as PEM.
    #[error("encoding the witness key as PKCS#8 PEM failed")]
    Encode,
    /// No system randomness.
    #[error("no system randomness to generate the witness key: {0}")]
    Random(getrandom::Error),
}

/// Why the config file of known logs was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line starts with another word than `log`.
    #[error("line {line}: unknown directive {word:?} (expected `log`)")]
    UnknownDirective {
        /// One-based line number.
        line: usize,
        /// The first word.
        word: String,
    },
    /// A `log` line has no key.
    #[error(
        "line {line}: `log` needs a key: `log [<origin>] <vkey>` or `log <origin> spki:<base64>`"
    )]
    MissingKey {
        /// One-based line number.
        line: usize,
    },
    /// The origin is not a valid checkpoint origin (or, for `spki:` keys, key name).
    #[error("line {line}: invalid origin: {source}")]
    Origin {
        /// One-based line number.
        line: usize,
        /// The cause.
        #[source]
        source: NoteError,
    },
    /// The key does not parse.
    #[error("line {line}: invalid log key: {source}")]
    Key {
        /// One-based line number.
        line: usize,
        /// The cause.
        #[source]
        source: NoteError,
    },
    /// The `spki:` key is not base64.
    #[error("line {line}: the spki: key is not base64")]
    SpkiBase64 {
        /// One-based line number.
        line: usize,
    },
    /// The same key (name and key ID) is listed twice for one origin.
    #[error("line {line}: this key is already listed for origin {origin:?}")]
    DuplicateKey {
        /// One-based line number.
        line: usize,
        /// The origin.
        origin: String,
    },
    /// The file lists no log.
    #[error("the config file lists no log")]
    NoLogs,
}
