//! The AWS backend against real peers on 127.0.0.1: moto's S3 server and a private MariaDB.
#![cfg(all(feature = "aws", feature = "testing"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a failed assertion is the output"
)]

use std::collections::BTreeMap;
use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rekor_emulators::aws::{
    MOTO_ACCESS_KEY_ID, MOTO_REGION, MOTO_SECRET_ACCESS_KEY, MariaDb, MotoS3,
};
use rekor_storage::aws::{MysqlConfig, MysqlCoordinator, MysqlTls, S3Config, S3Storage};
use rekor_storage::conformance::{
    coordinator_suite, publication_claim_suite, search_index_suite, storage_suite,
};
use rekor_storage::{Coordinator, Error, Object, SearchIndex, SequenceLeaf, Storage};

fn s3_config(moto: &MotoS3, bucket: &str) -> S3Config {
    S3Config {
        region: Some(MOTO_REGION.to_owned()),
        endpoint: Some(moto.endpoint()),
        access_key_id: Some(MOTO_ACCESS_KEY_ID.to_owned()),
        secret_access_key: Some(MOTO_SECRET_ACCESS_KEY.to_owned()),
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(1),
        max_retries: 1,
        ..S3Config::new(bucket)
    }
}

fn error_text(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_storage_against_moto() {
    let moto = match MotoS3::start() {
        Ok(moto) => moto,
        Err(e) if rekor_emulators::skip_or_fail(&e) => return,
        Err(e) => panic!("{e}"),
    };
    for bucket in ["conformance", "shared"] {
        moto.create_bucket(bucket).unwrap();
    }

    storage_suite(&S3Storage::connect(s3_config(&moto, "conformance")).unwrap()).await;

    // Two instances (two frontends) on one bucket: create-only across them.
    let a = Arc::new(S3Storage::connect(s3_config(&moto, "shared")).unwrap());
    let b = Arc::new(S3Storage::connect(s3_config(&moto, "shared")).unwrap());
    let tile = Object::new("tile/0/000", vec![5u8; 32 * 256]);
    a.write_objects(vec![tile.clone()]).await.unwrap();
    b.write_objects(vec![tile.clone()]).await.unwrap();
    let conflicting = Object::new("tile/0/000", vec![6u8; 32 * 256]);
    let err = b.write_objects(vec![conflicting]).await.unwrap_err();
    assert!(
        matches!(&err, Error::AlreadyExists { path } if path == "tile/0/000"),
        "{err:?}"
    );
    assert_eq!(a.read("tile/0/000").await.unwrap(), tile.data);

    // Both frontends integrating the same batch at once: identical objects, both succeed.
    let batch: Vec<Object> = (0..40u8)
        .map(|i| Object::new(format!("tile/entries/x001/{i:03}"), vec![i; 100]))
        .collect();
    let (ra, rb) = tokio::join!(
        a.write_objects(batch.clone()),
        b.write_objects(batch.clone())
    );
    ra.unwrap();
    rb.unwrap();
    for object in &batch {
        assert_eq!(b.read(&object.path).await.unwrap(), object.data);
    }

    // The checkpoint CAS across instances: the loser of a race gets Precondition.
    let v1 = a
        .write_checkpoint(Bytes::from_static(b"size 1\n"), None)
        .await
        .unwrap();
    let read = b.read_checkpoint().await.unwrap().unwrap();
    assert_eq!(read.version, v1);
    let (wa, wb) = tokio::join!(
        a.write_checkpoint(Bytes::from_static(b"size 2 from a\n"), Some(&v1)),
        b.write_checkpoint(Bytes::from_static(b"size 2 from b\n"), Some(&v1)),
    );
    assert!(
        wa.is_ok() != wb.is_ok(),
        "exactly one CAS must win: {wa:?} {wb:?}"
    );
    let loser = if wa.is_ok() { wb } else { wa };
    assert!(
        matches!(loser, Err(Error::Precondition { .. })),
        "{loser:?}"
    );

    // moto returns the headers a CDN needs, read over a plain socket (no S3 client involved).
    let response = moto.http_get("/shared/tile/0/000").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        response.header("cache-control"),
        Some("max-age=604800,immutable")
    );
    assert_eq!(response.body, tile.data);
    let response = moto.http_get("/shared/checkpoint").unwrap();
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(response.header("cache-control"), Some("no-cache"));

    // A stopped peer is Unavailable, within the configured bounds.
    drop(moto);
    let started = Instant::now();
    let err = a.read("tile/0/000").await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let err = a
        .write_objects(vec![Object::new("tile/0/001", vec![1u8])])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let err = a.read_checkpoint().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

fn leaf(label: &str) -> SequenceLeaf {
    let mut dedup_key = [0u8; 32];
    for (k, b) in dedup_key.iter_mut().zip(label.bytes()) {
        *k = b;
    }
    assert!(label.len() <= 32);
    SequenceLeaf {
        dedup_key,
        data: Bytes::from(format!("leaf bytes of {label}")),
    }
}

async fn coordinator(maria: &MariaDb, database: &str) -> MysqlCoordinator {
    let mut config = MysqlConfig::from_dsn(&maria.dsn(database)).unwrap();
    config.pool_max = 4;
    config.timeout = Duration::from_secs(5);
    MysqlCoordinator::connect(&config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_coordinator_against_mariadb() {
    let maria = match MariaDb::start() {
        Ok(maria) => maria,
        Err(e) if rekor_emulators::skip_or_fail(&e) => return,
        Err(e) => panic!("{e}"),
    };
    for db in [
        "conformance",
        "concurrent",
        "dedup",
        "url",
        "claims",
        "claims_race",
        "claims_old",
        "search",
    ] {
        maria.create_database(db).unwrap();
    }

    coordinator_suite(&coordinator(&maria, "conformance").await).await;
    // Reconnecting to existing tables keeps the state (the schema step is idempotent).
    let again = coordinator(&maria, "conformance").await;
    assert_eq!(again.state().await.unwrap().integrated, 3);
    assert_eq!(again.state().await.unwrap().sequenced, 3);
    // The suite froze the log: every connection sees it, and none can sequence.
    assert_eq!(again.frozen().await.unwrap(), Some(3));
    assert!(matches!(
        again
            .sequence(&[rekor_storage::SequenceLeaf {
                dedup_key: [7; 32],
                data: bytes::Bytes::from_static(b"late"),
            }])
            .await,
        Err(rekor_storage::Error::Frozen { size: 3 })
    ));

    // The mysql:// form connects too.
    let url = format!(
        "mysql://{}:{}@127.0.0.1:{}/url?ignored=1",
        rekor_emulators::aws::MARIADB_USER,
        maria.password(),
        maria.port()
    );
    let by_url = MysqlCoordinator::connect(&MysqlConfig::from_dsn(&url).unwrap())
        .await
        .unwrap();
    assert_eq!(by_url.sequence(&[leaf("u")]).await.unwrap(), 0);

    // Wrong credentials are a configuration error, not a transient one.
    let mut bad = MysqlConfig::from_dsn(&maria.dsn("url")).unwrap();
    bad.password = Some("wrong".to_owned());
    let err = MysqlCoordinator::connect(&bad).await.unwrap_err();
    assert!(matches!(err, Error::Other { .. }), "{err:?}");

    // The search index, on two frontends' pools, then reopened.
    let frontend_a = coordinator(&maria, "search")
        .await
        .search_index()
        .await
        .unwrap();
    let frontend_b = coordinator(&maria, "search")
        .await
        .search_index()
        .await
        .unwrap();
    search_index_suite(&frontend_a, &frontend_b).await;
    let reopened = coordinator(&maria, "search")
        .await
        .search_index()
        .await
        .unwrap();
    assert_eq!(reopened.indexed_size().await.unwrap(), (1 << 40) + 6);

    concurrent_sequencing(&maria).await;
    dedup_first_index_wins(&maria).await;
    publication_claims(&maria).await;

    // A stopped server is Unavailable, bounded by the configured timeout.
    let survivor = coordinator(&maria, "dedup").await;
    drop(maria);
    let started = Instant::now();
    let err = survivor.state().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let err = survivor.sequence(&[leaf("after stop")]).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let err = survivor.lookup(&[[1; 32]]).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let err = survivor
        .claim_publication(Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// Two coordinators (separate pools, as two frontends) × 4 tasks × 20 batches on one database.
async fn concurrent_sequencing(maria: &MariaDb) {
    const INSTANCES: usize = 2;
    const TASKS: usize = 4;
    const BATCHES: usize = 20;
    let instances: Vec<Arc<MysqlCoordinator>> =
        futures_join_all((0..INSTANCES).map(|_| coordinator(maria, "concurrent")))
            .await
            .into_iter()
            .map(Arc::new)
            .collect();

    let mut handles = Vec::new();
    for (i, instance) in instances.iter().enumerate() {
        for t in 0..TASKS {
            let instance = Arc::clone(instance);
            handles.push(tokio::spawn(async move {
                let mut given = Vec::new();
                for b in 0..BATCHES {
                    let size = 1 + (i + t + b) % 4;
                    let leaves: Vec<SequenceLeaf> = (0..size)
                        .map(|l| leaf(&format!("i{i}t{t}b{b}l{l}")))
                        .collect();
                    let first = instance.sequence(&leaves).await.unwrap();
                    given.push((first, leaves));
                }
                given
            }));
        }
    }
    let mut by_index: BTreeMap<u64, SequenceLeaf> = BTreeMap::new();
    let mut batches = Vec::new();
    for handle in handles {
        for (first, leaves) in handle.await.unwrap() {
            for (index, leaf) in (first..).zip(&leaves) {
                assert!(
                    by_index.insert(index, leaf.clone()).is_none(),
                    "index {index} given twice"
                );
            }
            batches.push((first, leaves));
        }
    }
    let total = u64::try_from(by_index.len()).unwrap();
    assert_eq!(
        by_index.keys().copied().collect::<Vec<_>>(),
        (0..total).collect::<Vec<_>>(),
        "indices must be contiguous from 0"
    );
    let state = instances[0].state().await.unwrap();
    assert_eq!((state.integrated, state.sequenced), (0, total));

    // Each task's leaves are at the indices it was given, read from either instance.
    for (n, (first, leaves)) in batches.iter().enumerate() {
        let reader = &instances[n % INSTANCES];
        let end = first + u64::try_from(leaves.len()).unwrap();
        let read = reader.read_sequenced(*first, end).await.unwrap();
        assert_eq!(
            read,
            leaves.iter().map(|l| l.data.clone()).collect::<Vec<_>>()
        );
        let keys: Vec<[u8; 32]> = leaves.iter().map(|l| l.dedup_key).collect();
        let found = reader.lookup(&keys).await.unwrap();
        assert_eq!(found, (*first..end).map(Some).collect::<Vec<_>>());
    }
    // A range spanning many batches reads back in index order.
    let all = instances[1].read_sequenced(0, total).await.unwrap();
    assert_eq!(
        all,
        by_index
            .values()
            .map(|l| l.data.clone())
            .collect::<Vec<_>>()
    );

    // mark_integrated is a CAS across instances: exactly one of two racers wins.
    let half = total / 2;
    let (ra, rb) = tokio::join!(
        instances[0].mark_integrated(0, half),
        instances[1].mark_integrated(0, half),
    );
    assert!(
        ra.is_ok() != rb.is_ok(),
        "exactly one must win: {ra:?} {rb:?}"
    );
    let loser = if ra.is_ok() { rb } else { ra };
    assert!(
        matches!(loser, Err(Error::Precondition { .. })),
        "{loser:?}"
    );
    let state = instances[1].state().await.unwrap();
    assert_eq!((state.integrated, state.sequenced), (half, total));
    assert!(matches!(
        instances[0].read_sequenced(half - 1, half + 1).await,
        Err(Error::NotFound { .. })
    ));
    // Leaves above the integrated size stay readable, even inside a batch that straddles it.
    assert_eq!(
        instances[0].read_sequenced(half, total).await.unwrap(),
        by_index
            .range(half..)
            .map(|(_, l)| l.data.clone())
            .collect::<Vec<_>>()
    );
    assert!(matches!(
        instances[0].read_sequenced(total - 1, total + 1).await,
        Err(Error::NotFound { .. })
    ));
    instances[0].mark_integrated(half, total).await.unwrap();
    assert!(matches!(
        instances[1].read_sequenced(total - 1, total).await,
        Err(Error::NotFound { .. })
    ));
}

/// Publication claims across two coordinators (separate pools, as two frontends).
async fn publication_claims(maria: &MariaDb) {
    const TASKS: usize = 8;
    let first = coordinator(maria, "claims").await;
    let second = coordinator(maria, "claims").await;
    publication_claim_suite(&first, &second).await;
    // An interval too long to express in DATETIME arithmetic is refused, not an error.
    assert!(!first.claim_publication(Duration::MAX).await.unwrap());

    // Eight claims at once, four from each pool: exactly one wins.
    let instances = [
        Arc::new(coordinator(maria, "claims_race").await),
        Arc::new(coordinator(maria, "claims_race").await),
    ];
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let instance = Arc::clone(&instances[task % instances.len()]);
        let start = Arc::clone(&start);
        handles.push(tokio::spawn(async move {
            start.wait().await;
            instance.claim_publication(Duration::from_secs(5)).await
        }));
    }
    let mut granted = 0;
    for handle in handles {
        if handle.await.unwrap().unwrap() {
            granted += 1;
        }
    }
    assert_eq!(granted, 1, "exactly one concurrent claim must win");

    // A coordination table created before publication claims gets its column on connect.
    maria
        .run_sql(
            "CREATE TABLE claims_old.rekor_coordination (\
             id TINYINT UNSIGNED NOT NULL PRIMARY KEY, next_index BIGINT UNSIGNED NOT NULL, \
             integrated BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB; \
             INSERT INTO claims_old.rekor_coordination VALUES (0, 7, 5)",
        )
        .unwrap();
    let (old_first, old_second) = tokio::join!(
        coordinator(maria, "claims_old"),
        coordinator(maria, "claims_old")
    );
    let state = old_first.state().await.unwrap();
    assert_eq!((state.integrated, state.sequenced), (5, 7));
    assert!(
        old_first
            .claim_publication(Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(
        !old_second
            .claim_publication(Duration::from_secs(60))
            .await
            .unwrap()
    );
}

async fn futures_join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    for f in futures {
        out.push(f.await);
    }
    out
}

async fn dedup_first_index_wins(maria: &MariaDb) {
    let c = coordinator(maria, "dedup").await;
    let a = leaf("a");
    let b = leaf("b");
    assert_eq!(c.sequence(&[a.clone(), b.clone()]).await.unwrap(), 0);
    // The same key again (as a resubmission racing the dedup check would): a new index, but the
    // dedup index keeps the first.
    assert_eq!(c.sequence(&[leaf("c"), a.clone()]).await.unwrap(), 2);
    // And twice within one batch: the lower index wins.
    assert_eq!(c.sequence(&[leaf("d"), leaf("d")]).await.unwrap(), 4);
    assert_eq!(
        c.lookup(&[
            a.dedup_key,
            b.dedup_key,
            leaf("c").dedup_key,
            leaf("d").dedup_key,
            [0xff; 32]
        ])
        .await
        .unwrap(),
        vec![Some(0), Some(1), Some(2), Some(4), None]
    );
    // Both copies of "a" are sequenced (sequence is not idempotent).
    assert_eq!(
        c.read_sequenced(0, 6).await.unwrap()[3],
        a.data,
        "the resubmitted leaf keeps its own index"
    );
}

#[test]
fn dsn_forms() {
    let go = MysqlConfig::from_dsn(
        "rekor:s3cret@tcp(db.internal:3307)/tessera?parseTime=true&tls=skip-verify",
    )
    .unwrap();
    assert_eq!(go.user.as_deref(), Some("rekor"));
    assert_eq!(go.password.as_deref(), Some("s3cret"));
    assert_eq!((go.host.as_str(), go.port), ("db.internal", 3307));
    assert_eq!(go.database, "tessera");
    assert_eq!(go.tls, MysqlTls::SkipVerify);
    assert!(!format!("{go:?}").contains("s3cret"), "Debug must redact");

    let no_password = MysqlConfig::from_dsn("root@tcp(127.0.0.1)/log").unwrap();
    assert_eq!(no_password.user.as_deref(), Some("root"));
    assert_eq!(no_password.password, None);
    assert_eq!(no_password.port, 3306);
    assert_eq!(no_password.tls, MysqlTls::Disabled);

    let bare = MysqlConfig::from_dsn("/log").unwrap();
    assert_eq!(
        (bare.host.as_str(), bare.port, bare.user.clone()),
        ("127.0.0.1", 3306, None)
    );

    let socket = MysqlConfig::from_dsn("u:p@unix(/run/mysqld/mysqld.sock)/log").unwrap();
    assert_eq!(socket.socket.as_deref(), Some("/run/mysqld/mysqld.sock"));

    let v6 = MysqlConfig::from_dsn("u:p@tcp([::1]:3308)/log").unwrap();
    assert_eq!((v6.host.as_str(), v6.port), ("::1", 3308));

    let url = MysqlConfig::from_dsn("mysql://user:p%40ss@db:3310/log?tls=true").unwrap();
    assert_eq!(url.user.as_deref(), Some("user"));
    assert_eq!(url.password.as_deref(), Some("p@ss"));
    assert_eq!((url.host.as_str(), url.port), ("db", 3310));
    assert_eq!(url.tls, MysqlTls::Verified);

    for (bad, why) in [
        ("", "empty"),
        ("user:pw@tcp(host:3306)", "missing /dbname"),
        ("user:pw@tcp(host:3306)/", "no database name"),
        ("user:pw@tcp(host:3306/db", "unclosed ("),
        ("user:pw@udp(host:3306)/db", "unknown network"),
        ("user:pw@tcp(host:notaport)/db", "bad port"),
        ("user:pw@tcp(host:0)/db", "bad port"),
        (":pw@tcp(host)/db", "empty user"),
        ("u@tcp(h)/db?tls=maybe", "tls="),
        ("u@tcp(h)/db?novalue", "has no value"),
        ("postgres://u@h/db", "only the mysql:// URL scheme"),
        ("mysql://u@h:99999/db", "bad port"),
        ("mysql://u@/db", "no host"),
        ("mysql://u:%zz@h/db", "percent-encoding"),
    ] {
        let err = MysqlConfig::from_dsn(bad).expect_err(bad);
        let text = error_text(&err);
        assert!(matches!(err, Error::Other { .. }), "{bad}: {err:?}");
        assert!(
            text.contains("invalid MySQL DSN") && text.contains(why),
            "{bad}: {text}"
        );
        assert!(
            !text.contains("pw"),
            "{bad}: the error quotes a password: {text}"
        );
    }
}
