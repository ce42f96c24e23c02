//! The raw pipeline: pre-made canonical leaves straight into [`Log::add`], many at a time, over
//! the in-memory backend and over the POSIX backend on a temporary directory. No HTTP, no
//! request parsing, no client-signature checks: dedup, batching, durable sequencing, tiles,
//! entry bundles, checkpoint signing and per-entry proofs only. Each iteration logs `ENTRIES`
//! distinct leaves concurrently and waits until all are covered by a published checkpoint;
//! criterion reports entries per second. `make bench` reads the estimates it writes.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark harness: a failure should stop it loudly"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use rekor_log::{Log, LogConfig};
use rekor_note::{KeyName, LogSigner, Origin};
use rekor_storage::memory::{MemoryCoordinator, MemoryStorage};
use rekor_storage::posix::PosixBackend;
use rekor_storage::{Coordinator, Storage};
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;

/// Leaves logged per iteration, all in flight at once (the server's default pushback limit).
const ENTRIES: usize = 4096;
const ORIGIN: &str = "pipeline.bench.example";

/// A leaf shaped and sized like a canonical hashedrekord v0.0.2 P-256 entry (about 450 bytes),
/// distinct for every `n` (the digest and signature derive from it).
fn leaf(n: u64) -> Bytes {
    let digest = Sha256::digest(n.to_be_bytes());
    let signature = Sha256::digest(digest);
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    Bytes::from(format!(
        concat!(
            r#"{{"apiVersion":"0.0.2","kind":"hashedrekord","spec":{{"hashedRekordV002":{{"data":"#,
            r#"{{"algorithm":"SHA2_256","digest":"{}"}},"signature":{{"content":"MEUCIQ{}","#,
            r#""verifier":{{"keyDetails":"PKIX_ECDSA_P256_SHA_256","publicKey":{{"rawBytes":"#,
            r#""MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE{}"}}}}}}}}}}}}"#
        ),
        hex(&digest),
        hex(&signature),
        hex(&digest),
    ))
}

struct Backend {
    storage: Arc<dyn Storage>,
    coordinator: Arc<dyn Coordinator>,
    _dir: Option<TempDir>,
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "rekor-pipeline-bench-{label}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn memory() -> Backend {
    Backend {
        storage: Arc::new(MemoryStorage::default()),
        coordinator: Arc::new(MemoryCoordinator::default()),
        _dir: None,
    }
}

fn posix() -> Backend {
    let dir = TempDir::new("posix");
    let backend = PosixBackend::open(&dir.0).unwrap();
    Backend {
        storage: backend.storage,
        coordinator: backend.coordinator,
        _dir: Some(dir),
    }
}

/// The pipeline configuration: the defaults, but `PIPELINE_BATCH_MAX_SIZE` overrides the batch
/// cap (to measure how the fixed cost per batch weighs; `make bench` uses the default).
fn config() -> LogConfig {
    let defaults = LogConfig::default();
    match std::env::var("PIPELINE_BATCH_MAX_SIZE") {
        Ok(value) if !value.is_empty() => LogConfig {
            batch_max_size: value
                .parse()
                .ok()
                .filter(|&size: &usize| size > 0)
                .expect("PIPELINE_BATCH_MAX_SIZE must be a positive integer"),
            ..defaults
        },
        _ => defaults,
    }
}

fn open(runtime: &Runtime, backend: &Backend) -> Log {
    let signer = Arc::new(LogSigner::from_ed25519_seed(
        [1; 32],
        KeyName::new(ORIGIN).unwrap(),
    ));
    runtime
        .block_on(Log::open(
            Arc::clone(&backend.storage),
            Arc::clone(&backend.coordinator),
            signer,
            Origin::new(ORIGIN).unwrap(),
            config(),
        ))
        .unwrap()
}

/// Logs `leaves` all at once and waits for every one to be acknowledged.
async fn add_all(log: &Log, leaves: Vec<Bytes>) {
    let tasks: Vec<_> = leaves
        .into_iter()
        .map(|leaf| {
            let log = log.clone();
            tokio::spawn(async move { log.add(leaf).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
}

fn pipeline(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(ENTRIES as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));

    for (name, make) in [("memory", memory as fn() -> Backend), ("posix", posix)] {
        let backend = make();
        let log = open(&runtime, &backend);
        let mut next: u64 = 0;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                // Leaves are made before the clock starts; each is new to the log.
                let batches: Vec<Vec<Bytes>> = (0..iters)
                    .map(|_| {
                        (0..ENTRIES)
                            .map(|_| {
                                next += 1;
                                leaf(next)
                            })
                            .collect()
                    })
                    .collect();
                let started = Instant::now();
                for batch in batches {
                    runtime.block_on(add_all(&log, batch));
                }
                started.elapsed()
            });
        });
        assert_eq!(log.stats().proof_failures(), 0);
        assert_eq!(log.checkpoint().size, next, "every leaf was logged once");
        runtime.block_on(log.shutdown());
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
