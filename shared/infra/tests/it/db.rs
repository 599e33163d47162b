//! Conformance of the [`Database`] implementations (SQLite and PostgreSQL).
//!
//! Covers migrations, run creation with its outbox row, listing and pagination, the lease
//! protocol (claim, heartbeat, progress, lease loss), publication of versions and datasets,
//! the ways a run ends (retry, failure, deferral, expiry), re-announcement, and the dataset and
//! version queries. Each test gets a fresh database: a file in a tempdir for SQLite, a new
//! `climate_t_<uuid>` database for PostgreSQL (dropped when the test ends). Timestamps are fixed
//! instants passed explicitly, so lease expiry is exercised without sleeping.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use climate_domain::run::{Progress, RunKind, RunStatus};
use climate_domain::{DatasetId, ExtentId, RunId, TemplateId};
use climate_infra::db::{
    self, Admission, Admitted, ApiKeyRecord, Database, DbError, IdempotencyBegin, NewOutbox,
    NewRun, NewSegment, NewVersion, OutboxRow, RunError, RunFilter, RunOutcome, RunRecord,
    SegmentStatus, VersionRecord,
};
use climate_infra::messages::{Step, TASK_TOPIC, TaskMessage};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection};

use crate::support::{self, Cleanup};

// ---------------------------------------------------------------------------------------------
// Fixture

/// A migrated database of one engine, removed when dropped.
#[derive(Debug)]
pub struct TestDb {
    db: Arc<dyn Database>,
    url: String,
    _dir: Option<tempfile::TempDir>,
    _cleanup: Option<Cleanup>,
}

impl std::ops::Deref for TestDb {
    type Target = dyn Database;
    fn deref(&self) -> &Self::Target {
        self.db.as_ref()
    }
}

/// [`RunStore::admit_run`](climate_infra::db::RunStore::admit_run) with [`Admission::Coalesce`]: the run and whether it was created.
async fn coalesce(
    db: &dyn Database,
    run: &NewRun,
    outbox: &NewOutbox,
) -> Result<(RunRecord, bool), DbError> {
    Ok(db
        .admit_run(run, outbox, Admission::Coalesce)
        .await?
        .run_and_created()
        .expect("an unscheduled admission never reports a due time"))
}

impl TestDb {
    /// [`RunStore::admit_run`](climate_infra::db::RunStore::admit_run) with [`Admission::Always`]: the run inserted.
    async fn create_run(&self, run: &NewRun, outbox: &NewOutbox) -> Result<RunRecord, DbError> {
        match self.db.admit_run(run, outbox, Admission::Always).await? {
            Admitted::Created(r) => Ok(r),
            other => panic!("Admission::Always must insert, got {other:?}"),
        }
    }

    /// [`coalesce`] on this database.
    async fn create_run_coalescing(
        &self,
        run: &NewRun,
        outbox: &NewOutbox,
    ) -> Result<(RunRecord, bool), DbError> {
        coalesce(self.db.as_ref(), run, outbox).await
    }

    /// A SQLite database file in a fresh tempdir.
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("create tempdir");
        let url = format!("sqlite://{}", dir.path().join("climate.db").display());
        let db = db::connect(&url, Some(4))
            .await
            .expect("open the SQLite test database");
        db.migrate().await.expect("migrate SQLite");
        Self {
            db,
            url,
            _dir: Some(dir),
            _cleanup: None,
        }
    }

    /// A fresh database on the PostgreSQL test server, dropped on drop.
    async fn postgres() -> Self {
        let base = support::database_url();
        let name = format!("climate_t_{}", support::unique());
        let mut admin = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "connect to the PostgreSQL test server at {base} ({}): {e}",
                    support::DATABASE_URL_VAR
                )
            });
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let cleanup = Cleanup::new(format!("database {name}"), {
            let (base, name) = (base.clone(), name.clone());
            move || async move {
                match sqlx::PgConnection::connect(&base).await {
                    Ok(mut c) => {
                        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                        if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut c).await {
                            eprintln!("drop database {name}: {e}");
                        }
                        let _ = c.close().await;
                    }
                    Err(e) => eprintln!("drop database {name}: {e}"),
                }
            }
        });
        let mut url = url::Url::parse(&base).expect("parse the PostgreSQL test URL");
        url.set_path(&format!("/{name}"));
        let url = url.to_string();
        let db = db::connect(&url, Some(4))
            .await
            .expect("connect to the test database");
        db.migrate().await.expect("migrate PostgreSQL");
        Self {
            db,
            url,
            _dir: None,
            _cleanup: Some(cleanup),
        }
    }

    /// Runs raw SQL on the same database, outside the [`Database`] API (to set up states the
    /// API cannot produce).
    async fn exec_raw(&self, sql: &'static str) {
        if self.url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(&self.url)
                .await
                .expect("raw SQLite connection");
            sqlx::raw_sql(sql).execute(&mut c).await.expect("raw SQL");
            let _ = c.close().await;
        } else {
            let mut c = sqlx::PgConnection::connect(&self.url)
                .await
                .expect("raw PostgreSQL connection");
            sqlx::raw_sql(sql).execute(&mut c).await.expect("raw SQL");
            let _ = c.close().await;
        }
    }
}

/// Generates, for each conformance test `name(&TestDb)`, `sqlite::name` and `postgres::name`.
macro_rules! db_conformance {
    ($($name:ident),* $(,)?) => {
        conformance!(
            [
                sqlite => { let db = super::TestDb::sqlite().await; assert_eq!(db.engine(), "sqlite"); db },
                postgres => { let db = super::TestDb::postgres().await; assert_eq!(db.engine(), "postgres"); db },
            ],
            [$($name),*]
        );
    };
}

db_conformance!(
    migrate_is_idempotent,
    migrate_accepts_a_newer_releases_schema,
    create_run_persists_run_and_outbox,
    identical_concurrent_requests_coalesce_into_one_run,
    scheduled_admissions_start_a_due_time_once,
    outbox_respects_available_at_order_and_limit,
    list_runs_filters_newest_first_and_paginates,
    claim_run_honours_leases,
    finished_runs_are_never_claimable,
    heartbeat_extends_the_lease,
    update_progress_requires_the_lease,
    publish_version_numbers_versions,
    publish_version_with_lost_lease_writes_nothing,
    publish_flag_only_ever_publishes,
    finish_run_retry_and_failed,
    defer_run_keeps_the_attempt,
    requeue_expired_only_requeues_expired_leases,
    reannounce_unfinished_announces_non_terminal_runs,
    active_run_is_the_newest_non_terminal_run,
    list_datasets_lists_only_datasets_with_a_version,
    segments_run_from_plan_to_finalize,
    plan_run_requires_the_lease,
    segments_retry_and_fail_the_run,
    requeue_expired_handles_segments_and_planned_runs,
    reannounce_unfinished_announces_each_step,
    suspend_run_keeps_state_and_the_attempt,
    cancel_run_stops_every_step,
    api_keys_and_tokens,
    idempotency_keys_replay_conflict_and_expire,
);

mod dump;
mod features;
mod history;
mod jobs;

#[tokio::test]
async fn connect_rejects_unsupported_urls() {
    let err = db::connect("mysql://localhost/climate", None)
        .await
        .expect_err("mysql is not supported");
    assert!(matches!(err, DbError::UnsupportedUrl(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Builders

/// A fixed instant `secs` seconds after 2026-01-01T00:00:00Z.
fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600 + secs, 0).expect("valid timestamp")
}

/// A UUIDv7 run id whose time part is `t`, so ids sort like their creation instants.
fn run_id_at(t: DateTime<Utc>) -> RunId {
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        u64::try_from(t.timestamp()).expect("positive timestamp"),
        t.timestamp_subsec_nanos(),
    );
    RunId::from(uuid::Uuid::new_v7(ts))
}

/// A dataset id for the tests' short names.
fn dsid(id: &str) -> DatasetId {
    DatasetId::new(id).expect("a dataset id")
}

fn task_outbox(run_id: &RunId, available_at: DateTime<Utc>) -> NewOutbox {
    NewOutbox {
        topic: TASK_TOPIC.to_owned(),
        payload: TaskMessage::new(*run_id).to_json(),
        available_at,
    }
}

fn new_run(dataset_id: &str, created_at: DateTime<Utc>) -> NewRun {
    NewRun {
        run_id: run_id_at(created_at),
        kind: RunKind::Ingestion,
        dataset_id: dsid(dataset_id),
        template_id: TemplateId::new("era5-t2m").expect("valid"),
        extent_id: ExtentId::new("europe").expect("valid"),
        request: json!({"periods": ["2020-01", "2020-12"], "force": false}),
        principal: Some("key:ops".into()),
        created_at,
    }
}

fn new_version(dataset_id: &str, artifact_id: &str, publish: bool) -> NewVersion {
    NewVersion {
        dataset_id: dsid(dataset_id),
        template_id: TemplateId::new("era5-t2m").expect("valid"),
        extent_id: ExtentId::new("europe").expect("valid"),
        artifact_id: artifact_id.to_owned(),
        storage_prefix: format!("datasets/{dataset_id}/{artifact_id}"),
        coverage_start: "2020-01".to_owned(),
        coverage_end: "2020-12".to_owned(),
        metadata: json!({"format": "zarr-v3", "chunks": [1, 256, 256]}),
        publish,
    }
}

fn error(code: &str) -> RunError {
    RunError {
        code: code.to_owned(),
        message: format!("{code} happened"),
    }
}

/// Creates a queued run of `dataset_id` at `t` and marks its announcement published.
async fn create(db: &TestDb, dataset_id: &str, t: DateTime<Utc>) -> RunRecord {
    let run = new_run(dataset_id, t);
    let record = db
        .create_run(&run, &task_outbox(&run.run_id, t))
        .await
        .expect("create_run");
    drain_outbox(db).await;
    record
}

/// Claims `run_id` for `owner` at `now` with a 60 s lease.
async fn claim(db: &TestDb, run_id: &RunId, owner: &str, now: DateTime<Utc>) -> RunRecord {
    db.claim_run(run_id, owner, now, now + Duration::seconds(60))
        .await
        .expect("claim_run")
        .expect("the run is claimable")
}

async fn get(db: &TestDb, run_id: &RunId) -> RunRecord {
    db.get_run(run_id)
        .await
        .expect("get_run")
        .expect("the run exists")
}

/// Every pending outbox row (whatever its availability), then marks them published.
async fn drain_outbox(db: &TestDb) -> Vec<OutboxRow> {
    let rows = db
        .pending_outbox(at(1_000_000), 1000)
        .await
        .expect("pending_outbox");
    assert_eq!(
        db.count_pending_outbox(at(1_000_000))
            .await
            .expect("count_pending_outbox"),
        rows.len() as u64,
        "the count agrees with the rows"
    );
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    db.mark_published(&ids, at(0))
        .await
        .expect("mark_published");
    assert_eq!(
        db.count_pending_outbox(at(1_000_000))
            .await
            .expect("count_pending_outbox"),
        0
    );
    rows
}

fn announced_runs(rows: &[OutboxRow]) -> Vec<RunId> {
    rows.iter()
        .map(|r| {
            let bytes = serde_json::to_vec(&r.payload).expect("payload to json");
            TaskMessage::decode(&bytes)
                .expect("outbox payload is a task message")
                .run_id
        })
        .collect()
}

fn ids(runs: &[RunRecord]) -> Vec<RunId> {
    runs.iter().map(|r| r.run_id).collect()
}

fn filter(limit: u32) -> RunFilter {
    RunFilter {
        limit,
        ..RunFilter::default()
    }
}

fn assert_lease_lost<T: std::fmt::Debug>(result: Result<T, DbError>, what: &str) {
    match result {
        Err(DbError::LeaseLost(_)) => {}
        other => panic!("{what}: expected DbError::LeaseLost, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Conformance tests

async fn migrate_is_idempotent(db: &TestDb) {
    // The fixture migrated once already.
    db.migrate().await.expect("second migrate is a no-op");
    db.migrate().await.expect("third migrate is a no-op");
    db.ping().await.expect("ping");
    let run = create(db, "ds", at(0)).await;
    assert_eq!(get(db, &run.run_id).await, run);
}

/// A database a newer release migrated (rolling upgrade, rollback) still starts this one.
async fn migrate_accepts_a_newer_releases_schema(db: &TestDb) {
    if db.engine() == "sqlite" {
        db.exec_raw("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9999, 'from a newer release', TRUE, X'00', 0)").await;
    } else {
        db.exec_raw("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9999, 'from a newer release', TRUE, '\\x00'::bytea, 0)").await;
    }
    db.migrate()
        .await
        .expect("an unknown newer migration is not an error");
    let run = create(db, "ds-newer", at(0)).await;
    assert_eq!(get(db, &run.run_id).await, run);
}

async fn create_run_persists_run_and_outbox(db: &TestDb) {
    let t = at(10);
    let run = new_run("ds-create", t);
    let outbox = task_outbox(&run.run_id, t);
    let record = db.create_run(&run, &outbox).await.expect("create_run");

    assert_eq!(record.run_id, run.run_id);
    assert_eq!(record.kind, RunKind::Ingestion);
    assert_eq!(record.status, RunStatus::Queued);
    assert_eq!(record.dataset_id, "ds-create");
    assert_eq!(record.template_id, "era5-t2m");
    assert_eq!(record.extent_id, "europe");
    assert_eq!(record.request, run.request);
    assert_eq!(record.progress, Progress::default());
    assert_eq!(record.attempts, 0);
    assert_eq!(record.error, None);
    assert_eq!(record.lease_owner, None);
    assert_eq!(record.lease_expires_at, None);
    assert_eq!(record.version, None);
    assert_eq!(record.created_at, t);
    assert_eq!(record.updated_at, t);
    assert_eq!(record.started_at, None);
    assert_eq!(record.finished_at, None);
    assert_eq!(get(db, &run.run_id).await, record, "get_run reads back");
    assert_eq!(db.get_run(&RunId::generate()).await.expect("get_run"), None);

    let pending = db.pending_outbox(t, 10).await.expect("pending_outbox");
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].topic, TASK_TOPIC);
    assert_eq!(pending[0].payload, outbox.payload);

    db.mark_published(&[pending[0].id], t)
        .await
        .expect("mark_published");
    assert!(
        db.pending_outbox(at(1_000_000), 10)
            .await
            .expect("pending_outbox")
            .is_empty(),
        "a published row is no longer pending"
    );

    // Same id twice: the transaction fails as a whole, so no second announcement appears.
    let dup = new_run("ds-create", t);
    let dup = NewRun {
        run_id: run.run_id,
        ..dup
    };
    db.create_run(&dup, &task_outbox(&dup.run_id, t))
        .await
        .expect_err("duplicate run id");
    assert!(
        db.pending_outbox(at(1_000_000), 10)
            .await
            .expect("pending_outbox")
            .is_empty(),
        "a failed create_run leaves no outbox row"
    );
}

async fn identical_concurrent_requests_coalesce_into_one_run(db: &TestDb) {
    // Open the pool's connections first, so the requests below really run side by side.
    let warm: Vec<_> = (0..4)
        .map(|_| {
            let db = db.db.clone();
            tokio::spawn(async move { db.ping().await.expect("ping") })
        })
        .collect();
    for w in warm {
        w.await.expect("ping task");
    }
    // Five datasets, eight identical requests each, all at once.
    for (d, dataset) in ["ds-a", "ds-c", "ds-d", "ds-e", "ds-f"]
        .into_iter()
        .enumerate()
    {
        let t = at(i64::try_from(d).expect("small") * 100);
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let tasks: Vec<_> = (0..8i64)
            .map(|i| {
                let db = db.db.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    let mut run = new_run(dataset, t);
                    run.run_id = run_id_at(t + Duration::milliseconds(i));
                    let outbox = task_outbox(&run.run_id, t);
                    barrier.wait().await;
                    coalesce(db.as_ref(), &run, &outbox)
                        .await
                        .expect("create_run_coalescing")
                })
            })
            .collect();
        let mut ids = BTreeSet::new();
        let mut created = 0;
        for task in tasks {
            let (run, new) = task.await.expect("admission task");
            ids.insert(run.run_id);
            created += usize::from(new);
        }
        assert_eq!(created, 1, "{dataset}: one request creates the run");
        assert_eq!(
            ids.len(),
            1,
            "{dataset}: every request gets that run: {ids:?}"
        );
        let announced = announced_runs(&drain_outbox(db).await);
        assert_eq!(
            announced,
            ids.iter().cloned().collect::<Vec<_>>(),
            "{dataset}: announced once"
        );
    }

    // Another request for the same dataset is a run of its own, queued behind.
    let mut other = new_run("ds-a", at(10));
    other.request = json!({"periods": ["2021-01", "2021-12"], "force": false});
    let (run, new) = db
        .create_run_coalescing(&other, &task_outbox(&other.run_id, at(10)))
        .await
        .expect("create_run_coalescing");
    assert!(new);
    assert_eq!(run.run_id, other.run_id);
    // The same request for another dataset too.
    let third = new_run("ds-b", at(20));
    let (run, new) = db
        .create_run_coalescing(&third, &task_outbox(&third.run_id, at(20)))
        .await
        .expect("create_run_coalescing");
    assert!(new);
    assert_eq!(run.dataset_id, "ds-b");
}

async fn scheduled_admissions_start_a_due_time_once(db: &TestDb) {
    for _ in 0..4 {
        db.ping().await.expect("ping");
    }
    let sync_run = |t: DateTime<Utc>, i: i64| NewRun {
        run_id: run_id_at(t + Duration::milliseconds(i)),
        kind: RunKind::Sync,
        ..new_run("ds-sched", t)
    };
    // Eight replicas reach the same due time at once: one run, seven find it taken.
    let t = at(0);
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8i64)
        .map(|i| {
            let (db, barrier) = (db.db.clone(), barrier.clone());
            let run = sync_run(t, i);
            tokio::spawn(async move {
                let outbox = task_outbox(&run.run_id, t);
                barrier.wait().await;
                db.admit_run(
                    &run,
                    &outbox,
                    Admission::Scheduled {
                        due_key: "2026-01-01T06:00:00Z",
                    },
                )
                .await
                .expect("admit_run")
            })
        })
        .collect();
    let mut created = Vec::new();
    let mut taken = 0;
    for task in tasks {
        match task.await.expect("admission task") {
            Admitted::Created(r) => created.push(r),
            Admitted::DueTimeTaken => taken += 1,
            Admitted::Coalesced(r) => panic!("the first run of a due time coalesced with {r:?}"),
        }
    }
    assert_eq!((created.len(), taken), (1, 7), "{created:?}");
    let first = created.remove(0);
    let tick = db
        .last_sync_tick(&dsid("ds-sched"))
        .await
        .expect("last_sync_tick")
        .expect("the due time is recorded");
    assert_eq!(tick.due_key, "2026-01-01T06:00:00Z");
    assert_eq!(tick.run_id, first.run_id);
    assert_eq!(announced_runs(&drain_outbox(db).await), vec![first.run_id]);

    let scheduled = |run: NewRun, due_key: &'static str| async move {
        db.admit_run(
            &run,
            &task_outbox(&run.run_id, run.created_at),
            Admission::Scheduled { due_key },
        )
        .await
        .expect("admit_run")
    };
    // The next due time while that identical sync is still queued: recorded against it, no
    // second run.
    let admitted = scheduled(sync_run(at(60), 0), "2026-01-02T06:00:00Z").await;
    assert_eq!(admitted, Admitted::Coalesced(first.clone()));
    let tick = db
        .last_sync_tick(&dsid("ds-sched"))
        .await
        .expect("last_sync_tick")
        .expect("tick");
    assert_eq!(
        (tick.due_key.as_str(), tick.run_id),
        ("2026-01-02T06:00:00Z", first.run_id)
    );
    assert!(drain_outbox(db).await.is_empty(), "nothing announced twice");

    // A different request at another due time is a run of its own.
    let mut other = sync_run(at(120), 0);
    other.request = json!({"periods": ["2020-01", "2021-01"], "force": false});
    let other_id = other.run_id;
    let admitted = scheduled(other, "2026-01-03T06:00:00Z").await;
    assert!(
        matches!(&admitted, Admitted::Created(r) if r.run_id == other_id),
        "{admitted:?}"
    );
}

async fn outbox_respects_available_at_order_and_limit(db: &TestDb) {
    let t = at(0);
    let later = new_run("ds", t);
    db.create_run(&later, &task_outbox(&later.run_id, at(60)))
        .await
        .expect("create_run");
    assert!(
        db.pending_outbox(t, 10)
            .await
            .expect("pending_outbox")
            .is_empty(),
        "a row available in the future is not pending yet"
    );
    let due = db.pending_outbox(at(60), 10).await.expect("pending_outbox");
    assert_eq!(announced_runs(&due), vec![later.run_id]);
    drain_outbox(db).await;

    let runs: Vec<NewRun> = (1..=3).map(|i| new_run("ds", at(i))).collect();
    for r in &runs {
        db.create_run(r, &task_outbox(&r.run_id, t))
            .await
            .expect("create_run");
    }
    let first_two = db.pending_outbox(t, 2).await.expect("pending_outbox");
    assert_eq!(
        announced_runs(&first_two),
        vec![runs[0].run_id, runs[1].run_id],
        "oldest first, at most `limit`"
    );
    assert!(first_two[0].id < first_two[1].id);
    db.mark_published(&[first_two[0].id, first_two[1].id], t)
        .await
        .expect("mark_published");
    let rest = db.pending_outbox(t, 10).await.expect("pending_outbox");
    assert_eq!(announced_runs(&rest), vec![runs[2].run_id]);
}

async fn list_runs_filters_newest_first_and_paginates(db: &TestDb) {
    // a0 a1 b2 a3 b4, created one second apart.
    let a0 = create(db, "a", at(0)).await;
    let a1 = create(db, "a", at(1)).await;
    let b2 = create(db, "b", at(2)).await;
    let a3 = create(db, "a", at(3)).await;
    let b4 = create(db, "b", at(4)).await;
    claim(db, &a1.run_id, "w", at(10)).await;
    db.finish_run(&a1.run_id, "w", &RunOutcome::Failed(error("boom")), at(11))
        .await
        .expect("finish_run");
    claim(db, &b4.run_id, "w", at(12)).await;

    let all = db.list_runs(&filter(100)).await.expect("list_runs");
    assert_eq!(
        ids(&all),
        ids(&[b4.clone(), a3.clone(), b2.clone(), a1.clone(), a0.clone()]),
        "newest first"
    );

    let only_a = db
        .list_runs(&RunFilter {
            dataset_id: Some(dsid("a")),
            ..filter(100)
        })
        .await
        .expect("list_runs");
    assert_eq!(ids(&only_a), ids(&[a3.clone(), a1.clone(), a0.clone()]));

    let queued = db
        .list_runs(&RunFilter {
            status: Some(RunStatus::Queued),
            ..filter(100)
        })
        .await
        .expect("list_runs");
    assert_eq!(ids(&queued), ids(&[a3.clone(), b2.clone(), a0.clone()]));

    let failed = db
        .list_runs(&RunFilter {
            status: Some(RunStatus::Failed),
            ..filter(100)
        })
        .await
        .expect("list_runs");
    assert_eq!(ids(&failed), ids(std::slice::from_ref(&a1)));
    assert_eq!(failed[0].status, RunStatus::Failed);

    let queued_b = db
        .list_runs(&RunFilter {
            status: Some(RunStatus::Queued),
            dataset_id: Some(dsid("b")),
            ..filter(100)
        })
        .await
        .expect("list_runs");
    assert_eq!(ids(&queued_b), ids(std::slice::from_ref(&b2)));

    let none = db
        .list_runs(&RunFilter {
            dataset_id: Some(dsid("c")),
            ..filter(100)
        })
        .await
        .expect("list_runs");
    assert!(none.is_empty());

    // Cursor pagination, two per page.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = db
            .list_runs(&RunFilter {
                before,
                ..filter(2)
            })
            .await
            .expect("list_runs");
        assert!(page.len() <= 2, "limit is honoured");
        let Some(last) = page.last() else { break };
        before = Some(last.run_id);
        pages.push(ids(&page));
        assert!(pages.len() <= 5, "pagination terminates");
    }
    assert_eq!(
        pages,
        vec![
            ids(&[b4.clone(), a3.clone()]),
            ids(&[b2.clone(), a1.clone()]),
            ids(std::slice::from_ref(&a0)),
        ]
    );

    let before_a3_in_a = db
        .list_runs(&RunFilter {
            dataset_id: Some(dsid("a")),
            before: Some(a3.run_id),
            ..filter(1)
        })
        .await
        .expect("list_runs");
    assert_eq!(ids(&before_a3_in_a), ids(&[a1]));
}

async fn claim_run_honours_leases(db: &TestDb) {
    let run = create(db, "ds", at(0)).await;
    let t = at(100);
    let lease = t + Duration::seconds(30);

    let claimed = db
        .claim_run(&run.run_id, "w1", t, lease)
        .await
        .expect("claim_run")
        .expect("a queued run is claimable");
    assert_eq!(claimed.status, RunStatus::Running);
    assert_eq!(claimed.attempts, 1);
    assert_eq!(claimed.lease_owner.as_deref(), Some("w1"));
    assert_eq!(claimed.lease_expires_at, Some(lease));
    assert_eq!(claimed.started_at, Some(t));
    assert_eq!(claimed.updated_at, t);
    assert_eq!(get(db, &run.run_id).await, claimed);

    for (owner, now) in [
        ("w2", t + Duration::seconds(1)),
        ("w1", t + Duration::seconds(29)),
    ] {
        let again = db
            .claim_run(&run.run_id, owner, now, now + Duration::seconds(30))
            .await
            .expect("claim_run");
        assert_eq!(again, None, "{owner} cannot claim while the lease is live");
    }
    assert_eq!(
        get(db, &run.run_id).await,
        claimed,
        "refused claims change nothing"
    );

    let after = lease + Duration::seconds(1);
    let reclaimed = db
        .claim_run(&run.run_id, "w2", after, after + Duration::seconds(30))
        .await
        .expect("claim_run")
        .expect("an expired lease can be claimed");
    assert_eq!(reclaimed.lease_owner.as_deref(), Some("w2"));
    assert_eq!(reclaimed.attempts, 2);
    assert_eq!(
        reclaimed.started_at,
        Some(t),
        "started_at keeps the first claim"
    );
    assert_eq!(
        reclaimed.lease_expires_at,
        Some(after + Duration::seconds(30))
    );

    assert_lease_lost(
        db.heartbeat(&run.run_id, "w1", after, after + Duration::seconds(60))
            .await,
        "heartbeat of the previous owner",
    );
    assert_eq!(
        db.claim_run(&RunId::generate(), "w1", t, lease)
            .await
            .expect("claim_run"),
        None
    );
}

async fn finished_runs_are_never_claimable(db: &TestDb) {
    let succeeded = create(db, "s", at(0)).await;
    let failed = create(db, "f", at(1)).await;
    let published = create(db, "p", at(2)).await;
    claim(db, &succeeded.run_id, "w", at(10)).await;
    db.finish_run(&succeeded.run_id, "w", &RunOutcome::Succeeded, at(11))
        .await
        .expect("finish_run");
    claim(db, &failed.run_id, "w", at(10)).await;
    db.finish_run(
        &failed.run_id,
        "w",
        &RunOutcome::Failed(error("bad")),
        at(11),
    )
    .await
    .expect("finish_run");
    claim(db, &published.run_id, "w", at(10)).await;
    db.publish_version(
        &published.run_id,
        "w",
        &new_version("p", "art-p", true),
        at(11),
    )
    .await
    .expect("publish_version");

    let s = get(db, &succeeded.run_id).await;
    assert_eq!(s.status, RunStatus::Succeeded);
    assert_eq!(s.finished_at, Some(at(11)));
    assert_eq!(s.lease_owner, None);

    for run in [&succeeded, &failed, &published] {
        let before = get(db, &run.run_id).await;
        let far = at(1_000_000);
        assert_eq!(
            db.claim_run(&run.run_id, "w2", far, far + Duration::seconds(60))
                .await
                .expect("claim_run"),
            None,
            "{:?} run is not claimable",
            before.status
        );
        assert_eq!(get(db, &run.run_id).await, before);
    }
}

async fn heartbeat_extends_the_lease(db: &TestDb) {
    let run = create(db, "ds", at(0)).await;
    let t = at(100);
    db.claim_run(&run.run_id, "w1", t, t + Duration::seconds(30))
        .await
        .expect("claim_run")
        .expect("claimable");

    let beat = t + Duration::seconds(10);
    let extended = t + Duration::seconds(100);
    db.heartbeat(&run.run_id, "w1", beat, extended)
        .await
        .expect("heartbeat of the owner");
    let record = get(db, &run.run_id).await;
    assert_eq!(record.lease_expires_at, Some(extended));
    assert_eq!(record.updated_at, beat);
    assert_eq!(record.status, RunStatus::Running);
    assert_eq!(record.attempts, 1, "a heartbeat is not an attempt");

    // Past the original lease but within the extension: still held.
    let mid = t + Duration::seconds(50);
    assert_eq!(
        db.claim_run(&run.run_id, "w2", mid, mid + Duration::seconds(30))
            .await
            .expect("claim_run"),
        None,
        "the extended lease protects the run"
    );

    assert_lease_lost(
        db.heartbeat(&run.run_id, "w2", mid, mid + Duration::seconds(100))
            .await,
        "heartbeat of a non-owner",
    );
    assert_eq!(
        get(db, &run.run_id).await.lease_expires_at,
        Some(extended),
        "a refused heartbeat changes nothing"
    );

    let queued = create(db, "other", at(1)).await;
    assert_lease_lost(
        db.heartbeat(&queued.run_id, "w1", mid, mid + Duration::seconds(10))
            .await,
        "heartbeat of an unclaimed run",
    );
}

async fn update_progress_requires_the_lease(db: &TestDb) {
    let run = create(db, "ds", at(0)).await;
    claim(db, &run.run_id, "w1", at(10)).await;
    let progress = Progress {
        done: 3,
        total: 12,
        message: "writing 2020-03".to_owned(),
    };
    db.update_progress(&run.run_id, "w1", &progress)
        .await
        .expect("update_progress");
    assert_eq!(get(db, &run.run_id).await.progress, progress);

    let bogus = Progress {
        done: 11,
        total: 12,
        message: "not mine".to_owned(),
    };
    assert_lease_lost(
        db.update_progress(&run.run_id, "w2", &bogus).await,
        "update_progress of a non-owner",
    );
    assert_eq!(get(db, &run.run_id).await.progress, progress);
}

async fn publish_version_numbers_versions(db: &TestDb) {
    let r1 = create(db, "ds", at(0)).await;
    claim(db, &r1.run_id, "w", at(10)).await;
    db.update_progress(
        &r1.run_id,
        "w",
        &Progress {
            done: 2,
            total: 12,
            message: "half way".into(),
        },
    )
    .await
    .expect("update_progress");
    let nv1 = new_version("ds", "art-1", true);
    let v1 = db
        .publish_version(&r1.run_id, "w", &nv1, at(20))
        .await
        .expect("publish_version");
    let expected_v1 = VersionRecord {
        dataset_id: dsid("ds"),
        version: 1,
        artifact_id: "art-1".into(),
        storage_prefix: nv1.storage_prefix.clone(),
        run_id: r1.run_id,
        coverage_start: "2020-01".into(),
        coverage_end: "2020-12".into(),
        metadata: nv1.metadata.clone(),
        created_at: at(20),
        held: false,
        pruned_at: None,
    };
    assert_eq!(v1, expected_v1);

    let ds = db
        .get_dataset(&dsid("ds"))
        .await
        .expect("get_dataset")
        .expect("the dataset was created");
    assert_eq!(ds.current_version, Some(1));
    assert!(ds.published);
    assert_eq!(ds.template_id, "era5-t2m");
    assert_eq!(ds.extent_id, "europe");
    assert_eq!(ds.created_at, at(20));
    assert_eq!(ds.updated_at, at(20));

    let done = get(db, &r1.run_id).await;
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(done.version, Some(1));
    assert_eq!(done.finished_at, Some(at(20)));
    assert_eq!(done.lease_owner, None);
    assert_eq!(done.lease_expires_at, None);
    assert_eq!(done.error, None);
    assert_eq!(
        done.progress.done, done.progress.total,
        "progress completes"
    );

    let r2 = create(db, "ds", at(30)).await;
    claim(db, &r2.run_id, "w", at(40)).await;
    let v2 = db
        .publish_version(&r2.run_id, "w", &new_version("ds", "art-2", true), at(50))
        .await
        .expect("publish_version");
    assert_eq!(v2.version, 2);
    assert_eq!(v2.run_id, r2.run_id);
    let ds = db
        .get_dataset(&dsid("ds"))
        .await
        .expect("get_dataset")
        .expect("dataset");
    assert_eq!(ds.current_version, Some(2));
    assert_eq!(ds.created_at, at(20), "created_at is the first publication");
    assert_eq!(ds.updated_at, at(50));
    assert_eq!(get(db, &r2.run_id).await.version, Some(2));

    let versions = db.list_versions(&dsid("ds")).await.expect("list_versions");
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2],
        "oldest first"
    );
    assert_eq!(versions[0], expected_v1);
    assert_eq!(
        db.get_version(&dsid("ds"), 2).await.expect("get_version"),
        Some(v2.clone())
    );
    assert_eq!(
        db.get_version(&dsid("ds"), 3).await.expect("get_version"),
        None
    );
    assert_eq!(
        db.get_version(&dsid("nope"), 1).await.expect("get_version"),
        None
    );
    assert!(
        db.list_versions(&dsid("nope"))
            .await
            .expect("list_versions")
            .is_empty()
    );
    assert_eq!(
        db.get_dataset(&dsid("nope")).await.expect("get_dataset"),
        None
    );

    // Another dataset numbers its versions independently.
    let r3 = create(db, "other", at(60)).await;
    claim(db, &r3.run_id, "w", at(61)).await;
    let o1 = db
        .publish_version(
            &r3.run_id,
            "w",
            &new_version("other", "art-3", true),
            at(62),
        )
        .await
        .expect("publish_version");
    assert_eq!(o1.version, 1);
}

async fn publish_version_with_lost_lease_writes_nothing(db: &TestDb) {
    // A new dataset: nothing at all may appear.
    let r1 = create(db, "fresh", at(0)).await;
    claim(db, &r1.run_id, "w1", at(10)).await;
    let running = get(db, &r1.run_id).await;
    assert_lease_lost(
        db.publish_version(
            &r1.run_id,
            "w2",
            &new_version("fresh", "art-x", true),
            at(20),
        )
        .await,
        "publish_version of a non-owner",
    );
    assert_eq!(
        db.get_dataset(&dsid("fresh")).await.expect("get_dataset"),
        None,
        "no dataset row"
    );
    assert!(
        db.list_versions(&dsid("fresh"))
            .await
            .expect("list_versions")
            .is_empty(),
        "no version row"
    );
    assert!(db.list_datasets().await.expect("list_datasets").is_empty());
    assert_eq!(get(db, &r1.run_id).await, running, "the run is untouched");

    // The rightful owner can still publish, and gets version 1 (no number was consumed).
    let v = db
        .publish_version(
            &r1.run_id,
            "w1",
            &new_version("fresh", "art-x", true),
            at(21),
        )
        .await
        .expect("publish_version of the owner");
    assert_eq!(v.version, 1);

    // An existing dataset: untouched, including updated_at.
    let before = db
        .get_dataset(&dsid("fresh"))
        .await
        .expect("get_dataset")
        .expect("dataset");
    let r2 = create(db, "fresh", at(30)).await;
    db.claim_run(&r2.run_id, "w1", at(40), at(50))
        .await
        .expect("claim_run")
        .expect("claimable");
    // The lease expires and another worker takes the run over.
    claim(db, &r2.run_id, "w2", at(60)).await;
    assert_lease_lost(
        db.publish_version(
            &r2.run_id,
            "w1",
            &new_version("fresh", "art-y", false),
            at(70),
        )
        .await,
        "publish_version after the lease was taken over",
    );
    assert_eq!(
        db.get_dataset(&dsid("fresh")).await.expect("get_dataset"),
        Some(before)
    );
    assert_eq!(
        db.list_versions(&dsid("fresh"))
            .await
            .expect("list_versions")
            .len(),
        1
    );
    let r2_now = get(db, &r2.run_id).await;
    assert_eq!(r2_now.status, RunStatus::Running);
    assert_eq!(r2_now.lease_owner.as_deref(), Some("w2"));
    assert_eq!(r2_now.version, None);
}

async fn publish_flag_only_ever_publishes(db: &TestDb) {
    let mut n = 0;
    let mut publish = |publish: bool| {
        n += 1;
        let i = n;
        async move {
            let run = create(db, "ds", at(i * 100)).await;
            claim(db, &run.run_id, "w", at(i * 100 + 1)).await;
            db.publish_version(
                &run.run_id,
                "w",
                &new_version("ds", &format!("art-{i}"), publish),
                at(i * 100 + 2),
            )
            .await
            .expect("publish_version");
            db.get_dataset(&dsid("ds"))
                .await
                .expect("get_dataset")
                .expect("dataset")
        }
    };

    let ds = publish(false).await;
    assert!(
        !ds.published,
        "publish=false leaves a new dataset unpublished"
    );
    assert_eq!(ds.current_version, Some(1));

    let ds = publish(true).await;
    assert!(ds.published, "a later publish=true publishes it");
    assert_eq!(ds.current_version, Some(2));

    let ds = publish(false).await;
    assert!(ds.published, "a published dataset stays published");
    assert_eq!(
        ds.current_version,
        Some(2),
        "publish=false on a public dataset holds the new version out of view"
    );
    let v3 = db
        .get_version(&dsid("ds"), 3)
        .await
        .expect("get_version")
        .expect("version 3 is stored");
    assert!(v3.held);
    let ds = db
        .set_published(&dsid("ds"), true, "key:ops", at(1000))
        .await
        .expect("publish");
    assert_eq!(
        ds.current_version,
        Some(3),
        "publishing brings it into view"
    );
    let v3 = db
        .get_version(&dsid("ds"), 3)
        .await
        .expect("get_version")
        .expect("version 3");
    assert!(!v3.held);
}

async fn finish_run_retry_and_failed(db: &TestDb) {
    let run = create(db, "ds", at(0)).await;
    claim(db, &run.run_id, "w", at(10)).await;

    let retry_at = at(300);
    let outcome = RunOutcome::Retry {
        error: error("upstream_timeout"),
        outbox: task_outbox(&run.run_id, retry_at),
    };
    assert_lease_lost(
        db.finish_run(&run.run_id, "intruder", &outcome, at(20))
            .await,
        "finish_run of a non-owner",
    );
    assert_eq!(get(db, &run.run_id).await.status, RunStatus::Running);
    assert!(
        drain_outbox(db).await.is_empty(),
        "a refused finish announces nothing"
    );

    db.finish_run(&run.run_id, "w", &outcome, at(20))
        .await
        .expect("finish_run retry");
    let retrying = get(db, &run.run_id).await;
    assert_eq!(retrying.status, RunStatus::Retrying);
    assert_eq!(retrying.error, Some(error("upstream_timeout")));
    assert_eq!(retrying.lease_owner, None);
    assert_eq!(retrying.lease_expires_at, None);
    assert_eq!(retrying.finished_at, None, "retrying is not terminal");
    assert_eq!(retrying.updated_at, at(20));
    assert_eq!(
        db.active_run(&dsid("ds")).await.expect("active_run"),
        Some(retrying.clone())
    );
    assert!(
        db.pending_outbox(at(299), 10)
            .await
            .expect("pending_outbox")
            .is_empty(),
        "the retry is announced at retry_at, not before"
    );
    let due = db
        .pending_outbox(retry_at, 10)
        .await
        .expect("pending_outbox");
    assert_eq!(announced_runs(&due), vec![run.run_id]);
    assert_eq!(due[0].topic, TASK_TOPIC);
    drain_outbox(db).await;

    let again = claim(db, &run.run_id, "w", at(310)).await;
    assert_eq!(again.attempts, 2, "a retrying run is claimable again");

    db.finish_run(
        &run.run_id,
        "w",
        &RunOutcome::Failed(error("bad_input")),
        at(320),
    )
    .await
    .expect("finish_run failed");
    let failed = get(db, &run.run_id).await;
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.error, Some(error("bad_input")));
    assert_eq!(failed.finished_at, Some(at(320)));
    assert_eq!(failed.lease_owner, None);
    assert_eq!(failed.attempts, 2);
    assert!(
        drain_outbox(db).await.is_empty(),
        "a failure announces nothing"
    );
    assert_eq!(db.active_run(&dsid("ds")).await.expect("active_run"), None);
    assert_lease_lost(
        db.finish_run(&run.run_id, "w", &RunOutcome::Succeeded, at(330))
            .await,
        "finishing a finished run",
    );
}

async fn defer_run_keeps_the_attempt(db: &TestDb) {
    let run = create(db, "ds", at(0)).await;
    assert_eq!(claim(db, &run.run_id, "w", at(10)).await.attempts, 1);

    let outbox = task_outbox(&run.run_id, at(40));
    assert_lease_lost(
        db.defer_run(&run.run_id, "intruder", &outbox, at(20)).await,
        "defer_run of a non-owner",
    );
    assert!(drain_outbox(db).await.is_empty());
    assert_eq!(get(db, &run.run_id).await.status, RunStatus::Running);

    db.defer_run(&run.run_id, "w", &outbox, at(20))
        .await
        .expect("defer_run");
    let deferred = get(db, &run.run_id).await;
    assert_eq!(deferred.status, RunStatus::Queued);
    assert_eq!(deferred.attempts, 0, "the attempt is given back");
    assert_eq!(deferred.lease_owner, None);
    assert_eq!(deferred.lease_expires_at, None);
    assert_eq!(deferred.finished_at, None);
    assert_eq!(deferred.updated_at, at(20));
    assert!(
        db.pending_outbox(at(39), 10)
            .await
            .expect("pending_outbox")
            .is_empty()
    );
    assert_eq!(
        announced_runs(&db.pending_outbox(at(40), 10).await.expect("pending_outbox")),
        vec![run.run_id]
    );

    // Not leased any more: claimable immediately by anyone.
    let next = claim(db, &run.run_id, "w2", at(21)).await;
    assert_eq!(next.attempts, 1);
    assert_eq!(next.lease_owner.as_deref(), Some("w2"));
}

async fn requeue_expired_only_requeues_expired_leases(db: &TestDb) {
    let expired = create(db, "a", at(0)).await;
    let live = create(db, "b", at(1)).await;
    let queued = create(db, "c", at(2)).await;
    let failed = create(db, "d", at(3)).await;
    let t = at(100);
    db.claim_run(&expired.run_id, "w1", t, t + Duration::seconds(10))
        .await
        .expect("claim_run")
        .expect("claimable");
    db.claim_run(&live.run_id, "w2", t, t + Duration::seconds(100))
        .await
        .expect("claim_run")
        .expect("claimable");
    db.claim_run(&failed.run_id, "w3", t, t + Duration::seconds(5))
        .await
        .expect("claim_run")
        .expect("claimable");
    db.finish_run(&failed.run_id, "w3", &RunOutcome::Failed(error("x")), t)
        .await
        .expect("finish_run");
    drain_outbox(db).await;

    let now = t + Duration::seconds(50);
    let n = db
        .requeue_expired(now, "custom-topic")
        .await
        .expect("requeue_expired");
    assert_eq!(n, 1);

    let requeued = get(db, &expired.run_id).await;
    assert_eq!(requeued.status, RunStatus::Queued);
    assert_eq!(requeued.lease_owner, None);
    assert_eq!(requeued.lease_expires_at, None);
    assert_eq!(requeued.updated_at, now);
    let still = get(db, &live.run_id).await;
    assert_eq!(still.status, RunStatus::Running);
    assert_eq!(still.lease_owner.as_deref(), Some("w2"));
    assert_eq!(get(db, &queued.run_id).await.status, RunStatus::Queued);
    assert_eq!(get(db, &failed.run_id).await.status, RunStatus::Failed);

    let rows = db.pending_outbox(now, 10).await.expect("pending_outbox");
    assert_eq!(announced_runs(&rows), vec![expired.run_id]);
    assert_eq!(rows[0].topic, "custom-topic");
    assert_eq!(rows[0].payload, TaskMessage::new(expired.run_id).to_json());
    drain_outbox(db).await;

    assert_eq!(
        db.requeue_expired(now, "custom-topic")
            .await
            .expect("requeue_expired"),
        0,
        "nothing left to requeue"
    );
    assert!(drain_outbox(db).await.is_empty());
}

async fn reannounce_unfinished_announces_non_terminal_runs(db: &TestDb) {
    let queued = create(db, "a", at(0)).await;
    let running = create(db, "b", at(1)).await;
    let retrying = create(db, "c", at(2)).await;
    let succeeded = create(db, "d", at(3)).await;
    let failed = create(db, "e", at(4)).await;
    claim(db, &running.run_id, "w", at(10)).await;
    claim(db, &retrying.run_id, "w", at(10)).await;
    db.finish_run(
        &retrying.run_id,
        "w",
        &RunOutcome::Retry {
            error: error("flaky"),
            outbox: task_outbox(&retrying.run_id, at(500)),
        },
        at(11),
    )
    .await
    .expect("finish_run retry");
    claim(db, &succeeded.run_id, "w", at(10)).await;
    db.finish_run(&succeeded.run_id, "w", &RunOutcome::Succeeded, at(11))
        .await
        .expect("finish_run");
    claim(db, &failed.run_id, "w", at(10)).await;
    db.finish_run(&failed.run_id, "w", &RunOutcome::Failed(error("x")), at(11))
        .await
        .expect("finish_run");
    drain_outbox(db).await;

    let now = at(20);
    let n = db
        .reannounce_unfinished(now, TASK_TOPIC)
        .await
        .expect("reannounce_unfinished");
    assert_eq!(n, 3);
    let rows = db.pending_outbox(now, 10).await.expect("pending_outbox");
    assert!(rows.iter().all(|r| r.topic == TASK_TOPIC));
    let announced: BTreeSet<RunId> = announced_runs(&rows).into_iter().collect();
    let expected: BTreeSet<RunId> = [&queued, &running, &retrying]
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(announced, expected);
    // Re-announcing changes no run.
    assert_eq!(get(db, &running.run_id).await.status, RunStatus::Running);
}

async fn active_run_is_the_newest_non_terminal_run(db: &TestDb) {
    assert_eq!(db.active_run(&dsid("ds")).await.expect("active_run"), None);
    let older = create(db, "ds", at(0)).await;
    let newer = create(db, "ds", at(1)).await;
    let elsewhere = create(db, "other", at(2)).await;

    let active = db
        .active_run(&dsid("ds"))
        .await
        .expect("active_run")
        .expect("an active run");
    assert_eq!(active.run_id, newer.run_id, "the newest one");

    claim(db, &newer.run_id, "w", at(10)).await;
    assert_eq!(
        db.active_run(&dsid("ds"))
            .await
            .expect("active_run")
            .map(|r| (r.run_id, r.status)),
        Some((newer.run_id, RunStatus::Running)),
        "a running run is active"
    );

    db.finish_run(&newer.run_id, "w", &RunOutcome::Failed(error("x")), at(11))
        .await
        .expect("finish_run");
    assert_eq!(
        db.active_run(&dsid("ds"))
            .await
            .expect("active_run")
            .map(|r| r.run_id),
        Some(older.run_id),
        "terminal runs are skipped"
    );

    claim(db, &older.run_id, "w", at(12)).await;
    db.publish_version(&older.run_id, "w", &new_version("ds", "art", true), at(13))
        .await
        .expect("publish_version");
    assert_eq!(db.active_run(&dsid("ds")).await.expect("active_run"), None);
    assert_eq!(
        db.active_run(&dsid("other"))
            .await
            .expect("active_run")
            .map(|r| r.run_id),
        Some(elsewhere.run_id)
    );
}

async fn list_datasets_lists_only_datasets_with_a_version(db: &TestDb) {
    assert!(db.list_datasets().await.expect("list_datasets").is_empty());
    // A dataset row without any version, as an interrupted import would leave it.
    db.exec_raw(
        "INSERT INTO managed_datasets (dataset_id, template_id, extent_id, current_version, \
         published, created_at, updated_at) VALUES ('empty', 't', 'e', NULL, TRUE, 0, 0)",
    )
    .await;
    assert!(
        db.get_dataset(&dsid("empty"))
            .await
            .expect("get_dataset")
            .is_some_and(|d| d.current_version.is_none()),
        "the raw row is visible to get_dataset"
    );

    for (i, (dataset, publish)) in [("zeta", true), ("alpha", false)].into_iter().enumerate() {
        let i = i64::try_from(i).expect("small");
        let run = create(db, dataset, at(i)).await;
        claim(db, &run.run_id, "w", at(10 + i)).await;
        db.publish_version(
            &run.run_id,
            "w",
            &new_version(dataset, &format!("art-{dataset}"), publish),
            at(20 + i),
        )
        .await
        .expect("publish_version");
    }

    let listed = db.list_datasets().await.expect("list_datasets");
    assert_eq!(
        listed
            .iter()
            .map(|d| (d.dataset_id.as_str(), d.published, d.current_version))
            .collect::<Vec<_>>(),
        vec![("alpha", false, Some(1)), ("zeta", true, Some(1))],
        "by id, versionless datasets excluded"
    );
    assert_eq!(
        db.get_dataset(&dsid("zeta"))
            .await
            .expect("get_dataset")
            .as_ref(),
        listed.get(1)
    );
}

// ---------------------------------------------------------------------------------------------
// Segments

fn three_segments() -> Vec<NewSegment> {
    [(0, 0, 1, 30), (1, 1, 2, 30), (2, 2, 3, 1)]
        .into_iter()
        .map(|(segment, chunk_start, chunk_end, periods)| NewSegment {
            segment,
            chunk_start,
            chunk_end,
            periods,
        })
        .collect()
}

fn steps(rows: &[OutboxRow]) -> Vec<(RunId, Step)> {
    rows.iter()
        .map(|r| {
            let m = TaskMessage::decode(&serde_json::to_vec(&r.payload).expect("json"))
                .expect("task message");
            (m.run_id, m.step)
        })
        .collect()
}

/// A planned run with three segments (periods 30, 30, 1), its announcements drained.
async fn planned(db: &TestDb, dataset_id: &str, t: DateTime<Utc>) -> RunRecord {
    let run = create(db, dataset_id, t).await;
    claim(db, &run.run_id, "planner", t).await;
    db.plan_run(
        &run.run_id,
        "planner",
        &json!({"prefix": "datasets/x/a1"}),
        &three_segments(),
        TASK_TOPIC,
        t,
    )
    .await
    .expect("plan_run");
    drain_outbox(db).await;
    get(db, &run.run_id).await
}

async fn segments_run_from_plan_to_finalize(db: &TestDb) {
    let t0 = at(1_000);
    let run = create(db, "seg_ds", t0).await;
    claim(db, &run.run_id, "planner", t0).await;
    db.plan_run(
        &run.run_id,
        "planner",
        &json!({"prefix": "p"}),
        &three_segments(),
        TASK_TOPIC,
        t0,
    )
    .await
    .expect("plan_run");
    let r = get(db, &run.run_id).await;
    assert_eq!(r.status, RunStatus::Running);
    assert_eq!(r.lease_owner, None, "planning releases the run's lease");
    assert_eq!(r.plan, Some(json!({"prefix": "p"})));
    assert_eq!((r.progress.done, r.progress.total), (0, 61));
    let announced = steps(&drain_outbox(db).await);
    assert_eq!(
        announced,
        (0..3)
            .map(|i| (run.run_id, Step::Segment(i)))
            .collect::<Vec<_>>()
    );
    assert!(
        db.claim_finalize(&run.run_id, "f", t0, t0 + Duration::seconds(60))
            .await
            .expect("claim_finalize")
            .is_none(),
        "no finalize while segments remain"
    );

    // Leases on segments: a live one is not stolen, an expired one is.
    let lease = |t: DateTime<Utc>| t + Duration::seconds(60);
    let s0 = db
        .claim_segment(&run.run_id, 0, "a", t0, lease(t0))
        .await
        .expect("claim")
        .expect("claimable");
    assert_eq!(
        (s0.status, s0.attempts, s0.periods),
        (SegmentStatus::Running, 1, 30)
    );
    assert!(
        db.claim_segment(&run.run_id, 0, "b", at(1_010), lease(at(1_010)))
            .await
            .expect("claim")
            .is_none()
    );
    let t1 = at(1_100);
    let s0b = db
        .claim_segment(&run.run_id, 0, "b", t1, lease(t1))
        .await
        .expect("claim")
        .expect("expired lease");
    assert_eq!(s0b.attempts, 2);
    assert_lease_lost(
        db.complete_segment(&run.run_id, 0, "a", 9, TASK_TOPIC, t1)
            .await,
        "complete by the old owner",
    );
    assert_lease_lost(
        db.heartbeat_segment(&run.run_id, 0, "a", lease(t1)).await,
        "heartbeat by the old owner",
    );
    db.heartbeat_segment(&run.run_id, 0, "b", lease(t1))
        .await
        .expect("heartbeat");
    assert!(
        !db.complete_segment(&run.run_id, 0, "b", 4, TASK_TOPIC, t1)
            .await
            .expect("complete")
    );
    assert_eq!(get(db, &run.run_id).await.progress.done, 30);
    assert!(
        db.claim_segment(&run.run_id, 0, "c", at(9_000), lease(at(9_000)))
            .await
            .expect("claim")
            .is_none(),
        "done segments stay done"
    );

    for i in 1..3 {
        db.claim_segment(&run.run_id, i, "c", t1, lease(t1))
            .await
            .expect("claim")
            .expect("claimable");
    }
    assert!(
        !db.complete_segment(&run.run_id, 1, "c", 4, TASK_TOPIC, t1)
            .await
            .expect("complete")
    );
    assert!(
        drain_outbox(db).await.is_empty(),
        "no finalize before the last segment"
    );
    assert!(
        db.complete_segment(&run.run_id, 2, "c", 1, TASK_TOPIC, t1)
            .await
            .expect("complete"),
        "last"
    );
    assert_eq!(
        steps(&drain_outbox(db).await),
        vec![(run.run_id, Step::Finalize)]
    );
    assert_eq!(get(db, &run.run_id).await.progress.done, 61);
    let segs = db.list_segments(&run.run_id).await.expect("list");
    assert_eq!(segs.iter().map(|s| s.chunks_written).sum::<u64>(), 9);
    assert!(segs.iter().all(|s| s.status == SegmentStatus::Done));

    let f = db
        .claim_finalize(&run.run_id, "f", t1, lease(t1))
        .await
        .expect("claim")
        .expect("ready");
    assert_eq!(f.lease_owner.as_deref(), Some("f"));
    assert!(
        db.claim_finalize(&run.run_id, "g", t1, lease(t1))
            .await
            .expect("claim")
            .is_none(),
        "held"
    );
    db.publish_version(
        &run.run_id,
        "f",
        &new_version("seg_ds", "art-seg", true),
        t1,
    )
    .await
    .expect("publish");
    assert_eq!(get(db, &run.run_id).await.status, RunStatus::Succeeded);
    assert!(
        db.claim_finalize(&run.run_id, "g", at(9_999), lease(at(9_999)))
            .await
            .expect("claim")
            .is_none(),
        "finished"
    );
}

async fn plan_run_requires_the_lease(db: &TestDb) {
    let t0 = at(2_000);
    let run = create(db, "plan_ds", t0).await;
    claim(db, &run.run_id, "planner", t0).await;
    let result = db
        .plan_run(
            &run.run_id,
            "intruder",
            &json!({}),
            &three_segments(),
            TASK_TOPIC,
            t0,
        )
        .await;
    assert_lease_lost(result, "plan_run by a non-owner");
    assert!(
        db.list_segments(&run.run_id)
            .await
            .expect("list")
            .is_empty(),
        "nothing written"
    );
    assert!(drain_outbox(db).await.is_empty());
    assert_eq!(get(db, &run.run_id).await.plan, None);
}

async fn segments_retry_and_fail_the_run(db: &TestDb) {
    let t0 = at(3_000);
    let run = planned(db, "retry_ds", t0).await;
    let lease = t0 + Duration::seconds(60);
    db.claim_segment(&run.run_id, 1, "w", t0, lease)
        .await
        .expect("claim")
        .expect("claimable");
    let later = NewOutbox {
        topic: TASK_TOPIC.into(),
        payload: TaskMessage::step(run.run_id, Step::Segment(1)).to_json(),
        available_at: at(3_500),
    };
    db.retry_segment(
        &run.run_id,
        1,
        "w",
        &error("upstream_unavailable"),
        &later,
        t0,
    )
    .await
    .expect("retry");
    let segs = db.list_segments(&run.run_id).await.expect("list");
    assert_eq!(segs[1].status, SegmentStatus::Retrying);
    assert_eq!(
        segs[1].error.as_ref().map(|e| e.code.as_str()),
        Some("upstream_unavailable")
    );
    let r = get(db, &run.run_id).await;
    assert_eq!(
        r.status,
        RunStatus::Running,
        "a retrying segment keeps the run running"
    );
    assert_eq!(
        r.error.as_ref().map(|e| e.code.as_str()),
        Some("upstream_unavailable")
    );
    assert!(
        db.pending_outbox(at(3_400), 10)
            .await
            .expect("pending")
            .is_empty(),
        "delayed"
    );
    assert_eq!(
        db.pending_outbox(at(3_500), 10)
            .await
            .expect("pending")
            .len(),
        1
    );

    db.claim_segment(&run.run_id, 1, "w2", t0, lease)
        .await
        .expect("claim")
        .expect("retrying is claimable");
    db.fail_segment(&run.run_id, 1, "w2", &error("source_error"), t0)
        .await
        .expect("fail");
    let r = get(db, &run.run_id).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(
        r.error.as_ref().map(|e| e.code.as_str()),
        Some("source_error")
    );
    assert!(r.finished_at.is_some());
    assert!(
        db.claim_segment(&run.run_id, 0, "w3", t0, lease)
            .await
            .expect("claim")
            .is_none(),
        "segments of a failed run are not claimable"
    );
    assert_lease_lost(
        db.fail_segment(&run.run_id, 2, "nobody", &error("x"), t0)
            .await,
        "fail unheld segment",
    );
}

async fn requeue_expired_handles_segments_and_planned_runs(db: &TestDb) {
    let t0 = at(4_000);
    let run = planned(db, "reap_ds", t0).await;
    let short = t0 + Duration::seconds(10);
    db.claim_segment(&run.run_id, 0, "dead", t0, short)
        .await
        .expect("claim")
        .expect("claimable");
    db.claim_segment(&run.run_id, 1, "alive", t0, t0 + Duration::seconds(600))
        .await
        .expect("claim")
        .expect("claimable");
    assert_eq!(
        db.requeue_expired(at(4_005), TASK_TOPIC)
            .await
            .expect("reap"),
        0,
        "nothing expired yet"
    );
    assert_eq!(
        db.requeue_expired(at(4_020), TASK_TOPIC)
            .await
            .expect("reap"),
        1
    );
    let segs = db.list_segments(&run.run_id).await.expect("list");
    assert_eq!(segs[0].status, SegmentStatus::Queued);
    assert_eq!(segs[0].lease_owner, None);
    assert_eq!(
        segs[1].status,
        SegmentStatus::Running,
        "a live lease is kept"
    );
    assert_eq!(
        steps(&drain_outbox(db).await),
        vec![(run.run_id, Step::Segment(0))]
    );

    // A finalize step whose worker died is announced again, without planning again.
    let run2 = planned(db, "reap_ds2", t0).await;
    for i in 0..3 {
        db.claim_segment(&run2.run_id, i, "w", t0, short)
            .await
            .expect("claim")
            .expect("claimable");
        db.complete_segment(&run2.run_id, i, "w", 1, TASK_TOPIC, t0)
            .await
            .expect("complete");
    }
    drain_outbox(db).await;
    db.claim_finalize(&run2.run_id, "dead", t0, short)
        .await
        .expect("claim")
        .expect("ready");
    db.requeue_expired(at(4_020), TASK_TOPIC)
        .await
        .expect("reap");
    let r = get(db, &run2.run_id).await;
    assert_eq!(
        r.status,
        RunStatus::Running,
        "a planned run is not re-planned"
    );
    assert_eq!(r.lease_owner, None);
    assert!(r.plan.is_some());
    assert_eq!(
        steps(&drain_outbox(db).await),
        vec![(run2.run_id, Step::Finalize)]
    );
    assert!(
        db.claim_finalize(&run2.run_id, "next", at(4_021), at(4_100))
            .await
            .expect("claim")
            .is_some()
    );
}

async fn reannounce_unfinished_announces_each_step(db: &TestDb) {
    let t0 = at(5_000);
    let queued = create(db, "ann_q", t0).await;
    let partly = planned(db, "ann_p", t0).await;
    db.claim_segment(&partly.run_id, 1, "w", t0, t0 + Duration::seconds(60))
        .await
        .expect("claim")
        .expect("claimable");
    db.complete_segment(&partly.run_id, 1, "w", 1, TASK_TOPIC, t0)
        .await
        .expect("complete");
    let done = planned(db, "ann_d", t0).await;
    for i in 0..3 {
        db.claim_segment(&done.run_id, i, "w", t0, t0 + Duration::seconds(60))
            .await
            .expect("claim")
            .expect("claimable");
        db.complete_segment(&done.run_id, i, "w", 1, TASK_TOPIC, t0)
            .await
            .expect("complete");
    }
    drain_outbox(db).await;
    let n = db
        .reannounce_unfinished(t0, TASK_TOPIC)
        .await
        .expect("reannounce");
    let mut got = steps(&drain_outbox(db).await);
    got.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    let mut want = vec![
        (queued.run_id, Step::Plan),
        (partly.run_id, Step::Segment(0)),
        (partly.run_id, Step::Segment(2)),
        (done.run_id, Step::Finalize),
    ];
    want.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    assert_eq!(got, want);
    assert_eq!(n, 4);
}

async fn suspend_run_keeps_state_and_the_attempt(db: &TestDb) {
    let t0 = at(6_000);
    let run = create(db, "susp_ds", t0).await;
    claim(db, &run.run_id, "w", t0).await;
    let later = NewOutbox {
        topic: TASK_TOPIC.into(),
        payload: TaskMessage::new(run.run_id).to_json(),
        available_at: at(6_030),
    };
    let state = json!({"jobs": {"2024-01": "5f0c0e2e"}});
    assert_lease_lost(
        db.suspend_run(&run.run_id, "intruder", &state, "waiting", &later, t0)
            .await,
        "suspend by a non-owner",
    );
    db.suspend_run(
        &run.run_id,
        "w",
        &state,
        "waiting for upstream job 5f0c0e2e",
        &later,
        t0,
    )
    .await
    .expect("suspend_run");
    let r = get(db, &run.run_id).await;
    assert_eq!(r.status, RunStatus::Queued);
    assert_eq!(r.attempts, 0, "waiting does not use an attempt");
    assert_eq!(r.provider_state, Some(state.clone()));
    assert_eq!(r.progress.message, "waiting for upstream job 5f0c0e2e");
    assert!(
        db.pending_outbox(at(6_029), 10)
            .await
            .expect("pending")
            .is_empty(),
        "delayed"
    );
    assert_eq!(
        db.pending_outbox(at(6_030), 10)
            .await
            .expect("pending")
            .len(),
        1
    );
    // The state survives the next claim, for the provider to resume from.
    let again = claim(db, &run.run_id, "w2", at(6_031)).await;
    assert_eq!(again.provider_state, Some(state));
    assert_eq!(again.attempts, 1);
}

async fn cancel_run_stops_every_step(db: &TestDb) {
    let t0 = at(7_000);
    let lease = t0 + Duration::seconds(60);
    // A queued run is cancelled at once and can no longer be claimed.
    let q = create(db, "cancel_q", t0).await;
    let c = db
        .cancel_run(&q.run_id, t0)
        .await
        .expect("cancel")
        .expect("exists");
    assert_eq!(c.status, RunStatus::Cancelled);
    assert!(c.finished_at.is_some());
    assert!(
        db.claim_run(&q.run_id, "w", t0, lease)
            .await
            .expect("claim")
            .is_none()
    );

    // A planned run: held segments lose their lease, the rest cannot be claimed, no finalize.
    let run = planned(db, "cancel_p", t0).await;
    db.claim_segment(&run.run_id, 0, "w", t0, lease)
        .await
        .expect("claim")
        .expect("claimable");
    db.cancel_run(&run.run_id, t0).await.expect("cancel");
    assert_lease_lost(
        db.heartbeat_segment(&run.run_id, 0, "w", lease).await,
        "heartbeat after cancel",
    );
    assert_lease_lost(
        db.complete_segment(&run.run_id, 0, "w", 1, TASK_TOPIC, t0)
            .await,
        "complete after cancel",
    );
    assert!(
        db.claim_segment(&run.run_id, 1, "w", t0, lease)
            .await
            .expect("claim")
            .is_none()
    );
    assert!(
        db.claim_finalize(&run.run_id, "f", t0, lease)
            .await
            .expect("claim")
            .is_none()
    );

    // A running run's planner loses its lease (so it writes nothing more).
    let r = create(db, "cancel_r", t0).await;
    claim(db, &r.run_id, "planner", t0).await;
    db.cancel_run(&r.run_id, t0).await.expect("cancel");
    assert_lease_lost(
        db.plan_run(
            &r.run_id,
            "planner",
            &json!({}),
            &three_segments(),
            TASK_TOPIC,
            t0,
        )
        .await,
        "plan after cancel",
    );

    // Finished runs are left as they are; unknown ones are None.
    let done = get(db, &q.run_id).await;
    let again = db
        .cancel_run(&q.run_id, at(7_100))
        .await
        .expect("cancel")
        .expect("exists");
    assert_eq!(
        again.finished_at, done.finished_at,
        "a finished run is not touched"
    );
    assert!(
        db.cancel_run(&RunId::generate(), t0)
            .await
            .expect("cancel")
            .is_none()
    );
}

fn key(id: &str, t: DateTime<Utc>) -> ApiKeyRecord {
    ApiKeyRecord {
        key_id: id.to_owned(),
        name: format!("name of {id}"),
        scopes: "read ingest".into(),
        secret_hash: format!("hash-{id}"),
        created_at: t,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    }
}

async fn api_keys_and_tokens(db: &TestDb) {
    let t0 = at(8_000);
    db.create_api_key(&key("k1", t0)).await.expect("create k1");
    db.create_api_key(&ApiKeyRecord {
        expires_at: Some(at(8_100)),
        ..key("k2", at(8_001))
    })
    .await
    .expect("create k2");
    assert!(
        db.create_api_key(&key("k1", t0)).await.is_err(),
        "key ids are unique"
    );
    let k1 = db.get_api_key("k1").await.expect("get").expect("exists");
    assert_eq!(k1, key("k1", t0), "round trip");
    assert!(k1.is_active(at(9_000)));
    let k2 = db.get_api_key("k2").await.expect("get").expect("exists");
    assert!(
        k2.is_active(at(8_099)) && !k2.is_active(at(8_100)),
        "expiry"
    );
    assert!(db.get_api_key("nope").await.expect("get").is_none());
    let ids: Vec<String> = db
        .list_api_keys()
        .await
        .expect("list")
        .into_iter()
        .map(|k| k.key_id)
        .collect();
    assert_eq!(ids, ["k1", "k2"], "oldest first");

    // last_used_at is written at most once a minute.
    db.touch_api_key("k1", at(8_010)).await.expect("touch");
    db.touch_api_key("k1", at(8_020)).await.expect("touch");
    let used = db
        .get_api_key("k1")
        .await
        .expect("get")
        .expect("k1")
        .last_used_at;
    assert_eq!(used, Some(at(8_010)));
    db.touch_api_key("k1", at(8_071)).await.expect("touch");
    let used = db
        .get_api_key("k1")
        .await
        .expect("get")
        .expect("k1")
        .last_used_at;
    assert_eq!(used, Some(at(8_071)));

    // Tokens resolve to their key until they expire; revoking the key drops its tokens.
    db.create_token("tok-1", "k1", t0, at(8_500))
        .await
        .expect("token");
    let owner = db.token_key("tok-1", at(8_499)).await.expect("token_key");
    assert_eq!(owner.map(|k| k.key_id).as_deref(), Some("k1"));
    assert!(
        db.token_key("tok-1", at(8_500))
            .await
            .expect("token_key")
            .is_none(),
        "expired"
    );
    assert!(
        db.token_key("tok-x", t0)
            .await
            .expect("token_key")
            .is_none(),
        "unknown"
    );
    assert!(db.revoke_api_key("k1", at(8_200)).await.expect("revoke"));
    assert!(
        !db.revoke_api_key("k1", at(8_300)).await.expect("revoke"),
        "already revoked"
    );
    assert!(!db.revoke_api_key("nope", at(8_300)).await.expect("revoke"));
    let k1 = db.get_api_key("k1").await.expect("get").expect("k1");
    assert_eq!(
        k1.revoked_at,
        Some(at(8_200)),
        "the first revocation counts"
    );
    assert!(!k1.is_active(at(8_201)));
    assert!(
        db.token_key("tok-1", at(8_201))
            .await
            .expect("token_key")
            .is_none(),
        "a revoked key's tokens are gone"
    );
}

async fn idempotency_keys_replay_conflict_and_expire(db: &TestDb) {
    let t0 = at(10_000);
    let stale = |t: DateTime<Utc>| t - Duration::seconds(60);
    let expired = |t: DateTime<Utc>| t - Duration::hours(24);
    let begin = |p: &'static str, k: &'static str, f: &'static str, t: DateTime<Utc>| async move {
        db.idempotency_begin(p, k, f, t, stale(t), expired(t))
            .await
            .expect("begin")
    };
    assert_eq!(
        begin("alice", "k", "f1", t0).await,
        IdempotencyBegin::Started
    );
    assert_eq!(
        begin("alice", "k", "f1", t0).await,
        IdempotencyBegin::InFlight,
        "the first request is still running"
    );
    assert_eq!(
        begin("bob", "k", "f1", t0).await,
        IdempotencyBegin::Started,
        "keys are per principal"
    );
    db.idempotency_finish("alice", "k", 202, r#"{"body":1}"#)
        .await
        .expect("finish");
    assert_eq!(
        begin("alice", "k", "f1", at(10_001)).await,
        IdempotencyBegin::Replay {
            status: 202,
            response: r#"{"body":1}"#.into()
        }
    );
    assert_eq!(
        begin("alice", "k", "f2", at(10_001)).await,
        IdempotencyBegin::Mismatch,
        "the same key for another request"
    );

    // An abandoned in-flight key is taken over; an aborted one starts again.
    assert_eq!(
        begin("carol", "k", "f1", t0).await,
        IdempotencyBegin::Started
    );
    assert_eq!(
        begin("carol", "k", "f1", at(10_030)).await,
        IdempotencyBegin::InFlight
    );
    assert_eq!(
        begin("carol", "k", "f1", at(10_061)).await,
        IdempotencyBegin::Started,
        "in flight for over a minute: abandoned"
    );
    db.idempotency_abort("carol", "k").await.expect("abort");
    assert_eq!(
        begin("carol", "k", "f1", at(10_062)).await,
        IdempotencyBegin::Started
    );

    // A finished key is forgotten after the retention, by begin and by the purge.
    let later = t0 + Duration::hours(24) + Duration::seconds(1);
    assert_eq!(
        begin("alice", "k", "f2", later).await,
        IdempotencyBegin::Started
    );
    assert_eq!(
        db.purge_idempotency(at(10_050)).await.expect("purge"),
        1,
        "bob's key is older than the cut-off; alice's and carol's are newer"
    );
    assert_eq!(
        begin("bob", "k", "f9", at(10_100)).await,
        IdempotencyBegin::Started
    );
}
