//! Pure C2SP signed notes, checkpoints and cosignatures, and the log's signing keys.
//!
//! Specifications implemented:
//! - [c2sp.org/signed-note](https://c2sp.org/signed-note): [`Note`], [`NoteSignature`],
//!   [`sign_note`], [`open_note`], verifier keys (vkeys), key IDs ([`key_hash`]).
//! - [c2sp.org/tlog-checkpoint](https://c2sp.org/tlog-checkpoint): [`Checkpoint`].
//! - [c2sp.org/tlog-cosignature](https://c2sp.org/tlog-cosignature), Ed25519 `cosignature/v1`
//!   (type 0x04): [`CosignatureVerifier`], [`CosignatureSigner`]; and ML-DSA-44 (type 0x06,
//!   signed message `subtree/v1`): [`MlDsa44Verifier`], [`MlDsa44Signer`].
//!
//! Log keys follow Rekor v2 (rekor-tiles `pkg/note`): [`LogSigner`] and [`LogVerifier`] for
//! Ed25519, ECDSA P-256/SHA-256 and P-384/SHA-384 (ECDSA signatures are ASN.1 DER). The note key
//! name is the log's origin (its host name). Log IDs (32 bytes, `logId.keyId` in Sigstore
//! messages) are SHA-256(name || 0x0A || 0x01 || key) for Ed25519 and SHA-256(DER SPKI) for
//! ECDSA; the 4-byte key ID on signature lines is their first four bytes in both cases.
//!
//! A log may also carry an ML-DSA-44 key ([`LogSigner::with_mldsa44`]): every checkpoint is then
//! dual-signed, the primary line first and an ML-DSA-44 cosignature line (tlog-checkpoint says
//! logs SHOULD use one) after it, under the same key name. Clients that know only the primary key
//! ignore the second line, as signed-note requires.
//!
//! The crate does no I/O and reads no clock or RNG: key generation takes caller-supplied random
//! bytes, cosigning takes the time, and a dual-signing [`LogSigner`] asks the clock function its
//! caller supplied.
//!
//! # Example
//!
//! ```
//! use rekor_note::{Checkpoint, KeyName, LogSigner, Origin};
//!
//! let name = KeyName::new("log.example.dev")?;
//! let signer = LogSigner::from_ed25519_seed([42; 32], name.clone());
//! let checkpoint = Checkpoint::new(Origin::from(name), 7, [0xab; 32]);
//! let note = signer.sign_checkpoint(&checkpoint)?;
//! assert!(note.starts_with(b"log.example.dev\n7\nq6ur"));
//!
//! let verified = signer.verifier().verify_checkpoint(&note)?;
//! assert_eq!(verified, checkpoint);
//! # Ok::<(), rekor_note::NoteError>(())
//! ```
#![deny(clippy::as_conversions)]

mod checkpoint;
mod cosignature;
mod error;
mod keys;
mod mldsa;
mod name;
mod note;
mod pem;
mod vkey;

pub use checkpoint::Checkpoint;
pub use cosignature::{
    COSIGNATURE_V1_LEN, CosignatureSigner, CosignatureVerifier, MAX_COSIGNATURE_TIMESTAMP,
    cosignature_v1_key_id, cosignature_v1_message, cosignature_v1_timestamp,
};
pub use error::NoteError;
pub use keys::{
    ExternalSigner, LogKeyAlgorithm, LogSigner, LogVerifier, ecdsa_log_id, ed25519_log_id,
};
pub use mldsa::{
    MLDSA44_COSIGNATURE_LEN, MLDSA44_PUBLIC_KEY_LEN, MLDSA44_SIGNATURE_LEN, MlDsa44Signer,
    MlDsa44Verifier, mldsa44_checkpoint_message, mldsa44_key_id, mldsa44_timestamp,
};
pub use name::{KeyName, MAX_KEY_NAME_LEN, Origin};
pub use note::{
    MAX_NOTE_SIGNATURES, MAX_NOTE_SIZE, Note, NoteSignature, NoteSigner, NoteVerifier,
    SIGNATURE_LINE_PREFIX, open_note, sign_note,
};
pub use vkey::{
    SIG_TYPE_COSIGNATURE_V1, SIG_TYPE_ECDSA, SIG_TYPE_ED25519, SIG_TYPE_MLDSA44_COSIGNATURE,
    key_hash, key_id_of,
};
