//! The durable job engine of Climate API.
//!
//! A job is a row in the database (its state, attempts, lease) plus messages on the task
//! queue, each naming one step of it. This crate runs the steps: the [`Engine`] consumes the
//! queue and dispatches every delivery to the [`JobKind`] its message names (`kind`, default
//! [`DEFAULT_KIND`] for messages from before kinds existed), holds no delivery longer than the
//! broker allows (handing it over or acknowledging it under its lease), settles it only once
//! the step's outcome is committed (ack, dead-letter, requeue, or leave it at shutdown) and, at
//! shutdown, waits for the steps in flight and then hands their leases back.
//!
//! - [`engine`]: the engine, the [`JobKind`] trait (decode a message into a [`Task`], run a
//!   step, hand a lease back) and what a step answers ([`Settle`], [`Requeue`]).
//! - [`lease`]: [`Worker`], one worker process (its id is the owner of its leases) and the
//!   leases it holds.
//! - [`durable`]: jobs of every kind but ingestion, on the database's `jobs` table: a
//!   [`Work`] (inputs → result) becomes a [`JobKind`] through [`Durable`] (claim, heartbeats
//!   with progress, cancel, retry, result expiry); [`submit`] creates one.
//! - [`events`]: [`watch`], the stream of a job's states that live progress is made of
//!   ([`job_updates`] for durable jobs; the API's ingestion events use it too).
//! - [`failpoints`]: [`FailPoint`]s, where tests kill a process mid-step.
//!
//! Retries back off by [`climate_domain::retry::RetryPolicy`], the one rule shared with
//! downloads and reconnects. Ingestion (`climate-ingest`) is one job kind; the engine's tests
//! drive another. Knows no HTTP server, no data formats and no particular job.

pub mod durable;
pub mod engine;
pub mod events;
pub mod failpoints;
pub mod lease;

pub use durable::{Durable, DurableSettings, JobContext, Work, WorkError, submit};
pub use engine::{
    DEFAULT_KIND, DecodeError, Engine, EngineSettings, JobKind, Requeue, Settle, Task, kind_of,
};
pub use events::{JobUpdate, Look, Observed, job_updates, watch};
pub use failpoints::{FailPoint, FailPoints};
pub use lease::{HeldLease, LeaseKey, Worker};
