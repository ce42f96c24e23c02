//! The read API's tile cache: full tiles are read from storage once, partial tiles every time,
//! and `--tile-cache-size 0` turns the cache off.
#![allow(clippy::unwrap_used, reason = "test code")]

use std::sync::Arc;

use clap::Parser;
use rekor_server::{Backend, ServerArgs};
use rekor_storage::fault::{FaultyStorage, Operation};
use rekor_storage::memory::{MemoryCoordinator, MemoryStorage};
use rekor_storage::{Object, Storage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

async fn get(address: std::net::SocketAddr, path: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{path}: {}",
        String::from_utf8_lossy(&response[..response.len().min(200)])
    );
    let body = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    response[body..].to_vec()
}

/// Serves a read-only log whose storage holds one full and one partial tile; returns how many
/// storage reads two fetches of each caused.
async fn reads_for_two_fetches(cache_flag: &[&str]) -> (u64, u64) {
    // The fault wrapper, with no fault armed, counts the calls that reach the storage.
    let storage = Arc::new(FaultyStorage::new(MemoryStorage::default()));
    let reads = storage.handle();
    let full = vec![7u8; 256 * 32];
    let partial = vec![9u8; 3 * 32];
    storage
        .write_objects(vec![
            Object::new("tile/0/000", full.clone()),
            Object::new("tile/0/001.p/3", partial.clone()),
        ])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut argv = vec![
        "rekor-server",
        "--read-only",
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        "--http-metrics-port",
        "0",
    ];
    argv.extend_from_slice(cache_flag);
    let cli = Cli::parse_from(argv);
    let backend = Backend {
        generated_key_dir: Some(dir.path().to_path_buf()),
        ..Backend::new(
            Arc::clone(&storage) as Arc<dyn Storage>,
            Arc::new(MemoryCoordinator::default()),
        )
    };
    let server = rekor_server::start(cli.server, backend).await.unwrap();
    let address = server.http_address;

    for _ in 0..2 {
        assert_eq!(get(address, "/api/v2/tile/0/000").await, full);
    }
    let full_reads = reads.calls(Operation::Read);
    for _ in 0..2 {
        assert_eq!(get(address, "/api/v2/tile/0/001.p/3").await, partial);
    }
    let partial_reads = reads.calls(Operation::Read) - full_reads;
    server.stop().await;
    (full_reads, partial_reads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_tiles_are_read_from_storage_once_and_partial_tiles_every_time() {
    assert_eq!(reads_for_two_fetches(&[]).await, (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_tile_cache_reads_storage_every_time() {
    assert_eq!(
        reads_for_two_fetches(&["--tile-cache-size", "0"]).await,
        (2, 2)
    );
}
