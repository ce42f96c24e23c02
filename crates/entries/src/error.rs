//! The crate's error type and the small enums its variants carry.

use core::fmt;

use crate::algorithm::SigningAlgorithm;
use crate::key::KeyType;

/// Where a verifier sits in the request, named by its protojson field path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VerifierAt {
    /// `hashedRekordRequestV002.signature.verifier`.
    HashedRekord,
    /// `dsseRequestV002.verifiers[i]`.
    Dsse(usize),
}

impl fmt::Display for VerifierAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HashedRekord => f.write_str("hashedRekordRequestV002.signature.verifier"),
            Self::Dsse(i) => write!(f, "dsseRequestV002.verifiers[{i}]"),
        }
    }
}

/// Where a signature sits in the request, named by its protojson field path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureAt {
    /// `hashedRekordRequestV002.signature.content`.
    HashedRekord,
    /// `dsseRequestV002.envelope.signatures[i].sig`.
    Dsse(usize),
}

impl fmt::Display for SignatureAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HashedRekord => f.write_str("hashedRekordRequestV002.signature.content"),
            Self::Dsse(i) => write!(f, "dsseRequestV002.envelope.signatures[{i}].sig"),
        }
    }
}

/// Why a `PublicKeyDetails` value is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyDetailsProblem {
    /// `PUBLIC_KEY_DETAILS_UNSPECIFIED` (0): the client named no algorithm.
    Unspecified,
    /// A value protobuf-specs marks `deprecated` (e.g. `PKIX_ECDSA_P384_SHA_256`).
    Deprecated,
    /// `PKIX_ED25519`: pure Ed25519 signs the message itself, and Rekor v2 holds only a digest.
    PureEd25519,
    /// A current algorithm outside Rekor v2's registry (RSA-PSS, ML-DSA).
    NotSupported,
    /// A number protobuf-specs does not define.
    Unknown,
}

impl fmt::Display for KeyDetailsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "no algorithm given (PUBLIC_KEY_DETAILS_UNSPECIFIED)",
            Self::Deprecated => "the algorithm is deprecated",
            Self::PureEd25519 => {
                "pure Ed25519 cannot be verified from a digest; use PKIX_ED25519_PH"
            }
            Self::NotSupported => "the algorithm is not in Rekor v2's signing algorithm registry",
            Self::Unknown => "unknown PublicKeyDetails value",
        })
    }
}

/// Why a DER-decodable public key is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyProblem {
    /// The SubjectPublicKeyInfo algorithm is not RSA, EC or Ed25519.
    UnsupportedAlgorithm,
    /// The EC key is on a curve other than P-256, P-384 or P-521, or uses explicit curve parameters.
    UnsupportedCurve,
    /// The algorithm parameters are not the ones the algorithm requires
    /// (RSA: NULL; EC: a named-curve OID; Ed25519: absent).
    BadParameters,
    /// The key BIT STRING has unused bits.
    UnusedBits,
    /// The EC point is not an uncompressed point on the curve.
    InvalidPoint,
    /// The Ed25519 key is not 32 bytes encoding a curve point.
    InvalidEd25519Key,
    /// The RSA key is not a valid `RSAPublicKey` or was rejected by the verifier.
    InvalidRsaKey,
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnsupportedAlgorithm => "unsupported key algorithm (want RSA, EC or Ed25519)",
            Self::UnsupportedCurve => "unsupported elliptic curve (want P-256, P-384 or P-521)",
            Self::BadParameters => "invalid algorithm parameters",
            Self::UnusedBits => "key bit string has unused bits",
            Self::InvalidPoint => "EC public key is not an uncompressed point on the curve",
            Self::InvalidEd25519Key => "Ed25519 public key is not a valid 32-byte point",
            Self::InvalidRsaKey => "invalid RSA public key",
        })
    }
}

/// Every way a Rekor v2 entry request, or the signing algorithm configuration, can be refused.
///
/// Each request variant names the field and the rule it broke; the server maps all of them
/// to HTTP 400 / gRPC `InvalidArgument`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// `hashedRekordRequestV002.digest` is empty.
    #[error("hashedRekordRequestV002.digest: missing digest")]
    MissingDigest,
    /// `hashedRekordRequestV002.signature` is absent.
    #[error("hashedRekordRequestV002.signature: missing signature")]
    MissingSignature,
    /// A signature's bytes are empty.
    #[error("{at}: empty signature")]
    EmptySignature {
        /// The signature.
        at: SignatureAt,
    },
    /// A signature is longer than [`crate::MAX_SIGNATURE_LEN`].
    #[error("{at}: signature is {len} bytes, more than the {max}-byte limit")]
    SignatureTooLarge {
        /// The signature.
        at: SignatureAt,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `hashedRekordRequestV002.signature.verifier` is absent.
    #[error("hashedRekordRequestV002.signature.verifier: missing verifier")]
    MissingVerifier,
    /// A verifier has neither `publicKey` nor `x509Certificate`.
    #[error("{at}: missing publicKey or x509Certificate")]
    MissingVerifierKey {
        /// The verifier.
        at: VerifierAt,
    },
    /// A verifier's `publicKey.rawBytes` or `x509Certificate.rawBytes` is empty.
    #[error("{at}: empty rawBytes")]
    EmptyVerifierKey {
        /// The verifier.
        at: VerifierAt,
    },
    /// A verifier's raw bytes are longer than [`crate::MAX_VERIFIER_LEN`].
    #[error("{at}: verifier is {len} bytes, more than the {max}-byte limit")]
    VerifierTooLarge {
        /// The verifier.
        at: VerifierAt,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `publicKey.rawBytes` is not a DER SubjectPublicKeyInfo.
    #[error("{at}: publicKey is not a DER SubjectPublicKeyInfo: {source}")]
    MalformedPublicKey {
        /// The verifier.
        at: VerifierAt,
        /// The DER decoding error.
        source: der::Error,
    },
    /// The public key (given directly or inside the certificate) decodes but is not usable.
    #[error("{at}: invalid public key: {problem}")]
    InvalidPublicKey {
        /// The verifier.
        at: VerifierAt,
        /// What is wrong with it.
        problem: KeyProblem,
    },
    /// `x509Certificate.rawBytes` is not a DER X.509 certificate.
    #[error("{at}: x509Certificate is not a DER X.509 certificate: {source}")]
    InvalidCertificate {
        /// The verifier.
        at: VerifierAt,
        /// The DER decoding error.
        source: der::Error,
    },
    /// `keyDetails` names no algorithm Rekor v2 accepts.
    #[error("{at}.keyDetails: unsupported value {key_details}: {problem}")]
    UnsupportedKeyDetails {
        /// The verifier.
        at: VerifierAt,
        /// The `PublicKeyDetails` number given.
        key_details: i32,
        /// Why it is refused.
        problem: KeyDetailsProblem,
    },
    /// `keyDetails` names an algorithm this log's operator has not allowed.
    #[error("{at}.keyDetails: {} is not allowed by this log", algorithm.key_details_name())]
    AlgorithmNotAllowed {
        /// The verifier.
        at: VerifierAt,
        /// The algorithm named.
        algorithm: SigningAlgorithm,
    },
    /// The key does not fit `keyDetails` (type, curve or RSA modulus size).
    #[error("{at}: keyDetails is {} but the key is {actual}", algorithm.key_details_name())]
    KeyMismatch {
        /// The verifier.
        at: VerifierAt,
        /// The algorithm named by `keyDetails`.
        algorithm: SigningAlgorithm,
        /// The key actually given.
        actual: KeyType,
    },
    /// The digest length is not the output size of the algorithm's hash.
    #[error(
        "hashedRekordRequestV002.digest: {actual} bytes, but {} needs a {expected}-byte digest",
        algorithm.key_details_name()
    )]
    DigestLength {
        /// The algorithm named by `keyDetails`.
        algorithm: SigningAlgorithm,
        /// The hash output size.
        expected: usize,
        /// The digest length given.
        actual: usize,
    },
    /// The signature does not verify (for DSSE: under no verifier given).
    #[error("{at}: signature verification failed")]
    SignatureInvalid {
        /// The signature.
        at: SignatureAt,
    },
    /// `dsseRequestV002.envelope` is absent.
    #[error("dsseRequestV002.envelope: missing envelope")]
    MissingEnvelope,
    /// `dsseRequestV002.envelope.signatures` is empty.
    #[error("dsseRequestV002.envelope.signatures: no signatures")]
    MissingEnvelopeSignatures,
    /// More envelope signatures than [`crate::MAX_DSSE_SIGNATURES`].
    #[error(
        "dsseRequestV002.envelope.signatures: {count} signatures, more than the limit of {max}"
    )]
    TooManySignatures {
        /// The number given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// `dsseRequestV002.verifiers` is empty.
    #[error("dsseRequestV002.verifiers: no verifiers")]
    MissingVerifiers,
    /// More verifiers than [`crate::MAX_DSSE_VERIFIERS`].
    #[error("dsseRequestV002.verifiers: {count} verifiers, more than the limit of {max}")]
    TooManyVerifiers {
        /// The number given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Two verifiers carry the same raw bytes.
    #[error("dsseRequestV002.verifiers[{duplicate}]: duplicate of verifiers[{first}]")]
    DuplicateVerifier {
        /// The index of the first occurrence.
        first: usize,
        /// The index of the repeat.
        duplicate: usize,
    },
    /// A DSSE verifier verifies none of the envelope's signatures.
    #[error("{at}: verifies none of the envelope signatures")]
    UnusedVerifier {
        /// The verifier.
        at: VerifierAt,
    },
    /// A DSSE verifier is the verifier of two different signatures.
    #[error("{at}: verifies both envelope signatures[{first}] and signatures[{second}]")]
    VerifierReused {
        /// The verifier.
        at: VerifierAt,
        /// The first signature it verified.
        first: usize,
        /// The second, different, signature it verified.
        second: usize,
    },
    /// `dsseRequestV002.envelope.payload` is longer than [`crate::MAX_DSSE_PAYLOAD_LEN`].
    #[error("dsseRequestV002.envelope.payload: {len} bytes, more than the {max}-byte limit")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `dsseRequestV002.envelope.payloadType` is longer than [`crate::MAX_DSSE_PAYLOAD_TYPE_LEN`].
    #[error("dsseRequestV002.envelope.payloadType: {len} bytes, more than the {max}-byte limit")]
    PayloadTypeTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The canonical entry is longer than an entry bundle can hold ([`crate::MAX_ENTRY_LEN`]).
    #[error("canonical entry is {len} bytes, more than the {max}-byte entry limit")]
    EntryTooLarge {
        /// The canonical entry length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The entry could not be serialised as JSON (not expected: it holds only strings).
    #[error("canonical JSON encoding failed: {source}")]
    Canonicalization {
        /// The serialiser error.
        source: serde_json::Error,
    },
    /// A `--client-signing-algorithms` name is not a Sigstore algorithm flag name.
    #[error("unknown signing algorithm name {name:?}")]
    UnknownAlgorithmName {
        /// The name given.
        name: String,
    },
    /// A `--client-signing-algorithms` name is a Sigstore algorithm outside Rekor v2's allowed set.
    #[error("signing algorithm {name:?} is not in the allowed set")]
    AlgorithmNameNotAllowed {
        /// The name given.
        name: String,
    },
    /// `--client-signing-algorithms` names no algorithm.
    #[error("no client signing algorithm given")]
    NoAlgorithms,
}

/// Why a query term is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TermError {
    /// A digest or key is not `<algorithm>:<hex>`.
    #[error("{kind} must be <algorithm>:<hex>, e.g. sha256:<64 hex digits>")]
    NotAlgorithmHex {
        /// The parameter.
        kind: &'static str,
    },
    /// The algorithm is not one the log records.
    #[error("{kind}: unsupported algorithm {algorithm:?} (supported: {supported})")]
    UnsupportedAlgorithm {
        /// The parameter.
        kind: &'static str,
        /// The algorithm given.
        algorithm: String,
        /// The algorithms accepted.
        supported: &'static str,
    },
    /// The hex part has the wrong length or a non-hex digit.
    #[error("{kind}: {algorithm} needs {expected} lowercase or uppercase hex digits")]
    BadHex {
        /// The parameter.
        kind: &'static str,
        /// The algorithm.
        algorithm: &'static str,
        /// The number of hex digits expected.
        expected: usize,
    },
    /// An identity is empty, too long or holds control characters.
    #[error("identity must be 1 to {max} bytes without control characters", max = crate::search::MAX_IDENTITY_LEN)]
    BadIdentity,
}
