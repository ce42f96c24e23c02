//! Following a log: each new checkpoint must be signed by the log's key and provably extend the
//! last one verified, so the log can never show two histories without being caught.

use rekor_note::LogVerifier;
use serde::{Deserialize, Serialize};

use crate::checkpoint::SignedCheckpoint;
use crate::error::{Error, Result};
use crate::http::Client;

/// Largest monitor state file accepted.
const MAX_STATE_BYTES: usize = 2 << 20;

/// The last checkpoint a monitor verified; saved between runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorState {
    /// The checkpoint.
    pub checkpoint: SignedCheckpoint,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StateFile {
    origin: String,
    size: u64,
    root: String,
    checkpoint: String,
}

impl MonitorState {
    /// The state as JSON: the signed checkpoint note, with its origin, size and root for
    /// people to read.
    ///
    /// # Errors
    ///
    /// [`Error::State`] if it cannot be encoded (it always can).
    pub fn to_json(&self) -> Result<String> {
        let file = StateFile {
            origin: self.checkpoint.checkpoint.origin.as_str().to_string(),
            size: self.checkpoint.checkpoint.size,
            root: self.checkpoint.root().to_string(),
            checkpoint: self.checkpoint.note().to_string(),
        };
        serde_json::to_string_pretty(&file).map_err(|e| Error::State {
            reason: e.to_string(),
        })
    }

    /// Reads a saved state and verifies its checkpoint again with `verifier`.
    ///
    /// # Errors
    ///
    /// [`Error::State`] for a malformed file or one whose fields disagree with its note;
    /// [`Error::Checkpoint`] if the note is not signed by `verifier`'s key.
    pub fn from_json(json: &[u8], verifier: &LogVerifier) -> Result<MonitorState> {
        let state_error = |reason: String| Error::State { reason };
        if json.len() > MAX_STATE_BYTES {
            return Err(state_error(format!(
                "monitor state is larger than {MAX_STATE_BYTES} bytes"
            )));
        }
        let file: StateFile =
            serde_json::from_slice(json).map_err(|e| state_error(format!("monitor state: {e}")))?;
        let checkpoint = SignedCheckpoint::verify(file.checkpoint.as_bytes(), verifier)?;
        if checkpoint.checkpoint.size != file.size
            || checkpoint.root().to_string() != file.root
            || checkpoint.checkpoint.origin.as_str() != file.origin
        {
            return Err(state_error(
                "monitor state: origin, size or root differ from its checkpoint".to_string(),
            ));
        }
        Ok(MonitorState { checkpoint })
    }
}

/// What one monitoring step found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MonitorEvent {
    /// No earlier checkpoint: this one is trusted on first use.
    First,
    /// The log serves the checkpoint already verified (or one of the same tree).
    Unchanged,
    /// The log grew, and its tiles prove the new tree extends the old one.
    Grew {
        /// The previous size.
        from: u64,
        /// The new size.
        to: u64,
    },
    /// The log serves an older checkpoint than one already verified (a stale cache, or a
    /// rollback); it is consistent with the verified one, which is kept.
    Behind {
        /// The size the log serves.
        served: u64,
        /// The size already verified.
        verified: u64,
    },
}

impl Client {
    /// One monitoring step: fetches and verifies the current checkpoint and proves it consistent
    /// with `last` (in whichever order their sizes require). Returns the newest verified state
    /// and what happened.
    ///
    /// # Errors
    ///
    /// [`Error::Checkpoint`] for a bad signature; [`Error::Fork`] or [`Error::Inconsistent`]
    /// when the log shows two histories; [`Error::NotFound`] naming a missing tile; transport
    /// errors.
    pub async fn monitor_step(
        &self,
        verifier: &LogVerifier,
        last: Option<&MonitorState>,
    ) -> Result<(MonitorState, MonitorEvent)> {
        let current = self.checkpoint(verifier).await?;
        let Some(last) = last else {
            return Ok((
                MonitorState {
                    checkpoint: current,
                },
                MonitorEvent::First,
            ));
        };
        let (old, new) = (&last.checkpoint, &current);
        if new.size() >= old.size() {
            self.prove_consistency(old, new).await?;
            let event = if new.size() == old.size() {
                MonitorEvent::Unchanged
            } else {
                MonitorEvent::Grew {
                    from: old.size().get(),
                    to: new.size().get(),
                }
            };
            Ok((
                MonitorState {
                    checkpoint: current,
                },
                event,
            ))
        } else {
            self.prove_consistency(new, old).await?;
            let event = MonitorEvent::Behind {
                served: new.size().get(),
                verified: old.size().get(),
            };
            Ok((last.clone(), event))
        }
    }
}
