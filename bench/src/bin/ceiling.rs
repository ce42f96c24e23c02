//! `rekor-bench-ceiling`: the most a Rekor v2 write server built like ours (tokio, hyper's
//! HTTP/1.1, protojson, the same entry validation) could answer on this machine, because it does
//! nothing else.
//!
//! `POST /api/v2/log/entries` reads the body, parses the protojson `CreateEntryRequest` and
//! validates it exactly as the server does (canonical entry, signature verification), then
//! answers `201` with `--answer-bytes` bytes, the size of the real server's answers, so the
//! network does the same work. There is no log: no batching, sequencing, Merkle tree, storage,
//! deduplication, proof or checkpoint. `make bench` drives it with the same load as the real
//! server: our rate over this one says how much of what a hyper-based server can do on this
//! machine the log leaves on the table, and this one over the machine's verify rate bounds what
//! any log built this way can reach.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rekor_api::rekor::v2::create_entry_request::Spec;
use rekor_entries::AlgorithmRegistry;

// The server's allocator, so the comparison is of the work and not of malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "HTTP + entry validation only, no log: the ceiling `make bench` compares against"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Size of each 201 answer, in bytes (`make bench` passes the real server's mean).
    #[arg(long, default_value_t = 2048)]
    answer_bytes: usize,
    /// Largest accepted request body, in bytes (the server's default).
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    max_request_body_size: usize,
}

struct Ceiling {
    registry: AlgorithmRegistry,
    answer: Bytes,
    max_request_body_size: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let ceiling = Arc::new(Ceiling {
        registry: AlgorithmRegistry::default(),
        answer: Bytes::from(vec![b' '; cli.answer_bytes]),
        max_request_body_size: cli.max_request_body_size,
    });
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("listening on {}", cli.listen))?;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                let _ = writeln!(std::io::stderr(), "accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // As the server does: answers are not held back waiting for an ACK.
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let ceiling = Arc::clone(&ceiling);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let ceiling = Arc::clone(&ceiling);
                async move { Ok::<_, Infallible>(ceiling.answer(request).await) }
            });
            // A client that goes away mid-request is not this tool's concern.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Ceiling {
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/healthz") => plain(StatusCode::OK, "ok"),
            (&Method::POST, "/api/v2/log/entries") => match self.validate(request).await {
                Ok(()) => {
                    let mut response = Response::new(Full::new(self.answer.clone()));
                    *response.status_mut() = StatusCode::CREATED;
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static("application/json"),
                    );
                    response
                }
                Err(message) => plain(StatusCode::BAD_REQUEST, message),
            },
            _ => plain(StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// What the server does to a write before it reaches the log.
    async fn validate(&self, request: Request<Incoming>) -> Result<(), String> {
        let body = Limited::new(request.into_body(), self.max_request_body_size)
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        let request = rekor_api::create_entry_request_from_json(&body)
            .map_err(|e| format!("invalid request body: {e}"))?;
        let validated = match request.spec {
            Some(Spec::HashedRekordRequestV002(hashed)) => rekor_entries::validate_hashed_rekord(
                &rekor_api::entries_input::hashed_rekord(&hashed),
                &self.registry,
            ),
            Some(Spec::DsseRequestV002(dsse)) => {
                rekor_entries::validate_dsse(&rekor_api::entries_input::dsse(&dsse), &self.registry)
            }
            None => return Err("invalid type, must be either hashedrekord or dsse".into()),
        }
        .map_err(|e| e.to_string())?;
        // The canonical entry is what the server would log; only its cost matters here.
        std::hint::black_box(validated);
        Ok(())
    }
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message.into())));
    *response.status_mut() = status;
    response
}
