//! One row per `EntryError` variant: the request that breaks the rule and the error it gets.
//! (`Canonicalization` cannot be provoked: the leaf holds only strings.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::*;
use rekor_entries::input::{DsseRequest, EnvelopeSignature, HashedRekordRequest, VerifierKey};
use rekor_entries::{
    AlgorithmRegistry, EntryError, KeyDetailsProblem, KeyProblem, MAX_DSSE_PAYLOAD_LEN,
    MAX_DSSE_PAYLOAD_TYPE_LEN, MAX_DSSE_SIGNATURES, MAX_DSSE_VERIFIERS, MAX_ENTRY_LEN,
    MAX_SIGNATURE_LEN, MAX_VERIFIER_LEN, SignatureAt, SigningAlgorithm, ValidatedEntry, VerifierAt,
    validate_dsse, validate_hashed_rekord,
};

const P256: SigningAlgorithm = SigningAlgorithm::EcdsaP256Sha256;

fn hr(edit: impl FnOnce(&mut HashedRekordRequest)) -> Result<ValidatedEntry, EntryError> {
    let mut req = signed_hashed_rekord(P256, b"table");
    edit(&mut req);
    validate_hashed_rekord(&req, &AlgorithmRegistry::default())
}

fn hr_key(key: VerifierKey) -> Result<ValidatedEntry, EntryError> {
    hr(|r| r.signature.as_mut().unwrap().verifier.as_mut().unwrap().key = Some(key))
}

fn dsse(edit: impl FnOnce(&mut DsseRequest)) -> Result<ValidatedEntry, EntryError> {
    let signer = Signer::new(P256);
    let mut req = signed_dsse(&[(P256, &signer)], b"{}");
    edit(&mut req);
    validate_dsse(&req, &AlgorithmRegistry::default())
}

fn with_signatures(req: &mut DsseRequest, n: usize) {
    let env = req.envelope.as_mut().unwrap();
    let sig = env.signatures[0].clone();
    env.signatures = (0..n).map(|_| sig.clone()).collect();
}

/// SPKI with a given algorithm OID body (DER) and key bytes.
fn spki(alg_id: &[u8], key: &[u8]) -> Vec<u8> {
    let mut bits = vec![0x03, u8::try_from(key.len() + 1).unwrap(), 0x00];
    bits.extend_from_slice(key);
    let mut body = alg_id.to_vec();
    body.extend(bits);
    let mut out = vec![0x30, u8::try_from(body.len()).unwrap()];
    out.extend(body);
    out
}

fn oversized_dsse() -> Result<ValidatedEntry, EntryError> {
    // Two certificate verifiers, each padded to just under MAX_VERIFIER_LEN: each fits, the
    // leaf (two base64 certificates) does not.
    let pad = MAX_VERIFIER_LEN - 1500;
    let req = DsseRequest {
        envelope: Some(envelope(
            &read("dsse_payload.json"),
            vec![read("dsse.p256.sig"), read("dsse.rsa2048.sig")],
        )),
        verifiers: vec![
            verifier(
                VerifierKey::Certificate(pad_certificate(&read("p256.crt.der"), pad)),
                P256,
            ),
            verifier(
                VerifierKey::Certificate(pad_certificate(&read("rsa2048.crt.der"), pad)),
                SigningAlgorithm::RsaPkcs1v15_2048Sha256,
            ),
        ],
    };
    // Padded certificates still verify when the leaf is small enough: one of them alone passes.
    let mut one = req.clone();
    one.verifiers.truncate(1);
    one.envelope.as_mut().unwrap().signatures.truncate(1);
    validate_dsse(&one, &AlgorithmRegistry::default()).expect("a single padded certificate fits");
    validate_dsse(&req, &AlgorithmRegistry::default())
}

type Check = fn(&EntryError) -> bool;

#[test]
fn every_error_variant() {
    let x25519_spki = spki(&[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e], &[9; 32]);
    let p256_oid_alg = [
        0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
        0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    let mut compressed = vec![0x02];
    compressed.extend_from_slice(&read("p256.pub.der")[28..60]);
    let compressed_spki = spki(&p256_oid_alg, &compressed);
    let only_p384 = AlgorithmRegistry::from_flag("ecdsa-sha2-384-nistp384").unwrap();

    let cases: Vec<(&str, Result<ValidatedEntry, EntryError>, Check)> = vec![
        ("MissingDigest", hr(|r| r.digest.clear()), |e| {
            matches!(e, EntryError::MissingDigest)
        }),
        ("MissingSignature", hr(|r| r.signature = None), |e| {
            matches!(e, EntryError::MissingSignature)
        }),
        (
            "EmptySignature",
            hr(|r| r.signature.as_mut().unwrap().content.clear()),
            |e| {
                matches!(
                    e,
                    EntryError::EmptySignature {
                        at: SignatureAt::HashedRekord
                    }
                )
            },
        ),
        (
            "SignatureTooLarge",
            hr(|r| r.signature.as_mut().unwrap().content = vec![1; MAX_SIGNATURE_LEN + 1]),
            |e| matches!(e, EntryError::SignatureTooLarge { len, .. } if *len == MAX_SIGNATURE_LEN + 1),
        ),
        (
            "MissingVerifier",
            hr(|r| r.signature.as_mut().unwrap().verifier = None),
            |e| matches!(e, EntryError::MissingVerifier),
        ),
        (
            "MissingVerifierKey",
            hr(|r| r.signature.as_mut().unwrap().verifier.as_mut().unwrap().key = None),
            |e| {
                matches!(
                    e,
                    EntryError::MissingVerifierKey {
                        at: VerifierAt::HashedRekord
                    }
                )
            },
        ),
        (
            "EmptyVerifierKey",
            hr_key(VerifierKey::Certificate(vec![])),
            |e| {
                matches!(
                    e,
                    EntryError::EmptyVerifierKey {
                        at: VerifierAt::HashedRekord
                    }
                )
            },
        ),
        (
            "VerifierTooLarge",
            hr_key(VerifierKey::PublicKey(vec![0x30; MAX_VERIFIER_LEN + 1])),
            |e| matches!(e, EntryError::VerifierTooLarge { max, .. } if *max == MAX_VERIFIER_LEN),
        ),
        (
            "MalformedPublicKey",
            hr_key(VerifierKey::PublicKey(b"not DER".to_vec())),
            |e| matches!(e, EntryError::MalformedPublicKey { .. }),
        ),
        (
            "InvalidPublicKey",
            hr_key(VerifierKey::PublicKey(x25519_spki)),
            |e| {
                matches!(
                    e,
                    EntryError::InvalidPublicKey {
                        problem: KeyProblem::UnsupportedAlgorithm,
                        ..
                    }
                )
            },
        ),
        (
            "InvalidPublicKey",
            hr_key(VerifierKey::PublicKey(compressed_spki)),
            |e| {
                matches!(
                    e,
                    EntryError::InvalidPublicKey {
                        problem: KeyProblem::InvalidPoint,
                        ..
                    }
                )
            },
        ),
        (
            "InvalidCertificate",
            hr_key(VerifierKey::Certificate(read("p256.pub.der"))),
            |e| {
                matches!(
                    e,
                    EntryError::InvalidCertificate {
                        at: VerifierAt::HashedRekord,
                        ..
                    }
                )
            },
        ),
        (
            "UnsupportedKeyDetails",
            hr(|r| {
                r.signature
                    .as_mut()
                    .unwrap()
                    .verifier
                    .as_mut()
                    .unwrap()
                    .key_details = 7
            }),
            |e| {
                matches!(
                    e,
                    EntryError::UnsupportedKeyDetails {
                        key_details: 7,
                        problem: KeyDetailsProblem::PureEd25519,
                        ..
                    }
                )
            },
        ),
        (
            "UnsupportedKeyDetails",
            hr(|r| {
                r.signature
                    .as_mut()
                    .unwrap()
                    .verifier
                    .as_mut()
                    .unwrap()
                    .key_details = 0
            }),
            |e| {
                matches!(
                    e,
                    EntryError::UnsupportedKeyDetails {
                        problem: KeyDetailsProblem::Unspecified,
                        ..
                    }
                )
            },
        ),
        (
            "AlgorithmNotAllowed",
            validate_hashed_rekord(&signed_hashed_rekord(P256, b"x"), &only_p384),
            |e| {
                matches!(
                    e,
                    EntryError::AlgorithmNotAllowed {
                        algorithm: P256,
                        ..
                    }
                )
            },
        ),
        (
            "KeyMismatch",
            hr(|r| {
                r.signature
                    .as_mut()
                    .unwrap()
                    .verifier
                    .as_mut()
                    .unwrap()
                    .key_details = SigningAlgorithm::EcdsaP384Sha384.key_details();
            }),
            |e| {
                matches!(
                    e,
                    EntryError::KeyMismatch {
                        algorithm: SigningAlgorithm::EcdsaP384Sha384,
                        actual: rekor_entries::KeyType::EcdsaP256,
                        ..
                    }
                )
            },
        ),
        (
            "KeyMismatch",
            hr_key(VerifierKey::PublicKey(read("rsa3072.pub.der"))),
            |e| {
                matches!(
                    e,
                    EntryError::KeyMismatch {
                        actual: rekor_entries::KeyType::Rsa { modulus_bits: 3072 },
                        ..
                    }
                )
            },
        ),
        ("DigestLength", hr(|r| r.digest.truncate(31)), |e| {
            matches!(
                e,
                EntryError::DigestLength {
                    expected: 32,
                    actual: 31,
                    ..
                }
            )
        }),
        ("SignatureInvalid", hr(|r| r.digest[0] ^= 1), |e| {
            matches!(
                e,
                EntryError::SignatureInvalid {
                    at: SignatureAt::HashedRekord
                }
            )
        }),
        ("MissingEnvelope", dsse(|r| r.envelope = None), |e| {
            matches!(e, EntryError::MissingEnvelope)
        }),
        (
            "MissingEnvelopeSignatures",
            dsse(|r| r.envelope.as_mut().unwrap().signatures.clear()),
            |e| matches!(e, EntryError::MissingEnvelopeSignatures),
        ),
        (
            "TooManySignatures",
            dsse(|r| with_signatures(r, MAX_DSSE_SIGNATURES + 1)),
            |e| matches!(e, EntryError::TooManySignatures { count: 11, max: 10 }),
        ),
        (
            "EmptySignature",
            dsse(|r| r.envelope.as_mut().unwrap().signatures[0].sig.clear()),
            |e| {
                matches!(
                    e,
                    EntryError::EmptySignature {
                        at: SignatureAt::Dsse(0)
                    }
                )
            },
        ),
        ("MissingVerifiers", dsse(|r| r.verifiers.clear()), |e| {
            matches!(e, EntryError::MissingVerifiers)
        }),
        (
            "TooManyVerifiers",
            dsse(|r| {
                let v = r.verifiers[0].clone();
                r.verifiers = (0..=MAX_DSSE_VERIFIERS).map(|_| v.clone()).collect();
            }),
            |e| matches!(e, EntryError::TooManyVerifiers { count: 11, max: 10 }),
        ),
        (
            "DuplicateVerifier",
            dsse(|r| {
                // Same bytes, even under the other oneof member and other key details.
                let mut v = r.verifiers[0].clone();
                let raw = v.key.as_ref().unwrap().raw_bytes().to_vec();
                v.key = Some(VerifierKey::Certificate(raw));
                v.key_details = 12;
                r.verifiers.push(v);
            }),
            |e| {
                matches!(
                    e,
                    EntryError::DuplicateVerifier {
                        first: 0,
                        duplicate: 1
                    }
                )
            },
        ),
        (
            "UnusedVerifier",
            dsse(|r| {
                r.verifiers
                    .push(verifier(VerifierKey::PublicKey(read("p256.pub.der")), P256))
            }),
            |e| {
                matches!(
                    e,
                    EntryError::UnusedVerifier {
                        at: VerifierAt::Dsse(1)
                    }
                )
            },
        ),
        (
            "VerifierReused",
            {
                let signer = Signer::new(P256);
                let mut req = signed_dsse(&[(P256, &signer)], b"{}");
                let again = signer.sign(&rekor_entries::pae(PAYLOAD_TYPE, b"{}"));
                req.envelope
                    .as_mut()
                    .unwrap()
                    .signatures
                    .push(EnvelopeSignature {
                        sig: again,
                        keyid: String::new(),
                    });
                validate_dsse(&req, &AlgorithmRegistry::default())
            },
            |e| {
                matches!(
                    e,
                    EntryError::VerifierReused {
                        first: 0,
                        second: 1,
                        ..
                    }
                )
            },
        ),
        (
            "SignatureInvalid",
            dsse(|r| r.envelope.as_mut().unwrap().payload = b"[]".to_vec()),
            |e| {
                matches!(
                    e,
                    EntryError::SignatureInvalid {
                        at: SignatureAt::Dsse(0)
                    }
                )
            },
        ),
        (
            "PayloadTooLarge",
            dsse(|r| r.envelope.as_mut().unwrap().payload = vec![b' '; MAX_DSSE_PAYLOAD_LEN + 1]),
            |e| matches!(e, EntryError::PayloadTooLarge { .. }),
        ),
        (
            "PayloadTypeTooLarge",
            dsse(|r| {
                r.envelope.as_mut().unwrap().payload_type =
                    "a".repeat(MAX_DSSE_PAYLOAD_TYPE_LEN + 1)
            }),
            |e| matches!(e, EntryError::PayloadTypeTooLarge { .. }),
        ),
        (
            "EntryTooLarge",
            oversized_dsse(),
            |e| matches!(e, EntryError::EntryTooLarge { len, max } if *len > *max && *max == MAX_ENTRY_LEN),
        ),
        (
            "UnknownAlgorithmName",
            AlgorithmRegistry::from_flag("ecdsa-sha2-256-nistp256,rsa").map(|_| unreachable!()),
            |e| matches!(e, EntryError::UnknownAlgorithmName { name } if name == "rsa"),
        ),
        (
            "AlgorithmNameNotAllowed",
            AlgorithmRegistry::from_flag("rsa-sign-pss-2048-sha256").map(|_| unreachable!()),
            |e| matches!(e, EntryError::AlgorithmNameNotAllowed { .. }),
        ),
        (
            "NoAlgorithms",
            AlgorithmRegistry::from_names([]).map(|_| unreachable!()),
            |e| matches!(e, EntryError::NoAlgorithms),
        ),
    ];

    let mut covered = BTreeSet::new();
    for (name, result, check) in cases {
        let err = result
            .err()
            .unwrap_or_else(|| panic!("{name}: expected an error"));
        assert!(check(&err), "{name}: got {err:?}");
        let debug = format!("{err:?}");
        assert!(debug.starts_with(name), "{name}: got {debug}");
        assert!(!err.to_string().is_empty());
        covered.insert(name);
    }
    let all = [
        "MissingDigest",
        "MissingSignature",
        "EmptySignature",
        "SignatureTooLarge",
        "MissingVerifier",
        "MissingVerifierKey",
        "EmptyVerifierKey",
        "VerifierTooLarge",
        "MalformedPublicKey",
        "InvalidPublicKey",
        "InvalidCertificate",
        "UnsupportedKeyDetails",
        "AlgorithmNotAllowed",
        "KeyMismatch",
        "DigestLength",
        "SignatureInvalid",
        "MissingEnvelope",
        "MissingEnvelopeSignatures",
        "TooManySignatures",
        "MissingVerifiers",
        "TooManyVerifiers",
        "DuplicateVerifier",
        "UnusedVerifier",
        "VerifierReused",
        "PayloadTooLarge",
        "PayloadTypeTooLarge",
        "EntryTooLarge",
        "UnknownAlgorithmName",
        "AlgorithmNameNotAllowed",
        "NoAlgorithms",
    ];
    assert_eq!(covered, all.into_iter().collect::<BTreeSet<_>>());
}

#[test]
fn messages_name_the_field_and_rule() {
    let err = dsse(|r| {
        r.verifiers
            .push(verifier(VerifierKey::PublicKey(read("p256.pub.der")), P256))
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "dsseRequestV002.verifiers[1]: verifies none of the envelope signatures"
    );
    let err = hr(|r| r.digest.truncate(20)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "hashedRekordRequestV002.digest: 20 bytes, but PKIX_ECDSA_P256_SHA_256 needs a 32-byte digest"
    );
    let err = hr(|r| {
        r.signature
            .as_mut()
            .unwrap()
            .verifier
            .as_mut()
            .unwrap()
            .key_details = SigningAlgorithm::RsaPkcs1v15_2048Sha256.key_details();
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "hashedRekordRequestV002.signature.verifier: keyDetails is PKIX_RSA_PKCS1V15_2048_SHA256 but the key is an EC P-256 key"
    );
}

/// Random corruptions of valid requests never panic.
#[test]
fn corrupted_requests_never_panic() {
    let mut rng_bytes = [0u8; 4096];
    aws_lc_rs::rand::fill(&mut rng_bytes).unwrap();
    let mut next = rng_bytes.iter().copied().cycle();
    let mut byte = move || next.next().unwrap_or(0);
    let bases = [
        (signed_hashed_rekord(P256, b"fuzz"), P256),
        (
            signed_hashed_rekord(SigningAlgorithm::Ed25519ph, b"fuzz"),
            SigningAlgorithm::Ed25519ph,
        ),
        (
            hashed_rekord(
                digest_of(P256, &read("artifact.txt")),
                read("artifact.p256.sig"),
                verifier(VerifierKey::Certificate(read("p256.crt.der")), P256),
            ),
            P256,
        ),
    ];
    for (base, _) in &bases {
        for _ in 0..300 {
            let mut req = base.clone();
            let sig = req.signature.as_mut().unwrap();
            let target: &mut Vec<u8> = match byte() % 3 {
                0 => &mut req.digest,
                1 => &mut sig.content,
                _ => match sig.verifier.as_mut().unwrap().key.as_mut().unwrap() {
                    VerifierKey::PublicKey(b) | VerifierKey::Certificate(b) => b,
                },
            };
            if !target.is_empty() {
                let i = usize::from(byte()) * 256 + usize::from(byte());
                let len = target.len();
                match byte() % 3 {
                    0 => target[i % len] ^= 1 << (byte() % 8),
                    1 => target.truncate(i % len),
                    _ => target.insert(i % len, byte()),
                }
            }
            let _ = validate_hashed_rekord(&req, &AlgorithmRegistry::default());
        }
    }
}
