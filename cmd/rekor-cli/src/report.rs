//! `report`: a provenance report for an artifact. It searches the log for the artifact's digests
//! (`rekor_client::Client::search`, which proves each whole answer) and states, for each entry
//! found, who signed it, which checkpoint it is proven into, and the result of each check as
//! `pass`, `fail` or `not-checked` with a reason. The JSON form is meant for machines; its field
//! names are stable (`schemaVersion` 1).
//!
//! A file is searched for by its SHA-256, SHA-384 and SHA-512 digests, because a hashedrekord
//! entry logs the digest of its signing algorithm's hash: SHA-384 for ECDSA P-384, SHA-512 for
//! Ed25519ph and P-521. `--digest` searches for that one digest only.
//!
//! If the log's answer is rejected, the report is still written: the answer is read again,
//! unverified, page by page, and each entry is checked on its own, so the report names the
//! entry and the check that failed. Then `rekor-cli` exits 2.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use rekor_api::rekor::v1::TransparencyLogEntry;
use rekor_api::rekor::v2::{Signature, spec, verifier};
use rekor_client::{
    Client, EntryBody, Error, SearchResults, SignedCheckpoint, VerifiedEntry, verify_entry,
};
use rekor_entries::search::{SearchTerm, TermKind, certificate_search_terms, search_terms};
use rekor_note::LogVerifier;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::search::DigestAlgorithm;
use crate::util::{self, read};

/// The version of the JSON report's shape; raised when a field changes meaning or goes away.
const SCHEMA_VERSION: u32 = 1;

/// How many pages of a rejected answer are read again to check its entries one by one.
const MAX_DIAGNOSIS_PAGES: usize = 100;

/// What the report says about the time of logging, since the log states no time.
const TIME_OF_LOGGING: &str = "Rekor v2 entries carry no integrated time and their checkpoints \
     carry none either: an entry was logged no later than the log signed the checkpoint it is \
     proven into (provenInto). A trusted time needs an RFC 3161 timestamp or a witness \
     cosignature, which this report does not check.";

/// `report` flags.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["artifact", "digest"])))]
pub(crate) struct ReportArgs {
    /// The artifact file: the log is searched for its SHA-256, SHA-384 and SHA-512 digests,
    /// and each hashedrekord entry's digest is checked against the file.
    #[arg(long, value_name = "FILE")]
    artifact: Option<PathBuf>,
    /// The artifact's digest, `sha256:<hex>` (also sha384, sha512), when the file is not at hand.
    #[arg(long, value_name = "ALG:HEX")]
    digest: Option<String>,
    /// The report's form.
    #[arg(long, value_enum, default_value_t = Format::Markdown)]
    format: Format,
    /// Write the report to this file instead of stdout.
    #[arg(long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Entries per search request (1 to 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    page_size: u16,
    /// Count a completeness that could not be checked as a failure (exit 2). No log publishes a
    /// search-index commitment yet, so for now this always fails.
    #[arg(long)]
    require_complete: bool,
}

/// The report's form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Machine-readable JSON.
    Json,
    /// A Markdown document for people.
    Markdown,
}

/// The result of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Outcome {
    /// The check ran and passed.
    Pass,
    /// The check ran and failed.
    Fail,
    /// The check could not be run; the reason says why.
    NotChecked,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::NotChecked => "not-checked",
        }
    }
}

/// One check and why it came out so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Check {
    result: Outcome,
    reason: String,
}

impl Check {
    fn pass(reason: impl Into<String>) -> Check {
        Check {
            result: Outcome::Pass,
            reason: reason.into(),
        }
    }

    fn fail(reason: impl Into<String>) -> Check {
        Check {
            result: Outcome::Fail,
            reason: reason.into(),
        }
    }

    fn not_checked(reason: impl Into<String>) -> Check {
        Check {
            result: Outcome::NotChecked,
            reason: reason.into(),
        }
    }
}

/// The whole report, as the JSON form spells it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    schema_version: u32,
    artifact: ArtifactRef,
    log: LogRef,
    /// The latest checkpoint the answer was verified against (`null` if none verified).
    checkpoint: Option<CheckpointRef>,
    time_of_logging: &'static str,
    /// Every answer as a whole: every page and entry verified, consistent, in order (the
    /// worst of `searches`).
    search: Check,
    /// Whether the answers are proven to hold every matching entry (the worst of `searches`).
    completeness: Check,
    /// One search per digest.
    searches: Vec<SearchReport>,
    /// Every entry found, by log index.
    entries: Vec<EntryReport>,
    summary: Summary,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactRef {
    /// The file given with `--artifact`, as given.
    path: Option<String>,
    /// Its SHA-256 digest, `sha256:<hex>` (or the `--digest` given).
    digest: String,
    /// Every digest searched for, `<alg>:<hex>`.
    digests: Vec<String>,
}

/// The search for one digest.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SearchReport {
    /// `<alg>:<hex>`.
    digest: String,
    /// How many pages the answer took (as read, when it was rejected).
    pages: usize,
    /// How many entries it holds.
    entries: usize,
    /// The answer as a whole.
    search: Check,
    /// Whether it is proven to hold every matching entry.
    completeness: Check,
    /// The latest checkpoint it was verified against.
    #[serde(skip)]
    checkpoint: Option<CheckpointRef>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LogRef {
    url: String,
    /// The origin of the trusted log key.
    origin: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckpointRef {
    origin: String,
    tree_size: u64,
    /// Hex.
    root_hash: String,
}

impl CheckpointRef {
    fn of(checkpoint: &SignedCheckpoint) -> CheckpointRef {
        CheckpointRef {
            origin: checkpoint.checkpoint.origin.to_string(),
            tree_size: checkpoint.checkpoint.size,
            root_hash: checkpoint.root().to_string(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryReport {
    /// `null` only for an entry of a rejected answer that does not parse.
    log_index: Option<u64>,
    kind: Option<String>,
    api_version: Option<String>,
    /// The digest the entry was found by, `<alg>:<hex>`.
    found_by: String,
    signers: Vec<Signer>,
    /// Always `null`: see `timeOfLogging`.
    integrated_time: Option<u64>,
    /// The checkpoint the entry's inclusion proof leads to, if its signature verified.
    proven_into: Option<CheckpointRef>,
    checks: EntryChecks,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryChecks {
    /// The entry logs the digest searched for (and, with `--artifact`, the file's digest).
    digest: Check,
    /// The entry's signature verifies over the artifact's digest with its key or certificate.
    signature: Check,
    /// The inclusion proof leads from the entry to the checkpoint's root.
    inclusion: Check,
    /// The checkpoint is signed by the trusted log key.
    checkpoint_signature: Check,
    /// The answer's completeness, the same for every entry.
    completeness: Check,
}

impl EntryChecks {
    fn all(&self) -> [(&'static str, &Check); 5] {
        [
            ("digest", &self.digest),
            ("signature", &self.signature),
            ("inclusion", &self.inclusion),
            ("checkpoint-signature", &self.checkpoint_signature),
            ("completeness", &self.completeness),
        ]
    }
}

/// Who signed an entry, named as the search index names signers.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
enum Signer {
    /// A bare public key.
    PublicKey {
        /// `sha256:<hex>` of the DER SubjectPublicKeyInfo.
        key_fingerprint: String,
    },
    /// An X.509 certificate (not checked against any CA: this report is about the log).
    Certificate {
        /// `sha256:<hex>` of the certificate's DER SubjectPublicKeyInfo (`null` if the
        /// certificate does not parse).
        key_fingerprint: Option<String>,
        /// The e-mail and URI subject alternative names.
        subject_alternative_names: Vec<String>,
        /// The issuer's distinguished name (RFC 4514).
        issuer: Option<String>,
    },
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    entries: usize,
    passed: usize,
    failed: usize,
    not_checked: usize,
    /// `fail` if any check failed, else `pass`.
    result: Outcome,
    text: String,
}

/// The report recorded a failed check (the report itself was written).
#[derive(Debug, thiserror::Error)]
#[error("the report records {failed} failed {}", if *failed == 1 { "check" } else { "checks" })]
pub(crate) struct ReportFailed {
    failed: usize,
}

/// What every entry's checks are measured against.
struct Subject<'a> {
    /// The digest searched for.
    term: SearchTerm,
    /// The file's bytes, with `--artifact`.
    artifact: Option<&'a [u8]>,
}

/// The completeness of a verified answer. The log publishes no signed commitment to its search
/// index yet, so nothing proves an answer holds every matching entry; once `SearchResults`
/// carries a verified commitment, this is the one place that reads it.
fn completeness_check(results: &SearchResults) -> Check {
    match crate::search::incomplete(&results.completeness) {
        None => Check::pass(
            "no entry of the tree that carries the digest was left out: the log's signed \
             search-index commitment, and the entries after it read and checked",
        ),
        Some(reason) => Check::not_checked(reason),
    }
}

/// `--require-complete`: a completeness that could not be checked is a failure.
fn required(check: Check, require_complete: bool) -> Check {
    if require_complete && check.result == Outcome::NotChecked {
        return Check::fail(format!("--require-complete: {}", check.reason));
    }
    check
}

/// Runs `report`.
pub(crate) async fn report(
    client: &Client,
    verifier: &LogVerifier,
    args: &ReportArgs,
) -> anyhow::Result<()> {
    let artifact = args.artifact.as_deref().map(read).transpose()?;
    let terms = match (&artifact, &args.digest) {
        (Some(bytes), _) => DigestAlgorithm::ALL
            .iter()
            .map(|a| a.term_of(bytes))
            .collect::<anyhow::Result<Vec<_>>>()?,
        (None, Some(digest)) => vec![SearchTerm::digest(digest).context("--digest")?],
        (None, None) => anyhow::bail!("pass --artifact FILE or --digest ALG:HEX"),
    };
    let mut searches = Vec::new();
    let mut entries = Vec::new();
    for term in &terms {
        let subject = Subject {
            term: term.clone(),
            artifact: artifact.as_deref(),
        };
        let (search, found) = search_one(client, verifier, &subject, args).await?;
        searches.push(search);
        entries.extend(found);
    }
    entries.sort_by_key(|e| e.log_index);
    let search = worst(searches.iter().map(|s| &s.search), "no search ran");
    let completeness = worst(searches.iter().map(|s| &s.completeness), "no search ran");
    let checkpoint = searches
        .iter()
        .filter_map(|s| s.checkpoint.clone())
        .max_by_key(|c| c.tree_size);
    let digests: Vec<String> = terms.iter().map(|t| t.value().to_string()).collect();
    let summary = summarise(&digests, &search, &completeness, &entries);
    let failed = summary.failed;
    let report = Report {
        schema_version: SCHEMA_VERSION,
        artifact: ArtifactRef {
            path: args.artifact.as_ref().map(|p| p.display().to_string()),
            digest: digests.first().cloned().unwrap_or_default(),
            digests,
        },
        log: LogRef {
            url: client.base_url().to_string(),
            origin: verifier.name().to_string(),
        },
        checkpoint,
        time_of_logging: TIME_OF_LOGGING,
        search,
        completeness,
        searches,
        entries,
        summary,
    };
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&report).context("encoding the report")?,
        Format::Markdown => markdown(&report),
    };
    util::emit(args.output.as_deref(), text.trim_end())?;
    if failed > 0 {
        return Err(ReportFailed { failed }.into());
    }
    Ok(())
}

/// Searches for one digest: the verified answer, or, if it is rejected, the answer read again
/// and checked entry by entry.
///
/// # Errors
///
/// A search that fails for another reason than a failed check (the log cannot be reached, has
/// no search index, refuses the query).
async fn search_one(
    client: &Client,
    verifier: &LogVerifier,
    subject: &Subject<'_>,
    args: &ReportArgs,
) -> anyhow::Result<(SearchReport, Vec<EntryReport>)> {
    let page_size = usize::from(args.page_size);
    let digest = subject.term.value().to_string();
    match client.search(verifier, &subject.term, page_size).await {
        Ok(results) => {
            let completeness = required(completeness_check(&results), args.require_complete);
            let entries: Vec<EntryReport> = results
                .entries
                .iter()
                .map(|entry| verified_entry(subject, entry, &completeness))
                .collect();
            let search = Check::pass(format!(
                "{} {} verified: each checkpoint signed by the log and consistent with the \
                 one before, each entry proven into its page's checkpoint, carrying the \
                 digest, in ascending order",
                results.pages,
                if results.pages == 1 { "page" } else { "pages" }
            ));
            let report = SearchReport {
                digest,
                pages: results.pages,
                entries: entries.len(),
                search,
                completeness,
                checkpoint: results.checkpoint.as_ref().map(CheckpointRef::of),
            };
            Ok((report, entries))
        }
        Err(e) if e.is_verification_failure() => {
            let completeness = required(
                Check::not_checked(
                    "the search answer was rejected, so its completeness was not checked",
                ),
                args.require_complete,
            );
            let read = diagnose(client, verifier, subject, page_size, &completeness).await;
            let mut reason = format!("the log's answer was rejected: {e}");
            if let Some(problem) = read.problem {
                reason.push_str(&format!(
                    " (reading it again to check each entry: {problem})"
                ));
            }
            let report = SearchReport {
                digest,
                pages: read.pages,
                entries: read.entries.len(),
                search: Check::fail(reason),
                completeness,
                checkpoint: read.checkpoint,
            };
            Ok((report, read.entries))
        }
        Err(e) => Err(e).with_context(|| format!("searching for {}", subject.term)),
    }
}

/// The worst of some checks (a failure over a check not made over a pass), the first of that
/// kind; `none` if there are none.
fn worst<'a>(checks: impl Iterator<Item = &'a Check>, none: &str) -> Check {
    let rank = |c: &Check| match c.result {
        Outcome::Fail => 2,
        Outcome::NotChecked => 1,
        Outcome::Pass => 0,
    };
    let checks: Vec<&Check> = checks.collect();
    let Some(top) = checks.iter().map(|c| rank(c)).max() else {
        return Check::not_checked(none);
    };
    let same: Vec<&&Check> = checks.iter().filter(|c| rank(c) == top).collect();
    match (same.first(), same.len()) {
        (Some(only), 1) => (**only).clone(),
        (Some(first), n) if first.result == Outcome::Pass => {
            Check::pass(format!("all {n} searches passed"))
        }
        (Some(first), _) => (**first).clone(),
        (None, _) => Check::not_checked(none),
    }
}

/// The report of an entry `Client::search` verified.
fn verified_entry(
    subject: &Subject<'_>,
    entry: &VerifiedEntry,
    completeness: &Check,
) -> EntryReport {
    let checkpoint = &entry.checkpoint;
    entry_report(
        subject,
        Some(entry.index),
        Ok(&entry.body),
        Ok(checkpoint),
        Check::pass(format!(
            "the proof leads from leaf {} to the root of tree size {}",
            entry.index, checkpoint.checkpoint.size
        )),
        completeness,
    )
}

/// A rejected answer, read again.
struct Reread {
    /// The last page checkpoint that verifies.
    checkpoint: Option<CheckpointRef>,
    /// Each entry, checked on its own.
    entries: Vec<EntryReport>,
    pages: usize,
    /// Why reading stopped early, if it did.
    problem: Option<String>,
}

/// Reads the rejected answer again, unverified, and checks each entry on its own, as far as
/// the log answers, for at most [`MAX_DIAGNOSIS_PAGES`] pages and never the same page token
/// twice.
async fn diagnose(
    client: &Client,
    verifier: &LogVerifier,
    subject: &Subject<'_>,
    page_size: usize,
    completeness: &Check,
) -> Reread {
    let mut read = Reread {
        checkpoint: None,
        entries: Vec::new(),
        pages: 0,
        problem: None,
    };
    let mut token: Option<String> = None;
    let mut seen = HashSet::new();
    while read.pages < MAX_DIAGNOSIS_PAGES {
        let page = match client
            .search_page_unverified(&subject.term, page_size, token.as_deref())
            .await
        {
            Ok(page) => page,
            Err(e) => {
                read.problem = Some(e.to_string());
                return read;
            }
        };
        read.pages += 1;
        if let Ok(verified) = SignedCheckpoint::verify(page.checkpoint.as_bytes(), verifier) {
            read.checkpoint = Some(CheckpointRef::of(&verified));
        }
        for value in &page.entries {
            read.entries
                .push(unverified_entry(verifier, subject, value, completeness));
        }
        match page.next_page_token {
            Some(next) if !next.is_empty() && seen.insert(next.clone()) => token = Some(next),
            Some(next) if !next.is_empty() => {
                read.problem = Some(format!("the page token {next:?} came back; stopped"));
                return read;
            }
            _ => return read,
        }
    }
    read.problem = Some(format!("stopped after {MAX_DIAGNOSIS_PAGES} pages"));
    read
}

/// The report of one entry of a rejected answer, each check run on its own.
fn unverified_entry(
    verifier: &LogVerifier,
    subject: &Subject<'_>,
    value: &serde_json::Value,
    completeness: &Check,
) -> EntryReport {
    let parsed = serde_json::to_vec(value)
        .map_err(|e| e.to_string())
        .and_then(|json| {
            rekor_client::entry_from_json(&json, "the entry").map_err(|e| e.to_string())
        });
    let entry: TransparencyLogEntry = match parsed {
        Ok(entry) => entry,
        Err(reason) => {
            let unparsed = || Check::not_checked("the entry does not parse");
            return EntryReport {
                log_index: value
                    .get("logIndex")
                    .and_then(|i| i.as_str().and_then(|s| s.parse().ok()).or(i.as_u64())),
                kind: None,
                api_version: None,
                found_by: subject.term.value().to_string(),
                signers: Vec::new(),
                integrated_time: None,
                proven_into: None,
                checks: EntryChecks {
                    digest: Check::fail(reason),
                    signature: unparsed(),
                    inclusion: unparsed(),
                    checkpoint_signature: unparsed(),
                    completeness: completeness.clone(),
                },
            };
        }
    };
    let body = EntryBody::parse(&entry.canonicalized_body).map_err(|e| e.to_string());
    let checkpoint = entry
        .inclusion_proof
        .as_ref()
        .and_then(|p| p.checkpoint.as_ref())
        .ok_or_else(|| "the entry's inclusion proof carries no checkpoint".to_string())
        .and_then(|c| {
            SignedCheckpoint::verify(c.envelope.as_bytes(), verifier).map_err(|e| e.to_string())
        });
    let inclusion = inclusion_check(&verify_entry(&entry, verifier));
    entry_report(
        subject,
        u64::try_from(entry.log_index).ok(),
        body.as_ref().map_err(Clone::clone),
        checkpoint.as_ref().map_err(Clone::clone),
        inclusion,
        completeness,
    )
}

/// The inclusion check of an entry from `verify_entry`'s result: the errors about the proof and
/// the log it leads to fail it; an earlier failure (body, checkpoint signature) means the proof
/// was not reached.
fn inclusion_check(result: &rekor_client::Result<VerifiedEntry>) -> Check {
    match result {
        Ok(entry) => Check::pass(format!(
            "the proof leads from leaf {} to the root of tree size {}",
            entry.index, entry.checkpoint.checkpoint.size
        )),
        Err(
            e @ (Error::Inclusion { .. }
            | Error::IndexMismatch { .. }
            | Error::CheckpointMismatch { .. }
            | Error::HashLength { .. }
            | Error::OutOfRange { .. }
            | Error::LogIdMismatch { .. }),
        ) => Check::fail(e.to_string()),
        Err(e @ Error::MissingField { field, .. })
            if field.starts_with("inclusionProof") || field.starts_with("logId") =>
        {
            Check::fail(e.to_string())
        }
        Err(e) => Check::not_checked(format!("not reached: {e}")),
    }
}

/// One entry's report from its parts: the body (or why it does not parse), its checkpoint (or
/// why it does not verify), and the inclusion check.
fn entry_report(
    subject: &Subject<'_>,
    log_index: Option<u64>,
    body: Result<&EntryBody, String>,
    checkpoint: Result<&SignedCheckpoint, String>,
    inclusion: Check,
    completeness: &Check,
) -> EntryReport {
    let (kind, api_version, signers, digest, signature) = match body {
        Ok(body) => {
            let digest = digest_check(subject, body);
            let signature = signature_check(body, &digest);
            (
                Some(body.kind().to_string()),
                Some(body.api_version().to_string()),
                signers(body),
                digest,
                signature,
            )
        }
        Err(reason) => {
            let digest = Check::fail(format!("the body does not parse: {reason}"));
            let signature = Check::not_checked("the body does not parse");
            (None, None, Vec::new(), digest, signature)
        }
    };
    let (proven_into, checkpoint_signature) = match checkpoint {
        Ok(checkpoint) => (
            Some(CheckpointRef::of(checkpoint)),
            Check::pass(format!(
                "the checkpoint of tree size {} is signed by the log key {}",
                checkpoint.checkpoint.size, checkpoint.checkpoint.origin
            )),
        ),
        Err(reason) => (None, Check::fail(reason)),
    };
    EntryReport {
        log_index,
        kind,
        api_version,
        found_by: subject.term.value().to_string(),
        signers,
        integrated_time: None,
        proven_into,
        checks: EntryChecks {
            digest,
            signature,
            inclusion,
            checkpoint_signature,
            completeness: completeness.clone(),
        },
    }
}

/// The entry logs the digest searched for, as the index derives it from the body; with
/// `--artifact`, the file's digest in the entry's own algorithm.
fn digest_check(subject: &Subject<'_>, body: &EntryBody) -> Check {
    if !search_terms(&body.bytes).contains(&subject.term) {
        return Check::fail(format!("the entry does not log {}", subject.term.value()));
    }
    match &subject.artifact {
        Some(artifact) => match body.check_artifact(artifact) {
            Ok(()) => Check::pass("the entry logs the artifact file's digest"),
            Err(e) => Check::fail(e.to_string()),
        },
        None => Check::pass(format!(
            "the entry logs {} (the artifact itself was not read)",
            subject.term.value()
        )),
    }
}

/// The entry's signature over the artifact, by the log's own entry rules (`EntryBody::check`).
fn signature_check(body: &EntryBody, digest: &Check) -> Check {
    if let Err(e) = body.check() {
        return Check::fail(e.to_string());
    }
    match body.kind() {
        "dsse" => Check::not_checked(
            "a dsse v0.0.2 entry records only the payload hash; its signatures cannot be \
             checked without the envelope (the entry's form was checked)",
        ),
        _ if digest.result != Outcome::Pass => Check::fail(
            "the signature verifies over the logged digest, which is not the artifact's",
        ),
        _ => Check::pass("the signature verifies with the entry's key over the artifact's digest"),
    }
}

/// The signers of an entry: the verifier of a hashedrekord, each signature's of a DSSE entry.
fn signers(body: &EntryBody) -> Vec<Signer> {
    let signatures: Vec<&Signature> = match body.entry.spec.as_ref().and_then(|s| s.spec.as_ref()) {
        Some(spec::Spec::HashedRekordV002(entry)) => entry.signature.iter().collect(),
        Some(spec::Spec::DsseV002(entry)) => entry.signatures.iter().collect(),
        None => Vec::new(),
    };
    signatures
        .into_iter()
        .filter_map(|s| s.verifier.as_ref()?.verifier.as_ref())
        .map(|v| match v {
            verifier::Verifier::PublicKey(key) => Signer::PublicKey {
                key_fingerprint: format!("sha256:{}", hex::encode(Sha256::digest(&key.raw_bytes))),
            },
            verifier::Verifier::X509Certificate(cert) => certificate_signer(&cert.raw_bytes),
        })
        .collect()
}

/// A certificate signer, its key and identities taken as the search index takes them.
fn certificate_signer(der: &[u8]) -> Signer {
    let terms = certificate_search_terms(der);
    let of_kind = |kind: TermKind| {
        terms
            .iter()
            .filter(move |t| t.kind() == kind)
            .map(|t| t.value().to_string())
    };
    let issuer = <x509_cert::Certificate as der::Decode>::from_der(der)
        .ok()
        .map(|cert| cert.tbs_certificate().issuer().to_string());
    Signer::Certificate {
        key_fingerprint: of_kind(TermKind::Key).next(),
        subject_alternative_names: of_kind(TermKind::Identity).collect(),
        issuer,
    }
}

/// Counts the checks and says in one line what the report found.
fn summarise(
    digests: &[String],
    search: &Check,
    completeness: &Check,
    entries: &[EntryReport],
) -> Summary {
    let mut counts = [0usize; 3];
    let answer_checks = [search, completeness];
    let entry_checks = entries
        .iter()
        .flat_map(|e| e.checks.all().into_iter().map(|(_, c)| c));
    for check in answer_checks.into_iter().chain(entry_checks) {
        counts[match check.result {
            Outcome::Pass => 0,
            Outcome::Fail => 1,
            Outcome::NotChecked => 2,
        }] += 1;
    }
    let [passed, failed, not_checked] = counts;
    let result = if failed > 0 {
        Outcome::Fail
    } else {
        Outcome::Pass
    };
    let mut subject = digests.first().cloned().unwrap_or_default();
    let others: Vec<&str> = digests
        .iter()
        .skip(1)
        .filter_map(|d| d.split_once(':').map(|(algorithm, _)| algorithm))
        .collect();
    if !others.is_empty() {
        subject.push_str(&format!(
            " (also searched by its {} digests)",
            others.join(" and ")
        ));
    }
    let found = match entries.len() {
        0 => format!("No entries found for {subject}"),
        1 => format!("1 entry for {subject}"),
        n => format!("{n} entries for {subject}"),
    };
    let complete = match completeness.result {
        Outcome::Pass => "the answers are proven complete",
        Outcome::Fail => "completeness failed",
        Outcome::NotChecked => "completeness not checked, so entries may be missing",
    };
    let text = format!(
        "{found}: {passed} checks passed, {failed} failed, {not_checked} not checked; \
         {complete}. Result: {}.",
        result.as_str()
    );
    Summary {
        entries: entries.len(),
        passed,
        failed,
        not_checked,
        result,
        text,
    }
}

/// Text for a Markdown table cell: no pipes or line breaks.
fn cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

fn signer_cell(signer: &Signer) -> String {
    match signer {
        Signer::PublicKey { key_fingerprint } => format!("key `{key_fingerprint}`"),
        Signer::Certificate {
            key_fingerprint,
            subject_alternative_names,
            issuer,
        } => {
            let mut text = format!(
                "certificate, key `{}`",
                key_fingerprint.as_deref().unwrap_or("unreadable")
            );
            if !subject_alternative_names.is_empty() {
                text.push_str(&format!(", SAN {}", subject_alternative_names.join(", ")));
            }
            if let Some(issuer) = issuer {
                text.push_str(&format!(", issuer {issuer}"));
            }
            text
        }
    }
}

fn check_line(check: &Check) -> String {
    format!("{}: {}", check.result.as_str(), check.reason)
}

/// The Markdown form: a header, a table of entries and checks, the reasons of every check that
/// did not pass, and the summary.
fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Provenance report for {}\n", report.artifact.digest);
    if let Some(path) = &report.artifact.path {
        let _ = writeln!(out, "- **Artifact:** `{}`", cell(path));
    }
    let digests: Vec<String> = report
        .artifact
        .digests
        .iter()
        .map(|d| format!("`{d}`"))
        .collect();
    let _ = writeln!(out, "- **Digests searched:** {}", digests.join(", "));
    let _ = writeln!(
        out,
        "- **Log:** {} ({})",
        cell(&report.log.origin),
        cell(&report.log.url)
    );
    match &report.checkpoint {
        Some(c) => {
            let _ = writeln!(
                out,
                "- **Checkpoint:** tree size {}, root hash `{}`",
                c.tree_size, c.root_hash
            );
        }
        None => {
            let _ = writeln!(out, "- **Checkpoint:** none verified");
        }
    }
    let _ = writeln!(
        out,
        "- **Search answers:** {}",
        cell(&check_line(&report.search))
    );
    if report.searches.len() > 1 {
        for search in &report.searches {
            let _ = writeln!(
                out,
                "  - `{}`: {} {}: {}",
                search.digest,
                search.entries,
                if search.entries == 1 {
                    "entry"
                } else {
                    "entries"
                },
                cell(&check_line(&search.search))
            );
        }
    }
    let _ = writeln!(
        out,
        "- **Completeness:** {}",
        cell(&check_line(&report.completeness))
    );
    let _ = writeln!(out, "- **Time of logging:** {}\n", report.time_of_logging);

    let _ = writeln!(out, "## Entries\n");
    if report.entries.is_empty() {
        let _ = writeln!(out, "No entries found.\n");
    } else {
        let _ = writeln!(
            out,
            "| log index | kind | signer | proven into | digest | signature | inclusion | checkpoint-signature | completeness |"
        );
        let _ = writeln!(out, "|---:|---|---|---|---|---|---|---|---|");
        for entry in &report.entries {
            let index = entry
                .log_index
                .map_or_else(|| "?".to_string(), |i| i.to_string());
            let kind = match (&entry.kind, &entry.api_version) {
                (Some(kind), Some(version)) => format!("{kind}/{version}"),
                _ => "?".to_string(),
            };
            let signers: Vec<String> = entry.signers.iter().map(signer_cell).collect();
            let proven = entry.proven_into.as_ref().map_or_else(
                || "not verified".to_string(),
                |c| format!("{}, size {}, root `{}`", c.origin, c.tree_size, c.root_hash),
            );
            let checks: Vec<&str> = entry
                .checks
                .all()
                .iter()
                .map(|(_, c)| c.result.as_str())
                .collect();
            let _ = writeln!(
                out,
                "| {index} | {} | {} | {} | {} |",
                cell(&kind),
                cell(&signers.join("; ")),
                cell(&proven),
                checks.join(" | ")
            );
        }
        out.push('\n');
        let reasons: Vec<String> = report
            .entries
            .iter()
            .flat_map(|entry| {
                let index = entry
                    .log_index
                    .map_or_else(|| "?".to_string(), |i| i.to_string());
                entry
                    .checks
                    .all()
                    .into_iter()
                    // Completeness is the answer's, stated once above.
                    .filter(|(name, c)| c.result != Outcome::Pass && *name != "completeness")
                    .map(move |(name, c)| format!("- entry {index}, {name}: {}", check_line(c)))
            })
            .collect();
        if !reasons.is_empty() {
            let _ = writeln!(out, "Checks that did not pass:\n");
            for reason in reasons {
                let _ = writeln!(out, "{}", reason.replace('\n', " "));
            }
            out.push('\n');
        }
    }
    let _ = writeln!(out, "**Summary:** {}", report.summary.text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term() -> SearchTerm {
        SearchTerm::digest(&format!("sha256:{}", "ab".repeat(32))).unwrap()
    }

    fn entry(checks: [Check; 5]) -> EntryReport {
        let [
            digest,
            signature,
            inclusion,
            checkpoint_signature,
            completeness,
        ] = checks;
        EntryReport {
            log_index: Some(7),
            kind: Some("hashedrekord".into()),
            api_version: Some("0.0.2".into()),
            found_by: term().value().to_string(),
            signers: vec![Signer::PublicKey {
                key_fingerprint: "sha256:00".into(),
            }],
            integrated_time: None,
            proven_into: Some(CheckpointRef {
                origin: "log.example".into(),
                tree_size: 9,
                root_hash: "cd".repeat(32),
            }),
            checks: EntryChecks {
                digest,
                signature,
                inclusion,
                checkpoint_signature,
                completeness,
            },
        }
    }

    fn report(search: Check, entries: Vec<EntryReport>) -> Report {
        let completeness = Check::not_checked("the log publishes no search-index commitment");
        let digests = vec![term().value().to_string()];
        let summary = summarise(&digests, &search, &completeness, &entries);
        Report {
            schema_version: SCHEMA_VERSION,
            artifact: ArtifactRef {
                path: Some("a|b.txt".into()),
                digest: term().value().to_string(),
                digests,
            },
            log: LogRef {
                url: "http://127.0.0.1:3000".into(),
                origin: "log.example".into(),
            },
            checkpoint: None,
            time_of_logging: TIME_OF_LOGGING,
            searches: vec![SearchReport {
                digest: term().value().to_string(),
                pages: 1,
                entries: entries.len(),
                search: search.clone(),
                completeness: completeness.clone(),
                checkpoint: None,
            }],
            search,
            completeness,
            entries,
            summary,
        }
    }

    #[test]
    fn the_worst_check_speaks_for_all() {
        let checks = [
            Check::pass("a"),
            Check::not_checked("b"),
            Check::fail("c"),
            Check::fail("d"),
        ];
        assert_eq!(worst(checks.iter(), "none"), Check::fail("c"));
        assert_eq!(worst(checks[..2].iter(), "none"), Check::not_checked("b"));
        assert_eq!(
            worst([Check::pass("a"), Check::pass("b")].iter(), "none"),
            Check::pass("all 2 searches passed")
        );
        assert_eq!(worst(checks[..1].iter(), "none"), Check::pass("a"));
        assert_eq!(worst([].iter(), "none"), Check::not_checked("none"));
    }

    #[test]
    fn not_checked_completeness_fails_only_when_required() {
        let open = Check::not_checked("no commitment");
        assert_eq!(required(open.clone(), false), open);
        let failed = required(open, true);
        assert_eq!(failed.result, Outcome::Fail);
        assert_eq!(failed.reason, "--require-complete: no commitment");
        let passed = Check::pass("proven");
        assert_eq!(required(passed.clone(), true), passed);
    }

    #[test]
    fn one_failed_check_fails_the_summary() {
        let pass = || Check::pass("ok");
        let open = || Check::not_checked("n/a");
        let good = report(
            pass(),
            vec![entry([pass(), pass(), pass(), pass(), open()])],
        );
        assert_eq!(
            (
                good.summary.passed,
                good.summary.failed,
                good.summary.not_checked
            ),
            (5, 0, 2)
        );
        assert_eq!(good.summary.result, Outcome::Pass);
        let bad = report(
            Check::fail("rejected"),
            vec![entry([
                pass(),
                pass(),
                Check::fail("proof"),
                pass(),
                open(),
            ])],
        );
        assert_eq!(bad.summary.failed, 2);
        assert_eq!(bad.summary.result, Outcome::Fail);
        let none = report(pass(), Vec::new());
        assert!(
            none.summary
                .text
                .starts_with("No entries found for sha256:abab"),
            "{}",
            none.summary.text
        );
        assert_eq!(none.summary.result, Outcome::Pass);
    }

    #[test]
    fn json_field_names_are_stable() {
        let pass = || Check::pass("ok");
        let r = report(
            pass(),
            vec![entry([
                pass(),
                pass(),
                pass(),
                pass(),
                Check::not_checked("n/a"),
            ])],
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["schemaVersion"], 1);
        assert_eq!(json["artifact"]["digest"], term().value());
        assert_eq!(json["completeness"]["result"], "not-checked");
        let e = &json["entries"][0];
        assert_eq!(e["logIndex"], 7);
        assert_eq!(e["integratedTime"], serde_json::Value::Null);
        assert_eq!(e["provenInto"]["treeSize"], 9);
        assert_eq!(e["signers"][0]["type"], "publicKey");
        assert_eq!(e["signers"][0]["keyFingerprint"], "sha256:00");
        assert_eq!(e["checks"]["checkpointSignature"]["result"], "pass");
        assert_eq!(json["summary"]["result"], "pass");
        let cert = serde_json::to_value(Signer::Certificate {
            key_fingerprint: None,
            subject_alternative_names: vec!["a@example.com".into()],
            issuer: Some("CN=x".into()),
        })
        .unwrap();
        assert_eq!(cert["type"], "certificate");
        assert_eq!(cert["subjectAlternativeNames"][0], "a@example.com");
    }

    #[test]
    fn markdown_has_the_header_table_and_reasons() {
        let pass = || Check::pass("ok");
        let r = report(
            Check::fail("rejected"),
            vec![entry([
                pass(),
                pass(),
                Check::fail("bad | proof"),
                pass(),
                Check::not_checked("n/a"),
            ])],
        );
        let md = markdown(&r);
        assert!(
            md.starts_with("# Provenance report for sha256:abab"),
            "{md}"
        );
        assert!(md.contains("- **Artifact:** `a\\|b.txt`"), "{md}");
        assert!(
            md.contains("| 7 | hashedrekord/0.0.2 | key `sha256:00` | log.example, size 9, root"),
            "{md}"
        );
        assert!(
            md.contains("| pass | pass | fail | pass | not-checked |"),
            "{md}"
        );
        assert!(
            md.contains("- entry 7, inclusion: fail: bad | proof"),
            "{md}"
        );
        assert!(!md.contains("entry 7, completeness"), "{md}");
        assert!(md.contains("**Summary:** 1 entry for sha256:abab"), "{md}");
    }

    #[test]
    fn a_certificate_that_does_not_parse_is_still_named() {
        assert_eq!(
            certificate_signer(b"not a certificate"),
            Signer::Certificate {
                key_fingerprint: None,
                subject_alternative_names: Vec::new(),
                issuer: None,
            }
        );
    }
}
