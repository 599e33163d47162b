//! Shared helpers of the conformance suite: backend addresses from the environment, unique
//! names, polling, and a [`Cleanup`] guard that removes a test's external state (database,
//! queues, keys, objects) when the test ends, whether it passed or panicked.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// PostgreSQL server the per-test databases are created on.
pub const DATABASE_URL_VAR: &str = "CLIMATE_TEST_DATABASE_URL";
/// RabbitMQ broker.
pub const AMQP_URL_VAR: &str = "CLIMATE_TEST_AMQP_URL";
/// Redis server.
pub const REDIS_URL_VAR: &str = "CLIMATE_TEST_REDIS_URL";
/// S3-compatible endpoint (no default: the S3 tests fail when it is missing).
pub const S3_ENDPOINT_VAR: &str = "CLIMATE_TEST_S3_ENDPOINT";
/// Bucket of the S3 tests.
pub const S3_BUCKET_VAR: &str = "CLIMATE_TEST_S3_BUCKET";

/// The value of `var`, or `default` when unset or empty.
pub fn env_or(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Base PostgreSQL URL (a maintenance database on the test server).
pub fn database_url() -> String {
    env_or(
        DATABASE_URL_VAR,
        "postgres://postgres@127.0.0.1:5432/postgres",
    )
}

/// RabbitMQ URL.
pub fn amqp_url() -> String {
    env_or(
        AMQP_URL_VAR,
        "amqp://guest:guest@127.0.0.1:5672/climate-test",
    )
}

/// Redis URL.
pub fn redis_url() -> String {
    env_or(REDIS_URL_VAR, "redis://127.0.0.1:6379")
}

/// S3 endpoint and bucket.
///
/// # Panics
/// When `CLIMATE_TEST_S3_ENDPOINT` is not set: S3 tests never skip silently.
pub fn s3_target() -> (String, String) {
    let endpoint = std::env::var(S3_ENDPOINT_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| {
            panic!(
                "{S3_ENDPOINT_VAR} is not set: start the S3 test server: make test does it \
                 (scripts/test-services.sh)"
            )
        });
    (endpoint, env_or(S3_BUCKET_VAR, "climate-test"))
}

/// A fresh 32-hex-digit identifier for names that must not collide between parallel tests.
pub fn unique() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Polls `check` every 50 ms until it returns `true` or `timeout` passes; returns the last
/// answer. For brokers that settle asynchronously (dead-lettering, queue counters).
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type CleanupTask = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Runs an async clean-up when dropped, on its own thread and runtime (so it works from any
/// test runtime and during a panic), bounded to ten seconds. Best effort: failures are
/// printed, never raised. The task must open its own connections.
pub struct Cleanup {
    label: String,
    task: Option<CleanupTask>,
}

impl std::fmt::Debug for Cleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cleanup")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl Cleanup {
    /// A guard running `task` on drop.
    pub fn new<F, Fut>(label: impl Into<String>, task: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self {
            label: label.into(),
            task: Some(Box::new(move || Box::pin(task()))),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        let label = self.label.clone();
        let joined = std::thread::spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    // The timer must be created inside the runtime.
                    let bounded =
                        async { tokio::time::timeout(Duration::from_secs(10), task()).await };
                    if rt.block_on(bounded).is_err() {
                        eprintln!("cleanup of {label} timed out");
                    }
                }
                Err(e) => eprintln!("cleanup of {label}: no runtime: {e}"),
            }
        })
        .join();
        if joined.is_err() {
            eprintln!("cleanup of {} panicked", self.label);
        }
    }
}
