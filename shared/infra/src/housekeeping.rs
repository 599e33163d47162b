//! Housekeeping every process runs: the outbox relay (publishes committed outbox rows to the
//! queue) and the lease reaper (re-announces runs whose worker stopped heartbeating).
//!
//! Both are idempotent and safe to run in many processes at once: a row published twice is a
//! duplicate delivery, which claims make harmless.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::messages::TASK_TOPIC;
use crate::platform::Platform;
use crate::queue::Headers;

/// Boxed error of a relay pass, which mixes database, queue and JSON errors.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How often the relay looks for rows when nobody wakes it.
const RELAY_INTERVAL: Duration = Duration::from_secs(1);
/// How often expired leases are looked for.
const REAPER_INTERVAL: Duration = Duration::from_secs(5);

/// Publishes due outbox rows once; returns how many were published.
///
/// # Errors
/// The database or queue error that stopped the pass (rows not yet marked are retried later).
pub async fn relay_once(p: &Platform) -> Result<usize, BoxError> {
    let rows = p.db.pending_outbox(Utc::now(), 100).await?;
    let mut published = Vec::with_capacity(rows.len());
    for row in &rows {
        let body = serde_json::to_vec(&row.payload)?;
        // A row written inside a trace is published in a span of that trace, whose context
        // the message carries on to the consumer.
        let (span, headers) = if row.headers.is_empty() {
            (tracing::Span::none(), Headers::new())
        } else {
            let span = tracing::info_span!(
                "outbox publish",
                otel.name = "publish task",
                otel.kind = "producer",
                messaging.system = p.queue.kind(),
                messaging.message.body.size = body.len(),
            );
            crate::telemetry::set_parent(&span, &row.headers);
            let headers = crate::telemetry::trace_headers(&span);
            // A process that does not trace (no OTLP endpoint) passes the context on as it was.
            let headers = if headers.is_empty() {
                row.headers.clone()
            } else {
                headers
            };
            (span, headers)
        };
        if let Err(e) = p.queue.publish(&body, &headers).instrument(span).await {
            // Mark what went out so far; the rest stays pending for the next pass.
            if !published.is_empty() {
                p.db.mark_published(&published, Utc::now()).await?;
            }
            return Err(e.into());
        }
        published.push(row.id);
    }
    if !published.is_empty() {
        p.db.mark_published(&published, Utc::now()).await?;
    }
    Ok(published.len())
}

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_RETENTION: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Removes a finished job: its objects under [`crate::store::Store::job_prefix`] (its
/// result) first, then its row, so that a failure in between leaves the row and a later removal
/// finds the job again. `false` when there is no finished job of that id.
///
/// # Errors
/// When the objects cannot be listed or removed (the job is kept) or the database fails.
pub async fn remove_job(p: &Platform, job_id: climate_domain::ids::JobId) -> anyhow::Result<bool> {
    use futures::TryStreamExt as _;
    use object_store::ObjectStoreExt as _;
    let prefix = object_store::path::Path::from(crate::store::Store::job_prefix(job_id).as_str());
    let store = p.store.object_store();
    let objects: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
    for o in objects {
        match store.delete(&o.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(p.db.delete_job(job_id).await?)
}

/// Removes up to 100 finished jobs whose `expires_at` passed, with their objects
/// ([`remove_job`]). Returns how many; a job that cannot be removed now is left for the next
/// pass.
///
/// # Errors
/// When the expired jobs cannot be listed.
pub async fn purge_expired_jobs(p: &Platform, now: chrono::DateTime<Utc>) -> anyhow::Result<usize> {
    let mut removed = 0;
    for job_id in p.db.expired_jobs(now, 100).await? {
        match remove_job(p, job_id).await {
            Ok(true) => removed += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(job.id = %job_id, error = %e, "removing an expired job failed; kept for the next pass");
            }
        }
    }
    Ok(removed)
}

/// Deletes the objects of versions pruned before `cutoff`, except those a retained version
/// of the same dataset still reads through its `bases` (they stay until that one goes too),
/// and records each as collected. Returns how many were collected; one that fails is left
/// for the next pass.
///
/// # Errors
/// When the collectable versions cannot be listed.
pub async fn collect_pruned(p: &Platform, cutoff: chrono::DateTime<Utc>) -> anyhow::Result<usize> {
    use futures::TryStreamExt as _;
    use object_store::ObjectStoreExt as _;
    let store = p.store.object_store();
    let mut collected = 0;
    for v in p.db.collectable_versions(cutoff, 100).await? {
        let retained = p.db.list_versions(&v.dataset_id).await?;
        let still_read = retained.iter().any(|r| {
            r.pruned_at.is_none()
                && r.metadata["bases"].as_array().is_some_and(|b| {
                    b.iter()
                        .any(|b| b.as_str() == Some(v.storage_prefix.as_str()))
                })
        });
        if still_read {
            continue;
        }
        let prefix = object_store::path::Path::from(v.storage_prefix.as_str());
        let result: anyhow::Result<()> = async {
            let objects: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
            for o in objects {
                match store.delete(&o.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            p.db.mark_collected(&v.dataset_id, v.version, Utc::now())
                .await?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => collected += 1,
            Err(e) => {
                tracing::warn!(dataset.id = %v.dataset_id, version = v.version, error = %e, "collecting a pruned version failed; kept for the next pass")
            }
        }
    }
    Ok(collected)
}

/// Runs the relay and reaper until `shutdown`.
pub async fn run(p: Platform, shutdown: CancellationToken) {
    let mut last_reap = tokio::time::Instant::now();
    let mut failing = false;
    loop {
        match relay_once(&p).await {
            Ok(n) => {
                if failing {
                    tracing::info!("outbox relay recovered");
                    failing = false;
                }
                if n == 100 {
                    continue;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "outbox relay failed; runs stay accepted and will be published when the backend returns");
                }
                failing = true;
            }
        }
        if last_reap.elapsed() >= REAPER_INTERVAL {
            last_reap = tokio::time::Instant::now();
            match p.db.requeue_expired(Utc::now(), TASK_TOPIC).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    count = n,
                    "re-queued runs, segments and jobs whose lease expired"
                ),
                Err(e) => tracing::warn!(error = %e, "lease reaper failed"),
            }
            let forget = Utc::now() - IDEMPOTENCY_RETENTION;
            if let Err(e) = p.db.purge_idempotency(forget).await {
                tracing::warn!(error = %e, "purging idempotency keys failed");
            }
            match purge_expired_jobs(&p, Utc::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(count = n, "removed expired jobs and their results"),
                Err(e) => tracing::warn!(error = %e, "removing expired jobs failed"),
            }
            let retention = chrono::Duration::from_std(p.config.catalog.retention())
                .unwrap_or(chrono::Duration::days(7));
            match collect_pruned(&p, Utc::now() - retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(count = n, "deleted the objects of pruned versions"),
                Err(e) => tracing::warn!(error = %e, "collecting pruned versions failed"),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = p.outbox_notify.notified() => {}
            () = tokio::time::sleep(RELAY_INTERVAL) => {}
        }
    }
}
