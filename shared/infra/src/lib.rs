//! # climate-infra
//!
//! Infrastructure shared by the API, the worker and the scheduler: configuration, the template
//! catalogue, persistence ([`db`]), the task queue ([`queue`]) and its messages ([`messages`]),
//! the object store ([`store`]) and locks ([`locks`]).
//!
//! ## Charter
//! - Every external service sits behind a trait (`Database`, `Queue`, `Locks`) or
//!   `object_store::ObjectStore`, with a standalone and a distributed implementation chosen by
//!   URL at run time, never by compile-time features. Both implementations pass the same
//!   conformance tests.
//! - No HTTP and no knowledge of gridded data formats: those belong to `api` and
//!   `climate-geodata`.
//! - Wire formats live in one place each: rows in [`db`], queue messages in [`messages`].

pub mod auth;
pub mod config;
pub mod db;
pub mod locks;
pub mod messages;
pub mod queue;
pub mod samples;
pub mod store;
pub mod templates;

pub use config::Config;
pub mod housekeeping;
pub mod platform;
pub mod progress;

pub use platform::Platform;
pub mod shutdown;
pub mod telemetry;
