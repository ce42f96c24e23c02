//! The witness's state across kill -9 and restarts: an acknowledged checkpoint is never
//! forgotten, the state never goes backwards, and unreadable or shared state stops the witness.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: a failure is a test failure"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest as _, Sha256};

const ORIGIN: &str = "log.test";

fn monitored(witness: &WitnessProcess) -> Option<(u64, Vec<u8>)> {
    let response = witness.monitor(ORIGIN);
    if response.status == 404 {
        return None;
    }
    assert_eq!(response.status, 200, "{}", response.text());
    let size = note_text(&response.body)
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    Some((size, response.body))
}

#[test]
fn kill9_right_after_200_keeps_the_state() {
    let mut log = TestLog::ed25519(ORIGIN, 1);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &[&log]);
    let state = dir.path().join("state");
    let vkey = info_vkey(&state);
    let key = WitnessKey::from_vkey(&vkey);
    let mut witness = WitnessProcess::start(&state, &config);

    let mut size = 0;
    for next in [5, 12, 13] {
        log.grow_to(next);
        let response = witness.add(&log.body(size, next));
        assert_eq!(
            response.status,
            200,
            "{size} -> {next}: {}",
            response.text()
        );
        let cosignature = response.text();
        witness = witness.restart();
        size = next;

        // The restarted witness knows the size it acknowledged before the kill...
        let stale = witness.add(&log.body(0, next));
        assert_eq!((stale.status, stale.text()), (409, format!("{next}\n")));
        // ...and serves that very cosignature on the monitoring endpoint.
        let (monitored_size, note) = monitored(&witness).unwrap();
        assert_eq!(monitored_size, next);
        assert_eq!(note_signature_lines(&note).last(), Some(&cosignature));
        key.verify_line(&cosignature, &note_text(&log.checkpoint(next)));
    }
    // Never backwards: an older size is refused with the latest one.
    let response = witness.add(&log.body(5, 13));
    assert_eq!((response.status, response.text()), (409, "13\n".to_owned()));
    assert_eq!(info_vkey(&state), vkey, "the key survives restarts");
}

#[test]
fn kill9_during_submissions_never_loses_an_acknowledged_checkpoint() {
    let mut log = TestLog::ed25519(ORIGIN, 1);
    log.grow_to(400);
    let log = Arc::new(log);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &[&log]);
    let state = dir.path().join("state");
    let mut witness = WitnessProcess::start(&state, &config);

    let mut size = 0;
    for round in 0..3u64 {
        // A client grows the tree one leaf per request, as fast as it can, until the kill.
        let acknowledged = Arc::new(AtomicU64::new(size));
        let client = {
            let (log, acknowledged, addr) =
                (Arc::clone(&log), Arc::clone(&acknowledged), witness.addr);
            std::thread::spawn(move || {
                let mut old = acknowledged.load(Ordering::SeqCst);
                while old < 399 {
                    let Some(response) = try_add(addr, &log.body(old, old + 1)) else {
                        return;
                    };
                    // After the kill a new witness may even reuse the port: stop at anything
                    // but a cosignature.
                    if response.status != 200 {
                        return;
                    }
                    old += 1;
                    acknowledged.store(old, Ordering::SeqCst);
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while acknowledged.load(Ordering::SeqCst) < size + 3 + round && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        witness = witness.restart();
        client.join().unwrap();
        let acked = acknowledged.load(Ordering::SeqCst);
        assert!(acked > size, "round {round}: the client made progress");

        // The state is at the last acknowledged size, or one more if a request was cosigned
        // and persisted but its response was lost in the kill.
        let (persisted, _) = monitored(&witness).unwrap();
        assert!(
            persisted == acked || persisted == acked + 1,
            "round {round}: persisted {persisted}, acknowledged {acked}"
        );
        let response = witness.add(&log.body(persisted, persisted + 1));
        assert_eq!(response.status, 200, "{}", response.text());
        size = persisted + 1;
    }
}

/// Like `WitnessProcess::add`, but `None` when the connection fails (the witness was killed).
fn try_add(addr: std::net::SocketAddr, body: &[u8]) -> Option<Response> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let head = format!(
        "POST /add-checkpoint HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let status: u16 = text.split(' ').nth(1)?.parse().ok()?;
    let body = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| raw[at + 4..].to_vec())?;
    Some(Response {
        status,
        content_type: None,
        body,
    })
}

#[test]
fn a_second_witness_on_the_same_directory_is_refused() {
    let log = TestLog::ed25519(ORIGIN, 1);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &[&log]);
    let state = dir.path().join("state");
    let first = WitnessProcess::start(&state, &config);
    let Err(stderr) = WitnessProcess::try_start(&state, &config, &[]) else {
        panic!("a second witness started on a locked directory");
    };
    assert!(stderr.contains("locked"), "{stderr}");
    // Once the first is gone, the lock is free (kill -9 releases it too).
    first.kill9();
    let _again = WitnessProcess::start(&state, &config);
}

#[test]
fn unreadable_state_stops_the_witness_instead_of_forgetting() {
    let mut log = TestLog::ed25519(ORIGIN, 1);
    log.grow_to(4);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &[&log]);
    let state = dir.path().join("state");
    let witness = WitnessProcess::start(&state, &config);
    assert_eq!(witness.add(&log.body(0, 4)).status, 200);
    witness.kill9();

    let file = state
        .join("logs")
        .join(hex(&Sha256::digest(ORIGIN.as_bytes())));
    let good = std::fs::read(&file).unwrap();
    std::fs::write(&file, &good[..good.len() / 2]).unwrap();
    let Err(stderr) = WitnessProcess::try_start(&state, &config, &[]) else {
        panic!("started on a corrupt state file");
    };
    assert!(stderr.contains("corrupt"), "{stderr}");

    std::fs::write(&file, &good).unwrap();
    let witness = WitnessProcess::start(&state, &config);
    assert_eq!(witness.add(&log.body(0, 4)).text(), "4\n");
}
