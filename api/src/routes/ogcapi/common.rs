//! OGC API – Common: the landing page, conformance and the collections.

use super::*;

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
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/ogc-process-description",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/job-list",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/dismiss",
];

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
            {"rel": "http://www.opengis.net/def/rel/ogc/1.0/processes", "href": base.join("/ogcapi/processes"), "type": JSON},
            {"rel": "http://www.opengis.net/def/rel/ogc/1.0/job-list", "href": base.join("/ogcapi/jobs"), "type": JSON},
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
        .catalog
        .template(ds)
        .map_or_else(|| ds.template_id.to_string(), |t| t.template.name.clone())
}

/// `GET /ogcapi/collections`
#[utoipa::path(get, path = "/ogcapi/collections", tag = "ogcapi", responses((status = 200, description = "The published datasets")))]
pub async fn collections(
    State(state): State<AppState>,
    base: BaseUrl,
) -> Result<Response, ApiError> {
    // Built from the versions' metadata, without opening stores; a dataset whose metadata is
    // unreadable is left out (and logged) rather than failing the list.
    let mut docs = Vec::new();
    for (ds, v) in state.catalog.published().await? {
        let cube = match CubeMeta::of(&v) {
            Ok(cube) => cube,
            Err(e) => {
                tracing::warn!(dataset = %ds.dataset_id, version = v.version, error = %e, "version left out of /ogcapi/collections");
                continue;
            }
        };
        let template = state.catalog.template(&ds);
        let long_name = template.map_or_else(
            || cube.variable.clone(),
            |t| t.template.long_name().to_owned(),
        );
        let described = Described {
            id: ds.dataset_id.as_str(),
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
        id: o.ds.dataset_id.as_str(),
        cube: &o.cube,
        long_name: &o.long_name,
    };
    Ok(json_response(&collection_doc(
        &described,
        &template_name(&state, &o.ds),
        &base,
    )))
}
