//! Dataset templates.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorCode};
use crate::state::{AppState, BaseUrl};
use crate::views::Link;

/// Summary of a template.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateSummary {
    /// Template id (the `dataset_id` of `POST /ingestions`).
    pub id: String,
    /// Name.
    pub name: String,
    /// Variable.
    pub variable: String,
    /// Period type.
    pub period_type: String,
    /// Units.
    pub units: String,
    /// Provider.
    pub provider: String,
    /// `temporal`, `release` or `static`.
    pub sync_kind: String,
    /// Links.
    pub links: Vec<Link>,
}

/// The templates.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    /// Always `DatasetTemplateList`.
    pub kind: &'static str,
    /// Templates by id.
    pub items: Vec<TemplateSummary>,
}

/// `GET /dataset-templates`
#[utoipa::path(get, path = "/dataset-templates", tag = "templates", responses((status = 200, body = TemplateList)))]
pub async fn list_templates(State(state): State<AppState>, base: BaseUrl) -> Json<TemplateList> {
    let items = state
        .platform
        .catalog
        .iter()
        .map(|l| {
            let t = &l.template;
            TemplateSummary {
                id: t.id.to_string(),
                name: t.name.clone(),
                variable: t.variable.clone(),
                period_type: t.period_type.as_str().to_owned(),
                units: t.units.clone(),
                provider: t.ingestion.provider.clone(),
                sync_kind: serde_json::to_value(t.sync.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                links: vec![Link::typed(
                    "self",
                    base.join(&format!("/dataset-templates/{}", t.id)),
                    "application/json",
                )],
            }
        })
        .collect();
    Json(TemplateList {
        kind: "DatasetTemplateList",
        items,
    })
}

/// `GET /dataset-templates/{id}`: the whole template.
#[utoipa::path(get, path = "/dataset-templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "template id")),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_template(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let t = state.platform.catalog.get_str(&id).ok_or_else(|| {
        ApiError::not_found(
            ErrorCode::UnknownTemplate,
            format!(
                "unknown dataset template '{id}'; GET /dataset-templates lists the available ones"
            ),
        )
    })?;
    serde_json::to_value(&t.template)
        .map(Json)
        .map_err(ApiError::internal)
}
