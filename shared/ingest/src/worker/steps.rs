//! The steps a task message names — plan a run, write one segment, finalize — each under its
//! lease with heartbeats, and what their outcomes do to the run: retry with backoff and jitter,
//! defer, suspend while an upstream job runs, or fail and clean up.

use super::*;

/// The wait before a failed step's next attempt.
fn backoff(attempt: u32) -> Duration {
    RetryPolicy::STEPS.delay(attempt, rand::rng().random())
}

fn lock_key(run: &RunRecord) -> String {
    format!("dataset:{}", run.dataset_id)
}

fn announce(run_id: &RunId, step: Step, delay: Duration) -> NewOutbox {
    NewOutbox {
        topic: TASK_TOPIC.into(),
        payload: TaskMessage::step(*run_id, step).to_json(),
        available_at: Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
    }
}

fn run_error(e: &TaskError) -> RunError {
    RunError {
        code: e.code().to_owned(),
        message: e.to_string(),
    }
}

/// Keeps a lease (and the run's dataset lock) alive while a step works; cancels `lost` when the
/// lease is gone, so a reclaimed step is never written twice.
fn heartbeat<F, Fut>(
    ctx: &Context,
    run: &RunRecord,
    lost: CancellationToken,
    beat: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), DbError>> + Send,
{
    let lease = ctx.lease();
    let locks = ctx.platform.locks.clone();
    let (key, owner) = (lock_key(run), run.run_id.to_string());
    let released = ctx.worker.released();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(lease / 3) => {}
                // Handed back at shutdown: never renew it again.
                () = released.cancelled() => return,
            }
            let _ = locks.try_acquire(&key, &owner, lease * 2).await;
            if let Err(DbError::LeaseLost(_)) = beat().await {
                tracing::warn!("lease lost; abandoning the step");
                lost.cancel();
                return;
            }
        }
    })
}

/// Heartbeats of the run's own lease (plan and finalize steps).
fn run_heartbeat(
    ctx: &Context,
    run: &RunRecord,
    lost: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (db, id, owner, lease) = (
        ctx.platform.db.clone(),
        run.run_id,
        ctx.worker.id().to_owned(),
        ctx.lease(),
    );
    heartbeat(ctx, run, lost, move || {
        let (db, owner) = (db.clone(), owner.clone());
        async move {
            let now = Utc::now();
            db.heartbeat(&id, &owner, now, now + lease).await
        }
    })
}

async fn release_lock(ctx: &Context, run: &RunRecord) {
    if let Err(e) = ctx
        .platform
        .locks
        .release(&lock_key(run), &run.run_id.to_string())
        .await
    {
        tracing::warn!(error = %e, "could not release dataset lock; it expires by itself");
    }
}

/// After a lost lease: when the run was cancelled, delete what it wrote and free its dataset.
/// Idempotent, so every worker that notices may do it.
async fn cleanup_if_cancelled(ctx: &Context, run_id: &RunId) {
    if let Ok(Some(run)) = ctx.platform.db.get_run(run_id).await
        && run.status == climate_domain::run::RunStatus::Cancelled
    {
        if let Ok(plan) = pipeline::stored_plan(&run) {
            pipeline::collect_garbage(&ctx.platform.store, &plan.prefix).await;
        }
        release_lock(ctx, &run).await;
        tracing::info!("run cancelled; its objects were removed");
    }
}

async fn release_if_cancelled(ctx: &Context, run_id: &RunId) {
    if let Ok(Some(run)) = ctx.platform.db.get_run(run_id).await
        && run.status == climate_domain::run::RunStatus::Cancelled
    {
        release_lock(ctx, &run).await;
    }
}

pub(super) async fn plan_step(ctx: &Context, run_id: &RunId) -> Result<Settle, DbError> {
    let Some(held) = ctx.worker.hold(lease_key(run_id, None)) else {
        return Ok(Settle::Leave);
    };
    let db = &ctx.platform.db;
    let now = Utc::now();
    let Some(run) = db
        .claim_run(run_id, ctx.worker.id(), now, now + ctx.lease())
        .await?
    else {
        // Finished, cancelled, planned already, or held by a live worker.
        tracing::debug!("run not claimable for planning; dropping duplicate delivery");
        return Ok(Settle::Ack);
    };
    held.claimed();
    // One run writes a dataset at a time: the lock (owned by the run, kept alive by whichever
    // worker works on it) and, as a backstop should it expire, the database.
    let busy = match ctx
        .platform
        .locks
        .try_acquire(&lock_key(&run), &run.run_id.to_string(), ctx.lease() * 2)
        .await
    {
        Ok(true) => {
            let running = db
                .list_runs(&climate_infra::db::RunFilter {
                    status: Some(climate_domain::run::RunStatus::Running),
                    dataset_id: Some(run.dataset_id.clone()),
                    before: None,
                    limit: 10,
                })
                .await?;
            running.iter().any(|r| r.run_id != run.run_id)
        }
        Ok(false) | Err(_) => true,
    };
    if busy {
        db.defer_run(
            &run.run_id,
            ctx.worker.id(),
            &announce(run_id, Step::Plan, Duration::from_secs(3)),
            Utc::now(),
        )
        .await?;
        tracing::info!(dataset.id = %run.dataset_id, "dataset busy; run deferred");
        return Ok(Settle::Ack);
    }
    let lost = CancellationToken::new();
    let beat = run_heartbeat(ctx, &run, lost.clone());
    let result = pipeline::plan(ctx, &run).await;
    beat.abort();
    match result {
        Ok(Planned::AlreadyCovered) => {
            db.finish_run(
                &run.run_id,
                ctx.worker.id(),
                &RunOutcome::Succeeded,
                Utc::now(),
            )
            .await?;
            release_lock(ctx, &run).await;
            Ok(Settle::Ack)
        }
        Ok(Planned::Segments(plan, segments)) => {
            let plan_json = serde_json::to_value(&*plan).unwrap_or_default();
            let stored = db
                .plan_run(
                    &run.run_id,
                    ctx.worker.id(),
                    &plan_json,
                    &segments,
                    TASK_TOPIC,
                    Utc::now(),
                )
                .await;
            match stored {
                Ok(()) => {
                    tracing::info!(segments = segments.len(), "run planned");
                    ctx.worker.failpoints.hit(FailPoint::AfterPlan);
                    ctx.platform.outbox_notify.notify_one();
                    Ok(Settle::Ack)
                }
                Err(e) => {
                    // Not recorded: nobody will ever use this prefix.
                    pipeline::collect_garbage(&ctx.platform.store, &plan.prefix).await;
                    match e {
                        // Cancelled (or reclaimed) while planning.
                        DbError::LeaseLost(_) => {
                            release_if_cancelled(ctx, run_id).await;
                            Ok(Settle::Ack)
                        }
                        e => Err(e),
                    }
                }
            }
        }
        Err(TaskError::LeaseLost) => Ok(Settle::Ack),
        // Waiting for an upstream job: store where we are and free the worker.
        Err(TaskError::Pending {
            message,
            after,
            state,
        }) => {
            tracing::info!(waiting = %message, retry_in_ms = after.as_millis() as u64, "upstream job pending; run suspended");
            db.suspend_run(
                &run.run_id,
                ctx.worker.id(),
                &state,
                &message,
                &announce(run_id, Step::Plan, after),
                Utc::now(),
            )
            .await?;
            release_lock(ctx, &run).await;
            ctx.platform.outbox_notify.notify_one();
            Ok(Settle::Ack)
        }
        Err(e) => {
            let outcome = retry_or_fail(ctx, &e, run.attempts, run_id, Step::Plan);
            let exhausted = matches!(outcome, RunOutcome::Failed(_)) && e.is_transient();
            db.finish_run(&run.run_id, ctx.worker.id(), &outcome, Utc::now())
                .await?;
            if matches!(outcome, RunOutcome::Failed(_)) {
                release_lock(ctx, &run).await;
            }
            ctx.platform.outbox_notify.notify_one();
            Ok(if exhausted {
                Settle::DeadLetter
            } else {
                Settle::Ack
            })
        }
    }
}

fn retry_or_fail(
    ctx: &Context,
    e: &TaskError,
    attempts: u32,
    run_id: &RunId,
    step: Step,
) -> RunOutcome {
    let error = run_error(e);
    if e.is_transient() && attempts < ctx.platform.config.worker.max_attempts {
        let delay = backoff(attempts);
        tracing::warn!(error = %e, attempt = attempts, retry_in_ms = delay.as_millis() as u64, "failed transiently; will retry");
        metrics::counter!("climate_task_retries_total", "step" => "plan").increment(1);
        RunOutcome::Retry {
            error,
            outbox: announce(run_id, step, delay),
        }
    } else {
        tracing::error!(error = %e, attempts, "run failed");
        metrics::counter!("climate_runs_total", "outcome" => "failed").increment(1);
        RunOutcome::Failed(error)
    }
}

pub(super) async fn segment_step(
    ctx: &Context,
    run_id: &RunId,
    index: u32,
) -> Result<Settle, DbError> {
    let Some(held) = ctx.worker.hold(lease_key(run_id, Some(index))) else {
        return Ok(Settle::Leave);
    };
    let db = &ctx.platform.db;
    let now = Utc::now();
    let Some(segment) = db
        .claim_segment(run_id, index, ctx.worker.id(), now, now + ctx.lease())
        .await?
    else {
        tracing::debug!("segment not claimable; dropping duplicate delivery");
        // A cancelled run leaves its objects to whoever notices first.
        cleanup_if_cancelled(ctx, run_id).await;
        return Ok(Settle::Ack);
    };
    held.claimed();
    let Some(run) = db.get_run(run_id).await? else {
        return Ok(Settle::Ack);
    };
    let lost = CancellationToken::new();
    let beat = {
        let (db, id, owner, lease) = (
            db.clone(),
            run_id.to_owned(),
            ctx.worker.id().to_owned(),
            ctx.lease(),
        );
        heartbeat(ctx, &run, lost.clone(), move || {
            let (db, owner) = (db.clone(), owner.clone());
            async move {
                db.heartbeat_segment(&id, index, &owner, Utc::now() + lease)
                    .await
            }
        })
    };
    let started = std::time::Instant::now();
    let result = pipeline::write_segment(ctx, &run, &segment, &lost).await;
    beat.abort();
    match result {
        Ok(chunks) => {
            ctx.worker.failpoints.hit(FailPoint::AfterSegmentWrite);
            let last = db
                .complete_segment(
                    run_id,
                    index,
                    ctx.worker.id(),
                    chunks,
                    TASK_TOPIC,
                    Utc::now(),
                )
                .await;
            match last {
                Ok(last) => {
                    tracing::info!(
                        segment = index,
                        chunks,
                        duration_ms = started.elapsed().as_millis() as u64,
                        last,
                        "segment written"
                    );
                    ctx.platform.outbox_notify.notify_one();
                }
                // Reclaimed by another worker after our lease expired (its write is as good), or
                // the run was cancelled.
                Err(DbError::LeaseLost(_)) => cleanup_if_cancelled(ctx, run_id).await,
                Err(e) => return Err(e),
            }
            Ok(Settle::Ack)
        }
        Err(TaskError::LeaseLost) => {
            cleanup_if_cancelled(ctx, run_id).await;
            Ok(Settle::Ack)
        }
        // Segments normally read what planning downloaded; should an upstream job be needed
        // again, wait for it without holding the worker.
        Err(TaskError::Pending { message, after, .. }) => {
            let error = RunError {
                code: "pending_upstream".into(),
                message,
            };
            db.retry_segment(
                run_id,
                index,
                ctx.worker.id(),
                &error,
                &announce(run_id, Step::Segment(index), after),
                Utc::now(),
            )
            .await?;
            Ok(Settle::Ack)
        }
        Err(e) => {
            let error = run_error(&e);
            let max = ctx.platform.config.worker.max_attempts;
            if e.is_transient() && segment.attempts < max {
                let delay = backoff(segment.attempts);
                tracing::warn!(error = %e, segment = index, attempt = segment.attempts, "segment failed transiently; will retry");
                metrics::counter!("climate_task_retries_total", "step" => "segment").increment(1);
                db.retry_segment(
                    run_id,
                    index,
                    ctx.worker.id(),
                    &error,
                    &announce(run_id, Step::Segment(index), delay),
                    Utc::now(),
                )
                .await?;
                ctx.platform.outbox_notify.notify_one();
                Ok(Settle::Ack)
            } else {
                tracing::error!(error = %e, segment = index, "segment failed; failing the run");
                metrics::counter!("climate_runs_total", "outcome" => "failed").increment(1);
                db.fail_segment(run_id, index, ctx.worker.id(), &error, Utc::now())
                    .await?;
                if let Ok(plan) = pipeline::stored_plan(&run) {
                    pipeline::collect_garbage(&ctx.platform.store, &plan.prefix).await;
                }
                release_lock(ctx, &run).await;
                Ok(if e.is_transient() {
                    Settle::DeadLetter
                } else {
                    Settle::Ack
                })
            }
        }
    }
}

pub(super) async fn finalize_step(ctx: &Context, run_id: &RunId) -> Result<Settle, DbError> {
    let Some(held) = ctx.worker.hold(lease_key(run_id, None)) else {
        return Ok(Settle::Leave);
    };
    let db = &ctx.platform.db;
    let now = Utc::now();
    let Some(run) = db
        .claim_finalize(run_id, ctx.worker.id(), now, now + ctx.lease())
        .await?
    else {
        tracing::debug!("run not ready or already finalized; dropping duplicate delivery");
        // A cancelled run leaves its objects to whoever notices first.
        cleanup_if_cancelled(ctx, run_id).await;
        return Ok(Settle::Ack);
    };
    held.claimed();
    let chunks: u64 = db
        .list_segments(run_id)
        .await?
        .iter()
        .map(|s| s.chunks_written)
        .sum();
    let lost = CancellationToken::new();
    let beat = run_heartbeat(ctx, &run, lost.clone());
    let result = pipeline::finalize(ctx, &run, chunks).await;
    beat.abort();
    match result {
        Ok(v) => {
            tracing::info!(dataset.id = %run.dataset_id, version = v.version, "version published");
            metrics::counter!("climate_runs_total", "outcome" => "succeeded").increment(1);
            let took = (Utc::now() - run.created_at).to_std().unwrap_or_default();
            metrics::histogram!("climate_run_duration_seconds").record(took.as_secs_f64());
            release_lock(ctx, &run).await;
            // Datasets derived from this one follow it at once (the scheduler would, later).
            crate::derived::follow(ctx, &run.dataset_id, Utc::now()).await;
            Ok(Settle::Ack)
        }
        Err(TaskError::LeaseLost) => Ok(Settle::Ack),
        // A transient failure keeps the lease until it expires; the reaper then announces the
        // finalize step again (a retry whose backoff is the lease).
        Err(e) if e.is_transient() => {
            tracing::warn!(error = %e, "finalize failed transiently; it is retried when the lease expires");
            Ok(Settle::Ack)
        }
        Err(e) => {
            metrics::counter!("climate_runs_total", "outcome" => "failed").increment(1);
            db.finish_run(
                &run.run_id,
                ctx.worker.id(),
                &RunOutcome::Failed(run_error(&e)),
                Utc::now(),
            )
            .await?;
            if let Ok(plan) = pipeline::stored_plan(&run) {
                pipeline::collect_garbage(&ctx.platform.store, &plan.prefix).await;
            }
            release_lock(ctx, &run).await;
            Ok(Settle::Ack)
        }
    }
}
