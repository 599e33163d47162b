//! Persistence of runs, managed datasets, versions and the outbox, behind the [`Database`]
//! trait, with one implementation per engine (SQLite for standalone, PostgreSQL for distributed).
//!
//! [`Database`] is the sum of one trait per aggregate — [`RunStore`] (runs and admission),
//! [`SegmentStore`], [`OutboxStore`] (with lease recovery), [`CatalogStore`] (datasets and
//! versions), [`KeyStore`], [`IdempotencyStore`], [`ScheduleStore`] and [`JobStore`] (durable
//! jobs of the other kinds) — each in a module of its
//! own with its records. Methods called on `dyn Database` need no import; code generic over an
//! engine brings the traits into scope with `use climate_infra::db::prelude::*`.
//!
//! Both engines' implementations are generated from the same SQL text by one `impl_…!` macro per
//! module: the schema is kept portable (epoch-millisecond timestamps, `$N` placeholders,
//! `ON CONFLICT`, `RETURNING`), so a query is written once and the backend-conformance tests
//! prove it on both engines.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use climate_domain::ids::{DatasetId, ExtentId, JobId, RunId, TemplateId};
use climate_domain::run::{Progress, RunKind, RunStatus};
use serde::{Deserialize, Serialize};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::types::Json;
use sqlx::{Row, SqlStr};

use crate::messages::{Step, TaskMessage};

/// Errors of the persistence layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The driver failed (connection, constraint, syntax).
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded into a domain value.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The caller's lease on a run is gone (expired and reclaimed, or the run was cancelled).
    #[error("lease on run {0} is no longer held")]
    LeaseLost(String),
    /// The URL names no supported engine.
    #[error("unsupported database url '{0}': expected sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
}

impl DbError {
    /// Whether the database is unreachable or overloaded (worth a 503 and a retry), as opposed
    /// to a bug or corrupt data.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Sqlx(
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::WorkerCrashed
            )
        ) || matches!(self, Self::Sqlx(sqlx::Error::Database(e)) if e.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")))
    }
}

/// Result alias of this module.
pub type DbResult<T> = Result<T, DbError>;

pub use catalog::*;
pub use idempotency::*;
pub use jobs::*;
pub use keys::*;
pub use outbox::*;
pub use runs::*;
pub use schedules::*;
pub use segments::*;

/// The aggregate traits, for calling [`Database`] methods: `use climate_infra::db::prelude::*`.
pub mod prelude {
    pub use super::{
        CatalogStore, Database, IdempotencyStore, JobStore, KeyStore, OutboxStore, RunStore,
        ScheduleStore, SegmentStore,
    };
}

/// Error stored on a failed or retrying run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    /// Stable machine-readable code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// Everything the platform persists: one trait per aggregate, implemented for both engines.
#[async_trait]
pub trait Database:
    RunStore
    + SegmentStore
    + OutboxStore
    + CatalogStore
    + KeyStore
    + IdempotencyStore
    + ScheduleStore
    + JobStore
    + Send
    + Sync
    + std::fmt::Debug
{
    /// `sqlite` or `postgres`.
    fn engine(&self) -> &'static str;
    /// Checks the connection.
    async fn ping(&self) -> DbResult<()>;
    /// Applies pending migrations.
    async fn migrate(&self) -> DbResult<()>;
}

/// Connects to the database named by `url` and returns the matching implementation.
///
/// # Errors
/// [`DbError`] when the URL is unsupported or the connection fails.
pub async fn connect(
    url: &str,
    max_connections: Option<u32>,
) -> DbResult<std::sync::Arc<dyn Database>> {
    if url.starts_with("sqlite:") {
        use sqlx::sqlite::{
            SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
        };
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        if let Some(parent) = opts.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| DbError::Sqlx(sqlx::Error::Io(e)))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.unwrap_or(8))
            .connect_with(opts)
            .await?;
        Ok(std::sync::Arc::new(SqliteDb { pool }))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(max_connections.unwrap_or(10))
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(std::sync::Arc::new(PostgresDb { pool }))
    } else {
        Err(DbError::UnsupportedUrl(url.to_owned()))
    }
}

/// The migrator. Migrations are expand-only (see `migrations/README.md`), so a database that
/// a newer release already migrated is fine for this one: during a rolling upgrade or after a
/// rollback, the older processes start against it instead of refusing the unknown versions.
fn migrator(migrations: &[(i64, &'static str, &'static str)]) -> Migrator {
    let mut migrator = Migrator::with_migrations(
        migrations
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    SqlStr::from_static(sql),
                    false,
                )
            })
            .collect(),
    );
    migrator.set_ignore_missing(true);
    migrator
}

/// A lease-guarded statement touches exactly one row, or the caller no longer holds the run.
fn held(rows_affected: u64, id: &impl std::fmt::Display) -> DbResult<()> {
    if rows_affected == 1 {
        Ok(())
    } else {
        Err(DbError::LeaseLost(id.to_string()))
    }
}

/// A stored value that does not parse into its domain type is a corrupt row.
fn checked<T, E: std::fmt::Display>(parsed: Result<T, E>) -> DbResult<T> {
    parsed.map_err(|e| DbError::Corrupt(e.to_string()))
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DbResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v).ok_or_else(|| DbError::Corrupt(format!("timestamp {v}")))
}

fn opt_ms(v: Option<i64>) -> DbResult<Option<DateTime<Utc>>> {
    v.map(from_ms).transpose()
}

macro_rules! run_select {
    ($tail:literal) => {
        concat!(
            "SELECT run_id, kind, status, dataset_id, template_id, extent_id, request, \
             progress_done, progress_total, progress_message, attempts, error_code, error_message, \
             lease_owner, lease_expires_at, version, plan, provider_state, created_at, started_at, finished_at, updated_at \
             FROM ingestion_runs ",
            $tail
        )
    };
}

macro_rules! api_key_select {
    () => {
        "SELECT key_id, name, scopes, secret_hash, created_at, expires_at, revoked_at, \
         last_used_at FROM api_keys"
    };
}

// The aggregates; declared after the SQL macros above, which they use.
mod catalog;
mod idempotency;
mod jobs;
mod keys;
mod outbox;
mod runs;
mod schedules;
mod segments;

macro_rules! impl_database {
    ($name:ident, $engine:literal, $db:ty, $migrations:literal) => {
        /// [`Database`] on
        #[doc = $engine]
        #[derive(Debug, Clone)]
        pub struct $name {
            pool: sqlx::Pool<$db>,
        }

        impl $name {
            /// The underlying pool (tests and tools).
            pub fn pool(&self) -> &sqlx::Pool<$db> {
                &self.pool
            }
        }

        #[async_trait]
        impl Database for $name {
            fn engine(&self) -> &'static str {
                $engine
            }

            async fn ping(&self) -> DbResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn migrate(&self) -> DbResult<()> {
                migrator(&[
                    (
                        1,
                        "initial",
                        include_str!(concat!($migrations, "/0001_initial.sql")),
                    ),
                    (
                        2,
                        "segments",
                        include_str!(concat!($migrations, "/0002_segments.sql")),
                    ),
                    (
                        3,
                        "provider_state",
                        include_str!(concat!($migrations, "/0003_provider_state.sql")),
                    ),
                    (
                        4,
                        "sync_schedules",
                        include_str!(concat!($migrations, "/0004_sync_schedules.sql")),
                    ),
                    (
                        5,
                        "auth",
                        include_str!(concat!($migrations, "/0005_auth.sql")),
                    ),
                    (
                        6,
                        "outbox_headers",
                        include_str!(concat!($migrations, "/0006_outbox_headers.sql")),
                    ),
                    (
                        7,
                        "run_admissions",
                        include_str!(concat!($migrations, "/0007_run_admissions.sql")),
                    ),
                    (
                        8,
                        "jobs",
                        include_str!(concat!($migrations, "/0008_jobs.sql")),
                    ),
                ])
                .run(&self.pool)
                .await?;
                Ok(())
            }
        }
    };
}

impl_database!(
    SqliteDb,
    "sqlite",
    sqlx::Sqlite,
    "../../../../migrations/sqlite"
);
impl_database!(
    PostgresDb,
    "postgres",
    sqlx::Postgres,
    "../../../../migrations/postgres"
);
