//! The engine is generic: a job kind that is not ingestion — `tally`, a job of parts — runs
//! through it over the in-process queue, with the engine's delivery rules (dispatch by kind,
//! dead-letter, requeue, hold and hand-over, leases handed back at shutdown).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use climate_infra::queue::{MemoryQueue, Queue};
use climate_jobs::{
    DecodeError, Engine, EngineSettings, FailPoints, JobKind, LeaseKey, Requeue, Settle, Task,
    Worker,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// What the `tally` kind records, by job.
#[derive(Debug, Default)]
struct Tally {
    /// Parts done, by job (a set: a part done twice would show in `runs`).
    done: BTreeMap<String, BTreeSet<u32>>,
    /// Step invocations, by (job, step, part).
    runs: BTreeMap<(String, &'static str, Option<u32>), u32>,
    finished: BTreeSet<String>,
    handed_back: Vec<LeaseKey>,
    /// Parts that fail once with a requeue (their state "cannot be recorded").
    flaky: BTreeSet<u32>,
}

/// A job kind of the tests: `start` announces `parts` part steps, each part is leased on its
/// own, and the last part to finish announces `finish`. Part `99` fails for good; a `slow` part
/// claims its lease and then works for an hour; a `sluggish` part
/// never claims and takes longer than the delivery hold on its first run.
#[derive(Debug)]
struct TallyKind {
    queue: Arc<dyn Queue>,
    state: Arc<Mutex<Tally>>,
}

fn message(job: &str, step: &str, extra: Value) -> Vec<u8> {
    let mut m = json!({"v": 1, "kind": "tally", "job": job, "step": step});
    if let (Some(m), Value::Object(extra)) = (m.as_object_mut(), extra) {
        m.extend(extra);
    }
    serde_json::to_vec(&m).expect("json")
}

#[async_trait::async_trait]
impl JobKind for TallyKind {
    fn name(&self) -> &'static str {
        "tally"
    }

    fn decode(&self, payload: &[u8]) -> Result<Task, DecodeError> {
        let malformed = |reason: String| DecodeError::Malformed {
            kind: "tally",
            reason,
        };
        let v: Value = serde_json::from_slice(payload).map_err(|e| malformed(e.to_string()))?;
        let job = v["job"]
            .as_str()
            .ok_or_else(|| malformed("no job".into()))?
            .to_owned();
        let part = v["part"].as_u64().map(|p| p as u32);
        let step = match v["step"].as_str() {
            Some("start") => "start",
            Some("part") if part.is_some() => "part",
            Some("slow") => "slow",
            Some("sluggish") => "sluggish",
            Some("finish") => "finish",
            other => return Err(malformed(format!("unknown tally step {other:?}"))),
        };
        // `parts` rides along in the job id for `start`, to keep Task as the engine has it.
        let job_id = match v["parts"].as_u64() {
            Some(n) if step == "start" => format!("{job}#{n}"),
            _ => job,
        };
        Ok(Task { job_id, step, part })
    }

    async fn run(&self, worker: &Worker, task: &Task) -> Result<Settle, Requeue> {
        let key = (task.job_id.clone(), task.step, task.part);
        let first_run = {
            let mut s = self.state.lock().expect("state");
            let n = s.runs.entry(key).or_default();
            *n += 1;
            *n == 1
        };
        let lease = LeaseKey {
            kind: "tally",
            job_id: task.job_id.clone(),
            part: task.part,
        };
        let Some(held) = worker.hold(lease) else {
            return Ok(Settle::Leave);
        };
        let publish = |payload: Vec<u8>| {
            let queue = self.queue.clone();
            async move { queue.publish(&payload, &BTreeMap::new()).await }
        };
        match task.step {
            "start" => {
                held.claimed();
                let (job, n) = task
                    .job_id
                    .split_once('#')
                    .ok_or(Requeue("no parts".into()))?;
                let n: u32 = n.parse().map_err(Requeue::from_error)?;
                for part in 0..n {
                    publish(message(job, "part", json!({"part": part})))
                        .await
                        .map_err(Requeue::from_error)?;
                }
                Ok(Settle::Ack)
            }
            "part" => {
                held.claimed();
                let part = task.part.unwrap_or_default();
                if part == 99 {
                    return Ok(Settle::DeadLetter);
                }
                let last = {
                    let mut s = self.state.lock().expect("state");
                    if s.flaky.remove(&part) {
                        return Err(Requeue(format!("part {part} cannot be recorded yet")));
                    }
                    let done = s.done.entry(task.job_id.clone()).or_default();
                    done.insert(part);
                    done.len() == 3
                };
                if last {
                    publish(message(&task.job_id, "finish", json!({})))
                        .await
                        .map_err(Requeue::from_error)?;
                }
                Ok(Settle::Ack)
            }
            "slow" => {
                held.claimed();
                // Works on past the shutdown grace, holding its lease.
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(Settle::Ack)
            }
            "sluggish" => {
                if first_run {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                }
                Ok(Settle::Ack)
            }
            _ => {
                held.claimed();
                self.state
                    .lock()
                    .expect("state")
                    .finished
                    .insert(task.job_id.clone());
                Ok(Settle::Ack)
            }
        }
    }

    async fn hand_back(&self, _worker: &Worker, lease: &LeaseKey) -> Result<bool, Requeue> {
        self.state
            .lock()
            .expect("state")
            .handed_back
            .push(lease.clone());
        Ok(true)
    }
}

struct Harness {
    queue: Arc<dyn Queue>,
    state: Arc<Mutex<Tally>>,
    shutdown: CancellationToken,
    engine: tokio::task::JoinHandle<()>,
}

fn start(hold: Duration, grace: Duration) -> Harness {
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::default());
    let state = Arc::new(Mutex::new(Tally::default()));
    let kind = TallyKind {
        queue: queue.clone(),
        state: state.clone(),
    };
    let settings = EngineSettings {
        concurrency: 2,
        max_delivery_hold: hold,
        shutdown_grace: grace,
    };
    let engine = Engine::new(
        queue.clone(),
        Worker::new("test-worker", FailPoints::default()),
        settings,
    )
    .with_kind(Arc::new(kind));
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    Harness {
        queue,
        state,
        shutdown,
        engine: tokio::spawn(engine.run(token)),
    }
}

impl Harness {
    async fn publish(&self, payload: &[u8]) {
        self.queue
            .publish(payload, &BTreeMap::new())
            .await
            .expect("publish");
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&Tally) -> bool) {
        for _ in 0..200 {
            if done(&self.state.lock().expect("state")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "timed out waiting for {what}: {:?}",
            self.state.lock().expect("state")
        );
    }

    async fn stop(self) -> Arc<Mutex<Tally>> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.engine)
            .await
            .expect("the engine stops")
            .expect("the engine does not panic");
        self.state
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_job_kind_runs_its_steps_through_the_engine() {
    let h = start(Duration::from_secs(30), Duration::from_secs(5));
    h.state.lock().expect("state").flaky.insert(1);
    h.publish(&message("j1", "start", json!({"parts": 3})))
        .await;
    // Dead-lettered: a part that fails for good, a kind this worker does not run, a message
    // without a kind (ingestion's default, not registered here), and one that is not JSON.
    h.publish(&message("j2", "part", json!({"part": 99}))).await;
    h.publish(br#"{"v":1,"kind":"resample","job":"j3","step":"start"}"#)
        .await;
    h.publish(br#"{"v":1,"run_id":"r1"}"#).await;
    h.publish(b"not json").await;
    h.wait_for("j1 to finish", |s| s.finished.contains("j1"))
        .await;
    let dead = crate::dead_letters(h.queue.as_ref(), 4).await;
    let state = h.stop().await;
    let s = state.lock().expect("state");
    assert_eq!(dead, 4, "four deliveries dead-lettered");
    assert_eq!(s.done["j1"], BTreeSet::from([0, 1, 2]));
    let runs =
        |step: &'static str, part: Option<u32>| s.runs.get(&("j1".to_owned(), step, part)).copied();
    assert_eq!(runs("part", Some(0)), Some(1));
    assert_eq!(
        runs("part", Some(1)),
        Some(2),
        "the requeued part ran again"
    );
    assert_eq!(runs("part", Some(2)), Some(1));
    assert_eq!(runs("finish", None), Some(1), "one finish for three parts");
    assert!(s.handed_back.is_empty(), "nothing was held at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_step_outlasting_the_hold_is_acknowledged_and_its_lease_handed_back() {
    let h = start(Duration::from_millis(200), Duration::from_millis(300));
    h.publish(&message("j4", "slow", json!({}))).await;
    h.wait_for("the slow step to start", |s| !s.runs.is_empty())
        .await;
    // Past the hold: the delivery is acknowledged under the lease, not copied.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        h.queue.depth().await.expect("depth"),
        0,
        "no copy published"
    );
    let state = h.stop().await;
    let s = state.lock().expect("state");
    assert_eq!(s.runs.values().sum::<u32>(), 1, "{:?}", s.runs);
    // Handed back in each of the two passes (the second catches claims racing the shutdown).
    let handed: BTreeSet<_> = s
        .handed_back
        .iter()
        .map(|k| (k.kind, k.job_id.as_str(), k.part))
        .collect();
    assert_eq!(
        handed,
        BTreeSet::from([("tally", "j4", None)]),
        "the lease still held after the grace is handed back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unclaimed_step_outlasting_the_hold_is_handed_over_not_lost() {
    let h = start(Duration::from_millis(150), Duration::from_secs(5));
    h.publish(&message("j5", "sluggish", json!({}))).await;
    h.wait_for("the copy to run", |s| {
        s.runs.get(&("j5".to_owned(), "sluggish", None)) == Some(&2)
    })
    .await;
    let dead = h.queue.dead_letter_depth().await.expect("depth");
    let state = h.stop().await;
    assert_eq!(dead, 0);
    assert!(state.lock().expect("state").handed_back.is_empty());
}
