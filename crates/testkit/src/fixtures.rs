//! Client keys, signed artifacts and `CreateEntryRequest`s, built without the server's code.
//!
//! The protojson request is written by hand from the protobuf-specs field names (not through
//! `rekor-api`'s serde), so a wrong mapping in our generated types cannot hide itself. The
//! prost message is built field by field for the gRPC path.

use std::fmt;
use std::path::Path;
use std::process::Command;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rekor_api::common::v1::{PublicKeyDetails, X509Certificate};
use rekor_api::rekor::v2::create_entry_request::Spec;
use rekor_api::rekor::v2::{
    CreateEntryRequest, HashedRekordRequestV002, PublicKey, Signature, Verifier, verifier,
};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::error::{Error, Result};

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (0 unused bits) } around the 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A client signing algorithm, as `PublicKeyDetails` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// ECDSA P-256 with SHA-256 (`PKIX_ECDSA_P256_SHA_256`).
    EcdsaP256,
    /// ECDSA P-384 with SHA-384 (`PKIX_ECDSA_P384_SHA_384`).
    EcdsaP384,
    /// Ed25519ph over a SHA-512 prehash, empty context (`PKIX_ED25519_PH`).
    Ed25519ph,
    /// Pure Ed25519 (`PKIX_ED25519`): Rekor v2 refuses it, since it holds only a digest.
    Ed25519,
}

impl KeyKind {
    /// The `PublicKeyDetails` enum name.
    pub const fn key_details(self) -> &'static str {
        match self {
            KeyKind::EcdsaP256 => "PKIX_ECDSA_P256_SHA_256",
            KeyKind::EcdsaP384 => "PKIX_ECDSA_P384_SHA_384",
            KeyKind::Ed25519ph => "PKIX_ED25519_PH",
            KeyKind::Ed25519 => "PKIX_ED25519",
        }
    }

    /// The `HashAlgorithm` enum name of the digest this algorithm signs.
    pub const fn hash_algorithm(self) -> &'static str {
        match self {
            KeyKind::EcdsaP256 => "SHA2_256",
            KeyKind::EcdsaP384 => "SHA2_384",
            KeyKind::Ed25519ph | KeyKind::Ed25519 => "SHA2_512",
        }
    }

    /// The digest of `artifact` that a hashedrekord request carries for this algorithm.
    pub fn digest(self, artifact: &[u8]) -> Vec<u8> {
        match self {
            KeyKind::EcdsaP256 => sha2::Sha256::digest(artifact).to_vec(),
            KeyKind::EcdsaP384 => sha2::Sha384::digest(artifact).to_vec(),
            KeyKind::Ed25519ph | KeyKind::Ed25519 => sha2::Sha512::digest(artifact).to_vec(),
        }
    }
}

/// The protobuf number of a `PublicKeyDetails` name.
///
/// # Errors
///
/// [`Error::Malformed`] for a name the generated enum does not know.
pub fn key_details_number(name: &str) -> Result<i32> {
    PublicKeyDetails::from_str_name(name)
        .map(i32::from)
        .ok_or_else(|| Error::malformed("keyDetails", format!("unknown name {name}")))
}

enum Secret {
    Ecdsa(EcdsaKeyPair),
    Ed25519(ed25519_dalek::SigningKey),
}

/// A client key pair, optionally with a self-signed certificate to use as the verifier.
pub struct ClientKey {
    kind: KeyKind,
    secret: Secret,
    spki_der: Vec<u8>,
    certificate_der: Option<Vec<u8>>,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("kind", &self.kind)
            .field("spki_der", &hex::encode(&self.spki_der))
            .field("certificate", &self.certificate_der.is_some())
            .finish_non_exhaustive()
    }
}

fn crypto(what: &'static str) -> impl FnOnce(aws_lc_rs::error::Unspecified) -> Error {
    move |e| Error::Crypto {
        what,
        reason: e.to_string(),
    }
}

fn ecdsa_algorithm(kind: KeyKind) -> Option<&'static EcdsaSigningAlgorithm> {
    match kind {
        KeyKind::EcdsaP256 => Some(&ECDSA_P256_SHA256_ASN1_SIGNING),
        KeyKind::EcdsaP384 => Some(&ECDSA_P384_SHA384_ASN1_SIGNING),
        KeyKind::Ed25519ph | KeyKind::Ed25519 => None,
    }
}

/// Writes a fresh Ed25519 log signing key (PKCS#8 PEM, mode 0600) to `path`: the key the
/// frontends of one log share, passed to each as `--signer-filepath`.
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be written.
pub fn write_log_key(path: &std::path::Path, hostname: &str) -> Result<()> {
    let signer = rekor_note::LogSigner::from_ed25519_seed(
        random_bytes::<32>()?,
        rekor_note::KeyName::new(hostname)?,
    );
    let pem = signer.to_pkcs8_pem()?;
    std::fs::write(path, pem.as_bytes()).map_err(|e| Error::io("writing the log key", e))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("restricting the log key", e))
}

/// Fresh random bytes from the system.
///
/// # Errors
///
/// [`Error::Crypto`] if the system RNG fails.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(crypto("random bytes"))?;
    Ok(bytes)
}

impl ClientKey {
    /// Generates a key of `kind`.
    ///
    /// # Errors
    ///
    /// [`Error::Crypto`] if generation fails.
    pub fn generate(kind: KeyKind) -> Result<Self> {
        match ecdsa_algorithm(kind) {
            Some(algorithm) => {
                let pair = EcdsaKeyPair::generate(algorithm).map_err(crypto("generating"))?;
                Self::from_ecdsa(kind, pair)
            }
            None => {
                let secret = ed25519_dalek::SigningKey::from_bytes(&random_bytes::<32>()?);
                let mut spki_der = ED25519_SPKI_PREFIX.to_vec();
                spki_der.extend_from_slice(secret.verifying_key().as_bytes());
                Ok(ClientKey {
                    kind,
                    secret: Secret::Ed25519(secret),
                    spki_der,
                    certificate_der: None,
                })
            }
        }
    }

    fn from_ecdsa(kind: KeyKind, pair: EcdsaKeyPair) -> Result<Self> {
        let spki_der = pair
            .public_key()
            .as_der()
            .map_err(crypto("encoding the public key"))?
            .as_ref()
            .to_vec();
        Ok(ClientKey {
            kind,
            secret: Secret::Ecdsa(pair),
            spki_der,
            certificate_der: None,
        })
    }

    /// Generates a P-256 key and a self-signed X.509 certificate for it with the `openssl`
    /// command, working in `workdir`. The certificate becomes the verifier of its submissions.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if `openssl` cannot be run (for example, it is not installed),
    /// [`Error::Command`] if it fails, [`Error::Crypto`] if its key does not load.
    pub fn p256_with_self_signed_certificate(workdir: &Path) -> Result<Self> {
        let key_path = workdir.join("client-key.pem");
        let cert_path = workdir.join("client-cert.der");
        let output = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec"])
            .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .arg("-keyout")
            .arg(&key_path)
            .arg("-out")
            .arg(&cert_path)
            .args([
                "-outform",
                "DER",
                "-subj",
                "/CN=rekor-testkit",
                "-days",
                "2",
            ])
            .output()
            .map_err(|source| Error::io("running openssl req", source))?;
        if !output.status.success() {
            return Err(Error::Command {
                program: "openssl",
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        let pem = std::fs::read_to_string(&key_path)
            .map_err(|source| Error::io("reading the openssl key", source))?;
        let pkcs8 = pem_body(&pem, "PRIVATE KEY")?;
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8).map_err(|e| {
                Error::Crypto {
                    what: "loading the openssl key",
                    reason: e.to_string(),
                }
            })?;
        let certificate = std::fs::read(&cert_path)
            .map_err(|source| Error::io("reading the openssl certificate", source))?;
        let mut key = Self::from_ecdsa(KeyKind::EcdsaP256, pair)?;
        key.certificate_der = Some(certificate);
        Ok(key)
    }

    /// The algorithm.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The public key, DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The certificate, if this key has one.
    pub fn certificate_der(&self) -> Option<&[u8]> {
        self.certificate_der.as_deref()
    }

    /// Signs `artifact` as this algorithm's hashedrekord verifier expects: ECDSA over the
    /// artifact (so over its digest), Ed25519ph over the SHA-512 prehash, pure Ed25519 over the
    /// artifact itself.
    ///
    /// # Errors
    ///
    /// [`Error::Crypto`] if signing fails.
    pub fn sign(&self, artifact: &[u8]) -> Result<Vec<u8>> {
        match &self.secret {
            Secret::Ecdsa(pair) => Ok(pair
                .sign(&SystemRandom::new(), artifact)
                .map_err(crypto("signing"))?
                .as_ref()
                .to_vec()),
            Secret::Ed25519(key) if self.kind == KeyKind::Ed25519ph => {
                let prehash = sha2::Sha512::new().chain_update(artifact);
                let signature = key
                    .sign_prehashed(prehash, None)
                    .map_err(|e| Error::Crypto {
                        what: "Ed25519ph signing",
                        reason: e.to_string(),
                    })?;
                Ok(signature.to_bytes().to_vec())
            }
            Secret::Ed25519(key) => {
                use ed25519_dalek::Signer as _;
                Ok(key.sign(artifact).to_bytes().to_vec())
            }
        }
    }

    /// Signs `artifact` and describes the hashedrekord request for it.
    ///
    /// # Errors
    ///
    /// As [`ClientKey::sign`].
    pub fn hashed_rekord(&self, artifact: &[u8]) -> Result<Submission> {
        let verifier = match &self.certificate_der {
            Some(certificate) => VerifierMaterial::Certificate(certificate.clone()),
            None => VerifierMaterial::PublicKey(self.spki_der.clone()),
        };
        Ok(Submission {
            artifact: artifact.to_vec(),
            digest: self.kind.digest(artifact),
            signature: self.sign(artifact)?,
            verifier,
            key_details: self.kind.key_details(),
            hash_algorithm: self.kind.hash_algorithm(),
        })
    }
}

/// Decodes the base64 body of the first PEM block with `label`.
fn pem_body(pem: &str, label: &str) -> Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = pem
        .split_once(&begin)
        .and_then(|(_, rest)| rest.split_once(&end))
        .map(|(body, _)| body)
        .ok_or_else(|| Error::malformed("PEM", format!("no {label} block")))?;
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD
        .decode(compact)
        .map_err(|e| Error::malformed("PEM", e.to_string()))
}

/// `message` followed by an unknown length-delimited field 15 of `len` bytes, which proto3
/// decoders skip: the message stays valid, only longer.
pub fn with_unknown_field(mut message: Vec<u8>, len: usize) -> Vec<u8> {
    message.push((15 << 3) | 2);
    let mut rest = len;
    loop {
        let byte = u8::try_from(rest & 0x7f).unwrap_or(0);
        rest >>= 7;
        if rest == 0 {
            message.push(byte);
            break;
        }
        message.push(byte | 0x80);
    }
    message.extend(std::iter::repeat_n(b'z', len));
    message
}

/// A unique artifact: a label, an index and 16 random bytes.
///
/// # Errors
///
/// [`Error::Crypto`] if the RNG fails.
pub fn artifact(label: &str, index: usize) -> Result<Vec<u8>> {
    let mut data = format!("rekor-testkit artifact {label} #{index} ").into_bytes();
    data.extend_from_slice(&random_bytes::<16>()?);
    Ok(data)
}

/// What identifies the signer in a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifierMaterial {
    /// `publicKey.rawBytes`: a DER SubjectPublicKeyInfo.
    PublicKey(Vec<u8>),
    /// `x509Certificate.rawBytes`: a DER certificate.
    Certificate(Vec<u8>),
}

/// One hashedrekord v0.0.2 submission: the values a client sends and expects to see logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    /// The signed artifact (never sent).
    pub artifact: Vec<u8>,
    /// `hashedRekordRequestV002.digest`.
    pub digest: Vec<u8>,
    /// `signature.content`.
    pub signature: Vec<u8>,
    /// `signature.verifier`'s key member.
    pub verifier: VerifierMaterial,
    /// `signature.verifier.keyDetails`, by name.
    pub key_details: &'static str,
    /// The `HashAlgorithm` name the log records for the digest.
    pub hash_algorithm: &'static str,
}

impl Submission {
    fn verifier_json(&self) -> Value {
        match &self.verifier {
            VerifierMaterial::PublicKey(der) => json!({
                "publicKey": { "rawBytes": STANDARD.encode(der) },
                "keyDetails": self.key_details,
            }),
            VerifierMaterial::Certificate(der) => json!({
                "x509Certificate": { "rawBytes": STANDARD.encode(der) },
                "keyDetails": self.key_details,
            }),
        }
    }

    /// The protojson `CreateEntryRequest` as a JSON value (edit it to build bad requests).
    pub fn request_json(&self) -> Value {
        json!({
            "hashedRekordRequestV002": {
                "digest": STANDARD.encode(&self.digest),
                "signature": {
                    "content": STANDARD.encode(&self.signature),
                    "verifier": self.verifier_json(),
                },
            }
        })
    }

    /// The protojson `CreateEntryRequest` body for `POST /api/v2/log/entries`.
    pub fn request_json_text(&self) -> String {
        self.request_json().to_string()
    }

    /// The prost `CreateEntryRequest` for gRPC `CreateEntry`.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] if `key_details` is not a `PublicKeyDetails` name.
    pub fn request_proto(&self) -> Result<CreateEntryRequest> {
        let key = match &self.verifier {
            VerifierMaterial::PublicKey(der) => verifier::Verifier::PublicKey(PublicKey {
                raw_bytes: der.clone(),
            }),
            VerifierMaterial::Certificate(der) => {
                verifier::Verifier::X509Certificate(X509Certificate {
                    raw_bytes: der.clone(),
                })
            }
        };
        Ok(CreateEntryRequest {
            spec: Some(Spec::HashedRekordRequestV002(HashedRekordRequestV002 {
                digest: self.digest.clone(),
                signature: Some(Signature {
                    content: self.signature.clone(),
                    verifier: Some(Verifier {
                        verifier: Some(key),
                        key_details: key_details_number(self.key_details)?,
                    }),
                }),
            })),
        })
    }

    /// The log entry (`canonicalizedBody`) this submission must produce, as a JSON value: the
    /// protojson `dev.sigstore.rekor.v2.Entry` with kind `hashedrekord`, apiVersion `0.0.2`,
    /// the digest under `data`, and the signature and verifier as sent.
    pub fn expected_body(&self) -> Value {
        json!({
            "apiVersion": "0.0.2",
            "kind": "hashedrekord",
            "spec": {
                "hashedRekordV002": {
                    "data": {
                        "algorithm": self.hash_algorithm,
                        "digest": STANDARD.encode(&self.digest),
                    },
                    "signature": {
                        "content": STANDARD.encode(&self.signature),
                        "verifier": self.verifier_json(),
                    },
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, ED25519, UnparsedPublicKey,
    };

    #[test]
    fn ecdsa_submissions_verify_with_an_independent_verifier() {
        for (kind, algorithm, digest_len) in [
            (KeyKind::EcdsaP256, &ECDSA_P256_SHA256_ASN1, 32),
            (KeyKind::EcdsaP384, &ECDSA_P384_SHA384_ASN1, 48),
        ] {
            let key = ClientKey::generate(kind).unwrap();
            let submission = key.hashed_rekord(b"artifact").unwrap();
            assert_eq!(submission.digest.len(), digest_len);
            // The SPKI's last bytes are the uncompressed point aws-lc's verifier takes.
            let point_len = 1 + 2 * (digest_len);
            let point = &key.public_key_der()[key.public_key_der().len() - point_len..];
            UnparsedPublicKey::new(algorithm, point)
                .verify(b"artifact", &submission.signature)
                .unwrap();
            assert!(
                UnparsedPublicKey::new(algorithm, point)
                    .verify(b"another artifact", &submission.signature)
                    .is_err()
            );
        }
    }

    #[test]
    fn ed25519_keys_have_rfc8410_spki_and_pure_signatures_verify() {
        let key = ClientKey::generate(KeyKind::Ed25519).unwrap();
        assert_eq!(key.public_key_der().len(), 44);
        let signature = key.sign(b"message").unwrap();
        UnparsedPublicKey::new(&ED25519, &key.public_key_der()[12..])
            .verify(b"message", &signature)
            .unwrap();
    }

    #[test]
    fn ed25519ph_signatures_differ_from_pure_ones() {
        let key = ClientKey::generate(KeyKind::Ed25519ph).unwrap();
        let signature = key.sign(b"message").unwrap();
        assert_eq!(signature.len(), 64);
        // Ed25519ph signs dom2(1, "") || SHA-512(m), so a pure verifier must refuse it.
        assert!(
            UnparsedPublicKey::new(&ED25519, &key.public_key_der()[12..])
                .verify(b"message", &signature)
                .is_err()
        );
    }

    #[test]
    fn json_and_proto_requests_carry_the_same_values() {
        let key = ClientKey::generate(KeyKind::EcdsaP256).unwrap();
        let submission = key.hashed_rekord(b"x").unwrap();
        let json = submission.request_json();
        let hashed = &json["hashedRekordRequestV002"];
        assert_eq!(
            STANDARD.decode(hashed["digest"].as_str().unwrap()).unwrap(),
            sha2::Sha256::digest(b"x").to_vec()
        );
        assert_eq!(
            hashed["signature"]["verifier"]["keyDetails"],
            "PKIX_ECDSA_P256_SHA_256"
        );
        let proto = submission.request_proto().unwrap();
        let Some(Spec::HashedRekordRequestV002(request)) = proto.spec else {
            panic!("no hashedrekord spec");
        };
        assert_eq!(request.digest, submission.digest);
        // PKIX_ECDSA_P256_SHA_256 is 5 in protobuf-specs' sigstore_common.proto.
        assert_eq!(request.signature.unwrap().verifier.unwrap().key_details, 5);
    }

    #[test]
    fn pem_bodies_decode() {
        let pem = "junk\n-----BEGIN PRIVATE KEY-----\nAAEC\nAw==\n-----END PRIVATE KEY-----\n";
        assert_eq!(pem_body(pem, "PRIVATE KEY").unwrap(), [0, 1, 2, 3]);
        assert!(pem_body(pem, "CERTIFICATE").is_err());
    }
}
