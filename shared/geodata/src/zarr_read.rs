//! Reading what [`crate::zarr::ZarrWriter`] wrote: windows of the data array (or of one of its
//! pyramid levels) as f32, for the API's coverage, EDR, tile and download routes.
//!
//! A reader is built from the version's own description (grid, periods, variable), so opening
//! one costs one metadata read per array; readers of immutable versions can be kept and shared.

use std::ops::Range;
use std::sync::Arc;

use climate_domain::grid::{Axis, Grid, pyramid_levels};
use object_store::ObjectStore;
use object_store::prefix::PrefixStore;
use zarrs::array::{Array, ArraySubset};
use zarrs::storage::AsyncReadableWritableListableStorageTraits;

use crate::zarr::ZarrError;

type DynStorage = dyn AsyncReadableWritableListableStorageTraits;

/// One stored version's data array and pyramid levels.
pub struct ZarrReader {
    /// Level 0 first, then each pyramid level: its grid and array.
    levels: Vec<(Grid, Array<DynStorage>)>,
    /// Number of periods.
    pub nt: u64,
}

impl std::fmt::Debug for ZarrReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZarrReader")
            .field("grid", &self.levels.first().map(|(g, _)| g))
            .field("levels", &self.levels.len())
            .field("nt", &self.nt)
            .finish()
    }
}

/// The grid of `shape` (`[ny, nx]`) and affine `transform` (`[a, b, c, d, e, f]`) in `crs`.
pub fn grid_from_transform(crs: &str, transform: [f64; 6], shape: [usize; 2]) -> Grid {
    let [a, _, c, _, e, f] = transform;
    Grid {
        crs: crs.to_owned(),
        x: Axis {
            first: c + a / 2.0,
            step: a,
            len: shape[1],
        },
        y: Axis {
            first: f + e / 2.0,
            step: e,
            len: shape[0],
        },
    }
}

impl ZarrReader {
    /// Opens the data array `variable` of the store under `prefix`, whose level-0 grid is
    /// `grid` and time axis `nt` periods long, with its pyramid levels (if the grid has them).
    ///
    /// # Errors
    /// [`ZarrError`] when an array is missing or its shape disagrees.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        variable: &str,
        grid: Grid,
        nt: u64,
    ) -> Result<Self, ZarrError> {
        let raw: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(store, prefix));
        let storage: Arc<DynStorage> = Arc::new(zarrs_object_store::AsyncObjectStore::new(raw));
        let mut grids = vec![grid.clone()];
        grids.extend(pyramid_levels(&grid));
        let mut levels = Vec::with_capacity(grids.len());
        for (i, g) in grids.into_iter().enumerate() {
            let path = if i == 0 {
                format!("/{variable}")
            } else {
                format!("/{i}/{variable}")
            };
            let arr = Array::async_open(storage.clone(), &path)
                .await
                .map_err(|e| ZarrError::Shape(format!("{prefix}{path}: {e}")))?;
            let expected = [nt, g.y.len as u64, g.x.len as u64];
            if arr.shape() != expected {
                return Err(ZarrError::Shape(format!(
                    "{prefix}{path} has shape {:?}, expected {expected:?}",
                    arr.shape()
                )));
            }
            levels.push((g, arr));
        }
        Ok(Self { levels, nt })
    }

    /// Periods per stored chunk (or shard) of level 0: reads aligned to it decode each chunk
    /// once.
    pub fn time_chunk(&self) -> u64 {
        self.levels[0]
            .1
            .chunk_shape(&[0, 0, 0])
            .map_or(1, |s| s[0].get())
    }

    /// Level 0's grid.
    pub fn grid(&self) -> &Grid {
        &self.levels[0].0
    }

    /// The grids of level 0 and of every pyramid level, finest first.
    pub fn level_grids(&self) -> impl Iterator<Item = &Grid> {
        self.levels.iter().map(|(g, _)| g)
    }

    /// Values of `t × rows × cols` at `level` (0 = full resolution), `[t, y, x]` row-major,
    /// missing values NaN.
    ///
    /// # Errors
    /// [`ZarrError`] for a window outside the array or a store failure.
    pub async fn read(
        &self,
        level: usize,
        t: Range<u64>,
        rows: Range<u64>,
        cols: Range<u64>,
    ) -> Result<Vec<f32>, ZarrError> {
        let (_, arr) = self
            .levels
            .get(level)
            .ok_or_else(|| ZarrError::Shape(format!("no pyramid level {level}")))?;
        let subset = ArraySubset::new_with_ranges(&[t, rows, cols]);
        arr.async_retrieve_array_subset::<Vec<f32>>(&subset)
            .await
            .map_err(|e| ZarrError::Shape(format!("reading {subset:?}: {e}")))
    }
}
