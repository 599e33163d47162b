//! OGC API – Tiles: WebMercatorQuad PNG map tiles of one period.

use super::*;

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

/// The query of a tile.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TileQuery {
    /// the period's instant (default: latest)
    datetime: Option<String>,
    /// png (the default and only format)
    f: Option<String>,
}

/// `GET /ogcapi/collections/{id}/map/tiles/WebMercatorQuad/{z}/{y}/{x}`: a 256² PNG map tile
/// of one period (`datetime`, default the latest), coloured with the template's display,
/// transparent where data is missing or absent. Drawn from the coarsest pyramid level that is
/// still at least as fine as the tile's pixels.
#[utoipa::path(get, path = "/ogcapi/collections/{id}/map/tiles/WebMercatorQuad/{z}/{y}/{x}", tag = "ogcapi",
    params(("id" = String, Path, description = "dataset id"),
           ("z" = u32, Path, description = "zoom (tile matrix)"),
           ("y" = u32, Path, description = "tile row"), ("x" = u32, Path, description = "tile column"),
           TileQuery),
    responses((status = 200, description = "PNG tile"), (status = 400, body = crate::error::ErrorBody)))]
pub async fn tile(
    State(state): State<AppState>,
    path: Result<Path<(String, u32, u32, u32)>, axum::extract::rejection::PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let Path((id, z, ty, tx)) = path?;
    let q: TileQuery = parse_query(raw)?;
    if let Some(f) = q.f.as_deref()
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
    let t = match q.datetime.as_deref() {
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
    let display = o.display(t).await?;
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
