//! Client verifier keys: `VerificationKey::from_verifier_key` over a DER SubjectPublicKeyInfo or
//! a DER X.509 certificate (the `Verifier` of a CreateEntry request). Never panics, including in
//! `verify_digest` with the bytes that follow the key.
//!
//! Layout: byte 0 picks public key (even) or certificate (odd); bytes 1..3 are the key length
//! (big-endian); then the key, then the signature input for a verification attempt.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rekor_entries::input::VerifierKey;
use rekor_entries::{SigningAlgorithm, VerificationKey, VerifierAt};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Some((len, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (der, tail) = rest.split_at(len);
    let key = if selector % 2 == 0 {
        VerifierKey::PublicKey(der.to_vec())
    } else {
        VerifierKey::Certificate(der.to_vec())
    };
    let Ok(parsed) = VerificationKey::from_verifier_key(&key, VerifierAt::HashedRekord) else {
        return;
    };
    let _ = parsed.key_type();
    // A verification with garbage must fail cleanly, whatever the algorithm claimed.
    let digest = [0u8; 64];
    for algorithm in SigningAlgorithm::ALL {
        let hash_len = algorithm.hash().output_len();
        let _ = parsed.verify_digest(algorithm, &digest[..hash_len], tail);
    }
});
