//! c2sp.org/tlog-cosignature ML-DSA-44 cosignatures (signature type 0x06), which
//! c2sp.org/tlog-checkpoint ("Signatures") recommends logs sign their checkpoints with.
//!
//! Wire format, for a checkpoint (a subtree starting at leaf 0):
//!
//! - key ID = SHA-256(name || 0x0A || 0x06 || 1312-byte FIPS 204 public key)[:4]; the vkey is
//!   `name+hex(key ID)+base64(0x06 || public key)`.
//! - The signature after the key ID is a `timestamped_signature`: the 8-byte big-endian POSIX
//!   timestamp, then the 2420-byte ML-DSA-44 signature.
//! - The signed message is the binary `cosigned_message`, not the note text: the 12-byte label
//!   `subtree/v1\n\0`, the cosigner name with a one-byte length, the timestamp (u64 big-endian),
//!   the checkpoint origin with a one-byte length, `start` = 0 and `end` = tree size (u64
//!   big-endian each), and the 32-byte root hash.
//! - The signature is FIPS 204 ML-DSA.Sign ("pure" ML-DSA, empty context string). We use the
//!   deterministic variant (the crate takes no RNG); verifiers cannot tell the variants apart.
//!
//! The message does not cover checkpoint extension lines, so both signer and verifier refuse
//! checkpoints that have any: a verified note must not carry unsigned text.

use core::fmt;

use ml_dsa::signature::Signer as _;
use ml_dsa::{EncodedVerifyingKey, KeyExport as _, Keypair as _, MlDsa44};
use pkcs8::der::Decode as _;
use pkcs8::{LineEnding, ObjectIdentifier, PrivateKeyInfoRef};
use zeroize::Zeroizing;

use crate::vkey::{SIG_TYPE_MLDSA44_COSIGNATURE, Vkey, format_vkey, key_hash, key_id_of};
use crate::{
    Checkpoint, KeyName, MAX_COSIGNATURE_TIMESTAMP, NoteError, NoteSignature, NoteVerifier,
};

/// Length of an ML-DSA-44 public key (FIPS 204 `pkEncode`).
pub const MLDSA44_PUBLIC_KEY_LEN: usize = 1312;

/// Length of an ML-DSA-44 signature (FIPS 204 `sigEncode`).
pub const MLDSA44_SIGNATURE_LEN: usize = 2420;

/// Length of an ML-DSA-44 `timestamped_signature`: 8-byte timestamp and the signature.
pub const MLDSA44_COSIGNATURE_LEN: usize = 8 + MLDSA44_SIGNATURE_LEN;

/// The `cosigned_message` label (tlog-cosignature, "ML-DSA-44 signed message").
const SUBTREE_V1_LABEL: &[u8; 12] = b"subtree/v1\n\0";

/// id-ml-dsa-44 (FIPS 204 / RFC 9881), the PKCS#8 algorithm of the key file.
const ID_ML_DSA_44: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.17");

/// RFC 9881 `ML-DSA-44-PrivateKey` seed form: `[0] IMPLICIT OCTET STRING (SIZE (32))`.
const SEED_FORM_PREFIX: [u8; 2] = [0x80, 0x20];

/// RFC 9881 "both" form, up to the seed: `SEQUENCE { OCTET STRING (32), OCTET STRING (2560) }`.
const BOTH_FORM_PREFIX: [u8; 6] = [0x30, 0x82, 0x0a, 0x26, 0x04, 0x20];

/// Header of the expanded key inside the "both" form: `OCTET STRING (2560)`.
const EXPANDED_KEY_HEADER: [u8; 4] = [0x04, 0x82, 0x0a, 0x00];

/// Length of an expanded ML-DSA-44 private key (FIPS 204 `skEncode`).
const MLDSA44_EXPANDED_KEY_LEN: usize = 2560;

/// The message an ML-DSA-44 cosigner named `cosigner` signs for `checkpoint` at `timestamp`.
///
/// # Errors
/// [`NoteError::MlDsaCheckpointExtensions`] if the checkpoint has extension lines,
/// [`NoteError::MlDsaOriginTooLong`] for an origin over 255 bytes, or
/// [`NoteError::TimestampOutOfRange`] above 2^63 - 1.
pub fn mldsa44_checkpoint_message(
    cosigner: &KeyName,
    timestamp: u64,
    checkpoint: &Checkpoint,
) -> Result<Vec<u8>, NoteError> {
    if !checkpoint.extensions.is_empty() {
        return Err(NoteError::MlDsaCheckpointExtensions);
    }
    if timestamp > MAX_COSIGNATURE_TIMESTAMP {
        return Err(NoteError::TimestampOutOfRange { timestamp });
    }
    let origin = checkpoint.origin.as_str().as_bytes();
    let origin_len = u8::try_from(origin.len())
        .map_err(|_| NoteError::MlDsaOriginTooLong { len: origin.len() })?;
    let name = cosigner.as_str().as_bytes();
    // KeyName caps names at MAX_KEY_NAME_LEN (255), so this never fails for a valid name.
    let name_len =
        u8::try_from(name.len()).map_err(|_| NoteError::MlDsaOriginTooLong { len: name.len() })?;
    let mut msg = Vec::with_capacity(12 + 1 + name.len() + 8 + 1 + origin.len() + 16 + 32);
    msg.extend_from_slice(SUBTREE_V1_LABEL);
    msg.push(name_len);
    msg.extend_from_slice(name);
    msg.extend_from_slice(&timestamp.to_be_bytes());
    msg.push(origin_len);
    msg.extend_from_slice(origin);
    msg.extend_from_slice(&0u64.to_be_bytes());
    msg.extend_from_slice(&checkpoint.size.to_be_bytes());
    msg.extend_from_slice(&checkpoint.root);
    Ok(msg)
}

/// Key ID of an ML-DSA-44 cosigner: SHA-256(name || 0x0A || 0x06 || public key)[:4].
#[must_use]
pub fn mldsa44_key_id(name: &KeyName, public_key: &[u8]) -> [u8; 4] {
    key_id_of(&key_hash(name, SIG_TYPE_MLDSA44_COSIGNATURE, public_key))
}

/// The timestamp of an ML-DSA-44 `timestamped_signature` (the bytes after the key ID), or
/// `None` when it is not [`MLDSA44_COSIGNATURE_LEN`] bytes or the timestamp exceeds 2^63 - 1.
/// Says nothing about validity.
#[must_use]
pub fn mldsa44_timestamp(signature: &[u8]) -> Option<u64> {
    if signature.len() != MLDSA44_COSIGNATURE_LEN {
        return None;
    }
    let (ts, _) = signature.split_first_chunk::<8>()?;
    let ts = u64::from_be_bytes(*ts);
    (ts <= MAX_COSIGNATURE_TIMESTAMP).then_some(ts)
}

/// Verifies ML-DSA-44 checkpoint cosignatures of one key: a log's second (post-quantum)
/// signature, or a witness's. Implements [`NoteVerifier`], so it can be passed to
/// [`open_note`](crate::open_note) next to other verifiers.
#[derive(Clone, PartialEq)]
pub struct MlDsa44Verifier {
    name: KeyName,
    key: ml_dsa::VerifyingKey<MlDsa44>,
    encoded: Vec<u8>,
    key_id: [u8; 4],
}

impl fmt::Debug for MlDsa44Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlDsa44Verifier")
            .field("name", &self.name)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl MlDsa44Verifier {
    /// A verifier for a key name and a raw 1312-byte ML-DSA-44 public key.
    ///
    /// # Errors
    /// [`NoteError::InvalidPublicKey`] if the key is not 1312 bytes long.
    pub fn new(name: KeyName, public_key: &[u8]) -> Result<Self, NoteError> {
        let encoded = EncodedVerifyingKey::<MlDsa44>::try_from(public_key)
            .map_err(|_| NoteError::InvalidPublicKey)?;
        let key = ml_dsa::VerifyingKey::<MlDsa44>::decode(&encoded);
        Ok(Self::from_key(name, key))
    }

    fn from_key(name: KeyName, key: ml_dsa::VerifyingKey<MlDsa44>) -> Self {
        let encoded = key.to_bytes().to_vec();
        let key_id = mldsa44_key_id(&name, &encoded);
        Self {
            name,
            key,
            encoded,
            key_id,
        }
    }

    /// Parses a vkey of type `0x06` (`name+hex8+base64(0x06 || 1312-byte key)`).
    ///
    /// # Errors
    /// The vkey variants of [`NoteError`] or [`NoteError::InvalidPublicKey`].
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let parsed = Vkey::parse(vkey)?;
        if parsed.sig_type != SIG_TYPE_MLDSA44_COSIGNATURE {
            return Err(NoteError::UnsupportedVkeyType {
                sig_type: parsed.sig_type,
            });
        }
        let verifier = Self::new(parsed.name.clone(), &parsed.key)?;
        parsed.expect_key_id(verifier.key_id)?;
        Ok(verifier)
    }

    /// The vkey string of this key (type `0x06`).
    #[must_use]
    pub fn to_vkey(&self) -> String {
        format_vkey(
            &self.name,
            self.key_id,
            SIG_TYPE_MLDSA44_COSIGNATURE,
            &self.encoded,
        )
    }

    /// The raw 1312-byte public key.
    #[must_use]
    pub fn public_key(&self) -> &[u8] {
        &self.encoded
    }

    /// Opens a checkpoint note carrying this key's signature, as a log's own key: other
    /// signature lines are ignored, and the origin line must equal this verifier's key name.
    ///
    /// # Errors
    /// Any [`open_note`](crate::open_note) or [`Checkpoint::parse`] error, or
    /// [`NoteError::OriginMismatch`].
    pub fn verify_checkpoint(&self, note: &[u8]) -> Result<Checkpoint, NoteError> {
        let (note, _) = crate::open_note(note, &[self])?;
        let checkpoint = Checkpoint::parse(note.text())?;
        if checkpoint.origin.as_str() != self.name.as_str() {
            return Err(NoteError::OriginMismatch {
                origin: checkpoint.origin.as_str().to_owned(),
                key_name: self.name.as_str().to_owned(),
            });
        }
        Ok(checkpoint)
    }

    /// The timestamp of a signature line from this key (name and key ID must match). Call it on
    /// a signature that [`open_note`](crate::open_note) returned as verified.
    #[must_use]
    pub fn timestamp(&self, signature: &NoteSignature) -> Option<u64> {
        if signature.name != self.name || signature.key_id != self.key_id {
            return None;
        }
        mldsa44_timestamp(&signature.signature)
    }
}

impl NoteVerifier for MlDsa44Verifier {
    fn name(&self) -> &KeyName {
        &self.name
    }

    fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some(timestamp) = mldsa44_timestamp(sig) else {
            return false;
        };
        let Some((_, raw)) = sig.split_first_chunk::<8>() else {
            return false;
        };
        let Ok(signature) = ml_dsa::Signature::<MlDsa44>::try_from(raw) else {
            return false;
        };
        let Some(checkpoint) = core::str::from_utf8(msg)
            .ok()
            .and_then(|text| Checkpoint::parse(text).ok())
        else {
            return false;
        };
        let Ok(message) = mldsa44_checkpoint_message(&self.name, timestamp, &checkpoint) else {
            return false;
        };
        self.key.verify_with_context(&message, &[], &signature)
    }
}

/// An ML-DSA-44 checkpoint signer: the log's post-quantum key, or a witness's.
///
/// It does not implement [`NoteSigner`](crate::NoteSigner) because each signature carries a
/// time, which is passed in. [`LogSigner::with_mldsa44`](crate::LogSigner::with_mldsa44) adds
/// one to the log's signer so that every checkpoint carries both signatures.
pub struct MlDsa44Signer {
    key: ml_dsa::SigningKey<MlDsa44>,
    verifier: MlDsa44Verifier,
}

impl fmt::Debug for MlDsa44Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlDsa44Signer")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl MlDsa44Signer {
    /// A signer from a 32-byte seed (FIPS 204 `ML-DSA.KeyGen_internal`). Key generation is the
    /// caller drawing 32 random bytes.
    #[must_use]
    pub fn from_seed(seed: [u8; 32], name: KeyName) -> Self {
        let seed = Zeroizing::new(seed);
        let key = ml_dsa::SigningKey::<MlDsa44>::from_seed(&(*seed).into());
        let verifier = MlDsa44Verifier::from_key(name, key.verifying_key());
        Self { key, verifier }
    }

    /// Loads an unencrypted PKCS#8 PEM (`PRIVATE KEY`) ML-DSA-44 key, as RFC 9881 encodes it:
    /// the seed form (what [`MlDsa44Signer::to_pkcs8_pem`] writes) or the form holding both the
    /// seed and the expanded key (OpenSSL 3.5's default), whose two halves must agree. The
    /// expanded-key-only form is refused: the seed cannot be recovered from it.
    ///
    /// # Errors
    /// [`NoteError::InvalidPem`], [`NoteError::UnsupportedPemLabel`],
    /// [`NoteError::InvalidPrivateKey`], [`NoteError::UnsupportedKeyAlgorithm`] or
    /// [`NoteError::MlDsaPrivateKeyForm`].
    pub fn from_pem(pem: &[u8], name: KeyName) -> Result<Self, NoteError> {
        let (label, der) =
            pkcs8::der::pem::decode_vec(pem.trim_ascii()).map_err(|_| NoteError::InvalidPem)?;
        let der = Zeroizing::new(der);
        if label != "PRIVATE KEY" {
            return Err(NoteError::UnsupportedPemLabel {
                label: label.to_owned(),
            });
        }
        Self::from_pkcs8_der(&der, name)
    }

    /// Loads an unencrypted PKCS#8 DER ML-DSA-44 key; see [`MlDsa44Signer::from_pem`].
    ///
    /// # Errors
    /// As [`MlDsa44Signer::from_pem`] for the DER layer.
    pub fn from_pkcs8_der(der: &[u8], name: KeyName) -> Result<Self, NoteError> {
        let info = PrivateKeyInfoRef::from_der(der).map_err(|_| NoteError::InvalidPrivateKey)?;
        if info.algorithm.oid != ID_ML_DSA_44 {
            return Err(NoteError::UnsupportedKeyAlgorithm {
                oid: info.algorithm.oid.to_string(),
            });
        }
        if info.algorithm.parameters.is_some() {
            return Err(NoteError::InvalidPrivateKey);
        }
        let private = info.private_key.as_bytes();
        if let Some(seed) = private.strip_prefix(SEED_FORM_PREFIX.as_slice()) {
            let seed = <[u8; 32]>::try_from(seed).map_err(|_| NoteError::MlDsaPrivateKeyForm)?;
            return Ok(Self::from_seed(seed, name));
        }
        let both = private
            .strip_prefix(BOTH_FORM_PREFIX.as_slice())
            .and_then(|rest| rest.split_first_chunk::<32>())
            .and_then(|(seed, rest)| {
                let expanded = rest.strip_prefix(EXPANDED_KEY_HEADER.as_slice())?;
                (expanded.len() == MLDSA44_EXPANDED_KEY_LEN).then_some((*seed, expanded))
            });
        let (seed, expanded) = both.ok_or(NoteError::MlDsaPrivateKeyForm)?;
        let signer = Self::from_seed(seed, name);
        #[expect(
            deprecated,
            reason = "the expanded encoding is only compared, to check RFC 9881's both form"
        )]
        let derived = Zeroizing::new(signer.key.expanded_key().to_expanded());
        if derived.as_slice() != expanded {
            return Err(NoteError::MlDsaPrivateKeyForm);
        }
        Ok(signer)
    }

    /// Encodes the key as unencrypted PKCS#8 PEM (`PRIVATE KEY`, RFC 9881 seed form, LF line
    /// endings), to persist a generated key. The bytes equal what the `ml-dsa` crate's own
    /// PKCS#8 encoder writes.
    ///
    /// # Errors
    /// [`NoteError::KeyEncoding`] (not expected).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, NoteError> {
        let mut private = Zeroizing::new(Vec::with_capacity(34));
        private.extend_from_slice(&SEED_FORM_PREFIX);
        private.extend_from_slice(self.key.as_seed());
        let octets =
            pkcs8::der::asn1::OctetStringRef::new(&private).map_err(|_| NoteError::KeyEncoding)?;
        let info = PrivateKeyInfoRef::new(
            pkcs8::AlgorithmIdentifierRef {
                oid: ID_ML_DSA_44,
                parameters: None,
            },
            octets,
        );
        let der = pkcs8::SecretDocument::encode_msg(&info).map_err(|_| NoteError::KeyEncoding)?;
        der.to_pem("PRIVATE KEY", LineEnding::LF)
            .map_err(|_| NoteError::KeyEncoding)
    }

    /// The matching verifier.
    #[must_use]
    pub fn verifier(&self) -> MlDsa44Verifier {
        self.verifier.clone()
    }

    /// The key name written on signature lines.
    #[must_use]
    pub fn name(&self) -> &KeyName {
        &self.verifier.name
    }

    /// Signs `checkpoint` at `timestamp` (POSIX seconds) and returns the signature line.
    ///
    /// # Errors
    /// As [`mldsa44_checkpoint_message`], or [`NoteError::SigningFailed`].
    pub fn cosign_checkpoint(
        &self,
        checkpoint: &Checkpoint,
        timestamp: u64,
    ) -> Result<NoteSignature, NoteError> {
        let message = mldsa44_checkpoint_message(&self.verifier.name, timestamp, checkpoint)?;
        let raw = self
            .key
            .try_sign(&message)
            .map_err(|_| NoteError::SigningFailed {
                name: self.verifier.name.as_str().to_owned(),
            })?;
        let mut signature = Vec::with_capacity(MLDSA44_COSIGNATURE_LEN);
        signature.extend_from_slice(&timestamp.to_be_bytes());
        signature.extend_from_slice(&raw.encode());
        Ok(NoteSignature {
            name: self.verifier.name.clone(),
            key_id: self.verifier.key_id,
            signature,
        })
    }
}
