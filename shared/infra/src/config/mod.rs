//! Configuration: one YAML document with `${VAR:-default}` substitution, overridable key by key
//! through `CLIMATE_API__SECTION__KEY` environment variables, validated with errors that name the
//! file and the key path.
//!
//! Missing configuration means the standalone defaults: SQLite, the in-process queue and a local
//! object store, all under `data_dir`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use climate_domain::{Extent, ExtentId};
use serde::{Deserialize, Serialize};

mod env;
mod processes;
#[cfg(test)]
mod tests;

use env::{apply_env_overrides, substitute};
pub use processes::{CatalogConfig, ProcessesConfig};

/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "CLIMATE_API__";

/// The example configuration shipped with the binary, used when no file is given.
pub const EMBEDDED_CONFIG: &str = include_str!("../../../../config/climate-api.yaml");

/// Errors loading or validating configuration. Messages name the source and the key path.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// `${VAR}` without a default named an unset variable, or the syntax was broken.
    #[error("{origin}: {message}")]
    Substitution {
        /// File path or `embedded config`.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// The YAML does not parse.
    #[error("{origin}: invalid YAML: {message}")]
    Yaml {
        /// File path or `embedded config`.
        origin: String,
        /// Parser message with location.
        message: String,
    },
    /// A key has the wrong type, is unknown, or is missing.
    #[error("{origin}: key '{path}': {message}")]
    Key {
        /// File path or `embedded config`.
        origin: String,
        /// Dotted key path, e.g. `server.bind` or `extents[0].bbox`.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration of an instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Instance name shown on the landing page and in `/info`.
    #[serde(default = "default_name")]
    pub name: String,
    /// Public base URL used for absolute links; derived from the request when absent.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Where standalone state lives (SQLite file, local store, bundled samples). Relative paths
    /// are relative to the working directory.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Directory of custom template YAML files. Relative to the config file.
    #[serde(default)]
    pub templates_dir: Option<PathBuf>,
    /// The areas this instance serves.
    #[serde(default)]
    pub extents: Vec<Extent>,
    /// Extent used when a request names none; the first extent when absent.
    #[serde(default)]
    pub default_extent: Option<ExtentId>,
    /// Relational database.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// Task queue.
    #[serde(default)]
    pub queue: QueueConfig,
    /// Object store for Zarr versions and the download cache.
    #[serde(default)]
    pub store: StoreConfig,
    /// Locks, rate limits and live progress.
    #[serde(default)]
    pub cache: CacheConfig,
    /// HTTP server.
    #[serde(default)]
    pub server: ServerConfig,
    /// Worker behaviour.
    #[serde(default)]
    pub worker: WorkerConfig,
    /// Scheduler behaviour.
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    /// Per-provider download settings, by provider name (`worldpop_yearly: {concurrency: 2}`).
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSettings>,
    /// Authentication and rate limits of the API.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Limits of process executions (OGC API – Processes).
    #[serde(default)]
    pub processes: ProcessesConfig,
    /// The versioned catalog (retention of pruned versions).
    #[serde(default)]
    pub catalog: CatalogConfig,
    /// Directory that relative paths in the file (templates, template params) resolve against:
    /// the config file's directory, or `data_dir` for the embedded configuration.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `database.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://…`; default `sqlite://{data_dir}/climate-api.db`.
    #[serde(default)]
    pub url: Option<String>,
    /// Connection pool size.
    #[serde(default)]
    pub max_connections: Option<u32>,
}

/// `queue.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// `memory://` (in-process, durable through the database) or `amqp://…`.
    #[serde(default = "default_queue_url")]
    pub url: String,
    /// Name of the task queue; the dead-letter queue is `{name}.dlq`.
    #[serde(default = "default_queue_name")]
    pub name: String,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            url: default_queue_url(),
            name: default_queue_name(),
        }
    }
}

/// `store.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `file://PATH` or `s3://bucket/prefix`; default `file://{data_dir}/store`.
    #[serde(default)]
    pub url: Option<String>,
    /// `object_store` options (`aws_endpoint_url`, `aws_allow_http`, …); the environment's
    /// `AWS_*` variables apply too.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// `cache.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Absent for in-process locks, or `redis://…`.
    #[serde(default)]
    pub url: Option<String>,
    /// Prefix of every Redis key, so instances can share a server.
    #[serde(default = "default_cache_prefix")]
    pub prefix: String,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            url: None,
            prefix: default_cache_prefix(),
        }
    }
}

/// `server.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address.
    #[serde(default = "default_bind")]
    pub bind: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: default_bind(),
        }
    }
}

/// `auth.*`: who may call the API. Write endpoints need an API key, a token from
/// `/credentials/basic` or an OIDC bearer token; read endpoints are public unless
/// `protect_reads`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `false` turns authentication off: every request may do everything. Only for an
    /// instance on a loopback address; the process warns loudly at start-up.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Read endpoints also need credentials (scope `read`).
    #[serde(default)]
    pub protect_reads: bool,
    /// Lifetime of tokens issued by `/credentials/basic`, in hours.
    #[serde(default = "default_token_hours")]
    pub token_hours: u64,
    /// Requests a key (or token, or OIDC subject) may make per minute; 0 means unlimited.
    #[serde(default = "default_requests_per_minute")]
    pub requests_per_minute: u64,
    /// OpenID Connect providers whose bearer tokens are accepted.
    #[serde(default)]
    pub oidc: Vec<OidcProviderConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            protect_reads: false,
            token_hours: default_token_hours(),
            requests_per_minute: default_requests_per_minute(),
            oidc: Vec::new(),
        }
    }
}

/// `auth.oidc[]`: an OpenID Connect provider. Tokens are JWTs signed by a key of the issuer's
/// JWKS, presented as `Authorization: Bearer oidc/{id}/{jwt}` (openEO) or a bare JWT.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// Short id used in `oidc/{id}/…` tokens.
    pub id: String,
    /// The `iss` the tokens carry.
    pub issuer: String,
    /// Display name for `/credentials/oidc`.
    #[serde(default)]
    pub title: Option<String>,
    /// Where the signing keys are; default: `jwks_uri` of the issuer's
    /// `/.well-known/openid-configuration`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Required `aud`; not checked when absent.
    #[serde(default)]
    pub audience: Option<String>,
    /// Claim holding the granted scopes (a space-separated string or an array); values
    /// `read`, `ingest`, `admin`, optionally prefixed `climate:`, count.
    #[serde(default = "default_scopes_claim")]
    pub scopes_claim: String,
    /// Scopes every valid token of this provider has.
    #[serde(default)]
    pub default_scopes: Vec<climate_domain::auth::Scope>,
}

/// `worker.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Tasks a worker process runs at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How long a claim lasts without a heartbeat.
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u64,
    /// Attempts before a run (or one of its segments) fails for good.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Time chunks per segment: the unit of parallel work and of resumption after a crash.
    #[serde(default = "default_segment_chunks")]
    pub segment_chunks: u64,
    /// Values a task holds at once, in MiB: a time chunk of a large grid is read and written
    /// in bands of whole chunk rows that fit (at least one chunk row).
    #[serde(default = "default_band_memory_mib")]
    pub band_memory_mib: u64,
    /// `HOST:PORT` where a `climate-worker` process serves its Prometheus metrics
    /// (`GET /metrics`); none when absent. Standalone processes report through the API's
    /// `/metrics`.
    #[serde(default)]
    pub metrics_bind: Option<String>,
    /// On SIGTERM a worker stops taking tasks and waits this long for those in flight; then
    /// it hands their leases back (another worker takes over at once) and exits. Keep it
    /// below the orchestrator's kill timeout (Kubernetes: terminationGracePeriodSeconds, 30).
    #[serde(default = "default_shutdown_grace_seconds")]
    pub shutdown_grace_seconds: u64,
    /// Longest time a worker keeps a queue delivery unacknowledged, counted from its arrival.
    /// A step still running then has its delivery acknowledged and goes on under its lease
    /// (heartbeats; the reaper re-announces it if the worker dies); a delivery still waiting
    /// for a free slot (or whose claim has not gone through) is handed over as a fresh copy. Keep it
    /// below the broker's consumer timeout (RabbitMQ `consumer_timeout`, 30 minutes by
    /// default), which closes the channel of a consumer that holds a delivery longer.
    #[serde(default = "default_max_delivery_hold_seconds")]
    pub max_delivery_hold_seconds: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: default_concurrency(),
            lease_seconds: default_lease_seconds(),
            max_attempts: default_max_attempts(),
            segment_chunks: default_segment_chunks(),
            band_memory_mib: default_band_memory_mib(),
            metrics_bind: None,
            shutdown_grace_seconds: default_shutdown_grace_seconds(),
            max_delivery_hold_seconds: default_max_delivery_hold_seconds(),
        }
    }
}

/// `providers.<name>.*`: how a provider downloads. Absent keys keep the defaults.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// Downloads in flight at once, per process (default 4).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Attempts per file (default 5).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Connect timeout in seconds (default 10).
    #[serde(default)]
    pub connect_timeout_seconds: Option<u64>,
    /// Longest silence while reading a response, in seconds (default 60).
    #[serde(default)]
    pub read_timeout_seconds: Option<f64>,
    /// First backoff in milliseconds, doubled per attempt with jitter (default 500).
    #[serde(default)]
    pub base_delay_ms: Option<u64>,
    /// Longest backoff (and `Retry-After`) in milliseconds (default 30000).
    #[serde(default)]
    pub max_delay_ms: Option<u64>,
    /// API key of providers that need one (CDS). A secret: use `${VAR}` substitution; it is
    /// never logged or shown.
    #[serde(default)]
    pub api_key: Option<String>,
    /// netrc file holding the provider's credentials (`era5_land_zarr`); default `$NETRC`, then
    /// `~/.netrc`.
    #[serde(default)]
    pub netrc: Option<std::path::PathBuf>,
    /// Least time between two requests to the provider, in milliseconds, per process (pacing
    /// for rate-limited upstreams; default none).
    #[serde(default)]
    pub min_interval_ms: Option<u64>,
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("concurrency", &self.concurrency)
            .field("max_attempts", &self.max_attempts)
            .field("connect_timeout_seconds", &self.connect_timeout_seconds)
            .field("read_timeout_seconds", &self.read_timeout_seconds)
            .field("base_delay_ms", &self.base_delay_ms)
            .field("max_delay_ms", &self.max_delay_ms)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("netrc", &self.netrc)
            .field("min_interval_ms", &self.min_interval_ms)
            .finish()
    }
}

/// `scheduler.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Whether the standalone process runs the scheduler loop.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Seconds between scheduler ticks.
    #[serde(default = "default_tick_seconds")]
    pub tick_seconds: u64,
    /// `HOST:PORT` where a `climate-scheduler` process serves its Prometheus metrics.
    #[serde(default)]
    pub metrics_bind: Option<String>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tick_seconds: default_tick_seconds(),
            metrics_bind: None,
        }
    }
}

fn default_name() -> String {
    "Climate API".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_queue_url() -> String {
    "memory://".into()
}
fn default_queue_name() -> String {
    "climate.tasks".into()
}
fn default_cache_prefix() -> String {
    "climate:".into()
}
fn default_bind() -> String {
    "127.0.0.1:8000".into()
}
fn default_concurrency() -> usize {
    2
}
fn default_lease_seconds() -> u64 {
    60
}
fn default_max_attempts() -> u32 {
    3
}
fn default_segment_chunks() -> u64 {
    1
}
fn default_band_memory_mib() -> u64 {
    256
}
fn default_shutdown_grace_seconds() -> u64 {
    25
}
fn default_max_delivery_hold_seconds() -> u64 {
    900
}
/// RabbitMQ's largest `consumer_timeout` (2^31 ms), in seconds.
const MAX_CONSUMER_TIMEOUT_SECONDS: u64 = 2_147_483;
fn default_true() -> bool {
    true
}
fn default_token_hours() -> u64 {
    24
}
fn default_requests_per_minute() -> u64 {
    600
}
fn default_scopes_claim() -> String {
    "scope".into()
}
fn default_tick_seconds() -> u64 {
    10
}

impl Config {
    /// Loads configuration from `path`, or the embedded example when `None`, applying
    /// substitution and overrides from `env`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and key.
    pub fn load(path: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let (origin, text, base_dir) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                let dir = p
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_owned();
                (p.display().to_string(), text, Some(dir))
            }
            None => (
                "embedded config".to_owned(),
                EMBEDDED_CONFIG.to_owned(),
                None,
            ),
        };
        let mut config = Self::from_yaml(&origin, &text, env)?;
        // Absolute paths from here on: relative ones would be compared with what globbing and
        // the OS return (`./data/x` vs `data/x`) and would change meaning with the working
        // directory.
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        config.data_dir = absolute(&config.data_dir);
        config.base_dir = absolute(&base_dir.unwrap_or_else(|| config.data_dir.clone()));
        Ok(config)
    }

    /// Loads the configuration a binary was started with: `--config FILE`, else the
    /// `CLIMATE_API_CONFIG` variable, else the embedded example; overrides from the process
    /// environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and key.
    pub fn from_process(cli_path: Option<&Path>) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let path = cli_path.map(Path::to_path_buf).or_else(|| {
            env.get("CLIMATE_API_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        Self::load(path.as_deref(), &env)
    }

    /// Parses a YAML document (after substitution) and applies environment overrides.
    ///
    /// # Errors
    /// [`ConfigError`] naming `origin` and the key.
    pub fn from_yaml(
        origin: &str,
        text: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let text = substitute(text, env).map_err(|message| ConfigError::Substitution {
            origin: origin.to_owned(),
            message,
        })?;
        let mut value: serde_json::Value = if text.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_saphyr::from_str(&text).map_err(|e| ConfigError::Yaml {
                origin: origin.to_owned(),
                message: e.to_string(),
            })?
        };
        if value.is_null() {
            value = serde_json::Value::Object(Default::default());
        }
        apply_env_overrides(&mut value, env).map_err(|(path, message)| ConfigError::Key {
            origin: format!("{origin} (environment)"),
            path,
            message,
        })?;
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::Key {
                origin: origin.to_owned(),
                path,
                message: e.into_inner().to_string(),
            }
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let key = |path: String, message: String| ConfigError::Key {
            origin: origin.to_owned(),
            path,
            message,
        };
        if let Some((path, message)) = self.processes.problem() {
            return Err(key(path.into(), message.into()));
        }
        if self.extents.is_empty() {
            return Err(key(
                "extents".into(),
                "configure at least one extent (extent_id, name, bbox)".into(),
            ));
        }
        for (i, e) in self.extents.iter().enumerate() {
            e.validate()
                .map_err(|err| key(format!("extents[{i}]"), err.to_string()))?;
            if self.extents[..i].iter().any(|o| o.extent_id == e.extent_id) {
                return Err(key(
                    format!("extents[{i}].extent_id"),
                    format!("duplicate extent id '{}'", e.extent_id),
                ));
            }
        }
        if let Some(d) = &self.default_extent
            && !self.extents.iter().any(|e| &e.extent_id == d)
        {
            return Err(key(
                "default_extent".into(),
                format!("'{d}' is not one of the configured extents"),
            ));
        }
        let scheme_ok = |url: &str, schemes: &[&str]| {
            schemes
                .iter()
                .any(|s| url.starts_with(&format!("{s}://")) || url.starts_with(&format!("{s}:")))
        };
        if let Some(u) = &self.database.url
            && !scheme_ok(u, &["sqlite", "postgres", "postgresql"])
        {
            return Err(key(
                "database.url".into(),
                "expected sqlite://PATH or postgres://…".into(),
            ));
        }
        if !scheme_ok(&self.queue.url, &["memory", "amqp", "amqps"]) {
            return Err(key(
                "queue.url".into(),
                "expected memory:// or amqp://…".into(),
            ));
        }
        if let Some(u) = &self.store.url
            && !scheme_ok(u, &["file", "s3", "memory"])
        {
            return Err(key(
                "store.url".into(),
                "expected file://PATH or s3://bucket/prefix".into(),
            ));
        }
        if let Some(u) = &self.cache.url
            && !scheme_ok(u, &["redis", "rediss"])
        {
            return Err(key("cache.url".into(), "expected redis://…".into()));
        }
        for (i, o) in self.auth.oidc.iter().enumerate() {
            if o.id.is_empty()
                || !o
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(key(
                    format!("auth.oidc[{i}].id"),
                    "use letters, digits, '-', '_' or '.' (it appears in oidc/{id}/TOKEN)".into(),
                ));
            }
            if self.auth.oidc[..i].iter().any(|p| p.id == o.id) {
                return Err(key(
                    format!("auth.oidc[{i}].id"),
                    format!("duplicate OIDC provider id '{}'", o.id),
                ));
            }
            if !scheme_ok(&o.issuer, &["https", "http"]) {
                return Err(key(
                    format!("auth.oidc[{i}].issuer"),
                    "expected the issuer URL (https://…)".into(),
                ));
            }
        }
        if self.server.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(key(
                "server.bind".into(),
                format!(
                    "'{}' is not HOST:PORT (e.g. 127.0.0.1:8000)",
                    self.server.bind
                ),
            ));
        }
        if self.worker.concurrency == 0 {
            return Err(key(
                "worker.concurrency".into(),
                "must be at least 1".into(),
            ));
        }
        if !(1..=MAX_CONSUMER_TIMEOUT_SECONDS).contains(&self.worker.max_delivery_hold_seconds) {
            return Err(key(
                "worker.max_delivery_hold_seconds".into(),
                format!(
                    "must be between 1 and {MAX_CONSUMER_TIMEOUT_SECONDS}, and below the broker's consumer timeout (RabbitMQ: 1800 by default)"
                ),
            ));
        }
        Ok(())
    }

    /// The extent requests use when they name none.
    pub fn default_extent(&self) -> &Extent {
        self.default_extent
            .as_ref()
            .and_then(|id| self.extents.iter().find(|e| &e.extent_id == id))
            .unwrap_or(&self.extents[0])
    }

    /// Looks an extent up by id.
    pub fn extent(&self, id: &ExtentId) -> Option<&Extent> {
        self.extents.iter().find(|e| &e.extent_id == id)
    }

    /// Database URL with the standalone default filled in.
    pub fn database_url(&self) -> String {
        self.database.url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.data_dir.join("climate-api.db").display()
            )
        })
    }

    /// Store URL with the standalone default filled in.
    pub fn store_url(&self) -> String {
        self.store
            .url
            .clone()
            .unwrap_or_else(|| format!("file://{}", self.data_dir.join("store").display()))
    }

    /// Resolves a path from the configuration against [`Config::base_dir`].
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Whether the deployment is distributed (anything but the in-process queue).
    pub fn mode(&self) -> &'static str {
        if self.queue.url.starts_with("memory:") {
            "standalone"
        } else {
            "distributed"
        }
    }
}
