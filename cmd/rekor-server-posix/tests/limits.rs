//! Resource limits and hostile clients: a body trickled byte by byte, a client that stalls after
//! its headers, oversized headers and metadata, hundreds of idle connections, and pushback
//! under a burst. In every case the server keeps serving other clients, answers with a clean
//! status (never 500), and exits 0 on SIGTERM at the end (so it never crashed).
//!
//! The tests share two cores, and (a) and (d) measure latency, so they run one at a time.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use rekor_testkit::client::{ENTRIES_PATH, parse_raw_response};
use rekor_testkit::fixtures::{artifact, with_unknown_field};
use rekor_testkit::{
    ClientKey, KeyKind, LogEntry, ServerConfig, Submission, TestLog, audit, verify_entry,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

fn submissions(label: &str, count: usize) -> anyhow::Result<Vec<Submission>> {
    let key = ClientKey::generate(KeyKind::EcdsaP256)?;
    Ok((0..count)
        .map(|n| key.hashed_rekord(&artifact(label, n)?))
        .collect::<Result<Vec<_>, _>>()?)
}

/// One verified write over HTTP (even `n`) or gRPC (odd `n`); returns how long it took.
async fn write(log: &TestLog, submission: &Submission, n: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let entry = if n.is_multiple_of(2) {
        log.http.create_entry(submission).await?
    } else {
        log.grpc.create_entry_for(submission).await?
    };
    let took = started.elapsed();
    verify_entry(&log.trust, submission, &entry)?;
    Ok(took)
}

fn post_head(address: std::net::SocketAddr, length: usize) -> String {
    format!(
        "POST {ENTRIES_PATH} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\nConnection: close\r\n\r\n"
    )
}

/// Reads until EOF, a reset, or `limit`; returns the bytes, whether the connection ended, and
/// when.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool, Duration) {
    let started = Instant::now();
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return (data, false, started.elapsed()),
            Ok(Ok(0) | Err(_)) => return (data, true, started.elapsed()),
            Ok(Ok(n)) => data.extend_from_slice(&buf[..n]),
        }
    }
}

/// (a) A body trickled one byte at a time over about 2 s delays nobody else, and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_does_not_delay_other_writers() -> anyhow::Result<()> {
    const TRICKLE: Duration = Duration::from_secs(2);
    let _serial = SERIAL.lock().await;
    let (_dir, log) = start(&[]).await?;
    let all = submissions("trickle", 7)?;
    let (slow, fast) = all.split_first().context("no submissions")?;
    let body = slow.request_json_text().into_bytes();
    let address = log.http.address();
    let per_byte = TRICKLE / u32::try_from(body.len())?;

    let trickle = tokio::spawn(async move {
        let started = Instant::now();
        let mut stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        stream
            .write_all(post_head(address, body.len()).as_bytes())
            .await?;
        for byte in &body {
            stream.write_all(std::slice::from_ref(byte)).await?;
            tokio::time::sleep(per_byte).await;
        }
        let sent = started.elapsed();
        let (response, closed, _) = read_until_closed(&mut stream, Duration::from_secs(30)).await;
        Ok::<_, anyhow::Error>((response, closed, sent, started.elapsed()))
    });

    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut latencies = Vec::new();
    for (n, submission) in fast.iter().enumerate() {
        latencies.push(
            write(&log, submission, n)
                .await
                .with_context(|| format!("fast write {n}"))?,
        );
    }
    let still_trickling = !trickle.is_finished();
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    println!("fast writes during the trickle: {latencies:?}");
    ensure!(
        still_trickling,
        "the trickle finished before the {} fast writes (slowest {slowest:?})",
        fast.len()
    );
    ensure!(
        slowest < Duration::from_millis(1_000),
        "a fast write took {slowest:?} while a slow client was trickling"
    );

    let (response, closed, sent, total) = trickle.await??;
    println!("trickle: body sent in {sent:?}, answered after {total:?}");
    ensure!(closed, "the trickled request was not answered within 30 s");
    if response.is_empty() {
        println!("trickled request: connection closed without an answer");
    } else {
        let reply = parse_raw_response("trickled POST", &response)?;
        match reply.status {
            201 => {
                let entry = LogEntry::from_protojson(&reply.json()?)?;
                verify_entry(&log.trust, slow, &entry).context("trickled entry")?;
            }
            408 | 503 => println!("trickled request timed out: {}", reply.status),
            other => bail!("trickled request: HTTP {other}: {}", reply.text()),
        }
    }
    log.stop().await?;
    Ok(())
}

/// (b) With `--server-timeout 1s`, a request whose body never comes is answered or closed within
/// a few seconds, and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_cut_off_by_the_server_timeout() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let (_dir, log) = start(&["--server-timeout", "1s"]).await?;
    let address = log.http.address();
    let mut stream = TcpStream::connect(address).await?;
    stream.write_all(post_head(address, 700).as_bytes()).await?;
    stream.write_all(b"{\"hashedRekord").await?;
    let (response, closed, after) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    println!(
        "stalled body: closed={closed} after {after:?}: {:?}",
        String::from_utf8_lossy(&response).lines().next()
    );
    ensure!(
        closed || !response.is_empty(),
        "no answer and no close 5 s after stalling (timeout 1s)"
    );
    if !response.is_empty() {
        let reply = parse_raw_response("stalled POST", &response)?;
        ensure!(
            matches!(reply.status, 400 | 408 | 503),
            "stalled body answered HTTP {}: {}",
            reply.status,
            reply.text()
        );
    }
    let submission = submissions("after stall", 1)?;
    write(&log, &submission[0], 0)
        .await
        .context("write after the stall")?;
    log.stop().await?;
    Ok(())
}

/// (b') A client that stops in the middle of its headers (slowloris) is disconnected within
/// a bounded time. Hyper only enforces its header read timeout (default 30 s) when a timer is
/// configured, and `axum::serve` configures none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_headers_are_cut_off() -> anyhow::Result<()> {
    const LIMIT: Duration = Duration::from_secs(35);
    let _serial = SERIAL.lock().await;
    let (_dir, log) = start(&["--server-timeout", "1s"]).await?;
    let address = log.http.address();
    let mut stream = TcpStream::connect(address).await?;
    stream
        .write_all(format!("POST {ENTRIES_PATH} HTTP/1.1\r\nHost: {address}\r\n").as_bytes())
        .await?;
    let (_, closed, after) = read_until_closed(&mut stream, LIMIT).await;
    println!("stalled headers: closed={closed} after {after:?}");
    ensure!(
        closed,
        "a connection stalled inside its headers is still open after {LIMIT:?}"
    );
    log.stop().await?;
    Ok(())
}

/// Sends `head` (which may be huge) and reads the answer; a reset or close is fine.
async fn send_oversized(address: std::net::SocketAddr, head: &[u8]) -> anyhow::Result<Option<u16>> {
    let mut stream = TcpStream::connect(address).await?;
    // The server may answer and close before reading it all: a write error is expected then.
    let _ = stream.write_all(head).await;
    let (response, closed, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    ensure!(
        closed || !response.is_empty(),
        "no answer to oversized headers in 10 s"
    );
    if response.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        parse_raw_response("oversized request", &response)?.status,
    ))
}

/// (c) A 1 MiB header value, and 20,000 headers, get a 4xx or a closed connection; 1 MiB of
/// gRPC metadata is refused; the server keeps serving and exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_without_a_crash() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let (_dir, log) = start(&[]).await?;
    let address = log.http.address();
    let all = submissions("big headers", 3)?;
    let body = all[0].request_json_text();
    let big = "a".repeat(1 << 20);

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "GET with a 1 MiB header",
            format!("GET /api/v2/checkpoint HTTP/1.1\r\nHost: {address}\r\nX-Big: {big}\r\n\r\n")
                .into_bytes(),
        ),
        ("POST with a 1 MiB header", {
            let mut head = format!(
                "POST {ENTRIES_PATH} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nX-Big: {big}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            head.extend_from_slice(body.as_bytes());
            head
        }),
        ("GET with 20,000 headers", {
            let mut head = format!("GET /api/v2/checkpoint HTTP/1.1\r\nHost: {address}\r\n");
            for i in 0..20_000 {
                head.push_str(&format!("X-H{i}: v\r\n"));
            }
            head.push_str("\r\n");
            head.into_bytes()
        }),
        (
            "GET with a 1 MiB path",
            format!("GET /api/v2/tile/{big} HTTP/1.1\r\nHost: {address}\r\n\r\n").into_bytes(),
        ),
    ];
    for (what, head) in &cases {
        let status = send_oversized(address, head).await.context(*what)?;
        println!("{what}: {status:?}");
        if let Some(status) = status {
            ensure!(
                (400..500).contains(&status),
                "{what}: HTTP {status}, want 4xx"
            );
        }
    }

    let mut request = tonic::Request::new(all[1].request_proto()?);
    request
        .metadata_mut()
        .insert("x-big", big.parse().context("metadata value")?);
    let grpc = log.grpc.rekor().create_entry(request).await;
    println!(
        "gRPC with 1 MiB metadata: {:?}",
        grpc.as_ref().map(|_| ()).map_err(tonic::Status::code)
    );
    ensure!(
        !matches!(&grpc, Err(s) if s.code() == tonic::Code::Internal && s.message().contains("panic")),
        "gRPC with 1 MiB metadata: {grpc:?}"
    );

    // Still serving, over both transports (a fresh gRPC connection in case that one was closed).
    write(&log, &all[2], 0)
        .await
        .context("HTTP write afterwards")?;
    let grpc = rekor_testkit::GrpcClient::connect(log.server.listeners().grpc).await?;
    let fourth = submissions("big headers after", 1)?;
    let entry = grpc
        .create_entry_for(&fourth[0])
        .await
        .context("gRPC write afterwards")?;
    verify_entry(&log.trust, &fourth[0], &entry)?;
    log.stop()
        .await
        .context("the server must still exit cleanly")?;
    Ok(())
}

/// (c') A `--max-request-body-size` above the 4 MiB default is the one limit on both transports:
/// a request of exactly the limit is logged (over HTTP padded with JSON whitespace, over gRPC
/// with an unknown field, so only the size differs), one byte more is refused, naming the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_limit_above_4_mib_is_applied_exactly_on_both_transports() -> anyhow::Result<()> {
    const LIMIT: usize = 6 * 1024 * 1024;
    let _serial = SERIAL.lock().await;
    ensure!(LIMIT > rekor_api::MAX_MESSAGE_BYTES);
    let (_dir, log) = start(&["--max-request-body-size", &LIMIT.to_string()]).await?;
    let all = submissions("large body", 4)?;

    let json_of_size = |submission: &Submission, size: usize| -> anyhow::Result<String> {
        let text = submission.request_json_text();
        let padding = size.checked_sub(text.len()).context("request too long")?;
        Ok(format!("{text}{}", " ".repeat(padding)))
    };
    let at_limit = json_of_size(&all[0], LIMIT)?;
    let reply = log.http.post_entry(at_limit).await?.expect_status(201)?;
    verify_entry(
        &log.trust,
        &all[0],
        &LogEntry::from_protojson(&reply.json()?)?,
    )
    .context("HTTP body of exactly the limit")?;
    let reply = log
        .http
        .post_entry(json_of_size(&all[1], LIMIT + 1)?)
        .await?
        .expect_api_error(400, tonic::Code::InvalidArgument)?;
    let message = reply.json()?["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(
        message.contains(&LIMIT.to_string()),
        "HTTP refusal {message:?} does not name the limit"
    );

    // Field 15's tag is one byte and a length under 2^28 is a four-byte varint.
    let proto_of_size = |submission: &Submission, size: usize| -> anyhow::Result<Vec<u8>> {
        let message = prost::Message::encode_to_vec(&submission.request_proto()?);
        let padding = size
            .checked_sub(message.len() + 1 + 4)
            .context("request too long")?;
        let padded = with_unknown_field(message, padding);
        ensure!(padded.len() == size, "padded to {} bytes", padded.len());
        Ok(padded)
    };
    let answer = log
        .grpc
        .create_entry_raw(proto_of_size(&all[2], LIMIT)?)
        .await
        .context("gRPC message of exactly the limit")?;
    let entry = <rekor_api::rekor::v1::TransparencyLogEntry as prost::Message>::decode(&*answer)?;
    verify_entry(&log.trust, &all[2], &LogEntry::from_proto(entry)?)?;
    // tonic refuses an over-limit message before decoding it, with OUT_OF_RANGE.
    let refused = log
        .grpc
        .create_entry_raw(proto_of_size(&all[3], LIMIT + 1)?)
        .await;
    match refused {
        Err(status) if status.code() == tonic::Code::OutOfRange => {
            ensure!(
                status.message().contains(&LIMIT.to_string()),
                "gRPC refusal {:?} does not name the limit",
                status.message()
            );
        }
        other => bail!("gRPC message one byte over the limit: {other:?}"),
    }

    let report = audit(&log.http, &log.trust).await?;
    ensure!(
        report.entries.len() == 2,
        "{} entries logged, expected the two at the limit",
        report.entries.len()
    );
    log.stop().await?;
    Ok(())
}

/// (d) 500 idle HTTP connections and 100 idle gRPC connections do not stop normal writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_block_writes() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let (_dir, log) = start(&[]).await?;
    let listeners = log.server.listeners();
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(TcpStream::connect(listeners.http).await?);
    }
    for _ in 0..100 {
        idle.push(TcpStream::connect(listeners.grpc).await?);
    }
    let all = submissions("idle", 4)?;
    let mut latencies = Vec::new();
    for (n, submission) in all.iter().enumerate() {
        latencies.push(
            tokio::time::timeout(Duration::from_secs(10), write(&log, submission, n))
                .await
                .with_context(|| {
                    format!("write {n} with 600 idle connections: no answer in 10 s")
                })??,
        );
    }
    println!("writes with 600 idle connections open: {latencies:?}");
    // The idle connections are still there (not a precondition the server closed them all).
    let mut open = [0, 0];
    for (i, stream) in idle.iter().enumerate() {
        let mut byte = [0u8; 1];
        if matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        {
            open[usize::from(i >= 500)] += 1;
        }
    }
    println!(
        "still open: {} of 500 idle HTTP, {} of 100 idle gRPC connections",
        open[0], open[1]
    );
    drop(idle);
    log.stop().await?;
    Ok(())
}

/// (e) With at most 2 requests outstanding and one entry per batch, a burst of 50 gets some
/// 503 / Unavailable, never a 500, and every 201 verifies; the refused ones go in on retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushback_refuses_cleanly_under_a_burst() -> anyhow::Result<()> {
    const BURST: usize = 50;
    let _serial = SERIAL.lock().await;
    let (_dir, log) = start(&["--pushback-max-outstanding", "2", "--batch-max-size", "1"]).await?;
    let all = submissions("burst", BURST)?;
    // Open the HTTP connections first, so the burst is not serialised by connection setup.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(BURST));
    let mut tasks = tokio::task::JoinSet::new();
    for (n, submission) in all.iter().cloned().enumerate() {
        let (http, grpc, barrier) = (log.http.clone(), log.grpc.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            let outcome: anyhow::Result<Option<LogEntry>> = if n.is_multiple_of(2) {
                async {
                    let reply = http.post_entry(submission.request_json_text()).await?;
                    match reply.status {
                        201 => Ok(Some(LogEntry::from_protojson(&reply.json()?)?)),
                        503 => {
                            reply.expect_api_error(503, tonic::Code::Unavailable)?;
                            Ok(None)
                        }
                        other => Err(anyhow::anyhow!("HTTP {other}: {}", reply.text())),
                    }
                }
                .await
            } else {
                match grpc.create_entry_for(&submission).await {
                    Ok(entry) => Ok(Some(entry)),
                    Err(rekor_testkit::Error::Grpc(status))
                        if status.code() == tonic::Code::Unavailable =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(anyhow::anyhow!("gRPC: {e}")),
                }
            };
            (n, outcome)
        });
    }
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (n, outcome) = joined?;
        match outcome {
            Ok(Some(entry)) => accepted.push((n, entry)),
            Ok(None) => refused.push(n),
            Err(e) => failures.push(format!("write {n}: {e:#}")),
        }
    }
    println!(
        "burst of {BURST}: {} accepted, {} pushed back",
        accepted.len(),
        refused.len()
    );
    ensure!(
        failures.is_empty(),
        "unexpected answers:\n{}",
        failures.join("\n")
    );
    for (n, entry) in &accepted {
        verify_entry(&log.trust, &all[*n], entry).with_context(|| format!("accepted write {n}"))?;
    }
    ensure!(
        !refused.is_empty(),
        "no request of a burst of {BURST} was pushed back (limit 2)"
    );
    ensure!(
        !accepted.is_empty(),
        "every request of the burst was pushed back"
    );
    for n in &refused {
        write(&log, &all[*n], *n)
            .await
            .with_context(|| format!("retrying write {n}"))?;
    }
    let report = audit(&log.http, &log.trust).await?;
    ensure!(
        report.checkpoint.size == BURST as u64,
        "size {} after retries",
        report.checkpoint.size
    );
    log.stop().await?;
    Ok(())
}
