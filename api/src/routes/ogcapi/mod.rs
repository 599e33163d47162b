//! `/ogcapi`: OGC API — Common, Coverages and EDR over the published datasets.
//!
//! Every route reads the current version's GeoZarr store through a [`ZarrReader`] (cached per
//! immutable artifact), so what it answers is what `/zarr` serves. Parameters are parsed
//! strictly: an unknown or malformed one is a 400 naming it.
//!
//! One module per protocol: [`common`] (landing page, conformance, collections), [`coverages`]
//! (OGC API – Coverages), [`edr`] (Environmental Data Retrieval: position and area) and
//! [`tiles`] (OGC API – Tiles, WebMercatorQuad map tiles). This module opens datasets and cuts
//! windows; [`query`] parses the parameters they share.

pub mod common;
pub mod coverages;
pub mod edr;
mod query;
pub mod tiles;

use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, NaiveDateTime};
use std::ops::Range;

pub(crate) use climate_catalog::bbox_window;
use climate_catalog::window::nearest;
use climate_catalog::{CubeMeta, Opened, Window, axis_range, intersect, iso_step, rfc3339};
use climate_domain::Period;
use climate_domain::grid::{Axis, Grid};
use climate_geodata::encode;
use climate_infra::db::DatasetRecord;
use serde_json::{Value, json};

use crate::error::{ApiError, ErrorCode};
use crate::state::{AppState, BaseUrl};

pub use common::CONFORMANCE;
pub use edr::MAX_SERIES;
pub(crate) use query::*;

/// Most values a synchronous coverage or area answer holds.
pub const MAX_CELLS: u64 = 4_000_000;
/// Most values a request may read before `scale-factor` thins them.
pub const MAX_READ_CELLS: u64 = 32_000_000;

const COVJSON: &str = "application/prs.coverage+json";
const JSON: &str = "application/json";
const CRS84: &str = "http://www.opengis.net/def/crs/OGC/1.3/CRS84";

fn json_response(v: &Value) -> Response {
    ([(header::CONTENT_TYPE, JSON)], v.to_string()).into_response()
}

/// Opens a published dataset's current version for reading (readers are cached per version
/// artifact).
///
/// # Errors
/// 404 for an unknown or unpublished dataset; 503 when the store cannot be read.
pub async fn open(state: &AppState, id: &str) -> Result<Opened, ApiError> {
    Ok(state.catalog.open(id).await?)
}

fn too_large(cells: u64, limit: u64, id: &str, narrow: &str) -> ApiError {
    ApiError::new(
        ErrorCode::TooLarge,
        format!(
            "the request selects {cells} values, more than the {limit} answered synchronously: {narrow}, or read the whole cube from /zarr/{id} (or stream it as NetCDF from /datasets/{id}/download?format=netcdf)"
        ),
    )
}
