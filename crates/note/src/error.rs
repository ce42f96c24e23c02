//! The one error type of this crate.

/// Everything that can go wrong while parsing, signing or verifying notes, checkpoints and keys.
///
/// Variants are structured so callers (and tests) can branch on the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    // ----- key names and origins -----
    /// A key name was empty.
    #[error("key name is empty")]
    EmptyKeyName,
    /// A key name was longer than [`crate::MAX_KEY_NAME_LEN`] bytes.
    #[error("key name is {len} bytes long, the limit is {max}")]
    KeyNameTooLong {
        /// Length of the rejected name in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A key name contained a Unicode space, a `+` or a control character.
    #[error("key name contains the forbidden character {ch:?}")]
    KeyNameInvalidChar {
        /// The first forbidden character.
        ch: char,
    },
    /// A checkpoint origin was empty.
    #[error("checkpoint origin is empty")]
    EmptyOrigin,
    /// A checkpoint origin contained a newline or another control character.
    #[error("checkpoint origin contains the forbidden character {ch:?}")]
    OriginInvalidChar {
        /// The first forbidden character.
        ch: char,
    },

    // ----- signed-note framing -----
    /// The note is larger than [`crate::MAX_NOTE_SIZE`].
    #[error("note is {size} bytes, the limit is {max}")]
    NoteTooLarge {
        /// Size of the note in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The note is not valid UTF-8.
    #[error("note is not valid UTF-8")]
    NotUtf8,
    /// The note contains an ASCII control character other than newline.
    #[error("note contains a control character at byte {offset}")]
    ControlCharacter {
        /// Byte offset of the character.
        offset: usize,
    },
    /// The note has no blank line separating the text from the signatures.
    #[error("note has no blank line before its signatures")]
    MissingSignatureSeparator,
    /// The note has a blank line but no signature lines after it.
    #[error("note has no signature lines")]
    EmptySignatureBlock,
    /// The last signature line does not end with a newline.
    #[error("note does not end with a newline")]
    SignatureBlockNotTerminated,
    /// A signature line does not have the form `— <name> <base64>`.
    #[error("signature line {line} is malformed")]
    MalformedSignatureLine {
        /// 1-based index of the line within the signature block.
        line: usize,
    },
    /// A signature line names an invalid key name.
    #[error("signature line {line} has an invalid key name")]
    SignatureLineKeyName {
        /// 1-based index of the line within the signature block.
        line: usize,
    },
    /// A signature line's signature is not canonical padded standard base64.
    #[error("signature line {line} has invalid base64")]
    SignatureBase64 {
        /// 1-based index of the line within the signature block.
        line: usize,
    },
    /// A signature decodes to fewer than 5 bytes (4-byte key ID and at least one signature byte).
    #[error("signature line {line} decodes to {len} bytes, at least 5 are needed")]
    SignatureTooShort {
        /// 1-based index of the line within the signature block.
        line: usize,
        /// Decoded length.
        len: usize,
    },
    /// The note carries more than [`crate::MAX_NOTE_SIGNATURES`] signature lines.
    #[error("note has more than {max} signatures")]
    TooManySignatures {
        /// The limit.
        max: usize,
    },
    /// Note text to be signed does not end with a newline.
    #[error("note text does not end with a newline")]
    TextNotNewlineTerminated,
    /// [`crate::sign_note`] was called without signers, or a note was built without signatures.
    #[error("a note needs at least one signature")]
    NoSignatures,

    // ----- signing and verification -----
    /// A signer failed to produce a signature.
    #[error("signer {name} failed to sign")]
    SigningFailed {
        /// Name of the signer.
        name: String,
    },
    /// A signature from a known key (matching name and key ID) did not verify.
    #[error("signature by known key {name} (key ID {key_id:02x?}) does not verify")]
    SignatureVerificationFailed {
        /// Key name on the signature line.
        name: String,
        /// Key ID on the signature line.
        key_id: [u8; 4],
    },
    /// No signature from any known key was found on the note.
    #[error("note has no signature from a known key")]
    NoVerifiedSignature,
    /// The log's own signature is missing from a checkpoint (only cosignatures verified).
    #[error("checkpoint has no signature from the log key {name}")]
    MissingLogSignature {
        /// The log key name.
        name: String,
    },
    /// A checkpoint's origin line differs from the key name of the log that signs it.
    #[error("checkpoint origin {origin:?} differs from log key name {key_name:?}")]
    OriginMismatch {
        /// The checkpoint origin.
        origin: String,
        /// The log's key name.
        key_name: String,
    },

    /// An ML-DSA-44 cosignature was asked for a checkpoint with extension lines, which its
    /// signed message does not cover (tlog-cosignature, "ML-DSA-44 signed message").
    #[error(
        "ML-DSA-44 checkpoint signatures do not cover extension lines; the checkpoint has some"
    )]
    MlDsaCheckpointExtensions,
    /// A checkpoint origin is too long for the one-byte length of the ML-DSA-44 signed message.
    #[error("checkpoint origin is {len} bytes; ML-DSA-44 signatures allow at most 255")]
    MlDsaOriginTooLong {
        /// Length of the origin in bytes.
        len: usize,
    },
    /// A second log key was given a key name other than the log's.
    #[error("second log key is named {found:?}, the log key is named {expected:?}")]
    KeyNameMismatch {
        /// The log's key name.
        expected: String,
        /// The second key's name.
        found: String,
    },
    /// Two log keys with the same name have the same 4-byte key ID, so verifiers could not tell
    /// their signature lines apart.
    #[error("the two log keys share the key ID {key_id:02x?}; generate another key")]
    KeyIdCollision {
        /// The shared key ID.
        key_id: [u8; 4],
    },

    // ----- checkpoints -----
    /// The checkpoint text does not end with a newline.
    #[error("checkpoint text does not end with a newline")]
    CheckpointNotNewlineTerminated,
    /// The checkpoint has fewer than three lines.
    #[error("checkpoint has {lines} lines, at least 3 are needed")]
    CheckpointTooFewLines {
        /// Number of lines found.
        lines: usize,
    },
    /// A checkpoint line (origin, size, root or an extension) is empty.
    #[error("checkpoint line {line} is empty")]
    CheckpointEmptyLine {
        /// 1-based line number.
        line: usize,
    },
    /// An extension line contains a newline or a control character.
    #[error("checkpoint extension line {index} contains a forbidden character")]
    CheckpointExtensionInvalid {
        /// 0-based index into [`crate::Checkpoint::extensions`].
        index: usize,
    },
    /// The tree size is not an ASCII decimal number.
    #[error("checkpoint tree size is not a decimal number")]
    TreeSizeNotDecimal,
    /// The tree size has a leading zero.
    #[error("checkpoint tree size has a leading zero")]
    TreeSizeLeadingZero,
    /// The tree size does not fit in 64 bits.
    #[error("checkpoint tree size does not fit in 64 bits")]
    TreeSizeOverflow,
    /// The root hash is not canonical padded standard base64.
    #[error("checkpoint root hash is not valid base64")]
    RootHashBase64,
    /// The root hash does not decode to 32 bytes.
    #[error("checkpoint root hash is {len} bytes, 32 are needed")]
    RootHashLength {
        /// Decoded length.
        len: usize,
    },

    // ----- verifier keys (vkeys) -----
    /// A verifier key string does not have the form `<name>+<hex8>+<base64>`.
    #[error("verifier key is not of the form name+hex+base64")]
    MalformedVkey,
    /// The key ID part of a verifier key is not 8 hex digits (lowercase per spec; uppercase is
    /// accepted, as Go does).
    #[error("verifier key ID is not 8 hex digits")]
    VkeyKeyIdHex,
    /// The key part of a verifier key is not valid base64.
    #[error("verifier key material is not valid base64")]
    VkeyBase64,
    /// A verifier key has a signature type this verifier does not accept.
    #[error("verifier key has unsupported signature type 0x{sig_type:02x}")]
    UnsupportedVkeyType {
        /// The signature type byte.
        sig_type: u8,
    },
    /// The key ID stated in a verifier key differs from the one computed from its key material.
    #[error("verifier key states key ID {stated:02x?} but its key has {computed:02x?}")]
    VkeyKeyIdMismatch {
        /// Key ID written in the vkey.
        stated: [u8; 4],
        /// Key ID computed from name, type and key.
        computed: [u8; 4],
    },

    // ----- key material -----
    /// No PEM block holding a private key was found, or the PEM framing is broken.
    #[error("input is not a PEM private key")]
    InvalidPem,
    /// The PEM block's label is not a supported private key type.
    #[error("unsupported PEM block {label:?}")]
    UnsupportedPemLabel {
        /// The PEM label (e.g. `RSA PRIVATE KEY`).
        label: String,
    },
    /// A legacy OpenSSL-encrypted PEM block (`Proc-Type: 4,ENCRYPTED`) was found.
    #[error(
        "legacy encrypted PEM (Proc-Type header) is not supported; convert with openssl pkcs8 -topk8"
    )]
    LegacyEncryptedPem,
    /// The key is encrypted but no password was given.
    #[error("private key is encrypted and no password was given")]
    PasswordRequired,
    /// Decryption failed: wrong password, or corrupt or unsupported encryption parameters.
    #[error("private key could not be decrypted (wrong password?)")]
    DecryptionFailed,
    /// The private key DER structure could not be decoded.
    #[error("private key structure is invalid")]
    InvalidPrivateKey,
    /// The public key (SPKI DER or raw key) could not be decoded.
    #[error("public key is invalid")]
    InvalidPublicKey,
    /// The key's algorithm is not Ed25519 or ECDSA.
    #[error("unsupported key algorithm {oid}")]
    UnsupportedKeyAlgorithm {
        /// Dotted OID of the algorithm.
        oid: String,
    },
    /// The ECDSA key is on a curve other than P-256 or P-384.
    #[error("unsupported elliptic curve {oid}")]
    UnsupportedCurve {
        /// Dotted OID of the curve, or `none` when the key names no curve.
        oid: String,
    },
    /// An ML-DSA-44 PKCS#8 key holds neither RFC 9881's seed form nor its seed-and-expanded-key
    /// form, or the two halves of the latter disagree.
    #[error(
        "ML-DSA-44 private key is not in RFC 9881 seed (or seed and expanded key) form, or its halves disagree"
    )]
    MlDsaPrivateKeyForm,
    /// Encoding a key to DER or PEM failed.
    #[error("key could not be encoded")]
    KeyEncoding,
    /// A cosignature timestamp exceeds 2^63 - 1.
    #[error("cosignature timestamp {timestamp} exceeds 2^63-1")]
    TimestampOutOfRange {
        /// The rejected timestamp.
        timestamp: u64,
    },
}
