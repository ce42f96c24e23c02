//! TLS 1.3 on both listeners, with certificates made by the openssl CLI.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use clap::Parser;
use rekor_server::{Backend, ServerArgs};
use rekor_storage::memory::{MemoryCoordinator, MemoryStorage};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn make_certificate(dir: &Path) {
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl is installed");
    assert!(status.status.success(), "{status:?}");
}

fn client(
    dir: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[u8],
) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("cert.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn both_listeners_speak_tls13_only() {
    let dir = tempfile::tempdir().unwrap();
    make_certificate(dir.path());
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let cli = Cli::parse_from([
        "test".as_ref(),
        "--hostname".as_ref(),
        "localhost".as_ref(),
        "--http-port".as_ref(),
        "0".as_ref(),
        "--grpc-port".as_ref(),
        "0".as_ref(),
        "--http-metrics-port".as_ref(),
        "0".as_ref(),
        "--http-tls-cert-file".as_ref(),
        cert.as_os_str(),
        "--http-tls-key-file".as_ref(),
        key.as_os_str(),
        "--grpc-tls-cert-file".as_ref(),
        cert.as_os_str(),
        "--grpc-tls-key-file".as_ref(),
        key.as_os_str(),
    ]);
    let backend = Backend {
        generated_key_dir: Some(dir.path().to_path_buf()),
        ..Backend::new(
            Arc::new(MemoryStorage::default()),
            Arc::new(MemoryCoordinator::default()),
        )
    };
    let server = rekor_server::start(cli.server, backend).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();

    // HTTP over TLS 1.3 answers.
    let tcp = TcpStream::connect(server.http_address).await.unwrap();
    let mut tls = client(dir.path(), &[&rustls::version::TLS13], b"http/1.1")
        .connect(name.clone(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("SERVING"), "{response}");

    // TLS 1.2 is refused on both listeners.
    for address in [server.http_address, server.grpc_address] {
        let tcp = TcpStream::connect(address).await.unwrap();
        let result = client(dir.path(), &[&rustls::version::TLS12], b"h2")
            .connect(name.clone(), tcp)
            .await;
        assert!(result.is_err(), "TLS 1.2 accepted on {address}");
    }

    // gRPC negotiates h2 over TLS 1.3.
    let tcp = TcpStream::connect(server.grpc_address).await.unwrap();
    let tls = client(dir.path(), &[&rustls::version::TLS13], b"h2")
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    drop(tls);
    server.stop().await;
}

#[tokio::test]
async fn a_certificate_without_its_key_is_refused() {
    let result = Cli::try_parse_from(["test", "--http-tls-cert-file", "/nonexistent.pem"]);
    assert!(result.is_err(), "clap requires the key file too");
}
