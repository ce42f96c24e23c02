//! Pure witnessing for a log: which witnesses to ask and how many must answer, what to send them
//! and how to check what they send back.
//!
//! Specifications implemented:
//! - [c2sp.org/tlog-policy](https://c2sp.org/tlog-policy), in the form rekor-tiles reads from
//!   `--witness-policy-path` (transparency-dev/tessera's parser: every witness needs a URL):
//!   [`Policy`], [`PolicyWitness`], quorum evaluation with [`Policy::satisfied`].
//! - [c2sp.org/tlog-witness](https://c2sp.org/tlog-witness) `add-checkpoint`, client side:
//!   [`add_checkpoint_body`], [`parse_tlog_size`] for a 409, [`parse_cosignature_lines`] for a
//!   200; [`parse_add_checkpoint`] reads a body back.
//! - [c2sp.org/tlog-cosignature](https://c2sp.org/tlog-cosignature) Ed25519 `cosignature/v1`
//!   (through `rekor-note`): [`verify_cosignatures`], [`cosignatures_from_response`].
//!
//! No I/O, clock or randomness: the HTTP client lives in the server.
//!
//! # Example
//!
//! ```
//! use rekor_note::{Checkpoint, CosignatureSigner, KeyName, LogSigner, Note, Origin};
//! use rekor_witnessing::{Policy, add_checkpoint_body, cosignatures_from_response};
//!
//! let witness = CosignatureSigner::from_ed25519_seed([1; 32], KeyName::new("w.example")?);
//! let policy = Policy::parse(
//!     format!("witness w1 {} https://w.example/\nquorum w1\n", witness.verifier().to_vkey())
//!         .as_bytes(),
//! )?;
//! let w1 = &policy.quorum_witnesses()[0];
//! assert_eq!(w1.add_checkpoint_url(), "https://w.example/add-checkpoint");
//!
//! let name = KeyName::new("log.example")?;
//! let log = LogSigner::from_ed25519_seed([2; 32], name.clone());
//! let note = log.sign_checkpoint(&Checkpoint::new(Origin::from(name), 1, [0; 32]))?;
//! let body = add_checkpoint_body(0, &[], &note)?;
//! assert!(body.starts_with(b"old 0\n\nlog.example\n1\n"));
//!
//! // What a witness answers: one cosignature line over the checkpoint text.
//! let text = Note::parse(&note)?.text().to_string();
//! let answer = witness.cosign(&text, 1_700_000_000)?.to_line();
//! let cosignatures = cosignatures_from_response(w1.verifier(), &note, answer.as_bytes())?;
//! assert!(policy.satisfied(["w1"]));
//! assert_eq!(cosignatures.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(clippy::as_conversions)]

mod error;
mod policy;
mod wire;

pub use error::WitnessError;
pub use policy::{MAX_POLICY_ENTRIES, MAX_POLICY_SIZE, Policy, PolicyWitness};
pub use wire::{
    AddCheckpoint, MAX_PROOF_LINES, MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE, TLOG_SIZE_CONTENT_TYPE,
    add_checkpoint_body, cosignatures_from_response, parse_add_checkpoint, parse_cosignature_lines,
    parse_tlog_size, verify_cosignatures,
};
