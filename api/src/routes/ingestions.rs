//! Ingestion runs: accept (persist + announce through the outbox), list, inspect.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use climate_domain::run::{RunKind, RunRequest, RunStatus};
use climate_domain::{DatasetId, Period, PeriodRange};
use climate_infra::db::{NewOutbox, NewRun, RunFilter};
use climate_infra::messages::{TASK_TOPIC, TaskMessage};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::state::{AppState, BaseUrl};
use crate::views::{DatasetSummary, Link, RunView, dataset_summary};

const fn yes() -> bool {
    true
}

/// Body of `POST /ingestions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestionBody {
    /// Template id to ingest (see `/dataset-templates`).
    pub dataset_id: String,
    /// First period: canonical (`2024-01-31`, `2024-W05`, `2024-01`, `2024`, `2024-01-31T06`) or an
    /// ISO date/datetime, floored to the template's period type.
    pub start: String,
    /// Last period (inclusive); absent means up to the latest available.
    #[serde(default)]
    pub end: Option<String>,
    /// Extent id; the default extent when absent.
    #[serde(default)]
    pub extent_id: Option<String>,
    /// Re-materialise even when the current version already covers the scope.
    #[serde(default)]
    pub overwrite: bool,
    /// Write Zarr (required today: NetCDF artifacts are not supported yet).
    #[serde(default = "yes")]
    pub prefer_zarr: bool,
    /// Make the dataset visible on the public catalog.
    #[serde(default = "yes")]
    pub publish: bool,
}

pub(crate) fn location(base: &BaseUrl, run_id: &str) -> HeaderValue {
    HeaderValue::from_str(&base.join(&format!("/ingestions/{run_id}")))
        .unwrap_or_else(|_| HeaderValue::from_static("/ingestions"))
}

/// `POST /ingestions`: accept an ingestion. The run is stored with its outbox message in one
/// transaction before the answer, so an accepted run is never lost.
#[utoipa::path(post, path = "/ingestions", tag = "ingestions", request_body = IngestionBody,
    responses(
        (status = 202, body = RunView, description = "accepted; `Location` names the run"),
        (status = 200, body = DatasetSummary, description = "the current version already covers the scope"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_ingestion(
    State(state): State<AppState>,
    base: BaseUrl,
    body: Result<Json<IngestionBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let p = &state.platform;
    let loaded = p.catalog.get_str(&body.dataset_id).ok_or_else(|| {
        ApiError::not_found(
            "unknown_template",
            format!(
                "dataset_id: unknown dataset template '{}'; GET /dataset-templates lists the available ones",
                body.dataset_id
            ),
        )
    })?;
    let template = &loaded.template;
    let extent = match &body.extent_id {
        Some(id) => p
            .config
            .extents
            .iter()
            .find(|e| e.extent_id.as_str() == id)
            .ok_or_else(|| {
                ApiError::not_found(
                    "unknown_extent",
                    format!(
                        "extent_id: unknown extent '{id}'; GET /extent lists the configured ones"
                    ),
                )
            })?,
        None => p.config.default_extent(),
    };
    let kind = template.period_type;
    let start = Period::parse(kind, &body.start)
        .map_err(|e| ApiError::bad_request(format!("start: {e}")))?;
    let end = body
        .end
        .as_deref()
        .map(|e| Period::parse(kind, e))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("end: {e}")))?;
    if let Some(end) = end {
        PeriodRange::new(start, end).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    if !body.prefer_zarr {
        return Err(ApiError::bad_request(
            "prefer_zarr: NetCDF artifacts are not supported yet; omit the field or set it to true (any version can be downloaded as NetCDF)",
        ));
    }
    let dataset_id = DatasetId::managed(&template.id, &extent.extent_id);

    // Deduplication: the current version already covers the scope.
    if !body.overwrite
        && let Some(end) = end
        && let Some(ds) = p.db.get_dataset(dataset_id.as_str()).await?
        && let Some(summary) = dataset_summary(&state, &ds, &base).await?
    {
        let covered = Period::parse(kind, &summary.extent.temporal.start)
            .ok()
            .zip(Period::parse(kind, &summary.extent.temporal.end).ok())
            .is_some_and(|(cs, ce)| cs <= start && end <= ce);
        if covered {
            return Ok((StatusCode::OK, Json(summary)).into_response());
        }
    }

    let request = RunRequest {
        start: start.canonical(),
        end: end.map(|e| e.canonical()),
        overwrite: body.overwrite,
        prefer_zarr: body.prefer_zarr,
        publish: body.publish,
        append: false,
    };
    let request_json = serde_json::to_value(&request).map_err(ApiError::internal)?;

    // Coalescing: an identical request already queued or running is the answer.
    if let Some(active) = p.db.active_run(dataset_id.as_str()).await?
        && active.request == request_json
    {
        let id = active.run_id.clone();
        let mut res = (
            StatusCode::ACCEPTED,
            Json(RunView::new(active, None, &base)),
        )
            .into_response();
        res.headers_mut()
            .insert(header::LOCATION, location(&base, &id));
        return Ok(res);
    }

    let run_id = uuid::Uuid::now_v7().to_string();
    let now = Utc::now();
    let run =
        p.db.create_run(
            &NewRun {
                run_id: run_id.clone(),
                kind: RunKind::Ingestion,
                dataset_id: dataset_id.to_string(),
                template_id: template.id.to_string(),
                extent_id: extent.extent_id.to_string(),
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
    tracing::info!(run.id = %run_id, dataset.id = %dataset_id, "ingestion accepted");
    let mut headers = HeaderMap::new();
    headers.insert(header::LOCATION, location(&base, &run_id));
    Ok((
        StatusCode::ACCEPTED,
        headers,
        Json(RunView::new(run, None, &base)),
    )
        .into_response())
}

/// Query of `GET /ingestions`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only runs in this status.
    pub status: Option<String>,
    /// Only runs of this dataset.
    pub dataset_id: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Continue after this run id (from the `next` link).
    pub cursor: Option<String>,
}

/// A page of runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    /// Always `IngestionList`.
    pub kind: &'static str,
    /// Runs, newest first.
    pub items: Vec<RunView>,
    /// `self` and, when more exist, `next`.
    pub links: Vec<Link>,
}

/// `GET /ingestions`
#[utoipa::path(get, path = "/ingestions", tag = "ingestions", params(ListQuery),
    responses((status = 200, body = RunList), (status = 400, body = ErrorBody)))]
pub async fn list_ingestions(
    State(state): State<AppState>,
    base: BaseUrl,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<RunList>, ApiError> {
    let Query(q) = query?;
    let status = q
        .status
        .as_deref()
        .map(str::parse::<RunStatus>)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("status: {e}")))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit: must be between 1 and 1000"));
    }
    let runs = state
        .platform
        .db
        .list_runs(&RunFilter {
            status,
            dataset_id: q.dataset_id.clone(),
            before: q.cursor.clone(),
            limit: limit + 1,
        })
        .await?;
    let more = runs.len() > limit as usize;
    let items: Vec<RunView> = runs
        .into_iter()
        .take(limit as usize)
        .map(|r| RunView::new(r, None, &base))
        .collect();
    let mut params = vec![format!("limit={limit}")];
    if let Some(s) = &q.status {
        params.push(format!("status={s}"));
    }
    if let Some(d) = &q.dataset_id {
        params.push(format!("dataset_id={d}"));
    }
    let mut links = vec![Link::typed(
        "self",
        base.join(&format!("/ingestions?{}", params.join("&"))),
        "application/json",
    )];
    if more && let Some(last) = items.last() {
        params.push(format!("cursor={}", last.ingestion_id));
        links.push(Link::typed(
            "next",
            base.join(&format!("/ingestions?{}", params.join("&"))),
            "application/json",
        ));
    }
    Ok(Json(RunList {
        kind: "IngestionList",
        items,
        links,
    }))
}

/// `GET /ingestions/{id}`
#[utoipa::path(get, path = "/ingestions/{id}", tag = "ingestions",
    params(("id" = String, Path, description = "ingestion id")),
    responses((status = 200, body = RunView), (status = 404, body = ErrorBody)))]
pub async fn get_ingestion(
    State(state): State<AppState>,
    base: BaseUrl,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    let run = state.platform.db.get_run(&id).await?.ok_or_else(|| {
        ApiError::not_found("unknown_ingestion", format!("no ingestion with id '{id}'"))
    })?;
    let dataset = if run.status == RunStatus::Succeeded {
        match state.platform.db.get_dataset(&run.dataset_id).await? {
            Some(ds) => dataset_summary(&state, &ds, &base).await?,
            None => None,
        }
    } else {
        None
    };
    Ok(Json(RunView::new(run, dataset, &base)))
}

/// `DELETE /ingestions/{id}`: cancels a run. A queued run stops at once; a running one at its
/// next boundary (time chunk or segment); nothing it wrote is published. A finished run answers
/// 409.
#[utoipa::path(delete, path = "/ingestions/{id}", tag = "ingestions",
    params(("id" = String, Path, description = "ingestion id")),
    responses((status = 200, body = RunView, description = "cancelled"),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "already finished")))]
pub async fn cancel_ingestion(
    State(state): State<AppState>,
    base: BaseUrl,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    let db = &state.platform.db;
    let run = db.get_run(&id).await?.ok_or_else(|| {
        ApiError::not_found("unknown_ingestion", format!("no ingestion with id '{id}'"))
    })?;
    if run.status.is_terminal() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_finished",
            format!(
                "ingestion '{id}' already {}; only queued or running ingestions can be cancelled",
                run.status.as_str()
            ),
        ));
    }
    let run = db.cancel_run(&id, Utc::now()).await?.ok_or_else(|| {
        ApiError::not_found("unknown_ingestion", format!("no ingestion with id '{id}'"))
    })?;
    if run.status != RunStatus::Cancelled {
        // It finished between the two reads.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_finished",
            format!("ingestion '{id}' already {}", run.status.as_str()),
        ));
    }
    tracing::info!(run.id = %id, "ingestion cancelled");
    Ok(Json(RunView::new(run, None, &base)))
}
