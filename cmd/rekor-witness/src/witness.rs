//! The witness proper: c2sp.org/tlog-witness v1.0.0 `add-checkpoint`, checked in the order the
//! spec states its rules, and the latest cosigned checkpoint of each log.
//!
//! [`parse_add_request`], [`verify_signatures`] and [`check_consistency`] are pure; [`Witness`]
//! adds the per-log lock, the clock, the key and the durable state.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rekor_note::{
    Checkpoint, CosignatureSigner, MAX_COSIGNATURE_TIMESTAMP, Note, NoteSignature, NoteVerifier,
    Origin, open_note,
};
use rekor_tlog::{Hash, ProofError, TreeSize, empty_root, verify_consistency};
use tokio::sync::Mutex;

use crate::config::KnownLog;
use crate::error::{AddError, Malformed};
use crate::state::{Record, StateDir, origin_hash};

/// Most consistency proof lines a client may send (tlog-witness, "add-checkpoint").
pub(crate) const MAX_PROOF_LINES: usize = 63;

/// A well-formed `add-checkpoint` body; the checkpoint is not verified yet.
#[derive(Debug)]
pub(crate) struct AddRequest<'a> {
    /// The `old <size>` line.
    pub(crate) old: u64,
    /// The consistency proof from `old` to the checkpoint's size.
    pub(crate) proof: Vec<Hash>,
    /// The signed checkpoint note, as sent.
    pub(crate) note: &'a [u8],
    /// The checkpoint text of `note`, parsed.
    pub(crate) checkpoint: Checkpoint,
    /// The note's text (what log signatures and cosignatures sign).
    pub(crate) text: String,
}

/// Parses an `add-checkpoint` body: `old <size>\n`, up to 63 base64 hash lines, an empty line,
/// and a checkpoint note.
///
/// # Errors
/// The [`Malformed`] rule that failed.
pub(crate) fn parse_add_request(body: &[u8]) -> Result<AddRequest<'_>, Malformed> {
    let (old_line, mut rest) = split_line(body).ok_or(Malformed::OldLineMissing)?;
    let old = parse_old_line(old_line).ok_or(Malformed::OldLine)?;
    let mut proof = Vec::new();
    loop {
        let (line, after) = split_line(rest).ok_or(Malformed::NoBlankLine)?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err(Malformed::TooManyProofLines {
                max: MAX_PROOF_LINES,
            });
        }
        let hash = STANDARD
            .decode(line)
            .ok()
            .and_then(|raw| Hash::from_slice(&raw))
            .ok_or(Malformed::ProofLine {
                line: proof.len() + 1,
            })?;
        proof.push(hash);
    }
    let parsed = Note::parse(rest).map_err(Malformed::Note)?;
    let checkpoint = Checkpoint::parse(parsed.text()).map_err(Malformed::Checkpoint)?;
    Ok(AddRequest {
        old,
        proof,
        note: rest,
        checkpoint,
        text: parsed.text().to_owned(),
    })
}

/// Splits off the first `\n`-terminated line (without its newline).
fn split_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    let (line, rest) = bytes.split_at(end);
    Some((line, rest.get(1..)?))
}

/// `old <decimal>`, no sign, no leading zeros (except `0` itself), fitting in a u64.
fn parse_old_line(line: &[u8]) -> Option<u64> {
    let digits = line.strip_prefix(b"old ")?;
    if digits.is_empty()
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits.len() > 1 && digits.first() == Some(&b'0'))
    {
        return None;
    }
    core::str::from_utf8(digits).ok()?.parse().ok()
}

/// Verifies the checkpoint's signatures against `log`'s trusted keys; returns the lines that
/// verified (one per key), which the stored checkpoint keeps.
///
/// # Errors
/// [`AddError::Signature`] (403) if no trusted key's signature is present, or one fails.
pub(crate) fn verify_signatures(
    request: &AddRequest<'_>,
    log: &KnownLog,
) -> Result<Vec<NoteSignature>, AddError> {
    let verifiers: Vec<&dyn NoteVerifier> = log
        .verifiers
        .iter()
        .map(|v| v as &dyn NoteVerifier)
        .collect();
    open_note(request.note, &verifiers)
        .map(|(_, verified)| verified)
        .map_err(|source| AddError::Signature {
            origin: log.origin.as_str().to_owned(),
            source,
        })
}

/// The size rules, in spec order, against `latest`, the latest cosigned checkpoint (if any).
///
/// # Errors
/// [`AddError::OldSizeAboveSize`] (400), [`AddError::OldSizeMismatch`] (409),
/// [`AddError::EmptyTreeRoot`] or [`AddError::Proof`] (422), [`AddError::Fork`] (409).
pub(crate) fn check_consistency(
    request: &AddRequest<'_>,
    latest: Option<&Record>,
) -> Result<(), AddError> {
    let (old, size) = (request.old, request.checkpoint.size);
    let root = Hash(request.checkpoint.root);
    if old > size {
        return Err(AddError::OldSizeAboveSize { old, size });
    }
    let (latest_size, latest_root) = latest.map_or((0, empty_root()), |r| (r.size, r.root));
    if old != latest_size {
        return Err(AddError::OldSizeMismatch {
            old,
            latest: latest_size,
        });
    }
    // v1.0.0 leaves a size-0 checkpoint with another root undefined; the editor's draft answers
    // 422, which rejects nothing v1.0.0 allows.
    if size == 0 && root != empty_root() {
        return Err(AddError::EmptyTreeRoot);
    }
    let proof_error = |source| AddError::Proof { old, size, source };
    if old == size {
        if !request.proof.is_empty() {
            return Err(proof_error(ProofError::UnexpectedProof {
                len: request.proof.len(),
            }));
        }
        if root != latest_root {
            return Err(AddError::Fork { size });
        }
        return Ok(());
    }
    verify_consistency(
        TreeSize::new(old),
        TreeSize::new(size),
        &latest_root,
        &root,
        &request.proof,
    )
    .map_err(proof_error)
}

/// One known log with its latest cosigned checkpoint, behind a lock that makes
/// check-and-update atomic.
#[derive(Debug)]
struct LogSlot {
    log: KnownLog,
    latest: Mutex<Latest>,
}

#[derive(Debug)]
enum Latest {
    /// The state in memory equals the state on disk.
    Known(Option<Record>),
    /// A write failed and the file could not be read back: refuse until restarted.
    Unknown,
}

/// The witness: its key, its known logs and their durable state.
#[derive(Debug)]
pub(crate) struct Witness {
    signer: CosignatureSigner,
    by_origin: HashMap<Origin, Arc<LogSlot>>,
    by_hash: HashMap<String, Arc<LogSlot>>,
    state: Arc<StateDir>,
}

impl Witness {
    /// A witness over `logs`, loading each log's latest checkpoint from `state`.
    ///
    /// # Errors
    /// Any [`StateDir::load`] error; the witness does not start on unreadable state.
    pub(crate) fn new(
        signer: CosignatureSigner,
        logs: Vec<KnownLog>,
        state: StateDir,
    ) -> Result<Self, crate::error::StateError> {
        let mut by_origin = HashMap::new();
        let mut by_hash = HashMap::new();
        for log in logs {
            let latest = state.load(&log.origin)?;
            tracing::info!(
                origin = log.origin.as_str(),
                keys = log.verifiers.len(),
                size = latest.as_ref().map(|r| r.size),
                "known log"
            );
            let slot = Arc::new(LogSlot {
                latest: Mutex::new(Latest::Known(latest)),
                log,
            });
            by_hash.insert(origin_hash(&slot.log.origin), Arc::clone(&slot));
            by_origin.insert(slot.log.origin.clone(), slot);
        }
        Ok(Self {
            signer,
            by_origin,
            by_hash,
            state: Arc::new(state),
        })
    }

    /// Handles one `add-checkpoint` body and returns the cosignature line(s).
    ///
    /// The checks and the state update run under the log's lock; the new state is durable before
    /// this returns `Ok`. Not cancel-safe between the write and the in-memory update: run it in
    /// its own task (the HTTP handler does).
    ///
    /// # Errors
    /// The [`AddError`] of the first rule that failed.
    pub(crate) async fn add_checkpoint(&self, body: &[u8]) -> Result<String, AddError> {
        let request = parse_add_request(body)?;
        let slot = self
            .by_origin
            .get(&request.checkpoint.origin)
            .ok_or_else(|| AddError::UnknownOrigin {
                origin: request.checkpoint.origin.as_str().to_owned(),
            })?;
        let log_signatures = verify_signatures(&request, &slot.log)?;
        let mut latest = slot.latest.lock().await;
        let Latest::Known(current) = &*latest else {
            return Err(AddError::StateUnavailable);
        };
        check_consistency(&request, current.as_ref())?;

        let timestamp = unix_now().ok_or(AddError::Clock)?;
        let cosignature = self
            .signer
            .cosign(&request.text, timestamp)
            .map_err(AddError::Cosign)?;
        let mut signatures = log_signatures;
        signatures.push(cosignature.clone());
        let stored = Note::new(&request.text, signatures)
            .map_err(AddError::Cosign)?
            .to_bytes();
        let record = Record {
            size: request.checkpoint.size,
            root: Hash(request.checkpoint.root),
            note: stored,
        };

        let state = Arc::clone(&self.state);
        let origin = slot.log.origin.clone();
        let note = record.note.clone();
        let written = tokio::task::spawn_blocking(move || {
            let result = state.store(&origin, &note);
            // After a failed write the file holds the old or the new checkpoint; find out which.
            let reread = result.as_ref().err().map(|_| state.load(&origin));
            (result, reread)
        })
        .await
        .map_err(|_| AddError::Task)?;
        match written {
            (Ok(()), _) => {
                *latest = Latest::Known(Some(record));
                Ok(cosignature.to_line())
            }
            (Err(error), reread) => {
                *latest = match reread {
                    Some(Ok(on_disk)) => Latest::Known(on_disk),
                    _ => Latest::Unknown,
                };
                Err(AddError::Persist(error))
            }
        }
    }

    /// The latest cosigned checkpoint of the log whose origin hashes to `origin_hash`
    /// (lowercase hex SHA-256), with the log signatures that verified and the cosignature.
    /// `None` for an unknown log or one never cosigned.
    pub(crate) async fn latest_checkpoint(&self, origin_hash: &str) -> Option<Vec<u8>> {
        let slot = self.by_hash.get(origin_hash)?;
        match &*slot.latest.lock().await {
            Latest::Known(Some(record)) => Some(record.note.clone()),
            Latest::Known(None) | Latest::Unknown => None,
        }
    }
}

/// Seconds since the epoch, if the clock is after 1970 and within the cosignature range. Zero is
/// refused too: a cosignature timestamp must not be zero.
fn unix_now() -> Option<u64> {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    (seconds > 0 && seconds <= MAX_COSIGNATURE_TIMESTAMP).then_some(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekor_note::{KeyName, LogSigner};
    use rekor_tlog::{MemoryTree, leaf_hash};

    const ORIGIN: &str = "log.example";

    fn tree(leaves: u64, salt: u8) -> MemoryTree {
        let mut tree = MemoryTree::new();
        for i in 0..leaves {
            let mut entry = i.to_be_bytes().to_vec();
            entry.push(salt);
            tree.append(leaf_hash(&entry));
        }
        tree
    }

    fn signer() -> LogSigner {
        LogSigner::from_ed25519_seed([9; 32], KeyName::new(ORIGIN).unwrap())
    }

    fn body(old: u64, proof: &[Hash], size: u64, root: Hash, signer: &LogSigner) -> Vec<u8> {
        let checkpoint = Checkpoint::new(Origin::new(ORIGIN).unwrap(), size, root.0);
        let mut out = format!("old {old}\n");
        for hash in proof {
            out.push_str(&STANDARD.encode(hash.0));
            out.push('\n');
        }
        out.push('\n');
        let mut bytes = out.into_bytes();
        bytes.extend(signer.sign_checkpoint(&checkpoint).unwrap());
        bytes
    }

    fn record(tree: &MemoryTree, size: u64) -> Record {
        Record {
            size,
            root: tree.root(TreeSize::new(size)).unwrap(),
            note: Vec::new(),
        }
    }

    #[test]
    fn parses_the_spec_shape() {
        let t = tree(7, 0);
        let proof = t
            .consistency_proof(TreeSize::new(3), TreeSize::new(7))
            .unwrap();
        let root = t.root(TreeSize::new(7)).unwrap();
        let bytes = body(3, &proof, 7, root, &signer());
        let request = parse_add_request(&bytes).unwrap();
        assert_eq!(request.old, 3);
        assert_eq!(request.proof, proof);
        assert_eq!(request.checkpoint.size, 7);
        assert!(request.note.starts_with(b"log.example\n7\n"));
        assert_eq!(
            request.text,
            String::from_utf8_lossy(&request.note[..request.text.len()])
        );
    }

    #[test]
    fn malformed_bodies() {
        let good = body(0, &[], 0, empty_root(), &signer());
        let note = &good[b"old 0\n\n".len()..];
        let with = |prefix: &str| {
            let mut b = prefix.as_bytes().to_vec();
            b.extend_from_slice(note);
            b
        };
        let hash_line = format!("{}\n", STANDARD.encode([1u8; 32]));
        type Case = (Vec<u8>, fn(&Malformed) -> bool);
        let cases: Vec<Case> = vec![
            (Vec::new(), |e| matches!(e, Malformed::OldLineMissing)),
            (b"old 0".to_vec(), |e| {
                matches!(e, Malformed::OldLineMissing)
            }),
            (with("old 01\n\n"), |e| matches!(e, Malformed::OldLine)),
            (with("old +1\n\n"), |e| matches!(e, Malformed::OldLine)),
            (with("old  1\n\n"), |e| matches!(e, Malformed::OldLine)),
            (with("old 1 \n\n"), |e| matches!(e, Malformed::OldLine)),
            (with("old\n\n"), |e| matches!(e, Malformed::OldLine)),
            (with("Old 1\n\n"), |e| matches!(e, Malformed::OldLine)),
            (with("old 18446744073709551616\n\n"), |e| {
                matches!(e, Malformed::OldLine)
            }),
            (with("old 0\r\n\r\n"), |e| matches!(e, Malformed::OldLine)),
            (with("old 1\nnot base64\n\n"), |e| {
                matches!(e, Malformed::ProofLine { line: 1 })
            }),
            (with(&format!("old 1\n{hash_line}AQID\n\n")), |e| {
                matches!(e, Malformed::ProofLine { line: 2 })
            }),
            (with(&format!("old 1\n{}\n", hash_line.repeat(64))), |e| {
                matches!(e, Malformed::TooManyProofLines { max: 63 })
            }),
            (b"old 1\n".to_vec(), |e| matches!(e, Malformed::NoBlankLine)),
            (format!("old 1\n{hash_line}").into_bytes(), |e| {
                matches!(e, Malformed::NoBlankLine)
            }),
            (b"old 0\n\nnot a note\n".to_vec(), |e| {
                matches!(e, Malformed::Note(_))
            }),
            (
                "old 0\n\nhello\n\n\u{2014} log.example AAAAAAA=\n"
                    .as_bytes()
                    .to_vec(),
                |e| matches!(e, Malformed::Checkpoint(_)),
            ),
        ];
        for (bytes, expected) in cases {
            let err = parse_add_request(&bytes).unwrap_err();
            assert!(
                expected(&err),
                "{:?}: {err:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        // 63 proof lines are allowed.
        let bytes = with(&format!("old 1\n{}\n", hash_line.repeat(63)));
        assert_eq!(parse_add_request(&bytes).unwrap().proof.len(), 63);
    }

    #[test]
    fn signatures_must_come_from_a_trusted_key() {
        let log = KnownLog {
            origin: Origin::new(ORIGIN).unwrap(),
            verifiers: vec![signer().verifier()],
        };
        let good = body(0, &[], 0, empty_root(), &signer());
        let request = parse_add_request(&good).unwrap();
        assert_eq!(verify_signatures(&request, &log).unwrap().len(), 1);

        let stranger = LogSigner::from_ed25519_seed([1; 32], KeyName::new(ORIGIN).unwrap());
        let other = body(0, &[], 0, empty_root(), &stranger);
        let request = parse_add_request(&other).unwrap();
        assert!(matches!(
            verify_signatures(&request, &log),
            Err(AddError::Signature { .. })
        ));
    }

    #[test]
    fn size_rules_in_spec_order() {
        let t = tree(20, 0);
        let fork = tree(20, 1);
        let s = signer();
        let root = |t: &MemoryTree, n| t.root(TreeSize::new(n)).unwrap();
        let proof = |t: &MemoryTree, a, b| {
            t.consistency_proof(TreeSize::new(a), TreeSize::new(b))
                .unwrap()
        };
        let check = |bytes: &[u8], latest: Option<&Record>| {
            check_consistency(&parse_add_request(bytes).unwrap(), latest)
        };
        let at8 = record(&t, 8);

        // First checkpoint: old 0, empty proof.
        check(&body(0, &[], 8, root(&t, 8), &s), None).unwrap();
        // Old above size: 400.
        assert!(matches!(
            check(&body(9, &[], 8, root(&t, 8), &s), Some(&at8)),
            Err(AddError::OldSizeAboveSize { old: 9, size: 8 })
        ));
        // Old not the latest: 409 with the latest size.
        assert!(matches!(
            check(&body(0, &[], 12, root(&t, 12), &s), Some(&at8)),
            Err(AddError::OldSizeMismatch { old: 0, latest: 8 })
        ));
        assert!(matches!(
            check(&body(5, &[], 12, root(&t, 12), &s), None),
            Err(AddError::OldSizeMismatch { old: 5, latest: 0 })
        ));
        // Growth with a valid proof.
        check(
            &body(8, &proof(&t, 8, 12), 12, root(&t, 12), &s),
            Some(&at8),
        )
        .unwrap();
        // A bad proof, a truncated one, a proof from old 0: 422.
        let mut bad = proof(&t, 8, 12);
        bad[0].0[0] ^= 1;
        for p in [bad, proof(&t, 8, 12)[1..].to_vec()] {
            assert!(matches!(
                check(&body(8, &p, 12, root(&t, 12), &s), Some(&at8)),
                Err(AddError::Proof {
                    old: 8,
                    size: 12,
                    ..
                })
            ));
        }
        assert!(matches!(
            check(&body(0, &[Hash([1; 32])], 3, root(&t, 3), &s), None),
            Err(AddError::Proof { old: 0, .. })
        ));
        // A larger tree that does not extend the cosigned one: 422.
        assert!(matches!(
            check(
                &body(8, &proof(&fork, 8, 12), 12, root(&fork, 12), &s),
                Some(&at8)
            ),
            Err(AddError::Proof { .. })
        ));
        // Same size: same root is fine (re-cosign), another root is a fork (409), a proof 422.
        check(&body(8, &[], 8, root(&t, 8), &s), Some(&at8)).unwrap();
        assert!(matches!(
            check(&body(8, &[], 8, root(&fork, 8), &s), Some(&at8)),
            Err(AddError::Fork { size: 8 })
        ));
        assert!(matches!(
            check(&body(8, &[Hash([1; 32])], 8, root(&t, 8), &s), Some(&at8)),
            Err(AddError::Proof { .. })
        ));
        // Size zero: only the empty tree's root.
        check(&body(0, &[], 0, empty_root(), &s), None).unwrap();
        assert!(matches!(
            check(&body(0, &[], 0, Hash([1; 32]), &s), None),
            Err(AddError::EmptyTreeRoot)
        ));
    }

    #[test]
    fn statuses() {
        use axum::http::StatusCode;
        let cases = [
            (
                AddError::Malformed(Malformed::OldLine),
                StatusCode::BAD_REQUEST,
            ),
            (
                AddError::OldSizeAboveSize { old: 2, size: 1 },
                StatusCode::BAD_REQUEST,
            ),
            (
                AddError::UnknownOrigin {
                    origin: String::new(),
                },
                StatusCode::NOT_FOUND,
            ),
            (
                AddError::Signature {
                    origin: String::new(),
                    source: rekor_note::NoteError::NoVerifiedSignature,
                },
                StatusCode::FORBIDDEN,
            ),
            (
                AddError::OldSizeMismatch { old: 0, latest: 1 },
                StatusCode::CONFLICT,
            ),
            (AddError::Fork { size: 1 }, StatusCode::CONFLICT),
            (AddError::EmptyTreeRoot, StatusCode::UNPROCESSABLE_ENTITY),
            (
                AddError::Proof {
                    old: 1,
                    size: 2,
                    source: ProofError::EmptyProof,
                },
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (AddError::Clock, StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error:?}");
        }
    }
}
