//! Conformance of the [`JobStore`](climate_infra::db::JobStore) (durable jobs of every kind but
//! ingestion) on both engines: creation with the announcement, the lease protocol, results and
//! their expiry, retries, cancellation, lease recovery, listing.

use chrono::{DateTime, Duration, Utc};
use climate_domain::ids::JobId;
use climate_domain::run::{Progress, RunStatus};
use climate_infra::db::{JobFilter, JobOutcome, JobRecord, NewJob, NewOutbox};
use climate_infra::messages::{JobMessage, TASK_TOPIC};
use serde_json::json;

use super::{TestDb, assert_lease_lost, at, drain_outbox, error, run_id_at};

db_conformance!(
    jobs_are_announced_claimed_under_a_lease_and_finished_with_a_result,
    a_transient_failure_announces_the_next_attempt_later,
    a_waiting_job_keeps_its_state_without_spending_attempts,
    a_cancelled_job_loses_its_lease_and_stays_cancelled,
    expired_job_leases_are_recovered_and_unfinished_jobs_reannounced,
    jobs_list_newest_first_by_principal_and_kind,
    expired_jobs_are_the_finished_ones_past_their_expiry,
);

fn job_id_at(t: DateTime<Utc>) -> JobId {
    JobId::new(&run_id_at(t).to_string()).expect("a UUIDv7")
}

fn announcement(kind: &str, id: JobId, available_at: DateTime<Utc>) -> NewOutbox {
    NewOutbox {
        topic: TASK_TOPIC.to_owned(),
        payload: JobMessage::new(kind, id).to_json(),
        available_at,
    }
}

/// Creates a queued `kind` job of `principal` at `t`; its announcement is drained.
async fn submit(db: &TestDb, kind: &str, principal: &str, t: DateTime<Utc>) -> JobRecord {
    let job = NewJob {
        job_id: job_id_at(t),
        kind: kind.to_owned(),
        principal: principal.to_owned(),
        inputs: json!({"numbers": [1, 2, 3]}),
        created_at: t,
    };
    let record = db
        .create_job(&job, &announcement(kind, job.job_id, t))
        .await
        .expect("create_job");
    drain_outbox(db).await;
    record
}

async fn get(db: &TestDb, id: JobId) -> JobRecord {
    db.get_job(id)
        .await
        .expect("get_job")
        .expect("the job exists")
}

async fn claim(db: &TestDb, id: JobId, owner: &str, now: DateTime<Utc>) -> Option<JobRecord> {
    db.claim_job(id, owner, now, now + Duration::seconds(60))
        .await
        .expect("claim_job")
}

async fn jobs_are_announced_claimed_under_a_lease_and_finished_with_a_result(db: &TestDb) {
    let t = at(0);
    let id = job_id_at(t);
    let job = NewJob {
        job_id: id,
        kind: "sum".into(),
        principal: "key-1".into(),
        inputs: json!({"numbers": [1, 2]}),
        created_at: t,
    };
    let created = db
        .create_job(&job, &announcement("sum", id, t))
        .await
        .expect("create_job");
    assert_eq!(created.status, RunStatus::Queued);
    assert_eq!(
        (created.kind.as_str(), created.principal.as_str()),
        ("sum", "key-1")
    );
    assert_eq!(created.inputs, json!({"numbers": [1, 2]}));
    assert_eq!((created.attempts, created.result.clone()), (0, None));
    let rows = drain_outbox(db).await;
    assert_eq!(rows.len(), 1, "created with its announcement");
    assert_eq!(
        rows[0].payload,
        json!({"v": 1, "kind": "sum", "job_id": id.to_string()})
    );

    let t1 = at(10);
    let claimed = claim(db, id, "w1", t1)
        .await
        .expect("a queued job is claimable");
    assert_eq!(claimed.status, RunStatus::Running);
    assert_eq!(claimed.attempts, 1);
    assert_eq!(claimed.lease_owner.as_deref(), Some("w1"));
    assert_eq!(claimed.lease_expires_at, Some(t1 + Duration::seconds(60)));
    assert_eq!(claimed.started_at, Some(t1));
    assert_eq!(claim(db, id, "w2", at(20)).await, None, "held by w1");

    let progress = Progress {
        done: 2,
        total: 5,
        message: "2 of 5 periods".into(),
    };
    db.heartbeat_job(id, "w1", at(30), at(90), Some(&progress))
        .await
        .expect("heartbeat_job");
    let beaten = get(db, id).await;
    assert_eq!(beaten.progress, progress);
    assert_eq!(beaten.lease_expires_at, Some(at(90)));
    db.heartbeat_job(id, "w1", at(31), at(91), None)
        .await
        .expect("heartbeat_job without progress");
    assert_eq!(
        get(db, id).await.progress,
        progress,
        "kept when none is reported"
    );
    assert_lease_lost(
        db.heartbeat_job(id, "w2", at(32), at(92), None).await,
        "w2 does not hold the job",
    );
    assert!(
        !db.delete_job(id).await.expect("delete_job"),
        "an unfinished job is not removed"
    );

    let outcome = JobOutcome::Succeeded {
        result: json!({"sum": 3}),
        expires_at: Some(at(3600)),
    };
    assert_lease_lost(
        db.finish_job(id, "w2", &outcome, None, at(40)).await,
        "w2 cannot finish w1's job",
    );
    let last = Progress {
        done: 5,
        total: 5,
        message: "5 of 5 periods".into(),
    };
    db.finish_job(id, "w1", &outcome, Some(&last), at(40))
        .await
        .expect("finish_job");
    let done = get(db, id).await;
    assert_eq!(done.progress, last, "the attempt's last progress is kept");
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(done.result, Some(json!({"sum": 3})));
    assert_eq!(
        (done.finished_at, done.expires_at),
        (Some(at(40)), Some(at(3600)))
    );
    assert_eq!((done.lease_owner, done.lease_expires_at), (None, None));
    assert_eq!(claim(db, id, "w2", at(50)).await, None, "finished for good");
    assert_lease_lost(
        db.heartbeat_job(id, "w1", at(50), at(110), None).await,
        "no lease after the end",
    );
    assert!(
        drain_outbox(db).await.is_empty(),
        "success announces nothing"
    );
    assert_eq!(db.count_active_jobs("key-1").await.expect("count"), 0);

    assert!(db.delete_job(id).await.expect("delete_job"));
    assert_eq!(db.get_job(id).await.expect("get_job"), None);
}

async fn a_transient_failure_announces_the_next_attempt_later(db: &TestDb) {
    let job = submit(db, "sum", "anonymous", at(0)).await;
    let id = job.job_id;
    claim(db, id, "w1", at(1)).await.expect("claimable");
    let outcome = JobOutcome::Retry {
        error: error("upstream_unavailable"),
        outbox: announcement("sum", id, at(61)),
    };
    db.finish_job(id, "w1", &outcome, None, at(2))
        .await
        .expect("finish_job");
    let retrying = get(db, id).await;
    assert_eq!(retrying.status, RunStatus::Retrying);
    assert_eq!(retrying.error, Some(error("upstream_unavailable")));
    assert_eq!(retrying.finished_at, None, "not finished");
    assert_eq!(db.count_active_jobs("anonymous").await.expect("count"), 1);

    assert!(
        db.pending_outbox(at(60), 10)
            .await
            .expect("pending")
            .is_empty(),
        "the next attempt is not announced before its delay"
    );
    let due = db.pending_outbox(at(61), 10).await.expect("pending");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].payload, JobMessage::new("sum", id).to_json());

    let second = claim(db, id, "w2", at(61))
        .await
        .expect("a retrying job is claimable");
    assert_eq!(second.attempts, 2);
    let failed = JobOutcome::Failed {
        error: error("bad_input"),
        expires_at: Some(at(7200)),
    };
    db.finish_job(id, "w2", &failed, None, at(62))
        .await
        .expect("finish_job");
    let end = get(db, id).await;
    assert_eq!(end.status, RunStatus::Failed);
    assert_eq!(end.error, Some(error("bad_input")));
    assert_eq!(end.expires_at, Some(at(7200)));
    assert_eq!(end.result, None);
}

async fn a_waiting_job_keeps_its_state_without_spending_attempts(db: &TestDb) {
    let job = submit(db, "ingestion", "key-1", at(0)).await;
    let id = job.job_id;
    claim(db, id, "w1", at(1)).await.expect("claimable");
    let state = json!({"run_id": "01a2425e-d954-72b6-be94-a32ea1185cd6"});
    let wait = JobOutcome::Wait {
        state: state.clone(),
        outbox: announcement("ingestion", id, at(3)),
    };
    db.finish_job(id, "w1", &wait, None, at(2))
        .await
        .expect("finish_job");
    let waiting = get(db, id).await;
    assert_eq!(
        (
            waiting.status,
            waiting.attempts,
            waiting.result.as_ref(),
            waiting.error.as_ref()
        ),
        (RunStatus::Retrying, 0, Some(&state), None),
        "the wait is not an attempt and keeps its state"
    );
    assert_eq!(
        db.count_active_jobs("key-1").await.expect("count"),
        1,
        "still unfinished"
    );
    assert_eq!(
        db.pending_outbox(at(3), 10).await.expect("pending").len(),
        1
    );
    drain_outbox(db).await;
    // A transient failure on the next look keeps the state for the one after.
    let next = claim(db, id, "w2", at(3)).await.expect("claimable again");
    assert_eq!((next.attempts, next.result.as_ref()), (1, Some(&state)));
    let retry = JobOutcome::Retry {
        error: error("database_unavailable"),
        outbox: announcement("ingestion", id, at(60)),
    };
    db.finish_job(id, "w2", &retry, None, at(4))
        .await
        .expect("finish_job");
    assert_eq!(get(db, id).await.result.as_ref(), Some(&state));
    drain_outbox(db).await;
    let last = claim(db, id, "w3", at(60)).await.expect("claimable");
    assert_eq!(last.attempts, 2, "the failed look counts");
    let done = JobOutcome::Succeeded {
        result: json!({"key": "jobs/x/result"}),
        expires_at: Some(at(7200)),
    };
    db.finish_job(id, "w3", &done, None, at(61))
        .await
        .expect("finish_job");
    assert_eq!(
        get(db, id).await.result,
        Some(json!({"key": "jobs/x/result"}))
    );
}

async fn a_cancelled_job_loses_its_lease_and_stays_cancelled(db: &TestDb) {
    let queued = submit(db, "sum", "key-1", at(0)).await;
    let running = submit(db, "sum", "key-1", at(1)).await;
    claim(db, running.job_id, "w1", at(2))
        .await
        .expect("claimable");

    let cancelled = db
        .cancel_job(queued.job_id, at(3), at(86_400))
        .await
        .expect("cancel_job")
        .expect("the job exists");
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert_eq!(cancelled.finished_at, Some(at(3)));
    assert_eq!(
        claim(db, queued.job_id, "w2", at(4)).await,
        None,
        "never claimed"
    );

    let stopped = db
        .cancel_job(running.job_id, at(5), at(86_400))
        .await
        .expect("cancel_job")
        .expect("the job exists");
    assert_eq!(stopped.status, RunStatus::Cancelled);
    assert_eq!(stopped.lease_owner, None);
    assert_lease_lost(
        db.heartbeat_job(running.job_id, "w1", at(6), at(66), None)
            .await,
        "the worker learns of the cancellation at its next heartbeat",
    );
    let late = JobOutcome::Succeeded {
        result: json!({"sum": 6}),
        expires_at: None,
    };
    assert_lease_lost(
        db.finish_job(running.job_id, "w1", &late, None, at(7))
            .await,
        "a result after the cancellation",
    );
    let end = get(db, running.job_id).await;
    assert_eq!((end.status, end.result), (RunStatus::Cancelled, None));
    assert_eq!(
        end.expires_at,
        Some(at(86_400)),
        "removed after its expiry like a finished job"
    );
    let mut expired: Vec<String> = db
        .expired_jobs(at(86_401), 10)
        .await
        .expect("expired")
        .iter()
        .map(ToString::to_string)
        .collect();
    expired.sort();
    let mut both = vec![queued.job_id.to_string(), running.job_id.to_string()];
    both.sort();
    assert_eq!(expired, both);

    let finished = db
        .cancel_job(running.job_id, at(8), at(86_400))
        .await
        .expect("cancel_job")
        .expect("the job exists");
    assert_eq!(
        finished.finished_at,
        Some(at(5)),
        "cancelling again changes nothing"
    );
    let missing = job_id_at(at(999));
    assert_eq!(
        db.cancel_job(missing, at(9), at(86_400))
            .await
            .expect("cancel_job"),
        None
    );
    assert_eq!(db.count_active_jobs("key-1").await.expect("count"), 0);
}

async fn expired_job_leases_are_recovered_and_unfinished_jobs_reannounced(db: &TestDb) {
    let stalled = submit(db, "sum", "a", at(0)).await;
    let live = submit(db, "zonal", "a", at(1)).await;
    let queued = submit(db, "zonal", "a", at(2)).await;
    let done = submit(db, "sum", "a", at(3)).await;
    db.claim_job(stalled.job_id, "w1", at(10), at(20))
        .await
        .expect("claim_job")
        .expect("claimable");
    db.claim_job(live.job_id, "w2", at(10), at(200))
        .await
        .expect("claim_job")
        .expect("claimable");
    claim(db, done.job_id, "w3", at(10))
        .await
        .expect("claimable");
    let outcome = JobOutcome::Succeeded {
        result: json!({}),
        expires_at: None,
    };
    db.finish_job(done.job_id, "w3", &outcome, None, at(11))
        .await
        .expect("finish_job");

    let n = db
        .requeue_expired(at(50), "task")
        .await
        .expect("requeue_expired");
    assert_eq!(n, 1, "only the stalled job's lease expired");
    let requeued = get(db, stalled.job_id).await;
    assert_eq!(requeued.status, RunStatus::Queued);
    assert_eq!(
        (requeued.lease_owner, requeued.lease_expires_at),
        (None, None)
    );
    assert_eq!(
        get(db, live.job_id).await.lease_owner.as_deref(),
        Some("w2")
    );
    let rows = drain_outbox(db).await;
    let payloads: Vec<_> = rows.iter().map(|r| r.payload.clone()).collect();
    assert_eq!(
        payloads,
        vec![JobMessage::new("sum", stalled.job_id).to_json()]
    );
    assert_eq!(db.requeue_expired(at(50), "task").await.expect("again"), 0);

    let n = db
        .reannounce_unfinished(at(60), "task")
        .await
        .expect("reannounce_unfinished");
    assert_eq!(n, 3, "the queued, running and requeued jobs");
    let mut announced: Vec<_> = drain_outbox(db)
        .await
        .iter()
        .map(|r| {
            let bytes = serde_json::to_vec(&r.payload).expect("json");
            let m = JobMessage::decode(&bytes).expect("a job message");
            (m.kind, m.job_id)
        })
        .collect();
    announced.sort();
    let mut expected = vec![
        ("sum".to_owned(), stalled.job_id),
        ("zonal".to_owned(), live.job_id),
        ("zonal".to_owned(), queued.job_id),
    ];
    expected.sort();
    assert_eq!(announced, expected);
}

async fn jobs_list_newest_first_by_principal_and_kind(db: &TestDb) {
    let a1 = submit(db, "sum", "alice", at(0)).await;
    let b1 = submit(db, "sum", "bob", at(1)).await;
    let a2 = submit(db, "zonal", "alice", at(2)).await;
    let a3 = submit(db, "sum", "alice", at(3)).await;
    let ids = |jobs: Vec<JobRecord>| jobs.iter().map(|j| j.job_id).collect::<Vec<_>>();
    let list = |filter: JobFilter| async move { db.list_jobs(&filter).await.expect("list_jobs") };

    let all = list(JobFilter::default()).await;
    assert_eq!(ids(all), vec![a3.job_id, a2.job_id, b1.job_id, a1.job_id]);
    let alice = JobFilter {
        principal: Some("alice".into()),
        ..JobFilter::default()
    };
    assert_eq!(
        ids(list(alice.clone()).await),
        vec![a3.job_id, a2.job_id, a1.job_id]
    );
    let alice_sums = JobFilter {
        kind: Some("sum".into()),
        ..alice.clone()
    };
    assert_eq!(ids(list(alice_sums).await), vec![a3.job_id, a1.job_id]);
    let first_page = JobFilter {
        limit: 2,
        ..alice.clone()
    };
    let page = ids(list(first_page).await);
    assert_eq!(page, vec![a3.job_id, a2.job_id]);
    let next_page = JobFilter {
        limit: 2,
        before: page.last().copied(),
        ..alice
    };
    assert_eq!(ids(list(next_page).await), vec![a1.job_id]);
    assert_eq!(db.count_active_jobs("alice").await.expect("count"), 3);
    assert_eq!(db.count_active_jobs("carol").await.expect("count"), 0);
}

async fn expired_jobs_are_the_finished_ones_past_their_expiry(db: &TestDb) {
    let finish = |expires: i64| JobOutcome::Succeeded {
        result: json!({"sum": 6}),
        expires_at: Some(at(expires)),
    };
    let (early, late, running) = (
        submit(db, "sum", "a", at(0)).await.job_id,
        submit(db, "sum", "a", at(1)).await.job_id,
        submit(db, "sum", "a", at(2)).await.job_id,
    );
    for (id, expires) in [(late, 900), (early, 500)] {
        claim(db, id, "w1", at(10)).await.expect("claimable");
        db.finish_job(id, "w1", &finish(expires), None, at(11))
            .await
            .expect("finish_job");
    }
    claim(db, running, "w1", at(10)).await.expect("claimable");
    assert_eq!(db.expired_jobs(at(400), 10).await.expect("expired"), vec![]);
    assert_eq!(
        db.expired_jobs(at(600), 10).await.expect("expired"),
        vec![early]
    );
    assert_eq!(
        db.expired_jobs(at(10_000), 10).await.expect("expired"),
        vec![early, late],
        "oldest expiry first; a running job never expires"
    );
    assert_eq!(
        db.expired_jobs(at(10_000), 1).await.expect("expired"),
        vec![early]
    );
}
