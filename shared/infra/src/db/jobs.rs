//! Durable jobs of every kind but ingestion (process executions, maintenance): created with
//! their announcement, claimed under a lease renewed by heartbeats (which carry the progress),
//! finished with a result or an error, retried with a delayed announcement, cancelled.
//! Expired leases are recovered with the runs' (see [`OutboxStore::requeue_expired`]).

use super::*;

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// Id (UUIDv7: ids sort by creation).
    pub job_id: JobId,
    /// The job kind (the engine dispatches its messages on it).
    pub kind: String,
    /// Who submitted it (an API key id, or `anonymous`).
    pub principal: String,
    /// Current status (`retrying`: waiting for the next attempt after a transient failure).
    pub status: RunStatus,
    /// The inputs as accepted.
    pub inputs: serde_json::Value,
    /// Progress so far.
    pub progress: Progress,
    /// Claims so far.
    pub attempts: u32,
    /// Worker holding the lease.
    pub lease_owner: Option<String>,
    /// When the lease ends unless renewed.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The result document of a succeeded job; while a job waits (`retrying` after
    /// [`JobOutcome::Wait`]), the state its next attempt needs.
    pub result: Option<serde_json::Value>,
    /// Last error, if any.
    pub error: Option<RunError>,
    /// Accepted at.
    pub created_at: DateTime<Utc>,
    /// First claimed at.
    pub started_at: Option<DateTime<Utc>>,
    /// Reached a terminal status at.
    pub finished_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When a finished job (and its result) may be removed.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A job to insert.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Id.
    pub job_id: JobId,
    /// Kind.
    pub kind: String,
    /// Submitter.
    pub principal: String,
    /// Inputs.
    pub inputs: serde_json::Value,
    /// Accepted at.
    pub created_at: DateTime<Utc>,
}

/// Which jobs [`JobStore::list_jobs`] returns, newest first.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only this submitter's.
    pub principal: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only jobs older than this one (the next page).
    pub before: Option<JobId>,
    /// At most this many (0: 100).
    pub limit: u32,
}

/// How a claimed job ends its attempt.
#[derive(Debug, Clone)]
pub enum JobOutcome {
    /// Done: the result document, kept until `expires_at`.
    Succeeded {
        /// The result.
        result: serde_json::Value,
        /// When it may be removed.
        expires_at: Option<DateTime<Utc>>,
    },
    /// Failed for good.
    Failed {
        /// Why.
        error: RunError,
        /// When the record may be removed.
        expires_at: Option<DateTime<Utc>>,
    },
    /// Failed transiently: `retrying`, announced again by `outbox` (delayed), in the same
    /// transaction; the state of a waiting job ([`JobOutcome::Wait`]) is kept.
    Retry {
        /// Why.
        error: RunError,
        /// The delayed announcement of the next attempt.
        outbox: NewOutbox,
    },
    /// Not finished: the job waits for something outside it (a run it started). `retrying`
    /// without an error, its `state` kept in the result column for the next attempt (which
    /// reads it as [`JobRecord::result`]), announced again by `outbox`; the attempt is not
    /// counted against the job's retries.
    Wait {
        /// What the next attempt needs (the run's id).
        state: serde_json::Value,
        /// The delayed announcement of the next attempt.
        outbox: NewOutbox,
    },
}

/// Durable jobs. Part of [`Database`].
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Inserts a queued job and its announcement in one transaction.
    async fn create_job(&self, job: &NewJob, outbox: &NewOutbox) -> DbResult<JobRecord>;
    /// One job.
    async fn get_job(&self, job_id: JobId) -> DbResult<Option<JobRecord>>;
    /// Jobs matching `filter`, newest first.
    async fn list_jobs(&self, filter: &JobFilter) -> DbResult<Vec<JobRecord>>;
    /// How many of `principal`'s jobs are not finished (queued, running or retrying).
    async fn count_active_jobs(&self, principal: &str) -> DbResult<u64>;
    /// Claims a queued or retrying job, or a running one whose lease expired, for `owner`
    /// until `lease_until`; `None` when it is not claimable (held, finished, cancelled, gone).
    async fn claim_job(
        &self,
        job_id: JobId,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> DbResult<Option<JobRecord>>;
    /// Renews `owner`'s lease until `lease_until` (`now`: hands it back) and records
    /// `progress` when given.
    ///
    /// # Errors
    /// [`DbError::LeaseLost`] when `owner` no longer holds the job (expired and reclaimed, or
    /// cancelled): the caller stops working on it.
    async fn heartbeat_job(
        &self,
        job_id: JobId,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        progress: Option<&Progress>,
    ) -> DbResult<()>;
    /// Ends `owner`'s attempt with `outcome`, recording the attempt's last `progress` when
    /// given.
    ///
    /// # Errors
    /// [`DbError::LeaseLost`] when `owner` no longer holds the job; nothing is written.
    async fn finish_job(
        &self,
        job_id: JobId,
        owner: &str,
        outcome: &JobOutcome,
        progress: Option<&Progress>,
        now: DateTime<Utc>,
    ) -> DbResult<()>;
    /// Cancels an unfinished job (its worker loses the lease at its next heartbeat), to be
    /// removed after `expires_at` like a finished one; returns the job as it is now, `None`
    /// when there is none.
    async fn cancel_job(
        &self,
        job_id: JobId,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> DbResult<Option<JobRecord>>;
    /// Removes a finished job's record; `false` when there is none or it is not finished.
    async fn delete_job(&self, job_id: JobId) -> DbResult<bool>;
    /// Finished jobs whose `expires_at` is before `now`, oldest expiry first, at most `limit`.
    async fn expired_jobs(&self, now: DateTime<Utc>, limit: u32) -> DbResult<Vec<JobId>>;
}

macro_rules! job_columns {
    () => {
        "job_id, kind, principal, status, inputs, progress_done, progress_total, progress_message, \
         attempts, lease_owner, lease_expires_at, result, error_code, error_message, created_at, \
         started_at, finished_at, updated_at, expires_at"
    };
}

macro_rules! job_select {
    ($tail:literal) => {
        concat!("SELECT ", job_columns!(), " FROM jobs ", $tail)
    };
}

/// A row of `jobs`; [`JobRecord`] is its checked form.
#[derive(sqlx::FromRow)]
struct JobRow {
    job_id: String,
    kind: String,
    principal: String,
    status: String,
    inputs: Json<serde_json::Value>,
    progress_done: i64,
    progress_total: i64,
    progress_message: String,
    attempts: i32,
    lease_owner: Option<String>,
    lease_expires_at: Option<i64>,
    result: Option<Json<serde_json::Value>>,
    error_code: Option<String>,
    error_message: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    updated_at: i64,
    expires_at: Option<i64>,
}

impl TryFrom<JobRow> for JobRecord {
    type Error = DbError;

    fn try_from(row: JobRow) -> DbResult<Self> {
        Ok(Self {
            job_id: checked(JobId::new(&row.job_id))?,
            kind: row.kind,
            principal: row.principal,
            status: checked(RunStatus::from_str(&row.status))?,
            inputs: row.inputs.0,
            progress: Progress {
                done: u64::try_from(row.progress_done).unwrap_or(0),
                total: u64::try_from(row.progress_total).unwrap_or(0),
                message: row.progress_message,
            },
            attempts: u32::try_from(row.attempts).unwrap_or(0),
            lease_owner: row.lease_owner,
            lease_expires_at: opt_ms(row.lease_expires_at)?,
            result: row.result.map(|j| j.0),
            error: row.error_code.map(|code| RunError {
                code,
                message: row.error_message.unwrap_or_default(),
            }),
            created_at: from_ms(row.created_at)?,
            started_at: opt_ms(row.started_at)?,
            finished_at: opt_ms(row.finished_at)?,
            updated_at: from_ms(row.updated_at)?,
            expires_at: opt_ms(row.expires_at)?,
        })
    }
}

macro_rules! impl_jobs {
    ($name:ident, $db:ty) => {
        #[async_trait]
        impl JobStore for $name {
            async fn create_job(&self, job: &NewJob, outbox: &NewOutbox) -> DbResult<JobRecord> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO jobs (job_id, kind, principal, status, inputs, created_at, updated_at) \
                     VALUES ($1, $2, $3, 'queued', $4, $5, $5)",
                )
                .bind(job.job_id.to_string())
                .bind(&job.kind)
                .bind(&job.principal)
                .bind(Json(&job.inputs))
                .bind(ms(job.created_at))
                .execute(&mut *tx)
                .await?;
                Self::insert_outbox(&mut *tx, outbox, job.created_at).await?;
                let record = sqlx::query_as::<_, JobRow>(job_select!("WHERE job_id = $1"))
                    .bind(job.job_id.to_string())
                    .fetch_one(&mut *tx)
                    .await?
                    .try_into()?;
                tx.commit().await?;
                Ok(record)
            }

            async fn get_job(&self, job_id: JobId) -> DbResult<Option<JobRecord>> {
                sqlx::query_as::<_, JobRow>(job_select!("WHERE job_id = $1"))
                    .bind(job_id.to_string())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(JobRecord::try_from)
                    .transpose()
            }

            async fn list_jobs(&self, filter: &JobFilter) -> DbResult<Vec<JobRecord>> {
                let limit = if filter.limit == 0 { 100 } else { filter.limit };
                sqlx::query_as::<_, JobRow>(job_select!(
                    "WHERE ($1 IS NULL OR principal = $1) AND ($2 IS NULL OR kind = $2) \
                     AND ($3 IS NULL OR job_id < $3) ORDER BY job_id DESC LIMIT $4"
                ))
                .bind(filter.principal.as_deref())
                .bind(filter.kind.as_deref())
                .bind(filter.before.map(|id| id.to_string()))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(JobRecord::try_from)
                .collect()
            }

            async fn count_active_jobs(&self, principal: &str) -> DbResult<u64> {
                let n: i64 = sqlx::query(
                    "SELECT COUNT(*) AS n FROM jobs \
                     WHERE principal = $1 AND status IN ('queued', 'running', 'retrying')",
                )
                .bind(principal)
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn claim_job(
                &self,
                job_id: JobId,
                owner: &str,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
            ) -> DbResult<Option<JobRecord>> {
                sqlx::query_as::<_, JobRow>(concat!(
                    "UPDATE jobs SET status = 'running', lease_owner = $2, lease_expires_at = $4, \
                     attempts = attempts + 1, started_at = COALESCE(started_at, $3), updated_at = $3 \
                     WHERE job_id = $1 AND (status IN ('queued', 'retrying') \
                       OR (status = 'running' AND lease_expires_at < $3)) RETURNING ",
                    job_columns!()
                ))
                .bind(job_id.to_string())
                .bind(owner)
                .bind(ms(now))
                .bind(ms(lease_until))
                .fetch_optional(&self.pool)
                .await?
                .map(JobRecord::try_from)
                .transpose()
            }

            async fn heartbeat_job(
                &self,
                job_id: JobId,
                owner: &str,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
                progress: Option<&Progress>,
            ) -> DbResult<()> {
                let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                let done = sqlx::query(
                    "UPDATE jobs SET lease_expires_at = $3, updated_at = $4, \
                     progress_done = COALESCE($5, progress_done), \
                     progress_total = COALESCE($6, progress_total), \
                     progress_message = COALESCE($7, progress_message) \
                     WHERE job_id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(job_id.to_string())
                .bind(owner)
                .bind(ms(lease_until))
                .bind(ms(now))
                .bind(progress.map(|p| count(p.done)))
                .bind(progress.map(|p| count(p.total)))
                .bind(progress.map(|p| p.message.as_str()))
                .execute(&self.pool)
                .await?;
                held(done.rows_affected(), &job_id)
            }

            async fn finish_job(
                &self,
                job_id: JobId,
                owner: &str,
                outcome: &JobOutcome,
                progress: Option<&Progress>,
                now: DateTime<Utc>,
            ) -> DbResult<()> {
                let (status, result, error, expires_at) = match outcome {
                    JobOutcome::Succeeded { result, expires_at } => {
                        ("succeeded", Some(result), None, *expires_at)
                    }
                    JobOutcome::Failed { error, expires_at } => ("failed", None, Some(error), *expires_at),
                    JobOutcome::Retry { error, .. } => ("retrying", None, Some(error), None),
                    JobOutcome::Wait { state, .. } => ("retrying", Some(state), None, None),
                };
                let uncounted = i32::from(matches!(outcome, JobOutcome::Wait { .. }));
                // A transient failure of a waiting job keeps what it waits for.
                let keep_state = matches!(outcome, JobOutcome::Retry { .. });
                let finished = (status != "retrying").then_some(ms(now));
                let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE jobs SET status = $3, result = CASE WHEN $14 THEN result ELSE $4 END, error_code = $5, error_message = $6, \
                     finished_at = $7, expires_at = $8, updated_at = $9, lease_owner = NULL, \
                     lease_expires_at = NULL, progress_done = COALESCE($10, progress_done), \
                     progress_total = COALESCE($11, progress_total), \
                     progress_message = COALESCE($12, progress_message), attempts = attempts - $13 \
                     WHERE job_id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(job_id.to_string())
                .bind(owner)
                .bind(status)
                .bind(result.map(Json))
                .bind(error.map(|e| e.code.as_str()))
                .bind(error.map(|e| e.message.as_str()))
                .bind(finished)
                .bind(expires_at.map(ms))
                .bind(ms(now))
                .bind(progress.map(|p| count(p.done)))
                .bind(progress.map(|p| count(p.total)))
                .bind(progress.map(|p| p.message.as_str()))
                .bind(uncounted)
                .bind(keep_state)
                .execute(&mut *tx)
                .await?;
                // Dropping the transaction rolls it back.
                held(done.rows_affected(), &job_id)?;
                if let JobOutcome::Retry { outbox, .. } | JobOutcome::Wait { outbox, .. } = outcome {
                    Self::insert_outbox(&mut *tx, outbox, now).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn cancel_job(
                &self,
                job_id: JobId,
                now: DateTime<Utc>,
                expires_at: DateTime<Utc>,
            ) -> DbResult<Option<JobRecord>> {
                // A waiting job's state goes with it.
                sqlx::query(
                    "UPDATE jobs SET status = 'cancelled', finished_at = $2, updated_at = $2, \
                     lease_owner = NULL, lease_expires_at = NULL, progress_message = 'cancelled', \
                     result = NULL, expires_at = $3 \
                     WHERE job_id = $1 AND status IN ('queued', 'running', 'retrying')",
                )
                .bind(job_id.to_string())
                .bind(ms(now))
                .bind(ms(expires_at))
                .execute(&self.pool)
                .await?;
                self.get_job(job_id).await
            }

            async fn expired_jobs(&self, now: DateTime<Utc>, limit: u32) -> DbResult<Vec<JobId>> {
                let ids: Vec<String> = sqlx::query_scalar(
                    "SELECT job_id FROM jobs WHERE expires_at IS NOT NULL AND expires_at < $1 \
                     AND status IN ('succeeded', 'failed', 'cancelled') ORDER BY expires_at LIMIT $2",
                )
                .bind(ms(now))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                ids.iter().map(|id| checked(JobId::new(id))).collect()
            }

            async fn delete_job(&self, job_id: JobId) -> DbResult<bool> {
                let done = sqlx::query(
                    "DELETE FROM jobs WHERE job_id = $1 AND status IN ('succeeded', 'failed', 'cancelled')",
                )
                .bind(job_id.to_string())
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

impl_jobs!(SqliteDb, sqlx::Sqlite);
impl_jobs!(PostgresDb, sqlx::Postgres);
