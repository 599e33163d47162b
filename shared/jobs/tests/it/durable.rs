//! Durable jobs end to end over SQLite and the in-process queue: a [`Work`] run through
//! [`Durable`] by the engine reaches its result, fails or retries by its answer, stops when
//! cancelled, and is taken over when its worker stalls (its lease expires and the reaper
//! announces it again).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::Utc;
use climate_domain::ids::JobId;
use climate_domain::retry::RetryPolicy;
use climate_domain::run::RunStatus;
use climate_infra::db::{self, Database, JobRecord};
use climate_infra::messages::TASK_TOPIC;
use climate_infra::queue::{MemoryQueue, Queue};
use climate_jobs::{
    Durable, DurableSettings, Engine, EngineSettings, FailPoints, JobContext, Work, WorkError,
    Worker, submit,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Sums its inputs' `numbers`. `mode`: `fail` fails for good; `flaky` fails transiently on its
/// first attempt; `hang` never answers on its first attempt (a stalled worker); `slow` reports
/// progress until it is stopped; `gated` reports half its progress and waits for `gate`.
#[derive(Debug)]
struct Sum {
    /// Attempts that saw their stop signal.
    stopped: Arc<AtomicU32>,
    /// Opened by the test to let a `gated` job finish.
    gate: Arc<tokio::sync::Semaphore>,
}

#[async_trait::async_trait]
impl Work for Sum {
    fn kind(&self) -> &'static str {
        "sum"
    }

    async fn execute(&self, ctx: &JobContext) -> Result<Value, WorkError> {
        let job = ctx.job();
        let numbers: Vec<i64> =
            serde_json::from_value(job.inputs["numbers"].clone()).map_err(|e| {
                WorkError::Failed {
                    code: "invalid_inputs".into(),
                    message: format!("numbers: {e}"),
                }
            })?;
        match (job.inputs["mode"].as_str(), job.attempts) {
            (Some("fail"), _) => {
                return Err(WorkError::Failed {
                    code: "bad_input".into(),
                    message: "asked to fail".into(),
                });
            }
            (Some("flaky"), 1) => return Err(WorkError::Transient("upstream busy".into())),
            (Some("hang"), 1) => std::future::pending::<()>().await,
            (Some("gated"), _) => {
                ctx.report(1, 2, "half way");
                let _open = self
                    .gate
                    .acquire()
                    .await
                    .map_err(|_| WorkError::Transient("the gate closed".into()))?;
            }
            (Some("slow"), _) => {
                for step in 0.. {
                    ctx.report(step, 0, format!("step {step}"));
                    tokio::select! {
                        () = ctx.stopped().cancelled() => {
                            self.stopped.fetch_add(1, Ordering::SeqCst);
                            return Err(WorkError::Transient("stopped".into()));
                        }
                        () = tokio::time::sleep(Duration::from_millis(10)) => {}
                    }
                }
            }
            _ => {}
        }
        ctx.report(1, 1, "summed");
        Ok(json!({"sum": numbers.iter().sum::<i64>()}))
    }
}

struct Harness {
    db: Arc<dyn Database>,
    queue: Arc<dyn Queue>,
    stopped: Arc<AtomicU32>,
    gate: Arc<tokio::sync::Semaphore>,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

fn settings(lease_ms: u64, heartbeat_ms: u64) -> DurableSettings {
    DurableSettings {
        lease: Duration::from_millis(lease_ms),
        heartbeat: Duration::from_millis(heartbeat_ms),
        retry: RetryPolicy::new(Duration::from_millis(20), Duration::from_millis(50)),
        max_attempts: 3,
        retention: Duration::from_secs(3600),
    }
}

/// A SQLite database, the in-process queue, an outbox relay, and one engine per entry of
/// `workers` (its id and durable settings).
async fn start(workers: &[(&str, DurableSettings)]) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let db = db::connect(&url, Some(4)).await.expect("open SQLite");
    db.migrate().await.expect("migrate");
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::default());
    let shutdown = CancellationToken::new();
    let stopped = Arc::new(AtomicU32::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let mut tasks = vec![tokio::spawn(relay(
        db.clone(),
        queue.clone(),
        shutdown.clone(),
    ))];
    for (id, durable) in workers {
        let kind = Durable::new(
            db.clone(),
            Sum {
                stopped: stopped.clone(),
                gate: gate.clone(),
            },
            *durable,
        );
        let engine = Engine::new(
            queue.clone(),
            Worker::new(*id, FailPoints::default()),
            EngineSettings {
                concurrency: 2,
                max_delivery_hold: Duration::from_secs(30),
                shutdown_grace: Duration::from_millis(200),
            },
        )
        .with_kind(Arc::new(kind));
        tasks.push(tokio::spawn(engine.run(shutdown.clone())));
    }
    Harness {
        db,
        queue,
        stopped,
        gate,
        shutdown,
        tasks,
        _dir: dir,
    }
}

/// The outbox relay, as housekeeping runs it, every 10 ms.
async fn relay(db: Arc<dyn Database>, queue: Arc<dyn Queue>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let rows = db.pending_outbox(Utc::now(), 100).await.expect("pending");
        for row in &rows {
            let body = serde_json::to_vec(&row.payload).expect("json");
            queue
                .publish(&body, &BTreeMap::new())
                .await
                .expect("publish");
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        if !ids.is_empty() {
            db.mark_published(&ids, Utc::now()).await.expect("mark");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Harness {
    async fn submit(&self, inputs: Value) -> JobId {
        submit(self.db.as_ref(), "sum", "tester", inputs, Utc::now())
            .await
            .expect("submit")
            .job_id
    }

    async fn get(&self, id: JobId) -> JobRecord {
        self.db.get_job(id).await.expect("get_job").expect("exists")
    }

    /// Waits (up to 10 s) until job `id` satisfies `done`.
    async fn wait(&self, id: JobId, what: &str, done: impl Fn(&JobRecord) -> bool) -> JobRecord {
        for _ in 0..1000 {
            let job = self.get(id).await;
            if done(&job) {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}: {:?}", self.get(id).await);
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("stops")
                .expect("does not panic");
        }
    }
}

fn finished(job: &JobRecord) -> bool {
    job.status.is_terminal()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_jobs_reach_a_result_or_fail_or_retry_by_their_answer() {
    let h = start(&[("w1", settings(5_000, 1_000))]).await;
    let ok = h.submit(json!({"numbers": [1, 2, 3]})).await;
    let fail = h.submit(json!({"numbers": [1], "mode": "fail"})).await;
    let flaky = h.submit(json!({"numbers": [4, 5], "mode": "flaky"})).await;
    let bad = h.submit(json!({"numbers": "many"})).await;

    let ok = h.wait(ok, "the sum", finished).await;
    assert_eq!(ok.status, RunStatus::Succeeded);
    assert_eq!(ok.result, Some(json!({"sum": 6})));
    assert_eq!(ok.attempts, 1);
    assert_eq!(
        ok.progress.message, "summed",
        "the last progress reached the row"
    );
    let (Some(done_at), Some(expires)) = (ok.finished_at, ok.expires_at) else {
        panic!("a finished job has its end and expiry: {ok:?}");
    };
    assert_eq!(
        expires - done_at,
        chrono::Duration::hours(1),
        "kept for the retention"
    );

    let fail = h.wait(fail, "the failure", finished).await;
    assert_eq!(fail.status, RunStatus::Failed);
    assert_eq!(
        fail.error.as_ref().map(|e| e.code.as_str()),
        Some("bad_input")
    );
    assert_eq!(fail.result, None);
    let bad = h.wait(bad, "the invalid inputs", finished).await;
    assert_eq!(
        bad.error.as_ref().map(|e| e.code.as_str()),
        Some("invalid_inputs")
    );

    let flaky = h.wait(flaky, "the retried sum", finished).await;
    assert_eq!(flaky.status, RunStatus::Succeeded);
    assert_eq!(flaky.attempts, 2, "one transient failure, then the result");
    assert_eq!(flaky.result, Some(json!({"sum": 9})));
    assert_eq!(flaky.error, None, "a success clears the transient error");

    let dead = crate::dead_letters(h.queue.as_ref(), 2).await;
    assert_eq!(dead, 2, "the two failed jobs' messages are dead-lettered");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_stops_its_work_and_stays_cancelled() {
    let h = start(&[("w1", settings(5_000, 30))]).await;
    let id = h.submit(json!({"numbers": [1], "mode": "slow"})).await;
    h.wait(id, "progress from the heartbeats", |j| {
        j.status == RunStatus::Running && j.progress.done >= 3
    })
    .await;
    let cancelled =
        h.db.cancel_job(id, Utc::now(), Utc::now() + chrono::Duration::days(7))
            .await
            .expect("cancel_job")
            .expect("exists");
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    for _ in 0..500 {
        if h.stopped.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        h.stopped.load(Ordering::SeqCst),
        1,
        "the work saw its stop signal"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = h.get(id).await;
    assert_eq!(
        after.status,
        RunStatus::Cancelled,
        "the cancellation stands"
    );
    assert_eq!((after.result, after.attempts), (None, 1), "not retried");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_workers_job_is_announced_again_and_finished_once() {
    // Leases of 300 ms renewed every hour: the first attempt's worker looks dead.
    let stalling = settings(300, 3_600_000);
    let h = start(&[("w1", stalling), ("w2", stalling)]).await;
    let id = h.submit(json!({"numbers": [7, 8], "mode": "hang"})).await;
    let first = h
        .wait(id, "the first attempt", |j| j.status == RunStatus::Running)
        .await;
    assert_eq!(first.attempts, 1);
    assert_eq!(
        h.db.requeue_expired(Utc::now(), TASK_TOPIC)
            .await
            .expect("reaper"),
        0,
        "the lease is live"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        h.db.requeue_expired(Utc::now(), TASK_TOPIC)
            .await
            .expect("reaper"),
        1,
        "the expired lease is taken back"
    );
    let done = h.wait(id, "the second attempt", finished).await;
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(done.attempts, 2);
    assert_eq!(done.result, Some(json!({"sum": 15})));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_sees_the_progress_the_heartbeats_carry_then_the_end() {
    use climate_jobs::{Observed, job_updates};
    use futures::StreamExt;

    let h = start(&[("w1", settings(5_000, 20))]).await;
    let id = h.submit(json!({"numbers": [2, 3], "mode": "gated"})).await;
    let mut updates = Box::pin(job_updates(
        h.db.clone(),
        id,
        Duration::from_millis(5),
        CancellationToken::new(),
    ));
    let mut seen = Vec::new();
    // Until the job reports its first half (it then waits for the gate).
    while let Some(update) = tokio::time::timeout(Duration::from_secs(10), updates.next())
        .await
        .expect("an update within 10 s")
    {
        let halfway = matches!(&update, Observed::Changed(u) if u.progress.done == 1);
        seen.push(update);
        if halfway {
            break;
        }
    }
    let Some(Observed::Changed(halfway)) = seen.last() else {
        panic!("the watch ended before the job's progress: {seen:?}");
    };
    assert_eq!(halfway.status, RunStatus::Running);
    assert_eq!(
        (halfway.progress.total, halfway.progress.message.as_str()),
        (2, "half way")
    );
    assert_eq!(halfway.job_id, id);
    assert_eq!(halfway.kind, "sum");

    h.gate.add_permits(1);
    let rest: Vec<_> = tokio::time::timeout(Duration::from_secs(10), updates.collect::<Vec<_>>())
        .await
        .expect("the stream ends with the job");
    let Some(Observed::Finished(last)) = rest.last() else {
        panic!("the stream ends with the terminal state: {rest:?}");
    };
    assert_eq!(last.status, RunStatus::Succeeded);
    assert_eq!(last.progress.message, "summed");
    assert!(
        rest[..rest.len() - 1]
            .iter()
            .all(|u| matches!(u, Observed::Changed(_))),
        "only the last update is the end: {rest:?}"
    );
    let dones: Vec<u64> = seen
        .iter()
        .chain(&rest)
        .map(|u| match u {
            Observed::Changed(u) | Observed::Finished(u) => u.progress.done,
        })
        .collect();
    assert!(
        dones.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {dones:?}"
    );
    assert_eq!(h.get(id).await.result, Some(json!({"sum": 5})));
    h.stop().await;
}
