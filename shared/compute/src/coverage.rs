//! Exact coverage fractions of a polygonal feature on a regular grid: for every cell, the
//! fraction of its area the feature covers.
//!
//! Each ring is cut once into the grid's row strips and each strip piece into the row's cells
//! (clipping against axis-aligned lines keeps the ring's signed area exact); a cell's fraction
//! is the sum of its pieces' signed areas, exteriors adding and holes subtracting, over the
//! cell's area. Cells a boundary crosses get their covered fraction, cells inside get 1, and a
//! feature smaller than one cell still covers its cell by the fraction it fills — never an
//! empty result while it overlaps the grid. Parts outside the grid are ignored. The fractions
//! are those of exactextract (planar, in the grid's CRS): a projected feature is projected into
//! that CRS first ([`MultiPolygon::map`]).

use std::ops::Range;

use climate_domain::grid::{Axis, Grid};

use crate::geometry::{MultiPolygon, Point, signed_area};

/// Fractions below this are rounding noise of cells the feature only touches.
const NOISE: f64 = 1e-12;

/// The covered fraction of each cell in a window of the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    /// Grid rows of the window.
    pub rows: Range<usize>,
    /// Grid columns of the window.
    pub cols: Range<usize>,
    // Single precision, as exactextract keeps them: fractions that differ only by rounding
    // (0.999…9 and 1) are equal, so ties between cells are ties.
    fractions: Vec<f32>,
}

impl Coverage {
    /// No cell: a feature that misses the grid.
    pub fn empty() -> Self {
        Self {
            rows: 0..0,
            cols: 0..0,
            fractions: Vec::new(),
        }
    }

    /// The fraction of grid cell (`row`, `col`) covered; 0 outside the window.
    pub fn fraction(&self, row: usize, col: usize) -> f64 {
        if self.rows.contains(&row) && self.cols.contains(&col) {
            f64::from(
                self.fractions[(row - self.rows.start) * self.cols.len() + (col - self.cols.start)],
            )
        } else {
            0.0
        }
    }

    /// The covered cells as (row, col, fraction), row by row.
    pub fn cells(&self) -> impl Iterator<Item = (usize, usize, f64)> + '_ {
        let width = self.cols.len();
        self.fractions
            .iter()
            .enumerate()
            .filter(|(_, f)| **f > 0.0)
            .map(move |(k, f)| {
                (
                    self.rows.start + k / width,
                    self.cols.start + k % width,
                    f64::from(*f),
                )
            })
    }

    /// Whether no cell is covered.
    pub fn is_empty(&self) -> bool {
        self.fractions.iter().all(|f| *f <= 0.0)
    }

    /// The sum of the fractions: the covered area in cells.
    pub fn total(&self) -> f64 {
        self.fractions.iter().map(|f| f64::from(*f)).sum()
    }
}

/// The cells of `axis` overlapping `[lo, hi]`, or `None`.
fn span(axis: &Axis, lo: f64, hi: f64) -> Option<Range<usize>> {
    if axis.len == 0 || axis.step == 0.0 {
        return None;
    }
    let e0 = axis.first - axis.step / 2.0;
    let (a, b) = ((lo - e0) / axis.step, (hi - e0) / axis.step);
    let first = a.min(b).floor().max(0.0);
    let end = a.max(b).ceil().min(axis.len as f64);
    (first < end).then_some(first as usize..end as usize)
}

/// The edges of cell `i` of `axis`, low then high.
fn edges(axis: &Axis, i: usize) -> (f64, f64) {
    let e0 = axis.first - axis.step / 2.0;
    let (a, b) = (e0 + axis.step * i as f64, e0 + axis.step * (i + 1) as f64);
    (a.min(b), a.max(b))
}

/// Clips the closed point list `ring` to the half-plane where coordinate `k` is at least
/// (`above`) or at most `bound` (one Sutherland–Hodgman pass; the signed area of what stays is
/// exact for any ring, convex or not). Returns a closed list, empty when nothing stays.
fn clip(ring: &[Point], k: usize, bound: f64, above: bool) -> Vec<Point> {
    let inside = |p: &Point| if above { p[k] >= bound } else { p[k] <= bound };
    let mut out = Vec::with_capacity(ring.len() + 4);
    for w in ring.windows(2) {
        let (a, b) = (w[0], w[1]);
        let (ia, ib) = (inside(&a), inside(&b));
        if ia {
            out.push(a);
        }
        if ia != ib {
            let t = (bound - a[k]) / (b[k] - a[k]);
            let mut p = [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])];
            p[k] = bound;
            out.push(p);
        }
    }
    if let Some(&first) = out.first() {
        out.push(first);
    }
    out
}

/// `ring` clipped to `lo <= coordinate k <= hi`.
fn clip_band(ring: &[Point], k: usize, lo: f64, hi: f64) -> Vec<Point> {
    clip(&clip(ring, k, lo, true), k, hi, false)
}

/// The coverage fractions of `shape` on `grid` (both in the grid's CRS).
pub fn coverage(shape: &MultiPolygon, grid: &Grid) -> Coverage {
    let [xmin, ymin, xmax, ymax] = shape.bounds();
    let (Some(rows), Some(cols)) = (span(&grid.y, ymin, ymax), span(&grid.x, xmin, xmax)) else {
        return Coverage::empty();
    };
    let width = cols.len();
    let cell_area = (grid.x.step * grid.y.step).abs();
    let mut fractions = vec![0.0; rows.len() * width];
    for (ring, hole) in shape.rings() {
        let points = ring.points();
        // Exteriors add and holes subtract, whichever way the file winds them.
        let sign = if (ring.signed_area() < 0.0) != hole {
            -1.0
        } else {
            1.0
        };
        for row in rows.clone() {
            let (y0, y1) = edges(&grid.y, row);
            let strip = clip_band(points, 1, y0, y1);
            if strip.is_empty() {
                continue;
            }
            let (lo, hi) = strip
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                    (lo.min(p[0]), hi.max(p[0]))
                });
            let Some(strip_cols) = span(&grid.x, lo, hi) else {
                continue;
            };
            let base = (row - rows.start) * width;
            for col in strip_cols.start.max(cols.start)..strip_cols.end.min(cols.end) {
                let (x0, x1) = edges(&grid.x, col);
                let piece = clip_band(&strip, 0, x0, x1);
                if piece.len() > 3 {
                    fractions[base + col - cols.start] += sign * signed_area(&piece) / cell_area;
                }
            }
        }
    }
    Coverage {
        rows,
        cols,
        fractions: fractions
            .into_iter()
            .map(|f| if f < NOISE { 0.0 } else { f.min(1.0) as f32 })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::geometry::{Polygon, Ring};

    /// A north-up grid of `nx` × `ny` cells of `size` from (`x0`, `y1`) (top-left corner).
    fn grid(x0: f64, y1: f64, size: f64, nx: usize, ny: usize) -> Grid {
        Grid {
            crs: climate_domain::Crs::WGS84,
            x: Axis {
                first: x0 + size / 2.0,
                step: size,
                len: nx,
            },
            y: Axis {
                first: y1 - size / 2.0,
                step: -size,
                len: ny,
            },
        }
    }

    fn rect(x0: f64, y0: f64, x1: f64, y1: f64) -> Ring {
        Ring::new(vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1]]).expect("valid")
    }

    fn shape(geojson: serde_json::Value) -> MultiPolygon {
        MultiPolygon::from_geojson(&geojson).expect("valid")
    }

    #[test]
    fn a_square_over_four_cells_covers_each_by_its_share() {
        // Cells of 1×1 from (0, 4); the square [0.5, 2.5] × [1.5, 3.5].
        let g = grid(0.0, 4.0, 1.0, 4, 4);
        let c = coverage(
            &MultiPolygon(vec![Polygon {
                exterior: rect(0.5, 1.5, 2.5, 3.5),
                holes: vec![],
            }]),
            &g,
        );
        assert_eq!((c.rows.clone(), c.cols.clone()), (0..3, 0..3));
        let expected = [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]];
        for (i, row) in expected.iter().enumerate() {
            for (j, want) in row.iter().enumerate() {
                assert!(
                    (c.fraction(i, j) - want).abs() < 1e-12,
                    "cell {i},{j}: {}",
                    c.fraction(i, j)
                );
            }
        }
        assert!((c.total() - 4.0).abs() < 1e-12);
    }

    #[test]
    fn holes_are_left_out_and_winding_does_not_matter() {
        let g = grid(0.0, 3.0, 1.0, 3, 3);
        // Clockwise exterior, counter-clockwise hole: the reverse of GeoJSON's rule.
        let s = shape(json!({"type": "Polygon", "coordinates": [
            [[0, 0], [0, 3], [3, 3], [3, 0], [0, 0]],
            [[1, 1], [2, 1], [2, 2], [1, 2], [1, 1]]
        ]}));
        let c = coverage(&s, &g);
        assert_eq!(c.fraction(1, 1), 0.0, "the hole's cell");
        assert!((c.fraction(0, 0) - 1.0).abs() < 1e-12);
        assert!((c.total() - 8.0).abs() < 1e-12);
        assert_eq!(c.cells().count(), 8);
    }

    #[test]
    fn a_feature_smaller_than_a_cell_still_covers_its_cell() {
        let g = grid(-13.5, 10.0, 0.1, 34, 31);
        let s = shape(json!({"type": "Polygon", "coordinates": [
            [[-12.01, 8.01], [-12.0, 8.01], [-12.0, 8.02], [-12.01, 8.02], [-12.01, 8.01]]
        ]}));
        let c = coverage(&s, &g);
        let cells: Vec<_> = c.cells().collect();
        assert_eq!(cells.len(), 1, "{cells:?}");
        assert!(
            (cells[0].2 - 0.01).abs() < 1e-9,
            "a hundredth of the cell: {cells:?}"
        );
    }

    #[test]
    fn parts_outside_the_grid_are_ignored_and_a_miss_is_empty() {
        let g = grid(0.0, 2.0, 1.0, 2, 2);
        let half_out = shape(json!({"type": "Polygon", "coordinates": [
            [[-1, 0], [1, 0], [1, 2], [-1, 2], [-1, 0]]
        ]}));
        let c = coverage(&half_out, &g);
        assert!((c.total() - 2.0).abs() < 1e-12);
        assert_eq!(c.fraction(0, 1), 0.0);
        let away = shape(json!({"type": "Polygon", "coordinates": [
            [[10, 10], [11, 10], [11, 11], [10, 10]]
        ]}));
        assert!(coverage(&away, &g).is_empty());
    }

    #[test]
    fn multipolygon_parts_add_up() {
        let g = grid(0.0, 4.0, 1.0, 4, 4);
        let s = shape(json!({"type": "MultiPolygon", "coordinates": [
            [[[0, 0], [1, 0], [1, 1], [0, 0]]],
            [[[2, 2], [4, 2], [4, 4], [2, 4], [2, 2]]]
        ]}));
        let c = coverage(&s, &g);
        assert!((c.total() - 4.5).abs() < 1e-12);
        assert!(
            (c.fraction(3, 0) - 0.5).abs() < 1e-12,
            "the triangle's half cell"
        );
    }

    /// A random star-shaped polygon around (cx, cy): simple by construction.
    fn star(cx: f64, cy: f64, radii: &[f64]) -> MultiPolygon {
        let n = radii.len();
        let points = radii
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let a = std::f64::consts::TAU * i as f64 / n as f64;
                [cx + r * a.cos(), cy + r * a.sin()]
            })
            .collect();
        MultiPolygon(vec![Polygon {
            exterior: Ring::new(points).expect("valid"),
            holes: vec![],
        }])
    }

    proptest! {
        #[test]
        fn fractions_are_in_0_1_and_add_up_to_the_area_inside_the_grid(
            cx in 2.0f64..8.0, cy in 2.0f64..8.0,
            radii in proptest::collection::vec(0.05f64..1.9, 3..40),
            size in prop_oneof![Just(0.1f64), Just(0.25), Just(0.5), Just(1.0)],
        ) {
            let g = grid(0.0, 10.0, size, (10.0 / size) as usize, (10.0 / size) as usize);
            let s = star(cx, cy, &radii);
            let c = coverage(&s, &g);
            let cell = size * size;
            for (_, _, f) in c.cells() {
                prop_assert!(f > 0.0 && f <= 1.0, "fraction {f}");
            }
            // Fractions are kept in single precision, as exactextract keeps them.
            prop_assert!((c.total() * cell - s.area()).abs() <= 1e-6 * s.area().max(cell),
                "covered {} vs area {}", c.total() * cell, s.area());
            prop_assert!(!c.is_empty());
        }

        #[test]
        fn moving_a_feature_by_whole_cells_moves_its_coverage(
            radii in proptest::collection::vec(0.1f64..1.5, 3..20),
            dx in 0usize..4, dy in 0usize..4,
        ) {
            let g = grid(0.0, 10.0, 0.5, 20, 20);
            let a = coverage(&star(3.1, 6.7, &radii), &g);
            let b = coverage(&star(3.1 + dx as f64 * 0.5, 6.7 - dy as f64 * 0.5, &radii), &g);
            for (row, col, f) in a.cells() {
                prop_assert!((b.fraction(row + dy, col + dx) - f).abs() < 1e-6);
            }
            prop_assert!((a.total() - b.total()).abs() < 1e-5);
        }

        #[test]
        fn a_feature_cut_in_two_covers_what_the_whole_covers(
            x0 in 0.3f64..4.0, y0 in 0.3f64..4.0, w in 0.2f64..5.0, h in 0.2f64..5.0, t in 0.05f64..0.95,
        ) {
            let g = grid(0.0, 10.0, 0.7, 15, 15);
            let whole = MultiPolygon(vec![Polygon { exterior: rect(x0, y0, x0 + w, y0 + h), holes: vec![] }]);
            let cut = x0 + t * w;
            let parts = MultiPolygon(vec![
                Polygon { exterior: rect(x0, y0, cut, y0 + h), holes: vec![] },
                Polygon { exterior: rect(cut, y0, x0 + w, y0 + h), holes: vec![] },
            ]);
            let (a, b) = (coverage(&whole, &g), coverage(&parts, &g));
            for (row, col, f) in a.cells() {
                prop_assert!((b.fraction(row, col) - f).abs() < 1e-6);
            }
        }
    }
}
