//! Searching the log (`GET /api/v2/search`) and checking every answer: each page's checkpoint
//! is signed by the trusted key, each entry passes [`verify_entry`] with its proof to that
//! checkpoint, carries the term asked for (derived from its own body), and comes after the one
//! before it; pages answered against a later checkpoint must be consistent with the earlier
//! one.

use rekor_entries::search::{SearchTerm, search_terms};
use rekor_note::LogVerifier;
use serde::Deserialize;

use crate::checkpoint::SignedCheckpoint;
use crate::error::{Error, Result};
use crate::http::Client;
use crate::trust::entry_from_json;
use crate::verify::{VerifiedEntry, verify_entry};

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

fn percent_encode(value: &str) -> String {
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
        let mut results = SearchResults {
            entries: Vec::new(),
            checkpoint: None,
            pages: 0,
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
                _ => return Ok(results),
            }
        }
    }
}
