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

mod db;
mod locks;
mod queue;
mod store;
mod support;
