//! The follow loop: poll the log's checkpoint, index up to each accepted one, and on failure
//! log and retry after a bounded backoff. It never ends by itself; `stop` ends it.

use std::sync::Arc;
use std::time::Duration;

use rekor_search::{Indexer, SearchTree};
use rekor_tlog::Hash;
use tokio_util::sync::CancellationToken;

use crate::remote::RemoteLog;

/// The longest wait between two attempts after failures (unless the poll interval is longer).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Follows `log` into the index `indexer` writes, every `poll` while all goes well, until
/// `stop` is cancelled.
pub async fn follow(
    log: Arc<RemoteLog>,
    indexer: Indexer,
    poll: Duration,
    stop: CancellationToken,
) {
    let mut failures: u32 = 0;
    let mut reported: Option<u64> = None;
    loop {
        let wait = match step(&log, &indexer).await {
            Ok(indexed) => {
                if failures > 0 {
                    tracing::info!(indexed, "following the log again");
                }
                failures = 0;
                if reported != Some(indexed) {
                    tracing::info!(indexed, "search index caught up with the log");
                    reported = Some(indexed);
                }
                poll
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let wait = backoff(poll, failures);
                // The refusal of a checkpoint is logged where it happens, at error level.
                tracing::warn!(%error, failures, retry_in = ?wait, "following the log failed; retrying");
                wait
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// One poll: accept the log's checkpoint and index every entry below its size, each bundle
/// proven to be part of its tree first. Returns the indexed size.
async fn step(log: &RemoteLog, indexer: &Indexer) -> Result<u64, rekor_search::SearchError> {
    match log.checkpoint().await? {
        Some((_, checkpoint)) => {
            let tree = SearchTree {
                size: checkpoint.size,
                root: Hash(checkpoint.root),
            };
            indexer.catch_up_verified(tree).await
        }
        None => {
            tracing::debug!("the log has published no checkpoint yet");
            indexer.catch_up(0).await
        }
    }
}

/// The wait after `failures` failures in a row: the poll interval, doubled per further
/// failure, at most [`MAX_BACKOFF`] (or the poll interval, if that is longer).
fn backoff(poll: Duration, failures: u32) -> Duration {
    let factor = 2_u32.saturating_pow(failures.saturating_sub(1).min(16));
    poll.saturating_mul(factor).min(MAX_BACKOFF.max(poll))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let poll = Duration::from_secs(5);
        assert_eq!(backoff(poll, 1), poll);
        assert_eq!(backoff(poll, 2), Duration::from_secs(10));
        assert_eq!(backoff(poll, 4), Duration::from_secs(40));
        assert_eq!(backoff(poll, 5), MAX_BACKOFF);
        assert_eq!(backoff(poll, u32::MAX), MAX_BACKOFF);
        let slow = Duration::from_secs(600);
        assert_eq!(backoff(slow, 9), slow);
        assert_eq!(backoff(Duration::ZERO, 3), Duration::ZERO);
    }
}
