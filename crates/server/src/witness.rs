//! The witness client: sends each checkpoint to the witnesses of `--witness-policy-path` with
//! c2sp.org/tlog-witness `add-checkpoint`, in parallel and within `--witness-timeout`, and hands
//! the log the cosignatures that verify.
//!
//! Per witness it keeps the size the witness last cosigned or reported, starting from 0 (the
//! spec's way to learn it: a witness that knows the log answers 409 with its size). A 409 with a
//! size is retried once, with a consistency proof from that size. Requests to one witness are
//! sent one at a time, in order. [`Witnessing::cosign`] returns as soon as the policy's quorum is
//! reached, when every witness has answered, or at the timeout; requests still running go on
//! until the timeout so each witness keeps up, but their cosignatures are not used.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rekor_log::{WitnessRequest, WitnessRequestCount, Witnessed, Witnessing};
use rekor_note::{CosignatureVerifier, NoteSignature};
use rekor_witnessing::{
    MAX_RESPONSE_SIZE, Policy, TLOG_SIZE_CONTENT_TYPE, WitnessError, add_checkpoint_body,
    cosignatures_from_response, parse_tlog_size,
};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::{RunError, ServerArgs};

/// The least time between two warnings about one witness failing; each failure is logged at
/// debug level and counted in the metrics.
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Why the witness client could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessSetupError {
    /// A witness URL does not parse as a URL.
    #[error("witness {witness:?}: {url:?} is not a valid URL")]
    Url {
        /// The witness (its name in the policy).
        witness: String,
        /// The `add-checkpoint` URL built from it.
        url: String,
    },
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

/// How one request to a witness ended: the `outcome` label of `rekor_v2_witness_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// 200 with a verified cosignature.
    Cosigned,
    /// 409 with the witness's size (`text/x.tlog.size`): retried from it.
    Conflict,
    /// 409 without a size: same size, another root.
    RootConflict,
    /// 404: the witness does not know this log.
    UnknownLog,
    /// 403: no log signature verified.
    Forbidden,
    /// 400.
    BadRequest,
    /// 422: the consistency proof did not verify.
    BadProof,
    /// Any other status.
    HttpError,
    /// 200 whose body is not a valid cosignature of the checkpoint.
    BadResponse,
    /// No answer in time.
    Timeout,
    /// No connection, or it broke.
    Transport,
    /// The witness has a larger tree than this checkpoint's.
    Ahead,
    /// The log could not build the consistency proof.
    ProofError,
}

const OUTCOMES: [Outcome; 13] = [
    Outcome::Cosigned,
    Outcome::Conflict,
    Outcome::RootConflict,
    Outcome::UnknownLog,
    Outcome::Forbidden,
    Outcome::BadRequest,
    Outcome::BadProof,
    Outcome::HttpError,
    Outcome::BadResponse,
    Outcome::Timeout,
    Outcome::Transport,
    Outcome::Ahead,
    Outcome::ProofError,
];

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Cosigned => "cosigned",
            Outcome::Conflict => "conflict",
            Outcome::RootConflict => "root_conflict",
            Outcome::UnknownLog => "unknown_log",
            Outcome::Forbidden => "forbidden",
            Outcome::BadRequest => "bad_request",
            Outcome::BadProof => "bad_proof",
            Outcome::HttpError => "http_error",
            Outcome::BadResponse => "bad_response",
            Outcome::Timeout => "timeout",
            Outcome::Transport => "transport",
            Outcome::Ahead => "ahead",
            Outcome::ProofError => "proof_error",
        }
    }

    fn index(self) -> usize {
        OUTCOMES.iter().position(|&o| o == self).unwrap_or(0)
    }

    fn of_status(status: StatusCode) -> Outcome {
        match status {
            StatusCode::NOT_FOUND => Outcome::UnknownLog,
            StatusCode::FORBIDDEN => Outcome::Forbidden,
            StatusCode::BAD_REQUEST => Outcome::BadRequest,
            StatusCode::UNPROCESSABLE_ENTITY => Outcome::BadProof,
            StatusCode::CONFLICT => Outcome::RootConflict,
            _ => Outcome::HttpError,
        }
    }
}

/// Why a witness gave no cosignature for one checkpoint.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("HTTP {status}: {body:?}")]
    Status { status: StatusCode, body: String },
    #[error("{0}")]
    Transport(String),
    #[error("no answer within the witness timeout")]
    Timeout,
    #[error("bad answer: {0}")]
    Response(#[source] WitnessError),
    #[error("the witness has size {witness}, larger than this checkpoint's {size}")]
    Ahead { witness: u64, size: u64 },
    #[error("building the consistency proof: {0}")]
    Proof(#[source] rekor_log::LogError),
    #[error("the witness reported size {size} twice in a row")]
    Conflicts { size: u64 },
    #[error("the request: {0}")]
    Request(#[source] WitnessError),
}

impl Failure {
    fn outcome(&self) -> Outcome {
        match self {
            Failure::Status { status, .. } => Outcome::of_status(*status),
            Failure::Transport(_) => Outcome::Transport,
            Failure::Timeout => Outcome::Timeout,
            Failure::Response(_) => Outcome::BadResponse,
            Failure::Ahead { .. } => Outcome::Ahead,
            Failure::Proof(_) | Failure::Request(_) => Outcome::ProofError,
            Failure::Conflicts { .. } => Outcome::Conflict,
        }
    }
}

/// One witness of the policy, as the client sees it.
struct Remote {
    name: String,
    verifier: CosignatureVerifier,
    url: reqwest::Url,
    /// The size the witness last cosigned or reported; held while a request is in flight, so
    /// requests to one witness go one at a time.
    size: tokio::sync::Mutex<u64>,
    counts: [AtomicU64; OUTCOMES.len()],
    /// When a failure was last logged as a warning, and how many were not since.
    warned: Mutex<(Option<Instant>, u64)>,
}

impl Remote {
    fn count(&self, outcome: Outcome) {
        if let Some(counter) = self.counts.get(outcome.index()) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends `request` from the size this witness is at; after a 409 with another size, once
    /// more from that size. Returns the verified cosignature lines.
    async fn update(
        &self,
        http: &reqwest::Client,
        request: &WitnessRequest,
    ) -> Result<Vec<NoteSignature>, Failure> {
        let mut size = self.size.lock().await;
        let mut conflicts = 0;
        loop {
            let old = *size;
            if old > request.size {
                return Err(Failure::Ahead {
                    witness: old,
                    size: request.size,
                });
            }
            let proof = if old == 0 {
                Vec::new()
            } else {
                request.proofs.proof(old).await.map_err(Failure::Proof)?
            };
            let body = add_checkpoint_body(old, &proof, &request.note).map_err(Failure::Request)?;
            let (status, content_type, answer) = post(http, self.url.clone(), body).await?;
            match status {
                StatusCode::OK => {
                    let cosignatures =
                        cosignatures_from_response(&self.verifier, &request.note, &answer)
                            .map_err(Failure::Response)?;
                    *size = request.size;
                    self.count(Outcome::Cosigned);
                    return Ok(cosignatures);
                }
                StatusCode::CONFLICT if content_type.as_deref() == Some(TLOG_SIZE_CONTENT_TYPE) => {
                    let reported = parse_tlog_size(&answer).map_err(Failure::Response)?;
                    debug!(witness = %self.name, old, reported, "the witness is at another size");
                    *size = reported;
                    conflicts += 1;
                    if conflicts > 1 {
                        return Err(Failure::Conflicts { size: reported });
                    }
                    self.count(Outcome::Conflict);
                }
                status => {
                    return Err(Failure::Status {
                        status,
                        body: String::from_utf8_lossy(answer.get(..200).unwrap_or(&answer))
                            .into_owned(),
                    });
                }
            }
        }
    }

    /// Logs a failure: at debug level always, as a warning at most once per interval.
    fn report(&self, failure: &Failure) {
        debug!(witness = %self.name, error = %failure, "witness gave no cosignature");
        let now = Instant::now();
        let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        warned.1 = warned.1.saturating_add(1);
        if warned.0.is_some_and(|at| now < at + WARNING_INTERVAL) {
            return;
        }
        let failures = std::mem::take(&mut warned.1);
        warned.0 = Some(now);
        drop(warned);
        warn!(witness = %self.name, url = %self.url, failures, error = %failure, "witness gave no cosignature");
    }
}

/// Posts one `add-checkpoint` body; returns the status, the media type and at most
/// [`MAX_RESPONSE_SIZE`] bytes of body.
async fn post(
    http: &reqwest::Client,
    url: reqwest::Url,
    body: Vec<u8>,
) -> Result<(StatusCode, Option<String>, Bytes), Failure> {
    let transport = |e: reqwest::Error| {
        if e.is_timeout() {
            Failure::Timeout
        } else {
            Failure::Transport(describe(&e))
        }
    };
    let mut response = http.post(url).body(body).send().await.map_err(transport)?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    let mut answer = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if answer.len() + chunk.len() > MAX_RESPONSE_SIZE {
            return Err(Failure::Response(WitnessError::ResponseTooLarge {
                size: answer.len() + chunk.len(),
                max: MAX_RESPONSE_SIZE,
            }));
        }
        answer.extend_from_slice(&chunk);
    }
    Ok((status, content_type, Bytes::from(answer)))
}

/// A transport error's innermost cause.
fn describe(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// Gets checkpoints cosigned by the witnesses of a policy over HTTP(S).
#[derive(Clone)]
pub struct WitnessClient {
    policy: Arc<Policy>,
    remotes: Arc<[Arc<Remote>]>,
    http: reqwest::Client,
    timeout: Duration,
}

impl std::fmt::Debug for WitnessClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WitnessClient")
            .field("quorum", &self.policy.quorum_name())
            .field(
                "witnesses",
                &self
                    .remotes
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl WitnessClient {
    /// A client for the witnesses that can count towards `policy`'s quorum, waiting at most
    /// `timeout` for each checkpoint's cosignatures.
    ///
    /// # Errors
    ///
    /// [`WitnessSetupError::Url`] for a witness URL that does not parse;
    /// [`WitnessSetupError::Http`] if the HTTP client cannot be built.
    pub fn new(policy: Policy, timeout: Duration) -> Result<Self, WitnessSetupError> {
        let mut remotes = Vec::new();
        for witness in policy.quorum_witnesses() {
            let url = witness.add_checkpoint_url();
            let parsed = reqwest::Url::parse(&url).map_err(|_| WitnessSetupError::Url {
                witness: witness.name().to_string(),
                url: url.clone(),
            })?;
            remotes.push(Arc::new(Remote {
                name: witness.name().to_string(),
                verifier: witness.verifier().clone(),
                url: parsed,
                size: tokio::sync::Mutex::new(0),
                counts: Default::default(),
                warned: Mutex::new((None, 0)),
            }));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("rekor-rs/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(WitnessSetupError::Http)?;
        Ok(WitnessClient {
            policy: Arc::new(policy),
            remotes: remotes.into(),
            http,
            timeout,
        })
    }

    /// Whether any witness is asked at all (not for `quorum none`).
    pub fn has_witnesses(&self) -> bool {
        !self.remotes.is_empty()
    }
}

#[async_trait]
impl Witnessing for WitnessClient {
    async fn cosign(&self, request: WitnessRequest) -> Witnessed {
        let deadline = Instant::now() + self.timeout;
        let (sender, mut answers) = mpsc::channel(self.remotes.len().max(1));
        for remote in self.remotes.iter() {
            let remote = Arc::clone(remote);
            let http = self.http.clone();
            let request = request.clone();
            let sender = sender.clone();
            tokio::spawn(async move {
                let result = tokio::time::timeout_at(deadline, remote.update(&http, &request))
                    .await
                    .unwrap_or(Err(Failure::Timeout));
                if let Err(failure) = &result {
                    remote.count(failure.outcome());
                    remote.report(failure);
                }
                let _ = sender.send((remote.name.clone(), result.ok())).await;
            });
        }
        drop(sender);

        let mut cosigned: Vec<String> = Vec::new();
        let mut cosignatures = Vec::new();
        while let Ok(Some((name, answer))) = tokio::time::timeout_at(deadline, answers.recv()).await
        {
            let Some(lines) = answer else { continue };
            cosigned.push(name);
            cosignatures.extend(lines);
            if self.policy.satisfied(cosigned.iter().map(String::as_str)) {
                break;
            }
        }
        Witnessed {
            quorum: self.policy.satisfied(cosigned.iter().map(String::as_str)),
            cosignatures,
        }
    }

    fn request_counts(&self) -> Vec<WitnessRequestCount> {
        let mut counts = Vec::new();
        for remote in self.remotes.iter() {
            for (outcome, counter) in OUTCOMES.iter().zip(&remote.counts) {
                let count = counter.load(Ordering::Relaxed);
                if count > 0 {
                    counts.push(WitnessRequestCount {
                        witness: remote.name.clone(),
                        outcome: outcome.label(),
                        count,
                    });
                }
            }
        }
        counts
    }
}

/// The witness client `--witness-policy-path` and `--witness-timeout` configure, if any.
pub(crate) fn from_args(args: &ServerArgs) -> Result<Option<Arc<dyn Witnessing>>, RunError> {
    const FLAG: &str = "--witness-policy-path";
    let Some(path) = &args.witness_policy_path else {
        return Ok(None);
    };
    if args.witness_timeout.is_zero() {
        return Err(RunError::Flag {
            flag: "--witness-timeout",
            reason: "must be more than zero".into(),
        });
    }
    let flag_error = |reason: String| RunError::Flag { flag: FLAG, reason };
    let text =
        std::fs::read(path).map_err(|e| flag_error(format!("reading {}: {e}", path.display())))?;
    let policy =
        Policy::parse(&text).map_err(|e| flag_error(format!("{}: {e}", path.display())))?;
    let quorum = policy.quorum_name().to_string();
    let client = WitnessClient::new(policy, args.witness_timeout)
        .map_err(|e| flag_error(format!("{}: {e}", path.display())))?;
    if !client.has_witnesses() {
        info!(policy = %path.display(), "the witness policy requires no cosignature (quorum none); checkpoints are not witnessed");
        return Ok(None);
    }
    info!(
        policy = %path.display(),
        quorum,
        timeout = ?args.witness_timeout,
        fail_closed = args.witness_fail_closed,
        "checkpoints are witnessed"
    );
    Ok(Some(Arc::new(client)))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServerArgs,
    }

    fn args(extra: &[&str]) -> Result<ServerArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("rekor-server").chain(extra.iter().copied()))
            .map(|cli| cli.args)
    }

    #[test]
    fn policy_errors_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy");
        std::fs::write(&path, "# witnesses\nwitness w1 nokey https://w1.example\n").unwrap();
        let path = path.display().to_string();
        let error = from_args(&args(&["--witness-policy-path", &path]).unwrap()).unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("invalid --witness-policy-path: "),
            "{text}"
        );
        assert!(text.contains(&path) && text.contains("line 2"), "{text}");

        let missing = dir.path().join("absent").display().to_string();
        let error = from_args(&args(&["--witness-policy-path", &missing]).unwrap()).unwrap_err();
        assert!(error.to_string().contains("reading"), "{error}");
    }

    #[test]
    fn flags() {
        let plain = args(&[]).unwrap();
        assert!(plain.witness_policy_path.is_none());
        assert_eq!(plain.witness_timeout, Duration::from_secs(1));
        assert!(!plain.witness_fail_closed);
        assert!(from_args(&plain).unwrap().is_none());
        // Failing closed means nothing without witnesses.
        assert!(args(&["--witness-fail-closed"]).is_err());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy");
        std::fs::write(&path, "quorum none\n").unwrap();
        let path = path.display().to_string();
        let none = args(&["--witness-policy-path", &path, "--witness-timeout", "250ms"]).unwrap();
        assert_eq!(none.witness_timeout, Duration::from_millis(250));
        assert!(
            from_args(&none).unwrap().is_none(),
            "quorum none asks no witness"
        );
        let zero = args(&["--witness-policy-path", &path, "--witness-timeout", "0s"]).unwrap();
        assert!(from_args(&zero).is_err());
    }

    #[test]
    fn every_outcome_has_its_own_label() {
        let labels: std::collections::HashSet<&str> = OUTCOMES.iter().map(|o| o.label()).collect();
        assert_eq!(labels.len(), OUTCOMES.len());
        for (index, outcome) in OUTCOMES.iter().enumerate() {
            assert_eq!(outcome.index(), index);
        }
    }
}
