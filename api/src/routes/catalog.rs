//! The versioned catalog for operators: a dataset's history, one version's metadata,
//! rollback and publication. Every change is an event of the history, written with it.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use climate_catalog::VersionMetadata;
use climate_infra::db::{CatalogEvent, ChangeError, DatasetRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::state::{AppState, BaseUrl};
use crate::views::{DatasetSummary, Link, TemporalView, sees_unpublished, visible_dataset};

/// One event of a dataset's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// Its number (increasing with time).
    pub event_id: i64,
    /// `new_version`, `publish`, `unpublish` or `rollback`.
    pub action: String,
    /// The version concerned.
    pub version: Option<i64>,
    /// Who: the credentials' subject, or `system` for the platform's own work.
    pub actor: String,
    /// The ingestion run or job that caused it.
    pub cause: Option<String>,
    /// More about it (`{"from": 3}` for a rollback, the coverage of a new version).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl From<CatalogEvent> for EventView {
    fn from(e: CatalogEvent) -> Self {
        Self {
            event_id: e.event_id,
            action: e.action.as_str().to_owned(),
            version: e.version,
            actor: e.actor,
            cause: e.cause,
            detail: e.detail,
            created_at: e.created_at,
        }
    }
}

/// A page of a dataset's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct History {
    /// The dataset.
    pub dataset_id: String,
    /// Events, newest first.
    pub events: Vec<EventView>,
    /// `self` and, when older events exist, `next`.
    pub links: Vec<Link>,
}

/// Query of `GET /datasets/{id}/history`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Continue with the events older than this one (from the `next` link).
    pub cursor: Option<i64>,
}

fn principal_of(p: Option<&axum::Extension<Principal>>) -> Option<&Principal> {
    p.map(|p| &p.0)
}

fn actor(p: Option<&axum::Extension<Principal>>) -> String {
    Principal::subject_of(principal_of(p))
}

/// `GET /datasets/{id}/history`: every change of the dataset on the public catalog, newest
/// first.
#[utoipa::path(get, path = "/datasets/{id}/history", tag = "datasets",
    params(("id" = String, Path, description = "dataset id"), HistoryQuery),
    responses((status = 200, body = History), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    base: BaseUrl,
    principal: Option<axum::Extension<Principal>>,
    Path(id): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<History>, ApiError> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit: must be between 1 and 1000"));
    }
    let ds = visible_dataset(
        &state,
        &id,
        sees_unpublished(principal_of(principal.as_ref())),
    )
    .await?;
    let mut events = state
        .platform
        .db
        .history(&ds.dataset_id, q.cursor, limit + 1)
        .await?;
    let more = events.len() > limit as usize;
    events.truncate(limit as usize);
    let mut links = vec![Link::typed(
        "self",
        base.join(&format!("/datasets/{id}/history?limit={limit}")),
        "application/json",
    )];
    if more && let Some(last) = events.last() {
        links.push(Link::typed(
            "next",
            base.join(&format!(
                "/datasets/{id}/history?limit={limit}&cursor={}",
                last.event_id
            )),
            "application/json",
        ));
    }
    Ok(Json(History {
        dataset_id: ds.dataset_id.to_string(),
        events: events.into_iter().map(EventView::from).collect(),
        links,
    }))
}

/// One version of a dataset.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDetail {
    /// The dataset.
    pub dataset_id: String,
    /// Its number.
    pub version: i64,
    /// Whether it is the current version.
    pub current: bool,
    /// The periods it covers.
    pub coverage: TemporalView,
    /// The ingestion run that wrote it.
    pub ingestion_id: String,
    /// Written at.
    pub created_at: DateTime<Utc>,
    /// What the run was asked for (start, end, append, …).
    #[schema(value_type = Object)]
    pub scope: serde_json::Value,
    /// Array shape `[t, y, x]`, chunks `[t, y, x]`, CRS and bounds.
    #[schema(value_type = Object)]
    pub layout: serde_json::Value,
    /// Earlier versions whose chunks this one reads (an append), newest first.
    pub bases: Vec<i64>,
    /// Bytes of the objects this version wrote itself (its bases' not counted).
    pub size_bytes: u64,
    /// `zarr` (this version's store), `ingestion`, `dataset`.
    pub links: Vec<Link>,
}

/// `GET /datasets/{id}/versions/{n}`: a version's metadata.
#[utoipa::path(get, path = "/datasets/{id}/versions/{n}", tag = "datasets",
    params(("id" = String, Path, description = "dataset id"), ("n" = i64, Path, description = "version number")),
    responses((status = 200, body = VersionDetail), (status = 404, body = ErrorBody)))]
pub async fn get_version(
    State(state): State<AppState>,
    base: BaseUrl,
    principal: Option<axum::Extension<Principal>>,
    path: Result<Path<(String, i64)>, axum::extract::rejection::PathRejection>,
) -> Result<Json<VersionDetail>, ApiError> {
    let Path((id, n)) = path?;
    let v = super::zarr::pinned(&state, &id, n, principal_of(principal.as_ref())).await?;
    let ds = state
        .platform
        .db
        .get_dataset(&v.dataset_id)
        .await?
        .ok_or_else(|| crate::views::unknown_dataset(&id))?;
    let meta = VersionMetadata::of(&v).map_err(ApiError::internal)?;
    // The bases are named by their prefixes; the versions they belong to, by number.
    let versions = state.platform.db.list_versions(&v.dataset_id).await?;
    let bases = meta
        .bases
        .iter()
        .filter_map(|p| {
            versions
                .iter()
                .find(|o| &o.storage_prefix == p)
                .map(|o| o.version)
        })
        .collect();
    let mut size_bytes = 0;
    let prefix = object_store::path::Path::from(v.storage_prefix.as_str());
    let mut objects = state.platform.store.object_store().list(Some(&prefix));
    while let Some(o) = futures::StreamExt::next(&mut objects).await {
        size_bytes += o
            .map_err(|e| ApiError::unavailable("object store", e))?
            .size;
    }
    Ok(Json(VersionDetail {
        dataset_id: v.dataset_id.to_string(),
        version: v.version,
        current: ds.current_version == Some(v.version),
        coverage: TemporalView {
            start: v.coverage_start.clone(),
            end: v.coverage_end.clone(),
        },
        ingestion_id: v.run_id.to_string(),
        created_at: v.created_at,
        scope: meta.request.clone(),
        layout: serde_json::json!({
            "shape": meta.shape, "chunks": meta.chunks, "crs": meta.crs.to_string(),
            "bbox": meta.bbox, "period_type": meta.period_type.as_str(),
        }),
        bases,
        size_bytes,
        links: vec![
            Link::typed(
                "zarr",
                base.join(&format!("/datasets/{id}/versions/{n}/zarr")),
                "application/vnd+zarr",
            ),
            Link::typed(
                "ingestion",
                base.join(&format!("/ingestions/{}", v.run_id)),
                "application/json",
            ),
            Link::typed(
                "dataset",
                base.join(&format!("/datasets/{id}")),
                "application/json",
            ),
        ],
    }))
}

fn change_error(e: ChangeError) -> ApiError {
    match e {
        ChangeError::UnknownDataset(id) => crate::views::unknown_dataset(&id),
        ChangeError::UnknownVersion { dataset, version } => ApiError::not_found(
            ErrorCode::UnknownVersion,
            format!(
                "dataset '{dataset}' has no version {version}; GET /datasets/{dataset} lists its versions"
            ),
        ),
        ChangeError::Pruned { dataset, version } => ApiError::new(
            ErrorCode::VersionPruned,
            format!(
                "version {version} of '{dataset}' was pruned: its data is being deleted, so it cannot be made current again; GET /datasets/{dataset} lists the versions kept"
            ),
        ),
        ChangeError::Current { dataset, version } => ApiError::new(
            ErrorCode::VersionCurrent,
            format!(
                "version {version} is the current version of '{dataset}': make another one current first (POST /datasets/{dataset}/rollback), or prune the whole dataset (DELETE /datasets/{dataset})"
            ),
        ),
        ChangeError::Db(e) => e.into(),
    }
}

/// The dataset after a change, as its summary.
async fn summary(
    state: &AppState,
    ds: &DatasetRecord,
    base: &BaseUrl,
) -> Result<Json<DatasetSummary>, ApiError> {
    crate::views::dataset_summary(state, ds, base)
        .await?
        .map(Json)
        .ok_or_else(|| crate::views::unknown_dataset(ds.dataset_id.as_str()))
}

/// Body of `POST /datasets/{id}/rollback`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// The version to make current again.
    pub version: i64,
}

/// `POST /datasets/{id}/rollback`: makes an earlier version current, without copying data;
/// every surface serves it at once, and a later sync appends to it.
#[utoipa::path(post, path = "/datasets/{id}/rollback", tag = "datasets",
    params(("id" = String, Path, description = "dataset id")),
    request_body = RollbackBody,
    responses((status = 200, body = DatasetSummary), (status = 404, body = ErrorBody)))]
pub async fn rollback(
    State(state): State<AppState>,
    base: BaseUrl,
    principal: Option<axum::Extension<Principal>>,
    Path(id): Path<String>,
    body: Result<Json<RollbackBody>, JsonRejection>,
) -> Result<Json<DatasetSummary>, ApiError> {
    let Json(body) = body?;
    let dataset = crate::views::dataset_id(&id)?;
    let ds = state
        .platform
        .db
        .rollback(
            &dataset,
            body.version,
            &actor(principal.as_ref()),
            Utc::now(),
        )
        .await
        .map_err(change_error)?;
    tracing::info!(dataset.id = %id, version = body.version, "rolled back");
    summary(&state, &ds, &base).await
}

/// Body of `PATCH /datasets/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetPatch {
    /// `false` takes the dataset off every public surface (callers with the `admin` scope
    /// still see it at `/datasets/{id}` and `/zarr/{id}`); `true` puts it back.
    pub published: bool,
}

/// `PATCH /datasets/{id}`: publishes or unpublishes a dataset.
#[utoipa::path(patch, path = "/datasets/{id}", tag = "datasets",
    params(("id" = String, Path, description = "dataset id")),
    request_body = DatasetPatch,
    responses((status = 200, body = DatasetSummary), (status = 404, body = ErrorBody)))]
pub async fn patch_dataset(
    State(state): State<AppState>,
    base: BaseUrl,
    principal: Option<axum::Extension<Principal>>,
    Path(id): Path<String>,
    body: Result<Json<DatasetPatch>, JsonRejection>,
) -> Result<Json<DatasetSummary>, ApiError> {
    let Json(body) = body?;
    let dataset = crate::views::dataset_id(&id)?;
    let ds = state
        .platform
        .db
        .set_published(
            &dataset,
            body.published,
            &actor(principal.as_ref()),
            Utc::now(),
        )
        .await
        .map_err(change_error)?;
    tracing::info!(dataset.id = %id, published = body.published, "publication changed");
    summary(&state, &ds, &base).await
}

/// `DELETE /datasets/{id}/versions/{n}`: takes a version (never the current one) off the
/// catalog at once; its objects are deleted after `catalog.retention_hours`, unless a
/// retained version still reads them.
#[utoipa::path(delete, path = "/datasets/{id}/versions/{n}", tag = "datasets",
    params(("id" = String, Path, description = "dataset id"), ("n" = i64, Path, description = "version number")),
    responses((status = 204, description = "Pruned"), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "the current version")))]
pub async fn prune_version(
    State(state): State<AppState>,
    principal: Option<axum::Extension<Principal>>,
    path: Result<Path<(String, i64)>, axum::extract::rejection::PathRejection>,
) -> Result<axum::http::StatusCode, ApiError> {
    let Path((id, n)) = path?;
    let dataset = crate::views::dataset_id(&id)?;
    state
        .platform
        .db
        .prune_version(&dataset, n, &actor(principal.as_ref()), Utc::now())
        .await
        .map_err(change_error)?;
    tracing::info!(dataset.id = %id, version = n, "version pruned");
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// `DELETE /datasets/{id}`: takes the whole dataset off the catalog at once; its objects are
/// deleted after `catalog.retention_hours`. Its history stays; a later ingestion starts it
/// afresh.
#[utoipa::path(delete, path = "/datasets/{id}", tag = "datasets",
    params(("id" = String, Path, description = "dataset id")),
    responses((status = 204, description = "Pruned"), (status = 404, body = ErrorBody)))]
pub async fn prune_dataset(
    State(state): State<AppState>,
    principal: Option<axum::Extension<Principal>>,
    Path(id): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    let dataset = crate::views::dataset_id(&id)?;
    state
        .platform
        .db
        .prune_dataset(&dataset, &actor(principal.as_ref()), Utc::now())
        .await
        .map_err(change_error)?;
    tracing::info!(dataset.id = %id, "dataset pruned");
    Ok(axum::http::StatusCode::NO_CONTENT)
}
