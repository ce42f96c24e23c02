//! Duplicates are refused with the original index — live, after a graceful restart (SIGTERM)
//! and after a hard one (SIGKILL) — over HTTP (409 + `x-log-index`) and gRPC (AlreadyExists
//! + `x-log-index` metadata); and the log continues from where it stopped.

use anyhow::{Context as _, ensure};
use rekor_testkit::fixtures::artifact;
use rekor_testkit::{ClientKey, KeyKind, ServerConfig, Submission, TestLog, audit, verify_entry};

/// Resubmits `submission` over both transports and checks both refuse it as a duplicate of
/// `index`.
async fn expect_duplicate(
    log: &TestLog,
    submission: &Submission,
    index: u64,
) -> anyhow::Result<()> {
    log.expect_duplicate_http(submission, index)
        .await
        .context("HTTP resubmission")?;
    log.expect_duplicate_grpc(submission, index)
        .await
        .context("gRPC resubmission")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_survive_graceful_and_hard_restarts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = ServerConfig::new(
        env!("CARGO_BIN_EXE_rekor-server-posix"),
        dir.path().join("log"),
    );
    let key = ClientKey::generate(KeyKind::EcdsaP256)?;
    let first = key.hashed_rekord(&artifact("dedup", 0)?)?;
    let second = key.hashed_rekord(&artifact("dedup", 1)?)?;
    let third = key.hashed_rekord(&artifact("dedup", 2)?)?;

    // A fresh log: two entries, one per transport.
    let log = TestLog::start(&config).await?;
    let log_id = log.trust.log_id;
    let a = verify_entry(&log.trust, &first, &log.http.create_entry(&first).await?)?.index;
    let b = verify_entry(
        &log.trust,
        &second,
        &log.grpc.create_entry_for(&second).await?,
    )?
    .index;
    ensure!((a, b) == (0, 1), "indices {a}, {b} in a fresh log");
    // Same signature, different transport: still the same leaf.
    expect_duplicate(&log, &first, a)
        .await
        .context("live duplicate")?;
    expect_duplicate(&log, &second, b)
        .await
        .context("live duplicate")?;
    let before = log.http.checkpoint().await?;
    log.stop().await.context("graceful stop")?;

    // Graceful restart: the same key, the same checkpoint, the same dedup answers.
    let log = TestLog::start(&config).await?;
    ensure!(
        log.trust.log_id == log_id,
        "the log key changed across a restart"
    );
    ensure!(
        log.http.checkpoint().await? == before,
        "the checkpoint changed across a graceful restart"
    );
    expect_duplicate(&log, &first, a)
        .await
        .context("after SIGTERM + restart")?;
    expect_duplicate(&log, &second, b)
        .await
        .context("after SIGTERM + restart")?;
    let c = verify_entry(
        &log.trust,
        &third,
        &log.grpc.create_entry_for(&third).await?,
    )?
    .index;
    ensure!(c == 2, "the log did not continue at index 2 (got {c})");

    // Hard stop right after an acknowledged write: nothing acknowledged may be lost.
    log.kill().await?;
    let log = TestLog::start(&config).await?;
    expect_duplicate(&log, &third, c)
        .await
        .context("after SIGKILL + restart")?;
    expect_duplicate(&log, &first, a)
        .await
        .context("after SIGKILL + restart")?;
    let report = audit(&log.http, &log.trust).await?;
    ensure!(
        report.checkpoint.size == 3,
        "size {} after SIGKILL",
        report.checkpoint.size
    );

    // A new entry still goes in, at the next index.
    let fourth = key.hashed_rekord(&artifact("dedup", 3)?)?;
    let d = verify_entry(&log.trust, &fourth, &log.http.create_entry(&fourth).await?)?.index;
    ensure!(d == 3, "after SIGKILL the log continued at {d}, not 3");
    let errors = log.server.logged_errors();
    ensure!(
        errors.is_empty(),
        "server logged errors:\n{}",
        errors.join("\n")
    );
    log.stop().await?;
    Ok(())
}

/// SIGKILL while writes are in flight: every acknowledged entry is there after the restart,
/// at the index it was given; every unacknowledged one is either absent (and goes in now) or
/// present exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_loses_nothing_acknowledged() -> anyhow::Result<()> {
    const WRITES: usize = 40;
    let dir = tempfile::tempdir()?;
    let config = ServerConfig::new(
        env!("CARGO_BIN_EXE_rekor-server-posix"),
        dir.path().join("log"),
    );
    let key = ClientKey::generate(KeyKind::EcdsaP256)?;
    let submissions = (0..WRITES)
        .map(|n| key.hashed_rekord(&artifact("in flight", n)?))
        .collect::<Result<Vec<_>, _>>()?;

    let log = TestLog::start(&config).await?;
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    for (n, submission) in submissions.iter().cloned().enumerate() {
        let (http, grpc, acked) = (log.http.clone(), log.grpc.clone(), acked_tx.clone());
        tasks.spawn(async move {
            let entry = if n % 2 == 0 {
                http.create_entry(&submission).await.ok()
            } else {
                grpc.create_entry_for(&submission).await.ok()
            };
            if let Some(entry) = entry {
                let _ = acked.send((n, entry));
            }
        });
    }
    drop(acked_tx);
    // Kill at the first acknowledgement, while the others are in flight.
    let mut acked = Vec::new();
    while acked.is_empty() {
        let next = tokio::time::timeout(std::time::Duration::from_secs(30), acked_rx.recv())
            .await
            .context("no acknowledgement within 30 s")?;
        acked.push(next.context("every write failed before the kill")?);
    }
    let trust = log.trust.clone();
    log.kill().await?;
    while tasks.join_next().await.is_some() {}
    while let Ok(late) = acked_rx.try_recv() {
        acked.push(late);
    }
    println!(
        "SIGKILL with writes in flight: {} of {WRITES} acknowledged",
        acked.len()
    );
    for (n, entry) in &acked {
        verify_entry(&trust, &submissions[*n], entry)
            .with_context(|| format!("acknowledged write {n}"))?;
    }

    let log = TestLog::start(&config).await?;
    ensure!(
        log.trust.log_id == trust.log_id,
        "the log key changed across SIGKILL"
    );
    let mut acked_numbers = std::collections::HashSet::new();
    for (n, entry) in &acked {
        expect_duplicate(&log, &submissions[*n], entry.log_index)
            .await
            .with_context(|| format!("acknowledged write {n} after SIGKILL"))?;
        acked_numbers.insert(*n);
    }
    // The rest: present at most once, and the log takes the missing ones now.
    for (n, submission) in submissions.iter().enumerate() {
        if acked_numbers.contains(&n) {
            continue;
        }
        let reply = log.http.post_entry(submission.request_json_text()).await?;
        match reply.status {
            201 => {
                let entry = rekor_testkit::LogEntry::from_protojson(&reply.json()?)?;
                verify_entry(&log.trust, submission, &entry)?;
            }
            409 => {
                reply.expect_api_error(409, tonic::Code::AlreadyExists)?;
            }
            other => anyhow::bail!(
                "unacknowledged write {n} resubmitted: HTTP {other}: {}",
                reply.text()
            ),
        }
    }
    let report = audit(&log.http, &log.trust).await?;
    ensure!(
        report.checkpoint.size == WRITES as u64,
        "{} entries after resubmitting all {WRITES}",
        report.checkpoint.size
    );
    for (n, entry) in &acked {
        let index = usize::try_from(entry.log_index)?;
        ensure!(
            report.entries[index] == entry.canonicalized_body,
            "acknowledged write {n} moved"
        );
    }
    log.stop().await?;
    Ok(())
}
