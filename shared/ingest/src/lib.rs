//! # climate-ingest
//!
//! Ingestion as the platform runs it, as a library the thin binaries (`climate-worker`,
//! `climate-scheduler`) and the API share:
//!
//! - [`worker`]: ingestion as a job kind of the engine (`climate-jobs`, which consumes the queue,
//!   holds, hands over and dead-letters deliveries): the steps a message names — plan a run,
//!   write one segment, finalize — under leases renewed by heartbeats, with retries;
//! - [`pipeline`]: what those steps do (locate or fetch the fields, lay out the store, write
//!   time chunks, publish the version), and the provider probe syncs use;
//! - [`sync`]: planning a sync, starting one (`POST /sync/{id}` and the scheduler), and the
//!   scheduler's tick;
//! - [`scheduler`]: the clock (housekeeping and the sync tick);
//!
//! - [`derived`]: datasets derived from a stored one (resampled in time): their source, what
//!   they may reach, and following the source as it grows;
//! - [`admit`]: accepting an ingestion (`POST /ingestions` and the `ingestion` process).
//!
//! Runs come into being through one admission path, `RunStore::admit_run` (part of `Database`).

pub mod admit;
pub mod derived;
pub mod pipeline;
pub mod scheduler;
pub mod sync;
pub mod worker;

pub use worker::Context;
