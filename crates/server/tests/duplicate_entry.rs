//! `--duplicate-returns-entry` when the resubmission arrives before the first submission's
//! checkpoint is published: the dedup index already knows the entry's index, and the
//! resubmission waits for the checkpoint (held here by the storage fault wrapper), then gets the
//! entry as a fresh submission does; or, if the checkpoint does not come within
//! `--server-timeout`, the same retryable answer a fresh entry gets. Each answer is checked with
//! the testkit's independent verifier.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rekor_server::{Backend, RunningServer, ServerArgs};
use rekor_storage::Storage;
use rekor_storage::fault::{FaultHandle, FaultyStorage, Operation};
use rekor_storage::memory::{MemoryCoordinator, MemoryStorage};
use rekor_testkit::{
    ClientKey, GrpcClient, HttpClient, KeyKind, LogEntry, Submission, TrustedLog, verify_entry,
};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

struct Log {
    server: RunningServer,
    faults: FaultHandle,
    http: HttpClient,
    grpc: GrpcClient,
    trust: TrustedLog,
    _key_dir: tempfile::TempDir,
}

async fn start(flags: &[&str]) -> Log {
    let storage = Arc::new(FaultyStorage::new(MemoryStorage::default()));
    let faults = storage.handle();
    let key_dir = tempfile::tempdir().unwrap();
    let mut argv = vec![
        "rekor-server",
        "--hostname",
        "localhost",
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        "--http-metrics-port",
        "0",
    ];
    argv.extend_from_slice(flags);
    let backend = Backend {
        generated_key_dir: Some(key_dir.path().to_path_buf()),
        ..Backend::new(
            storage as Arc<dyn Storage>,
            Arc::new(MemoryCoordinator::default()),
        )
    };
    let server = rekor_server::start(Cli::parse_from(argv).server, backend)
        .await
        .unwrap();
    let trust =
        TrustedLog::from_public_key_der(&server.identity.public_key_der, "localhost").unwrap();
    Log {
        http: HttpClient::new(server.http_address).unwrap(),
        grpc: GrpcClient::connect(server.grpc_address).await.unwrap(),
        server,
        faults,
        trust,
        _key_dir: key_dir,
    }
}

/// Holds checkpoint writes, submits `submission` in the background, and returns once its
/// publication is held: the entry is sequenced and known to dedup, and no checkpoint covers it.
async fn submit_with_checkpoint_held(
    log: &Log,
    submission: &Submission,
) -> tokio::task::JoinHandle<rekor_testkit::Result<rekor_testkit::Reply>> {
    let before = log.faults.calls(Operation::WriteCheckpoint);
    log.faults.hold_calls(Operation::WriteCheckpoint);
    let (http, body) = (log.http.clone(), submission.request_json_text());
    let first = tokio::spawn(async move { http.post_entry(body).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while log.faults.calls(Operation::WriteCheckpoint) == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the entry's checkpoint was never written"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first
}

/// A 201 answer for `submission`: the entry, verified, with `x-log-index` present or not.
fn created(
    log: &Log,
    submission: &Submission,
    reply: &rekor_testkit::Reply,
) -> (LogEntry, Option<String>) {
    assert_eq!(reply.status, 201, "{}", reply.text());
    let entry = LogEntry::from_protojson(&reply.json().unwrap()).unwrap();
    verify_entry(&log.trust, submission, &entry).unwrap();
    (entry, reply.header("x-log-index").map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubmission_before_the_first_checkpoint_waits_for_it_and_gets_the_entry() {
    let log = start(&["--duplicate-returns-entry"]).await;
    let key = ClientKey::generate(KeyKind::EcdsaP256).unwrap();
    let submission = key.hashed_rekord(b"resubmitted while in flight").unwrap();
    let first = submit_with_checkpoint_held(&log, &submission).await;

    let (http, body) = (log.http.clone(), submission.request_json_text());
    let mut again_http = tokio::spawn(async move { http.post_entry(body).await });
    let (grpc, request) = (log.grpc.clone(), submission.request_proto().unwrap());
    let again_grpc = tokio::spawn(async move { grpc.create_entry(request).await });
    // No answer while no checkpoint covers the entry (the time limit is the test's).
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut again_http)
            .await
            .is_err(),
        "a resubmission was answered before its entry's checkpoint was published"
    );
    log.faults.release(Operation::WriteCheckpoint);

    let (entry, header) = created(&log, &submission, &first.await.unwrap().unwrap());
    assert_eq!(header, None, "a fresh entry carries no x-log-index");
    let (again, header) = created(&log, &submission, &again_http.await.unwrap().unwrap());
    assert_eq!(
        header.as_deref(),
        Some(entry.log_index.to_string().as_str())
    );
    assert_eq!(again.log_index, entry.log_index);
    assert_eq!(again.canonicalized_body, entry.canonicalized_body);

    let response = again_grpc.await.unwrap().unwrap();
    let metadata = response.metadata().get("x-log-index").cloned();
    assert_eq!(
        metadata.unwrap().to_str().unwrap(),
        entry.log_index.to_string()
    );
    let again = LogEntry::from_proto(response.into_inner()).unwrap();
    verify_entry(&log.trust, &submission, &again).unwrap();
    assert_eq!(again.log_index, entry.log_index);
    assert_eq!(again.canonicalized_body, entry.canonicalized_body);
    log.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_checkpoint_in_time_a_resubmission_gets_the_retryable_answer() {
    let log = start(&["--duplicate-returns-entry", "--server-timeout", "1s"]).await;
    let key = ClientKey::generate(KeyKind::EcdsaP256).unwrap();
    let submission = key.hashed_rekord(b"resubmitted, checkpoint late").unwrap();
    let first = submit_with_checkpoint_held(&log, &submission).await;

    // What a fresh entry gets when its checkpoint is late: 503 over HTTP, DeadlineExceeded
    // over gRPC.
    log.http
        .post_entry(submission.request_json_text())
        .await
        .unwrap()
        .expect_api_error(503, tonic::Code::DeadlineExceeded)
        .unwrap();
    let status = log
        .grpc
        .create_entry(submission.request_proto().unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status, 503, "the first submission timed out too");

    // Once the checkpoint is out, a retry gets the entry.
    log.faults.release(Operation::WriteCheckpoint);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let reply = loop {
        let reply = log
            .http
            .post_entry(submission.request_json_text())
            .await
            .unwrap();
        if reply.status == 201 || tokio::time::Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (entry, header) = created(&log, &submission, &reply);
    assert_eq!(
        header.as_deref(),
        Some(entry.log_index.to_string().as_str())
    );
    log.server.stop().await;
}
