//! A Rekor v2 client that trusts nothing it has not checked.
//!
//! It speaks the Rekor v2 HTTP API (`POST /api/v2/log/entries`, protojson) and reads the log
//! through the C2SP [tlog-tiles](https://c2sp.org/tlog-tiles) API (`/api/v2/checkpoint`,
//! `/api/v2/tile/<L>/<N>[.p/<W>]`, `/api/v2/tile/entries/<N>[.p/<W>]`). Every answer is checked
//! against the one thing the caller trusts, the log's key:
//!
//! - [`verify_entry`]: a `TransparencyLogEntry` offline: canonical body (RFC 8785) of the kind
//!   `kindVersion` declares, the client signature for hashedrekord, leaf hash, inclusion proof
//!   (RFC 9162 §2.1.3.2) to the root of a checkpoint signed by the key (C2SP
//!   [tlog-checkpoint](https://c2sp.org/tlog-checkpoint)), and the key's log ID;
//! - [`Client::submit_verified`]: submit, then check the log stored exactly the entry asked for;
//! - [`Client::prove_consistency`]: that one checkpoint extends another, from the log's tiles
//!   (RFC 9162 §2.1.4), using the record-then-fetch pattern of [`rekor_tlog::TileRecorder`];
//! - [`Client::entry_at`]: one entry with its inclusion proof computed from the tiles;
//! - [`Client::audit`]: every bundle and tile, recomputed from the entries up to the root;
//!   resumable through [`AuditState`];
//! - [`Client::monitor_step`]: follow the checkpoints and prove each extends the last
//!   ([`MonitorState`]);
//! - [`Client::search`]: every entry carrying a digest, key or identity, each proven;
//!   [`Client::search_page_unverified`] shows an answer it rejected, as served.
//!
//! Trust anchors are loaded by [`verifier_from_public_key`], [`verifier_from_vkey`] and
//! [`verifier_from_trusted_root`]. All errors are one [`Error`] enum.
//!
//! # Example
//!
//! Checking a checkpoint against a trusted verifier key (here made from a throwaway signer; a
//! client gets the vkey from the log operator):
//!
//! ```
//! use rekor_client::{SignedCheckpoint, verifier_from_vkey};
//! use rekor_note::{Checkpoint, KeyName, LogSigner, Origin};
//!
//! let name = KeyName::new("log.example.dev")?;
//! let signer = LogSigner::from_ed25519_seed([1; 32], name.clone());
//! let vkey = signer.verifier().to_vkey().ok_or("Ed25519 keys have a vkey")?;
//!
//! let verifier = verifier_from_vkey(&vkey)?;
//! let note = signer.sign_checkpoint(&Checkpoint::new(Origin::from(name), 5, [7; 32]))?;
//! let checkpoint = SignedCheckpoint::verify(&note, &verifier)?;
//! assert_eq!(checkpoint.size().get(), 5);
//!
//! // Any change to the note breaks it.
//! let mut forged = note.clone();
//! forged[17] ^= 1;
//! assert!(SignedCheckpoint::verify(&forged, &verifier).is_err());
//!
//! // Talking to a log (not run here):
//! // let client = rekor_client::Client::new("http://127.0.0.1:3000", Default::default())?;
//! // let current = client.checkpoint(&verifier).await?;
//! // client.prove_consistency(&checkpoint, &current).await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod audit;
mod checkpoint;
mod error;
mod http;
mod monitor;
mod proof;
mod search;
mod search_unverified;
mod trust;
mod verify;

pub use audit::{AuditProgress, AuditReport, AuditState};
pub use checkpoint::SignedCheckpoint;
pub use error::{Error, Result};
pub use http::{Client, ClientOptions, LOG_INDEX_HEADER};
pub use monitor::{MonitorEvent, MonitorState};
pub use proof::LogEntry;
pub use search::{CommitmentAudit, Completeness, MAX_TAIL_SCAN, SearchResults};
pub use search_unverified::UnverifiedSearchPage;
pub use trust::{
    bundle_from_json, entry_from_json, origin_of_url, pem_or_der, verifier_from_public_key,
    verifier_from_trusted_root, verifier_from_vkey,
};
pub use verify::{EntryBody, VerifiedEntry, digest, expected_body, verify_entry};
