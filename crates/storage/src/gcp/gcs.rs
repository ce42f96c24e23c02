//! [`Storage`] on one GCS bucket, through the GCS JSON API.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use gcloud_storage::client::{Client, ClientConfig};
use gcloud_storage::http::objects::Object as GcsObject;
use gcloud_storage::http::objects::delete::DeleteObjectRequest;
use gcloud_storage::http::objects::download::Range;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::upload::{UploadObjectRequest, UploadType};

use super::{DEFAULT_TIMEOUT, GCS, GcpError};
use crate::{
    CHECKPOINT_PATH, Error, Object, ObjectKind, ObjectVersion, ReadCache, Result, Storage,
    Versioned, check_object_path, check_partial_path,
};

/// The standard variable that points GCS clients at an emulator (`host:port` or a URL).
pub const STORAGE_EMULATOR_HOST: &str = "STORAGE_EMULATOR_HOST";

/// How many uploads one [`Storage::write_objects`] call runs at once.
const MAX_CONCURRENT_UPLOADS: usize = 16;

/// How often [`Storage::read_checkpoint`] retries when the checkpoint is replaced between reading its
/// generation and downloading it.
const CHECKPOINT_READ_ATTEMPTS: usize = 5;

/// Where [`GcsStorage`] keeps its objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcsConfig {
    /// The bucket (the `--gcp-bucket` flag); objects live at its root.
    pub bucket: String,
    /// A JSON API endpoint such as `http://127.0.0.1:4443`, used with no credentials (an emulator).
    /// `None` means Google Cloud Storage with Application Default Credentials.
    pub endpoint: Option<String>,
    /// The time limit for each request.
    pub request_timeout: Duration,
}

impl GcsConfig {
    /// A config for `bucket`, honouring `STORAGE_EMULATOR_HOST` (if set, it becomes the endpoint).
    pub fn new(bucket: impl Into<String>) -> Self {
        let endpoint = std::env::var(STORAGE_EMULATOR_HOST)
            .ok()
            .filter(|host| !host.is_empty())
            .map(|host| {
                if host.contains("://") {
                    host
                } else {
                    format!("http://{host}")
                }
            });
        GcsConfig {
            bucket: bucket.into(),
            endpoint,
            request_timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets an emulator endpoint (anonymous access).
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }
}

/// The GCS [`Storage`]: tiles, entry bundles and the checkpoint as objects in one bucket.
#[derive(Clone)]
pub struct GcsStorage {
    client: Client,
    bucket: String,
    timeout: Duration,
    /// Decoded tiles and entries kept for readers that prove entries (searches): each read
    /// here is a GET.
    read_cache: Arc<ReadCache>,
}

impl std::fmt::Debug for GcsStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsStorage")
            .field("bucket", &self.bucket)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl GcsStorage {
    /// Builds a client for `config.bucket`. With no endpoint this loads Application Default
    /// Credentials; with one it uses anonymous access. No request is sent.
    ///
    /// # Errors
    ///
    /// [`Error::Other`] when no credentials can be found.
    pub async fn connect(config: GcsConfig) -> Result<GcsStorage> {
        let client_config = match &config.endpoint {
            Some(endpoint) => ClientConfig {
                storage_endpoint: endpoint.trim_end_matches('/').to_owned(),
                ..ClientConfig::default()
            }
            .anonymous(),
            None => ClientConfig::default()
                .with_auth()
                .await
                .map_err(GcpError::GcsAuth)?,
        };
        Ok(GcsStorage {
            client: Client::new(client_config),
            bucket: config.bucket,
            timeout: config.request_timeout,
            read_cache: Arc::default(),
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn get_request(&self, path: &str) -> GetObjectRequest {
        GetObjectRequest {
            bucket: self.bucket.clone(),
            object: path.to_owned(),
            ..GetObjectRequest::default()
        }
    }

    async fn download(&self, request: &GetObjectRequest) -> Result<Bytes, GcpError> {
        let work = async {
            self.client
                .download_object(request, &Range::default())
                .await
                .map(Bytes::from)
                .map_err(|source| GcpError::Gcs {
                    path: request.object.clone(),
                    source,
                })
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(self.timed_out("download")),
        }
    }

    async fn metadata(&self, path: &str) -> Result<GcsObject, GcpError> {
        let request = self.get_request(path);
        let work = async {
            self.client
                .get_object(&request)
                .await
                .map_err(|source| GcpError::Gcs {
                    path: path.to_owned(),
                    source,
                })
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(self.timed_out("metadata read")),
        }
    }

    /// Uploads `data` at `path` if the object's generation is `if_generation_match` (0: create-only).
    async fn upload(
        &self,
        path: &str,
        data: Bytes,
        if_generation_match: i64,
    ) -> Result<GcsObject, GcpError> {
        let kind = ObjectKind::of_path(path);
        let request = UploadObjectRequest {
            bucket: self.bucket.clone(),
            if_generation_match: Some(if_generation_match),
            ..UploadObjectRequest::default()
        };
        let upload_type = UploadType::Multipart(Box::new(GcsObject {
            name: path.to_owned(),
            content_type: Some(kind.content_type().to_owned()),
            cache_control: Some(kind.cache_control().to_owned()),
            ..GcsObject::default()
        }));
        let work = async {
            self.client
                .upload_object(&request, data, &upload_type)
                .await
                .map_err(|source| GcpError::Gcs {
                    path: path.to_owned(),
                    source,
                })
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(self.timed_out("upload")),
        }
    }

    /// Deletes one object; a missing one counts as deleted.
    async fn delete(&self, path: String) -> Result<()> {
        let request = DeleteObjectRequest {
            bucket: self.bucket.clone(),
            object: path,
            ..DeleteObjectRequest::default()
        };
        let work = async { self.client.delete_object(&request).await };
        let error = match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(source)) => GcpError::Gcs {
                path: request.object,
                source,
            },
            Err(_) => self.timed_out("delete"),
        };
        if error.is_not_found() {
            Ok(())
        } else {
            Err(error.into())
        }
    }

    fn timed_out(&self, what: &'static str) -> GcpError {
        GcpError::Timeout {
            backend: GCS,
            what,
            limit: self.timeout,
        }
    }

    /// Writes one immutable object, create-only; an identical existing object is success.
    async fn write_object(&self, object: Object) -> Result<()> {
        match self.upload(&object.path, object.data.clone(), 0).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_precondition_failed() => {
                let existing = self.download(&self.get_request(&object.path)).await?;
                if existing == object.data {
                    Ok(())
                } else {
                    Err(Error::AlreadyExists { path: object.path })
                }
            }
            Err(error) => Err(error.into()),
        }
    }
}

fn version_of(generation: i64) -> ObjectVersion {
    ObjectVersion(generation.to_string())
}

#[async_trait]
impl Storage for GcsStorage {
    /// Uploads up to 16 objects at a time, one request each (plus a download for each object that
    /// already existed).
    async fn write_objects(&self, objects: Vec<Object>) -> Result<()> {
        for object in &objects {
            check_object_path(&object.path)?;
        }
        futures::stream::iter(objects)
            .map(|object| self.write_object(object))
            .buffer_unordered(MAX_CONCURRENT_UPLOADS)
            .try_collect::<()>()
            .await
    }

    fn read_cache(&self) -> Option<&ReadCache> {
        Some(&self.read_cache)
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        check_object_path(path)?;
        Ok(self.download(&self.get_request(path)).await?)
    }

    /// Two requests: the object's metadata (its generation), then that generation's bytes.
    async fn read_checkpoint(&self) -> Result<Option<Versioned>> {
        for _ in 0..CHECKPOINT_READ_ATTEMPTS {
            let generation = match self.metadata(CHECKPOINT_PATH).await {
                Ok(object) => object.generation,
                Err(error) if error.is_not_found() => return Ok(None),
                Err(error) => return Err(error.into()),
            };
            let request = GetObjectRequest {
                generation: Some(generation),
                ..self.get_request(CHECKPOINT_PATH)
            };
            match self.download(&request).await {
                Ok(data) => {
                    return Ok(Some(Versioned {
                        data,
                        version: version_of(generation),
                    }));
                }
                // Replaced (and the old generation deleted) between the two requests: read again.
                Err(error) if error.is_not_found() => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(GcpError::CheckpointChurn.into())
    }

    async fn write_checkpoint(
        &self,
        data: Bytes,
        expected: Option<&ObjectVersion>,
    ) -> Result<ObjectVersion> {
        let generation = match expected {
            None => 0,
            Some(version) => version.0.parse::<i64>().map_err(|_| Error::Precondition {
                what: "checkpoint generation",
                expected: version.0.clone(),
                found: "a GCS generation (the expected version is not one)".to_owned(),
            })?,
        };
        match self.upload(CHECKPOINT_PATH, data, generation).await {
            Ok(object) => Ok(version_of(object.generation)),
            Err(error) if error.is_precondition_failed() => Err(Error::Precondition {
                what: "checkpoint generation",
                expected: expected.map_or_else(|| "none".to_owned(), |v| v.0.clone()),
                found: "another generation".to_owned(),
            }),
            Err(error) => Err(error.into()),
        }
    }

    /// One request per object, up to 16 at a time.
    async fn delete_partials(&self, paths: Vec<String>) -> Result<()> {
        for path in &paths {
            check_partial_path(path)?;
        }
        futures::stream::iter(paths)
            .map(|path| self.delete(path))
            .buffer_unordered(MAX_CONCURRENT_UPLOADS)
            .try_collect::<()>()
            .await
    }
}
