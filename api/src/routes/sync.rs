//! `/sync`: keeping managed datasets current (SPEC §7). This slice answers the dry run,
//! `GET /sync/{id}/plan`; executing a sync (`POST /sync/{id}`, true append) is not built yet.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use chrono::Utc;
use climate_domain::Period;
use climate_domain::sync::{self, SyncDetail};

use crate::error::ApiError;
use crate::routes::ogc::Query;
use crate::state::AppState;
use crate::views::current_version;

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
    let (ds, version) = current_version(&state, &id).await?;
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
    let end = q.one("end")?.map(|e| period(e, "end")).transpose()?;
    if let Some(e) = end
        && e < current.0
    {
        return Err(ApiError::bad_request(format!(
            "end: {} is before the dataset's first period {}",
            e.canonical(),
            current.0.canonical()
        )));
    }
    Ok(Json(sync::plan(
        &ds.template_id,
        &t.sync,
        kind,
        current,
        end,
        Utc::now().naive_utc(),
    )))
}
