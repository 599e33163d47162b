//! Durable jobs on the database's `jobs` table, for every kind but ingestion (whose runs keep
//! their own tables): what a kind computes is a [`Work`]; [`Durable`] makes it a [`JobKind`].
//!
//! [`Durable`] claims the job under a lease, renews the lease by heartbeats that also store the
//! progress the work reports, stops the work when the lease is lost (the job was cancelled, or
//! another worker took it over after this one stalled), records the result with its expiry,
//! retries transient failures after the [`RetryPolicy`]'s delay (a delayed announcement written
//! with the attempt's end) and hands the lease back at shutdown so another worker starts at once.
//! A worker that dies mid-job leaves a lease that expires; the reaper
//! (`OutboxStore::requeue_expired`) queues the job again. [`submit`] creates a job with its
//! announcement, in one transaction.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use climate_domain::ids::JobId;
use climate_domain::retry::RetryPolicy;
use climate_domain::run::Progress;
use climate_infra::db::{
    Database, DbError, DbResult, JobOutcome, JobRecord, NewJob, NewOutbox, RunError,
};
use climate_infra::messages::{JobMessage, TASK_TOPIC};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::{DecodeError, JobKind, LeaseKey, Requeue, Settle, Task, Worker};

/// The one step of a durable job.
pub const RUN_STEP: &str = "run";

/// Why an attempt of a job did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkError {
    /// Worth another attempt (an upstream or backend that is down for now).
    #[error("{0}")]
    Transient(String),
    /// The job cannot succeed (bad inputs, missing data): it fails with this code and message.
    #[error("{code}: {message}")]
    Failed {
        /// Stable machine-readable code.
        code: String,
        /// What went wrong, for the job's owner.
        message: String,
    },
    /// Not finished: the job waits for something outside it (a run it started). Its next
    /// attempt comes after `after` and reads `state` as the job's `result`; waiting holds no
    /// worker and is not a failed attempt.
    #[error("waiting: {message}")]
    Waiting {
        /// What the next attempt needs.
        state: serde_json::Value,
        /// How long until the next look.
        after: Duration,
        /// What it waits for (the job's progress message).
        message: String,
    },
}

/// What a job kind computes: from the job's inputs to its result document.
#[async_trait::async_trait]
pub trait Work: Send + Sync + std::fmt::Debug + 'static {
    /// The kind's name, as stored with its jobs and in their messages.
    fn kind(&self) -> &'static str;

    /// Runs one attempt of `ctx.job()`. Long work reports progress through
    /// [`JobContext::report`] and stops early once [`JobContext::stopped`] is cancelled.
    ///
    /// # Errors
    /// [`WorkError`]: transient failures are retried, others fail the job.
    async fn execute(&self, ctx: &JobContext) -> Result<serde_json::Value, WorkError>;
}

/// What an attempt of a job sees.
#[derive(Debug)]
pub struct JobContext {
    job: JobRecord,
    progress: Mutex<Option<Progress>>,
    stopped: CancellationToken,
}

impl JobContext {
    /// The job as claimed (inputs, attempt number).
    #[must_use]
    pub fn job(&self) -> &JobRecord {
        &self.job
    }

    /// Reports progress; the next heartbeat stores it.
    pub fn report(&self, done: u64, total: u64, message: impl Into<String>) {
        *self.progress.lock().unwrap_or_else(PoisonError::into_inner) = Some(Progress {
            done,
            total,
            message: message.into(),
        });
    }

    /// Cancelled when the attempt must stop: the job was cancelled or taken over.
    #[must_use]
    pub fn stopped(&self) -> &CancellationToken {
        &self.stopped
    }

    fn take_progress(&self) -> Option<Progress> {
        self.progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// How durable jobs are run.
#[derive(Debug, Clone, Copy)]
pub struct DurableSettings {
    /// How long a lease lasts without a heartbeat.
    pub lease: Duration,
    /// How often a running job's lease is renewed (well below `lease`).
    pub heartbeat: Duration,
    /// Delay before the next attempt after a transient failure.
    pub retry: RetryPolicy,
    /// Attempts before a transiently failing job fails for good.
    pub max_attempts: u32,
    /// How long a finished job and its result are kept.
    pub retention: Duration,
}

impl Default for DurableSettings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            heartbeat: Duration::from_secs(15),
            retry: RetryPolicy::STEPS,
            max_attempts: 5,
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// A [`Work`] run as a durable [`JobKind`].
#[derive(Debug)]
pub struct Durable<W> {
    db: Arc<dyn Database>,
    work: W,
    settings: DurableSettings,
}

impl<W: Work> Durable<W> {
    /// Runs `work`'s jobs on `db`.
    pub fn new(db: Arc<dyn Database>, work: W, settings: DurableSettings) -> Self {
        Self { db, work, settings }
    }

    fn lease_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.settings.lease).unwrap_or(chrono::Duration::MAX)
    }

    /// Renews the lease every heartbeat, storing reported progress, until `done` is
    /// cancelled; cancels `ctx.stopped` when the lease is lost. Stops renewing once the
    /// worker's leases were handed back (shutdown).
    async fn heartbeats(&self, worker: &Worker, ctx: &JobContext, done: CancellationToken) {
        let released = worker.released();
        let id = ctx.job.job_id;
        loop {
            tokio::select! {
                () = done.cancelled() => return,
                () = released.cancelled() => return,
                () = tokio::time::sleep(self.settings.heartbeat) => {}
            }
            let now = Utc::now();
            let progress = ctx.take_progress();
            let beat = self
                .db
                .heartbeat_job(
                    id,
                    worker.id(),
                    now,
                    self.lease_until(now),
                    progress.as_ref(),
                )
                .await;
            match beat {
                Ok(()) => {}
                Err(DbError::LeaseLost(_)) => {
                    tracing::info!(job_id = %id, "job lease lost (cancelled or taken over): stopping");
                    ctx.stopped.cancel();
                    return;
                }
                // The lease outlives a few missed beats; keep the progress for the next one.
                Err(e) => {
                    tracing::warn!(job_id = %id, error = %e, "job heartbeat failed");
                    if let Some(p) = progress {
                        ctx.progress
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get_or_insert(p);
                    }
                }
            }
        }
    }

    /// The outcome to record for an attempt's answer, and how to settle its delivery.
    fn outcome(
        &self,
        job: &JobRecord,
        answer: Result<serde_json::Value, WorkError>,
        now: DateTime<Utc>,
    ) -> (JobOutcome, Settle) {
        let expires_at =
            Some(now + chrono::Duration::from_std(self.settings.retention).unwrap_or_default());
        match answer {
            Ok(result) => (JobOutcome::Succeeded { result, expires_at }, Settle::Ack),
            Err(WorkError::Transient(message)) if job.attempts < self.settings.max_attempts => {
                let delay = self
                    .settings
                    .retry
                    .delay(job.attempts, rand::rng().random());
                let outbox = NewOutbox {
                    topic: TASK_TOPIC.to_owned(),
                    payload: JobMessage::new(&job.kind, job.job_id).to_json(),
                    available_at: now + chrono::Duration::from_std(delay).unwrap_or_default(),
                };
                let error = RunError {
                    code: "transient".into(),
                    message,
                };
                (JobOutcome::Retry { error, outbox }, Settle::Ack)
            }
            Err(WorkError::Transient(message)) => {
                let error = RunError {
                    code: "retries_exhausted".into(),
                    message: format!(
                        "failed {} times, last: {message}",
                        self.settings.max_attempts
                    ),
                };
                (JobOutcome::Failed { error, expires_at }, Settle::DeadLetter)
            }
            Err(WorkError::Failed { code, message }) => {
                let error = RunError { code, message };
                (JobOutcome::Failed { error, expires_at }, Settle::DeadLetter)
            }
            Err(WorkError::Waiting { state, after, .. }) => {
                let outbox = NewOutbox {
                    topic: TASK_TOPIC.to_owned(),
                    payload: JobMessage::new(&job.kind, job.job_id).to_json(),
                    available_at: now + chrono::Duration::from_std(after).unwrap_or_default(),
                };
                (JobOutcome::Wait { state, outbox }, Settle::Ack)
            }
        }
    }
}

#[async_trait::async_trait]
impl<W: Work> JobKind for Durable<W> {
    fn name(&self) -> &'static str {
        self.work.kind()
    }

    fn decode(&self, payload: &[u8]) -> Result<Task, DecodeError> {
        let message = JobMessage::decode(payload)?;
        if message.kind != self.work.kind() {
            return Err(DecodeError::WrongKind {
                given: message.kind,
                kind: self.work.kind(),
            });
        }
        Ok(Task {
            job_id: message.job_id.to_string(),
            step: RUN_STEP,
            part: None,
        })
    }

    async fn run(&self, worker: &Worker, task: &Task) -> Result<Settle, Requeue> {
        let id = JobId::new(&task.job_id).map_err(Requeue::from_error)?;
        let key = LeaseKey {
            kind: self.work.kind(),
            job_id: task.job_id.clone(),
            part: None,
        };
        let Some(held) = worker.hold(key) else {
            return Ok(Settle::Leave);
        };
        let now = Utc::now();
        let claimed = self
            .db
            .claim_job(id, worker.id(), now, self.lease_until(now))
            .await
            .map_err(Requeue::from_error)?;
        // Finished, cancelled, gone, or held by a live worker (which settles it, or whose
        // expired lease the reaper announces again): nothing to do here.
        let Some(job) = claimed else {
            return Ok(Settle::Ack);
        };
        held.claimed();
        let ctx = JobContext {
            job,
            progress: Mutex::new(None),
            stopped: CancellationToken::new(),
        };
        let beats_done = CancellationToken::new();
        let answer = {
            let beats = self.heartbeats(worker, &ctx, beats_done.clone());
            let work = async {
                // The work first: one that watches `stopped` answers for itself; one that
                // does not is dropped.
                tokio::select! {
                    biased;
                    answer = self.work.execute(&ctx) => Some(answer),
                    () = ctx.stopped.cancelled() => None,
                }
            };
            let (answer, ()) = tokio::join!(
                async {
                    let answer = work.await;
                    beats_done.cancel();
                    answer
                },
                beats
            );
            answer
        };
        let Some(answer) = answer else {
            return Ok(Settle::Ack);
        };
        worker.failpoints.hit(crate::FailPoint::BeforeJobFinish);
        if let Err(WorkError::Waiting { message, .. }) = &answer {
            let done = ctx.take_progress().map_or((0, 0), |p| (p.done, p.total));
            ctx.report(done.0, done.1, message.clone());
        }
        let now = Utc::now();
        let (outcome, settle) = self.outcome(&ctx.job, answer, now);
        let progress = ctx.take_progress();
        match self
            .db
            .finish_job(id, worker.id(), &outcome, progress.as_ref(), now)
            .await
        {
            Ok(()) => Ok(settle),
            // Cancelled while the last step ran: the cancellation stands.
            Err(DbError::LeaseLost(_)) => Ok(Settle::Ack),
            Err(e) => Err(Requeue::from_error(e)),
        }
    }

    async fn hand_back(&self, worker: &Worker, lease: &LeaseKey) -> Result<bool, Requeue> {
        let id = JobId::new(&lease.job_id).map_err(Requeue::from_error)?;
        let now = Utc::now();
        match self.db.heartbeat_job(id, worker.id(), now, now, None).await {
            Ok(()) => Ok(true),
            Err(DbError::LeaseLost(_)) => Ok(false),
            Err(e) => Err(Requeue::from_error(e)),
        }
    }
}

/// Creates a queued job of `kind` for `principal` with its announcement, in one transaction.
///
/// # Errors
/// [`DbError`] when it cannot be written; then nothing was.
pub async fn submit(
    db: &dyn Database,
    kind: &str,
    principal: &str,
    inputs: serde_json::Value,
    now: DateTime<Utc>,
) -> DbResult<JobRecord> {
    let job = NewJob {
        job_id: JobId::from(uuid::Uuid::now_v7()),
        kind: kind.to_owned(),
        principal: principal.to_owned(),
        inputs,
        created_at: now,
    };
    let outbox = NewOutbox {
        topic: TASK_TOPIC.to_owned(),
        payload: JobMessage::new(kind, job.job_id).to_json(),
        available_at: now,
    };
    db.create_job(&job, &outbox).await
}
