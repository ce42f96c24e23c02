//! [`S3Storage`]: tiles, entry bundles and the checkpoint in one S3 bucket.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, RetryConfig, UpdateVersion,
};

use super::{AwsError, S3_BACKEND};
use crate::{
    CHECKPOINT_PATH, Error, Object, ObjectKind, ObjectVersion, ReadCache, Result, Storage,
    Versioned, check_object_path, check_partial_path,
};

/// How many times a create-only write is retried when S3 reports a conflict but the object is
/// not readable yet (a concurrent writer's `PUT` still in flight: 409 `ConditionalRequestConflict`).
const CONFLICT_ATTEMPTS: u32 = 5;

/// Where and how to reach the bucket. Fields left `None` come from the standard AWS environment
/// (see the [module docs](super)).
#[derive(Clone)]
pub struct S3Config {
    /// The bucket (`--aws-bucket`).
    pub bucket: String,
    /// The region; `None`: `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// A custom endpoint such as `http://127.0.0.1:9000` (S3-compatible stores, emulators).
    /// With an endpoint, requests use path-style addressing; an `http://` endpoint allows plain HTTP.
    pub endpoint: Option<String>,
    /// The access key ID; `None`: the standard credential chain.
    pub access_key_id: Option<String>,
    /// The secret access key paired with `access_key_id`.
    pub secret_access_key: Option<String>,
    /// A session token for temporary credentials.
    pub session_token: Option<String>,
    /// Bound on each HTTP request, including reading the body. Default 30 s.
    pub request_timeout: Duration,
    /// Bound on opening a connection. Default 5 s.
    pub connect_timeout: Duration,
    /// Retries of a failed request (5xx, 429, connection errors) before giving up. Default 3.
    pub max_retries: usize,
    /// Objects written concurrently by one `write_objects` call. Default 16.
    pub concurrency: usize,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_retries", &self.max_retries)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

fn env(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

impl S3Config {
    /// A configuration for `bucket` with default timeouts and everything else from the environment
    /// when connecting.
    pub fn new(bucket: impl Into<String>) -> S3Config {
        S3Config {
            bucket: bucket.into(),
            region: None,
            endpoint: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_retries: 3,
            concurrency: 16,
        }
    }

    /// [`S3Config::new`] with the region, endpoint and static credentials read from `AWS_REGION`
    /// (`AWS_DEFAULT_REGION`), `AWS_ENDPOINT_URL` (`AWS_ENDPOINT_URL_S3`), `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
    pub fn from_env(bucket: impl Into<String>) -> S3Config {
        S3Config {
            region: env(&["AWS_REGION", "AWS_DEFAULT_REGION"]),
            endpoint: env(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]),
            access_key_id: env(&["AWS_ACCESS_KEY_ID"]),
            secret_access_key: env(&["AWS_SECRET_ACCESS_KEY"]),
            session_token: env(&["AWS_SESSION_TOKEN"]),
            ..S3Config::new(bucket)
        }
    }

    /// The whole-call bound used around each operation: every retry at its request timeout.
    fn call_timeout(&self) -> Duration {
        let attempts = u32::try_from(self.max_retries.saturating_add(1)).unwrap_or(u32::MAX);
        self.request_timeout
            .saturating_add(self.connect_timeout)
            .saturating_mul(attempts)
    }
}

/// The public half of an AWS log: one S3 bucket (see the [module docs](super)).
#[derive(Debug, Clone)]
pub struct S3Storage {
    store: Arc<AmazonS3>,
    config: Arc<S3Config>,
    /// Decoded tiles and entries kept for readers that prove entries (searches): each read
    /// here is a GET.
    read_cache: Arc<ReadCache>,
}

fn object_path(path: &str) -> Result<Path> {
    check_object_path(path)?;
    Ok(Path::parse(path).map_err(AwsError::S3Path)?)
}

fn attributes(path: &str) -> Attributes {
    let kind = ObjectKind::of_path(path);
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, kind.content_type().into());
    attributes.insert(Attribute::CacheControl, kind.cache_control().into());
    attributes
}

impl S3Storage {
    /// Builds the client for `config.bucket`. No request is sent: a wrong bucket or credentials
    /// show on the first call.
    ///
    /// # Errors
    ///
    /// [`Error::Other`] when the configuration is refused (bad endpoint URL, zero concurrency).
    pub fn connect(config: S3Config) -> Result<S3Storage> {
        if config.concurrency == 0 {
            return Err(AwsError::Config {
                backend: S3_BACKEND,
                what: "S3 write concurrency must be at least 1".to_owned(),
            }
            .into());
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(config.request_timeout)
                    .with_connect_timeout(config.connect_timeout),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: config.max_retries,
                retry_timeout: config.call_timeout(),
            });
        let region = config
            .region
            .clone()
            .or_else(|| env(&["AWS_REGION", "AWS_DEFAULT_REGION"]))
            .unwrap_or_else(|| "us-east-1".to_owned());
        builder = builder.with_region(region);
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token);
        }
        let store = builder.build().map_err(AwsError::S3Client)?;
        Ok(S3Storage {
            store: Arc::new(store),
            config: Arc::new(config),
            read_cache: Arc::default(),
        })
    }

    /// The configuration this storage was built from.
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    async fn bounded<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let after = self.config.call_timeout();
        tokio::time::timeout(after, call).await.unwrap_or_else(|_| {
            Err(AwsError::Timeout {
                backend: S3_BACKEND,
                operation,
                after,
            }
            .into())
        })
    }

    async fn get(&self, path: &str, location: &Path) -> Result<(Bytes, Option<String>)> {
        let failed = |source| AwsError::S3 {
            path: path.to_owned(),
            source,
        };
        let result = self.store.get(location).await.map_err(failed)?;
        let etag = result.meta.e_tag.clone();
        let data = result.bytes().await.map_err(failed)?;
        Ok((data, etag))
    }

    /// Writes one immutable object create-only; an identical existing object counts as written.
    async fn create(&self, object: Object, location: Path) -> Result<()> {
        let mut attempt = 0;
        loop {
            let options = PutOptions {
                mode: PutMode::Create,
                attributes: attributes(&object.path),
                ..PutOptions::default()
            };
            let put = self
                .store
                .put_opts(&location, PutPayload::from(object.data.clone()), options)
                .await;
            match put {
                Ok(_) => return Ok(()),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(source) => {
                    return Err(AwsError::S3 {
                        path: object.path,
                        source,
                    }
                    .into());
                }
            }
            match self.get(&object.path, &location).await {
                Ok((existing, _)) if existing == object.data => return Ok(()),
                Ok(_) => return Err(Error::AlreadyExists { path: object.path }),
                // A 409 from a concurrent PUT that has not completed yet: try again shortly.
                Err(Error::NotFound { .. }) if attempt + 1 < CONFLICT_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50) * attempt).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl Storage for S3Storage {
    async fn write_objects(&self, objects: Vec<Object>) -> Result<()> {
        // Refuse the whole call before writing anything if one path is bad.
        let located = objects
            .into_iter()
            .map(|object| object_path(&object.path).map(|location| (object, location)))
            .collect::<Result<Vec<_>>>()?;
        let concurrency = self.config.concurrency;
        self.bounded(
            "write_objects",
            futures::stream::iter(located)
                .map(|(object, location)| self.create(object, location))
                .buffer_unordered(concurrency)
                .try_collect::<()>(),
        )
        .await
    }

    fn read_cache(&self) -> Option<&ReadCache> {
        Some(&self.read_cache)
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        let location = object_path(path)?;
        self.bounded("read", async {
            self.get(path, &location).await.map(|(data, _)| data)
        })
        .await
    }

    async fn read_checkpoint(&self) -> Result<Option<Versioned>> {
        let location = Path::from(CHECKPOINT_PATH);
        self.bounded("read_checkpoint", async {
            match self.get(CHECKPOINT_PATH, &location).await {
                Ok((data, Some(etag))) => Ok(Some(Versioned {
                    data,
                    version: ObjectVersion(etag),
                })),
                Ok((_, None)) => Err(AwsError::MissingEtag {
                    path: CHECKPOINT_PATH.to_owned(),
                }
                .into()),
                Err(Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn write_checkpoint(
        &self,
        data: Bytes,
        expected: Option<&ObjectVersion>,
    ) -> Result<ObjectVersion> {
        let location = Path::from(CHECKPOINT_PATH);
        let mode = match expected {
            None => PutMode::Create,
            Some(version) => PutMode::Update(UpdateVersion {
                e_tag: Some(version.0.clone()),
                version: None,
            }),
        };
        let options = PutOptions {
            mode,
            attributes: attributes(CHECKPOINT_PATH),
            ..PutOptions::default()
        };
        let precondition = || Error::Precondition {
            what: "checkpoint",
            expected: expected.map_or_else(|| "no checkpoint".to_owned(), ToString::to_string),
            found: "a different version".to_owned(),
        };
        self.bounded("write_checkpoint", async {
            match self
                .store
                .put_opts(&location, PutPayload::from(data), options)
                .await
            {
                Ok(result) => result.e_tag.map(ObjectVersion).ok_or_else(|| {
                    AwsError::MissingEtag {
                        path: CHECKPOINT_PATH.to_owned(),
                    }
                    .into()
                }),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => Err(precondition()),
                Err(source) => Err(AwsError::S3 {
                    path: CHECKPOINT_PATH.to_owned(),
                    source,
                }
                .into()),
            }
        })
        .await
    }

    /// One `DELETE` per object, `concurrency` at a time (S3 answers 204 for a missing key too).
    async fn delete_partials(&self, paths: Vec<String>) -> Result<()> {
        let located = paths
            .into_iter()
            .map(|path| {
                check_partial_path(&path)?;
                object_path(&path).map(|location| (path, location))
            })
            .collect::<Result<Vec<_>>>()?;
        let concurrency = self.config.concurrency;
        self.bounded(
            "delete_partials",
            futures::stream::iter(located)
                .map(|(path, location)| async move {
                    match self.store.delete(&location).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                        Err(source) => Err(AwsError::S3 { path, source }.into()),
                    }
                })
                .buffer_unordered(concurrency)
                .try_collect::<()>(),
        )
        .await
    }
}
