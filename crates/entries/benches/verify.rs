//! Client-signature verification cost per algorithm: through the public validation path
//! (`validate_hashed_rekord`: key parse, checks, leaf, verify) and through the bare
//! `VerificationKey::verify_digest` on an already-parsed key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use common::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rekor_entries::input::VerifierKey;
use rekor_entries::{
    AlgorithmRegistry, SigningAlgorithm, VerificationKey, VerifierAt, validate_hashed_rekord,
};

const MESSAGE: &[u8] = b"benchmark artifact";

fn short_name(alg: SigningAlgorithm) -> &'static str {
    match alg {
        SigningAlgorithm::EcdsaP256Sha256 => "p256",
        SigningAlgorithm::EcdsaP384Sha384 => "p384",
        SigningAlgorithm::EcdsaP521Sha512 => "p521",
        SigningAlgorithm::RsaPkcs1v15_2048Sha256 => "rsa2048",
        SigningAlgorithm::RsaPkcs1v15_3072Sha256 => "rsa3072",
        SigningAlgorithm::RsaPkcs1v15_4096Sha256 => "rsa4096",
        SigningAlgorithm::Ed25519ph => "ed25519ph",
    }
}

fn bench(c: &mut Criterion) {
    let registry = AlgorithmRegistry::default();

    let mut validate = c.benchmark_group("validate_hashed_rekord");
    validate.throughput(Throughput::Elements(1));
    for alg in SigningAlgorithm::ALL {
        let req = signed_hashed_rekord(alg, MESSAGE);
        assert!(validate_hashed_rekord(&req, &registry).is_ok());
        validate.bench_function(short_name(alg), |b| {
            b.iter(|| validate_hashed_rekord(black_box(&req), &registry))
        });
    }
    // The usual Sigstore request: a P-256 signature with a certificate verifier.
    let cert_req = hashed_rekord(
        digest_of(SigningAlgorithm::EcdsaP256Sha256, &read("artifact.txt")),
        read("artifact.p256.sig"),
        verifier(
            VerifierKey::Certificate(read("p256.crt.der")),
            SigningAlgorithm::EcdsaP256Sha256,
        ),
    );
    assert!(validate_hashed_rekord(&cert_req, &registry).is_ok());
    validate.bench_function("p256_certificate", |b| {
        b.iter(|| validate_hashed_rekord(black_box(&cert_req), &registry))
    });
    validate.finish();

    let mut bare = c.benchmark_group("verify_digest");
    bare.throughput(Throughput::Elements(1));
    for alg in SigningAlgorithm::ALL {
        let signer = Signer::new(alg);
        let digest = digest_of(alg, MESSAGE);
        let signature = signer.sign(MESSAGE);
        let key = VerificationKey::from_verifier_key(
            &VerifierKey::PublicKey(signer.spki()),
            VerifierAt::HashedRekord,
        )
        .unwrap();
        assert!(key.verify_digest(alg, &digest, &signature));
        bare.bench_function(short_name(alg), |b| {
            b.iter(|| key.verify_digest(alg, black_box(&digest), black_box(&signature)))
        });
    }
    bare.finish();

    // Parsing a verifier alone: the rest of the gap between the two groups is the leaf.
    let mut parse = c.benchmark_group("parse_verifier");
    parse.throughput(Throughput::Elements(1));
    for (name, key) in [
        ("p256_spki", VerifierKey::PublicKey(read("p256.pub.der"))),
        (
            "p256_certificate",
            VerifierKey::Certificate(read("p256.crt.der")),
        ),
        (
            "rsa2048_spki",
            VerifierKey::PublicKey(read("rsa2048.pub.der")),
        ),
    ] {
        assert!(VerificationKey::from_verifier_key(&key, VerifierAt::HashedRekord).is_ok());
        parse.bench_function(name, |b| {
            b.iter(|| VerificationKey::from_verifier_key(black_box(&key), VerifierAt::HashedRekord))
        });
    }
    parse.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
