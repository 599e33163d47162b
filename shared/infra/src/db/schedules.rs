//! Schedules: per-dataset overrides and pausing, and the due times the scheduler acted on.

use super::*;

/// A dataset's schedule override and pause flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    /// Dataset.
    pub dataset_id: DatasetId,
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
    pub run_id: RunId,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Sync schedules and due times. Part of [`Database`].
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// The newest due time acted on for a dataset.
    async fn last_sync_tick(&self, dataset_id: &DatasetId) -> DbResult<Option<SyncTick>>;
    /// A dataset's schedule override and pause flag, if it has one.
    async fn get_schedule(&self, dataset_id: &DatasetId) -> DbResult<Option<ScheduleRecord>>;
    /// Sets (creates or replaces) a dataset's schedule override and pause flag.
    async fn set_schedule(&self, schedule: &ScheduleRecord) -> DbResult<()>;
}

#[derive(sqlx::FromRow)]
struct TickRow {
    due_key: String,
    run_id: String,
    created_at: i64,
}

impl TryFrom<TickRow> for SyncTick {
    type Error = DbError;

    fn try_from(row: TickRow) -> DbResult<Self> {
        Ok(Self {
            due_key: row.due_key,
            run_id: checked(RunId::new(&row.run_id))?,
            created_at: from_ms(row.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ScheduleRow {
    dataset_id: String,
    paused: bool,
    schedule: Option<String>,
    updated_at: i64,
}

impl TryFrom<ScheduleRow> for ScheduleRecord {
    type Error = DbError;

    fn try_from(row: ScheduleRow) -> DbResult<Self> {
        Ok(Self {
            dataset_id: checked(DatasetId::new(row.dataset_id))?,
            paused: row.paused,
            schedule: row.schedule,
            updated_at: from_ms(row.updated_at)?,
        })
    }
}

macro_rules! impl_schedules {
    ($name:ident, $db:ty) => {
        #[async_trait]
        impl ScheduleStore for $name {
            async fn last_sync_tick(&self, dataset_id: &DatasetId) -> DbResult<Option<SyncTick>> {
                sqlx::query_as::<_, TickRow>(
                    "SELECT due_key, run_id, created_at FROM sync_ticks WHERE dataset_id = $1 \
                     ORDER BY created_at DESC, due_key DESC LIMIT 1",
                )
                .bind(dataset_id.as_str())
                .fetch_optional(&self.pool)
                .await?
                .map(SyncTick::try_from)
                .transpose()
            }

            async fn get_schedule(
                &self,
                dataset_id: &DatasetId,
            ) -> DbResult<Option<ScheduleRecord>> {
                sqlx::query_as::<_, ScheduleRow>(
                    "SELECT dataset_id, paused, schedule, updated_at FROM dataset_schedules \
                     WHERE dataset_id = $1",
                )
                .bind(dataset_id.as_str())
                .fetch_optional(&self.pool)
                .await?
                .map(ScheduleRecord::try_from)
                .transpose()
            }

            async fn set_schedule(&self, s: &ScheduleRecord) -> DbResult<()> {
                sqlx::query(
                    "INSERT INTO dataset_schedules (dataset_id, paused, schedule, updated_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (dataset_id) DO UPDATE SET \
                     paused = excluded.paused, schedule = excluded.schedule, \
                     updated_at = excluded.updated_at",
                )
                .bind(s.dataset_id.as_str())
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

impl_schedules!(SqliteDb, sqlx::Sqlite);
impl_schedules!(PostgresDb, sqlx::Postgres);
