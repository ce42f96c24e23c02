//! `Client::search` against dishonest search answers. A real server with `--search-index` runs
//! on loopback behind a tampering proxy (`support/tamper.rs`) that rewrites its answers: an
//! entry's body swapped, an entry that does not carry the term, a flipped proof hash, a broken
//! or foreign checkpoint signature, entries reordered or repeated, a page token going back, a
//! page over its size, an empty page that promises more, and a second page from another log
//! under the same key. Each must be refused as a verification failure; the same proxy passing
//! answers through unchanged is shown to be transparent first.

mod support;
#[path = "support/tamper.rs"]
mod tamper;

use std::time::Duration;

use anyhow::{Context as _, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rekor_client::{Client, ClientOptions, Error};
use rekor_entries::search::SearchTerm;
use rekor_note::{Checkpoint, KeyName, LogSigner, LogVerifier, Note};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use support::{ClientKey, TestServer};
use tamper::{Tamper, TamperProxy};

fn client(url: &str) -> anyhow::Result<Client> {
    Ok(Client::new(
        url,
        ClientOptions {
            timeout: Duration::from_secs(10),
            retries: 0,
            ..ClientOptions::default()
        },
    )?)
}

fn digest_term(artifact: &[u8]) -> anyhow::Result<SearchTerm> {
    Ok(SearchTerm::digest(&format!(
        "sha256:{}",
        hex::encode(Sha256::digest(artifact))
    ))?)
}

/// Logs `artifacts` (each signed by the key given) and returns their indices.
async fn log_all(
    server: &TestServer,
    artifacts: &[(&ClientKey, &[u8])],
) -> anyhow::Result<Vec<u64>> {
    let client = client(&server.url())?;
    let verifier = server.verifier()?;
    let mut indices = Vec::new();
    for (key, artifact) in artifacts {
        let (_, verified) = client
            .submit_verified(&key.request(artifact)?, &verifier)
            .await?;
        indices.push(verified.index);
    }
    Ok(indices)
}

/// The base64 text with one bit of its first byte flipped.
fn flip_base64(text: &str) -> String {
    let mut bytes = STANDARD.decode(text).unwrap_or_default();
    if let Some(first) = bytes.first_mut() {
        *first ^= 0x01;
    }
    STANDARD.encode(bytes)
}

/// The note with one bit of its last signature flipped.
fn break_signature(note: &str) -> String {
    let mut lines: Vec<String> = note.lines().map(str::to_string).collect();
    if let Some(line) = lines.iter_mut().rev().find(|l| l.starts_with("— "))
        && let Some((head, signature)) = line.rsplit_once(' ')
    {
        let mut bytes = STANDARD.decode(signature).unwrap_or_default();
        if let Some(last) = bytes.last_mut() {
            *last ^= 0x01;
        }
        *line = format!("{head} {}", STANDARD.encode(bytes));
    }
    lines.join("\n") + "\n"
}

/// The same checkpoint signed by `signer` instead.
fn resign(note: &str, signer: &LogSigner) -> String {
    let signed = Note::parse(note.as_bytes())
        .and_then(|n| Checkpoint::parse(n.text()))
        .and_then(|c| signer.sign_checkpoint(&c));
    String::from_utf8(signed.unwrap_or_default()).unwrap_or_default()
}

/// The answer with `change` applied to its entries.
fn with_entries(mut answer: Value, change: impl FnOnce(&mut Vec<Value>)) -> Value {
    if let Some(list) = answer.get_mut("entries").and_then(Value::as_array_mut) {
        change(list);
    }
    answer
}

/// One dishonest answer and how the client must refuse it.
struct Case {
    name: &'static str,
    page_size: usize,
    tamper: Tamper,
    refused: fn(&Error) -> bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_search_answers_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_searchable(&dir.path().join("a")).await?;
    let verifier: LogVerifier = server.verifier()?;
    let (alice, bob) = (ClientKey::generate()?, ClientKey::generate()?);
    let shared: &[u8] = b"the shared artifact";
    let indices = log_all(
        &server,
        &[
            (&alice, shared),
            (&bob, b"another artifact"),
            (&bob, shared),
            (&alice, shared),
            (&alice, b"a third artifact"),
        ],
    )
    .await?;
    ensure!(indices == [0, 1, 2, 3, 4], "{indices:?}");
    let term = digest_term(shared)?;

    // Entry 1, as the log itself serves it for its own digest: proven against the same
    // checkpoint as every answer below, but not carrying the term.
    let direct = client(&server.url())?;
    let foreign_page = direct
        .search_page_unverified(&digest_term(b"another artifact")?, 10, None)
        .await?;
    let foreign = foreign_page
        .entries
        .first()
        .context("entry 1 is found by its digest")?
        .clone();

    // A second log under the same key, with other entries: page 2 served from it is signed
    // correctly but does not extend page 1's tree.
    let other_dir = dir.path().join("b");
    std::fs::create_dir_all(other_dir.join(".rekor"))?;
    std::fs::copy(
        dir.path()
            .join("a")
            .join(rekor_server::keys::GENERATED_KEY_FILE),
        other_dir.join(rekor_server::keys::GENERATED_KEY_FILE),
    )?;
    let other = TestServer::start_searchable(&other_dir).await?;
    log_all(
        &other,
        &[
            (&bob, b"b0"),
            (&bob, b"b1"),
            (&alice, shared),
            (&bob, b"b3"),
            (&bob, b"b4"),
            (&alice, shared),
            (&bob, b"b6"),
        ],
    )
    .await?;

    let proxy = TamperProxy::start(vec![server.url(), other.url()]).await?;
    let through = client(proxy.url())?;

    // Pass-through: the proxy changes nothing, so the search succeeds, page by page too.
    for page_size in [1, 100] {
        proxy.set(Tamper::none());
        let results = through.search(&verifier, &term, page_size).await?;
        let got: Vec<u64> = results.entries.iter().map(|e| e.index).collect();
        ensure!(
            got == [0, 2, 3],
            "pass-through, pageSize {page_size}: {got:?}"
        );
        ensure!(results.pages == if page_size == 1 { 3 } else { 1 });
    }

    let foreign_key = LogSigner::from_ed25519_seed([42; 32], KeyName::new(support::ORIGIN)?);
    let foreign_body = foreign["canonicalizedBody"].clone();
    let cases = vec![
        Case {
            name: "an entry's body swapped for another entry's",
            page_size: 100,
            tamper: Tamper::search(move |_, answer| {
                with_entries(answer, |list| {
                    list[1]["canonicalizedBody"] = foreign_body.clone();
                })
            }),
            refused: |e| {
                matches!(
                    e,
                    Error::Inclusion {
                        index: 2,
                        size: 5,
                        ..
                    }
                )
            },
        },
        Case {
            name: "an entry that does not carry the term, with its own valid proof",
            page_size: 100,
            tamper: Tamper::search(move |_, answer| {
                with_entries(answer, |list| list[1] = foreign.clone())
            }),
            refused: |e| matches!(e, Error::SearchAnswer { reason } if reason.contains("entry 1 does not carry digest=sha256:")),
        },
        Case {
            name: "an inclusion proof hash flipped",
            page_size: 100,
            tamper: Tamper::search(|_, answer| {
                with_entries(answer, |list| {
                    let hash = &mut list[0]["inclusionProof"]["hashes"][0];
                    *hash = Value::from(flip_base64(hash.as_str().unwrap_or_default()));
                })
            }),
            refused: |e| {
                matches!(
                    e,
                    Error::Inclusion {
                        index: 0,
                        size: 5,
                        ..
                    }
                )
            },
        },
        Case {
            name: "the page checkpoint's signature altered",
            page_size: 100,
            tamper: Tamper::search(|_, mut answer| {
                let note = answer["checkpoint"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                answer["checkpoint"] = Value::from(break_signature(&note));
                answer
            }),
            refused: |e| matches!(e, Error::Checkpoint { .. }),
        },
        Case {
            name: "the second page's checkpoint signed by another key of the same name",
            page_size: 1,
            tamper: Tamper::search(move |query, mut answer| {
                if query.contains("pageToken=") {
                    let note = answer["checkpoint"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    answer["checkpoint"] = Value::from(resign(&note, &foreign_key));
                }
                answer
            }),
            refused: |e| matches!(e, Error::Checkpoint { .. }),
        },
        Case {
            name: "entries reordered",
            page_size: 100,
            tamper: Tamper::search(|_, answer| with_entries(answer, |list| list.reverse())),
            refused: |e| matches!(e, Error::SearchAnswer { reason } if reason == "entry 2 comes after entry 3"),
        },
        Case {
            name: "an entry duplicated",
            page_size: 100,
            tamper: Tamper::search(|_, answer| {
                with_entries(answer, |list| list.insert(1, list[0].clone()))
            }),
            refused: |e| matches!(e, Error::SearchAnswer { reason } if reason == "entry 0 comes after entry 0"),
        },
        Case {
            name: "nextPageToken going back",
            page_size: 1,
            tamper: Tamper::search(|query, mut answer| {
                if query.contains("pageToken=") {
                    answer["nextPageToken"] = Value::from("from-0");
                }
                answer
            }),
            refused: |e| matches!(e, Error::SearchAnswer { reason } if reason == "entry 0 comes after entry 2"),
        },
        Case {
            name: "a page over its size",
            page_size: 1,
            tamper: Tamper::search(|_, answer| {
                with_entries(answer, |list| list.push(list[0].clone()))
            }),
            refused: |e| matches!(e, Error::SearchAnswer { reason } if reason == "2 entries on a page of 1"),
        },
        Case {
            name: "an empty page that promises another",
            page_size: 100,
            tamper: Tamper::search(|_, answer| {
                let mut answer = with_entries(answer, Vec::clear);
                answer["nextPageToken"] = Value::from("from-0");
                answer
            }),
            refused: |e| matches!(e, Error::SearchAnswer { reason } if reason == "an empty page with a next page"),
        },
        Case {
            name: "the second page, and the tiles after it, from another log under the same key",
            page_size: 1,
            tamper: {
                let mut switched = false;
                Tamper::route(move |target| {
                    let upstream = usize::from(switched);
                    switched |= target.starts_with("/api/v2/search?");
                    upstream
                })
            },
            refused: |e| matches!(e, Error::Inconsistent { old: 5, new: 7, .. }),
        },
    ];
    for case in cases {
        proxy.set(case.tamper);
        let outcome = through.search(&verifier, &term, case.page_size).await;
        match outcome {
            Err(e) if (case.refused)(&e) && e.is_verification_failure() => {}
            Err(e) => anyhow::bail!("{}: refused, but not as expected: {e:?}", case.name),
            Ok(results) => anyhow::bail!(
                "{}: accepted {:?}",
                case.name,
                results.entries.iter().map(|e| e.index).collect::<Vec<_>>()
            ),
        }
    }

    // The honest answer is still accepted after all that.
    proxy.set(Tamper::none());
    ensure!(through.search(&verifier, &term, 2).await?.entries.len() == 3);
    drop(proxy);
    other.stop().await;
    server.stop().await;
    Ok(())
}
