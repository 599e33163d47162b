//! The API's state: one struct handed to every handler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use climate_geodata::zarr_read::ZarrReader;
use climate_infra::Platform;

/// Shared state of the API process.
#[derive(Debug)]
pub struct App {
    /// Backends, configuration and templates.
    pub platform: Platform,
    /// Open readers of version stores, by artifact id. Versions never change, so a reader
    /// stays valid; the least recently used one goes when [`READER_CACHE`] are open.
    pub readers: Mutex<Lru<Arc<ZarrReader>>>,
    /// Downloads being written at once (each holds a slab in memory and a temporary file).
    pub downloads: tokio::sync::Semaphore,
    /// Providers and HTTP settings, for syncs whose availability probes the provider.
    pub providers: climate_ingest::Context,
    /// Authentication settings and OIDC verifiers.
    pub auth: crate::auth::Auth,
    /// Renders the process's Prometheus metrics.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Cancelled when the server shuts down: long-lived responses (event streams) end.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Downloads written at once.
pub const CONCURRENT_DOWNLOADS: usize = 2;

/// Most store readers kept open.
pub const READER_CACHE: usize = 64;

impl App {
    /// The state of a process serving `platform`.
    ///
    /// # Errors
    /// When the providers' HTTP clients cannot be built.
    pub fn new(platform: Platform) -> anyhow::Result<Self> {
        Ok(Self {
            providers: climate_ingest::Context::new(platform.clone())?,
            auth: crate::auth::Auth::new(platform.config.auth.clone())?,
            metrics: climate_infra::telemetry::metrics(None)?,
            shutdown: tokio_util::sync::CancellationToken::new(),
            platform,
            readers: Mutex::new(Lru::new(READER_CACHE)),
            downloads: tokio::sync::Semaphore::new(CONCURRENT_DOWNLOADS),
        })
    }

    /// The cached reader of an artifact.
    pub fn reader(&self, artifact: &str) -> Option<Arc<ZarrReader>> {
        self.readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(artifact)
    }

    /// Caches a reader and hands it back shared.
    pub fn keep_reader(&self, artifact: &str, reader: ZarrReader) -> Arc<ZarrReader> {
        let reader = Arc::new(reader);
        self.readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(artifact, reader.clone());
        reader
    }
}

/// A least-recently-used cache by string key, for a few dozen entries: every hit renews an
/// entry, and an insert into a full cache evicts the entry unused for longest.
#[derive(Debug)]
pub struct Lru<V> {
    capacity: usize,
    /// Advances on every use; an entry keeps the value at its last use.
    clock: u64,
    entries: HashMap<String, (u64, V)>,
}

impl<V: Clone> Lru<V> {
    /// An empty cache holding at most `capacity` entries (at least one).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            clock: 0,
            entries: HashMap::new(),
        }
    }

    /// The value under `key`, now the most recently used.
    pub fn get(&mut self, key: &str) -> Option<V> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|(used, v)| {
            *used = clock;
            v.clone()
        })
    }

    /// Stores `value` under `key` as the most recently used, evicting the least recently used
    /// entry when the cache is full.
    pub fn insert(&mut self, key: &str, value: V) {
        self.clock += 1;
        if !self.entries.contains_key(key)
            && self.entries.len() >= self.capacity
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(k, _)| k.clone())
        {
            self.entries.remove(&oldest);
        }
        self.entries.insert(key.to_owned(), (self.clock, value));
    }

    /// Entries held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Cheap handle on [`App`].
#[derive(Debug, Clone)]
pub struct AppState(pub Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

/// The absolute base URL for links: `base_url` from configuration, else derived from the
/// request (`X-Forwarded-Proto`/`X-Forwarded-Host`, then `Host`).
#[derive(Debug, Clone)]
pub struct BaseUrl(pub String);

impl BaseUrl {
    /// Joins a path (starting with `/`) to the base.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

impl FromRequestParts<AppState> for BaseUrl {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(base) = &state.platform.config.base_url {
            return Ok(Self(base.trim_end_matches('/').to_owned()));
        }
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(',').next().unwrap_or(v).trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let proto = header("x-forwarded-proto").unwrap_or_else(|| "http".into());
        let host = header("x-forwarded-host")
            .or_else(|| header("host"))
            .unwrap_or_else(|| state.platform.config.server.bind.clone());
        Ok(Self(format!("{proto}://{host}")))
    }
}

#[cfg(test)]
mod tests {
    use super::Lru;

    #[test]
    fn the_least_recently_used_entry_is_evicted() {
        let mut lru = Lru::new(3);
        for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
            lru.insert(k, v);
        }
        // A hit renews "a": "b" is now the oldest.
        assert_eq!(lru.get("a"), Some(1));
        lru.insert("d", 4);
        assert_eq!(lru.len(), 3);
        assert_eq!(lru.get("b"), None, "the least recently used entry went");
        assert_eq!(
            (lru.get("a"), lru.get("c"), lru.get("d")),
            (Some(1), Some(3), Some(4))
        );
        // Replacing a key evicts nothing.
        lru.insert("c", 30);
        assert_eq!((lru.len(), lru.get("c")), (3, Some(30)));
        assert_eq!((lru.get("a"), lru.get("d")), (Some(1), Some(4)));
        // Entries used since survive a run of new keys longer than the oldest ones.
        lru.insert("e", 5);
        assert_eq!(lru.get("c"), None);
        assert!(!lru.is_empty());
    }

    #[test]
    fn a_full_cache_is_never_wiped() {
        let mut lru = Lru::new(64);
        for i in 0..64 {
            lru.insert(&format!("k{i}"), i);
        }
        lru.insert("k64", 64);
        assert_eq!(lru.len(), 64, "one entry evicted, not all");
        assert_eq!(lru.get("k0"), None);
        assert_eq!(lru.get("k1"), Some(1));
    }
}
