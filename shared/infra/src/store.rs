//! The object store holding Zarr versions and the download cache: a local directory in
//! standalone mode, S3-compatible storage in distributed mode, both through `object_store`.
//!
//! Layout under the configured root: `datasets/{dataset_id}/{artifact_id}/…` (one immutable Zarr
//! store per version) and `cache/…` (provider downloads).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use climate_domain::DatasetId;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt};

/// Errors opening a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is malformed or names no supported backend.
    #[error("unsupported store url '{0}': expected file://PATH or s3://bucket/prefix")]
    UnsupportedUrl(String),
    /// An option key is unknown to `object_store`.
    #[error("store.options: unknown S3 option '{0}'")]
    UnknownOption(String),
    /// The backend failed.
    #[error("object store error: {0}")]
    Backend(#[from] object_store::Error),
    /// The local directory could not be created.
    #[error("cannot create store directory {0}: {1}")]
    Io(String, std::io::Error),
}

/// The platform's object store.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    kind: &'static str,
}

impl Store {
    /// Opens the store named by `url`. S3 settings come from the `AWS_*` environment variables
    /// and from `options` (the same keys, any case).
    ///
    /// # Errors
    /// [`StoreError`] for unsupported URLs, unknown options or an uncreatable directory.
    pub fn open(url: &str, options: &BTreeMap<String, String>) -> Result<Self, StoreError> {
        if let Some(path) = url.strip_prefix("file://") {
            std::fs::create_dir_all(path).map_err(|e| StoreError::Io(path.to_owned(), e))?;
            let fs = LocalFileSystem::new_with_prefix(path)?;
            return Ok(Self::from_object_store(Arc::new(fs), "file"));
        }
        if url.starts_with("memory:") {
            return Ok(Self::from_object_store(Arc::new(InMemory::new()), "memory"));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StoreError::UnsupportedUrl(url.to_owned()));
            }
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            for (k, v) in options {
                let key = AmazonS3ConfigKey::from_str(&k.to_ascii_lowercase())
                    .map_err(|_| StoreError::UnknownOption(k.clone()))?;
                builder = builder.with_config(key, v);
            }
            let s3: Arc<dyn ObjectStore> = Arc::new(builder.build()?);
            let prefix = prefix.trim_matches('/');
            let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
                s3
            } else {
                Arc::new(PrefixStore::new(s3, prefix))
            };
            return Ok(Self::from_object_store(inner, "s3"));
        }
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }

    /// Wraps an existing store (tests, fault injection). Every write through it counts in
    /// `climate_store_bytes_written_total`.
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, kind: &'static str) -> Self {
        Self {
            inner: Arc::new(Metered { inner, kind }),
            kind,
        }
    }

    /// The underlying `object_store`.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.inner.clone()
    }

    /// `file`, `s3` or `memory`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Checks that the store answers (a missing probe object is a healthy answer).
    ///
    /// # Errors
    /// The backend's error when it is unreachable or denies access.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self.inner.head(&Path::from("_ready_probe")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Prefix of the objects a durable job wrote (its result): `jobs/{job_id}/`. They go
    /// with the job when it expires.
    pub fn job_prefix(job_id: climate_domain::ids::JobId) -> String {
        format!("jobs/{job_id}/")
    }

    /// Prefix of one version's Zarr store.
    pub fn version_prefix(dataset_id: &DatasetId, artifact_id: &str) -> String {
        format!("datasets/{dataset_id}/{artifact_id}")
    }
}

// ---------------------------------------------------------------------------------------------
// Metering

/// Counts the bytes written through a store (`climate_store_bytes_written_total{store}`):
/// Zarr chunks and metadata, cached downloads, everything.
#[derive(Debug)]
struct Metered {
    inner: Arc<dyn ObjectStore>,
    kind: &'static str,
}

impl Metered {
    fn written(kind: &'static str, bytes: usize) {
        metrics::counter!("climate_store_bytes_written_total", "store" => kind)
            .increment(bytes as u64);
    }
}

impl std::fmt::Display for Metered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Metered {
    async fn put_opts(
        &self,
        location: &Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        let bytes = payload.content_length();
        let result = self.inner.put_opts(location, payload, opts).await?;
        Self::written(self.kind, bytes);
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(MeteredUpload {
            inner,
            kind: self.kind,
            bytes: 0,
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<Path>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// A multipart upload whose bytes count once it completes.
#[derive(Debug)]
struct MeteredUpload {
    inner: Box<dyn object_store::MultipartUpload>,
    kind: &'static str,
    bytes: usize,
}

#[async_trait::async_trait]
impl object_store::MultipartUpload for MeteredUpload {
    fn put_part(&mut self, data: object_store::PutPayload) -> object_store::UploadPart {
        self.bytes += data.content_length();
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<object_store::PutResult> {
        let result = self.inner.complete().await?;
        Metered::written(self.kind, std::mem::take(&mut self.bytes));
        Ok(result)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.bytes = 0;
        self.inner.abort().await
    }
}
