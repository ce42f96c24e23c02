//! Client keys: signing an artifact with a private key, and reading public keys, certificates
//! and signatures made elsewhere.

use anyhow::{Context as _, anyhow, bail};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P521_SHA512_ASN1_SIGNING,
    EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair as _,
};
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
use rekor_api::common::v1::HashAlgorithm;
use rekor_entries::SigningAlgorithm;
use rekor_entries::input::VerifierKey;
use sha2::Digest as _;

/// A private key the CLI signs with.
pub(crate) enum PrivateKey {
    /// ECDSA, signing with the curve's hash (P-256/SHA-256, P-384/SHA-384, P-521/SHA-512).
    Ecdsa {
        /// The key pair.
        pair: EcdsaKeyPair,
        /// Its Rekor algorithm.
        algorithm: SigningAlgorithm,
    },
    /// Ed25519, signing as Ed25519ph over SHA-512 (pure Ed25519 cannot sign a digest).
    Ed25519(ed25519_dalek::SigningKey),
}

const ECDSA: [(&EcdsaSigningAlgorithm, SigningAlgorithm); 3] = [
    (
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        SigningAlgorithm::EcdsaP256Sha256,
    ),
    (
        &ECDSA_P384_SHA384_ASN1_SIGNING,
        SigningAlgorithm::EcdsaP384Sha384,
    ),
    (
        &ECDSA_P521_SHA512_ASN1_SIGNING,
        SigningAlgorithm::EcdsaP521Sha512,
    ),
];

/// Decodes PEM with one of `labels`, or returns non-PEM input as DER.
fn pem_body(bytes: &[u8], labels: &[&str], what: &str) -> anyhow::Result<Vec<u8>> {
    let text = bytes.trim_ascii_start();
    if !text.starts_with(b"-----BEGIN ") {
        return Ok(bytes.to_vec());
    }
    let (label, der) = der_pem_decode(text).map_err(|e| anyhow!("{what}: malformed PEM ({e})"))?;
    if label == "ENCRYPTED PRIVATE KEY" {
        bail!("{what}: encrypted keys are not supported; decrypt it first (openssl pkcs8)");
    }
    if !labels.contains(&label.as_str()) {
        bail!(
            "{what}: expected a PEM {} block, found {label:?}",
            labels.join(" or ")
        );
    }
    Ok(der)
}

fn der_pem_decode(text: &[u8]) -> anyhow::Result<(String, Vec<u8>)> {
    // A PEM file may hold several blocks (e.g. EC PARAMETERS first); use the first key block.
    let text = std::str::from_utf8(text).context("not UTF-8")?;
    let start = text
        .match_indices("-----BEGIN ")
        .map(|(i, _)| i)
        .find(|&i| !text[i..].starts_with("-----BEGIN EC PARAMETERS-----"))
        .ok_or_else(|| anyhow!("no PEM block"))?;
    let block = &text[start..];
    let label = block
        .strip_prefix("-----BEGIN ")
        .and_then(|rest| rest.split_once("-----"))
        .map(|(label, _)| label.to_string())
        .ok_or_else(|| anyhow!("no PEM label"))?;
    let end_marker = format!("-----END {label}-----");
    let end = block
        .find(&end_marker)
        .ok_or_else(|| anyhow!("no {end_marker} line"))?;
    let one = &block[..end + end_marker.len()];
    let (found, der) = rekor_client::pem_or_der(one.as_bytes(), &label, "PEM")
        .map(|der| (label.clone(), der))
        .map_err(|e| anyhow!("{e}"))?;
    Ok((found, der))
}

impl PrivateKey {
    /// Reads an unencrypted private key: PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`), PEM
    /// or DER, holding an ECDSA P-256, P-384, P-521 or Ed25519 key.
    pub(crate) fn from_file_bytes(bytes: &[u8], what: &str) -> anyhow::Result<PrivateKey> {
        let der = pem_body(bytes, &["PRIVATE KEY", "EC PRIVATE KEY"], what)?;
        for (curve, algorithm) in ECDSA {
            if let Ok(pair) = EcdsaKeyPair::from_private_key_der(curve, &der) {
                return Ok(PrivateKey::Ecdsa { pair, algorithm });
            }
        }
        if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_der(&der) {
            return Ok(PrivateKey::Ed25519(key));
        }
        bail!("{what}: not an ECDSA P-256/P-384/P-521 or Ed25519 private key (PKCS#8 or SEC1)")
    }

    /// The Rekor signing algorithm this key uses.
    pub(crate) fn algorithm(&self) -> SigningAlgorithm {
        match self {
            PrivateKey::Ecdsa { algorithm, .. } => *algorithm,
            PrivateKey::Ed25519(_) => SigningAlgorithm::Ed25519ph,
        }
    }

    /// The public key, DER SubjectPublicKeyInfo.
    pub(crate) fn public_key_der(&self) -> anyhow::Result<Vec<u8>> {
        match self {
            PrivateKey::Ecdsa { pair, .. } => Ok(pair
                .public_key()
                .as_der()
                .map_err(|_| anyhow!("cannot encode the public key"))?
                .as_ref()
                .to_vec()),
            PrivateKey::Ed25519(key) => Ok(key
                .verifying_key()
                .to_public_key_der()
                .map_err(|e| anyhow!("cannot encode the public key: {e}"))?
                .into_vec()),
        }
    }

    /// Signs `artifact` (the whole file): ECDSA over the curve's hash, or Ed25519ph over its
    /// SHA-512.
    pub(crate) fn sign(&self, artifact: &[u8]) -> anyhow::Result<Vec<u8>> {
        match self {
            PrivateKey::Ecdsa { pair, .. } => Ok(pair
                .sign(&SystemRandom::new(), artifact)
                .map_err(|_| anyhow!("ECDSA signing failed"))?
                .as_ref()
                .to_vec()),
            PrivateKey::Ed25519(key) => Ok(key
                .sign_prehashed(sha2::Sha512::new().chain_update(artifact), None)
                .map_err(|e| anyhow!("Ed25519ph signing failed: {e}"))?
                .to_bytes()
                .to_vec()),
        }
    }
}

/// The digest a hashedrekord entry logs for `artifact` under `algorithm`.
pub(crate) fn artifact_digest(algorithm: SigningAlgorithm, artifact: &[u8]) -> Vec<u8> {
    let hash = match algorithm.hash() {
        rekor_entries::HashAlgorithm::Sha256 => HashAlgorithm::Sha2256,
        rekor_entries::HashAlgorithm::Sha384 => HashAlgorithm::Sha2384,
        rekor_entries::HashAlgorithm::Sha512 => HashAlgorithm::Sha2512,
    };
    rekor_client::digest(hash, artifact).unwrap_or_default()
}

/// Reads a public key (PEM `PUBLIC KEY` or DER) or a certificate (PEM `CERTIFICATE` or DER).
pub(crate) fn verifier_key(
    bytes: &[u8],
    certificate: bool,
    what: &str,
) -> anyhow::Result<VerifierKey> {
    if certificate {
        Ok(VerifierKey::Certificate(pem_body(
            bytes,
            &["CERTIFICATE"],
            what,
        )?))
    } else {
        Ok(VerifierKey::PublicKey(pem_body(
            bytes,
            &["PUBLIC KEY"],
            what,
        )?))
    }
}

/// The algorithm for a verifier: named (`--key-details`, as a `PublicKeyDetails` name such as
/// `PKIX_ECDSA_P256_SHA_256` or a Sigstore flag name such as `ecdsa-sha2-256-nistp256`), or the
/// one Rekor v2 allows for the key's type.
pub(crate) fn algorithm_for(
    key: &VerifierKey,
    named: Option<&str>,
) -> anyhow::Result<SigningAlgorithm> {
    if let Some(name) = named {
        return SigningAlgorithm::ALL
            .into_iter()
            .find(|a| a.key_details_name() == name || a.flag_name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = SigningAlgorithm::ALL
                    .iter()
                    .map(SigningAlgorithm::key_details_name)
                    .collect();
                anyhow!("--key-details {name:?} is not one of {}", names.join(", "))
            });
    }
    let parsed = rekor_entries::VerificationKey::from_verifier_key(
        key,
        rekor_entries::VerifierAt::HashedRekord,
    )
    .context("reading the verifier")?;
    let key_type = parsed.key_type();
    SigningAlgorithm::ALL
        .into_iter()
        .find(|a| key_type.fits(*a))
        .ok_or_else(|| anyhow!("Rekor v2 accepts no algorithm for {key_type}; pass --key-details"))
}

/// Reads a signature file: raw bytes, or base64 text (as cosign writes).
pub(crate) fn signature_bytes(bytes: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(bytes.trim_ascii())
        .unwrap_or_else(|_| bytes.to_vec())
}
