//! A frozen log (`--read-only`): writes are refused (HTTP 405 with rekor-tiles' plain-text
//! body, gRPC Unimplemented), while the checkpoint, tiles and bundles are still served,
//! unchanged, over both transports.

use anyhow::{Context as _, ensure};
use rekor_api::rekor::v2::{EntryBundleRequest, TileRequest};
use rekor_testkit::fixtures::artifact;
use rekor_testkit::{ClientKey, KeyKind, ServerConfig, TestLog, audit, verify_entry};

/// rekor-tiles' body for a frozen log (`internal/server/service.go`).
const FROZEN: &str = "This log has been frozen, please switch to the latest log.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_log_refuses_writes_and_serves_reads() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = ServerConfig::new(
        env!("CARGO_BIN_EXE_rekor-server-posix"),
        dir.path().join("log"),
    );
    let key = ClientKey::generate(KeyKind::EcdsaP256)?;

    let log = TestLog::start(&config).await?;
    let mut logged = Vec::new();
    for n in 0..5 {
        let submission = key.hashed_rekord(&artifact("read-only", n)?)?;
        let entry = if n % 2 == 0 {
            log.http.create_entry(&submission).await?
        } else {
            log.grpc.create_entry_for(&submission).await?
        };
        verify_entry(&log.trust, &submission, &entry)?;
        logged.push(submission);
    }
    let before = audit(&log.http, &log.trust).await?;
    ensure!(before.checkpoint.size == 5);
    let tile_path = "tile/0/000.p/5";
    let bundle_path = "tile/entries/000.p/5";
    let tile_before = log.http.tile(tile_path).await?;
    let bundle_before = log.http.tile(bundle_path).await?;
    log.stop().await?;

    let frozen = TestLog::start(&config.clone().with_args(["--read-only"])).await?;

    // Writes: a new entry and a duplicate are both refused as frozen, on both transports.
    let fresh = key.hashed_rekord(&artifact("read-only", 99)?)?;
    for (what, submission) in [("new entry", &fresh), ("duplicate", &logged[0])] {
        let reply = frozen
            .http
            .post_entry(submission.request_json_text())
            .await?
            .expect_status(405)
            .with_context(|| format!("HTTP {what}"))?;
        ensure!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "405 content-type {:?}",
            reply.header("content-type")
        );
        ensure!(
            reply.text().trim_end() == FROZEN,
            "405 body {:?}",
            reply.text()
        );
        let status = frozen
            .grpc
            .create_entry(submission.request_proto()?)
            .await
            .err()
            .with_context(|| format!("gRPC {what} accepted by a frozen log"))?;
        ensure!(
            status.code() == tonic::Code::Unimplemented,
            "gRPC {what}: {status:?}"
        );
    }

    // Reads: the same checkpoint and the same objects, over HTTP and gRPC.
    let after = audit(&frozen.http, &frozen.trust).await?;
    ensure!(
        after.checkpoint.note == before.checkpoint.note,
        "the frozen log serves another checkpoint"
    );
    ensure!(
        after.entries == before.entries,
        "the frozen log serves other entries"
    );
    ensure!(
        frozen.http.tile(tile_path).await? == tile_before,
        "{tile_path} changed"
    );
    ensure!(
        frozen.http.tile(bundle_path).await? == bundle_before,
        "{bundle_path} changed"
    );

    let mut rekor = frozen.grpc.rekor();
    let checkpoint = rekor
        .get_checkpoint(pbjson_types::Empty {})
        .await?
        .into_inner();
    ensure!(
        checkpoint.data == before.checkpoint.note,
        "gRPC GetCheckpoint differs"
    );
    ensure!(
        checkpoint.content_type.starts_with("text/plain"),
        "{}",
        checkpoint.content_type
    );
    let tile = rekor
        .get_tile(TileRequest {
            l: 0,
            n: "000.p/5".into(),
        })
        .await?
        .into_inner();
    ensure!(tile.data == tile_before, "gRPC GetTile differs");
    ensure!(
        tile.content_type == "application/octet-stream",
        "{}",
        tile.content_type
    );
    let bundle = rekor
        .get_entry_bundle(EntryBundleRequest {
            n: "000.p/5".into(),
        })
        .await?
        .into_inner();
    ensure!(bundle.data == bundle_before, "gRPC GetEntryBundle differs");

    ensure!(
        frozen.http.get("/healthz").await?.status == 200,
        "a frozen log should still report healthy"
    );
    frozen.stop().await.context("stopping the frozen log")?;
    Ok(())
}
