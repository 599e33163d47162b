//! The GeoZarr writer: a Zarr v3 group with a `(t, y, x)` data array, CF coordinate arrays,
//! zstd compression, GeoZarr `spatial:`/`proj:` attributes and consolidated metadata inline in
//! the root `zarr.json` (xarray opens a non-consolidated v3 store over HTTP as an empty dataset).
//!
//! The writer is fed one time chunk at a time, so its memory is bounded by one time chunk of the
//! grid, whatever the length of the series.

use std::sync::Arc;

use chrono::NaiveDate;
use climate_domain::chunking::ChunkShape;
use climate_domain::grid::Grid;
use climate_domain::{PeriodRange, PeriodType};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Map, Value, json};
use zarrs::array::codec::bytes_to_bytes::zstd::ZstdCodec;
use zarrs::array::{Array, ArrayBuilder, data_type};
use zarrs::storage::AsyncReadableWritableListableStorageTraits;

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

/// Root attributes describing the grid (GeoZarr + CF).
pub fn root_attributes(layout: &StoreLayout) -> Map<String, Value> {
    let g = &layout.grid;
    let mut a = Map::new();
    a.insert("zarr_conventions".into(), convention_declarations());
    a.insert("spatial:dimensions".into(), json!(["y", "x"]));
    a.insert("spatial:bbox".into(), json!(g.edge_bounds()));
    a.insert("spatial:transform".into(), json!(g.transform()));
    a.insert("spatial:shape".into(), json!(g.shape()));
    a.insert("spatial:registration".into(), json!("pixel"));
    a.insert("proj:code".into(), json!(g.crs));
    a.insert("Conventions".into(), json!("CF-1.10"));
    a.insert("period_type".into(), json!(layout.period_type.as_str()));
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

/// Writes one store under a prefix.
pub struct ZarrWriter {
    raw: Arc<dyn ObjectStore>,
    layout: StoreLayout,
    data: Arc<Array<DynStorage>>,
    coords: Vec<String>,
}

impl std::fmt::Debug for ZarrWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZarrWriter")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

impl ZarrWriter {
    /// Creates the arrays (coordinates with their values, the data array's metadata) under
    /// `prefix` of `store`.
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

        // Coordinate arrays, each in one chunk.
        let (t_units, t_step) = time_encoding(layout.period_type);
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .ok_or_else(|| ZarrError::Shape("epoch".into()))?;
        let t_values: Vec<i64> = layout
            .periods
            .iter()
            .map(|p| (p.start() - epoch).num_seconds() / t_step)
            .collect();
        let geographic = g.crs == "EPSG:4326";
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
        let zstd = || -> Vec<Arc<dyn zarrs::array::BytesToBytesCodecTraits>> {
            vec![Arc::new(ZstdCodec::new(ZSTD_LEVEL, false))]
        };

        let t_attrs = json!({
            "units": t_units, "calendar": "proleptic_gregorian", "standard_name": "time",
            "long_name": "time", "axis": "T", "period_type": layout.period_type.as_str()
        });
        let t = ArrayBuilder::new(vec![nt], vec![nt.max(1)], data_type::int64(), 0i64)
            .dimension_names(Some(["t"]))
            .bytes_to_bytes_codecs(zstd())
            .attributes(t_attrs.as_object().cloned().unwrap_or_default())
            .build_arc(storage.clone(), "/t")
            .map_err(zerr)?;
        t.async_store_metadata().await.map_err(zerr)?;
        t.async_store_chunk(&[0], t_values).await.map_err(zerr)?;

        for (name, axis) in [("y", &g.y), ("x", &g.x)] {
            let n = axis.len as u64;
            let arr = ArrayBuilder::new(vec![n], vec![n.max(1)], data_type::float64(), f64::NAN)
                .dimension_names(Some([name]))
                .bytes_to_bytes_codecs(zstd())
                .attributes(coord_attrs(name))
                .build_arc(storage.clone(), &format!("/{name}"))
                .map_err(zerr)?;
            arr.async_store_metadata().await.map_err(zerr)?;
            arr.async_store_chunk(&[0], axis.centres())
                .await
                .map_err(zerr)?;
        }

        let data_attrs = json!({
            "units": layout.units,
            "long_name": layout.long_name,
            "period_type": layout.period_type.as_str(),
        });
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
            .attributes(data_attrs.as_object().cloned().unwrap_or_default());
        if layout.shard.is_some() {
            builder.subchunk_shape(inner);
        }
        let data = builder
            .build_arc(storage.clone(), &format!("/{}", layout.variable))
            .map_err(zerr)?;
        data.async_store_metadata().await.map_err(zerr)?;

        Ok(Self {
            raw,
            coords: vec!["t".into(), "y".into(), "x".into()],
            layout,
            data,
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
        let data = Array::async_open(storage, &format!("/{}", layout.variable))
            .await
            .map_err(zerr)?;
        let expected = vec![
            layout.periods.len(),
            layout.grid.y.len as u64,
            layout.grid.x.len as u64,
        ];
        if data.shape() != expected.as_slice() {
            return Err(ZarrError::Shape(format!(
                "store at {prefix} has shape {:?}, the layout says {expected:?}",
                data.shape()
            )));
        }
        Ok(Self {
            raw,
            coords: vec!["t".into(), "y".into(), "x".into()],
            layout,
            data: Arc::new(data),
        })
    }

    /// The layout being written.
    pub fn layout(&self) -> &StoreLayout {
        &self.layout
    }

    /// Writes time chunk `index`: `slab` holds its periods' fields, `[n_t, ny, nx]` row-major
    /// (`n_t` = periods in that chunk). Returns the number of chunk objects stored.
    ///
    /// # Errors
    /// [`ZarrError::Shape`] for a slab of the wrong size, or the store's error.
    pub async fn write_time_chunk(&self, index: u64, slab: &[f32]) -> Result<u64, ZarrError> {
        let l = &self.layout;
        let range = l.time_chunk_range(index);
        let n_t = (range.end - range.start) as usize;
        let (ny, nx) = (l.grid.y.len, l.grid.x.len);
        if slab.len() != n_t * ny * nx {
            return Err(ZarrError::Shape(format!(
                "time chunk {index}: expected {} values, got {}",
                n_t * ny * nx,
                slab.len()
            )));
        }
        let shape = self.data.chunk_shape(&[index, 0, 0]).map_err(zerr)?;
        let (ct, cy, cx) = (
            shape[0].get() as usize,
            shape[1].get() as usize,
            shape[2].get() as usize,
        );
        let mut jobs = Vec::new();
        for yi in 0..ny.div_ceil(cy) {
            for xi in 0..nx.div_ceil(cx) {
                // Full-size chunk buffers, padded with the fill value at the array's edges.
                let mut buf = vec![f32::NAN; ct * cy * cx];
                let mut any = false;
                for t in 0..n_t {
                    for r in 0..cy.min(ny - yi * cy) {
                        let src = t * ny * nx + (yi * cy + r) * nx + xi * cx;
                        let w = cx.min(nx - xi * cx);
                        let dst = t * cy * cx + r * cx;
                        buf[dst..dst + w].copy_from_slice(&slab[src..src + w]);
                        any |= slab[src..src + w].iter().any(|v| !v.is_nan());
                    }
                }
                jobs.push(([index, yi as u64, xi as u64], buf, any));
            }
        }
        let written = futures::stream::iter(jobs)
            .map(|(idx, buf, any)| {
                let data = self.data.clone();
                async move {
                    data.async_store_chunk(&idx, buf).await.map_err(zerr)?;
                    Ok::<u64, ZarrError>(u64::from(any))
                }
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .try_fold(0, |acc, n| async move { Ok(acc + n) })
            .await?;
        Ok(written)
    }

    /// Writes the root group with consolidated metadata. Call after every chunk is written;
    /// the store is complete once this returns.
    ///
    /// # Errors
    /// The store's error.
    pub async fn finish(self) -> Result<(), ZarrError> {
        let mut members = Map::new();
        let mut names = self.coords.clone();
        names.push(self.layout.variable.clone());
        for name in names {
            let bytes = self
                .raw
                .get(&Path::from(format!("{name}/zarr.json")))
                .await?
                .bytes()
                .await?;
            let meta: Value = serde_json::from_slice(&bytes).map_err(zerr)?;
            members.insert(name, meta);
        }
        let root = json!({
            "zarr_format": 3,
            "node_type": "group",
            "attributes": root_attributes(&self.layout),
            "consolidated_metadata": {
                "kind": "inline",
                "must_understand": false,
                "metadata": members,
            }
        });
        let body = serde_json::to_vec_pretty(&root).map_err(zerr)?;
        self.raw
            .put(&Path::from("zarr.json"), PutPayload::from(body))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use climate_domain::grid::Axis;
    use climate_domain::{Period, PeriodType};
    use object_store::memory::InMemory;

    use super::*;

    fn layout() -> StoreLayout {
        let start = Period::parse(PeriodType::Daily, "2024-02-28").expect("period");
        let end = Period::parse(PeriodType::Daily, "2024-03-01").expect("period");
        StoreLayout {
            variable: "v".into(),
            units: "mm".into(),
            long_name: "test".into(),
            period_type: PeriodType::Daily,
            periods: PeriodRange::new(start, end).expect("range"),
            grid: Grid {
                crs: "EPSG:4326".into(),
                x: Axis {
                    first: 0.5,
                    step: 1.0,
                    len: 5,
                },
                y: Axis {
                    first: 2.5,
                    step: -1.0,
                    len: 3,
                },
            },
            // Chunks that do not divide the array: every edge needs padding.
            chunks: ChunkShape { t: 2, y: 2, x: 2 },
            shard: None,
            attributes: Map::new(),
        }
    }

    #[tokio::test]
    async fn edge_chunks_round_trip_and_metadata_is_consolidated() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let l = layout();
        let (nt, ny, nx) = (3usize, 3usize, 5usize);
        let value = |t: usize, y: usize, x: usize| (100 * t + 10 * y + x) as f32;
        let writer = ZarrWriter::create(store.clone(), "ds/a1", l.clone())
            .await
            .expect("create");
        assert_eq!(l.time_chunks(), 2);
        for ci in 0..2 {
            let r = l.time_chunk_range(ci);
            let mut slab = Vec::new();
            for t in r.start as usize..r.end as usize {
                for y in 0..ny {
                    for x in 0..nx {
                        // One missing cell, to check NaN survives.
                        slab.push(if (t, y, x) == (2, 2, 4) {
                            f32::NAN
                        } else {
                            value(t, y, x)
                        });
                    }
                }
            }
            writer.write_time_chunk(ci, &slab).await.expect("write");
        }
        assert!(
            writer.write_time_chunk(0, &[1.0]).await.is_err(),
            "a wrong slab size is refused"
        );
        writer.finish().await.expect("finish");

        // Read back independently through zarrs.
        let prefixed: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(store.clone(), "ds/a1"));
        let storage: Arc<DynStorage> =
            Arc::new(zarrs_object_store::AsyncObjectStore::new(prefixed.clone()));
        let arr = Array::async_open(storage.clone(), "/v")
            .await
            .expect("open");
        let data: Vec<f32> = arr
            .async_retrieve_array_subset::<Vec<f32>>(&arr.subset_all())
            .await
            .expect("read");
        assert_eq!(data.len(), nt * ny * nx);
        for t in 0..nt {
            for y in 0..ny {
                for x in 0..nx {
                    let got = data[(t * ny + y) * nx + x];
                    if (t, y, x) == (2, 2, 4) {
                        assert!(got.is_nan());
                    } else {
                        assert_eq!(got, value(t, y, x), "({t}, {y}, {x})");
                    }
                }
            }
        }
        let times = Array::async_open(storage, "/t").await.expect("t");
        let t: Vec<i64> = times
            .async_retrieve_array_subset::<Vec<i64>>(&times.subset_all())
            .await
            .expect("t values");
        // 2024-02-28, 02-29 (leap day), 03-01 in days since 1970-01-01.
        assert_eq!(t, vec![19781, 19782, 19783]);

        let root: Value = serde_json::from_slice(
            &prefixed
                .get(&Path::from("zarr.json"))
                .await
                .expect("root")
                .bytes()
                .await
                .expect("bytes"),
        )
        .expect("json");
        let members = root["consolidated_metadata"]["metadata"]
            .as_object()
            .expect("consolidated");
        let mut names: Vec<&String> = members.keys().collect();
        names.sort();
        assert_eq!(names, ["t", "v", "x", "y"]);
        assert_eq!(members["v"]["shape"], json!([3, 3, 5]));
        assert_eq!(
            root["attributes"]["spatial:bbox"],
            json!([0.0, 0.0, 5.0, 3.0])
        );
        assert_eq!(
            root["attributes"]["spatial:transform"],
            json!([1.0, 0.0, 0.0, 0.0, -1.0, 3.0])
        );
    }
}
