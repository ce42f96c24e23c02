//! `--duplicate-returns-entry` on a running POSIX log: a resubmitted entry is answered over HTTP
//! (201) and gRPC (OK) like a fresh one, with the original index, the same body and an inclusion
//! proof into the current checkpoint, plus `x-log-index` — live, as the log grows, and after a
//! restart (the persistent dedup index). Each answer is checked by the testkit's own verifier
//! (its Merkle code and a third-party one, not the server's). Without the flag a resubmission
//! still gets 409 / AlreadyExists with `x-log-index`.

use anyhow::{Context as _, ensure};
use rekor_testkit::fixtures::artifact;
use rekor_testkit::{
    ClientKey, KeyKind, LogEntry, ServerConfig, Submission, TestLog, verify_checkpoint,
    verify_entry,
};

/// Resubmits `submission` over both transports and checks each answer is `first` again (index
/// and body), verified, marked with `x-log-index`, and proven into the log's current checkpoint.
async fn expect_entry_again(
    log: &TestLog,
    submission: &Submission,
    first: &LogEntry,
) -> anyhow::Result<()> {
    let index = first.log_index.to_string();
    let current = verify_checkpoint(&log.trust, &log.http.checkpoint().await?)?;

    let reply = log
        .http
        .post_entry(submission.request_json_text())
        .await?
        .expect_status(201)?;
    reply.expect_header("content-type", "application/json")?;
    reply.expect_header("x-log-index", &index)?;
    let http = LogEntry::from_protojson(&reply.json()?)?;

    let response = log
        .grpc
        .create_entry(submission.request_proto()?)
        .await
        .context("gRPC resubmission")?;
    let metadata = response
        .metadata()
        .get("x-log-index")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    ensure!(
        metadata.as_deref() == Some(index.as_str()),
        "gRPC x-log-index {metadata:?}, not {index}"
    );
    let grpc = LogEntry::from_proto(response.into_inner())?;

    for (transport, again) in [("HTTP", http), ("gRPC", grpc)] {
        let verified = verify_entry(&log.trust, submission, &again)
            .with_context(|| format!("{transport} answer"))?;
        ensure!(
            again.log_index == first.log_index,
            "{transport}: index {} for the entry at {}",
            again.log_index,
            first.log_index
        );
        ensure!(
            again.canonicalized_body == first.canonicalized_body,
            "{transport}: another body"
        );
        ensure!(
            verified.checkpoint.size == current.size && verified.checkpoint.note == current.note,
            "{transport}: proof into tree {}, the log's checkpoint is at {}",
            verified.checkpoint.size,
            current.size
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmissions_get_the_existing_entry_live_and_after_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = ServerConfig::new(
        env!("CARGO_BIN_EXE_rekor-server-posix"),
        dir.path().join("log"),
    )
    .with_args(["--duplicate-returns-entry"]);
    let key = ClientKey::generate(KeyKind::EcdsaP256)?;
    let submissions = (0..5)
        .map(|n| key.hashed_rekord(&artifact("duplicate returns entry", n)?))
        .collect::<Result<Vec<_>, _>>()?;

    let log = TestLog::start(&config).await?;
    let first = log.http.create_entry(&submissions[0]).await?;
    verify_entry(&log.trust, &submissions[0], &first)?;
    expect_entry_again(&log, &submissions[0], &first)
        .await
        .context("right after the first submission")?;
    // The log grows: the answer is proven into the newer checkpoint.
    let mut entries = vec![first];
    for submission in &submissions[1..4] {
        let entry = log.grpc.create_entry_for(submission).await?;
        verify_entry(&log.trust, submission, &entry)?;
        entries.push(entry);
    }
    for (submission, entry) in submissions.iter().zip(&entries) {
        expect_entry_again(&log, submission, entry)
            .await
            .with_context(|| format!("entry {} in a grown log", entry.log_index))?;
    }
    log.stop().await.context("graceful stop")?;

    // After a restart the in-memory dedup cache is empty: the persistent index answers.
    let log = TestLog::start(&config).await?;
    for (submission, entry) in submissions.iter().zip(&entries) {
        expect_entry_again(&log, submission, entry)
            .await
            .with_context(|| format!("entry {} after a restart", entry.log_index))?;
    }
    let fresh = log.http.create_entry(&submissions[4]).await?;
    ensure!(
        fresh.log_index == 4,
        "the log continued at {}, not 4",
        fresh.log_index
    );
    let errors = log.server.logged_errors();
    ensure!(
        errors.is_empty(),
        "server logged errors:\n{}",
        errors.join("\n")
    );
    log.stop().await?;

    // Without the flag the same log answers as Rekor v2 does: 409 / AlreadyExists + x-log-index.
    let config = ServerConfig::new(
        env!("CARGO_BIN_EXE_rekor-server-posix"),
        dir.path().join("log"),
    );
    let log = TestLog::start(&config).await?;
    log.expect_duplicate_http(&submissions[2], 2).await?;
    log.expect_duplicate_grpc(&submissions[2], 2).await?;
    log.stop().await?;
    Ok(())
}
