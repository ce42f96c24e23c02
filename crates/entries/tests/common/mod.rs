//! Shared test fixtures: keys, signers and request builders.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::PathBuf;

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use ed25519_dalek::Digest as _;
use rekor_entries::input::{
    DsseRequest, Envelope, EnvelopeSignature, HashedRekordRequest, SignatureInput, VerifierInput,
    VerifierKey,
};
use rekor_entries::{SigningAlgorithm, pae};

pub fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata")
        .join(name)
}

pub fn read(name: &str) -> Vec<u8> {
    std::fs::read(testdata(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

/// A test signer for one algorithm: signs messages (hashing them itself) and gives its SPKI.
pub enum Signer {
    Ecdsa(EcdsaKeyPair, &'static sig::EcdsaSigningAlgorithm),
    Rsa(RsaKeyPair),
    Ed25519ph(ed25519_dalek::SigningKey, Vec<u8>),
}

impl Signer {
    /// A fresh key (ECDSA, Ed25519) or the openssl fixture key (RSA).
    pub fn new(alg: SigningAlgorithm) -> Self {
        let rng = SystemRandom::new();
        let ecdsa = |a: &'static sig::EcdsaSigningAlgorithm| {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(a, &rng).unwrap();
            Self::Ecdsa(EcdsaKeyPair::from_pkcs8(a, pkcs8.as_ref()).unwrap(), a)
        };
        let rsa = |name: &str| Self::Rsa(RsaKeyPair::from_pkcs8(&read(name)).unwrap());
        match alg {
            SigningAlgorithm::EcdsaP256Sha256 => ecdsa(&sig::ECDSA_P256_SHA256_ASN1_SIGNING),
            SigningAlgorithm::EcdsaP384Sha384 => ecdsa(&sig::ECDSA_P384_SHA384_ASN1_SIGNING),
            SigningAlgorithm::EcdsaP521Sha512 => ecdsa(&sig::ECDSA_P521_SHA512_ASN1_SIGNING),
            SigningAlgorithm::RsaPkcs1v15_2048Sha256 => rsa("rsa2048.key.pk8"),
            SigningAlgorithm::RsaPkcs1v15_3072Sha256 => rsa("rsa3072.key.pk8"),
            SigningAlgorithm::RsaPkcs1v15_4096Sha256 => rsa("rsa4096.key.pk8"),
            SigningAlgorithm::Ed25519ph => {
                let mut seed = [0u8; 32];
                aws_lc_rs::rand::fill(&mut seed).unwrap();
                // The SPKI comes from aws-lc, the signatures from ed25519-dalek.
                let spki = Ed25519KeyPair::from_seed_unchecked(&seed)
                    .unwrap()
                    .public_key()
                    .as_der()
                    .unwrap()
                    .as_ref()
                    .to_vec();
                Self::Ed25519ph(ed25519_dalek::SigningKey::from_bytes(&seed), spki)
            }
        }
    }

    pub fn spki(&self) -> Vec<u8> {
        match self {
            Self::Ecdsa(k, _) => k.public_key().as_der().unwrap().as_ref().to_vec(),
            Self::Rsa(k) => {
                let name = match k.public_modulus_len() {
                    256 => "rsa2048.pub.der",
                    384 => "rsa3072.pub.der",
                    _ => "rsa4096.pub.der",
                };
                read(name)
            }
            Self::Ed25519ph(_, spki) => spki.clone(),
        }
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Self::Ecdsa(k, _) => k.sign(&rng, message).unwrap().as_ref().to_vec(),
            Self::Rsa(k) => {
                let mut out = vec![0; k.public_modulus_len()];
                k.sign(&sig::RSA_PKCS1_SHA256, &rng, message, &mut out)
                    .unwrap();
                out
            }
            Self::Ed25519ph(k, _) => {
                let mut h = ed25519_dalek::Sha512::new();
                h.update(message);
                k.sign_prehashed(h, None).unwrap().to_bytes().to_vec()
            }
        }
    }
}

/// The digest of `message` with `alg`'s hash, computed by aws-lc.
pub fn digest_of(alg: SigningAlgorithm, message: &[u8]) -> Vec<u8> {
    let d = match alg.hash().output_len() {
        32 => &digest::SHA256,
        48 => &digest::SHA384,
        _ => &digest::SHA512,
    };
    digest::digest(d, message).as_ref().to_vec()
}

pub fn verifier(key: VerifierKey, alg: SigningAlgorithm) -> VerifierInput {
    VerifierInput {
        key: Some(key),
        key_details: alg.key_details(),
    }
}

pub fn hashed_rekord(
    digest: Vec<u8>,
    content: Vec<u8>,
    verifier: VerifierInput,
) -> HashedRekordRequest {
    HashedRekordRequest {
        digest,
        signature: Some(SignatureInput {
            content,
            verifier: Some(verifier),
        }),
    }
}

/// A valid hashedrekord request for `alg` with a fresh key over `message`.
pub fn signed_hashed_rekord(alg: SigningAlgorithm, message: &[u8]) -> HashedRekordRequest {
    let signer = Signer::new(alg);
    hashed_rekord(
        digest_of(alg, message),
        signer.sign(message),
        verifier(VerifierKey::PublicKey(signer.spki()), alg),
    )
}

pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

pub fn envelope(payload: &[u8], sigs: Vec<Vec<u8>>) -> Envelope {
    Envelope {
        payload: payload.to_vec(),
        payload_type: PAYLOAD_TYPE.to_owned(),
        signatures: sigs
            .into_iter()
            .map(|sig| EnvelopeSignature {
                sig,
                keyid: String::new(),
            })
            .collect(),
    }
}

/// A valid DSSE request: each signer signs the PAE once and is a verifier, in order.
pub fn signed_dsse(signers: &[(SigningAlgorithm, &Signer)], payload: &[u8]) -> DsseRequest {
    let pae = pae(PAYLOAD_TYPE, payload);
    DsseRequest {
        envelope: Some(envelope(
            payload,
            signers.iter().map(|(_, s)| s.sign(&pae)).collect(),
        )),
        verifiers: signers
            .iter()
            .map(|(alg, s)| verifier(VerifierKey::PublicKey(s.spki()), *alg))
            .collect(),
    }
}

/// Standard padded base64, for building expected leaves.
pub fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Re-encodes a DER certificate with its signature BIT STRING replaced by `extra` filler bytes.
/// Only the certificate's public key is used, so the result is still a usable verifier.
pub fn pad_certificate(cert: &[u8], extra: usize) -> Vec<u8> {
    fn tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = input[0];
        let (len, hdr) = if input[1] < 0x80 {
            (usize::from(input[1]), 2)
        } else {
            let n = usize::from(input[1] & 0x7f);
            (
                input[2..2 + n]
                    .iter()
                    .fold(0, |a, b| (a << 8) | usize::from(*b)),
                2 + n,
            )
        };
        (tag, &input[hdr..hdr + len], &input[hdr + len..])
    }
    fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(u8::try_from(len).unwrap());
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | u8::try_from(bytes.len()).unwrap());
            out.extend(bytes);
        }
        out.extend_from_slice(content);
        out
    }
    let (tag, body, _) = tlv(cert);
    assert_eq!(tag, 0x30);
    let (t1, tbs, rest) = tlv(body);
    let (t2, alg, _) = tlv(rest);
    let mut bits = vec![0u8];
    bits.extend(std::iter::repeat_n(0xab, extra));
    let mut content = encode(t1, tbs);
    content.extend(encode(t2, alg));
    content.extend(encode(0x03, &bits));
    encode(0x30, &content)
}
