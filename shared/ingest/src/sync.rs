//! Syncs (SPEC §7): planning one (`detail`), starting one (`start`, used by `POST /sync/{id}`
//! and by the scheduler), and the scheduler's tick (`tick`), which starts the syncs that are due.
//!
//! Exactly one run per dataset and due time: a scheduled sync is created together with its
//! `sync_ticks` row in one transaction, keyed by the due time (a cron occurrence, or
//! `available:<target period>` for as-soon-as-available schedules), so replicas racing on the
//! same tick start it once; a tick missed during downtime is replayed once, as the newest due
//! time.

use crate::Context;
use chrono::{DateTime, NaiveDateTime, Utc};
use climate_domain::run::{RunKind, RunRequest};
use climate_domain::sync::{self, Schedule, SyncAction, SyncDetail};
use climate_domain::template::SyncKind;
use climate_domain::{DatasetId, Period, RunId};
use climate_infra::db::{
    Admission, Admitted, DatasetRecord, DbError, NewOutbox, NewRun, RunRecord,
};
use climate_infra::messages::{TASK_TOPIC, TaskMessage};

/// Why a sync could not be planned or started.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// No such managed dataset (or it has no version yet).
    #[error("no dataset '{0}'; GET /datasets lists the managed ones")]
    UnknownDataset(String),
    /// The request is wrong (message names the field).
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbError),
    /// The dataset's template or extent is gone, or the provider cannot be probed.
    #[error("{0}")]
    Unavailable(String),
}

/// How a sync request ended.
#[derive(Debug)]
pub enum Started {
    /// Nothing to do (`up_to_date`, `not_syncable`).
    Nothing(SyncDetail),
    /// A run was created (or an identical one was already queued or running).
    Run(SyncDetail, Box<RunRecord>),
    /// A scheduled sync whose due time another replica already started.
    AlreadyStarted(SyncDetail),
}

/// Plans a sync of `dataset_id` towards `end` (or today) at `now`, probing the provider when
/// the template's availability says so.
///
/// # Errors
/// [`SyncError`].
pub async fn detail(
    ctx: &Context,
    dataset_id: &str,
    end: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(SyncDetail, DatasetRecord), SyncError> {
    let p = &ctx.platform;
    let unknown = || SyncError::UnknownDataset(dataset_id.to_owned());
    // An id that is not an id names no dataset.
    let id = DatasetId::new(dataset_id).map_err(|_| unknown())?;
    let ds = p.db.get_dataset(&id).await?.ok_or_else(unknown)?;
    let n = ds.current_version.ok_or_else(unknown)?;
    let version = p.db.get_version(&id, n).await?.ok_or_else(unknown)?;
    let loaded = p.catalog.get(&ds.template_id).ok_or_else(|| {
        SyncError::Unavailable(format!(
            "template '{}' of dataset '{dataset_id}' is no longer configured",
            ds.template_id
        ))
    })?;
    let t = &loaded.template;
    let kind = t.period_type;
    let period = |s: &str, what: &str| {
        Period::parse(kind, s).map_err(|e| SyncError::Invalid(format!("{what}: {e}")))
    };
    let current = (
        period(&version.coverage_start, "stored coverage")?,
        period(&version.coverage_end, "stored coverage")?,
    );
    let end = end.map(|e| period(e, "end")).transpose()?;
    if let Some(e) = end
        && e < current.0
    {
        return Err(SyncError::Invalid(format!(
            "end: {} is before the dataset's first period {}",
            e.canonical(),
            current.0.canonical()
        )));
    }
    let probe = t.sync.kind == SyncKind::Temporal && t.sync.availability.is_some_and(|a| a.probe);
    let published = if probe {
        let extent = p
            .config
            .extents
            .iter()
            .find(|e| e.extent_id == ds.extent_id)
            .ok_or_else(|| {
                SyncError::Unavailable(format!("extent '{}' is no longer configured", ds.extent_id))
            })?;
        crate::pipeline::probe_latest(ctx, t, &loaded.base_dir, extent, current.1.next())
            .await
            .map_err(|e| {
                SyncError::Unavailable(format!("probing provider {}: {e}", t.ingestion.provider))
            })?
    } else {
        None
    };
    let d = sync::plan(
        ds.template_id.as_str(),
        &t.sync,
        kind,
        current,
        end,
        published,
        now.naive_utc(),
    );
    Ok((d, ds))
}

/// Starts the sync `d` of dataset `ds` as a run asked for by `principal` (`None`: the
/// platform itself). With `due_key` (the scheduler), the run is created only if that due time
/// has none yet; without (an explicit request), an identical sync already queued or running is
/// returned instead of a second one.
///
/// # Errors
/// [`SyncError::Db`].
pub async fn start(
    ctx: &Context,
    d: SyncDetail,
    ds: &DatasetRecord,
    publish: bool,
    due_key: Option<&str>,
    principal: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Started, SyncError> {
    let (start, append) = match d.action {
        SyncAction::NoOp | SyncAction::NotSyncable => return Ok(Started::Nothing(d)),
        SyncAction::Append => (d.current_start.clone(), true),
        SyncAction::Rematerialize => (
            d.delta_start
                .clone()
                .unwrap_or_else(|| d.current_start.clone()),
            false,
        ),
    };
    let request = RunRequest {
        start,
        end: d.delta_end.clone(),
        overwrite: true,
        prefer_zarr: true,
        publish,
        append,
    };
    let request_json =
        serde_json::to_value(&request).map_err(|e| SyncError::Unavailable(e.to_string()))?;
    let run_id = RunId::generate();
    let run = NewRun {
        run_id,
        kind: RunKind::Sync,
        dataset_id: ds.dataset_id.clone(),
        template_id: ds.template_id.clone(),
        extent_id: ds.extent_id.clone(),
        request: request_json,
        principal: principal.map(str::to_owned),
        created_at: now,
    };
    let outbox = NewOutbox {
        topic: TASK_TOPIC.into(),
        payload: TaskMessage::new(run_id).to_json(),
        available_at: now,
    };
    let admission = match due_key {
        Some(due_key) => Admission::Scheduled { due_key },
        None => Admission::Coalesce,
    };
    let record = match ctx.platform.db.admit_run(&run, &outbox, admission).await? {
        Admitted::Created(r) => r,
        // An identical sync is already queued or running: that run is the answer.
        Admitted::Coalesced(active) => return Ok(Started::Run(d, Box::new(active))),
        Admitted::DueTimeTaken => return Ok(Started::AlreadyStarted(d)),
    };
    ctx.platform.outbox_notify.notify_one();
    tracing::info!(run.id = %run_id, dataset.id = %ds.dataset_id, action = ?d.action, due = ?due_key, "sync started");
    Ok(Started::Run(d, Box::new(record)))
}

/// The schedule in force for a dataset — its override, else its template's, else none (only
/// explicit syncs) — where it comes from, and whether it is paused.
///
/// # Errors
/// [`SyncError::Db`].
pub async fn schedule_of(
    ctx: &Context,
    ds: &DatasetRecord,
) -> Result<(Option<String>, &'static str, bool), SyncError> {
    let row = ctx.platform.db.get_schedule(&ds.dataset_id).await?;
    let template = ctx
        .platform
        .catalog
        .get(&ds.template_id)
        .and_then(|t| t.template.sync.schedule.clone());
    let paused = row.as_ref().is_some_and(|r| r.paused);
    Ok(match (row.and_then(|r| r.schedule), template) {
        (Some(s), _) => (Some(s), "dataset", paused),
        (None, Some(s)) => (Some(s), "template", paused),
        (None, None) => (None, "none", paused),
    })
}

/// Whether a schedule is due at `now`, given the due key last acted on: `Some(Some(key))` for a
/// cron occurrence not yet acted on — only the newest, so occurrences missed while no scheduler
/// ran are replayed once, not once each — `Some(None)` for as-available schedules (their key
/// is the target period, known after planning), `None` when not due.
pub fn due(schedule: &Schedule, last: Option<&str>, now: NaiveDateTime) -> Option<Option<String>> {
    match schedule {
        Schedule::AsAvailable => Some(None),
        Schedule::Cron(c) => {
            let key = c
                .latest_at_or_before(now)?
                .format("%Y-%m-%dT%H:%M:00Z")
                .to_string();
            (last != Some(key.as_str())).then_some(Some(key))
        }
    }
}

/// The attempt number of `last` for due key `base` (`key` is attempt 1, `key#n` attempt n),
/// or `None` when `last` is another due time.
fn retry_of(last: &str, base: &str) -> Option<u32> {
    if last == base {
        return Some(1);
    }
    last.strip_prefix(base)?.strip_prefix('#')?.parse().ok()
}

/// One scheduler tick: for every managed dataset that syncs, is not paused and is due, plan
/// and start its sync. Returns the runs started.
///
/// # Errors
/// [`SyncError::Db`] when the datasets cannot be listed; problems with one dataset are logged
/// and do not stop the others.
pub async fn tick(ctx: &Context, now: DateTime<Utc>) -> Result<Vec<RunId>, SyncError> {
    let mut started = Vec::new();
    for ds in ctx.platform.db.list_datasets().await? {
        if ds.current_version.is_none() {
            continue;
        }
        match tick_one(ctx, &ds, now).await {
            Ok(Some(run_id)) => started.push(run_id),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(dataset.id = %ds.dataset_id, error = %e, "scheduled sync skipped")
            }
        }
    }
    Ok(started)
}

async fn tick_one(
    ctx: &Context,
    ds: &DatasetRecord,
    now: DateTime<Utc>,
) -> Result<Option<RunId>, SyncError> {
    let Some(loaded) = ctx.platform.catalog.get(&ds.template_id) else {
        return Ok(None);
    };
    if loaded.template.sync.kind == SyncKind::Static {
        return Ok(None);
    }
    let (Some(text), _, false) = schedule_of(ctx, ds).await? else {
        return Ok(None);
    };
    let schedule = Schedule::parse(&text).map_err(|e| SyncError::Invalid(e.to_string()))?;
    let last = ctx.platform.db.last_sync_tick(&ds.dataset_id).await?;
    let Some(cron_key) = due(
        &schedule,
        last.as_ref().map(|l| l.due_key.as_str()),
        now.naive_utc(),
    ) else {
        return Ok(None);
    };
    let (d, ds) = detail(ctx, ds.dataset_id.as_str(), None, now).await?;
    let base_key = match cron_key {
        Some(k) => k,
        None => match &d.delta_end {
            Some(end) => format!("available:{end}"),
            None => return Ok(None),
        },
    };
    // A due time whose run failed is tried again after a pause, under a numbered key, so
    // replicas still agree on exactly one run per attempt.
    let mut key = base_key.clone();
    if let Some(last) = &last
        && let Some(attempt) = retry_of(&last.due_key, &base_key)
    {
        let failed = ctx
            .platform
            .db
            .get_run(&last.run_id)
            .await?
            .is_some_and(|r| r.status == climate_domain::run::RunStatus::Failed);
        let pause = chrono::Duration::seconds(
            i64::try_from(ctx.platform.config.scheduler.tick_seconds.max(1) * 30)
                .unwrap_or(300)
                .min(3600),
        );
        if !failed || now - last.created_at < pause {
            return Ok(None);
        }
        key = format!("{base_key}#{}", attempt + 1);
    }
    match start(ctx, d, &ds, true, Some(&key), None, now).await? {
        Started::Run(_, run) => Ok(Some(run.run_id)),
        Started::AlreadyStarted(_) => {
            tracing::debug!(dataset.id = %ds.dataset_id, due = %key, "due time already started by another replica");
            Ok(None)
        }
        Started::Nothing(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").expect("time")
    }

    #[test]
    fn retries_of_a_due_time_are_numbered() {
        assert_eq!(
            retry_of("available:2024-01-05", "available:2024-01-05"),
            Some(1)
        );
        assert_eq!(
            retry_of("available:2024-01-05#3", "available:2024-01-05"),
            Some(3)
        );
        assert_eq!(
            retry_of("available:2024-01-04", "available:2024-01-05"),
            None
        );
        assert_eq!(
            retry_of("available:2024-01-05x", "available:2024-01-05"),
            None
        );
    }

    #[test]
    fn missed_cron_occurrences_are_replayed_once_as_the_newest() {
        let daily = Schedule::parse("0 6 * * *").expect("cron");
        // Down from the 18th 06:00 run until the 21st 07:00: one sync, for the 21st.
        assert_eq!(
            due(&daily, Some("2026-11-18T06:00:00Z"), at("2026-11-21T07:00")),
            Some(Some("2026-11-21T06:00:00Z".into()))
        );
        // Once acted on, not again until the next occurrence.
        assert_eq!(
            due(&daily, Some("2026-11-21T06:00:00Z"), at("2026-11-21T23:59")),
            None
        );
        assert_eq!(
            due(&daily, Some("2026-11-21T06:00:00Z"), at("2026-11-22T06:00")),
            Some(Some("2026-11-22T06:00:00Z".into()))
        );
        // Never run: the newest occurrence is due at once.
        assert_eq!(
            due(&daily, None, at("2026-11-21T05:00")),
            Some(Some("2026-11-20T06:00:00Z".into()))
        );
        assert_eq!(
            due(&Schedule::AsAvailable, None, at("2026-11-21T05:00")),
            Some(None)
        );
    }
}
