//! The shared-backend suite against real peers started on 127.0.0.1: moto's S3 server for the
//! bucket and a private MariaDB for sequencing. Two `rekor-server-aws` frontends write
//! concurrently and must build one tree; one is killed and restarted; both serve the same log.
//! Prints the write latency and the objects written per checkpoint.

use rekor_emulators::aws::{
    MOTO_ACCESS_KEY_ID, MOTO_REGION, MOTO_SECRET_ACCESS_KEY, MariaDb, MotoS3,
};
use rekor_emulators::skip_or_fail;
use rekor_testkit::ServerConfig;
use rekor_testkit::fixtures::write_log_key;
use rekor_testkit::process::DEFAULT_HOSTNAME;
use rekor_testkit::scenarios::{shared_backend_suite, shared_search_suite};

/// The emulators, kept running while the test holds them, and a frontend's configuration on
/// a fresh bucket and database of theirs; `None` when they are missing and may be skipped.
fn backend(
    name: &str,
) -> anyhow::Result<Option<(MotoS3, MariaDb, tempfile::TempDir, ServerConfig)>> {
    let s3 = match MotoS3::start() {
        Ok(s3) => s3,
        Err(e) if skip_or_fail(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mariadb = match MariaDb::start() {
        Ok(mariadb) => mariadb,
        Err(e) if skip_or_fail(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let bucket = format!("rekor-{name}");
    s3.create_bucket(&bucket)?;
    let database = mariadb.create_database(&format!("rekor_{name}"))?;
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("signer.pem");
    write_log_key(&key, DEFAULT_HOSTNAME)?;
    let config = ServerConfig::cloud(
        env!("CARGO_BIN_EXE_rekor-server-aws"),
        &key,
        ["--aws-bucket", bucket.as_str()],
    )
    .with_env("REKOR_AWS_MYSQL_DSN", mariadb.dsn(&database))
    .with_env("AWS_ENDPOINT_URL", s3.endpoint())
    .with_env("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY_ID)
    .with_env("AWS_SECRET_ACCESS_KEY", MOTO_SECRET_ACCESS_KEY)
    .with_env("AWS_REGION", MOTO_REGION);
    Ok(Some((s3, mariadb, dir, config)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_frontends_on_s3_and_mysql_build_one_tree() -> anyhow::Result<()> {
    let Some((_s3, _mariadb, _dir, config)) = backend("tiles")? else {
        return Ok(());
    };
    // 2 x 8 x 17 = 272 entries: past the first full tile, so the frontends delete superseded
    // partials while they run, and read around the ones another frontend deleted.
    let report = shared_backend_suite(&config, 8, 17).await?;
    println!("== rekor-server-aws, 2 frontends, checkpoint per batch: {report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_frontends_on_s3_and_mysql_share_one_search_index() -> anyhow::Result<()> {
    let Some((_s3, _mariadb, _dir, config)) = backend("search")? else {
        return Ok(());
    };
    shared_search_suite(&config).await?;
    Ok(())
}
