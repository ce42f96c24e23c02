//! `rekor-server-gcp`: a Rekor v2-compatible log frontend on Google Cloud. Tiles, entry bundles and
//! the checkpoint live in a GCS bucket (which a CDN can serve as the read API); sequencing and the
//! dedup index live in Cloud Spanner. Several frontends may share one bucket and database: they
//! build one tree. Emulators are used when `STORAGE_EMULATOR_HOST` / `SPANNER_EMULATOR_HOST` are set.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use rekor_server::{Backend, ServerArgs};
use rekor_storage::gcp::{GcsConfig, GcsStorage, SpannerConfig, SpannerCoordinator};

// See rekor-server-posix: about a tenth of the server's CPU per write was glibc malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// GCS sustains about one write per second to one object: the checkpoint.
const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Parser)]
#[command(version, about, long_about = None, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "Examples:
  rekor-server-gcp serve --hostname log.example.dev --signer-filepath signer.pem \\
      --gcp-bucket my-log-tiles --gcp-spanner projects/p/instances/i/databases/d
  rekor-server-gcp info --hostname log.example.dev --signer-filepath signer.pem
  rekor-server-gcp freeze --hostname log.example.dev --signer-filepath signer.pem \\
      --gcp-bucket my-log-tiles --gcp-spanner projects/p/instances/i/databases/d";

#[derive(Subcommand)]
enum Command {
    /// Run a frontend: HTTP on --http-port, gRPC on --grpc-port, metrics on --http-metrics-port.
    Serve(GcpArgs),
    /// Print the origin, public key, log ID, and the TrustedRoot and SigningConfig entries clients need.
    Info(InfoArgs),
    /// End the log for good: every frontend stops taking entries, a final checkpoint is
    /// published, and no larger checkpoint is ever signed. Frontends may keep running (read-only).
    Freeze(GcpArgs),
}

#[derive(Args)]
struct GcpArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// GCS bucket for tiles, entry bundles and the checkpoint.
    #[arg(long, env = "REKOR_GCP_BUCKET")]
    gcp_bucket: String,
    /// Cloud Spanner database for sequencing and dedup: `projects/P/instances/I/databases/D`
    /// (the database must exist; the tables are created if missing).
    #[arg(long, env = "REKOR_GCP_SPANNER")]
    gcp_spanner: String,
}

#[derive(Args)]
struct InfoArgs {
    #[command(flatten)]
    server: ServerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Info(args) => Ok(rekor_server::print_identity(&args.server, None)?),
        Command::Freeze(args) => {
            rekor_server::init_tracing(&args.server);
            let backend = connect(&args).await?;
            let frozen = rekor_server::freeze(&args.server, &backend).await?;
            frozen.print();
            Ok(())
        }
        Command::Serve(args) => {
            rekor_server::init_tracing(&args.server);
            let backend = connect(&args).await?;
            rekor_server::run(args.server, backend).await?;
            Ok(())
        }
    }
}

/// Connects to the bucket and the database, as the server's backend.
async fn connect(args: &GcpArgs) -> anyhow::Result<Backend> {
    let storage = GcsStorage::connect(GcsConfig::new(&args.gcp_bucket))
        .await
        .with_context(|| format!("connecting to bucket {}", args.gcp_bucket))?;
    let coordinator = SpannerCoordinator::connect(SpannerConfig::new(&args.gcp_spanner))
        .await
        .with_context(|| format!("connecting to Spanner {}", args.gcp_spanner))?;
    let search_index = args
        .server
        .search_index
        .then(|| Arc::new(coordinator.search_index()) as _);
    Ok(Backend {
        min_checkpoint_interval: MIN_CHECKPOINT_INTERVAL,
        search_index,
        ..Backend::new(Arc::new(storage), Arc::new(coordinator))
    })
}
