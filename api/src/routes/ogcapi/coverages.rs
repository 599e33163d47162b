//! OGC API – Coverages: a window of the cube as CoverageJSON, GeoTIFF, NetCDF or PNG, and its
//! domain set and range type.

use super::*;

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

/// The query of `GET /ogcapi/collections/{id}/coverage`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CoverageQuery {
    /// minLon,minLat,maxLon,maxLat (CRS84)
    pub(crate) bbox: Option<String>,
    /// instant, or interval a/b with open ends ..
    datetime: Option<String>,
    /// t("a":"b"),x(lo:hi),y(lo:hi) in the storage CRS
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    pub(crate) subset: Vec<String>,
    /// the variable (the only field)
    properties: Option<String>,
    /// keep every n-th row and column
    #[serde(rename = "scale-factor")]
    #[param(rename = "scale-factor", value_type = Option<u32>)]
    pub(crate) scale_factor: Option<String>,
    /// covjson (default), netcdf, geotiff, png
    pub(crate) f: Option<String>,
}

/// `GET /ogcapi/collections/{id}/coverage`: a window of the cube.
#[utoipa::path(get, path = "/ogcapi/collections/{id}/coverage", tag = "ogcapi",
    params(("id" = String, Path, description = "dataset id"), CoverageQuery),
    responses((status = 200, description = "The coverage"), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody)))]
pub async fn coverage(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: CoverageQuery = parse_query(raw)?;
    let format = parse_format(q.f.as_deref())?;
    let o = open(&state, &id).await?;
    if let Some(p) = q.properties.as_deref() {
        for name in p.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if name != o.cube.variable {
                return Err(ApiError::bad_request(format!(
                    "properties: '{name}' is not a field of this coverage; its only field is '{}'",
                    o.cube.variable
                )));
            }
        }
    }
    let step = match q.scale_factor.as_deref() {
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
    if let Some(b) = q.bbox.as_deref() {
        let (r, c) = bbox_window(g, parse_bbox(b)?)?;
        (rows, cols) = (r, c);
    }
    let mut tsel = match q.datetime.as_deref() {
        Some(s) => Some(parse_datetime("datetime", s)?),
        None => None,
    };
    for s in parse_subsets(q.subset.iter().map(String::as_str))? {
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
    let values = o.read(&w).await?;
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
            let bytes = encode::geotiff(&cube).map_err(|e| ApiError::bad_request(e.to_string()))?;
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
            let display = o.display(w.t.start).await?;
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
                    encode::netcdf(&labels.cube(&times, &grid, &values), &path)
                        .map_err(|e| e.to_string())?;
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
