//! `search`: every entry for a digest, a key or an identity, each verified (see
//! `rekor_client::Client::search`).

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use rekor_client::{Client, Completeness};
use rekor_entries::search::SearchTerm;
use rekor_note::LogVerifier;
use sha2::{Digest as _, Sha256, Sha384, Sha512};

use crate::util::{self, read};

/// `search` flags: exactly one of the term flags.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("term").required(true).args(["digest", "key", "identity", "artifact"])))]
pub(crate) struct SearchArgs {
    /// An artifact digest, `sha256:<hex>` (also sha384, sha512).
    #[arg(long)]
    digest: Option<String>,
    /// A signer's key: `sha256:<hex>` of its DER SubjectPublicKeyInfo.
    #[arg(long)]
    key: Option<String>,
    /// A certificate identity (e-mail or URI subject alternative name), matched exactly.
    #[arg(long)]
    identity: Option<String>,
    /// An artifact file: searches for its digest (SHA-256 unless --artifact-algorithm says
    /// otherwise).
    #[arg(long, value_name = "FILE")]
    artifact: Option<PathBuf>,
    /// The digest of --artifact to search for: the one its signing algorithm logs (sha384 for
    /// ECDSA P-384, sha512 for Ed25519ph and P-521). `rekor-cli report` searches all three.
    #[arg(long, value_enum, default_value_t = DigestAlgorithm::Sha256, requires = "artifact")]
    artifact_algorithm: DigestAlgorithm,
    /// Entries per request (1 to 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    page_size: u16,
    /// Print JSON: `{"term", "treeSize", "entries": [{"logIndex", "kind"}], "completeness"}`.
    #[arg(long)]
    json: bool,
    /// Fail (exit 2) unless the log's signed search-index commitment shows nothing was left out.
    #[arg(long)]
    require_complete: bool,
}

/// A digest an entry may log of its artifact: that of its signing algorithm's hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DigestAlgorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlgorithm {
    /// Every digest an entry may log.
    pub(crate) const ALL: [DigestAlgorithm; 3] = [
        DigestAlgorithm::Sha256,
        DigestAlgorithm::Sha384,
        DigestAlgorithm::Sha512,
    ];

    /// The search term for `artifact`'s digest with this algorithm.
    pub(crate) fn term_of(self, artifact: &[u8]) -> anyhow::Result<SearchTerm> {
        let (name, digest) = match self {
            DigestAlgorithm::Sha256 => ("sha256", Sha256::digest(artifact).to_vec()),
            DigestAlgorithm::Sha384 => ("sha384", Sha384::digest(artifact).to_vec()),
            DigestAlgorithm::Sha512 => ("sha512", Sha512::digest(artifact).to_vec()),
        };
        Ok(SearchTerm::digest(&format!(
            "{name}:{}",
            hex::encode(digest)
        ))?)
    }
}

impl SearchArgs {
    fn term(&self) -> anyhow::Result<SearchTerm> {
        let term = match (&self.digest, &self.key, &self.identity, &self.artifact) {
            (Some(d), _, _, _) => SearchTerm::digest(d)?,
            (_, Some(k), _, _) => SearchTerm::key(k)?,
            (_, _, Some(i), _) => SearchTerm::identity(i)?,
            (_, _, _, Some(path)) => self.artifact_algorithm.term_of(&read(path)?)?,
            _ => bail!("pass --digest, --key, --identity or --artifact"),
        };
        Ok(term)
    }
}

/// Runs `search`.
pub(crate) async fn search(
    client: &Client,
    verifier: &LogVerifier,
    args: &SearchArgs,
) -> anyhow::Result<()> {
    let term = args.term()?;
    let results = client
        .search(verifier, &term, usize::from(args.page_size))
        .await
        .with_context(|| format!("searching for {term}"))?;
    let size = results.checkpoint.as_ref().map_or(0, |c| c.size().get());
    if args.require_complete
        && let Some(reason) = incomplete(&results.completeness)
    {
        return Err(rekor_client::Error::SearchAnswer {
            reason: format!("--require-complete: {reason}"),
        }
        .into());
    }
    if args.json {
        let entries: Vec<_> = results
            .entries
            .iter()
            .map(|e| serde_json::json!({"logIndex": e.index.to_string(), "kind": e.body.kind()}))
            .collect();
        let json = serde_json::json!({
            "term": term.to_string(),
            "treeSize": size.to_string(),
            "entries": entries,
            "completeness": completeness_json(&results.completeness),
        });
        return util::say(&serde_json::to_string_pretty(&json)?);
    }
    let mut text = format!(
        "{} entries for {term} in the log's tree of {size} (checkpoint signature, inclusion proof, entry and term verified for each):\n",
        results.entries.len()
    );
    for entry in &results.entries {
        text.push_str(&format!("{}\t{}\n", entry.index, entry.body.kind()));
    }
    text.push_str(&match incomplete(&results.completeness) {
        None => format!(
            "complete: no entry of the tree of {size} that carries the term was left out (the log's signed index commitment, and the entries after it read here)\n"
        ),
        Some(reason) => format!("completeness not proven: {reason}\n"),
    });
    util::say(text.trim_end())
}

/// Why an answer is not proven complete for its whole tree, if it is not.
pub(crate) fn incomplete(completeness: &Completeness) -> Option<String> {
    match completeness {
        Completeness::Proven {
            size,
            committed,
            checkpoint_size,
            ..
        } if size < checkpoint_size => Some(format!(
            "proven complete for the first {size} entries of {checkpoint_size} only (the log's commitment covers {committed})"
        )),
        Completeness::Proven { .. } => None,
        Completeness::Unchecked { reason } => Some(format!("not checked: {reason}")),
    }
}

/// The JSON form of a completeness result.
pub(crate) fn completeness_json(completeness: &Completeness) -> serde_json::Value {
    match completeness {
        Completeness::Proven {
            size,
            committed,
            checkpoint_size,
            commitment,
        } => serde_json::json!({
            "result": if size == checkpoint_size { "proven" } else { "partial" },
            "provenSize": size.to_string(),
            "committedSize": committed.to_string(),
            "checkpointSize": checkpoint_size.to_string(),
            "commitment": commitment,
        }),
        Completeness::Unchecked { reason } => {
            serde_json::json!({"result": "unchecked", "reason": reason})
        }
    }
}

/// `audit-search-index` flags.
#[derive(Args, Debug)]
pub(crate) struct AuditSearchIndexArgs {
    /// Print JSON: `{"committedSize", "postings", "bucketBits", "checkpointSize"}`.
    #[arg(long)]
    json: bool,
}

/// Runs `audit-search-index`: rebuilds the log's latest search-index commitment from its
/// entries (see `rekor_client::Client::audit_search_commitment`).
pub(crate) async fn audit_search_index(
    client: &Client,
    verifier: &LogVerifier,
    args: &AuditSearchIndexArgs,
) -> anyhow::Result<()> {
    let audit = client
        .audit_search_commitment(verifier)
        .await
        .context("auditing the search-index commitment")?;
    if args.json {
        let json = serde_json::json!({
            "committedSize": audit.size.to_string(),
            "postings": audit.postings.to_string(),
            "bucketBits": audit.bucket_bits,
            "checkpointSize": audit.checkpoint_size.to_string(),
        });
        return util::say(&serde_json::to_string_pretty(&json)?);
    }
    util::say(&format!(
        "the signed search-index commitment for the first {} entries is the index of the log's entries \
         ({} postings in {} buckets; the tree is a prefix of the checkpoint of {})",
        audit.size,
        audit.postings,
        1u64 << audit.bucket_bits,
        audit.checkpoint_size
    ))
}
