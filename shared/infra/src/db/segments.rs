//! Segments: a planned run's parallel pieces, each under a lease of its own, and the
//! finalize step that follows the last one.

use super::*;

/// Lifecycle of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentStatus {
    /// Waiting for a worker.
    Queued,
    /// Held by a worker's lease.
    Running,
    /// Failed transiently; announced again later.
    Retrying,
    /// Written.
    Done,
    /// Failed for good (the run failed with it).
    Failed,
}

impl SegmentStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> DbResult<Self> {
        Ok(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "retrying" => Self::Retrying,
            "done" => Self::Done,
            "failed" => Self::Failed,
            other => return Err(DbError::Corrupt(format!("segment status {other}"))),
        })
    }
}

/// A segment to create when a run is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewSegment {
    /// Index within the run (0, 1, …).
    pub segment: u32,
    /// First time chunk (inclusive).
    pub chunk_start: u64,
    /// Last time chunk (exclusive).
    pub chunk_end: u64,
    /// Periods the segment writes.
    pub periods: u64,
}

/// A segment as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRecord {
    /// Run.
    pub run_id: RunId,
    /// Index within the run.
    pub segment: u32,
    /// First time chunk (inclusive).
    pub chunk_start: u64,
    /// Last time chunk (exclusive).
    pub chunk_end: u64,
    /// Periods the segment writes.
    pub periods: u64,
    /// Status.
    pub status: SegmentStatus,
    /// Claims so far.
    pub attempts: u32,
    /// Worker holding the lease.
    pub lease_owner: Option<String>,
    /// Lease end.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Chunk objects written.
    pub chunks_written: u64,
    /// Last error.
    pub error: Option<RunError>,
}

/// A run's segments and its finalize step. Part of [`Database`].
#[async_trait]
pub trait SegmentStore: Send + Sync {
    /// Records a held run's plan and segments, announces every segment and releases the run's
    /// lease (the run stays `running` while its segments are written) — one transaction.
    /// The run's progress total becomes the sum of the segments' periods.
    ///
    /// # Errors
    /// [`DbError::LeaseLost`] (nothing written) when `owner` no longer holds the run.
    async fn plan_run(
        &self,
        run_id: &RunId,
        owner: &str,
        plan: &serde_json::Value,
        segments: &[NewSegment],
        topic: &str,
        now: DateTime<Utc>,
    ) -> DbResult<()>;
    /// The segments of a run, in order.
    async fn list_segments(&self, run_id: &RunId) -> DbResult<Vec<SegmentRecord>>;
    /// Claims a queued, retrying or lease-expired segment of a running run. `None` when it is
    /// held by someone else, done, or its run is no longer running.
    async fn claim_segment(
        &self,
        run_id: &RunId,
        segment: u32,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> DbResult<Option<SegmentRecord>>;
    /// Extends a held segment lease.
    ///
    /// # Errors
    /// [`DbError::LeaseLost`] when `owner` no longer holds it.
    async fn heartbeat_segment(
        &self,
        run_id: &RunId,
        segment: u32,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> DbResult<()>;
    /// Marks a held segment done and adds its periods to the run's progress; when it was the
    /// last segment, announces the finalize step. Returns whether it was the last.
    ///
    /// # Errors
    /// [`DbError::LeaseLost`] when `owner` no longer holds the segment.
    async fn complete_segment(
        &self,
        run_id: &RunId,
        segment: u32,
        owner: &str,
        chunks_written: u64,
        topic: &str,
        now: DateTime<Utc>,
    ) -> DbResult<bool>;
    /// Returns a held segment to `retrying` with its error and a delayed announcement.
    ///
    /// # Errors
    /// [`DbError::LeaseLost`] when `owner` no longer holds the segment.
    async fn retry_segment(
        &self,
        run_id: &RunId,
        segment: u32,
        owner: &str,
        error: &RunError,
        outbox: &NewOutbox,
        now: DateTime<Utc>,
    ) -> DbResult<()>;
    /// Fails a held segment for good and its run with it (one transaction).
    ///
    /// # Errors
    /// [`DbError::LeaseLost`] when `owner` no longer holds the segment.
    async fn fail_segment(
        &self,
        run_id: &RunId,
        segment: u32,
        owner: &str,
        error: &RunError,
        now: DateTime<Utc>,
    ) -> DbResult<()>;
    /// Claims a running, planned run whose segments are all done for its finalize step.
    async fn claim_finalize(
        &self,
        run_id: &RunId,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> DbResult<Option<RunRecord>>;
}

/// A row of `ingestion_segments`; [`SegmentRecord`] is its checked form.
#[derive(sqlx::FromRow)]
struct SegmentRow {
    run_id: String,
    segment: i32,
    chunk_start: i64,
    chunk_end: i64,
    periods: i64,
    status: String,
    attempts: i32,
    lease_owner: Option<String>,
    lease_expires_at: Option<i64>,
    chunks_written: i64,
    error_code: Option<String>,
    error_message: Option<String>,
}

impl TryFrom<SegmentRow> for SegmentRecord {
    type Error = DbError;

    fn try_from(row: SegmentRow) -> DbResult<Self> {
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(Self {
            run_id: checked(RunId::new(&row.run_id))?,
            segment: u32::try_from(row.segment).unwrap_or(0),
            chunk_start: u(row.chunk_start),
            chunk_end: u(row.chunk_end),
            periods: u(row.periods),
            status: SegmentStatus::parse(&row.status)?,
            attempts: u32::try_from(row.attempts).unwrap_or(0),
            lease_owner: row.lease_owner,
            lease_expires_at: opt_ms(row.lease_expires_at)?,
            chunks_written: u(row.chunks_written),
            error: row.error_code.map(|code| RunError {
                code,
                message: row.error_message.unwrap_or_default(),
            }),
        })
    }
}

macro_rules! impl_segments {
    ($name:ident, $db:ty) => {
        impl $name {
            /// Ends `owner`'s attempt at a segment with `status` (`retrying` or `failed`) and
            /// `error`, inside `tx`.
            ///
            /// # Errors
            /// [`DbError::LeaseLost`] when `owner` no longer holds the segment.
            async fn end_segment_attempt(
                tx: &mut sqlx::Transaction<'_, $db>,
                run_id: &RunId,
                segment: u32,
                owner: &str,
                status: &str,
                error: &RunError,
                now: DateTime<Utc>,
            ) -> DbResult<()> {
                let done = sqlx::query(
                    "UPDATE ingestion_segments SET status = $7, lease_owner = NULL, lease_expires_at = NULL, \
                     error_code = $4, error_message = $5, updated_at = $6 \
                     WHERE run_id = $1 AND segment = $2 AND lease_owner = $3 AND status = 'running'",
                )
                .bind(run_id.to_string())
                .bind(i32::try_from(segment).unwrap_or(i32::MAX))
                .bind(owner)
                .bind(&error.code)
                .bind(&error.message)
                .bind(ms(now))
                .bind(status)
                .execute(&mut **tx)
                .await?;
                held(done.rows_affected(), run_id)
            }
        }

        #[async_trait]
        impl SegmentStore for $name {
            async fn plan_run(
                &self,
                run_id: &RunId,
                owner: &str,
                plan: &serde_json::Value,
                segments: &[NewSegment],
                topic: &str,
                now: DateTime<Utc>,
            ) -> DbResult<()> {
                let mut tx = self.pool.begin().await?;
                let total: u64 = segments.iter().map(|s| s.periods).sum();
                let done = sqlx::query(
                    "UPDATE ingestion_runs SET plan = $3, lease_owner = NULL, lease_expires_at = NULL, \
                     progress_done = 0, progress_total = $4, progress_message = 'writing segments', updated_at = $5 \
                     WHERE run_id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(run_id.to_string())
                .bind(owner)
                .bind(Json(plan))
                .bind(i64::try_from(total).unwrap_or(i64::MAX))
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                held(done.rows_affected(), run_id)?;
                for seg in segments {
                    sqlx::query(
                        "INSERT INTO ingestion_segments (run_id, segment, chunk_start, chunk_end, periods, status, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, 'queued', $6)",
                    )
                    .bind(run_id.to_string())
                    .bind(i32::try_from(seg.segment).unwrap_or(i32::MAX))
                    .bind(i64::try_from(seg.chunk_start).unwrap_or(i64::MAX))
                    .bind(i64::try_from(seg.chunk_end).unwrap_or(i64::MAX))
                    .bind(i64::try_from(seg.periods).unwrap_or(i64::MAX))
                    .bind(ms(now))
                    .execute(&mut *tx)
                    .await?;
                    let outbox = NewOutbox {
                        topic: topic.to_owned(),
                        payload: TaskMessage::step(*run_id, Step::Segment(seg.segment)).to_json(),
                        available_at: now,
                    };
                    Self::insert_outbox(&mut *tx, &outbox, now).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn list_segments(&self, run_id: &RunId) -> DbResult<Vec<SegmentRecord>> {
                let rows = sqlx::query_as::<_, SegmentRow>(
                    "SELECT * FROM ingestion_segments WHERE run_id = $1 ORDER BY segment",
                )
                .bind(run_id.to_string())
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(SegmentRecord::try_from).collect()
            }

            async fn claim_segment(
                &self,
                run_id: &RunId,
                segment: u32,
                owner: &str,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
            ) -> DbResult<Option<SegmentRecord>> {
                let seg = i32::try_from(segment).unwrap_or(i32::MAX);
                let row = sqlx::query_as::<_, SegmentRow>(
                    "UPDATE ingestion_segments SET status = 'running', lease_owner = $3, lease_expires_at = $5, \
                     attempts = attempts + 1, updated_at = $4 \
                     WHERE run_id = $1 AND segment = $2 \
                       AND (status IN ('queued', 'retrying') OR (status = 'running' AND lease_expires_at < $4)) \
                       AND EXISTS (SELECT 1 FROM ingestion_runs r WHERE r.run_id = $1 AND r.status = 'running') \
                     RETURNING *",
                )
                .bind(run_id.to_string())
                .bind(seg)
                .bind(owner)
                .bind(ms(now))
                .bind(ms(lease_until))
                .fetch_optional(&self.pool)
                .await?;
                row.map(SegmentRecord::try_from).transpose()
            }

            async fn heartbeat_segment(
                &self,
                run_id: &RunId,
                segment: u32,
                owner: &str,
                lease_until: DateTime<Utc>,
            ) -> DbResult<()> {
                let done = sqlx::query(
                    "UPDATE ingestion_segments SET lease_expires_at = $4 \
                     WHERE run_id = $1 AND segment = $2 AND lease_owner = $3 AND status = 'running' \
                       AND EXISTS (SELECT 1 FROM ingestion_runs r WHERE r.run_id = $1 AND r.status = 'running')",
                )
                .bind(run_id.to_string())
                .bind(i32::try_from(segment).unwrap_or(i32::MAX))
                .bind(owner)
                .bind(ms(lease_until))
                .execute(&self.pool)
                .await?;
                held(done.rows_affected(), run_id)
            }

            async fn complete_segment(
                &self,
                run_id: &RunId,
                segment: u32,
                owner: &str,
                chunks_written: u64,
                topic: &str,
                now: DateTime<Utc>,
            ) -> DbResult<bool> {
                let mut tx = self.pool.begin().await?;
                let seg = i32::try_from(segment).unwrap_or(i32::MAX);
                let done = sqlx::query(
                    "UPDATE ingestion_segments SET status = 'done', lease_owner = NULL, lease_expires_at = NULL, \
                     chunks_written = $4, error_code = NULL, error_message = NULL, updated_at = $5 \
                     WHERE run_id = $1 AND segment = $2 AND lease_owner = $3 AND status = 'running' \
                       AND EXISTS (SELECT 1 FROM ingestion_runs r WHERE r.run_id = $1 AND r.status = 'running')",
                )
                .bind(run_id.to_string())
                .bind(seg)
                .bind(owner)
                .bind(i64::try_from(chunks_written).unwrap_or(i64::MAX))
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                held(done.rows_affected(), run_id)?;
                sqlx::query(
                    "UPDATE ingestion_runs SET progress_done = progress_done + \
                       (SELECT periods FROM ingestion_segments WHERE run_id = $1 AND segment = $2), updated_at = $3 \
                     WHERE run_id = $1",
                )
                .bind(run_id.to_string())
                .bind(seg)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                let remaining: i64 = sqlx::query(
                    "SELECT COUNT(*) AS n FROM ingestion_segments WHERE run_id = $1 AND status <> 'done'",
                )
                .bind(run_id.to_string())
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
                let last = remaining == 0;
                if last {
                    let outbox = NewOutbox {
                        topic: topic.to_owned(),
                        payload: TaskMessage::step(*run_id, Step::Finalize).to_json(),
                        available_at: now,
                    };
                    Self::insert_outbox(&mut *tx, &outbox, now).await?;
                }
                tx.commit().await?;
                Ok(last)
            }

            async fn retry_segment(
                &self,
                run_id: &RunId,
                segment: u32,
                owner: &str,
                error: &RunError,
                outbox: &NewOutbox,
                now: DateTime<Utc>,
            ) -> DbResult<()> {
                let mut tx = self.pool.begin().await?;
                Self::end_segment_attempt(&mut tx, run_id, segment, owner, "retrying", error, now).await?;
                // The run shows the latest error while it retries.
                sqlx::query(
                    "UPDATE ingestion_runs SET error_code = $2, error_message = $3, updated_at = $4 WHERE run_id = $1",
                )
                .bind(run_id.to_string())
                .bind(&error.code)
                .bind(&error.message)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                Self::insert_outbox(&mut *tx, outbox, now).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn fail_segment(
                &self,
                run_id: &RunId,
                segment: u32,
                owner: &str,
                error: &RunError,
                now: DateTime<Utc>,
            ) -> DbResult<()> {
                let mut tx = self.pool.begin().await?;
                Self::end_segment_attempt(&mut tx, run_id, segment, owner, "failed", error, now).await?;
                sqlx::query(
                    "UPDATE ingestion_runs SET status = 'failed', error_code = $2, error_message = $3, \
                     finished_at = $4, updated_at = $4, lease_owner = NULL, lease_expires_at = NULL \
                     WHERE run_id = $1 AND status = 'running'",
                )
                .bind(run_id.to_string())
                .bind(&error.code)
                .bind(&error.message)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn claim_finalize(
                &self,
                run_id: &RunId,
                owner: &str,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
            ) -> DbResult<Option<RunRecord>> {
                let row = sqlx::query(
                    "UPDATE ingestion_runs SET lease_owner = $2, lease_expires_at = $4, updated_at = $3 \
                     WHERE run_id = $1 AND status = 'running' AND plan IS NOT NULL \
                       AND (lease_owner IS NULL OR lease_expires_at < $3) \
                       AND NOT EXISTS (SELECT 1 FROM ingestion_segments s WHERE s.run_id = $1 AND s.status <> 'done') \
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
        }
    };
}

impl_segments!(SqliteDb, sqlx::Sqlite);
impl_segments!(PostgresDb, sqlx::Postgres);
