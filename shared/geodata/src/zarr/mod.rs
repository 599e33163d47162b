//! The GeoZarr writer: a Zarr v3 group with a `(t, y, x)` data array, CF coordinate arrays,
//! zstd compression, GeoZarr `spatial:`/`proj:` attributes and consolidated metadata inline in
//! the root `zarr.json` (xarray opens a non-consolidated v3 store over HTTP as an empty dataset).
//!
//! Grids over a megapixel also get a pyramid: child groups `1`, `2`, … each holding the same
//! variables at half the resolution of the level before (2×2 mean), described by the
//! `multiscales` convention on the root. Level 0 stays the root's own arrays, so every reader
//! that knows nothing of pyramids sees the full-resolution dataset.
//!
//! The writer is fed one time chunk at a time, so its memory is bounded by one time chunk of the
//! grid, whatever the length of the series.

use std::sync::Arc;

use chrono::NaiveDate;
use climate_domain::chunking::ChunkShape;
use climate_domain::grid::{Grid, downsample_mean, pyramid_levels};
use climate_domain::{PeriodRange, PeriodType};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Map, Value, json};
use zarrs::array::codec::bytes_to_bytes::zstd::ZstdCodec;
use zarrs::array::{Array, ArrayBuilder, ArraySubset, data_type};
use zarrs::storage::AsyncReadableWritableListableStorageTraits;

#[cfg(test)]
mod tests;

/// zstd level: a good ratio at a speed well above download rates.
const ZSTD_LEVEL: i32 = 3;
/// Spatial chunks encoded and written concurrently.
const WRITE_CONCURRENCY: usize = 8;

/// Errors writing a store.
#[derive(Debug, thiserror::Error)]
pub enum ZarrError {
    /// zarrs rejected the array or a chunk.
    #[error("zarr error: {0}")]
    Zarr(String),
    /// The object store failed.
    #[error("object store error: {0}")]
    Store(#[from] object_store::Error),
    /// The caller passed data of the wrong shape.
    #[error("{0}")]
    Shape(String),
}

fn zerr(e: impl std::fmt::Display) -> ZarrError {
    ZarrError::Zarr(e.to_string())
}

/// What is written.
#[derive(Debug, Clone)]
pub struct StoreLayout {
    /// Data variable name.
    pub variable: String,
    /// CF units.
    pub units: String,
    /// CF long name.
    pub long_name: String,
    /// Period type of the time axis.
    pub period_type: PeriodType,
    /// The periods, one per time step.
    pub periods: PeriodRange,
    /// The written grid (already clipped).
    pub grid: Grid,
    /// Chunk shape of the data array.
    pub chunks: ChunkShape,
    /// Chunks per shard along `[t, y, x]`, when the array is sharded. The writer's unit (a
    /// "time chunk") is then a shard's time extent.
    pub shard: Option<[u64; 3]>,
    /// Extra root attributes (title, dataset id, provenance).
    pub attributes: Map<String, Value>,
}

impl StoreLayout {
    /// Periods per unit of writing: a time chunk, or a shard's time extent when sharded.
    pub fn time_step(&self) -> u64 {
        self.chunks.t * self.shard.map_or(1, |s| s[0])
    }

    /// Number of time chunks (shards when sharded).
    pub fn time_chunks(&self) -> u64 {
        self.periods.len().div_ceil(self.time_step())
    }

    /// Index range of periods in time chunk (or shard) `i`.
    pub fn time_chunk_range(&self, i: u64) -> std::ops::Range<u64> {
        let step = self.time_step();
        let start = i * step;
        start..(start + step).min(self.periods.len())
    }
}

/// CF time units for a period type and the coordinate value of each period start.
pub fn time_encoding(kind: PeriodType) -> (&'static str, i64) {
    match kind {
        PeriodType::Hourly => ("hours since 1970-01-01 00:00:00", 3600),
        _ => ("days since 1970-01-01", 86_400),
    }
}

/// GeoZarr convention declarations (zarr-conventions `spatial:` and `proj:`).
pub fn convention_declarations() -> Value {
    json!([
        {
            "schema_url": "https://raw.githubusercontent.com/zarr-conventions/spatial/refs/tags/v1/schema.json",
            "spec_url": "https://github.com/zarr-conventions/spatial/blob/v1/README.md",
            "uuid": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
            "name": "spatial:",
            "description": "Spatial coordinate information"
        },
        {
            "schema_url": "https://raw.githubusercontent.com/zarr-experimental/geo-proj/refs/tags/v1/schema.json",
            "spec_url": "https://github.com/zarr-experimental/geo-proj/blob/v1/README.md",
            "uuid": "f17cb550-5864-4468-aeb7-f3180cfb622f",
            "name": "proj:",
            "description": "Coordinate reference system information for geospatial data"
        }
    ])
}

/// GeoZarr and CF attributes of a group holding `grid` (the root, or a pyramid level).
fn grid_attributes(layout: &StoreLayout, grid: &Grid) -> Map<String, Value> {
    let mut a = Map::new();
    a.insert("zarr_conventions".into(), convention_declarations());
    a.insert("spatial:dimensions".into(), json!(["y", "x"]));
    a.insert("spatial:bbox".into(), json!(grid.edge_bounds()));
    a.insert("spatial:transform".into(), json!(grid.transform()));
    a.insert("spatial:shape".into(), json!(grid.shape()));
    a.insert("spatial:registration".into(), json!("pixel"));
    a.insert("proj:code".into(), json!(grid.crs));
    a.insert("Conventions".into(), json!("CF-1.10"));
    a.insert("period_type".into(), json!(layout.period_type.as_str()));
    a
}

/// Root attributes describing the grid (GeoZarr + CF).
pub fn root_attributes(layout: &StoreLayout) -> Map<String, Value> {
    let mut a = grid_attributes(layout, &layout.grid);
    a.insert(
        "time_coverage_start".into(),
        json!(layout.periods.start().canonical()),
    );
    a.insert(
        "time_coverage_end".into(),
        json!(layout.periods.end().canonical()),
    );
    for (k, v) in &layout.attributes {
        a.insert(k.clone(), v.clone());
    }
    a
}

type DynStorage = dyn AsyncReadableWritableListableStorageTraits;

/// The multiscales convention declaration (zarr-conventions `multiscales`).
fn multiscales_declaration() -> Value {
    json!({
        "schema_url": "https://raw.githubusercontent.com/zarr-conventions/multiscales/refs/tags/v1/schema.json",
        "spec_url": "https://github.com/zarr-conventions/multiscales/blob/v1/README.md",
        "uuid": "d35379db-88df-4056-af3a-620245f8e347",
        "name": "multiscales",
        "description": "Multiscale layout of zarr datasets"
    })
}

/// Group attributes of a pyramid level (level 1 and up): its own grid, for GIS clients that
/// open the level as a dataset of its own.
fn level_attributes(layout: &StoreLayout, grid: &Grid, level: usize) -> Map<String, Value> {
    let mut a = grid_attributes(layout, grid);
    a.insert("pyramid_level".into(), json!(level));
    a
}

/// The `multiscales` root attribute: level 0 is the root's data array, level `k` the array of
/// the same name in child group `k`, each the 2×2 mean of the level before.
fn multiscales_attribute(layout: &StoreLayout, levels: &[Grid]) -> Value {
    let var = &layout.variable;
    let mut entries = vec![json!({
        "asset": var,
        "transform": {"scale": [1.0, 1.0], "translation": [0.0, 0.0]},
        "spatial:shape": layout.grid.shape(),
        "spatial:transform": layout.grid.transform(),
    })];
    for (i, grid) in levels.iter().enumerate() {
        let level = i + 1;
        let from = if level == 1 {
            var.clone()
        } else {
            format!("{}/{var}", level - 1)
        };
        entries.push(json!({
            "asset": format!("{level}/{var}"),
            "derived_from": from,
            "transform": {"scale": [2.0, 2.0], "translation": [0.0, 0.0]},
            "resampling_method": "average",
            "spatial:shape": grid.shape(),
            "spatial:transform": grid.transform(),
        }));
    }
    json!({"layout": entries, "resampling_method": "average"})
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a.max(1) } else { gcd(b, a % b) }
}

fn zstd() -> Vec<Arc<dyn zarrs::array::BytesToBytesCodecTraits>> {
    vec![Arc::new(ZstdCodec::new(ZSTD_LEVEL, false))]
}

/// Writes the coordinate arrays `t`, `y`, `x` of `grid` into group `group` (`""` for the root).
async fn create_coordinates(
    storage: &Arc<DynStorage>,
    group: &str,
    layout: &StoreLayout,
    grid: &Grid,
) -> Result<(), ZarrError> {
    let nt = layout.periods.len();
    let (t_units, t_step) = time_encoding(layout.period_type);
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(|| ZarrError::Shape("epoch".into()))?;
    let t_values: Vec<i64> = layout
        .periods
        .iter()
        .map(|p| (p.start() - epoch).num_seconds() / t_step)
        .collect();
    let geographic = grid.crs == "EPSG:4326";
    let coord_attrs = |axis: &str| -> Map<String, Value> {
        let v = match (axis, geographic) {
            ("y", true) => {
                json!({"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude", "axis": "Y"})
            }
            ("x", true) => {
                json!({"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude", "axis": "X"})
            }
            ("y", false) => {
                json!({"units": "m", "standard_name": "projection_y_coordinate", "axis": "Y"})
            }
            _ => json!({"units": "m", "standard_name": "projection_x_coordinate", "axis": "X"}),
        };
        v.as_object().cloned().unwrap_or_default()
    };
    let t_attrs = json!({
        "units": t_units, "calendar": "proleptic_gregorian", "standard_name": "time",
        "long_name": "time", "axis": "T", "period_type": layout.period_type.as_str()
    });
    let t = ArrayBuilder::new(vec![nt], vec![nt.max(1)], data_type::int64(), 0i64)
        .dimension_names(Some(["t"]))
        .bytes_to_bytes_codecs(zstd())
        .attributes(t_attrs.as_object().cloned().unwrap_or_default())
        .build_arc(storage.clone(), &format!("{group}/t"))
        .map_err(zerr)?;
    t.async_store_metadata().await.map_err(zerr)?;
    t.async_store_chunk(&[0], t_values).await.map_err(zerr)?;

    for (name, axis) in [("y", &grid.y), ("x", &grid.x)] {
        let n = axis.len as u64;
        let arr = ArrayBuilder::new(vec![n], vec![n.max(1)], data_type::float64(), f64::NAN)
            .dimension_names(Some([name]))
            .bytes_to_bytes_codecs(zstd())
            .attributes(coord_attrs(name))
            .build_arc(storage.clone(), &format!("{group}/{name}"))
            .map_err(zerr)?;
        arr.async_store_metadata().await.map_err(zerr)?;
        arr.async_store_chunk(&[0], axis.centres())
            .await
            .map_err(zerr)?;
    }
    Ok(())
}

/// Stores rows `y0 .. y0 + by` of time chunk `index` of `array` from `slab`, `[n_t, by, nx]`
/// row-major. Chunks the band covers whole are encoded straight from the slab; a chunk it
/// covers in part (a pyramid level whose chunks straddle two bands) is updated in place, read
/// and rewritten. Returns the number of chunks written holding at least one value.
async fn store_band(
    array: &Arc<Array<DynStorage>>,
    index: u64,
    slab: &[f32],
    n_t: usize,
    y0: usize,
    by: usize,
    nx: usize,
) -> Result<u64, ZarrError> {
    let shape = array.chunk_shape(&[index, 0, 0]).map_err(zerr)?;
    let (ct, cy, cx) = (
        shape[0].get() as usize,
        shape[1].get() as usize,
        shape[2].get() as usize,
    );
    let ny = usize::try_from(array.shape()[1]).unwrap_or(usize::MAX);
    let mut jobs = Vec::new();
    for yi in y0 / cy..(y0 + by).div_ceil(cy) {
        for xi in 0..nx.div_ceil(cx) {
            jobs.push((yi, xi));
        }
    }
    // Chunk buffers are built inside the stream so that at most WRITE_CONCURRENCY of them are
    // alive at once.
    futures::stream::iter(jobs)
        .map(|(yi, xi)| {
            let array = array.clone();
            // Rows of this chunk inside the array, and the part of them the band holds.
            let (c0, c1) = (yi * cy, ((yi + 1) * cy).min(ny));
            let (r0, r1) = (c0.max(y0), c1.min(y0 + by));
            let w = cx.min(nx - xi * cx);
            let whole = (r0, r1) == (c0, c1);
            // A whole chunk is a full-size buffer padded with the fill value at the array's
            // edges; a partial one holds just the band's rows.
            let (rows_in_buf, width) = if whole { (cy, cx) } else { (r1 - r0, w) };
            let mut buf = vec![f32::NAN; if whole { ct } else { n_t } * rows_in_buf * width];
            let mut any = false;
            for t in 0..n_t {
                for r in r0..r1 {
                    let src = t * by * nx + (r - y0) * nx + xi * cx;
                    let dst = t * rows_in_buf * width + (r - if whole { c0 } else { r0 }) * width;
                    buf[dst..dst + w].copy_from_slice(&slab[src..src + w]);
                    any |= slab[src..src + w].iter().any(|v| !v.is_nan());
                }
            }
            async move {
                let indices = [index, yi as u64, xi as u64];
                if whole {
                    array.async_store_chunk(&indices, buf).await.map_err(zerr)?;
                } else {
                    let subset = ArraySubset::new_with_ranges(&[
                        0..n_t as u64,
                        (r0 - c0) as u64..(r1 - c0) as u64,
                        0..w as u64,
                    ]);
                    array
                        .async_store_chunk_subset(&indices, &subset, buf)
                        .await
                        .map_err(zerr)?;
                }
                Ok::<u64, ZarrError>(u64::from(any))
            }
        })
        .buffer_unordered(WRITE_CONCURRENCY)
        .try_fold(0, |acc, n| async move { Ok(acc + n) })
        .await
}

/// Writes one store under a prefix.
pub struct ZarrWriter {
    raw: Arc<dyn ObjectStore>,
    layout: StoreLayout,
    data: Arc<Array<DynStorage>>,
    /// Pyramid levels 1.. (empty for small grids): grid and data array.
    levels: Vec<(Grid, Arc<Array<DynStorage>>)>,
}

impl std::fmt::Debug for ZarrWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZarrWriter")
            .field("layout", &self.layout)
            .field("levels", &self.levels.len())
            .finish_non_exhaustive()
    }
}

impl ZarrWriter {
    /// Creates the arrays (coordinates with their values, the data array's metadata) under
    /// `prefix` of `store`, and those of the pyramid levels when the grid is large enough
    /// ([`pyramid_levels`]).
    ///
    /// # Errors
    /// [`ZarrError`] when the store fails.
    pub async fn create(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        layout: StoreLayout,
    ) -> Result<Self, ZarrError> {
        let raw: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(store, prefix));
        let storage: Arc<DynStorage> =
            Arc::new(zarrs_object_store::AsyncObjectStore::new(raw.clone()));
        let g = &layout.grid;
        let nt = layout.periods.len();
        let (ny, nx) = (g.y.len as u64, g.x.len as u64);
        create_coordinates(&storage, "", &layout, g).await?;

        let data_attrs = json!({
            "units": layout.units,
            "long_name": layout.long_name,
            "period_type": layout.period_type.as_str(),
        });
        let data_attrs = data_attrs.as_object().cloned().unwrap_or_default();
        let c = layout.chunks;
        let inner = vec![c.t, c.y.min(ny.max(1)), c.x.min(nx.max(1))];
        // With sharding the grid's chunks are shards of `shard` inner chunks each.
        let grid_chunk: Vec<u64> = match layout.shard {
            Some(s) => inner.iter().zip(s).map(|(c, n)| c * n).collect(),
            None => inner.clone(),
        };
        let mut builder =
            ArrayBuilder::new(vec![nt, ny, nx], grid_chunk, data_type::float32(), f32::NAN);
        builder
            .dimension_names(Some(["t", "y", "x"]))
            .bytes_to_bytes_codecs(zstd())
            .attributes(data_attrs.clone());
        if layout.shard.is_some() {
            builder.subchunk_shape(inner);
        }
        let data = builder
            .build_arc(storage.clone(), &format!("/{}", layout.variable))
            .map_err(zerr)?;
        data.async_store_metadata().await.map_err(zerr)?;

        // Pyramid levels: one time chunk per writing unit, the level-0 spatial chunking
        // (capped by the level's size), never sharded.
        let mut levels = Vec::new();
        for (i, grid) in pyramid_levels(g).into_iter().enumerate() {
            let group = format!("/{}", i + 1);
            create_coordinates(&storage, &group, &layout, &grid).await?;
            let (ly, lx) = (grid.y.len as u64, grid.x.len as u64);
            let chunk = vec![layout.time_step(), c.y.min(ly.max(1)), c.x.min(lx.max(1))];
            let arr = ArrayBuilder::new(vec![nt, ly, lx], chunk, data_type::float32(), f32::NAN)
                .dimension_names(Some(["t", "y", "x"]))
                .bytes_to_bytes_codecs(zstd())
                .attributes(data_attrs.clone())
                .build_arc(storage.clone(), &format!("{group}/{}", layout.variable))
                .map_err(zerr)?;
            arr.async_store_metadata().await.map_err(zerr)?;
            levels.push((grid, arr));
        }

        Ok(Self {
            raw,
            layout,
            data,
            levels,
        })
    }

    /// Opens a store laid out by [`ZarrWriter::create`] (possibly in another process) to write
    /// more time chunks or to finish it.
    ///
    /// # Errors
    /// [`ZarrError`] when the data array's metadata is missing or unreadable.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        layout: StoreLayout,
    ) -> Result<Self, ZarrError> {
        let raw: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(store, prefix));
        let storage: Arc<DynStorage> =
            Arc::new(zarrs_object_store::AsyncObjectStore::new(raw.clone()));
        let open = |path: String, expected: Vec<u64>| {
            let storage = storage.clone();
            async move {
                let arr = Array::async_open(storage, &path).await.map_err(zerr)?;
                if arr.shape() != expected.as_slice() {
                    return Err(ZarrError::Shape(format!(
                        "array {path} under {prefix} has shape {:?}, the layout says {expected:?}",
                        arr.shape()
                    )));
                }
                Ok(Arc::new(arr))
            }
        };
        let nt = layout.periods.len();
        let shape = |g: &Grid| vec![nt, g.y.len as u64, g.x.len as u64];
        let data = open(format!("/{}", layout.variable), shape(&layout.grid)).await?;
        let mut levels = Vec::new();
        for (i, grid) in pyramid_levels(&layout.grid).into_iter().enumerate() {
            let arr = open(format!("/{}/{}", i + 1, layout.variable), shape(&grid)).await?;
            levels.push((grid, arr));
        }
        Ok(Self {
            raw,
            layout,
            data,
            levels,
        })
    }

    /// The layout being written.
    pub fn layout(&self) -> &StoreLayout {
        &self.layout
    }

    /// Number of pyramid levels above level 0.
    pub fn pyramid_levels(&self) -> usize {
        self.levels.len()
    }

    /// The row multiple a band of [`Self::write_band`] starts at: whole level-0 chunks (or
    /// shards), and whole 2×2 blocks at every pyramid level.
    pub fn band_unit(&self) -> usize {
        let cy = self
            .data
            .chunk_shape(&[0, 0, 0])
            .map_or(1, |s| s[1].get() as usize);
        let blocks = 1usize << self.levels.len();
        cy / gcd(cy, blocks) * blocks
    }

    /// Rows per band so that one band of a time chunk holds at most `budget_bytes` of values
    /// (never less than one [`Self::band_unit`], never more than the grid).
    pub fn band_rows(&self, budget_bytes: u64) -> usize {
        let l = &self.layout;
        let row_bytes = (l.time_step() as usize * l.grid.x.len * 4).max(1);
        let unit = self.band_unit();
        let fit = usize::try_from(budget_bytes).unwrap_or(usize::MAX) / row_bytes / unit * unit;
        fit.max(unit).min(l.grid.y.len.max(1))
    }

    /// Writes time chunk `index` whole: `slab` holds its periods' fields, `[n_t, ny, nx]`
    /// row-major (`n_t` = periods in that chunk). See [`Self::write_band`].
    ///
    /// # Errors
    /// As [`Self::write_band`].
    pub async fn write_time_chunk(&self, index: u64, slab: &[f32]) -> Result<u64, ZarrError> {
        self.write_band(index, 0..self.layout.grid.y.len, slab)
            .await
    }

    /// Writes rows `rows` of time chunk `index`: `slab` holds those rows of its periods'
    /// fields, `[n_t, rows.len(), nx]` row-major; then the same rows of every pyramid level,
    /// each computed from the one before. A band starts at a multiple of
    /// [`Self::band_unit`] so that its level-0 chunks are whole and its 2×2 blocks never
    /// straddle two bands. Returns the number of level-0 chunk objects holding data.
    ///
    /// # Errors
    /// [`ZarrError::Shape`] for a misaligned band or a slab of the wrong size, or the store's
    /// error.
    pub async fn write_band(
        &self,
        index: u64,
        rows: std::ops::Range<usize>,
        slab: &[f32],
    ) -> Result<u64, ZarrError> {
        let l = &self.layout;
        let range = l.time_chunk_range(index);
        let n_t = (range.end - range.start) as usize;
        let (ny, nx) = (l.grid.y.len, l.grid.x.len);
        let unit = self.band_unit();
        if !rows.start.is_multiple_of(unit) || rows.end > ny || rows.is_empty() {
            return Err(ZarrError::Shape(format!(
                "time chunk {index}: band {rows:?} of {ny} rows must be non-empty and start at a multiple of {unit}"
            )));
        }
        let by = rows.len();
        if slab.len() != n_t * by * nx {
            return Err(ZarrError::Shape(format!(
                "time chunk {index}, rows {rows:?}: expected {} values, got {}",
                n_t * by * nx,
                slab.len()
            )));
        }
        let written = store_band(&self.data, index, slab, n_t, rows.start, by, nx).await?;
        let mut coarser: Option<Vec<f32>> = None;
        let (mut y0, mut py, mut px) = (rows.start, by, nx);
        for (grid, array) in &self.levels {
            let level = downsample_mean(coarser.as_deref().unwrap_or(slab), n_t, py, px);
            (y0, py, px) = (y0 / 2, py.div_ceil(2), grid.x.len);
            store_band(array, index, &level, n_t, y0, py, px).await?;
            coarser = Some(level);
        }
        Ok(written)
    }

    async fn member_metadata(&self, path: &str) -> Result<Value, ZarrError> {
        let bytes = self
            .raw
            .get(&Path::from(format!("{path}/zarr.json")))
            .await?
            .bytes()
            .await?;
        serde_json::from_slice(&bytes).map_err(zerr)
    }

    /// Writes the root group with consolidated metadata (and each pyramid level's group with
    /// its own). Call after every chunk is written; the store is complete once this returns.
    ///
    /// # Errors
    /// The store's error.
    pub async fn finish(self) -> Result<(), ZarrError> {
        let var = self.layout.variable.clone();
        let arrays = ["t".to_owned(), "y".to_owned(), "x".to_owned(), var];
        let mut members = Map::new();
        for name in &arrays {
            members.insert(name.clone(), self.member_metadata(name).await?);
        }
        let grids: Vec<Grid> = self.levels.iter().map(|(g, _)| g.clone()).collect();
        for (i, grid) in grids.iter().enumerate() {
            let level = (i + 1).to_string();
            let mut level_members = Map::new();
            for name in &arrays {
                let meta = self.member_metadata(&format!("{level}/{name}")).await?;
                members.insert(format!("{level}/{name}"), meta.clone());
                level_members.insert(name.clone(), meta);
            }
            let attributes = level_attributes(&self.layout, grid, i + 1);
            let group = json!({
                "zarr_format": 3,
                "node_type": "group",
                "attributes": attributes,
                "consolidated_metadata": {
                    "kind": "inline",
                    "must_understand": false,
                    "metadata": level_members,
                }
            });
            self.put_json(&format!("{level}/zarr.json"), &group).await?;
            // In the root's consolidated metadata, nested members appear flattened by path.
            members.insert(
                level,
                json!({"zarr_format": 3, "node_type": "group", "attributes": attributes}),
            );
        }
        let mut attributes = root_attributes(&self.layout);
        if !grids.is_empty() {
            if let Some(Value::Array(conventions)) = attributes.get_mut("zarr_conventions") {
                conventions.push(multiscales_declaration());
            }
            attributes.insert(
                "multiscales".into(),
                multiscales_attribute(&self.layout, &grids),
            );
        }
        let root = json!({
            "zarr_format": 3,
            "node_type": "group",
            "attributes": attributes,
            "consolidated_metadata": {
                "kind": "inline",
                "must_understand": false,
                "metadata": members,
            }
        });
        self.put_json("zarr.json", &root).await
    }

    async fn put_json(&self, path: &str, value: &Value) -> Result<(), ZarrError> {
        let body = serde_json::to_vec_pretty(value).map_err(zerr)?;
        self.raw
            .put(&Path::from(path), PutPayload::from(body))
            .await?;
        Ok(())
    }
}
