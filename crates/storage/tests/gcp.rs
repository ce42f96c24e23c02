//! The GCP backend against real emulators on 127.0.0.1: fake-gcs-server for [`GcsStorage`] and the
//! Cloud Spanner emulator for [`SpannerCoordinator`]. Each test starts its own emulators; a missing
//! emulator skips the test (or fails it under `REKOR_REQUIRE_EMULATORS=1`).
#![cfg(feature = "gcp")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "tests"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rekor_emulators::gcp::{FakeGcs, SpannerEmulator};
use rekor_emulators::skip_or_fail;
use rekor_storage::conformance::{
    coordinator_suite, publication_claim_suite, search_index_suite, storage_suite,
};
use rekor_storage::gcp::{GcsConfig, GcsStorage, SpannerConfig, SpannerCoordinator};
use rekor_storage::{
    CHECKPOINT_PATH, Coordinator, Error, Object, SearchIndex, SequenceLeaf, SequenceState, Storage,
};

const BUCKET: &str = "rekor-test";

fn start_gcs() -> Option<FakeGcs> {
    match FakeGcs::start() {
        Ok(gcs) => {
            gcs.create_bucket(BUCKET).unwrap();
            Some(gcs)
        }
        Err(e) => {
            assert!(skip_or_fail(&e));
            None
        }
    }
}

async fn gcs_storage(gcs: &FakeGcs, timeout: Duration) -> GcsStorage {
    let config = GcsConfig {
        request_timeout: timeout,
        ..GcsConfig::new(BUCKET).with_endpoint(gcs.endpoint())
    };
    GcsStorage::connect(config).await.unwrap()
}

/// Starts the Spanner emulator with one empty database; returns it and the database name.
fn start_spanner() -> Option<(SpannerEmulator, String)> {
    match SpannerEmulator::start() {
        Ok(spanner) => {
            let database = spanner
                .create_database("test-project", "test-instance", "rekor")
                .unwrap();
            Some((spanner, database))
        }
        Err(e) => {
            assert!(skip_or_fail(&e));
            None
        }
    }
}

async fn coordinator(
    spanner: &SpannerEmulator,
    database: &str,
    timeout: Duration,
) -> SpannerCoordinator {
    let config = SpannerConfig {
        timeout,
        ..SpannerConfig::new(database).with_emulator(spanner.grpc_address())
    };
    SpannerCoordinator::connect(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_passes_the_storage_conformance_suite() {
    let Some(gcs) = start_gcs() else { return };
    let storage = gcs_storage(&gcs, Duration::from_secs(10)).await;
    storage_suite(&storage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_writes_are_create_only_across_instances_and_carry_read_api_headers() {
    let Some(gcs) = start_gcs() else { return };
    let first = gcs_storage(&gcs, Duration::from_secs(10)).await;
    let second = gcs_storage(&gcs, Duration::from_secs(10)).await;

    // Many objects in one call (more than the upload concurrency), from one instance.
    let objects: Vec<Object> = (0u8..40)
        .map(|n| {
            Object::new(
                format!("tile/0/{n:03}"),
                vec![n; 32 * usize::from(n % 8 + 1)],
            )
        })
        .collect();
    first.write_objects(objects.clone()).await.unwrap();
    // The other instance writing the same bytes succeeds; different bytes are refused.
    second.write_objects(objects.clone()).await.unwrap();
    let mut conflicting = objects.clone();
    conflicting[17] = Object::new(objects[17].path.clone(), vec![0xff; 32]);
    match second.write_objects(conflicting).await {
        Err(Error::AlreadyExists { path }) => assert_eq!(path, objects[17].path),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    for object in &objects {
        assert_eq!(second.read(&object.path).await.unwrap(), object.data);
    }

    // The checkpoint swap is visible across instances.
    let version = first
        .write_checkpoint(Bytes::from_static(b"size 1\n"), None)
        .await
        .unwrap();
    assert!(matches!(
        second
            .write_checkpoint(Bytes::from_static(b"other\n"), None)
            .await,
        Err(Error::Precondition { .. })
    ));
    let read = second.read_checkpoint().await.unwrap().unwrap();
    assert_eq!(
        (read.data.as_ref(), &read.version),
        (&b"size 1\n"[..], &version)
    );
    second
        .write_checkpoint(Bytes::from_static(b"size 2\n"), Some(&version))
        .await
        .unwrap();
    assert!(matches!(
        first
            .write_checkpoint(Bytes::from_static(b"stale\n"), Some(&version))
            .await,
        Err(Error::Precondition { .. })
    ));

    // What the bucket serves, read through the emulator's own JSON API rather than our client.
    let tile = gcs
        .object_metadata(BUCKET, &objects[3].path)
        .unwrap()
        .expect("tile metadata");
    assert!(
        tile.contains(r#""cacheControl":"max-age=604800,immutable""#),
        "{tile}"
    );
    let checkpoint = gcs
        .object_metadata(BUCKET, CHECKPOINT_PATH)
        .unwrap()
        .expect("checkpoint metadata");
    assert!(
        checkpoint.contains(r#""cacheControl":"no-cache""#),
        "{checkpoint}"
    );
    assert!(gcs.object_metadata(BUCKET, "tile/0/999").unwrap().is_none());
}

/// Serves `responses.len()` HTTP requests on a loopback port, one connection each, answering with
/// the given GCS object JSON; returns the port and a handle yielding the raw requests.
fn capture_requests(responses: Vec<&'static str>) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut requests = Vec::new();
        for body in responses {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut raw = Vec::new();
            let mut buffer = [0u8; 4096];
            let complete = |raw: &[u8]| {
                let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                    return false;
                };
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                raw.len() >= end + 4 + length
            };
            while !complete(&raw) {
                let n = stream.read(&mut buffer).unwrap();
                assert!(n > 0, "request cut short");
                raw.extend_from_slice(&buffer[..n]);
            }
            requests.push(String::from_utf8_lossy(&raw).into_owned());
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).unwrap();
        }
        requests
    });
    (port, handle)
}

/// fake-gcs-server drops the `contentType` of multipart uploads, so check what the client sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_uploads_carry_content_type_cache_control_and_preconditions() {
    let (port, server) = capture_requests(vec![
        r#"{"kind":"storage#object","name":"checkpoint","id":"rekor-test/checkpoint","bucket":"rekor-test","size":"3","crc32c":"AAAAAA==","md5Hash":"AAAAAAAAAAAAAAAAAAAAAA==","etag":"x","storageClass":"STANDARD","timeCreated":"2026-01-01T00:00:00Z","updated":"2026-01-01T00:00:00Z","generation":"41","selfLink":"http://127.0.0.1/x","mediaLink":"http://127.0.0.1/y","metageneration":"1"}"#,
        r#"{"kind":"storage#object","name":"tile/entries/000","id":"rekor-test/tile/entries/000","bucket":"rekor-test","size":"2","crc32c":"AAAAAA==","md5Hash":"AAAAAAAAAAAAAAAAAAAAAA==","etag":"x","storageClass":"STANDARD","timeCreated":"2026-01-01T00:00:00Z","updated":"2026-01-01T00:00:00Z","generation":"42","selfLink":"http://127.0.0.1/x","mediaLink":"http://127.0.0.1/y","metageneration":"1"}"#,
    ]);
    let config = GcsConfig::new(BUCKET).with_endpoint(format!("http://127.0.0.1:{port}"));
    let storage = GcsStorage::connect(config).await.unwrap();
    let previous = rekor_storage::ObjectVersion("40".to_owned());
    let version = storage
        .write_checkpoint(Bytes::from_static(b"cp\n"), Some(&previous))
        .await
        .unwrap();
    assert_eq!(version.0, "41");
    storage
        .write_objects(vec![Object::new("tile/entries/000", vec![0u8, 0])])
        .await
        .unwrap();
    let requests = server.join().unwrap();
    let (checkpoint, tile) = (&requests[0], &requests[1]);
    assert!(checkpoint.contains("ifGenerationMatch=40"), "{checkpoint}");
    assert!(
        checkpoint.contains(r#""name":"checkpoint""#),
        "{checkpoint}"
    );
    assert!(
        checkpoint.contains(r#""contentType":"text/plain; charset=utf-8""#),
        "{checkpoint}"
    );
    assert!(
        checkpoint.contains(r#""cacheControl":"no-cache""#),
        "{checkpoint}"
    );
    assert!(tile.contains("ifGenerationMatch=0"), "{tile}");
    assert!(tile.contains(r#""name":"tile/entries/000""#), "{tile}");
    assert!(
        tile.contains(r#""contentType":"application/octet-stream""#),
        "{tile}"
    );
    assert!(
        tile.contains(r#""cacheControl":"max-age=604800,immutable""#),
        "{tile}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_errors_when_the_server_is_gone() {
    let Some(gcs) = start_gcs() else { return };
    let storage = gcs_storage(&gcs, Duration::from_secs(3)).await;
    storage
        .write_objects(vec![Object::new("tile/0/000", vec![1u8; 32])])
        .await
        .unwrap();
    drop(gcs);
    let started = Instant::now();
    let read = storage.read("tile/0/000").await;
    assert!(matches!(read, Err(Error::Unavailable { .. })), "{read:?}");
    let write = storage
        .write_objects(vec![Object::new("tile/0/001", vec![2u8; 32])])
        .await;
    assert!(matches!(write, Err(Error::Unavailable { .. })), "{write:?}");
    let checkpoint = storage.read_checkpoint().await;
    assert!(
        matches!(checkpoint, Err(Error::Unavailable { .. })),
        "{checkpoint:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spanner_passes_the_coordinator_conformance_suite() {
    let Some((spanner, database)) = start_spanner() else {
        return;
    };
    let coordinator = coordinator(&spanner, &database, Duration::from_secs(20)).await;
    coordinator_suite(&coordinator).await;
    // Connecting again finds the schema and the coordination row and changes nothing.
    let again = self::coordinator(&spanner, &database, Duration::from_secs(20)).await;
    assert_eq!(
        again.state().await.unwrap(),
        SequenceState {
            integrated: 3,
            sequenced: 3
        }
    );
    // The suite froze the log: every connection sees it, and none can sequence.
    assert_eq!(again.frozen().await.unwrap(), Some(3));
    assert!(matches!(
        again
            .sequence(&[SequenceLeaf {
                dedup_key: [7; 32],
                data: bytes::Bytes::from_static(b"late"),
            }])
            .await,
        Err(rekor_storage::Error::Frozen { size: 3 })
    ));
    // The search index, on both connections (two frontends), then on a third.
    search_index_suite(&coordinator.search_index(), &again.search_index()).await;
    let third = self::coordinator(&spanner, &database, Duration::from_secs(20)).await;
    assert_eq!(
        third.search_index().indexed_size().await.unwrap(),
        (1 << 40) + 6
    );
}

fn leaf(task: usize, batch: usize, n: usize) -> SequenceLeaf {
    let data = format!("task {task} batch {batch} leaf {n}");
    let mut dedup_key = [0u8; 32];
    for (slot, byte) in dedup_key.iter_mut().zip(data.bytes().rev()) {
        *slot = byte;
    }
    SequenceLeaf {
        dedup_key,
        data: Bytes::from(data),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spanner_sequences_concurrently_from_two_clients_without_reusing_an_index() {
    const TASKS_PER_CLIENT: usize = 4;
    const BATCHES: usize = 20;
    let Some((spanner, database)) = start_spanner() else {
        return;
    };
    let clients = [
        Arc::new(coordinator(&spanner, &database, Duration::from_secs(30)).await),
        Arc::new(coordinator(&spanner, &database, Duration::from_secs(30)).await),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for (c, client) in clients.iter().enumerate() {
        for t in 0..TASKS_PER_CLIENT {
            let client = Arc::clone(client);
            let task = c * TASKS_PER_CLIENT + t;
            tasks.spawn(async move {
                let mut assigned = Vec::new();
                for batch in 0..BATCHES {
                    let leaves: Vec<SequenceLeaf> =
                        (0..1 + batch % 3).map(|n| leaf(task, batch, n)).collect();
                    let first = client.sequence(&leaves).await.unwrap();
                    assigned.push((first, leaves));
                }
                assigned
            });
        }
    }
    // index → the leaf the caller was told got it; a second claim of an index fails the test.
    let mut claimed: BTreeMap<u64, SequenceLeaf> = BTreeMap::new();
    while let Some(result) = tasks.join_next().await {
        for (first, leaves) in result.unwrap() {
            for (index, leaf) in (first..).zip(leaves) {
                assert!(
                    claimed.insert(index, leaf).is_none(),
                    "index {index} given twice"
                );
            }
        }
    }
    let total = u64::try_from(claimed.len()).unwrap();
    assert_eq!(
        claimed.keys().copied().collect::<Vec<_>>(),
        (0..total).collect::<Vec<_>>()
    );
    for client in &clients {
        assert_eq!(
            client.state().await.unwrap(),
            SequenceState {
                integrated: 0,
                sequenced: total
            }
        );
    }
    let stored = clients[1].read_sequenced(0, total).await.unwrap();
    let expected: Vec<Bytes> = claimed.values().map(|l| l.data.clone()).collect();
    assert_eq!(stored, expected);
    let keys: Vec<[u8; 32]> = claimed.values().map(|l| l.dedup_key).collect();
    let indices = clients[0].lookup(&keys).await.unwrap();
    assert_eq!(indices, (0..total).map(Some).collect::<Vec<_>>());

    // Both clients race to mark the same range integrated: exactly one wins.
    let middle = total / 2;
    let (a, b) = tokio::join!(
        clients[0].mark_integrated(0, middle),
        clients[1].mark_integrated(0, middle)
    );
    let outcomes = [a, b];
    assert_eq!(
        outcomes.iter().filter(|r| r.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|r| matches!(r, Err(Error::Precondition { .. })))
    );
    assert_eq!(clients[0].state().await.unwrap().integrated, middle);
    assert!(matches!(
        clients[0].read_sequenced(middle - 1, total).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        clients[0].read_sequenced(middle, total).await.unwrap(),
        expected[usize::try_from(middle).unwrap()..]
    );
    assert!(matches!(
        clients[0].read_sequenced(middle, total + 1).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spanner_dedup_keeps_the_first_index() {
    let Some((spanner, database)) = start_spanner() else {
        return;
    };
    let coordinator = coordinator(&spanner, &database, Duration::from_secs(20)).await;
    let a = leaf(0, 0, 0);
    let b = leaf(0, 0, 1);
    let c = leaf(0, 0, 2);
    assert_eq!(
        coordinator.sequence(&[a.clone(), b.clone()]).await.unwrap(),
        0
    );
    // The same key sequenced again later, and twice within one batch.
    assert_eq!(
        coordinator
            .sequence(&[c.clone(), a.clone(), c.clone()])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        coordinator
            .lookup(&[a.dedup_key, b.dedup_key, c.dedup_key])
            .await
            .unwrap(),
        vec![Some(0), Some(1), Some(2)]
    );
    // The duplicates still got their own indices and bytes.
    assert_eq!(
        coordinator.read_sequenced(0, 5).await.unwrap(),
        vec![a.data, b.data, c.data.clone(), leaf(0, 0, 0).data, c.data]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spanner_errors_when_the_emulator_is_gone() {
    let Some((spanner, database)) = start_spanner() else {
        return;
    };
    let coordinator = coordinator(&spanner, &database, Duration::from_secs(4)).await;
    coordinator.sequence(&[leaf(0, 0, 0)]).await.unwrap();
    drop(spanner);
    let started = Instant::now();
    let state = coordinator.state().await;
    assert!(matches!(state, Err(Error::Unavailable { .. })), "{state:?}");
    let sequence = coordinator.sequence(&[leaf(0, 0, 1)]).await;
    assert!(
        matches!(sequence, Err(Error::Unavailable { .. })),
        "{sequence:?}"
    );
    let lookup = coordinator.lookup(&[[0u8; 32]]).await;
    assert!(
        matches!(lookup, Err(Error::Unavailable { .. })),
        "{lookup:?}"
    );
    let claim = coordinator.claim_publication(Duration::from_secs(1)).await;
    assert!(matches!(claim, Err(Error::Unavailable { .. })), "{claim:?}");
    assert!(started.elapsed() < Duration::from_secs(25));
    eprintln!(
        "errors after the emulator stopped took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spanner_publication_claims_are_shared_by_two_clients() {
    let Some((spanner, database)) = start_spanner() else {
        return;
    };
    let first = coordinator(&spanner, &database, Duration::from_secs(20)).await;
    let second = coordinator(&spanner, &database, Duration::from_secs(20)).await;
    publication_claim_suite(&first, &second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spanner_grants_one_of_eight_concurrent_publication_claims() {
    const TASKS: usize = 8;
    let Some((spanner, database)) = start_spanner() else {
        return;
    };
    let clients = [
        Arc::new(coordinator(&spanner, &database, Duration::from_secs(30)).await),
        Arc::new(coordinator(&spanner, &database, Duration::from_secs(30)).await),
    ];
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let client = Arc::clone(&clients[task % clients.len()]);
        let start = Arc::clone(&start);
        tasks.spawn(async move {
            start.wait().await;
            client.claim_publication(Duration::from_secs(5)).await
        });
    }
    let mut granted = 0;
    while let Some(result) = tasks.join_next().await {
        if result.unwrap().unwrap() {
            granted += 1;
        }
    }
    assert_eq!(granted, 1, "exactly one concurrent claim must win");
}

/// A coordination table created before publication claims gets its column on connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spanner_connect_adds_the_claim_column_to_an_older_table() {
    use gcloud_gax::conn::Environment;
    use gcloud_googleapis::spanner::admin::database::v1::{
        GetDatabaseDdlRequest, UpdateDatabaseDdlRequest,
    };
    use gcloud_spanner::admin::AdminClientConfig;
    use gcloud_spanner::admin::client::Client as AdminClient;

    let Some((spanner, database)) = start_spanner() else {
        return;
    };
    let admin = AdminClient::new(AdminClientConfig {
        environment: Environment::Emulator(spanner.grpc_address()),
        ..AdminClientConfig::default()
    })
    .await
    .unwrap();
    let ddl = |statements: Vec<String>| UpdateDatabaseDdlRequest {
        database: database.clone(),
        statements,
        ..UpdateDatabaseDdlRequest::default()
    };
    admin
        .database()
        .update_database_ddl(
            ddl(vec![
                "CREATE TABLE RekorCoordination (Id INT64 NOT NULL, NextIndex INT64 NOT NULL, \
                 IntegratedSize INT64 NOT NULL) PRIMARY KEY (Id)"
                    .to_owned(),
            ]),
            None,
        )
        .await
        .unwrap()
        .wait(None)
        .await
        .unwrap();

    let first = coordinator(&spanner, &database, Duration::from_secs(20)).await;
    let schema = admin
        .database()
        .get_database_ddl(
            GetDatabaseDdlRequest {
                database: database.clone(),
            },
            None,
        )
        .await
        .unwrap()
        .into_inner()
        .statements;
    let table = schema
        .iter()
        .find(|s| s.starts_with("CREATE TABLE RekorCoordination"))
        .unwrap();
    assert!(table.contains("PublishedAt TIMESTAMP"), "{table}");
    assert!(table.contains("allow_commit_timestamp = true"), "{table}");
    let second = coordinator(&spanner, &database, Duration::from_secs(20)).await;
    assert!(
        first
            .claim_publication(Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(
        !second
            .claim_publication(Duration::from_secs(60))
            .await
            .unwrap()
    );
}
