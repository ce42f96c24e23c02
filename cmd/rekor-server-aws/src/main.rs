//! `rekor-server-aws`: a Rekor v2-compatible log frontend on AWS. Tiles, entry bundles and the
//! checkpoint live in an S3 bucket (which a CDN can serve as the read API); sequencing and the
//! dedup index live in MySQL (Aurora, MariaDB). Several frontends may share one bucket and
//! database: they build one tree. S3 settings come from the standard AWS environment variables
//! (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, ...).

use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use rekor_server::{Backend, ServerArgs};
use rekor_storage::aws::{MysqlConfig, MysqlCoordinator, S3Config, S3Storage};

// See rekor-server-posix: about a tenth of the server's CPU per write was glibc malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about, long_about = None, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "Examples:
  REKOR_AWS_MYSQL_DSN='rekor:secret@tcp(db:3306)/rekor' \\
  rekor-server-aws serve --hostname log.example.dev --signer-filepath signer.pem --aws-bucket my-log-tiles
  rekor-server-aws info --hostname log.example.dev --signer-filepath signer.pem
  rekor-server-aws freeze --hostname log.example.dev --signer-filepath signer.pem --aws-bucket my-log-tiles";

#[derive(Subcommand)]
enum Command {
    /// Run a frontend: HTTP on --http-port, gRPC on --grpc-port, metrics on --http-metrics-port.
    Serve(AwsArgs),
    /// Print the origin, public key, log ID, and the TrustedRoot and SigningConfig entries clients need.
    Info(InfoArgs),
    /// End the log for good: every frontend stops taking entries, a final checkpoint is
    /// published, and no larger checkpoint is ever signed. Frontends may keep running (read-only).
    Freeze(AwsArgs),
}

#[derive(Args)]
struct AwsArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// S3 bucket for tiles, entry bundles and the checkpoint.
    #[arg(long, env = "REKOR_AWS_BUCKET")]
    aws_bucket: String,
    /// MySQL DSN for sequencing and dedup, as rekor-tiles takes it
    /// (`user:pass@tcp(host:3306)/db`) or as a `mysql://` URL. Prefer the environment variable,
    /// which keeps the password out of the process list.
    #[arg(long, env = "REKOR_AWS_MYSQL_DSN", hide_env_values = true)]
    aws_mysql_dsn: String,
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
async fn connect(args: &AwsArgs) -> anyhow::Result<Backend> {
    let storage = S3Storage::connect(S3Config::from_env(&args.aws_bucket))
        .with_context(|| format!("connecting to bucket {}", args.aws_bucket))?;
    let mysql = MysqlConfig::from_dsn(&args.aws_mysql_dsn).context("--aws-mysql-dsn")?;
    let coordinator = MysqlCoordinator::connect(&mysql)
        .await
        .context("connecting to MySQL")?;
    let search_index = match args.server.search_index {
        true => Some(Arc::new(
            coordinator
                .search_index()
                .await
                .context("the search index")?,
        ) as _),
        false => None,
    };
    Ok(Backend {
        search_index,
        ..Backend::new(Arc::new(storage), Arc::new(coordinator))
    })
}
