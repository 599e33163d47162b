//! The download cache: fetches through the validated cache in the object store, keyed by URL
//! (or by the caller's key), mirrored into the local scratch directory.

use super::*;

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

impl Downloader {
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
        validate: &(dyn Fn(&Path) -> Result<(), crate::raster::RasterError> + Sync),
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
        validate: &(dyn Fn(&Path) -> Result<(), crate::raster::RasterError> + Sync),
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
        if let Some(bytes) = self.cache_copy(provider, &store_key, &shown).await? {
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

        // The network, with retries.
        let _permit = self.slot(provider).await?;
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
                format!(
                    "{shown}: the downloaded file is not usable: {}",
                    cause.message
                ),
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
}
