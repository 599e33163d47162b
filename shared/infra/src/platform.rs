//! The connected backends of one process, built once from configuration.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use climate_domain::template::{DatasetTemplate, ParamError};
use tokio::sync::Notify;

use crate::config::Config;
use crate::db::{self, Database};
use crate::locks::{self, Locks};
use crate::queue::{self, Queue};
use crate::store::Store;
use crate::templates::TemplateCatalog;

/// Everything a process talks to. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Platform {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// Runs, datasets, versions, outbox.
    pub db: Arc<dyn Database>,
    /// Task queue.
    pub queue: Arc<dyn Queue>,
    /// Zarr versions and download cache.
    pub store: Store,
    /// Per-dataset locks.
    pub locks: Arc<dyn Locks>,
    /// Built-in and custom templates.
    pub catalog: Arc<TemplateCatalog>,
    /// Wakes the outbox relay as soon as a row is written, instead of at its next tick.
    pub outbox_notify: Arc<Notify>,
}

/// Why the platform could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Templates are invalid.
    #[error("{0}")]
    Templates(#[from] crate::templates::CatalogError),
    /// Database unreachable or migrations failed.
    #[error("database ({url}): {source}")]
    Database {
        /// URL without credentials.
        url: String,
        /// Cause.
        source: db::DbError,
    },
    /// Queue unreachable.
    #[error("queue ({url}): {source}")]
    Queue {
        /// URL without credentials.
        url: String,
        /// Cause.
        source: queue::QueueError,
    },
    /// Store misconfigured.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// Redis unreachable.
    #[error("cache ({url}): {source}")]
    Locks {
        /// URL without credentials.
        url: String,
        /// Cause.
        source: locks::LockError,
    },
    /// Bundled samples could not be installed.
    #[error("cannot install sample files under {0}: {1}")]
    Samples(String, std::io::Error),
}

/// Removes the password from a URL for logs and errors.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

impl Platform {
    /// Loads templates, connects every backend and applies migrations.
    ///
    /// `check` validates provider parameters of each template (the provider registry lives in
    /// `climate-geodata`, which this crate does not depend on).
    ///
    /// # Errors
    /// [`StartError`] naming the backend or template at fault.
    pub async fn connect(
        config: Config,
        check: &dyn Fn(&DatasetTemplate) -> Result<(), ParamError>,
    ) -> Result<Self, StartError> {
        let samples = crate::samples::install(&config.data_dir)
            .map_err(|e| StartError::Samples(config.data_dir.display().to_string(), e))?;
        let builtin_base = samples
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(|| config.data_dir.clone());
        let templates_dir = config.templates_dir.as_ref().map(|d| config.resolve(d));
        let catalog = TemplateCatalog::load(
            &builtin_base,
            templates_dir.as_deref(),
            &config.base_dir,
            check,
        )?;

        let db_url = config.database_url();
        let db = connect_retrying("database", || {
            db::connect(&db_url, config.database.max_connections)
        })
        .await
        .map_err(|source| StartError::Database {
            url: redact(&db_url),
            source,
        })?;
        // Processes of a deployment start together and migrate together; on PostgreSQL two
        // concurrent `CREATE TABLE IF NOT EXISTS` of the migrations table can collide in the
        // catalog before the migration lock is taken. The loser simply tries again.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match db.migrate().await {
                Ok(()) => break,
                Err(e) if attempt < 5 => {
                    tracing::warn!(error = %e, attempt, "migration failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(source) => {
                    return Err(StartError::Database {
                        url: redact(&db_url),
                        source,
                    });
                }
            }
        }
        let queue = connect_retrying("queue", || {
            queue::connect(&config.queue.url, &config.queue.name)
        })
        .await
        .map_err(|source| StartError::Queue {
            url: redact(&config.queue.url),
            source,
        })?;
        let store = Store::open(&config.store_url(), &config.store.options)?;
        let locks = connect_retrying("cache", || {
            locks::connect(config.cache.url.as_deref(), &config.cache.prefix)
        })
        .await
        .map_err(|source| StartError::Locks {
            url: redact(config.cache.url.as_deref().unwrap_or("memory")),
            source,
        })?;
        Ok(Self {
            config: Arc::new(config),
            db,
            queue,
            store,
            locks,
            catalog: Arc::new(catalog),
            outbox_notify: Arc::new(Notify::new()),
        })
    }

    /// Backend kinds, for `/info` and logs (no URLs, no secrets).
    pub fn backends(&self) -> BTreeMap<&'static str, &'static str> {
        BTreeMap::from([
            ("database", self.db.engine()),
            ("queue", self.queue.kind()),
            ("store", self.store.kind()),
            ("cache", self.locks.kind()),
        ])
    }
}

/// Services started together (compose, Kubernetes) come up in any order: retry a connection for
/// up to 30 seconds before giving up.
async fn connect_retrying<T, E, F, Fut>(what: &str, mut f: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut delay = Duration::from_millis(250);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(backend = what, error = %e, "backend not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(4));
            }
            Err(e) => return Err(e),
        }
    }
}
