//! Sending one request over HTTP (protojson, HTTP/1.1 keep-alive) or gRPC (HTTP/2).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rekor_api::rekor::v2::rekor_client::RekorClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::BenchError;
use crate::http1::Http1;
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
    /// HTTP/1.1 keep-alive connections (one per request in flight).
    Http {
        /// The connections.
        client: Arc<Http1>,
        /// Per-request time limit.
        timeout: Duration,
    },
    /// HTTP/2 channels; request `i` goes over channel `i mod len`.
    Grpc {
        /// The channels (each with the per-request time limit set on its endpoint).
        channels: Vec<Channel>,
    },
}

/// Where the write API and the checkpoint are, under the base URL.
const ENTRIES_PATH: &str = "/api/v2/log/entries";
const CHECKPOINT_PATH: &str = "/api/v2/checkpoint";

impl Client {
    /// Connects to `target`: `connections` HTTP connections or gRPC channels are opened now (more
    /// HTTP connections are opened later if requests need them).
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
                let client = Http1::new(base).await.map_err(|reason| BenchError::Flag {
                    flag: "--http",
                    reason: format!("{base:?}: {reason}"),
                })?;
                client
                    .open(connections)
                    .await
                    .map_err(|e| BenchError::Connect {
                        target: base.clone(),
                        source: Box::new(e),
                    })?;
                Ok(Client::Http {
                    client: Arc::new(client),
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
            (Client::Http { client, timeout }, Body::Json(json)) => {
                let exchange = client.request("POST", ENTRIES_PATH, Some("application/json"), json);
                match tokio::time::timeout(*timeout, exchange).await {
                    Err(_) => failed("timeout", "no answer in time"),
                    Ok(Err(e)) => failed("transport error", e),
                    Ok(Ok(answer)) => match answer.status {
                        201 => Reply::Created(Response::Json(answer.body)),
                        409 => Reply::Duplicate,
                        status => Reply::Failed {
                            label: format!("http {status}"),
                            detail: String::from_utf8_lossy(&answer.body)
                                .chars()
                                .take(300)
                                .collect(),
                        },
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
        let Client::Http { client, .. } = self else {
            return Ok(None);
        };
        let connect = |e: Box<dyn std::error::Error + Send + Sync>| BenchError::Connect {
            target: CHECKPOINT_PATH.to_string(),
            source: e,
        };
        let answer = client
            .request("GET", CHECKPOINT_PATH, None, &[])
            .await
            .map_err(|e| connect(Box::new(e)))?;
        if answer.status != 200 {
            return Err(connect(format!("status {}", answer.status).into()));
        }
        Ok(Some(answer.body))
    }
}

fn failed(label: &str, detail: impl std::fmt::Display) -> Reply {
    Reply::Failed {
        label: label.to_string(),
        detail: detail.to_string(),
    }
}
