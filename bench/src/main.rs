//! `rekor-bench`: a load generator for the Rekor v2 write API (`POST /api/v2/log/entries` and gRPC
//! `dev.sigstore.rekor.v2.Rekor/CreateEntry`).
//!
//! It signs every request before timing starts (hashedrekord v0.0.2; ECDSA P-256 by default,
//! optionally mixed with Ed25519ph and RSA-2048), sends them at a fixed concurrency (closed loop)
//! or at a fixed rate (open loop, latency counted from each request's scheduled start), records an
//! HDR latency histogram, and afterwards verifies a sample of the responses as a client would
//! (checkpoint signature, inclusion proof, canonical body). The last line it prints is
//! machine-readable:
//!
//! ```text
//! RESULT transport=http mode=closed ... entries_per_s=5123.4 p50_ms=11.20 p90_ms=... p99_ms=... max_ms=...
//! ```
//!
//! It exits non-zero on any failed request, failed verification or missing duplicate answer
//! (unless `--allow-failures`), so `make bench-smoke` can use it as a check. See `bench/run.sh`.

mod error;
mod http1;
mod load;
mod requests;
mod transport;
mod verify;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Parser;

use crate::load::{Drive, Tally};
use crate::requests::{Mix, RequestFactory};
use crate::transport::{Client, Reply, Target};
use crate::verify::ResponseVerifier;

/// Drive a Rekor v2 log with pre-signed hashedrekord requests and report throughput and latency.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// HTTP base URL of the log (e.g. http://127.0.0.1:3000).
    #[arg(long, conflicts_with = "grpc", required_unless_present = "grpc")]
    http: Option<String>,
    /// gRPC URL of the log (e.g. http://127.0.0.1:3001).
    #[arg(long)]
    grpc: Option<String>,

    /// Number of requests to send (all distinct entries).
    #[arg(long, default_value_t = 20_000)]
    requests: u64,
    /// Closed loop: workers each with one request in flight. With --rate: the most in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Open loop: start requests at this many per second instead of as fast as answers come.
    #[arg(long)]
    rate: Option<f64>,
    /// Stop starting requests after this many seconds, even if --requests are not all sent.
    #[arg(long)]
    duration: Option<f64>,

    /// Client signing algorithms and weights, e.g. `p256` or `p256=8,ed25519ph=1,rsa2048=1`.
    #[arg(long, default_value = "p256")]
    mix: Mix,
    /// Distinct client keys per algorithm.
    #[arg(long, default_value_t = 4)]
    keys: usize,
    /// Pre-sign at most this many requests at a time (for runs too large to hold in memory);
    /// signing pauses the timed phase and is not counted in it.
    #[arg(long)]
    chunk: Option<u64>,
    /// Threads that sign requests before timing.
    #[arg(long, default_value_t = 2)]
    sign_threads: usize,
    /// Tokio worker threads for sending (the server shares the machine, so keep it small).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// gRPC: number of HTTP/2 connections.
    #[arg(long, default_value_t = 4)]
    grpc_connections: usize,
    /// Per-request time limit in seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,

    /// Verify every n-th response, and the read API's checkpoint, after the run (0: nothing is
    /// verified). Needs the log's public key.
    #[arg(long, default_value_t = 100)]
    verify_every: u64,
    /// The log's hostname: its checkpoint origin and note key name.
    #[arg(long, default_value = "localhost")]
    hostname: String,
    /// The log's public key, base64 DER SPKI (as `rekor-server-posix info` prints it).
    #[arg(long, conflicts_with = "log_public_key_file")]
    log_public_key: Option<String>,
    /// The log's public key as a DER or PEM file.
    #[arg(long)]
    log_public_key_file: Option<PathBuf>,
    /// After the run, send the first N requests again and require 409 / AlreadyExists for each.
    #[arg(long, default_value_t = 0)]
    resend: u64,
    /// Exit 0 even if some requests failed (verification failures still fail the run).
    #[arg(long)]
    allow_failures: bool,
}

fn public_key(args: &Args) -> anyhow::Result<Option<Vec<u8>>> {
    if let Some(text) = &args.log_public_key {
        return Ok(Some(
            STANDARD
                .decode(text.trim())
                .context("--log-public-key is not base64")?,
        ));
    }
    let Some(path) = &args.log_public_key_file else {
        return Ok(None);
    };
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.starts_with(b"-----BEGIN") {
        let text = String::from_utf8_lossy(&bytes);
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::trim)
            .collect();
        return Ok(Some(
            STANDARD.decode(body).context("PEM body is not base64")?,
        ));
    }
    Ok(Some(bytes))
}

fn out(line: &str) {
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) is not worth failing the run over.
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

fn ms(tally: &Tally, quantile: f64) -> f64 {
    tally.latency_us.value_at_quantile(quantile) as f64 / 1000.0
}

/// The generator's own CPU time per answered request over the timed phase, in µs: what it takes
/// from the cores the server shares.
fn client_cpu_us(tally: &Tally, answered: u64) -> f64 {
    if answered == 0 {
        return 0.0;
    }
    tally.cpu.as_secs_f64() * 1e6 / answered as f64
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            out(&format!("rekor-bench: error: {e:#}"));
            ExitCode::from(2)
        }
    }
}

/// Runs the benchmark; `Ok(false)` means it ran but something failed.
fn real_main() -> anyhow::Result<bool> {
    let args = Args::parse();
    let target = match (&args.http, &args.grpc) {
        (Some(url), _) => Target::Http(url.clone()),
        (None, Some(url)) => Target::Grpc(url.clone()),
        (None, None) => anyhow::bail!("give --http or --grpc"),
    };
    let verifier = match public_key(&args)? {
        // Nothing is verified at all with `--verify-every 0`, not even the read API's checkpoint,
        // so the generator can drive a server that is not a log (rekor-bench-ceiling).
        Some(_) if args.verify_every == 0 => None,
        Some(der) => Some(ResponseVerifier::new(&args.hostname, &der)?),
        None if args.verify_every > 0 => {
            anyhow::bail!("--verify-every needs --log-public-key or --log-public-key-file")
        }
        None => None,
    };
    if args.requests == 0 {
        anyhow::bail!("--requests must be at least 1");
    }
    // One thread (the default) runs everything on this thread: no hand-offs between threads,
    // which would cost CPU the server is measured on.
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .context("starting the Tokio runtime")?;
    runtime.block_on(run(args, target, verifier))
}

async fn run(
    args: Args,
    target: Target,
    verifier: Option<ResponseVerifier>,
) -> anyhow::Result<bool> {
    let (transport, url) = match &target {
        Target::Http(url) => ("http", url.clone()),
        Target::Grpc(url) => ("grpc", url.clone()),
    };
    let mode = if args.rate.is_some() {
        "open"
    } else {
        "closed"
    };
    out(&format!(
        "rekor-bench: {transport} {url} mode={mode} requests={} concurrency={} rate={} mix={} keys={}",
        args.requests,
        args.concurrency,
        args.rate.map_or("-".to_string(), |r| format!("{r:.0}")),
        args.mix,
        args.keys,
    ));

    let factory = RequestFactory::new(args.mix.clone(), args.keys, target.encoding())?;
    let connections = match target {
        // A closed loop keeps every worker's connection busy; an open loop below the server's
        // capacity has few requests in flight, and opens more connections if it needs them.
        Target::Http(_) if args.rate.is_none() => args.concurrency,
        Target::Http(_) => args.concurrency.min(256),
        Target::Grpc(_) => args.grpc_connections,
    };
    let timeout = Duration::try_from_secs_f64(args.timeout).context("--timeout")?;
    let client = Client::connect(&target, connections, timeout).await?;

    let chunk = args.chunk.unwrap_or(args.requests).clamp(1, args.requests);
    let mut total = Tally::new()?;
    let mut resend = Vec::new();
    let mut signing = Duration::ZERO;
    let mut deadline = None;
    let mut start = 0u64;
    let chunks = args.requests.div_ceil(chunk);
    while start < args.requests {
        let end = start.saturating_add(chunk).min(args.requests);
        let began = Instant::now();
        let batch = factory.make_range(start, end, args.sign_threads)?;
        signing += began.elapsed();
        if start == 0 {
            let n = usize::try_from(args.resend).unwrap_or(usize::MAX);
            resend = batch.iter().take(n).cloned().collect();
            out(&format!(
                "pre-signed {} requests in {:.2} s",
                batch.len(),
                began.elapsed().as_secs_f64()
            ));
            deadline = args
                .duration
                .map(|s| Duration::try_from_secs_f64(s).context("--duration"))
                .transpose()?
                .map(|d| Instant::now() + d);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let drive = Drive {
            concurrency: args.concurrency,
            rate: args.rate,
            deadline,
            sample_every: if verifier.is_some() {
                args.verify_every
            } else {
                0
            },
            first: start,
        };
        let tally = load::run(&client, Arc::new(batch), drive).await?;
        total.merge(tally);
        if chunks > 1 {
            out(&format!(
                "  {end}/{} sent: {:.1} entries/s so far, {} failures, signing {:.1} s",
                args.requests,
                total.rate(total.created),
                total.failures,
                signing.as_secs_f64()
            ));
        }
        start = end;
    }

    let mut ok = true;
    let answered = total.created + total.duplicates + total.failures;
    out(&format!(
        "sent {answered} in {:.2} s: {:.1} entries/s; this generator used {:.1} µs of CPU per request",
        total.elapsed.as_secs_f64(),
        total.rate(total.created),
        client_cpu_us(&total, answered)
    ));
    out(&format!(
        "latency ms: p50={:.2} p90={:.2} p99={:.2} max={:.2} mean={:.2}",
        ms(&total, 0.5),
        ms(&total, 0.9),
        ms(&total, 0.99),
        total.latency_us.max() as f64 / 1000.0,
        total.latency_us.mean() / 1000.0
    ));
    let statuses: Vec<String> = total
        .statuses
        .iter()
        .map(|(label, n)| format!("{label}: {n}"))
        .collect();
    out(&format!("status: {}", statuses.join(", ")));
    if let Some((label, detail)) = &total.first_failure {
        out(&format!("first failure: {label}: {detail}"));
    }
    if total.failures > 0 && !args.allow_failures {
        ok = false;
    }
    if total.duplicates > 0 {
        out("unexpected duplicates: every request was distinct");
        ok = false;
    }
    if total.created == 0 {
        out("no entry was logged");
        ok = false;
    }

    let mut verified = 0u64;
    let mut verify_failures = 0u64;
    let mut highest = None;
    if let Some(verifier) = &verifier {
        for (response, digest) in &total.samples {
            match verifier.entry(response, digest) {
                Ok(index) => {
                    verified += 1;
                    highest = highest.max(Some(index));
                }
                Err(e) => {
                    if verify_failures == 0 {
                        out(&format!("verification failed: {e}"));
                    }
                    verify_failures += 1;
                }
            }
        }
        match client.checkpoint().await {
            Ok(Some(note)) => match verifier.checkpoint(&note) {
                Ok(checkpoint) if highest.is_none_or(|h| h < checkpoint.size) => {
                    out(&format!(
                        "read API checkpoint verifies: size {}",
                        checkpoint.size
                    ));
                }
                Ok(checkpoint) => {
                    out(&format!(
                        "read API checkpoint size {} does not cover index {highest:?}",
                        checkpoint.size
                    ));
                    verify_failures += 1;
                }
                Err(e) => {
                    out(&format!("read API checkpoint: {e}"));
                    verify_failures += 1;
                }
            },
            Ok(None) => {}
            Err(e) => {
                out(&format!("read API checkpoint: {e}"));
                verify_failures += 1;
            }
        }
        out(&format!(
            "verified {verified} sampled responses (checkpoint signature, inclusion proof, body): {verify_failures} failures"
        ));
    }
    if verify_failures > 0 {
        ok = false;
    }

    let mut resend_wrong = 0u64;
    for (i, prepared) in resend.iter().enumerate() {
        match client.send(prepared, i).await {
            Reply::Duplicate => {}
            other => {
                if resend_wrong == 0 {
                    out(&format!(
                        "resent request {i} was not refused as a duplicate: {other:?}"
                    ));
                }
                resend_wrong += 1;
            }
        }
    }
    if !resend.is_empty() {
        out(&format!(
            "resent {} logged requests: {} refused as duplicates",
            resend.len(),
            resend.len() - usize::try_from(resend_wrong).unwrap_or(0)
        ));
        if resend_wrong > 0 {
            ok = false;
        }
    }

    out(&format!(
        "RESULT transport={transport} mode={mode} concurrency={} rate={} requests={} created={} failures={} elapsed_s={:.3} entries_per_s={:.1} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} client_cpu_us={:.1} verified={verified} verify_failures={verify_failures} leaf_bytes={} answer_bytes={} ok={ok}",
        args.concurrency,
        args.rate.map_or("-".to_string(), |r| format!("{r:.1}")),
        args.requests,
        total.created,
        total.failures,
        total.elapsed.as_secs_f64(),
        total.rate(total.created),
        ms(&total, 0.5),
        ms(&total, 0.9),
        ms(&total, 0.99),
        total.latency_us.max() as f64 / 1000.0,
        client_cpu_us(&total, answered),
        total.leaf_bytes,
        total.answer_bytes.checked_div(total.created).unwrap_or(0),
    ));
    Ok(ok)
}
