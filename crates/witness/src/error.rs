//! The one error type of this crate.

use rekor_note::NoteError;

/// What can be wrong with a witness policy, an `add-checkpoint` exchange or a cosignature.
///
/// Policy errors carry the 1-based line number they were found on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    // ----- policy file -----
    /// The policy file is larger than [`crate::MAX_POLICY_SIZE`].
    #[error("witness policy is {size} bytes, the limit is {max}")]
    PolicyTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A line is not valid UTF-8.
    #[error("witness policy line {line}: not valid UTF-8")]
    PolicyNotUtf8 {
        /// The line.
        line: usize,
    },
    /// A control character other than tab (or the newline ending the line) appears.
    #[error(
        "witness policy line {line}: control character 0x{byte:02x} (only tab and newline are allowed)"
    )]
    PolicyControlCharacter {
        /// The line.
        line: usize,
        /// The byte.
        byte: u8,
    },
    /// A line starts with a word that is not `log`, `witness`, `group` or `quorum`.
    #[error(
        "witness policy line {line}: unknown keyword {keyword:?} (expected log, witness, group or quorum)"
    )]
    UnknownKeyword {
        /// The line.
        line: usize,
        /// The word.
        keyword: String,
    },
    /// A line has too few or too many items for its keyword.
    #[error("witness policy line {line}: `{keyword}` takes {expected}, found {found} item(s)")]
    FieldCount {
        /// The line.
        line: usize,
        /// The keyword.
        keyword: &'static str,
        /// What the keyword takes.
        expected: &'static str,
        /// How many items followed it.
        found: usize,
    },
    /// A witness or group is named `none`, which the quorum line reserves.
    #[error("witness policy line {line}: the name \"none\" is reserved")]
    ReservedName {
        /// The line.
        line: usize,
    },
    /// A witness or group name was already defined.
    #[error("witness policy line {line}: {name:?} is already defined on line {first_line}")]
    DuplicateName {
        /// The line.
        line: usize,
        /// The name.
        name: String,
        /// Where it was defined first.
        first_line: usize,
    },
    /// A witness vkey does not parse, or is not an Ed25519 `cosignature/v1` key (type 0x04).
    #[error("witness policy line {line}: witness {name:?} key: {source}")]
    WitnessKey {
        /// The line.
        line: usize,
        /// The witness.
        name: String,
        /// Why the vkey was refused.
        #[source]
        source: NoteError,
    },
    /// Two witnesses share a public key.
    #[error("witness policy line {line}: witness {name:?} has the same public key as {other:?}")]
    DuplicateWitnessKey {
        /// The line.
        line: usize,
        /// The witness.
        name: String,
        /// The witness defined earlier with that key.
        other: String,
    },
    /// A witness has no URL: the log must know where to send checkpoints.
    #[error(
        "witness policy line {line}: witness {name:?} has no URL (a log needs each witness's submission prefix)"
    )]
    MissingWitnessUrl {
        /// The line.
        line: usize,
        /// The witness.
        name: String,
    },
    /// A witness URL is not an `http://` or `https://` URL with a host, or has a query or fragment.
    #[error(
        "witness policy line {line}: witness {name:?} URL {url:?} is not an http(s) URL with a host and no query or fragment"
    )]
    WitnessUrl {
        /// The line.
        line: usize,
        /// The witness.
        name: String,
        /// The URL.
        url: String,
    },
    /// A group threshold is not `any`, `all` or a decimal number.
    #[error(
        "witness policy line {line}: group {group:?} threshold {threshold:?} is not any, all or a number"
    )]
    Threshold {
        /// The line.
        line: usize,
        /// The group.
        group: String,
        /// The threshold as written.
        threshold: String,
    },
    /// A numeric group threshold is outside 1..=members.
    #[error(
        "witness policy line {line}: group {group:?} threshold {threshold} is outside 1..={members}"
    )]
    ThresholdRange {
        /// The line.
        line: usize,
        /// The group.
        group: String,
        /// The threshold.
        threshold: u64,
        /// How many members the group lists.
        members: usize,
    },
    /// A group member or the quorum names nothing defined on an earlier line.
    #[error(
        "witness policy line {line}: {name:?} is not a witness or group defined on an earlier line"
    )]
    Undefined {
        /// The line.
        line: usize,
        /// The name.
        name: String,
    },
    /// A name is listed as a group member a second time (the spec allows each name once).
    #[error(
        "witness policy line {line}: {name:?} is already a member of a group (line {first_line})"
    )]
    RepeatedMember {
        /// The line.
        line: usize,
        /// The name.
        name: String,
        /// The line that listed it first.
        first_line: usize,
    },
    /// A second `quorum` line.
    #[error("witness policy line {line}: a second quorum line (the first is on line {first_line})")]
    SecondQuorum {
        /// The line.
        line: usize,
        /// The first quorum line.
        first_line: usize,
    },
    /// The policy has no `quorum` line.
    #[error("witness policy has no quorum line")]
    NoQuorum,
    /// More witnesses or groups than [`crate::MAX_POLICY_ENTRIES`].
    #[error("witness policy line {line}: more than {max} witnesses or groups")]
    TooManyEntries {
        /// The line.
        line: usize,
        /// The limit.
        max: usize,
    },

    // ----- add-checkpoint request -----
    /// A consistency proof longer than tlog-witness allows.
    #[error("consistency proof has {len} hashes, tlog-witness allows at most {max}")]
    ProofTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A non-empty proof from size zero (the spec requires it empty).
    #[error("a consistency proof from size 0 must be empty")]
    ProofFromZero,
    /// An `add-checkpoint` body is larger than [`crate::MAX_REQUEST_SIZE`].
    #[error("add-checkpoint body is {size} bytes, the limit is {max}")]
    RequestTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The first line of an `add-checkpoint` body is not `old <decimal>`.
    #[error("add-checkpoint body does not start with an `old <size>` line")]
    OldSizeLine,
    /// A proof line is not the base64 of a 32-byte hash.
    #[error("add-checkpoint proof line {line} is not a base64 hash")]
    ProofLine {
        /// The 1-based proof line.
        line: usize,
    },
    /// The body ends before the blank line that ends the proof.
    #[error("add-checkpoint body has no blank line before the checkpoint")]
    MissingBlankLine,

    // ----- responses -----
    /// A response body is larger than [`crate::MAX_RESPONSE_SIZE`].
    #[error("witness response is {size} bytes, the limit is {max}")]
    ResponseTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A 200 body that is not one or more newline-terminated note signature lines.
    #[error("witness response line {line}: {source}")]
    ResponseLine {
        /// The 1-based line.
        line: usize,
        /// Why it is not a signature line.
        #[source]
        source: NoteError,
    },
    /// A 200 body that is empty or does not end in a newline.
    #[error("witness response is not newline-terminated signature lines")]
    ResponseFraming,
    /// A 409 body that is not a decimal tree size followed by a newline.
    #[error("witness conflict body {body:?} is not a tree size")]
    SizeBody {
        /// The body (cut to 64 bytes).
        body: String,
    },
    /// None of the response's lines is a signature by the witness's key.
    #[error("the response has no cosignature from witness key {name:?}")]
    NoCosignature {
        /// The witness's key name.
        name: String,
    },
    /// A line from the witness's key does not verify over the checkpoint.
    #[error("a cosignature from {name:?} does not verify: {source}")]
    BadCosignature {
        /// The witness's key name.
        name: String,
        /// The verification error.
        #[source]
        source: NoteError,
    },
    /// The checkpoint sent to the witness is not a well-formed signed note.
    #[error("the checkpoint is not a signed note: {0}")]
    Checkpoint(#[source] NoteError),
}
