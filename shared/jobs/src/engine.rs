//! [`Engine`]: consumes the task queue and runs each delivery's step on the [`JobKind`] its
//! message names, holding no delivery longer than the broker allows, settling each only once
//! the step's outcome is committed, and handing leases back at shutdown.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use climate_domain::retry::RetryPolicy;
use climate_infra::messages::MessageError;
use climate_infra::queue::{Delivery, Queue};
use rand::Rng;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{LeaseKey, Worker};

/// The kind of a message that names none: messages written before kinds existed are
/// ingestion steps.
pub const DEFAULT_KIND: &str = "ingest";

/// One step of one job, as decoded from a queue message by its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The job.
    pub job_id: String,
    /// The step's name (a metrics label and span name: a fixed set per kind).
    pub step: &'static str,
    /// The part of the job the step works on, when parts are leased on their own.
    pub part: Option<u32>,
}

/// What to do with a delivery once its step is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Done (or nothing to do): acknowledge.
    Ack,
    /// The job failed for good: dead-letter the message, as a record for operators.
    DeadLetter,
    /// Shutting down: leave it unacknowledged, so it returns to the queue with the connection.
    Leave,
}

/// The step cannot be processed now (its state cannot be read or recorded): the message goes
/// back to the queue, and claims make the repeat harmless.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Requeue(pub String);

impl Requeue {
    /// From any error.
    pub fn from_error(e: impl std::fmt::Display) -> Self {
        Self(e.to_string())
    }
}

/// A kind of durable job: how its messages decode into [`Task`]s, how a step runs, and how a
/// lease of it is handed back.
#[async_trait::async_trait]
pub trait JobKind: Send + Sync + std::fmt::Debug + 'static {
    /// The kind's name, as in the messages' `kind` field.
    fn name(&self) -> &'static str;

    /// Decodes a message of this kind.
    ///
    /// # Errors
    /// [`DecodeError`] saying what is wrong with it; the delivery is dead-lettered.
    fn decode(&self, payload: &[u8]) -> Result<Task, DecodeError>;

    /// Runs one step. A step takes its lease through [`Worker::hold`] and marks it claimed
    /// once its claim committed.
    ///
    /// # Errors
    /// [`Requeue`] when the step's state cannot be read or recorded now.
    async fn run(&self, worker: &Worker, task: &Task) -> Result<Settle, Requeue>;

    /// Makes a lease this worker holds expire now, so that another worker takes the work over
    /// at once; `false` when it was no longer held.
    ///
    /// # Errors
    /// [`Requeue`] when that cannot be recorded (the lease then expires by itself).
    async fn hand_back(&self, worker: &Worker, lease: &LeaseKey) -> Result<bool, Requeue>;
}

/// How the engine consumes.
#[derive(Debug, Clone, Copy)]
pub struct EngineSettings {
    /// Steps run at once (and the prefetch).
    pub concurrency: usize,
    /// Longest a delivery stays unacknowledged (below the broker's consumer timeout).
    pub max_delivery_hold: Duration,
    /// How long a shutdown waits for the steps in flight before handing their leases back.
    pub shutdown_grace: Duration,
}

/// The job engine of one worker process.
#[derive(Debug, Clone)]
pub struct Engine {
    queue: Arc<dyn Queue>,
    worker: Worker,
    settings: EngineSettings,
    kinds: Vec<Arc<dyn JobKind>>,
}

/// Why a delivery cannot be run; it is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload is not a message of the kind it names.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// `kind` is there but not a string.
    #[error("task message kind must be a string, not {0}")]
    KindNotAString(String),
    /// No kind of that name runs in this worker.
    #[error("no job kind '{name}' in this worker (it runs {known:?})")]
    UnknownKind {
        /// The kind named.
        name: String,
        /// The kinds this worker runs.
        known: Vec<&'static str>,
    },
    /// A message of this kind that the kind cannot read.
    #[error("malformed {kind} message: {reason}")]
    Malformed {
        /// The kind decoding it.
        kind: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A kind was handed a message naming another kind.
    #[error("a {given} job message was given to kind {kind}")]
    WrongKind {
        /// The kind the message names.
        given: String,
        /// The kind decoding it.
        kind: &'static str,
    },
}

/// The `kind` a message names ([`DEFAULT_KIND`] when none).
///
/// # Errors
/// [`DecodeError`] when the payload is not a JSON object or its `kind` is not a string.
pub fn kind_of(payload: &[u8]) -> Result<String, DecodeError> {
    let v: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| MessageError::Undecodable {
            what: "task",
            reason: e.to_string(),
        })?;
    match v.get("kind") {
        None => Ok(DEFAULT_KIND.to_owned()),
        Some(serde_json::Value::String(k)) => Ok(k.clone()),
        Some(other) => Err(DecodeError::KindNotAString(other.to_string())),
    }
}

impl Engine {
    /// An engine consuming `queue` as `worker`, with no job kinds yet.
    #[must_use]
    pub fn new(queue: Arc<dyn Queue>, worker: Worker, settings: EngineSettings) -> Self {
        Self {
            queue,
            worker,
            settings,
            kinds: Vec::new(),
        }
    }

    /// Adds a job kind.
    #[must_use]
    pub fn with_kind(mut self, kind: Arc<dyn JobKind>) -> Self {
        self.kinds.push(kind);
        self
    }

    /// The worker the engine runs as.
    #[must_use]
    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    fn kind(&self, name: &str) -> Option<&Arc<dyn JobKind>> {
        self.kinds.iter().find(|k| k.name() == name)
    }

    /// Consumes the queue until `shutdown`, running up to `concurrency` steps at once. On
    /// shutdown it stops taking messages and waits for the steps in flight, up to the grace
    /// period; then it hands their leases back so other workers take over at once.
    ///
    /// No delivery stays unacknowledged longer than `max_delivery_hold` from its arrival, so
    /// the broker's consumer timeout never closes the channel: a delivery still waiting for a
    /// free slot then is handed over ([`Engine::hand_over`]); one whose step is still running
    /// is acknowledged, and the step's lease guards the rest.
    pub async fn run(self, shutdown: CancellationToken) {
        let EngineSettings {
            concurrency,
            max_delivery_hold: hold,
            shutdown_grace: grace,
        } = self.settings;
        let concurrency = concurrency.max(1);
        let slots = Arc::new(Semaphore::new(concurrency));
        let prefetch = u16::try_from(concurrency).unwrap_or(u16::MAX);
        let kinds: Vec<&str> = self.kinds.iter().map(|k| k.name()).collect();
        tracing::info!(worker.id = %self.worker.id(), concurrency, ?kinds, "worker started");
        let mut reconnects = 0_u32;
        'connect: while !shutdown.is_cancelled() {
            let mut consumer = match self.queue.consumer(prefetch).await {
                Ok(c) => {
                    reconnects = 0;
                    c
                }
                Err(e) => {
                    reconnects += 1;
                    tracing::warn!(error = %e, "cannot consume from the queue; retrying");
                    let wait = reconnect_wait(reconnects);
                    tokio::select! {
                        () = shutdown.cancelled() => break 'connect,
                        () = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            };
            // Deliveries waiting for a free slot, oldest first, with the time each must be
            // settled by. Reading them as they arrive makes that time exact; the prefetch
            // bounds how many the broker sends, and the in-process queue is read no further
            // ahead than this.
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
                        let Ok(permit) = permit else { break 'connect };
                        if let Some((due, delivery)) = waiting.pop_front() {
                            let engine = self.clone();
                            tokio::spawn(async move {
                                engine.handle(delivery, due).await;
                                drop(permit);
                            });
                        }
                    }
                    () = sleep_until_or_never(oldest) => {
                        if let Some((_, delivery)) = waiting.pop_front() {
                            self.hand_over(&delivery, "waiting").await;
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
                            reconnects += 1;
                            tokio::time::sleep(reconnect_wait(reconnects)).await;
                            continue 'connect;
                        }
                    },
                }
            }
        }
        // Their deliveries stay unacknowledged and return to the queue when this process's
        // connection closes.
        let all = slots.acquire_many(u32::try_from(concurrency).unwrap_or(u32::MAX));
        if tokio::time::timeout(grace, all).await.is_err() {
            let n = self.release_all().await;
            tracing::warn!(worker.id = %self.worker.id(), leases = n, grace_seconds = grace.as_secs(), "tasks still running after the shutdown grace; their leases were handed back");
        }
        tracing::info!(worker.id = %self.worker.id(), "worker stopped");
    }

    /// A claim racing with the shutdown commits within this; the second pass hands it back.
    const CLAIM_SETTLE: Duration = Duration::from_millis(500);

    /// Stops the heartbeats and makes every held lease expire now, so the reaper (or a
    /// redelivery) gives the work to another worker without waiting out the lease.
    async fn release_all(&self) -> usize {
        self.worker.release();
        let mut handed = std::collections::HashSet::new();
        for pass in 0..2 {
            if pass == 1 {
                tokio::time::sleep(Self::CLAIM_SETTLE).await;
            }
            for lease in self.worker.leases() {
                let Some(kind) = self.kind(lease.kind) else {
                    continue;
                };
                match kind.hand_back(&self.worker, &lease).await {
                    Ok(true) => {
                        tracing::info!(job.id = %lease.job_id, part = ?lease.part, "lease handed back");
                        handed.insert(lease);
                    }
                    // Not (or no longer) ours: nothing to hand back.
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(job.id = %lease.job_id, error = %e, "could not hand a lease back; it will expire");
                    }
                }
            }
        }
        handed.len()
    }

    /// Settles a delivery that has been held as long as it may while no lease guards its step
    /// (still waiting for a slot, or its claim has not gone through): publishes a fresh copy
    /// of the message, then acknowledges the original. Whoever receives the copy either finds
    /// the step's lease live (it acknowledges the copy without work) or runs it, so the step
    /// is neither lost nor done twice. If the copy cannot be published the delivery is
    /// returned to the queue instead.
    async fn hand_over(&self, delivery: &Delivery, reason: &'static str) {
        match self
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

    /// Handles one delivery end to end. Never panics on bad input: undecodable messages and
    /// messages of an unknown kind are dead-lettered; everything else ends with the job in a
    /// consistent state. A step still running at `due` has its delivery settled (acknowledged
    /// once the step holds its lease, handed over before that) and finishes under its lease.
    async fn handle(&self, delivery: Delivery, due: tokio::time::Instant) {
        let decoded = kind_of(&delivery.payload).and_then(|name| {
            let kind = self.kind(&name).ok_or_else(|| DecodeError::UnknownKind {
                known: self.kinds.iter().map(|k| k.name()).collect(),
                name,
            })?;
            Ok((kind.clone(), kind.decode(&delivery.payload)?))
        });
        let (kind, task) = match decoded {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "dead-lettering an undecodable message");
                settle(&delivery, false).await;
                return;
            }
        };
        let step = task.step;
        let span = tracing::info_span!(
            "task",
            otel.name = %format_args!("task {step}"),
            otel.kind = "consumer",
            job.kind = kind.name(),
            run.id = %task.job_id,
            step,
            part = ?task.part,
            worker.id = %self.worker.id(),
            messaging.message.redelivered = delivery.redelivered,
        );
        // Continue the trace of whoever announced this step (the API request, or the previous
        // step); the announcements this step writes carry it on.
        climate_infra::telemetry::set_parent(&span, &delivery.headers);
        let started = std::time::Instant::now();
        async {
            let work = kind.run(&self.worker, &task);
            tokio::pin!(work);
            let mut handed_over = false;
            let result = tokio::select! {
                result = &mut work => result,
                () = tokio::time::sleep_until(due) => {
                    let lease = LeaseKey { kind: kind.name(), job_id: task.job_id.clone(), part: task.part };
                    let hold_seconds = self.settings.max_delivery_hold.as_secs();
                    if self.worker.is_claimed(&lease) {
                        // The lease guards the step (the reaper re-announces it if this worker
                        // dies); a copy would only start a second chain of announcements.
                        tracing::info!(hold_seconds, "step outlasts the delivery hold: delivery acknowledged, the lease guards the rest");
                        settle(&delivery, true).await;
                        metrics::counter!("climate_deliveries_handed_over_total", "reason" => "leased").increment(1);
                    } else {
                        // Not claimed yet (the database is slow): nothing guards it but the
                        // message.
                        tracing::info!(hold_seconds, "step not claimed within the delivery hold: delivery handed over");
                        self.hand_over(&delivery, "unclaimed").await;
                    }
                    handed_over = true;
                    work.await
                }
            };
            if handed_over {
                // The delivery is settled; only a final failure leaves a trace in the
                // dead-letter queue. Anything else unfinished is recovered through the lease
                // by the reaper.
                match &result {
                    Ok(_) => tracing::debug!("step ended after its delivery was settled"),
                    Err(e) => tracing::warn!(error = %e, "step ended with an error after its delivery was settled; the reaper recovers it when its lease expires"),
                }
                if let Ok(Settle::DeadLetter) = result
                    && let Err(e) = self
                        .queue
                        .publish_dead_letter(&delivery.payload, &delivery.headers)
                        .await
                {
                    tracing::warn!(error = %e, "could not record the failed task in the dead-letter queue");
                }
                return;
            }
            match result {
                // The job's state already says it failed, with its error; the dead-letter
                // queue keeps a record of jobs that used up their retries, for operators.
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
                    // The step's state could not be read or recorded: let the broker deliver
                    // again later; claims make a repeat harmless.
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
}

/// The wait before reconnect `n` (the thread's random source is never held across an await).
fn reconnect_wait(n: u32) -> Duration {
    RetryPolicy::RECONNECT.delay(n, rand::rng().random())
}

async fn sleep_until_or_never(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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
