//! rekor-cli: a command-line client for Rekor v2 tile logs that verifies everything the log says
//! against the log's key: entries, inclusion proofs, checkpoints, consistency, the whole tree.

mod audit;
mod commands;
mod report;
mod search;
mod sign;
mod trust;
mod upload;
mod util;
mod witnessed;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

const EXAMPLES: &str = "\
Trust: every command that reads the log checks it against the log's key, given by one of
  --log-key FILE (PEM or DER public key; the origin defaults to the URL's host, else --origin),
  --vkey NAME+ID+KEY (a C2SP verifier key, which names the origin), or
  --trusted-root FILE (a Sigstore TrustedRoot; the log whose baseUrl is --url).

Examples:
  # Sign a file with your key and log it; the answer is verified and saved.
  rekor-cli --vkey \"$VKEY\" upload --artifact release.tar.gz --key me.pem --out entry.json

  # Log a signature made elsewhere.
  rekor-cli --log-key log.pub --origin log.example.dev upload \\
      --artifact release.tar.gz --signature release.sig --public-key me.pub

  # Verify an entry (or a Sigstore bundle) offline, then against the log's current tree.
  rekor-cli --vkey \"$VKEY\" verify --entry entry.json --artifact release.tar.gz
  rekor-cli --trusted-root trusted_root.json --url https://log.example.dev \\
      verify --bundle release.sigstore.json --artifact release.tar.gz

  # Fetch entry 42 from the tiles, with its inclusion proof.
  rekor-cli --vkey \"$VKEY\" get 42 --json

  # Check the log's checkpoint; prove it extends an older one.
  rekor-cli --vkey \"$VKEY\" checkpoint --out old.checkpoint
  rekor-cli --vkey \"$VKEY\" consistency --from-checkpoint old.checkpoint

  # Audit every entry and tile; resume later with the same state file.
  rekor-cli --vkey \"$VKEY\" audit --state audit.json

  # Watch the log for forks; exits non-zero if it ever shows two histories.
  rekor-cli --vkey \"$VKEY\" monitor --state monitor.json --interval 30s

  # A provenance report for a file (a log started with --search-index): who signed it,
  # where it is proven, every check; exits 2 if any check failed.
  rekor-cli --vkey \"$VKEY\" report --artifact release.tar.gz --format json --output report.json

Exit status: 0 on success, 1 on a usage, I/O or network error, 2 when the log served
something that fails verification (bad signature, proof, tile, fork, rollback).";

/// Command-line client for Rekor v2 tile logs, verifying everything against the log's key.
#[derive(Parser, Debug)]
#[command(name = "rekor-cli", version, about, after_help = EXAMPLES)]
struct Cli {
    /// The log's base URL.
    #[arg(
        long,
        global = true,
        env = "REKOR_URL",
        default_value = "http://127.0.0.1:3000",
        help_heading = "Log"
    )]
    url: String,
    /// Timeout of one HTTP request (e.g. 500ms, 30s, 2m).
    #[arg(long, global = true, default_value = "30s", value_parser = util::parse_duration, help_heading = "Log")]
    timeout: Duration,
    /// How many times a failed request (network error, HTTP 429 or 5xx) is retried.
    #[arg(long, global = true, default_value_t = 3, help_heading = "Log")]
    retries: u32,
    #[command(flatten, next_help_heading = "Trust (one of)")]
    trust: TrustArgs,
    /// Also require the witness quorum of this policy file (the format of the log's
    /// `--witness-policy-path`) on every checkpoint `checkpoint`, `verify` and `monitor` accept.
    #[arg(long, global = true, value_name = "FILE", help_heading = "Witnesses")]
    witness_policy: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The log key to trust.
#[derive(Args, Debug, Clone)]
struct TrustArgs {
    /// The log's public key: PEM or DER SubjectPublicKeyInfo (Ed25519, ECDSA P-256 or P-384).
    #[arg(long, global = true, value_name = "FILE", conflicts_with_all = ["vkey", "trusted_root"])]
    log_key: Option<PathBuf>,
    /// The log's C2SP signed-note verifier key (`origin+keyid+base64`).
    #[arg(
        long,
        global = true,
        value_name = "VKEY",
        conflicts_with = "trusted_root"
    )]
    vkey: Option<String>,
    /// A Sigstore TrustedRoot JSON file; the log is the tlogs entry whose baseUrl is --url.
    #[arg(long, global = true, value_name = "FILE")]
    trusted_root: Option<PathBuf>,
    /// The log's checkpoint origin (its key name) for --log-key and --trusted-root; defaults to
    /// the host of the URL.
    #[arg(long, global = true)]
    origin: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Sign (or take a signature of) an artifact, log it, verify the answer, write the entry.
    Upload(upload::UploadArgs),
    /// Fetch an entry from the log's tiles, with its inclusion proof, and print it.
    Get(commands::GetArgs),
    /// Verify an entry or Sigstore bundle: body, signature, inclusion, checkpoint, consistency.
    Verify(commands::VerifyArgs),
    /// Fetch, verify and print the log's current checkpoint.
    Checkpoint(commands::CheckpointArgs),
    /// Prove the current checkpoint extends an older tree.
    Consistency(commands::ConsistencyArgs),
    /// Audit the whole log: every bundle and tile, recomputed up to the checkpoint root.
    Audit(audit::AuditArgs),
    /// Follow the log, proving each new checkpoint extends the last verified one.
    Monitor(audit::MonitorArgs),
    /// Every entry for an artifact digest, a key or a certificate identity (a log started with
    /// --search-index), each verified: checkpoint signature, inclusion proof, that it carries
    /// the term.
    Search(search::SearchArgs),
    /// Rebuild the log's signed search-index commitment from every entry it covers and check
    /// it is the log's index (what makes completeness proofs trustworthy).
    AuditSearchIndex(search::AuditSearchIndexArgs),
    /// A provenance report for an artifact: every entry for its digest, with the signer, the
    /// checkpoint it is proven into and each check as pass, fail or not-checked.
    Report(report::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return util::fail(&anyhow::Error::from(e)),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => util::fail(&e),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = rekor_client::Client::new(
        &cli.url,
        rekor_client::ClientOptions {
            timeout: cli.timeout,
            retries: cli.retries,
            user_agent: concat!("rekor-cli/", env!("CARGO_PKG_VERSION")).to_string(),
            ..rekor_client::ClientOptions::default()
        },
    )?;
    let verifier = trust::load(&cli.trust, &cli.url)?;
    let witnesses = cli
        .witness_policy
        .as_deref()
        .map(witnessed::WitnessPolicy::load)
        .transpose()?;
    let witnesses = witnesses.as_ref();
    match cli.command {
        Command::Upload(args) => upload::run(&client, &verifier, &args, cli.timeout).await,
        Command::Get(args) => commands::get(&client, &verifier, &args).await,
        Command::Verify(args) => commands::verify(&client, &verifier, witnesses, &args).await,
        Command::Checkpoint(args) => {
            commands::checkpoint(&client, &verifier, witnesses, &args).await
        }
        Command::Consistency(args) => commands::consistency(&client, &verifier, &args).await,
        Command::Audit(args) => audit::audit(&client, &verifier, &args).await,
        Command::Monitor(args) => audit::monitor(&client, &verifier, witnesses, &args).await,
        Command::Search(args) => search::search(&client, &verifier, &args).await,
        Command::AuditSearchIndex(args) => {
            search::audit_search_index(&client, &verifier, &args).await
        }
        Command::Report(args) => report::report(&client, &verifier, &args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn trust_flags_conflict() {
        let parsed = Cli::try_parse_from([
            "rekor-cli",
            "--log-key",
            "k.pem",
            "--vkey",
            "v",
            "checkpoint",
        ]);
        assert!(parsed.is_err());
        let parsed = Cli::try_parse_from(["rekor-cli", "checkpoint", "--vkey", "v"]).unwrap();
        assert_eq!(parsed.trust.vkey.as_deref(), Some("v"));
        assert_eq!(parsed.url, "http://127.0.0.1:3000");
    }
}
