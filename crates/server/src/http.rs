//! The HTTP API: protojson writes, the C2SP tile read API, search, health. Built by [`api`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{BoxError, Router};
use bytes::Bytes;
use http_body_util::BodyExt;
use rekor_log::Log;
use rekor_storage::ObjectKind;
use tower::ServiceExt;

use crate::error::{ApiError, LOG_INDEX_HEADER};
use crate::service::{AppState, Created};

mod guard;

/// The write path, the HTTP API's one hot route: requests for it skip the router.
const ENTRIES_PATH: &str = "/api/v2/log/entries";

/// The HTTP API over one [`AppState`]: every request under the guard (deadline, request
/// observation, panic recovery), `POST /api/v2/log/entries` handled directly and everything
/// else through an axum router. Serve it with [`serve`]; cheap to clone.
///
/// Why writes skip the router: at concurrency 1024 a profile of `make bench-profile` put about
/// 8 µs of the server's CPU per write in routing (route lookup, the per-route boxed services
/// cloned per request, their boxed futures, the peer extension); answered directly a write is
/// one boxed future from hyper to the pipeline.
#[derive(Clone, Debug)]
pub struct HttpApi {
    inner: Arc<ApiInner>,
}

#[derive(Debug)]
struct ApiInner {
    routes: Router,
    state: AppState,
    timeout: Duration,
    writes: bool,
}

/// Builds the HTTP API over `state`: reads, and writes at `POST /api/v2/log/entries`.
pub fn api(state: AppState, timeout: Duration) -> HttpApi {
    let routes = read_routes().route(ENTRIES_PATH, post(create_entry_routed));
    HttpApi::new(routes, state, timeout, true)
}

/// Builds the read-only HTTP API over `state`: the tile read API, the checkpoint, search and
/// health, with no write endpoint (`POST /api/v2/log/entries` is an unknown route). For a
/// server that follows a log rather than being it, such as the standalone search indexer.
pub fn read_api(state: AppState, timeout: Duration) -> HttpApi {
    HttpApi::new(read_routes(), state, timeout, false)
}

/// The routes every server answers: reads only.
fn read_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v2/checkpoint", get(checkpoint))
        .route("/api/v2/tile/{*path}", get(tile))
        .route("/api/v2/search", get(search))
        .route("/api/v2/search/completeness", get(search_completeness))
        .route("/healthz", get(healthz))
}

impl HttpApi {
    fn new(routes: Router<AppState>, state: AppState, timeout: Duration, writes: bool) -> Self {
        let routes = routes.fallback(not_found).with_state(state.clone());
        HttpApi {
            inner: Arc::new(ApiInner {
                routes,
                state,
                timeout,
                writes,
            }),
        }
    }

    /// Answers one request from `peer` (the connection's address, when there is one).
    pub async fn handle<B>(
        &self,
        request: axum::http::Request<B>,
        peer: Option<SocketAddr>,
    ) -> Response
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let inner = &*self.inner;
        let method = guard::route_name(request.method(), request.uri().path());
        guard::guard(&inner.state, inner.timeout, method, || async move {
            // `route_name` names exactly `POST /api/v2/log/entries` so.
            if inner.writes && method == "CreateEntry" {
                return create_entry(&inner.state, peer, request).await;
            }
            let mut request = request.map(Body::new);
            if let Some(peer) = peer {
                request.extensions_mut().insert(Peer(peer));
            }
            match inner.routes.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        })
        .await
    }

    /// The service hyper calls for the requests of one connection from `peer`.
    pub(crate) fn connection(&self, peer: SocketAddr) -> HttpService {
        HttpService {
            api: self.clone(),
            peer,
        }
    }
}

/// Serves `api` over plain TCP on `listener` until `stop`, then waits for open connections to
/// finish; see [`crate::serve`] for the connection limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: HttpApi,
    timeout: Duration,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    crate::serve::serve(crate::serve::Connections::Tcp(listener), api, timeout, stop).await
}

/// The address a request's connection came from, in the extensions of requests the router
/// serves.
#[derive(Clone, Copy, Debug)]
struct Peer(SocketAddr);

/// One connection's requests, as hyper calls them.
#[derive(Clone, Debug)]
pub(crate) struct HttpService {
    api: HttpApi,
    peer: SocketAddr,
}

impl hyper::service::Service<axum::http::Request<hyper::body::Incoming>> for HttpService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: axum::http::Request<hyper::body::Incoming>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move { Ok(service.api.handle(request, Some(service.peer)).await) })
    }
}

/// POST /api/v2/log/entries as the router sees it: only other methods reach the router when
/// writes are served (see [`HttpApi::handle`]), so this is for completeness of the route table
/// (a GET answers 405, not 404).
async fn create_entry_routed(State(state): State<AppState>, request: Request) -> Response {
    let peer = request.extensions().get::<Peer>().map(|peer| peer.0);
    create_entry(&state, peer, request).await
}

/// POST /api/v2/log/entries: a protojson `CreateEntryRequest`; answers 201 and a
/// `TransparencyLogEntry`, with `x-log-index: N` when the entry was in the log already (under
/// `--duplicate-returns-entry`).
async fn create_entry<B>(
    state: &AppState,
    peer: Option<SocketAddr>,
    request: axum::http::Request<B>,
) -> Response
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match create_entry_inner(state, peer, request).await {
        Ok(created) => {
            let mut response = (
                StatusCode::CREATED,
                [(header::CONTENT_TYPE, "application/json")],
                rekor_api::transparency_log_entry_to_json(&created.entry),
            )
                .into_response();
            if created.duplicate {
                response
                    .headers_mut()
                    .insert(LOG_INDEX_HEADER, HeaderValue::from(created.entry.log_index));
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn create_entry_inner<B>(
    state: &AppState,
    peer: Option<SocketAddr>,
    request: axum::http::Request<B>,
) -> Result<Created, ApiError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    if state.log().is_none() {
        return Err(ApiError::ReadOnly);
    }
    state.admit_write(peer.map(|peer| peer.ip()), request.headers())?;
    let limits = state.request_limits();
    let body = read_body(request.into_body(), limits.max_bytes).await?;
    let request = rekor_api::from_json(&body, limits).map_err(ApiError::InvalidRequest)?;
    state.create_entry(request).await
}

/// Reads at most `limit` bytes; a larger body is [`ApiError::BodyTooLarge`].
async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, ApiError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::BodyTooLarge { limit })
        }
        Err(e) => Err(ApiError::BodyUnreadable(e.to_string())),
    }
}

/// GET /api/v2/checkpoint: the signed checkpoint, `text/plain`, never cached.
async fn checkpoint(State(state): State<AppState>) -> Response {
    match state.checkpoint().await {
        Ok(data) => object_response(data, ObjectKind::Checkpoint),
        Err(e) => e.into_response(),
    }
}

/// GET /api/v2/tile/{L}/{N}[.p/{W}] and /api/v2/tile/entries/{N}[.p/{W}]: immutable tiles.
async fn tile(State(state): State<AppState>, Path(path): Path<String>) -> Response {
    match state.tile(&format!("tile/{path}")).await {
        Ok((data, kind)) => object_response(data, kind),
        Err(e) => e.into_response(),
    }
}

/// GET /api/v2/search?digest=|key=|identity=…[&pageSize=N][&pageToken=T]: matching entries with
/// inclusion proofs against the checkpoint returned (see [`crate::search`]).
async fn search(
    State(state): State<AppState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let answer = match crate::search::SearchQuery::parse(query.as_deref().unwrap_or_default()) {
        Ok(query) => state.search(&query).await,
        Err(e) => Err(ApiError::InvalidSearch(e)),
    };
    json_answer(answer)
}

/// GET /api/v2/search/completeness?digest=|key=|identity=…: the term's bucket under the latest
/// signed search-index commitment, with its proof (see [`crate::search`]).
async fn search_completeness(
    State(state): State<AppState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let answer = match crate::search::SearchQuery::parse(query.as_deref().unwrap_or_default()) {
        Ok(query) => state.search_completeness(&query.term).await,
        Err(e) => Err(ApiError::InvalidSearch(e)),
    };
    json_answer(answer)
}

fn json_answer(answer: Result<Vec<u8>, ApiError>) -> Response {
    match answer {
        Ok(body) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

fn object_response(data: Bytes, kind: ObjectKind) -> Response {
    let mut response = data.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(kind.content_type()),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(kind.cache_control()),
    );
    response
}

/// GET /healthz: `{"status":"SERVING"}`, as grpc-gateway's health endpoint answers; 503 with
/// `{"status":"NOT_SERVING"}` once the log has stopped after a failure only a restart recovers
/// from, so an orchestrator's liveness probe restarts the process.
async fn healthz(State(state): State<AppState>) -> Response {
    if let Some(Err(e)) = state.log().map(Log::health) {
        tracing::error!(error = %e, "health check failed");
        return ApiError::NotServing(e.to_string()).into_response();
    }
    crate::error::serving_response()
}

async fn not_found() -> Response {
    ApiError::NoSuchRoute.into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use rekor_entries::AlgorithmRegistry;
    use rekor_storage::memory::MemoryStorage;

    use super::*;
    use crate::metrics::Metrics;

    /// A state with no log behind it (shared with the guard's tests).
    pub(super) fn state() -> AppState {
        AppState::new(
            None,
            Arc::new(MemoryStorage::default()),
            AlgorithmRegistry::default(),
            [0; 32],
            Metrics::new(),
            1024,
        )
    }

    async fn answer(api: &HttpApi, method: Method, path: &str) -> Response {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::from("{}"))
            .expect("a request");
        api.handle(request, None).await
    }

    async fn status(api: &HttpApi, method: Method, path: &str) -> StatusCode {
        answer(api, method, path).await.status()
    }

    /// Writes skip the router, so the router must still answer the write path's other methods
    /// and the read-only API must not grow a write route.
    #[tokio::test]
    async fn the_write_path_is_routed_the_same_with_and_without_the_router() {
        let state = state();
        let api = api(state.clone(), Duration::from_secs(5));
        // No log behind this state: the write handler itself answers (read-only), not a 404.
        assert_eq!(
            status(&api, Method::POST, ENTRIES_PATH).await,
            ApiError::ReadOnly.into_response().status()
        );
        // The router's 405 (it names the allowed method), not the write handler's.
        let get = answer(&api, Method::GET, ENTRIES_PATH).await;
        assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            get.headers().get(header::ALLOW).map(HeaderValue::as_bytes),
            Some(&b"POST"[..])
        );
        assert_eq!(
            status(&api, Method::POST, "/api/v2/log/entries/").await,
            StatusCode::NOT_FOUND
        );
        assert_eq!(status(&api, Method::GET, "/healthz").await, StatusCode::OK);

        let read_only = read_api(state.clone(), Duration::from_secs(5));
        assert_eq!(
            status(&read_only, Method::POST, ENTRIES_PATH).await,
            StatusCode::NOT_FOUND
        );
        // Every request went through the guard once, whichever way it was served.
        let metrics = state.metrics().encode();
        for (route, code) in [
            ("CreateEntry", 405),
            ("CreateEntry", 404),
            ("other", 405),
            ("other", 404),
            ("Healthz", 200),
        ] {
            let line = format!(
                "rekor_v2_requests_total{{transport=\"http\",method=\"{route}\",code=\"{code}\"}} 1"
            );
            assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
        }
    }
}
