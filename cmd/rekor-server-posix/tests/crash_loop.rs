//! A crash loop: eight writers (half HTTP, half gRPC) keep the log busy while the server is
//! killed with SIGKILL at a random moment 50–400 ms after each restart (counted from when the
//! writers resume, right after the checks below), 20 times over.
//!
//! After every restart, with no manual step, the client checks on its own:
//!
//! - the checkpoint is signed by the key of the first start and its size never decreased;
//! - it is consistent with every checkpoint seen before (one per distinct size, including those
//!   carried by acknowledgements), with consistency proofs computed from tiles fetched over
//!   HTTP, not taken from the server;
//! - every acknowledged entry (HTTP 201 / gRPC OK) is in its entry bundle at its acknowledged
//!   index, byte for byte, with an inclusion proof (again computed from the tiles) against the
//!   new checkpoint;
//! - resubmitting acknowledged entries gives 409 / AlreadyExists with the acknowledged index.
//!
//! At the end: a full audit, every acknowledged entry at its index, no entry twice, and every
//! entry one that was sent. The schedule comes from a seeded RNG; the seed is printed, and
//! `CRASH_LOOP_SEED=<seed>` replays the same kill delays and resubmission choices (thread
//! timing still differs from run to run).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use rekor_testkit::assertions::verify_checkpoint;
use rekor_testkit::fixtures::artifact;
use rekor_testkit::{
    CheckpointHistory, ClientKey, KeyKind, LogEntry, SeededRng, ServerConfig, Submission, TestLog,
    TileCache, TrustedLog, audit, verify_entry,
};

const CYCLES: usize = 20;
const WRITERS: usize = 8;
const KILL_DELAY_MS: (u64, u64) = (50, 400);
/// Older acknowledged entries resubmitted after each restart (besides all of the last cycle's).
const OLD_RESUBMISSIONS: usize = 4;

/// An acknowledged write.
#[derive(Clone, Debug)]
struct Acked {
    /// Which submission of the [`Requests`] source.
    n: usize,
    index: u64,
    body: Vec<u8>,
    cycle: usize,
}

/// Distinct requests, signed on demand as writers ask for them, so the log stays busy until the
/// kill however fast the build is (a release build writes several times what a debug build
/// does in the same window). Each one is kept: later checks resubmit and look up by number.
struct Requests {
    key: ClientKey,
    next: AtomicUsize,
    made: Mutex<HashMap<usize, Submission>>,
}

impl Requests {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            key: ClientKey::generate(KeyKind::EcdsaP256)?,
            next: AtomicUsize::new(0),
            made: Mutex::new(HashMap::new()),
        })
    }

    /// A new distinct request and its number; signed outside the lock.
    fn take(&self) -> anyhow::Result<(usize, Submission)> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let submission = self.key.hashed_rekord(&artifact("crash loop", n)?)?;
        self.made
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(n, submission.clone());
        Ok((n, submission))
    }

    /// The request numbered `n`, as it was sent.
    fn get(&self, n: usize) -> anyhow::Result<Submission> {
        self.made
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&n)
            .cloned()
            .with_context(|| format!("request {n} was never made"))
    }

    /// Every request made so far.
    fn all(&self) -> Vec<Submission> {
        self.made
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

/// What the writers of one cycle saw.
#[derive(Debug, Default)]
struct CycleOutcome {
    acked: Vec<(Acked, rekor_testkit::assertions::VerifiedCheckpoint)>,
    /// Submissions whose fate is unknown (sent when the server died).
    unknown: Vec<usize>,
    /// Failures seen before the kill: server bugs.
    errors: Vec<String>,
}

async fn submit(
    log_http: &rekor_testkit::HttpClient,
    grpc: &rekor_testkit::GrpcClient,
    http: bool,
    s: &Submission,
) -> anyhow::Result<LogEntry> {
    Ok(if http {
        log_http.create_entry(s).await?
    } else {
        grpc.create_entry_for(s).await?
    })
}

/// Resubmits `submission` over HTTP or gRPC and checks it is refused as a duplicate of `index`.
async fn expect_duplicate(
    log: &TestLog,
    submission: &Submission,
    index: u64,
    http: bool,
) -> anyhow::Result<()> {
    if http {
        log.expect_duplicate_http(submission, index)
            .await
            .context("HTTP resubmission")?;
    } else {
        log.expect_duplicate_grpc(submission, index)
            .await
            .context("gRPC resubmission")?;
    }
    Ok(())
}

/// The checks made after every restart; returns the new checkpoint size.
#[expect(
    clippy::too_many_arguments,
    reason = "the state one crash-loop check reads"
)]
async fn check_restarted(
    log: &TestLog,
    trust: &TrustedLog,
    cache: &mut TileCache,
    history: &mut CheckpointHistory,
    acked: &[Acked],
    requests: &Requests,
    cycle: usize,
    rng: &mut SeededRng,
) -> anyhow::Result<u64> {
    ensure!(
        log.trust.log_id == trust.log_id,
        "the log key changed across the restart"
    );
    let note = log.http.checkpoint().await?;
    // Verified with the trust material of the FIRST start: the same key signs every checkpoint.
    let checkpoint = verify_checkpoint(trust, &note).context("new checkpoint")?;
    ensure!(
        checkpoint.size >= history.max_size(),
        "checkpoint size decreased: {} after restart, {} seen before",
        checkpoint.size,
        history.max_size()
    );
    cache.set_client(log.http.clone());
    let tree = cache.tree(&checkpoint).await?;
    history
        .verify_all(&tree)
        .context("consistency with an earlier checkpoint")?;
    history.record(&checkpoint)?;

    for entry in acked {
        ensure!(
            entry.index < checkpoint.size,
            "acknowledged entry {} (write {}, cycle {}) is beyond the new size {}",
            entry.index,
            entry.n,
            entry.cycle,
            checkpoint.size
        );
        let served = cache.entry(entry.index, checkpoint.size).await?;
        ensure!(
            served == entry.body,
            "bundle entry {} differs from the acknowledged canonicalizedBody (write {}, cycle {})",
            entry.index,
            entry.n,
            entry.cycle
        );
        tree.verify_inclusion(entry.index, &entry.body)
            .with_context(|| format!("inclusion of acknowledged entry {}", entry.index))?;
    }

    // Resubmit what the last cycle acknowledged (most at risk) and a few older ones.
    let mut chosen: Vec<&Acked> = acked.iter().filter(|a| a.cycle + 1 == cycle).collect();
    let older: Vec<&Acked> = acked.iter().filter(|a| a.cycle + 1 < cycle).collect();
    if !older.is_empty() {
        for _ in 0..OLD_RESUBMISSIONS {
            let pick = usize::try_from(rng.range(0, u64::try_from(older.len())? - 1))?;
            chosen.push(older[pick]);
        }
    }
    for (i, entry) in chosen.iter().enumerate() {
        expect_duplicate(
            log,
            &requests.get(entry.n)?,
            entry.index,
            i.is_multiple_of(2),
        )
        .await
        .with_context(|| {
            format!(
                "resubmitting write {} (index {}, cycle {})",
                entry.n, entry.index, entry.cycle
            )
        })?;
    }
    Ok(checkpoint.size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_entries_survive_a_sigkill_loop() -> anyhow::Result<()> {
    let started = Instant::now();
    let seed = SeededRng::seed_from_env("CRASH_LOOP_SEED");
    println!("crash loop seed: CRASH_LOOP_SEED={seed}");
    let mut rng = SeededRng::new(seed);

    let dir = tempfile::tempdir()?;
    let config = ServerConfig::new(
        env!("CARGO_BIN_EXE_rekor-server-posix"),
        dir.path().join("log"),
    );
    let requests = Arc::new(Requests::new()?);

    let mut history = CheckpointHistory::new();
    let mut acked: Vec<Acked> = Vec::new();
    let mut unknown: Vec<usize> = Vec::new();
    let mut trust: Option<TrustedLog> = None;
    let mut cache: Option<TileCache> = None;
    let mut kills = 0;
    for cycle in 0..=CYCLES {
        let mut log = TestLog::start(&config)
            .await
            .with_context(|| format!("start {cycle} (seed {seed})"))?;
        let trust = trust.get_or_insert_with(|| log.trust.clone()).clone();
        let cache = cache.get_or_insert_with(|| TileCache::new(log.http.clone()));
        let size = check_restarted(
            &log,
            &trust,
            cache,
            &mut history,
            &acked,
            &requests,
            cycle,
            &mut rng,
        )
        .await
        .with_context(|| {
            format!(
                "after restart {cycle} (seed {seed}); server stderr tail:\n{}",
                log.server.stderr_tail()
            )
        })?;
        if cycle == CYCLES {
            let report = audit(&log.http, &trust).await.context("final audit")?;
            final_checks(&report.entries, &acked, &requests.all())?;
            println!(
                "{kills} SIGKILLs in {:?}: {} acknowledged, {} unknown, final size {size}, \
                 {} distinct checkpoint sizes checked, {} tile/bundle fetches",
                started.elapsed(),
                acked.len(),
                unknown.len(),
                history.len(),
                cache.fetches()
            );
            let errors = log.server.logged_errors();
            if !errors.is_empty() {
                println!(
                    "server logged errors in the last run:\n{}",
                    errors.join("\n")
                );
            }
            log.stop().await?;
            break;
        }

        let delay = Duration::from_millis(rng.range(KILL_DELAY_MS.0, KILL_DELAY_MS.1));
        let outcome = run_cycle(&mut log, &trust, &requests, cycle, delay).await?;
        kills += 1;
        ensure!(
            outcome.errors.is_empty(),
            "cycle {cycle} (seed {seed}):\n{}",
            outcome.errors.join("\n")
        );
        println!(
            "cycle {cycle:2}: kill after {delay:?}, size before {size}, {} acknowledged, {} unknown",
            outcome.acked.len(),
            outcome.unknown.len()
        );
        for (entry, checkpoint) in outcome.acked {
            history.record(&checkpoint).with_context(|| {
                format!("checkpoint of the acknowledgement of write {}", entry.n)
            })?;
            acked.push(entry);
        }
        unknown.extend(outcome.unknown);
    }
    ensure!(kills >= CYCLES, "only {kills} kills");
    ensure!(
        !acked.is_empty(),
        "nothing was acknowledged in {CYCLES} cycles"
    );
    Ok(())
}

/// Runs the writers for `delay`, then SIGKILLs the server and collects what they saw.
async fn run_cycle(
    log: &mut TestLog,
    trust: &TrustedLog,
    requests: &Arc<Requests>,
    cycle: usize,
    delay: Duration,
) -> anyhow::Result<CycleOutcome> {
    let killed = Arc::new(AtomicBool::new(false));
    let outcome = Arc::new(Mutex::new(CycleOutcome::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let (http, grpc) = (log.http.clone(), log.grpc.clone());
        let (requests, killed, outcome, trust) = (
            Arc::clone(requests),
            Arc::clone(&killed),
            Arc::clone(&outcome),
            trust.clone(),
        );
        let over_http = writer.is_multiple_of(2);
        tasks.spawn(async move {
            loop {
                if killed.load(Ordering::SeqCst) {
                    return;
                }
                let (n, submission) = match requests.take() {
                    Ok(made) => made,
                    Err(e) => {
                        let mut outcome = outcome.lock().unwrap_or_else(PoisonError::into_inner);
                        outcome.errors.push(format!("making a request: {e:#}"));
                        return;
                    }
                };
                let submission = &submission;
                let result = submit(&http, &grpc, over_http, submission).await;
                // Read after the answer: an error seen while this is false happened before
                // the SIGKILL was sent.
                let was_killed = killed.load(Ordering::SeqCst);
                let mut outcome = outcome.lock().unwrap_or_else(PoisonError::into_inner);
                match result {
                    Ok(entry) => match verify_entry(&trust, submission, &entry) {
                        Ok(verified) => outcome.acked.push((
                            Acked {
                                n,
                                index: entry.log_index,
                                body: entry.canonicalized_body,
                                cycle,
                            },
                            verified.checkpoint,
                        )),
                        Err(e) => outcome
                            .errors
                            .push(format!("write {n}: acknowledgement does not verify: {e}")),
                    },
                    Err(e) => {
                        outcome.unknown.push(n);
                        if !was_killed {
                            outcome.errors.push(format!(
                                "write {n} ({}) failed before the kill: {e:#}",
                                if over_http { "HTTP" } else { "gRPC" }
                            ));
                        }
                        // After the kill every further request fails too.
                        return;
                    }
                }
            }
        });
    }
    tokio::time::sleep(delay).await;
    killed.store(true, Ordering::SeqCst);
    // Sending SIGKILL and reaping a killed process takes microseconds: no need to leave the
    // runtime for it.
    log.server.kill().context("SIGKILL")?;
    let joined = tokio::time::timeout(Duration::from_secs(40), async {
        while let Some(result) = tasks.join_next().await {
            result?;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await;
    match joined {
        Ok(result) => result?,
        Err(_) => bail!("writers still busy 40 s after the SIGKILL"),
    }
    let outcome = std::mem::take(&mut *outcome.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(outcome)
}

/// The end state: every acknowledged entry at its index, no entry twice, every entry sent.
fn final_checks(
    entries: &[Vec<u8>],
    acked: &[Acked],
    submissions: &[Submission],
) -> anyhow::Result<()> {
    for entry in acked {
        let index = usize::try_from(entry.index)?;
        ensure!(
            entries.get(index) == Some(&entry.body),
            "acknowledged write {} is not at index {index} in the final audit",
            entry.n
        );
    }
    let distinct: HashSet<&Vec<u8>> = entries.iter().collect();
    ensure!(
        distinct.len() == entries.len(),
        "{} duplicate entries in the log",
        entries.len() - distinct.len()
    );
    let digest = |body: &serde_json::Value| {
        body["spec"]["hashedRekordV002"]["data"]["digest"]
            .as_str()
            .map(str::to_string)
    };
    let by_digest: HashMap<String, serde_json::Value> = submissions
        .iter()
        .filter_map(|s| {
            let body = s.expected_body();
            digest(&body).map(|d| (d, body))
        })
        .collect();
    ensure!(
        by_digest.len() == submissions.len(),
        "submission digests collide"
    );
    for (index, entry) in entries.iter().enumerate() {
        let value: serde_json::Value = serde_json::from_slice(entry)?;
        let sent = digest(&value).and_then(|d| by_digest.get(&d));
        ensure!(
            sent == Some(&value),
            "entry {index} is none of the submissions sent"
        );
    }
    Ok(())
}
