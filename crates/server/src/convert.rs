//! Generated request types → the `entries` crate's plain inputs. The only code that reads prost
//! request fields (STYLE rule 13).

use rekor_api::rekor::v2::{
    DsseRequestV002, HashedRekordRequestV002, Signature, Verifier, verifier,
};
use rekor_entries::input::{
    DsseRequest, Envelope, EnvelopeSignature, HashedRekordRequest, SignatureInput, VerifierInput,
    VerifierKey,
};

pub(crate) fn hashed_rekord(request: &HashedRekordRequestV002) -> HashedRekordRequest {
    HashedRekordRequest {
        digest: request.digest.clone(),
        signature: request.signature.as_ref().map(signature),
    }
}

pub(crate) fn dsse(request: &DsseRequestV002) -> DsseRequest {
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
