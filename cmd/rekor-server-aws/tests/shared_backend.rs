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
use rekor_testkit::scenarios::shared_backend_suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_frontends_on_s3_and_mysql_build_one_tree() -> anyhow::Result<()> {
    let s3 = match MotoS3::start() {
        Ok(s3) => s3,
        Err(e) if skip_or_fail(&e) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mariadb = match MariaDb::start() {
        Ok(mariadb) => mariadb,
        Err(e) if skip_or_fail(&e) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    s3.create_bucket("rekor-tiles")?;
    let database = mariadb.create_database("rekor_log")?;
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("signer.pem");
    write_log_key(&key, DEFAULT_HOSTNAME)?;

    let config = ServerConfig::cloud(
        env!("CARGO_BIN_EXE_rekor-server-aws"),
        &key,
        ["--aws-bucket", "rekor-tiles"],
    )
    .with_env("REKOR_AWS_MYSQL_DSN", mariadb.dsn(&database))
    .with_env("AWS_ENDPOINT_URL", s3.endpoint())
    .with_env("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY_ID)
    .with_env("AWS_SECRET_ACCESS_KEY", MOTO_SECRET_ACCESS_KEY)
    .with_env("AWS_REGION", MOTO_REGION);
    // 2 x 8 x 17 = 272 entries: past the first full tile, so the frontends delete superseded
    // partials while they run, and read around the ones another frontend deleted.
    let report = shared_backend_suite(&config, 8, 17).await?;
    println!("== rekor-server-aws, 2 frontends, checkpoint per batch: {report}");
    Ok(())
}
