//! Upstreams: how a failure to get data is classified ([`ProviderError`], [`Retry`]), and
//! [`jobs`], the machine for upstreams that answer a request asynchronously (submit a job, poll
//! it, download its result) with state that survives between attempts.
//!
//! Both the download layer ([`crate::http`]) and the providers use this module; it uses
//! neither, so there is no cycle between them.

pub mod jobs;

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Upstream hiccup (5xx, timeout, truncated download): retry with backoff.
    Transient,
    /// Bad parameters, missing data, corrupt files: fail the run.
    Permanent,
    /// An upstream job is still running: come back after this many milliseconds, resuming
    /// from the state the provider left in its request's `state`. Waiting never holds a
    /// worker and uses no attempt.
    Pending {
        /// Suggested delay before the next attempt.
        after_ms: u64,
    },
}

/// A provider failure, naming the provider and the cause (never credentials).
#[derive(Debug, Clone, thiserror::Error)]
#[error("provider {provider}: {message}")]
pub struct ProviderError {
    /// Provider name.
    pub provider: &'static str,
    /// What went wrong.
    pub message: String,
    /// Retry classification.
    pub retry: Retry,
}

impl ProviderError {
    /// A failure retrying cannot fix.
    pub fn permanent(provider: &'static str, message: impl Into<String>) -> Self {
        Self {
            provider,
            message: message.into(),
            retry: Retry::Permanent,
        }
    }
}
