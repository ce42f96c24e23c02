//! Generated request types → the plain inputs of `rekor-entries` (feature `entries`): the one
//! mapping from prost fields to the validator's inputs, shared by the server, the client and the
//! fuzz targets (handlers never read prost request fields themselves).

use rekor_entries::input::{
    DsseRequest, Envelope, EnvelopeSignature, HashedRekordRequest, SignatureInput, VerifierInput,
    VerifierKey,
};

use crate::rekor::v2::{DsseRequestV002, HashedRekordRequestV002, Signature, Verifier, verifier};

/// The validator's input for a hashedrekord v0.0.2 request.
pub fn hashed_rekord(request: &HashedRekordRequestV002) -> HashedRekordRequest {
    HashedRekordRequest {
        digest: request.digest.clone(),
        signature: request.signature.as_ref().map(signature),
    }
}

/// The validator's input for a dsse v0.0.2 request.
pub fn dsse(request: &DsseRequestV002) -> DsseRequest {
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

/// The validator's input for a signature and its verifier.
pub fn signature(signature: &Signature) -> SignatureInput {
    SignatureInput {
        content: signature.content.clone(),
        verifier: signature.verifier.as_ref().map(verifier_input),
    }
}

/// The validator's input for a verifier (public key or certificate, and its key details).
pub fn verifier_input(verifier: &Verifier) -> VerifierInput {
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
