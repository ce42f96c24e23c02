//! Witnessing (`--witness-policy-path`) against fake tlog-witness witnesses run in the test:
//! every checkpoint served and returned carries a cosignature, checked here by hand
//! (c2sp.org/tlog-cosignature, Ed25519 with ed25519-dalek); the witness checks each consistency
//! proof with the third-party `tlog_tiles` crate; a restarted log learns the witness's size from
//! a 409; a missing quorum fails open (writes still answer within the timeout) or, with
//! `--witness-fail-closed`, withholds the checkpoint (writes refused) until the witness is back.
#![allow(
    clippy::unwrap_used,
    reason = "the fake witness's lock is never poisoned; a panic fails the test"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail, ensure};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rekor_testkit::fixtures::{artifact, write_log_key};
use rekor_testkit::process::DEFAULT_HOSTNAME;
use rekor_testkit::{ClientKey, KeyKind, ServerConfig, Submission, TestLog, audit, verify_entry};
use sha2::{Digest as _, Sha256};

/// What the fake witness does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// Checks and cosigns, as tlog-witness says.
    Cosign = 0,
    /// Answers 503.
    Fail = 1,
    /// Never answers.
    Hang = 2,
}

/// One request the witness received, and its answer.
#[derive(Clone, Debug)]
struct Recorded {
    old: u64,
    proof_len: usize,
    size: u64,
    status: u16,
}

/// A tlog-witness `add-checkpoint` endpoint at `http://<address>/w1/add-checkpoint`, written
/// from the spec without the crates under test.
#[derive(Clone)]
struct FakeWitness {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    key: SigningKey,
    origin: String,
    log_key: VerifyingKey,
    mode: AtomicU8,
    state: Mutex<WitnessState>,
}

struct WitnessState {
    size: u64,
    root: [u8; 32],
    requests: Vec<Recorded>,
}

impl FakeWitness {
    async fn start(
        name: &str,
        seed: u8,
        log_key: [u8; 32],
        mode: Mode,
    ) -> anyhow::Result<(FakeWitness, SocketAddr)> {
        let witness = FakeWitness {
            inner: Arc::new(Inner {
                name: name.to_string(),
                key: SigningKey::from_bytes(&[seed; 32]),
                origin: DEFAULT_HOSTNAME.to_string(),
                log_key: VerifyingKey::from_bytes(&log_key)?,
                mode: AtomicU8::new(mode as u8),
                state: Mutex::new(WitnessState {
                    size: 0,
                    root: [0; 32],
                    requests: Vec::new(),
                }),
            }),
        };
        let router = Router::new()
            .route("/w1/add-checkpoint", post(add_checkpoint))
            .with_state(witness.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok((witness, address))
    }

    fn set_mode(&self, mode: Mode) {
        self.inner.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn public_key(&self) -> [u8; 32] {
        self.inner.key.verifying_key().to_bytes()
    }

    /// SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4] (tlog-cosignature).
    fn key_id(&self) -> [u8; 4] {
        key_id(&self.inner.name, &self.public_key())
    }

    /// `name+hex(key ID)+base64(0x04 ‖ public key)` (signed-note vkey).
    fn vkey(&self) -> String {
        let mut raw = vec![0x04];
        raw.extend_from_slice(&self.public_key());
        format!(
            "{}+{}+{}",
            self.inner.name,
            hex(&self.key_id()),
            STANDARD.encode(raw)
        )
    }

    fn requests(&self) -> Vec<Recorded> {
        self.inner.state.lock().unwrap().requests.clone()
    }

    /// The witness's answer to one body: status, content type, body.
    fn answer(&self, body: &[u8]) -> (StatusCode, &'static str, String) {
        let bad = |why: &str| (StatusCode::BAD_REQUEST, "text/plain", why.to_string());
        let Ok(text) = std::str::from_utf8(body) else {
            return bad("not UTF-8");
        };
        let Some((first, mut rest)) = text.split_once('\n') else {
            return bad("no old line");
        };
        let Some(old) = first
            .strip_prefix("old ")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return bad("bad old line");
        };
        let mut proof = Vec::new();
        loop {
            let Some((line, after)) = rest.split_once('\n') else {
                return bad("no blank line");
            };
            rest = after;
            if line.is_empty() {
                break;
            }
            match STANDARD
                .decode(line)
                .ok()
                .and_then(|h| <[u8; 32]>::try_from(h).ok())
            {
                Some(hash) => proof.push(tlog_tiles::Hash(hash)),
                None => return bad("bad proof line"),
            }
        }
        let note = rest;
        let Some((body, signatures)) = note.split_once("\n\n") else {
            return bad("not a note");
        };
        let signed = format!("{body}\n");
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root] = lines[..] else {
            return bad("not a checkpoint");
        };
        let (Ok(size), Some(root)) = (
            size.parse::<u64>(),
            STANDARD
                .decode(root)
                .ok()
                .and_then(|r| <[u8; 32]>::try_from(r).ok()),
        ) else {
            return bad("bad size or root");
        };
        if origin != self.inner.origin {
            return (StatusCode::NOT_FOUND, "text/plain", "unknown log".into());
        }
        let log_prefix = format!("\u{2014} {origin} ");
        let log_signed = signatures.lines().any(|line| {
            line.strip_prefix(&log_prefix)
                .and_then(|b64| STANDARD.decode(b64).ok())
                .and_then(|raw| ed25519_dalek::Signature::from_slice(raw.get(4..)?).ok())
                .is_some_and(|sig| {
                    self.inner
                        .log_key
                        .verify_strict(signed.as_bytes(), &sig)
                        .is_ok()
                })
        });
        if !log_signed {
            return (
                StatusCode::FORBIDDEN,
                "text/plain",
                "no log signature".into(),
            );
        }
        if old > size {
            return bad("old size above the checkpoint size");
        }

        let mut state = self.inner.state.lock().unwrap();
        let record = |status: StatusCode, state: &mut WitnessState| {
            state.requests.push(Recorded {
                old,
                proof_len: proof.len(),
                size,
                status: status.as_u16(),
            });
        };
        if old != state.size {
            record(StatusCode::CONFLICT, &mut state);
            return (
                StatusCode::CONFLICT,
                "text/x.tlog.size",
                format!("{}\n", state.size),
            );
        }
        let consistent = if old == 0 {
            proof.is_empty()
        } else if old == size {
            proof.is_empty() && root == state.root
        } else {
            tlog_tiles::check_tree(
                &proof,
                size,
                tlog_tiles::Hash(root),
                old,
                tlog_tiles::Hash(state.root),
            )
            .is_ok()
        };
        if !consistent {
            record(StatusCode::UNPROCESSABLE_ENTITY, &mut state);
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                "text/plain",
                "bad proof".into(),
            );
        }
        state.size = size;
        state.root = root;
        record(StatusCode::OK, &mut state);
        drop(state);

        let time = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let message = format!("cosignature/v1\ntime {time}\n{signed}");
        let signature = self.inner.key.sign(message.as_bytes());
        let mut raw = self.key_id().to_vec();
        raw.extend_from_slice(&time.to_be_bytes());
        raw.extend_from_slice(&signature.to_bytes());
        (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            format!("\u{2014} {} {}\n", self.inner.name, STANDARD.encode(raw)),
        )
    }
}

async fn add_checkpoint(State(witness): State<FakeWitness>, body: Bytes) -> Response {
    match witness.inner.mode.load(Ordering::SeqCst) {
        1 => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        2 => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        _ => {}
    }
    let (status, content_type, body) = witness.answer(&body);
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([0x0a, 0x04]);
    hasher.update(public_key);
    let hash: [u8; 32] = hasher.finalize().into();
    [hash[0], hash[1], hash[2], hash[3]]
}

/// Checks by hand that `note` carries a valid `cosignature/v1` line from the witness named
/// `name` with `public_key`, over the note's text; returns its timestamp.
fn check_cosigned(note: &str, name: &str, public_key: &[u8; 32]) -> anyhow::Result<u64> {
    let (body, signatures) = note
        .split_once("\n\n")
        .context("no blank line in the checkpoint")?;
    let prefix = format!("\u{2014} {name} ");
    let line = signatures
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .with_context(|| format!("no cosignature from {name} in {note:?}"))?;
    let raw = STANDARD.decode(line)?;
    ensure!(
        raw.len() == 4 + 8 + 64,
        "cosignature of {} bytes",
        raw.len()
    );
    ensure!(raw[..4] == key_id(name, public_key), "cosignature key ID");
    let time = u64::from_be_bytes(raw[4..12].try_into()?);
    let message = format!("cosignature/v1\ntime {time}\n{body}\n");
    let signature = ed25519_dalek::Signature::from_slice(&raw[12..])?;
    VerifyingKey::from_bytes(public_key)?
        .verify_strict(message.as_bytes(), &signature)
        .context("the cosignature does not verify")?;
    Ok(time)
}

/// The checkpoint's signature lines other than the log's.
fn other_signatures(note: &str) -> Vec<String> {
    let log_prefix = format!("\u{2014} {DEFAULT_HOSTNAME} ");
    note.split_once("\n\n")
        .map(|(_, signatures)| {
            signatures
                .lines()
                .filter(|line| !line.starts_with(&log_prefix))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn checkpoint_size(note: &str) -> anyhow::Result<u64> {
    Ok(note.lines().nth(1).context("no size line")?.parse()?)
}

/// The value of the metric line `name{labels...}` whose labels contain every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The fake witnesses need the log's key before the policy naming them is written.
fn log_public_key(dir: &Path) -> anyhow::Result<[u8; 32]> {
    let key_file = dir.join("log-key.pem");
    write_log_key(&key_file, DEFAULT_HOSTNAME)?;
    rekor_testkit::TrustedLog::from_signer_file(&key_file, DEFAULT_HOSTNAME)?
        .ed25519_public_key
        .context("the test log key is Ed25519")
}

fn config_for(dir: &Path, policy: &str, flags: &[&str]) -> anyhow::Result<ServerConfig> {
    let policy_file = dir.join("witnesses.policy");
    std::fs::write(&policy_file, policy)?;
    let mut config = ServerConfig::new(env!("CARGO_BIN_EXE_rekor-server-posix"), dir.join("log"))
        .with_args([
            "--witness-policy-path".to_string(),
            policy_file.display().to_string(),
        ])
        .with_args(flags.iter().copied());
    config.signer_file = Some(dir.join("log-key.pem"));
    Ok(config)
}

fn submission(key: &ClientKey, n: usize) -> anyhow::Result<Submission> {
    Ok(key.hashed_rekord(&artifact("witness", n)?)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_carry_verified_cosignatures() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log_key = log_public_key(dir.path())?;
    let (witness, address) =
        FakeWitness::start("witness.test/w1", 1, log_key, Mode::Cosign).await?;
    let policy = format!(
        "# one witness, required\n\
         log {DEFAULT_HOSTNAME}+00000000+AQ== \n\
         witness w1 {} http://{address}/w1/\n\
         quorum w1\n",
        witness.vkey()
    );
    let config = config_for(dir.path(), &policy, &["--witness-timeout", "10s"])?;
    let name = "witness.test/w1";
    let key = ClientKey::generate(KeyKind::EcdsaP256)?;

    let log = TestLog::start(&config).await?;
    for n in 0..4 {
        let submission = submission(&key, n)?;
        let entry = if n % 2 == 0 {
            log.http.create_entry(&submission).await?
        } else {
            log.grpc.create_entry_for(&submission).await?
        };
        verify_entry(&log.trust, &submission, &entry)?;
        let proof = entry.proof.context("no inclusion proof")?;
        check_cosigned(&proof.checkpoint, name, &witness.public_key())
            .with_context(|| format!("write answer {n}"))?;
        ensure!(checkpoint_size(&proof.checkpoint)? == u64::try_from(n)? + 1);
    }
    let served = String::from_utf8(log.http.checkpoint().await?.to_vec())?;
    check_cosigned(&served, name, &witness.public_key()).context("served checkpoint")?;
    ensure!(checkpoint_size(&served)? == 4);
    ensure!(other_signatures(&served).len() == 1, "{served:?}");
    audit(&log.http, &log.trust).await?;

    // The first request is from 0, without a proof; each next one from the size before, with a
    // proof the witness checked (it answers 422 otherwise).
    let requests = witness.requests();
    let sent: Vec<(u64, u64, u16)> = requests.iter().map(|r| (r.old, r.size, r.status)).collect();
    ensure!(
        sent == [(0, 1, 200), (1, 2, 200), (2, 3, 200), (3, 4, 200)],
        "{requests:?}"
    );
    ensure!(
        requests[0].proof_len == 0 && requests[2].proof_len > 0,
        "{requests:?}"
    );

    let metrics = log.metrics_text().await?;
    let cosigned = metric(
        &metrics,
        "rekor_v2_witness_requests_total",
        &["witness=\"w1\"", "outcome=\"cosigned\""],
    );
    ensure!(cosigned == 4.0, "cosigned requests {cosigned}:\n{metrics}");
    ensure!(metric(&metrics, "rekor_v2_checkpoints_unwitnessed_total", &[]) == 0.0);
    log.stop().await?;

    // A restarted log does not know the witness's size: the witness answers 409 with it, and
    // the log retries from there with a proof.
    let log = TestLog::start(&config).await?;
    let submission = submission(&key, 100)?;
    let entry = log.http.create_entry(&submission).await?;
    verify_entry(&log.trust, &submission, &entry)?;
    let proof = entry.proof.context("no inclusion proof")?;
    check_cosigned(&proof.checkpoint, name, &witness.public_key())?;
    let requests = witness.requests();
    let sent: Vec<(u64, u64, u16)> = requests[4..]
        .iter()
        .map(|r| (r.old, r.size, r.status))
        .collect();
    ensure!(sent == [(0, 5, 409), (4, 5, 200)], "{requests:?}");
    ensure!(requests[5].proof_len > 0);
    let metrics = log.metrics_text().await?;
    ensure!(
        metric(
            &metrics,
            "rekor_v2_witness_requests_total",
            &["witness=\"w1\"", "outcome=\"conflict\""]
        ) == 1.0,
        "{metrics}"
    );
    log.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_quorum_checkpoints_are_published_within_the_timeout() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log_key = log_public_key(dir.path())?;
    let (slow, slow_address) = FakeWitness::start("slow.test", 2, log_key, Mode::Hang).await?;
    // A witness nobody listens for: the port was free a moment ago.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?
    };
    let down_key = SigningKey::from_bytes(&[3; 32]).verifying_key().to_bytes();
    let mut raw = vec![0x04];
    raw.extend_from_slice(&down_key);
    let down_vkey = format!(
        "down.test+{}+{}",
        hex(&key_id("down.test", &down_key)),
        STANDARD.encode(raw)
    );
    let policy = format!(
        "witness down {down_vkey} http://{closed}\n\
         witness slow {} http://{slow_address}/w1\n\
         group either any down slow\n\
         quorum either\n",
        slow.vkey()
    );
    let config = config_for(dir.path(), &policy, &["--witness-timeout", "500ms"])?;
    let key = ClientKey::generate(KeyKind::EcdsaP256)?;

    let log = TestLog::start(&config).await?;
    for n in 0..2 {
        let submission = submission(&key, n)?;
        let started = Instant::now();
        let entry = log.http.create_entry(&submission).await?;
        let took = started.elapsed();
        verify_entry(&log.trust, &submission, &entry)?;
        // The slow witness holds the checkpoint for the whole timeout, and no longer.
        ensure!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(5),
            "write {n} took {took:?}"
        );
        let proof = entry.proof.context("no inclusion proof")?;
        ensure!(
            other_signatures(&proof.checkpoint).is_empty(),
            "{:?}",
            proof.checkpoint
        );
    }
    let served = String::from_utf8(log.http.checkpoint().await?.to_vec())?;
    ensure!(checkpoint_size(&served)? == 2 && other_signatures(&served).is_empty());

    let metrics = log.metrics_text().await?;
    ensure!(
        metric(&metrics, "rekor_v2_checkpoints_unwitnessed_total", &[]) == 2.0,
        "{metrics}"
    );
    ensure!(
        metric(
            &metrics,
            "rekor_v2_witness_requests_total",
            &["witness=\"down\"", "outcome=\"transport\""]
        ) == 2.0,
        "{metrics}"
    );
    ensure!(
        metric(
            &metrics,
            "rekor_v2_witness_requests_total",
            &["witness=\"slow\"", "outcome=\"timeout\""]
        ) >= 1.0,
        "{metrics}"
    );
    log.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_closed_publishes_no_checkpoint_without_the_quorum() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log_key = log_public_key(dir.path())?;
    let (witness, address) = FakeWitness::start("witness.test/w1", 4, log_key, Mode::Fail).await?;
    let policy = format!(
        "witness w1 {} http://{address}/w1\nquorum w1\n",
        witness.vkey()
    );
    let config = config_for(
        dir.path(),
        &policy,
        &["--witness-timeout", "2s", "--witness-fail-closed"],
    )?;
    let key = ClientKey::generate(KeyKind::EcdsaP256)?;

    let log = TestLog::start(&config).await?;
    let empty = log.http.checkpoint().await?;
    ensure!(checkpoint_size(std::str::from_utf8(&empty)?)? == 0);

    // The entry whose checkpoint is withheld gets 503: transient, retry later.
    let first = log
        .http
        .post_entry(submission(&key, 0)?.request_json_text())
        .await?;
    ensure!(
        first.status == 503,
        "first write: {} {}",
        first.status,
        first.text()
    );
    // While publication fails, new entries are refused as unavailable, and not logged.
    for n in 1..3 {
        let reply = log
            .http
            .post_entry(submission(&key, n)?.request_json_text())
            .await?;
        ensure!(
            reply.status == 503,
            "write {n}: {} {}",
            reply.status,
            reply.text()
        );
    }
    ensure!(
        log.http.checkpoint().await? == empty,
        "a checkpoint was published without the quorum"
    );
    let metrics = log.metrics_text().await?;
    ensure!(
        metric(&metrics, "rekor_v2_checkpoints_withheld_total", &[]) >= 1.0,
        "{metrics}"
    );
    ensure!(metric(&metrics, "rekor_v2_checkpoints_unwitnessed_total", &[]) == 0.0);

    // The witness is back: the withheld checkpoint and the next entries are published cosigned.
    witness.set_mode(Mode::Cosign);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 10;
    let (submission, entry) = loop {
        let attempt = submission(&key, n)?;
        let reply = log.http.post_entry(attempt.request_json_text()).await?;
        if reply.status == 201 {
            let entry = rekor_testkit::LogEntry::from_protojson(&reply.json()?)?;
            break (attempt, entry);
        }
        if Instant::now() > deadline {
            bail!(
                "no write accepted after the witness came back: {}",
                reply.text()
            );
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    verify_entry(&log.trust, &submission, &entry)?;
    ensure!(
        entry.log_index == 1,
        "only the first entry was logged before"
    );
    let proof = entry.proof.context("no inclusion proof")?;
    check_cosigned(&proof.checkpoint, "witness.test/w1", &witness.public_key())?;
    let served = String::from_utf8(log.http.checkpoint().await?.to_vec())?;
    ensure!(checkpoint_size(&served)? == 2);
    check_cosigned(&served, "witness.test/w1", &witness.public_key())?;
    audit(&log.http, &log.trust).await?;
    log.stop().await?;
    Ok(())
}
