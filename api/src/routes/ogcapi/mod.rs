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

use std::ops::Range;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, NaiveDateTime};
use climate_domain::grid::{Axis, Grid};
use climate_domain::template::Display;
use climate_domain::{Period, PeriodRange};
use climate_geodata::encode::{self, Cube};
use climate_geodata::zarr_read::{ZarrReader, grid_from_transform};
use climate_infra::db::{DatasetRecord, VersionRecord};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::routes::stac::{CubeMeta, iso_step, rfc3339};
use crate::state::{AppState, BaseUrl};
use crate::views::unknown_dataset;

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

// ---------------------------------------------------------------------------------------------
// Opening a dataset

/// A published dataset's current version, ready to read.
#[derive(Debug)]
pub struct Opened {
    /// The dataset.
    pub ds: DatasetRecord,
    /// Its current version.
    pub version: VersionRecord,
    /// The version's cube description.
    pub cube: CubeMeta,
    /// Level-0 grid.
    pub grid: Grid,
    /// Period starts.
    pub times: Vec<NaiveDateTime>,
    /// The store.
    pub reader: Arc<ZarrReader>,
    /// Long name (template's, else the variable).
    pub long_name: String,
    /// Map styling, if the template has one.
    pub display: Option<Display>,
}

/// The names a window is encoded with, owned so that blocking encoders can take them along.
#[derive(Debug, Clone)]
pub struct Labels {
    /// Data variable.
    pub variable: String,
    /// Units.
    pub units: String,
    /// Long name.
    pub long_name: String,
    /// Period type.
    pub period_type: climate_domain::PeriodType,
}

impl Labels {
    /// A window of `values` over `times × grid`, labelled.
    pub fn cube<'a>(
        &'a self,
        times: &'a [NaiveDateTime],
        grid: &'a Grid,
        values: &'a [f32],
    ) -> Cube<'a> {
        Cube {
            variable: &self.variable,
            units: &self.units,
            long_name: &self.long_name,
            period_type: self.period_type,
            times,
            grid,
            values,
        }
    }
}

impl Opened {
    /// The dataset's labels.
    pub fn labels(&self) -> Labels {
        Labels {
            variable: self.cube.variable.clone(),
            units: self.cube.units.clone(),
            long_name: self.long_name.clone(),
            period_type: self.cube.period_type,
        }
    }
}

/// The prefixes an appended version reads missing keys from, newest first (none for a
/// version written whole).
pub fn version_bases(v: &VersionRecord) -> Vec<String> {
    v.metadata
        .get("bases")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Opens a published dataset for reading (readers are cached per version artifact).
///
/// # Errors
/// 404 for an unknown or unpublished dataset; 503 when the store cannot be read.
pub async fn open(state: &AppState, id: &str) -> Result<Opened, ApiError> {
    let db = &state.platform.db;
    let ds = db
        .get_dataset(id)
        .await?
        .filter(|d| d.published)
        .ok_or_else(|| unknown_dataset(id))?;
    let n = ds.current_version.ok_or_else(|| unknown_dataset(id))?;
    let version = db
        .get_version(id, n)
        .await?
        .ok_or_else(|| unknown_dataset(id))?;
    let cube = CubeMeta::of(&version)
        .ok_or_else(|| ApiError::internal(format!("version {n} of {id} has no cube metadata")))?;
    let grid = grid_from_transform(
        &cube.crs,
        cube.transform,
        [cube.shape[1] as usize, cube.shape[2] as usize],
    );
    let kind = cube.period_type;
    let range = Period::parse(kind, &version.coverage_start)
        .and_then(|s| {
            Period::parse(kind, &version.coverage_end).and_then(|e| PeriodRange::new(s, e))
        })
        .map_err(ApiError::internal)?;
    let times: Vec<NaiveDateTime> = range.iter().map(|p| p.start()).collect();
    let cached = state.reader(&version.artifact_id);
    let reader = match cached {
        Some(r) => r,
        None => {
            let r = ZarrReader::open(
                state.platform.store.object_store(),
                &version.storage_prefix,
                &version_bases(&version),
                &cube.variable,
                grid.clone(),
                cube.shape[0],
            )
            .await
            .map_err(|e| ApiError::unavailable("object store", e))?;
            state.keep_reader(&version.artifact_id, r)
        }
    };
    let template = state.platform.catalog.get_str(&ds.template_id);
    let long_name = template.map_or_else(
        || cube.variable.clone(),
        |t| t.template.long_name().to_owned(),
    );
    let display = template.and_then(|t| t.template.display.clone());
    Ok(Opened {
        ds,
        version,
        cube,
        grid,
        times,
        reader,
        long_name,
        display,
    })
}

// ---------------------------------------------------------------------------------------------
// Windows

/// A window of the level-0 grid: rows, columns and time indices, thinned by `step`.
#[derive(Debug, Clone)]
struct Window {
    t: Range<usize>,
    rows: Range<usize>,
    cols: Range<usize>,
    step: usize,
}

impl Window {
    fn out_len(r: &Range<usize>, step: usize) -> usize {
        r.len().div_ceil(step)
    }
    fn cells(&self) -> u64 {
        (self.t.len() * Self::out_len(&self.rows, self.step) * Self::out_len(&self.cols, self.step))
            as u64
    }
    /// Values held by one read: thinned windows are read a period at a time.
    fn read_cells(&self) -> u64 {
        let periods = if self.step > 1 { 1 } else { self.t.len() };
        (periods * self.rows.len() * self.cols.len()) as u64
    }
    /// The output grid (pixel centres of the kept rows and columns).
    fn grid(&self, g: &Grid) -> Grid {
        let axis = |a: &Axis, r: &Range<usize>| Axis {
            first: a.centre(r.start),
            step: a.step * self.step as f64,
            len: Self::out_len(r, self.step),
        };
        Grid {
            crs: g.crs.clone(),
            x: axis(&g.x, &self.cols),
            y: axis(&g.y, &self.rows),
        }
    }
}

/// Indices of `axis` whose centres lie in `[lo, hi]` (either order), or the nearest one for a
/// single value; `what` names the parameter in errors.
fn axis_range(axis: &Axis, lo: f64, hi: Option<f64>, what: &str) -> Result<Range<usize>, ApiError> {
    let (a, b) = match hi {
        Some(h) => (lo.min(h), lo.max(h)),
        None => {
            let i = nearest(axis, lo).ok_or_else(|| {
                ApiError::bad_request(format!("{what}: {lo} is outside the data"))
            })?;
            return Ok(i..i + 1);
        }
    };
    axis.clip(a, b).ok_or_else(|| {
        let (e0, e1) = (axis.leading_edge(), axis.trailing_edge());
        ApiError::bad_request(format!(
            "{what}: {a}..{b} holds no pixel centre; the data spans {}..{}",
            e0.min(e1),
            e0.max(e1)
        ))
    })
}

/// The pixel containing `v`, if any.
fn nearest(axis: &Axis, v: f64) -> Option<usize> {
    let f = ((v - axis.first) / axis.step).round();
    (f >= 0.0 && f < axis.len as f64).then_some(f as usize)
}

fn intersect(a: Range<usize>, b: Range<usize>, what: &str) -> Result<Range<usize>, ApiError> {
    let r = a.start.max(b.start)..a.end.min(b.end);
    if r.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{what}: bbox and subset do not overlap"
        )));
    }
    Ok(r)
}

/// A CRS84 bbox as a window of the storage grid (projected grids: the envelope of the bbox's
/// projected outline).
pub(crate) fn bbox_window(
    grid: &Grid,
    bbox: [f64; 4],
) -> Result<(Range<usize>, Range<usize>), ApiError> {
    let [w, s, e, n] = if grid.crs == "EPSG:4326" {
        bbox
    } else {
        climate_geodata::reproject::project_bounds(bbox, "EPSG:4326", &grid.crs, 9)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::bad_request("bbox: cannot be projected onto the data's CRS"))?
    };
    Ok((
        axis_range(&grid.y, s, Some(n), "bbox")?,
        axis_range(&grid.x, w, Some(e), "bbox")?,
    ))
}

/// Reads a window (thinning by `step`) as `[t, y, x]`.
async fn read_window(o: &Opened, w: &Window) -> Result<Vec<f32>, ApiError> {
    let read = |t: Range<usize>| {
        o.reader.read(
            0,
            t.start as u64..t.end as u64,
            w.rows.start as u64..w.rows.end as u64,
            w.cols.start as u64..w.cols.end as u64,
        )
    };
    let store = |e| ApiError::unavailable("object store", e);
    if w.step == 1 {
        return read(w.t.clone()).await.map_err(store);
    }
    // Thinned: one period at a time, so only one full-resolution field is held.
    let (ny, nx) = (w.rows.len(), w.cols.len());
    let mut out = Vec::with_capacity(w.cells() as usize);
    for t in w.t.clone() {
        let field = read(t..t + 1).await.map_err(store)?;
        for y in (0..ny).step_by(w.step) {
            for x in (0..nx).step_by(w.step) {
                out.push(field[y * nx + x]);
            }
        }
    }
    Ok(out)
}

fn too_large(cells: u64, limit: u64, id: &str, narrow: &str) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "the request selects {cells} values, more than the {limit} answered synchronously: {narrow}, or read the whole cube from /zarr/{id} (or stream it as NetCDF from /datasets/{id}/download?format=netcdf)"
        ),
    )
}

/// How period `t` of a dataset is drawn: the template's display, else viridis over the
/// period's value range, taken from the coarsest pyramid level (the whole field, cheaply), so
/// that coverage PNGs and every map tile of a period share one colour scale.
async fn display_for(o: &Opened, t: usize) -> Result<Display, ApiError> {
    if let Some(d) = &o.display {
        return Ok(d.clone());
    }
    let (level, grid) = o
        .reader
        .level_grids()
        .enumerate()
        .last()
        .map(|(i, g)| (i, g.clone()))
        .unwrap_or_else(|| (0, o.grid.clone()));
    let values = o
        .reader
        .read(
            level,
            t as u64..t as u64 + 1,
            0..grid.y.len as u64,
            0..grid.x.len as u64,
        )
        .await
        .map_err(|e| ApiError::unavailable("object store", e))?;
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::MAX, f64::MIN), |(a, b), v| {
            (a.min(f64::from(*v)), b.max(f64::from(*v)))
        });
    Ok(Display {
        colormap: "viridis".into(),
        range: if lo < hi { [lo, hi] } else { [0.0, 1.0] },
    })
}
