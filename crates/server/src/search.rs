//! `GET /api/v2/search`: the entries that carry an artifact digest, a signer's key or a
//! certificate identity, each with its inclusion proof against the checkpoint returned.
//!
//! Query: exactly one of `digest=<alg>:<hex>`, `key=sha256:<hex>` (SHA-256 of the DER
//! SubjectPublicKeyInfo; for a certificate, its leaf's) or `identity=<e-mail or URI>`;
//! optional `pageSize` (1 to 1000, default 100) and `pageToken` (from the previous page's
//! `nextPageToken`). Answer, oldest entry first:
//!
//! ```text
//! {"checkpoint": "<signed note>", "entries": [TransparencyLogEntry, ...], "nextPageToken": "..."}
//! ```
//!
//! `nextPageToken` is present only when more entries match in the checkpoint's tree. Every
//! entry's `inclusionProof` leads to that checkpoint's root and carries it as its envelope.
//!
//! `GET /api/v2/search/completeness?<term>` proves which entries of the latest committed tree
//! may carry the term ([`rekor_entries::search::commitment`]):
//!
//! ```text
//! {"commitment": "<signed note>", "bucket": 5, "postings": "<base64>", "proof": ["<base64>", ...]}
//! ```

use rekor_entries::search::{SearchTerm, TermError, TermKind};
use rekor_search::{MAX_PAGE_SIZE, SearchError, SearchTree};

use crate::error::ApiError;
use crate::service::{AppState, ProvenInto};

/// The page size when the query names none.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// The longest query string accepted.
pub const MAX_QUERY_LEN: usize = 4096;

/// What is wrong with a search query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SearchQueryError {
    /// No `digest`, `key` or `identity`.
    #[error("name one of digest=<alg>:<hex>, key=sha256:<hex> or identity=<e-mail or URI>")]
    NoTerm,
    /// More than one term, or one parameter twice.
    #[error("name exactly one of digest, key or identity, once")]
    SeveralTerms,
    /// A parameter this endpoint does not know.
    #[error("unknown query parameter {0:?} (known: digest, key, identity, pageSize, pageToken)")]
    UnknownParameter(String),
    /// The term's value is malformed.
    #[error(transparent)]
    Term(#[from] TermError),
    /// `pageSize` is not a number in 1..=1000.
    #[error("pageSize must be a number from 1 to {MAX_PAGE_SIZE}")]
    BadPageSize,
    /// `pageToken` is not one this server issued.
    #[error("pageToken is not one a previous page returned")]
    BadPageToken,
    /// The query string is too long.
    #[error("the query is longer than {MAX_QUERY_LEN} bytes")]
    TooLong,
}

/// A parsed search query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// The term.
    pub term: SearchTerm,
    /// Entries per page.
    pub page_size: usize,
    /// The first index the page may hold.
    pub start: u64,
}

const TOKEN_PREFIX: &str = "from-";

/// The `nextPageToken` for a page that starts at `index`.
fn page_token(index: u64) -> String {
    format!("{TOKEN_PREFIX}{index}")
}

impl SearchQuery {
    /// Parses a query string (`digest=sha256%3A...&pageSize=10`).
    ///
    /// # Errors
    ///
    /// [`SearchQueryError`] naming the problem.
    pub fn parse(query: &str) -> Result<SearchQuery, SearchQueryError> {
        if query.len() > MAX_QUERY_LEN {
            return Err(SearchQueryError::TooLong);
        }
        let mut term: Option<(TermKind, String)> = None;
        let mut page_size = None;
        let mut start = None;
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let kind = match name.as_ref() {
                "digest" => TermKind::Digest,
                "key" => TermKind::Key,
                "identity" => TermKind::Identity,
                "pageSize" | "page_size" => {
                    let size = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                        .ok_or(SearchQueryError::BadPageSize)?;
                    page_size = Some(size);
                    continue;
                }
                "pageToken" | "page_token" => {
                    if !value.is_empty() {
                        let index = value
                            .strip_prefix(TOKEN_PREFIX)
                            .and_then(|n| n.parse::<u64>().ok())
                            .ok_or(SearchQueryError::BadPageToken)?;
                        start = Some(index);
                    }
                    continue;
                }
                other => {
                    return Err(SearchQueryError::UnknownParameter(
                        other.chars().take(64).collect(),
                    ));
                }
            };
            if term.replace((kind, value.into_owned())).is_some() {
                return Err(SearchQueryError::SeveralTerms);
            }
        }
        let (kind, value) = term.ok_or(SearchQueryError::NoTerm)?;
        Ok(SearchQuery {
            term: SearchTerm::parse(kind, &value)?,
            page_size: page_size.unwrap_or(DEFAULT_PAGE_SIZE),
            start: start.unwrap_or(0),
        })
    }
}

impl AppState {
    /// Answers a search against the latest checkpoint, as the JSON body of
    /// `GET /api/v2/search`.
    ///
    /// # Errors
    ///
    /// [`ApiError::SearchNotEnabled`] without an index; [`ApiError::NoCheckpoint`];
    /// [`ApiError::SearchIndexBehind`] while the index catches up; storage failures.
    pub async fn search(&self, query: &SearchQuery) -> Result<Vec<u8>, ApiError> {
        let index = self.search_index().ok_or(ApiError::SearchNotEnabled)?;
        let note = self.checkpoint().await?;
        let checkpoint = parse_checkpoint(&note)?;
        let tree = SearchTree {
            size: checkpoint.size,
            root: rekor_tlog::Hash(checkpoint.root),
        };
        let page = rekor_search::search(
            self.storage().as_ref(),
            index.as_ref(),
            tree,
            &query.term,
            query.start,
            query.page_size,
        )
        .await
        .map_err(|e| match e {
            SearchError::IndexBehind { indexed, size } => {
                ApiError::SearchIndexBehind { indexed, size }
            }
            SearchError::Storage(e) => ApiError::from(e),
            other => ApiError::Internal(other.to_string()),
        })?;

        let envelope = String::from_utf8_lossy(&note).into_owned();
        let mut out = Vec::with_capacity(256 + page.entries.len() * 2048);
        out.extend_from_slice(br#"{"checkpoint":"#);
        out.extend_from_slice(&json_string(&envelope));
        out.extend_from_slice(br#","entries":["#);
        for (i, found) in page.entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let entry = self.transparency_log_entry(
                found.index,
                &entry_kind(&found.body),
                &found.body,
                ProvenInto {
                    size: tree.size,
                    root: &tree.root,
                    proof: &found.proof,
                    note: &note,
                },
            )?;
            out.extend_from_slice(&rekor_api::transparency_log_entry_to_json(&entry));
        }
        out.push(b']');
        if let Some(next) = page.next {
            out.extend_from_slice(br#","nextPageToken":"#);
            out.extend_from_slice(&json_string(&page_token(next)));
        }
        out.push(b'}');
        Ok(out)
    }
}

impl AppState {
    /// Answers `GET /api/v2/search/completeness`: the term's bucket under the latest signed
    /// commitment to the index, with its proof.
    ///
    /// # Errors
    ///
    /// [`ApiError::SearchNotEnabled`] without an index; [`ApiError::SearchCommitmentsOff`],
    /// [`ApiError::SearchCommitmentPending`]; storage failures.
    pub async fn search_completeness(&self, term: &SearchTerm) -> Result<Vec<u8>, ApiError> {
        use base64::Engine as _;
        use base64::engine::general_purpose::STANDARD;

        let index = self.search_index().ok_or(ApiError::SearchNotEnabled)?;
        let commitment = self.search_commitment()?;
        let proof = commitment
            .prove(index.as_ref(), term)
            .await
            .map_err(|e| match e {
                SearchError::Storage(e) => ApiError::from(e),
                other => ApiError::Internal(other.to_string()),
            })?;
        let answer = serde_json::json!({
            "commitment": String::from_utf8_lossy(&commitment.note),
            "bucket": proof.bucket,
            "postings": STANDARD.encode(&proof.content),
            "proof": proof.proof.iter().map(|h| STANDARD.encode(h.0)).collect::<Vec<_>>(),
        });
        serde_json::to_vec(&answer).map_err(|e| ApiError::Internal(e.to_string()))
    }
}

/// The entry's `kind`, read from its bytes (`hashedrekord` or `dsse`).
fn entry_kind(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Kind {
        kind: String,
    }
    serde_json::from_slice::<Kind>(body)
        .map(|k| k.kind)
        .unwrap_or_default()
}

pub(crate) fn parse_checkpoint(note: &[u8]) -> Result<rekor_note::Checkpoint, ApiError> {
    let parsed = rekor_note::Note::parse(note)
        .and_then(|note| rekor_note::Checkpoint::parse(note.text()))
        .map_err(|e| ApiError::Internal(format!("the stored checkpoint does not parse: {e}")))?;
    Ok(parsed)
}

fn json_string(value: &str) -> Vec<u8> {
    // Serialising a string cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> String {
        format!("sha256:{}", "ab".repeat(32))
    }

    #[test]
    fn queries_parse_and_refuse_precisely() {
        let q = SearchQuery::parse(&format!("digest={}&pageSize=5&pageToken=from-7", digest()))
            .unwrap();
        assert_eq!(q.term, SearchTerm::digest(&digest()).unwrap());
        assert_eq!((q.page_size, q.start), (5, 7));
        let q = SearchQuery::parse("identity=alice%40example.com").unwrap();
        assert_eq!(q.term.value(), "alice@example.com");
        assert_eq!((q.page_size, q.start), (DEFAULT_PAGE_SIZE, 0));

        let refused = |query: &str| SearchQuery::parse(query).unwrap_err();
        assert_eq!(refused(""), SearchQueryError::NoTerm);
        assert_eq!(refused("pageSize=3"), SearchQueryError::NoTerm);
        assert_eq!(
            refused(&format!("digest={}&key={}", digest(), digest())),
            SearchQueryError::SeveralTerms
        );
        assert_eq!(
            refused(&format!("digest={}&pageSize=0", digest())),
            SearchQueryError::BadPageSize
        );
        assert_eq!(
            refused(&format!("digest={}&pageSize=1001", digest())),
            SearchQueryError::BadPageSize
        );
        assert_eq!(
            refused(&format!("digest={}&pageToken=7", digest())),
            SearchQueryError::BadPageToken
        );
        assert!(matches!(
            refused("digest=sha256:abc"),
            SearchQueryError::Term(TermError::BadHex { .. })
        ));
        assert!(matches!(
            refused("uuid=1"),
            SearchQueryError::UnknownParameter(name) if name == "uuid"
        ));
        assert_eq!(
            refused(&"a".repeat(MAX_QUERY_LEN + 1)),
            SearchQueryError::TooLong
        );
        assert_eq!(page_token(12), "from-12");
    }
}
