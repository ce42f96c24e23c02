//! The shared-backend suite against real emulators started on 127.0.0.1: fake-gcs-server for the
//! bucket and the Cloud Spanner emulator for sequencing. Two `rekor-server-gcp` frontends write
//! concurrently and must build one tree; one is killed and restarted; both serve the same log.
//! Prints the write latency and the objects written per checkpoint.

use rekor_emulators::gcp::{FakeGcs, SpannerEmulator};
use rekor_emulators::skip_or_fail;
use rekor_testkit::ServerConfig;
use rekor_testkit::fixtures::write_log_key;
use rekor_testkit::process::DEFAULT_HOSTNAME;
use rekor_testkit::scenarios::{shared_backend_suite, shared_search_suite};

/// The emulators, kept running while the test holds them, and a frontend's configuration on
/// a fresh bucket and database of theirs; `None` when they are missing and may be skipped.
fn backend(
    name: &str,
) -> anyhow::Result<Option<(FakeGcs, SpannerEmulator, tempfile::TempDir, ServerConfig)>> {
    let gcs = match FakeGcs::start() {
        Ok(gcs) => gcs,
        Err(e) if skip_or_fail(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let spanner = match SpannerEmulator::start() {
        Ok(spanner) => spanner,
        Err(e) if skip_or_fail(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let bucket = format!("rekor-{name}");
    gcs.create_bucket(&bucket)?;
    let database = spanner.create_database("rekor-test", "rekor", name)?;
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("signer.pem");
    write_log_key(&key, DEFAULT_HOSTNAME)?;
    let config = ServerConfig::cloud(
        env!("CARGO_BIN_EXE_rekor-server-gcp"),
        &key,
        ["--gcp-bucket", bucket.as_str(), "--gcp-spanner", &database],
    )
    .with_env("STORAGE_EMULATOR_HOST", gcs.endpoint())
    .with_env("SPANNER_EMULATOR_HOST", spanner.grpc_address());
    Ok(Some((gcs, spanner, dir, config)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_frontends_on_gcs_and_spanner_build_one_tree() -> anyhow::Result<()> {
    let Some((_gcs, _spanner, _dir, config)) = backend("log")? else {
        return Ok(());
    };
    // 2 x 8 x 17 = 272 entries: past the first full tile, so the frontends delete superseded
    // partials while they run, and read around the ones another frontend deleted.
    let report = shared_backend_suite(&config, 8, 17).await?;
    println!("== rekor-server-gcp, 2 frontends, checkpoint interval 1 s: {report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_frontends_on_gcs_and_spanner_share_one_search_index() -> anyhow::Result<()> {
    let Some((_gcs, _spanner, _dir, config)) = backend("search")? else {
        return Ok(());
    };
    shared_search_suite(&config).await?;
    Ok(())
}
