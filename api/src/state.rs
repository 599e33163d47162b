//! The API's state: one struct handed to every handler.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use climate_infra::Platform;

/// Shared state of the API process.
#[derive(Debug)]
pub struct App {
    /// Backends, configuration and templates.
    pub platform: Platform,
    /// The read model: published datasets and versions opened as cubes (readers cached).
    pub catalog: Arc<climate_catalog::Catalog>,
    /// The processes of OGC API – Processes.
    pub processes: climate_processes::Processes,
    /// What the processes read when their requests are checked.
    pub process_env: climate_processes::Env,
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

impl App {
    /// The state of a process serving `platform`.
    ///
    /// # Errors
    /// When the providers' HTTP clients cannot be built.
    pub fn new(platform: Platform) -> anyhow::Result<Self> {
        let catalog = Arc::new(climate_catalog::Catalog::new(&platform));
        let providers = climate_ingest::Context::new(platform.clone())?;
        Ok(Self {
            process_env: climate_processes::Env::new(&providers, catalog.clone()),
            providers,
            auth: crate::auth::Auth::new(platform.config.auth.clone())?,
            metrics: climate_infra::telemetry::metrics(None)?,
            shutdown: tokio_util::sync::CancellationToken::new(),
            catalog,
            processes: climate_processes::Processes::default(),
            platform,
            downloads: tokio::sync::Semaphore::new(CONCURRENT_DOWNLOADS),
        })
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
