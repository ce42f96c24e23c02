//! The log against our own witness, both real processes on 127.0.0.1: `rekor-server-posix` with
//! `--witness-policy-path` naming a running `rekor-witness`. Checked with code of neither: each
//! write answer's checkpoint and the served one carry the witness's cosignature, verified here
//! with ed25519-dalek over the message built by hand from the witness's `info` vkey, and the
//! witness's monitor endpoint follows the log; after a SIGKILL of the witness the log is
//! cosigned again from where the witness left off; a second log with the same key and origin but
//! other entries (a fork) is refused by the witness, which keeps the first log's tree.
//!
//! `rekor-server-posix` is another package's binary: it is taken from the same target directory
//! (`cargo test --workspace`, which `make test` runs, builds it first).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test: failures should be loud"
)]

mod common;

use std::path::{Path, PathBuf};

use common::{BIN, WitnessKey, WitnessProcess, info_vkey, note_signature_lines, note_text};
use rekor_testkit::fixtures::artifact;
use rekor_testkit::{ClientKey, KeyKind, ServerConfig, TestLog, verify_entry};

const ORIGIN: &str = "witnessed.log.test";

fn server_binary() -> PathBuf {
    let path = Path::new(BIN).with_file_name("rekor-server-posix");
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build -p rekor-server-posix`; `cargo test \
         --workspace` does)",
        path.display()
    );
    path
}

/// The log's note verifier key, as its `info` prints it (generating the key on first use).
fn log_vkey(config: &ServerConfig) -> String {
    let info = config.run_subcommand("info").unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("verifier key:"))
        .map(|vkey| vkey.trim().to_owned())
        .unwrap_or_else(|| panic!("no verifier key in {info:?}"))
}

/// Runs `rekor-cli` (from the same target directory) with `args`.
fn rekor_cli(args: &[&str]) -> std::process::Output {
    let path = Path::new(BIN).with_file_name("rekor-cli");
    assert!(
        path.exists(),
        "{} is missing: build it first",
        path.display()
    );
    std::process::Command::new(path)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// The cosignature lines of `note` by `witness`, each verified; returns their timestamps.
fn cosigned_by(witness: &WitnessKey, note: &[u8]) -> Vec<u64> {
    let text = note_text(note);
    note_signature_lines(note)
        .iter()
        .filter(|line| line.starts_with(&format!("\u{2014} {} ", witness.name)))
        .map(|line| witness.verify_line(line, &text))
        .collect()
}

async fn write(log: &TestLog, key: &ClientKey, label: &str, n: usize) -> Vec<u8> {
    let submission = key.hashed_rekord(&artifact(label, n).unwrap()).unwrap();
    let entry = log.http.create_entry(&submission).await.unwrap();
    verify_entry(&log.trust, &submission, &entry).unwrap();
    entry
        .proof
        .expect("an inclusion proof")
        .checkpoint
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_cosigned_by_rekor_witness_which_refuses_a_fork() {
    let dir = tempfile::tempdir().unwrap();
    let log_config = |name: &str, policy: &Path, extra: &[&str]| {
        let mut config = ServerConfig::new(server_binary(), dir.path().join(name));
        config.hostname = ORIGIN.to_owned();
        config.with_args(
            [
                "--witness-policy-path",
                policy.to_str().unwrap(),
                "--witness-timeout",
                "5s",
            ]
            .into_iter()
            .chain(extra.iter().copied()),
        )
    };

    // The witness knows the log's key; the log's policy names the witness.
    let witness_dir = dir.path().join("witness");
    let witness_vkey = info_vkey(&witness_dir);
    let witness_key = WitnessKey::from_vkey(&witness_vkey);
    let policy = dir.path().join("witnesses.policy");
    let first = log_config("first", &policy, &["--witness-fail-closed"]);
    let config = dir.path().join("logs.conf");
    let log_vkey = log_vkey(&first);
    std::fs::write(&config, format!("log {ORIGIN} {log_vkey}\n")).unwrap();
    let witness = WitnessProcess::start(&witness_dir, &config);
    std::fs::write(
        &policy,
        format!(
            "witness w1 {witness_vkey} http://{}\nquorum w1\n",
            witness.addr
        ),
    )
    .unwrap();

    // Failing closed: every checkpoint a write is answered with carries the cosignature.
    let log = TestLog::start(&first).await.unwrap();
    let key = ClientKey::generate(KeyKind::EcdsaP256).unwrap();
    for n in 0..3 {
        let note = write(&log, &key, "witnessed", n).await;
        assert_eq!(cosigned_by(&witness_key, &note).len(), 1, "write {n}");
    }
    let served = log.http.checkpoint().await.unwrap();
    assert_eq!(cosigned_by(&witness_key, &served).len(), 1);
    let monitored = witness.monitor(ORIGIN);
    assert_eq!(monitored.status, 200);
    assert_eq!(note_text(monitored.text().as_bytes()), note_text(&served));
    // rekor-cli checks the quorum with the same policy file.
    let url = format!("http://{}", log.http.address());
    let policy_arg = policy.to_str().unwrap();
    let cli_args = [
        "--url",
        url.as_str(),
        "--vkey",
        log_vkey.as_str(),
        "--witness-policy",
        policy_arg,
        "checkpoint",
    ];
    let output = rekor_cli(&cli_args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "rekor-cli: {output:?}");
    assert!(stdout.contains("Witnesses: quorum met (w1)"), "{stdout}");

    // SIGKILL the witness: it comes back with its state, and the log is cosigned on from there.
    witness.kill9();
    let witness = WitnessProcess::start(&witness_dir, &config);
    std::fs::write(
        &policy,
        format!(
            "witness w1 {witness_vkey} http://{}\nquorum w1\n",
            witness.addr
        ),
    )
    .unwrap();
    log.stop().await.unwrap();
    let log = TestLog::start(&first).await.unwrap();
    let note = write(&log, &key, "witnessed", 3).await;
    assert_eq!(
        cosigned_by(&witness_key, &note).len(),
        1,
        "after the witness restarted"
    );
    let grown = log.http.checkpoint().await.unwrap();
    assert!(
        note_text(&grown).contains("\n4\n"),
        "size 4: {}",
        note_text(&grown)
    );
    log.stop().await.unwrap();

    // A fork: the same key and origin, other entries. Failing open, it publishes, uncosigned;
    // the witness keeps the first log's tree.
    let fork = log_config("fork", &policy, &[]);
    std::fs::create_dir_all(dir.path().join("fork/.rekor")).unwrap();
    std::fs::copy(
        dir.path().join("first/.rekor/signer.pem"),
        dir.path().join("fork/.rekor/signer.pem"),
    )
    .unwrap();
    let forked = TestLog::start(&fork).await.unwrap();
    for n in 0..5 {
        let note = write(&forked, &key, "forked", n).await;
        assert!(
            cosigned_by(&witness_key, &note).is_empty(),
            "the witness cosigned fork checkpoint {n}"
        );
    }
    let monitored = witness.monitor(ORIGIN);
    assert_eq!(note_text(monitored.text().as_bytes()), note_text(&grown));
    // The fork's checkpoints verify with the log key, but not with the witness policy.
    let url = format!("http://{}", forked.http.address());
    let output = rekor_cli(&[
        "--url",
        url.as_str(),
        "--vkey",
        log_vkey.as_str(),
        "--witness-policy",
        policy.to_str().unwrap(),
        "checkpoint",
    ]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "rekor-cli on the fork: {output:?}"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("lacks the witness quorum"),
        "{output:?}"
    );
    forked.stop().await.unwrap();
}
