//! Persistence of runs, managed datasets, versions and the outbox, behind the [`Database`]
//! trait, with one implementation per engine (SQLite for standalone, PostgreSQL for distributed).
//!
//! Both implementations are generated from the same SQL text by [`impl_database!`]: the schema is
//! kept portable (epoch-millisecond timestamps, `$N` placeholders, `ON CONFLICT`, `RETURNING`),
//! so a query is written once and the backend-conformance tests prove it on both engines.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
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

/// Error stored on a failed or retrying run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    /// Stable machine-readable code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// UUIDv7 (time-ordered) id.
    pub run_id: String,
    /// Ingestion or sync.
    pub kind: RunKind,
    /// Current status.
    pub status: RunStatus,
    /// Managed dataset written by the run.
    pub dataset_id: String,
    /// Template of the dataset.
    pub template_id: String,
    /// Extent of the dataset.
    pub extent_id: String,
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
}

/// A run to insert.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// UUIDv7 id.
    pub run_id: String,
    /// Ingestion or sync.
    pub kind: RunKind,
    /// Managed dataset.
    pub dataset_id: String,
    /// Template.
    pub template_id: String,
    /// Extent.
    pub extent_id: String,
    /// The normalised request.
    pub request: serde_json::Value,
    /// Accepted at.
    pub created_at: DateTime<Utc>,
}

/// How [`Database::admit_run`] admits a run.
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

/// What [`Database::admit_run`] did.
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
    /// The run admitted (created or coalesced with), if any.
    #[must_use]
    pub fn run(self) -> Option<RunRecord> {
        match self {
            Self::Created(r) | Self::Coalesced(r) => Some(r),
            Self::DueTimeTaken => None,
        }
    }
}

/// A managed dataset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetRecord {
    /// Public id.
    pub dataset_id: String,
    /// Template.
    pub template_id: String,
    /// Extent.
    pub extent_id: String,
    /// Version number of the current version.
    pub current_version: Option<i64>,
    /// Visible on the public catalog.
    pub published: bool,
    /// First version published at.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

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

/// An API key as stored: never the key itself, only the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public id, part of the key (`cak_{key_id}_{secret}`).
    pub key_id: String,
    /// Who or what the key is for.
    pub name: String,
    /// Granted scopes, space-separated (`read ingest`).
    pub scopes: String,
    /// Hex SHA-256 of the secret part.
    pub secret_hash: String,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Unusable from then on, if set.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revoked at, if revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last authenticated request (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKeyRecord {
    /// Whether the key may be used at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }
}

/// What [`Database::idempotency_begin`] found for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// First use (or a forgotten or abandoned one): handle the request, then finish or abort.
    Started,
    /// The first request with this key is still being handled.
    InFlight,
    /// The key was used for a different request.
    Mismatch,
    /// The first request's answer, to replay.
    Replay {
        /// HTTP status.
        status: u16,
        /// The stored answer (headers and body, as the caller stored it).
        response: String,
    },
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

/// An immutable version (artifact) as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRecord {
    /// Dataset.
    pub dataset_id: String,
    /// 1, 2, 3, … per dataset.
    pub version: i64,
    /// Internal artifact id (never shown publicly).
    pub artifact_id: String,
    /// Object-store prefix of the Zarr store.
    pub storage_prefix: String,
    /// Run that wrote it.
    pub run_id: String,
    /// First period covered (canonical).
    pub coverage_start: String,
    /// Last period covered (canonical).
    pub coverage_end: String,
    /// Grid, chunking, format and provenance.
    pub metadata: serde_json::Value,
    /// Published at.
    pub created_at: DateTime<Utc>,
}

/// A version to publish.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// Dataset.
    pub dataset_id: String,
    /// Template.
    pub template_id: String,
    /// Extent.
    pub extent_id: String,
    /// Internal artifact id.
    pub artifact_id: String,
    /// Object-store prefix.
    pub storage_prefix: String,
    /// First period covered.
    pub coverage_start: String,
    /// Last period covered.
    pub coverage_end: String,
    /// Grid, chunking, format and provenance.
    pub metadata: serde_json::Value,
    /// Make the dataset visible on the public catalog (a dataset once published stays so).
    pub publish: bool,
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
    pub run_id: String,
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

/// Filters of [`Database::list_runs`].
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this status.
    pub status: Option<RunStatus>,
    /// Only this dataset.
    pub dataset_id: Option<String>,
    /// Only runs older than this run id (pagination cursor).
    pub before: Option<String>,
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

/// Everything the platform persists.
#[async_trait]
pub trait Database: Send + Sync + std::fmt::Debug {
    /// `sqlite` or `postgres`.
    fn engine(&self) -> &'static str;
    /// Checks the connection.
    async fn ping(&self) -> DbResult<()>;
    /// Applies pending migrations.
    async fn migrate(&self) -> DbResult<()>;
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
    async fn get_run(&self, run_id: &str) -> DbResult<Option<RunRecord>>;
    /// Runs, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> DbResult<Vec<RunRecord>>;
    /// The newest non-terminal run of a dataset, if any.
    async fn active_run(&self, dataset_id: &str) -> DbResult<Option<RunRecord>>;
    /// Claims a queued, retrying or lease-expired run for `owner` until `lease_until`.
    /// `None` when the run is held by someone else or finished.
    async fn claim_run(
        &self,
        run_id: &str,
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
        run_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> DbResult<()>;
    /// Records progress of a held run.
    async fn update_progress(&self, run_id: &str, owner: &str, progress: &Progress)
    -> DbResult<()>;
    /// Publishes a version: creates the dataset if new, inserts the version with the next
    /// number, makes it current and marks the run succeeded — one transaction.
    ///
    /// # Errors
    /// [`DbError::LeaseLost`] (and nothing is written) when `owner` no longer holds the run.
    async fn publish_version(
        &self,
        run_id: &str,
        owner: &str,
        version: &NewVersion,
        now: DateTime<Utc>,
    ) -> DbResult<VersionRecord>;
    /// Ends or re-queues a held run.
    async fn finish_run(
        &self,
        run_id: &str,
        owner: &str,
        outcome: &RunOutcome,
        now: DateTime<Utc>,
    ) -> DbResult<()>;
    /// Gives a held run back without counting the attempt (its dataset is busy, or the worker
    /// is shutting down) and announces it again at `outbox.available_at`.
    async fn defer_run(
        &self,
        run_id: &str,
        owner: &str,
        outbox: &NewOutbox,
        now: DateTime<Utc>,
    ) -> DbResult<()>;
    /// Records a held run's plan and segments, announces every segment and releases the run's
    /// lease (the run stays `running` while its segments are written) — one transaction.
    /// The run's progress total becomes the sum of the segments' periods.
    ///
    /// # Errors
    /// [`DbError::LeaseLost`] (nothing written) when `owner` no longer holds the run.
    async fn plan_run(
        &self,
        run_id: &str,
        owner: &str,
        plan: &serde_json::Value,
        segments: &[NewSegment],
        topic: &str,
        now: DateTime<Utc>,
    ) -> DbResult<()>;
    /// The segments of a run, in order.
    async fn list_segments(&self, run_id: &str) -> DbResult<Vec<SegmentRecord>>;
    /// Claims a queued, retrying or lease-expired segment of a running run. `None` when it is
    /// held by someone else, done, or its run is no longer running.
    async fn claim_segment(
        &self,
        run_id: &str,
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
        run_id: &str,
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
        run_id: &str,
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
        run_id: &str,
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
        run_id: &str,
        segment: u32,
        owner: &str,
        error: &RunError,
        now: DateTime<Utc>,
    ) -> DbResult<()>;
    /// Claims a running, planned run whose segments are all done for its finalize step.
    async fn claim_finalize(
        &self,
        run_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> DbResult<Option<RunRecord>>;
    /// Suspends a held run while an upstream job runs: stores the provider's state, returns
    /// the run to `queued` without using an attempt, shows `message` as its progress and
    /// announces it again at `outbox.available_at` — one transaction.
    ///
    /// # Errors
    /// [`DbError::LeaseLost`] (nothing written) when `owner` no longer holds the run.
    async fn suspend_run(
        &self,
        run_id: &str,
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
    async fn cancel_run(&self, run_id: &str, now: DateTime<Utc>) -> DbResult<Option<RunRecord>>;
    /// Returns runs whose lease expired to `queued` and announces them again.
    async fn requeue_expired(&self, now: DateTime<Utc>, outbox_topic: &str) -> DbResult<u64>;
    /// Re-announces every non-terminal run (used at start-up with a non-durable queue).
    async fn reannounce_unfinished(&self, now: DateTime<Utc>, outbox_topic: &str) -> DbResult<u64>;
    /// Outbox rows due for publication, oldest first.
    async fn pending_outbox(&self, now: DateTime<Utc>, limit: u32) -> DbResult<Vec<OutboxRow>>;
    /// How many outbox rows are due for publication and not yet published (delayed retries
    /// are not counted until due).
    async fn count_pending_outbox(&self, now: DateTime<Utc>) -> DbResult<u64>;
    /// Marks outbox rows published.
    async fn mark_published(&self, ids: &[i64], now: DateTime<Utc>) -> DbResult<()>;
    /// Managed datasets with at least one version, by id.
    async fn list_datasets(&self) -> DbResult<Vec<DatasetRecord>>;
    /// One managed dataset.
    async fn get_dataset(&self, dataset_id: &str) -> DbResult<Option<DatasetRecord>>;
    /// Versions of a dataset, oldest first.
    async fn list_versions(&self, dataset_id: &str) -> DbResult<Vec<VersionRecord>>;
    /// One version.
    async fn get_version(&self, dataset_id: &str, version: i64) -> DbResult<Option<VersionRecord>>;
    /// The newest due time acted on for a dataset.
    async fn last_sync_tick(&self, dataset_id: &str) -> DbResult<Option<SyncTick>>;
    /// A dataset's schedule override and pause flag, if it has one.
    async fn get_schedule(&self, dataset_id: &str) -> DbResult<Option<ScheduleRecord>>;
    /// Sets (creates or replaces) a dataset's schedule override and pause flag.
    async fn set_schedule(&self, schedule: &ScheduleRecord) -> DbResult<()>;

    /// Stores a new API key.
    async fn create_api_key(&self, key: &ApiKeyRecord) -> DbResult<()>;
    /// A key by id (also revoked or expired ones).
    async fn get_api_key(&self, key_id: &str) -> DbResult<Option<ApiKeyRecord>>;
    /// Every key, oldest first.
    async fn list_api_keys(&self) -> DbResult<Vec<ApiKeyRecord>>;
    /// Revokes a key and its tokens: `false` when no active key has that id.
    async fn revoke_api_key(&self, key_id: &str, now: DateTime<Utc>) -> DbResult<bool>;
    /// Records that a key was used (at most one write a minute per key).
    async fn touch_api_key(&self, key_id: &str, now: DateTime<Utc>) -> DbResult<()>;
    /// Stores a token (its hash) issued for a key.
    async fn create_token(
        &self,
        token_hash: &str,
        key_id: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> DbResult<()>;
    /// The key a live token was issued for (the caller checks the key is still active).
    async fn token_key(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> DbResult<Option<ApiKeyRecord>>;
    /// Starts handling a request under an `Idempotency-Key` of `principal`. A key whose
    /// request has been in flight since before `stale_before` was abandoned (its process died)
    /// and is taken over; one created before `expired_before` is forgotten.
    async fn idempotency_begin(
        &self,
        principal: &str,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
        expired_before: DateTime<Utc>,
    ) -> DbResult<IdempotencyBegin>;
    /// Stores the answer to replay for the key.
    async fn idempotency_finish(
        &self,
        principal: &str,
        key: &str,
        status: u16,
        response: &str,
    ) -> DbResult<()>;
    /// Forgets an unfinished key (the request failed in a way a retry may fix).
    async fn idempotency_abort(&self, principal: &str, key: &str) -> DbResult<()>;
    /// Deletes keys created before `before`.
    async fn purge_idempotency(&self, before: DateTime<Utc>) -> DbResult<u64>;
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
fn held(rows_affected: u64, run_id: &str) -> DbResult<()> {
    if rows_affected == 1 {
        Ok(())
    } else {
        Err(DbError::LeaseLost(run_id.to_owned()))
    }
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

const VERSION_SELECT: &str = "SELECT dataset_id, version, artifact_id, storage_prefix, run_id, \
    coverage_start, coverage_end, metadata, created_at FROM dataset_versions ";

const DATASET_SELECT: &str = "SELECT dataset_id, template_id, extent_id, current_version, published, \
    created_at, updated_at FROM managed_datasets ";

/// Generates the [`Database`] implementation for one sqlx engine from the shared SQL.
macro_rules! api_key_select {
    () => {
        "SELECT key_id, name, scopes, secret_hash, created_at, expires_at, revoked_at, \
         last_used_at FROM api_keys"
    };
}

macro_rules! impl_database {
    ($name:ident, $engine:literal, $db:ty, $row:ty, $migrations:literal) => {
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

            fn run_from_row(row: &$row) -> DbResult<RunRecord> {
                let kind: String = row.try_get("kind")?;
                let status: String = row.try_get("status")?;
                let request: Json<serde_json::Value> = row.try_get("request")?;
                let code: Option<String> = row.try_get("error_code")?;
                let message: Option<String> = row.try_get("error_message")?;
                Ok(RunRecord {
                    run_id: row.try_get("run_id")?,
                    kind: RunKind::from_str(&kind).map_err(DbError::Corrupt)?,
                    status: RunStatus::from_str(&status).map_err(DbError::Corrupt)?,
                    dataset_id: row.try_get("dataset_id")?,
                    template_id: row.try_get("template_id")?,
                    extent_id: row.try_get("extent_id")?,
                    request: request.0,
                    progress: Progress {
                        done: u64::try_from(row.try_get::<i64, _>("progress_done")?).unwrap_or(0),
                        total: u64::try_from(row.try_get::<i64, _>("progress_total")?).unwrap_or(0),
                        message: row.try_get("progress_message")?,
                    },
                    attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(0),
                    error: code.map(|code| RunError {
                        code,
                        message: message.unwrap_or_default(),
                    }),
                    lease_owner: row.try_get("lease_owner")?,
                    lease_expires_at: opt_ms(row.try_get("lease_expires_at")?)?,
                    version: row.try_get("version")?,
                    plan: row
                        .try_get::<Option<Json<serde_json::Value>>, _>("plan")?
                        .map(|j| j.0),
                    provider_state: row
                        .try_get::<Option<Json<serde_json::Value>>, _>("provider_state")?
                        .map(|j| j.0),
                    created_at: from_ms(row.try_get("created_at")?)?,
                    started_at: opt_ms(row.try_get("started_at")?)?,
                    finished_at: opt_ms(row.try_get("finished_at")?)?,
                    updated_at: from_ms(row.try_get("updated_at")?)?,
                })
            }

            fn segment_from_row(row: &$row) -> DbResult<SegmentRecord> {
                let status: String = row.try_get("status")?;
                let code: Option<String> = row.try_get("error_code")?;
                let message: Option<String> = row.try_get("error_message")?;
                let u = |v: i64| u64::try_from(v).unwrap_or(0);
                Ok(SegmentRecord {
                    run_id: row.try_get("run_id")?,
                    segment: u32::try_from(row.try_get::<i32, _>("segment")?).unwrap_or(0),
                    chunk_start: u(row.try_get("chunk_start")?),
                    chunk_end: u(row.try_get("chunk_end")?),
                    periods: u(row.try_get("periods")?),
                    status: SegmentStatus::parse(&status)?,
                    attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(0),
                    lease_owner: row.try_get("lease_owner")?,
                    lease_expires_at: opt_ms(row.try_get("lease_expires_at")?)?,
                    chunks_written: u(row.try_get("chunks_written")?),
                    error: code.map(|code| RunError {
                        code,
                        message: message.unwrap_or_default(),
                    }),
                })
            }

            fn dataset_from_row(row: &$row) -> DbResult<DatasetRecord> {
                Ok(DatasetRecord {
                    dataset_id: row.try_get("dataset_id")?,
                    template_id: row.try_get("template_id")?,
                    extent_id: row.try_get("extent_id")?,
                    current_version: row.try_get("current_version")?,
                    published: row.try_get("published")?,
                    created_at: from_ms(row.try_get("created_at")?)?,
                    updated_at: from_ms(row.try_get("updated_at")?)?,
                })
            }

            fn api_key_from_row(row: &$row) -> DbResult<ApiKeyRecord> {
                Ok(ApiKeyRecord {
                    key_id: row.try_get("key_id")?,
                    name: row.try_get("name")?,
                    scopes: row.try_get("scopes")?,
                    secret_hash: row.try_get("secret_hash")?,
                    created_at: from_ms(row.try_get("created_at")?)?,
                    expires_at: opt_ms(row.try_get("expires_at")?)?,
                    revoked_at: opt_ms(row.try_get("revoked_at")?)?,
                    last_used_at: opt_ms(row.try_get("last_used_at")?)?,
                })
            }

            fn version_from_row(row: &$row) -> DbResult<VersionRecord> {
                let metadata: Json<serde_json::Value> = row.try_get("metadata")?;
                Ok(VersionRecord {
                    dataset_id: row.try_get("dataset_id")?,
                    version: row.try_get("version")?,
                    artifact_id: row.try_get("artifact_id")?,
                    storage_prefix: row.try_get("storage_prefix")?,
                    run_id: row.try_get("run_id")?,
                    coverage_start: row.try_get("coverage_start")?,
                    coverage_end: row.try_get("coverage_end")?,
                    metadata: metadata.0,
                    created_at: from_ms(row.try_get("created_at")?)?,
                })
            }

            async fn insert_outbox<'c, E>(exec: E, outbox: &NewOutbox, now: DateTime<Utc>) -> DbResult<()>
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

            /// The newest non-terminal run of a dataset.
            async fn newest_active<'e, E>(executor: E, dataset_id: &str) -> DbResult<Option<RunRecord>>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                sqlx::query(run_select!(
                    "WHERE dataset_id = $1 AND status IN ('queued', 'running', 'retrying') \
                     ORDER BY run_id DESC LIMIT 1"
                ))
                .bind(dataset_id)
                .fetch_optional(executor)
                .await?
                .map(|r| Self::run_from_row(&r))
                .transpose()
            }

            /// Inserts a queued run and its outbox message inside `tx`; returns the stored run.
            async fn insert_run(
                tx: &mut sqlx::Transaction<'_, $db>,
                run: &NewRun,
                outbox: &NewOutbox,
            ) -> DbResult<RunRecord> {
                sqlx::query(
                    "INSERT INTO ingestion_runs (run_id, kind, status, dataset_id, template_id, extent_id, \
                     request, created_at, updated_at) VALUES ($1, $2, 'queued', $3, $4, $5, $6, $7, $7)",
                )
                .bind(&run.run_id)
                .bind(run.kind.as_str())
                .bind(&run.dataset_id)
                .bind(&run.template_id)
                .bind(&run.extent_id)
                .bind(Json(&run.request))
                .bind(ms(run.created_at))
                .execute(&mut **tx)
                .await?;
                Self::insert_outbox(&mut **tx, outbox, run.created_at).await?;
                let row = sqlx::query(run_select!("WHERE run_id = $1"))
                    .bind(&run.run_id)
                    .fetch_one(&mut **tx)
                    .await?;
                Self::run_from_row(&row)
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
                    (1, "initial", include_str!(concat!($migrations, "/0001_initial.sql"))),
                    (2, "segments", include_str!(concat!($migrations, "/0002_segments.sql"))),
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
                    (5, "auth", include_str!(concat!($migrations, "/0005_auth.sql"))),
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
                ])
                .run(&self.pool)
                .await?;
                Ok(())
            }

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

            async fn create_api_key(&self, k: &ApiKeyRecord) -> DbResult<()> {
                sqlx::query(
                    "INSERT INTO api_keys (key_id, name, scopes, secret_hash, created_at, \
                     expires_at, revoked_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&k.key_id)
                .bind(&k.name)
                .bind(&k.scopes)
                .bind(&k.secret_hash)
                .bind(ms(k.created_at))
                .bind(k.expires_at.map(ms))
                .bind(k.revoked_at.map(ms))
                .bind(k.last_used_at.map(ms))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn get_api_key(&self, key_id: &str) -> DbResult<Option<ApiKeyRecord>> {
                sqlx::query(concat!(api_key_select!(), " WHERE key_id = $1"))
                    .bind(key_id)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(|r| Self::api_key_from_row(&r))
                    .transpose()
            }

            async fn list_api_keys(&self) -> DbResult<Vec<ApiKeyRecord>> {
                sqlx::query(concat!(api_key_select!(), " ORDER BY created_at, key_id"))
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(Self::api_key_from_row)
                    .collect()
            }

            async fn revoke_api_key(&self, key_id: &str, now: DateTime<Utc>) -> DbResult<bool> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL",
                )
                .bind(key_id)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                sqlx::query("DELETE FROM auth_tokens WHERE key_id = $1")
                    .bind(key_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done == 1)
            }

            async fn touch_api_key(&self, key_id: &str, now: DateTime<Utc>) -> DbResult<()> {
                sqlx::query(
                    "UPDATE api_keys SET last_used_at = $2 WHERE key_id = $1 \
                     AND (last_used_at IS NULL OR last_used_at < $3)",
                )
                .bind(key_id)
                .bind(ms(now))
                .bind(ms(now) - 60_000)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn create_token(
                &self,
                token_hash: &str,
                key_id: &str,
                now: DateTime<Utc>,
                expires_at: DateTime<Utc>,
            ) -> DbResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM auth_tokens WHERE expires_at < $1")
                    .bind(ms(now))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO auth_tokens (token_hash, key_id, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(token_hash)
                .bind(key_id)
                .bind(ms(now))
                .bind(ms(expires_at))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn token_key(
                &self,
                token_hash: &str,
                now: DateTime<Utc>,
            ) -> DbResult<Option<ApiKeyRecord>> {
                let row = sqlx::query(
                    "SELECT key_id FROM auth_tokens WHERE token_hash = $1 AND expires_at > $2",
                )
                .bind(token_hash)
                .bind(ms(now))
                .fetch_optional(&self.pool)
                .await?;
                match row {
                    Some(r) => self.get_api_key(&r.try_get::<String, _>("key_id")?).await,
                    None => Ok(None),
                }
            }

            async fn idempotency_begin(
                &self,
                principal: &str,
                key: &str,
                fingerprint: &str,
                now: DateTime<Utc>,
                stale_before: DateTime<Utc>,
                expired_before: DateTime<Utc>,
            ) -> DbResult<IdempotencyBegin> {
                let inserted = sqlx::query(
                    "INSERT INTO idempotency_keys (principal, idem_key, fingerprint, status, \
                     response, created_at) VALUES ($1, $2, $3, NULL, NULL, $4) \
                     ON CONFLICT (principal, idem_key) DO NOTHING",
                )
                .bind(principal)
                .bind(key)
                .bind(fingerprint)
                .bind(ms(now))
                .execute(&self.pool)
                .await?
                .rows_affected();
                if inserted == 1 {
                    return Ok(IdempotencyBegin::Started);
                }
                let Some(row) = sqlx::query(
                    "SELECT fingerprint, status, response, created_at FROM idempotency_keys \
                     WHERE principal = $1 AND idem_key = $2",
                )
                .bind(principal)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?
                else {
                    // Purged in between: a fresh start is right.
                    return self
                        .idempotency_begin(principal, key, fingerprint, now, stale_before, expired_before)
                        .await;
                };
                let created: i64 = row.try_get("created_at")?;
                let status: Option<i32> = row.try_get("status")?;
                let forgotten = created < ms(expired_before);
                let abandoned = status.is_none() && created < ms(stale_before);
                if forgotten || abandoned {
                    // Take the key over, unless another request just did.
                    let took = sqlx::query(
                        "UPDATE idempotency_keys SET fingerprint = $3, status = NULL, \
                         response = NULL, created_at = $4 \
                         WHERE principal = $1 AND idem_key = $2 AND created_at = $5",
                    )
                    .bind(principal)
                    .bind(key)
                    .bind(fingerprint)
                    .bind(ms(now))
                    .bind(created)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                    return Ok(if took == 1 {
                        IdempotencyBegin::Started
                    } else {
                        IdempotencyBegin::InFlight
                    });
                }
                if row.try_get::<String, _>("fingerprint")? != fingerprint {
                    return Ok(IdempotencyBegin::Mismatch);
                }
                Ok(match status {
                    None => IdempotencyBegin::InFlight,
                    Some(status) => IdempotencyBegin::Replay {
                        status: u16::try_from(status)
                            .map_err(|_| DbError::Corrupt(format!("status {status}")))?,
                        response: row.try_get::<Option<String>, _>("response")?.unwrap_or_default(),
                    },
                })
            }

            async fn idempotency_finish(
                &self,
                principal: &str,
                key: &str,
                status: u16,
                response: &str,
            ) -> DbResult<()> {
                sqlx::query(
                    "UPDATE idempotency_keys SET status = $3, response = $4 \
                     WHERE principal = $1 AND idem_key = $2",
                )
                .bind(principal)
                .bind(key)
                .bind(i32::from(status))
                .bind(response)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn idempotency_abort(&self, principal: &str, key: &str) -> DbResult<()> {
                sqlx::query(
                    "DELETE FROM idempotency_keys WHERE principal = $1 AND idem_key = $2 \
                     AND status IS NULL",
                )
                .bind(principal)
                .bind(key)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn purge_idempotency(&self, before: DateTime<Utc>) -> DbResult<u64> {
                Ok(sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                    .bind(ms(before))
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            }

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
                    .bind(&run.dataset_id)
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
                    .bind(&run.dataset_id)
                    .bind(due_key)
                    .bind(run_id)
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

            async fn get_run(&self, run_id: &str) -> DbResult<Option<RunRecord>> {
                sqlx::query(run_select!("WHERE run_id = $1"))
                    .bind(run_id)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(|r| Self::run_from_row(&r))
                    .transpose()
            }

            async fn list_runs(&self, filter: &RunFilter) -> DbResult<Vec<RunRecord>> {
                let rows = sqlx::query(run_select!(
                    "WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR dataset_id = $2) \
                     AND ($3 IS NULL OR run_id < $3) ORDER BY run_id DESC LIMIT $4"
                ))
                .bind(filter.status.map(RunStatus::as_str))
                .bind(filter.dataset_id.as_deref())
                .bind(filter.before.as_deref())
                .bind(i64::from(filter.limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::run_from_row).collect()
            }

            async fn active_run(&self, dataset_id: &str) -> DbResult<Option<RunRecord>> {
                Self::newest_active(&self.pool, dataset_id).await
            }

            async fn claim_run(
                &self,
                run_id: &str,
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
                .bind(run_id)
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
                run_id: &str,
                owner: &str,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
            ) -> DbResult<()> {
                let done = sqlx::query(
                    "UPDATE ingestion_runs SET lease_expires_at = $3, updated_at = $4 \
                     WHERE run_id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(run_id)
                .bind(owner)
                .bind(ms(lease_until))
                .bind(ms(now))
                .execute(&self.pool)
                .await?;
                held(done.rows_affected(), run_id)
            }

            async fn update_progress(
                &self,
                run_id: &str,
                owner: &str,
                progress: &Progress,
            ) -> DbResult<()> {
                let done = sqlx::query(
                    "UPDATE ingestion_runs SET progress_done = $3, progress_total = $4, progress_message = $5 \
                     WHERE run_id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(run_id)
                .bind(owner)
                .bind(i64::try_from(progress.done).unwrap_or(i64::MAX))
                .bind(i64::try_from(progress.total).unwrap_or(i64::MAX))
                .bind(&progress.message)
                .execute(&self.pool)
                .await?;
                held(done.rows_affected(), run_id)
            }

            async fn publish_version(
                &self,
                run_id: &str,
                owner: &str,
                v: &NewVersion,
                now: DateTime<Utc>,
            ) -> DbResult<VersionRecord> {
                let now_ms = ms(now);
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO managed_datasets (dataset_id, template_id, extent_id, published, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (dataset_id) DO NOTHING",
                )
                .bind(&v.dataset_id)
                .bind(&v.template_id)
                .bind(&v.extent_id)
                .bind(v.publish)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                // Touching the row first takes its lock on PostgreSQL, so concurrent publishers
                // of one dataset serialise here and number their versions without collisions.
                sqlx::query("UPDATE managed_datasets SET updated_at = $2 WHERE dataset_id = $1")
                    .bind(&v.dataset_id)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                let next: i64 = sqlx::query(
                    "SELECT COALESCE(MAX(version), 0) + 1 AS next FROM dataset_versions WHERE dataset_id = $1",
                )
                .bind(&v.dataset_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("next")?;
                sqlx::query(
                    "INSERT INTO dataset_versions (dataset_id, version, artifact_id, storage_prefix, run_id, \
                     coverage_start, coverage_end, metadata, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&v.dataset_id)
                .bind(next)
                .bind(&v.artifact_id)
                .bind(&v.storage_prefix)
                .bind(run_id)
                .bind(&v.coverage_start)
                .bind(&v.coverage_end)
                .bind(Json(&v.metadata))
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE managed_datasets SET current_version = $2, published = (published OR $3) WHERE dataset_id = $1",
                )
                    .bind(&v.dataset_id)
                    .bind(next)
                    .bind(v.publish)
                    .execute(&mut *tx)
                    .await?;
                let done = sqlx::query(
                    "UPDATE ingestion_runs SET status = 'succeeded', version = $3, finished_at = $4, \
                     updated_at = $4, lease_owner = NULL, lease_expires_at = NULL, error_code = NULL, \
                     error_message = NULL, progress_done = progress_total \
                     WHERE run_id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(run_id)
                .bind(owner)
                .bind(next)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                // Dropping the transaction rolls it back.
                held(done.rows_affected(), run_id)?;
                tx.commit().await?;
                self.get_version(&v.dataset_id, next)
                    .await?
                    .ok_or_else(|| DbError::Corrupt("published version vanished".into()))
            }

            async fn finish_run(
                &self,
                run_id: &str,
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
                .bind(run_id)
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
                run_id: &str,
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
                .bind(run_id)
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

            async fn cancel_run(&self, run_id: &str, now: DateTime<Utc>) -> DbResult<Option<RunRecord>> {
                sqlx::query(
                    "UPDATE ingestion_runs SET status = 'cancelled', finished_at = $2, updated_at = $2, \
                     lease_owner = NULL, lease_expires_at = NULL, progress_message = 'cancelled' \
                     WHERE run_id = $1 AND status IN ('queued', 'running', 'retrying')",
                )
                .bind(run_id)
                .bind(ms(now))
                .execute(&self.pool)
                .await?;
                self.get_run(run_id).await
            }

            async fn suspend_run(
                &self,
                run_id: &str,
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
                .bind(run_id)
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

            async fn plan_run(
                &self,
                run_id: &str,
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
                .bind(run_id)
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
                    .bind(run_id)
                    .bind(i32::try_from(seg.segment).unwrap_or(i32::MAX))
                    .bind(i64::try_from(seg.chunk_start).unwrap_or(i64::MAX))
                    .bind(i64::try_from(seg.chunk_end).unwrap_or(i64::MAX))
                    .bind(i64::try_from(seg.periods).unwrap_or(i64::MAX))
                    .bind(ms(now))
                    .execute(&mut *tx)
                    .await?;
                    let outbox = NewOutbox {
                        topic: topic.to_owned(),
                        payload: TaskMessage::step(run_id, Step::Segment(seg.segment)).to_json(),
                        available_at: now,
                    };
                    Self::insert_outbox(&mut *tx, &outbox, now).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn list_segments(&self, run_id: &str) -> DbResult<Vec<SegmentRecord>> {
                let rows = sqlx::query(
                    "SELECT * FROM ingestion_segments WHERE run_id = $1 ORDER BY segment",
                )
                .bind(run_id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::segment_from_row).collect()
            }

            async fn claim_segment(
                &self,
                run_id: &str,
                segment: u32,
                owner: &str,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
            ) -> DbResult<Option<SegmentRecord>> {
                let seg = i32::try_from(segment).unwrap_or(i32::MAX);
                let row = sqlx::query(
                    "UPDATE ingestion_segments SET status = 'running', lease_owner = $3, lease_expires_at = $5, \
                     attempts = attempts + 1, updated_at = $4 \
                     WHERE run_id = $1 AND segment = $2 \
                       AND (status IN ('queued', 'retrying') OR (status = 'running' AND lease_expires_at < $4)) \
                       AND EXISTS (SELECT 1 FROM ingestion_runs r WHERE r.run_id = $1 AND r.status = 'running') \
                     RETURNING *",
                )
                .bind(run_id)
                .bind(seg)
                .bind(owner)
                .bind(ms(now))
                .bind(ms(lease_until))
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| Self::segment_from_row(&r)).transpose()
            }

            async fn heartbeat_segment(
                &self,
                run_id: &str,
                segment: u32,
                owner: &str,
                lease_until: DateTime<Utc>,
            ) -> DbResult<()> {
                let done = sqlx::query(
                    "UPDATE ingestion_segments SET lease_expires_at = $4 \
                     WHERE run_id = $1 AND segment = $2 AND lease_owner = $3 AND status = 'running' \
                       AND EXISTS (SELECT 1 FROM ingestion_runs r WHERE r.run_id = $1 AND r.status = 'running')",
                )
                .bind(run_id)
                .bind(i32::try_from(segment).unwrap_or(i32::MAX))
                .bind(owner)
                .bind(ms(lease_until))
                .execute(&self.pool)
                .await?;
                held(done.rows_affected(), run_id)
            }

            async fn complete_segment(
                &self,
                run_id: &str,
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
                .bind(run_id)
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
                .bind(run_id)
                .bind(seg)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                let remaining: i64 = sqlx::query(
                    "SELECT COUNT(*) AS n FROM ingestion_segments WHERE run_id = $1 AND status <> 'done'",
                )
                .bind(run_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
                let last = remaining == 0;
                if last {
                    let outbox = NewOutbox {
                        topic: topic.to_owned(),
                        payload: TaskMessage::step(run_id, Step::Finalize).to_json(),
                        available_at: now,
                    };
                    Self::insert_outbox(&mut *tx, &outbox, now).await?;
                }
                tx.commit().await?;
                Ok(last)
            }

            async fn retry_segment(
                &self,
                run_id: &str,
                segment: u32,
                owner: &str,
                error: &RunError,
                outbox: &NewOutbox,
                now: DateTime<Utc>,
            ) -> DbResult<()> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE ingestion_segments SET status = 'retrying', lease_owner = NULL, lease_expires_at = NULL, \
                     error_code = $4, error_message = $5, updated_at = $6 \
                     WHERE run_id = $1 AND segment = $2 AND lease_owner = $3 AND status = 'running'",
                )
                .bind(run_id)
                .bind(i32::try_from(segment).unwrap_or(i32::MAX))
                .bind(owner)
                .bind(&error.code)
                .bind(&error.message)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                held(done.rows_affected(), run_id)?;
                // The run shows the latest error while it retries.
                sqlx::query(
                    "UPDATE ingestion_runs SET error_code = $2, error_message = $3, updated_at = $4 WHERE run_id = $1",
                )
                .bind(run_id)
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
                run_id: &str,
                segment: u32,
                owner: &str,
                error: &RunError,
                now: DateTime<Utc>,
            ) -> DbResult<()> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE ingestion_segments SET status = 'failed', lease_owner = NULL, lease_expires_at = NULL, \
                     error_code = $4, error_message = $5, updated_at = $6 \
                     WHERE run_id = $1 AND segment = $2 AND lease_owner = $3 AND status = 'running'",
                )
                .bind(run_id)
                .bind(i32::try_from(segment).unwrap_or(i32::MAX))
                .bind(owner)
                .bind(&error.code)
                .bind(&error.message)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                held(done.rows_affected(), run_id)?;
                sqlx::query(
                    "UPDATE ingestion_runs SET status = 'failed', error_code = $2, error_message = $3, \
                     finished_at = $4, updated_at = $4, lease_owner = NULL, lease_expires_at = NULL \
                     WHERE run_id = $1 AND status = 'running'",
                )
                .bind(run_id)
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
                run_id: &str,
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
                .bind(run_id)
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

            async fn list_datasets(&self) -> DbResult<Vec<DatasetRecord>> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{DATASET_SELECT} WHERE current_version IS NOT NULL ORDER BY dataset_id"
                )))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::dataset_from_row).collect()
            }

            async fn get_dataset(&self, dataset_id: &str) -> DbResult<Option<DatasetRecord>> {
                sqlx::query(sqlx::AssertSqlSafe(format!("{DATASET_SELECT} WHERE dataset_id = $1")))
                    .bind(dataset_id)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(|r| Self::dataset_from_row(&r))
                    .transpose()
            }

            async fn list_versions(&self, dataset_id: &str) -> DbResult<Vec<VersionRecord>> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{VERSION_SELECT} WHERE dataset_id = $1 ORDER BY version"
                )))
                .bind(dataset_id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::version_from_row).collect()
            }

            async fn get_version(&self, dataset_id: &str, version: i64) -> DbResult<Option<VersionRecord>> {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{VERSION_SELECT} WHERE dataset_id = $1 AND version = $2"
                )))
                .bind(dataset_id)
                .bind(version)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| Self::version_from_row(&r))
                .transpose()
            }
        }
    };
}

impl_database!(
    SqliteDb,
    "sqlite",
    sqlx::Sqlite,
    sqlx::sqlite::SqliteRow,
    "../../../migrations/sqlite"
);
impl_database!(
    PostgresDb,
    "postgres",
    sqlx::Postgres,
    sqlx::postgres::PgRow,
    "../../../migrations/postgres"
);
