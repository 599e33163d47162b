//! `ingestion` and `sync`: the platform's runs as processes. Each is admitted exactly as
//! `POST /ingestions` and `POST /sync/{id}` admit theirs (coalescing with an identical run);
//! the job then waits for its run without holding a worker — each look that finds the run
//! unfinished suspends the job ([`WorkError::Waiting`], the run's id kept as its state) and
//! looks again a little later — and ends as the run ends, its result the run's summary.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use climate_domain::RunId;
use climate_domain::run::RunStatus;
use climate_infra::db::RunRecord;
use climate_ingest::admit::{self, AdmitError, Admitted, IngestionRequest};
use climate_ingest::sync::{self, Started, SyncError};
use climate_jobs::{JobContext, WorkError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{CheckError, Checked, Env, InputError, Output, Process};

/// How long a job waits between looks at its run.
const LOOK_EVERY: Duration = Duration::from_secs(1);

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

/// The run this job started on an earlier attempt, if any, and what its result adds to the
/// run's summary.
fn started_run(ctx: &JobContext) -> Option<(RunId, Value)> {
    let state = ctx.job().result.as_ref()?;
    let id = state["run_id"]
        .as_str()
        .and_then(|id| RunId::new(id).ok())?;
    Some((id, state["extra"].clone()))
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

/// One look at `run_id`: the result when it ended well, a failure when it did not, else a
/// suspension until the next look.
async fn look(
    env: &Env,
    ctx: &JobContext,
    run_id: RunId,
    extra: &Value,
) -> Result<Output, WorkError> {
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
                state: json!({"run_id": run_id.to_string(), "extra": extra}),
                after: LOOK_EVERY,
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
        "Ingests a dataset template's periods into a managed dataset, as POST /ingestions does (an identical run already queued or running is joined); the job ends when the run ends, with the run's summary. Needs the ingest scope."
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
        if let Some((run_id, extra)) = started_run(ctx) {
            return look(env, ctx, run_id, &extra).await;
        }
        let req = ingestion_request(inputs).map_err(|e| failed("invalid_inputs", e.to_string()))?;
        match admit::ingestion(&env.ingest.platform, &req, Utc::now()).await {
            Ok(Admitted::Covered { dataset, version }) => Ok(json_output(&json!({
                "status": "covered",
                "dataset_id": dataset.dataset_id.as_str(),
                "version": version.version,
                "links": [{"rel": "dataset", "href": format!("/datasets/{}", dataset.dataset_id), "type": "application/json"}],
            }))),
            Ok(Admitted::Run { run, .. }) => look(env, ctx, run.run_id, &Value::Null).await,
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
        "Brings a managed dataset up to date with its provider, as POST /sync/{id} does (respecting the provider's publishing delay); the job ends when the run ends, with the sync plan and the run's summary, or at once when there is nothing to do. Needs the ingest scope."
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
        if let Some((run_id, extra)) = started_run(ctx) {
            return look(env, ctx, run_id, &extra).await;
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
        match sync::start(&env.ingest, d, &ds, i.publish, None, now)
            .await
            .map_err(work_error)?
        {
            Started::Nothing(d) | Started::AlreadyStarted(d) => Ok(json_output(&json!({
                "sync": d,
                "status": "nothing_to_do",
                "dataset_id": i.dataset_id,
            }))),
            Started::Run(d, run) => look(env, ctx, run.run_id, &json!({"sync": d})).await,
        }
    }
}
