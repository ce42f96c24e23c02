//! The gRPC API: `dev.sigstore.rekor.v2.Rekor`. Built by [`service`].

use std::time::Duration;

use rekor_api::google::api::HttpBody;
use rekor_api::rekor::v1::TransparencyLogEntry;
use rekor_api::rekor::v2::rekor_server::{Rekor, RekorServer};
use rekor_api::rekor::v2::{CreateEntryRequest, EntryBundleRequest, TileRequest};
use rekor_storage::ObjectKind;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::error::{ApiError, LOG_INDEX_HEADER};
use crate::service::AppState;

/// The Rekor gRPC service over `state`, with the request size limit applied and every call
/// cut off after `timeout`.
pub fn service(state: AppState, timeout: Duration) -> RekorServer<GrpcService> {
    let limit = state.max_request_body_size();
    RekorServer::new(GrpcService { state, timeout })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX)
}

/// Implements [`Rekor`] by delegating to [`AppState`].
#[derive(Clone, Debug)]
pub struct GrpcService {
    state: AppState,
    timeout: Duration,
}

impl GrpcService {
    async fn observed<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<Response<T>, Status> {
        let span = tracing::info_span!(
            "request",
            transport = "grpc",
            method,
            log_index = tracing::field::Empty
        );
        let outcome = match tokio::time::timeout(self.timeout, call.instrument(span.clone())).await
        {
            Ok(outcome) => outcome,
            Err(_) => Err(ApiError::Timeout(self.timeout)),
        };
        let code = match &outcome {
            Ok(_) => 200,
            Err(e) => {
                let _entered = span.enter();
                self.state.errors().record(e);
                e.status().0.as_u16()
            }
        };
        self.state.metrics().record_request("grpc", method, code);
        outcome.map(Response::new).map_err(Status::from)
    }
}

fn body(data: bytes::Bytes, kind: ObjectKind) -> HttpBody {
    HttpBody {
        content_type: kind.content_type().to_string(),
        data: data.to_vec(),
        extensions: Vec::new(),
    }
}

#[tonic::async_trait]
impl Rekor for GrpcService {
    async fn create_entry(
        &self,
        request: Request<CreateEntryRequest>,
    ) -> Result<Response<TransparencyLogEntry>, Status> {
        // Only a limited log needs the headers (for X-Forwarded-For); copying them costs.
        let admitted = if self.state.limits_writes() {
            let peer = request.remote_addr().map(|address| address.ip());
            self.state
                .admit_write(peer, &request.metadata().clone().into_headers())
        } else {
            Ok(())
        };
        let request = request.into_inner();
        let created = self
            .observed("CreateEntry", async {
                admitted?;
                self.state.create_entry(request).await
            })
            .await?
            .into_inner();
        let mut response = Response::new(created.entry);
        if created.duplicate {
            // The entry was in the log already (`--duplicate-returns-entry`).
            let index = tonic::metadata::MetadataValue::from(response.get_ref().log_index);
            response.metadata_mut().insert(LOG_INDEX_HEADER, index);
        }
        Ok(response)
    }

    async fn get_tile(&self, request: Request<TileRequest>) -> Result<Response<HttpBody>, Status> {
        let request = request.into_inner();
        let path = format!("tile/{}/{}", request.l, request.n);
        self.observed("GetTile", async {
            let (data, kind) = self.state.tile(&path).await?;
            Ok(body(data, kind))
        })
        .await
    }

    async fn get_entry_bundle(
        &self,
        request: Request<EntryBundleRequest>,
    ) -> Result<Response<HttpBody>, Status> {
        let path = format!("tile/entries/{}", request.into_inner().n);
        self.observed("GetEntryBundle", async {
            let (data, kind) = self.state.tile(&path).await?;
            Ok(body(data, kind))
        })
        .await
    }

    async fn get_checkpoint(
        &self,
        _request: Request<pbjson_types::Empty>,
    ) -> Result<Response<HttpBody>, Status> {
        self.observed("GetCheckpoint", async {
            let data = self.state.checkpoint().await?;
            Ok(body(data, ObjectKind::Checkpoint))
        })
        .await
    }
}

/// Answers a panicking gRPC handler with `Internal` instead of dropping the connection, and counts it.
#[derive(Clone, Debug)]
pub struct PanicResponder {
    metrics: crate::metrics::Metrics,
}

impl PanicResponder {
    /// A responder that counts panics in `metrics`.
    pub fn new(metrics: crate::metrics::Metrics) -> Self {
        PanicResponder { metrics }
    }
}

impl tower_http::catch_panic::ResponseForPanic for PanicResponder {
    type ResponseBody = tonic::body::Body;

    fn response_for_panic(
        &mut self,
        _panic: Box<dyn std::any::Any + Send + 'static>,
    ) -> http::Response<Self::ResponseBody> {
        self.metrics.panics_recovered.inc();
        tracing::error!("gRPC handler panicked");
        crate::error::grpc_panic_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_http::catch_panic::ResponseForPanic as _;

    #[test]
    fn a_panic_becomes_internal_and_is_counted() {
        let metrics = crate::metrics::Metrics::new();
        let mut responder = PanicResponder::new(metrics.clone());
        let response = responder.response_for_panic(Box::new("boom"));
        assert_eq!(response.headers().get("grpc-status").unwrap(), "13");
        assert_eq!(metrics.panics_recovered.get(), 1);
        assert!(
            metrics
                .encode()
                .contains("rekor_v2_grpc_req_panics_recovered_total 1")
        );
    }
}
