//! 300 entries from 50 concurrent clients, half over HTTP and half over gRPC, each answer
//! verified completely; then a full audit of the published tiles and bundles; then 50
//! sequential writes on an idle log. Prints the write latencies the clients saw.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use rekor_testkit::fixtures::artifact;
use rekor_testkit::{
    ClientKey, KeyKind, LatencySummary, LogEntry, ServerConfig, Submission, TestLog, audit, merkle,
    verify_entry,
};

const CLIENTS: usize = 50;
const ENTRIES_PER_CLIENT: usize = 6;
const SEQUENTIAL_WRITES: usize = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Http,
    Grpc,
}

/// Client `i`'s key: mostly P-256, with P-384 and Ed25519ph mixed in; client 9 uses the
/// certificate key when there is one.
fn client_key(i: usize, certified: &mut Option<ClientKey>) -> anyhow::Result<ClientKey> {
    if i == 9
        && let Some(key) = certified.take()
    {
        return Ok(key);
    }
    Ok(match i % 10 {
        3 => ClientKey::generate(KeyKind::EcdsaP384)?,
        7 => ClientKey::generate(KeyKind::Ed25519ph)?,
        _ => ClientKey::generate(KeyKind::EcdsaP256)?,
    })
}

async fn submit(
    log: &TestLog,
    transport: Transport,
    submission: &Submission,
) -> anyhow::Result<LogEntry> {
    Ok(match transport {
        Transport::Http => log.http.create_entry(submission).await?,
        Transport::Grpc => log.grpc.create_entry_for(submission).await?,
    })
}

/// The checks of `verify_entry` can fail: each tampered copy of a real answer is refused.
fn tampered_answers_are_refused(
    log: &TestLog,
    submission: &Submission,
    entry: &LogEntry,
) -> anyhow::Result<()> {
    type Tamper = fn(&mut LogEntry, &mut Submission);
    let cases: [(&str, Tamper); 9] = [
        ("index", |e, _| {
            e.log_index += 1;
            if let Some(p) = &mut e.proof {
                p.log_index += 1;
            }
        }),
        ("proof log index", |e, _| {
            if let Some(p) = &mut e.proof {
                p.log_index ^= 1;
            }
        }),
        ("proof hash", |e, _| {
            if let Some(h) = e.proof.as_mut().and_then(|p| p.hashes.first_mut()) {
                h[0] ^= 1;
            }
        }),
        ("tree size", |e, _| {
            if let Some(p) = &mut e.proof {
                p.tree_size += 1;
            }
        }),
        ("checkpoint", |e, _| {
            if let Some(p) = &mut e.proof {
                p.checkpoint = p.checkpoint.replacen('\n', "\n1", 1);
            }
        }),
        ("log ID", |e, _| e.log_id[0] ^= 1),
        ("kind", |e, _| e.kind = "dsse".into()),
        ("non-canonical body", |e, _| {
            e.canonicalized_body.insert(1, b' ')
        }),
        ("another signature", |_, s| s.signature[4] ^= 1),
    ];
    for (name, tamper) in cases {
        let mut bad_entry = entry.clone();
        let mut bad_submission = submission.clone();
        tamper(&mut bad_entry, &mut bad_submission);
        ensure!(
            verify_entry(&log.trust, &bad_submission, &bad_entry).is_err(),
            "verify_entry accepted an answer with a tampered {name}"
        );
    }
    Ok(())
}

struct Written {
    index: u64,
    body: Vec<u8>,
    tree_size: u64,
    root: [u8; 32],
    latency: Duration,
    transport: Transport,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_verify_and_audit() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let storage = dir.path().join("log");
    let config = ServerConfig::new(env!("CARGO_BIN_EXE_rekor-server-posix"), &storage);
    let log = Arc::new(TestLog::start(&config).await?);

    // One client signs with a self-signed certificate, if openssl is available.
    let mut certified = match ClientKey::p256_with_self_signed_certificate(work.path()) {
        Ok(key) => Some(key),
        Err(e) => {
            println!("note: no certificate client ({e}); using a P-256 key instead");
            None
        }
    };
    // Sign everything before the clock starts.
    let mut plans = Vec::new();
    for client in 0..CLIENTS {
        let key = client_key(client, &mut certified)?;
        let transport = if client % 2 == 0 {
            Transport::Http
        } else {
            Transport::Grpc
        };
        let submissions = (0..ENTRIES_PER_CLIENT)
            .map(|n| key.hashed_rekord(&artifact(&format!("client {client}"), n)?))
            .collect::<Result<Vec<_>, _>>()?;
        plans.push((transport, submissions));
    }

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (transport, submissions) in plans {
        let log = Arc::clone(&log);
        tasks.spawn(async move {
            let mut written = Vec::new();
            for submission in submissions {
                let sent = Instant::now();
                let entry = submit(&log, transport, &submission)
                    .await
                    .with_context(|| format!("{transport:?} write"))?;
                let latency = sent.elapsed();
                let verified =
                    verify_entry(&log.trust, &submission, &entry).with_context(|| {
                        format!("{transport:?} answer for index {}", entry.log_index)
                    })?;
                written.push(Written {
                    index: verified.index,
                    body: entry.canonicalized_body,
                    tree_size: verified.checkpoint.size,
                    root: verified.checkpoint.root,
                    latency,
                    transport,
                });
            }
            anyhow::Ok(written)
        });
    }
    let mut written = Vec::new();
    while let Some(result) = tasks.join_next().await {
        written.extend(result??);
    }
    let elapsed = started.elapsed();
    let total = CLIENTS * ENTRIES_PER_CLIENT;
    ensure!(
        written.len() == total,
        "{} answers for {total} writes",
        written.len()
    );

    let indices: HashSet<u64> = written.iter().map(|w| w.index).collect();
    ensure!(
        indices.len() == total,
        "duplicate indices among {total} answers"
    );
    ensure!(
        indices.iter().all(|&i| i < total as u64),
        "an index beyond the {total} entries of a fresh log"
    );

    let report = audit(&log.http, &log.trust).await.context("audit")?;
    ensure!(
        report.checkpoint.size == total as u64,
        "final size {}",
        report.checkpoint.size
    );
    for w in &written {
        let index = usize::try_from(w.index)?;
        ensure!(
            report.entries[index] == w.body,
            "bundle entry {index} differs from its answer"
        );
    }
    // Every checkpoint a client saw is a prefix of the final tree: no fork, ever.
    let mut roots: BTreeMap<u64, [u8; 32]> = BTreeMap::new();
    for w in &written {
        if let Some(previous) = roots.insert(w.tree_size, w.root) {
            ensure!(
                previous == w.root,
                "two roots for tree size {}",
                w.tree_size
            );
        }
    }
    for (&size, root) in &roots {
        let prefix = &report.leaf_hashes[..usize::try_from(size)?];
        ensure!(
            merkle::root(prefix) == *root,
            "checkpoint of size {size} is not a prefix of the log"
        );
    }

    let all: Vec<Duration> = written.iter().map(|w| w.latency).collect();
    let http: Vec<Duration> = written
        .iter()
        .filter(|w| w.transport == Transport::Http)
        .map(|w| w.latency)
        .collect();
    let grpc: Vec<Duration> = written
        .iter()
        .filter(|w| w.transport == Transport::Grpc)
        .map(|w| w.latency)
        .collect();
    let summary = |samples: &[Duration]| {
        LatencySummary::of(samples).map_or_else(|| "no samples".to_string(), |s| s.to_string())
    };
    println!(
        "== write latency under load: {CLIENTS} concurrent clients, {total} entries in {elapsed:.2?} ({:.0} entries/s), {} checkpoints seen",
        total as f64 / elapsed.as_secs_f64(),
        roots.len()
    );
    println!("   all:  {}", summary(&all));
    println!("   HTTP: {}", summary(&http));
    println!("   gRPC: {}", summary(&grpc));
    println!(
        "== audit: size {}, {} hash tiles, {} entry bundles, roots agree (testkit RFC 6962, tlog_tiles leaves, tlog_tiles tiles)",
        report.checkpoint.size, report.tiles, report.bundles
    );

    // Light load: one write at a time.
    let key = ClientKey::generate(KeyKind::EcdsaP256)?;
    let mut light = Vec::new();
    let mut light_http = Vec::new();
    let mut light_grpc = Vec::new();
    for n in 0..SEQUENTIAL_WRITES {
        let submission = key.hashed_rekord(&artifact("sequential", n)?)?;
        let transport = if n % 2 == 0 {
            Transport::Http
        } else {
            Transport::Grpc
        };
        let sent = Instant::now();
        let entry = submit(&log, transport, &submission).await?;
        let latency = sent.elapsed();
        let verified = verify_entry(&log.trust, &submission, &entry)?;
        if n == 0 {
            tampered_answers_are_refused(&log, &submission, &entry)?;
        }
        ensure!(
            verified.index == (total + n) as u64,
            "sequential write {n} got index {}",
            verified.index
        );
        light.push(latency);
        if transport == Transport::Http {
            light_http.push(latency);
        } else {
            light_grpc.push(latency);
        }
    }
    println!("== write latency, light load ({SEQUENTIAL_WRITES} sequential single writes):");
    println!("   all:  {}", summary(&light));
    println!("   HTTP: {}", summary(&light_http));
    println!("   gRPC: {}", summary(&light_grpc));

    let final_report = audit(&log.http, &log.trust).await.context("second audit")?;
    ensure!(final_report.checkpoint.size == (total + SEQUENTIAL_WRITES) as u64);

    // Reads, to separate transport overhead from write-path work.
    let mut read_http = Vec::new();
    let mut read_grpc = Vec::new();
    let mut rekor = log.grpc.rekor();
    for _ in 0..20 {
        let sent = Instant::now();
        let note = log.http.checkpoint().await?;
        read_http.push(sent.elapsed());
        ensure!(
            note == final_report.checkpoint.note,
            "HTTP checkpoint changed while idle"
        );
        let sent = Instant::now();
        let body = rekor
            .get_checkpoint(pbjson_types::Empty {})
            .await?
            .into_inner();
        read_grpc.push(sent.elapsed());
        ensure!(
            body.data == final_report.checkpoint.note,
            "gRPC checkpoint differs from HTTP"
        );
    }
    println!("== checkpoint read latency (20 sequential reads each):");
    println!("   HTTP GET /api/v2/checkpoint: {}", summary(&read_http));
    println!("   gRPC GetCheckpoint:          {}", summary(&read_grpc));

    let log = Arc::into_inner(log).context("clients still hold the log")?;
    let errors = log.server.logged_errors();
    ensure!(
        errors.is_empty(),
        "server logged errors:\n{}",
        errors.join("\n")
    );
    log.stop().await?;
    Ok(())
}
