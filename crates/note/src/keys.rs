//! The log's own signing and verifying keys: Ed25519, ECDSA P-256/SHA-256 and P-384/SHA-384,
//! with the key IDs and log IDs that Rekor v2 (rekor-tiles `pkg/note`) and Sigstore clients use.

use core::fmt;
use std::sync::Arc;

use ed25519_dalek::Signer as _;
use p256::ecdsa::signature::Verifier as _;
use pkcs8::der::Decode as _;
use pkcs8::{AssociatedOid as _, EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::pem::{PrivateKey, decode_private_key_pem};
use crate::vkey::{SIG_TYPE_ECDSA, SIG_TYPE_ED25519, Vkey, format_vkey, key_hash, key_id_of};
use crate::{
    Checkpoint, KeyName, MlDsa44Signer, MlDsa44Verifier, Note, NoteError, NoteSignature,
    NoteSigner, NoteVerifier,
};

/// The signature algorithms a log key may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogKeyAlgorithm {
    /// Pure Ed25519 (RFC 8032) over the note text.
    Ed25519,
    /// ECDSA on NIST P-256 over SHA-256 of the note text, ASN.1 DER signature.
    EcdsaP256Sha256,
    /// ECDSA on NIST P-384 over SHA-384 of the note text, ASN.1 DER signature.
    EcdsaP384Sha384,
}

impl LogKeyAlgorithm {
    /// The Sigstore `PublicKeyDetails` enum name (protobuf-specs `sigstore_common.proto`) to put
    /// in a TrustedRoot `tlogs[].publicKey.keyDetails`.
    #[must_use]
    pub fn key_details(self) -> &'static str {
        match self {
            Self::Ed25519 => "PKIX_ED25519",
            Self::EcdsaP256Sha256 => "PKIX_ECDSA_P256_SHA_256",
            Self::EcdsaP384Sha384 => "PKIX_ECDSA_P384_SHA_384",
        }
    }
}

/// Log ID of an Ed25519 log key: SHA-256(name || 0x0A || 0x01 || 32-byte public key).
#[must_use]
pub fn ed25519_log_id(name: &KeyName, public_key: &[u8; 32]) -> [u8; 32] {
    key_hash(name, SIG_TYPE_ED25519, public_key)
}

/// Log ID of an ECDSA log key: SHA-256(DER SubjectPublicKeyInfo). The name is not hashed.
///
/// rekor-tiles (`pkg/note` `ecdsaKeyHash`) and the signed-note spec (type 0x02) agree; the note's
/// 4-byte key ID is the first four bytes of this hash, like for every other key type.
#[must_use]
pub fn ecdsa_log_id(spki_der: &[u8]) -> [u8; 32] {
    Sha256::digest(spki_der).into()
}

#[derive(Clone, PartialEq, Eq)]
enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

impl PublicKey {
    fn algorithm(&self) -> LogKeyAlgorithm {
        match self {
            Self::Ed25519(_) => LogKeyAlgorithm::Ed25519,
            Self::P256(_) => LogKeyAlgorithm::EcdsaP256Sha256,
            Self::P384(_) => LogKeyAlgorithm::EcdsaP384Sha384,
        }
    }

    fn spki_der(&self) -> Result<Vec<u8>, NoteError> {
        let doc = match self {
            Self::Ed25519(k) => k.to_public_key_der(),
            Self::P256(k) => k.to_public_key_der(),
            Self::P384(k) => k.to_public_key_der(),
        }
        .map_err(|_| NoteError::KeyEncoding)?;
        Ok(doc.into_vec())
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            Self::Ed25519(k) => ed25519_dalek::Signature::from_slice(sig)
                .is_ok_and(|s| k.verify_strict(msg, &s).is_ok()),
            Self::P256(k) => {
                p256::ecdsa::DerSignature::from_bytes(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
            }
            Self::P384(k) => {
                p384::ecdsa::DerSignature::from_bytes(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
            }
        }
    }
}

/// Verifies checkpoints signed by one log key. Implements [`NoteVerifier`].
#[derive(Clone, PartialEq, Eq)]
pub struct LogVerifier {
    name: KeyName,
    key: PublicKey,
    spki_der: Vec<u8>,
    log_id: [u8; 32],
}

impl fmt::Debug for LogVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogVerifier")
            .field("name", &self.name)
            .field("algorithm", &self.key.algorithm())
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl LogVerifier {
    fn from_key(name: KeyName, key: PublicKey) -> Result<Self, NoteError> {
        let spki_der = key.spki_der()?;
        let log_id = match &key {
            PublicKey::Ed25519(k) => ed25519_log_id(&name, k.as_bytes()),
            PublicKey::P256(_) | PublicKey::P384(_) => ecdsa_log_id(&spki_der),
        };
        Ok(Self {
            name,
            key,
            spki_der,
            log_id,
        })
    }

    /// A verifier for a DER SubjectPublicKeyInfo holding an Ed25519, P-256 or P-384 key (the
    /// TrustedRoot `tlogs[].publicKey.rawBytes`). `name` is the log's key name, its origin.
    ///
    /// ECDSA keys are re-encoded (uncompressed point) before hashing, as Go's
    /// `x509.MarshalPKIXPublicKey` does in rekor-tiles.
    ///
    /// # Errors
    /// [`NoteError::InvalidPublicKey`], [`NoteError::UnsupportedKeyAlgorithm`] or
    /// [`NoteError::UnsupportedCurve`].
    pub fn from_spki_der(name: KeyName, der: &[u8]) -> Result<Self, NoteError> {
        let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|_| NoteError::InvalidPublicKey)?;
        let oid = spki.algorithm.oid;
        let key = if oid == ed25519_dalek::pkcs8::ALGORITHM_OID {
            ed25519_dalek::VerifyingKey::try_from(spki)
                .map(PublicKey::Ed25519)
                .map_err(|_| NoteError::InvalidPublicKey)?
        } else if oid == p256::elliptic_curve::ALGORITHM_OID {
            let curve =
                spki.algorithm
                    .parameters_oid()
                    .map_err(|_| NoteError::UnsupportedCurve {
                        oid: "none".to_owned(),
                    })?;
            if curve == p256::NistP256::OID {
                p256::ecdsa::VerifyingKey::try_from(spki)
                    .map(PublicKey::P256)
                    .map_err(|_| NoteError::InvalidPublicKey)?
            } else if curve == p384::NistP384::OID {
                p384::ecdsa::VerifyingKey::try_from(spki)
                    .map(PublicKey::P384)
                    .map_err(|_| NoteError::InvalidPublicKey)?
            } else {
                return Err(NoteError::UnsupportedCurve {
                    oid: curve.to_string(),
                });
            }
        } else {
            return Err(NoteError::UnsupportedKeyAlgorithm {
                oid: oid.to_string(),
            });
        };
        Self::from_key(name, key)
    }

    /// A verifier for a raw 32-byte Ed25519 public key.
    ///
    /// # Errors
    /// [`NoteError::InvalidPublicKey`] if the bytes are not a curve point.
    pub fn from_ed25519_public_key(
        name: KeyName,
        public_key: &[u8; 32],
    ) -> Result<Self, NoteError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(public_key)
            .map_err(|_| NoteError::InvalidPublicKey)?;
        Self::from_key(name, PublicKey::Ed25519(key))
    }

    /// Parses a signed-note verifier key `name+hex8+base64(type || key)`.
    ///
    /// - Type `0x01`: 32-byte Ed25519 key; key ID = SHA-256(name || 0x0A || 0x01 || key)[:4].
    /// - Type `0x02`: DER SPKI of a P-256 key (the transparency-dev/witness `NewECDSAVerifier`
    ///   format, which always hashes with SHA-256); key ID = SHA-256(SPKI)[:4]. P-384 keys are
    ///   refused under this type because rekor-tiles signs P-384 notes over SHA-384.
    ///
    /// rekor-tiles itself defines no vkey format; its clients take the DER key from a TrustedRoot.
    ///
    /// # Errors
    /// The vkey variants of [`NoteError`], [`NoteError::InvalidPublicKey`] or
    /// [`NoteError::UnsupportedCurve`].
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let parsed = Vkey::parse(vkey)?;
        let verifier = match parsed.sig_type {
            SIG_TYPE_ED25519 => {
                let key = <[u8; 32]>::try_from(parsed.key.as_slice())
                    .map_err(|_| NoteError::InvalidPublicKey)?;
                Self::from_ed25519_public_key(parsed.name.clone(), &key)?
            }
            SIG_TYPE_ECDSA => {
                let v = Self::from_spki_der(parsed.name.clone(), &parsed.key)?;
                if v.key.algorithm() != LogKeyAlgorithm::EcdsaP256Sha256 {
                    return Err(NoteError::UnsupportedCurve {
                        oid: p384::NistP384::OID.to_string(),
                    });
                }
                // The key ID covers the DER exactly as written in the vkey.
                parsed.expect_key_id(key_id_of(&ecdsa_log_id(&parsed.key)))?;
                v
            }
            sig_type => return Err(NoteError::UnsupportedVkeyType { sig_type }),
        };
        parsed.expect_key_id(verifier.key_id())?;
        Ok(verifier)
    }

    /// The verifier key string, for Ed25519 (type `0x01`) and P-256 (type `0x02`) keys.
    ///
    /// `None` for P-384: no vkey type describes ECDSA over SHA-384.
    #[must_use]
    pub fn to_vkey(&self) -> Option<String> {
        match &self.key {
            PublicKey::Ed25519(k) => Some(format_vkey(
                &self.name,
                self.key_id(),
                SIG_TYPE_ED25519,
                k.as_bytes(),
            )),
            PublicKey::P256(_) => Some(format_vkey(
                &self.name,
                self.key_id(),
                SIG_TYPE_ECDSA,
                &self.spki_der,
            )),
            PublicKey::P384(_) => None,
        }
    }

    /// The key's name, which is the origin of the checkpoints it verifies.
    #[must_use]
    pub fn name(&self) -> &KeyName {
        &self.name
    }

    /// The full 32-byte log ID (`TransparencyLogEntry.logId.keyId`, TrustedRoot
    /// `tlogs[].logId.keyId`).
    #[must_use]
    pub fn log_id(&self) -> [u8; 32] {
        self.log_id
    }

    /// The key's algorithm.
    #[must_use]
    pub fn algorithm(&self) -> LogKeyAlgorithm {
        self.key.algorithm()
    }

    /// DER SubjectPublicKeyInfo of the key.
    #[must_use]
    pub fn public_key_der(&self) -> Vec<u8> {
        self.spki_der.clone()
    }

    /// Opens a checkpoint note signed by this log and parses its body.
    ///
    /// Other signature lines (witnesses, old keys) are ignored; the origin line must equal this
    /// verifier's key name, as rekor-tiles' `VerifyCheckpoint` requires.
    ///
    /// # Errors
    /// Any [`open_note`](crate::open_note) or [`Checkpoint::parse`] error, or
    /// [`NoteError::OriginMismatch`].
    pub fn verify_checkpoint(&self, note: &[u8]) -> Result<Checkpoint, NoteError> {
        let (note, _) = crate::open_note(note, &[self])?;
        self.checkpoint_of(&note)
    }

    /// Opens a checkpoint signed by this log and possibly cosigned by some of `cosigners`.
    ///
    /// The log's signature is required; every signature line matching the log or a cosigner must
    /// verify. Returns the checkpoint, the note and the verified cosignatures (the log's own
    /// signature excluded); check a witness quorum on the latter.
    ///
    /// # Errors
    /// As [`LogVerifier::verify_checkpoint`], plus [`NoteError::MissingLogSignature`].
    pub fn verify_checkpoint_with_cosigners(
        &self,
        note: &[u8],
        cosigners: &[&dyn NoteVerifier],
    ) -> Result<(Checkpoint, Note, Vec<NoteSignature>), NoteError> {
        let mut verifiers: Vec<&dyn NoteVerifier> = Vec::with_capacity(cosigners.len() + 1);
        verifiers.push(self);
        verifiers.extend_from_slice(cosigners);
        let (note, verified) = crate::open_note(note, &verifiers)?;
        let (own, cosignatures): (Vec<_>, Vec<_>) = verified
            .into_iter()
            .partition(|s| s.name == self.name && s.key_id == self.key_id());
        if own.is_empty() {
            return Err(NoteError::MissingLogSignature {
                name: self.name.as_str().to_owned(),
            });
        }
        let checkpoint = self.checkpoint_of(&note)?;
        Ok((checkpoint, note, cosignatures))
    }

    fn checkpoint_of(&self, note: &Note) -> Result<Checkpoint, NoteError> {
        let checkpoint = Checkpoint::parse(note.text())?;
        if checkpoint.origin.as_str() != self.name.as_str() {
            return Err(NoteError::OriginMismatch {
                origin: checkpoint.origin.as_str().to_owned(),
                key_name: self.name.as_str().to_owned(),
            });
        }
        Ok(checkpoint)
    }
}

impl NoteVerifier for LogVerifier {
    fn name(&self) -> &KeyName {
        &self.name
    }

    fn key_id(&self) -> [u8; 4] {
        key_id_of(&self.log_id)
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.key.verify(msg, sig)
    }
}

/// The log's private key; signs checkpoints. Implements [`NoteSigner`] (with the primary key).
///
/// Signing is deterministic (Ed25519, RFC 6979 for ECDSA, FIPS 204's deterministic variant for
/// ML-DSA-44), so no RNG is needed.
///
/// Optionally it also holds an ML-DSA-44 key ([`LogSigner::with_mldsa44`]); checkpoints are then
/// dual-signed: the primary line, then the ML-DSA-44 line.
pub struct LogSigner {
    key: HeldKey,
    verifier: LogVerifier,
    mldsa: Option<SecondKey>,
}

/// Where the log's private key is.
#[allow(
    clippy::large_enum_variant,
    reason = "one per log, made once at start and never moved"
)]
enum HeldKey {
    /// In this process (a key file, or generated).
    Local(PrivateKey),
    /// Outside it: an HSM or a KMS that signs on request.
    External(Arc<dyn ExternalSigner>),
}

/// A private key held outside this process, in an HSM (PKCS#11) or a cloud KMS, which signs on
/// request. This crate does no I/O: the implementations live with the servers.
pub trait ExternalSigner: Send + Sync + fmt::Debug {
    /// The key's DER SubjectPublicKeyInfo (Ed25519, ECDSA P-256 or P-384), read once when the
    /// key was opened.
    fn public_key_der(&self) -> &[u8];

    /// Signs `message`, the whole message and not a digest, as a signed note needs it: Ed25519
    /// 64 bytes; ECDSA the ASN.1 DER `(r, s)` over SHA-256 (P-256) or SHA-384 (P-384) of the
    /// message. Blocking; called once per checkpoint.
    ///
    /// # Errors
    /// Why the key could not sign (unreachable service, refused request); shown to operators.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String>;
}

/// The ML-DSA-44 key of a dual-signing log and the clock its timestamps come from.
struct SecondKey {
    signer: MlDsa44Signer,
    now: fn() -> u64,
}

impl fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogSigner")
            .field("verifier", &self.verifier)
            .field("mldsa44", &self.mldsa.as_ref().map(|m| m.signer.verifier()))
            .field("external", &matches!(self.key, HeldKey::External(_)))
            .finish_non_exhaustive()
    }
}

impl LogSigner {
    fn from_private(key: PrivateKey, name: KeyName) -> Result<Self, NoteError> {
        let public = match &key {
            PrivateKey::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
            PrivateKey::P256(k) => PublicKey::P256(*k.verifying_key()),
            PrivateKey::P384(k) => PublicKey::P384(*k.verifying_key()),
        };
        let verifier = LogVerifier::from_key(name, public)?;
        Ok(Self {
            key: HeldKey::Local(key),
            verifier,
            mldsa: None,
        })
    }

    /// A signer whose key is held outside this process (see [`ExternalSigner`]). The key must
    /// sign one test message that verifies with its public key, so a wrong key, algorithm or
    /// signature encoding is refused here and not at the first checkpoint.
    ///
    /// # Errors
    /// As [`LogVerifier::from_spki_der`] for the public key; [`NoteError::SigningFailed`] if the
    /// test signature fails or does not verify.
    pub fn from_external(
        signer: Arc<dyn ExternalSigner>,
        name: KeyName,
    ) -> Result<Self, NoteError> {
        let verifier = LogVerifier::from_spki_der(name, signer.public_key_der())?;
        let probe = b"rekor-rs: checking the external signing key\n";
        let signed = signer.sign(probe).ok();
        if !signed.is_some_and(|signature| verifier.key.verify(probe, &signature)) {
            return Err(NoteError::SigningFailed {
                name: verifier.name.as_str().to_owned(),
            });
        }
        Ok(Self {
            key: HeldKey::External(signer),
            verifier,
            mldsa: None,
        })
    }

    /// Loads a PEM private key, as `--signer-filepath` / `--signer-password` do.
    ///
    /// Accepted PEM blocks: `PRIVATE KEY` (PKCS#8), `ENCRYPTED PRIVATE KEY` (PKCS#8 with PBES2:
    /// PBKDF2-HMAC-SHA-2 or scrypt, AES-CBC or AES-GCM, as `openssl pkcs8 -topk8 -v2 aes-256-cbc`
    /// writes) and `EC PRIVATE KEY` (SEC1, named curve), holding Ed25519, P-256 or P-384 keys.
    /// A leading `EC PARAMETERS` block is skipped. A password given for an unencrypted key is
    /// ignored.
    ///
    /// # Errors
    /// [`NoteError::InvalidPem`], [`NoteError::UnsupportedPemLabel`],
    /// [`NoteError::LegacyEncryptedPem`], [`NoteError::PasswordRequired`],
    /// [`NoteError::DecryptionFailed`], [`NoteError::InvalidPrivateKey`],
    /// [`NoteError::UnsupportedKeyAlgorithm`] or [`NoteError::UnsupportedCurve`].
    pub fn from_pem(pem: &[u8], password: Option<&[u8]>, name: KeyName) -> Result<Self, NoteError> {
        Self::from_private(decode_private_key_pem(pem, password)?, name)
    }

    /// Loads an unencrypted PKCS#8 DER private key.
    ///
    /// # Errors
    /// As [`LogSigner::from_pem`] for the DER layer.
    pub fn from_pkcs8_der(der: &[u8], name: KeyName) -> Result<Self, NoteError> {
        Self::from_private(crate::pem::decode_pkcs8(der)?, name)
    }

    /// An Ed25519 signer from a 32-byte seed (RFC 8032 private key). Key generation is the caller
    /// drawing 32 random bytes.
    #[must_use]
    pub fn from_ed25519_seed(seed: [u8; 32], name: KeyName) -> Self {
        let seed = Zeroizing::new(seed);
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = key.verifying_key();
        let log_id = ed25519_log_id(&name, public.as_bytes());
        // The Ed25519 SPKI is a fixed 12-byte prefix and the key; built by hand so this stays
        // infallible.
        let mut spki_der = Vec::with_capacity(44);
        spki_der.extend_from_slice(&ED25519_SPKI_PREFIX);
        spki_der.extend_from_slice(public.as_bytes());
        Self {
            key: HeldKey::Local(PrivateKey::Ed25519(key)),
            verifier: LogVerifier {
                name,
                key: PublicKey::Ed25519(public),
                spki_der,
                log_id,
            },
            mldsa: None,
        }
    }

    /// An ECDSA P-256 signer from a 32-byte big-endian secret scalar (random bytes in `[1, n)`).
    ///
    /// # Errors
    /// [`NoteError::InvalidPrivateKey`] if the scalar is zero or not below the group order.
    pub fn from_p256_scalar(scalar: [u8; 32], name: KeyName) -> Result<Self, NoteError> {
        let scalar = Zeroizing::new(scalar);
        let key = p256::ecdsa::SigningKey::from_slice(scalar.as_slice())
            .map_err(|_| NoteError::InvalidPrivateKey)?;
        Self::from_private(PrivateKey::P256(key), name)
    }

    /// An ECDSA P-384 signer from a 48-byte big-endian secret scalar (random bytes in `[1, n)`).
    ///
    /// # Errors
    /// [`NoteError::InvalidPrivateKey`] if the scalar is zero or not below the group order.
    pub fn from_p384_scalar(scalar: [u8; 48], name: KeyName) -> Result<Self, NoteError> {
        let scalar = Zeroizing::new(scalar);
        let key = p384::ecdsa::SigningKey::from_slice(scalar.as_slice())
            .map_err(|_| NoteError::InvalidPrivateKey)?;
        Self::from_private(PrivateKey::P384(key), name)
    }

    /// Encodes the private key as unencrypted PKCS#8 PEM (`PRIVATE KEY`), LF line endings, to
    /// persist a generated key. Ed25519 keys are written as PKCS#8 v1 (no public key), as
    /// OpenSSL and Go write them.
    ///
    /// # Errors
    /// [`NoteError::KeyEncoding`] (not expected for valid keys).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, NoteError> {
        let der = match &self.key {
            HeldKey::Local(PrivateKey::Ed25519(k)) => ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: k.to_bytes(),
                public_key: None,
            }
            .to_pkcs8_der(),
            HeldKey::Local(PrivateKey::P256(k)) => k.to_pkcs8_der(),
            HeldKey::Local(PrivateKey::P384(k)) => k.to_pkcs8_der(),
            // Its bytes never leave the HSM or KMS.
            HeldKey::External(_) => return Err(NoteError::KeyEncoding),
        }
        .map_err(|_| NoteError::KeyEncoding)?;
        der.to_pem("PRIVATE KEY", LineEnding::LF)
            .map_err(|_| NoteError::KeyEncoding)
    }

    /// The key's algorithm.
    #[must_use]
    pub fn algorithm(&self) -> LogKeyAlgorithm {
        self.verifier.algorithm()
    }

    /// The 32-byte log ID; see [`LogVerifier::log_id`].
    #[must_use]
    pub fn log_id(&self) -> [u8; 32] {
        self.verifier.log_id
    }

    /// DER SubjectPublicKeyInfo (TrustedRoot `tlogs[].publicKey.rawBytes`).
    #[must_use]
    pub fn public_key_der(&self) -> Vec<u8> {
        self.verifier.public_key_der()
    }

    /// The matching verifier.
    #[must_use]
    pub fn verifier(&self) -> LogVerifier {
        self.verifier.clone()
    }

    /// Adds an ML-DSA-44 key: from now on every checkpoint is dual-signed. `now` returns the
    /// current POSIX time in seconds; it is called once per checkpoint for the ML-DSA-44
    /// `timestamped_signature` (a non-zero timestamp states that, as of then, this is the largest
    /// tree the log has signed, which holds for a log's own checkpoints).
    ///
    /// # Errors
    /// [`NoteError::KeyNameMismatch`] unless `mldsa` has this log's key name, or
    /// [`NoteError::KeyIdCollision`] if both keys have the same 4-byte key ID.
    pub fn with_mldsa44(
        mut self,
        mldsa: MlDsa44Signer,
        now: fn() -> u64,
    ) -> Result<Self, NoteError> {
        if mldsa.name() != &self.verifier.name {
            return Err(NoteError::KeyNameMismatch {
                expected: self.verifier.name.as_str().to_owned(),
                found: mldsa.name().as_str().to_owned(),
            });
        }
        let key_id = mldsa.verifier().key_id();
        if key_id == self.verifier.key_id() {
            return Err(NoteError::KeyIdCollision { key_id });
        }
        self.mldsa = Some(SecondKey { signer: mldsa, now });
        Ok(self)
    }

    /// The verifier of the ML-DSA-44 key, when the log dual-signs.
    #[must_use]
    pub fn mldsa44_verifier(&self) -> Option<MlDsa44Verifier> {
        self.mldsa.as_ref().map(|m| m.signer.verifier())
    }

    /// Signs a checkpoint and returns the complete signed note: the primary signature line, then
    /// the ML-DSA-44 one when the log dual-signs (timestamped by the clock given to
    /// [`LogSigner::with_mldsa44`]).
    ///
    /// # Errors
    /// [`NoteError::OriginMismatch`] unless the origin equals this key's name (rekor-tiles signs
    /// with the `--hostname` as both), [`NoteError::CheckpointExtensionInvalid`], when
    /// dual-signing the errors of [`crate::mldsa44_checkpoint_message`], or a signing error.
    pub fn sign_checkpoint(&self, cp: &Checkpoint) -> Result<Vec<u8>, NoteError> {
        let timestamp = self.mldsa.as_ref().map_or(0, |m| (m.now)());
        self.sign_checkpoint_at(cp, timestamp)
    }

    /// As [`LogSigner::sign_checkpoint`], with the ML-DSA-44 timestamp given (POSIX seconds;
    /// unused by a log without an ML-DSA-44 key).
    ///
    /// # Errors
    /// As [`LogSigner::sign_checkpoint`].
    pub fn sign_checkpoint_at(
        &self,
        cp: &Checkpoint,
        timestamp: u64,
    ) -> Result<Vec<u8>, NoteError> {
        if cp.origin.as_str() != self.verifier.name.as_str() {
            return Err(NoteError::OriginMismatch {
                origin: cp.origin.as_str().to_owned(),
                key_name: self.verifier.name.as_str().to_owned(),
            });
        }
        cp.validate()?;
        let text = cp.to_text();
        let mut note = crate::sign_note(&text, &[self])?;
        if let Some(mldsa) = &self.mldsa {
            note.push_signature(mldsa.signer.cosign_checkpoint(cp, timestamp)?)?;
        }
        Ok(note.to_bytes())
    }

    fn sign_bytes(&self, msg: &[u8]) -> Result<Vec<u8>, NoteError> {
        let failed = || NoteError::SigningFailed {
            name: self.verifier.name.as_str().to_owned(),
        };
        match &self.key {
            HeldKey::Local(PrivateKey::Ed25519(k)) => Ok(k.sign(msg).to_bytes().to_vec()),
            HeldKey::Local(PrivateKey::P256(k)) => {
                let sig: p256::ecdsa::DerSignature = k.try_sign(msg).map_err(|_| failed())?;
                Ok(sig.as_bytes().to_vec())
            }
            HeldKey::Local(PrivateKey::P384(k)) => {
                let sig: p384::ecdsa::DerSignature = k.try_sign(msg).map_err(|_| failed())?;
                Ok(sig.as_bytes().to_vec())
            }
            // Checked like the probe at open: a signature that does not verify is never used.
            HeldKey::External(signer) => {
                let signature = signer.sign(msg).map_err(|_| failed())?;
                if self.verifier.key.verify(msg, &signature) {
                    Ok(signature)
                } else {
                    Err(failed())
                }
            }
        }
    }
}

impl NoteSigner for LogSigner {
    fn name(&self) -> &KeyName {
        &self.verifier.name
    }

    fn key_id(&self) -> [u8; 4] {
        self.verifier.key_id()
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, NoteError> {
        self.sign_bytes(msg)
    }
}

/// DER of `SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (33 bytes: 0 unused + key) }` up
/// to the key (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_spki_prefix_matches_encoder() {
        let signer = LogSigner::from_ed25519_seed([7; 32], KeyName::new("n").unwrap());
        let via_crate = PublicKey::Ed25519(match &signer.key {
            HeldKey::Local(PrivateKey::Ed25519(k)) => k.verifying_key(),
            _ => unreachable!(),
        })
        .spki_der()
        .unwrap();
        assert_eq!(signer.public_key_der(), via_crate);
    }

    /// An "HSM" that is a local key behind the trait; `wrong` signs with another key.
    #[derive(Debug)]
    struct FakeHsm {
        spki: Vec<u8>,
        signer: LogSigner,
    }

    impl ExternalSigner for FakeHsm {
        fn public_key_der(&self) -> &[u8] {
            &self.spki
        }

        fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
            self.signer.sign_bytes(message).map_err(|e| e.to_string())
        }
    }

    #[test]
    fn external_keys_sign_like_local_ones_and_wrong_ones_are_refused() {
        let name = KeyName::new("log.example").unwrap();
        let local = LogSigner::from_p256_scalar([5; 32], name.clone()).unwrap();
        let hsm = FakeHsm {
            spki: local.public_key_der(),
            signer: LogSigner::from_p256_scalar([5; 32], name.clone()).unwrap(),
        };
        let external = LogSigner::from_external(Arc::new(hsm), name.clone()).unwrap();
        assert_eq!(external.log_id(), local.log_id());
        let cp = crate::Checkpoint::new(crate::Origin::from(name.clone()), 2, [3; 32]);
        let note = external.sign_checkpoint(&cp).unwrap();
        assert_eq!(local.verifier().verify_checkpoint(&note).unwrap(), cp);
        assert!(
            external.to_pkcs8_pem().is_err(),
            "an HSM key is not exportable"
        );

        let wrong = FakeHsm {
            spki: local.public_key_der(),
            signer: LogSigner::from_p256_scalar([6; 32], name.clone()).unwrap(),
        };
        assert!(matches!(
            LogSigner::from_external(Arc::new(wrong), name),
            Err(NoteError::SigningFailed { .. })
        ));
    }
}
