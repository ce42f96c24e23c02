//! Shared helpers for the fuzz targets: the request → entries mapping (a copy of
//! `crates/server/src/convert.rs`, which is private to the server) and the invariants every
//! validated entry must hold.

use rekor_api::rekor::v2::create_entry_request::Spec;
use rekor_api::rekor::v2::{
    CreateEntryRequest, DsseRequestV002, HashedRekordRequestV002, Signature, Verifier, verifier,
};
use rekor_entries::input::{
    DsseRequest, Envelope, EnvelopeSignature, HashedRekordRequest, SignatureInput, VerifierInput,
    VerifierKey,
};
use rekor_entries::{AlgorithmRegistry, EntryKind, MAX_ENTRY_LEN, ValidatedEntry};

fn hashed_rekord(request: &HashedRekordRequestV002) -> HashedRekordRequest {
    HashedRekordRequest {
        digest: request.digest.clone(),
        signature: request.signature.as_ref().map(signature),
    }
}

fn dsse(request: &DsseRequestV002) -> DsseRequest {
    DsseRequest {
        envelope: request.envelope.as_ref().map(|envelope| Envelope {
            payload: envelope.payload.clone(),
            payload_type: envelope.payload_type.clone(),
            signatures: envelope
                .signatures
                .iter()
                .map(|s| EnvelopeSignature {
                    sig: s.sig.clone(),
                    keyid: s.keyid.clone(),
                })
                .collect(),
        }),
        verifiers: request.verifiers.iter().map(verifier_input).collect(),
    }
}

fn signature(signature: &Signature) -> SignatureInput {
    SignatureInput {
        content: signature.content.clone(),
        verifier: signature.verifier.as_ref().map(verifier_input),
    }
}

fn verifier_input(verifier: &Verifier) -> VerifierInput {
    VerifierInput {
        key: verifier.verifier.as_ref().map(|key| match key {
            verifier::Verifier::PublicKey(key) => VerifierKey::PublicKey(key.raw_bytes.clone()),
            verifier::Verifier::X509Certificate(cert) => {
                VerifierKey::Certificate(cert.raw_bytes.clone())
            }
        }),
        key_details: verifier.key_details,
    }
}

/// Validates a decoded request as the server's `create_entry` does, with the default algorithm
/// registry, and checks the invariants of an accepted entry. `None` when the request is refused.
///
/// # Panics
///
/// When an accepted entry breaks an invariant: its kind differs from the request's, its leaf is
/// over [`MAX_ENTRY_LEN`] bytes, is not JSON, or is not in canonical (sorted, compact) form.
pub fn validate(request: &CreateEntryRequest) -> Option<ValidatedEntry> {
    let registry = AlgorithmRegistry::default();
    let (expected_kind, result) = match request.spec.as_ref()? {
        Spec::HashedRekordRequestV002(hashed) => (
            EntryKind::HashedRekord,
            rekor_entries::validate_hashed_rekord(&hashed_rekord(hashed), &registry),
        ),
        Spec::DsseRequestV002(request) => (
            EntryKind::Dsse,
            rekor_entries::validate_dsse(&dsse(request), &registry),
        ),
    };
    // Error messages are what clients see: building them must not panic either.
    let entry = match result {
        Ok(entry) => entry,
        Err(error) => {
            let _ = error.to_string();
            return None;
        }
    };
    assert_eq!(entry.kind, expected_kind);
    assert!(
        entry.canonical.len() <= MAX_ENTRY_LEN,
        "leaf over the bundle limit"
    );
    let value: serde_json::Value = serde_json::from_slice(&entry.canonical)
        .unwrap_or_else(|e| panic!("leaf is not JSON: {e}"));
    // The leaf holds only objects and strings, for which RFC 8785 is sorted keys, no whitespace.
    let reencoded = serde_json::to_vec(&value).unwrap_or_else(|e| panic!("re-encoding: {e}"));
    assert_eq!(reencoded, entry.canonical, "leaf is not canonical JSON");
    assert_eq!(
        value.get("kind").and_then(serde_json::Value::as_str),
        Some(expected_kind.kind())
    );
    Some(entry)
}
