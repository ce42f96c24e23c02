//! `rekor-search-indexer`: follows a C2SP tlog-tiles log over HTTP into a search index of its
//! own and answers `GET /api/v2/search` for it (see the library and docs/SEARCH.md).

use clap::Parser as _;
use rekor_search_indexer::IndexerArgs;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = IndexerArgs::parse();
    rekor_search_indexer::init_tracing(&args);
    let running = rekor_search_indexer::start(args).await?;
    rekor_server::shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}
