//! `rekor-bench-search`: the search benchmark of issue #20 (`make bench-search`).
//!
//! 1. Builds a log of `--entries` hashedrekord v0.0.2 entries in a POSIX storage directory, in
//!    this process, through the log pipeline and backend the server runs (no HTTP; see
//!    `build.rs` and, for the entries, `corpus.rs`).
//! 2. Builds its search index from zero with `rekor_search::Indexer::catch_up` on the
//!    directory's POSIX index: entries per second, and this process's CPU time.
//! 3. Measures the index on disk (`.rekor/search/`), per entry, open and closed, and builds
//!    the signed search-index commitment over it as the server does (time and CPU).
//! 4. Starts `rekor-server-posix serve --search-index` on the directory (127.0.0.1) and times
//!    `GET /api/v2/search`, closed loop on one connection, for digests of single entries, keys
//!    and identities with many entries (first page of 100), and absent digests; every answer
//!    is checked.
//!
//! The last line is `RESULT key=value ...`. Targets (issue #20, at 10M entries): lookup p99 at
//! most 5 ms, index at most 40 bytes per entry, index build at least 100,000 entries/s. They are
//! reported, not enforced; the exit status is 1 only for a wrong answer or a failed phase.

mod build;
mod corpus;
mod lookup;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use rekor_entries::search::SearchTerm;

use crate::build::{DirBytes, build_commitment, build_index, build_log, rate, search_dir, settled};
use crate::corpus::{Corpus, CorpusSpec, Distribution, mix64};
use crate::lookup::{Client, Query, Server, run_class, server_log, wait_for_commitment};
use crate::report::{Latency, ms, say};

// The server's allocator, so the in-process pipeline and indexer cost what they cost there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TARGET_P99_MS: f64 = 5.0;
const TARGET_BYTES_PER_ENTRY: f64 = 40.0;
const TARGET_INDEX_RATE: f64 = 100_000.0;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Search benchmark: log build, index build, index size, lookups"
)]
struct Args {
    /// The log directory: created and filled (it must not exist or be empty), unless
    /// --reuse-log finds a log built before with the same corpus flags.
    #[arg(long)]
    dir: PathBuf,
    /// Entries in the log.
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// Keep a log already in --dir if it was built with the same corpus flags and size; only
    /// the index is rebuilt.
    #[arg(long)]
    reuse_log: bool,
    /// Signers in the pool (ECDSA P-256 keys).
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Per cent of the signers that come as X.509 certificates with an e-mail SAN.
    #[arg(long, default_value_t = 30)]
    cert_percent: usize,
    /// Distinct e-mails among those certificates.
    #[arg(long, default_value_t = 100)]
    identities: usize,
    /// How entries pick their signer: uniform, zipf (exponent 1) or zipf:<exponent>.
    #[arg(long, default_value = "zipf:1")]
    distribution: Distribution,
    /// Seed of every choice in the corpus.
    #[arg(long, default_value_t = 20)]
    seed: u64,
    /// The log's name (its checkpoint origin and key name), as `serve --hostname`.
    #[arg(long, default_value = "bench.localhost")]
    hostname: String,
    /// Batch cap of the pipeline while building the log (`serve --batch-max-size`).
    #[arg(long, default_value_t = 4096)]
    batch_max_size: usize,
    /// Adds in flight while building the log.
    #[arg(long, default_value_t = 16_384)]
    window: usize,
    /// Give up building the log after this long.
    #[arg(long, default_value_t = 3600)]
    max_build_seconds: u64,
    /// Give up building the index after this long.
    #[arg(long, default_value_t = 3600)]
    max_index_seconds: u64,
    /// Prove every bundle against the checkpoint before indexing it, as the standalone
    /// indexer does (`Indexer::catch_up_verified`).
    #[arg(long)]
    verify_bundles: bool,
    /// The `rekor-server-posix` binary; without it the lookups are skipped.
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// The server's HTTP port on 127.0.0.1 (gRPC and metrics take the next two).
    #[arg(long, default_value_t = 13700)]
    port: u16,
    /// Timed queries per class.
    #[arg(long, default_value_t = 2000)]
    queries: usize,
    /// Untimed queries per class before the timed ones.
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    /// Give up on a class of queries after this long.
    #[arg(long, default_value_t = 600)]
    max_query_seconds: u64,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            say(format!("search bench: FAILED: {e:#}"));
            ExitCode::from(2)
        }
    }
}

/// The file beside the log directory that records what corpus it holds.
fn corpus_file(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".corpus");
    PathBuf::from(name)
}

fn run(args: &Args) -> anyhow::Result<bool> {
    let spec = CorpusSpec {
        seed: args.seed,
        keys: args.keys,
        cert_percent: args.cert_percent,
        identities: args.identities,
        distribution: args.distribution,
    };
    let n = args.entries;
    if n == 0 {
        bail!("--entries must be at least 1");
    }
    let description = format!("entries={n} {}", spec.describe());
    say(format!("== corpus: {description}"));
    let corpus = Arc::new(Corpus::new(&spec).map_err(anyhow::Error::msg)?);
    corpus
        .check_against_validation()
        .map_err(anyhow::Error::msg)
        .context("entries do not match the server's own validation")?;
    say("  self-check: entries with real signatures validate to the bench's bytes");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    // 1. The log.
    let reused = args.reuse_log
        && std::fs::read_to_string(corpus_file(&args.dir)).is_ok_and(|d| d.trim() == description);
    let mut log_rate = None;
    if reused {
        say(format!("== log: reusing {}", args.dir.display()));
    } else {
        if args.dir.exists() && std::fs::read_dir(&args.dir)?.next().is_some() {
            bail!(
                "{} is not empty (pass --reuse-log to keep a log built with the same flags)",
                args.dir.display()
            );
        }
        say(format!(
            "== log: building {n} entries in {} (batch {}, {} in flight)",
            args.dir.display(),
            args.batch_max_size,
            args.window
        ));
        let built = runtime.block_on(build_log(
            &args.dir,
            &args.hostname,
            Arc::clone(&corpus),
            n,
            args.batch_max_size,
            args.window,
            Duration::from_secs(args.max_build_seconds),
        ))?;
        #[allow(clippy::as_conversions, reason = "counts far below 2^53")]
        let per_s = n as f64 / built.seconds;
        say(format!(
            "  logged {n} entries in {:.1} s ({per_s:.0} entries/s, {} checkpoints)",
            built.seconds, built.checkpoints
        ));
        log_rate = Some(per_s);
        std::fs::write(corpus_file(&args.dir), format!("{description}\n"))?;
    }
    let log_bytes = DirBytes::of(&args.dir)?;
    say(format!(
        "  log directory: {} bytes ({})",
        log_bytes.apparent,
        log_bytes.describe_parts()
    ));

    // 2 and 3. The index.
    say(if args.verify_bundles {
        "== index: Indexer::catch_up_verified from 0 on the POSIX search index"
    } else {
        "== index: Indexer::catch_up from 0 on the POSIX search index"
    });
    let index = runtime.block_on(build_index(
        &args.dir,
        n,
        Duration::from_secs(args.max_index_seconds),
        args.verify_bundles,
    ))?;
    let index_rate = rate(n, Duration::from_secs_f64(index.seconds));
    #[allow(clippy::as_conversions, reason = "counts far below 2^53")]
    let per_entry = |bytes: u64| bytes as f64 / n as f64;
    let cpu_us_per_entry = per_entry(1) * index.cpu.total().as_secs_f64() * 1e6;
    say(format!(
        "  indexed {n} entries in {:.2} s: {index_rate:.0} entries/s; CPU user {:.2} s + system {:.2} s = {:.2} µs/entry ({:.2} cores)",
        index.seconds,
        index.cpu.user.as_secs_f64(),
        index.cpu.system.as_secs_f64(),
        cpu_us_per_entry,
        index.cpu.total().as_secs_f64() / index.seconds
    ));
    for (when, bytes) in [
        ("open, right after the build", &index.open_bytes),
        ("closed and settled", &index.closed_bytes),
    ] {
        say(format!(
            "  index on disk ({when}): {} bytes = {:.2} B/entry ({:.2} allocated); {}",
            bytes.apparent,
            per_entry(bytes.apparent),
            per_entry(bytes.allocated),
            bytes.describe_parts()
        ));
    }

    // 3b. The signed commitment to the index, as the server builds it, but at full speed (the
    // server's committer paces its reads, `Pace::BACKGROUND`: the same CPU over about four
    // times the wall time).
    say(
        "== commitment: Commitment::build over the index, at full speed (what --search-commitment-interval runs, paced)",
    );
    let commitment = runtime.block_on(build_commitment(&args.dir, n, &args.hostname))?;
    let commitment_cpu_us = per_entry(1) * commitment.cpu.total().as_secs_f64() * 1e6;
    say(format!(
        "  built in {:.2} s: 2^{} buckets, {} postings; CPU user {:.2} s + system {:.2} s = {commitment_cpu_us:.2} µs/entry",
        commitment.seconds,
        commitment.bucket_bits,
        commitment.postings,
        commitment.cpu.user.as_secs_f64(),
        commitment.cpu.system.as_secs_f64(),
    ));

    // 4. The lookups.
    let mut results: Vec<(&str, lookup::ClassResult)> = Vec::new();
    let mut served_bytes = None;
    let mut start_time = None;
    if let Some(bin) = &args.server_bin {
        let classes = queries(&corpus, n, args.queries, args.warmup);
        say(format!(
            "== lookups: {} serve --search-index on 127.0.0.1:{}, one connection, closed loop",
            bin.display(),
            args.port
        ));
        let (server, started) = Server::start(
            bin,
            &args.dir,
            &args.hostname,
            args.port,
            &server_log(&args.dir),
            Duration::from_secs(300),
        )?;
        start_time = Some(started);
        say(format!(
            "  server answered /healthz after {} ms",
            ms(started)
        ));
        let mut client = Client::connect(server.address)?;
        let committed = wait_for_commitment(&mut client, Duration::from_secs(600))?;
        say(format!(
            "  first search-index commitment served {} ms later; the lookups are timed from here",
            ms(committed)
        ));
        for (name, warmup, timed) in &classes {
            let result = run_class(
                &mut client,
                &server,
                warmup,
                timed,
                Duration::from_secs(args.max_query_seconds),
            )?;
            say(format!(
                "  {name:<9} {} queries: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms, mean {} ms; {} B per answer; server CPU {} us per query; {} wrong",
                result.latency.count,
                ms(result.latency.p50),
                ms(result.latency.p90),
                ms(result.latency.p99),
                ms(result.latency.max),
                ms(result.latency.mean),
                result.mean_bytes,
                result.server_cpu.as_micros(),
                result.wrong
            ));
            if let Some(first) = &result.first_asked {
                say(format!(
                    "    of which {} asked a term for the first time: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
                    first.count,
                    ms(first.p50),
                    ms(first.p90),
                    ms(first.p99),
                    ms(first.max)
                ));
            }
            if let Some(first) = &result.first_wrong {
                say(format!("    first wrong answer: {first}"));
            }
            results.push((name, result));
        }
        drop(client);
        server.stop()?;
        let after = settled(&search_dir(&args.dir), Duration::from_secs(30))?;
        say(format!(
            "  index on disk after the server stopped: {} bytes = {:.2} B/entry; {}",
            after.apparent,
            per_entry(after.apparent),
            after.describe_parts()
        ));
        served_bytes = Some(after);
    } else {
        say("== lookups: skipped (no --server-bin)");
    }

    // Summary.
    let final_bytes = served_bytes.as_ref().unwrap_or(&index.closed_bytes);
    let bytes_per_entry = per_entry(final_bytes.apparent);
    say("== summary (targets at 10M entries; reported, not enforced)");
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    say(format!(
        "  index build: {index_rate:.0} entries/s (target >= {TARGET_INDEX_RATE:.0}): {:.2}x, {}",
        index_rate / TARGET_INDEX_RATE,
        verdict(index_rate >= TARGET_INDEX_RATE)
    ));
    say(format!(
        "  index size: {bytes_per_entry:.2} B/entry (target <= {TARGET_BYTES_PER_ENTRY}): {:.2}x, {}",
        bytes_per_entry / TARGET_BYTES_PER_ENTRY,
        verdict(bytes_per_entry <= TARGET_BYTES_PER_ENTRY)
    ));
    for (name, result) in &results {
        let p99 = result.latency.p99.as_secs_f64() * 1e3;
        say(format!(
            "  {name} lookup p99: {p99:.2} ms (target <= {TARGET_P99_MS}): {:.2}x, {}",
            p99 / TARGET_P99_MS,
            verdict(p99 <= TARGET_P99_MS)
        ));
    }
    let mut line = format!(
        "RESULT entries={n} index_entries_per_s={index_rate:.0} index_cpu_us_per_entry={cpu_us_per_entry:.2} index_bytes_per_entry={bytes_per_entry:.2}"
    );
    line.push_str(&format!(
        " commitment_s={:.2} commitment_cpu_us_per_entry={commitment_cpu_us:.2}",
        commitment.seconds
    ));
    if let Some(r) = log_rate {
        line.push_str(&format!(" log_entries_per_s={r:.0}"));
    }
    if let Some(t) = start_time {
        line.push_str(&format!(" server_start_ms={}", ms(t)));
    }
    let mut wrong = 0;
    for (name, result) in &results {
        let Latency { p50, p99, max, .. } = result.latency;
        line.push_str(&format!(
            " {name}_p50_ms={} {name}_p99_ms={} {name}_max_ms={} {name}_server_cpu_us={}",
            ms(p50),
            ms(p99),
            ms(max),
            result.server_cpu.as_micros()
        ));
        wrong += result.wrong;
    }
    line.push_str(&format!(" wrong={wrong}"));
    say(line);
    Ok(wrong == 0)
}

type Class = (&'static str, Vec<Query>, Vec<Query>);

/// The four classes of queries, `warmup` untimed and `count` timed each, drawn with the
/// corpus's seed: digests of random entries (one match), keys and identities drawn uniformly
/// from those that signed anything (first page of up to 100), digests no entry has.
fn queries(corpus: &Corpus, n: u64, count: usize, warmup: usize) -> Vec<Class> {
    const PAGE: usize = 100;
    let counts = corpus.counts(n);
    let keys: Vec<(SearchTerm, u64)> = corpus
        .signers
        .iter()
        .zip(&counts)
        .filter(|(_, c)| **c > 0)
        .map(|(s, c)| (s.key.clone(), *c))
        .collect();
    let mut by_identity: BTreeMap<SearchTerm, u64> = BTreeMap::new();
    for (signer, c) in corpus.signers.iter().zip(&counts) {
        if let Some(identity) = &signer.identity {
            *by_identity.entry(identity.clone()).or_default() += c;
        }
    }
    let identities: Vec<(SearchTerm, u64)> =
        by_identity.into_iter().filter(|(_, c)| *c > 0).collect();
    let page = |term: &SearchTerm, matches: u64| Query {
        term: term.clone(),
        expect: usize::try_from(matches).unwrap_or(usize::MAX).min(PAGE),
        more: matches > PAGE as u64,
    };
    let pick = |salt: u64, q: u64, len: usize| -> usize {
        usize::try_from(mix64(mix64(salt) ^ q) % len.max(1) as u64).unwrap_or_default()
    };
    let digest_term = |digest: [u8; 32]| -> Option<SearchTerm> {
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        SearchTerm::digest(&format!("sha256:{hex}")).ok()
    };
    let make = |salt: u64, total: usize| -> [Vec<Query>; 4] {
        let mut out: [Vec<Query>; 4] = Default::default();
        for q in 0..total as u64 {
            let i = mix64(mix64(salt) ^ q) % n;
            if let Some(term) = digest_term(corpus.digest_of(i)) {
                out[0].push(page(&term, 1));
            }
            if let Some((term, c)) = keys.get(pick(salt ^ 1, q, keys.len())) {
                out[1].push(page(term, *c));
            }
            if let Some((term, c)) = identities.get(pick(salt ^ 2, q, identities.len())) {
                out[2].push(page(term, *c));
            }
            if let Some(term) = digest_term(corpus.absent_digest(salt ^ q)) {
                out[3].push(page(&term, 0));
            }
        }
        out
    };
    let [w0, w1, w2, w3] = make(0x3a1f, warmup);
    let [t0, t1, t2, t3] = make(0x7e57, count);
    vec![
        ("digest", w0, t0),
        ("key", w1, t1),
        ("identity", w2, t2),
        ("absent", w3, t3),
    ]
}
