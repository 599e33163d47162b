//! NetCDF sources: CF coordinates and time, scale/offset and fill values, read window by window.

use super::*;

pub(super) const TIME_NAMES: [&str; 3] = ["time", "valid_time", "t"];
pub(super) const Y_NAMES: [&str; 3] = ["latitude", "lat", "y"];
pub(super) const X_NAMES: [&str; 3] = ["longitude", "lon", "x"];

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

pub(super) fn nc_err(path: &Path, e: impl std::fmt::Display) -> RasterError {
    RasterError::new(path, format!("NetCDF error: {e}"))
}

pub(super) fn attr_f64(var: &netcdf::Variable<'_>, name: &str) -> Option<f64> {
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

pub(super) fn attr_str(var: &netcdf::Variable<'_>, name: &str) -> Option<String> {
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
                    .map_err(|m| RasterError::new(path, m.to_string()))?;
                let u = CfTimeUnits::parse(&units)
                    .map_err(|m| RasterError::new(path, m.to_string()))?;
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
                crs: climate_domain::Crs::WGS84,
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
