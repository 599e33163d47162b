//! Reprojection with PROJ: from the sources' geographic grid (EPSG:4326, x ascending, y north to
//! south) onto a north-up grid in the extent's CRS (e.g. UTM 29N for Sierra Leone).
//!
//! Planning ([`target_grid`]) fixes the target grid from the extent's bbox, and the window of
//! source pixels that feeds it; resampling ([`Resampler`]) maps every target pixel centre back
//! to a fractional source position once, then turns each field of the window into a target
//! field by nearest-neighbour or bilinear interpolation. Both are deterministic functions of
//! (source grid, extent, template), so every segment of a run recomputes the same mapping.

use std::ops::Range;

use climate_domain::grid::{Axis, Grid};
use climate_domain::template::Resampling;
use climate_domain::{Bbox, Crs};
use proj::Proj;

/// Points per bbox edge when projecting its outline (edges curve in most projections).
const EDGE_SAMPLES: usize = 64;

/// Mean Earth radius (m), for the default resolution only.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Why a reprojection cannot be planned or done.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReprojectError {
    /// PROJ knows no transformation between the CRSs (an unknown or malformed CRS).
    #[error("PROJ cannot transform {from} to {to}: {message}")]
    Transform {
        /// Source CRS.
        from: String,
        /// Target CRS.
        to: String,
        /// PROJ's message.
        message: String,
    },
    /// No point of the extent projects into the CRS.
    #[error("the extent has no finite coordinates in {crs}")]
    OutsideCrs {
        /// The target CRS.
        crs: String,
    },
    /// The extent, projected, misses the source grid.
    #[error("the source grid {source_bounds:?} does not cover the extent {extent:?}")]
    NotCovered {
        /// The source grid's edges (west, south, east, north).
        source_bounds: [f64; 4],
        /// The extent's bbox.
        extent: [f64; 4],
    },
}

fn transformer(from: &str, to: &str) -> Result<Proj, ReprojectError> {
    Proj::new_known_crs(from, to, None).map_err(|e| ReprojectError::Transform {
        from: from.to_owned(),
        to: to.to_owned(),
        message: e.to_string(),
    })
}

/// Rounds to two significant digits (11 119.5 m → 11 000 m).
fn two_digits(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powi(v.log10().floor() as i32 - 1);
    (v / scale).round() * scale
}

/// Projects `points` from `crs` to WGS84 longitude/latitude in place (points PROJ cannot
/// project become NaN).
///
/// # Errors
/// A message when PROJ does not know `crs`.
pub fn to_wgs84(crs: &str, points: &mut [(f64, f64)]) -> Result<(), ReprojectError> {
    let proj = transformer(crs, "EPSG:4326")?;
    convert_lenient(&proj, points);
    Ok(())
}

/// The envelope in `to` of the bounds `[west, south, east, north]` in `from`: the outline,
/// `samples` points per edge, projected (points PROJ cannot project are left out). `None` when
/// no point projects.
///
/// # Errors
/// A message when PROJ does not know a CRS.
pub fn project_bounds(
    bounds: [f64; 4],
    from: &str,
    to: &str,
    samples: usize,
) -> Result<Option<[f64; 4]>, ReprojectError> {
    let proj = transformer(from, to)?;
    let [w, s, e, n] = bounds;
    let samples = samples.max(2);
    let mut outline = Vec::with_capacity(4 * samples);
    for i in 0..samples {
        let f = i as f64 / (samples - 1) as f64;
        outline.extend([
            (w + f * (e - w), s),
            (w + f * (e - w), n),
            (w, s + f * (n - s)),
            (e, s + f * (n - s)),
        ]);
    }
    convert_lenient(&proj, &mut outline);
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for (x, y) in outline
        .into_iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
    {
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    Ok((x0 <= x1 && y0 <= y1).then_some([x0, y0, x1, y1]))
}

/// Projects WGS84 longitude/latitude `points` into `crs` in place (points PROJ cannot project
/// become NaN).
///
/// # Errors
/// A message when PROJ does not know `crs`.
pub fn from_wgs84(crs: &str, points: &mut [(f64, f64)]) -> Result<(), ReprojectError> {
    let proj = transformer("EPSG:4326", crs)?;
    convert_lenient(&proj, points);
    Ok(())
}

/// Projects `points` in place; a point PROJ cannot project (outside the CRS's area of use,
/// say) becomes `(NaN, NaN)` instead of failing the others, and reads as missing.
fn convert_lenient(proj: &Proj, points: &mut [(f64, f64)]) {
    let original = points.to_vec();
    if proj.convert_array(points).is_ok() {
        return;
    }
    for (p, o) in points.iter_mut().zip(original) {
        *p = proj.convert(o).unwrap_or((f64::NAN, f64::NAN));
        if !(p.0.is_finite() && p.1.is_finite()) {
            *p = (f64::NAN, f64::NAN);
        }
    }
}

/// The source pixel size at the bbox centre, measured in the target CRS's own units (PROJ
/// projects the pixel's sides), rounded to two significant digits; the spherical estimate in
/// metres when PROJ cannot project the centre.
fn default_resolution(forward: &Proj, source: &Grid, bbox: &Bbox) -> f64 {
    let (lon, lat) = (
        (bbox.west() + bbox.east()) / 2.0,
        (bbox.south() + bbox.north()) / 2.0,
    );
    let (dx, dy) = (source.x.step.abs(), source.y.step.abs());
    let mut pts = [(lon, lat), (lon + dx, lat), (lon, lat + dy)];
    convert_lenient(forward, &mut pts);
    let dist = |a: (f64, f64), b: (f64, f64)| (a.0 - b.0).hypot(a.1 - b.1);
    let projected = dist(pts[0], pts[1]).min(dist(pts[0], pts[2]));
    if projected.is_finite() && projected > 0.0 {
        return two_digits(projected);
    }
    let lat = lat.to_radians();
    two_digits((dx.to_radians() * EARTH_RADIUS_M * lat.cos()).min(dy.to_radians() * EARTH_RADIUS_M))
}

/// The plan of a reprojection: the target grid and the source window it reads.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetPlan {
    /// North-up grid in the target CRS.
    pub grid: Grid,
    /// Rows of the source grid to read.
    pub rows: Range<usize>,
    /// Columns of the source grid to read.
    pub cols: Range<usize>,
}

/// The grid in `crs` covering `bbox` (its projected outline, snapped outwards to multiples of
/// the resolution), and the source window holding every pixel a target centre interpolates
/// from. `resolution` defaults to the source pixel size at the bbox centre, in metres, rounded
/// to two significant digits.
///
/// # Errors
/// A message when PROJ does not know the CRS, or the extent misses the source grid.
pub fn target_grid(
    source: &Grid,
    bbox: &Bbox,
    crs: &Crs,
    resolution: Option<f64>,
) -> Result<TargetPlan, ReprojectError> {
    let forward = transformer(&source.crs, crs)?;
    let [x0, y0, x1, y1] = project_bounds(bbox.to_array(), &source.crs, crs, EDGE_SAMPLES)?
        .ok_or_else(|| ReprojectError::OutsideCrs {
            crs: crs.to_string(),
        })?;
    let res = match resolution {
        Some(r) => r,
        None => default_resolution(&forward, source, bbox),
    };
    let (gx0, gx1) = ((x0 / res).floor() * res, (x1 / res).ceil() * res);
    let (gy0, gy1) = ((y0 / res).floor() * res, (y1 / res).ceil() * res);
    let nx = ((gx1 - gx0) / res).round().max(1.0) as usize;
    let ny = ((gy1 - gy0) / res).round().max(1.0) as usize;
    let grid = Grid {
        crs: crs.clone(),
        x: Axis {
            first: gx0 + res / 2.0,
            step: res,
            len: nx,
        },
        y: Axis {
            first: gy1 - res / 2.0,
            step: -res,
            len: ny,
        },
    };

    // The source window: every pixel within one of a target centre's position.
    let positions = source_positions(source, &grid)?;
    let (mut r0, mut r1, mut c0, mut c1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (r, c) in &positions {
        if r.is_finite() && c.is_finite() {
            (r0, r1, c0, c1) = (r0.min(*r), r1.max(*r), c0.min(*c), c1.max(*c));
        }
    }
    let clamp = |v: f64, len: usize| v.clamp(0.0, len as f64) as usize;
    let rows = clamp(r0.floor() - 1.0, source.y.len)..clamp(r1.ceil() + 2.0, source.y.len);
    let cols = clamp(c0.floor() - 1.0, source.x.len)..clamp(c1.ceil() + 2.0, source.x.len);
    if rows.is_empty() || cols.is_empty() {
        return Err(ReprojectError::NotCovered {
            source_bounds: source.edge_bounds(),
            extent: bbox.to_array(),
        });
    }
    Ok(TargetPlan { grid, rows, cols })
}

/// The fractional (row, column) in `source` of every target pixel centre, row-major.
fn source_positions(source: &Grid, target: &Grid) -> Result<Vec<(f64, f64)>, ReprojectError> {
    let inverse = transformer(&target.crs, &source.crs)?;
    let mut points = Vec::with_capacity(target.x.len * target.y.len);
    for r in 0..target.y.len {
        let y = target.y.centre(r);
        for c in 0..target.x.len {
            points.push((target.x.centre(c), y));
        }
    }
    convert_lenient(&inverse, &mut points);
    Ok(points
        .into_iter()
        .map(|(lon, lat)| {
            (
                (lat - source.y.first) / source.y.step,
                (lon - source.x.first) / source.x.step,
            )
        })
        .collect())
}

/// Turns fields of a source window into fields of the target grid.
#[derive(Debug, Clone)]
pub struct Resampler {
    method: Resampling,
    /// Window size.
    rows: usize,
    cols: usize,
    /// Fractional (row, column) within the window of each target pixel centre; NaN outside.
    positions: Vec<(f64, f64)>,
}

impl Resampler {
    /// The resampler from window `rows × cols` of `source` onto `target`.
    ///
    /// # Errors
    /// A message when PROJ fails.
    pub fn new(
        source: &Grid,
        rows: Range<usize>,
        cols: Range<usize>,
        target: &Grid,
        method: Resampling,
    ) -> Result<Self, ReprojectError> {
        let (h, w) = (rows.len() as f64, cols.len() as f64);
        let positions = source_positions(source, target)?
            .into_iter()
            .map(|(r, c)| {
                let (r, c) = (r - rows.start as f64, c - cols.start as f64);
                // Centres beyond the outer edge of the window's pixels have no value.
                if r < -0.5 || c < -0.5 || r > h - 0.5 || c > w - 0.5 {
                    (f64::NAN, f64::NAN)
                } else {
                    (r, c)
                }
            })
            .collect();
        Ok(Self {
            method,
            rows: rows.len(),
            cols: cols.len(),
            positions,
        })
    }

    /// The target field of one window field (`rows × cols`, row-major, NaN for missing).
    pub fn apply(&self, window: &[f32]) -> Vec<f32> {
        let (h, w) = (self.rows, self.cols);
        let at = |r: usize, c: usize| window[r * w + c];
        self.positions
            .iter()
            .map(|&(r, c)| {
                if r.is_nan() {
                    return f32::NAN;
                }
                match self.method {
                    Resampling::Nearest => {
                        let ri = (r.round().max(0.0) as usize).min(h - 1);
                        let ci = (c.round().max(0.0) as usize).min(w - 1);
                        at(ri, ci)
                    }
                    Resampling::Bilinear => {
                        // Between the centres at the window's edge, the edge value holds.
                        let r = r.clamp(0.0, (h - 1) as f64);
                        let c = c.clamp(0.0, (w - 1) as f64);
                        let (r0, c0) = (r.floor() as usize, c.floor() as usize);
                        let (r1, c1) = ((r0 + 1).min(h - 1), (c0 + 1).min(w - 1));
                        let (fr, fc) = (r - r0 as f64, c - c0 as f64);
                        let mut sum = 0.0;
                        let mut weight = 0.0;
                        for (rr, cc, wgt) in [
                            (r0, c0, (1.0 - fr) * (1.0 - fc)),
                            (r0, c1, (1.0 - fr) * fc),
                            (r1, c0, fr * (1.0 - fc)),
                            (r1, c1, fr * fc),
                        ] {
                            let v = at(rr, cc);
                            if wgt > 0.0 && !v.is_nan() {
                                sum += f64::from(v) * wgt;
                                weight += wgt;
                            }
                        }
                        if weight > 0.0 {
                            (sum / weight) as f32
                        } else {
                            f32::NAN
                        }
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crs(name: &str) -> Crs {
        Crs::new(name).expect("a CRS name")
    }

    fn era5_sle() -> Grid {
        // The ERA5-Land sample's grid: 0.1°, 41 × 41 from (-14.0, 10.5) (illustrative).
        Grid {
            crs: Crs::WGS84,
            x: Axis {
                first: -14.0,
                step: 0.1,
                len: 41,
            },
            y: Axis {
                first: 10.5,
                step: -0.1,
                len: 41,
            },
        }
    }

    #[test]
    fn the_target_grid_covers_the_extent_in_utm() {
        let bbox = Bbox::new(-13.5, 6.9, -10.1, 10.0).expect("bbox");
        let plan =
            target_grid(&era5_sle(), &bbox, &crs("EPSG:32629"), Some(10_000.0)).expect("plan");
        let g = &plan.grid;
        assert_eq!(g.crs, "EPSG:32629");
        // Sierra Leone spans about 375 km east-west and 345 km north-south in UTM 29N.
        assert!((36..=40).contains(&g.x.len), "{g:?}");
        assert!((33..=37).contains(&g.y.len), "{g:?}");
        assert!(g.y.step < 0.0 && g.x.step > 0.0);
        // Edges on multiples of the resolution.
        let [x0, y0, x1, y1] = g.edge_bounds();
        for v in [x0, y0, x1, y1] {
            assert!((v / 10_000.0 - (v / 10_000.0).round()).abs() < 1e-9, "{v}");
        }
        // The window is within the source grid and covers the extent's columns.
        assert!(plan.cols.end <= 41 && plan.rows.end <= 41);
        assert!(plan.cols.start <= 5 && plan.cols.end >= 39, "{plan:?}");
    }

    #[test]
    fn the_default_resolution_is_in_the_target_crs_units() {
        let bbox = Bbox::new(-13.5, 6.9, -10.1, 10.0).expect("bbox");
        // NAD83 is geographic: its resolution is in degrees, like the source's 0.1°.
        let plan = target_grid(&era5_sle(), &bbox, &crs("EPSG:4269"), None).expect("plan");
        assert!(
            (plan.grid.x.step - 0.1).abs() < 1e-9,
            "{}",
            plan.grid.x.step
        );
    }

    #[test]
    fn points_proj_cannot_project_become_nan_alone() {
        // An orthographic view centred on 0°/0° cannot show the far side of the globe.
        let proj =
            transformer("EPSG:4326", "+proj=ortho +lat_0=0 +lon_0=0 +type=crs").expect("ortho");
        let mut pts = [(10.0, 5.0), (170.0, 5.0), (-20.0, -5.0)];
        convert_lenient(&proj, &mut pts);
        assert!(pts[0].0.is_finite() && pts[2].1.is_finite(), "{pts:?}");
        assert!(pts[1].0.is_nan() && pts[1].1.is_nan(), "{pts:?}");
    }

    #[test]
    fn the_default_resolution_is_the_source_pixel_in_metres() {
        let bbox = Bbox::new(-13.5, 6.9, -10.1, 10.0).expect("bbox");
        let plan = target_grid(&era5_sle(), &bbox, &crs("EPSG:32629"), None).expect("plan");
        // 0.1° of longitude at 8.45°N is about 11 000 m.
        assert_eq!(plan.grid.x.step, 11_000.0);
    }

    #[test]
    fn resampling_a_linear_field_is_exact_for_bilinear() {
        // A field linear in longitude and latitude: bilinear interpolation reproduces it.
        let source = era5_sle();
        let bbox = Bbox::new(-13.5, 6.9, -10.1, 10.0).expect("bbox");
        let plan = target_grid(&source, &bbox, &crs("EPSG:32629"), Some(20_000.0)).expect("plan");
        let f = |lon: f64, lat: f64| (3.0 * lon + 7.0 * lat) as f32;
        let window: Vec<f32> = plan
            .rows
            .clone()
            .flat_map(|r| {
                let s = &source;
                plan.cols
                    .clone()
                    .map(move |c| f(s.x.centre(c), s.y.centre(r)))
            })
            .collect();
        let bilinear = Resampler::new(
            &source,
            plan.rows.clone(),
            plan.cols.clone(),
            &plan.grid,
            Resampling::Bilinear,
        )
        .expect("resampler");
        let out = bilinear.apply(&window);
        let inverse = transformer("EPSG:32629", "EPSG:4326").expect("inverse");
        let g = &plan.grid;
        let mut checked = 0;
        for r in 0..g.y.len {
            for c in 0..g.x.len {
                let (lon, lat) = inverse
                    .convert((g.x.centre(c), g.y.centre(r)))
                    .expect("inverse");
                let v = out[r * g.x.len + c];
                assert!(
                    (f64::from(v) - f64::from(f(lon, lat))).abs() < 1e-3,
                    "({r}, {c}): {v} vs {}",
                    f(lon, lat)
                );
                checked += 1;
            }
        }
        assert_eq!(checked, g.x.len * g.y.len);
        // Nearest picks an actual source value within half a pixel.
        let nearest = Resampler::new(
            &source,
            plan.rows.clone(),
            plan.cols.clone(),
            &plan.grid,
            Resampling::Nearest,
        )
        .expect("resampler")
        .apply(&window);
        assert!(nearest.iter().all(|v| window.contains(v)));
    }

    #[test]
    fn missing_neighbours_are_left_out_and_unknown_crs_is_an_error() {
        let source = era5_sle();
        let bbox = Bbox::new(-13.5, 6.9, -10.1, 10.0).expect("bbox");
        let plan = target_grid(&source, &bbox, &crs("EPSG:32629"), Some(20_000.0)).expect("plan");
        let n = plan.rows.len() * plan.cols.len();
        let mut window = vec![5.0f32; n];
        // Every other source pixel missing: bilinear still gives 5 wherever one is present.
        for (i, v) in window.iter_mut().enumerate() {
            if i % 2 == 0 {
                *v = f32::NAN;
            }
        }
        let out = Resampler::new(
            &source,
            plan.rows.clone(),
            plan.cols.clone(),
            &plan.grid,
            Resampling::Bilinear,
        )
        .expect("resampler")
        .apply(&window);
        assert!(out.iter().all(|v| v.is_nan() || *v == 5.0));
        assert!(out.contains(&5.0));
        assert!(target_grid(&source, &bbox, &crs("EPSG:999999"), None).is_err());
    }
}
