//! Checkpoint signing and verification cost per log key algorithm.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmark harness"
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rekor_note::{Checkpoint, KeyName, LogSigner, Origin};

fn bench(c: &mut Criterion) {
    let name = KeyName::new("log.example.dev").unwrap();
    let cp = Checkpoint::new(Origin::from(name.clone()), 123_456_789, [0x5a; 32]);
    let signers = [
        (
            "ed25519",
            LogSigner::from_ed25519_seed([1; 32], name.clone()),
        ),
        (
            "p256",
            LogSigner::from_p256_scalar([2; 32], name.clone()).unwrap(),
        ),
        ("p384", LogSigner::from_p384_scalar([3; 48], name).unwrap()),
    ];
    for (label, signer) in &signers {
        let verifier = signer.verifier();
        let note = signer.sign_checkpoint(&cp).unwrap();
        c.bench_function(&format!("sign_checkpoint/{label}"), |b| {
            b.iter(|| signer.sign_checkpoint(black_box(&cp)).unwrap());
        });
        c.bench_function(&format!("verify_checkpoint/{label}"), |b| {
            b.iter(|| verifier.verify_checkpoint(black_box(&note)).unwrap());
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
