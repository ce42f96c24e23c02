//! One page of a search answer (`GET /api/v2/search`) exactly as the log sent it, checked for
//! its shape only. [`Client::search`] is what proves an answer; this is for looking at an answer
//! it rejected, entry by entry (as `rekor-cli report` does to say which entry failed which
//! check).

use rekor_entries::search::SearchTerm;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::http::Client;
use crate::search::percent_encode;

/// The largest search page answer read.
const MAX_PAGE_RESPONSE: usize = 64 << 20;

/// A search page as served, nothing in it verified.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnverifiedSearchPage {
    /// The signed checkpoint note the page claims its entries are proven against.
    pub checkpoint: String,
    /// The entries, each meant to be a `TransparencyLogEntry` in protojson (parse them with
    /// [`entry_from_json`](crate::entry_from_json)).
    pub entries: Vec<serde_json::Value>,
    /// The token of the next page, if the log says there is one.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

impl Client {
    /// Fetches one page of the entries carrying `term`, starting at `token` (the previous
    /// page's `nextPageToken`), and checks nothing but that it is a search answer.
    ///
    /// # Errors
    ///
    /// [`Error::Status`], [`Error::Transport`] and the like for a request that fails;
    /// [`Error::SearchAnswer`] if the body is not a search answer at all.
    pub async fn search_page_unverified(
        &self,
        term: &SearchTerm,
        page_size: usize,
        token: Option<&str>,
    ) -> Result<UnverifiedSearchPage> {
        let mut path = format!(
            "search?{}={}&pageSize={page_size}",
            term.kind().name(),
            percent_encode(term.value())
        );
        if let Some(token) = token {
            path.push_str(&format!("&pageToken={}", percent_encode(token)));
        }
        let body = self.get(&path, MAX_PAGE_RESPONSE).await?;
        serde_json::from_slice(&body).map_err(|e| Error::SearchAnswer {
            reason: format!("not a search answer: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(percent_encode("sha256:0aF"), "sha256:0aF");
        assert_eq!(percent_encode("a b&c=d"), "a%20b%26c%3Dd");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn a_page_parses_with_or_without_a_token() {
        let page: UnverifiedSearchPage =
            serde_json::from_str(r#"{"checkpoint":"c","entries":[{}],"nextPageToken":"from-3"}"#)
                .unwrap();
        assert_eq!(page.next_page_token.as_deref(), Some("from-3"));
        assert_eq!(page.entries.len(), 1);
        let page: UnverifiedSearchPage =
            serde_json::from_str(r#"{"checkpoint":"c","entries":[]}"#).unwrap();
        assert!(page.next_page_token.is_none());
    }
}
