//! Ingestion as a job kind of the engine (`climate-jobs`): a run's messages name its steps —
//! plan the run, write one of its segments, or finalize it (see [`pipeline`]) — each under a
//! lease renewed by heartbeats. A run's dataset is locked from planning to publication (the
//! lock belongs to the run, so whichever worker writes one of its segments keeps it alive).
//! Transient failures are retried by the engine's retry policy; permanent ones fail the run
//! with a clear error. Delivery is at-least-once; claims make effects exactly-once.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use climate_domain::RunId;
use climate_domain::retry::RetryPolicy;
use climate_geodata::providers::Registry;
use climate_infra::Platform;
use climate_infra::db::{DbError, NewOutbox, RunError, RunOutcome, RunRecord};
use climate_infra::messages::{Step, TASK_TOPIC, TaskMessage};
use climate_jobs::{
    DecodeError, Engine, EngineSettings, FailPoint, FailPoints, JobKind, LeaseKey, Requeue, Settle,
    Task, Worker,
};
use rand::Rng;
use tokio_util::sync::CancellationToken;

mod steps;

use steps::{finalize_step, plan_step, segment_step};

use crate::pipeline::{self, Planned, TaskError};

/// The job kind's name (the default kind of messages that name none).
pub const KIND: &str = climate_jobs::DEFAULT_KIND;

/// What a worker task is handed.
#[derive(Debug, Clone)]
pub struct Context {
    /// Backends and configuration.
    pub platform: Platform,
    /// Providers by name.
    pub providers: Arc<Registry>,
    /// Download cache and per-provider HTTP settings handed to providers.
    pub provider_env: climate_geodata::http::ProviderEnv,
    /// This worker process: its id (the lease owner), the leases it holds, its failure points.
    pub worker: Worker,
}

impl Context {
    /// A context with a fresh worker id.
    ///
    /// # Errors
    /// When the HTTP clients of the providers cannot be built.
    pub fn new(platform: Platform) -> anyhow::Result<Self> {
        use climate_geodata::http::HttpSettings;
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
        let settings = |s: &climate_infra::config::ProviderSettings| {
            let d = HttpSettings::default();
            HttpSettings {
                concurrency: s.concurrency.unwrap_or(d.concurrency),
                max_attempts: s.max_attempts.unwrap_or(d.max_attempts),
                connect_timeout: s
                    .connect_timeout_seconds
                    .map_or(d.connect_timeout, Duration::from_secs),
                read_timeout: s
                    .read_timeout_seconds
                    .map_or(d.read_timeout, Duration::from_secs_f64),
                base_delay: s.base_delay_ms.map_or(d.base_delay, Duration::from_millis),
                max_delay: s.max_delay_ms.map_or(d.max_delay, Duration::from_millis),
                api_key: s.api_key.clone(),
                netrc: s.netrc.clone(),
                min_interval: s
                    .min_interval_ms
                    .map_or(d.min_interval, Duration::from_millis),
            }
        };
        let provider_env = climate_geodata::http::ProviderEnv::new(
            platform.store.object_store(),
            platform.config.data_dir.join("scratch"),
            HttpSettings::default(),
            platform
                .config
                .providers
                .iter()
                .map(|(name, s)| (name.clone(), settings(s))),
        )?;
        Ok(Self {
            platform,
            providers: Arc::new(Registry::default()),
            provider_env,
            worker: Worker::new(
                format!("{host}-{}", uuid::Uuid::now_v7()),
                FailPoints::default(),
            ),
        })
    }

    /// Arms the failure points named in `spec` (the `CLIMATE_API_FAILPOINTS` syntax).
    #[must_use]
    pub fn with_failpoints(mut self, spec: &str) -> Self {
        self.worker.failpoints = FailPoints::parse(spec);
        self
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(self.platform.config.worker.lease_seconds.max(3))
    }
}

/// Consumes the queue until `shutdown` with ingestion and `others` (process executions, …) as
/// the job kinds, running up to `worker.concurrency` steps at once (see [`Engine::run`]).
///
/// # Errors
/// Never returns an error today; the signature leaves room for fatal conditions.
pub async fn run(
    ctx: Context,
    others: Vec<Arc<dyn JobKind>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let w = &ctx.platform.config.worker;
    let settings = EngineSettings {
        concurrency: w.concurrency,
        max_delivery_hold: Duration::from_secs(w.max_delivery_hold_seconds),
        shutdown_grace: Duration::from_secs(w.shutdown_grace_seconds),
    };
    let mut engine = Engine::new(ctx.platform.queue.clone(), ctx.worker.clone(), settings)
        .with_kind(Arc::new(Ingestion(ctx)));
    for kind in others {
        engine = engine.with_kind(kind);
    }
    engine.run(shutdown).await;
    Ok(())
}

/// Ingestion runs as a job kind.
#[derive(Debug)]
pub struct Ingestion(pub Context);

fn lease_key(run_id: &RunId, segment: Option<u32>) -> LeaseKey {
    LeaseKey {
        kind: KIND,
        job_id: run_id.to_string(),
        part: segment,
    }
}

#[async_trait::async_trait]
impl JobKind for Ingestion {
    fn name(&self) -> &'static str {
        KIND
    }

    fn decode(&self, payload: &[u8]) -> Result<Task, DecodeError> {
        let msg = TaskMessage::decode(payload)?;
        let (step, part) = match msg.step {
            Step::Plan => ("plan", None),
            Step::Segment(i) => ("segment", Some(i)),
            Step::Finalize => ("finalize", None),
        };
        Ok(Task {
            job_id: msg.run_id.to_string(),
            step,
            part,
        })
    }

    async fn run(&self, _worker: &Worker, task: &Task) -> Result<Settle, Requeue> {
        let ctx = &self.0;
        let run_id = RunId::new(&task.job_id).map_err(Requeue::from_error)?;
        match (task.step, task.part) {
            ("segment", Some(i)) => segment_step(ctx, &run_id, i).await,
            ("finalize", _) => finalize_step(ctx, &run_id).await,
            _ => plan_step(ctx, &run_id).await,
        }
        .map_err(Requeue::from_error)
    }

    async fn hand_back(&self, worker: &Worker, lease: &LeaseKey) -> Result<bool, Requeue> {
        let db = &self.0.platform.db;
        let now = Utc::now();
        let run_id = RunId::new(&lease.job_id).map_err(Requeue::from_error)?;
        let result = match lease.part {
            Some(i) => db.heartbeat_segment(&run_id, i, worker.id(), now).await,
            None => db.heartbeat(&run_id, worker.id(), now, now).await,
        };
        match result {
            Ok(()) => Ok(true),
            Err(DbError::LeaseLost(_)) => Ok(false),
            Err(e) => Err(Requeue::from_error(e)),
        }
    }
}
