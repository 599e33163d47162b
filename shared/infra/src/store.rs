//! The object store holding Zarr versions and the download cache: a local directory in
//! standalone mode, S3-compatible storage in distributed mode, both through `object_store`.
//!
//! Layout under the configured root: `datasets/{dataset_id}/{artifact_id}/…` (one immutable Zarr
//! store per version) and `cache/…` (provider downloads).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

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
            return Ok(Self {
                inner: Arc::new(fs),
                kind: "file",
            });
        }
        if url.starts_with("memory:") {
            return Ok(Self {
                inner: Arc::new(InMemory::new()),
                kind: "memory",
            });
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
            return Ok(Self { inner, kind: "s3" });
        }
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }

    /// Wraps an existing store (tests, fault injection).
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, kind: &'static str) -> Self {
        Self { inner, kind }
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

    /// Prefix of one version's Zarr store.
    pub fn version_prefix(dataset_id: &str, artifact_id: &str) -> String {
        format!("datasets/{dataset_id}/{artifact_id}")
    }
}
