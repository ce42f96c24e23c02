//! Rekor v2 entry validation: `hashedrekord` v0.0.2 and `dsse` v0.0.2 requests become a
//! validated entry and its canonical leaf bytes.
//!
//! Implements the entry rules of Sigstore's Rekor v2 (rekor-tiles `pkg/types/hashedrekord`,
//! and the `dsse` type it carried before dropping it), the Sigstore client signing algorithm
//! registry (protobuf-specs `PublicKeyDetails`, sigstore `pkg/signature` flag names), the DSSE
//! v1 pre-authentication encoding, and RFC 8785 (JCS) canonical JSON of the protojson
//! `dev.sigstore.rekor.v2.Entry` for the leaf.
//!
//! Main items: [`validate_hashed_rekord`], [`validate_dsse`], [`ValidatedEntry`],
//! [`AlgorithmRegistry`] and [`SigningAlgorithm`], [`VerificationKey`] (the bare verifier),
//! and [`EntryError`]. The request types in [`input`] mirror the protobuf messages. The crate
//! is pure: no I/O, clock or randomness.
//!
//! ```
//! use aws_lc_rs::encoding::AsDer;
//! use aws_lc_rs::rand::SystemRandom;
//! use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
//! use rekor_entries::input::{HashedRekordRequest, SignatureInput, VerifierInput, VerifierKey};
//! use rekor_entries::{validate_hashed_rekord, AlgorithmRegistry, EntryKind, SigningAlgorithm};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A client signs an artifact with P-256 (keys and randomness come from the caller).
//! let rng = SystemRandom::new();
//! let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)?;
//! let signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())?;
//! let artifact = b"hello, rekor";
//! let signature = signer.sign(&rng, artifact)?;
//! let spki = signer.public_key().as_der()?;
//!
//! let request = HashedRekordRequest {
//!     digest: aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, artifact).as_ref().to_vec(),
//!     signature: Some(SignatureInput {
//!         content: signature.as_ref().to_vec(),
//!         verifier: Some(VerifierInput {
//!             key: Some(VerifierKey::PublicKey(spki.as_ref().to_vec())),
//!             key_details: SigningAlgorithm::EcdsaP256Sha256.key_details(),
//!         }),
//!     }),
//! };
//! let entry = validate_hashed_rekord(&request, &AlgorithmRegistry::default())?;
//! assert_eq!(entry.kind, EntryKind::HashedRekord);
//! assert!(entry.canonical.starts_with(br#"{"apiVersion":"0.0.2","kind":"hashedrekord","#));
//! # Ok(())
//! # }
//! ```
#![deny(clippy::as_conversions)]

mod algorithm;
mod dsse;
mod error;
mod hashedrekord;
pub mod input;
mod key;
mod leaf;
pub mod search;

pub use algorithm::{AlgorithmRegistry, HashAlgorithm, SigningAlgorithm, public_key_details};
pub use dsse::{pae, validate_dsse};
pub use error::{EntryError, KeyDetailsProblem, KeyProblem, SignatureAt, VerifierAt};
pub use hashedrekord::validate_hashed_rekord;
pub use key::{KeyType, VerificationKey};

/// The `apiVersion` of every entry this crate builds.
pub const ENTRY_API_VERSION: &str = "0.0.2";

/// The longest canonical entry: what one entry bundle slot holds. The rule (a big-endian `uint16`
/// length, C2SP tlog-tiles) is stated once, in `rekor-tlog`; entries are refused here, before they
/// are logged, against that same number.
pub const MAX_ENTRY_LEN: usize = rekor_tlog::MAX_ENTRY_SIZE;

/// The longest signature accepted. The longest valid one is an RSA-4096 signature (512 bytes).
pub const MAX_SIGNATURE_LEN: usize = 1024;

/// The longest verifier (DER public key or certificate) accepted.
pub const MAX_VERIFIER_LEN: usize = 32 * 1024;

/// The most signatures a DSSE envelope may carry (rekor-tiles' `maxSignatures`).
pub const MAX_DSSE_SIGNATURES: usize = 10;

/// The most verifiers a DSSE request may carry (rekor-tiles' `maxVerifiers`).
pub const MAX_DSSE_VERIFIERS: usize = 10;

/// The longest DSSE payload accepted (it is hashed, not logged): the default request body limit.
pub const MAX_DSSE_PAYLOAD_LEN: usize = 4 * 1024 * 1024;

/// The longest DSSE `payloadType` accepted.
pub const MAX_DSSE_PAYLOAD_TYPE_LEN: usize = 1024;

/// The kind of a Rekor v2 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// `hashedrekord`.
    HashedRekord,
    /// `dsse`.
    Dsse,
}

impl EntryKind {
    /// The `kind` string (`"hashedrekord"` or `"dsse"`).
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::HashedRekord => "hashedrekord",
            Self::Dsse => "dsse",
        }
    }

    /// The `apiVersion` string (`"0.0.2"`).
    #[must_use]
    pub const fn version(&self) -> &'static str {
        ENTRY_API_VERSION
    }
}

/// A request that passed validation: its kind and the canonical leaf bytes to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedEntry {
    /// The entry kind.
    pub kind: EntryKind,
    /// The leaf: RFC 8785 canonical JSON of the protojson `Entry`, at most [`MAX_ENTRY_LEN`] bytes.
    pub canonical: Vec<u8>,
}
