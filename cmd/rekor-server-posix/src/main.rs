//! `rekor-server-posix`: a complete Rekor v2-compatible log on one machine. Tiles, entry bundles
//! and the checkpoint live under `--storage-dir` (servable by any static file server too); the
//! server also serves them itself.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use rekor_server::{Backend, ServerArgs};
use rekor_storage::posix::PosixBackend;

// mimalloc instead of glibc malloc: with glibc, malloc and free were about a tenth of the
// server's CPU per write (many small allocations freed on other threads); about a third of that
// with mimalloc (BENCHMARKS.md, session 6).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about, long_about = None, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "Examples:
  rekor-server-posix serve --storage-dir ./rekor-data --hostname localhost
  rekor-server-posix info --storage-dir ./rekor-data --hostname localhost
  rekor-server-posix freeze --storage-dir ./rekor-data --hostname localhost";

#[derive(Subcommand)]
enum Command {
    /// Run the log: HTTP on --http-port, gRPC on --grpc-port, metrics on --http-metrics-port.
    Serve(PosixArgs),
    /// Print the origin, public key, log ID, and the TrustedRoot and SigningConfig entries clients need.
    Info(PosixArgs),
    /// End the log for good: publish a final checkpoint; from then on it serves reads only and
    /// no larger checkpoint is ever signed. Stop the server first (the directory is locked).
    Freeze(PosixArgs),
}

#[derive(Args)]
struct PosixArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Directory for tiles, entry bundles and the checkpoint; private state goes in its `.rekor/`.
    #[arg(long, default_value = "rekor-data")]
    storage_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Info(args) => {
            std::fs::create_dir_all(&args.storage_dir)
                .with_context(|| format!("creating {}", args.storage_dir.display()))?;
            Ok(rekor_server::print_identity(
                &args.server,
                Some(&args.storage_dir),
            )?)
        }
        Command::Freeze(args) => {
            rekor_server::init_tracing(&args.server);
            let (posix, backend) = open(&args)?;
            let frozen = rekor_server::freeze(&args.server, &backend).await?;
            posix
                .sync()
                .await
                .context("syncing the storage dir after the freeze")?;
            frozen.print();
            Ok(())
        }
        Command::Serve(args) => {
            rekor_server::init_tracing(&args.server);
            let (posix, backend) = open(&args)?;
            rekor_server::run(args.server, backend).await?;
            // The log is closed: make its last tiles durable, so the next start has nothing
            // to integrate again.
            posix
                .sync()
                .await
                .context("syncing the storage dir at shutdown")?;
            Ok(())
        }
    }
}

/// Opens the storage directory, as the server's backend.
fn open(args: &PosixArgs) -> anyhow::Result<(PosixBackend, Backend)> {
    let posix = PosixBackend::open(&args.storage_dir)
        .with_context(|| format!("opening storage dir {}", args.storage_dir.display()))?;
    let search_index = match args.server.search_index {
        true => Some(Arc::new(
            posix
                .open_search_index()
                .context("opening the search index")?,
        ) as _),
        false => None,
    };
    let backend = Backend {
        generated_key_dir: Some(args.storage_dir.clone()),
        search_index,
        ..Backend::new(
            Arc::clone(&posix.storage) as _,
            Arc::clone(&posix.coordinator) as _,
        )
    };
    Ok((posix, backend))
}
