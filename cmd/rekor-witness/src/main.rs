//! `rekor-witness`: a transparency log witness (c2sp.org/tlog-witness v1.0.0).
//!
//! It verifies checkpoints of the logs listed in `--config` (signed-note signatures,
//! c2sp.org/signed-note; checkpoint text, c2sp.org/tlog-checkpoint), checks each new one is
//! consistent with the last one it cosigned (RFC 6962 consistency proof), persists it, and
//! answers an Ed25519 `cosignature/v1` (c2sp.org/tlog-cosignature, key type 0x04). See
//! `README.md` for the config format, the endpoints and their status codes.

mod config;
mod error;
mod http;
mod keys;
mod state;
mod witness;

use std::io::{IsTerminal as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use rekor_note::{CosignatureSigner, KeyName};

#[derive(Parser)]
#[command(version, about, long_about = None, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const AFTER_HELP: &str = "\
Endpoints (both tlog-witness URL prefixes are the server root):
  POST /add-checkpoint            tlog-witness v1.0.0; 200 answers the cosignature line
  GET  /<origin hash>/checkpoint  latest cosigned checkpoint of a log, with the log signatures
                                  and the cosignature; <origin hash> = lowercase hex SHA-256 of
                                  the origin line (the editor's draft monitoring API)

Config file (--config), one line per trusted log key:
  log [<origin>] <vkey>           Ed25519 (type 0x01) or ECDSA P-256 (type 0x02) vkey, as
                                  `rekor-server-* info` prints it; origin defaults to its name
  log <origin> spki:<base64>      DER SubjectPublicKeyInfo (e.g. P-384), key name = origin

Examples:
  rekor-witness info --storage-dir ./witness-data --name witness.example/w1
  rekor-witness serve --storage-dir ./witness-data --name witness.example/w1 --config logs.conf";

#[derive(Subcommand)]
enum Command {
    /// Run the witness (generates the Ed25519 key in --storage-dir on first start).
    #[command(after_help = AFTER_HELP)]
    Serve(ServeArgs),
    /// Print the witness's verifier key (`verifier key: NAME+HASH+BASE64`, type 0x04),
    /// generating the key if there is none yet.
    Info(IdentityArgs),
}

#[derive(Args)]
struct IdentityArgs {
    /// Directory for the key (`witness.pem`), the lock file and the per-log state (`logs/`).
    #[arg(long, default_value = "witness-data")]
    storage_dir: PathBuf,
    /// The witness name: the key name on its cosignature lines (e.g. `witness.example/w1`).
    #[arg(long, env = "REKOR_WITNESS_NAME")]
    name: String,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    identity: IdentityArgs,
    /// The known logs (see below). Read at start; restart to change it.
    #[arg(long)]
    config: PathBuf,
    /// HTTP address to bind to.
    #[arg(long, default_value = "127.0.0.1")]
    http_address: IpAddr,
    /// HTTP port to bind to (0: any free port; the bound address is logged as `listening`).
    #[arg(long, default_value_t = 7380)]
    http_port: u16,
    /// Largest accepted request body in bytes (larger ones get 413).
    #[arg(long, default_value_t = 1024 * 1024)]
    max_request_body_size: usize,
    /// Timeout for one request, e.g. `20s`, `500ms`, `1m`.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    server_timeout: Duration,
    /// Log level: trace, debug, info, warn or error (`RUST_LOG` overrides it).
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Emit logs as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 20s, 500ms or 1m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!("{text:?} is not a duration like 20s, 500ms or 1m")),
    }
}

fn signer(identity: &IdentityArgs) -> anyhow::Result<CosignatureSigner> {
    let name = KeyName::new(&identity.name)
        .with_context(|| format!("--name {:?} is not a valid key name", identity.name))?;
    Ok(keys::load_or_generate(&identity.storage_dir, name)?)
}

fn info(identity: &IdentityArgs) -> anyhow::Result<()> {
    let vkey = signer(identity)?.verifier().to_vkey();
    let mut out = std::io::stdout().lock();
    writeln!(out, "verifier key: {vkey}")?;
    Ok(())
}

fn init_tracing(args: &ServeArgs) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(&args);
    let storage_dir: &Path = &args.identity.storage_dir;
    std::fs::create_dir_all(storage_dir)
        .with_context(|| format!("creating {}", storage_dir.display()))?;
    // Lock first: the key and the state belong to one process at a time.
    let state = state::StateDir::open(storage_dir)?;
    let signer = signer(&args.identity)?;
    let logs = config::load(&args.config)?;
    let vkey = signer.verifier().to_vkey();
    let witness = Arc::new(witness::Witness::new(signer, logs, state)?);
    let app = http::router(witness, args.max_request_body_size, args.server_timeout);

    let address = SocketAddr::new(args.http_address, args.http_port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {address}"))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    tracing::info!(verifier_key = %vkey, "witness key");
    tracing::info!(listener = "http", address = %bound, "listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Info(identity) => info(&identity),
        Command::Serve(args) => serve(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("20").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1h").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
