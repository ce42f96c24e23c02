//! Searching the log (`GET /api/v2/search`) and checking every answer: each page's checkpoint
//! is signed by the trusted key, each entry passes [`verify_entry`] with its proof to that
//! checkpoint, carries the term asked for (derived from its own body), and comes after the one
//! before it; pages answered against a later checkpoint must be consistent with the earlier
//! one. Where the log signs commitments to its index, the answer is also shown complete: no
//! entry of the committed tree that carries the term was left out
//! ([`rekor_entries::search::commitment`]).

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rekor_entries::search::commitment::{IndexCommitment, verify_bucket};
use rekor_entries::search::{SearchTerm, search_terms};
use rekor_note::LogVerifier;
use rekor_tlog::{Hash, TreeSize, empty_root};
use serde::Deserialize;

use crate::checkpoint::SignedCheckpoint;
use crate::error::{Error, Result};
use crate::http::Client;
use crate::trust::entry_from_json;
use crate::verify::{VerifiedEntry, verify_entry};

/// The most entries after a commitment's size that a search reads to prove them complete too.
pub const MAX_TAIL_SCAN: u64 = 64 * 1024;

/// The largest search page answer accepted.
const MAX_SEARCH_RESPONSE: usize = 64 << 20;

/// Every entry the log returned for a term, all verified.
#[derive(Clone, Debug)]
pub struct SearchResults {
    /// The entries, oldest first.
    pub entries: Vec<VerifiedEntry>,
    /// The latest checkpoint a page was answered against.
    pub checkpoint: Option<SignedCheckpoint>,
    /// How many pages it took.
    pub pages: usize,
    /// Whether the answer was shown to leave nothing out.
    pub completeness: Completeness,
}

/// Whether a search's answer was shown complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completeness {
    /// The log's signed commitment to its index, for its first `committed` entries, lists
    /// every entry among them that may carry the term, and each that does is in the answer;
    /// the entries after it, up to `size`, were read from the log and checked. Entries from
    /// `size` to the checkpoint's size are proven included, not complete.
    Proven {
        /// How many of the log's first entries the answer is proven complete for: the
        /// checkpoint's size when the entries after the commitment were read and checked too
        /// (up to [`MAX_TAIL_SCAN`] of them), else the commitment's.
        size: u64,
        /// The log size the commitment covers.
        committed: u64,
        /// The size of the checkpoint the answer was checked against.
        checkpoint_size: u64,
        /// The signed commitment note.
        commitment: String,
    },
    /// Not checked, and why (the log signs no commitments, or none yet).
    Unchecked {
        /// Why.
        reason: String,
    },
}

/// What [`Client::audit_search_commitment`] rebuilt and found equal to the signed commitment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitmentAudit {
    /// The log size the commitment covers.
    pub size: u64,
    /// The postings of its entries.
    pub postings: u64,
    /// Its bucket bits.
    pub bucket_bits: u8,
    /// The size of the checkpoint its tree was proven a prefix of.
    pub checkpoint_size: u64,
}

/// Opens a search-index commitment note signed by the log's key, for the log's origin.
fn open_commitment(note: &str, verifier: &LogVerifier) -> Result<IndexCommitment> {
    let (note, _) = rekor_note::open_note(note.as_bytes(), &[verifier])
        .map_err(|e| rejected(format!("the search-index commitment: {e}")))?;
    let statement = IndexCommitment::parse(note.text())
        .map_err(|e| rejected(format!("the search-index commitment: {e}")))?;
    if statement.origin != verifier.name().as_str() {
        return Err(rejected(format!(
            "the search-index commitment is for {:?}",
            statement.origin
        )));
    }
    Ok(statement)
}

#[derive(Deserialize)]
struct CompletenessAnswer {
    commitment: String,
    bucket: u64,
    postings: String,
    proof: Vec<String>,
}

/// A commitment checked against its signature and the term's bucket, before the pages.
struct CheckedCommitment {
    statement: IndexCommitment,
    note: String,
    /// The entries below the commitment's size that may carry the term.
    candidates: BTreeSet<u64>,
}

#[derive(Deserialize)]
struct Page {
    checkpoint: String,
    entries: Vec<serde_json::Value>,
    #[serde(rename = "nextPageToken")]
    next_page_token: Option<String>,
}

fn rejected(reason: impl Into<String>) -> Error {
    Error::SearchAnswer {
        reason: reason.into(),
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters and `:` pass through).
pub(crate) fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// Fetches every page of the entries carrying `term` and verifies them all.
    ///
    /// # Errors
    ///
    /// [`Error::Status`] for a refused query (400 names the problem; 501: the log keeps no
    /// index); [`Error::Checkpoint`], any [`verify_entry`] error, [`Error::SearchAnswer`] for
    /// an answer that breaks the rules above; [`Error::Inconsistent`] if a later page's
    /// checkpoint does not extend an earlier one.
    pub async fn search(
        &self,
        verifier: &LogVerifier,
        term: &SearchTerm,
        page_size: usize,
    ) -> Result<SearchResults> {
        // The commitment comes first, so the pages' checkpoint is at least as new.
        let commitment = self.search_commitment(verifier, term).await?;
        let mut results = SearchResults {
            entries: Vec::new(),
            checkpoint: None,
            pages: 0,
            completeness: Completeness::Unchecked {
                reason: String::new(),
            },
        };
        let mut token: Option<String> = None;
        loop {
            let mut path = format!(
                "search?{}={}&pageSize={page_size}",
                term.kind().name(),
                percent_encode(term.value())
            );
            if let Some(token) = &token {
                path.push_str(&format!("&pageToken={}", percent_encode(token)));
            }
            let body = self.get(&path, MAX_SEARCH_RESPONSE).await?;
            let page: Page = serde_json::from_slice(&body)
                .map_err(|e| rejected(format!("not a search answer: {e}")))?;
            results.pages += 1;
            let checkpoint = SignedCheckpoint::verify(page.checkpoint.as_bytes(), verifier)?;
            if let Some(earlier) = &results.checkpoint {
                if earlier.size() > checkpoint.size() {
                    return Err(rejected("a later page's checkpoint is smaller"));
                }
                self.prove_consistency(earlier, &checkpoint).await?;
            }
            if page.entries.len() > page_size {
                return Err(rejected(format!(
                    "{} entries on a page of {page_size}",
                    page.entries.len()
                )));
            }
            for value in &page.entries {
                let json = serde_json::to_vec(value)
                    .map_err(|e| rejected(format!("an entry does not encode: {e}")))?;
                let entry = entry_from_json(&json, "a search answer's entry")?;
                let verified = verify_entry(&entry, verifier)?;
                if verified.checkpoint.note() != checkpoint.note() {
                    return Err(rejected(format!(
                        "entry {} is proven against another checkpoint than the page's",
                        verified.index
                    )));
                }
                if !search_terms(&verified.body.bytes).contains(term) {
                    return Err(rejected(format!(
                        "entry {} does not carry {term}",
                        verified.index
                    )));
                }
                if let Some(last) = results.entries.last()
                    && last.index >= verified.index
                {
                    return Err(rejected(format!(
                        "entry {} comes after entry {}",
                        verified.index, last.index
                    )));
                }
                results.entries.push(verified);
            }
            results.checkpoint = Some(checkpoint);
            match page.next_page_token {
                Some(next) if !next.is_empty() => {
                    if page.entries.is_empty() {
                        return Err(rejected("an empty page with a next page"));
                    }
                    token = Some(next);
                }
                _ => break,
            }
        }
        results.completeness = match commitment {
            Err(reason) => Completeness::Unchecked { reason },
            Ok(commitment) => self.check_complete(term, &results, commitment).await?,
        };
        Ok(results)
    }

    /// Fetches and checks the term's bucket under the log's latest commitment; `Err(reason)`
    /// when the log offers none.
    async fn search_commitment(
        &self,
        verifier: &LogVerifier,
        term: &SearchTerm,
    ) -> Result<std::result::Result<CheckedCommitment, String>> {
        let path = format!(
            "search/completeness?{}={}",
            term.kind().name(),
            percent_encode(term.value())
        );
        let body = match self.get(&path, MAX_SEARCH_RESPONSE).await {
            Ok(body) => body,
            Err(Error::Status {
                status: 501 | 503,
                message,
                ..
            }) => return Ok(Err(message)),
            Err(Error::NotFound { .. }) => {
                return Ok(Err("the log serves no search-index commitments".to_string()));
            }
            Err(other) => return Err(other),
        };
        let answer: CompletenessAnswer = serde_json::from_slice(&body)
            .map_err(|e| rejected(format!("not a completeness answer: {e}")))?;
        let statement = open_commitment(&answer.commitment, verifier)?;
        let content = STANDARD
            .decode(&answer.postings)
            .map_err(|e| rejected(format!("the bucket's postings: {e}")))?;
        let proof = answer
            .proof
            .iter()
            .map(|h| {
                STANDARD
                    .decode(h)
                    .ok()
                    .and_then(|b| Hash::from_slice(&b))
                    .ok_or_else(|| rejected("a bucket proof hash is not 32 bytes of base64"))
            })
            .collect::<Result<Vec<_>>>()?;
        let candidates = verify_bucket(&statement, term, answer.bucket, &content, &proof)
            .map_err(|e| rejected(e.to_string()))?;
        Ok(Ok(CheckedCommitment {
            statement,
            note: answer.commitment,
            candidates: candidates.into_iter().collect(),
        }))
    }

    /// The log's tree of `size` entries, proven a prefix of `checkpoint` from the tiles, must
    /// have the root the commitment states.
    async fn check_committed_tree(
        &self,
        statement: &IndexCommitment,
        checkpoint: &SignedCheckpoint,
    ) -> Result<()> {
        let size = statement.log_size;
        let root = if size == 0 {
            empty_root()
        } else {
            self.prove_extends_size(TreeSize::new(size), checkpoint)
                .await?
                .0
        };
        if root != statement.log_root {
            return Err(rejected(format!(
                "the search-index commitment's root of the first {size} entries is not the log's"
            )));
        }
        Ok(())
    }

    /// Rebuilds the log's latest search-index commitment from the log itself: every entry of
    /// the committed tree is read from the bundles, checked against the tree's root (proven a
    /// prefix of the current checkpoint), and the postings of its terms are folded into an
    /// index root, which must be the one the log signed. This is what shows a commitment is
    /// the index the log implies; it reads the whole committed tree and holds its postings
    /// in memory (16 bytes each).
    ///
    /// # Errors
    ///
    /// [`Error::Status`] if the log offers no commitment; [`Error::SearchAnswer`] naming what
    /// disagrees; the tile and bundle errors of the reads.
    pub async fn audit_search_commitment(&self, verifier: &LogVerifier) -> Result<CommitmentAudit> {
        use futures::{StreamExt as _, TryStreamExt as _};
        use rekor_entries::search::commitment::{BucketTree, prefix_of_key};
        use rekor_tlog::{TreeBuilder, bundle_ids_for_size, leaf_hash};

        // Any term's answer carries the commitment; this one names no entry.
        let path = format!("search/completeness?digest=sha256:{}", "00".repeat(32));
        let body = self.get(&path, MAX_SEARCH_RESPONSE).await?;
        let answer: CompletenessAnswer = serde_json::from_slice(&body)
            .map_err(|e| rejected(format!("not a completeness answer: {e}")))?;
        let statement = open_commitment(&answer.commitment, verifier)?;
        let checkpoint = self.checkpoint(verifier).await?;
        if statement.log_size > checkpoint.size().get() {
            return Err(rejected(format!(
                "the commitment covers {} entries, more than the checkpoint's {}",
                statement.log_size,
                checkpoint.size().get()
            )));
        }
        self.check_committed_tree(&statement, &checkpoint).await?;

        let size = TreeSize::new(statement.log_size);
        let mut tree = TreeBuilder::new();
        let mut postings: Vec<(u64, u64)> = Vec::new();
        let mut bundles = futures::stream::iter(bundle_ids_for_size(size))
            .map(|id| self.bundle(id))
            .buffered(self.options().concurrency.max(1));
        let mut index = 0u64;
        while let Some(entries) = bundles.try_next().await? {
            let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
            tree.append(&leaves);
            for entry in &entries {
                postings.extend(
                    search_terms(entry)
                        .iter()
                        .map(|t| (prefix_of_key(&t.index_key()), index)),
                );
                index += 1;
            }
        }
        if tree.root() != statement.log_root {
            return Err(rejected(
                "the entry bundles do not hash to the committed tree's root",
            ));
        }
        postings.sort_unstable();
        postings.dedup();
        let count = u64::try_from(postings.len()).unwrap_or(u64::MAX);
        let rebuilt = BucketTree::from_postings(statement.bucket_bits, postings)
            .map_err(|e| rejected(e.to_string()))?;
        if rebuilt.root() != statement.index_root || count != statement.postings {
            return Err(rejected(format!(
                "the signed search-index commitment for {} entries is not the index of the log's entries \
                 (rebuilt {count} postings, root {}; signed {} postings, root {})",
                statement.log_size,
                rebuilt.root(),
                statement.postings,
                statement.index_root
            )));
        }
        Ok(CommitmentAudit {
            size: statement.log_size,
            postings: count,
            bucket_bits: statement.bucket_bits,
            checkpoint_size: checkpoint.size().get(),
        })
    }

    /// Checks the answer against the commitment: its tree is the log's, every returned entry
    /// it covers is listed, and every listed entry not returned does not carry the term.
    async fn check_complete(
        &self,
        term: &SearchTerm,
        results: &SearchResults,
        commitment: CheckedCommitment,
    ) -> Result<Completeness> {
        let Some(checkpoint) = &results.checkpoint else {
            return Err(rejected("a search answer without a checkpoint"));
        };
        let size = commitment.statement.log_size;
        if size > checkpoint.size().get() {
            return Ok(Completeness::Unchecked {
                reason: format!(
                    "the commitment covers {size} entries, more than the answer's checkpoint ({})",
                    checkpoint.size().get()
                ),
            });
        }
        self.check_committed_tree(&commitment.statement, checkpoint)
            .await?;
        let returned: BTreeSet<u64> = results
            .entries
            .iter()
            .map(|e| e.index)
            .filter(|i| *i < size)
            .collect();
        if let Some(index) = returned.difference(&commitment.candidates).next() {
            return Err(rejected(format!(
                "entry {index} carries {term}, but the search-index commitment does not list it"
            )));
        }
        // Listed but not returned: a term sharing the prefix by chance, or an entry left out.
        for &index in commitment.candidates.difference(&returned) {
            let entry = self.entry_at(index, checkpoint).await?;
            if search_terms(&entry.body).contains(term) {
                return Err(rejected(format!(
                    "the answer leaves out entry {index}, which carries {term}"
                )));
            }
        }
        // The entries after the commitment, read and checked here.
        let end = checkpoint.size().get();
        let mut proven = size;
        if end - size <= MAX_TAIL_SCAN {
            match self
                .scan_tail(term, size, commitment.statement.log_root, checkpoint)
                .await
            {
                Ok(carrying) => {
                    let returned: BTreeSet<u64> = results
                        .entries
                        .iter()
                        .map(|e| e.index)
                        .filter(|i| *i >= size)
                        .collect();
                    if let Some(index) = carrying.difference(&returned).next() {
                        return Err(rejected(format!(
                            "the answer leaves out entry {index}, which carries {term}"
                        )));
                    }
                    proven = end;
                }
                // A partial tile or bundle superseded since: the tail stays unproven.
                Err(Error::NotFound { .. }) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(Completeness::Proven {
            size: proven,
            committed: size,
            checkpoint_size: end,
            commitment: commitment.note,
        })
    }

    /// The indices of entries from `from` to the checkpoint that carry `term`, read from the
    /// bundles and checked: their leaves, appended to the tree of `from` entries (whose root
    /// `from_root` is already proven), must give the checkpoint's root.
    async fn scan_tail(
        &self,
        term: &SearchTerm,
        from: u64,
        from_root: Hash,
        checkpoint: &SignedCheckpoint,
    ) -> Result<BTreeSet<u64>> {
        use futures::{StreamExt as _, TryStreamExt as _};
        use rekor_tlog::{TreeBuilder, bundle_ids_for_size, leaf_hash};

        let mut carrying = BTreeSet::new();
        let start = TreeSize::new(from);
        let tiles = self
            .preload(|reader| TreeBuilder::resume(start, reader).map(|_| ()))
            .await?;
        let mut tree =
            TreeBuilder::resume(start, &tiles).map_err(|source| Error::Proof { source })?;
        if tree.root() != from_root {
            return Err(rejected(format!(
                "the log's edge tiles at {from} do not give the committed tree's root"
            )));
        }
        let first_bundle = from >> 8;
        let ids: Vec<_> = bundle_ids_for_size(checkpoint.size())
            .into_iter()
            .filter(|id| id.index.get() >= first_bundle)
            .collect();
        let mut bundles = futures::stream::iter(ids)
            .map(|id| async move { self.bundle(id).await.map(|entries| (id, entries)) })
            .buffered(self.options().concurrency.max(1));
        while let Some((id, entries)) = bundles.try_next().await? {
            let base = id.index.get() << 8;
            let mut leaves = Vec::with_capacity(entries.len());
            for (index, entry) in (base..).zip(&entries) {
                if index < from {
                    continue;
                }
                leaves.push(leaf_hash(entry));
                if search_terms(entry).contains(term) {
                    carrying.insert(index);
                }
            }
            tree.append(&leaves);
        }
        if tree.root() != checkpoint.root() {
            return Err(rejected(format!(
                "the entry bundles from {from} on do not give the checkpoint's root"
            )));
        }
        Ok(carrying)
    }
}
