//! Selections of an opened cube: index windows from coordinates and bboxes, reads of a window
//! (thinned a period at a time), and the colour scale a period is drawn with.

use std::ops::Range;

use climate_domain::grid::{Axis, Grid};
use climate_domain::template::Display;

use crate::{CatalogError, Opened};

/// A window of the level-0 grid: rows, columns and time indices, thinned by `step`.
#[derive(Debug, Clone)]
pub struct Window {
    /// Time indices.
    pub t: Range<usize>,
    /// Row indices.
    pub rows: Range<usize>,
    /// Column indices.
    pub cols: Range<usize>,
    /// Every `step`-th row and column is kept (1: all).
    pub step: usize,
}

impl Window {
    fn out_len(r: &Range<usize>, step: usize) -> usize {
        r.len().div_ceil(step)
    }

    /// Values the window answers.
    #[must_use]
    pub fn cells(&self) -> u64 {
        (self.t.len() * Self::out_len(&self.rows, self.step) * Self::out_len(&self.cols, self.step))
            as u64
    }

    /// Values held by one read: thinned windows are read a period at a time.
    #[must_use]
    pub fn read_cells(&self) -> u64 {
        let periods = if self.step > 1 { 1 } else { self.t.len() };
        (periods * self.rows.len() * self.cols.len()) as u64
    }

    /// The output grid (pixel centres of the kept rows and columns).
    #[must_use]
    pub fn grid(&self, g: &Grid) -> Grid {
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

fn selection(message: String) -> CatalogError {
    CatalogError::Selection(message)
}

/// Indices of `axis` whose centres lie in `[lo, hi]` (either order), or the nearest one for a
/// single value; `what` names the parameter in errors.
///
/// # Errors
/// [`CatalogError::Selection`] when no pixel centre is selected.
pub fn axis_range(
    axis: &Axis,
    lo: f64,
    hi: Option<f64>,
    what: &str,
) -> Result<Range<usize>, CatalogError> {
    let (a, b) = match hi {
        Some(h) => (lo.min(h), lo.max(h)),
        None => {
            let i = nearest(axis, lo)
                .ok_or_else(|| selection(format!("{what}: {lo} is outside the data")))?;
            return Ok(i..i + 1);
        }
    };
    axis.clip(a, b).ok_or_else(|| {
        let (e0, e1) = (axis.leading_edge(), axis.trailing_edge());
        selection(format!(
            "{what}: {a}..{b} holds no pixel centre; the data spans {}..{}",
            e0.min(e1),
            e0.max(e1)
        ))
    })
}

/// The pixel containing `v`, if any.
#[must_use]
pub fn nearest(axis: &Axis, v: f64) -> Option<usize> {
    let f = ((v - axis.first) / axis.step).round();
    (f >= 0.0 && f < axis.len as f64).then_some(f as usize)
}

/// The overlap of two index ranges.
///
/// # Errors
/// [`CatalogError::Selection`] when they do not overlap.
pub fn intersect(
    a: Range<usize>,
    b: Range<usize>,
    what: &str,
) -> Result<Range<usize>, CatalogError> {
    let r = a.start.max(b.start)..a.end.min(b.end);
    if r.is_empty() {
        return Err(selection(format!("{what}: bbox and subset do not overlap")));
    }
    Ok(r)
}

/// A CRS84 bbox as a window of the storage grid (projected grids: the envelope of the bbox's
/// projected outline).
///
/// # Errors
/// [`CatalogError::Selection`] when the bbox selects no pixel centre or cannot be projected.
pub fn bbox_window(
    grid: &Grid,
    bbox: [f64; 4],
) -> Result<(Range<usize>, Range<usize>), CatalogError> {
    let [w, s, e, n] = if grid.crs == "EPSG:4326" {
        bbox
    } else {
        climate_geodata::reproject::project_bounds(bbox, "EPSG:4326", &grid.crs, 9)
            .map_err(|e| CatalogError::Internal(e.to_string()))?
            .ok_or_else(|| selection("bbox: cannot be projected onto the data's CRS".into()))?
    };
    Ok((
        axis_range(&grid.y, s, Some(n), "bbox")?,
        axis_range(&grid.x, w, Some(e), "bbox")?,
    ))
}

impl Opened {
    /// Reads a window (thinning by `step`) as `[t, y, x]`.
    ///
    /// # Errors
    /// [`CatalogError::Store`] when the store cannot be read.
    pub async fn read(&self, w: &Window) -> Result<Vec<f32>, CatalogError> {
        let read = |t: Range<usize>| {
            self.reader.read(
                0,
                t.start as u64..t.end as u64,
                w.rows.start as u64..w.rows.end as u64,
                w.cols.start as u64..w.cols.end as u64,
            )
        };
        let store = |e: climate_geodata::zarr::ZarrError| CatalogError::Store(e.to_string());
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

    /// How period `t` is drawn: the template's display, else viridis over the period's value
    /// range, taken from the coarsest pyramid level (the whole field, cheaply), so that
    /// coverage PNGs and every map tile of a period share one colour scale.
    ///
    /// # Errors
    /// [`CatalogError::Store`] when the store cannot be read.
    pub async fn display(&self, t: usize) -> Result<Display, CatalogError> {
        if let Some(d) = &self.display {
            return Ok(d.clone());
        }
        let (level, grid) = self
            .reader
            .level_grids()
            .enumerate()
            .last()
            .map(|(i, g)| (i, g.clone()))
            .unwrap_or_else(|| (0, self.grid.clone()));
        let values = self
            .reader
            .read(
                level,
                t as u64..t as u64 + 1,
                0..grid.y.len as u64,
                0..grid.x.len as u64,
            )
            .await
            .map_err(|e| CatalogError::Store(e.to_string()))?;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn axis(first: f64, step: f64, len: usize) -> Axis {
        Axis { first, step, len }
    }

    #[test]
    fn a_single_value_selects_the_pixel_holding_it() {
        let a = axis(0.5, 1.0, 10);
        assert_eq!(axis_range(&a, 3.2, None, "x").expect("accepted"), 3..4);
        let e = axis_range(&a, 11.0, None, "subset x").expect_err("refused");
        assert!(matches!(&e, CatalogError::Selection(m) if m.starts_with("subset x: 11")));
    }

    #[test]
    fn descending_axes_select_by_centre_and_errors_give_the_span() {
        // North to south, as stored: centres 9.5, 8.5, … 0.5; 4.5, 3.5 and 2.5 lie in [2, 5].
        let y = axis(9.5, -1.0, 10);
        assert_eq!(
            axis_range(&y, 2.0, Some(5.0), "bbox").expect("accepted"),
            5..8
        );
        let e = axis_range(&y, 20.0, Some(30.0), "bbox").expect_err("refused");
        assert!(e.to_string().contains("the data spans 0..10"), "{e}");
    }

    #[test]
    fn disjoint_ranges_are_a_selection_error() {
        assert_eq!(intersect(0..5, 3..9, "s").expect("accepted"), 3..5);
        assert!(matches!(
            intersect(0..2, 3..9, "s"),
            Err(CatalogError::Selection(_))
        ));
    }

    proptest! {
        #[test]
        fn a_thinned_window_answers_what_its_grid_holds(
            t in 1usize..5, r0 in 0usize..50, nr in 1usize..60, c0 in 0usize..50,
            nc in 1usize..60, step in 1usize..7,
        ) {
            let w = Window { t: 0..t, rows: r0..r0 + nr, cols: c0..c0 + nc, step };
            let g = w.grid(&Grid { crs: climate_domain::Crs::WGS84, x: axis(0.5, 1.0, 200), y: axis(99.5, -1.0, 200) });
            prop_assert_eq!(w.cells(), (t * g.x.len * g.y.len) as u64);
            prop_assert_eq!(g.x.first, c0 as f64 + 0.5);
            prop_assert!(w.read_cells() >= (g.x.len * g.y.len) as u64);
        }
    }
}
