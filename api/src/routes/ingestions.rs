//! Ingestion runs: accept (persist + announce through the outbox), list, inspect.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use climate_domain::run::RunStatus;
use climate_domain::{DatasetId, RunId};
use climate_infra::db::{RunFilter, RunRecord};
use climate_ingest::admit::{self, AdmitError, Admitted, IngestionRequest};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::state::{AppState, BaseUrl};
use crate::views::{DatasetSummary, Link, RunView, SegmentView, dataset_summary};

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

/// The answer to an ingestion that cannot be accepted.
pub(crate) fn admit_error(e: AdmitError) -> ApiError {
    match e {
        AdmitError::UnknownTemplate(_) => {
            ApiError::not_found(ErrorCode::UnknownTemplate, e.to_string())
        }
        AdmitError::UnknownExtent(_) => {
            ApiError::not_found(ErrorCode::UnknownExtent, e.to_string())
        }
        AdmitError::Invalid { .. } | AdmitError::Range(_) => ApiError::bad_request(e.to_string()),
        AdmitError::Db(e) => e.into(),
    }
}

pub(crate) fn location(base: &BaseUrl, run_id: &RunId) -> HeaderValue {
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
    principal: Option<axum::Extension<crate::auth::Principal>>,
    body: Result<Json<IngestionBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    if !body.prefer_zarr {
        return Err(ApiError::bad_request(
            "prefer_zarr: NetCDF artifacts are not supported yet; omit the field or set it to true (any version can be downloaded as NetCDF)",
        ));
    }
    let request = IngestionRequest {
        template: body.dataset_id,
        start: body.start,
        end: body.end,
        extent_id: body.extent_id,
        overwrite: body.overwrite,
        publish: body.publish,
        principal: principal.map(|p| p.0.subject),
    };
    let run = match admit::ingestion(&state.platform, &request, Utc::now())
        .await
        .map_err(admit_error)?
    {
        Admitted::Covered { dataset, version } => {
            let template = state.platform.catalog.get(&dataset.template_id);
            let summary = DatasetSummary::new(&dataset, &version, template, &base);
            return Ok((StatusCode::OK, Json(summary)).into_response());
        }
        Admitted::Run { run, .. } => *run,
    };
    let run_id = run.run_id;
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
    let before = q
        .cursor
        .as_deref()
        .map(RunId::new)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("cursor: {e}")))?;
    // A dataset id that is not an id names no dataset: its page is empty.
    let dataset_id = q.dataset_id.as_deref().map(DatasetId::new).transpose();
    let runs = match dataset_id {
        Ok(dataset_id) => {
            state
                .platform
                .db
                .list_runs(&RunFilter {
                    status,
                    dataset_id,
                    before,
                    limit: limit + 1,
                })
                .await?
        }
        Err(_) => Vec::new(),
    };
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
    let run = state
        .platform
        .db
        .get_run(&run_id(&id)?)
        .await?
        .ok_or_else(|| unknown_ingestion(&id))?;
    Ok(Json(run_view(&state, run, &base).await?))
}

/// The full view of one run: its dataset once succeeded, its segments once planned.
async fn run_view(state: &AppState, run: RunRecord, base: &BaseUrl) -> Result<RunView, ApiError> {
    let db = &state.platform.db;
    let dataset = if run.status == RunStatus::Succeeded {
        match db.get_dataset(&run.dataset_id).await? {
            Some(ds) => dataset_summary(state, &ds, base).await?,
            None => None,
        }
    } else {
        None
    };
    let segments = if run.plan.is_some() {
        Some(
            db.list_segments(&run.run_id)
                .await?
                .iter()
                .map(SegmentView::from)
                .collect(),
        )
    } else {
        None
    };
    let mut view = RunView::new(run, dataset, base);
    view.progress.segments = segments;
    Ok(view)
}

/// How often the event stream looks at the run.
const EVENT_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// `GET /ingestions/{id}/events`: a Server-Sent Events stream of the run. Each change is one
/// `progress` event whose data is the run (as `GET /ingestions/{id}`), within a quarter of a
/// second; the stream ends with an `end` event once the run finished. Comments keep idle
/// connections open through proxies.
#[utoipa::path(get, path = "/ingestions/{id}/events", tag = "ingestions",
    params(("id" = String, Path, description = "ingestion id")),
    responses((status = 200, content_type = "text/event-stream", description = "`progress` events carrying the run, then `end`"),
              (status = 404, body = ErrorBody)))]
pub async fn ingestion_events(
    State(state): State<AppState>,
    base: BaseUrl,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use climate_jobs::{Look, Observed, watch};
    use futures::StreamExt as _;
    let rid = run_id(&id)?;
    let first = state
        .platform
        .db
        .get_run(&rid)
        .await?
        .ok_or_else(|| unknown_ingestion(&id))?;
    drop(first);
    // Each look renders the run as `GET /ingestions/{id}` shows it; a change of that document
    // is an event.
    let look = {
        let state = state.clone();
        move || {
            let (state, base) = (state.clone(), base.clone());
            async move {
                let Some(run) = state.platform.db.get_run(&rid).await? else {
                    return Ok(Look::Gone);
                };
                let terminal = run.status.is_terminal();
                let view = run_view(&state, run, &base).await?;
                let shown = (
                    serde_json::to_string(&view).unwrap_or_default(),
                    view.status,
                );
                Ok::<_, ApiError>(if terminal {
                    Look::Finished(shown)
                } else {
                    Look::Running(shown)
                })
            }
        }
    };
    let stream = watch(look, EVENT_POLL, state.shutdown.clone()).flat_map(|observed| {
        let events = match observed {
            Observed::Changed((data, _)) => vec![Event::default().event("progress").data(data)],
            // The final state, then `end`.
            Observed::Finished((data, status)) => vec![
                Event::default().event("progress").data(data),
                Event::default().event("end").data(status),
            ],
        };
        futures::stream::iter(events.into_iter().map(Ok::<_, std::convert::Infallible>))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response())
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
    let run = db
        .get_run(&run_id(&id)?)
        .await?
        .ok_or_else(|| unknown_ingestion(&id))?;
    if run.status.is_terminal() {
        return Err(ApiError::new(
            ErrorCode::AlreadyFinished,
            format!(
                "ingestion '{id}' already {}; only queued or running ingestions can be cancelled",
                run.status.as_str()
            ),
        ));
    }
    let run = db
        .cancel_run(&run_id(&id)?, Utc::now())
        .await?
        .ok_or_else(|| unknown_ingestion(&id))?;
    if run.status != RunStatus::Cancelled {
        // It finished between the two reads.
        return Err(ApiError::new(
            ErrorCode::AlreadyFinished,
            format!("ingestion '{id}' already {}", run.status.as_str()),
        ));
    }
    tracing::info!(run.id = %id, "ingestion cancelled");
    Ok(Json(RunView::new(run, None, &base)))
}

/// 404 for a run id nobody knows.
/// The run a path names; an id that is not a run id names none.
fn run_id(id: &str) -> Result<RunId, ApiError> {
    RunId::new(id).map_err(|_| unknown_ingestion(id))
}

fn unknown_ingestion(id: &str) -> ApiError {
    ApiError::not_found(
        ErrorCode::UnknownIngestion,
        format!("no ingestion with id '{id}'"),
    )
}
