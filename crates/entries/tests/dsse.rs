//! dsse v0.0.2 validation: verification over the PAE, matching signatures to verifiers,
//! de-duplication and ordering of the logged signatures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use rekor_entries::input::VerifierKey;
use rekor_entries::{
    AlgorithmRegistry, EntryError, EntryKind, SignatureAt, SigningAlgorithm, VerifierAt, pae,
    validate_dsse,
};

const PAYLOAD: &[u8] = br#"{"_type":"https://in-toto.io/Statement/v1"}"#;

fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

fn expected_leaf(payload: &[u8], mut sigs: Vec<(Vec<u8>, SigningAlgorithm, Vec<u8>)>) -> String {
    sigs.sort_by(|a, b| a.0.cmp(&b.0));
    let signatures: Vec<String> = sigs
        .iter()
        .map(|(sig, alg, spki)| {
            format!(
                r#"{{"content":"{}","verifier":{{"keyDetails":"{}","publicKey":{{"rawBytes":"{}"}}}}}}"#,
                b64(sig),
                alg.key_details_name(),
                b64(spki)
            )
        })
        .collect();
    format!(
        r#"{{"apiVersion":"0.0.2","kind":"dsse","spec":{{"dsseV002":{{"payloadHash":{{"algorithm":"SHA2_256","digest":"{}"}},"signatures":[{}]}}}}}}"#,
        b64(&sha256(payload)),
        signatures.join(",")
    )
}

#[test]
fn each_algorithm_signs_a_dsse_envelope() {
    for alg in SigningAlgorithm::ALL {
        let signer = Signer::new(alg);
        let req = signed_dsse(&[(alg, &signer)], PAYLOAD);
        let entry = validate_dsse(&req, &AlgorithmRegistry::default())
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(entry.kind, EntryKind::Dsse);
        let sig = req.envelope.as_ref().unwrap().signatures[0].sig.clone();
        assert_eq!(
            String::from_utf8(entry.canonical).unwrap(),
            expected_leaf(PAYLOAD, vec![(sig, alg, signer.spki())]),
            "{alg:?}"
        );
    }
}

#[test]
fn several_signers_are_logged_sorted_by_signature_bytes() {
    let algs = [
        SigningAlgorithm::EcdsaP256Sha256,
        SigningAlgorithm::Ed25519ph,
        SigningAlgorithm::RsaPkcs1v15_3072Sha256,
        SigningAlgorithm::EcdsaP521Sha512,
    ];
    let signers: Vec<Signer> = algs.iter().map(|a| Signer::new(*a)).collect();
    let pairs: Vec<(SigningAlgorithm, &Signer)> = algs.iter().copied().zip(&signers).collect();
    let req = signed_dsse(&pairs, PAYLOAD);
    let entry = validate_dsse(&req, &AlgorithmRegistry::default()).unwrap();
    let sigs = &req.envelope.as_ref().unwrap().signatures;
    let expected = expected_leaf(
        PAYLOAD,
        algs.iter()
            .zip(&signers)
            .zip(sigs)
            .map(|((a, s), sig)| (sig.sig.clone(), *a, s.spki()))
            .collect(),
    );
    assert_eq!(String::from_utf8(entry.canonical).unwrap(), expected);

    // Reversing the verifiers changes nothing in the leaf.
    let mut reversed = req.clone();
    reversed.verifiers.reverse();
    let again = validate_dsse(&reversed, &AlgorithmRegistry::default()).unwrap();
    assert_eq!(String::from_utf8(again.canonical).unwrap(), expected);
}

#[test]
fn repeated_identical_signature_is_logged_once_and_keyid_is_ignored() {
    let alg = SigningAlgorithm::EcdsaP256Sha256;
    let signer = Signer::new(alg);
    let mut req = signed_dsse(&[(alg, &signer)], PAYLOAD);
    let env = req.envelope.as_mut().unwrap();
    let first = env.signatures[0].clone();
    env.signatures.push(first.clone());
    env.signatures[0].keyid = "not-a-real-key-id".to_owned();
    let entry = validate_dsse(&req, &AlgorithmRegistry::default()).unwrap();
    assert_eq!(
        String::from_utf8(entry.canonical).unwrap(),
        expected_leaf(PAYLOAD, vec![(first.sig, alg, signer.spki())])
    );
}

#[test]
fn signature_over_another_payload_or_type_is_rejected() {
    let alg = SigningAlgorithm::EcdsaP384Sha384;
    let signer = Signer::new(alg);
    let req = signed_dsse(&[(alg, &signer)], PAYLOAD);

    let mut other_payload = req.clone();
    other_payload.envelope.as_mut().unwrap().payload.push(b' ');
    assert!(matches!(
        validate_dsse(&other_payload, &AlgorithmRegistry::default()),
        Err(EntryError::SignatureInvalid {
            at: SignatureAt::Dsse(0)
        })
    ));

    let mut other_type = req.clone();
    other_type.envelope.as_mut().unwrap().payload_type = "text/plain".to_owned();
    assert!(matches!(
        validate_dsse(&other_type, &AlgorithmRegistry::default()),
        Err(EntryError::SignatureInvalid {
            at: SignatureAt::Dsse(0)
        })
    ));

    // A signature over the raw payload (not the PAE) does not verify.
    let mut raw = req.clone();
    raw.envelope.as_mut().unwrap().signatures[0].sig = signer.sign(PAYLOAD);
    assert!(validate_dsse(&raw, &AlgorithmRegistry::default()).is_err());
}

#[test]
fn ed25519ph_in_dsse_is_a_prehash_of_the_pae() {
    let alg = SigningAlgorithm::Ed25519ph;
    let signer = Signer::new(alg);
    let req = signed_dsse(&[(alg, &signer)], PAYLOAD);
    validate_dsse(&req, &AlgorithmRegistry::default()).unwrap();
    // Signing the SHA-512 digest of the PAE "as the message" is a different signature.
    let mut wrong = req.clone();
    let digest = digest_of(alg, &pae(PAYLOAD_TYPE, PAYLOAD));
    wrong.envelope.as_mut().unwrap().signatures[0].sig = signer.sign(&digest);
    assert!(validate_dsse(&wrong, &AlgorithmRegistry::default()).is_err());
}

#[test]
fn every_verifier_must_verify_exactly_one_signature() {
    let a = Signer::new(SigningAlgorithm::EcdsaP256Sha256);
    let b = Signer::new(SigningAlgorithm::EcdsaP256Sha256);
    let p256 = SigningAlgorithm::EcdsaP256Sha256;

    // An extra verifier that signed nothing.
    let mut extra = signed_dsse(&[(p256, &a)], PAYLOAD);
    extra
        .verifiers
        .push(verifier(VerifierKey::PublicKey(b.spki()), p256));
    assert!(matches!(
        validate_dsse(&extra, &AlgorithmRegistry::default()),
        Err(EntryError::UnusedVerifier {
            at: VerifierAt::Dsse(1)
        })
    ));

    // One key, two different signatures (ECDSA is randomised).
    let mut twice = signed_dsse(&[(p256, &a)], PAYLOAD);
    let second = a.sign(&pae(PAYLOAD_TYPE, PAYLOAD));
    twice
        .envelope
        .as_mut()
        .unwrap()
        .signatures
        .push(rekor_entries::input::EnvelopeSignature {
            sig: second,
            keyid: String::new(),
        });
    assert!(matches!(
        validate_dsse(&twice, &AlgorithmRegistry::default()),
        Err(EntryError::VerifierReused {
            at: VerifierAt::Dsse(0),
            first: 0,
            second: 1
        })
    ));

    // A signature no verifier verifies, even with another valid one present.
    let mut missing = signed_dsse(&[(p256, &a), (p256, &b)], PAYLOAD);
    missing.verifiers.pop();
    assert!(matches!(
        validate_dsse(&missing, &AlgorithmRegistry::default()),
        Err(EntryError::SignatureInvalid {
            at: SignatureAt::Dsse(1)
        })
    ));
}

#[test]
fn operator_registry_applies_to_every_verifier() {
    let p256 = Signer::new(SigningAlgorithm::EcdsaP256Sha256);
    let ed = Signer::new(SigningAlgorithm::Ed25519ph);
    let req = signed_dsse(
        &[
            (SigningAlgorithm::EcdsaP256Sha256, &p256),
            (SigningAlgorithm::Ed25519ph, &ed),
        ],
        PAYLOAD,
    );
    let no_ed = AlgorithmRegistry::from_flag("ecdsa-sha2-256-nistp256").unwrap();
    assert!(matches!(
        validate_dsse(&req, &no_ed),
        Err(EntryError::AlgorithmNotAllowed {
            at: VerifierAt::Dsse(1),
            algorithm: SigningAlgorithm::Ed25519ph
        })
    ));
}
