//! Regular grids: coordinate axes, the pixel-centre clipping rule, and the affine transform and
//! bounds that GeoZarr attributes describe.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::crs::Crs;

/// Why coordinates do not form a regular axis.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GridError {
    /// Fewer than one coordinate.
    #[error("axis '{0}' has no coordinates")]
    Empty(String),
    /// Spacing varies more than the tolerance allows.
    #[error("axis '{axis}' is not regular: step {found} at index {index} differs from {expected}")]
    Irregular {
        /// Axis name.
        axis: String,
        /// Position of the offending step.
        index: usize,
        /// First step.
        expected: f64,
        /// Step found.
        found: f64,
    },
}

fn round9(v: f64) -> f64 {
    (v * 1e9).round() / 1e9
}

/// A regular axis described by the centre of its first pixel, a signed step and a length.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    /// Coordinate of the centre of pixel 0.
    pub first: f64,
    /// Signed distance between consecutive pixel centres (negative for north-up latitude).
    pub step: f64,
    /// Number of pixels.
    pub len: usize,
}

impl Axis {
    /// Builds an axis from pixel-centre coordinates, checking that the spacing is regular to
    /// within 1e-6 of a step (source files store coordinates with float rounding).
    ///
    /// # Errors
    /// [`GridError::Empty`] or [`GridError::Irregular`].
    pub fn from_centres(name: &str, centres: &[f64]) -> Result<Self, GridError> {
        let Some(&first) = centres.first() else {
            return Err(GridError::Empty(name.to_owned()));
        };
        if centres.len() == 1 {
            // A single pixel has no measurable step; callers that need one supply it.
            return Ok(Self {
                first,
                step: 0.0,
                len: 1,
            });
        }
        let n = centres.len();
        let step = (centres[n - 1] - first) / (n - 1) as f64;
        for (i, pair) in centres.windows(2).enumerate() {
            let found = pair[1] - pair[0];
            if (found - step).abs() > step.abs() * 1e-4 {
                return Err(GridError::Irregular {
                    axis: name.to_owned(),
                    index: i,
                    expected: step,
                    found,
                });
            }
        }
        Ok(Self {
            first,
            step,
            len: n,
        })
    }

    /// Centre of pixel `i`, rounded to 1e-9 so that sums like `6.9 + 0.05` print as the
    /// coordinates a person would write (1e-9° is about 0.1 mm).
    pub fn centre(&self, i: usize) -> f64 {
        round9(self.first + self.step * i as f64)
    }

    /// All pixel centres.
    pub fn centres(&self) -> Vec<f64> {
        (0..self.len).map(|i| self.centre(i)).collect()
    }

    /// Outer edge before pixel 0 (in the direction of the axis).
    pub fn leading_edge(&self) -> f64 {
        round9(self.first - self.step / 2.0)
    }

    /// Outer edge after the last pixel.
    pub fn trailing_edge(&self) -> f64 {
        round9(self.centre(self.len.saturating_sub(1)) + self.step / 2.0)
    }

    /// Indices of the pixels whose centre lies within `[lo, hi]` (the pixel-centre rule), or
    /// `None` when none does. Works for ascending and descending axes.
    pub fn clip(&self, lo: f64, hi: f64) -> Option<Range<usize>> {
        // A tolerance of a millionth of a pixel keeps centres that sit exactly on an edge
        // (common: 0.1° grids and 0.1°-aligned boxes) from flickering in and out with rounding.
        let eps = self.step.abs() * 1e-6;
        let inside = |i: usize| {
            let c = self.centre(i);
            c >= lo - eps && c <= hi + eps
        };
        let start = (0..self.len).find(|&i| inside(i))?;
        let end = (start..self.len).take_while(|&i| inside(i)).last()? + 1;
        Some(start..end)
    }

    /// The axis with pixels `factor` times as large, aligned on the same leading edge: pixel
    /// `i` covers source pixels `factor·i .. factor·(i+1)`. The last pixel of an axis whose
    /// length is not a multiple of `factor` reaches past the source's trailing edge.
    pub fn coarsen(&self, factor: usize) -> Self {
        let f = factor.max(1) as f64;
        Self {
            first: round9(self.first + self.step * (f - 1.0) / 2.0),
            step: self.step * f,
            len: self.len.div_ceil(factor.max(1)),
        }
    }

    /// The sub-axis covering `range`.
    pub fn slice(&self, range: Range<usize>) -> Self {
        Self {
            first: self.centre(range.start),
            step: self.step,
            len: range.len(),
        }
    }
}

/// A regular 2-D grid in some CRS, with `y` rows and `x` columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// CRS of the coordinates, e.g. `EPSG:4326`.
    pub crs: Crs,
    /// Column axis.
    pub x: Axis,
    /// Row axis (descending for north-up grids).
    pub y: Axis,
}

impl Grid {
    /// Bounds of the grid from its pixel edges: `[xmin, ymin, xmax, ymax]`.
    pub fn edge_bounds(&self) -> [f64; 4] {
        let (x0, x1) = (self.x.leading_edge(), self.x.trailing_edge());
        let (y0, y1) = (self.y.leading_edge(), self.y.trailing_edge());
        [x0.min(x1), y0.min(y1), x0.max(x1), y0.max(y1)]
    }

    /// Affine transform `[a, b, c, d, e, f]` mapping (column, row) of pixel corners to
    /// coordinates: `x = a·col + b·row + c`, `y = d·col + e·row + f`.
    pub fn transform(&self) -> [f64; 6] {
        [
            self.x.step,
            0.0,
            self.x.leading_edge(),
            0.0,
            self.y.step,
            self.y.leading_edge(),
        ]
    }

    /// Shape as `[ny, nx]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.y.len, self.x.len]
    }

    /// The grid with pixels `factor`×`factor` times as large (see [`Axis::coarsen`]).
    pub fn coarsen(&self, factor: usize) -> Self {
        Self {
            crs: self.crs.clone(),
            x: self.x.coarsen(factor),
            y: self.y.coarsen(factor),
        }
    }
}

/// Grids larger than this many pixels get pyramids (SPEC §6).
pub const PYRAMID_MIN_PIXELS: usize = 1024 * 1024;

/// A pyramid stops at the first level whose longer side fits in one web-map tile.
pub const PYRAMID_TOP_SIDE: usize = 256;

/// The coarser levels of a grid's pyramid, level 1 first: each halves the previous one (2×2
/// pixels become one), until the longer side is at most [`PYRAMID_TOP_SIDE`]. Empty for grids of
/// at most [`PYRAMID_MIN_PIXELS`] pixels.
pub fn pyramid_levels(grid: &Grid) -> Vec<Grid> {
    let mut levels = Vec::new();
    if grid.x.len * grid.y.len <= PYRAMID_MIN_PIXELS {
        return levels;
    }
    let mut current = grid.clone();
    while current.x.len.max(current.y.len) > PYRAMID_TOP_SIDE {
        current = current.coarsen(2);
        levels.push(current.clone());
    }
    levels
}

/// One pyramid step: the 2×2 mean of `src`, `n` fields of `[ny, nx]` row-major, into fields
/// of `[ceil(ny/2), ceil(nx/2)]`. Missing values (NaN) are left out of each mean; a block with
/// no value gives NaN. Blocks at an odd edge hold one or two pixels.
pub fn downsample_mean(src: &[f32], n: usize, ny: usize, nx: usize) -> Vec<f32> {
    let (oy, ox) = (ny.div_ceil(2), nx.div_ceil(2));
    let mut out = vec![f32::NAN; n * oy * ox];
    for t in 0..n {
        let field = &src[t * ny * nx..(t + 1) * ny * nx];
        let dst = &mut out[t * oy * ox..(t + 1) * oy * ox];
        for r in 0..oy {
            let rows = &[2 * r, 2 * r + 1][..if 2 * r + 1 < ny { 2 } else { 1 }];
            for c in 0..ox {
                let (mut sum, mut count) = (0.0f64, 0u32);
                for &y in rows {
                    for x in (2 * c)..(2 * c + 2).min(nx) {
                        let v = field[y * nx + x];
                        if !v.is_nan() {
                            sum += f64::from(v);
                            count += 1;
                        }
                    }
                }
                if count > 0 {
                    dst[r * ox + c] = (sum / f64::from(count)) as f32;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarsening_keeps_the_leading_edge_and_covers_the_source() {
        // 0.05° CHIRPS columns from -180: centres -179.975, -179.925, ...
        let x = Axis {
            first: -179.975,
            step: 0.05,
            len: 7200,
        };
        let c = x.coarsen(2);
        assert_eq!((c.first, c.step, c.len), (-179.95, 0.1, 3600));
        assert_eq!(c.leading_edge(), x.leading_edge());
        assert_eq!(c.trailing_edge(), x.trailing_edge());
        // Descending rows, odd length: the last coarse pixel reaches past the source.
        let y = Axis {
            first: 49.975,
            step: -0.05,
            len: 5,
        };
        let c = y.coarsen(2);
        assert_eq!((c.first, c.step, c.len), (49.95, -0.1, 3));
        assert_eq!(c.leading_edge(), y.leading_edge());
        assert!(c.trailing_edge() < y.trailing_edge());
    }

    #[test]
    fn pyramids_start_above_a_megapixel_and_end_at_a_tile() {
        let grid = |nx, ny| Grid {
            crs: Crs::WGS84,
            x: Axis {
                first: 0.025,
                step: 0.05,
                len: nx,
            },
            y: Axis {
                first: 49.975,
                step: -0.05,
                len: ny,
            },
        };
        assert!(pyramid_levels(&grid(1024, 1024)).is_empty());
        let shapes: Vec<[usize; 2]> = pyramid_levels(&grid(7200, 2000))
            .iter()
            .map(Grid::shape)
            .collect();
        assert_eq!(
            shapes,
            [[1000, 3600], [500, 1800], [250, 900], [125, 450], [63, 225]]
        );
    }

    #[test]
    fn downsampling_averages_the_values_present() {
        let nan = f32::NAN;
        // Two 3×3 fields.
        #[rustfmt::skip]
        let src = [
            1.0, 3.0, 5.0,
            5.0, 7.0, nan,
            9.0, nan, 2.0,

            nan, nan, 1.0,
            nan, nan, nan,
            4.0, 6.0, nan,
        ];
        let out = downsample_mean(&src, 2, 3, 3);
        let expected = [4.0, 5.0, 9.0, 2.0, nan, 1.0, 5.0, nan];
        assert_eq!(out.len(), expected.len());
        for (o, e) in out.iter().zip(expected) {
            assert!(o == &e || (o.is_nan() && e.is_nan()), "{out:?}");
        }
    }

    fn era5_lon() -> Axis {
        // ERA5-Land Sierra Leone sample: -13.5 .. -10.1 by 0.1 (35 columns).
        let c: Vec<f64> = (0..35).map(|i| -13.5 + 0.1 * f64::from(i)).collect();
        Axis::from_centres("longitude", &c).expect("regular")
    }

    #[test]
    fn pixel_centre_rule_keeps_centres_on_the_edge() {
        let ax = era5_lon();
        assert_eq!(ax.clip(-13.5, -10.1), Some(0..35));
        assert_eq!(ax.clip(-13.45, -13.25), Some(1..3));
        assert_eq!(ax.clip(-20.0, -14.0), None);
    }

    #[test]
    fn descending_axes_clip_and_bound_correctly() {
        let c: Vec<f64> = (0..32).map(|i| 10.0 - 0.1 * f64::from(i)).collect();
        let ax = Axis::from_centres("latitude", &c).expect("regular");
        assert!(ax.step < 0.0);
        assert_eq!(ax.clip(7.0, 8.0), Some(20..31));
        let grid = Grid {
            crs: Crs::WGS84,
            x: era5_lon(),
            y: ax,
        };
        let b = grid.edge_bounds();
        assert!(
            (b[0] + 13.55).abs() < 1e-9 && (b[3] - 10.05).abs() < 1e-9,
            "{b:?}"
        );
        let t = grid.transform();
        assert!(
            (t[4] + 0.1).abs() < 1e-9 && (t[5] - 10.05).abs() < 1e-9,
            "{t:?}"
        );
    }

    #[test]
    fn irregular_axes_are_rejected() {
        assert!(matches!(
            Axis::from_centres("x", &[0.0, 1.0, 3.0]),
            Err(GridError::Irregular { .. })
        ));
    }
}
