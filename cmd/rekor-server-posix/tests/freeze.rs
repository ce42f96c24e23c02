//! `rekor-server-posix freeze`: after writes, and after a SIGKILL that left sequenced entries in
//! the journal, the freeze publishes a final checkpoint covering every acknowledged entry; the
//! server started again on the directory (without `--read-only`) refuses writes on both
//! transports, serves the same final checkpoint, and a second freeze reports the same size.

use anyhow::{Context as _, ensure};
use rekor_testkit::fixtures::artifact;
use rekor_testkit::scenarios::expect_frozen;
use rekor_testkit::{ClientKey, KeyKind, ServerConfig, TestLog, audit, verify_entry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_log_keeps_every_acknowledged_entry_and_takes_no_more() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = ServerConfig::new(
        env!("CARGO_BIN_EXE_rekor-server-posix"),
        dir.path().join("log"),
    );
    let key = ClientKey::generate(KeyKind::EcdsaP256)?;
    let mut acknowledged = Vec::new();

    // Writes, then a SIGKILL: the last of them may be only in the journal.
    let mut log = TestLog::start(&config).await?;
    for n in 0..5 {
        let submission = key.hashed_rekord(&artifact("before the freeze", n)?)?;
        let entry = log.http.create_entry(&submission).await?;
        verify_entry(&log.trust, &submission, &entry)?;
        acknowledged.push(entry);
    }
    log.server.kill().context("SIGKILL")?;
    let trust = log.trust.clone();

    // The directory is locked while a server runs, so the freeze runs on its own.
    let said = tokio::task::spawn_blocking({
        let config = config.clone();
        move || config.run_subcommand("freeze")
    })
    .await??;
    ensure!(
        said.starts_with("frozen at size 5\n"),
        "freeze said {said:?}"
    );

    let log = TestLog::start(&config).await?;
    ensure!(log.trust.log_id == trust.log_id, "the key changed");
    let late = key.hashed_rekord(&artifact("after the freeze", 0)?)?;
    expect_frozen(&log, &late).await?;
    let report = audit(&log.http, &log.trust).await?;
    ensure!(
        report.checkpoint.size == 5,
        "size {}",
        report.checkpoint.size
    );
    for entry in &acknowledged {
        let index = usize::try_from(entry.log_index)?;
        ensure!(
            report.entries.get(index) == Some(&entry.canonicalized_body),
            "acknowledged entry {index} is not in the frozen log"
        );
    }
    // Health stays SERVING: a frozen log is healthy, it only takes no writes.
    log.http.get("/healthz").await?.expect_status(200)?;
    log.stop().await?;

    let again = tokio::task::spawn_blocking({
        let config = config.clone();
        move || config.run_subcommand("freeze")
    })
    .await??;
    ensure!(
        again == said,
        "a second freeze said {again:?}, the first {said:?}"
    );
    let log = TestLog::start(&config).await?;
    let (_, final_checkpoint) = said
        .split_once("final checkpoint:\n")
        .context("no final checkpoint in the freeze output")?;
    ensure!(
        log.http.checkpoint().await?.as_ref() == final_checkpoint.as_bytes(),
        "the served checkpoint is not the final one"
    );
    log.stop().await?;
    Ok(())
}
