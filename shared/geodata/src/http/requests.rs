//! Requests other than cached downloads: JSON API calls, HEAD, ranged reads and object GETs,
//! all with the downloader's retries.

use super::*;

impl Downloader {
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
                Ok(r) if retryable(r.status()) => Attempt::refused(&r),
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
                Err(e) => Attempt::unanswered(&e),
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
                Ok(r) => Attempt::refused(&r),
                Err(e) => Attempt::unanswered(&e),
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
        if let Some(bytes) = self.cache_copy(provider, &key, &shown).await?
            && bytes.len() as u64 == len
        {
            return Ok(bytes.to_vec());
        }
        let _permit = self.slot(provider).await?;
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
                    Ok(r) => Attempt::refused(&r),
                    Err(e) => Attempt::unanswered(&e),
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
        if let Some(key) = &key
            && let Some(bytes) = self.cache_copy(provider, key, &shown).await?
        {
            return Ok(Some(bytes));
        }
        let _permit = self.slot(provider).await?;
        let bytes = self
            .with_retries(provider, &shown, "download", || async {
                let mut req = self.client.get(url);
                if let Some(c) = auth {
                    req = req.basic_auth(&c.login, Some(&c.password));
                }
                let r = match req.send().await {
                    Ok(r) => r,
                    Err(e) => return Attempt::unanswered(&e),
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
                if !status.is_success() {
                    return Attempt::refused(&r);
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
}
