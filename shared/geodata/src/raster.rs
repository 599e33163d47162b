//! Decoding of source files into normalised 2-D fields.
//!
//! A [`RasterSource`] is one file with zero or more time steps on one regular grid. Its grid is
//! normalised (x = longitude in −180..180 ascending, y = latitude descending, i.e. north-up), and
//! [`RasterSource::read_window`] returns values in that orientation with missing values as NaN,
//! whatever the file's own layout.

use std::fs::File;
use std::io::BufReader;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::NaiveDateTime;
use climate_domain::grid::{Axis, Grid};

use crate::cftime::CfTimeUnits;

/// Why a file cannot be decoded.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RasterError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// Whether reading again may succeed (a remote read that ran out of retries).
    pub transient: bool,
}

impl RasterError {
    pub(crate) fn new(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.display().to_string(),
            message: message.into(),
            transient: false,
        }
    }
}

/// The `io::ErrorKind` a [`RangeFetch`] uses for failures worth retrying later.
pub const TRANSIENT_IO: std::io::ErrorKind = std::io::ErrorKind::TimedOut;

/// One decoded source file.
pub trait RasterSource: Send + Sync + std::fmt::Debug {
    /// Where the data came from (a path).
    fn describe(&self) -> String;
    /// Normalised grid.
    fn grid(&self) -> &Grid;
    /// Instants of the time steps; empty when the file has no time axis (one field).
    fn times(&self) -> &[NaiveDateTime];
    /// Reads `rows × cols` of time step `t` (0 for files without a time axis), row-major,
    /// north to south, NaN for missing values.
    ///
    /// # Errors
    /// [`RasterError`] when the file cannot be read.
    fn read_window(
        &self,
        t: usize,
        rows: Range<usize>,
        cols: Range<usize>,
    ) -> Result<Vec<f32>, RasterError>;
}

/// Opens a file by extension: `.nc`/`.nc4`/`.netcdf` as NetCDF, `.tif`/`.tiff`/`.cog` as GeoTIFF.
///
/// # Errors
/// [`RasterError`] when the format is unknown or the file cannot be decoded.
pub fn open(path: &Path, variable: Option<&str>) -> Result<Box<dyn RasterSource>, RasterError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "nc" | "nc4" | "netcdf" | "cdf" => Ok(Box::new(NetcdfSource::open(path, variable)?)),
        "tif" | "tiff" | "cog" | "gtiff" => Ok(Box::new(GeoTiffSource::open(path)?)),
        _ => Err(RasterError::new(
            path,
            "unknown file type: expected NetCDF (.nc) or GeoTIFF (.tif, .tiff, .cog)",
        )),
    }
}

/// Normalises a longitude axis to −180..180. Axes entirely east of 180° are shifted; axes that
/// cross the antimeridian are rejected for now (they need a column roll).
fn normalise_lon(path: &Path, axis: Axis) -> Result<Axis, RasterError> {
    let lo = axis.centre(0).min(axis.centre(axis.len - 1));
    let hi = axis.centre(0).max(axis.centre(axis.len - 1));
    if hi <= 180.0 {
        Ok(axis)
    } else if lo >= 180.0 {
        Ok(Axis {
            first: axis.first - 360.0,
            ..axis
        })
    } else {
        Err(RasterError::new(
            path,
            "longitudes cross the antimeridian (0..360 grid); such sources are not supported yet",
        ))
    }
}

fn axis_or_err(path: &Path, name: &str, centres: &[f64]) -> Result<Axis, RasterError> {
    let mut axis =
        Axis::from_centres(name, centres).map_err(|e| RasterError::new(path, e.to_string()))?;
    if axis.len == 1 {
        // One pixel: its size cannot be measured; assume a square 0-size-safe step of 1e-6.
        axis.step = if name == "y" { -1e-6 } else { 1e-6 };
    }
    Ok(axis)
}

// ---------------------------------------------------------------------------------------------
// NetCDF

const TIME_NAMES: [&str; 3] = ["time", "valid_time", "t"];
const Y_NAMES: [&str; 3] = ["latitude", "lat", "y"];
const X_NAMES: [&str; 3] = ["longitude", "lon", "x"];

/// A NetCDF file with a `(time, lat, lon)` or `(lat, lon)` variable.
#[derive(Debug)]
pub struct NetcdfSource {
    path: PathBuf,
    variable: String,
    grid: Grid,
    times: Vec<NaiveDateTime>,
    /// Source rows run south to north; reads are flipped.
    y_ascending: bool,
    /// Source dimension order is (time?, y, x); true when a time dimension leads.
    has_time_dim: bool,
    fill: Option<f64>,
    scale: f64,
    offset: f64,
    /// The netCDF-C library is not thread-safe; the handle is used under this lock.
    file: Mutex<netcdf::File>,
}

fn nc_err(path: &Path, e: impl std::fmt::Display) -> RasterError {
    RasterError::new(path, format!("NetCDF error: {e}"))
}

fn attr_f64(var: &netcdf::Variable<'_>, name: &str) -> Option<f64> {
    use netcdf::AttributeValue as A;
    match var.attribute(name)?.value().ok()? {
        A::Double(v) => Some(v),
        A::Float(v) => Some(f64::from(v)),
        A::Int(v) => Some(f64::from(v)),
        A::Short(v) => Some(f64::from(v)),
        A::Longlong(v) => Some(v as f64),
        A::Doubles(v) => v.first().copied(),
        A::Floats(v) => v.first().map(|f| f64::from(*f)),
        _ => None,
    }
}

fn attr_str(var: &netcdf::Variable<'_>, name: &str) -> Option<String> {
    match var.attribute(name)?.value().ok()? {
        netcdf::AttributeValue::Str(s) => Some(s),
        _ => None,
    }
}

impl NetcdfSource {
    /// Opens a NetCDF file and decodes its coordinates.
    ///
    /// # Errors
    /// [`RasterError`] when coordinates or the variable are missing or unsupported.
    pub fn open(path: &Path, variable: Option<&str>) -> Result<Self, RasterError> {
        let file = netcdf::open(path).map_err(|e| nc_err(path, e))?;
        let find = |names: &[&str]| -> Option<String> {
            names
                .iter()
                .find(|n| file.variable(n).is_some())
                .map(|n| (*n).to_owned())
        };
        let y_name = find(&Y_NAMES)
            .ok_or_else(|| RasterError::new(path, "no latitude coordinate (latitude, lat or y)"))?;
        let x_name = find(&X_NAMES).ok_or_else(|| {
            RasterError::new(path, "no longitude coordinate (longitude, lon or x)")
        })?;
        let t_name = find(&TIME_NAMES);
        let coord = |name: &str| -> Result<Vec<f64>, RasterError> {
            file.variable(name)
                .ok_or_else(|| RasterError::new(path, format!("missing variable {name}")))?
                .get_values::<f64, _>(..)
                .map_err(|e| nc_err(path, e))
        };
        let ys = coord(&y_name)?;
        let xs = coord(&x_name)?;
        let mut y = axis_or_err(path, "y", &ys)?;
        let x = normalise_lon(path, axis_or_err(path, "x", &xs)?)?;
        let y_ascending = y.step > 0.0;
        if y_ascending {
            y = Axis {
                first: y.centre(y.len - 1),
                step: -y.step,
                len: y.len,
            };
        }
        if x.step < 0.0 {
            return Err(RasterError::new(
                path,
                "longitudes run east to west; not supported",
            ));
        }

        // The data variable: the one named, or the only one with the grid dimensions.
        let coords = [Some(&y_name), Some(&x_name), t_name.as_ref()];
        let var_name = match variable {
            Some(v) if file.variable(v).is_some() => v.to_owned(),
            Some(v) => {
                return Err(RasterError::new(path, format!("variable '{v}' not found")));
            }
            None => {
                let candidates: Vec<String> = file
                    .variables()
                    .filter(|v| v.dimensions().len() >= 2)
                    .map(|v| v.name())
                    .filter(|n| !coords.iter().flatten().any(|c| *c == n))
                    .collect();
                match candidates.as_slice() {
                    [one] => one.clone(),
                    _ => {
                        return Err(RasterError::new(
                            path,
                            format!(
                                "cannot choose the data variable among {candidates:?}: set the 'variable' param"
                            ),
                        ));
                    }
                }
            }
        };
        let var = file
            .variable(&var_name)
            .ok_or_else(|| RasterError::new(path, format!("variable '{var_name}' not found")))?;
        let dims: Vec<String> = var.dimensions().iter().map(|d| d.name()).collect();
        let has_time_dim = match dims.as_slice() {
            [t, a, b] if Some(t) == t_name.as_ref() && *a == y_name && *b == x_name => true,
            [a, b] if *a == y_name && *b == x_name => false,
            _ => {
                return Err(RasterError::new(
                    path,
                    format!(
                        "variable '{var_name}' has dimensions {dims:?}; expected (time, {y_name}, {x_name}) or ({y_name}, {x_name})"
                    ),
                ));
            }
        };
        let times = match (&t_name, has_time_dim) {
            (Some(t), true) => {
                let tv = file
                    .variable(t)
                    .ok_or_else(|| RasterError::new(path, "missing time variable"))?;
                let units = attr_str(&tv, "units").ok_or_else(|| {
                    RasterError::new(path, format!("time variable '{t}' has no units"))
                })?;
                CfTimeUnits::check_calendar(attr_str(&tv, "calendar").as_deref())
                    .map_err(|m| RasterError::new(path, m))?;
                let u = CfTimeUnits::parse(&units).map_err(|m| RasterError::new(path, m))?;
                let raw = tv.get_values::<f64, _>(..).map_err(|e| nc_err(path, e))?;
                raw.iter()
                    .map(|v| {
                        u.instant(*v).ok_or_else(|| {
                            RasterError::new(path, format!("time value {v} is out of range"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            _ => Vec::new(),
        };
        let fill = attr_f64(&var, "_FillValue").or_else(|| attr_f64(&var, "missing_value"));
        let scale = attr_f64(&var, "scale_factor").unwrap_or(1.0);
        let offset = attr_f64(&var, "add_offset").unwrap_or(0.0);
        drop(var);
        Ok(Self {
            path: path.to_owned(),
            variable: var_name,
            grid: Grid {
                crs: "EPSG:4326".into(),
                x,
                y,
            },
            times,
            y_ascending,
            has_time_dim,
            fill,
            scale,
            offset,
            file: Mutex::new(file),
        })
    }
}

impl RasterSource for NetcdfSource {
    fn describe(&self) -> String {
        self.path.display().to_string()
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
        let ny = self.grid.y.len;
        let src_rows = if self.y_ascending {
            (ny - rows.end)..(ny - rows.start)
        } else {
            rows.clone()
        };
        let (start, count) = if self.has_time_dim {
            (
                vec![t, src_rows.start, cols.start],
                vec![1, src_rows.len(), cols.len()],
            )
        } else {
            (
                vec![src_rows.start, cols.start],
                vec![src_rows.len(), cols.len()],
            )
        };
        let raw: Vec<f64> = {
            let file = self
                .file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let var = file
                .variable(&self.variable)
                .ok_or_else(|| RasterError::new(&self.path, "variable vanished"))?;
            var.get_values::<f64, _>((start, count))
                .map_err(|e| nc_err(&self.path, e))?
        };
        let (h, w) = (rows.len(), cols.len());
        let mut out = Vec::with_capacity(h * w);
        for r in 0..h {
            let src_r = if self.y_ascending { h - 1 - r } else { r };
            for c in 0..w {
                let v = raw[src_r * w + c];
                let missing = !v.is_finite() || self.fill.is_some_and(|f| v == f);
                out.push(if missing {
                    f32::NAN
                } else {
                    (v * self.scale + self.offset) as f32
                });
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// GeoTIFF

/// Georeferencing and layout of a GeoTIFF, read from its first IFD.
#[derive(Debug, Clone)]
struct TiffInfo {
    grid: Grid,
    width: u32,
    nodata: Option<f64>,
}

fn tiff_info<R: std::io::Read + std::io::Seek>(
    d: &mut tiff::decoder::Decoder<R>,
    path: &Path,
) -> Result<TiffInfo, RasterError> {
    use tiff::tags::Tag;
    let (width, height) = d.dimensions().map_err(|e| tiff_err(path, e))?;
    let scale = d
        .get_tag_f64_vec(Tag::ModelPixelScaleTag)
        .map_err(|_| RasterError::new(path, "no ModelPixelScale tag: not a GeoTIFF"))?;
    let tie = d
        .get_tag_f64_vec(Tag::ModelTiepointTag)
        .map_err(|_| RasterError::new(path, "no ModelTiepoint tag: not a GeoTIFF"))?;
    if scale.len() < 2 || tie.len() < 6 {
        return Err(RasterError::new(path, "malformed georeferencing tags"));
    }
    // GeoKeys: 1025 = GTRasterTypeGeoKey (1 area, 2 point), 2048 = GeographicTypeGeoKey,
    // 3072 = ProjectedCSTypeGeoKey.
    let keys = d
        .get_tag_u16_vec(Tag::GeoKeyDirectoryTag)
        .unwrap_or_default();
    let key = |id: u16| -> Option<u16> {
        keys.get(4..)?
            .chunks_exact(4)
            .find(|k| k[0] == id && k[1] == 0)
            .map(|k| k[3])
    };
    if let Some(projected) = key(3072) {
        return Err(RasterError::new(
            path,
            format!("projected CRS EPSG:{projected} is not supported yet: expected EPSG:4326"),
        ));
    }
    if let Some(geo) = key(2048)
        && geo != 4326
    {
        return Err(RasterError::new(
            path,
            format!("geographic CRS EPSG:{geo} is not supported: expected EPSG:4326"),
        ));
    }
    let pixel_is_point = key(1025) == Some(2);
    let nodata = d
        .get_tag_ascii_string(Tag::GdalNodata)
        .ok()
        .and_then(|s| s.trim().trim_end_matches('\0').parse::<f64>().ok());
    let (i, j, x0, y0) = (tie[0], tie[1], tie[3], tie[4]);
    let (sx, sy) = (scale[0], scale[1]);
    // The tiepoint maps raster (i, j) to model (x0, y0): the pixel corner for PixelIsArea,
    // the pixel centre for PixelIsPoint.
    let half = if pixel_is_point { 0.0 } else { 0.5 };
    let x = normalise_lon(
        path,
        Axis {
            first: x0 + (half - i) * sx,
            step: sx,
            len: width as usize,
        },
    )?;
    let y = Axis {
        first: y0 - (half - j) * sy,
        step: -sy,
        len: height as usize,
    };
    Ok(TiffInfo {
        grid: Grid {
            crs: "EPSG:4326".into(),
            x,
            y,
        },
        width,
        nodata,
    })
}

/// Reads a window tile by tile (or strip by strip): only the chunks that intersect it are read
/// and decoded. `masked` values (the nodata tag and any the caller adds) become NaN.
fn tiff_window<R: std::io::Read + std::io::Seek>(
    d: &mut tiff::decoder::Decoder<R>,
    path: &Path,
    width: u32,
    masked: &[f64],
    rows: Range<usize>,
    cols: Range<usize>,
) -> Result<Vec<f32>, RasterError> {
    let (cw, ch) = d.chunk_dimensions();
    let (cw, ch) = (cw as usize, ch as usize);
    let across = (width as usize).div_ceil(cw);
    let (h, w) = (rows.len(), cols.len());
    let mut out = vec![f32::NAN; h * w];
    for tr in rows.start / ch..=(rows.end - 1) / ch {
        for tc in cols.start / cw..=(cols.end - 1) / cw {
            let index = u32::try_from(tr * across + tc)
                .map_err(|_| RasterError::new(path, "tile index overflow"))?;
            let (dw, _dh) = d.chunk_data_dimensions(index);
            let data = to_f64(d.read_chunk(index).map_err(|e| tiff_err(path, e))?)
                .map_err(|m| RasterError::new(path, m))?;
            let dw = dw as usize;
            let (r0, c0) = (tr * ch, tc * cw);
            for r in rows.start.max(r0)..rows.end.min(r0 + ch) {
                for c in cols.start.max(c0)..cols.end.min(c0 + dw) {
                    let Some(&v) = data.get((r - r0) * dw + (c - c0)) else {
                        continue;
                    };
                    if v.is_finite() && !masked.contains(&v) {
                        out[(r - rows.start) * w + (c - cols.start)] = v as f32;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// A single-band GeoTIFF (also BigTIFF and COG) in a geographic CRS, read tile by tile so only
/// the window's tiles are decoded.
#[derive(Debug)]
pub struct GeoTiffSource {
    path: PathBuf,
    info: TiffInfo,
}

/// A decoder error; transient when it is a remote read that ran out of retries (the reader
/// reports those as [`TRANSIENT_IO`]), so the run retries instead of failing for good.
fn tiff_err(path: &Path, e: tiff::TiffError) -> RasterError {
    let transient = matches!(&e, tiff::TiffError::IoError(io) if io.kind() == TRANSIENT_IO);
    RasterError {
        transient,
        ..RasterError::new(path, format!("TIFF error: {e}"))
    }
}

fn decoder(path: &Path) -> Result<tiff::decoder::Decoder<BufReader<File>>, RasterError> {
    let f = File::open(path).map_err(|e| RasterError::new(path, format!("cannot open: {e}")))?;
    tiff::decoder::Decoder::new(BufReader::new(f))
        .map(|d| d.with_limits(tiff::decoder::Limits::unlimited()))
        .map_err(|e| tiff_err(path, e))
}

impl GeoTiffSource {
    /// Opens a GeoTIFF and reads its georeferencing.
    ///
    /// # Errors
    /// [`RasterError`] when georeferencing is missing or the CRS is not geographic WGS84.
    pub fn open(path: &Path) -> Result<Self, RasterError> {
        let mut d = decoder(path)?;
        Ok(Self {
            path: path.to_owned(),
            info: tiff_info(&mut d, path)?,
        })
    }
}

fn to_f64(r: tiff::decoder::DecodingResult) -> Result<Vec<f64>, String> {
    use tiff::decoder::DecodingResult as D;
    Ok(match r {
        D::F32(v) => v.into_iter().map(f64::from).collect(),
        D::F64(v) => v,
        D::U8(v) => v.into_iter().map(f64::from).collect(),
        D::U16(v) => v.into_iter().map(f64::from).collect(),
        D::U32(v) => v.into_iter().map(f64::from).collect(),
        D::I8(v) => v.into_iter().map(f64::from).collect(),
        D::I16(v) => v.into_iter().map(f64::from).collect(),
        D::I32(v) => v.into_iter().map(f64::from).collect(),
        _ => return Err("unsupported sample type".into()),
    })
}

impl RasterSource for GeoTiffSource {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
    fn grid(&self) -> &Grid {
        &self.info.grid
    }
    fn times(&self) -> &[NaiveDateTime] {
        &[]
    }
    fn read_window(
        &self,
        _t: usize,
        rows: Range<usize>,
        cols: Range<usize>,
    ) -> Result<Vec<f32>, RasterError> {
        let mut d = decoder(&self.path)?;
        let masked: Vec<f64> = self.info.nodata.into_iter().collect();
        tiff_window(&mut d, &self.path, self.info.width, &masked, rows, cols)
    }
}

// ---------------------------------------------------------------------------------------------
// Remote GeoTIFF (HTTP range reads)

/// Fetches `len` bytes at `offset` of a remote file (blocking; called from the blocking pool).
pub type RangeFetch = Arc<dyn Fn(u64, u64) -> std::io::Result<Vec<u8>> + Send + Sync>;

/// `Read + Seek` over a remote file: bytes are fetched by range on demand (at least
/// `read_ahead` at a time) and kept for the reader's lifetime.
struct SparseReader {
    pos: u64,
    len: u64,
    read_ahead: u64,
    fetch: RangeFetch,
    /// Fetched ranges by start offset.
    have: std::collections::BTreeMap<u64, Vec<u8>>,
}

impl SparseReader {
    fn covering(&self, pos: u64) -> Option<(&u64, &Vec<u8>)> {
        self.have
            .range(..=pos)
            .next_back()
            .filter(|(start, bytes)| pos < **start + bytes.len() as u64)
    }
}

impl std::io::Read for SparseReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        if self.covering(self.pos).is_none() {
            // Read ahead only in the header region; tiles are prefetched exactly.
            let want = if self.pos < self.read_ahead {
                (buf.len() as u64).max(self.read_ahead - self.pos)
            } else {
                buf.len() as u64
            }
            .min(self.len - self.pos);
            let bytes = (self.fetch)(self.pos, want)?;
            if bytes.is_empty() {
                return Err(std::io::Error::other("empty range response"));
            }
            self.have.insert(self.pos, bytes);
        }
        let (start, bytes) = self
            .covering(self.pos)
            .ok_or_else(|| std::io::Error::other("range not available"))?;
        let at = usize::try_from(self.pos - start).map_err(std::io::Error::other)?;
        let n = buf.len().min(bytes.len() - at);
        buf[..n].copy_from_slice(&bytes[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for SparseReader {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let new = match to {
            std::io::SeekFrom::Start(p) => i128::from(p),
            std::io::SeekFrom::End(d) => i128::from(self.len) + i128::from(d),
            std::io::SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
        };
        self.pos = u64::try_from(new).map_err(|_| std::io::Error::other("seek before start"))?;
        Ok(self.pos)
    }
}

/// A GeoTIFF/COG on an HTTP server that honours byte ranges: the header is read once, and each
/// window reads only the tiles it intersects.
pub struct RemoteTiff {
    url: String,
    len: u64,
    fetch: RangeFetch,
    info: TiffInfo,
    masked: Vec<f64>,
}

impl std::fmt::Debug for RemoteTiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTiff")
            .field("url", &self.url)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Bytes read ahead when decoding headers (IFDs and tag arrays sit at the start of a COG).
const HEADER_READ_AHEAD: u64 = 64 * 1024;

impl RemoteTiff {
    /// Reads the header of a remote GeoTIFF of `len` bytes. `url` is for messages only (already
    /// redacted); `extra_nodata` are values masked whether or not the file tags them.
    ///
    /// # Errors
    /// [`RasterError`] when the header cannot be fetched or decoded.
    pub fn open(
        url: &str,
        len: u64,
        fetch: RangeFetch,
        extra_nodata: &[f64],
    ) -> Result<Self, RasterError> {
        let path = Path::new(url);
        let reader = SparseReader {
            pos: 0,
            len,
            read_ahead: HEADER_READ_AHEAD,
            fetch: fetch.clone(),
            have: std::collections::BTreeMap::new(),
        };
        let mut d = tiff::decoder::Decoder::new(reader)
            .map(|d| d.with_limits(tiff::decoder::Limits::unlimited()))
            .map_err(|e| tiff_err(path, e))?;
        let info = tiff_info(&mut d, path)?;
        let mut masked: Vec<f64> = info.nodata.into_iter().collect();
        masked.extend_from_slice(extra_nodata);
        Ok(Self {
            url: url.to_owned(),
            len,
            fetch,
            info,
            masked,
        })
    }
}

impl RasterSource for RemoteTiff {
    fn describe(&self) -> String {
        self.url.clone()
    }
    fn grid(&self) -> &Grid {
        &self.info.grid
    }
    fn times(&self) -> &[NaiveDateTime] {
        &[]
    }
    fn read_window(
        &self,
        _t: usize,
        rows: Range<usize>,
        cols: Range<usize>,
    ) -> Result<Vec<f32>, RasterError> {
        let path = Path::new(&self.url);
        // Headers again (from the range cache), then exactly the bytes of each needed tile.
        let reader = SparseReader {
            pos: 0,
            len: self.len,
            read_ahead: HEADER_READ_AHEAD,
            fetch: self.fetch.clone(),
            have: std::collections::BTreeMap::new(),
        };
        let mut d = tiff::decoder::Decoder::new(reader)
            .map(|d| d.with_limits(tiff::decoder::Limits::unlimited()))
            .map_err(|e| tiff_err(path, e))?;
        // Fetch exactly the byte ranges of the tiles the window needs, one request each.
        use tiff::tags::Tag;
        let offsets = d
            .get_tag_u64_vec(Tag::TileOffsets)
            .or_else(|_| d.get_tag_u64_vec(Tag::StripOffsets))
            .map_err(|e| tiff_err(path, e))?;
        let counts = d
            .get_tag_u64_vec(Tag::TileByteCounts)
            .or_else(|_| d.get_tag_u64_vec(Tag::StripByteCounts))
            .map_err(|e| tiff_err(path, e))?;
        for index in window_chunks(&d, self.info.width, &rows, &cols) {
            let (Some(&off), Some(&n)) = (offsets.get(index), counts.get(index)) else {
                return Err(RasterError::new(
                    path,
                    format!("tile {index} is missing from the IFD"),
                ));
            };
            if n == 0 || d.inner().covering(off).is_some() {
                continue;
            }
            let bytes = (self.fetch)(off, n).map_err(|e| RasterError {
                transient: e.kind() == TRANSIENT_IO,
                ..RasterError::new(path, e.to_string())
            })?;
            d.inner().have.insert(off, bytes);
        }
        tiff_window(&mut d, path, self.info.width, &self.masked, rows, cols)
    }
}

/// Indices of the chunks (tiles or strips) a window intersects.
fn window_chunks<R: std::io::Read + std::io::Seek>(
    d: &tiff::decoder::Decoder<R>,
    width: u32,
    rows: &Range<usize>,
    cols: &Range<usize>,
) -> Vec<usize> {
    let (cw, ch) = d.chunk_dimensions();
    let (cw, ch) = (cw as usize, ch as usize);
    let across = (width as usize).div_ceil(cw);
    let mut out = Vec::new();
    for tr in rows.start / ch..=(rows.end - 1) / ch {
        for tc in cols.start / cw..=(cols.end - 1) / cw {
            out.push(tr * across + tc);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Aggregation

/// One field that combines several (the hours of a day, say), read lazily: each window read
/// reads the same window of every part and combines them cell by cell.
#[derive(Debug)]
pub struct AggregatedSource {
    parts: Vec<(Arc<dyn RasterSource>, usize)>,
    method: climate_domain::template::AggregateMethod,
}

impl AggregatedSource {
    /// Combines the fields `parts` (source, time index), which share a grid, with `method`.
    ///
    /// # Panics
    /// Never; an empty `parts` reads as an error.
    pub fn new(
        parts: Vec<(Arc<dyn RasterSource>, usize)>,
        method: climate_domain::template::AggregateMethod,
    ) -> Self {
        Self { parts, method }
    }
}

impl RasterSource for AggregatedSource {
    fn describe(&self) -> String {
        match self.parts.first() {
            Some((s, _)) => format!(
                "{} of {} fields of {}",
                self.method.as_str(),
                self.parts.len(),
                s.describe()
            ),
            None => "an empty aggregation".into(),
        }
    }
    fn grid(&self) -> &Grid {
        static EMPTY: std::sync::OnceLock<Grid> = std::sync::OnceLock::new();
        self.parts.first().map_or_else(
            || {
                EMPTY.get_or_init(|| Grid {
                    crs: String::new(),
                    x: Axis {
                        first: 0.0,
                        step: 1.0,
                        len: 0,
                    },
                    y: Axis {
                        first: 0.0,
                        step: -1.0,
                        len: 0,
                    },
                })
            },
            |(s, _)| s.grid(),
        )
    }
    fn times(&self) -> &[NaiveDateTime] {
        &[]
    }
    fn read_window(
        &self,
        _t: usize,
        rows: Range<usize>,
        cols: Range<usize>,
    ) -> Result<Vec<f32>, RasterError> {
        if self.parts.is_empty() {
            return Err(RasterError::new(
                Path::new("aggregation"),
                "no fields to combine",
            ));
        }
        // One part at a time: a daily mean of 24 hourly fields holds two fields, not 25.
        let mut parts = self.parts.iter();
        let mut acc = match parts.next() {
            Some((s, t)) => s.read_window(*t, rows.clone(), cols.clone())?,
            None => Vec::new(),
        };
        for (s, t) in parts {
            let field = s.read_window(*t, rows.clone(), cols.clone())?;
            self.method.accumulate(&mut acc, &field);
        }
        self.method.finish(&mut acc, self.parts.len());
        Ok(acc)
    }
}

#[cfg(test)]
mod remote_tests {
    use super::*;

    #[test]
    fn a_remote_header_read_that_runs_out_of_retries_is_transient() {
        let failing = |kind: std::io::ErrorKind| -> RangeFetch {
            Arc::new(move |_, _| Err(std::io::Error::new(kind, "store unavailable")))
        };
        let err = RemoteTiff::open("http://x/a.tif", 100_000, failing(TRANSIENT_IO), &[])
            .expect_err("nothing to read");
        assert!(err.transient, "{err}");
        let err = RemoteTiff::open(
            "http://x/a.tif",
            100_000,
            failing(std::io::ErrorKind::Other),
            &[],
        )
        .expect_err("nothing to read");
        assert!(
            !err.transient,
            "a permanent fetch failure stays permanent: {err}"
        );
    }
}
