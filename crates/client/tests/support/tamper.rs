//! A tampering HTTP proxy on loopback, for tests that feed a client dishonest search answers.
//! It forwards every request to one of its upstream logs (chosen per request by a route) and
//! lets the test rewrite the JSON of each `GET /api/v2/search` answer; everything else passes
//! through byte for byte. With [`Tamper::none`] it is transparent.
#![allow(
    dead_code,
    reason = "each test file uses a different part of the proxy"
)]

use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse as _, Response};
use serde_json::Value;

/// Rewrites a search answer; given the request's query string.
pub(crate) type Rewrite = Box<dyn FnMut(&str, Value) -> Value + Send>;
/// Picks the upstream (an index into the proxy's list) for a path and query.
pub(crate) type Route = Box<dyn FnMut(&str) -> usize + Send>;

/// What the proxy does to the traffic.
pub(crate) struct Tamper {
    rewrite: Rewrite,
    route: Route,
}

impl Tamper {
    /// Forwards everything unchanged to the first upstream.
    pub(crate) fn none() -> Tamper {
        Tamper {
            rewrite: Box::new(|_, answer| answer),
            route: Box::new(|_| 0),
        }
    }

    /// Rewrites each search answer with `rewrite`, sending everything to the first upstream.
    pub(crate) fn search(rewrite: impl FnMut(&str, Value) -> Value + Send + 'static) -> Tamper {
        Tamper {
            rewrite: Box::new(rewrite),
            route: Box::new(|_| 0),
        }
    }

    /// Sends each request where `route` says, rewriting nothing.
    pub(crate) fn route(route: impl FnMut(&str) -> usize + Send + 'static) -> Tamper {
        Tamper {
            rewrite: Box::new(|_, answer| answer),
            route: Box::new(route),
        }
    }
}

struct Shared {
    upstreams: Vec<String>,
    http: reqwest::Client,
    tamper: Mutex<Tamper>,
}

impl Shared {
    fn tamper(&self) -> MutexGuard<'_, Tamper> {
        self.tamper
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The proxy, serving until dropped.
pub(crate) struct TamperProxy {
    url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl TamperProxy {
    /// Listens on a free loopback port and forwards to `upstreams` (base URLs), transparently
    /// until [`TamperProxy::set`] says otherwise.
    pub(crate) async fn start(upstreams: Vec<String>) -> anyhow::Result<TamperProxy> {
        let shared = Arc::new(Shared {
            upstreams,
            http: reqwest::Client::builder()
                .build()
                .context("building the proxy's client")?,
            tamper: Mutex::new(Tamper::none()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(TamperProxy { url, shared, task })
    }

    /// The proxy's base URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Changes what the proxy does from the next request on.
    pub(crate) fn set(&self, tamper: Tamper) {
        *self.shared.tamper() = tamper;
    }
}

impl Drop for TamperProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    match forward_to_upstream(&shared, request).await {
        Ok(response) => response,
        Err(e) => (StatusCode::BAD_GATEWAY, format!("tamper proxy: {e:#}")).into_response(),
    }
}

async fn forward_to_upstream(shared: &Shared, request: Request) -> anyhow::Result<Response> {
    let method = request.method().clone();
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let content_type = request.headers().get(CONTENT_TYPE).cloned();
    let body = axum::body::to_bytes(request.into_body(), 64 << 20).await?;
    let upstream = (shared.tamper().route)(&target);
    let base = shared
        .upstreams
        .get(upstream)
        .with_context(|| format!("no upstream {upstream}"))?;
    let mut outgoing = shared
        .http
        .request(method, format!("{base}{target}"))
        .body(body);
    if let Some(content_type) = content_type {
        outgoing = outgoing.header(CONTENT_TYPE, content_type);
    }
    let answer = outgoing.send().await?;
    let status = answer.status();
    let headers = answer.headers().clone();
    let mut bytes = answer.bytes().await?;
    // Search pages only: the completeness answer (`/api/v2/search/completeness`) passes.
    if status == StatusCode::OK && target.starts_with("/api/v2/search?") {
        let query = target.split_once('?').map_or("", |(_, q)| q);
        let value: Value = serde_json::from_slice(&bytes).context("a search answer")?;
        let value = (shared.tamper().rewrite)(query, value);
        bytes = serde_json::to_vec(&value)?.into();
    }
    let mut response = Response::builder().status(status);
    for name in [CONTENT_TYPE, CACHE_CONTROL] {
        if let Some(value) = headers.get(&name) {
            response = response.header(name, value);
        }
    }
    if let Some(value) = headers.get("x-log-index") {
        response = response.header("x-log-index", value);
    }
    Ok(response.body(Body::from(bytes))?)
}
