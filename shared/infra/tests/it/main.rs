//! Backend-conformance tests of `climate-infra`.
//!
//! Every trait with a standalone and a distributed implementation (`Database`, `Queue`,
//! `Locks`, and the `Store` wrapper around `object_store`) is exercised by one suite whose test
//! bodies are written once and run against both implementations:
//!
//! - [`db`]: SQLite (file in a tempdir) and PostgreSQL (one fresh database per test);
//! - [`queue`]: the in-process queue and RabbitMQ (one queue per test);
//! - [`store`]: a local directory and S3 (one key prefix per test);
//! - [`locks`]: in-process locks and Redis (one key prefix per test).
//!
//! The distributed backends are reached through `CLIMATE_TEST_*` environment variables (see
//! [`support`]); PostgreSQL, RabbitMQ and Redis default to local servers, S3 has no default and
//! its tests fail with instructions when it is not configured. Every test isolates its own
//! state, so the suite runs in parallel under `cargo nextest`.

/// Generates, for each conformance test `name(&Fixture)`, one test per backend:
/// `backend::name` runs `name` on the fixture that backend's `setup` expression makes (which
/// also checks it is the backend it says).
macro_rules! conformance {
    ([$($backend:ident => $setup:expr),+ $(,)?], $names:tt) => {
        $(conformance!(@backend $backend, $setup, $names);)+
    };
    (@backend $backend:ident, $setup:expr, [$($name:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&$setup).await;
                }
            )*
        }
    };
}

mod db;
mod gc;
mod locks;
mod queue;
mod store;
mod support;
