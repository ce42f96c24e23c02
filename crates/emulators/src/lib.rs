//! Real cloud emulators for tests, started on 127.0.0.1 and stopped when dropped.
//!
//! The cloud backends are tested against real peers, never against our own assumptions: the Cloud
//! Spanner emulator, fake-gcs-server, moto's S3 server and a private MariaDB instance. Each
//! launcher finds its program (an environment variable first, then the place `make emulators`
//! installs it), picks a free loopback port, waits until the peer answers, and kills the process
//! (and removes its scratch directory) on drop.
//!
//! When a program is missing, [`Error::Missing`] says which and how to install it. Tests call
//! [`skip_or_fail`] with that error: it returns `true` (skip) unless `REKOR_REQUIRE_EMULATORS=1`,
//! which CI sets so that the backend suites always run there.
//!
//! ```no_run
//! # fn main() -> Result<(), rekor_emulators::Error> {
//! // let gcs = rekor_emulators::gcp::FakeGcs::start()?;   // see the gcp and aws modules
//! # Ok(()) }
//! ```

pub mod aws;
mod error;
pub mod gcp;
pub mod process;

pub use error::{Error, Result};

/// Set to `1` to turn a missing emulator into a test failure instead of a skip (CI sets it).
pub const REQUIRE_ENV: &str = "REKOR_REQUIRE_EMULATORS";

/// Where `make emulators` creates the Python virtual environment holding fake-gcs-server and moto.
pub fn default_venv() -> std::path::PathBuf {
    if let Some(venv) = std::env::var_os("REKOR_EMULATORS_VENV") {
        return venv.into();
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    std::path::PathBuf::from(home).join(".cache/rekor-rs/emulators-venv")
}

/// Decides what a test does when an emulator could not start: returns `true` to skip (after
/// printing why) for [`Error::Missing`] unless [`REQUIRE_ENV`] is `1`; panics otherwise.
///
/// # Panics
///
/// When the emulator is required, or when it exists but failed to start.
#[allow(
    clippy::panic,
    clippy::print_stderr,
    reason = "a test helper: reporting the skip and failing the test are its job"
)]
pub fn skip_or_fail(error: &Error) -> bool {
    let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1");
    match error {
        Error::Missing { .. } if !required => {
            eprintln!("SKIPPED: {error} (set {REQUIRE_ENV}=1 to fail instead)");
            true
        }
        _ => panic!("emulator failed: {error}"),
    }
}
