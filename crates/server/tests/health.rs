//! `/healthz` and the gRPC health service report a log whose coordinator has stopped (as the
//! POSIX journal does after a write it could not cut off), so a liveness probe restarts the
//! process.
#![allow(clippy::unwrap_used, reason = "test code")]

use std::sync::Arc;

use clap::Parser;
use rekor_server::{Backend, ServerArgs};
use rekor_storage::Storage;
use rekor_storage::fault::{FaultyCoordinator, Operation};
use rekor_storage::memory::{MemoryCoordinator, MemoryStorage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

async fn healthz(address: std::net::SocketAddr) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8(response).unwrap();
    let status = text.split(' ').nth(1).unwrap().to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap().to_string();
    format!("{status} {body}")
}

/// The gRPC health status of the whole server (`""`), once it is `want` (it is polled each second).
async fn grpc_status_becomes(address: std::net::SocketAddr, want: i32) -> i32 {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let mut status = -1;
    for _ in 0..50 {
        status = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        if status == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    status
}

#[tokio::test]
async fn health_turns_not_serving_when_the_coordinator_stops() {
    let coordinator = Arc::new(FaultyCoordinator::new(MemoryCoordinator::default()));
    let faults = coordinator.handle();
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli::parse_from([
        "rekor-server",
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        "--http-metrics-port",
        "0",
    ]);
    let backend = Backend {
        generated_key_dir: Some(dir.path().to_path_buf()),
        ..Backend::new(
            Arc::new(MemoryStorage::default()) as Arc<dyn Storage>,
            coordinator,
        )
    };
    let server = rekor_server::start(cli.server, backend).await.unwrap();
    let address = server.http_address;

    let grpc = server.grpc_address;
    let (serving, not_serving) = (1, 2);

    assert_eq!(healthz(address).await, r#"200 {"status":"SERVING"}"#);
    assert_eq!(grpc_status_becomes(grpc, serving).await, serving);
    faults.fail_always(Operation::Health);
    assert_eq!(healthz(address).await, r#"503 {"status":"NOT_SERVING"}"#);
    assert_eq!(grpc_status_becomes(grpc, not_serving).await, not_serving);
    faults.heal(Operation::Health);
    assert_eq!(healthz(address).await, r#"200 {"status":"SERVING"}"#);
    assert_eq!(grpc_status_becomes(grpc, serving).await, serving);
}
