//! Leaf bytes compared with goldens from an independent producer: sigstore_models' pydantic
//! models canonicalised by the rfc8785 package (testdata/gen_golden.py), over openssl-made
//! keys, certificates and signatures (testdata/make_fixtures.sh).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use rekor_entries::input::{DsseRequest, VerifierKey};
use rekor_entries::{
    AlgorithmRegistry, EntryKind, SigningAlgorithm, validate_dsse, validate_hashed_rekord,
};

fn key(file: &str) -> VerifierKey {
    if file.ends_with(".crt.der") {
        VerifierKey::Certificate(read(file))
    } else {
        VerifierKey::PublicKey(read(file))
    }
}

fn check_hashed_rekord(golden: &str, alg: SigningAlgorithm, sig: &str, key_file: &str) {
    let req = hashed_rekord(
        digest_of(alg, &read("artifact.txt")),
        read(sig),
        verifier(key(key_file), alg),
    );
    let entry = validate_hashed_rekord(&req, &AlgorithmRegistry::default()).unwrap();
    assert_eq!(entry.kind, EntryKind::HashedRekord);
    let want = read(golden);
    assert!(!want.is_empty());
    assert_eq!(
        String::from_utf8(entry.canonical).unwrap(),
        String::from_utf8(want).unwrap(),
        "{golden}"
    );
}

#[test]
fn hashedrekord_p256_public_key() {
    check_hashed_rekord(
        "golden_hashedrekord_p256_pubkey.json",
        SigningAlgorithm::EcdsaP256Sha256,
        "artifact.p256.sig",
        "p256.pub.der",
    );
}

#[test]
fn hashedrekord_p256_certificate() {
    check_hashed_rekord(
        "golden_hashedrekord_p256_cert.json",
        SigningAlgorithm::EcdsaP256Sha256,
        "artifact.p256.sig",
        "p256.crt.der",
    );
}

#[test]
fn hashedrekord_p384_public_key() {
    check_hashed_rekord(
        "golden_hashedrekord_p384_pubkey.json",
        SigningAlgorithm::EcdsaP384Sha384,
        "artifact.p384.sig",
        "p384.pub.der",
    );
}

#[test]
fn hashedrekord_p521_public_key() {
    check_hashed_rekord(
        "golden_hashedrekord_p521_pubkey.json",
        SigningAlgorithm::EcdsaP521Sha512,
        "artifact.p521.sig",
        "p521.pub.der",
    );
}

#[test]
fn hashedrekord_rsa2048_certificate() {
    check_hashed_rekord(
        "golden_hashedrekord_rsa2048_cert.json",
        SigningAlgorithm::RsaPkcs1v15_2048Sha256,
        "artifact.rsa2048.sig",
        "rsa2048.crt.der",
    );
}

#[test]
fn hashedrekord_rsa4096_public_key() {
    check_hashed_rekord(
        "golden_hashedrekord_rsa4096_pubkey.json",
        SigningAlgorithm::RsaPkcs1v15_4096Sha256,
        "artifact.rsa4096.sig",
        "rsa4096.pub.der",
    );
}

#[test]
fn dsse_three_signatures_any_request_order() {
    let pairs = [
        (
            "dsse.rsa2048.sig",
            "rsa2048.crt.der",
            SigningAlgorithm::RsaPkcs1v15_2048Sha256,
        ),
        (
            "dsse.p384.sig",
            "p384.pub.der",
            SigningAlgorithm::EcdsaP384Sha384,
        ),
        (
            "dsse.p256.sig",
            "p256.pub.der",
            SigningAlgorithm::EcdsaP256Sha256,
        ),
    ];
    let want = String::from_utf8(read("golden_dsse_p256_p384_rsa2048.json")).unwrap();
    // The envelope and verifier order must not change the leaf; try a few permutations.
    for (sig_order, verifier_order) in [
        ([0, 1, 2], [0, 1, 2]),
        ([2, 0, 1], [1, 2, 0]),
        ([1, 2, 0], [2, 1, 0]),
    ] {
        let payload = read("dsse_payload.json");
        assert_eq!(
            rekor_entries::pae(PAYLOAD_TYPE, &payload),
            read("dsse_pae.bin")
        );
        let req = DsseRequest {
            envelope: Some(envelope(
                &payload,
                sig_order.iter().map(|&i| read(pairs[i].0)).collect(),
            )),
            verifiers: verifier_order
                .iter()
                .map(|&i| verifier(key(pairs[i].1), pairs[i].2))
                .collect(),
        };
        let entry = validate_dsse(&req, &AlgorithmRegistry::default()).unwrap();
        assert_eq!(entry.kind, EntryKind::Dsse);
        assert_eq!(String::from_utf8(entry.canonical).unwrap(), want);
    }
}
