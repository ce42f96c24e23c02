//! Witnessing a checkpoint between signing it and storing it (see [`crate::Witnessing`]).
//!
//! The witnesses answer within their client's timeout, so a slow or absent witness delays the
//! checkpoint (and the entries waiting for it) by at most that; sequencing of the next batch
//! goes on meanwhile. Without the quorum the checkpoint is published with the cosignatures that
//! came (failing open), or withheld and retried like a failed storage write (failing closed).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rekor_tlog::Hash;
use tokio::time::Instant;
use tracing::warn;

use super::Pipeline;
use crate::LogError;
use crate::witness::{ConsistencyProofs, WitnessRequest, cosigned_note};

/// The least time between two warnings about missed quorums; misses in between are counted in
/// the next warning (and each one in the metrics).
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Missed quorums since the last warning.
#[derive(Debug, Default)]
pub(super) struct MissLog {
    warned: Option<Instant>,
    unreported: u64,
}

impl Pipeline {
    /// Has the configured witnesses cosign `note`, the signed checkpoint of the tree of `size`
    /// with `root` whose tiles are durable, and returns it with their lines appended. The empty
    /// tree is not witnessed.
    ///
    /// # Errors
    ///
    /// [`LogError::WitnessQuorum`] without the quorum when failing closed;
    /// [`LogError::Internal`] if the cosignatures cannot be appended.
    pub(super) async fn cosign(
        &mut self,
        note: Bytes,
        size: u64,
        root: Hash,
    ) -> Result<Bytes, LogError> {
        let Some(witnesses) = self.config.witnesses.clone() else {
            return Ok(note);
        };
        if size == 0 {
            return Ok(note);
        }
        let proofs = Arc::new(ConsistencyProofs::new(
            Arc::clone(&self.storage),
            size,
            root,
            self.integrator.proof_tiles(),
        ));
        let witnessed = witnesses
            .cosign(WitnessRequest {
                note: note.clone(),
                size,
                root,
                proofs,
            })
            .await;
        let cosigned = cosigned_note(&note, &witnessed.cosignatures)?;
        if witnessed.quorum {
            return Ok(cosigned);
        }
        let fail_closed = self.config.witness_fail_closed;
        let cosignatures = witnessed.cosignatures.len();
        self.report_miss(size, cosignatures, fail_closed);
        if fail_closed {
            self.stats.record_withheld();
            Err(LogError::WitnessQuorum { size, cosignatures })
        } else {
            self.stats.record_unwitnessed();
            Ok(cosigned)
        }
    }

    /// Warns about a missed quorum, at most once per [`WARNING_INTERVAL`].
    fn report_miss(&mut self, size: u64, cosignatures: usize, fail_closed: bool) {
        let log = &mut self.quorum_misses;
        log.unreported = log.unreported.saturating_add(1);
        let now = Instant::now();
        if log.warned.is_some_and(|at| now < at + WARNING_INTERVAL) {
            return;
        }
        let misses = std::mem::take(&mut log.unreported);
        log.warned = Some(now);
        if fail_closed {
            warn!(
                tree_size = size,
                cosignatures,
                misses,
                "witness quorum not reached in time; checkpoint withheld, entries refused until it is"
            );
        } else {
            warn!(
                tree_size = size,
                cosignatures,
                misses,
                "witness quorum not reached in time; checkpoint published without it"
            );
        }
    }
}
