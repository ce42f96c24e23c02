//! The canonical leaf: RFC 8785 JSON of the protojson `dev.sigstore.rekor.v2.Entry`.
//!
//! The structs below carry protojson field names. Bytes are standard base64 with padding,
//! enums are written by name, and empty fields never occur (validation refuses them), so
//! nothing protojson would omit is present.
//!
//! Every struct declares its fields in RFC 8785 key order (all keys are ASCII, so UTF-16 order
//! is byte order), and every string value is ASCII that JSON never escapes (base64 and fixed
//! identifiers). Compact `serde_json` output is therefore already the RFC 8785 form; it is
//! about 8x cheaper than a general canonicaliser (1 µs against 6 µs per leaf, a tenth of a
//! P-256 verification). The unit tests check it against `serde_json_canonicalizer`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Serialize, Serializer};

use crate::algorithm::{HashAlgorithm, SigningAlgorithm};
use crate::error::EntryError;
use crate::input::VerifierKey;
use crate::{ENTRY_API_VERSION, MAX_ENTRY_LEN};

/// Bytes written as standard padded base64.
pub(crate) struct B64<'a>(pub(crate) &'a [u8]);

impl Serialize for B64<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(self.0))
    }
}

#[derive(Serialize)]
pub(crate) struct Entry<'a> {
    #[serde(rename = "apiVersion")]
    pub(crate) api_version: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) spec: Spec<'a>,
}

/// The `Spec.spec` oneof: serde's externally tagged enum gives `{"<member>": {...}}`.
#[derive(Serialize)]
pub(crate) enum Spec<'a> {
    #[serde(rename = "hashedRekordV002")]
    HashedRekord(HashedRekordLogEntry<'a>),
    #[serde(rename = "dsseV002")]
    Dsse(DsseLogEntry<'a>),
}

#[derive(Serialize)]
pub(crate) struct HashedRekordLogEntry<'a> {
    pub(crate) data: HashOutput<'a>,
    pub(crate) signature: Signature<'a>,
}

#[derive(Serialize)]
pub(crate) struct DsseLogEntry<'a> {
    #[serde(rename = "payloadHash")]
    pub(crate) payload_hash: HashOutput<'a>,
    pub(crate) signatures: Vec<Signature<'a>>,
}

#[derive(Serialize)]
pub(crate) struct HashOutput<'a> {
    pub(crate) algorithm: &'static str,
    pub(crate) digest: B64<'a>,
}

impl<'a> HashOutput<'a> {
    pub(crate) fn new(algorithm: HashAlgorithm, digest: &'a [u8]) -> Self {
        Self {
            algorithm: algorithm.proto_name(),
            digest: B64(digest),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct Signature<'a> {
    pub(crate) content: B64<'a>,
    pub(crate) verifier: Verifier<'a>,
}

#[derive(Serialize)]
pub(crate) struct Verifier<'a> {
    #[serde(rename = "keyDetails")]
    pub(crate) key_details: &'static str,
    #[serde(rename = "publicKey", skip_serializing_if = "Option::is_none")]
    pub(crate) public_key: Option<RawBytes<'a>>,
    #[serde(rename = "x509Certificate", skip_serializing_if = "Option::is_none")]
    pub(crate) x509_certificate: Option<RawBytes<'a>>,
}

impl<'a> Verifier<'a> {
    /// The verifier as given: the same oneof member and bytes, and `keyDetails` by name.
    pub(crate) fn new(key: &'a VerifierKey, algorithm: SigningAlgorithm) -> Self {
        let (public_key, x509_certificate) = match key {
            VerifierKey::PublicKey(b) => (Some(RawBytes { raw_bytes: B64(b) }), None),
            VerifierKey::Certificate(b) => (None, Some(RawBytes { raw_bytes: B64(b) })),
        };
        Self {
            public_key,
            x509_certificate,
            key_details: algorithm.key_details_name(),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct RawBytes<'a> {
    #[serde(rename = "rawBytes")]
    pub(crate) raw_bytes: B64<'a>,
}

/// Canonicalises an entry and checks it fits an entry bundle.
pub(crate) fn canonical(kind: &'static str, spec: Spec<'_>) -> Result<Vec<u8>, EntryError> {
    let entry = Entry {
        kind,
        api_version: ENTRY_API_VERSION,
        spec,
    };
    let bytes =
        serde_json::to_vec(&entry).map_err(|source| EntryError::Canonicalization { source })?;
    if bytes.len() > MAX_ENTRY_LEN {
        return Err(EntryError::EntryTooLarge {
            len: bytes.len(),
            max: MAX_ENTRY_LEN,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both<'a>(kind: &'static str, spec: impl Fn() -> Spec<'a>) {
        let ours = canonical(kind, spec()).unwrap();
        let entry = Entry {
            kind,
            api_version: ENTRY_API_VERSION,
            spec: spec(),
        };
        let jcs = serde_json_canonicalizer::to_vec(&entry).unwrap();
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            String::from_utf8(jcs).unwrap()
        );
    }

    #[test]
    fn field_order_is_rfc8785_order() {
        let digest = [0xfb; 48];
        let sig = [0xff; 103];
        let key_a = VerifierKey::PublicKey(vec![0x3e; 91]);
        let key_b = VerifierKey::Certificate((0..=255).collect());
        for alg in SigningAlgorithm::ALL {
            for key in [&key_a, &key_b] {
                both("hashedrekord", || {
                    Spec::HashedRekord(HashedRekordLogEntry {
                        data: HashOutput::new(alg.hash(), &digest),
                        signature: Signature {
                            content: B64(&sig),
                            verifier: Verifier::new(key, alg),
                        },
                    })
                });
            }
            both("dsse", || {
                Spec::Dsse(DsseLogEntry {
                    payload_hash: HashOutput::new(HashAlgorithm::Sha256, &digest[..32]),
                    signatures: vec![
                        Signature {
                            content: B64(&sig[..1]),
                            verifier: Verifier::new(&key_b, alg),
                        },
                        Signature {
                            content: B64(&sig),
                            verifier: Verifier::new(&key_a, alg),
                        },
                    ],
                })
            });
        }
    }
}
