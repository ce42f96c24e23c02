//! `verify_entry` offline: entries of a tree built with the reference `MemoryTree` and a
//! checkpoint signed by a throwaway log key pass, and every kind of tampering is refused with
//! the error that names it.

mod support;

use anyhow::ensure;
use rekor_api::common::v1::LogId;
use rekor_api::rekor::v1::{Checkpoint, InclusionProof, KindVersion, TransparencyLogEntry};
use rekor_client::{Error, expected_body, verify_entry};
use rekor_note::{KeyName, LogSigner, LogVerifier, Origin};
use rekor_tlog::{LeafIndex, MemoryTree, TreeSize, leaf_hash};
use support::ClientKey;

struct Fixture {
    signer: LogSigner,
    verifier: LogVerifier,
    entries: Vec<TransparencyLogEntry>,
}

/// Seven signed hashedrekord entries in a tree of size 7, each with its proof and checkpoint.
fn fixture() -> anyhow::Result<Fixture> {
    let signer = LogSigner::from_ed25519_seed([3; 32], KeyName::new("log.example.dev")?);
    let verifier = signer.verifier();
    let key = ClientKey::generate()?;
    let bodies: Vec<Vec<u8>> = (0..7)
        .map(|n| -> anyhow::Result<Vec<u8>> {
            Ok(expected_body(
                &key.request(format!("artifact {n}").as_bytes())?,
            )?)
        })
        .collect::<anyhow::Result<_>>()?;
    let tree: MemoryTree = bodies.iter().map(|b| leaf_hash(b)).collect();
    let size = TreeSize::new(7);
    let root = tree.root(size)?;
    let note = signer.sign_checkpoint(&rekor_note::Checkpoint::new(
        Origin::new("log.example.dev")?,
        7,
        root.0,
    ))?;
    let entries = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| -> anyhow::Result<TransparencyLogEntry> {
            let index = i64::try_from(i)?;
            let proof = tree.inclusion_proof(LeafIndex::new(u64::try_from(i)?), size)?;
            Ok(TransparencyLogEntry {
                log_index: index,
                log_id: Some(LogId {
                    key_id: signer.log_id().to_vec(),
                }),
                kind_version: Some(KindVersion {
                    kind: "hashedrekord".into(),
                    version: "0.0.2".into(),
                }),
                integrated_time: 0,
                inclusion_promise: None,
                inclusion_proof: Some(InclusionProof {
                    log_index: index,
                    root_hash: root.0.to_vec(),
                    tree_size: 7,
                    hashes: proof.iter().map(|h| h.0.to_vec()).collect(),
                    checkpoint: Some(Checkpoint {
                        envelope: String::from_utf8(note.clone())?,
                    }),
                }),
                canonicalized_body: body,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Fixture {
        signer,
        verifier,
        entries,
    })
}

fn proof(entry: &mut TransparencyLogEntry) -> &mut InclusionProof {
    entry
        .inclusion_proof
        .get_or_insert_with(InclusionProof::default)
}

#[test]
fn valid_entries_verify() -> anyhow::Result<()> {
    let f = fixture()?;
    for (i, entry) in f.entries.iter().enumerate() {
        let verified = verify_entry(entry, &f.verifier)?;
        ensure!(verified.index == u64::try_from(i)?);
        ensure!(verified.leaf_hash == leaf_hash(&entry.canonicalized_body));
        ensure!(verified.checkpoint.checkpoint.size == 7);
        ensure!(verified.body.kind() == "hashedrekord");
    }
    // The artifact check: the right file passes, another fails.
    let verified = verify_entry(&f.entries[2], &f.verifier)?;
    verified.body.check_artifact(b"artifact 2")?;
    ensure!(matches!(
        verified.body.check_artifact(b"artifact 3"),
        Err(Error::ArtifactMismatch {
            algorithm: "SHA2_256",
            ..
        })
    ));
    Ok(())
}

#[test]
fn tampering_is_refused() -> anyhow::Result<()> {
    let f = fixture()?;
    let other_log = LogSigner::from_ed25519_seed([4; 32], KeyName::new("log.example.dev")?);
    let other_log_id = other_log.log_id();
    type Tamper = Box<dyn Fn(&mut TransparencyLogEntry)>;
    type Case = (&'static str, Tamper, fn(&Error) -> bool);
    let cases: Vec<Case> = vec![
        (
            "proof hash flipped",
            Box::new(|e| proof(e).hashes[1][0] ^= 1),
            |e| {
                matches!(
                    e,
                    Error::Inclusion {
                        index: 5,
                        size: 7,
                        ..
                    }
                )
            },
        ),
        (
            "proof hash dropped",
            Box::new(|e| {
                proof(e).hashes.pop();
            }),
            |e| matches!(e, Error::Inclusion { .. }),
        ),
        (
            "proof hash of 31 bytes",
            Box::new(|e| {
                proof(e).hashes[0].pop();
            }),
            |e| matches!(e, Error::HashLength { field, len: 31 } if field == "inclusionProof.hashes[0]"),
        ),
        (
            "other index",
            Box::new(|e| {
                e.log_index = 4;
                proof(e).log_index = 4;
            }),
            |e| matches!(e, Error::Inclusion { index: 4, .. }),
        ),
        ("index mismatch", Box::new(|e| e.log_index = 4), |e| {
            matches!(e, Error::IndexMismatch { entry: 4, proof: 5 })
        }),
        (
            "negative index",
            Box::new(|e| {
                e.log_index = -1;
                proof(e).log_index = -1;
            }),
            |e| {
                matches!(
                    e,
                    Error::OutOfRange {
                        field: "logIndex",
                        value: -1
                    }
                )
            },
        ),
        (
            "root changed",
            Box::new(|e| proof(e).root_hash[31] ^= 1),
            |e| {
                matches!(
                    e,
                    Error::CheckpointMismatch {
                        field: "rootHash",
                        ..
                    }
                )
            },
        ),
        (
            "tree size changed",
            Box::new(|e| proof(e).tree_size = 8),
            |e| {
                matches!(
                    e,
                    Error::CheckpointMismatch {
                        field: "treeSize",
                        ..
                    }
                )
            },
        ),
        (
            "checkpoint signature broken",
            Box::new(|e| {
                let cp = proof(e).checkpoint.as_mut().expect("checkpoint");
                cp.envelope = cp.envelope.replacen("\n7\n", "\n8\n", 1);
            }),
            |e| matches!(e, Error::Checkpoint { .. }),
        ),
        (
            "checkpoint missing",
            Box::new(|e| proof(e).checkpoint = None),
            |e| {
                matches!(
                    e,
                    Error::MissingField {
                        field: "inclusionProof.checkpoint.envelope",
                        ..
                    }
                )
            },
        ),
        (
            "other log ID",
            Box::new(move |e| {
                e.log_id = Some(LogId {
                    key_id: other_log_id.to_vec(),
                })
            }),
            |e| matches!(e, Error::LogIdMismatch { .. }),
        ),
        (
            "kind changed",
            Box::new(|e| e.kind_version.as_mut().expect("kv").kind = "dsse".into()),
            |e| matches!(e, Error::KindMismatch { .. }),
        ),
        (
            "version changed",
            Box::new(|e| e.kind_version.as_mut().expect("kv").version = "0.0.1".into()),
            |e| matches!(e, Error::KindMismatch { .. }),
        ),
        (
            "body not canonical",
            Box::new(|e| e.canonicalized_body.push(b' ')),
            |e| matches!(e, Error::BodyNotCanonical),
        ),
        (
            "body signature changed",
            Box::new(|e| {
                // Swap in another entry's signature: still canonical, but it does not verify.
                let body: serde_json::Value =
                    serde_json::from_slice(&e.canonicalized_body).expect("json");
                let mut body = body;
                let sig = &mut body["spec"]["hashedRekordV002"]["signature"]["content"];
                let text = sig.as_str().expect("content").to_string();
                let mut chars: Vec<char> = text.chars().collect();
                chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
                *sig = chars.into_iter().collect::<String>().into();
                e.canonicalized_body = serde_json_canonicalizer::to_vec(&body).expect("canonical");
            }),
            |e| matches!(e, Error::BodyRejected { .. }),
        ),
    ];
    for (what, tamper, expected) in cases {
        let mut entry = f.entries[5].clone();
        tamper(&mut entry);
        match verify_entry(&entry, &f.verifier) {
            Err(e) if expected(&e) => {
                ensure!(!e.to_string().contains('\n'), "{what}: multi-line {e}");
            }
            other => anyhow::bail!("{what}: got {other:?}"),
        }
    }

    // The wrong log key: the same entry fails under another log's verifier.
    let wrong = other_log.verifier();
    ensure!(matches!(
        verify_entry(&f.entries[0], &wrong),
        Err(Error::LogIdMismatch { .. })
    ));
    // Same key under another origin: another log ID too (Ed25519 IDs cover the name).
    let renamed = LogVerifier::from_spki_der(
        KeyName::new("other.example.dev")?,
        &f.signer.public_key_der(),
    )?;
    ensure!(matches!(
        verify_entry(&f.entries[0], &renamed),
        Err(Error::LogIdMismatch { .. })
    ));
    Ok(())
}
