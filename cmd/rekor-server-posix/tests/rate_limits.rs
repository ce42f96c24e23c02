//! Per-client rate limits (`--rate-limit-per-ip`, `--rate-limit-burst`, `--rate-limit-allow`,
//! `--trusted-proxies`) on a real server: a client gets its burst, then HTTP 429 with
//! `Retry-After` and gRPC RESOURCE_EXHAUSTED, one bucket across both transports; it writes again
//! once the wait it was told has passed; refused writes leave no entry; `X-Forwarded-For` picks
//! the client only when a trusted proxy sends it; allow-listed clients are never limited.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use rekor_testkit::fixtures::artifact;
use rekor_testkit::{
    ClientKey, KeyKind, LogEntry, Reply, ServerConfig, Submission, TestLog, audit, verify_entry,
};
use tonic::Code;

async fn start(args: &[&str]) -> anyhow::Result<(tempfile::TempDir, TestLog)> {
    let dir = tempfile::tempdir()?;
    let config = ServerConfig::new(
        env!("CARGO_BIN_EXE_rekor-server-posix"),
        dir.path().join("log"),
    )
    .with_args(args.iter().copied());
    let log = TestLog::start(&config).await?;
    Ok((dir, log))
}

/// Distinct requests, made as the test needs them.
struct Requests {
    key: ClientKey,
    made: usize,
}

impl Requests {
    fn new() -> anyhow::Result<Self> {
        Ok(Requests {
            key: ClientKey::generate(KeyKind::EcdsaP256)?,
            made: 0,
        })
    }

    fn next(&mut self) -> anyhow::Result<Submission> {
        self.made += 1;
        Ok(self
            .key
            .hashed_rekord(&artifact("rate limits", self.made)?)?)
    }
}

/// Checks a 201 answer and returns its entry.
fn logged(log: &TestLog, submission: &Submission, reply: Reply) -> anyhow::Result<LogEntry> {
    let reply = reply.expect_status(201)?;
    let entry = LogEntry::from_protojson(&reply.json()?)?;
    verify_entry(&log.trust, submission, &entry)?;
    Ok(entry)
}

/// Checks a 429 answer and returns its `Retry-After` in seconds.
fn limited(reply: Reply) -> anyhow::Result<u64> {
    let reply = reply.expect_api_error(429, Code::ResourceExhausted)?;
    let retry_after: u64 = reply
        .header("retry-after")
        .context("429 without Retry-After")?
        .parse()
        .context("Retry-After is not whole seconds")?;
    ensure!(retry_after >= 1, "Retry-After: {retry_after}");
    Ok(retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gets_its_burst_then_429_and_resource_exhausted_then_writes_again()
-> anyhow::Result<()> {
    // 2 entries/s: the wait for one token is 0.5 s, which Retry-After rounds up to 1 s.
    let (_dir, log) = start(&["--rate-limit-per-ip", "2", "--rate-limit-burst", "3"]).await?;
    let mut requests = Requests::new()?;
    for _ in 0..2 {
        let submission = requests.next()?;
        logged(
            &log,
            &submission,
            log.http.post_entry(submission.request_json_text()).await?,
        )?;
    }
    // The third token, over gRPC: one bucket for the client on both transports.
    let submission = requests.next()?;
    verify_entry(
        &log.trust,
        &submission,
        &log.grpc.create_entry_for(&submission).await?,
    )?;

    let retry_after = limited(
        log.http
            .post_entry(requests.next()?.request_json_text())
            .await?,
    )?;
    ensure!(
        retry_after == 1,
        "Retry-After {retry_after} for a 0.5 s wait"
    );
    let refused = log
        .grpc
        .create_entry(requests.next()?.request_proto()?)
        .await
        .err()
        .context("gRPC write over the limit was accepted")?;
    ensure!(
        refused.code() == Code::ResourceExhausted,
        "gRPC over the limit: {refused:?}"
    );
    ensure!(
        refused.metadata().get("retry-after").is_some(),
        "RESOURCE_EXHAUSTED without retry-after metadata"
    );
    // Reads are never limited.
    log.http
        .checkpoint()
        .await
        .context("a read while limited")?;

    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let submission = requests.next()?;
    logged(
        &log,
        &submission,
        log.http.post_entry(submission.request_json_text()).await?,
    )
    .context("a write after the Retry-After wait")?;

    let report = audit(&log.http, &log.trust).await?;
    ensure!(
        report.entries.len() == 4,
        "{} entries: refused writes must leave none",
        report.entries.len()
    );
    let metrics = log.metrics_text().await?;
    ensure!(
        metrics.contains("rekor_v2_rate_limited_requests_total 2"),
        "rate-limited writes not counted:\n{metrics}"
    );
    log.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_counts_only_from_trusted_proxies_and_the_allow_list_is_never_limited()
-> anyhow::Result<()> {
    let slow = ["--rate-limit-per-ip", "0.001", "--rate-limit-burst", "1"];
    let behind_proxy = [
        &slow[..],
        &[
            "--trusted-proxies",
            "127.0.0.1",
            "--rate-limit-allow",
            "192.0.2.100",
        ],
    ]
    .concat();
    let (_dir_a, direct) = start(&slow).await?;
    let (_dir_b, proxied) = start(&behind_proxy).await?;
    let mut requests = Requests::new()?;
    let xff = "x-forwarded-for";

    // Direct clients cannot pick another bucket by sending the header.
    let submission = requests.next()?;
    logged(
        &direct,
        &submission,
        direct
            .http
            .post_entry_with_header(submission.request_json_text(), xff, "198.51.100.1")
            .await?,
    )?;
    limited(
        direct
            .http
            .post_entry_with_header(requests.next()?.request_json_text(), xff, "198.51.100.2")
            .await?,
    )
    .context("a direct client changing its X-Forwarded-For")?;

    // Behind the trusted proxy (the test, on 127.0.0.1), each forwarded address is a client.
    for client in ["192.0.2.1", "192.0.2.2", "2001:db8::1"] {
        let submission = requests.next()?;
        logged(
            &proxied,
            &submission,
            proxied
                .http
                .post_entry_with_header(submission.request_json_text(), xff, client)
                .await?,
        )
        .with_context(|| format!("first write for {client}"))?;
    }
    limited(
        proxied
            .http
            .post_entry_with_header(requests.next()?.request_json_text(), xff, "192.0.2.1")
            .await?,
    )
    .context("second write forwarded for 192.0.2.1")?;
    // Another address in the same IPv6 /64 is the same client.
    limited(
        proxied
            .http
            .post_entry_with_header(requests.next()?.request_json_text(), xff, "2001:db8::2")
            .await?,
    )
    .context("a second address in 2001:db8::/64")?;
    // In a chain, the rightmost address that is not a trusted proxy is the client.
    limited(
        proxied
            .http
            .post_entry_with_header(
                requests.next()?.request_json_text(),
                xff,
                "203.0.113.9, 192.0.2.1",
            )
            .await?,
    )
    .context("a chain ending in 192.0.2.1")?;
    // gRPC through the proxy: the metadata carries the header.
    let mut request = tonic::Request::new(requests.next()?.request_proto()?);
    request.metadata_mut().insert(xff, "192.0.2.2".parse()?);
    let refused = proxied.grpc.rekor().create_entry(request).await.err();
    ensure!(
        refused.as_ref().map(tonic::Status::code) == Some(Code::ResourceExhausted),
        "gRPC forwarded for 192.0.2.2: {refused:?}"
    );

    // Allow-listed: never limited.
    for _ in 0..4 {
        let submission = requests.next()?;
        logged(
            &proxied,
            &submission,
            proxied
                .http
                .post_entry_with_header(submission.request_json_text(), xff, "192.0.2.100")
                .await?,
        )
        .context("an allow-listed client")?;
    }
    ensure!(audit(&direct.http, &direct.trust).await?.entries.len() == 1);
    ensure!(audit(&proxied.http, &proxied.trust).await?.entries.len() == 7);
    direct.stop().await?;
    proxied.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rate_limit_flags_are_refused_at_start() -> anyhow::Result<()> {
    for args in [
        &["--rate-limit-allow", "10.1.2.3/8"][..],
        &["--trusted-proxies", "not-an-address"],
        &["--rate-limit-per-ip", "-1"],
        &["--rate-limit-per-ip", "5", "--rate-limit-burst", "0"],
    ] {
        let started = start(args).await;
        ensure!(started.is_err(), "the server started with {args:?}");
    }
    Ok(())
}
