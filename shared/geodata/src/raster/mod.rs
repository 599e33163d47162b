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

mod aggregate;
mod cf;
mod geotiff;
mod remote_tiff;
pub use aggregate::*;
pub use cf::*;
pub use geotiff::*;
pub use remote_tiff::*;

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
    /// Instants of the time steps; empty when the file has no time axis (one field), which
    /// is what a source answers unless it says otherwise.
    fn times(&self) -> &[NaiveDateTime] {
        &[]
    }
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
