//! `/sync`: keeping managed datasets current (SPEC §7): `GET /sync/{id}/plan` is the dry run,
//! `POST /sync/{id}` executes it as a run of kind `sync` (an append writes only the new time
//! chunks and reuses the current version's others); `GET|PATCH /datasets/{id}/schedule` show
//! and change when the scheduler syncs a dataset. The logic is `climate_ingest::sync`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use climate_domain::sync::{Schedule, SyncDetail};
use climate_domain::template::SyncKind;
use climate_infra::db::ScheduleRecord;
use climate_ingest::sync::{self, Started, SyncError};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::routes::ingestions::location;
use crate::routes::ogcapi::parse_query;
use crate::state::{AppState, BaseUrl};
use crate::views::{RunView, unknown_dataset};

/// The query of a sync plan.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlanQuery {
    /// last period to reach (default: today, clamped by the template's availability)
    end: Option<String>,
}

/// `GET /sync/{id}/plan?end=`: what a sync of the dataset would do now, without doing it.
#[utoipa::path(get, path = "/sync/{id}/plan", tag = "sync",
    params(("id" = String, Path, description = "dataset id"), PlanQuery),
    responses((status = 200, description = "SyncDetail (SPEC §7)"),
              (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn plan(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<SyncDetail>, ApiError> {
    let q: PlanQuery = parse_query(raw)?;
    let (d, _) = sync::detail(&state.providers, &id, q.end.as_deref(), Utc::now())
        .await
        .map_err(api_error)?;
    Ok(Json(d))
}

fn api_error(e: SyncError) -> ApiError {
    match e {
        SyncError::UnknownDataset(id) => unknown_dataset(&id),
        SyncError::Invalid(m) => ApiError::bad_request(m),
        SyncError::Db(e) => e.into(),
        SyncError::Unavailable(m) => ApiError::unavailable("sync", m),
    }
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
struct StartedView {
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
    principal: Option<axum::Extension<crate::auth::Principal>>,
    Path(id): Path<String>,
    body: Result<Json<SyncBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let now = Utc::now();
    let (d, ds) = sync::detail(&state.providers, &id, body.end.as_deref(), now)
        .await
        .map_err(api_error)?;
    match sync::start(
        &state.providers,
        d,
        &ds,
        body.publish,
        None,
        principal.as_ref().map(|p| p.0.subject.as_str()),
        now,
    )
    .await
    .map_err(api_error)?
    {
        Started::Nothing(d) | Started::AlreadyStarted(d) => {
            Ok((StatusCode::OK, Json(d)).into_response())
        }
        Started::Run(d, run) => {
            let mut headers = HeaderMap::new();
            headers.insert(header::LOCATION, location(&base, &run.run_id));
            let run = RunView::new(*run, None, &base);
            Ok((
                StatusCode::ACCEPTED,
                headers,
                Json(StartedView { sync: d, run }),
            )
                .into_response())
        }
    }
}

/// A dataset's sync schedule, as `GET|PATCH /datasets/{id}/schedule` show it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    /// Dataset id.
    pub dataset_id: String,
    /// `as_available`, a cron expression (UTC), or `null`: only explicit syncs.
    pub schedule: Option<String>,
    /// `dataset` (an override), `template` or `none`.
    pub source: String,
    /// No syncs are emitted while paused.
    pub paused: bool,
    /// The template never syncs (`static`).
    pub syncable: bool,
    /// The newest due time the scheduler acted on, and its run.
    #[schema(value_type = Option<Object>)]
    pub last_sync: Option<serde_json::Value>,
}

async fn schedule_view(
    state: &AppState,
    id: &str,
    base: &BaseUrl,
) -> Result<ScheduleView, ApiError> {
    let ds = state
        .platform
        .db
        .get_dataset(&crate::views::dataset_id(id)?)
        .await?
        .ok_or_else(|| unknown_dataset(id))?;
    let (schedule, source, paused) = sync::schedule_of(&state.providers, &ds)
        .await
        .map_err(api_error)?;
    let syncable = state
        .platform
        .catalog
        .get(&ds.template_id)
        .is_some_and(|t| t.template.sync.kind != SyncKind::Static);
    let last_sync = match state.platform.db.last_sync_tick(&ds.dataset_id).await? {
        Some(tick) => {
            let run = state.platform.db.get_run(&tick.run_id).await?;
            Some(serde_json::json!({
                "due": tick.due_key,
                "at": tick.created_at,
                "run": run.map(|r| RunView::new(r, None, base)),
            }))
        }
        None => None,
    };
    Ok(ScheduleView {
        dataset_id: id.to_owned(),
        schedule,
        source: source.to_owned(),
        paused,
        syncable,
        last_sync,
    })
}

/// `GET /datasets/{id}/schedule`: when the dataset syncs, whether it is paused, and the last
/// scheduled sync with its outcome.
#[utoipa::path(get, path = "/datasets/{id}/schedule", tag = "sync",
    params(("id" = String, Path, description = "dataset id")),
    responses((status = 200, body = ScheduleView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_schedule(
    State(state): State<AppState>,
    base: BaseUrl,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(schedule_view(&state, &id, &base).await?))
}

/// Body of `PATCH /datasets/{id}/schedule`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedulePatch {
    /// Pause (`true`) or resume (`false`) scheduled syncs.
    #[serde(default)]
    pub paused: Option<bool>,
    /// Override the template's schedule (`as_available` or a cron expression); `null` goes
    /// back to the template's.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub schedule: Option<Option<String>>,
}

/// A field that is present (possibly `null`) becomes `Some`; an absent one stays `None`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `PATCH /datasets/{id}/schedule`: pause, resume, or override the schedule.
#[utoipa::path(patch, path = "/datasets/{id}/schedule", tag = "sync",
    params(("id" = String, Path, description = "dataset id")),
    request_body = SchedulePatch,
    responses((status = 200, body = ScheduleView), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn patch_schedule(
    State(state): State<AppState>,
    base: BaseUrl,
    Path(id): Path<String>,
    body: Result<Json<SchedulePatch>, JsonRejection>,
) -> Result<Json<ScheduleView>, ApiError> {
    let Json(patch) = body?;
    let db = &state.platform.db;
    let dataset_id = crate::views::dataset_id(&id)?;
    if db.get_dataset(&dataset_id).await?.is_none() {
        return Err(unknown_dataset(&id));
    }
    let current = db.get_schedule(&dataset_id).await?;
    let schedule = match patch.schedule {
        Some(Some(s)) => {
            Schedule::parse(&s).map_err(|e| ApiError::bad_request(format!("schedule: {e}")))?;
            Some(s.trim().to_owned())
        }
        Some(None) => None,
        None => current.as_ref().and_then(|c| c.schedule.clone()),
    };
    let paused = patch
        .paused
        .unwrap_or_else(|| current.as_ref().is_some_and(|c| c.paused));
    db.set_schedule(&ScheduleRecord {
        dataset_id,
        paused,
        schedule,
        updated_at: Utc::now(),
    })
    .await?;
    Ok(Json(schedule_view(&state, &id, &base).await?))
}
