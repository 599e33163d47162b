//! `ingestion`, `sync` and `resample`: the platform's runs as processes. Each is admitted exactly as
//! `POST /ingestions` and `POST /sync/{id}` admit theirs (coalescing with an identical run);
//! the job then waits for its run without holding a worker — each look that finds the run
//! unfinished suspends the job ([`WorkError::Waiting`], the run's id kept as its state) and
//! looks again a little later — and ends as the run ends, its result the run's summary.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use climate_domain::run::RunStatus;
use climate_domain::template::METHODS;
use climate_domain::{DatasetId, ExtentId, Period, PeriodType, RunId, TemplateId};
use climate_infra::db::RunRecord;
use climate_ingest::admit::{self, AdmitError, Admitted, IngestionRequest};
use climate_ingest::sync::{self, Started, SyncError};
use climate_jobs::{JobContext, WorkError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{CheckError, Checked, Env, InputError, Output, Process};

/// How long a job waits before its first look again at its run; each look waits half as
/// long again as the one before, up to [`LOOK_AT_MOST`].
const LOOK_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two looks.
const LOOK_AT_MOST: Duration = Duration::from_secs(30);

/// The wait after the `n`th look.
fn look_after(n: u32) -> Duration {
    LOOK_FIRST
        .mul_f64(1.5f64.powi(i32::try_from(n).unwrap_or(i32::MAX)))
        .min(LOOK_AT_MOST)
}

fn failed(code: &str, message: impl Into<String>) -> WorkError {
    WorkError::Failed {
        code: code.to_owned(),
        message: message.into(),
    }
}

fn json_output(doc: &Value) -> Output {
    Output {
        media_type: "application/json",
        body: doc.to_string().into_bytes(),
    }
}

/// What a waiting job keeps between its looks at its run.
#[derive(Debug, Clone)]
struct RunWait {
    run_id: RunId,
    /// What the result adds to the run's summary.
    extra: Value,
    /// Looks so far.
    looks: u32,
}

impl RunWait {
    /// A run this attempt started (or joined).
    fn first(run_id: RunId, extra: Value) -> Self {
        Self {
            run_id,
            extra,
            looks: 0,
        }
    }
}

/// The run this job started on an earlier attempt, if any.
fn started_run(ctx: &JobContext) -> Option<RunWait> {
    let state = ctx.job().result.as_ref()?;
    let run_id = state["run_id"]
        .as_str()
        .and_then(|id| RunId::new(id).ok())?;
    Some(RunWait {
        run_id,
        extra: state["extra"].clone(),
        looks: state["looks"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
    })
}

fn run_summary(run: &RunRecord) -> Value {
    json!({
        "ingestion_id": run.run_id.to_string(),
        "kind": run.kind.as_str(),
        "status": run.status.as_str(),
        "dataset_id": run.dataset_id.as_str(),
        "version": run.version,
        "links": [{"rel": "run", "href": format!("/ingestions/{}", run.run_id), "type": "application/json"}],
    })
}

/// One look at the run: the result when it ended well, a failure when it did not, else a
/// suspension until the next look.
async fn look(env: &Env, ctx: &JobContext, wait: RunWait) -> Result<Output, WorkError> {
    let RunWait {
        run_id,
        extra,
        looks,
    } = wait;
    let extra = &extra;
    let run = env
        .db
        .get_run(&run_id)
        .await
        .map_err(|e| WorkError::Transient(e.to_string()))?
        .ok_or_else(|| failed("run_gone", format!("run {run_id} no longer exists")))?;
    let mut doc = run_summary(&run);
    if let (Some(d), Value::Object(extra)) = (doc.as_object_mut(), extra) {
        d.extend(extra.clone());
    }
    match run.status {
        RunStatus::Succeeded => Ok(json_output(&doc)),
        RunStatus::Failed => {
            let (code, message) = run
                .error
                .map_or(("failed".to_owned(), "the run failed".to_owned()), |e| {
                    (e.code, e.message)
                });
            Err(failed(&code, format!("run {run_id}: {message}")))
        }
        RunStatus::Cancelled => Err(failed("cancelled", format!("run {run_id} was cancelled"))),
        RunStatus::Queued | RunStatus::Running | RunStatus::Retrying => {
            ctx.report(
                run.progress.done,
                run.progress.total,
                run.progress.message.clone(),
            );
            Err(WorkError::Waiting {
                state: json!({"run_id": run_id.to_string(), "extra": extra, "looks": looks + 1}),
                after: look_after(looks),
                message: format!(
                    "run {run_id} is {}: {}",
                    run.status.as_str(),
                    run.progress.message
                ),
            })
        }
    }
}

/// The `ingestion` process.
#[derive(Debug)]
pub struct Ingestion;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestionInputs {
    dataset_id: String,
    start: String,
    #[serde(default)]
    end: Option<String>,
    #[serde(default)]
    extent_id: Option<String>,
    #[serde(default)]
    overwrite: bool,
    #[serde(default = "yes")]
    publish: bool,
}

fn yes() -> bool {
    true
}

fn ingestion_request(inputs: &Value) -> Result<IngestionRequest, InputError> {
    let i: IngestionInputs = serde_json::from_value(inputs.clone())
        .map_err(|e| InputError::new("inputs", e.to_string()))?;
    Ok(IngestionRequest {
        template: i.dataset_id,
        start: i.start,
        end: i.end,
        extent_id: i.extent_id,
        overwrite: i.overwrite,
        publish: i.publish,
        principal: None,
    })
}

fn admit_check_error(e: AdmitError) -> CheckError {
    match e {
        AdmitError::UnknownTemplate(_) | AdmitError::UnknownExtent(_) => {
            CheckError::UnknownDataset(e.to_string())
        }
        AdmitError::Invalid { field, message } => InputError::new(field, message).into(),
        AdmitError::Range(m) => InputError::new("end", m).into(),
        AdmitError::Db(e) => CheckError::Unavailable(e.to_string()),
    }
}

#[async_trait]
impl Process for Ingestion {
    fn id(&self) -> &'static str {
        "ingestion"
    }

    fn title(&self) -> &'static str {
        "Ingestion"
    }

    fn summary(&self) -> &'static str {
        "Ingests a dataset template's periods into a managed dataset, as POST /ingestions does (an identical run already queued or running is joined); the job ends when the run ends, with the run's summary. Dismissing the job stops the waiting, not the run, which other requests may share (DELETE /ingestions/{id} cancels it). Needs the ingest scope."
    }

    fn writes(&self) -> bool {
        true
    }

    fn interface(&self) -> Value {
        json!({
            "inputs": {
                "dataset_id": {"title": "Template", "description": "A dataset template (GET /dataset-templates).", "schema": {"type": "string"}},
                "start": {"title": "First period", "description": "Canonical (2024-01-31, 2024-W05, 2024-01, 2024) or an ISO date, floored to the template's period type.", "schema": {"type": "string"}},
                "end": {"title": "Last period", "description": "Inclusive; up to the latest available when absent.", "minOccurs": 0, "schema": {"type": "string"}},
                "extent_id": {"title": "Extent", "description": "The default extent when absent (GET /extent).", "minOccurs": 0, "schema": {"type": "string"}},
                "overwrite": {"title": "Overwrite", "description": "Re-materialise even when the current version covers the scope.", "minOccurs": 0, "schema": {"type": "boolean", "default": false}},
                "publish": {"title": "Publish", "minOccurs": 0, "schema": {"type": "boolean", "default": true}}
            },
            "outputs": {
                "result": {"title": "Run", "description": "{ingestion_id, kind, status, dataset_id, version, links}; `status: covered` with the current version when it already covered the scope.", "schema": {"type": "object", "contentMediaType": "application/json"}}
            }
        })
    }

    async fn check(&self, env: &Env, inputs: &Value) -> Result<Checked, CheckError> {
        let req = ingestion_request(inputs)?;
        admit::validate(&env.ingest.platform, &req).map_err(admit_check_error)?;
        Ok(Checked {
            cells: 0,
            inputs: inputs.clone(),
        })
    }

    async fn execute(
        &self,
        env: &Env,
        ctx: &JobContext,
        inputs: &Value,
    ) -> Result<Output, WorkError> {
        if let Some(started) = started_run(ctx) {
            return look(env, ctx, started).await;
        }
        let mut req =
            ingestion_request(inputs).map_err(|e| failed("invalid_inputs", e.to_string()))?;
        req.principal = Some(ctx.job().principal.clone());
        match admit::ingestion(&env.ingest.platform, &req, Utc::now()).await {
            Ok(Admitted::Covered { dataset, version }) => Ok(json_output(&json!({
                "status": "covered",
                "dataset_id": dataset.dataset_id.as_str(),
                "version": version.version,
                "links": [{"rel": "dataset", "href": format!("/datasets/{}", dataset.dataset_id), "type": "application/json"}],
            }))),
            Ok(Admitted::Run { run, .. }) => {
                look(env, ctx, RunWait::first(run.run_id, Value::Null)).await
            }
            Err(AdmitError::Db(e)) => Err(WorkError::Transient(e.to_string())),
            Err(e) => Err(failed("invalid_inputs", e.to_string())),
        }
    }
}

/// The `sync` process.
#[derive(Debug)]
pub struct Sync;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncInputs {
    dataset_id: String,
    #[serde(default)]
    end: Option<String>,
    #[serde(default = "yes")]
    publish: bool,
}

fn sync_inputs(inputs: &Value) -> Result<SyncInputs, InputError> {
    serde_json::from_value(inputs.clone()).map_err(|e| InputError::new("inputs", e.to_string()))
}

#[async_trait]
impl Process for Sync {
    fn id(&self) -> &'static str {
        "sync"
    }

    fn title(&self) -> &'static str {
        "Sync"
    }

    fn summary(&self) -> &'static str {
        "Brings a managed dataset up to date with its provider, as POST /sync/{id} does (respecting the provider's publishing delay); the job ends when the run ends, with the sync plan and the run's summary, or at once when there is nothing to do. Dismissing the job stops the waiting, not the run (DELETE /ingestions/{id} cancels it). Needs the ingest scope."
    }

    fn writes(&self) -> bool {
        true
    }

    fn interface(&self) -> Value {
        json!({
            "inputs": {
                "dataset_id": {"title": "Dataset", "description": "A managed dataset (GET /datasets).", "schema": {"type": "string"}},
                "end": {"title": "Last period", "description": "The last period to reach (default: today, clamped by the template's availability).", "minOccurs": 0, "schema": {"type": "string"}},
                "publish": {"title": "Publish", "minOccurs": 0, "schema": {"type": "boolean", "default": true}}
            },
            "outputs": {
                "result": {"title": "Sync", "description": "{sync: the plan, ingestion_id, status, dataset_id, version, links}; without a run when the dataset was up to date.", "schema": {"type": "object", "contentMediaType": "application/json"}}
            }
        })
    }

    async fn check(&self, env: &Env, inputs: &Value) -> Result<Checked, CheckError> {
        let i = sync_inputs(inputs)?;
        sync::detail(&env.ingest, &i.dataset_id, i.end.as_deref(), Utc::now())
            .await
            .map_err(|e| match e {
                SyncError::UnknownDataset(_) => CheckError::UnknownDataset(e.to_string()),
                SyncError::Invalid(m) => InputError::new("end", m).into(),
                other => CheckError::Unavailable(other.to_string()),
            })?;
        Ok(Checked {
            cells: 0,
            inputs: inputs.clone(),
        })
    }

    async fn execute(
        &self,
        env: &Env,
        ctx: &JobContext,
        inputs: &Value,
    ) -> Result<Output, WorkError> {
        if let Some(started) = started_run(ctx) {
            return look(env, ctx, started).await;
        }
        let i = sync_inputs(inputs).map_err(|e| failed("invalid_inputs", e.to_string()))?;
        let now = Utc::now();
        let work_error = |e: SyncError| match e {
            SyncError::UnknownDataset(_) | SyncError::Invalid(_) => {
                failed("invalid_inputs", e.to_string())
            }
            other => WorkError::Transient(other.to_string()),
        };
        let (d, ds) = sync::detail(&env.ingest, &i.dataset_id, i.end.as_deref(), now)
            .await
            .map_err(work_error)?;
        match sync::start(
            &env.ingest,
            d,
            &ds,
            i.publish,
            None,
            Some(&ctx.job().principal),
            now,
        )
        .await
        .map_err(work_error)?
        {
            Started::Nothing(d) | Started::AlreadyStarted(d) => Ok(json_output(&json!({
                "sync": d,
                "status": "nothing_to_do",
                "dataset_id": i.dataset_id,
            }))),
            Started::Run(d, run) => {
                look(env, ctx, RunWait::first(run.run_id, json!({"sync": d}))).await
            }
        }
    }
}

/// The `resample` process: a derived managed dataset (e.g. the monthly sums of a daily one),
/// ingested from the stored source and published like any other; it follows its source as it
/// syncs.
#[derive(Debug)]
pub struct Resample;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResampleInputs {
    dataset_id: String,
    period_type: String,
    temporal_method: String,
    #[serde(default)]
    publish: Option<bool>,
}

/// A checked resampling: the source dataset, the derived template and the span it covers.
struct Derivation {
    source: DatasetId,
    extent: ExtentId,
    template: TemplateId,
    span: (Period, Period),
    publish: bool,
}

async fn derivation(env: &Env, inputs: &Value) -> Result<Derivation, CheckError> {
    let i: ResampleInputs = serde_json::from_value(inputs.clone())
        .map_err(|e| InputError::new("inputs", e.to_string()))?;
    let bad = |input: &str, m: String| CheckError::from(InputError::new(input, m));
    let target: PeriodType = match i.period_type.as_str() {
        "daily" => PeriodType::Daily,
        "weekly" => PeriodType::Weekly,
        "monthly" => PeriodType::Monthly,
        "yearly" => PeriodType::Yearly,
        other => {
            return Err(bad(
                "period_type",
                format!("'{other}' is not daily, weekly, monthly or yearly"),
            ));
        }
    };
    let method = METHODS
        .into_iter()
        .find(|m| m.as_str() == i.temporal_method)
        .ok_or_else(|| {
            bad(
                "temporal_method",
                format!("'{}' is not mean, sum, min or max", i.temporal_method),
            )
        })?;
    let unknown = || {
        CheckError::UnknownDataset(format!(
            "no managed dataset '{}' with a version; GET /datasets lists them",
            i.dataset_id
        ))
    };
    let source = DatasetId::new(&i.dataset_id).map_err(|_| unknown())?;
    let ds = env
        .db
        .get_dataset(&source)
        .await
        .map_err(|e| CheckError::Unavailable(e.to_string()))?
        .filter(|d| d.current_version.is_some())
        .ok_or_else(unknown)?;
    let platform = &env.ingest.platform;
    let loaded = platform.catalog.get(&ds.template_id).ok_or_else(|| {
        CheckError::Unavailable(format!(
            "the template of '{}' is no longer configured",
            ds.dataset_id
        ))
    })?;
    let derived = loaded
        .template
        .derived(target, method)
        .map_err(|e| bad("period_type", e.message))?;
    if platform.catalog.get(&derived.id).is_none() {
        return Err(bad(
            "period_type",
            format!(
                "template '{}' is declared on this instance as another template, so it is not derived",
                derived.id
            ),
        ));
    }
    let span = climate_ingest::derived::available(&env.ingest, &source, target)
        .await
        .map_err(|e| CheckError::Unavailable(e.to_string()))?
        .ok_or_else(|| {
            bad(
                "period_type",
                format!(
                    "'{}' covers no whole {} period yet",
                    i.dataset_id,
                    target.as_str()
                ),
            )
        })?;
    Ok(Derivation {
        source,
        extent: ds.extent_id,
        template: derived.id,
        span,
        // An unpublished source makes an unpublished derived dataset unless asked otherwise.
        publish: i.publish.unwrap_or(ds.published),
    })
}

#[async_trait]
impl Process for Resample {
    fn id(&self) -> &'static str {
        "resample"
    }

    fn title(&self) -> &'static str {
        "Resample in time"
    }

    fn summary(&self) -> &'static str {
        "Makes a derived managed dataset of a dataset's periods aggregated in time (e.g. the monthly sums of daily rainfall: dataset id {template}_{period_type}_{method}_{extent}), published like any other at /datasets, /zarr, /stac and /ogcapi and kept current as its source syncs. Only whole periods are kept, and a cell missing on any source period is missing in the result. Needs the ingest scope."
    }

    fn writes(&self) -> bool {
        true
    }

    fn interface(&self) -> Value {
        json!({
            "inputs": {
                "dataset_id": {"title": "Source", "description": "A managed dataset synced in time (GET /datasets).", "schema": {"type": "string"}},
                "period_type": {"title": "Period type", "description": "Coarser than the source's, and holding whole source periods (weeks do not fit in months).", "schema": {"type": "string", "enum": ["daily", "weekly", "monthly", "yearly"]}},
                "temporal_method": {"title": "Aggregation", "schema": {"type": "string", "enum": ["mean", "sum", "min", "max"]}},
                "publish": {"title": "Publish", "description": "Whether the derived dataset is public (default: as its source is).", "minOccurs": 0, "schema": {"type": "boolean"}}
            },
            "outputs": {
                "result": {"title": "Run", "description": "{ingestion_id, kind, status, dataset_id (the derived dataset), version, source, links}; `status: covered` when the derived dataset is current already.", "schema": {"type": "object", "contentMediaType": "application/json"}}
            }
        })
    }

    async fn check(&self, env: &Env, inputs: &Value) -> Result<Checked, CheckError> {
        derivation(env, inputs).await?;
        Ok(Checked {
            cells: 0,
            inputs: inputs.clone(),
        })
    }

    async fn execute(
        &self,
        env: &Env,
        ctx: &JobContext,
        inputs: &Value,
    ) -> Result<Output, WorkError> {
        if let Some(started) = started_run(ctx) {
            return look(env, ctx, started).await;
        }
        let d = derivation(env, inputs).await.map_err(|e| match e {
            CheckError::Unavailable(m) => WorkError::Transient(m),
            other => failed("invalid_inputs", other.to_string()),
        })?;
        let extra = json!({"source": d.source.as_str()});
        let derived = DatasetId::managed(&d.template, &d.extent);
        let exists = env
            .db
            .get_dataset(&derived)
            .await
            .map_err(|e| WorkError::Transient(e.to_string()))?
            .is_some_and(|ds| ds.current_version.is_some());
        let now = Utc::now();
        if exists {
            // Already derived: bring it up to its source.
            let work_error = |e: SyncError| WorkError::Transient(e.to_string());
            let (plan, ds) = sync::detail(&env.ingest, derived.as_str(), None, now)
                .await
                .map_err(work_error)?;
            return match sync::start(
                &env.ingest,
                plan,
                &ds,
                d.publish,
                None,
                Some(&ctx.job().principal),
                now,
            )
            .await
            .map_err(work_error)?
            {
                Started::Run(_, run) => {
                    look(env, ctx, RunWait::first(run.run_id, extra.clone())).await
                }
                Started::Nothing(_) | Started::AlreadyStarted(_) => Ok(json_output(&json!({
                    "status": "covered",
                    "dataset_id": derived.as_str(),
                    "source": d.source.as_str(),
                    "links": [{"rel": "dataset", "href": format!("/datasets/{derived}"), "type": "application/json"}],
                }))),
            };
        }
        let req = IngestionRequest {
            template: d.template.to_string(),
            start: d.span.0.canonical(),
            end: Some(d.span.1.canonical()),
            extent_id: Some(d.extent.to_string()),
            overwrite: false,
            publish: d.publish,
            principal: Some(ctx.job().principal.clone()),
        };
        match admit::ingestion(&env.ingest.platform, &req, now).await {
            Ok(Admitted::Covered { dataset, .. }) => Ok(json_output(&json!({
                "status": "covered",
                "dataset_id": dataset.dataset_id.as_str(),
                "source": d.source.as_str(),
            }))),
            Ok(Admitted::Run { run, .. }) => {
                look(env, ctx, RunWait::first(run.run_id, extra.clone())).await
            }
            Err(AdmitError::Db(e)) => Err(WorkError::Transient(e.to_string())),
            Err(e) => Err(failed("invalid_inputs", e.to_string())),
        }
    }
}
