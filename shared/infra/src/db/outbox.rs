//! The outbox: messages written in the transaction of the state change they announce,
//! published by the relay; and the recovery that announces again what a dead worker held.

use super::*;

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
    /// Returns runs whose lease expired to `queued` and announces them again.
    async fn requeue_expired(&self, now: DateTime<Utc>, outbox_topic: &str) -> DbResult<u64>;
    /// Re-announces every non-terminal run (used at start-up with a non-durable queue).
    async fn reannounce_unfinished(&self, now: DateTime<Utc>, outbox_topic: &str) -> DbResult<u64>;
}

macro_rules! impl_outbox {
    ($name:ident, $db:ty, $row:ty) => {
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
                let rows = sqlx::query(
                    "SELECT id, topic, payload, headers FROM outbox WHERE published_at IS NULL AND available_at <= $1 \
                     ORDER BY id LIMIT $2",
                )
                .bind(ms(now))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        let payload: Json<serde_json::Value> = r.try_get("payload")?;
                        let headers: Option<Json<crate::queue::Headers>> = r.try_get("headers")?;
                        Ok(OutboxRow {
                            id: r.try_get("id")?,
                            topic: r.try_get("topic")?,
                            payload: payload.0,
                            headers: headers.map(|h| h.0).unwrap_or_default(),
                        })
                    })
                    .collect()
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
                let announce = |payload: serde_json::Value| NewOutbox {
                    topic: topic.to_owned(),
                    payload,
                    available_at: now,
                };
                let mut n = 0;
                // Runs whose plan or finalize step lost its worker.
                let runs: Vec<(String, bool)> = sqlx::query(
                    "SELECT run_id, plan IS NOT NULL AS planned FROM ingestion_runs \
                     WHERE status = 'running' AND lease_expires_at < $1",
                )
                .bind(t)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("run_id")?, r.try_get("planned")?)))
                .collect::<DbResult<_>>()?;
                for (id, planned) in runs {
                    let mut tx = self.pool.begin().await?;
                    // Unplanned runs plan again from scratch; planned ones only finalize again.
                    let (sql, step) = if planned {
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
                    let done = sqlx::query(sql).bind(&id).bind(t).execute(&mut *tx).await?;
                    if done.rows_affected() == 1 {
                        let msg = TaskMessage::step(&id, step).to_json();
                        Self::insert_outbox(&mut *tx, &announce(msg), now).await?;
                        n += 1;
                    }
                    tx.commit().await?;
                }
                // Segments whose worker stopped heartbeating.
                let segments: Vec<(String, i32)> = sqlx::query(
                    "SELECT run_id, segment FROM ingestion_segments WHERE status = 'running' AND lease_expires_at < $1",
                )
                .bind(t)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("run_id")?, r.try_get("segment")?)))
                .collect::<DbResult<_>>()?;
                for (id, seg) in segments {
                    let mut tx = self.pool.begin().await?;
                    let done = sqlx::query(
                        "UPDATE ingestion_segments SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, \
                         updated_at = $3 WHERE run_id = $1 AND segment = $2 AND status = 'running' AND lease_expires_at < $3",
                    )
                    .bind(&id)
                    .bind(seg)
                    .bind(t)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 1 {
                        let step = Step::Segment(u32::try_from(seg).unwrap_or(0));
                        let msg = TaskMessage::step(&id, step).to_json();
                        Self::insert_outbox(&mut *tx, &announce(msg), now).await?;
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
                    messages.push(TaskMessage::step(&r.try_get::<String, _>("run_id")?, Step::Plan));
                }
                // Planned runs: their unfinished segments, or finalize when none is left.
                for r in sqlx::query(
                    "SELECT run_id FROM ingestion_runs WHERE status = 'running' AND plan IS NOT NULL ORDER BY run_id",
                )
                .fetch_all(&mut *tx)
                .await?
                {
                    let id: String = r.try_get("run_id")?;
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
                        messages.push(TaskMessage::step(&id, Step::Finalize));
                    }
                    for seg in pending {
                        messages.push(TaskMessage::step(&id, Step::Segment(u32::try_from(seg).unwrap_or(0))));
                    }
                }
                for m in &messages {
                    let outbox = NewOutbox {
                        topic: topic.to_owned(),
                        payload: m.to_json(),
                        available_at: now,
                    };
                    Self::insert_outbox(&mut *tx, &outbox, now).await?;
                }
                tx.commit().await?;
                Ok(messages.len() as u64)
            }
        }
    };
}

impl_outbox!(SqliteDb, sqlx::Sqlite, sqlx::sqlite::SqliteRow);
impl_outbox!(PostgresDb, sqlx::Postgres, sqlx::postgres::PgRow);
