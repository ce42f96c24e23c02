//! c2sp.org/tlog-witness v1.0.0 `add-checkpoint` against the real binary: cosigning, every
//! status code, forks, races, ECDSA logs, and the monitoring endpoint.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: a failure is a test failure"
)]

mod common;

use std::sync::{Arc, Barrier};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use rekor_note::{KeyName, LogSigner};
use rekor_tlog::{Hash, empty_root};
use tempfile::TempDir;

const A: &str = "log-a.test";
const B: &str = "log-b.test";

fn start(logs: &[&TestLog]) -> (TempDir, WitnessProcess) {
    start_with(logs, &[])
}

fn start_with(logs: &[&TestLog], extra: &[&str]) -> (TempDir, WitnessProcess) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), logs);
    let witness = WitnessProcess::start_with(&dir.path().join("state"), &config, extra);
    (dir, witness)
}

fn key_of(witness: &WitnessProcess) -> WitnessKey {
    WitnessKey::from_vkey(&info_vkey(&witness.dir))
}

fn assert_status(response: &Response, status: u16, what: &str) {
    assert_eq!(response.status, status, "{what}: {}", response.text());
}

/// The tree size in the monitoring endpoint's checkpoint.
fn monitored_size(witness: &WitnessProcess, origin: &str) -> u64 {
    let response = witness.monitor(origin);
    assert_status(&response, 200, "monitor");
    note_text(&response.body)
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn first_checkpoint_and_growth_are_cosigned_and_verify_independently() {
    let mut log = TestLog::ed25519(A, 1);
    log.grow_to(5);
    let (_dir, witness) = start(&[&log]);
    let key = key_of(&witness);

    let first = witness.add(&log.body(0, 5));
    assert_status(&first, 200, "old 0");
    assert_eq!(
        first.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    let line = first.text();
    assert_eq!(line.lines().count(), 1, "one cosignature line: {line:?}");
    let timestamp = key.verify_line(&line, &note_text(&log.checkpoint(5)));
    assert!(
        timestamp.abs_diff(now()) < 120,
        "timestamp {timestamp} is now"
    );

    log.grow_to(12);
    let growth = witness.add(&log.body(5, 12));
    assert_status(&growth, 200, "5 -> 12");
    let cosignature = growth.text();
    key.verify_line(&cosignature, &note_text(&log.checkpoint(12)));

    // The monitoring endpoint: the checkpoint, the log's signature, then the cosignature.
    let monitored = witness.monitor(A);
    assert_status(&monitored, 200, "monitor");
    assert_eq!(
        monitored.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(note_text(&monitored.body), note_text(&log.checkpoint(12)));
    let lines = note_signature_lines(&monitored.body);
    assert_eq!(
        lines,
        [
            note_signature_lines(&log.checkpoint(12))[0].clone(),
            cosignature
        ]
    );
}

#[test]
fn wrong_old_size_gets_409_with_the_latest_size() {
    let mut a = TestLog::ed25519(A, 1);
    let mut b = TestLog::ed25519(B, 2);
    a.grow_to(12);
    b.grow_to(12);
    let (_dir, witness) = start(&[&a, &b]);
    assert_status(&witness.add(&a.body(0, 5)), 200, "old 0");

    for (old, what) in [(0, "old 0 again"), (3, "old below"), (7, "old above")] {
        let response = witness.add(&a.body(old, 12));
        assert_status(&response, 409, what);
        assert_eq!(
            response.content_type.as_deref(),
            Some("text/x.tlog.size"),
            "{what}"
        );
        assert_eq!(response.text(), "5\n", "{what}");
    }
    // A log never cosigned has latest size 0.
    let response = witness.add(&b.body(4, 12));
    assert_status(&response, 409, "unseen log");
    assert_eq!(response.content_type.as_deref(), Some("text/x.tlog.size"));
    assert_eq!(response.text(), "0\n");
    // Retrying from the size the 409 gave works.
    assert_status(&witness.add(&a.body(5, 12)), 200, "retry from 5");
}

#[test]
fn bad_proofs_get_422_and_change_nothing() {
    let mut a = TestLog::ed25519(A, 1);
    let mut b = TestLog::ed25519(B, 2);
    a.grow_to(12);
    b.grow_to(3);
    let (_dir, witness) = start(&[&a, &b]);
    assert_status(&witness.add(&a.body(0, 7)), 200, "old 0");

    let good = a.proof(7, 12);
    let mut flipped = good.clone();
    assert!(good.len() > 2, "{good:?}");
    flipped[1].0[31] ^= 0x80;
    let mut extra = good.clone();
    extra.push(Hash([7; 32]));
    let cases = [
        (flipped, "a flipped bit"),
        (good[..good.len() - 1].to_vec(), "a missing hash"),
        (extra, "an extra hash"),
        (a.proof(6, 12), "the proof from another size"),
        (Vec::new(), "no proof"),
    ];
    for (proof, what) in cases {
        let response = witness.add(&add_body(7, &proof, &a.checkpoint(12)));
        assert_status(&response, 422, what);
        assert_eq!(monitored_size(&witness, A), 7, "{what}: state unchanged");
    }
    // With old 0 the proof must be empty.
    let response = witness.add(&add_body(0, &[Hash([1; 32])], &b.checkpoint(3)));
    assert_status(&response, 422, "proof with old 0");
    assert_eq!(witness.monitor(B).status, 404, "log b still never cosigned");

    assert_status(
        &witness.add(&add_body(7, &good, &a.checkpoint(12))),
        200,
        "good proof",
    );
}

#[test]
fn forks_are_refused_and_change_nothing() {
    let mut log = TestLog::ed25519(A, 1);
    let mut fork = log.fork(1);
    log.grow_to(16);
    fork.grow_to(16);
    assert_ne!(log.root(10), fork.root(10));
    let (_dir, witness) = start(&[&log]);
    let key = key_of(&witness);
    let cosigned = witness.add(&log.body(0, 10));
    assert_status(&cosigned, 200, "old 0");

    // Same size, another root: 409, but not the size-carrying kind (retrying cannot help).
    let response = witness.add(&fork.body(10, 10));
    assert_status(&response, 409, "same-size fork");
    assert_eq!(
        response.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    // A larger tree that does not extend the cosigned one: its proof cannot verify.
    let response = witness.add(&fork.body(10, 16));
    assert_status(&response, 422, "larger fork");
    // Nothing changed: the monitored checkpoint is still the one cosigned first.
    let monitored = witness.monitor(A);
    assert_eq!(note_text(&monitored.body), note_text(&log.checkpoint(10)));
    let lines = note_signature_lines(&monitored.body);
    assert_eq!(lines.last(), Some(&cosigned.text()));
    key.verify_line(&cosigned.text(), &note_text(&log.checkpoint(10)));

    // The honest log carries on; the fork stays refused at the new size too.
    assert_status(&witness.add(&log.body(10, 16)), 200, "honest growth");
    assert_status(&witness.add(&fork.body(16, 16)), 409, "fork at 16");
    let response = witness.add(&log.body(0, 16));
    assert_eq!(response.text(), "16\n");
    // Re-submitting the cosigned head is cosigned again (a fresh cosignature, same tree).
    let again = witness.add(&log.body(16, 16));
    assert_status(&again, 200, "same checkpoint again");
    key.verify_line(&again.text(), &note_text(&log.checkpoint(16)));
}

#[test]
fn unknown_origins_get_404_and_untrusted_signatures_403() {
    let mut log = TestLog::ed25519(A, 1);
    log.grow_to(3);
    let (_dir, witness) = start(&[&log]);

    let mut unknown = TestLog::ed25519("unknown.test", 3);
    unknown.grow_to(3);
    assert_status(&witness.add(&unknown.body(0, 3)), 404, "unknown origin");

    // The right origin, signed by a key the witness does not trust.
    let mut impostor = TestLog::ed25519(A, 9);
    impostor.grow_to(3);
    assert_status(&witness.add(&impostor.body(0, 3)), 403, "other key");

    // The trusted key's line, with a corrupted signature.
    let note = log.checkpoint(3);
    let corrupted = corrupt_last_signature(&note);
    assert_status(
        &witness.add(&add_body(0, &[], &corrupted)),
        403,
        "bad signature",
    );

    // A good signature next to a failing one from the same trusted key: still 403.
    let mut both = note.clone();
    both.extend_from_slice(note_signature_lines(&corrupted)[0].as_bytes());
    assert_status(&witness.add(&add_body(0, &[], &both)), 403, "good and bad");
    assert_eq!(witness.monitor(A).status, 404, "nothing cosigned yet");

    // Signatures from unknown keys are ignored next to a good one.
    let mut extra = note.clone();
    extra.extend_from_slice(note_signature_lines(&impostor.checkpoint(3))[0].as_bytes());
    let mut stranger = TestLog::ed25519("stranger.test", 4);
    stranger.grow_to(3);
    extra.extend_from_slice(note_signature_lines(&stranger.checkpoint(3))[0].as_bytes());
    assert_status(
        &witness.add(&add_body(0, &[], &extra)),
        200,
        "extra unknown signatures",
    );
    // The stored checkpoint keeps only the verified log signature and the cosignature.
    let lines = note_signature_lines(&witness.monitor(A).body);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], note_signature_lines(&note)[0]);
}

fn corrupt_last_signature(note: &[u8]) -> Vec<u8> {
    let text = note_text(note);
    let line = note_signature_lines(note).pop().unwrap();
    let (prefix, b64) = line.trim_end().rsplit_once(' ').unwrap();
    let mut raw = STANDARD.decode(b64).unwrap();
    *raw.last_mut().unwrap() ^= 1;
    format!("{text}\n{prefix} {}\n", STANDARD.encode(raw)).into_bytes()
}

#[test]
fn malformed_requests_get_400() {
    let mut log = TestLog::ed25519(A, 1);
    log.grow_to(5);
    let (_dir, witness) = start_with(&[&log], &["--max-request-body-size", "4096"]);
    let note = log.checkpoint(5);
    let with = |prefix: &str| {
        let mut body = prefix.as_bytes().to_vec();
        body.extend_from_slice(&note);
        body
    };
    let hash_line = format!("{}\n", STANDARD.encode([1u8; 32]));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "empty body"),
        (note.clone(), "no old line"),
        (with("old 00\n\n"), "leading zero"),
        (with("old -1\n\n"), "negative"),
        (with("old 5 \n\n"), "trailing space"),
        (with("old 0\r\n\r\n"), "CRLF"),
        (with("old 0\n"), "no blank line"),
        (with("old 1\nnot base64!\n\n"), "bad proof line"),
        (
            with(&format!("old 1\n{}\n", STANDARD.encode([1u8; 31]))),
            "short hash",
        ),
        (
            with(&format!("old 1\n{}\n", hash_line.repeat(64))),
            "64 proof lines",
        ),
        (b"old 0\n\nnot a checkpoint\n".to_vec(), "not a note"),
        (
            with("old 0\n\n")[..with("old 0\n\n").len() - 1].to_vec(),
            "unterminated note",
        ),
        (with("old 9\n\n"), "old above the checkpoint size"),
    ];
    for (body, what) in cases {
        let response = witness.add(&body);
        assert_status(&response, 400, what);
        assert!(response.text().ends_with('\n'), "{what}: text body");
    }
    assert_eq!(witness.monitor(A).status, 404, "nothing cosigned");

    let mut huge = with("old 0\n\n");
    huge.resize(5000, b'x');
    assert_status(&witness.add(&huge), 413, "over --max-request-body-size");
    assert_status(
        &request(witness.addr, "GET", "/add-checkpoint", b""),
        405,
        "GET",
    );
    assert_status(
        &request(witness.addr, "GET", "/nope", b""),
        404,
        "unknown path",
    );
    assert_status(
        &request(
            witness.addr,
            "GET",
            &format!("/{}/checkpoint", "0".repeat(64)),
            b"",
        ),
        404,
        "unknown origin hash",
    );
    // Still serving after all that.
    assert_status(&witness.add(&log.body(0, 5)), 200, "good request");
}

#[test]
fn size_zero_needs_the_empty_root() {
    let a = TestLog::ed25519(A, 1);
    let mut b = TestLog::ed25519(B, 2);
    b.grow_to(4);
    let (_dir, witness) = start(&[&a, &b]);
    let key = key_of(&witness);

    let empty = a.checkpoint_with_root(0, empty_root());
    let response = witness.add(&add_body(0, &[], &empty));
    assert_status(&response, 200, "empty tree");
    key.verify_line(&response.text(), &note_text(&empty));
    assert_eq!(monitored_size(&witness, A), 0);

    let bogus = b.checkpoint_with_root(0, Hash([1; 32]));
    assert_status(
        &witness.add(&add_body(0, &[], &bogus)),
        422,
        "size 0, other root",
    );
    assert_eq!(witness.monitor(B).status, 404);
    assert_status(&witness.add(&b.body(0, 4)), 200, "then a real checkpoint");
}

#[test]
fn concurrent_submissions_never_roll_back() {
    let mut log = TestLog::ed25519(A, 1);
    log.grow_to(12);
    let (_dir, witness) = start(&[&log]);
    assert_status(&witness.add(&log.body(0, 5)), 200, "old 0");

    // Eight identical requests at once: one wins, the others learn the new size.
    let barrier = Arc::new(Barrier::new(8));
    let body = Arc::new(log.body(5, 12));
    let addr = witness.addr;
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (barrier, body) = (Arc::clone(&barrier), Arc::clone(&body));
            std::thread::spawn(move || {
                barrier.wait();
                request(addr, "POST", "/add-checkpoint", &body)
            })
        })
        .collect();
    let responses: Vec<Response> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = responses.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 1, "{responses:?}");
    for response in responses.iter().filter(|r| r.status != 200) {
        assert_eq!((response.status, response.text().as_str()), (409, "12\n"));
    }

    // Two sizes racing from the same old size: exactly one is cosigned, never both.
    log.grow_to(30);
    let small = Arc::new(log.body(12, 20));
    let large = Arc::new(log.body(12, 30));
    let barrier = Arc::new(Barrier::new(2));
    let racers: Vec<_> = [small, large]
        .into_iter()
        .map(|body| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                request(addr, "POST", "/add-checkpoint", &body)
            })
        })
        .collect();
    let results: Vec<Response> = racers.into_iter().map(|h| h.join().unwrap()).collect();
    let statuses: Vec<u16> = results.iter().map(|r| r.status).collect();
    let winner = match statuses.as_slice() {
        [200, 409] => 20,
        [409, 200] => 30,
        other => panic!("expected one 200 and one 409, got {other:?}"),
    };
    let loser = results.iter().find(|r| r.status == 409).unwrap();
    assert_eq!(loser.text(), format!("{winner}\n"));
    assert_eq!(monitored_size(&witness, A), winner);
}

#[test]
fn ecdsa_logs_are_witnessed() {
    let p256 = LogSigner::from_p256_scalar([5; 32], KeyName::new("p256.test").unwrap()).unwrap();
    let p384 = LogSigner::from_p384_scalar([6; 48], KeyName::new("p384.test").unwrap()).unwrap();
    let p384_spki = STANDARD.encode(p384.public_key_der());
    let mut a = TestLog::with_signer("p256.test", p256);
    let mut b = TestLog::with_signer("p384.test", p384);
    a.grow_to(7);
    b.grow_to(7);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("logs.conf");
    std::fs::write(
        &config,
        format!(
            "log {}\nlog p384.test spki:{p384_spki}\n",
            a.signer.verifier().to_vkey().unwrap()
        ),
    )
    .unwrap();
    let witness = WitnessProcess::start(&dir.path().join("state"), &config);
    let key = key_of(&witness);
    for log in [&a, &b] {
        let response = witness.add(&log.body(0, 3));
        assert_status(&response, 200, &log.origin);
        key.verify_line(&response.text(), &note_text(&log.checkpoint(3)));
        assert_status(&witness.add(&log.body(3, 7)), 200, &log.origin);
    }
}
