//! Verified checkpoints.

use rekor_note::{Checkpoint, LogVerifier};
use rekor_tlog::{Hash, TreeSize};

use crate::error::{Error, Result};

/// A checkpoint whose signature by the trusted log key has been checked, with the signed note it
/// came in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The checkpoint body: origin, size, root.
    pub checkpoint: Checkpoint,
    note: String,
}

impl SignedCheckpoint {
    /// Verifies a signed checkpoint note with the log's key: the log's signature must be present
    /// and valid, and the origin must be the key's name.
    ///
    /// # Errors
    ///
    /// [`Error::Checkpoint`] naming the rule that failed.
    pub fn verify(note: &[u8], verifier: &LogVerifier) -> Result<SignedCheckpoint> {
        let checkpoint = verifier
            .verify_checkpoint(note)
            .map_err(|source| Error::Checkpoint { source })?;
        // A verified note is UTF-8 (the note parser checks it before any signature).
        let note = String::from_utf8(note.to_vec()).map_err(|_| Error::Checkpoint {
            source: rekor_note::NoteError::NotUtf8,
        })?;
        Ok(SignedCheckpoint { checkpoint, note })
    }

    /// The tree size.
    #[must_use]
    pub fn size(&self) -> TreeSize {
        TreeSize::new(self.checkpoint.size)
    }

    /// The root hash.
    #[must_use]
    pub fn root(&self) -> Hash {
        Hash(self.checkpoint.root)
    }

    /// The signed note, exactly as served.
    #[must_use]
    pub fn note(&self) -> &str {
        &self.note
    }
}
