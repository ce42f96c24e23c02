//! `hashedrekord` v0.0.2: a signature over an artifact digest.

use crate::algorithm::{AlgorithmRegistry, SigningAlgorithm};
use crate::error::{EntryError, SignatureAt, VerifierAt};
use crate::input::{HashedRekordRequest, VerifierInput};
use crate::key::VerificationKey;
use crate::leaf::{self, B64, HashOutput, HashedRekordLogEntry, Signature, Spec, Verifier};
use crate::{EntryKind, MAX_SIGNATURE_LEN, MAX_VERIFIER_LEN, ValidatedEntry};

/// Validates a hashedrekord v0.0.2 request, verifies its signature, and builds the canonical
/// leaf.
///
/// Checks, in order: `signature` present with non-empty `content`, `verifier` present,
/// `digest` non-empty, the verifier holds a public key or certificate with non-empty bytes,
/// size limits, the key parses, `keyDetails` names a Rekor v2 algorithm that `registry`
/// allows and that fits the key, the digest length equals the algorithm's hash size, the leaf
/// fits an entry bundle, and finally the signature verifies over the digest.
///
/// # Errors
/// The first rule broken, as an [`EntryError`] naming the field.
pub fn validate_hashed_rekord(
    req: &HashedRekordRequest,
    registry: &AlgorithmRegistry,
) -> Result<ValidatedEntry, EntryError> {
    let sig_at = SignatureAt::HashedRekord;
    let at = VerifierAt::HashedRekord;
    let signature = req.signature.as_ref().ok_or(EntryError::MissingSignature)?;
    if signature.content.is_empty() {
        return Err(EntryError::EmptySignature { at: sig_at });
    }
    let verifier = signature
        .verifier
        .as_ref()
        .ok_or(EntryError::MissingVerifier)?;
    if req.digest.is_empty() {
        return Err(EntryError::MissingDigest);
    }
    check_verifier_shape(verifier, at)?;
    check_signature_len(&signature.content, sig_at)?;

    let (key, algorithm) = parse_verifier(verifier, at, registry)?;
    let expected = algorithm.hash().output_len();
    if req.digest.len() != expected {
        return Err(EntryError::DigestLength {
            algorithm,
            expected,
            actual: req.digest.len(),
        });
    }

    let verifier_key = verifier
        .key
        .as_ref()
        .ok_or(EntryError::MissingVerifierKey { at })?;
    let canonical = leaf::canonical(
        EntryKind::HashedRekord.kind(),
        Spec::HashedRekord(HashedRekordLogEntry {
            data: HashOutput::new(algorithm.hash(), &req.digest),
            signature: Signature {
                content: B64(&signature.content),
                verifier: Verifier::new(verifier_key, algorithm),
            },
        }),
    )?;

    if !key.verify_digest(algorithm, &req.digest, &signature.content) {
        return Err(EntryError::SignatureInvalid { at: sig_at });
    }
    Ok(ValidatedEntry {
        kind: EntryKind::HashedRekord,
        canonical,
    })
}

/// The verifier has a key member with non-empty bytes within the size limit.
pub(crate) fn check_verifier_shape(
    verifier: &VerifierInput,
    at: VerifierAt,
) -> Result<(), EntryError> {
    let key = verifier
        .key
        .as_ref()
        .ok_or(EntryError::MissingVerifierKey { at })?;
    let len = key.raw_bytes().len();
    if len == 0 {
        return Err(EntryError::EmptyVerifierKey { at });
    }
    if len > MAX_VERIFIER_LEN {
        return Err(EntryError::VerifierTooLarge {
            at,
            len,
            max: MAX_VERIFIER_LEN,
        });
    }
    Ok(())
}

/// The signature is within the size limit.
pub(crate) fn check_signature_len(sig: &[u8], at: SignatureAt) -> Result<(), EntryError> {
    if sig.len() > MAX_SIGNATURE_LEN {
        return Err(EntryError::SignatureTooLarge {
            at,
            len: sig.len(),
            max: MAX_SIGNATURE_LEN,
        });
    }
    Ok(())
}

/// Parses the key, maps `keyDetails` to an allowed algorithm, and checks the key fits it.
pub(crate) fn parse_verifier(
    verifier: &VerifierInput,
    at: VerifierAt,
    registry: &AlgorithmRegistry,
) -> Result<(VerificationKey, SigningAlgorithm), EntryError> {
    let raw = verifier
        .key
        .as_ref()
        .ok_or(EntryError::MissingVerifierKey { at })?;
    let key = VerificationKey::from_verifier_key(raw, at)?;
    let algorithm =
        SigningAlgorithm::from_key_details(verifier.key_details).map_err(|problem| {
            EntryError::UnsupportedKeyDetails {
                at,
                key_details: verifier.key_details,
                problem,
            }
        })?;
    if !registry.allows(algorithm) {
        return Err(EntryError::AlgorithmNotAllowed { at, algorithm });
    }
    if !key.key_type().fits(algorithm) {
        return Err(EntryError::KeyMismatch {
            at,
            algorithm,
            actual: key.key_type(),
        });
    }
    Ok((key, algorithm))
}
