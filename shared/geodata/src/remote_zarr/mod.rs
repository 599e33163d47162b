//! Reading ERA5-Land from a remote Zarr store over HTTPS (the `era5_land_zarr` provider's source), as the DestinE Earth
//! Data Hub publishes it — the legacy Zarr v2 store (consolidated `.zmetadata`) and the current
//! v3 stores (`zarr.json`), found by asking for `zarr.json` first.
//!
//! Only what the extent and the requested hours need is fetched: the metadata documents and the
//! three coordinate arrays when a scope is located, the data chunks intersecting
//! `(hours, rows, columns)` when a field is first read ([`RemoteZarrSource`]). Each object
//! goes through the provider's [`Downloader`](crate::http::Downloader) (retries, `Retry-After`,
//! the download cache), and is decoded by zarrs from an in-memory store holding just those
//! objects; a chunk the upstream does not have (404) reads as the fill value, as Zarr says.
//!
//! The store's longitudes run 0..360: [`LonMap`] rolls them onto −180..180, so an extent that
//! straddles the Greenwich meridian reads columns from both ends of the source grid.
//!
//! Credentials: HTTP Basic, from the provider's `api_key` (as the token of user `edh`) or the
//! host's entry in a netrc file (`providers.era5_land_zarr.netrc`, `$NETRC`, `~/.netrc`).

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDateTime;
use climate_domain::grid::{Axis, Grid};
use serde_json::Value;
use zarrs::array::{Array, ArraySubset};
use zarrs::storage::store::MemoryStore;
use zarrs::storage::{StoreKey, WritableStorageTraits};

use crate::cftime::CfTimeUnits;
use crate::http::{Credentials, Downloader};
use crate::raster::{RasterError, RasterSource};
use crate::upstream::{ProviderError, Retry};

const NAME: &str = "era5_land_zarr";

/// Real upstream root (DestinE Earth Data Hub).
pub const EDH_BASE_URL: &str = "https://data.earthdatahub.destine.eu/era5";

/// The current hourly ERA5-Land store (Zarr v3). The legacy v2 store,
/// `reanalysis-era5-land-no-antartica-v0.zarr`, stopped advancing in May 2026.
pub const EDH_STORE: &str = "era5-land-v0.zarr";

/// Objects fetched at once (the downloader's per-provider limit still applies).
const FETCH_CONCURRENCY: usize = 8;

// ---------------------------------------------------------------------------------------------
// Longitudes

/// How the columns of a source longitude axis map onto an ascending −180..180 axis.
#[derive(Debug, Clone, PartialEq)]
pub struct LonMap {
    /// The normalised axis.
    pub axis: Axis,
    /// Normalised column `k` is source column `(k + shift) % len`.
    pub shift: usize,
}

/// Why a longitude axis cannot be mapped onto −180..180.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LonMapError {
    /// The longitudes descend.
    #[error("longitudes must ascend")]
    Descending,
    /// A regional grid across 180°.
    #[error(
        "longitudes run from {lo} to {hi}, across 180° without covering the globe; such grids are not supported"
    )]
    Straddles {
        /// First longitude.
        lo: f64,
        /// Last longitude.
        hi: f64,
    },
}

impl LonMap {
    /// The map of an ascending source axis: unchanged when it lies within −180..180, shifted
    /// by −360° when it lies entirely east of 180°, rolled when it covers the globe across 180°
    /// (0..360 grids).
    ///
    /// # Errors
    /// [`LonMapError`] for descending axes and for regional grids that straddle 180°.
    pub fn new(source: &Axis) -> Result<Self, LonMapError> {
        if source.step <= 0.0 {
            return Err(LonMapError::Descending);
        }
        let n = source.len;
        let (lo, hi) = (source.centre(0), source.centre(n.saturating_sub(1)));
        let eps = source.step * 1e-6;
        if hi <= 180.0 + eps {
            return Ok(Self {
                axis: *source,
                shift: 0,
            });
        }
        if lo >= 180.0 - eps {
            return Ok(Self {
                axis: Axis {
                    first: source.first - 360.0,
                    ..*source
                },
                shift: 0,
            });
        }
        let global = (source.step * n as f64 - 360.0).abs() < source.step / 2.0;
        if !global {
            return Err(LonMapError::Straddles { lo, hi });
        }
        let shift = (0..n)
            .find(|&j| source.centre(j) >= 180.0 - eps)
            .unwrap_or(0);
        Ok(Self {
            axis: Axis {
                first: source.centre(shift) - 360.0,
                step: source.step,
                len: n,
            },
            shift,
        })
    }

    /// The source column ranges, in order, holding normalised columns `cols`: one range, or two
    /// when `cols` runs past the end of the source grid and continues at its start.
    pub fn source_ranges(&self, cols: Range<usize>) -> Vec<Range<usize>> {
        let n = self.axis.len;
        let start = (cols.start + self.shift) % n.max(1);
        let len = cols.len();
        if start + len <= n {
            std::iter::once(start..start + len).collect()
        } else {
            vec![start..n, 0..start + len - n]
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The extent's window, read on demand

/// The extent's window of a remote array, read one time chunk at a time when a field of it is
/// first asked for: locating a scope costs only metadata and coordinates, and decoding a chunk
/// (often thousands of hours) happens once for all the hours it holds.
pub struct RemoteZarrSource {
    label: String,
    /// The window's grid, longitudes normalised.
    grid: Grid,
    /// The selected instants; `times[i]` is index `t0 + i` of the store's time axis.
    times: Vec<NaiveDateTime>,
    t0: usize,
    /// Hours per chunk of the store's time axis.
    chunk_t: usize,
    /// Source rows of the window, and its source column ranges (stitched side by side).
    rows: Range<usize>,
    col_ranges: Vec<Range<usize>>,
    missing: Vec<f64>,
    store: Arc<RemoteStore>,
    array: Arc<Array<MemoryStore>>,
    cache_tag: String,
    handle: tokio::runtime::Handle,
    /// The decoded window of the selected hours of one time chunk: (first hour, values
    /// `[hours, ny, nx]`).
    decoded: std::sync::Mutex<Option<(usize, Arc<Vec<f32>>)>>,
}

impl std::fmt::Debug for RemoteZarrSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteZarrSource")
            .field("label", &self.label)
            .field("grid", &self.grid)
            .field("hours", &self.times.len())
            .finish_non_exhaustive()
    }
}

impl RemoteZarrSource {
    fn error(&self, message: impl Into<String>, transient: bool) -> RasterError {
        let mut e = RasterError::new(Path::new(&self.label), message);
        e.transient = transient;
        e
    }

    /// The decoded block of selected hours holding time index `t` (relative to `t0`).
    fn block(&self, t: usize) -> Result<(usize, Arc<Vec<f32>>), RasterError> {
        let mut cached = self
            .decoded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let absolute = self.t0 + t;
        let chunk = absolute / self.chunk_t;
        let start = (chunk * self.chunk_t).max(self.t0);
        let end = ((chunk + 1) * self.chunk_t).min(self.t0 + self.times.len());
        if let Some((s, data)) = cached.as_ref()
            && *s == start
        {
            return Ok((start, data.clone()));
        }
        let subsets: Vec<ArraySubset> = self
            .col_ranges
            .iter()
            .map(|c| {
                ArraySubset::new_with_ranges(&[
                    start as u64..end as u64,
                    self.rows.start as u64..self.rows.end as u64,
                    c.start as u64..c.end as u64,
                ])
            })
            .collect();
        for subset in &subsets {
            self.handle
                .block_on(
                    self.store
                        .fetch_chunks(&self.array, subset, Some(&self.cache_tag)),
                )
                .map_err(|e| self.error(e.message, e.retry == Retry::Transient))?;
        }
        let parts: Vec<(Vec<f32>, usize)> = subsets
            .iter()
            .zip(&self.col_ranges)
            .map(|(subset, c)| read_f32(&self.array, subset, &self.missing).map(|v| (v, c.len())))
            .collect::<Result<_, _>>()
            .map_err(|e| self.error(e, false))?;
        // Stitch the column ranges side by side.
        let ny = self.rows.len();
        let mut out = Vec::with_capacity((end - start) * ny * self.grid.x.len);
        for row in 0..(end - start) * ny {
            for (values, w) in &parts {
                out.extend_from_slice(&values[row * w..(row + 1) * w]);
            }
        }
        let data = Arc::new(out);
        *cached = Some((start, data.clone()));
        Ok((start, data))
    }
}

impl RasterSource for RemoteZarrSource {
    fn describe(&self) -> String {
        self.label.clone()
    }
    fn grid(&self) -> &Grid {
        &self.grid
    }
    fn times(&self) -> &[NaiveDateTime] {
        &self.times
    }
    fn read_window(
        &self,
        t: usize,
        rows: Range<usize>,
        cols: Range<usize>,
    ) -> Result<Vec<f32>, RasterError> {
        let (ny, nx) = (self.grid.y.len, self.grid.x.len);
        if t >= self.times.len() || rows.end > ny || cols.end > nx {
            return Err(self.error(
                format!(
                    "window t={t} rows={rows:?} cols={cols:?} is outside [{}, {ny}, {nx}]",
                    self.times.len()
                ),
                false,
            ));
        }
        let (start, data) = self.block(t)?;
        let local = self.t0 + t - start;
        let mut out = Vec::with_capacity(rows.len() * cols.len());
        for r in rows {
            let at = (local * ny + r) * nx;
            out.extend_from_slice(&data[at + cols.start..at + cols.end]);
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// The remote store

/// What the metadata says of one array.
#[derive(Debug, Clone)]
struct ArrayInfo {
    dims: Vec<String>,
    attrs: serde_json::Map<String, Value>,
}

/// A remote store read through the downloader into an in-memory store zarrs decodes from.
struct RemoteStore {
    dl: Downloader,
    url: String,
    creds: Option<Credentials>,
    mem: Arc<MemoryStore>,
    v3: bool,
}

fn perm(message: impl Into<String>) -> ProviderError {
    ProviderError::permanent(NAME, message)
}

impl RemoteStore {
    fn shown(&self) -> String {
        crate::http::redact_url(&self.url)
    }

    /// An object of the store; cached under `cache_tag` when given (see
    /// [`Downloader::fetch_object`]).
    async fn get_tagged(
        &self,
        key: &str,
        cache_tag: Option<&str>,
    ) -> Result<Option<bytes::Bytes>, ProviderError> {
        self.dl
            .fetch_object(
                NAME,
                &format!("{}/{key}", self.url),
                self.creds.as_ref(),
                cache_tag,
            )
            .await
    }

    /// A metadata document or coordinate chunk: these change in place as the store advances,
    /// so they always come from upstream.
    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, ProviderError> {
        self.get_tagged(key, None).await
    }

    fn put(&self, key: &str, bytes: bytes::Bytes) -> Result<(), ProviderError> {
        let k = StoreKey::new(key).map_err(|e| perm(format!("bad store key {key}: {e}")))?;
        self.mem
            .set(&k, bytes)
            .map_err(|e| perm(format!("in-memory store: {e}")))
    }

    fn json(bytes: &[u8], what: &str) -> Result<Value, ProviderError> {
        serde_json::from_slice(bytes).map_err(|e| perm(format!("{what} is not valid JSON: {e}")))
    }

    /// Finds the format and loads the metadata: a v3 root `zarr.json` (with its consolidated
    /// members), else the v2 `.zmetadata`.
    async fn open(
        dl: Downloader,
        url: String,
        creds: Option<Credentials>,
    ) -> Result<Self, ProviderError> {
        let mut store = Self {
            dl,
            url,
            creds,
            mem: Arc::new(MemoryStore::new()),
            v3: true,
        };
        if let Some(root) = store.get("zarr.json").await? {
            let doc = Self::json(&root, &format!("{}/zarr.json", store.shown()))?;
            if let Some(members) = doc["consolidated_metadata"]["metadata"].as_object() {
                for (name, meta) in members {
                    store.put(
                        &format!("{name}/zarr.json"),
                        bytes::Bytes::from(meta.to_string()),
                    )?;
                }
            }
            store.put("zarr.json", root)?;
            return Ok(store);
        }
        let Some(zmeta) = store.get(".zmetadata").await? else {
            return Err(perm(format!(
                "{}: neither zarr.json (Zarr v3) nor .zmetadata (consolidated Zarr v2) exists; check params base_url and store",
                store.shown()
            )));
        };
        store.v3 = false;
        let doc = Self::json(&zmeta, &format!("{}/.zmetadata", store.shown()))?;
        let members = doc["metadata"].as_object().ok_or_else(|| {
            perm(format!(
                "{}/.zmetadata holds no 'metadata' object",
                store.shown()
            ))
        })?;
        for (key, meta) in members {
            store.put(key, bytes::Bytes::from(meta.to_string()))?;
        }
        Ok(store)
    }

    /// The metadata document of array `name`, fetched when the consolidated metadata lacks it.
    async fn info(&self, name: &str) -> Result<ArrayInfo, ProviderError> {
        use zarrs::storage::ReadableStorageTraits;
        let read = |key: &str| -> Option<Value> {
            let k = StoreKey::new(key).ok()?;
            let b = self.mem.get(&k).ok()??;
            serde_json::from_slice(&b).ok()
        };
        if self.v3 {
            let key = format!("{name}/zarr.json");
            if read(&key).is_none() {
                let Some(b) = self.get(&key).await? else {
                    return Err(perm(format!(
                        "{}: the store has no array '{name}'",
                        self.shown()
                    )));
                };
                self.put(&key, b)?;
            }
            let doc = read(&key).unwrap_or(Value::Null);
            let dims = doc["dimension_names"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .map(|v| v.as_str().unwrap_or_default().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            let attrs = doc["attributes"].as_object().cloned().unwrap_or_default();
            Ok(ArrayInfo { dims, attrs })
        } else {
            if read(&format!("{name}/.zarray")).is_none() {
                return Err(perm(format!(
                    "{}: the store has no array '{name}'",
                    self.shown()
                )));
            }
            let attrs = read(&format!("{name}/.zattrs"))
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default();
            let dims = attrs
                .get("_ARRAY_DIMENSIONS")
                .and_then(Value::as_array)
                .map(|d| {
                    d.iter()
                        .map(|v| v.as_str().unwrap_or_default().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            Ok(ArrayInfo { dims, attrs })
        }
    }

    fn holds(&self, key: &str) -> bool {
        use zarrs::storage::ReadableStorageTraits;
        StoreKey::new(key)
            .ok()
            .and_then(|k| self.mem.get(&k).ok().flatten())
            .is_some()
    }

    fn array(&self, name: &str) -> Result<Array<MemoryStore>, ProviderError> {
        Array::open(self.mem.clone(), &format!("/{name}"))
            .map_err(|e| perm(format!("{}: array '{name}': {e}", self.shown())))
    }

    /// Fetches the chunks of `array` intersecting `subset` into the in-memory store, through
    /// the download cache under `cache_tag` when given (chunks already there are kept).
    async fn fetch_chunks(
        &self,
        array: &Array<MemoryStore>,
        subset: &ArraySubset,
        cache_tag: Option<&str>,
    ) -> Result<usize, ProviderError> {
        let chunks = array
            .chunks_in_array_subset(subset)
            .map_err(|e| perm(e.to_string()))?
            .ok_or_else(|| perm("cannot map the window onto the store's chunks"))?;
        let keys: Vec<String> = chunks
            .indices()
            .into_iter()
            .map(|idx| array.chunk_key(&idx).to_string())
            .filter(|key| !self.holds(key))
            .collect();
        let fetched = futures::stream::iter(keys.into_iter().map(|key| async move {
            Ok::<_, ProviderError>((self.get_tagged(&key, cache_tag).await?, key))
        }))
        .buffer_unordered(FETCH_CONCURRENCY);
        let mut fetched = std::pin::pin!(fetched);
        let mut n = 0;
        while let Some(r) = futures::StreamExt::next(&mut fetched).await {
            // A missing chunk is all fill value: zarrs reads an absent key that way.
            if let (Some(bytes), key) = r? {
                self.put(&key, bytes)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// All values of a 1-D coordinate array, as f64.
    async fn coordinate(&self, name: &str) -> Result<Vec<f64>, ProviderError> {
        let array = self.array(name)?;
        let all = array.subset_all();
        self.fetch_chunks(&array, &all, None).await?;
        read_f64(&array, &all).map_err(|e| perm(format!("{}: '{name}': {e}", self.shown())))
    }
}

use futures::StreamExt as _;

#[cfg(test)]
mod tests;

/// Reads a subset as f64 whatever the stored numeric type.
fn read_f64(array: &Array<MemoryStore>, subset: &ArraySubset) -> Result<Vec<f64>, String> {
    if let Ok(v) = array.retrieve_array_subset::<Vec<f64>>(subset) {
        return Ok(v);
    }
    if let Ok(v) = array.retrieve_array_subset::<Vec<f32>>(subset) {
        return Ok(v.into_iter().map(f64::from).collect());
    }
    if let Ok(v) = array.retrieve_array_subset::<Vec<i64>>(subset) {
        return Ok(v.into_iter().map(|x| x as f64).collect());
    }
    array
        .retrieve_array_subset::<Vec<i32>>(subset)
        .map(|v| v.into_iter().map(f64::from).collect())
        .map_err(|e| format!("unsupported data type: {e}"))
}

/// Reads a data subset as f32 (f32 or f64 stores), with `missing` values turned into NaN.
/// Values are compared with `missing` in the store's own type, before any conversion: an
/// f64 fill value may not survive the cast to f32, and an f32 one may not survive JSON.
fn read_f32(
    array: &Array<MemoryStore>,
    subset: &ArraySubset,
    missing: &[f64],
) -> Result<Vec<f32>, String> {
    if let Ok(mut v) = array.retrieve_array_subset::<Vec<f32>>(subset) {
        let missing: Vec<f32> = missing.iter().map(|m| *m as f32).collect();
        for x in &mut v {
            if missing.contains(x) {
                *x = f32::NAN;
            }
        }
        return Ok(v);
    }
    let v = array
        .retrieve_array_subset::<Vec<f64>>(subset)
        .map_err(|e| format!("data must be float32 or float64: {e}"))?;
    Ok(v.into_iter()
        .map(|x| {
            if missing.contains(&x) {
                f32::NAN
            } else {
                x as f32
            }
        })
        .collect())
}

/// A numeric attribute: a JSON number, or (as xarray writes `_FillValue` into Zarr v3 stores)
/// the base64 of its little-endian float32 or float64 bytes.
fn attribute_number(v: &Value) -> Option<f64> {
    use base64::Engine as _;
    if let Some(x) = v.as_f64() {
        return Some(x);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str()?)
        .ok()?;
    match bytes.len() {
        4 => Some(f64::from(f32::from_le_bytes(bytes.try_into().ok()?))),
        8 => Some(f64::from_le_bytes(bytes.try_into().ok()?)),
        _ => None,
    }
}

/// The array's own fill value when it is a number (a chunk the store lacks reads as it), as
/// f64; NaN and non-float types give `None`.
fn array_fill_value(array: &Array<MemoryStore>) -> Option<f64> {
    let bytes = array.fill_value().as_ne_bytes();
    let v = match bytes.len() {
        4 => f64::from(f32::from_ne_bytes(bytes.try_into().ok()?)),
        8 => f64::from_ne_bytes(bytes.try_into().ok()?),
        _ => return None,
    };
    v.is_finite().then_some(v)
}

// ---------------------------------------------------------------------------------------------
// Opening a cube

/// What to open of a remote ERA5-Land store.
#[derive(Debug, Clone, Copy)]
pub struct CubeRequest<'a> {
    /// The data variable.
    pub variable: &'a str,
    /// First instant wanted.
    pub from: NaiveDateTime,
    /// Last instant wanted (`None`: up to the store's last).
    pub to: Option<NaiveDateTime>,
    /// How the wanted range is named in errors (`from 2024-01-01T00 to 2024-01-02T23`).
    pub wanted: &'a str,
    /// The extent's bounding box (CRS84).
    pub bbox: &'a climate_domain::extent::Bbox,
    /// The extent's id (in errors).
    pub extent_id: &'a str,
}

/// Opens `cube` of the remote Zarr store at `url` as a source whose time steps are the wanted
/// instants; only metadata and coordinates are fetched now, data chunks when first read.
///
/// # Errors
/// Permanent when the store is not an ERA5-Land-shaped cube (dimensions, CF time, grid
/// orientation) or holds nothing of the request; download errors as classified.
pub async fn open_cube(
    dl: Downloader,
    url: &str,
    cube: &CubeRequest<'_>,
) -> Result<Arc<dyn RasterSource>, ProviderError> {
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let creds = dl.credentials(&host, "edh").map_err(perm)?;
    let store = RemoteStore::open(dl, url.to_owned(), creds).await?;
    let shown = store.shown();

    let info = store.info(cube.variable).await?;
    let [t_name, y_name, x_name] = <[String; 3]>::try_from(info.dims.clone()).map_err(|_| {
        perm(format!(
            "{shown}: '{}' has dimensions {:?}; expected (time, latitude, longitude)",
            cube.variable, info.dims
        ))
    })?;
    for name in [&t_name, &y_name, &x_name] {
        store.info(name).await?;
    }

    // Time: CF units on the coordinate array.
    let t_info = store.info(&t_name).await?;
    let units = t_info
        .attrs
        .get("units")
        .and_then(Value::as_str)
        .ok_or_else(|| perm(format!("{shown}: '{t_name}' has no CF units")))?;
    let cf = CfTimeUnits::parse(units).map_err(|e| perm(format!("{shown}: {e}")))?;
    CfTimeUnits::check_calendar(t_info.attrs.get("calendar").and_then(Value::as_str))
        .map_err(|e| perm(format!("{shown}: {e}")))?;
    let raw_t = store.coordinate(&t_name).await?;
    let instants: Vec<NaiveDateTime> = raw_t
        .iter()
        .map(|v| cf.instant(*v))
        .collect::<Option<_>>()
        .ok_or_else(|| perm(format!("{shown}: '{t_name}' holds undecodable times")))?;
    let wanted: Vec<usize> = (0..instants.len())
        .filter(|&i| instants[i] >= cube.from && cube.to.is_none_or(|e| instants[i] <= e))
        .collect();
    let (Some(&t0), Some(&t1)) = (wanted.first(), wanted.last()) else {
        return Err(perm(format!(
            "{shown}: no '{}' data {}: the store covers {} to {}",
            cube.variable,
            cube.wanted,
            instants
                .first()
                .map(ToString::to_string)
                .unwrap_or_default(),
            instants.last().map(ToString::to_string).unwrap_or_default(),
        )));
    };

    // Grid: latitude north to south, longitude rolled onto −180..180.
    let lat = store.coordinate(&y_name).await?;
    let lon = store.coordinate(&x_name).await?;
    let y = Axis::from_centres("latitude", &lat).map_err(|e| perm(format!("{shown}: {e}")))?;
    if y.step >= 0.0 {
        return Err(perm(format!(
            "{shown}: latitudes ascend; this provider reads north-to-south grids"
        )));
    }
    let x = Axis::from_centres("longitude", &lon).map_err(|e| perm(format!("{shown}: {e}")))?;
    let lon_map = LonMap::new(&x).map_err(|e| perm(format!("{shown}: {e}")))?;
    let b = cube.bbox;
    let (Some(rows), Some(cols)) = (
        y.clip(b.south(), b.north()),
        lon_map.axis.clip(b.west(), b.east()),
    ) else {
        return Err(perm(format!(
            "{shown}: extent {} lies outside the store's grid",
            cube.extent_id
        )));
    };

    // Data chunks are cached under the length of the time axis: the store only grows at
    // its end (and may rewrite its last weeks), so while the length is unchanged every chunk
    // is too, and a retry, a later segment or a rebuild reads them from the cache; once the
    // store has advanced they are fetched afresh once.
    let array = Arc::new(store.array(cube.variable)?);
    let chunk_t = array
        .chunk_shape(&[0, 0, 0])
        .map_err(|e| perm(format!("{shown}: {e}")))?[0]
        .get() as usize;
    // CF's markers and the array's own fill value (which absent chunks read as) are all
    // missing data.
    let missing: Vec<f64> = ["_FillValue", "missing_value"]
        .iter()
        .filter_map(|k| info.attrs.get(*k).and_then(attribute_number))
        .chain(array_fill_value(&array))
        .filter(|v| v.is_finite())
        .collect();
    let times: Vec<NaiveDateTime> = instants[t0..=t1].to_vec();
    let source: Arc<dyn RasterSource> = Arc::new(RemoteZarrSource {
        label: format!("{shown} ({})", cube.variable),
        grid: Grid {
            crs: climate_domain::Crs::WGS84,
            x: lon_map.axis.slice(cols.clone()),
            y: y.slice(rows.clone()),
        },
        times,
        t0,
        chunk_t: chunk_t.max(1),
        col_ranges: lon_map.source_ranges(cols),
        rows,
        missing,
        cache_tag: format!("t{}", instants.len()),
        store: Arc::new(store),
        array,
        handle: tokio::runtime::Handle::current(),
        decoded: std::sync::Mutex::new(None),
    });
    Ok(source)
}
