//! Managed datasets and their versions.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::state::{AppState, BaseUrl};
use crate::views::{
    DatasetSummary, VersionView, current_version, dataset_summary, sees_unpublished,
};

/// The published datasets.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetList {
    /// Always `DatasetList`.
    pub kind: &'static str,
    /// Summaries, by id.
    pub items: Vec<DatasetSummary>,
}

/// `GET /datasets`: published datasets with a current version.
#[utoipa::path(get, path = "/datasets", tag = "datasets", responses((status = 200, body = DatasetList)))]
pub async fn list_datasets(
    State(state): State<AppState>,
    base: BaseUrl,
) -> Result<Json<DatasetList>, ApiError> {
    let mut items = Vec::new();
    for ds in state.platform.db.list_datasets().await? {
        if !ds.published {
            continue;
        }
        if let Some(s) = dataset_summary(&state, &ds, &base).await? {
            items.push(s);
        }
    }
    Ok(Json(DatasetList {
        kind: "DatasetList",
        items,
    }))
}

/// A dataset with its versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetDetail {
    /// The summary of the current version.
    #[serde(flatten)]
    pub summary: DatasetSummary,
    /// All versions, oldest first.
    pub versions: Vec<VersionView>,
}

/// `GET /datasets/{id}`
#[utoipa::path(get, path = "/datasets/{id}", tag = "datasets",
    params(("id" = String, Path, description = "dataset id")),
    responses((status = 200, body = DatasetDetail), (status = 404, body = ErrorBody)))]
pub async fn get_dataset(
    State(state): State<AppState>,
    base: BaseUrl,
    principal: Option<axum::Extension<Principal>>,
    Path(id): Path<String>,
) -> Result<Json<DatasetDetail>, ApiError> {
    let see = sees_unpublished(principal.as_ref().map(|p| &p.0));
    let (ds, current) = current_version(&state, &id, see).await?;
    let template = state.platform.catalog.get(&ds.template_id);
    let summary = DatasetSummary::new(&ds, &current, template, &base);
    let versions = state
        .platform
        .db
        .list_versions(&ds.dataset_id)
        .await?
        .iter()
        .filter(|v| v.pruned_at.is_none() && (see || !v.held))
        .map(|v| VersionView::new(v, ds.current_version, &base))
        .collect();
    Ok(Json(DatasetDetail { summary, versions }))
}
