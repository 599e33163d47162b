//! The worker loop: takes task messages from the queue and executes the step they name — plan a run, write one
//! of its segments, or finalize it (see [`pipeline`]) — under a lease renewed by heartbeats,
//! acknowledging the message only once the step's outcome is committed. A run's dataset is
//! locked from planning to publication (the lock belongs to the run, so whichever worker writes
//! one of its segments keeps it alive). Transient failures are retried with exponential backoff
//! and jitter; permanent ones fail the run with a clear error. Delivery is at-least-once; claims
//! make effects exactly-once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use climate_geodata::providers::Registry;
use climate_infra::Platform;
use climate_infra::db::{DbError, NewOutbox, RunError, RunOutcome, RunRecord};
use climate_infra::messages::{Step, TASK_TOPIC, TaskMessage};
use climate_infra::queue::Delivery;
use rand::Rng;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::failpoints::FailPoints;
use crate::pipeline::{self, Planned, TaskError};

/// What a worker task is handed.
#[derive(Debug, Clone)]
pub struct Context {
    /// Backends and configuration.
    pub platform: Platform,
    /// Providers by name.
    pub providers: Arc<Registry>,
    /// Download cache and per-provider HTTP settings handed to providers.
    pub provider_env: climate_geodata::http::ProviderEnv,
    /// Unique id of this worker process, used as lease owner.
    pub worker_id: String,
    /// Failure points armed for tests (none in production).
    pub failpoints: FailPoints,
    /// Leases this process holds, to hand back at shutdown.
    leases: Arc<Leases>,
}

/// The leases a worker process holds (run or segment), so that a shutdown that cannot wait for
/// its tasks hands them back at once instead of leaving them to expire.
#[derive(Debug, Default)]
struct Leases {
    held: std::sync::Mutex<std::collections::HashMap<u64, Held>>,
    next: std::sync::atomic::AtomicU64,
    /// Cancelled when the leases are handed back: heartbeats stop renewing them.
    released: CancellationToken,
}

/// One lease of [`Leases`].
#[derive(Debug)]
struct Held {
    run_id: String,
    /// `None`: the run's own step (plan or finalize).
    segment: Option<u32>,
    /// The claim has succeeded (until then only the delivery guards the step).
    claimed: bool,
}

/// Unregisters a lease when the heartbeat that keeps it ends (also when aborted).
struct HeldLease(Arc<Leases>, u64);

impl HeldLease {
    /// The claim succeeded: from now on the lease, not the delivery, guards the step.
    fn claimed(&self) {
        if let Some(entry) = self
            .0
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(&self.1)
        {
            entry.claimed = true;
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.0
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.1);
    }
}

impl Leases {
    /// Whether this process holds the claimed lease of a run (`None`) or one of its segments.
    fn is_claimed(&self, run_id: &str, segment: Option<u32>) -> bool {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .any(|h| h.claimed && h.run_id == run_id && h.segment == segment)
    }

    /// Records a lease about to be claimed (before the claim, so a shutdown racing with the
    /// claim still hands it back); `None` once the leases were handed back: take no new work.
    fn hold(self: &Arc<Self>, run_id: &str, segment: Option<u32>) -> Option<HeldLease> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.released.is_cancelled() {
            return None;
        }
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        held.insert(
            id,
            Held {
                run_id: run_id.to_owned(),
                segment,
                claimed: false,
            },
        );
        Some(HeldLease(self.clone(), id))
    }

    /// Stops the heartbeats and makes every held lease expire now, so the reaper (or a
    /// redelivery) gives the work to another worker without waiting out the lease.
    /// A claim racing with the shutdown commits within this; the second pass hands it back.
    const CLAIM_SETTLE: Duration = Duration::from_millis(500);

    async fn release_all(&self, ctx: &Context) -> usize {
        {
            let _held = self
                .held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.released.cancel();
        }
        let mut handed = std::collections::HashSet::new();
        for pass in 0..2 {
            if pass == 1 {
                tokio::time::sleep(Self::CLAIM_SETTLE).await;
            }
            let held: Vec<(String, Option<u32>)> = self
                .held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .values()
                .map(|h| (h.run_id.clone(), h.segment))
                .collect();
            let db = &ctx.platform.db;
            let now = Utc::now();
            for (run_id, segment) in held {
                let result = match segment {
                    Some(i) => db.heartbeat_segment(&run_id, i, &ctx.worker_id, now).await,
                    None => db.heartbeat(&run_id, &ctx.worker_id, now, now).await,
                };
                match result {
                    Ok(()) => {
                        tracing::info!(run.id = %run_id, segment = ?segment, "lease handed back");
                        handed.insert((run_id, segment));
                    }
                    // Not (or no longer) ours: nothing to hand back.
                    Err(DbError::LeaseLost(_)) => {}
                    Err(e) => {
                        tracing::warn!(run.id = %run_id, error = %e, "could not hand a lease back; it will expire")
                    }
                }
            }
        }
        handed.len()
    }
}

impl Context {
    /// A context with a fresh worker id.
    ///
    /// # Errors
    /// When the HTTP clients of the providers cannot be built.
    pub fn new(platform: Platform) -> anyhow::Result<Self> {
        use climate_geodata::http::HttpSettings;
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
        let settings = |s: &climate_infra::config::ProviderSettings| {
            let d = HttpSettings::default();
            HttpSettings {
                concurrency: s.concurrency.unwrap_or(d.concurrency),
                max_attempts: s.max_attempts.unwrap_or(d.max_attempts),
                connect_timeout: s
                    .connect_timeout_seconds
                    .map_or(d.connect_timeout, Duration::from_secs),
                read_timeout: s
                    .read_timeout_seconds
                    .map_or(d.read_timeout, Duration::from_secs_f64),
                base_delay: s.base_delay_ms.map_or(d.base_delay, Duration::from_millis),
                max_delay: s.max_delay_ms.map_or(d.max_delay, Duration::from_millis),
                api_key: s.api_key.clone(),
                netrc: s.netrc.clone(),
                min_interval: s
                    .min_interval_ms
                    .map_or(d.min_interval, Duration::from_millis),
            }
        };
        let provider_env = climate_geodata::http::ProviderEnv::new(
            platform.store.object_store(),
            platform.config.data_dir.join("scratch"),
            HttpSettings::default(),
            platform
                .config
                .providers
                .iter()
                .map(|(name, s)| (name.clone(), settings(s))),
        )?;
        Ok(Self {
            platform,
            providers: Arc::new(Registry::default()),
            provider_env,
            worker_id: format!("{host}-{}", uuid::Uuid::now_v7()),
            failpoints: FailPoints::default(),
            leases: Arc::new(Leases::default()),
        })
    }

    /// Arms the failure points named in `spec` (the `CLIMATE_API_FAILPOINTS` syntax).
    #[must_use]
    pub fn with_failpoints(mut self, spec: &str) -> Self {
        self.failpoints = FailPoints::parse(spec);
        self
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(self.platform.config.worker.lease_seconds.max(3))
    }
}

/// Consumes the queue until `shutdown`, running up to `worker.concurrency` tasks at once.
/// On shutdown it stops taking messages and waits for the tasks in flight.
///
/// No delivery stays unacknowledged longer than `worker.max_delivery_hold_seconds` from its
/// arrival, so the broker's consumer timeout never closes the channel: a delivery still waiting
/// for a free slot then is handed over ([`hand_over`]); one whose step is still running is
/// acknowledged, and the step's lease guards the rest.
///
/// # Errors
/// Never returns an error today; the signature leaves room for fatal conditions.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> anyhow::Result<()> {
    let concurrency = ctx.platform.config.worker.concurrency;
    let hold = Duration::from_secs(ctx.platform.config.worker.max_delivery_hold_seconds);
    let slots = Arc::new(Semaphore::new(concurrency));
    let prefetch = u16::try_from(concurrency).unwrap_or(u16::MAX);
    tracing::info!(worker.id = %ctx.worker_id, concurrency, "worker started");
    let mut backoff = Duration::from_millis(500);
    'connect: while !shutdown.is_cancelled() {
        let mut consumer = match ctx.platform.queue.consumer(prefetch).await {
            Ok(c) => {
                backoff = Duration::from_millis(500);
                c
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot consume from the queue; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => break 'connect,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        // Deliveries waiting for a free slot, oldest first, with the time each must be settled
        // by. Reading them as they arrive makes that time exact; the prefetch bounds how many
        // the broker sends, and the in-process queue is read no further ahead than this.
        let mut waiting: VecDeque<(tokio::time::Instant, Delivery)> = VecDeque::new();
        loop {
            let oldest = waiting.front().map(|(due, _)| *due);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    // Not started: back to the queue for another worker (or the next start).
                    for (_, delivery) in waiting.drain(..) {
                        if let Err(e) = delivery.acker.requeue().await {
                            tracing::warn!(error = %e, "requeue failed");
                        }
                    }
                    break 'connect;
                }
                permit = slots.clone().acquire_owned(), if !waiting.is_empty() => {
                    let permit = permit?;
                    if let Some((due, delivery)) = waiting.pop_front() {
                        let ctx = ctx.clone();
                        tokio::spawn(async move {
                            handle(&ctx, delivery, due).await;
                            drop(permit);
                        });
                    }
                }
                () = sleep_until_or_never(oldest) => {
                    if let Some((_, delivery)) = waiting.pop_front() {
                        hand_over(&ctx, &delivery, "waiting").await;
                    }
                }
                next = consumer.next(), if waiting.len() < concurrency => match next {
                    Some(Ok(delivery)) => {
                        waiting.push_back((tokio::time::Instant::now() + hold, delivery));
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "queue consumer failed; reconnecting");
                        continue 'connect;
                    }
                    None => {
                        tracing::warn!("queue consumer closed; reconnecting");
                        tokio::time::sleep(backoff).await;
                        continue 'connect;
                    }
                },
            }
        }
    }
    // Wait for tasks in flight, up to the grace period; then hand their leases back so other
    // workers take over at once. Their deliveries stay unacknowledged and return to the queue
    // when this process's connection closes.
    let grace = Duration::from_secs(ctx.platform.config.worker.shutdown_grace_seconds);
    let all = slots.acquire_many(u32::try_from(concurrency).unwrap_or(u32::MAX));
    if tokio::time::timeout(grace, all).await.is_err() {
        let n = ctx.leases.release_all(&ctx).await;
        tracing::warn!(worker.id = %ctx.worker_id, leases = n, grace_seconds = grace.as_secs(), "tasks still running after the shutdown grace; their leases were handed back");
    }
    tracing::info!(worker.id = %ctx.worker_id, "worker stopped");
    Ok(())
}

async fn sleep_until_or_never(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Settles a delivery that has been held as long as it may while no lease guards its step
/// (still waiting for a slot, or its claim has not gone through): publishes a fresh copy of the
/// message, then acknowledges the original. Whoever receives the copy either finds the step's
/// lease live (it acknowledges the copy without work) or runs it, so the step is neither lost
/// nor done twice. If the copy cannot be published the delivery is returned to the queue
/// instead.
async fn hand_over(ctx: &Context, delivery: &Delivery, reason: &'static str) {
    match ctx
        .platform
        .queue
        .publish(&delivery.payload, &delivery.headers)
        .await
    {
        Ok(()) => settle(delivery, true).await,
        Err(e) => {
            tracing::warn!(error = %e, "cannot hand a delivery over; returning it to the queue");
            if let Err(e) = delivery.acker.requeue().await {
                tracing::warn!(error = %e, "requeue failed");
            }
        }
    }
    metrics::counter!("climate_deliveries_handed_over_total", "reason" => reason).increment(1);
}

async fn settle(delivery: &Delivery, ok: bool) {
    let result = if ok {
        delivery.acker.ack().await
    } else {
        delivery.acker.dead_letter().await
    };
    if let Err(e) = result {
        // The broker will redeliver; claims make that harmless.
        tracing::warn!(error = %e, "could not settle delivery");
    }
}

/// Handles one delivery end to end. Never panics on bad input: undecodable messages are
/// dead-lettered, everything else ends with the run in a consistent state. A step still running
/// at `due` has its delivery settled (acknowledged once the step holds its lease, handed over
/// before that) and finishes under its lease.
async fn handle(ctx: &Context, delivery: Delivery, due: tokio::time::Instant) {
    let msg = match TaskMessage::decode(&delivery.payload) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "dead-lettering an undecodable message");
            settle(&delivery, false).await;
            return;
        }
    };
    let step = match msg.step {
        Step::Plan => "plan",
        Step::Segment(_) => "segment",
        Step::Finalize => "finalize",
    };
    let span = tracing::info_span!(
        "task",
        otel.name = %format_args!("task {step}"),
        otel.kind = "consumer",
        run.id = %msg.run_id,
        step = ?msg.step,
        worker.id = %ctx.worker_id,
        messaging.message.redelivered = delivery.redelivered,
    );
    // Continue the trace of whoever announced this step (the API request, or the previous
    // step); the announcements this step writes carry it on.
    climate_infra::telemetry::set_parent(&span, &delivery.headers);
    let started = std::time::Instant::now();
    async {
        let work = async {
            match msg.step {
                Step::Plan => plan_step(ctx, &msg.run_id).await,
                Step::Segment(i) => segment_step(ctx, &msg.run_id, i).await,
                Step::Finalize => finalize_step(ctx, &msg.run_id).await,
            }
        };
        tokio::pin!(work);
        let mut handed_over = false;
        let result = tokio::select! {
            result = &mut work => result,
            () = tokio::time::sleep_until(due) => {
                let segment = match msg.step {
                    Step::Segment(i) => Some(i),
                    Step::Plan | Step::Finalize => None,
                };
                let hold_seconds = ctx.platform.config.worker.max_delivery_hold_seconds;
                if ctx.leases.is_claimed(&msg.run_id, segment) {
                    // The lease guards the step (the reaper re-announces it if this worker
                    // dies); a copy would only start a second chain of announcements.
                    tracing::info!(hold_seconds, "step outlasts worker.max_delivery_hold_seconds: delivery acknowledged, the lease guards the rest");
                    settle(&delivery, true).await;
                    metrics::counter!("climate_deliveries_handed_over_total", "reason" => "leased").increment(1);
                } else {
                    // Not claimed yet (the database is slow): nothing guards it but the message.
                    tracing::info!(hold_seconds, "step not claimed within worker.max_delivery_hold_seconds: delivery handed over");
                    hand_over(ctx, &delivery, "unclaimed").await;
                }
                handed_over = true;
                work.await
            }
        };
        if handed_over {
            // The delivery is settled; only a final failure leaves a trace in the dead-letter
            // queue. Anything else unfinished is recovered through the lease by the reaper.
            match &result {
                Ok(_) => tracing::debug!("step ended after its delivery was settled"),
                Err(e) => tracing::warn!(error = %e, "step ended with an error after its delivery was settled; the reaper recovers it when its lease expires"),
            }
            if let Ok(Settle::DeadLetter) = result
                && let Err(e) = ctx
                    .platform
                    .queue
                    .publish_dead_letter(&delivery.payload, &delivery.headers)
                    .await
            {
                tracing::warn!(error = %e, "could not record the failed task in the dead-letter queue");
            }
            return;
        }
        match result {
            // The run row already says `failed` with its error; the dead-letter queue keeps a
            // record of runs that used up their retries, for operators.
            Ok(Settle::DeadLetter) => {
                settle(&delivery, false).await;
                metrics::counter!("climate_tasks_total", "step" => step, "outcome" => "dead_letter").increment(1);
            }
            Ok(Settle::Ack) => {
                settle(&delivery, true).await;
                metrics::counter!("climate_tasks_total", "step" => step, "outcome" => "ack").increment(1);
            }
            Ok(Settle::Leave) => {
                metrics::counter!("climate_tasks_total", "step" => step, "outcome" => "left").increment(1);
            }
            Err(e) => {
                metrics::counter!("climate_tasks_total", "step" => step, "outcome" => "requeue").increment(1);
                // The database could not be reached to claim or record: let the broker
                // deliver again later; claims make a repeat harmless.
                tracing::warn!(error = %e, "cannot process the message now; requeueing it");
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Err(e) = delivery.acker.requeue().await {
                    tracing::warn!(error = %e, "requeue failed");
                }
            }
        }
    }
    .instrument(span)
    .await;
    metrics::histogram!("climate_task_duration_seconds", "step" => step)
        .record(started.elapsed().as_secs_f64());
}

/// What to do with a delivery once its step is handled.
enum Settle {
    Ack,
    DeadLetter,
    /// Shutting down: leave it unacknowledged, so it returns to the queue with the connection.
    Leave,
}

/// Exponential backoff with full jitter: up to 2^attempt × 2 s, capped at 5 minutes.
fn backoff(attempt: u32) -> Duration {
    let cap = 2_u64
        .saturating_pow(attempt.min(16))
        .saturating_mul(2_000)
        .min(300_000);
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap.max(1)))
}

fn lock_key(run: &RunRecord) -> String {
    format!("dataset:{}", run.dataset_id)
}

fn announce(run_id: &str, step: Step, delay: Duration) -> NewOutbox {
    NewOutbox {
        topic: TASK_TOPIC.into(),
        payload: TaskMessage::step(run_id, step).to_json(),
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
    let (key, owner) = (lock_key(run), run.run_id.clone());
    let released = ctx.leases.released.clone();
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
        run.run_id.clone(),
        ctx.worker_id.clone(),
        ctx.lease(),
    );
    heartbeat(ctx, run, lost, move || {
        let (db, id, owner) = (db.clone(), id.clone(), owner.clone());
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
        .release(&lock_key(run), &run.run_id)
        .await
    {
        tracing::warn!(error = %e, "could not release dataset lock; it expires by itself");
    }
}

/// After a lost lease: when the run was cancelled, delete what it wrote and free its dataset.
/// Idempotent, so every worker that notices may do it.
async fn cleanup_if_cancelled(ctx: &Context, run_id: &str) {
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

async fn release_if_cancelled(ctx: &Context, run_id: &str) {
    if let Ok(Some(run)) = ctx.platform.db.get_run(run_id).await
        && run.status == climate_domain::run::RunStatus::Cancelled
    {
        release_lock(ctx, &run).await;
    }
}

async fn plan_step(ctx: &Context, run_id: &str) -> Result<Settle, DbError> {
    let Some(held) = ctx.leases.hold(run_id, None) else {
        return Ok(Settle::Leave);
    };
    let db = &ctx.platform.db;
    let now = Utc::now();
    let Some(run) = db
        .claim_run(run_id, &ctx.worker_id, now, now + ctx.lease())
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
        .try_acquire(&lock_key(&run), &run.run_id, ctx.lease() * 2)
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
            &ctx.worker_id,
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
                &ctx.worker_id,
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
                    &ctx.worker_id,
                    &plan_json,
                    &segments,
                    TASK_TOPIC,
                    Utc::now(),
                )
                .await;
            match stored {
                Ok(()) => {
                    tracing::info!(segments = segments.len(), "run planned");
                    ctx.failpoints.hit("after_plan");
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
                &ctx.worker_id,
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
            db.finish_run(&run.run_id, &ctx.worker_id, &outcome, Utc::now())
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
    run_id: &str,
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

async fn segment_step(ctx: &Context, run_id: &str, index: u32) -> Result<Settle, DbError> {
    let Some(held) = ctx.leases.hold(run_id, Some(index)) else {
        return Ok(Settle::Leave);
    };
    let db = &ctx.platform.db;
    let now = Utc::now();
    let Some(segment) = db
        .claim_segment(run_id, index, &ctx.worker_id, now, now + ctx.lease())
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
            ctx.worker_id.clone(),
            ctx.lease(),
        );
        heartbeat(ctx, &run, lost.clone(), move || {
            let (db, id, owner) = (db.clone(), id.clone(), owner.clone());
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
            ctx.failpoints.hit("after_segment_write");
            let last = db
                .complete_segment(
                    run_id,
                    index,
                    &ctx.worker_id,
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
                &ctx.worker_id,
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
                    &ctx.worker_id,
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
                db.fail_segment(run_id, index, &ctx.worker_id, &error, Utc::now())
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

async fn finalize_step(ctx: &Context, run_id: &str) -> Result<Settle, DbError> {
    let Some(held) = ctx.leases.hold(run_id, None) else {
        return Ok(Settle::Leave);
    };
    let db = &ctx.platform.db;
    let now = Utc::now();
    let Some(run) = db
        .claim_finalize(run_id, &ctx.worker_id, now, now + ctx.lease())
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
                &ctx.worker_id,
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
