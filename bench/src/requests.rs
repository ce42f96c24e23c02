//! Client keys and pre-signed hashedrekord v0.0.2 requests, made before any timing starts.
//!
//! Every request signs a distinct message (`nonce ‖ index`), so no two requests of a run, nor of
//! two runs against the same log, are duplicates.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::digest::{self, SHA256};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use ed25519_dalek::Digest as _;
use rekor_api::common::v1::PublicKeyDetails;
use rekor_api::rekor::v2::{
    CreateEntryRequest, HashedRekordRequestV002, PublicKey, Signature, Verifier,
    create_entry_request, verifier,
};

use crate::error::BenchError;

/// A client signing algorithm the generator can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Algorithm {
    /// ECDSA P-256 with SHA-256 (the common Sigstore case).
    P256,
    /// Ed25519ph over a SHA-512 prehash.
    Ed25519ph,
    /// RSA PKCS#1 v1.5, 2048 bits, SHA-256.
    Rsa2048,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::P256 => "p256",
            Algorithm::Ed25519ph => "ed25519ph",
            Algorithm::Rsa2048 => "rsa2048",
        }
    }

    fn key_details(self) -> PublicKeyDetails {
        match self {
            Algorithm::P256 => PublicKeyDetails::PkixEcdsaP256Sha256,
            Algorithm::Ed25519ph => PublicKeyDetails::PkixEd25519Ph,
            Algorithm::Rsa2048 => PublicKeyDetails::PkixRsaPkcs1v152048Sha256,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "p256" | "ecdsa-p256" => Ok(Algorithm::P256),
            "ed25519ph" | "ed25519-ph" => Ok(Algorithm::Ed25519ph),
            "rsa2048" | "rsa-2048" => Ok(Algorithm::Rsa2048),
            other => Err(BenchError::Flag {
                flag: "--mix",
                reason: format!("unknown algorithm {other:?} (use p256, ed25519ph or rsa2048)"),
            }),
        }
    }
}

/// Weighted algorithms, e.g. `p256=8,ed25519ph=1,rsa2048=1`; request `i` takes the algorithm
/// at `i mod total weight`, so the mix is exact and repeatable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mix {
    slots: Vec<Algorithm>,
}

impl Mix {
    /// The algorithm of request `index`.
    fn pick(&self, index: usize) -> Algorithm {
        self.slots
            .get(index % self.slots.len().max(1))
            .copied()
            .unwrap_or(Algorithm::P256)
    }

    /// The distinct algorithms, in a fixed order.
    fn algorithms(&self) -> Vec<Algorithm> {
        let mut all = self.slots.clone();
        all.sort();
        all.dedup();
        all
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .algorithms()
            .into_iter()
            .map(|a| {
                let weight = self.slots.iter().filter(|s| **s == a).count();
                format!("{a}={weight}")
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl FromStr for Mix {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut slots = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match part.split_once('=') {
                Some((name, weight)) => {
                    let weight: usize = weight.trim().parse().map_err(|_| BenchError::Flag {
                        flag: "--mix",
                        reason: format!("weight {weight:?} is not a whole number"),
                    })?;
                    (name, weight)
                }
                None => (part, 1),
            };
            if weight > 1000 {
                return Err(BenchError::Flag {
                    flag: "--mix",
                    reason: format!("weight {weight} is above 1000"),
                });
            }
            let algorithm: Algorithm = name.trim().parse()?;
            slots.extend(std::iter::repeat_n(algorithm, weight));
        }
        if slots.is_empty() {
            return Err(BenchError::Flag {
                flag: "--mix",
                reason: "no algorithm with a positive weight".into(),
            });
        }
        Ok(Mix { slots })
    }
}

enum KeyPairOf {
    Ecdsa(EcdsaKeyPair),
    Rsa(Box<RsaKeyPair>),
    Ed25519ph(ed25519_dalek::SigningKey),
}

/// One client key: signs messages and names itself by DER SPKI.
struct ClientKey {
    algorithm: Algorithm,
    pair: KeyPairOf,
    spki: Vec<u8>,
    spki_b64: String,
}

fn signing_error(algorithm: Algorithm, reason: impl fmt::Display) -> BenchError {
    BenchError::Signing {
        algorithm: algorithm.name(),
        reason: reason.to_string(),
    }
}

impl ClientKey {
    fn generate(algorithm: Algorithm) -> Result<Self, BenchError> {
        let fail = |e: aws_lc_rs::error::Unspecified| signing_error(algorithm, e);
        let (pair, spki) = match algorithm {
            Algorithm::P256 => {
                let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).map_err(fail)?;
                let spki = pair.public_key().as_der().map_err(fail)?.as_ref().to_vec();
                (KeyPairOf::Ecdsa(pair), spki)
            }
            Algorithm::Rsa2048 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(fail)?;
                let spki = pair.public_key().as_der().map_err(fail)?.as_ref().to_vec();
                (KeyPairOf::Rsa(Box::new(pair)), spki)
            }
            Algorithm::Ed25519ph => {
                let mut seed = [0u8; 32];
                aws_lc_rs::rand::fill(&mut seed).map_err(fail)?;
                // aws-lc gives the SPKI; ed25519-dalek signs the prehash (aws-lc-rs has no
                // high-level Ed25519ph API). Both derive the same public key from the seed.
                let spki = Ed25519KeyPair::from_seed_unchecked(&seed)
                    .map_err(|e| signing_error(algorithm, e))?
                    .public_key()
                    .as_der()
                    .map_err(fail)?
                    .as_ref()
                    .to_vec();
                (
                    KeyPairOf::Ed25519ph(ed25519_dalek::SigningKey::from_bytes(&seed)),
                    spki,
                )
            }
        };
        Ok(ClientKey {
            algorithm,
            pair,
            spki_b64: STANDARD.encode(&spki),
            spki,
        })
    }

    /// The digest the request carries and the signature over `message`.
    fn sign(&self, rng: &SystemRandom, message: &[u8]) -> Result<(Vec<u8>, Vec<u8>), BenchError> {
        let fail = |e: aws_lc_rs::error::Unspecified| signing_error(self.algorithm, e);
        match &self.pair {
            KeyPairOf::Ecdsa(pair) => {
                let signature = pair.sign(rng, message).map_err(fail)?;
                let digest = digest::digest(&SHA256, message);
                Ok((digest.as_ref().to_vec(), signature.as_ref().to_vec()))
            }
            KeyPairOf::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, rng, message, &mut signature)
                    .map_err(fail)?;
                let digest = digest::digest(&SHA256, message);
                Ok((digest.as_ref().to_vec(), signature))
            }
            KeyPairOf::Ed25519ph(key) => {
                let mut hasher = ed25519_dalek::Sha512::new();
                hasher.update(message);
                let digest = hasher.clone().finalize().to_vec();
                let signature = key
                    .sign_prehashed(hasher, None)
                    .map_err(|e| signing_error(self.algorithm, e))?;
                Ok((digest, signature.to_bytes().to_vec()))
            }
        }
    }
}

/// How a request is sent, so only one encoding is kept in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Protojson bytes for `POST /api/v2/log/entries`.
    Json,
    /// A `CreateEntryRequest` message for gRPC.
    Proto,
}

/// The body of one request, ready to send.
#[derive(Clone, Debug)]
pub(crate) enum Body {
    /// Protojson.
    Json(Bytes),
    /// The protobuf message.
    Proto(CreateEntryRequest),
}

/// One pre-signed request.
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    /// What to send.
    pub(crate) body: Body,
    /// The digest it carries, to match the response's canonical body against.
    pub(crate) digest: Vec<u8>,
}

/// Makes requests from a fixed set of client keys.
pub(crate) struct RequestFactory {
    mix: Mix,
    keys: Vec<Vec<ClientKey>>,
    nonce: [u8; 16],
    encoding: Encoding,
}

impl RequestFactory {
    /// Generates `keys_per_algorithm` keys for each algorithm in `mix` and a random run nonce.
    ///
    /// # Errors
    ///
    /// [`BenchError::Signing`] if key generation fails.
    pub(crate) fn new(
        mix: Mix,
        keys_per_algorithm: usize,
        encoding: Encoding,
    ) -> Result<Self, BenchError> {
        let algorithms = mix.algorithms();
        let mut keys = Vec::with_capacity(algorithms.len());
        for algorithm in &algorithms {
            let mut set = Vec::with_capacity(keys_per_algorithm.max(1));
            for _ in 0..keys_per_algorithm.max(1) {
                set.push(ClientKey::generate(*algorithm)?);
            }
            keys.push(set);
        }
        let mut nonce = [0u8; 16];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|e| signing_error(Algorithm::P256, e))?;
        Ok(RequestFactory {
            mix,
            keys,
            nonce,
            encoding,
        })
    }

    fn key_for(&self, index: usize) -> Option<&ClientKey> {
        let algorithm = self.mix.pick(index);
        let set = self
            .keys
            .iter()
            .find(|set| set.first().is_some_and(|k| k.algorithm == algorithm))?;
        set.get((index / self.mix.slots.len().max(1)) % set.len().max(1))
    }

    /// Request number `index`: a distinct message, signed by the key the mix assigns it.
    ///
    /// # Errors
    ///
    /// [`BenchError::Signing`] if signing fails.
    pub(crate) fn make(&self, rng: &SystemRandom, index: u64) -> Result<Prepared, BenchError> {
        let position = usize::try_from(index).unwrap_or(usize::MAX);
        let key = self.key_for(position).ok_or_else(|| BenchError::Flag {
            flag: "--mix",
            reason: "no key for the mix".into(),
        })?;
        let mut message = Vec::with_capacity(40);
        message.extend_from_slice(b"rekor-bench ");
        message.extend_from_slice(&self.nonce);
        message.extend_from_slice(&index.to_be_bytes());
        let (digest, signature) = key.sign(rng, &message)?;
        let body = match self.encoding {
            Encoding::Json => Body::Json(Bytes::from(format!(
                concat!(
                    r#"{{"hashedRekordRequestV002":{{"digest":"{}","signature":{{"content":"{}","#,
                    r#""verifier":{{"publicKey":{{"rawBytes":"{}"}},"keyDetails":"{}"}}}}}}}}"#
                ),
                STANDARD.encode(&digest),
                STANDARD.encode(&signature),
                key.spki_b64,
                key.algorithm.key_details().as_str_name(),
            ))),
            Encoding::Proto => Body::Proto(CreateEntryRequest {
                spec: Some(create_entry_request::Spec::HashedRekordRequestV002(
                    HashedRekordRequestV002 {
                        digest: digest.clone(),
                        signature: Some(Signature {
                            content: signature,
                            verifier: Some(Verifier {
                                key_details: i32::from(key.algorithm.key_details()),
                                verifier: Some(verifier::Verifier::PublicKey(PublicKey {
                                    raw_bytes: key.spki.clone(),
                                })),
                            }),
                        }),
                    },
                )),
            }),
        };
        Ok(Prepared { body, digest })
    }

    /// Requests `start..end`, signed on `threads` OS threads.
    ///
    /// # Errors
    ///
    /// The first signing failure.
    pub(crate) fn make_range(
        &self,
        start: u64,
        end: u64,
        threads: usize,
    ) -> Result<Vec<Prepared>, BenchError> {
        let count = end.saturating_sub(start);
        let threads = u64::try_from(threads.max(1)).unwrap_or(1);
        let per_thread = count.div_ceil(threads).max(1);
        let parts: Vec<Result<Vec<Prepared>, BenchError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let from = start.saturating_add(t.saturating_mul(per_thread)).min(end);
                    let to = from.saturating_add(per_thread).min(end);
                    scope.spawn(move || {
                        let rng = SystemRandom::new();
                        (from..to).map(|i| self.make(&rng, i)).collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(BenchError::Signing {
                            algorithm: "any",
                            reason: "a signing thread panicked".into(),
                        })
                    })
                })
                .collect()
        });
        let mut all = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for part in parts {
            all.extend(part?);
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_weights_and_rejects_nonsense() {
        let mix: Mix = "p256=2,rsa2048".parse().unwrap();
        assert_eq!(mix.pick(0), Algorithm::P256);
        assert_eq!(mix.pick(1), Algorithm::P256);
        assert_eq!(mix.pick(2), Algorithm::Rsa2048);
        assert_eq!(mix.pick(3), Algorithm::P256);
        assert_eq!(mix.to_string(), "p256=2,rsa2048=1");
        assert!("p384".parse::<Mix>().is_err());
        assert!("p256=0".parse::<Mix>().is_err());
        assert!("p256=x".parse::<Mix>().is_err());
    }

    fn spec(prepared: &Prepared) -> HashedRekordRequestV002 {
        match &prepared.body {
            Body::Proto(CreateEntryRequest {
                spec: Some(create_entry_request::Spec::HashedRekordRequestV002(h)),
            }) => h.clone(),
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[test]
    fn every_algorithm_signs_a_digest_the_key_verifies() {
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_ASN1, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
        };
        let factory = RequestFactory::new(
            "p256,rsa2048,ed25519ph".parse().unwrap(),
            2,
            Encoding::Proto,
        )
        .unwrap();
        let rng = SystemRandom::new();
        let mut seen = Vec::new();
        for index in 0..6u64 {
            let prepared = factory.make(&rng, index).unwrap();
            let hashed = spec(&prepared);
            assert_eq!(prepared.digest, hashed.digest);
            let signature = hashed.signature.unwrap();
            let verifier = signature.verifier.unwrap();
            let Some(verifier::Verifier::PublicKey(key)) = verifier.verifier else {
                panic!("no public key")
            };
            let details = PublicKeyDetails::try_from(verifier.key_details).unwrap();
            seen.push(details);
            let message = [
                b"rekor-bench ".as_slice(),
                &factory.nonce,
                &index.to_be_bytes(),
            ]
            .concat();
            match details {
                PublicKeyDetails::PkixEcdsaP256Sha256
                | PublicKeyDetails::PkixRsaPkcs1v152048Sha256 => {
                    assert_eq!(hashed.digest, digest::digest(&SHA256, &message).as_ref());
                    let algorithm: &'static dyn aws_lc_rs::signature::VerificationAlgorithm =
                        if details == PublicKeyDetails::PkixEcdsaP256Sha256 {
                            &ECDSA_P256_SHA256_ASN1
                        } else {
                            &RSA_PKCS1_2048_8192_SHA256
                        };
                    UnparsedPublicKey::new(algorithm, &key.raw_bytes)
                        .verify(&message, &signature.content)
                        .unwrap();
                }
                PublicKeyDetails::PkixEd25519Ph => {
                    assert_eq!(
                        hashed.digest,
                        digest::digest(&digest::SHA512, &message).as_ref()
                    );
                    // An Ed25519 SPKI is a fixed 12-byte header followed by the 32-byte key.
                    let raw: [u8; 32] = key.raw_bytes[12..].try_into().unwrap();
                    let public = ed25519_dalek::VerifyingKey::from_bytes(&raw).unwrap();
                    let mut hasher = ed25519_dalek::Sha512::new();
                    hasher.update(&message);
                    let sig = ed25519_dalek::Signature::from_slice(&signature.content).unwrap();
                    public.verify_prehashed_strict(hasher, None, &sig).unwrap();
                }
                other => panic!("unexpected key details {other:?}"),
            }
        }
        assert_eq!(
            seen,
            [
                PublicKeyDetails::PkixEcdsaP256Sha256,
                PublicKeyDetails::PkixRsaPkcs1v152048Sha256,
                PublicKeyDetails::PkixEd25519Ph,
            ]
            .repeat(2)
        );
    }

    #[test]
    fn json_bodies_parse_as_strict_protojson_and_are_distinct() {
        let factory = RequestFactory::new("p256".parse().unwrap(), 1, Encoding::Json).unwrap();
        let made = factory.make_range(0, 64, 2).unwrap();
        assert_eq!(made.len(), 64);
        let mut seen = std::collections::HashSet::new();
        for prepared in &made {
            let Body::Json(json) = &prepared.body else {
                panic!("expected JSON")
            };
            let request = rekor_api::create_entry_request_from_json(json).unwrap();
            let Some(create_entry_request::Spec::HashedRekordRequestV002(h)) = request.spec else {
                panic!("expected a hashedrekord request")
            };
            assert_eq!(h.digest, prepared.digest);
            assert!(seen.insert(h.digest), "two requests share a digest");
        }
    }
}
