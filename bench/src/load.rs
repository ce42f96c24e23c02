//! The timed loops: closed (a fixed number of workers, each sending as soon as its last reply
//! arrived) and open (requests started on a fixed schedule, latency measured from the scheduled
//! time so a slow server cannot hide its queueing delay).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use crate::error::BenchError;
use crate::requests::Prepared;
use crate::transport::{Client, Reply};
use crate::verify::{Response, canonical_body_len};

/// Highest latency the histogram records exactly (longer ones are clamped to it), in µs.
const MAX_LATENCY_US: u64 = 120_000_000;

/// What one run (or part of a run) observed.
#[derive(Debug)]
pub(crate) struct Tally {
    /// Latency of every answered request, in microseconds.
    pub(crate) latency_us: Histogram<u64>,
    /// Count per status label (`http 201`, `grpc AlreadyExists`, `timeout`, ...).
    pub(crate) statuses: BTreeMap<String, u64>,
    /// Entries logged (201 / OK).
    pub(crate) created: u64,
    /// Answers of 409 / `AlreadyExists`.
    pub(crate) duplicates: u64,
    /// Everything else.
    pub(crate) failures: u64,
    /// The first failure's label and message.
    pub(crate) first_failure: Option<(String, String)>,
    /// Sum of the canonical entry sizes of the created entries.
    pub(crate) leaf_bytes: u64,
    /// Sum of the sizes of the HTTP 201 answer bodies.
    pub(crate) answer_bytes: u64,
    /// Responses kept for verification after the timed phase, with their request's digest.
    pub(crate) samples: Vec<(Response, Vec<u8>)>,
    /// Wall time of the timed phase(s).
    pub(crate) elapsed: Duration,
    /// CPU time this process used during the timed phase(s), all threads (signing happens before).
    pub(crate) cpu: Duration,
}

impl Tally {
    /// An empty tally.
    ///
    /// # Errors
    ///
    /// [`BenchError::Flag`] if the histogram cannot be built (it always can for these bounds).
    pub(crate) fn new() -> Result<Self, BenchError> {
        let latency_us =
            Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map_err(|e| BenchError::Flag {
                flag: "histogram",
                reason: e.to_string(),
            })?;
        Ok(Tally {
            latency_us,
            statuses: BTreeMap::new(),
            created: 0,
            duplicates: 0,
            failures: 0,
            first_failure: None,
            leaf_bytes: 0,
            answer_bytes: 0,
            samples: Vec::new(),
            elapsed: Duration::ZERO,
            cpu: Duration::ZERO,
        })
    }

    fn record(&mut self, reply: Reply, latency: Duration, keep: Option<&Prepared>, http: bool) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us
            .saturating_record(micros.clamp(1, MAX_LATENCY_US));
        let label = match reply {
            Reply::Created(response) => {
                self.created += 1;
                let leaf = match &response {
                    Response::Json(body) => {
                        self.answer_bytes += u64::try_from(body.len()).unwrap_or(0);
                        canonical_body_len(body).unwrap_or(0)
                    }
                    Response::Proto(entry) => entry.canonicalized_body.len(),
                };
                self.leaf_bytes += u64::try_from(leaf).unwrap_or(0);
                if let Some(prepared) = keep {
                    self.samples.push((response, prepared.digest.clone()));
                }
                if http { "http 201" } else { "grpc Ok" }.to_string()
            }
            Reply::Duplicate => {
                self.duplicates += 1;
                if http {
                    "http 409"
                } else {
                    "grpc AlreadyExists"
                }
                .to_string()
            }
            Reply::Failed { label, detail } => {
                self.failures += 1;
                if self.first_failure.is_none() {
                    self.first_failure = Some((label.clone(), detail));
                }
                label
            }
        };
        *self.statuses.entry(label).or_insert(0) += 1;
    }

    /// Adds `other` into this tally (elapsed times add up: phases run one after another).
    pub(crate) fn merge(&mut self, other: Tally) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        for (label, count) in other.statuses {
            *self.statuses.entry(label).or_insert(0) += count;
        }
        self.created += other.created;
        self.duplicates += other.duplicates;
        self.failures += other.failures;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
        self.leaf_bytes += other.leaf_bytes;
        self.answer_bytes += other.answer_bytes;
        self.samples.extend(other.samples);
        self.elapsed += other.elapsed;
        self.cpu += other.cpu;
    }

    /// Answered requests per second of timed wall time.
    pub(crate) fn rate(&self, count: u64) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            count as f64 / seconds
        } else {
            0.0
        }
    }
}

/// How to drive one batch of pre-made requests.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Drive {
    /// Closed loop: the number of workers. Open loop: the most requests in flight.
    pub(crate) concurrency: usize,
    /// Open loop at this many requests per second; `None` for a closed loop.
    pub(crate) rate: Option<f64>,
    /// Stop starting requests at this instant.
    pub(crate) deadline: Option<Instant>,
    /// Keep every n-th created response (by global request number) for verification; 0: none.
    pub(crate) sample_every: u64,
    /// Global number of the first request in the batch.
    pub(crate) first: u64,
}

impl Drive {
    fn keeps(&self, position: usize) -> bool {
        self.sample_every > 0
            && self
                .first
                .saturating_add(u64::try_from(position).unwrap_or(u64::MAX))
                .is_multiple_of(self.sample_every)
    }
}

/// Sends `requests` as `drive` says, and tallies the replies.
///
/// # Errors
///
/// [`BenchError::Worker`] if a worker task panicked.
pub(crate) async fn run(
    client: &Client,
    requests: Arc<Vec<Prepared>>,
    drive: Drive,
) -> Result<Tally, BenchError> {
    let cpu_before = process_cpu_time();
    let mut tally = match drive.rate {
        None => closed_loop(client, requests, drive).await,
        Some(rate) => open_loop(client, requests, drive, rate).await,
    }?;
    tally.cpu = process_cpu_time().saturating_sub(cpu_before);
    Ok(tally)
}

/// CPU time used so far by every thread of this process.
fn process_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

async fn closed_loop(
    client: &Client,
    requests: Arc<Vec<Prepared>>,
    drive: Drive,
) -> Result<Tally, BenchError> {
    let http = matches!(client, Client::Http { .. });
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(drive.concurrency);
    for _ in 0..drive.concurrency.max(1) {
        let client = client.clone();
        let requests = Arc::clone(&requests);
        let next = Arc::clone(&next);
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::new()?;
            loop {
                let position = next.fetch_add(1, Ordering::Relaxed);
                let Some(prepared) = requests.get(position) else {
                    break;
                };
                if drive.deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let sent = Instant::now();
                let reply = client.send(prepared, position).await;
                let keep = drive.keeps(position).then_some(prepared);
                tally.record(reply, sent.elapsed(), keep, http);
            }
            Ok::<_, BenchError>(tally)
        }));
    }
    let mut total = Tally::new()?;
    for worker in workers {
        total.merge(worker.await??);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

async fn open_loop(
    client: &Client,
    requests: Arc<Vec<Prepared>>,
    drive: Drive,
    rate: f64,
) -> Result<Tally, BenchError> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(BenchError::Flag {
            flag: "--rate",
            reason: format!("{rate} is not a positive rate"),
        });
    }
    let http = matches!(client, Client::Http { .. });
    let permits = drive.concurrency.max(1);
    let in_flight = Arc::new(Semaphore::new(permits));
    let shared = Arc::new(Mutex::new(Tally::new()?));
    let interval = 1.0 / rate;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(requests.len());
    let mut offset = 0.0f64;
    for position in 0..requests.len() {
        let due = started + Duration::from_secs_f64(offset);
        offset += interval;
        if drive.deadline.is_some_and(|d| due >= d) {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            break;
        };
        let client = client.clone();
        let requests = Arc::clone(&requests);
        let shared = Arc::clone(&shared);
        let keep = drive.keeps(position);
        tasks.push(tokio::spawn(async move {
            let Some(prepared) = requests.get(position) else {
                return;
            };
            let reply = client.send(prepared, position).await;
            let latency = due.elapsed();
            drop(permit);
            shared
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(reply, latency, keep.then_some(prepared), http);
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    let mut total = Tally::new()?;
    let tally = std::mem::replace(
        &mut *shared.lock().unwrap_or_else(PoisonError::into_inner),
        Tally::new()?,
    );
    total.merge(tally);
    total.elapsed = elapsed;
    Ok(total)
}
