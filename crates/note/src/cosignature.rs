//! c2sp.org/tlog-cosignature, Ed25519 `cosignature/v1` (signature type 0x04).
//!
//! The signed message is `cosignature/v1\ntime <decimal timestamp>\n` followed by the checkpoint
//! note text; the signature is the 8-byte big-endian timestamp followed by the 64-byte Ed25519
//! signature. ML-DSA-44 cosignatures (type 0x06) are in [`crate::MlDsa44Verifier`] and
//! [`crate::MlDsa44Signer`].

use core::fmt;

use ed25519_dalek::Signer as _;
use zeroize::Zeroizing;

use crate::vkey::{SIG_TYPE_COSIGNATURE_V1, Vkey, format_vkey, key_hash, key_id_of};
use crate::{KeyName, NoteError, NoteSignature, NoteVerifier};

/// Length of a `cosignature/v1` signature: 8-byte timestamp and 64-byte Ed25519 signature.
pub const COSIGNATURE_V1_LEN: usize = 72;

/// Largest timestamp the spec allows (2^63 - 1).
pub const MAX_COSIGNATURE_TIMESTAMP: u64 = (1 << 63) - 1;

/// The message an Ed25519 cosigner signs for `note_text` at `timestamp` (POSIX seconds).
#[must_use]
pub fn cosignature_v1_message(note_text: &str, timestamp: u64) -> Vec<u8> {
    let mut msg = Vec::with_capacity(40 + note_text.len());
    msg.extend_from_slice(b"cosignature/v1\ntime ");
    msg.extend_from_slice(timestamp.to_string().as_bytes());
    msg.push(b'\n');
    msg.extend_from_slice(note_text.as_bytes());
    msg
}

/// Key ID of an Ed25519 cosigner: SHA-256(name || 0x0A || 0x04 || public key)[:4].
#[must_use]
pub fn cosignature_v1_key_id(name: &KeyName, public_key: &[u8; 32]) -> [u8; 4] {
    key_id_of(&key_hash(name, SIG_TYPE_COSIGNATURE_V1, public_key))
}

/// The timestamp of a `cosignature/v1` signature (the bytes after the key ID), or `None` when it
/// is not 72 bytes long or the timestamp exceeds 2^63 - 1. Says nothing about validity.
#[must_use]
pub fn cosignature_v1_timestamp(signature: &[u8]) -> Option<u64> {
    if signature.len() != COSIGNATURE_V1_LEN {
        return None;
    }
    let (ts, _) = signature.split_first_chunk::<8>()?;
    let ts = u64::from_be_bytes(*ts);
    (ts <= MAX_COSIGNATURE_TIMESTAMP).then_some(ts)
}

/// Verifies Ed25519 `cosignature/v1` signatures of one witness. Implements [`NoteVerifier`],
/// so it can be passed to [`open_note`](crate::open_note) next to a log verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: KeyName,
    key: ed25519_dalek::VerifyingKey,
    key_id: [u8; 4],
}

impl fmt::Debug for CosignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CosignatureVerifier")
            .field("name", &self.name)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl CosignatureVerifier {
    /// A verifier for a witness name and raw Ed25519 public key.
    ///
    /// # Errors
    /// [`NoteError::InvalidPublicKey`].
    pub fn new(name: KeyName, public_key: &[u8; 32]) -> Result<Self, NoteError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(public_key)
            .map_err(|_| NoteError::InvalidPublicKey)?;
        let key_id = cosignature_v1_key_id(&name, public_key);
        Ok(Self { name, key, key_id })
    }

    /// Parses a witness vkey of type `0x04` (`name+hex8+base64(0x04 || key)`), the form witness
    /// lists and tlog-witness policies use.
    ///
    /// # Errors
    /// The vkey variants of [`NoteError`] or [`NoteError::InvalidPublicKey`].
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let parsed = Vkey::parse(vkey)?;
        if parsed.sig_type != SIG_TYPE_COSIGNATURE_V1 {
            return Err(NoteError::UnsupportedVkeyType {
                sig_type: parsed.sig_type,
            });
        }
        let key =
            <[u8; 32]>::try_from(parsed.key.as_slice()).map_err(|_| NoteError::InvalidPublicKey)?;
        let verifier = Self::new(parsed.name.clone(), &key)?;
        parsed.expect_key_id(verifier.key_id)?;
        Ok(verifier)
    }

    /// The vkey string of this witness (type `0x04`).
    #[must_use]
    pub fn to_vkey(&self) -> String {
        format_vkey(
            &self.name,
            self.key_id,
            SIG_TYPE_COSIGNATURE_V1,
            self.key.as_bytes(),
        )
    }

    /// The witness's raw Ed25519 public key.
    #[must_use]
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Verifies one cosignature line over `note_text` and returns its timestamp.
    ///
    /// # Errors
    /// [`NoteError::NoVerifiedSignature`] if the line is not from this witness,
    /// [`NoteError::SignatureVerificationFailed`] if it does not verify.
    pub fn verify_cosignature(
        &self,
        note_text: &str,
        signature: &NoteSignature,
    ) -> Result<u64, NoteError> {
        if signature.name != self.name || signature.key_id != self.key_id {
            return Err(NoteError::NoVerifiedSignature);
        }
        if !self.verify(note_text.as_bytes(), &signature.signature) {
            return Err(NoteError::SignatureVerificationFailed {
                name: self.name.as_str().to_owned(),
                key_id: self.key_id,
            });
        }
        cosignature_v1_timestamp(&signature.signature).ok_or(
            NoteError::SignatureVerificationFailed {
                name: self.name.as_str().to_owned(),
                key_id: self.key_id,
            },
        )
    }

    /// The timestamp of a cosignature line from this witness (name and key ID must match).
    /// Call it on a signature that [`open_note`](crate::open_note) returned as verified.
    #[must_use]
    pub fn timestamp(&self, signature: &NoteSignature) -> Option<u64> {
        if signature.name != self.name || signature.key_id != self.key_id {
            return None;
        }
        cosignature_v1_timestamp(&signature.signature)
    }
}

impl NoteVerifier for CosignatureVerifier {
    fn name(&self) -> &KeyName {
        &self.name
    }

    fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some(timestamp) = cosignature_v1_timestamp(sig) else {
            return false;
        };
        let Ok(text) = core::str::from_utf8(msg) else {
            return false;
        };
        let Some((_, ed_sig)) = sig.split_first_chunk::<8>() else {
            return false;
        };
        let Ok(ed_sig) = ed25519_dalek::Signature::from_slice(ed_sig) else {
            return false;
        };
        self.key
            .verify_strict(&cosignature_v1_message(text, timestamp), &ed_sig)
            .is_ok()
    }
}

/// An Ed25519 `cosignature/v1` signer, for tests and for running a witness.
///
/// It does not implement [`NoteSigner`](crate::NoteSigner) because each signature carries the
/// time, which is passed in.
pub struct CosignatureSigner {
    key: ed25519_dalek::SigningKey,
    verifier: CosignatureVerifier,
}

impl fmt::Debug for CosignatureSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CosignatureSigner")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl CosignatureSigner {
    /// A cosigner from a 32-byte Ed25519 seed.
    #[must_use]
    pub fn from_ed25519_seed(seed: [u8; 32], name: KeyName) -> Self {
        let seed = Zeroizing::new(seed);
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = key.verifying_key();
        let key_id = cosignature_v1_key_id(&name, public.as_bytes());
        Self {
            key,
            verifier: CosignatureVerifier {
                name,
                key: public,
                key_id,
            },
        }
    }

    /// The matching verifier.
    #[must_use]
    pub fn verifier(&self) -> CosignatureVerifier {
        self.verifier.clone()
    }

    /// Cosigns `note_text` (a checkpoint body, final newline included) at `timestamp`.
    ///
    /// # Errors
    /// [`NoteError::TimestampOutOfRange`] above 2^63 - 1, or
    /// [`NoteError::TextNotNewlineTerminated`].
    pub fn cosign(&self, note_text: &str, timestamp: u64) -> Result<NoteSignature, NoteError> {
        if timestamp > MAX_COSIGNATURE_TIMESTAMP {
            return Err(NoteError::TimestampOutOfRange { timestamp });
        }
        if !note_text.ends_with('\n') {
            return Err(NoteError::TextNotNewlineTerminated);
        }
        let ed_sig = self.key.sign(&cosignature_v1_message(note_text, timestamp));
        let mut signature = Vec::with_capacity(COSIGNATURE_V1_LEN);
        signature.extend_from_slice(&timestamp.to_be_bytes());
        signature.extend_from_slice(&ed_sig.to_bytes());
        Ok(NoteSignature {
            name: self.verifier.name.clone(),
            key_id: self.verifier.key_id,
            signature,
        })
    }
}
