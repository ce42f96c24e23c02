//! `GET /api/v2/search` on a running POSIX log with `--search-index`: every entry for a digest
//! or a key, oldest first, across pages and a restart, each verified by the testkit's own
//! verifier (its Merkle code, not the server's) against the submission that made it.

use anyhow::{Context as _, ensure};
use rekor_testkit::fixtures::artifact;
use rekor_testkit::{ClientKey, KeyKind, LogEntry, ServerConfig, TestLog, verify_entry};
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every page of `query`, each entry checked against the answer's checkpoint.
async fn search_all(log: &TestLog, query: &str, page_size: usize) -> anyhow::Result<Vec<LogEntry>> {
    let mut found = Vec::new();
    let mut token = String::new();
    loop {
        let reply = log
            .http
            .get(&format!(
                "/api/v2/search?{query}&pageSize={page_size}&pageToken={token}"
            ))
            .await?
            .expect_status(200)?;
        let answer = reply.json()?;
        let checkpoint = answer["checkpoint"].as_str().context("checkpoint")?;
        let entries = answer["entries"].as_array().context("entries")?;
        ensure!(entries.len() <= page_size, "page over its size");
        for value in entries {
            let entry = LogEntry::from_protojson(value)?;
            let envelope = &value["inclusionProof"]["checkpoint"]["envelope"];
            ensure!(
                envelope.as_str() == Some(checkpoint),
                "proof to another checkpoint"
            );
            found.push(entry);
        }
        match answer.get("nextPageToken").and_then(|t| t.as_str()) {
            Some(next) => token = next.to_string(),
            None => return Ok(found),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_every_entry_by_digest_and_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = ServerConfig::new(
        env!("CARGO_BIN_EXE_rekor-server-posix"),
        dir.path().join("log"),
    )
    .with_args(["--search-index"]);
    let alice = ClientKey::generate(KeyKind::EcdsaP256)?;
    let bob = ClientKey::generate(KeyKind::EcdsaP256)?;
    let shared = artifact("search shared", 0)?;

    let log = TestLog::start(&config).await?;
    // Alice signs the shared artifact and 6 others; Bob signs the shared one and 2 others.
    let mut submissions = Vec::new();
    submissions.push(alice.hashed_rekord(&shared)?);
    for n in 1..7 {
        submissions.push(alice.hashed_rekord(&artifact("search alice", n)?)?);
    }
    submissions.push(bob.hashed_rekord(&shared)?);
    for n in 1..3 {
        submissions.push(bob.hashed_rekord(&artifact("search bob", n)?)?);
    }
    let mut indices = Vec::new();
    for submission in &submissions {
        indices.push(log.http.create_entry(submission).await?.log_index);
    }

    let digest = format!("digest=sha256:{}", hex(&Sha256::digest(&shared)));
    let alice_key = format!(
        "key=sha256:{}",
        hex(&Sha256::digest(alice.public_key_der()))
    );
    for (query, want) in [
        (&digest, vec![0, 7]),
        (&alice_key, (0..7).collect::<Vec<usize>>()),
    ] {
        for page_size in [1, 2, 100] {
            let found = search_all(&log, query, page_size).await?;
            let got: Vec<u64> = found.iter().map(|e| e.log_index).collect();
            let expected: Vec<u64> = want.iter().map(|&i| indices[i]).collect();
            ensure!(
                got == expected,
                "{query} pageSize={page_size}: {got:?} != {expected:?}"
            );
            for (entry, &i) in found.iter().zip(&want) {
                verify_entry(&log.trust, &submissions[i], entry)
                    .with_context(|| format!("{query}: entry {}", entry.log_index))?;
            }
        }
    }
    // The Rust client's search, which checks every page and entry itself, agrees; a page size
    // of 1 makes it follow every token.
    let client = rekor_client::Client::new(
        &format!("http://{}", log.http.address()),
        rekor_client::ClientOptions::default(),
    )?;
    let term = rekor_entries::search::SearchTerm::key(alice_key.trim_start_matches("key="))?;
    let results = client.search(&log.trust.verifier, &term, 1).await?;
    let got: Vec<u64> = results.entries.iter().map(|e| e.index).collect();
    ensure!(got == indices[..7], "client search: {got:?}");
    ensure!(results.pages == 7, "{} pages", results.pages);

    // Nothing matches: 200 with no entries.
    let none = format!("digest=sha256:{}", "00".repeat(32));
    ensure!(search_all(&log, &none, 10).await?.is_empty());
    // Malformed queries: 400 naming the problem.
    for bad in [
        "/api/v2/search",
        "/api/v2/search?digest=sha256:abc",
        "/api/v2/search?digest=md5:00",
        "/api/v2/search?uuid=1",
        "/api/v2/search?identity=",
    ] {
        let reply = log.http.get(bad).await?.expect_status(400)?;
        ensure!(
            reply.text().contains("invalid search"),
            "{bad}: {}",
            reply.text()
        );
    }
    log.stop().await?;

    // After a restart the index is caught up from storage, not rebuilt from nothing.
    let log = TestLog::start(&config).await?;
    let found = search_all(&log, &digest, 100).await?;
    ensure!(found.len() == 2, "after restart: {} entries", found.len());
    log.stop().await?;

    // Without --search-index the endpoint says so.
    let plain = ServerConfig::new(
        env!("CARGO_BIN_EXE_rekor-server-posix"),
        dir.path().join("log"),
    );
    let log = TestLog::start(&plain).await?;
    log.http
        .get(&format!("/api/v2/search?{digest}"))
        .await?
        .expect_status(501)?;
    log.stop().await?;
    Ok(())
}
