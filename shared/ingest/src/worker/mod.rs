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

mod steps;

use steps::{finalize_step, plan_step, segment_step};

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
