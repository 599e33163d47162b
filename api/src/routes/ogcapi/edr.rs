//! OGC API – Environmental Data Retrieval: the time series at a point and the cells of an area.

use super::*;

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

/// The query of the EDR queries (`position`, `area`).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EdrQuery {
    /// POINT(lon lat) for a position, POLYGON((lon lat, …)) for an area, in CRS84
    #[param(required = true)]
    coords: Option<String>,
    /// instant or interval
    datetime: Option<String>,
    /// the variable
    #[serde(rename = "parameter-name")]
    #[param(rename = "parameter-name")]
    parameter_name: Option<String>,
    /// CoverageJSON (default); CSV for a position
    f: Option<String>,
    /// the coordinates' CRS: CRS84 (the default and only one)
    crs: Option<String>,
    /// the vertical level (accepted and ignored: the data have one level)
    #[allow(dead_code)]
    z: Option<String>,
}

/// `GET /ogcapi/collections/{id}/position?coords=POINT(x y)`: the time series at a point.
#[utoipa::path(get, path = "/ogcapi/collections/{id}/position", tag = "ogcapi",
    params(("id" = String, Path, description = "dataset id"), EdrQuery),
    responses((status = 200, description = "A point series"), (status = 400, body = crate::error::ErrorBody)))]
pub async fn position(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: EdrQuery = parse_query(raw)?;
    let csv = match q.f.as_deref().map(str::to_ascii_lowercase).as_deref() {
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
        .coords
        .as_deref()
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
    let sel = match q.datetime.as_deref() {
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
    let values = o
        .read(&Window {
            t: t.clone(),
            rows: row..row + 1,
            cols: col..col + 1,
            step: 1,
        })
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
fn check_crs(q: &EdrQuery) -> Result<(), ApiError> {
    if let Some(c) = q.crs.as_deref()
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

fn check_parameter(q: &EdrQuery, o: &Opened) -> Result<(), ApiError> {
    if let Some(p) = q.parameter_name.as_deref() {
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
    params(("id" = String, Path, description = "dataset id"), EdrQuery),
    responses((status = 200, description = "A grid coverage"), (status = 400, body = crate::error::ErrorBody),
              (status = 413, body = crate::error::ErrorBody)))]
pub async fn area(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: EdrQuery = parse_query(raw)?;
    if let Some(f) = q.f.as_deref()
        && !matches!(
            f.to_ascii_lowercase().as_str(),
            "coveragejson" | "covjson" | "json"
        )
    {
        return Err(ApiError::bad_request(format!(
            "f: unknown format '{f}'; use CoverageJSON"
        )));
    }
    let coords = q.coords.as_deref().ok_or_else(|| {
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
    let sel = match q.datetime.as_deref() {
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
    let mut values = o.read(&win).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
