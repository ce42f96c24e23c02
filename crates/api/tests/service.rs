//! The generated tonic server and client talk to each other in-process, over
//! the gRPC path rekor-tiles uses, with no socket.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns fail the test by panicking"
)]

use rekor_api::common::v1::LogId;
use rekor_api::google::api::HttpBody;
use rekor_api::rekor::v1::TransparencyLogEntry;
use rekor_api::rekor::v2::rekor_client::RekorClient;
use rekor_api::rekor::v2::rekor_server::{Rekor, RekorServer};
use rekor_api::rekor::v2::{
    CreateEntryRequest, EntryBundleRequest, TileRequest, create_entry_request,
};
use tonic::server::NamedService as _;
use tonic::{Request, Response, Status};

/// Echoes what it was sent, so the test sees both directions of encoding.
struct Echo;

#[tonic::async_trait]
impl Rekor for Echo {
    async fn create_entry(
        &self,
        request: Request<CreateEntryRequest>,
    ) -> Result<Response<TransparencyLogEntry>, Status> {
        let Some(create_entry_request::Spec::HashedRekordRequestV002(hashed)) =
            request.into_inner().spec
        else {
            return Err(Status::invalid_argument("expected hashedrekord"));
        };
        Ok(Response::new(TransparencyLogEntry {
            log_index: i64::MAX,
            log_id: Some(LogId {
                key_id: hashed.digest,
            }),
            ..Default::default()
        }))
    }

    async fn get_tile(&self, request: Request<TileRequest>) -> Result<Response<HttpBody>, Status> {
        let tile = request.into_inner();
        Ok(Response::new(HttpBody {
            content_type: "application/octet-stream".into(),
            data: format!("{}/{}", tile.l, tile.n).into_bytes(),
            extensions: vec![],
        }))
    }

    async fn get_entry_bundle(
        &self,
        _: Request<EntryBundleRequest>,
    ) -> Result<Response<HttpBody>, Status> {
        Err(Status::not_found("no such bundle"))
    }

    async fn get_checkpoint(
        &self,
        _: Request<pbjson_types::Empty>,
    ) -> Result<Response<HttpBody>, Status> {
        Ok(Response::new(HttpBody {
            content_type: "text/plain".into(),
            data: b"origin\n1\n".to_vec(),
            extensions: vec![],
        }))
    }
}

#[test]
fn service_name_is_the_rekor_tiles_one() {
    assert_eq!(RekorServer::<Echo>::NAME, "dev.sigstore.rekor.v2.Rekor");
}

#[tokio::test]
async fn client_and_server_round_trip_every_method() {
    let mut client = RekorClient::new(RekorServer::new(Echo));

    let request: CreateEntryRequest = rekor_api::create_entry_request_from_json(
        br#"{"hashedRekordRequestV002":{"digest":"AAEC","signature":{"content":"AQ=="}}}"#,
    )
    .unwrap();
    let entry = client.create_entry(request).await.unwrap().into_inner();
    assert_eq!(entry.log_index, i64::MAX);
    assert_eq!(entry.log_id.unwrap().key_id, [0, 1, 2]);

    let status = client
        .create_entry(CreateEntryRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let tile = client
        .get_tile(TileRequest {
            l: 2,
            n: "x001/234.p/7".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tile.data, b"2/x001/234.p/7");
    assert_eq!(tile.content_type, "application/octet-stream");

    let status = client
        .get_entry_bundle(EntryBundleRequest { n: "000".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

    let checkpoint = client
        .get_checkpoint(pbjson_types::Empty {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(checkpoint.data, b"origin\n1\n");
}
