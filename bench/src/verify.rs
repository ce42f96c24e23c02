//! Checks a response the way a client would: the checkpoint's signature under the log key, the
//! proof's fields against that checkpoint, the canonical body against the request, and the
//! RFC 6962 inclusion proof from the leaf to the checkpoint's root.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rekor_api::rekor::v1::TransparencyLogEntry;
use rekor_note::{Checkpoint, KeyName, LogVerifier};
use rekor_tlog::{Hash, LeafIndex, TreeSize, leaf_hash, verify_inclusion};

use crate::error::{BenchError, VerifyError};

/// A response body as the transport returned it.
#[derive(Clone, Debug)]
pub(crate) enum Response {
    /// Protojson from `POST /api/v2/log/entries`.
    Json(bytes::Bytes),
    /// The gRPC message.
    Proto(Box<TransparencyLogEntry>),
}

/// Verifies responses from one log.
pub(crate) struct ResponseVerifier {
    log: LogVerifier,
}

impl ResponseVerifier {
    /// A verifier for the log named `hostname` (its checkpoint origin and note key name) whose
    /// public key is the DER SPKI `spki_der`.
    ///
    /// # Errors
    ///
    /// [`BenchError::Flag`] if the name or key is not usable.
    pub(crate) fn new(hostname: &str, spki_der: &[u8]) -> Result<Self, BenchError> {
        let name = KeyName::new(hostname).map_err(|e| BenchError::Flag {
            flag: "--hostname",
            reason: e.to_string(),
        })?;
        let log = LogVerifier::from_spki_der(name, spki_der).map_err(|e| BenchError::Flag {
            flag: "--log-public-key",
            reason: e.to_string(),
        })?;
        Ok(ResponseVerifier { log })
    }

    /// Opens a signed checkpoint note.
    ///
    /// # Errors
    ///
    /// [`VerifyError::Checkpoint`].
    pub(crate) fn checkpoint(&self, note: &[u8]) -> Result<Checkpoint, VerifyError> {
        self.log
            .verify_checkpoint(note)
            .map_err(|e| VerifyError::Checkpoint {
                reason: e.to_string(),
            })
    }

    /// Verifies one response to the request that carried `digest`; returns the entry's index.
    ///
    /// # Errors
    ///
    /// The first check that fails.
    pub(crate) fn entry(&self, response: &Response, digest: &[u8]) -> Result<u64, VerifyError> {
        let parsed;
        let entry = match response {
            Response::Proto(entry) => entry.as_ref(),
            Response::Json(body) => {
                parsed = serde_json::from_slice::<TransparencyLogEntry>(body).map_err(|e| {
                    VerifyError::Parse {
                        reason: e.to_string(),
                    }
                })?;
                &parsed
            }
        };
        let proof = entry.inclusion_proof.as_ref().ok_or(VerifyError::Missing {
            field: "inclusionProof",
        })?;
        let envelope = proof.checkpoint.as_ref().ok_or(VerifyError::Missing {
            field: "inclusionProof.checkpoint",
        })?;
        let checkpoint = self.checkpoint(envelope.envelope.as_bytes())?;

        let index = u64::try_from(entry.log_index).map_err(|_| VerifyError::Mismatch {
            what: "logIndex is negative",
        })?;
        if proof.log_index != entry.log_index {
            return Err(VerifyError::Mismatch {
                what: "logIndex differs from inclusionProof.logIndex",
            });
        }
        if u64::try_from(proof.tree_size).ok() != Some(checkpoint.size) {
            return Err(VerifyError::Mismatch {
                what: "inclusionProof.treeSize differs from the checkpoint size",
            });
        }
        if proof.root_hash.as_slice() != checkpoint.root.as_slice() {
            return Err(VerifyError::Mismatch {
                what: "inclusionProof.rootHash differs from the checkpoint root",
            });
        }
        if !carries_digest(&entry.canonicalized_body, digest) {
            return Err(VerifyError::WrongEntry);
        }
        let mut hashes = Vec::with_capacity(proof.hashes.len());
        for hash in &proof.hashes {
            let bytes: [u8; 32] =
                hash.as_slice()
                    .try_into()
                    .map_err(|_| VerifyError::Mismatch {
                        what: "a proof hash is not 32 bytes",
                    })?;
            hashes.push(Hash(bytes));
        }
        verify_inclusion(
            &leaf_hash(&entry.canonicalized_body),
            LeafIndex::new(index),
            TreeSize::new(checkpoint.size),
            &hashes,
            &Hash(checkpoint.root),
        )
        .map_err(|e| VerifyError::Proof {
            reason: e.to_string(),
        })?;
        Ok(index)
    }
}

/// Whether a canonical hashedrekord body records `digest` as its data digest.
fn carries_digest(body: &[u8], digest: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    value
        .pointer("/spec/hashedRekordV002/data/digest")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|d| STANDARD.decode(d).is_ok_and(|d| d == digest))
}

/// The decoded length of the `canonicalizedBody` in a protojson response, found without
/// parsing the whole response (this runs on every reply, inside the timed loop).
pub(crate) fn canonical_body_len(json: &[u8]) -> Option<usize> {
    const KEY: &[u8] = b"\"canonicalizedBody\":\"";
    let start = json.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = json.get(start..)?;
    let end = rest.iter().position(|b| *b == b'"')?;
    let encoded = rest.get(..end)?;
    let padding = encoded.iter().rev().take_while(|b| **b == b'=').count();
    let unpadded = encoded.len() - padding;
    Some(unpadded / 4 * 3 + (unpadded % 4).saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekor_api::rekor::v1::{Checkpoint as CheckpointProto, InclusionProof};
    use rekor_note::{LogSigner, Origin};
    use rekor_tlog::MemoryTree;

    const HOST: &str = "bench.test.example";

    fn body(digest: &[u8], n: usize) -> Vec<u8> {
        format!(
            r#"{{"apiVersion":"0.0.2","kind":"hashedrekord","spec":{{"hashedRekordV002":{{"data":{{"algorithm":"SHA2_256","digest":"{}"}},"signature":{{"content":"{}"}}}}}}}}"#,
            STANDARD.encode(digest),
            STANDARD.encode(n.to_be_bytes()),
        )
        .into_bytes()
    }

    /// A five-entry log with its signer, and the response for entry 3.
    fn fixture() -> (LogSigner, TransparencyLogEntry, Vec<u8>) {
        let signer = LogSigner::from_ed25519_seed([9; 32], KeyName::new(HOST).unwrap());
        let mut tree = MemoryTree::new();
        let digests: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 32]).collect();
        let bodies: Vec<Vec<u8>> = digests
            .iter()
            .enumerate()
            .map(|(n, d)| body(d, n))
            .collect();
        for b in &bodies {
            tree.append(leaf_hash(b));
        }
        let size = tree.size();
        let root = tree.root(size).unwrap();
        let note = signer
            .sign_checkpoint(&Checkpoint::new(Origin::new(HOST).unwrap(), 5, root.0))
            .unwrap();
        let proof = tree.inclusion_proof(LeafIndex::new(3), size).unwrap();
        let entry = TransparencyLogEntry {
            log_index: 3,
            inclusion_proof: Some(InclusionProof {
                log_index: 3,
                root_hash: root.0.to_vec(),
                tree_size: 5,
                hashes: proof.iter().map(|h| h.0.to_vec()).collect(),
                checkpoint: Some(CheckpointProto {
                    envelope: String::from_utf8(note).unwrap(),
                }),
            }),
            canonicalized_body: bodies[3].clone(),
            ..Default::default()
        };
        (signer, entry, digests[3].clone())
    }

    #[test]
    fn a_correct_response_verifies_over_both_encodings() {
        let (signer, entry, digest) = fixture();
        let verifier = ResponseVerifier::new(HOST, &signer.public_key_der()).unwrap();
        let proto = Response::Proto(Box::new(entry.clone()));
        assert_eq!(verifier.entry(&proto, &digest), Ok(3));
        let json = Response::Json(rekor_api::to_json(&entry).unwrap().into());
        assert_eq!(verifier.entry(&json, &digest), Ok(3));
    }

    #[test]
    fn tampering_is_caught() {
        let (signer, entry, digest) = fixture();
        let verifier = ResponseVerifier::new(HOST, &signer.public_key_der()).unwrap();
        let check = |e: &TransparencyLogEntry, d: &[u8]| {
            verifier.entry(&Response::Proto(Box::new(e.clone())), d)
        };

        assert_eq!(check(&entry, &[0; 32]), Err(VerifyError::WrongEntry));

        let mut bad = entry.clone();
        bad.log_index = 2;
        assert!(matches!(
            check(&bad, &digest),
            Err(VerifyError::Mismatch { .. })
        ));

        let mut bad = entry.clone();
        let proof = bad.inclusion_proof.as_mut().unwrap();
        proof.log_index = 2;
        bad.log_index = 2;
        assert!(matches!(
            check(&bad, &digest),
            Err(VerifyError::Proof { .. })
        ));

        let mut bad = entry.clone();
        bad.inclusion_proof.as_mut().unwrap().hashes[0][0] ^= 1;
        assert!(matches!(
            check(&bad, &digest),
            Err(VerifyError::Proof { .. })
        ));

        let mut bad = entry.clone();
        bad.inclusion_proof.as_mut().unwrap().root_hash[0] ^= 1;
        assert!(matches!(
            check(&bad, &digest),
            Err(VerifyError::Mismatch { .. })
        ));

        let other = LogSigner::from_ed25519_seed([8; 32], KeyName::new(HOST).unwrap());
        let stranger = ResponseVerifier::new(HOST, &other.public_key_der()).unwrap();
        assert!(matches!(
            stranger.entry(&Response::Proto(Box::new(entry.clone())), &digest),
            Err(VerifyError::Checkpoint { .. })
        ));

        let mut bad = entry;
        bad.inclusion_proof = None;
        assert!(matches!(
            check(&bad, &digest),
            Err(VerifyError::Missing { .. })
        ));
    }

    #[test]
    fn canonical_body_length_is_read_from_the_json() {
        for n in 0..7usize {
            let entry = TransparencyLogEntry {
                log_index: 1,
                canonicalized_body: vec![b'x'; 100 + n],
                ..Default::default()
            };
            let json = rekor_api::to_json(&entry).unwrap();
            assert_eq!(canonical_body_len(json.as_bytes()), Some(100 + n), "{json}");
        }
        assert_eq!(canonical_body_len(b"{\"logIndex\":\"1\"}"), None);
    }
}
