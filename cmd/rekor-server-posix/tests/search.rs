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

/// The index key of a term, SHA-256("rekor-search-term/v1" ‖ 0 ‖ tag ‖ 0 ‖ value), written
/// out here from docs/SEARCH.md rather than taken from the code under test.
fn term_prefix(tag: u8, value: &str) -> u64 {
    let mut input = b"rekor-search-term/v1\0".to_vec();
    input.extend_from_slice(&[tag, 0]);
    input.extend_from_slice(value.as_bytes());
    let key = Sha256::digest(&input);
    u64::from_be_bytes(key[..8].try_into().unwrap_or_default())
}

/// The index root of `postings` in `2^bits` buckets, folded by hand (RFC 6962 hashes).
fn index_root(postings: &std::collections::BTreeSet<(u64, u64)>, bits: u32) -> [u8; 32] {
    let mut buckets = vec![Vec::new(); 1 << bits];
    for (prefix, index) in postings {
        let bucket = if bits == 0 { 0 } else { prefix >> (64 - bits) };
        let content: &mut Vec<u8> = &mut buckets[usize::try_from(bucket).unwrap_or_default()];
        content.extend_from_slice(&prefix.to_be_bytes());
        content.extend_from_slice(&index.to_be_bytes());
    }
    let mut level: Vec<[u8; 32]> = buckets
        .iter()
        .map(|content| {
            Sha256::new()
                .chain_update([0])
                .chain_update(content)
                .finalize()
                .into()
        })
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| {
                Sha256::new()
                    .chain_update([1])
                    .chain_update(pair[0])
                    .chain_update(pair[1])
                    .finalize()
                    .into()
            })
            .collect();
    }
    level[0]
}

/// Checks the log's Ed25519 signature on a note by hand (C2SP signed-note).
fn check_note_signature(note: &str, origin: &str, public_key: &[u8; 32]) -> anyhow::Result<String> {
    use base64::Engine as _;
    let (text, signatures) = note.split_once("\n\n").context("no signature block")?;
    let body = format!("{text}\n");
    let line = signatures
        .lines()
        .find_map(|l| l.strip_prefix(&format!("\u{2014} {origin} ")))
        .context("no line by the log")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(line)?;
    let signature = ed25519_dalek::Signature::from_slice(raw.get(4..).context("short")?)?;
    ed25519_dalek::VerifyingKey::from_bytes(public_key)?
        .verify_strict(body.as_bytes(), &signature)?;
    Ok(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_are_proven_complete_by_the_signed_index_commitment() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = ServerConfig::new(
        env!("CARGO_BIN_EXE_rekor-server-posix"),
        dir.path().join("log"),
    )
    .with_args(["--search-index", "--search-commitment-interval", "200ms"]);
    let alice = ClientKey::generate(KeyKind::EcdsaP256)?;
    let bob = ClientKey::generate(KeyKind::EcdsaP256)?;
    let log = TestLog::start(&config).await?;
    let client = rekor_client::Client::new(
        &format!("http://{}", log.http.address()),
        rekor_client::ClientOptions::default(),
    )?;

    // What the test logged, and so the postings the index must hold: a digest and a key each.
    let mut postings = std::collections::BTreeSet::new();
    let mut digests = Vec::new();
    let mut first_artifact = Vec::new();
    for n in 0..12usize {
        let signer = if n % 3 == 0 { &bob } else { &alice };
        let data = artifact("completeness", n % 5)?;
        if n == 0 {
            first_artifact.clone_from(&data);
        }
        let entry = log.http.create_entry(&signer.hashed_rekord(&data)?).await?;
        let digest = format!("sha256:{}", hex(&Sha256::digest(&data)));
        let key = format!("sha256:{}", hex(&Sha256::digest(signer.public_key_der())));
        postings.insert((term_prefix(1, &digest), entry.log_index));
        postings.insert((term_prefix(2, &key), entry.log_index));
        digests.push(digest);
    }

    // Wait (bounded) for a commitment to the whole tree.
    let path = format!("/api/v2/search/completeness?digest={}", digests[0]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let answer = loop {
        let reply = log.http.get(&path).await?;
        if reply.status == 200 {
            let answer = reply.json()?;
            if answer["commitment"]
                .as_str()
                .is_some_and(|c| c.contains("/search-index/v1\n12\n"))
            {
                break answer;
            }
        } else {
            reply.expect_status(503)?;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "no commitment to size 12"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // The note is signed by the log's key and commits to the postings the test logged.
    let note = answer["commitment"].as_str().context("commitment")?;
    let public_key = log.trust.ed25519_public_key.context("an Ed25519 log key")?;
    let body = check_note_signature(note, &log.trust.origin, &public_key)?;
    let lines: Vec<&str> = body.lines().collect();
    ensure!(lines[0] == format!("{}/search-index/v1", log.trust.origin));
    let checkpoint = client.checkpoint(&log.trust.verifier).await?;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    ensure!(lines[1] == "12" && b64.decode(lines[2])? == checkpoint.root().0);
    let bits: u32 = lines[3].parse()?;
    ensure!(
        b64.decode(lines[4])? == index_root(&postings, bits),
        "the index root is not the root of the postings logged"
    );
    ensure!(lines[5] == postings.len().to_string());

    // The client proves every search complete; the CLI's view of it agrees.
    for digest in &digests[..5] {
        let term = rekor_entries::search::SearchTerm::digest(digest)?;
        let results = client.search(&log.trust.verifier, &term, 2).await?;
        match &results.completeness {
            rekor_client::Completeness::Proven {
                size, committed, ..
            } => ensure!(*size == 12 && *committed == 12),
            other => anyhow::bail!("{digest}: {other:?}"),
        }
        let want = postings
            .iter()
            .filter(|(p, _)| *p == term_prefix(1, digest))
            .count();
        ensure!(results.entries.len() == want, "{digest}");
    }
    let absent = rekor_entries::search::SearchTerm::identity("nobody@example.com")?;
    let results = client.search(&log.trust.verifier, &absent, 10).await?;
    ensure!(results.entries.is_empty());
    ensure!(matches!(
        results.completeness,
        rekor_client::Completeness::Proven { size: 12, .. }
    ));
    // A malformed term is refused as a search is.
    log.http
        .get("/api/v2/search/completeness?digest=sha256:00")
        .await?
        .expect_status(400)?;
    log.stop().await?;

    // A commitment older than the checkpoint: the entries after it are read and checked.
    let hourly = ServerConfig::new(
        env!("CARGO_BIN_EXE_rekor-server-posix"),
        dir.path().join("log"),
    )
    .with_args(["--search-index", "--search-commitment-interval", "1h"]);
    let log = TestLog::start(&hourly).await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while log.http.get(&path).await?.status != 200 {
        ensure!(
            std::time::Instant::now() < deadline,
            "no commitment after a restart"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for _ in 0..3 {
        log.http
            .create_entry(&alice.hashed_rekord(&first_artifact)?)
            .await?;
    }
    let client = rekor_client::Client::new(
        &format!("http://{}", log.http.address()),
        rekor_client::ClientOptions::default(),
    )?;
    let term = rekor_entries::search::SearchTerm::digest(&digests[0])?;
    let results = client.search(&log.trust.verifier, &term, 10).await?;
    let before = postings
        .iter()
        .filter(|(p, _)| *p == term_prefix(1, &digests[0]))
        .count();
    ensure!(results.entries.len() == before + 3, "{before}");
    match results.completeness {
        rekor_client::Completeness::Proven {
            size: 15,
            committed: 12,
            checkpoint_size: 15,
            ..
        } => {}
        other => anyhow::bail!("after the commitment: {other:?}"),
    }
    log.stop().await?;

    // With commitments off: 501, and the client says completeness was not checked.
    let off = ServerConfig::new(
        env!("CARGO_BIN_EXE_rekor-server-posix"),
        dir.path().join("log"),
    )
    .with_args(["--search-index", "--search-commitment-interval", "0s"]);
    let log = TestLog::start(&off).await?;
    log.http.get(&path).await?.expect_status(501)?;
    let client = rekor_client::Client::new(
        &format!("http://{}", log.http.address()),
        rekor_client::ClientOptions::default(),
    )?;
    let term = rekor_entries::search::SearchTerm::digest(&digests[0])?;
    let results = client.search(&log.trust.verifier, &term, 10).await?;
    ensure!(matches!(
        results.completeness,
        rekor_client::Completeness::Unchecked { .. }
    ));
    log.stop().await?;
    Ok(())
}

/// A proxy in front of the log that serves `forged` as every completeness answer and forwards
/// everything else.
async fn forging_proxy(
    upstream: std::net::SocketAddr,
    forged: String,
) -> anyhow::Result<std::net::SocketAddr> {
    let upstream = rekor_testkit::HttpClient::new(upstream)?;
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let upstream = upstream.clone();
        let forged = forged.clone();
        async move {
            use axum::response::IntoResponse as _;
            if uri.path() == "/api/v2/search/completeness" {
                return (axum::http::StatusCode::OK, forged).into_response();
            }
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            match upstream.get(path).await {
                Ok(reply) => (
                    axum::http::StatusCode::from_u16(reply.status)
                        .unwrap_or(axum::http::StatusCode::BAD_GATEWAY),
                    reply.body,
                )
                    .into_response(),
                Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

/// A commitment signed with the log's own key that leaves out one entry's digest posting (a
/// dishonest index) is caught by a search, which finds the entry anyway, and by rebuilding
/// the index from the log; the honest one passes both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commitment_that_leaves_an_entry_out_is_caught() -> anyhow::Result<()> {
    use base64::Engine as _;
    use rekor_entries::search::SearchTerm;
    use rekor_entries::search::commitment::{
        BucketTree, IndexCommitment, bucket_bits_for, bucket_of, encode_posting,
        term_prefix as prefix_of,
    };
    let b64 = base64::engine::general_purpose::STANDARD;

    let dir = tempfile::tempdir()?;
    let key_path = dir.path().join("signer.pem");
    rekor_testkit::fixtures::write_log_key(&key_path, rekor_testkit::process::DEFAULT_HOSTNAME)?;
    let mut config = ServerConfig::new(
        env!("CARGO_BIN_EXE_rekor-server-posix"),
        dir.path().join("log"),
    )
    .with_args(["--search-index", "--search-commitment-interval", "200ms"]);
    config.signer_file = Some(key_path.clone());
    let log = TestLog::start(&config).await?;
    let alice = ClientKey::generate(KeyKind::EcdsaP256)?;
    let mut postings = std::collections::BTreeSet::new();
    let mut terms = Vec::new();
    for n in 0..5usize {
        let data = artifact("left out", n % 2)?;
        let entry = log.http.create_entry(&alice.hashed_rekord(&data)?).await?;
        let digest = SearchTerm::digest(&format!("sha256:{}", hex(&Sha256::digest(&data))))?;
        let key = SearchTerm::key(&format!(
            "sha256:{}",
            hex(&Sha256::digest(alice.public_key_der()))
        ))?;
        postings.insert((prefix_of(&digest), entry.log_index));
        postings.insert((prefix_of(&key), entry.log_index));
        terms.push((digest, entry.log_index));
    }
    let honest = rekor_client::Client::new(
        &format!("http://{}", log.http.address()),
        rekor_client::ClientOptions::default(),
    )?;
    // Wait (bounded) for the honest commitment to all 5, then audit it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let audit = loop {
        match honest.audit_search_commitment(&log.trust.verifier).await {
            Ok(audit) if audit.size == 5 => break audit,
            _ => {}
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "no commitment to size 5"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    ensure!(audit.postings == postings.len() as u64);

    // The forgery: entry 2's digest posting dropped, the root recomputed and signed.
    let (term, omitted) = terms[2].clone();
    postings.remove(&(prefix_of(&term), omitted));
    let bits = bucket_bits_for(5);
    let tree = BucketTree::from_postings(bits, postings.iter().copied())?;
    let checkpoint = honest.checkpoint(&log.trust.verifier).await?;
    let statement = IndexCommitment {
        origin: log.trust.origin.clone(),
        log_size: 5,
        log_root: checkpoint.root(),
        bucket_bits: bits,
        index_root: tree.root(),
        postings: postings.len() as u64,
    };
    let signer = rekor_note::LogSigner::from_pem(
        &std::fs::read(&key_path)?,
        None,
        rekor_note::KeyName::new(&log.trust.origin)?,
    )?;
    let note = rekor_note::sign_note(&statement.to_text(), &[&signer])?.to_bytes();
    let bucket = bucket_of(prefix_of(&term), bits);
    let content: Vec<u8> = postings
        .iter()
        .filter(|(p, _)| bucket_of(*p, bits) == bucket)
        .flat_map(|(p, i)| encode_posting(*p, *i))
        .collect();
    let forged = serde_json::json!({
        "commitment": String::from_utf8(note)?,
        "bucket": bucket,
        "postings": b64.encode(&content),
        "proof": tree.proof(bucket).iter().map(|h| b64.encode(h.0)).collect::<Vec<_>>(),
    })
    .to_string();
    let proxy = forging_proxy(log.http.address(), forged).await?;
    let fooled = rekor_client::Client::new(
        &format!("http://{proxy}"),
        rekor_client::ClientOptions::default(),
    )?;
    // The honest search through the proxy returns entry 2, which the forgery does not list.
    let error = fooled
        .search(&log.trust.verifier, &term, 10)
        .await
        .expect_err("a commitment that leaves out an entry the answer holds");
    ensure!(
        error.is_verification_failure() && error.to_string().contains("does not list it"),
        "{error}"
    );
    let error = fooled
        .audit_search_commitment(&log.trust.verifier)
        .await
        .expect_err("a commitment that is not the log's index");
    ensure!(
        error.is_verification_failure()
            && error
                .to_string()
                .contains("is not the index of the log's entries"),
        "{error}"
    );
    // The honest log still passes.
    let results = honest.search(&log.trust.verifier, &term, 10).await?;
    ensure!(matches!(
        results.completeness,
        rekor_client::Completeness::Proven { size: 5, .. }
    ));
    log.stop().await?;
    Ok(())
}
