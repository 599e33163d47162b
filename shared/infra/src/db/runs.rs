//! Runs: admission (the one way a run comes into being), claims, leases, progress and
//! how a run ends.

use super::*;

/// A run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// UUIDv7 (time-ordered) id.
    pub run_id: RunId,
    /// Ingestion or sync.
    pub kind: RunKind,
    /// Current status.
    pub status: RunStatus,
    /// Managed dataset written by the run.
    pub dataset_id: DatasetId,
    /// Template of the dataset.
    pub template_id: TemplateId,
    /// Extent of the dataset.
    pub extent_id: ExtentId,
    /// The request as accepted (canonical periods, flags).
    pub request: serde_json::Value,
    /// Progress so far.
    pub progress: Progress,
    /// Claims so far.
    pub attempts: u32,
    /// Last error, if any.
    pub error: Option<RunError>,
    /// Worker holding the lease.
    pub lease_owner: Option<String>,
    /// When the lease ends unless renewed.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Version published by the run.
    pub version: Option<i64>,
    /// The plan (store layout, artifact, segments) once the run was planned.
    pub plan: Option<serde_json::Value>,
    /// What the provider keeps between attempts while an upstream job runs.
    pub provider_state: Option<serde_json::Value>,
    /// Accepted at.
    pub created_at: DateTime<Utc>,
    /// First claimed at.
    pub started_at: Option<DateTime<Utc>>,
    /// Reached a terminal status at.
    pub finished_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Who asked for it (the credentials' subject); `None` for the platform's own runs.
    pub principal: Option<String>,
}

/// A run to insert.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// UUIDv7 id.
    pub run_id: RunId,
    /// Ingestion or sync.
    pub kind: RunKind,
    /// Managed dataset.
    pub dataset_id: DatasetId,
    /// Template.
    pub template_id: TemplateId,
    /// Extent.
    pub extent_id: ExtentId,
    /// The normalised request.
    pub request: serde_json::Value,
    /// Who asked for it (the credentials' subject); `None` for the platform's own runs.
    pub principal: Option<String>,
    /// Accepted at.
    pub created_at: DateTime<Utc>,
}

/// How [`RunStore::admit_run`] admits a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission<'a> {
    /// A run of its own, whatever else is active (a job that is not a dataset's refresh).
    Always,
    /// An explicit request: when the dataset's newest active run is of the same kind with the
    /// same request, that run is the answer and nothing is written.
    Coalesce,
    /// A scheduled sync for due time `due_key`: the due time is recorded with its run (an
    /// identical active run counts, as with [`Admission::Coalesce`]); a due time that already
    /// has its run is left alone — another scheduler replica got there first.
    Scheduled {
        /// The due time (a cron occurrence, or `available:<period>`), numbered for retries.
        due_key: &'a str,
    },
}

/// What [`RunStore::admit_run`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Admitted {
    /// The run was inserted with its announcement.
    Created(RunRecord),
    /// An identical run was already queued or running; it is returned, nothing was inserted.
    Coalesced(RunRecord),
    /// [`Admission::Scheduled`]: the due time already has its run; nothing was written.
    DueTimeTaken,
}

impl Admitted {
    /// The run an unscheduled admission ([`Admission::Always`] or [`Admission::Coalesce`])
    /// answers with, and whether it was created; `None` only for [`Admitted::DueTimeTaken`].
    #[must_use]
    pub fn run_and_created(self) -> Option<(RunRecord, bool)> {
        match self {
            Self::Created(r) => Some((r, true)),
            Self::Coalesced(r) => Some((r, false)),
            Self::DueTimeTaken => None,
        }
    }
}

/// Filters of [`RunStore::list_runs`].
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this status.
    pub status: Option<RunStatus>,
    /// Only this dataset.
    pub dataset_id: Option<DatasetId>,
    /// Only runs older than this run id (pagination cursor).
    pub before: Option<RunId>,
    /// At most this many.
    pub limit: u32,
}

/// How a run ends.
#[derive(Debug, Clone)]
pub enum RunOutcome {
    /// Transient failure: back to `retrying`, re-announced at `retry_at`.
    Retry {
        /// Why.
        error: RunError,
        /// Message to publish.
        outbox: NewOutbox,
    },
    /// Permanent failure.
    Failed(RunError),
    /// Nothing to publish (e.g. the scope was already covered).
    Succeeded,
}

/// Runs and their leases. Part of [`Database`].
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Admits a run: inserts it with its announcement in one transaction, as `admission` says.
    /// This is the one way runs come into being — `POST /ingestions`, `POST /sync/{id}` and
    /// scheduled syncs all go through it. Admissions of one dataset are serialised (the
    /// dataset's `run_admissions` row is written first), so concurrent identical requests
    /// coalesce into one run and a due time gets exactly one.
    async fn admit_run(
        &self,
        run: &NewRun,
        outbox: &NewOutbox,
        admission: Admission<'_>,
    ) -> DbResult<Admitted>;
    /// One run.
    async fn get_run(&self, run_id: &RunId) -> DbResult<Option<RunRecord>>;
    /// Runs, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> DbResult<Vec<RunRecord>>;
    /// The newest non-terminal run of a dataset, if any.
    async fn active_run(&self, dataset_id: &DatasetId) -> DbResult<Option<RunRecord>>;
    /// Claims a queued, retrying or lease-expired run for `owner` until `lease_until`.
    /// `None` when the run is held by someone else or finished.
    async fn claim_run(
        &self,
        run_id: &RunId,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> DbResult<Option<RunRecord>>;
    /// Extends a held lease.
    ///
    /// # Errors
    /// [`DbError::LeaseLost`] when `owner` no longer holds it.
    async fn heartbeat(
        &self,
        run_id: &RunId,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> DbResult<()>;
    /// Records progress of a held run.
    async fn update_progress(
        &self,
        run_id: &RunId,
        owner: &str,
        progress: &Progress,
    ) -> DbResult<()>;
    /// Ends or re-queues a held run.
    async fn finish_run(
        &self,
        run_id: &RunId,
        owner: &str,
        outcome: &RunOutcome,
        now: DateTime<Utc>,
    ) -> DbResult<()>;
    /// Gives a held run back without counting the attempt (its dataset is busy, or the worker
    /// is shutting down) and announces it again at `outbox.available_at`.
    async fn defer_run(
        &self,
        run_id: &RunId,
        owner: &str,
        outbox: &NewOutbox,
        now: DateTime<Utc>,
    ) -> DbResult<()>;
    /// Suspends a held run while an upstream job runs: stores the provider's state, returns
    /// the run to `queued` without using an attempt, shows `message` as its progress and
    /// announces it again at `outbox.available_at` — one transaction.
    ///
    /// # Errors
    /// [`DbError::LeaseLost`] (nothing written) when `owner` no longer holds the run.
    async fn suspend_run(
        &self,
        run_id: &RunId,
        owner: &str,
        state: &serde_json::Value,
        message: &str,
        outbox: &NewOutbox,
        now: DateTime<Utc>,
    ) -> DbResult<()>;
    /// Cancels a run that has not finished: `Ok(Some(run))` with the run now `cancelled`,
    /// `Ok(None)` when it does not exist; a finished run is returned unchanged (the caller
    /// answers 409). Workers notice at their next boundary: claims, heartbeats and segment
    /// completion all require a running run, and publication requires the run's lease.
    async fn cancel_run(&self, run_id: &RunId, now: DateTime<Utc>) -> DbResult<Option<RunRecord>>;
}

/// A row of `ingestion_runs` as the engines return it; [`RunRecord`] is its checked form.
#[derive(sqlx::FromRow)]
pub(super) struct RunRow {
    run_id: String,
    kind: String,
    status: String,
    dataset_id: String,
    template_id: String,
    extent_id: String,
    request: Json<serde_json::Value>,
    progress_done: i64,
    progress_total: i64,
    progress_message: String,
    attempts: i32,
    error_code: Option<String>,
    error_message: Option<String>,
    lease_owner: Option<String>,
    lease_expires_at: Option<i64>,
    version: Option<i64>,
    plan: Option<Json<serde_json::Value>>,
    provider_state: Option<Json<serde_json::Value>>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    updated_at: i64,
    principal: Option<String>,
}

impl TryFrom<RunRow> for RunRecord {
    type Error = DbError;

    fn try_from(row: RunRow) -> DbResult<Self> {
        Ok(Self {
            run_id: checked(RunId::new(&row.run_id))?,
            kind: checked(RunKind::from_str(&row.kind))?,
            status: checked(RunStatus::from_str(&row.status))?,
            dataset_id: checked(DatasetId::new(row.dataset_id))?,
            template_id: checked(TemplateId::new(row.template_id))?,
            extent_id: checked(ExtentId::new(row.extent_id))?,
            request: row.request.0,
            progress: Progress {
                done: u64::try_from(row.progress_done).unwrap_or(0),
                total: u64::try_from(row.progress_total).unwrap_or(0),
                message: row.progress_message,
            },
            attempts: u32::try_from(row.attempts).unwrap_or(0),
            error: row.error_code.map(|code| RunError {
                code,
                message: row.error_message.unwrap_or_default(),
            }),
            lease_owner: row.lease_owner,
            lease_expires_at: opt_ms(row.lease_expires_at)?,
            version: row.version,
            plan: row.plan.map(|j| j.0),
            provider_state: row.provider_state.map(|j| j.0),
            created_at: from_ms(row.created_at)?,
            started_at: opt_ms(row.started_at)?,
            finished_at: opt_ms(row.finished_at)?,
            updated_at: from_ms(row.updated_at)?,
            principal: row.principal,
        })
    }
}

macro_rules! impl_runs {
    ($name:ident, $db:ty) => {
        impl $name {
            /// The newest non-terminal run of a dataset.
            pub(super) async fn newest_active<'e, E>(executor: E, dataset_id: &DatasetId) -> DbResult<Option<RunRecord>>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                sqlx::query_as::<_, RunRow>(run_select!(
                    "WHERE dataset_id = $1 AND status IN ('queued', 'running', 'retrying') \
                     ORDER BY run_id DESC LIMIT 1"
                ))
                .bind(dataset_id.as_str())
                .fetch_optional(executor)
                .await?
                .map(RunRecord::try_from)
                .transpose()
            }

            /// Inserts a queued run and its outbox message inside `tx`; returns the stored run.
            pub(super) async fn insert_run(
                tx: &mut sqlx::Transaction<'_, $db>,
                run: &NewRun,
                outbox: &NewOutbox,
            ) -> DbResult<RunRecord> {
                sqlx::query(
                    "INSERT INTO ingestion_runs (run_id, kind, status, dataset_id, template_id, extent_id, \
                     request, created_at, updated_at, principal) VALUES ($1, $2, 'queued', $3, $4, $5, $6, $7, $7, $8)",
                )
                .bind(run.run_id.to_string())
                .bind(run.kind.as_str())
                .bind(run.dataset_id.as_str())
                .bind(run.template_id.as_str())
                .bind(run.extent_id.as_str())
                .bind(Json(&run.request))
                .bind(ms(run.created_at))
                .bind(run.principal.as_deref())
                .execute(&mut **tx)
                .await?;
                Self::insert_outbox(&mut **tx, outbox, run.created_at).await?;
                let row = sqlx::query_as::<_, RunRow>(run_select!("WHERE run_id = $1"))
                    .bind(run.run_id.to_string())
                    .fetch_one(&mut **tx)
                    .await?;
                RunRecord::try_from(row)
            }
        }

        #[async_trait]
        impl RunStore for $name {
            async fn admit_run(
                &self,
                run: &NewRun,
                outbox: &NewOutbox,
                admission: Admission<'_>,
            ) -> DbResult<Admitted> {
                let mut tx = self.pool.begin().await?;
                if admission != Admission::Always {
                    // First a write: PostgreSQL holds the dataset's row, SQLite its write lock,
                    // until commit; the next admission of this dataset waits and then sees this
                    // one.
                    sqlx::query(
                        "INSERT INTO run_admissions (dataset_id, admitted_at) VALUES ($1, $2) \
                         ON CONFLICT (dataset_id) DO UPDATE SET admitted_at = excluded.admitted_at",
                    )
                    .bind(run.dataset_id.as_str())
                    .bind(ms(run.created_at))
                    .execute(&mut *tx)
                    .await?;
                }
                let identical = match admission {
                    Admission::Always => None,
                    Admission::Coalesce | Admission::Scheduled { .. } => {
                        Self::newest_active(&mut *tx, &run.dataset_id)
                            .await?
                            .filter(|a| a.kind == run.kind && a.request == run.request)
                    }
                };
                if let Admission::Scheduled { due_key } = admission {
                    let run_id = identical.as_ref().map_or(&run.run_id, |a| &a.run_id);
                    let inserted = sqlx::query(
                        "INSERT INTO sync_ticks (dataset_id, due_key, run_id, created_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    )
                    .bind(run.dataset_id.as_str())
                    .bind(due_key)
                    .bind(run_id.to_string())
                    .bind(ms(run.created_at))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if inserted == 0 {
                        tx.rollback().await?;
                        return Ok(Admitted::DueTimeTaken);
                    }
                }
                if let Some(active) = identical {
                    tx.commit().await?;
                    return Ok(Admitted::Coalesced(active));
                }
                let record = Self::insert_run(&mut tx, run, outbox).await?;
                tx.commit().await?;
                Ok(Admitted::Created(record))
            }

            async fn get_run(&self, run_id: &RunId) -> DbResult<Option<RunRecord>> {
                sqlx::query_as::<_, RunRow>(run_select!("WHERE run_id = $1"))
                    .bind(run_id.to_string())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(RunRecord::try_from)
                    .transpose()
            }

            async fn list_runs(&self, filter: &RunFilter) -> DbResult<Vec<RunRecord>> {
                let rows = sqlx::query_as::<_, RunRow>(run_select!(
                    "WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR dataset_id = $2) \
                     AND ($3 IS NULL OR run_id < $3) ORDER BY run_id DESC LIMIT $4"
                ))
                .bind(filter.status.map(RunStatus::as_str))
                .bind(filter.dataset_id.as_ref().map(DatasetId::as_str))
                .bind(filter.before.map(|r| r.to_string()))
                .bind(i64::from(filter.limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(RunRecord::try_from).collect()
            }

            async fn active_run(&self, dataset_id: &DatasetId) -> DbResult<Option<RunRecord>> {
                Self::newest_active(&self.pool, dataset_id).await
            }

            async fn claim_run(
                &self,
                run_id: &RunId,
                owner: &str,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
            ) -> DbResult<Option<RunRecord>> {
                let row = sqlx::query(
                    "UPDATE ingestion_runs SET status = 'running', lease_owner = $2, lease_expires_at = $4, \
                     attempts = attempts + 1, started_at = COALESCE(started_at, $3), updated_at = $3 \
                     WHERE run_id = $1 AND (status IN ('queued', 'retrying') \
                       OR (status = 'running' AND lease_expires_at < $3)) \
                     RETURNING run_id",
                )
                .bind(run_id.to_string())
                .bind(owner)
                .bind(ms(now))
                .bind(ms(lease_until))
                .fetch_optional(&self.pool)
                .await?;
                match row {
                    Some(_) => self.get_run(run_id).await,
                    None => Ok(None),
                }
            }

            async fn heartbeat(
                &self,
                run_id: &RunId,
                owner: &str,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
            ) -> DbResult<()> {
                let done = sqlx::query(
                    "UPDATE ingestion_runs SET lease_expires_at = $3, updated_at = $4 \
                     WHERE run_id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(run_id.to_string())
                .bind(owner)
                .bind(ms(lease_until))
                .bind(ms(now))
                .execute(&self.pool)
                .await?;
                held(done.rows_affected(), run_id)
            }

            async fn update_progress(
                &self,
                run_id: &RunId,
                owner: &str,
                progress: &Progress,
            ) -> DbResult<()> {
                let done = sqlx::query(
                    "UPDATE ingestion_runs SET progress_done = $3, progress_total = $4, progress_message = $5 \
                     WHERE run_id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(run_id.to_string())
                .bind(owner)
                .bind(i64::try_from(progress.done).unwrap_or(i64::MAX))
                .bind(i64::try_from(progress.total).unwrap_or(i64::MAX))
                .bind(&progress.message)
                .execute(&self.pool)
                .await?;
                held(done.rows_affected(), run_id)
            }

            async fn finish_run(
                &self,
                run_id: &RunId,
                owner: &str,
                outcome: &RunOutcome,
                now: DateTime<Utc>,
            ) -> DbResult<()> {
                let mut tx = self.pool.begin().await?;
                let (status, error) = match outcome {
                    RunOutcome::Retry { error, .. } => ("retrying", Some(error)),
                    RunOutcome::Failed(error) => ("failed", Some(error)),
                    RunOutcome::Succeeded => ("succeeded", None),
                };
                let finished = (status != "retrying").then_some(ms(now));
                let done = sqlx::query(
                    "UPDATE ingestion_runs SET status = $3, error_code = $4, error_message = $5, \
                     finished_at = $6, updated_at = $7, lease_owner = NULL, lease_expires_at = NULL \
                     WHERE run_id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(run_id.to_string())
                .bind(owner)
                .bind(status)
                .bind(error.map(|e| e.code.as_str()))
                .bind(error.map(|e| e.message.as_str()))
                .bind(finished)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                // Dropping the transaction rolls it back.
                held(done.rows_affected(), run_id)?;
                if let RunOutcome::Retry { outbox, .. } = outcome {
                    Self::insert_outbox(&mut *tx, outbox, now).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn defer_run(
                &self,
                run_id: &RunId,
                owner: &str,
                outbox: &NewOutbox,
                now: DateTime<Utc>,
            ) -> DbResult<()> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE ingestion_runs SET status = 'queued', attempts = attempts - 1, lease_owner = NULL, \
                     lease_expires_at = NULL, updated_at = $3 \
                     WHERE run_id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(run_id.to_string())
                .bind(owner)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                // Dropping the transaction rolls it back.
                held(done.rows_affected(), run_id)?;
                Self::insert_outbox(&mut *tx, outbox, now).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn suspend_run(
                &self,
                run_id: &RunId,
                owner: &str,
                state: &serde_json::Value,
                message: &str,
                outbox: &NewOutbox,
                now: DateTime<Utc>,
            ) -> DbResult<()> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE ingestion_runs SET status = 'queued', attempts = attempts - 1, lease_owner = NULL, \
                     lease_expires_at = NULL, provider_state = $3, progress_message = $4, updated_at = $5 \
                     WHERE run_id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(run_id.to_string())
                .bind(owner)
                .bind(Json(state))
                .bind(message)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                held(done.rows_affected(), run_id)?;
                Self::insert_outbox(&mut *tx, outbox, now).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn cancel_run(&self, run_id: &RunId, now: DateTime<Utc>) -> DbResult<Option<RunRecord>> {
                sqlx::query(
                    "UPDATE ingestion_runs SET status = 'cancelled', finished_at = $2, updated_at = $2, \
                     lease_owner = NULL, lease_expires_at = NULL, progress_message = 'cancelled' \
                     WHERE run_id = $1 AND status IN ('queued', 'running', 'retrying')",
                )
                .bind(run_id.to_string())
                .bind(ms(now))
                .execute(&self.pool)
                .await?;
                self.get_run(run_id).await
            }
        }
    };
}

impl_runs!(SqliteDb, sqlx::Sqlite);
impl_runs!(PostgresDb, sqlx::Postgres);
