//! OGC API – Processes 1.0 under `/ogcapi`: the process list and descriptions, execution
//! (synchronous, or asynchronous with `Prefer: respond-async`), and the caller's jobs (status,
//! results, dismissal).
//!
//! Every execution is a durable job on the job engine, written before the answer: an
//! asynchronous one answers 201 with the job's `Location`; a synchronous one waits for its job
//! (up to `processes.sync_wait_seconds`, then answers as an asynchronous one would) and answers
//! its result. A request larger than `processes.sync_max_cells` is refused in synchronous mode
//! (413 naming the asynchronous route), and a principal has at most
//! `processes.max_active_jobs` unfinished jobs (429).

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use climate_domain::auth::Scope;
use climate_domain::ids::JobId;
use climate_domain::run::RunStatus;
use climate_infra::db::JobRecord;
use climate_jobs::{Observed, job_updates};
use climate_processes::{CheckError, KIND, ProcessWork, Processes, ResultRef};
use object_store::ObjectStoreExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::state::{AppState, BaseUrl};

const JSON: &str = "application/json";

/// The id jobs are owned by: the principal's subject, or `anonymous`.
fn owner(principal: Option<&Principal>) -> String {
    Principal::subject_of(principal)
}

fn unknown_process(id: &str) -> ApiError {
    ApiError::not_found(
        ErrorCode::UnknownProcess,
        format!("no process '{id}'; GET /ogcapi/processes lists them"),
    )
}

fn unknown_job(id: &str) -> ApiError {
    ApiError::not_found(
        ErrorCode::UnknownJob,
        format!("no job '{id}' of yours; GET /ogcapi/jobs lists them"),
    )
}

/// The caller's job `id`; another principal's job is not found.
async fn own_job(
    state: &AppState,
    principal: Option<&Principal>,
    id: &str,
) -> Result<JobRecord, ApiError> {
    let job_id = JobId::new(id).map_err(|_| unknown_job(id))?;
    state
        .platform
        .db
        .get_job(job_id)
        .await?
        .filter(|j| j.kind == KIND && j.principal == owner(principal))
        .ok_or_else(|| unknown_job(id))
}

fn time(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| {
        json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    })
}

/// The OGC `statusInfo` of a job.
fn status_info(job: &JobRecord, base: &BaseUrl) -> Value {
    let id = job.job_id;
    let status = ogc_status(job.status);
    let mut links = vec![
        json!({"rel": "self", "href": base.join(&format!("/ogcapi/jobs/{id}")), "type": JSON}),
    ];
    if job.status == RunStatus::Succeeded {
        links.push(json!({"rel": "http://www.opengis.net/def/rel/ogc/1.0/results", "href": base.join(&format!("/ogcapi/jobs/{id}/results"))}));
    }
    let message = match (&job.error, job.status) {
        (Some(e), RunStatus::Failed | RunStatus::Retrying) => format!("{}: {}", e.code, e.message),
        _ => job.progress.message.clone(),
    };
    json!({
        "jobID": id.to_string(),
        "processID": job.inputs["process"],
        "type": "process",
        "status": status,
        "message": message,
        "created": time(Some(job.created_at)),
        "started": time(job.started_at),
        "finished": time(job.finished_at),
        "updated": time(Some(job.updated_at)),
        "progress": job.progress.percent().round() as u64,
        "links": links,
    })
}

/// `GET /ogcapi/processes`
#[utoipa::path(get, path = "/ogcapi/processes", tag = "ogcapi",
    responses((status = 200, description = "The processes this instance runs (OGC process summaries)")))]
pub async fn list_processes(State(state): State<AppState>, base: BaseUrl) -> Json<Value> {
    let processes: Vec<Value> = state
        .processes
        .iter()
        .map(|p| {
            let mut s = Processes::summary(p.as_ref());
            s["links"] = json!([{"rel": "self", "href": base.join(&format!("/ogcapi/processes/{}", p.id())), "type": JSON}]);
            s
        })
        .collect();
    Json(json!({
        "processes": processes,
        "links": [{"rel": "self", "href": base.join("/ogcapi/processes"), "type": JSON}],
    }))
}

/// `GET /ogcapi/processes/{id}`
#[utoipa::path(get, path = "/ogcapi/processes/{id}", tag = "ogcapi",
    params(("id" = String, Path, description = "process id")),
    responses((status = 200, description = "The process description: inputs and outputs as JSON schemas"),
              (status = 404, body = ErrorBody)))]
pub async fn get_process(
    State(state): State<AppState>,
    base: BaseUrl,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let p = state
        .processes
        .get(&id)
        .ok_or_else(|| unknown_process(&id))?;
    let mut d = Processes::description(p.as_ref());
    d["links"] = json!([
        {"rel": "self", "href": base.join(&format!("/ogcapi/processes/{id}")), "type": JSON},
        {"rel": "http://www.opengis.net/def/rel/ogc/1.0/execute", "href": base.join(&format!("/ogcapi/processes/{id}/execution")), "type": JSON},
    ]);
    Ok(Json(d))
}

/// An execute request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Execute {
    /// The process inputs by name.
    #[serde(default)]
    pub inputs: Value,
    /// Accepted and ignored: every process has one output, returned by value.
    #[serde(default)]
    pub outputs: Option<Value>,
    /// Accepted and ignored: results are returned as the output document itself.
    #[serde(default)]
    pub response: Option<String>,
}

/// `POST /ogcapi/processes/{id}/execution`: runs the process as a job. With
/// `Prefer: respond-async`: 201 and the job's `Location`; otherwise the result once the job
/// finished (413 when the request is too large to answer at once).
#[utoipa::path(post, path = "/ogcapi/processes/{id}/execution", tag = "ogcapi",
    params(("id" = String, Path, description = "process id"),
           ("Prefer" = Option<String>, Header, description = "`respond-async` to run it asynchronously")),
    request_body = Execute,
    responses((status = 200, description = "The result (synchronous execution)"),
              (status = 201, description = "The job was created (asynchronous execution); `Location` names it"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 413, body = ErrorBody, description = "too large for synchronous execution"),
              (status = 429, body = ErrorBody, description = "too many unfinished jobs")))]
pub async fn execute(
    State(state): State<AppState>,
    base: BaseUrl,
    principal: Option<axum::Extension<Principal>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Execute>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let principal = principal.map(|p| p.0);
    let p = state
        .processes
        .get(&id)
        .ok_or_else(|| unknown_process(&id))?;
    if p.writes() && !principal.as_ref().is_some_and(|p| p.can(Scope::Ingest)) {
        return Err(ApiError::new(
            ErrorCode::InsufficientScope,
            format!("process '{id}' writes to the catalog: it needs the ingest scope"),
        ));
    }
    let asynchronous = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
        });
    let checked = p
        .check(&state.process_env, &body.inputs)
        .await
        .map_err(|e| match e {
            CheckError::Input(e) => ApiError::bad_request(e.to_string()),
            CheckError::UnknownDataset(m) => ApiError::not_found(ErrorCode::UnknownDataset, m),
            CheckError::UnknownFeatures(m) => {
                ApiError::not_found(ErrorCode::UnknownFeatureCollection, m)
            }
            CheckError::Unavailable(m) => ApiError::unavailable("catalog", m),
        })?;
    let limits = &state.platform.config.processes;
    if !asynchronous && checked.cells > limits.sync_max_cells {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "this request reads {} grid values, more than the {} answered at once: run it asynchronously (header `Prefer: respond-async`; the answer is 201 with the job's Location, whose results follow at /ogcapi/jobs/{{id}}/results)",
                checked.cells, limits.sync_max_cells
            ),
        ));
    }
    let who = owner(principal.as_ref());
    let db = &state.platform.db;
    let active = db.count_active_jobs(&who).await?;
    if active >= limits.max_active_jobs {
        return Err(ApiError::new(
            ErrorCode::TooManyJobs,
            format!(
                "you have {active} unfinished jobs, the most allowed: wait for one to finish (GET /ogcapi/jobs) or dismiss one"
            ),
        ));
    }
    let job = climate_jobs::submit(
        db.as_ref(),
        KIND,
        &who,
        ProcessWork::job_inputs(&id, &checked.inputs),
        Utc::now(),
    )
    .await?;
    state.platform.outbox_notify.notify_one();
    tracing::info!(job.id = %job.job_id, process = %id, asynchronous, "process execution accepted");
    if !asynchronous {
        let mut updates = Box::pin(job_updates(
            db.clone(),
            job.job_id,
            Duration::from_millis(100),
            state.shutdown.clone(),
        ));
        let finished = tokio::time::timeout(limits.sync_wait(), async {
            use futures::StreamExt as _;
            while let Some(u) = updates.next().await {
                if let Observed::Finished(_) = u {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        if finished && let Some(done) = db.get_job(job.job_id).await? {
            return results_of(&state, &done).await;
        }
    }
    let mut headers = HeaderMap::new();
    let location = base.join(&format!("/ogcapi/jobs/{}", job.job_id));
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).map_err(ApiError::internal)?,
    );
    if asynchronous {
        headers.insert(
            "preference-applied",
            HeaderValue::from_static("respond-async"),
        );
    }
    Ok((StatusCode::CREATED, headers, Json(status_info(&job, &base))).into_response())
}

/// A finished job's answer: its output, or the error it failed with.
async fn results_of(state: &AppState, job: &JobRecord) -> Result<Response, ApiError> {
    match job.status {
        RunStatus::Succeeded => {
            let r: ResultRef = serde_json::from_value(job.result.clone().unwrap_or(Value::Null))
                .map_err(|e| {
                    ApiError::internal(format!("job {} result reference: {e}", job.job_id))
                })?;
            let bytes = state
                .platform
                .store
                .object_store()
                .get(&object_store::path::Path::from(r.key.as_str()))
                .await
                .map_err(|e| ApiError::unavailable("object store", e))?
                .bytes()
                .await
                .map_err(|e| ApiError::unavailable("object store", e))?;
            let media = HeaderValue::from_str(&r.media_type).map_err(ApiError::internal)?;
            Ok(([(header::CONTENT_TYPE, media)], bytes).into_response())
        }
        RunStatus::Failed => {
            let e = job
                .error
                .clone()
                .unwrap_or_else(|| climate_infra::db::RunError {
                    code: "failed".into(),
                    message: "the job failed".into(),
                });
            Err(ApiError::new(
                ErrorCode::JobFailed,
                format!("job {} failed: {}: {}", job.job_id, e.code, e.message),
            ))
        }
        RunStatus::Cancelled => Err(ApiError::not_found(
            ErrorCode::ResultNotReady,
            format!("job {} was dismissed: it has no results", job.job_id),
        )),
        _ => Err(ApiError::not_found(
            ErrorCode::ResultNotReady,
            format!(
                "job {} has not finished; GET /ogcapi/jobs/{} shows its progress",
                job.job_id, job.job_id
            ),
        )),
    }
}

/// Query of `GET /ogcapi/jobs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Continue after this job id (from the `next` link).
    pub cursor: Option<String>,
    /// Only jobs of this process (a page may then hold fewer than `limit`).
    #[serde(rename = "processID")]
    pub process_id: Option<String>,
    /// Only jobs in this status: `accepted`, `running`, `successful`, `failed`, `dismissed`
    /// (a page may then hold fewer than `limit`).
    pub status: Option<String>,
    /// Only jobs of this type: `process` (the only one here).
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// The OGC status of a job's status.
fn ogc_status(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Queued => "accepted",
        RunStatus::Running | RunStatus::Retrying => "running",
        RunStatus::Succeeded => "successful",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "dismissed",
    }
}

/// `GET /ogcapi/jobs`: the caller's process jobs, newest first, a page at a time.
#[utoipa::path(get, path = "/ogcapi/jobs", tag = "ogcapi", params(JobsQuery),
    responses((status = 200, description = "The caller's jobs (OGC statusInfo documents), with a `next` link when more exist"),
              (status = 400, body = ErrorBody)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    base: BaseUrl,
    principal: Option<axum::Extension<Principal>>,
    query: Result<axum::extract::Query<JobsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let axum::extract::Query(q) = query?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit: must be between 1 and 1000"));
    }
    let before = q
        .cursor
        .as_deref()
        .map(JobId::new)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("cursor: {e}")))?;
    const STATUSES: [&str; 5] = ["accepted", "running", "successful", "failed", "dismissed"];
    if let Some(s) = q.status.as_deref()
        && !STATUSES.contains(&s)
    {
        return Err(ApiError::bad_request(format!(
            "status: '{s}' is not one of {}",
            STATUSES.join(", ")
        )));
    }
    if let Some(t) = q.kind.as_deref()
        && t != "process"
    {
        return Err(ApiError::bad_request(format!(
            "type: '{t}' is not a job type here; use process"
        )));
    }
    let wanted = |j: &JobRecord| {
        q.process_id
            .as_deref()
            .is_none_or(|p| j.inputs["process"].as_str() == Some(p))
            && q.status
                .as_deref()
                .is_none_or(|s| ogc_status(j.status) == s)
    };
    let filter = climate_infra::db::JobFilter {
        principal: Some(owner(principal.as_ref().map(|p| &p.0))),
        kind: Some(KIND.to_owned()),
        before,
        limit: limit + 1,
    };
    let found = state.platform.db.list_jobs(&filter).await?;
    let more = found.len() > limit as usize;
    let page = &found[..found.len().min(limit as usize)];
    let jobs: Vec<Value> = page
        .iter()
        .filter(|j| wanted(j))
        .map(|j| status_info(j, &base))
        .collect();
    let mut params = format!("limit={limit}");
    for (name, value) in [
        ("processID", &q.process_id),
        ("status", &q.status),
        ("type", &q.kind),
    ] {
        if let Some(v) = value {
            params.push_str(&format!("&{name}={v}"));
        }
    }
    let mut links = vec![
        json!({"rel": "self", "href": base.join(&format!("/ogcapi/jobs?{params}")), "type": JSON}),
    ];
    if more && let Some(last) = page.last() {
        links.push(json!({"rel": "next", "href": base.join(&format!("/ogcapi/jobs?{params}&cursor={}", last.job_id)), "type": JSON}));
    }
    Ok(Json(json!({"jobs": jobs, "links": links})))
}

/// `GET /ogcapi/jobs/{id}`
#[utoipa::path(get, path = "/ogcapi/jobs/{id}", tag = "ogcapi",
    params(("id" = String, Path, description = "job id")),
    responses((status = 200, description = "The job's statusInfo"), (status = 404, body = ErrorBody)))]
pub async fn get_job(
    State(state): State<AppState>,
    base: BaseUrl,
    principal: Option<axum::Extension<Principal>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = own_job(&state, principal.as_ref().map(|p| &p.0), &id).await?;
    Ok(Json(status_info(&job, &base)))
}

/// `GET /ogcapi/jobs/{id}/results`
#[utoipa::path(get, path = "/ogcapi/jobs/{id}/results", tag = "ogcapi",
    params(("id" = String, Path, description = "job id")),
    responses((status = 200, description = "The job's output"),
              (status = 404, body = ErrorBody, description = "no such job, or it has not finished"),
              (status = 500, body = ErrorBody, description = "the job failed")))]
pub async fn get_results(
    State(state): State<AppState>,
    principal: Option<axum::Extension<Principal>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = own_job(&state, principal.as_ref().map(|p| &p.0), &id).await?;
    results_of(&state, &job).await
}

/// `DELETE /ogcapi/jobs/{id}`: dismisses a job: an unfinished one is cancelled (its worker
/// stops at its next heartbeat), a finished one and its result are removed.
#[utoipa::path(delete, path = "/ogcapi/jobs/{id}", tag = "ogcapi",
    params(("id" = String, Path, description = "job id")),
    responses((status = 200, description = "The job's statusInfo, `dismissed`"), (status = 404, body = ErrorBody)))]
pub async fn dismiss(
    State(state): State<AppState>,
    base: BaseUrl,
    principal: Option<axum::Extension<Principal>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = own_job(&state, principal.as_ref().map(|p| &p.0), &id).await?;
    let db = &state.platform.db;
    let mut shown = if job.status.is_terminal() {
        // The job's result goes with it, as when it expires.
        climate_infra::housekeeping::remove_job(&state.platform, job.job_id)
            .await
            .map_err(|e| ApiError::unavailable("object store", e))?;
        job
    } else {
        {
            let now = Utc::now();
            let keep = chrono::Duration::from_std(state.platform.config.processes.retention())
                .unwrap_or(chrono::Duration::days(7));
            db.cancel_job(job.job_id, now, now + keep)
                .await?
                .unwrap_or(job)
        }
    };
    shown.status = RunStatus::Cancelled;
    Ok(Json(status_info(&shown, &base)))
}
