//! What the pipeline test files share: the log's key, its origin, and opening a log.
#![allow(
    clippy::unwrap_used,
    dead_code,
    reason = "test helpers; not every test file uses every helper"
)]

use std::sync::Arc;

use rekor_log::{Log, LogConfig};
use rekor_note::{KeyName, LogSigner, Origin};
use rekor_storage::{Coordinator, Storage};

/// The origin (and key name) of every test log.
pub(crate) const ORIGIN: &str = "log.test.example";

/// The test log's signing key (fixed, so reopened logs verify their stored checkpoints).
pub(crate) fn signer() -> Arc<LogSigner> {
    Arc::new(LogSigner::from_ed25519_seed(
        [7; 32],
        KeyName::new(ORIGIN).unwrap(),
    ))
}

/// The test log's origin.
pub(crate) fn origin() -> Origin {
    Origin::new(ORIGIN).unwrap()
}

/// Opens a log with the test key on `storage` + `coordinator`.
pub(crate) async fn open_with(
    storage: Arc<dyn Storage>,
    coordinator: Arc<dyn Coordinator>,
    config: LogConfig,
) -> Log {
    Log::open(storage, coordinator, signer(), origin(), config)
        .await
        .unwrap()
}
