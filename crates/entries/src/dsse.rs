//! `dsse` v0.0.2: a DSSE envelope with one or more signatures over its PAE.

use aws_lc_rs::digest::Context;

use crate::algorithm::{AlgorithmRegistry, HashAlgorithm, SigningAlgorithm};
use crate::error::{EntryError, SignatureAt, VerifierAt};
use crate::hashedrekord::{check_signature_len, check_verifier_shape, parse_verifier};
use crate::input::{DsseRequest, Envelope, VerifierKey};
use crate::key::VerificationKey;
use crate::leaf::{self, B64, DsseLogEntry, HashOutput, Signature, Spec, Verifier};
use crate::{
    EntryKind, MAX_DSSE_PAYLOAD_LEN, MAX_DSSE_PAYLOAD_TYPE_LEN, MAX_DSSE_SIGNATURES,
    MAX_DSSE_VERIFIERS, ValidatedEntry,
};

/// The DSSE v1 pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload`, lengths in ASCII decimal.
#[must_use]
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = pae_header(payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

fn pae_header(payload_type: &str, payload_len: usize) -> String {
    format!(
        "DSSEv1 {} {payload_type} {payload_len} ",
        payload_type.len()
    )
}

/// Validates a dsse v0.0.2 request, verifies every envelope signature, and builds the
/// canonical leaf.
///
/// Rules: `envelope` present; 1 to [`MAX_DSSE_VERIFIERS`] verifiers, each with a non-empty
/// key, no two with the same raw bytes; 1 to [`MAX_DSSE_SIGNATURES`] non-empty signatures;
/// size limits; every verifier's key parses and its `keyDetails` names an allowed algorithm
/// that fits the key. Then each distinct signature (by its bytes) is matched to the first
/// verifier, in request order, that verifies it over the PAE hashed with that verifier's
/// algorithm (Ed25519ph: SHA-512 prehash of the PAE). Every signature must be verified, and
/// every verifier must verify exactly one distinct signature. `keyid` hints are ignored.
///
/// The logged entry holds the payload's SHA-256 and the distinct signatures sorted by their
/// bytes, each with the verifier (as given) that verified it.
///
/// # Errors
/// The first rule broken, as an [`EntryError`] naming the field.
pub fn validate_dsse(
    req: &DsseRequest,
    registry: &AlgorithmRegistry,
) -> Result<ValidatedEntry, EntryError> {
    let envelope = req.envelope.as_ref().ok_or(EntryError::MissingEnvelope)?;
    check_shape(req, envelope)?;

    let mut keys: Vec<(VerificationKey, SigningAlgorithm, &VerifierKey)> =
        Vec::with_capacity(req.verifiers.len());
    for (i, verifier) in req.verifiers.iter().enumerate() {
        let at = VerifierAt::Dsse(i);
        let (key, algorithm) = parse_verifier(verifier, at, registry)?;
        let raw = verifier
            .key
            .as_ref()
            .ok_or(EntryError::MissingVerifierKey { at })?;
        keys.push((key, algorithm, raw));
    }

    let digests = PaeDigests::new(envelope, keys.iter().map(|(_, alg, _)| alg.hash()));

    // Each distinct signature, in envelope order, with the verifier that verified it.
    let mut signatures: Vec<Signature<'_>> = Vec::with_capacity(envelope.signatures.len());
    // For each verifier, the first signature it verified.
    let mut used_by: Vec<Option<usize>> = vec![None; keys.len()];
    for (s, signature) in envelope.signatures.iter().enumerate() {
        let is_repeat = envelope
            .signatures
            .get(..s)
            .is_some_and(|earlier| earlier.iter().any(|e| e.sig == signature.sig));
        if is_repeat {
            continue;
        }
        let found = keys.iter().enumerate().find(|(_, (key, alg, _))| {
            digests
                .get(alg.hash())
                .is_some_and(|d| key.verify_digest(*alg, d, &signature.sig))
        });
        let Some((v, (_, algorithm, raw))) = found else {
            return Err(EntryError::SignatureInvalid {
                at: SignatureAt::Dsse(s),
            });
        };
        if let Some(slot) = used_by.get_mut(v) {
            if let Some(first) = *slot {
                return Err(EntryError::VerifierReused {
                    at: VerifierAt::Dsse(v),
                    first,
                    second: s,
                });
            }
            *slot = Some(s);
        }
        signatures.push(Signature {
            content: B64(&signature.sig),
            verifier: Verifier::new(raw, *algorithm),
        });
    }
    if let Some(v) = used_by.iter().position(Option::is_none) {
        return Err(EntryError::UnusedVerifier {
            at: VerifierAt::Dsse(v),
        });
    }
    signatures.sort_by(|a, b| a.content.0.cmp(b.content.0));

    let payload_hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &envelope.payload);
    let canonical = leaf::canonical(
        EntryKind::Dsse.kind(),
        Spec::Dsse(DsseLogEntry {
            payload_hash: HashOutput::new(HashAlgorithm::Sha256, payload_hash.as_ref()),
            signatures,
        }),
    )?;
    Ok(ValidatedEntry {
        kind: EntryKind::Dsse,
        canonical,
    })
}

/// Counts, presence, duplicates and size limits, before any parsing.
fn check_shape(req: &DsseRequest, envelope: &Envelope) -> Result<(), EntryError> {
    let count = req.verifiers.len();
    if count == 0 {
        return Err(EntryError::MissingVerifiers);
    }
    if count > MAX_DSSE_VERIFIERS {
        return Err(EntryError::TooManyVerifiers {
            count,
            max: MAX_DSSE_VERIFIERS,
        });
    }
    for (i, verifier) in req.verifiers.iter().enumerate() {
        check_verifier_shape(verifier, VerifierAt::Dsse(i))?;
        let raw = verifier.key.as_ref().map(VerifierKey::raw_bytes);
        let earlier = req.verifiers.get(..i).unwrap_or_default();
        if let Some(first) = earlier
            .iter()
            .position(|e| e.key.as_ref().map(VerifierKey::raw_bytes) == raw)
        {
            return Err(EntryError::DuplicateVerifier {
                first,
                duplicate: i,
            });
        }
    }
    let count = envelope.signatures.len();
    if count == 0 {
        return Err(EntryError::MissingEnvelopeSignatures);
    }
    if count > MAX_DSSE_SIGNATURES {
        return Err(EntryError::TooManySignatures {
            count,
            max: MAX_DSSE_SIGNATURES,
        });
    }
    for (i, signature) in envelope.signatures.iter().enumerate() {
        if signature.sig.is_empty() {
            return Err(EntryError::EmptySignature {
                at: SignatureAt::Dsse(i),
            });
        }
        check_signature_len(&signature.sig, SignatureAt::Dsse(i))?;
    }
    let len = envelope.payload.len();
    if len > MAX_DSSE_PAYLOAD_LEN {
        return Err(EntryError::PayloadTooLarge {
            len,
            max: MAX_DSSE_PAYLOAD_LEN,
        });
    }
    let len = envelope.payload_type.len();
    if len > MAX_DSSE_PAYLOAD_TYPE_LEN {
        return Err(EntryError::PayloadTypeTooLarge {
            len,
            max: MAX_DSSE_PAYLOAD_TYPE_LEN,
        });
    }
    Ok(())
}

/// The PAE hashed once with each hash the verifiers need.
struct PaeDigests {
    digests: [Option<aws_lc_rs::digest::Digest>; 3],
}

impl PaeDigests {
    fn new(envelope: &Envelope, hashes: impl Iterator<Item = HashAlgorithm>) -> Self {
        let mut digests = [None, None, None];
        let header = pae_header(&envelope.payload_type, envelope.payload.len());
        for hash in hashes {
            if let Some(slot @ None) = digests.get_mut(Self::slot(hash)) {
                let mut ctx = Context::new(hash.aws_lc());
                ctx.update(header.as_bytes());
                ctx.update(&envelope.payload);
                *slot = Some(ctx.finish());
            }
        }
        Self { digests }
    }

    const fn slot(hash: HashAlgorithm) -> usize {
        match hash {
            HashAlgorithm::Sha256 => 0,
            HashAlgorithm::Sha384 => 1,
            HashAlgorithm::Sha512 => 2,
        }
    }

    fn get(&self, hash: HashAlgorithm) -> Option<&[u8]> {
        self.digests
            .get(Self::slot(hash))?
            .as_ref()
            .map(AsRef::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // DSSE protocol.md test vector.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }
}
