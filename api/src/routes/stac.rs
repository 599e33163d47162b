//! `/stac`: a STAC 1.1.0 catalog of the published datasets, one Collection each, described with
//! the datacube, projection and render extensions, and with the Zarr store as its data asset.
//!
//! `/stac` is also a minimal STAC API landing page (core + collections conformance), so
//! pystac-client and STAC browsers walk it like any STAC API; `/stac/catalog.json` is the same
//! catalog under the file name static-catalog tools look for.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDateTime;
use climate_domain::{Period, PeriodType};
use climate_infra::db::{DatasetRecord, VersionRecord};
use climate_infra::templates::LoadedTemplate;
use serde_json::{Value, json};

use crate::error::{ApiError, ErrorBody};
use crate::state::{AppState, BaseUrl};
use crate::views::unknown_dataset;

/// The STAC API conformance classes `/stac` implements.
pub const STAC_API_CONFORMANCE: &[&str] = &[
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
];

/// `GET /stac/conformance`: the STAC API classes `/stac` conforms to.
#[utoipa::path(get, path = "/stac/conformance", tag = "stac",
    responses((status = 200, description = "STAC API conformance classes")))]
pub async fn conformance() -> Response {
    stac_json(json!({"conformsTo": STAC_API_CONFORMANCE}))
}

/// STAC version of every document.
pub const STAC_VERSION: &str = "1.1.0";
const DATACUBE: &str = "https://stac-extensions.github.io/datacube/v2.3.0/schema.json";
const PROJECTION: &str = "https://stac-extensions.github.io/projection/v2.0.0/schema.json";
const RENDER: &str = "https://stac-extensions.github.io/render/v2.0.0/schema.json";
const JSON: &str = "application/json";
/// Media type of a Zarr store (as used by STAC and the Zarr community).
pub const ZARR: &str = "application/vnd+zarr";

fn catalog_id(state: &AppState) -> String {
    state
        .platform
        .config
        .name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_owned()
}

/// STAC answers as JSON with the media type STAC clients expect.
fn stac_json(v: Value) -> Response {
    ([(header::CONTENT_TYPE, JSON)], Json(v)).into_response()
}

/// The published datasets with their current versions, by id.
async fn published(state: &AppState) -> Result<Vec<(DatasetRecord, VersionRecord)>, ApiError> {
    let db = &state.platform.db;
    let mut out = Vec::new();
    for ds in db.list_datasets().await? {
        let Some(n) = ds.current_version.filter(|_| ds.published) else {
            continue;
        };
        if let Some(v) = db.get_version(&ds.dataset_id, n).await? {
            out.push((ds, v));
        }
    }
    out.sort_by(|a, b| a.0.dataset_id.cmp(&b.0.dataset_id));
    Ok(out)
}

/// `GET /stac` (and `/stac/catalog.json`): the root catalog, a child link per published
/// dataset.
#[utoipa::path(get, path = "/stac", tag = "stac",
    responses((status = 200, description = "STAC 1.1.0 Catalog (and STAC API landing page)")))]
pub async fn get_catalog(
    State(state): State<AppState>,
    base: BaseUrl,
) -> Result<Response, ApiError> {
    let root = base.join("/stac");
    let mut links = vec![
        json!({"rel": "self", "href": root, "type": JSON}),
        json!({"rel": "root", "href": root, "type": JSON, "title": state.platform.config.name}),
        json!({"rel": "data", "href": base.join("/stac/collections"), "type": JSON}),
        json!({"rel": "conformance", "href": base.join("/stac/conformance"), "type": JSON}),
        json!({"rel": "service-desc", "href": base.join("/openapi.json"),
               "type": "application/vnd.oai.openapi+json;version=3.1"}),
    ];
    for (ds, _) in published(&state).await? {
        let t = state.platform.catalog.get_str(&ds.template_id);
        links.push(json!({
            "rel": "child",
            "href": base.join(&format!("/stac/collections/{}", ds.dataset_id)),
            "type": JSON,
            "title": t.map_or(ds.template_id.as_str(), |t| t.template.name.as_str()),
        }));
    }
    Ok(stac_json(json!({
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": catalog_id(&state),
        "title": state.platform.config.name,
        "description": "Climate and earth-observation datasets for health information systems, as analysis-ready GeoZarr cubes.",
        "conformsTo": STAC_API_CONFORMANCE,
        "links": links,
    })))
}

/// `GET /stac/collections`: every published dataset as a Collection.
#[utoipa::path(get, path = "/stac/collections", tag = "stac",
    responses((status = 200, description = "The published datasets as STAC Collections")))]
pub async fn list_collections(
    State(state): State<AppState>,
    base: BaseUrl,
) -> Result<Response, ApiError> {
    let collections: Vec<Value> = published(&state)
        .await?
        .iter()
        .map(|(ds, v)| {
            collection(
                ds,
                v,
                state.platform.catalog.get_str(&ds.template_id),
                &base,
            )
        })
        .collect();
    Ok(stac_json(json!({
        "collections": collections,
        "links": [
            {"rel": "self", "href": base.join("/stac/collections"), "type": JSON},
            {"rel": "root", "href": base.join("/stac"), "type": JSON},
            {"rel": "parent", "href": base.join("/stac"), "type": JSON},
        ],
    })))
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
    let (ds, v) = published(&state)
        .await?
        .into_iter()
        .find(|(ds, _)| ds.dataset_id == id)
        .ok_or_else(|| unknown_dataset(&id))?;
    let t = state.platform.catalog.get_str(&ds.template_id);
    Ok(stac_json(collection(&ds, &v, t, &base)))
}

/// What a stored version says about its cube (written by the worker at publish time).
#[derive(Debug)]
pub struct CubeMeta {
    /// Data variable.
    pub variable: String,
    /// Units.
    pub units: String,
    /// Period type.
    pub period_type: PeriodType,
    /// CRS, e.g. `EPSG:4326`.
    pub crs: String,
    /// Pixel-edge bounds `[west, south, east, north]` in `crs`.
    pub bbox: [f64; 4],
    /// `[t, y, x]`.
    pub shape: [u64; 3],
    /// Affine transform `[a, b, c, d, e, f]` (GDAL order, rasterio's `Affine`).
    pub transform: [f64; 6],
    /// First and last period start.
    pub time: (NaiveDateTime, NaiveDateTime),
}

impl CubeMeta {
    /// Reads the version's metadata; `None` when it lacks a part (never for versions this
    /// code base writes).
    pub fn of(v: &VersionRecord) -> Option<Self> {
        let m = &v.metadata;
        let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
        let nums = |k: &str| -> Option<Vec<f64>> {
            m.get(k)?.as_array()?.iter().map(Value::as_f64).collect()
        };
        let period_type: PeriodType = s("period_type")?.parse().ok()?;
        let bbox = nums("bbox")?;
        let shape = nums("shape")?;
        let transform = nums("transform")?;
        let start = Period::parse(period_type, &v.coverage_start).ok()?;
        let end = Period::parse(period_type, &v.coverage_end).ok()?;
        Some(Self {
            variable: s("variable")?,
            units: s("units").unwrap_or_default(),
            period_type,
            crs: s("crs").unwrap_or_else(|| "EPSG:4326".into()),
            bbox: bbox.try_into().ok()?,
            shape: [
                *shape.first()? as u64,
                *shape.get(1)? as u64,
                *shape.get(2)? as u64,
            ],
            transform: transform.try_into().ok()?,
            time: (start.start(), end.start()),
        })
    }

    /// The EPSG code of the CRS, if it is one.
    pub fn epsg(&self) -> Option<u32> {
        self.crs.strip_prefix("EPSG:")?.parse().ok()
    }

    /// The bbox in WGS84 longitude/latitude (the CRS's own when geographic; otherwise the
    /// bounds of its projected corners and edge midpoints).
    pub fn wgs84_bbox(&self) -> [f64; 4] {
        if self.crs == "EPSG:4326" {
            return self.bbox;
        }
        climate_geodata::reproject::project_bounds(self.bbox, &self.crs, "EPSG:4326", 9)
            .ok()
            .flatten()
            .unwrap_or([-180.0, -90.0, 180.0, 90.0])
    }
}

/// ISO 8601 duration of one period.
pub fn iso_step(kind: PeriodType) -> &'static str {
    match kind {
        PeriodType::Hourly => "PT1H",
        PeriodType::Daily => "P1D",
        PeriodType::Weekly => "P7D",
        PeriodType::Monthly => "P1M",
        PeriodType::Yearly => "P1Y",
    }
}

/// RFC 3339 UTC timestamp.
pub fn rfc3339(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The STAC Collection of a dataset's current version.
pub fn collection(
    ds: &DatasetRecord,
    v: &VersionRecord,
    template: Option<&LoadedTemplate>,
    base: &BaseUrl,
) -> Value {
    let id = &ds.dataset_id;
    let t = template.map(|t| &t.template);
    let self_href = base.join(&format!("/stac/collections/{id}"));
    let mut links = vec![
        json!({"rel": "self", "href": self_href, "type": JSON}),
        json!({"rel": "root", "href": base.join("/stac"), "type": JSON}),
        json!({"rel": "parent", "href": base.join("/stac"), "type": JSON}),
        json!({"rel": "describedby", "href": base.join(&format!("/datasets/{id}")), "type": JSON,
               "title": "The dataset in the native API, with its versions"}),
        json!({"rel": "http://www.opengis.net/def/rel/ogc/1.0/coverage",
               "href": base.join(&format!("/ogcapi/collections/{id}/coverage")),
               "type": "application/prs.coverage+json", "title": "OGC API - Coverages"}),
    ];
    if let Some(url) = t.and_then(|t| t.source_url.as_ref()) {
        links.push(json!({"rel": "about", "href": url, "type": "text/html", "title": "About the source data"}));
    }
    let name = t.map_or(ds.template_id.as_str(), |t| t.name.as_str());
    let description = t
        .and_then(|t| t.description.clone())
        .unwrap_or_else(|| format!("{name}, over extent '{}'.", ds.extent_id));
    let mut providers = Vec::new();
    if let Some(source) = t.and_then(|t| t.source.as_ref()) {
        let mut p = json!({"name": source, "roles": ["producer", "licensor"]});
        if let Some(url) = t.and_then(|t| t.source_url.as_ref()) {
            p["url"] = json!(url);
        }
        providers.push(p);
    }
    providers.push(
        json!({"name": "Climate API", "roles": ["processor", "host"],
                          "description": "Regridded, chunked and published as GeoZarr"}),
    );

    let Some(cube) = CubeMeta::of(v) else {
        // Without cube metadata there is still a valid, if plain, collection.
        return json!({
            "type": "Collection", "stac_version": STAC_VERSION, "id": id, "title": name,
            "description": description, "license": "other", "providers": providers,
            "extent": {"spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
                       "temporal": {"interval": [[null, null]]}},
            "links": links,
        });
    };
    let [w, s, e, n] = cube.bbox;
    let tr = cube.transform;
    let reference = cube.epsg().map_or_else(|| json!(cube.crs), |c| json!(c));
    let (t0, t1) = (rfc3339(cube.time.0), rfc3339(cube.time.1));
    let mut extensions = vec![DATACUBE, PROJECTION];
    let long_name = t.map_or_else(|| cube.variable.clone(), |t| t.long_name().to_owned());
    let mut doc = json!({
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "id": id,
        "title": name,
        "description": description,
        "keywords": keywords(t, cube.period_type),
        "license": "other",
        "providers": providers,
        "extent": {
            "spatial": {"bbox": [cube.wgs84_bbox()]},
            "temporal": {"interval": [[t0, t1]]},
        },
        "cube:dimensions": {
            "t": {"type": "temporal", "extent": [t0, t1], "step": iso_step(cube.period_type),
                  "description": "Start of each period (UTC)"},
            "y": {"type": "spatial", "axis": "y", "extent": [s, n], "step": tr[4],
                  "reference_system": reference},
            "x": {"type": "spatial", "axis": "x", "extent": [w, e], "step": tr[0],
                  "reference_system": reference},
        },
        "cube:variables": {
            cube.variable.clone(): {
                "type": "data",
                "dimensions": ["t", "y", "x"],
                "unit": cube.units,
                "description": long_name,
            },
        },
        "assets": {
            "zarr": {
                "href": base.join(&format!("/zarr/{id}")),
                "type": ZARR,
                "title": format!("{name} (GeoZarr, Zarr v3)"),
                "roles": ["data", "zarr"],
                "zarr:zarr_format": 3,
                "zarr:consolidated": true,
                "xarray:open_kwargs": {"engine": "zarr", "consolidated": true, "zarr_format": 3},
                "proj:code": cube.epsg().map(|c| format!("EPSG:{c}")),
                "proj:bbox": cube.bbox,
                "proj:shape": [cube.shape[1], cube.shape[2]],
                "proj:transform": cube.transform,
            },
        },
        "summaries": {"period_type": [cube.period_type.as_str()]},
        "links": links,
    });
    if let Some(d) = t.and_then(|t| t.display.as_ref()) {
        extensions.push(RENDER);
        doc["renders"] = json!({
            "default": {
                "title": format!("{name} ({})", cube.units),
                "assets": ["zarr"],
                "variable": cube.variable,
                "rescale": [d.range],
                "colormap_name": d.colormap.to_ascii_lowercase(),
                "nodata": "nan",
            }
        });
    }
    doc["stac_extensions"] = json!(extensions);
    doc
}

fn keywords(
    t: Option<&climate_domain::template::DatasetTemplate>,
    kind: PeriodType,
) -> Vec<String> {
    let mut k = vec![
        "climate".to_owned(),
        kind.as_str().to_owned(),
        "zarr".to_owned(),
    ];
    if let Some(t) = t {
        k.push(t.variable.clone());
        if let Some(s) = &t.source {
            k.push(s.clone());
        }
    }
    k
}
