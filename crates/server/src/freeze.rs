//! `freeze`: ends a log for good. The coordinator stops sequencing for every frontend (see
//! `Coordinator::freeze`), the entries sequenced before that are integrated and covered by one
//! last checkpoint, and from then on every server on this backend serves reads only and no larger
//! checkpoint can be signed.

use std::sync::Arc;

use rekor_log::{Log, LogError};
use rekor_note::Origin;
use tracing::info;

use crate::config::ServerArgs;
use crate::run::{Backend, RunError, log_config, signer};

/// A frozen log's last word.
#[derive(Debug, Clone)]
pub struct Frozen {
    /// The final tree size.
    pub size: u64,
    /// The final signed checkpoint, as stored and served.
    pub checkpoint: String,
}

impl Frozen {
    /// Prints what `freeze` reports: `frozen at size N`, then the final checkpoint.
    pub fn print(&self) {
        #[allow(
            clippy::print_stdout,
            reason = "printing is what `freeze` reports with"
        )]
        {
            print!(
                "frozen at size {}\nfinal checkpoint:\n{}",
                self.size, self.checkpoint
            );
        }
    }
}

/// Freezes the log the flags and `backend` name, and publishes its final checkpoint. Safe to run
/// while other frontends serve it (their writes are refused from the freeze on), and again on a
/// frozen log (it reports the same size).
///
/// # Errors
///
/// [`RunError::Log`] if storage fails or the final checkpoint does not cover the final size;
/// key and flag errors as for `serve`.
pub async fn freeze(args: &ServerArgs, backend: &Backend) -> Result<Frozen, RunError> {
    let signer = signer(args, backend.generated_key_dir.as_deref())?;
    let origin = Origin::new(&args.hostname).map_err(|e| RunError::Flag {
        flag: "--hostname",
        reason: e.to_string(),
    })?;
    let size = backend.coordinator.freeze().await.map_err(LogError::from)?;
    info!(size, "frozen: no entry beyond this size will be sequenced");
    // Opening integrates every sequenced entry and publishes a checkpoint covering them.
    let log = Log::open(
        Arc::clone(&backend.storage),
        Arc::clone(&backend.coordinator),
        Arc::new(signer),
        origin,
        log_config(args, backend)?,
    )
    .await?;
    let checkpoint = log.checkpoint();
    log.shutdown().await;
    if checkpoint.size != size {
        return Err(LogError::Inconsistent {
            reason: format!(
                "the final checkpoint has size {}, the log was frozen at {size}",
                checkpoint.size
            ),
        }
        .into());
    }
    Ok(Frozen {
        size,
        checkpoint: String::from_utf8_lossy(&checkpoint.note).into_owned(),
    })
}
