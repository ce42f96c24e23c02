//! The library against real in-process servers on loopback: submitting and verifying, reading
//! entries back from the tiles, consistency across growth, monitoring, and auditing logs written
//! by the server and by independent code, with tampered tiles and bundles named exactly.

mod support;

use std::time::Duration;

use anyhow::{Context as _, ensure};
use rekor_client::{
    AuditState, Client, ClientOptions, Error, MonitorEvent, MonitorState, SignedCheckpoint,
    verify_entry,
};
use rekor_note::{Checkpoint, Origin};
use rekor_tlog::{Hash, TreeSize};
use support::{ClientKey, TestServer};

fn client(url: &str) -> anyhow::Result<Client> {
    Ok(Client::new(
        url,
        ClientOptions {
            timeout: Duration::from_secs(10),
            retries: 1,
            initial_backoff: Duration::from_millis(20),
            ..ClientOptions::default()
        },
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_read_back_prove_and_monitor() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path(), false).await?;
    let verifier = server.verifier()?;
    let client = client(&server.url())?;
    let key = ClientKey::generate()?;

    // Submit three entries; each answer is checked against the key and the request.
    let mut entries = Vec::new();
    for n in 0..3 {
        let request = key.request(format!("artifact {n}").as_bytes())?;
        let (entry, verified) = client.submit_verified(&request, &verifier).await?;
        ensure!(
            verified.index == n,
            "index {} for entry {n}",
            verified.index
        );
        entries.push((request, entry));
    }

    // A duplicate is refused with the original index.
    match client.submit(&entries[1].0).await {
        Err(Error::Duplicate { index: 1 }) => {}
        other => anyhow::bail!("duplicate: {other:?}"),
    }

    // Entry 1 read back from the tiles is a valid TLE with the same body.
    let first = client.checkpoint(&verifier).await?;
    ensure!(first.checkpoint.size == 3);
    let read = client.entry_at(1, &first).await?;
    ensure!(read.body.as_ref() == entries[1].1.canonicalized_body.as_slice());
    let tle = read.to_transparency_log_entry(verifier.log_id())?;
    let verified = verify_entry(&tle, &verifier)?;
    ensure!(verified.index == 1 && verified.checkpoint == first);
    ensure!(matches!(
        client.entry_at(3, &first).await,
        Err(Error::IndexBeyondTree { index: 3, size: 3 })
    ));

    // The first monitor step trusts on first use; after growth it proves consistency.
    let (state, event) = client.monitor_step(&verifier, None).await?;
    ensure!(event == MonitorEvent::First);
    let state = MonitorState::from_json(state.to_json()?.as_bytes(), &verifier)?;
    for n in 3..300 {
        let request = key.request(format!("artifact {n}").as_bytes())?;
        client.submit(&request).await?;
    }
    let (grown, event) = client.monitor_step(&verifier, Some(&state)).await?;
    ensure!(
        event == MonitorEvent::Grew { from: 3, to: 300 },
        "{event:?}"
    );
    let (same, event) = client.monitor_step(&verifier, Some(&grown)).await?;
    ensure!(
        event == MonitorEvent::Unchanged && same == grown,
        "{event:?}"
    );

    // Consistency from a signed old checkpoint, and from a bare size (root from the tiles).
    let latest = client.checkpoint(&verifier).await?;
    let proof = client.prove_consistency(&first, &latest).await?;
    ensure!(!proof.is_empty());
    let (old_root, _) = client.prove_extends_size(TreeSize::new(3), &latest).await?;
    ensure!(
        old_root == first.root(),
        "root of 3 from tiles differs from the checkpoint's"
    );
    ensure!(matches!(
        client.prove_consistency(&latest, &first).await,
        Err(Error::Rollback {
            verified: 300,
            current: 3
        })
    ));

    // A checkpoint signed by the log's own key for a different tree at size 3 is a fork, and
    // one at size 300 with another root is not provably consistent with the first.
    let signer = support::log_signer(dir.path())?;
    let forged = |size: u64, root: [u8; 32]| -> anyhow::Result<SignedCheckpoint> {
        let note =
            signer.sign_checkpoint(&Checkpoint::new(Origin::new("localhost")?, size, root))?;
        Ok(SignedCheckpoint::verify(&note, &verifier)?)
    };
    ensure!(matches!(
        client.prove_consistency(&first, &forged(3, [9; 32])?).await,
        Err(Error::Fork { size: 3, .. })
    ));
    match client
        .prove_consistency(&first, &forged(300, [9; 32])?)
        .await
    {
        Err(
            e @ Error::Inconsistent {
                old: 3, new: 300, ..
            },
        ) => ensure!(e.is_verification_failure()),
        other => anyhow::bail!("forged root: {other:?}"),
    }
    // A checkpoint beyond the tiles: the missing tile is named.
    match client
        .prove_consistency(&first, &forged(301, [9; 32])?)
        .await
    {
        Err(Error::NotFound { path }) => ensure!(path == "tile/0/001.p/45", "{path}"),
        other => anyhow::bail!("beyond the tiles: {other:?}"),
    }

    // The whole log audits, and a resumed audit checks only what is new.
    let report = client.audit(&first, None, |_| {}).await?;
    ensure!(report.size == 3 && report.root == first.root());
    let resumed = client.audit(&latest, Some(&report.state), |_| {}).await?;
    ensure!(
        resumed.entries_checked == 297,
        "{}",
        resumed.entries_checked
    );
    ensure!(resumed.root == latest.root());
    // A resume state for other entries at the same log is caught at the first tile.
    let fake: Vec<Hash> = (0..3u8).map(|i| rekor_tlog::leaf_hash(&[i])).collect();
    let fake_tree: rekor_tlog::MemoryTree = fake.iter().copied().collect();
    let fake_state = serde_json::json!({
        "origin": "localhost",
        "verifiedSize": 3,
        "prefixRoot": fake_tree.root(TreeSize::new(3))?.to_string(),
        "edgeTiles": [{"path": "tile/0/000.p/3",
                       "hashes": fake.iter().map(ToString::to_string).collect::<Vec<_>>()}],
    });
    let fake_state = AuditState::from_json(&serde_json::to_vec(&fake_state)?)?;
    match client.audit(&latest, Some(&fake_state), |_| {}).await {
        Err(Error::TileMismatch {
            tile, position: 0, ..
        }) => {
            ensure!(tile == "tile/0/000", "{tile}");
        }
        other => anyhow::bail!("foreign resume state: {other:?}"),
    }

    // A stale checkpoint (the log serves size 300 after reaching 310) is reported, consistent,
    // and the newer verified state is kept.
    let stale = std::fs::read(dir.path().join("checkpoint"))?;
    for n in 300..310 {
        client
            .submit(&key.request(format!("artifact {n}").as_bytes())?)
            .await?;
    }
    let (newest, event) = client.monitor_step(&verifier, Some(&grown)).await?;
    ensure!(
        event == MonitorEvent::Grew { from: 300, to: 310 },
        "{event:?}"
    );
    std::fs::write(dir.path().join("checkpoint"), &stale)?;
    let (kept, event) = client.monitor_step(&verifier, Some(&newest)).await?;
    ensure!(
        event
            == MonitorEvent::Behind {
                served: 300,
                verified: 310
            }
            && kept == newest,
        "{event:?}"
    );
    server.stop().await;
    Ok(())
}

/// An independently written log of 70,000 entries (full level-1 tiles, a level-2 tile): it
/// audits, and each kind of tampering is caught at the exact object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_names_the_tampered_object() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let signer = support::log_signer(dir.path())?;
    let entries: Vec<Vec<u8>> = (0..70_000u32)
        .map(|i| format!("entry {i}").into_bytes())
        .collect();
    let root = support::write_log_dir(dir.path(), &entries, &signer)?;
    let server = TestServer::start(dir.path(), true).await?;
    let verifier = server.verifier()?;
    let client = client(&server.url())?;
    let checkpoint = client.checkpoint(&verifier).await?;
    ensure!(checkpoint.root() == root);

    let mut calls = 0u64;
    let mut last_state: Option<AuditState> = None;
    let report = client
        .audit(&checkpoint, None, |progress| {
            calls += 1;
            if progress.verified == 256 * 200 {
                last_state = Some(progress.state());
            }
        })
        .await?;
    ensure!(report.size == 70_000 && report.root == root);
    ensure!(calls == 274, "progress called {calls} times");
    // 274 level-0 tiles, tile/1/000, tile/1/001.p/17 and tile/2/000.p/1.
    ensure!(
        report.tiles_checked == 277,
        "{} tiles",
        report.tiles_checked
    );

    // Resume from the middle.
    let state = last_state.context("no state at 51200")?;
    let state = AuditState::from_json(state.to_json()?.as_bytes())?;
    let resumed = client.audit(&checkpoint, Some(&state), |_| {}).await?;
    ensure!(resumed.entries_checked == 70_000 - 51_200);

    let cases: [(&str, usize, &str); 5] = [
        (
            "tile/0/100",
            32 * 7 + 3,
            "tile/0/100: hash 7 is not the leaf hash of entry 25607",
        ),
        (
            "tile/entries/005",
            2,
            "tile/0/005: hash 0 is not the leaf hash of entry 1280 in tile/entries/005",
        ),
        ("tile/1/000", 32 * 200, "tile/1/000: hash 200 is"),
        (
            "tile/1/001.p/17",
            32 * 16 + 31,
            "tile/1/001.p/17: hash 16 is",
        ),
        ("tile/2/000.p/1", 0, "tile/2/000.p/1: hash 0 is"),
    ];
    for (path, offset, message) in cases {
        let original = support::flip_byte(dir.path(), path, offset)?;
        let result = client.audit(&checkpoint, None, |_| {}).await;
        support::restore(dir.path(), path, &original)?;
        match result {
            Err(e) => {
                ensure!(e.is_verification_failure(), "{path}: {e}");
                ensure!(e.to_string().starts_with(message), "{path}: got {e}");
            }
            Ok(_) => anyhow::bail!("audit passed with {path} tampered"),
        }
    }
    // A truncated bundle, and a checkpoint root that is not the tree's.
    let original = std::fs::read(dir.path().join("tile/entries/273.p/112"))?;
    std::fs::write(
        dir.path().join("tile/entries/273.p/112"),
        &original[..original.len() - 1],
    )?;
    let result = client.audit(&checkpoint, None, |_| {}).await;
    support::restore(dir.path(), "tile/entries/273.p/112", &original)?;
    ensure!(
        matches!(&result, Err(Error::Bundle { path, .. }) if path == "tile/entries/273.p/112"),
        "{result:?}"
    );
    let note =
        signer.sign_checkpoint(&Checkpoint::new(Origin::new("localhost")?, 70_000, [1; 32]))?;
    let wrong = SignedCheckpoint::verify(&note, &verifier)?;
    match client.audit(&wrong, None, |_| {}).await {
        Err(Error::RootMismatch {
            size: 70_000,
            computed,
            expected,
        }) => {
            ensure!(computed == root && expected == Hash([1; 32]));
        }
        other => anyhow::bail!("wrong root: {other:?}"),
    }
    server.stop().await;
    Ok(())
}
