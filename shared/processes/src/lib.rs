//! # climate-processes
//!
//! The processes an instance offers through OGC API – Processes: each is a [`Process`] that
//! describes its inputs and outputs (JSON schemas), checks a request before a job is created
//! (so bad input is a 400 naming the input, and a request too large to answer at once is
//! known before it runs), and executes on a worker as a durable job of kind [`KIND`]
//! ([`ProcessWork`], run by the job engine in both the synchronous and the asynchronous mode).
//! A result is stored in the object store under `jobs/{job_id}/result` and referenced from the
//! job's row until the job expires.
//!
//! - [`zonal`]: `zonal-statistics` — district figures from a dataset: exact coverage-weighted
//!   statistics per feature and period, optionally aggregated in time to a DHIS2 period type
//!   first, as JSON rows, CSV or a DHIS2 `dataValueSet`.
//! - [`point`]: `point-timeseries` — a dataset's values at points (facilities) per period,
//!   optionally aggregated in time, in the same formats.
//! - [`runs`]: `ingestion`, `sync` and `resample` (a derived dataset aggregated in time and
//!   kept current) — the platform's runs as processes (they write: the `ingest` scope), each
//!   job ending as its run ends, waiting without holding a worker.
//! - [`echo`]: `echo` — returns its inputs (the OGC conformance tests need it).
//!
//! [`features`] reads, validates and stores the feature collections (districts) requests name.
//!
//! Knows no HTTP server (checked).

pub mod echo;
pub mod features;
pub mod output;
pub mod point;
pub mod runs;
pub mod series;
pub mod work;
pub mod zonal;

use std::sync::Arc;

use async_trait::async_trait;
use climate_catalog::Catalog;
use climate_infra::db::Database;
use climate_jobs::{JobContext, WorkError};
use serde_json::Value;

pub use work::{KIND, ProcessWork, ResultRef, job_kind, result_key};

/// What processes read and write through: the catalog of published datasets, the database
/// (stored feature collections, runs) and the ingestion context (admitting runs and syncs).
#[derive(Debug, Clone)]
pub struct Env {
    /// The read model.
    pub catalog: Arc<Catalog>,
    /// The database.
    pub db: Arc<dyn Database>,
    /// Backends, configuration and providers, as ingestion uses them.
    pub ingest: climate_ingest::Context,
}

impl Env {
    /// The environment of processes run with `ingest`, reading through `catalog`.
    pub fn new(ingest: &climate_ingest::Context, catalog: Arc<Catalog>) -> Self {
        Self {
            catalog,
            db: ingest.platform.db.clone(),
            ingest: ingest.clone(),
        }
    }
}

/// A request input that cannot be used; the message says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input '{input}': {message}")]
pub struct InputError {
    /// The input at fault (`inputs` for the request as a whole).
    pub input: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl InputError {
    /// An error about `input`.
    pub fn new(input: &str, message: impl Into<String>) -> Self {
        Self {
            input: input.to_owned(),
            message: message.into(),
        }
    }
}

/// Why a request cannot be checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The request is wrong (400).
    #[error(transparent)]
    Input(#[from] InputError),
    /// The request names a dataset that is not published (404).
    #[error("{0}")]
    UnknownDataset(String),
    /// The request names a feature collection (or version) that is not stored (404).
    #[error("{0}")]
    UnknownFeatures(String),
    /// The catalog cannot be read now (503).
    #[error("{0}")]
    Unavailable(String),
}

/// A checked request: how much work it is and what the job runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// Grid cells read (cells × periods), the measure of a request's size.
    pub cells: u64,
    /// The inputs the job records and runs with: the request's, with what it left open pinned
    /// (the version of a stored feature collection).
    pub inputs: Value,
}

/// What a process produced: its media type and bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// `application/json`, `text/csv`, …
    pub media_type: &'static str,
    /// The document.
    pub body: Vec<u8>,
}

/// A process of the catalogue.
#[async_trait]
pub trait Process: Send + Sync + std::fmt::Debug {
    /// Its id (`zonal-statistics`).
    fn id(&self) -> &'static str;
    /// Title and description, for the process list.
    fn title(&self) -> &'static str;
    /// What it does, in a sentence or two.
    fn summary(&self) -> &'static str;
    /// The OGC process description's `inputs` and `outputs` members (JSON schemas).
    fn interface(&self) -> Value;
    /// Whether it writes to the catalog (those need the `ingest` scope).
    fn writes(&self) -> bool {
        false
    }
    /// Checks a request's inputs.
    ///
    /// # Errors
    /// [`CheckError`]: an input that cannot be used, an unknown dataset, a catalog that cannot
    /// be read now.
    async fn check(&self, env: &Env, inputs: &Value) -> Result<Checked, CheckError>;
    /// Runs it.
    ///
    /// # Errors
    /// [`WorkError`]: transient (retried) or failed (the job fails with the message).
    async fn execute(
        &self,
        env: &Env,
        ctx: &JobContext,
        inputs: &Value,
    ) -> Result<Output, WorkError>;
}

/// The processes of this build, by id.
#[derive(Debug, Clone)]
pub struct Processes(Vec<Arc<dyn Process>>);

impl Default for Processes {
    fn default() -> Self {
        Self(vec![
            Arc::new(zonal::ZonalStatistics),
            Arc::new(point::PointTimeseries),
            Arc::new(runs::Ingestion),
            Arc::new(runs::Sync),
            Arc::new(runs::Resample),
            Arc::new(echo::Echo),
        ])
    }
}

impl Processes {
    /// A process by id.
    pub fn get(&self, id: &str) -> Option<&Arc<dyn Process>> {
        self.0.iter().find(|p| p.id() == id)
    }

    /// Every process, in listing order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Process>> {
        self.0.iter()
    }

    /// The OGC process summary of `p` (for `/processes`), without links.
    pub fn summary(p: &dyn Process) -> Value {
        serde_json::json!({
            "id": p.id(),
            "title": p.title(),
            "description": p.summary(),
            "version": "1.0.0",
            "jobControlOptions": ["sync-execute", "async-execute", "dismiss"],
            "outputTransmission": ["value"],
        })
    }

    /// The OGC process description of `p` (for `/processes/{id}`), without links.
    pub fn description(p: &dyn Process) -> Value {
        let mut d = Self::summary(p);
        if let (Some(d), Value::Object(io)) = (d.as_object_mut(), p.interface()) {
            d.extend(io);
        }
        d
    }
}
