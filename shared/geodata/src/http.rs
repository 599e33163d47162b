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

use crate::providers::{ProviderError, Retry};

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

/// The URL for messages: no user info, no query (credentials and tokens live there).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            let had_query = u.query().is_some();
            u.set_query(None);
            if had_query {
                format!("{u}?…")
            } else {
                u.to_string()
            }
        }
        Err(_) => "<invalid url>".to_owned(),
    }
}

/// Cache key of a URL: `cache/http/{host}/{path}`, each segment reduced to a safe alphabet, with
/// a hash of the query appended when there is one.
pub fn cache_key(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut key = format!("cache/http/{}", clean(u.host_str()?));
    if let Some(port) = u.port() {
        key.push_str(&format!("_{port}"));
    }
    for seg in u.path_segments()? {
        if !seg.is_empty() && seg != "." && seg != ".." {
            key.push('/');
            key.push_str(&clean(seg));
        }
    }
    if let Some(q) = u.query() {
        // FNV-1a keeps keys stable across releases (unlike the std hasher).
        let h = q.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        key.push_str(&format!("_q{h:016x}"));
    }
    Some(key)
}

/// HTTP Basic credentials (never logged: `Debug` hides the password).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name (may be empty: some upstreams only check the token).
    pub login: String,
    /// Password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("login", &self.login)
            .field("password", &"***")
            .finish()
    }
}

/// The credentials of `host` in a netrc file's text: its `machine` entry, else the `default`
/// entry. Tokens are whitespace-separated; `macdef` bodies (up to an empty line) are skipped.
pub fn netrc_lookup(text: &str, host: &str) -> Option<Credentials> {
    let mut found: Option<Credentials> = None;
    let mut default: Option<Credentials> = None;
    let mut lines = text.lines();
    let mut tokens: Vec<String> = Vec::new();
    while let Some(line) = lines.next() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"macdef") {
            // A macro runs to the next empty line.
            for l in lines.by_ref() {
                if l.trim().is_empty() {
                    break;
                }
            }
            continue;
        }
        tokens.extend(words.iter().map(|w| (*w).to_owned()));
    }
    // Entries: `machine NAME` or `default`, followed by key/value pairs.
    let mut i = 0;
    while i < tokens.len() {
        let (name, mut j) = match tokens[i].as_str() {
            "machine" if i + 1 < tokens.len() => (Some(tokens[i + 1].clone()), i + 2),
            "default" => (None, i + 1),
            _ => {
                i += 1;
                continue;
            }
        };
        let mut c = Credentials {
            login: String::new(),
            password: String::new(),
        };
        while j + 1 < tokens.len() && !matches!(tokens[j].as_str(), "machine" | "default") {
            match tokens[j].as_str() {
                "login" => c.login = tokens[j + 1].clone(),
                "password" => c.password = tokens[j + 1].clone(),
                _ => {}
            }
            j += 2;
        }
        match name {
            Some(n) if n.eq_ignore_ascii_case(host) && found.is_none() => found = Some(c),
            None if default.is_none() => default = Some(c),
            _ => {}
        }
        i = j;
    }
    found.or(default)
}

/// The outcome of one try of a request.
enum Attempt<T> {
    Done(T),
    Transient(String, Option<Duration>),
    Permanent(String),
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

    /// Makes `url` available locally: from the scratch mirror, the object-store cache, or the
    /// network (with retries). `validate` checks a fresh download before it is cached; a file
    /// it rejects fails permanently and is not kept.
    ///
    /// # Errors
    /// [`ProviderError`] naming the provider, the redacted URL and the cause: transient after
    /// the last retry of a transient fault, permanent for 4xx (other than 408/429) and invalid
    /// files.
    pub async fn fetch(
        &self,
        provider: &'static str,
        url: &str,
        validate: &(dyn Fn(&Path) -> Result<(), String> + Sync),
    ) -> Result<Fetched, ProviderError> {
        let key = cache_key(url).ok_or_else(|| {
            Self::err(
                provider,
                Retry::Permanent,
                format!("invalid URL {}", redact_url(url)),
            )
        })?;
        self.fetch_keyed(provider, url, &key, validate).await
    }

    /// A file already in the cache under `key`, if any (never touches the network).
    ///
    /// # Errors
    /// [`ProviderError`] when the cache cannot be read.
    pub async fn cached(
        &self,
        provider: &'static str,
        key: &str,
    ) -> Result<Option<Fetched>, ProviderError> {
        let local = self.scratch.join(key);
        if let Ok(meta) = tokio::fs::metadata(&local).await {
            return Ok(Some(Fetched {
                path: local,
                size: meta.len(),
                cached: true,
            }));
        }
        match self.store.head(&StorePath::from(key)).await {
            // Present in the shared cache: fetch_keyed mirrors it locally without the network.
            Ok(_) => self
                .fetch_keyed(provider, "http://cache.invalid/", key, &|_| Ok(()))
                .await
                .map(Some),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Self::err(
                provider,
                Retry::Transient,
                format!("download cache unavailable: {e}"),
            )),
        }
    }

    /// Like [`Downloader::fetch`], caching under `key` instead of the URL (for URLs that change
    /// between calls, such as signed download links).
    ///
    /// # Errors
    /// As [`Downloader::fetch`].
    pub async fn fetch_keyed(
        &self,
        provider: &'static str,
        url: &str,
        key: &str,
        validate: &(dyn Fn(&Path) -> Result<(), String> + Sync),
    ) -> Result<Fetched, ProviderError> {
        let shown = redact_url(url);
        let key = key.to_owned();
        let local = self.scratch.join(&key);
        if let Ok(meta) = tokio::fs::metadata(&local).await {
            return Ok(Fetched {
                path: local,
                size: meta.len(),
                cached: true,
            });
        }
        let io = |what: &str, e: std::io::Error| {
            Self::err(
                provider,
                Retry::Transient,
                format!("{what} {}: {e}", local.display()),
            )
        };
        if let Some(parent) = local.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io("creating", e))?;
        }
        // The temporary name ends with the real file name, so format detection by extension
        // works while the download is validated.
        let name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = local.with_file_name(format!(".part-{}-{name}", uuid_like()));
        let store_key = StorePath::from(key.as_str());

        // The object-store cache (shared by every worker).
        match self.store.get(&store_key).await {
            Ok(obj) => {
                let bytes = obj.bytes().await.map_err(|e| {
                    Self::err(
                        provider,
                        Retry::Transient,
                        format!("reading cached {shown}: {e}"),
                    )
                })?;
                tokio::fs::write(&tmp, &bytes)
                    .await
                    .map_err(|e| io("writing", e))?;
                tokio::fs::rename(&tmp, &local)
                    .await
                    .map_err(|e| io("renaming", e))?;
                return Ok(Fetched {
                    path: local,
                    size: bytes.len() as u64,
                    cached: true,
                });
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                return Err(Self::err(
                    provider,
                    Retry::Transient,
                    format!("download cache unavailable for {shown}: {e}"),
                ));
            }
        }

        // The network, with retries.
        let _permit = self.permits.acquire().await.map_err(|e| {
            Self::err(
                provider,
                Retry::Transient,
                format!("download slots closed: {e}"),
            )
        })?;
        let size = match self
            .with_retries(provider, &shown, "download", || self.attempt(url, &tmp))
            .await
        {
            Ok(size) => size,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        if let Err(cause) = validate(&tmp) {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(Self::err(
                provider,
                Retry::Permanent,
                format!("{shown}: the downloaded file is not usable: {cause}"),
            ));
        }
        let bytes = tokio::fs::read(&tmp).await.map_err(|e| io("reading", e))?;
        self.store
            .put(&store_key, PutPayload::from(bytes))
            .await
            .map_err(|e| Self::err(provider, Retry::Transient, format!("caching {shown}: {e}")))?;
        tokio::fs::rename(&tmp, &local)
            .await
            .map_err(|e| io("renaming", e))?;
        tracing::info!(provider, url = %shown, size_bytes = size, "downloaded");
        metrics::counter!("climate_download_bytes_total", "provider" => provider).increment(size);
        Ok(Fetched {
            path: local,
            size,
            cached: false,
        })
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

    /// Sends a JSON request to a provider's API with retries on 5xx, 429 and network faults
    /// (`Retry-After` honoured), returning the final status and body. 4xx answers are returned
    /// for the caller to interpret. `headers` carry credentials; they are never logged.
    ///
    /// # Errors
    /// [`ProviderError`] (transient) after the last retry; permanent for a non-JSON success.
    pub async fn request_json(
        &self,
        provider: &'static str,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), ProviderError> {
        let shown = redact_url(url);
        self.with_retries(provider, &shown, "API request", || async {
            let mut req = self.client.request(method.clone(), url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(r)
                    if r.status().is_server_error()
                        || r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS =>
                {
                    Attempt::Transient(format!("HTTP {}", r.status()), retry_after(r.headers()))
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
                    if (200..300).contains(&status) && json.is_null() {
                        Attempt::Permanent(format!("HTTP {status} with a body that is not JSON"))
                    } else {
                        Attempt::Done((status, json))
                    }
                }
                Err(e) => Attempt::Transient(format!("request failed: {e}"), None),
            }
        })
        .await
    }

    /// The provider's API key, if configured.
    pub fn api_key(&self) -> Option<&str> {
        self.settings.api_key.as_deref()
    }

    /// The size of `url`, by `HEAD` (with retries); `None` when the upstream answers 404 (not
    /// published).
    ///
    /// # Errors
    /// [`ProviderError`] as for [`Downloader::fetch`].
    pub async fn head(
        &self,
        provider: &'static str,
        url: &str,
    ) -> Result<Option<u64>, ProviderError> {
        let shown = redact_url(url);
        self.with_retries(provider, &shown, "HEAD", || async {
            match self.client.head(url).send().await {
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => Attempt::Done(None),
                Ok(r) if r.status().is_success() => match r
                    .headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    Some(n) => Attempt::Done(Some(n)),
                    None => Attempt::Permanent("HEAD gave no Content-Length".into()),
                },
                Ok(r)
                    if r.status().is_server_error()
                        || r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS =>
                {
                    Attempt::Transient(format!("HTTP {}", r.status()), retry_after(r.headers()))
                }
                Ok(r) => Attempt::Permanent(format!("HTTP {}", r.status())),
                Err(e) => Attempt::Transient(format!("request failed: {e}"), None),
            }
        })
        .await
    }

    /// `len` bytes of `url` at `offset`, by an HTTP range request (with retries), through the
    /// download cache: the same range of the same URL is fetched from upstream once.
    ///
    /// # Errors
    /// [`ProviderError`]: permanent when the server ignores ranges or the file is missing.
    pub async fn fetch_range(
        &self,
        provider: &'static str,
        url: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ProviderError> {
        let shown = redact_url(url);
        let key = cache_key(url)
            .map(|k| StorePath::from(format!("{k}.ranges/{offset}-{len}")))
            .ok_or_else(|| Self::err(provider, Retry::Permanent, format!("invalid URL {shown}")))?;
        match self.store.get(&key).await {
            Ok(obj) => {
                if let Ok(bytes) = obj.bytes().await
                    && bytes.len() as u64 == len
                {
                    return Ok(bytes.to_vec());
                }
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                return Err(Self::err(
                    provider,
                    Retry::Transient,
                    format!("download cache unavailable for {shown}: {e}"),
                ));
            }
        }
        let _permit = self.permits.acquire().await.map_err(|e| {
            Self::err(
                provider,
                Retry::Transient,
                format!("download slots closed: {e}"),
            )
        })?;
        let range = format!("bytes={offset}-{}", offset + len - 1);
        let bytes = self
            .with_retries(provider, &shown, "range request", || async {
                let resp = self
                    .client
                    .get(url)
                    .header(reqwest::header::RANGE, &range)
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status() == reqwest::StatusCode::PARTIAL_CONTENT => {
                        match r.bytes().await {
                            Ok(b) if b.len() as u64 == len => Attempt::Done(b),
                            Ok(b) => Attempt::Transient(
                                format!("truncated range: {} of {len} bytes", b.len()),
                                None,
                            ),
                            Err(e) => {
                                Attempt::Transient(format!("range body interrupted: {e}"), None)
                            }
                        }
                    }
                    Ok(r) if r.status() == reqwest::StatusCode::OK => Attempt::Permanent(
                        "the server ignored the Range header (answered 200)".into(),
                    ),
                    Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                        Attempt::Permanent("HTTP 404 Not Found".into())
                    }
                    Ok(r)
                        if r.status().is_server_error()
                            || r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS =>
                    {
                        Attempt::Transient(format!("HTTP {}", r.status()), retry_after(r.headers()))
                    }
                    Ok(r) => Attempt::Permanent(format!("HTTP {}", r.status())),
                    Err(e) => Attempt::Transient(format!("request failed: {e}"), None),
                }
            })
            .await?;
        metrics::counter!("climate_download_bytes_total", "provider" => provider)
            .increment(bytes.len() as u64);
        // Best effort: a cache write failure only costs a later download.
        let _ = self.store.put(&key, PutPayload::from(bytes.clone())).await;
        Ok(bytes.to_vec())
    }

    /// A whole object (a Zarr chunk or metadata document) in memory. With `cache_tag`, through
    /// the download cache under the URL's key plus the tag (which names the upstream's state the
    /// bytes belong to, so an object that changes upstream is fetched again once the tag
    /// changes); without, always from upstream (documents that change in place). `None` when
    /// the upstream answers 404, which for a Zarr chunk means "all fill value". `auth` is HTTP
    /// Basic credentials, sent with every request and never logged.
    ///
    /// # Errors
    /// [`ProviderError`]: transient after the last retry of a 5xx, 429, timeout or truncated
    /// body; permanent for 401/403 and other 4xx.
    pub async fn fetch_object(
        &self,
        provider: &'static str,
        url: &str,
        auth: Option<&Credentials>,
        cache_tag: Option<&str>,
    ) -> Result<Option<bytes::Bytes>, ProviderError> {
        let shown = redact_url(url);
        let key = match cache_tag {
            Some(tag) => Some(
                cache_key(url)
                    .map(|k| StorePath::from(format!("{k}@{tag}")))
                    .ok_or_else(|| {
                        Self::err(provider, Retry::Permanent, format!("invalid URL {shown}"))
                    })?,
            ),
            None => None,
        };
        if let Some(key) = &key {
            match self.store.get(key).await {
                Ok(obj) => {
                    if let Ok(bytes) = obj.bytes().await {
                        return Ok(Some(bytes));
                    }
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    return Err(Self::err(
                        provider,
                        Retry::Transient,
                        format!("download cache unavailable for {shown}: {e}"),
                    ));
                }
            }
        }
        let _permit = self.permits.acquire().await.map_err(|e| {
            Self::err(
                provider,
                Retry::Transient,
                format!("download slots closed: {e}"),
            )
        })?;
        let bytes = self
            .with_retries(provider, &shown, "download", || async {
                let mut req = self.client.get(url);
                if let Some(c) = auth {
                    req = req.basic_auth(&c.login, Some(&c.password));
                }
                let r = match req.send().await {
                    Ok(r) => r,
                    Err(e) if e.is_timeout() => {
                        return Attempt::Transient("timed out".into(), None);
                    }
                    Err(e) => return Attempt::Transient(format!("request failed: {e}"), None),
                };
                let status = r.status();
                if status == reqwest::StatusCode::NOT_FOUND {
                    return Attempt::Done(None);
                }
                if status == reqwest::StatusCode::UNAUTHORIZED
                    || status == reqwest::StatusCode::FORBIDDEN
                {
                    return Attempt::Permanent(format!(
                        "HTTP {status}: the upstream refused the credentials{}",
                        if auth.is_some() {
                            ""
                        } else {
                            " (none were configured)"
                        }
                    ));
                }
                if status.is_server_error()
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                {
                    return Attempt::Transient(format!("HTTP {status}"), retry_after(r.headers()));
                }
                if !status.is_success() {
                    return Attempt::Permanent(format!("HTTP {status}"));
                }
                let expected = r.content_length();
                match r.bytes().await {
                    Ok(b) => match expected {
                        Some(n) if n != b.len() as u64 => Attempt::Transient(
                            format!("truncated body: {} of {n} bytes", b.len()),
                            None,
                        ),
                        _ => Attempt::Done(Some(b)),
                    },
                    Err(e) => Attempt::Transient(format!("body interrupted: {e}"), None),
                }
            })
            .await?;
        if let Some(b) = &bytes {
            metrics::counter!("climate_download_bytes_total", "provider" => provider)
                .increment(b.len() as u64);
        }
        if let (Some(b), Some(key)) = (&bytes, &key) {
            // Best effort: a cache write failure only costs a later download.
            let _ = self.store.put(key, PutPayload::from(b.clone())).await;
        }
        Ok(bytes)
    }

    /// The configured credentials for `host`: the provider's `api_key` (as the token of user
    /// `login_for_key`), else the host's entry in the netrc file (`netrc` setting, `$NETRC`,
    /// or `~/.netrc`).
    ///
    /// # Errors
    /// A message when the netrc file exists but cannot be read.
    pub fn credentials(
        &self,
        host: &str,
        login_for_key: &str,
    ) -> Result<Option<Credentials>, String> {
        if let Some(key) = &self.settings.api_key {
            return Ok(Some(Credentials {
                login: login_for_key.to_owned(),
                password: key.clone(),
            }));
        }
        let path = self
            .settings
            .netrc
            .clone()
            .or_else(|| std::env::var_os("NETRC").map(PathBuf::from))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".netrc")));
        let Some(path) = path else { return Ok(None) };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(netrc_lookup(&text, host)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!(
                "cannot read the netrc file {}: {e}",
                path.display()
            )),
        }
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
            Err(e) if e.is_timeout() => return Attempt::Transient("timed out".into(), None),
            Err(e) if e.is_connect() => {
                return Attempt::Transient(format!("cannot connect: {e}"), None);
            }
            Err(e) => return Attempt::Transient(format!("request failed: {e}"), None),
        };
        let status = resp.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
        {
            return Attempt::Transient(format!("HTTP {status}"), retry_after(resp.headers()));
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Attempt::Permanent(
                "HTTP 404 Not Found: the upstream does not publish this file".into(),
            );
        }
        if !status.is_success() {
            return Attempt::Permanent(format!("HTTP {status}"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_and_keyed() {
        assert_eq!(
            redact_url("https://user:secret@example.org/a/b.tif?token=abc"),
            "https://example.org/a/b.tif?…"
        );
        assert_eq!(
            cache_key("https://data.worldpop.org/GIS/Population/2026/SLE/sle pop.tif").as_deref(),
            Some("cache/http/data.worldpop.org/GIS/Population/2026/SLE/sle_20pop.tif")
        );
        let a = cache_key("http://127.0.0.1:8080/x.nc?a=1");
        let b = cache_key("http://127.0.0.1:8080/x.nc?a=2");
        assert!(a.is_some() && a != b, "{a:?} {b:?}");
        assert!(cache_key("http://h/../../etc/passwd").is_some_and(|k| !k.contains("..")));
    }
}
