//! The one error type of this crate.

use rekor_note::NoteError;
use rekor_tlog::{BundleError, Hash, ProofError, TileReadError};

/// Everything that can go wrong talking to a log or checking what it served.
///
/// Each variant names the rule that failed and the object (URL, tile path, field) it failed on,
/// so callers can branch on it and people can act on the one-line message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The log's base URL cannot be used.
    #[error("invalid log URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The HTTP client could not be built (for example, no TLS roots could be loaded).
    #[error("cannot build the HTTP client: {source}")]
    HttpClient {
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// A request did not get an answer: connection refused or reset, timeout. Retried first.
    #[error(
        "{method} {url}: {reason} ({attempts} {})",
        if *attempts == 1 { "attempt" } else { "attempts" }
    )]
    Transport {
        /// `GET` or `POST`.
        method: &'static str,
        /// The URL requested.
        url: String,
        /// The innermost cause, in words.
        reason: String,
        /// How many attempts were made.
        attempts: u32,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The log answered with a status this call does not expect (5xx only after the retries).
    #[error("{method} {url}: HTTP {status}: {message}")]
    Status {
        /// `GET` or `POST`.
        method: &'static str,
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The log's error message (first line, shortened), or the status text.
        message: String,
    },
    /// The log has no object at this path (HTTP 404): a missing checkpoint, tile or bundle.
    #[error("{path} is missing from the log (HTTP 404)")]
    NotFound {
        /// The object path below `/api/v2/`, such as `tile/0/x001/234.p/7`.
        path: String,
    },
    /// The entry is already in the log (HTTP 409); the log gave the existing entry's index.
    #[error("the entry is already in the log at index {index}")]
    Duplicate {
        /// The index of the existing entry.
        index: u64,
    },
    /// The log answered 409 without a usable `x-log-index` header.
    #[error("the log says the entry is a duplicate but gives no valid x-log-index header")]
    DuplicateWithoutIndex,
    /// A response body is larger than anything the log may legitimately send there.
    #[error("{url}: response is larger than {limit} bytes")]
    ResponseTooLarge {
        /// The URL requested.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// A JSON document (a response, an entry file, a bundle, a trusted root) is not the expected
    /// protojson message.
    #[error("{what} is not a valid {message}: {source}")]
    InvalidJson {
        /// Where the JSON came from (a URL or a file name).
        what: String,
        /// The expected message type.
        message: &'static str,
        /// The parser's error.
        #[source]
        source: rekor_api::ApiError,
    },
    /// A message could not be written as JSON.
    #[error("cannot encode {message} as JSON: {source}")]
    Encode {
        /// The message type.
        message: &'static str,
        /// The serialiser's error.
        #[source]
        source: rekor_api::ApiError,
    },
    /// A checkpoint did not verify with the trusted log key, or does not parse.
    #[error("checkpoint rejected: {source}")]
    Checkpoint {
        /// Why.
        #[source]
        source: NoteError,
    },
    /// A trust anchor (log key, verifier key, trusted root) could not be loaded.
    #[error("invalid {what}: {reason}")]
    Trust {
        /// Which trust input (for example `--log-key file.pem`).
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A search answer breaks a rule a correct log keeps: an entry that does not carry the
    /// term, entries out of order, a proof to another checkpoint, a page over its size.
    #[error("search answer rejected: {reason}")]
    SearchAnswer {
        /// The rule broken.
        reason: String,
    },
    /// A required field of a message is missing or empty.
    #[error("{message} has no {field}")]
    MissingField {
        /// The message.
        message: &'static str,
        /// The field, in protojson spelling.
        field: &'static str,
    },
    /// An integer field is negative or otherwise out of range.
    #[error("{field} is {value}, which is out of range")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// A hash field is not 32 bytes long.
    #[error("{field} is {len} bytes long, not 32")]
    HashLength {
        /// The field (with its position for repeated fields).
        field: String,
        /// Its length.
        len: usize,
    },
    /// The entry's log ID is not the trusted key's log ID.
    #[error("entry log ID {actual} is not the trusted log's ID {expected}")]
    LogIdMismatch {
        /// The trusted key's log ID (hex).
        expected: String,
        /// The entry's log ID (hex).
        actual: String,
    },
    /// `logIndex` and `inclusionProof.logIndex` differ.
    #[error("entry logIndex {entry} differs from inclusionProof.logIndex {proof}")]
    IndexMismatch {
        /// `logIndex`.
        entry: u64,
        /// `inclusionProof.logIndex`.
        proof: u64,
    },
    /// The inclusion proof's tree size or root differs from its signed checkpoint's.
    #[error("inclusionProof.{field} is {proof} but its checkpoint says {checkpoint}")]
    CheckpointMismatch {
        /// `treeSize` or `rootHash`.
        field: &'static str,
        /// The proof's value.
        proof: String,
        /// The checkpoint's value.
        checkpoint: String,
    },
    /// `kindVersion` disagrees with the canonicalized body.
    #[error("kindVersion says {declared} but the body is {body}")]
    KindMismatch {
        /// `kind/version` from `kindVersion`.
        declared: String,
        /// `kind/apiVersion` from the body.
        body: String,
    },
    /// The canonicalized body is not RFC 8785 canonical JSON.
    #[error("canonicalizedBody is not in RFC 8785 canonical form")]
    BodyNotCanonical,
    /// The body has a kind or version this client does not know.
    #[error("unsupported entry kind {kind}/{version}")]
    UnsupportedKind {
        /// The body's `kind`.
        kind: String,
        /// The body's `apiVersion`.
        version: String,
    },
    /// A hashedrekord body fails the log's own entry rules (signature, key, digest length).
    #[error("entry body is invalid: {source}")]
    BodyRejected {
        /// The rule it broke.
        #[source]
        source: rekor_entries::EntryError,
    },
    /// The body is valid but is not the canonical encoding of its own contents.
    #[error("canonicalizedBody differs from the canonical encoding of its contents")]
    BodyMismatch,
    /// The log returned a body other than the one the submitted request produces.
    #[error("the log returned a different entry body than the one submitted")]
    WrongBody,
    /// An artifact does not match the digest in the entry.
    #[error("artifact {algorithm} digest {actual} does not match the entry's {expected}")]
    ArtifactMismatch {
        /// The hash algorithm (protojson name).
        algorithm: &'static str,
        /// The entry's digest (hex).
        expected: String,
        /// The artifact's digest (hex).
        actual: String,
    },
    /// The inclusion proof does not lead to the checkpoint root.
    #[error("inclusion proof of entry {index} in tree {size} fails: {source}")]
    Inclusion {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
        /// Why.
        #[source]
        source: ProofError,
    },
    /// The log's tiles do not prove the newer checkpoint extends the older one: a fork or a
    /// rewritten history.
    #[error("checkpoint at size {new} is not consistent with the one at size {old}: {source}")]
    Inconsistent {
        /// The older tree size.
        old: u64,
        /// The newer tree size.
        new: u64,
        /// Why.
        #[source]
        source: ProofError,
    },
    /// Two checkpoints of one size have different roots: the log forked.
    #[error("two checkpoints at size {size} have different roots {first} and {second}")]
    Fork {
        /// The tree size.
        size: u64,
        /// The root seen first.
        first: Hash,
        /// The other root.
        second: Hash,
    },
    /// The log's current checkpoint is smaller than one already verified.
    #[error("the log's checkpoint went back from size {verified} to {current}")]
    Rollback {
        /// The size already verified.
        verified: u64,
        /// The size the log serves now.
        current: u64,
    },
    /// A root or proof could not be computed from the tiles the log served.
    #[error("computing a proof from the log's tiles failed: {source}")]
    Proof {
        /// Why.
        #[source]
        source: ProofError,
    },
    /// An index is not in the tree.
    #[error("entry {index} is not in the log's tree of size {size}")]
    IndexBeyondTree {
        /// The index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A hash tile has the wrong length.
    #[error("{path}: {source}")]
    TileLength {
        /// The tile path.
        path: String,
        /// Why.
        #[source]
        source: TileReadError,
    },
    /// An entry bundle does not decode, or holds the wrong number of entries.
    #[error("{path}: {source}")]
    Bundle {
        /// The bundle path.
        path: String,
        /// Why.
        #[source]
        source: BundleError,
    },
    /// Audit: a level-0 hash is not the leaf hash of its entry.
    #[error("{tile}: hash {position} is not the leaf hash of entry {index} in {bundle}")]
    LeafHashMismatch {
        /// The level-0 tile path.
        tile: String,
        /// The entry bundle path.
        bundle: String,
        /// The entry's index in the log.
        index: u64,
        /// The hash's position in the tile.
        position: usize,
    },
    /// Audit: a hash in a tile above level 0 is not the root of the tile below it.
    #[error("{tile}: hash {position} is {found}, but the tiles below give {computed}")]
    TileMismatch {
        /// The tile path.
        tile: String,
        /// The hash's position in the tile.
        position: usize,
        /// The hash the log served.
        found: Hash,
        /// The hash recomputed from the level below.
        computed: Hash,
    },
    /// Audit: the root computed from all entries is not the checkpoint's root.
    #[error("the root of all {size} entries is {computed}, but the checkpoint says {expected}")]
    RootMismatch {
        /// The tree size.
        size: u64,
        /// The checkpoint root.
        expected: Hash,
        /// The root recomputed from the entries.
        computed: Hash,
    },
    /// A saved audit or monitor state cannot be used.
    #[error("invalid state: {reason}")]
    State {
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// Whether the error is a failed check: the log (or a file, or an artifact) says something
    /// that does not verify, as opposed to a log that cannot be reached or a misused API.
    #[must_use]
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            Error::Checkpoint { .. }
                | Error::LogIdMismatch { .. }
                | Error::IndexMismatch { .. }
                | Error::CheckpointMismatch { .. }
                | Error::KindMismatch { .. }
                | Error::BodyNotCanonical
                | Error::BodyRejected { .. }
                | Error::BodyMismatch
                | Error::WrongBody
                | Error::ArtifactMismatch { .. }
                | Error::Inclusion { .. }
                | Error::Inconsistent { .. }
                | Error::Fork { .. }
                | Error::Rollback { .. }
                | Error::TileLength { .. }
                | Error::Bundle { .. }
                | Error::LeafHashMismatch { .. }
                | Error::TileMismatch { .. }
                | Error::RootMismatch { .. }
                | Error::SearchAnswer { .. }
        )
    }
}

/// This crate's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
