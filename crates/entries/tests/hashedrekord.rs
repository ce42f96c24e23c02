//! hashedrekord v0.0.2 validation: valid requests for every algorithm, certificate verifiers,
//! tampering, the operator's registry, and expected leaf contents.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use rekor_entries::input::VerifierKey;
use rekor_entries::{
    AlgorithmRegistry, EntryError, EntryKind, SignatureAt, SigningAlgorithm, validate_hashed_rekord,
};

const MESSAGE: &[u8] = b"an artifact to be logged";

fn expected_leaf(
    alg: SigningAlgorithm,
    digest: &[u8],
    sig: &[u8],
    member: &str,
    key: &[u8],
) -> String {
    format!(
        concat!(
            r#"{{"apiVersion":"0.0.2","kind":"hashedrekord","spec":{{"hashedRekordV002":{{"#,
            r#""data":{{"algorithm":"{}","digest":"{}"}},"#,
            r#""signature":{{"content":"{}","verifier":{{"keyDetails":"{}","{}":{{"rawBytes":"{}"}}}}}}}}}}}}"#
        ),
        alg.hash().proto_name(),
        b64(digest),
        b64(sig),
        alg.key_details_name(),
        member,
        b64(key)
    )
}

#[test]
fn every_algorithm_validates_and_builds_the_expected_leaf() {
    for alg in SigningAlgorithm::ALL {
        let req = signed_hashed_rekord(alg, MESSAGE);
        let entry = validate_hashed_rekord(&req, &AlgorithmRegistry::default())
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(entry.kind, EntryKind::HashedRekord);
        let sig = req.signature.as_ref().unwrap();
        let Some(VerifierKey::PublicKey(spki)) = &sig.verifier.as_ref().unwrap().key else {
            unreachable!()
        };
        let expected = expected_leaf(alg, &req.digest, &sig.content, "publicKey", spki);
        assert_eq!(
            String::from_utf8(entry.canonical).unwrap(),
            expected,
            "{alg:?}"
        );
    }
}

#[test]
fn tampered_digest_or_signature_is_rejected() {
    for alg in SigningAlgorithm::ALL {
        let req = signed_hashed_rekord(alg, MESSAGE);

        let mut bad_digest = req.clone();
        bad_digest.digest[0] ^= 0x01;
        assert!(
            matches!(
                validate_hashed_rekord(&bad_digest, &AlgorithmRegistry::default()),
                Err(EntryError::SignatureInvalid {
                    at: SignatureAt::HashedRekord
                })
            ),
            "{alg:?} tampered digest"
        );

        let mut bad_sig = req.clone();
        let content = &mut bad_sig.signature.as_mut().unwrap().content;
        let last = content.len() - 1;
        content[last] ^= 0x01;
        assert!(
            matches!(
                validate_hashed_rekord(&bad_sig, &AlgorithmRegistry::default()),
                Err(EntryError::SignatureInvalid { .. })
            ),
            "{alg:?} tampered signature"
        );

        // A signature over a different message, by the same key, does not verify either.
        let other_digest = digest_of(alg, b"another artifact");
        let mut other = req.clone();
        other.digest = other_digest;
        assert!(validate_hashed_rekord(&other, &AlgorithmRegistry::default()).is_err());
    }
}

#[test]
fn openssl_signatures_validate_for_each_fixture_key() {
    let artifact = read("artifact.txt");
    let cases = [
        (
            SigningAlgorithm::EcdsaP256Sha256,
            "artifact.p256.sig",
            "p256.pub.der",
        ),
        (
            SigningAlgorithm::EcdsaP384Sha384,
            "artifact.p384.sig",
            "p384.pub.der",
        ),
        (
            SigningAlgorithm::EcdsaP521Sha512,
            "artifact.p521.sig",
            "p521.pub.der",
        ),
        (
            SigningAlgorithm::RsaPkcs1v15_2048Sha256,
            "artifact.rsa2048.sig",
            "rsa2048.pub.der",
        ),
        (
            SigningAlgorithm::RsaPkcs1v15_3072Sha256,
            "artifact.rsa3072.sig",
            "rsa3072.pub.der",
        ),
        (
            SigningAlgorithm::RsaPkcs1v15_4096Sha256,
            "artifact.rsa4096.sig",
            "rsa4096.pub.der",
        ),
    ];
    for (alg, sig, key) in cases {
        let req = hashed_rekord(
            digest_of(alg, &artifact),
            read(sig),
            verifier(VerifierKey::PublicKey(read(key)), alg),
        );
        validate_hashed_rekord(&req, &AlgorithmRegistry::default())
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
    }
}

#[test]
fn certificate_verifiers_use_the_certificate_key_and_are_logged_as_certificates() {
    let artifact = read("artifact.txt");
    let cases = [
        (
            SigningAlgorithm::EcdsaP256Sha256,
            "artifact.p256.sig",
            "p256.crt.der",
        ),
        (
            SigningAlgorithm::RsaPkcs1v15_2048Sha256,
            "artifact.rsa2048.sig",
            "rsa2048.crt.der",
        ),
    ];
    for (alg, sig, cert) in cases {
        let digest = digest_of(alg, &artifact);
        let req = hashed_rekord(
            digest.clone(),
            read(sig),
            verifier(VerifierKey::Certificate(read(cert)), alg),
        );
        let entry = validate_hashed_rekord(&req, &AlgorithmRegistry::default()).unwrap();
        let expected = expected_leaf(alg, &digest, &read(sig), "x509Certificate", &read(cert));
        assert_eq!(String::from_utf8(entry.canonical).unwrap(), expected);

        // The same certificate does not verify a signature by another key.
        let mut wrong = req.clone();
        wrong.signature.as_mut().unwrap().content = read("artifact.p384.sig");
        assert!(matches!(
            validate_hashed_rekord(&wrong, &AlgorithmRegistry::default()),
            Err(EntryError::SignatureInvalid { .. })
        ));
    }
}

#[test]
fn registry_refuses_algorithms_the_operator_did_not_allow() {
    let only_p384 = AlgorithmRegistry::from_flag("ecdsa-sha2-384-nistp384").unwrap();
    let p256 = signed_hashed_rekord(SigningAlgorithm::EcdsaP256Sha256, MESSAGE);
    assert!(matches!(
        validate_hashed_rekord(&p256, &only_p384),
        Err(EntryError::AlgorithmNotAllowed {
            algorithm: SigningAlgorithm::EcdsaP256Sha256,
            ..
        })
    ));
    let p384 = signed_hashed_rekord(SigningAlgorithm::EcdsaP384Sha384, MESSAGE);
    validate_hashed_rekord(&p384, &only_p384).unwrap();

    for alg in SigningAlgorithm::ALL {
        let others = AlgorithmRegistry::from_algorithms(
            SigningAlgorithm::ALL.into_iter().filter(|a| *a != alg),
        );
        let req = signed_hashed_rekord(alg, MESSAGE);
        assert!(
            matches!(
                validate_hashed_rekord(&req, &others),
                Err(EntryError::AlgorithmNotAllowed { algorithm, .. }) if algorithm == alg
            ),
            "{alg:?}"
        );
    }
}

#[test]
fn ieee_p1363_ecdsa_signatures_are_accepted_as_sigstore_go_does() {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair};
    let cases = [
        (
            SigningAlgorithm::EcdsaP256Sha256,
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
        ),
        (
            SigningAlgorithm::EcdsaP384Sha384,
            &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
        ),
        (
            SigningAlgorithm::EcdsaP521Sha512,
            &sig::ECDSA_P521_SHA512_FIXED_SIGNING,
        ),
    ];
    let rng = SystemRandom::new();
    for (alg, signing) in cases {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref()).unwrap();
        let fixed = key.sign(&rng, MESSAGE).unwrap().as_ref().to_vec();
        let spki = key.public_key().as_der().unwrap().as_ref().to_vec();
        let req = hashed_rekord(
            digest_of(alg, MESSAGE),
            fixed.clone(),
            verifier(VerifierKey::PublicKey(spki.clone()), alg),
        );
        let entry = validate_hashed_rekord(&req, &AlgorithmRegistry::default()).unwrap();
        // The signature is logged exactly as sent.
        let expected = expected_leaf(alg, &req.digest, &fixed, "publicKey", &spki);
        assert_eq!(String::from_utf8(entry.canonical).unwrap(), expected);

        let mut bad = req.clone();
        bad.signature.as_mut().unwrap().content[5] ^= 0x40;
        assert!(validate_hashed_rekord(&bad, &AlgorithmRegistry::default()).is_err());
    }
}

#[test]
fn der_ecdsa_signature_with_trailing_bytes_is_rejected() {
    let mut req = signed_hashed_rekord(SigningAlgorithm::EcdsaP256Sha256, MESSAGE);
    req.signature.as_mut().unwrap().content.push(0);
    assert!(matches!(
        validate_hashed_rekord(&req, &AlgorithmRegistry::default()),
        Err(EntryError::SignatureInvalid { .. })
    ));
}

#[test]
fn pure_ed25519_signature_does_not_pass_as_ed25519ph() {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let seed = [7u8; 32];
    let key = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let spki = key.public_key().as_der().unwrap().as_ref().to_vec();
    let digest = digest_of(SigningAlgorithm::Ed25519ph, MESSAGE);
    // Pure Ed25519 over the digest bytes, and over the message: neither is Ed25519ph.
    for signed in [digest.as_slice(), MESSAGE] {
        let req = hashed_rekord(
            digest.clone(),
            key.sign(signed).as_ref().to_vec(),
            verifier(
                VerifierKey::PublicKey(spki.clone()),
                SigningAlgorithm::Ed25519ph,
            ),
        );
        assert!(matches!(
            validate_hashed_rekord(&req, &AlgorithmRegistry::default()),
            Err(EntryError::SignatureInvalid { .. })
        ));
    }
}
