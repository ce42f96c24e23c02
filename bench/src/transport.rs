//! Sending one request over HTTP (protojson, HTTP/1.1 keep-alive) or gRPC (HTTP/2).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rekor_api::rekor::v2::rekor_client::RekorClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::BenchError;
use crate::requests::{Body, Encoding, Prepared};
use crate::verify::Response;

/// Where to send requests.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// The HTTP base URL, e.g. `http://127.0.0.1:3000`.
    Http(String),
    /// The gRPC URL, e.g. `http://127.0.0.1:3001`.
    Grpc(String),
}

impl Target {
    /// The request encoding this target takes.
    pub(crate) fn encoding(&self) -> Encoding {
        match self {
            Target::Http(_) => Encoding::Json,
            Target::Grpc(_) => Encoding::Proto,
        }
    }
}

/// What the server answered.
#[derive(Debug)]
pub(crate) enum Reply {
    /// 201 / OK, with the body.
    Created(Response),
    /// 409 / `AlreadyExists`.
    Duplicate,
    /// Anything else: a label to count it under, and a message for the first one seen.
    Failed {
        /// The status, e.g. `http 503` or `grpc Unavailable`.
        label: String,
        /// The server's or the transport's message.
        detail: String,
    },
}

/// A connected client. Cheap to clone; clones share connections.
#[derive(Clone, Debug)]
pub(crate) enum Client {
    /// HTTP/1.1 with a keep-alive pool (one connection per request in flight).
    Http {
        /// The pooled client.
        client: Box<HyperClient<HttpConnector, Full<Bytes>>>,
        /// `<base>/api/v2/log/entries`.
        entries: Uri,
        /// `<base>/api/v2/checkpoint`.
        checkpoint: Uri,
        /// Per-request time limit.
        timeout: Duration,
    },
    /// HTTP/2 channels; request `i` goes over channel `i mod len`.
    Grpc {
        /// The channels (each with the per-request time limit set on its endpoint).
        channels: Vec<Channel>,
    },
}

fn parse_uri(text: &str) -> Result<Uri, BenchError> {
    text.parse()
        .map_err(|e: http::uri::InvalidUri| BenchError::Flag {
            flag: "--http",
            reason: format!("{text:?}: {e}"),
        })
}

impl Client {
    /// Connects to `target`: `connections` idle connections kept (HTTP) or opened (gRPC).
    ///
    /// # Errors
    ///
    /// [`BenchError::Flag`] for a bad URL; [`BenchError::Connect`] if a gRPC channel fails.
    pub(crate) async fn connect(
        target: &Target,
        connections: usize,
        timeout: Duration,
    ) -> Result<Self, BenchError> {
        match target {
            Target::Http(base) => {
                let base = base.trim_end_matches('/');
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                let client = HyperClient::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(connections.max(1))
                    .pool_idle_timeout(Duration::from_secs(60))
                    .build(connector);
                Ok(Client::Http {
                    client: Box::new(client),
                    entries: parse_uri(&format!("{base}/api/v2/log/entries"))?,
                    checkpoint: parse_uri(&format!("{base}/api/v2/checkpoint"))?,
                    timeout,
                })
            }
            Target::Grpc(url) => {
                let endpoint = Endpoint::from_shared(url.clone())
                    .map_err(|e| BenchError::Flag {
                        flag: "--grpc",
                        reason: format!("{url:?}: {e}"),
                    })?
                    .tcp_nodelay(true)
                    .timeout(timeout);
                let mut channels = Vec::with_capacity(connections.max(1));
                for _ in 0..connections.max(1) {
                    let channel = endpoint.connect().await.map_err(|e| BenchError::Connect {
                        target: url.clone(),
                        source: Box::new(e),
                    })?;
                    channels.push(channel);
                }
                Ok(Client::Grpc { channels })
            }
        }
    }

    /// Sends request number `index` (it picks the gRPC channel) and classifies the answer.
    pub(crate) async fn send(&self, prepared: &Prepared, index: usize) -> Reply {
        match (self, &prepared.body) {
            (
                Client::Http {
                    client,
                    entries,
                    timeout,
                    ..
                },
                Body::Json(json),
            ) => {
                let request = Request::builder()
                    .method(Method::POST)
                    .uri(entries.clone())
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Full::new(json.clone()));
                let request = match request {
                    Ok(r) => r,
                    Err(e) => return failed("request build", e),
                };
                let exchange = async {
                    let response = client.request(request).await?;
                    let status = response.status();
                    let body = response.into_body().collect().await?.to_bytes();
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
                };
                match tokio::time::timeout(*timeout, exchange).await {
                    Err(_) => failed("timeout", "no answer in time"),
                    Ok(Err(e)) => failed("transport error", e),
                    Ok(Ok((StatusCode::CREATED, body))) => Reply::Created(Response::Json(body)),
                    Ok(Ok((StatusCode::CONFLICT, _))) => Reply::Duplicate,
                    Ok(Ok((status, body))) => Reply::Failed {
                        label: format!("http {}", status.as_u16()),
                        detail: String::from_utf8_lossy(&body).chars().take(300).collect(),
                    },
                }
            }
            (Client::Grpc { channels }, Body::Proto(message)) => {
                let Some(channel) = channels.get(index % channels.len().max(1)) else {
                    return failed("transport error", "no channel");
                };
                let mut client = RekorClient::new(channel.clone());
                match client.create_entry(message.clone()).await {
                    Ok(response) => {
                        Reply::Created(Response::Proto(Box::new(response.into_inner())))
                    }
                    Err(status) if status.code() == tonic::Code::AlreadyExists => Reply::Duplicate,
                    Err(status) => Reply::Failed {
                        label: format!("grpc {:?}", status.code()),
                        detail: status.message().chars().take(300).collect(),
                    },
                }
            }
            _ => failed("harness", "request encoding does not match the transport"),
        }
    }

    /// The current signed checkpoint, from the HTTP read API (`None` for gRPC targets).
    ///
    /// # Errors
    ///
    /// [`BenchError::Connect`] if the request fails or is not answered with 200.
    pub(crate) async fn checkpoint(&self) -> Result<Option<Bytes>, BenchError> {
        let Client::Http {
            client, checkpoint, ..
        } = self
        else {
            return Ok(None);
        };
        let connect = |e: Box<dyn std::error::Error + Send + Sync>| BenchError::Connect {
            target: checkpoint.to_string(),
            source: e,
        };
        let request = Request::builder()
            .uri(checkpoint.clone())
            .body(Full::new(Bytes::new()))
            .map_err(|e| connect(Box::new(e)))?;
        let response = client
            .request(request)
            .await
            .map_err(|e| connect(Box::new(e)))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| connect(Box::new(e)))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(connect(format!("status {status}").into()));
        }
        Ok(Some(body))
    }
}

fn failed(label: &str, detail: impl std::fmt::Display) -> Reply {
    Reply::Failed {
        label: label.to_string(),
        detail: detail.to_string(),
    }
}
