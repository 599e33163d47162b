//! Downloads from upstream providers: retries with exponential backoff and full jitter,
//! `Retry-After` honoured, connect and stall timeouts, truncation detection, per-provider
//! concurrency, and a download cache in the object store keyed by URL, so that a retry or a
//! later sync never downloads the same bytes twice.
//!
//! A file enters the cache only after it downloaded completely and passed the caller's
//! validation (it decodes), and it enters atomically (temporary name, then rename), so neither a
//! truncated body nor a corrupt file is ever reused. Workers read through a local mirror of the
//! cache (`scratch`), because the decoders want local files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::upstream::{ProviderError, Retry};

mod cache;
mod credentials;
mod requests;
pub use cache::*;
pub use credentials::*;
#[cfg(test)]
mod tests;

/// Retry, timeout and concurrency settings of one provider's downloads.
#[derive(Clone)]
pub struct HttpSettings {
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response before it counts as a stall.
    pub read_timeout: Duration,
    /// Attempts per file before the download fails (transiently: the run may retry later).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled each time, with full jitter.
    pub base_delay: Duration,
    /// Longest backoff (also caps `Retry-After`).
    pub max_delay: Duration,
    /// Downloads in flight at once, per process.
    pub concurrency: usize,
    /// The provider's API key, when it needs one (sent only to the provider's API, never
    /// logged).
    pub api_key: Option<String>,
    /// netrc file with the provider's credentials (default: `$NETRC`, then `~/.netrc`).
    pub netrc: Option<PathBuf>,
    /// Least time between the starts of two requests to the provider, per process (request
    /// pacing for upstreams with rate limits); zero for none.
    pub min_interval: Duration,
}

impl std::fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSettings")
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("base_delay", &self.base_delay)
            .field("max_delay", &self.max_delay)
            .field("concurrency", &self.concurrency)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("netrc", &self.netrc)
            .field("min_interval", &self.min_interval)
            .finish()
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            concurrency: 4,
            api_key: None,
            netrc: None,
            min_interval: Duration::ZERO,
        }
    }
}

/// What providers get to work with: a downloader per provider (each with its own settings and
/// concurrency limit), all sharing the download cache and its local mirror.
#[derive(Debug, Clone)]
pub struct ProviderEnv {
    default: Downloader,
    by_provider: std::collections::BTreeMap<String, Downloader>,
}

impl ProviderEnv {
    /// An environment caching in `store` (under `cache/`) and mirroring into `scratch`, with
    /// `settings` per provider name and `default` for the others.
    ///
    /// # Errors
    /// When an HTTP client cannot be built.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        scratch: PathBuf,
        default: HttpSettings,
        settings: impl IntoIterator<Item = (String, HttpSettings)>,
    ) -> Result<Self, reqwest::Error> {
        let by_provider = settings
            .into_iter()
            .map(|(name, s)| Ok((name, Downloader::new(store.clone(), scratch.clone(), s)?)))
            .collect::<Result<_, reqwest::Error>>()?;
        Ok(Self {
            default: Downloader::new(store, scratch, default)?,
            by_provider,
        })
    }

    /// A directory under the scratch area (created by the caller).
    pub fn scratch_dir(&self, name: &str) -> PathBuf {
        self.default.scratch.join(name)
    }

    /// The downloader of a provider.
    pub fn downloader(&self, provider: &str) -> &Downloader {
        self.by_provider.get(provider).unwrap_or(&self.default)
    }
}

/// Downloads files through the object-store cache.
#[derive(Debug, Clone)]
pub struct Downloader {
    client: reqwest::Client,
    settings: HttpSettings,
    permits: Arc<Semaphore>,
    /// The earliest start of the next request (pacing).
    next_request: Arc<tokio::sync::Mutex<tokio::time::Instant>>,
    store: Arc<dyn ObjectStore>,
    scratch: PathBuf,
}

/// A file available locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Local path (in the scratch mirror).
    pub path: PathBuf,
    /// Bytes of the file.
    pub size: u64,
    /// Whether it came from the cache rather than the network.
    pub cached: bool,
}

/// The outcome of one try of a request.
enum Attempt<T> {
    Done(T),
    Transient(String, Option<Duration>),
    Permanent(String),
}

/// Whether an answer with `status` is worth another attempt: 429, 408 and 5xx.
fn retryable(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

impl<T> Attempt<T> {
    /// What an answer that is not the one wanted makes of the attempt: 429, 408 and 5xx are
    /// worth another (after the upstream's `Retry-After`), anything else is final.
    fn refused(r: &reqwest::Response) -> Self {
        let status = r.status();
        if retryable(status) {
            Self::Transient(format!("HTTP {status}"), retry_after(r.headers()))
        } else {
            Self::Permanent(format!("HTTP {status}"))
        }
    }

    /// A request that got no answer: always worth another attempt.
    fn unanswered(e: &reqwest::Error) -> Self {
        let why = if e.is_timeout() {
            "timed out".to_owned()
        } else if e.is_connect() {
            format!("cannot connect: {e}")
        } else {
            format!("request failed: {e}")
        };
        Self::Transient(why, None)
    }
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .to_owned();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(&v).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    wait.to_std().ok()
}

impl Downloader {
    /// A downloader caching in `store` and mirroring into `scratch`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        scratch: PathBuf,
        settings: HttpSettings,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .user_agent(concat!("climate-api/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            next_request: Arc::new(tokio::sync::Mutex::new(tokio::time::Instant::now())),
            settings,
            store,
            scratch,
        })
    }

    fn err(provider: &'static str, retry: Retry, message: String) -> ProviderError {
        ProviderError {
            provider,
            message,
            retry,
        }
    }

    /// Runs `attempt` until it is done or fails permanently, sleeping between transient
    /// failures: the server's `Retry-After` when it gives one, else exponential backoff with
    /// full jitter, both capped at `max_delay`. After the last attempt the error is transient
    /// (the run may try again later) and names the last cause.
    async fn with_retries<T, F, Fut>(
        &self,
        provider: &'static str,
        shown: &str,
        what: &str,
        mut attempt: F,
    ) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let max = self.settings.max_attempts;
        let mut last = String::new();
        for n in 1..=max {
            self.pace().await;
            match attempt().await {
                Attempt::Done(v) => return Ok(v),
                Attempt::Permanent(cause) => {
                    metrics::counter!("climate_upstream_errors_total", "provider" => provider, "kind" => "permanent")
                        .increment(1);
                    return Err(Self::err(
                        provider,
                        Retry::Permanent,
                        format!("{shown}: {cause}"),
                    ));
                }
                Attempt::Transient(cause, wait) => {
                    metrics::counter!("climate_upstream_errors_total", "provider" => provider, "kind" => "transient")
                        .increment(1);
                    last = cause;
                    if n < max {
                        let delay = wait
                            .map_or_else(|| self.backoff(n), |w| w.min(self.settings.max_delay));
                        tracing::warn!(provider, url = %shown, attempt = n, error = %last, retry_in_ms = delay.as_millis() as u64, "{what} failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
        Err(Self::err(
            provider,
            Retry::Transient,
            format!("{shown}: {last} (after {max} attempts)"),
        ))
    }

    /// The object-store cache's copy at `key`: `None` when there is none or it cannot be read
    /// (it is fetched again).
    ///
    /// # Errors
    /// A transient [`ProviderError`] when the store itself is unavailable.
    async fn cache_copy(
        &self,
        provider: &'static str,
        key: &StorePath,
        shown: &str,
    ) -> Result<Option<bytes::Bytes>, ProviderError> {
        match self.store.get(key).await {
            Ok(obj) => Ok(obj.bytes().await.ok()),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Self::err(
                provider,
                Retry::Transient,
                format!("download cache unavailable for {shown}: {e}"),
            )),
        }
    }

    /// One of the process's download slots (`concurrency`), held for the request.
    async fn slot(
        &self,
        provider: &'static str,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, ProviderError> {
        self.permits.acquire().await.map_err(|e| {
            Self::err(
                provider,
                Retry::Transient,
                format!("download slots closed: {e}"),
            )
        })
    }

    /// Waits for the provider's next request slot when it is paced (`min_interval`).
    async fn pace(&self) {
        let interval = self.settings.min_interval;
        if interval.is_zero() {
            return;
        }
        let mut next = self.next_request.lock().await;
        let now = tokio::time::Instant::now();
        if *next > now {
            tokio::time::sleep_until(*next).await;
        }
        *next = (*next).max(now) + interval;
    }

    fn backoff(&self, attempt: u32) -> Duration {
        climate_domain::retry::RetryPolicy::new(self.settings.base_delay, self.settings.max_delay)
            .delay(attempt, rand::rng().random::<f64>())
            .max(Duration::from_millis(1))
    }

    async fn attempt(&self, url: &str, tmp: &Path) -> Attempt<u64> {
        let resp = match self.client.get(url).send().await {
            Ok(r) => r,
            Err(e) => return Attempt::unanswered(&e),
        };
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Attempt::Permanent(
                "HTTP 404 Not Found: the upstream does not publish this file".into(),
            );
        }
        if !status.is_success() {
            return Attempt::refused(&resp);
        }
        let expected = resp.content_length();
        let mut file = match tokio::fs::File::create(tmp).await {
            Ok(f) => f,
            Err(e) => {
                return Attempt::Transient(format!("cannot write {}: {e}", tmp.display()), None);
            }
        };
        let mut got: u64 = 0;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) if e.is_timeout() => {
                    return Attempt::Transient(format!("stalled after {got} bytes"), None);
                }
                Err(e) => {
                    return Attempt::Transient(
                        format!("body interrupted after {got} bytes: {e}"),
                        None,
                    );
                }
            };
            got += chunk.len() as u64;
            if let Err(e) = file.write_all(&chunk).await {
                return Attempt::Transient(format!("cannot write {}: {e}", tmp.display()), None);
            }
        }
        if let Err(e) = file.flush().await {
            return Attempt::Transient(format!("cannot write {}: {e}", tmp.display()), None);
        }
        match expected {
            Some(n) if n != got => {
                Attempt::Transient(format!("truncated body: {got} of {n} bytes"), None)
            }
            _ => Attempt::Done(got),
        }
    }
}

fn uuid_like() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}
