//! Persistence of runs, managed datasets, versions and the outbox, behind the [`Database`]
//! trait, with one implementation per engine (SQLite for standalone, PostgreSQL for distributed).
//!
//! [`Database`] is the sum of one trait per aggregate — [`RunStore`] (runs and admission),
//! [`SegmentStore`], [`OutboxStore`] (with lease recovery), [`CatalogStore`] (datasets and
//! versions), [`KeyStore`], [`IdempotencyStore`], [`ScheduleStore`], [`JobStore`] (durable
//! jobs of the other kinds), [`FeatureStore`] (versioned feature collections) and
//! [`HistoryStore`] (the catalog's history, rollback and publication) and [`DumpStore`] (every
//! row, for backups) — each in a module of its
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
use sqlx::{Row, SqlSafeStr};

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
pub use dump::*;
pub use features::*;
pub use history::*;
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
        CatalogStore, Database, DumpStore, FeatureStore, HistoryStore, IdempotencyStore, JobStore,
        KeyStore, OutboxStore, RunStore, ScheduleStore, SegmentStore,
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
    + FeatureStore
    + HistoryStore
    + DumpStore
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

/// The migrations, written once for both engines (`migrations/*.sql`): `{json}` stands for
/// the engine's JSON column type and `{serial_key}` for its auto-numbered primary key, which
/// [`Dialect`] fills in. The rendered text of a released migration never changes (sqlx refuses a
/// database whose applied migrations were edited; a unit test pins every checksum).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../../../migrations/0001_initial.sql"),
    ),
    (
        2,
        "segments",
        include_str!("../../../../migrations/0002_segments.sql"),
    ),
    (
        3,
        "provider_state",
        include_str!("../../../../migrations/0003_provider_state.sql"),
    ),
    (
        4,
        "sync_schedules",
        include_str!("../../../../migrations/0004_sync_schedules.sql"),
    ),
    (
        5,
        "auth",
        include_str!("../../../../migrations/0005_auth.sql"),
    ),
    (
        6,
        "outbox_headers",
        include_str!("../../../../migrations/0006_outbox_headers.sql"),
    ),
    (
        7,
        "run_admissions",
        include_str!("../../../../migrations/0007_run_admissions.sql"),
    ),
    (
        8,
        "jobs",
        include_str!("../../../../migrations/0008_jobs.sql"),
    ),
    (
        9,
        "feature_collections",
        include_str!("../../../../migrations/0009_feature_collections.sql"),
    ),
    (
        10,
        "catalog_events",
        include_str!("../../../../migrations/0010_catalog_events.sql"),
    ),
];

/// What the engines spell differently in a schema.
#[derive(Debug, Clone, Copy)]
struct Dialect {
    /// The JSON column type.
    json: &'static str,
    /// An auto-numbered `BIGINT` primary key.
    serial_key: &'static str,
}

const POSTGRES: Dialect = Dialect {
    json: "JSONB",
    serial_key: "BIGSERIAL PRIMARY KEY",
};

const SQLITE: Dialect = Dialect {
    json: "TEXT",
    serial_key: "INTEGER PRIMARY KEY AUTOINCREMENT",
};

/// The migrator of an engine. Migrations are expand-only (see `migrations/README.md`), so a
/// database that a newer release already migrated is fine for this one: during a rolling
/// upgrade or after a rollback, the older processes start against it instead of refusing the
/// unknown versions.
fn migrator(dialect: Dialect) -> Migrator {
    let mut migrator = Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                let sql = sql
                    .replace("{json}", dialect.json)
                    .replace("{serial_key}", dialect.serial_key);
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    sqlx::AssertSqlSafe(sql).into_sql_str(),
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
             lease_owner, lease_expires_at, version, plan, provider_state, created_at, started_at, finished_at, updated_at, \
             principal FROM ingestion_runs ",
            $tail
        )
    };
}

macro_rules! version_select {
    ($tail:literal) => {
        concat!(
            "SELECT dataset_id, version, artifact_id, storage_prefix, run_id, coverage_start, \
             coverage_end, metadata, created_at, held, pruned_at FROM dataset_versions ",
            $tail
        )
    };
}

macro_rules! dataset_select {
    ($tail:literal) => {
        concat!(
            "SELECT dataset_id, template_id, extent_id, current_version, published, created_at, \
             updated_at FROM managed_datasets ",
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
mod dump;
mod features;
mod history;
mod idempotency;
mod jobs;
mod keys;
mod outbox;
mod runs;
mod schedules;
mod segments;

macro_rules! impl_database {
    ($name:ident, $engine:literal, $db:ty, $dialect:expr) => {
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
                migrator($dialect).run(&self.pool).await?;
                Ok(())
            }
        }
    };
}

impl_database!(SqliteDb, "sqlite", sqlx::Sqlite, SQLITE);
impl_database!(PostgresDb, "postgres", sqlx::Postgres, POSTGRES);

#[cfg(test)]
mod tests {
    use super::*;

    fn checksums(dialect: Dialect) -> Vec<String> {
        migrator(dialect)
            .iter()
            .map(|m| m.checksum.iter().map(|b| format!("{b:02x}")).collect())
            .collect()
    }

    /// The SHA-384 of every released migration as each engine has applied it. A database
    /// records these; a migration whose rendered text changed would be refused at start-up.
    #[test]
    fn released_migrations_render_to_the_text_databases_applied() {
        let postgres = [
            "f93fd0f2c736016f4d56aa26644a99fc115923c31fe24e156a177eb626a6925a315cb3fede9d60d4a7b1bdb9b583bc70",
            "965b01951cadfc2248156a84c2c7b226e8e401f5301dc6f8e0e969f94fb60f26a2c51832caa8d59131cad52ee166f77e",
            "33803b929ea2d2fdfac7935436126e9ae8030abbc0770bf4f0724817d95443b442cdc1f5e0d38f05d4ee2beb67bc0027",
            "ab94ade1152804c22089318d12702a62775baaad41b1c289c5f277c3166c845b2d3eea17813e758417d7c0b918e59f87",
            "3accef65f5155ddcb40158692cc7601a3df2b78a72d110671488c380dce19fc77cbf336237eeba36c0abd273ca0cb262",
            "f618ecde62c4bc08ac1d561909f8ed53d058798938c07e09415c59d06106d6b3650a03dd6485ef0d2b1dd8d92ab92a47",
            "8373696ddeccfc644f0227407a144a107a4906b79c6aea3d43694bd3472418a0c8dc231d82a0cfa71f4b9146ca82b2ab",
            "fb100867e3d3335b53e15c78e62495aa8a8dc6f52a4498e15e19fe03800c95b54bb70eb7e1ebce9bd16a34e0f3bf03cc",
            "3aa55f87eda8b64d47ac198f8c8a3192340334cd7330849ef41e4e336f6bc4e8a70a802f3d4748b73a534a56aff845c5",
            "98b76b05cea55e67eb34f0e2897c8c15668d128c1028458dd95b6946983a4c69db61cb28401a079c50571f49f5dd4d4e",
        ];
        let sqlite = [
            "223d26b9b03b901aaed52b210e9b36c4329b546927359c733f8ff2f71ded260ce82411f60cffe39c2a441dc2a837e619",
            "304dcd7312a29c17946c02509c80a52b95ac96eb01f92245d3158a5ea6094b1f943ef377e8b859bc3f4eb1188e02150a",
            "2ef6bc4201c797941efe7523b1f20ac69d309c865430f15b47d72d4edfbd56ca1e54f00bbf3b773fdbbfd7c1478a5f14",
            "ab94ade1152804c22089318d12702a62775baaad41b1c289c5f277c3166c845b2d3eea17813e758417d7c0b918e59f87",
            "3accef65f5155ddcb40158692cc7601a3df2b78a72d110671488c380dce19fc77cbf336237eeba36c0abd273ca0cb262",
            "238a2a22cf7ae84819db46e78ba91a6da975d93c9c7fb83c40889fda72c878e868e66d5fff85c3b3d7553951e4226973",
            "8373696ddeccfc644f0227407a144a107a4906b79c6aea3d43694bd3472418a0c8dc231d82a0cfa71f4b9146ca82b2ab",
            "8f282cda5cad9676476ab25337f18b2e0b946b9e955fb3a8e67c632661b7fda521df55a678722e3a6fe87ee5907f9103",
            "847021344a7a7044ae19f9050f49638109f64d76b9058e621ab5ad1bb4053a1b028fc2c6acc22fed975e433c8101ec40",
            "fd04dbc34e2b07abae8a78bb9b4bb16f345219e3719aa7f1e423b5d770b077408d72c27472ea09fafe829298b7340ac0",
        ];
        assert_eq!(checksums(POSTGRES), postgres);
        assert_eq!(checksums(SQLITE), sqlite);
    }

    #[test]
    fn every_placeholder_is_filled() {
        for dialect in [POSTGRES, SQLITE] {
            for m in migrator(dialect).iter() {
                assert!(
                    !m.sql.as_str().contains('{'),
                    "migration {} keeps a placeholder",
                    m.version
                );
            }
        }
    }
}
