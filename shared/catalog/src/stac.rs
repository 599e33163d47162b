//! STAC 1.1.0 documents of the published datasets: the root catalog and one Collection per
//! dataset, described with the datacube, projection and render extensions, the Zarr store as its
//! data asset. Built from records and a base URL only, so the API and an export share them.

use climate_domain::PeriodType;
use climate_infra::db::{DatasetRecord, VersionRecord};
use climate_infra::templates::LoadedTemplate;
use serde_json::{Value, json};

use crate::{CubeMeta, iso_step, rfc3339};

/// STAC version of every document.
pub const STAC_VERSION: &str = "1.1.0";
/// The datacube extension.
pub const DATACUBE: &str = "https://stac-extensions.github.io/datacube/v2.3.0/schema.json";
/// The projection extension.
pub const PROJECTION: &str = "https://stac-extensions.github.io/projection/v2.0.0/schema.json";
/// The render extension.
pub const RENDER: &str = "https://stac-extensions.github.io/render/v2.0.0/schema.json";
const JSON: &str = "application/json";
/// Media type of a Zarr store (as used by STAC and the Zarr community).
pub const ZARR: &str = "application/vnd+zarr";

/// The STAC API conformance classes the root catalog declares.
pub const STAC_API_CONFORMANCE: &[&str] = &[
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
];

/// A catalog id from an instance name: lower-case, non-alphanumerics as `-`.
#[must_use]
pub fn catalog_id(name: &str) -> String {
    name.to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_owned()
}

/// The root catalog of instance `name`: a child link per dataset (`(id, title)`), with links
/// under `base`.
#[must_use]
pub fn root_catalog<'a>(
    name: &str,
    children: impl IntoIterator<Item = (&'a str, &'a str)>,
    base: &str,
) -> Value {
    let join = |path: &str| format!("{base}{path}");
    let root = join("/stac");
    let mut links = vec![
        json!({"rel": "self", "href": root, "type": JSON}),
        json!({"rel": "root", "href": root, "type": JSON, "title": name}),
        json!({"rel": "data", "href": join("/stac/collections"), "type": JSON}),
        json!({"rel": "conformance", "href": join("/stac/conformance"), "type": JSON}),
        json!({"rel": "service-desc", "href": join("/openapi.json"),
               "type": "application/vnd.oai.openapi+json;version=3.1"}),
    ];
    for (id, title) in children {
        links.push(json!({
            "rel": "child",
            "href": join(&format!("/stac/collections/{id}")),
            "type": JSON,
            "title": title,
        }));
    }
    json!({
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": catalog_id(name),
        "title": name,
        "description": "Climate and earth-observation datasets for health information systems, as analysis-ready GeoZarr cubes.",
        "conformsTo": STAC_API_CONFORMANCE,
        "links": links,
    })
}

/// The collections document listing `collections`.
#[must_use]
pub fn collections(collections: Vec<Value>, base: &str) -> Value {
    let join = |path: &str| format!("{base}{path}");
    json!({
        "collections": collections,
        "links": [
            {"rel": "self", "href": join("/stac/collections"), "type": JSON},
            {"rel": "root", "href": join("/stac"), "type": JSON},
            {"rel": "parent", "href": join("/stac"), "type": JSON},
        ],
    })
}

/// The STAC Collection of a dataset's current version.
pub fn collection(
    ds: &DatasetRecord,
    v: &VersionRecord,
    template: Option<&LoadedTemplate>,
    base: &str,
) -> Value {
    let join = |path: &str| format!("{base}{path}");
    let id = &ds.dataset_id;
    let t = template.map(|t| &t.template);
    let self_href = join(&format!("/stac/collections/{id}"));
    let mut links = vec![
        json!({"rel": "self", "href": self_href, "type": JSON}),
        json!({"rel": "root", "href": join("/stac"), "type": JSON}),
        json!({"rel": "parent", "href": join("/stac"), "type": JSON}),
        json!({"rel": "describedby", "href": join(&format!("/datasets/{id}")), "type": JSON,
               "title": "The dataset in the native API, with its versions"}),
        json!({"rel": "http://www.opengis.net/def/rel/ogc/1.0/coverage",
               "href": join(&format!("/ogcapi/collections/{id}/coverage")),
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

    let Ok(cube) = CubeMeta::of(v) else {
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
                "href": join(&format!("/zarr/{id}")),
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

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use climate_domain::{DatasetId, ExtentId, RunId, TemplateId};

    use super::*;
    use crate::metadata::VersionMetadata;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("RFC 3339")
    }

    /// A published dataset of 31 daily CHIRPS fields over Sierra Leone, as stored.
    fn records() -> (DatasetRecord, VersionRecord) {
        let meta = VersionMetadata {
            bases: vec![],
            request: serde_json::json!({"start": "2025-01-01", "end": "2025-01-31"}),
            ..crate::metadata::tests::sample()
        };
        let ds = DatasetRecord {
            dataset_id: DatasetId::new("chirps3_precipitation_daily_sle").expect("valid"),
            template_id: TemplateId::new("chirps3_precipitation_daily").expect("valid"),
            extent_id: ExtentId::new("sle").expect("valid"),
            current_version: Some(1),
            published: true,
            created_at: at("2025-02-01T06:00:00Z"),
            updated_at: at("2025-02-01T06:00:00Z"),
        };
        let v = VersionRecord {
            dataset_id: ds.dataset_id.clone(),
            version: 1,
            artifact_id: "0194c1d2-0000-7000-8000-000000000001".into(),
            storage_prefix: "datasets/chirps3_precipitation_daily_sle/0194c1d2".into(),
            run_id: RunId::new("0194c1d1-0000-7000-8000-000000000001").expect("valid"),
            coverage_start: "2025-01-01".into(),
            coverage_end: "2025-01-31".into(),
            metadata: meta.to_json(),
            created_at: at("2025-02-01T06:00:00Z"),
            held: false,
            pruned_at: None,
        };
        (ds, v)
    }

    #[test]
    fn a_collection_matches_its_snapshot() {
        let (ds, v) = records();
        let doc = collection(&ds, &v, None, "https://climate.example.org");
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots/stac_collection.json");
        climate_tests::assert_json_snapshot(&path, &doc);
    }
}
