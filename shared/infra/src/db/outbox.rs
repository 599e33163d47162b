//! The outbox: messages written in the transaction of the state change they announce,
//! published by the relay; and the recovery that announces again what a dead worker held.

use super::*;
use crate::messages::JobMessage;

/// The row a lease-recovery update takes back: a run or job by id, or one part of a run.
enum Key {
    Id(String),
    Part(String, i32),
}

#[derive(sqlx::FromRow)]
struct PendingRow {
    id: i64,
    topic: String,
    payload: Json<serde_json::Value>,
    headers: Option<Json<crate::queue::Headers>>,
}

impl From<PendingRow> for OutboxRow {
    fn from(row: PendingRow) -> Self {
        Self {
            id: row.id,
            topic: row.topic,
            payload: row.payload.0,
            headers: row.headers.map(|h| h.0).unwrap_or_default(),
        }
    }
}

/// A pending outbox message.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// Sequence number.
    pub id: i64,
    /// Queue topic (currently always `task`).
    pub topic: String,
    /// Message body.
    pub payload: serde_json::Value,
    /// Message headers: the trace context of the span that wrote the row.
    pub headers: crate::queue::Headers,
}

/// An outbox message to insert with a state change. The trace context of the current span is
/// stored with it (see [`crate::telemetry::trace_headers`]).
#[derive(Debug, Clone)]
pub struct NewOutbox {
    /// Topic.
    pub topic: String,
    /// Message body.
    pub payload: serde_json::Value,
    /// Not published before this instant (delayed retries).
    pub available_at: DateTime<Utc>,
}

/// The outbox and lease recovery. Part of [`Database`].
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Outbox rows due for publication, oldest first.
    async fn pending_outbox(&self, now: DateTime<Utc>, limit: u32) -> DbResult<Vec<OutboxRow>>;
    /// How many outbox rows are due for publication and not yet published (delayed retries
    /// are not counted until due).
    async fn count_pending_outbox(&self, now: DateTime<Utc>) -> DbResult<u64>;
    /// Marks outbox rows published.
    async fn mark_published(&self, ids: &[i64], now: DateTime<Utc>) -> DbResult<()>;
    /// Takes back what expired leases held — runs, segments and jobs — and announces it again.
    async fn requeue_expired(&self, now: DateTime<Utc>, outbox_topic: &str) -> DbResult<u64>;
    /// Re-announces every non-terminal run and job (used at start-up with a non-durable queue).
    async fn reannounce_unfinished(&self, now: DateTime<Utc>, outbox_topic: &str) -> DbResult<u64>;
}

macro_rules! impl_outbox {
    ($name:ident, $db:ty) => {
        impl $name {
            pub(super) async fn insert_outbox<'c, E>(exec: E, outbox: &NewOutbox, now: DateTime<Utc>) -> DbResult<()>
            where
                E: sqlx::Executor<'c, Database = $db>,
            {
                let headers = crate::telemetry::trace_headers(&tracing::Span::current());
                sqlx::query(
                    "INSERT INTO outbox (topic, payload, headers, available_at, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&outbox.topic)
                .bind(Json(&outbox.payload))
                .bind((!headers.is_empty()).then_some(Json(headers)))
                .bind(ms(outbox.available_at))
                .bind(ms(now))
                .execute(exec)
                .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl OutboxStore for $name {
            async fn pending_outbox(&self, now: DateTime<Utc>, limit: u32) -> DbResult<Vec<OutboxRow>> {
                let rows = sqlx::query_as::<_, PendingRow>(
                    "SELECT id, topic, payload, headers FROM outbox WHERE published_at IS NULL AND available_at <= $1 \
                     ORDER BY id LIMIT $2",
                )
                .bind(ms(now))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(OutboxRow::from).collect())
            }

            async fn count_pending_outbox(&self, now: DateTime<Utc>) -> DbResult<u64> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL AND available_at <= $1",
                )
                .bind(ms(now))
                .fetch_one(&self.pool)
                .await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn mark_published(&self, ids: &[i64], now: DateTime<Utc>) -> DbResult<()> {
                let mut tx = self.pool.begin().await?;
                for id in ids {
                    sqlx::query("UPDATE outbox SET published_at = $2 WHERE id = $1")
                        .bind(id)
                        .bind(ms(now))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn requeue_expired(&self, now: DateTime<Utc>, topic: &str) -> DbResult<u64> {
                let t = ms(now);
                // Each candidate: the guarded update that takes it back (`$last` is now) and the
                // message announcing it again. A candidate whose lease was renewed or taken
                // since the select is left alone by its update.
                let mut candidates: Vec<(&'static str, Key, serde_json::Value)> = Vec::new();
                // Runs whose plan or finalize step lost its worker: unplanned runs plan again
                // from scratch; planned ones only finalize again.
                for r in sqlx::query(
                    "SELECT run_id, plan IS NOT NULL AS planned FROM ingestion_runs \
                     WHERE status = 'running' AND lease_expires_at < $1",
                )
                .bind(t)
                .fetch_all(&self.pool)
                .await?
                {
                    let id: String = r.try_get("run_id")?;
                    let (sql, step) = if r.try_get("planned")? {
                        (
                            "UPDATE ingestion_runs SET lease_owner = NULL, lease_expires_at = NULL, updated_at = $2 \
                             WHERE run_id = $1 AND status = 'running' AND lease_expires_at < $2",
                            Step::Finalize,
                        )
                    } else {
                        (
                            "UPDATE ingestion_runs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, \
                             updated_at = $2 WHERE run_id = $1 AND status = 'running' AND lease_expires_at < $2",
                            Step::Plan,
                        )
                    };
                    let msg = TaskMessage::step(checked(RunId::new(&id))?, step).to_json();
                    candidates.push((sql, Key::Id(id), msg));
                }
                // Segments whose worker stopped heartbeating.
                for r in sqlx::query(
                    "SELECT run_id, segment FROM ingestion_segments WHERE status = 'running' AND lease_expires_at < $1",
                )
                .bind(t)
                .fetch_all(&self.pool)
                .await?
                {
                    let (id, seg): (String, i32) = (r.try_get("run_id")?, r.try_get("segment")?);
                    let step = Step::Segment(u32::try_from(seg).unwrap_or(0));
                    let msg = TaskMessage::step(checked(RunId::new(&id))?, step).to_json();
                    candidates.push((
                        "UPDATE ingestion_segments SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, \
                         updated_at = $3 WHERE run_id = $1 AND segment = $2 AND status = 'running' AND lease_expires_at < $3",
                        Key::Part(id, seg),
                        msg,
                    ));
                }
                // Jobs of the other kinds: queued again, for any worker to claim.
                for r in sqlx::query("SELECT job_id, kind FROM jobs WHERE status = 'running' AND lease_expires_at < $1")
                    .bind(t)
                    .fetch_all(&self.pool)
                    .await?
                {
                    let (id, kind): (String, String) = (r.try_get("job_id")?, r.try_get("kind")?);
                    let job_id = checked(JobId::new(&id))?;
                    candidates.push((
                        "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, \
                         updated_at = $2 WHERE job_id = $1 AND status = 'running' AND lease_expires_at < $2",
                        Key::Id(id),
                        JobMessage::new(&kind, job_id).to_json(),
                    ));
                }
                let mut n = 0;
                for (sql, key, payload) in candidates {
                    let mut tx = self.pool.begin().await?;
                    let query = match key {
                        Key::Id(id) => sqlx::query(sql).bind(id),
                        Key::Part(id, part) => sqlx::query(sql).bind(id).bind(part),
                    };
                    if query.bind(t).execute(&mut *tx).await?.rows_affected() == 1 {
                        let announce = NewOutbox {
                            topic: topic.to_owned(),
                            payload,
                            available_at: now,
                        };
                        Self::insert_outbox(&mut *tx, &announce, now).await?;
                        n += 1;
                    }
                    tx.commit().await?;
                }
                Ok(n)
            }

            async fn reannounce_unfinished(&self, now: DateTime<Utc>, topic: &str) -> DbResult<u64> {
                let mut tx = self.pool.begin().await?;
                let mut messages: Vec<TaskMessage> = Vec::new();
                // Unplanned runs: plan.
                for r in sqlx::query(
                    "SELECT run_id FROM ingestion_runs WHERE status IN ('queued', 'retrying') \
                       OR (status = 'running' AND plan IS NULL) ORDER BY run_id",
                )
                .fetch_all(&mut *tx)
                .await?
                {
                    messages.push(TaskMessage::step(checked(RunId::new(&r.try_get::<String, _>("run_id")?))?, Step::Plan));
                }
                // Planned runs: their unfinished segments, or finalize when none is left.
                for r in sqlx::query(
                    "SELECT run_id FROM ingestion_runs WHERE status = 'running' AND plan IS NOT NULL ORDER BY run_id",
                )
                .fetch_all(&mut *tx)
                .await?
                {
                    let id: String = r.try_get("run_id")?;
                    let run_id = checked(RunId::new(&id))?;
                    let pending: Vec<i32> = sqlx::query(
                        "SELECT segment FROM ingestion_segments WHERE run_id = $1 AND status <> 'done' ORDER BY segment",
                    )
                    .bind(&id)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get("segment"))
                    .collect::<Result<_, _>>()?;
                    if pending.is_empty() {
                        messages.push(TaskMessage::step(run_id, Step::Finalize));
                    }
                    for seg in pending {
                        messages.push(TaskMessage::step(run_id, Step::Segment(u32::try_from(seg).unwrap_or(0))));
                    }
                }
                let mut payloads: Vec<serde_json::Value> = messages.iter().map(TaskMessage::to_json).collect();
                // Unfinished jobs of the other kinds.
                for r in sqlx::query(
                    "SELECT job_id, kind FROM jobs WHERE status IN ('queued', 'running', 'retrying') ORDER BY job_id",
                )
                .fetch_all(&mut *tx)
                .await?
                {
                    let (id, kind): (String, String) = (r.try_get("job_id")?, r.try_get("kind")?);
                    let job_id = checked(JobId::new(&id))?;
                    payloads.push(JobMessage::new(&kind, job_id).to_json());
                }
                for payload in &payloads {
                    let outbox = NewOutbox {
                        topic: topic.to_owned(),
                        payload: payload.clone(),
                        available_at: now,
                    };
                    Self::insert_outbox(&mut *tx, &outbox, now).await?;
                }
                tx.commit().await?;
                Ok(payloads.len() as u64)
            }
        }
    };
}

impl_outbox!(SqliteDb, sqlx::Sqlite);
impl_outbox!(PostgresDb, sqlx::Postgres);
