//! The asynchronous-upstream machine: for upstreams that take a request, queue it as a job,
//! and later offer its result for download (the Copernicus CDS; CLMS works the same way).
//!
//! A provider describes the protocol by implementing [`AsyncUpstream`] (submit, poll,
//! download, and where finished results are cached); [`advance`] moves one request a step on
//! each attempt of the run and never waits: a job still queued or running answers
//! [`Advance::Waiting`], and the provider answers [`Retry::Pending`] so no worker is held. The
//! jobs in flight live in [`UpstreamState`], a typed document the worker stores with the run
//! between attempts, so a restarted or different worker resumes polling the same job instead
//! of submitting again. A job that vanished upstream or whose download link expired is
//! submitted again, at most [`MAX_RESUBMITS`] times per request, so an upstream that keeps
//! failing ends the run instead of looping.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ProviderError, Retry};

/// How often one request may be submitted again (vanished job, expired link) before the run
/// fails.
pub const MAX_RESUBMITS: u32 = 3;

/// The requests of one run that are waiting on the upstream, by request key (the key of their
/// result in the download cache). Stored with the run as JSON; the field names are those the
/// CDS provider stored before this type existed, so suspended runs resume across the upgrade.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamState {
    /// The upstream job of each submitted request.
    #[serde(default)]
    pub jobs: BTreeMap<String, String>,
    /// How often each request was submitted again.
    #[serde(default)]
    pub resubmits: BTreeMap<String, u32>,
    /// When each request was first submitted (what the progress message counts from).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub since: BTreeMap<String, DateTime<Utc>>,
}

impl UpstreamState {
    /// The state stored with a run (`null` at first; unreadable state starts afresh, which
    /// at worst submits again).
    #[must_use]
    pub fn from_json(value: &serde_json::Value) -> Self {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }

    /// As stored with the run.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Drops `key`'s job so that it is submitted again.
    ///
    /// # Errors
    /// A permanent error once the request was submitted again [`MAX_RESUBMITS`] times.
    fn resubmit(
        &mut self,
        provider: &'static str,
        key: &str,
        why: &str,
    ) -> Result<(), ProviderError> {
        self.jobs.remove(key);
        let n = self.resubmits.entry(key.to_owned()).or_default();
        *n += 1;
        if *n > MAX_RESUBMITS {
            return Err(ProviderError::permanent(
                provider,
                format!("the request was submitted {n} times without a usable result ({why})"),
            ));
        }
        Ok(())
    }
}

/// What the upstream says of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    /// Queued or running upstream: the upstream's word for it (`accepted`, `running`, …).
    Waiting(String),
    /// Done: the result is at this URL.
    Ready(String),
    /// The upstream no longer knows the job (dismissed, expired): request again.
    Gone,
    /// The job failed upstream, for this reason.
    Failed(String),
}

/// Why a result could not be downloaded.
#[derive(Debug, Clone)]
pub enum DownloadError {
    /// The link expired (the upstream does not say when): request the data again.
    Expired(String),
    /// Any other failure, classified as usual.
    Failed(ProviderError),
}

/// An upstream that answers requests asynchronously.
#[async_trait::async_trait]
pub trait AsyncUpstream: Send + Sync {
    /// The provider's name (in errors).
    fn provider(&self) -> &'static str;
    /// The upstream's name in messages (`CDS`).
    fn label(&self) -> &'static str;
    /// A finished request's file when it is in the download cache already.
    ///
    /// # Errors
    /// When the cache cannot be read.
    async fn cached(&self, key: &str) -> Result<Option<PathBuf>, ProviderError>;
    /// Submits `request`; the upstream's job id.
    ///
    /// # Errors
    /// When the upstream refuses it (permanent) or cannot be reached (transient).
    async fn submit(&self, request: &serde_json::Value) -> Result<String, ProviderError>;
    /// What job `job` is doing.
    ///
    /// # Errors
    /// When the upstream cannot be asked (transient) or refuses (permanent).
    async fn poll(&self, job: &str) -> Result<JobStatus, ProviderError>;
    /// Downloads a ready result from `href` into the download cache under `key`.
    ///
    /// # Errors
    /// [`DownloadError::Expired`] for a dead link, [`DownloadError::Failed`] otherwise.
    async fn download(&self, key: &str, href: &str) -> Result<PathBuf, DownloadError>;
}

/// Where one request stands after [`advance`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    /// The result, downloaded (or found in the cache).
    Ready(PathBuf),
    /// Still with the upstream: what it is doing, for the run's progress message.
    Waiting(String),
}

/// Moves request `key` one step: its cached result, or poll its job (downloading a finished
/// one), or submit it. Never waits for the upstream.
///
/// # Errors
/// The upstream's refusals and failures; a permanent error once a request was submitted again
/// too often.
pub async fn advance(
    upstream: &dyn AsyncUpstream,
    state: &mut UpstreamState,
    key: &str,
    request: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<Advance, ProviderError> {
    let provider = upstream.provider();
    if let Some(path) = upstream.cached(key).await? {
        forget(state, key);
        return Ok(Advance::Ready(path));
    }
    if let Some(job) = state.jobs.get(key).cloned() {
        match upstream.poll(&job).await? {
            JobStatus::Waiting(what) => {
                return Ok(Advance::Waiting(waiting(
                    &job,
                    &what,
                    state.since.get(key),
                    now,
                )));
            }
            JobStatus::Ready(href) => match upstream.download(key, &href).await {
                Ok(path) => {
                    forget(state, key);
                    return Ok(Advance::Ready(path));
                }
                Err(DownloadError::Expired(why)) => {
                    tracing::warn!(provider, job = %job, %why, "download link expired; submitting again");
                    state.resubmit(provider, key, &why)?;
                }
                Err(DownloadError::Failed(e)) => return Err(e),
            },
            JobStatus::Gone => {
                tracing::warn!(provider, job = %job, "upstream job vanished; submitting again");
                state.resubmit(provider, key, &format!("job {job} vanished"))?;
            }
            JobStatus::Failed(why) => {
                return Err(ProviderError::permanent(
                    provider,
                    format!("{} job {job} failed: {why}", upstream.label()),
                ));
            }
        }
    }
    let job = upstream.submit(request).await?;
    tracing::info!(provider, job = %job, "upstream job submitted");
    state.jobs.insert(key.to_owned(), job.clone());
    state.since.entry(key.to_owned()).or_insert(now);
    Ok(Advance::Waiting(format!("job {job} submitted")))
}

/// The run's answer while requests wait: [`Retry::Pending`], to be polled after `poll`.
#[must_use]
pub fn pending(
    provider: &'static str,
    upstream: &str,
    waiting: &[String],
    poll: std::time::Duration,
) -> ProviderError {
    ProviderError {
        provider,
        message: format!("waiting for {upstream}: {}", waiting.join("; ")),
        retry: Retry::Pending {
            after_ms: u64::try_from(poll.as_millis()).unwrap_or(u64::MAX),
        },
    }
}

fn forget(state: &mut UpstreamState, key: &str) {
    state.jobs.remove(key);
    state.since.remove(key);
}

fn waiting(job: &str, what: &str, since: Option<&DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match since.map(|t| (now - *t).num_seconds().max(0)) {
        Some(s) if s >= 60 => format!("job {job} {what} for {}m{:02}s", s / 60, s % 60),
        Some(s) => format!("job {job} {what} for {s}s"),
        None => format!("job {job} {what}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A scripted upstream: polls answer the queued statuses in order, downloads the queued
    /// outcomes; every call is recorded.
    #[derive(Default)]
    struct Script {
        cached: Mutex<Option<PathBuf>>,
        polls: Mutex<Vec<JobStatus>>,
        downloads: Mutex<Vec<Result<PathBuf, DownloadError>>>,
        calls: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl AsyncUpstream for Script {
        fn provider(&self) -> &'static str {
            "scripted"
        }
        fn label(&self) -> &'static str {
            "Script"
        }
        async fn cached(&self, _key: &str) -> Result<Option<PathBuf>, ProviderError> {
            Ok(self.cached.lock().expect("lock").clone())
        }
        async fn submit(&self, request: &serde_json::Value) -> Result<String, ProviderError> {
            let mut calls = self.calls.lock().expect("lock");
            calls.push(format!("submit {request}"));
            Ok(format!(
                "j{}",
                calls.iter().filter(|c| c.starts_with("submit")).count()
            ))
        }
        async fn poll(&self, job: &str) -> Result<JobStatus, ProviderError> {
            self.calls.lock().expect("lock").push(format!("poll {job}"));
            Ok(self.polls.lock().expect("lock").remove(0))
        }
        async fn download(&self, key: &str, href: &str) -> Result<PathBuf, DownloadError> {
            self.calls
                .lock()
                .expect("lock")
                .push(format!("download {key} {href}"));
            self.downloads.lock().expect("lock").remove(0)
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + secs, 0).expect("valid")
    }

    #[tokio::test]
    async fn a_request_is_submitted_once_polled_and_downloaded() {
        let up = Script::default();
        up.polls.lock().expect("lock").extend([
            JobStatus::Waiting("accepted".into()),
            JobStatus::Waiting("running".into()),
            JobStatus::Ready("https://h/r.nc".into()),
        ]);
        up.downloads
            .lock()
            .expect("lock")
            .push(Ok(PathBuf::from("/cache/r.nc")));
        let mut state = UpstreamState::default();
        let req = serde_json::json!({"month": "01"});
        let a = advance(&up, &mut state, "k", &req, at(0))
            .await
            .expect("submit");
        assert_eq!(a, Advance::Waiting("job j1 submitted".into()));
        // The state survives a round trip through the run's stored JSON.
        let mut state = UpstreamState::from_json(&state.to_json());
        assert_eq!(state.jobs.get("k").map(String::as_str), Some("j1"));
        let a = advance(&up, &mut state, "k", &req, at(30))
            .await
            .expect("poll");
        assert_eq!(a, Advance::Waiting("job j1 accepted for 30s".into()));
        let a = advance(&up, &mut state, "k", &req, at(150))
            .await
            .expect("poll");
        assert_eq!(a, Advance::Waiting("job j1 running for 2m30s".into()));
        let a = advance(&up, &mut state, "k", &req, at(200))
            .await
            .expect("download");
        assert_eq!(a, Advance::Ready(PathBuf::from("/cache/r.nc")));
        assert_eq!(
            state,
            UpstreamState {
                resubmits: BTreeMap::new(),
                ..UpstreamState::default()
            }
        );
        assert_eq!(
            *up.calls.lock().expect("lock"),
            vec![
                "submit {\"month\":\"01\"}",
                "poll j1",
                "poll j1",
                "poll j1",
                "download k https://h/r.nc"
            ]
        );
    }

    #[tokio::test]
    async fn vanished_jobs_and_expired_links_are_requested_again_a_bounded_number_of_times() {
        let up = Script::default();
        let mut state = UpstreamState::default();
        let req = serde_json::json!({});
        advance(&up, &mut state, "k", &req, at(0))
            .await
            .expect("submit");
        for round in 1..=MAX_RESUBMITS {
            if round % 2 == 1 {
                up.polls.lock().expect("lock").push(JobStatus::Gone);
            } else {
                up.polls
                    .lock()
                    .expect("lock")
                    .push(JobStatus::Ready("https://h/x".into()));
                up.downloads
                    .lock()
                    .expect("lock")
                    .push(Err(DownloadError::Expired("HTTP 404".into())));
            }
            let a = advance(&up, &mut state, "k", &req, at(10))
                .await
                .expect("resubmitted");
            assert_eq!(a, Advance::Waiting(format!("job j{} submitted", round + 1)));
            assert_eq!(state.resubmits.get("k"), Some(&round));
        }
        up.polls.lock().expect("lock").push(JobStatus::Gone);
        let e = advance(&up, &mut state, "k", &req, at(20))
            .await
            .expect_err("too many resubmissions");
        assert_eq!(e.retry, Retry::Permanent);
        assert!(e.message.contains("submitted 4 times"), "{}", e.message);
    }

    #[tokio::test]
    async fn failed_jobs_fail_and_cached_results_need_no_upstream() {
        let up = Script::default();
        let mut state = UpstreamState::default();
        state.jobs.insert("k".into(), "j9".into());
        up.polls
            .lock()
            .expect("lock")
            .push(JobStatus::Failed("no data for 1900".into()));
        let e = advance(&up, &mut state, "k", &serde_json::json!({}), at(0))
            .await
            .expect_err("failed upstream");
        assert_eq!(e.retry, Retry::Permanent);
        assert_eq!(e.message, "Script job j9 failed: no data for 1900");

        *up.cached.lock().expect("lock") = Some(PathBuf::from("/cache/k.nc"));
        let a = advance(&up, &mut state, "k", &serde_json::json!({}), at(1))
            .await
            .expect("cached");
        assert_eq!(a, Advance::Ready(PathBuf::from("/cache/k.nc")));
        assert!(state.jobs.is_empty(), "a cached result forgets its job");
        assert_eq!(
            up.calls.lock().expect("lock").len(),
            1,
            "only the first poll"
        );
    }

    #[test]
    fn state_stored_before_the_type_existed_still_reads() {
        let old = serde_json::json!({"jobs": {"cache/cds/x.nc": "abc"}, "resubmits": {"cache/cds/x.nc": 2}});
        let state = UpstreamState::from_json(&old);
        assert_eq!(state.jobs["cache/cds/x.nc"], "abc");
        assert_eq!(state.resubmits["cache/cds/x.nc"], 2);
        assert_eq!(
            UpstreamState::from_json(&serde_json::Value::Null),
            UpstreamState::default()
        );
    }
}
