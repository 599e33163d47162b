//! `/sync`: keeping managed datasets current (SPEC §7): `GET /sync/{id}/plan` is the dry run,
//! `POST /sync/{id}` executes it as a run of kind `sync` (an append writes only the new time
//! chunks and reuses the current version's others).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use climate_domain::Period;
use climate_domain::run::{RunKind, RunRequest};
use climate_domain::sync::{self, SyncAction, SyncDetail};
use climate_infra::db::{NewOutbox, NewRun};
use climate_infra::messages::{TASK_TOPIC, TaskMessage};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::routes::ingestions::location;
use crate::routes::ogc::Query;
use crate::state::{AppState, BaseUrl};
use crate::views::{RunView, current_version};

/// `GET /sync/{id}/plan?end=`: what a sync of the dataset would do now, without doing it.
#[utoipa::path(get, path = "/sync/{id}/plan", tag = "sync",
    params(("id" = String, Path, description = "dataset id"),
           ("end" = Option<String>, Query, description = "last period to reach (default: today, clamped by the template's availability)")),
    responses((status = 200, description = "SyncDetail (SPEC §7)"),
              (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn plan(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<SyncDetail>, ApiError> {
    let q = Query::parse(raw, &["end"])?;
    Ok(Json(detail(&state, &id, q.one("end")?).await?))
}

/// Plans a sync of dataset `id` to `end` (or today) now.
async fn detail(state: &AppState, id: &str, end: Option<&str>) -> Result<SyncDetail, ApiError> {
    let (ds, version) = current_version(state, id).await?;
    let template = state
        .platform
        .catalog
        .get_str(&ds.template_id)
        .ok_or_else(|| {
            ApiError::internal(format!(
                "template '{}' of dataset '{id}' is no longer configured",
                ds.template_id
            ))
        })?;
    let t = &template.template;
    let kind = t.period_type;
    let period = |s: &str, what: &str| {
        Period::parse(kind, s).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
    };
    let current = (
        period(&version.coverage_start, "stored coverage")?,
        period(&version.coverage_end, "stored coverage")?,
    );
    let end = end.map(|e| period(e, "end")).transpose()?;
    if let Some(e) = end
        && e < current.0
    {
        return Err(ApiError::bad_request(format!(
            "end: {} is before the dataset's first period {}",
            e.canonical(),
            current.0.canonical()
        )));
    }
    Ok(sync::plan(
        &ds.template_id,
        &t.sync,
        kind,
        current,
        end,
        Utc::now().naive_utc(),
    ))
}

/// Body of `POST /sync/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncBody {
    /// Last period to reach (default: today, clamped by the template's availability).
    #[serde(default)]
    pub end: Option<String>,
    /// Make the new version current on the public catalog (default true).
    #[serde(default = "yes")]
    pub publish: bool,
}

fn yes() -> bool {
    true
}

/// A sync that started a run.
#[derive(Debug, Serialize)]
struct Started {
    sync: SyncDetail,
    run: RunView,
}

/// `POST /sync/{id}`: runs the planned sync. 200 with the SyncDetail when there is nothing
/// to do (`up_to_date`, `not_syncable`); 202 with the detail and the run otherwise.
#[utoipa::path(post, path = "/sync/{id}", tag = "sync",
    params(("id" = String, Path, description = "dataset id")),
    request_body = SyncBody,
    responses((status = 200, description = "Nothing to do: the SyncDetail"),
              (status = 202, description = "{sync: SyncDetail, run: Run}"),
              (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn run_sync(
    State(state): State<AppState>,
    base: BaseUrl,
    Path(id): Path<String>,
    body: Result<Json<SyncBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let d = detail(&state, &id, body.end.as_deref()).await?;
    let (start, append) = match d.action {
        SyncAction::NoOp | SyncAction::NotSyncable => {
            return Ok((StatusCode::OK, Json(d)).into_response());
        }
        SyncAction::Append => (d.current_start.clone(), true),
        SyncAction::Rematerialize => (
            d.delta_start
                .clone()
                .unwrap_or_else(|| d.current_start.clone()),
            false,
        ),
    };
    let p = &state.platform;
    let (ds, _) = current_version(&state, &id).await?;
    let request = RunRequest {
        start,
        end: d.delta_end.clone(),
        overwrite: true,
        prefer_zarr: true,
        publish: body.publish,
        append,
    };
    let request_json = serde_json::to_value(&request).map_err(ApiError::internal)?;
    // An identical sync already queued or running is the answer. (A different run of the
    // dataset does not block: the worker serialises runs per dataset.)
    if let Some(active) = p.db.active_run(&id).await?
        && active.request == request_json
    {
        let run_id = active.run_id.clone();
        let mut headers = HeaderMap::new();
        headers.insert(header::LOCATION, location(&base, &run_id));
        let run = RunView::new(active, None, &base);
        return Ok((
            StatusCode::ACCEPTED,
            headers,
            Json(Started { sync: d, run }),
        )
            .into_response());
    }
    let run_id = uuid::Uuid::now_v7().to_string();
    let now = Utc::now();
    let run =
        p.db.create_run(
            &NewRun {
                run_id: run_id.clone(),
                kind: RunKind::Sync,
                dataset_id: id.clone(),
                template_id: ds.template_id.clone(),
                extent_id: ds.extent_id.clone(),
                request: request_json,
                created_at: now,
            },
            &NewOutbox {
                topic: TASK_TOPIC.into(),
                payload: TaskMessage::new(&run_id).to_json(),
                available_at: now,
            },
        )
        .await?;
    p.outbox_notify.notify_one();
    tracing::info!(run.id = %run_id, dataset.id = %id, action = ?d.action, "sync accepted");
    let mut headers = HeaderMap::new();
    headers.insert(header::LOCATION, location(&base, &run_id));
    let run = RunView::new(run, None, &base);
    Ok((
        StatusCode::ACCEPTED,
        headers,
        Json(Started { sync: d, run }),
    )
        .into_response())
}
