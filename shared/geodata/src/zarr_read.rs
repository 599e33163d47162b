//! Reading what [`crate::zarr::ZarrWriter`] wrote: windows of the data array (or of one of its
//! pyramid levels) as f32, for the API's coverage, EDR, tile and download routes.
//!
//! A reader is built from the version's own description (grid, periods, variable), so opening
//! one costs one metadata read per array; readers of immutable versions can be kept and shared.

use std::ops::Range;
use std::sync::Arc;

use climate_domain::Crs;
use climate_domain::grid::{Axis, Grid, pyramid_levels};
use object_store::ObjectStore;
use object_store::prefix::PrefixStore;
use zarrs::array::{Array, ArraySubset};
use zarrs::storage::{
    AsyncMaybeBytesIterator, AsyncReadableStorageTraits, MaybeBytes, StorageError, StoreKey,
};

use zarrs::storage::byte_range::{ByteRange, ByteRangeIterator};

use crate::zarr::ZarrError;

type DynStorage = dyn AsyncReadableStorageTraits;

/// A version's store over the stores of the versions it appends to: a key is read from the
/// first layer that has it (the version's own objects first, then its bases, newest first).
struct Overlay(Vec<Arc<DynStorage>>);

#[async_trait::async_trait]
impl AsyncReadableStorageTraits for Overlay {
    async fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<AsyncMaybeBytesIterator<'a>, StorageError> {
        let ranges: Vec<ByteRange> = byte_ranges.collect();
        for layer in &self.0 {
            let found = layer
                .get_partial_many(key, Box::new(ranges.clone().into_iter()))
                .await?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    async fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        for layer in &self.0 {
            if let Some(bytes) = layer.get(key).await? {
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }

    async fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        for layer in &self.0 {
            if let Some(n) = layer.size_key(key).await? {
                return Ok(Some(n));
            }
        }
        Ok(None)
    }

    fn supports_get_partial(&self) -> bool {
        self.0.iter().all(|l| l.supports_get_partial())
    }
}

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
pub fn grid_from_transform(crs: &Crs, transform: [f64; 6], shape: [usize; 2]) -> Grid {
    let [a, _, c, _, e, f] = transform;
    Grid {
        crs: crs.clone(),
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
    /// Opens the data array `variable` of the store under `prefix` (falling back to the
    /// stores under `bases`, in order, for keys it does not hold: an appended version), whose
    /// level-0 grid is `grid` and time axis `nt` periods long, with its pyramid levels (if the
    /// grid has them).
    ///
    /// # Errors
    /// [`ZarrError`] when an array is missing or its shape disagrees.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        bases: &[String],
        variable: &str,
        grid: Grid,
        nt: u64,
    ) -> Result<Self, ZarrError> {
        let layer = |p: &str| -> Arc<DynStorage> {
            let raw: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(store.clone(), p));
            Arc::new(zarrs_object_store::AsyncObjectStore::new(raw))
        };
        let storage: Arc<DynStorage> = if bases.is_empty() {
            layer(prefix)
        } else {
            let mut layers = vec![layer(prefix)];
            layers.extend(bases.iter().map(|b| layer(b)));
            Arc::new(Overlay(layers))
        };
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
