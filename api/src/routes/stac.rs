//! `/stac`: a STAC 1.1.0 catalog of the published datasets, one Collection each, described with
//! the datacube, projection and render extensions, and with the Zarr store as its data asset
//! (the documents are built by `climate_catalog::stac`).
//!
//! `/stac` is also a minimal STAC API landing page (core + collections conformance), so
//! pystac-client and STAC browsers walk it like any STAC API; `/stac/catalog.json` is the same
//! catalog under the file name static-catalog tools look for.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use climate_catalog::stac;
use serde_json::{Value, json};

use crate::error::{ApiError, ErrorBody};
use crate::state::{AppState, BaseUrl};

/// `GET /stac/conformance`: the STAC API classes `/stac` conforms to.
#[utoipa::path(get, path = "/stac/conformance", tag = "stac",
    responses((status = 200, description = "STAC API conformance classes")))]
pub async fn conformance() -> Response {
    stac_json(json!({"conformsTo": stac::STAC_API_CONFORMANCE}))
}

/// STAC answers as JSON with the media type STAC clients expect.
fn stac_json(v: Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], Json(v)).into_response()
}

/// `GET /stac` (and `/stac/catalog.json`): the root catalog, a child link per published
/// dataset.
#[utoipa::path(get, path = "/stac", tag = "stac",
    responses((status = 200, description = "STAC 1.1.0 Catalog (and STAC API landing page)")))]
pub async fn get_catalog(
    State(state): State<AppState>,
    base: BaseUrl,
) -> Result<Response, ApiError> {
    let published = state.catalog.published().await?;
    let children: Vec<(&str, &str)> = published
        .iter()
        .map(|(ds, _)| {
            let title = state
                .catalog
                .template(ds)
                .map_or(ds.template_id.as_str(), |t| t.template.name.as_str());
            (ds.dataset_id.as_str(), title)
        })
        .collect();
    Ok(stac_json(stac::root_catalog(
        &state.platform.config.name,
        children,
        &base.0,
    )))
}

/// `GET /stac/collections`: every published dataset as a Collection.
#[utoipa::path(get, path = "/stac/collections", tag = "stac",
    responses((status = 200, description = "The published datasets as STAC Collections")))]
pub async fn list_collections(
    State(state): State<AppState>,
    base: BaseUrl,
) -> Result<Response, ApiError> {
    let collections: Vec<Value> = state
        .catalog
        .published()
        .await?
        .iter()
        .map(|(ds, v)| stac::collection(ds, v, state.catalog.template(ds), &base.0))
        .collect();
    Ok(stac_json(stac::collections(collections, &base.0)))
}

/// `GET /stac/collections/{id}`: one published dataset as a Collection.
#[utoipa::path(get, path = "/stac/collections/{id}", tag = "stac",
    params(("id" = String, Path, description = "dataset id")),
    responses((status = 200, description = "STAC 1.1.0 Collection"), (status = 404, body = ErrorBody)))]
pub async fn get_collection(
    State(state): State<AppState>,
    base: BaseUrl,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (ds, v) = state.catalog.current(&id).await?;
    Ok(stac_json(stac::collection(
        &ds,
        &v,
        state.catalog.template(&ds),
        &base.0,
    )))
}
