//! `/ogcapi`: OGC API — Common, Coverages and EDR over the published datasets.
//!
//! Every route reads the current version's GeoZarr store through a [`ZarrReader`] (cached per
//! immutable artifact), so what it answers is what `/zarr` serves. Parameters are parsed
//! strictly: an unknown or malformed one is a 400 naming it.

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

/// Most values a synchronous coverage or area answer holds.
pub const MAX_CELLS: u64 = 4_000_000;
/// Most values a request may read before `scale-factor` thins them.
pub const MAX_READ_CELLS: u64 = 32_000_000;

const COVJSON: &str = "application/prs.coverage+json";
const JSON: &str = "application/json";
const CRS84: &str = "http://www.opengis.net/def/crs/OGC/1.3/CRS84";

/// The conformance classes this implementation passes (and nothing more).
pub const CONFORMANCE: &[&str] = &[
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/landing-page",
    "http://www.opengis.net/spec/ogcapi-common-2/1.0/conf/collections",
    "http://www.opengis.net/spec/ogcapi-coverages-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-coverages-1/1.0/conf/subsetting",
    "http://www.opengis.net/spec/ogcapi-coverages-1/1.0/conf/bbox",
    "http://www.opengis.net/spec/ogcapi-coverages-1/1.0/conf/datetime",
    "http://www.opengis.net/spec/ogcapi-coverages-1/1.0/conf/fieldselection",
    "http://www.opengis.net/spec/ogcapi-coverages-1/1.0/conf/coveragejson",
    "http://www.opengis.net/spec/ogcapi-coverages-1/1.0/conf/geotiff",
    "http://www.opengis.net/spec/ogcapi-coverages-1/1.0/conf/netcdf",
    "http://www.opengis.net/spec/ogcapi-edr-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-edr-1/1.0/conf/position",
    "http://www.opengis.net/spec/ogcapi-edr-1/1.0/conf/area",
    "http://www.opengis.net/spec/ogcapi-edr-1/1.0/conf/covjson",
    "http://www.opengis.net/spec/ogcapi-edr-1/1.0/conf/csv",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/png",
];

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
// Query parameters

/// The query string as (name, value) pairs, checked against the names a route accepts.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(raw: Option<String>, allowed: &[&str]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        for (k, _) in &pairs {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter '{k}': this endpoint accepts {}",
                    allowed.join(", ")
                )));
            }
        }
        Ok(Self(pairs))
    }

    pub(crate) fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut it = self.0.iter().filter(|(k, _)| k == name);
        let first = it.next().map(|(_, v)| v.as_str());
        if it.next().is_some() {
            return Err(ApiError::bad_request(format!(
                "parameter '{name}' is given more than once"
            )));
        }
        Ok(first)
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_f64(param: &str, s: &str) -> Result<f64, ApiError> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| ApiError::bad_request(format!("{param}: '{s}' is not a number")))
}

/// `bbox=minx,miny,maxx,maxy` in CRS84.
pub(crate) fn parse_bbox(s: &str) -> Result<[f64; 4], ApiError> {
    let parts: Vec<&str> = s.split(',').collect();
    if parts.len() != 4 {
        return Err(ApiError::bad_request(format!(
            "bbox: '{s}' must be four numbers minLon,minLat,maxLon,maxLat (CRS84)"
        )));
    }
    let v: Vec<f64> = parts
        .iter()
        .map(|p| parse_f64("bbox", p))
        .collect::<Result<_, _>>()?;
    if v[0] > v[2] || v[1] > v[3] {
        return Err(ApiError::bad_request(format!(
            "bbox: '{s}' has min above max; give minLon,minLat,maxLon,maxLat"
        )));
    }
    Ok([v[0], v[1], v[2], v[3]])
}

/// An instant: `YYYY-MM-DD`, or an RFC 3339 / ISO date-time (a `Z` or offset is read as UTC).
fn parse_instant(param: &str, s: &str) -> Result<NaiveDateTime, ApiError> {
    use chrono::Datelike;
    let t = parse_instant_any(param, s)?;
    if !(1..=9999).contains(&t.year()) {
        return Err(ApiError::bad_request(format!(
            "{param}: '{s}' is outside the years 1 to 9999"
        )));
    }
    Ok(t)
}

fn parse_instant_any(param: &str, s: &str) -> Result<NaiveDateTime, ApiError> {
    let s = s.trim().trim_matches('"');
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.naive_utc());
    }
    for f in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(t);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN));
    }
    Err(ApiError::bad_request(format!(
        "{param}: '{s}' is not a date or date-time (use e.g. 2025-07-01 or 2025-07-01T00:00:00Z)"
    )))
}

/// A time selection: an instant (the period containing it) or a closed/open interval of
/// period starts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TimeSel {
    Instant(NaiveDateTime),
    Interval(Option<NaiveDateTime>, Option<NaiveDateTime>),
}

pub(crate) fn parse_datetime(param: &str, s: &str) -> Result<TimeSel, ApiError> {
    let open = |p: &str| -> Result<Option<NaiveDateTime>, ApiError> {
        let p = p.trim().trim_matches('"');
        if p.is_empty() || p == ".." || p == "*" {
            Ok(None)
        } else {
            parse_instant(param, p).map(Some)
        }
    };
    match s.split_once('/') {
        Some((a, b)) => {
            let (a, b) = (open(a)?, open(b)?);
            if let (Some(a), Some(b)) = (a, b)
                && a > b
            {
                return Err(ApiError::bad_request(format!(
                    "{param}: '{s}' ends before it starts"
                )));
            }
            Ok(TimeSel::Interval(a, b))
        }
        None => Ok(TimeSel::Instant(parse_instant(param, s)?)),
    }
}

/// The time indices a selection picks out of `times` (period starts of `kind`).
pub(crate) fn select_times(
    opened: &Opened,
    sel: Option<TimeSel>,
    param: &str,
) -> Result<Range<usize>, ApiError> {
    let times = &opened.times;
    let n = times.len();
    let coverage = || {
        format!(
            "the dataset covers {} to {}",
            times.first().map(|t| rfc3339(*t)).unwrap_or_default(),
            times.last().map(|t| rfc3339(*t)).unwrap_or_default()
        )
    };
    let range = match sel {
        None => 0..n,
        Some(TimeSel::Instant(t)) => {
            let start = Period::containing(opened.cube.period_type, t).start();
            match times.binary_search(&start) {
                Ok(i) => i..i + 1,
                Err(_) => {
                    return Err(ApiError::bad_request(format!(
                        "{param}: {} is outside the data; {}",
                        rfc3339(t),
                        coverage()
                    )));
                }
            }
        }
        // An interval selects the periods it intersects: from the one containing its start
        // to the last one starting at or before its end.
        Some(TimeSel::Interval(a, b)) => {
            let kind = opened.cube.period_type;
            let lo = a.map_or(0, |a| {
                times.partition_point(|t| Period::containing(kind, *t).end() <= a)
            });
            let hi = b.map_or(n, |b| times.partition_point(|t| *t <= b));
            lo..hi.max(lo)
        }
    };
    if range.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{param}: no period in the requested interval; {}",
            coverage()
        )));
    }
    Ok(range)
}

/// One `subset` term: `axis(lo:hi)` or `axis(value)`.
#[derive(Debug, Clone)]
struct Subset {
    axis: char,
    lo: String,
    hi: Option<String>,
    /// Named `Lon`/`Lat`/`E`/`N`: geographic axes, meaningful only on geographic data.
    geographic_name: bool,
}

/// Parses `subset=t("a":"b"),x(lo:hi),y(v)` (terms may also come in several `subset`
/// parameters). Axis names: `t`/`time`, `x`/`Lon`/`E`, `y`/`Lat`/`N`.
fn parse_subsets<'a>(values: impl Iterator<Item = &'a str>) -> Result<Vec<Subset>, ApiError> {
    let mut out = Vec::new();
    for value in values {
        let mut rest = value.trim();
        while !rest.is_empty() {
            let open = rest.find('(').ok_or_else(|| bad_subset(value))?;
            let close = rest.find(')').ok_or_else(|| bad_subset(value))?;
            if close < open {
                return Err(bad_subset(value));
            }
            let name = rest[..open].trim();
            let axis = match name.to_ascii_lowercase().as_str() {
                "t" | "time" => 't',
                "x" | "lon" | "long" | "e" => 'x',
                "y" | "lat" | "n" => 'y',
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "subset: unknown axis '{name}'; use t (or time), x (or Lon) and y (or Lat)"
                    )));
                }
            };
            let geographic_name = matches!(
                name.to_ascii_lowercase().as_str(),
                "lon" | "long" | "e" | "lat" | "n"
            );
            if out.iter().any(|s: &Subset| s.axis == axis) {
                return Err(ApiError::bad_request(format!(
                    "subset: axis '{name}' is subset twice"
                )));
            }
            let inner = &rest[open + 1..close];
            // Split on the first ':' outside quotes (times carry their own colons).
            let mut split = None;
            let mut quoted = false;
            for (i, ch) in inner.char_indices() {
                match ch {
                    '"' => quoted = !quoted,
                    ':' if !quoted => {
                        split = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let (lo, hi) = match split {
                Some(i) => (inner[..i].to_owned(), Some(inner[i + 1..].to_owned())),
                None => (inner.to_owned(), None),
            };
            out.push(Subset {
                axis,
                lo,
                hi,
                geographic_name,
            });
            rest = rest[close + 1..].trim_start_matches(',').trim();
        }
    }
    Ok(out)
}

fn bad_subset(value: &str) -> ApiError {
    ApiError::bad_request(format!(
        "subset: '{value}' must look like t(\"2025-07-01\":\"2025-07-05\"),x(-13:-12),y(8)"
    ))
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

// ---------------------------------------------------------------------------------------------
// Landing, conformance, collections

/// `GET /ogcapi`: the OGC API landing page.
#[utoipa::path(get, path = "/ogcapi", tag = "ogcapi", responses((status = 200, description = "Landing page")))]
pub async fn landing(State(state): State<AppState>, base: BaseUrl) -> Response {
    json_response(&json!({
        "title": state.platform.config.name,
        "description": "OGC API - Coverages and EDR over the published climate datasets",
        "links": [
            {"rel": "self", "href": base.join("/ogcapi"), "type": JSON},
            {"rel": "service-desc", "href": base.join("/openapi.json"), "type": "application/vnd.oai.openapi+json;version=3.1"},
            {"rel": "conformance", "href": base.join("/ogcapi/conformance"), "type": JSON},
            {"rel": "data", "href": base.join("/ogcapi/collections"), "type": JSON},
        ],
    }))
}

/// `GET /ogcapi/conformance`
#[utoipa::path(get, path = "/ogcapi/conformance", tag = "ogcapi", responses((status = 200, description = "Conformance classes")))]
pub async fn conformance() -> Response {
    json_response(&json!({"conformsTo": CONFORMANCE}))
}

/// What a collection document is built from (no store access).
struct Described<'a> {
    id: &'a str,
    cube: &'a CubeMeta,
    long_name: &'a str,
}

fn collection_doc(o: &Described<'_>, template_name: &str, base: &BaseUrl) -> Value {
    let id = o.id;
    let c = o.cube;
    let link = |rel: &str, path: &str, ty: &str| json!({"rel": rel, "href": base.join(&format!("/ogcapi/collections/{id}{path}")), "type": ty});
    // Coverages are answered in the storage CRS only (bbox and coords are read as CRS84).
    let storage_crs = encode::crs_uri(&c.crs);
    let crs = vec![storage_crs.clone()];
    json!({
        "id": id,
        "title": template_name,
        "description": format!("{} ({}), {} periods", o.long_name, c.units, c.period_type.as_str()),
        "extent": {
            "spatial": {"bbox": [c.wgs84_bbox()], "crs": CRS84},
            "temporal": {
                "interval": [[rfc3339(c.time.0), rfc3339(c.time.1)]],
                "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian",
                "resolution": iso_step(c.period_type),
            },
        },
        "crs": crs,
        "storageCrs": storage_crs,
        "itemType": "coverage",
        "data_queries": {
            "position": {"link": {"href": base.join(&format!("/ogcapi/collections/{id}/position")), "rel": "data",
                "variables": {"query_type": "position", "output_formats": ["CoverageJSON", "CSV"], "default_output_format": "CoverageJSON"}}},
            "area": {"link": {"href": base.join(&format!("/ogcapi/collections/{id}/area")), "rel": "data",
                "variables": {"query_type": "area", "output_formats": ["CoverageJSON"], "default_output_format": "CoverageJSON"}}},
        },
        "output_formats": ["CoverageJSON", "NetCDF", "GeoTIFF", "PNG"],
        "parameter_names": {
            c.variable.clone(): {
                "type": "Parameter",
                "description": {"en": o.long_name},
                "unit": {"symbol": c.units},
                "observedProperty": {"label": {"en": o.long_name}},
            }
        },
        "links": [
            link("self", "", JSON),
            link("http://www.opengis.net/def/rel/ogc/1.0/coverage", "/coverage", COVJSON),
            link("http://www.opengis.net/def/rel/ogc/1.0/coverage-domainset", "/coverage/domainset", JSON),
            link("http://www.opengis.net/def/rel/ogc/1.0/coverage-rangetype", "/coverage/rangetype", JSON),
            {"rel": "describedby", "href": base.join(&format!("/stac/collections/{id}")), "type": JSON},
            {"rel": "enclosure", "href": base.join(&format!("/zarr/{id}")), "type": "application/vnd+zarr"},
            link("http://www.opengis.net/def/rel/ogc/1.0/tilesets-map", "/map/tiles", JSON),
        ],
    })
}

fn template_name(state: &AppState, ds: &DatasetRecord) -> String {
    state
        .platform
        .catalog
        .get_str(&ds.template_id)
        .map_or_else(|| ds.template_id.clone(), |t| t.template.name.clone())
}

/// `GET /ogcapi/collections`
#[utoipa::path(get, path = "/ogcapi/collections", tag = "ogcapi", responses((status = 200, description = "The published datasets")))]
pub async fn collections(
    State(state): State<AppState>,
    base: BaseUrl,
) -> Result<Response, ApiError> {
    // Built from the versions' metadata, without opening stores; a dataset whose metadata is
    // unreadable is left out (and logged) rather than failing the list.
    let db = &state.platform.db;
    let mut datasets: Vec<DatasetRecord> = db
        .list_datasets()
        .await?
        .into_iter()
        .filter(|d| d.published)
        .collect();
    datasets.sort_by(|a, b| a.dataset_id.cmp(&b.dataset_id));
    let mut docs = Vec::new();
    for ds in datasets {
        let Some(n) = ds.current_version else {
            continue;
        };
        let Some(v) = db.get_version(&ds.dataset_id, n).await? else {
            continue;
        };
        let Some(cube) = CubeMeta::of(&v) else {
            tracing::warn!(dataset = %ds.dataset_id, version = n, "version without cube metadata left out of /ogcapi/collections");
            continue;
        };
        let template = state.platform.catalog.get_str(&ds.template_id);
        let long_name = template.map_or_else(
            || cube.variable.clone(),
            |t| t.template.long_name().to_owned(),
        );
        let described = Described {
            id: &ds.dataset_id,
            cube: &cube,
            long_name: &long_name,
        };
        docs.push(collection_doc(
            &described,
            &template_name(&state, &ds),
            &base,
        ));
    }
    Ok(json_response(&json!({
        "collections": docs,
        "links": [
            {"rel": "self", "href": base.join("/ogcapi/collections"), "type": JSON},
            {"rel": "parent", "href": base.join("/ogcapi"), "type": JSON},
        ],
    })))
}

/// `GET /ogcapi/collections/{id}`
#[utoipa::path(get, path = "/ogcapi/collections/{id}", tag = "ogcapi",
    params(("id" = String, Path, description = "dataset id")),
    responses((status = 200, description = "A collection (coverage)"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn collection(
    State(state): State<AppState>,
    base: BaseUrl,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let o = open(&state, &id).await?;
    let described = Described {
        id: &o.ds.dataset_id,
        cube: &o.cube,
        long_name: &o.long_name,
    };
    Ok(json_response(&collection_doc(
        &described,
        &template_name(&state, &o.ds),
        &base,
    )))
}

/// `GET /ogcapi/collections/{id}/coverage/domainset`
#[utoipa::path(get, path = "/ogcapi/collections/{id}/coverage/domainset", tag = "ogcapi",
    params(("id" = String, Path, description = "dataset id")),
    responses((status = 200, description = "The coverage's domain set"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn domainset(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let o = open(&state, &id).await?;
    let g = &o.grid;
    let [w, s, e, n] = g.edge_bounds();
    let geographic = g.crs == "EPSG:4326";
    let uom = if geographic { "deg" } else { "m" };
    Ok(json_response(&json!({
        "type": "DomainSet",
        "generalGrid": {
            "type": "GeneralGridCoverage",
            "srsName": encode::crs_uri(&g.crs),
            "axisLabels": ["x", "y", "t"],
            "axis": [
                {"type": "RegularAxis", "axisLabel": "x", "lowerBound": w, "upperBound": e,
                 "uomLabel": uom, "resolution": g.x.step},
                {"type": "RegularAxis", "axisLabel": "y", "lowerBound": s, "upperBound": n,
                 "uomLabel": uom, "resolution": g.y.step},
                {"type": "IrregularAxis", "axisLabel": "t", "uomLabel": iso_step(o.cube.period_type),
                 "coordinate": o.times.iter().map(|t| rfc3339(*t)).collect::<Vec<_>>()},
            ],
            "gridLimits": {
                "type": "GridLimits",
                "srsName": "http://www.opengis.net/def/crs/OGC/0/Index3D",
                "axisLabels": ["i", "j", "k"],
                "axis": [
                    {"type": "IndexAxis", "axisLabel": "i", "lowerBound": 0, "upperBound": g.x.len.saturating_sub(1)},
                    {"type": "IndexAxis", "axisLabel": "j", "lowerBound": 0, "upperBound": g.y.len.saturating_sub(1)},
                    {"type": "IndexAxis", "axisLabel": "k", "lowerBound": 0, "upperBound": o.times.len().saturating_sub(1)},
                ],
            },
        },
    })))
}

/// `GET /ogcapi/collections/{id}/coverage/rangetype`
#[utoipa::path(get, path = "/ogcapi/collections/{id}/coverage/rangetype", tag = "ogcapi",
    params(("id" = String, Path, description = "dataset id")),
    responses((status = 200, description = "The coverage's range type"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn rangetype(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let o = open(&state, &id).await?;
    Ok(json_response(&json!({
        "type": "DataRecord",
        "field": [{
            "type": "Quantity",
            "name": o.cube.variable,
            "definition": o.long_name,
            "description": o.long_name,
            "encodingInfo": {"dataType": "http://www.opengis.net/def/dataType/OGC/0/float32"},
            "nilValues": [{"reason": "http://www.opengis.net/def/nil/OGC/0/missing", "value": "NaN"}],
            "uom": {"type": "UnitReference", "code": o.cube.units},
        }],
    })))
}

// ---------------------------------------------------------------------------------------------
// Coverage

/// Output format of a coverage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    CovJson,
    NetCdf,
    GeoTiff,
    Png,
}

fn parse_format(s: Option<&str>) -> Result<Format, ApiError> {
    Ok(match s.map(str::to_ascii_lowercase).as_deref() {
        None | Some("json" | "covjson" | "coveragejson") => Format::CovJson,
        Some("netcdf" | "nc") => Format::NetCdf,
        Some("geotiff" | "tiff" | "tif") => Format::GeoTiff,
        Some("png") => Format::Png,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "f: unknown format '{other}'; use covjson (default), netcdf, geotiff or png"
            )));
        }
    })
}

/// `GET /ogcapi/collections/{id}/coverage`: a window of the cube.
#[utoipa::path(get, path = "/ogcapi/collections/{id}/coverage", tag = "ogcapi",
    params(("id" = String, Path, description = "dataset id"),
           ("bbox" = Option<String>, Query, description = "minLon,minLat,maxLon,maxLat (CRS84)"),
           ("datetime" = Option<String>, Query, description = "instant, or interval a/b with open ends .."),
           ("subset" = Option<String>, Query, description = "t(\"a\":\"b\"),x(lo:hi),y(lo:hi) in the storage CRS"),
           ("properties" = Option<String>, Query, description = "the variable (the only field)"),
           ("scale-factor" = Option<u32>, Query, description = "keep every n-th row and column"),
           ("f" = Option<String>, Query, description = "covjson (default), netcdf, geotiff, png")),
    responses((status = 200, description = "The coverage"), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody)))]
pub async fn coverage(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(
        raw,
        &[
            "bbox",
            "datetime",
            "subset",
            "properties",
            "scale-factor",
            "f",
        ],
    )?;
    let format = parse_format(q.one("f")?)?;
    let o = open(&state, &id).await?;
    if let Some(p) = q.one("properties")? {
        for name in p.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if name != o.cube.variable {
                return Err(ApiError::bad_request(format!(
                    "properties: '{name}' is not a field of this coverage; its only field is '{}'",
                    o.cube.variable
                )));
            }
        }
    }
    let step = match q.one("scale-factor")? {
        None => 1,
        Some(s) => s
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1024).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "scale-factor: '{s}' must be a whole number from 1 to 1024 (keep every n-th row and column)"
                ))
            })?,
    };
    let g = &o.grid;
    let (mut rows, mut cols) = (0..g.y.len, 0..g.x.len);
    if let Some(b) = q.one("bbox")? {
        let (r, c) = bbox_window(g, parse_bbox(b)?)?;
        (rows, cols) = (r, c);
    }
    let mut tsel = match q.one("datetime")? {
        Some(s) => Some(parse_datetime("datetime", s)?),
        None => None,
    };
    for s in parse_subsets(q.all("subset"))? {
        match s.axis {
            't' => {
                if tsel.is_some() {
                    return Err(ApiError::bad_request(
                        "subset: give the time either as datetime or as subset t(…), not both",
                    ));
                }
                tsel = Some(match &s.hi {
                    Some(hi) => parse_datetime("subset", &format!("{}/{hi}", s.lo))?,
                    None => TimeSel::Instant(parse_instant("subset", &s.lo)?),
                });
            }
            axis => {
                if s.geographic_name && g.crs != "EPSG:4326" {
                    return Err(ApiError::bad_request(format!(
                        "subset: this coverage is stored in {}, so its axes are x and y (in that CRS), not Lon/Lat",
                        g.crs
                    )));
                }
                // `*` leaves that end open.
                let bound = |v: &str, open: f64| {
                    let v = v.trim().trim_matches('"');
                    if v == "*" {
                        Ok(open)
                    } else {
                        parse_f64("subset", v)
                    }
                };
                let (lo, hi) = match s.hi.as_deref() {
                    Some(h) => (
                        bound(&s.lo, f64::NEG_INFINITY)?,
                        Some(bound(h, f64::INFINITY)?),
                    ),
                    None => (parse_f64("subset", s.lo.trim_matches('"'))?, None),
                };
                if axis == 'x' {
                    cols = intersect(cols, axis_range(&g.x, lo, hi, "subset x")?, "subset x")?;
                } else {
                    rows = intersect(rows, axis_range(&g.y, lo, hi, "subset y")?, "subset y")?;
                }
            }
        }
    }
    let t = select_times(&o, tsel, "datetime")?;
    let w = Window {
        t,
        rows,
        cols,
        step,
    };
    if w.cells() > MAX_CELLS {
        return Err(too_large(
            w.cells(),
            MAX_CELLS,
            &id,
            "narrow bbox, datetime or subset, thin it with scale-factor",
        ));
    }
    if w.read_cells() > MAX_READ_CELLS {
        return Err(too_large(
            w.read_cells(),
            MAX_READ_CELLS,
            &id,
            "narrow bbox or subset (a thinned request still reads whole periods)",
        ));
    }
    if format == Format::Png && w.t.len() != 1 {
        return Err(ApiError::bad_request(format!(
            "f=png draws one period but {} are selected: narrow datetime to one instant",
            w.t.len()
        )));
    }
    let values = read_window(&o, &w).await?;
    let grid = w.grid(g);
    let times = &o.times[w.t.clone()];
    let labels = o.labels();
    let cube = labels.cube(times, &grid, &values);
    let filename = |ext: &str| {
        format!(
            "attachment; filename=\"{id}_{}.{ext}\"",
            times
                .first()
                .map(|t| t.format("%Y%m%d%H").to_string())
                .unwrap_or_default()
        )
    };
    Ok(match format {
        Format::CovJson => (
            [(header::CONTENT_TYPE, COVJSON)],
            encode::coverage_json(&cube),
        )
            .into_response(),
        Format::GeoTiff => {
            let bytes = encode::geotiff(&cube).map_err(ApiError::bad_request)?;
            (
                [
                    (
                        header::CONTENT_TYPE,
                        "image/tiff; application=geotiff".to_owned(),
                    ),
                    (header::CONTENT_DISPOSITION, filename("tif")),
                ],
                bytes,
            )
                .into_response()
        }
        Format::Png => {
            let display = display_for(&o, w.t.start).await?;
            let bytes = encode::png(&values, grid.y.len, grid.x.len, &display)
                .map_err(ApiError::internal)?;
            ([(header::CONTENT_TYPE, "image/png")], bytes).into_response()
        }
        Format::NetCdf => {
            let bytes = tokio::task::spawn_blocking({
                let times = times.to_vec();
                move || -> Result<Vec<u8>, String> {
                    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                    let path = dir.path().join("coverage.nc");
                    encode::netcdf(&labels.cube(&times, &grid, &values), &path)?;
                    std::fs::read(&path).map_err(|e| e.to_string())
                }
            })
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
            (
                [
                    (header::CONTENT_TYPE, "application/x-netcdf".to_owned()),
                    (header::CONTENT_DISPOSITION, filename("nc")),
                ],
                bytes,
            )
                .into_response()
        }
    })
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

// ---------------------------------------------------------------------------------------------
// EDR

/// Parses `POINT(x y)` (CRS84).
fn parse_point(s: &str) -> Result<(f64, f64), ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "coords: '{s}' must be a WKT point in CRS84, e.g. POINT(-11.8 8.5)"
        ))
    };
    let t = s.trim();
    let inner = t
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("point"))
        .and_then(|_| t[5..].trim().strip_prefix('('))
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(bad)?;
    let nums: Vec<&str> = inner.split_whitespace().collect();
    if nums.len() != 2 {
        return Err(bad());
    }
    Ok((parse_f64("coords", nums[0])?, parse_f64("coords", nums[1])?))
}

/// Parses `POLYGON((x y, …), (hole…))` (CRS84) into rings.
fn parse_polygon(s: &str) -> Result<Vec<Vec<(f64, f64)>>, ApiError> {
    let bad = |why: &str| {
        ApiError::bad_request(format!(
            "coords: '{s}' is not a WKT polygon ({why}); e.g. POLYGON((-12 8, -11 8, -11 9, -12 9, -12 8))"
        ))
    };
    let t = s.trim();
    let body = t
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("polygon"))
        .map(|_| t[7..].trim())
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| bad("it must start with POLYGON(("))?;
    let mut rings = Vec::new();
    for part in body.split(')') {
        let part = part.trim().trim_start_matches(',').trim();
        if part.is_empty() {
            continue;
        }
        let coords = part
            .strip_prefix('(')
            .ok_or_else(|| bad("each ring is in parentheses"))?;
        let ring: Vec<(f64, f64)> = coords
            .split(',')
            .map(|p| {
                let n: Vec<&str> = p.split_whitespace().collect();
                if n.len() != 2 {
                    return Err(bad("each vertex is 'x y'"));
                }
                Ok((parse_f64("coords", n[0])?, parse_f64("coords", n[1])?))
            })
            .collect::<Result<_, _>>()?;
        if ring.len() < 4 || ring.first() != ring.last() {
            return Err(bad(
                "a ring has at least 4 vertices and ends where it starts",
            ));
        }
        rings.push(ring);
    }
    if rings.is_empty() {
        return Err(bad("no ring"));
    }
    Ok(rings)
}

/// Even-odd rule over all rings (holes included).
fn inside(rings: &[Vec<(f64, f64)>], x: f64, y: f64) -> bool {
    let mut odd = false;
    for ring in rings {
        for w in ring.windows(2) {
            let ((x1, y1), (x2, y2)) = (w[0], w[1]);
            if (y1 > y) != (y2 > y) && x < x1 + (y - y1) * (x2 - x1) / (y2 - y1) {
                odd = !odd;
            }
        }
    }
    odd
}

/// `GET /ogcapi/collections/{id}/position?coords=POINT(x y)`: the time series at a point.
#[utoipa::path(get, path = "/ogcapi/collections/{id}/position", tag = "ogcapi",
    params(("id" = String, Path, description = "dataset id"),
           ("coords" = String, Query, description = "POINT(lon lat) in CRS84"),
           ("datetime" = Option<String>, Query, description = "instant or interval"),
           ("parameter-name" = Option<String>, Query, description = "the variable"),
           ("f" = Option<String>, Query, description = "CoverageJSON (default) or CSV")),
    responses((status = 200, description = "A point series"), (status = 400, body = crate::error::ErrorBody)))]
pub async fn position(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(
        raw,
        &["coords", "datetime", "parameter-name", "f", "crs", "z"],
    )?;
    let csv = match q.one("f")?.map(str::to_ascii_lowercase).as_deref() {
        None | Some("coveragejson" | "covjson" | "json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "f: unknown format '{other}'; use CoverageJSON (default) or CSV"
            )));
        }
    };
    check_crs(&q)?;
    let coords = q
        .one("coords")?
        .ok_or_else(|| ApiError::bad_request("coords: required, e.g. coords=POINT(-11.8 8.5)"))?;
    let (lon, lat) = parse_point(coords)?;
    let o = open(&state, &id).await?;
    check_parameter(&q, &o)?;
    let (mut x, mut y) = (lon, lat);
    if o.grid.crs != "EPSG:4326" {
        let mut p = [(lon, lat)];
        climate_geodata::reproject::from_wgs84(&o.grid.crs, &mut p).map_err(ApiError::internal)?;
        (x, y) = p[0];
    }
    let (Some(col), Some(row)) = (nearest(&o.grid.x, x), nearest(&o.grid.y, y)) else {
        let [w, s, e, n] = o.cube.wgs84_bbox();
        return Err(ApiError::bad_request(format!(
            "coords: POINT({lon} {lat}) is outside the data, which covers lon {w}..{e}, lat {s}..{n}"
        )));
    };
    let sel = match q.one("datetime")? {
        Some(s) => Some(parse_datetime("datetime", s)?),
        None => None,
    };
    let t = select_times(&o, sel, "datetime")?;
    if t.len() > MAX_SERIES {
        return Err(too_large(
            t.len() as u64,
            MAX_SERIES as u64,
            &id,
            "narrow datetime",
        ));
    }
    let values = read_window(
        &o,
        &Window {
            t: t.clone(),
            rows: row..row + 1,
            cols: col..col + 1,
            step: 1,
        },
    )
    .await?;
    let grid = Grid {
        crs: o.grid.crs.clone(),
        x: Axis {
            first: o.grid.x.centre(col),
            step: o.grid.x.step,
            len: 1,
        },
        y: Axis {
            first: o.grid.y.centre(row),
            step: o.grid.y.step,
            len: 1,
        },
    };
    let labels = o.labels();
    let cube = labels.cube(&o.times[t], &grid, &values);
    let (cx, cy) = (grid.x.first, grid.y.first);
    Ok(if csv {
        (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            encode::point_series_csv(&cube, cx, cy),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, COVJSON)],
            encode::point_series_json(&cube, cx, cy),
        )
            .into_response()
    })
}

/// EDR `crs`: coordinates are CRS84; anything else is refused rather than misread.
fn check_crs(q: &Query) -> Result<(), ApiError> {
    if let Some(c) = q.one("crs")?
        && !matches!(c, "CRS84" | CRS84 | "EPSG:4326")
    {
        return Err(ApiError::bad_request(format!(
            "crs: '{c}' is not supported; coordinates are CRS84 (longitude, latitude)"
        )));
    }
    Ok(())
}

/// Most values of one EDR position series.
pub const MAX_SERIES: usize = 200_000;

fn check_parameter(q: &Query, o: &Opened) -> Result<(), ApiError> {
    if let Some(p) = q.one("parameter-name")? {
        for name in p.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if name != o.cube.variable {
                return Err(ApiError::bad_request(format!(
                    "parameter-name: '{name}' is not a parameter of this collection; its only parameter is '{}'",
                    o.cube.variable
                )));
            }
        }
    }
    Ok(())
}

/// `GET /ogcapi/collections/{id}/area?coords=POLYGON((…))`: the cells whose centres fall in
/// the polygon (others null), over the polygon's bounding window.
#[utoipa::path(get, path = "/ogcapi/collections/{id}/area", tag = "ogcapi",
    params(("id" = String, Path, description = "dataset id"),
           ("coords" = String, Query, description = "POLYGON((lon lat, …)) in CRS84"),
           ("datetime" = Option<String>, Query, description = "instant or interval"),
           ("parameter-name" = Option<String>, Query, description = "the variable"),
           ("f" = Option<String>, Query, description = "CoverageJSON")),
    responses((status = 200, description = "A grid coverage"), (status = 400, body = crate::error::ErrorBody),
              (status = 413, body = crate::error::ErrorBody)))]
pub async fn area(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(
        raw,
        &["coords", "datetime", "parameter-name", "f", "crs", "z"],
    )?;
    if let Some(f) = q.one("f")?
        && !matches!(
            f.to_ascii_lowercase().as_str(),
            "coveragejson" | "covjson" | "json"
        )
    {
        return Err(ApiError::bad_request(format!(
            "f: unknown format '{f}'; use CoverageJSON"
        )));
    }
    let coords = q.one("coords")?.ok_or_else(|| {
        ApiError::bad_request(
            "coords: required, e.g. coords=POLYGON((-12 8, -11 8, -11 9, -12 9, -12 8))",
        )
    })?;
    check_crs(&q)?;
    let rings = parse_polygon(coords)?;
    let o = open(&state, &id).await?;
    check_parameter(&q, &o)?;
    let (w, s, e, n) = rings[0].iter().fold(
        (f64::MAX, f64::MAX, f64::MIN, f64::MIN),
        |(a, b, c, d), (x, y)| (a.min(*x), b.min(*y), c.max(*x), d.max(*y)),
    );
    let no_cell = || {
        ApiError::bad_request(
            "coords: the polygon holds no cell centre of the data; draw it larger or use position",
        )
    };
    let (rows, cols) = bbox_window(&o.grid, [w, s, e, n]).map_err(|_| no_cell())?;
    let sel = match q.one("datetime")? {
        Some(s) => Some(parse_datetime("datetime", s)?),
        None => None,
    };
    let t = select_times(&o, sel, "datetime")?;
    let win = Window {
        t: t.clone(),
        rows,
        cols,
        step: 1,
    };
    if win.cells() > MAX_CELLS {
        return Err(too_large(
            win.cells(),
            MAX_CELLS,
            &id,
            "draw a smaller polygon or narrow datetime",
        ));
    }
    let mut values = read_window(&o, &win).await?;
    let grid = win.grid(&o.grid);
    // Which cells are in: centres tested in CRS84.
    let mut centres: Vec<(f64, f64)> = Vec::with_capacity(grid.y.len * grid.x.len);
    for r in 0..grid.y.len {
        for c in 0..grid.x.len {
            centres.push((grid.x.centre(c), grid.y.centre(r)));
        }
    }
    if grid.crs != "EPSG:4326" {
        climate_geodata::reproject::to_wgs84(&grid.crs, &mut centres)
            .map_err(ApiError::internal)?;
    }
    let mask: Vec<bool> = centres
        .iter()
        .map(|(x, y)| inside(&rings, *x, *y))
        .collect();
    if !mask.iter().any(|m| *m) {
        return Err(no_cell());
    }
    let plane = mask.len();
    for (i, v) in values.iter_mut().enumerate() {
        if !mask[i % plane] {
            *v = f32::NAN;
        }
    }
    let labels = o.labels();
    let cube = labels.cube(&o.times[t], &grid, &values);
    Ok((
        [(header::CONTENT_TYPE, COVJSON)],
        encode::coverage_json(&cube),
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------------
// Map tiles (WebMercatorQuad)

/// Half the width of the WebMercatorQuad square, in metres.
const MERCATOR_HALF: f64 = 20_037_508.342_789_244;
/// Tile side in pixels.
const TILE: usize = 256;
/// Deepest zoom served.
const MAX_ZOOM: u32 = 24;

/// The longitude/latitude of WebMercatorQuad metres (spherical Mercator, exact inverse).
fn mercator_to_lonlat(x: f64, y: f64) -> (f64, f64) {
    let r = MERCATOR_HALF / std::f64::consts::PI;
    ((x / r).to_degrees(), (y / r).sinh().atan().to_degrees())
}

/// `GET /ogcapi/collections/{id}/map/tiles`: the tilesets of a collection (one,
/// WebMercatorQuad).
#[utoipa::path(get, path = "/ogcapi/collections/{id}/map/tiles", tag = "ogcapi",
    params(("id" = String, Path, description = "dataset id")),
    responses((status = 200, description = "Tileset list"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn tilesets(
    State(state): State<AppState>,
    base: BaseUrl,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let o = open(&state, &id).await?;
    let template = base.join(&format!(
        "/ogcapi/collections/{id}/map/tiles/WebMercatorQuad/{{tileMatrix}}/{{tileRow}}/{{tileCol}}"
    ));
    Ok(json_response(&json!({
        "tilesets": [{
            "title": format!("{} (PNG map tiles)", o.long_name),
            "dataType": "map",
            "crs": "http://www.opengis.net/def/crs/EPSG/0/3857",
            "tileMatrixSetURI": "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad",
            "links": [
                {"rel": "item", "href": template, "type": "image/png", "templated": true,
                 "title": "Tiles; ?datetime= picks the period (default: the latest)"},
            ],
        }],
        "links": [{"rel": "self", "href": base.join(&format!("/ogcapi/collections/{id}/map/tiles")), "type": JSON}],
    })))
}

/// `GET /ogcapi/collections/{id}/map/tiles/WebMercatorQuad/{z}/{y}/{x}`: a 256² PNG map tile
/// of one period (`datetime`, default the latest), coloured with the template's display,
/// transparent where data is missing or absent. Drawn from the coarsest pyramid level that is
/// still at least as fine as the tile's pixels.
#[utoipa::path(get, path = "/ogcapi/collections/{id}/map/tiles/WebMercatorQuad/{z}/{y}/{x}", tag = "ogcapi",
    params(("id" = String, Path, description = "dataset id"),
           ("z" = u32, Path, description = "zoom (tile matrix)"),
           ("y" = u32, Path, description = "tile row"), ("x" = u32, Path, description = "tile column"),
           ("datetime" = Option<String>, Query, description = "the period's instant (default: latest)")),
    responses((status = 200, description = "PNG tile"), (status = 400, body = crate::error::ErrorBody)))]
pub async fn tile(
    State(state): State<AppState>,
    path: Result<Path<(String, u32, u32, u32)>, axum::extract::rejection::PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let Path((id, z, ty, tx)) = path?;
    let q = Query::parse(raw, &["datetime", "f"])?;
    if let Some(f) = q.one("f")?
        && !f.eq_ignore_ascii_case("png")
    {
        return Err(ApiError::bad_request(format!(
            "f: tiles are PNG, not '{f}'"
        )));
    }
    if z > MAX_ZOOM {
        return Err(ApiError::bad_request(format!(
            "tileMatrix {z} is deeper than {MAX_ZOOM}"
        )));
    }
    let n = 1u64 << z;
    if u64::from(tx) >= n || u64::from(ty) >= n {
        return Err(ApiError::bad_request(format!(
            "tile {z}/{ty}/{tx} does not exist: row and column are below {n} at zoom {z}"
        )));
    }
    let o = open(&state, &id).await?;
    let t = match q.one("datetime")? {
        Some(s) => match parse_datetime("datetime", s)? {
            TimeSel::Instant(i) => select_times(&o, Some(TimeSel::Instant(i)), "datetime")?.start,
            TimeSel::Interval(..) => {
                return Err(ApiError::bad_request(
                    "datetime: a tile shows one period; give an instant, not an interval",
                ));
            }
        },
        None => o.times.len().saturating_sub(1),
    };
    // Pixel centres of the tile, in the data's CRS.
    let size = 2.0 * MERCATOR_HALF / n as f64;
    let (x0, y0) = (
        -MERCATOR_HALF + f64::from(tx) * size,
        MERCATOR_HALF - f64::from(ty) * size,
    );
    let px = size / TILE as f64;
    let mut pts = Vec::with_capacity(TILE * TILE);
    for r in 0..TILE {
        for c in 0..TILE {
            let (mx, my) = (x0 + (c as f64 + 0.5) * px, y0 - (r as f64 + 0.5) * px);
            pts.push(mercator_to_lonlat(mx, my));
        }
    }
    if o.grid.crs != "EPSG:4326" {
        climate_geodata::reproject::from_wgs84(&o.grid.crs, &mut pts)
            .map_err(ApiError::internal)?;
    }
    // The coarsest level whose pixels are no larger than the tile's, measured at the tile
    // centre (or, where the centre cannot be projected, at the first pair of neighbours that
    // can; none at all: the coarsest level).
    let pixel_at = |i: usize| {
        let (p, right, below) = (pts[i], pts[i + 1], pts[i + TILE]);
        (right.0 - p.0).abs().max((below.1 - p.1).abs())
    };
    let centre = TILE * TILE / 2 + TILE / 2;
    let tile_px = (centre..TILE * TILE - TILE - 1)
        .chain(0..centre)
        .filter(|i| i % TILE != TILE - 1)
        .map(pixel_at)
        .find(|v| v.is_finite())
        .unwrap_or(f64::INFINITY);
    let grids: Vec<Grid> = o.reader.level_grids().cloned().collect();
    let fitting = grids
        .iter()
        .enumerate()
        .rfind(|(_, g)| g.x.step.abs() <= tile_px * 1.000_001)
        .map_or(0, |(i, _)| i);
    // A finer level whose window would be too large to read gives way to a coarser one.
    let mut level = fitting;
    let (index, (r0, r1, c0, c1)) = loop {
        let grid = &grids[level];
        let index: Vec<Option<(usize, usize)>> = pts
            .iter()
            .map(|(x, y)| Some((nearest(&grid.y, *y)?, nearest(&grid.x, *x)?)))
            .collect();
        let (mut r0, mut r1, mut c0, mut c1) = (usize::MAX, 0, usize::MAX, 0);
        for (r, c) in index.iter().flatten() {
            (r0, r1, c0, c1) = (r0.min(*r), r1.max(*r + 1), c0.min(*c), c1.max(*c + 1));
        }
        let cells = if r0 < r1 {
            ((r1 - r0) * (c1 - c0)) as u64
        } else {
            0
        };
        if cells <= MAX_READ_CELLS || level + 1 == grids.len() {
            break (index, (r0, r1, c0, c1));
        }
        level += 1;
    };
    let display = display_for(&o, t).await?;
    let mut field = vec![f32::NAN; TILE * TILE];
    if r0 < r1 && c0 < c1 && ((r1 - r0) * (c1 - c0)) as u64 <= MAX_READ_CELLS {
        let window = o
            .reader
            .read(
                level,
                t as u64..t as u64 + 1,
                r0 as u64..r1 as u64,
                c0 as u64..c1 as u64,
            )
            .await
            .map_err(|e| ApiError::unavailable("object store", e))?;
        let w = c1 - c0;
        for (f, idx) in field.iter_mut().zip(&index) {
            if let Some((r, c)) = idx {
                *f = window[(r - r0) * w + (c - c0)];
            }
        }
    }
    let bytes = encode::png(&field, TILE, TILE, &display).map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_parse_with_quoted_times_and_aliases() {
        let s = parse_subsets(
            [
                "t(\"2025-07-01T00:00:00Z\":\"2025-07-03\"),Lon(-13:-12)",
                "lat(8.5)",
            ]
            .into_iter(),
        )
        .expect("parse");
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].axis, s[0].lo.as_str()),
            ('t', "\"2025-07-01T00:00:00Z\"")
        );
        assert_eq!(s[0].hi.as_deref(), Some("\"2025-07-03\""));
        assert_eq!(
            (s[1].axis, s[1].lo.as_str(), s[1].hi.as_deref()),
            ('x', "-13", Some("-12"))
        );
        assert_eq!((s[2].axis, s[2].hi.as_deref()), ('y', None));
        assert!(parse_subsets(["z(1:2)"].into_iter()).is_err());
        assert!(parse_subsets(["x(1:2),x(3)"].into_iter()).is_err());
        assert!(parse_subsets(["x1:2"].into_iter()).is_err());
    }

    #[test]
    fn datetimes_parse_instants_and_open_intervals() {
        assert!(matches!(
            parse_datetime("d", "2025-07-01"),
            Ok(TimeSel::Instant(_))
        ));
        assert!(matches!(
            parse_datetime("d", "../2025-07-03T00:00:00Z"),
            Ok(TimeSel::Interval(None, Some(_)))
        ));
        assert!(matches!(
            parse_datetime("d", "2025-07-01/.."),
            Ok(TimeSel::Interval(Some(_), None))
        ));
        assert!(parse_datetime("d", "2025-07-05/2025-07-01").is_err());
        assert!(parse_datetime("d", "yesterday").is_err());
    }

    #[test]
    fn wkt_points_and_polygons() {
        assert_eq!(parse_point("POINT(-11.8 8.5)").ok(), Some((-11.8, 8.5)));
        assert_eq!(parse_point("point ( 1 2 )").ok(), Some((1.0, 2.0)));
        assert!(parse_point("POINT(1)").is_err());
        let rings = parse_polygon("POLYGON((0 0, 4 0, 4 4, 0 4, 0 0), (1 1, 2 1, 2 2, 1 2, 1 1))")
            .expect("polygon");
        assert_eq!(rings.len(), 2);
        assert!(inside(&rings, 3.0, 3.0));
        assert!(!inside(&rings, 1.5, 1.5), "in the hole");
        assert!(!inside(&rings, 5.0, 1.0));
        assert!(parse_polygon("POLYGON((0 0, 1 0, 0 0))").is_err());
    }
}
