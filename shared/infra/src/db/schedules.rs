//! Schedules: per-dataset overrides and pausing, and the due times the scheduler acted on.

use super::*;

/// A dataset's schedule override and pause flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    /// Dataset.
    pub dataset_id: String,
    /// Syncs are not emitted while paused.
    pub paused: bool,
    /// Overrides the template's schedule (`as_available` or a cron expression).
    pub schedule: Option<String>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// The newest due time the scheduler acted on for a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncTick {
    /// `available:<period>` or a cron occurrence (RFC 3339).
    pub due_key: String,
    /// The run it started.
    pub run_id: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Sync schedules and due times. Part of [`Database`].
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// The newest due time acted on for a dataset.
    async fn last_sync_tick(&self, dataset_id: &str) -> DbResult<Option<SyncTick>>;
    /// A dataset's schedule override and pause flag, if it has one.
    async fn get_schedule(&self, dataset_id: &str) -> DbResult<Option<ScheduleRecord>>;
    /// Sets (creates or replaces) a dataset's schedule override and pause flag.
    async fn set_schedule(&self, schedule: &ScheduleRecord) -> DbResult<()>;
}

macro_rules! impl_schedules {
    ($name:ident, $db:ty, $row:ty) => {
        #[async_trait]
        impl ScheduleStore for $name {
            async fn last_sync_tick(&self, dataset_id: &str) -> DbResult<Option<SyncTick>> {
                let row = sqlx::query(
                    "SELECT due_key, run_id, created_at FROM sync_ticks WHERE dataset_id = $1 \
                     ORDER BY created_at DESC, due_key DESC LIMIT 1",
                )
                .bind(dataset_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| -> DbResult<SyncTick> {
                    Ok(SyncTick {
                        due_key: r.try_get("due_key")?,
                        run_id: r.try_get("run_id")?,
                        created_at: from_ms(r.try_get("created_at")?)?,
                    })
                })
                .transpose()
            }

            async fn get_schedule(&self, dataset_id: &str) -> DbResult<Option<ScheduleRecord>> {
                let row = sqlx::query(
                    "SELECT dataset_id, paused, schedule, updated_at FROM dataset_schedules \
                     WHERE dataset_id = $1",
                )
                .bind(dataset_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| -> DbResult<ScheduleRecord> {
                    Ok(ScheduleRecord {
                        dataset_id: r.try_get("dataset_id")?,
                        paused: r.try_get("paused")?,
                        schedule: r.try_get("schedule")?,
                        updated_at: from_ms(r.try_get("updated_at")?)?,
                    })
                })
                .transpose()
            }

            async fn set_schedule(&self, s: &ScheduleRecord) -> DbResult<()> {
                sqlx::query(
                    "INSERT INTO dataset_schedules (dataset_id, paused, schedule, updated_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (dataset_id) DO UPDATE SET \
                     paused = excluded.paused, schedule = excluded.schedule, \
                     updated_at = excluded.updated_at",
                )
                .bind(&s.dataset_id)
                .bind(s.paused)
                .bind(&s.schedule)
                .bind(ms(s.updated_at))
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }
    };
}

impl_schedules!(SqliteDb, sqlx::Sqlite, sqlx::sqlite::SqliteRow);
impl_schedules!(PostgresDb, sqlx::Postgres, sqlx::postgres::PgRow);
