//! Encoders for windows of a stored cube, as the read routes answer them: CoverageJSON,
//! georeferenced GeoTIFF, CF NetCDF, coloured PNG and CSV.

use std::fmt::Write as _;
use std::io::Cursor;

use chrono::NaiveDateTime;
use climate_domain::PeriodType;
use climate_domain::grid::Grid;
use climate_domain::template::Display;

/// Why a window could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// GeoTIFF needs an EPSG code for its GeoKeys.
    #[error("GeoTIFF output needs an EPSG CRS, not {0}")]
    Crs(String),
    /// An empty window has no image.
    #[error("an empty window has no image")]
    Empty,
    /// The dimensions do not fit the format, or the values do not fit the dimensions.
    #[error("window size: {0}")]
    Size(String),
    /// The display names a colour map that does not exist.
    #[error("unknown colormap '{0}'")]
    Colormap(String),
    /// The TIFF encoder failed.
    #[error("encoding GeoTIFF: {0}")]
    Tiff(String),
    /// The PNG encoder failed.
    #[error("encoding PNG: {0}")]
    Png(String),
    /// libnetcdf failed.
    #[error("writing NetCDF: {0}")]
    NetCdf(String),
}

/// A window of a cube: `values` are `[t, y, x]` row-major over `times × grid`, NaN missing.
#[derive(Debug, Clone, Copy)]
pub struct Cube<'a> {
    /// Data variable name.
    pub variable: &'a str,
    /// Units (UDUNITS spelling).
    pub units: &'a str,
    /// Human-readable name.
    pub long_name: &'a str,
    /// Period type of the time axis.
    pub period_type: PeriodType,
    /// Period starts.
    pub times: &'a [NaiveDateTime],
    /// The window's grid.
    pub grid: &'a Grid,
    /// The values.
    pub values: &'a [f32],
}

/// The OGC URI of a CRS (`CRS84` for EPSG:4326 in longitude/latitude order).
pub fn crs_uri(crs: &str) -> String {
    match crs.strip_prefix("EPSG:") {
        Some("4326") => "http://www.opengis.net/def/crs/OGC/1.3/CRS84".to_owned(),
        Some(code) => format!("http://www.opengis.net/def/crs/EPSG/0/{code}"),
        None => crs.to_owned(),
    }
}

/// RFC 3339 UTC.
pub fn rfc3339(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn push_number(out: &mut String, v: f32) {
    if v.is_finite() {
        // `Display` of f32 is the shortest text that reads back as the same f32.
        let _ = write!(out, "{v}");
    } else {
        out.push_str("null");
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn covjson_head(c: &Cube, out: &mut String, domain_type: &str, axes: &str) {
    let geographic = c.grid.crs == "EPSG:4326";
    let system = if geographic {
        format!(
            r#"{{"type":"GeographicCRS","id":{}}}"#,
            json_str(&crs_uri(&c.grid.crs))
        )
    } else {
        format!(
            r#"{{"type":"ProjectedCRS","id":{}}}"#,
            json_str(&crs_uri(&c.grid.crs))
        )
    };
    let _ = write!(
        out,
        r#"{{"type":"Coverage","domain":{{"type":"Domain","domainType":"{domain_type}","axes":{axes},"referencing":[{{"coordinates":["x","y"],"system":{system}}},{{"coordinates":["t"],"system":{{"type":"TemporalRS","calendar":"Gregorian"}}}}]}},"parameters":{{{var}:{{"type":"Parameter","description":{{"en":{desc}}},"observedProperty":{{"label":{{"en":{desc}}}}},"unit":{{"label":{{"en":{units}}},"symbol":{units}}}}}}},"#,
        var = json_str(c.variable),
        desc = json_str(c.long_name),
        units = json_str(c.units),
    );
}

fn time_values(times: &[NaiveDateTime]) -> String {
    let list: Vec<String> = times.iter().map(|t| json_str(&rfc3339(*t))).collect();
    format!("[{}]", list.join(","))
}

/// CoverageJSON `Grid` coverage of the window (`x`/`y` as regular axes of pixel centres).
pub fn coverage_json(c: &Cube) -> String {
    let g = c.grid;
    let axis = |a: &climate_domain::grid::Axis| {
        format!(
            r#"{{"start":{},"stop":{},"num":{}}}"#,
            a.centre(0),
            a.centre(a.len.saturating_sub(1)),
            a.len
        )
    };
    let axes = format!(
        r#"{{"x":{},"y":{},"t":{{"values":{}}}}}"#,
        axis(&g.x),
        axis(&g.y),
        time_values(c.times)
    );
    let mut out = String::with_capacity(c.values.len() * 6 + 1024);
    covjson_head(c, &mut out, "Grid", &axes);
    push_range(
        &mut out,
        c,
        r#"["t","y","x"]"#,
        &format!("[{},{},{}]", c.times.len(), g.y.len, g.x.len),
    );
    out
}

/// The `ranges` member closing a CoverageJSON document: the cube's values as one NdArray.
fn push_range(out: &mut String, c: &Cube, axis_names: &str, shape: &str) {
    let _ = write!(
        out,
        r#""ranges":{{{}:{{"type":"NdArray","dataType":"float","axisNames":{axis_names},"shape":{shape},"values":["#,
        json_str(c.variable),
    );
    for (i, v) in c.values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_number(out, *v);
    }
    out.push_str("]}}}");
}

/// CoverageJSON `PointSeries` at `(x, y)`: one value per time.
pub fn point_series_json(c: &Cube, x: f64, y: f64) -> String {
    let axes = format!(
        r#"{{"x":{{"values":[{x}]}},"y":{{"values":[{y}]}},"t":{{"values":{}}}}}"#,
        time_values(c.times)
    );
    let mut out = String::with_capacity(c.values.len() * 12 + 1024);
    covjson_head(c, &mut out, "PointSeries", &axes);
    push_range(&mut out, c, r#"["t"]"#, &format!("[{}]", c.times.len()));
    out
}

/// CSV of a point series: `time,x,y,{variable} ({units})`, missing values empty.
pub fn point_series_csv(c: &Cube, x: f64, y: f64) -> String {
    let mut out = format!("time,x,y,{} ({})\n", c.variable, c.units);
    for (t, v) in c.times.iter().zip(c.values) {
        let _ = write!(out, "{},{x},{y},", rfc3339(*t));
        if v.is_finite() {
            let _ = write!(out, "{v}");
        }
        out.push('\n');
    }
    out
}

/// GeoTIFF keys for an EPSG CRS (GeoKeyDirectoryTag): model type, pixel-is-area, and the
/// geographic or projected CRS code.
fn geo_keys(crs: &str) -> Result<Vec<u16>, EncodeError> {
    let code: u16 = crs
        .strip_prefix("EPSG:")
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| EncodeError::Crs(crs.to_owned()))?;
    let geographic = code == 4326;
    Ok(vec![
        1,
        1,
        0,
        3,
        1024, // GTModelTypeGeoKey
        0,
        1,
        if geographic { 2 } else { 1 },
        1025, // GTRasterTypeGeoKey: PixelIsArea
        0,
        1,
        1,
        if geographic { 2048 } else { 3072 }, // Geographic- or ProjectedCSTypeGeoKey
        0,
        1,
        code,
    ])
}

/// A georeferenced float32 GeoTIFF: one band per time step (band `i` is `times[i]`), NaN as
/// nodata (GDAL_NODATA), readable by GDAL/rasterio.
///
/// # Errors
/// A message for a non-EPSG CRS or an encoder failure.
pub fn geotiff(c: &Cube) -> Result<Vec<u8>, EncodeError> {
    use tiff::encoder::{TiffEncoder, colortype};
    use tiff::tags::{ExtraSamples, Tag};
    let g = c.grid;
    let (nt, ny, nx) = (c.times.len(), g.y.len, g.x.len);
    if nt == 0 || ny == 0 || nx == 0 {
        return Err(EncodeError::Empty);
    }
    let keys = geo_keys(&g.crs)?;
    // Chunky layout: the samples of a pixel (its time steps) are adjacent.
    let mut chunky = vec![0f32; nt * ny * nx];
    for t in 0..nt {
        for p in 0..ny * nx {
            chunky[p * nt + t] = c.values[t * ny * nx + p];
        }
    }
    let tr = g.transform();
    let mut buf = Cursor::new(Vec::new());
    let err = |e: tiff::TiffError| EncodeError::Tiff(e.to_string());
    let mut enc = TiffEncoder::new(&mut buf).map_err(err)?;
    let width = u32::try_from(nx).map_err(|e| EncodeError::Size(e.to_string()))?;
    let height = u32::try_from(ny).map_err(|e| EncodeError::Size(e.to_string()))?;
    let mut image = enc
        .new_image::<colortype::Gray32Float>(width, height)
        .map_err(err)?;
    if nt > 1 {
        image
            .extra_samples(&vec![ExtraSamples::Unspecified; nt - 1])
            .map_err(err)?;
    }
    let e = image.encoder();
    e.write_tag(Tag::Unknown(33550), &[tr[0], -tr[4], 0.0][..])
        .map_err(err)?;
    e.write_tag(Tag::Unknown(33922), &[0.0, 0.0, 0.0, tr[2], tr[5], 0.0][..])
        .map_err(err)?;
    e.write_tag(Tag::Unknown(34735), &keys[..]).map_err(err)?;
    e.write_tag(Tag::Unknown(42113), "nan").map_err(err)?;
    image.write_data(&chunky).map_err(err)?;
    Ok(buf.into_inner())
}

/// A transparent-where-missing RGBA PNG of one field `[ny, nx]`, coloured by `display`.
///
/// # Errors
/// A message for an unknown colormap or an encoder failure.
pub fn png(field: &[f32], ny: usize, nx: usize, display: &Display) -> Result<Vec<u8>, EncodeError> {
    let stops = display
        .stops()
        .ok_or_else(|| EncodeError::Colormap(display.colormap.clone()))?;
    let mut rgba = Vec::with_capacity(ny * nx * 4);
    for v in field {
        match display.colour(&stops, *v) {
            Some([r, g, b]) => rgba.extend_from_slice(&[r, g, b, 255]),
            None => rgba.extend_from_slice(&[0, 0, 0, 0]),
        }
    }
    let mut out = Vec::new();
    {
        let w = u32::try_from(nx).map_err(|e| EncodeError::Size(e.to_string()))?;
        let h = u32::try_from(ny).map_err(|e| EncodeError::Size(e.to_string()))?;
        let mut enc = ::png::Encoder::new(&mut out, w, h);
        enc.set_color(::png::ColorType::Rgba);
        enc.set_depth(::png::BitDepth::Eight);
        let mut writer = enc
            .write_header()
            .map_err(|e| EncodeError::Png(e.to_string()))?;
        writer
            .write_image_data(&rgba)
            .map_err(|e| EncodeError::Png(e.to_string()))?;
    }
    Ok(out)
}

/// Writes a CF-1.10 NetCDF-4 file of the cube to `path`: `time`, `lat`/`lon` (or projected
/// `y`/`x` with a `crs` grid-mapping variable carrying the WKT), the variable with `units`,
/// `long_name` and NaN `_FillValue`, zlib-compressed.
///
/// # Errors
/// A message when libnetcdf fails.
pub fn netcdf(c: &Cube, path: &std::path::Path) -> Result<(), EncodeError> {
    let mut w = NetcdfWriter::create(c, path)?;
    w.put_times(0, c.values, c.times.len())?;
    w.close()
}

enum CfValue {
    Text(&'static str),
    Number(f64),
}

/// CF grid-mapping attributes of a CRS: WGS84 geographic, and the WGS84 UTM zones
/// (EPSG:326zz north, 327zz south). Other CRSs carry only `crs_wkt`/`spatial_ref`.
fn cf_grid_mapping(crs: &str) -> Vec<(&'static str, CfValue)> {
    use CfValue::{Number, Text};
    let ellipsoid = [
        ("semi_major_axis", Number(6_378_137.0)),
        ("inverse_flattening", Number(298.257_223_563)),
    ];
    let code: Option<u32> = crs.strip_prefix("EPSG:").and_then(|c| c.parse().ok());
    match code {
        Some(4326) => {
            let mut v = vec![("grid_mapping_name", Text("latitude_longitude"))];
            v.extend(ellipsoid);
            v
        }
        Some(c @ (32601..=32660 | 32701..=32760)) => {
            let zone = f64::from(c % 100);
            let south = c > 32700;
            let mut v = vec![
                ("grid_mapping_name", Text("transverse_mercator")),
                ("longitude_of_central_meridian", Number(-183.0 + 6.0 * zone)),
                ("latitude_of_projection_origin", Number(0.0)),
                ("scale_factor_at_central_meridian", Number(0.9996)),
                ("false_easting", Number(500_000.0)),
                (
                    "false_northing",
                    Number(if south { 10_000_000.0 } else { 0.0 }),
                ),
            ];
            v.extend(ellipsoid);
            v
        }
        _ => Vec::new(),
    }
}

/// A CF NetCDF file written time slab by time slab, for downloads larger than memory.
pub struct NetcdfWriter {
    file: netcdf::FileMut,
    variable: String,
    plane: usize,
}

impl std::fmt::Debug for NetcdfWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetcdfWriter")
            .field("variable", &self.variable)
            .finish_non_exhaustive()
    }
}

impl NetcdfWriter {
    /// Creates the file with its dimensions, coordinates and metadata; the data variable is
    /// filled by [`Self::put_times`]. `c.values` is not read.
    ///
    /// # Errors
    /// A message when libnetcdf fails.
    pub fn create(c: &Cube, path: &std::path::Path) -> Result<Self, EncodeError> {
        let err = |e: netcdf::Error| EncodeError::NetCdf(e.to_string());
        let g = c.grid;
        let geographic = g.crs == "EPSG:4326";
        let (ydim, xdim) = if geographic {
            ("lat", "lon")
        } else {
            ("y", "x")
        };
        let mut file = netcdf::create(path).map_err(err)?;
        file.add_dimension("time", c.times.len()).map_err(err)?;
        file.add_dimension(ydim, g.y.len).map_err(err)?;
        file.add_dimension(xdim, g.x.len).map_err(err)?;
        file.add_attribute("Conventions", "CF-1.10").map_err(err)?;
        file.add_attribute("title", c.long_name).map_err(err)?;
        file.add_attribute("source", "Climate API").map_err(err)?;

        let (units, step) = crate::zarr::time_encoding(c.period_type);
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .ok_or_else(|| EncodeError::NetCdf("the time epoch is out of range".into()))?;
        let t: Vec<i64> = c
            .times
            .iter()
            .map(|t| (*t - epoch).num_seconds() / step)
            .collect();
        let mut tv = file.add_variable::<i64>("time", &["time"]).map_err(err)?;
        tv.put_attribute("units", units).map_err(err)?;
        tv.put_attribute("calendar", "proleptic_gregorian")
            .map_err(err)?;
        tv.put_attribute("standard_name", "time").map_err(err)?;
        tv.put_attribute("axis", "T").map_err(err)?;
        tv.put_values(&t, ..).map_err(err)?;

        for (name, axis, std_name, units, ax) in [
            (
                ydim,
                &g.y,
                if geographic {
                    "latitude"
                } else {
                    "projection_y_coordinate"
                },
                if geographic { "degrees_north" } else { "m" },
                "Y",
            ),
            (
                xdim,
                &g.x,
                if geographic {
                    "longitude"
                } else {
                    "projection_x_coordinate"
                },
                if geographic { "degrees_east" } else { "m" },
                "X",
            ),
        ] {
            let mut v = file.add_variable::<f64>(name, &[name]).map_err(err)?;
            v.put_attribute("standard_name", std_name).map_err(err)?;
            v.put_attribute("units", units).map_err(err)?;
            v.put_attribute("axis", ax).map_err(err)?;
            v.put_values(&axis.centres(), ..).map_err(err)?;
        }
        let wkt = proj::Proj::new(&g.crs)
            .ok()
            .and_then(|p| p.as_wkt(None, None).ok());
        {
            let mut crs = file.add_variable::<i32>("crs", &[]).map_err(err)?;
            if let Some(wkt) = &wkt {
                crs.put_attribute("crs_wkt", wkt.as_str()).map_err(err)?;
                crs.put_attribute("spatial_ref", wkt.as_str())
                    .map_err(err)?;
            }
            for (name, value) in cf_grid_mapping(&g.crs) {
                match value {
                    CfValue::Text(t) => crs.put_attribute(name, t).map(|_| ()),
                    CfValue::Number(n) => crs.put_attribute(name, n).map(|_| ()),
                }
                .map_err(err)?;
            }
            // GDAL's order: origin x, pixel width, row rotation, origin y, column rotation,
            // pixel height.
            let [a, b, c, d, e, f] = g.transform();
            let tr = [c, a, b, f, d, e].map(|v| v.to_string()).join(" ");
            crs.put_attribute("GeoTransform", tr.as_str())
                .map_err(err)?;
        }
        let mut v = file
            .add_variable::<f32>(c.variable, &["time", ydim, xdim])
            .map_err(err)?;
        v.set_compression(4, true).map_err(err)?;
        v.set_chunking(&[1, g.y.len.max(1), g.x.len.max(1)])
            .map_err(err)?;
        v.set_fill_value(f32::NAN).map_err(err)?;
        v.put_attribute("units", c.units).map_err(err)?;
        v.put_attribute("long_name", c.long_name).map_err(err)?;
        v.put_attribute("grid_mapping", "crs").map_err(err)?;
        Ok(Self {
            file,
            variable: c.variable.to_owned(),
            plane: g.y.len * g.x.len,
        })
    }

    /// Writes `n` time steps from `values` (`[n, y, x]`) at time index `t0`.
    ///
    /// # Errors
    /// A message when libnetcdf fails or `values` has the wrong size.
    pub fn put_times(&mut self, t0: usize, values: &[f32], n: usize) -> Result<(), EncodeError> {
        if values.len() != n * self.plane {
            return Err(EncodeError::Size(format!(
                "expected {} values for {n} time steps, got {}",
                n * self.plane,
                values.len()
            )));
        }
        if n == 0 {
            return Ok(());
        }
        let err = |e: netcdf::Error| EncodeError::NetCdf(e.to_string());
        let mut v = self
            .file
            .variable_mut(&self.variable)
            .ok_or_else(|| EncodeError::NetCdf("the data variable vanished".into()))?;
        v.put_values(values, (t0..t0 + n, .., ..)).map_err(err)?;
        Ok(())
    }

    /// Closes the file.
    ///
    /// # Errors
    /// A message when libnetcdf fails.
    pub fn close(self) -> Result<(), EncodeError> {
        self.file
            .close()
            .map(|_| ())
            .map_err(|e| EncodeError::NetCdf(format!("closing: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use climate_domain::grid::Axis;

    use super::*;

    fn grid() -> Grid {
        Grid {
            crs: climate_domain::Crs::WGS84,
            x: Axis {
                first: -13.45,
                step: 0.1,
                len: 3,
            },
            y: Axis {
                first: 9.95,
                step: -0.1,
                len: 2,
            },
        }
    }

    #[test]
    fn coverage_json_is_valid_json_with_nulls_for_missing() {
        let g = grid();
        let times = [chrono::NaiveDate::from_ymd_opt(2025, 7, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("time")];
        let values = [1.5, f32::NAN, 3.25, 0.1, -2.0, 7.0];
        let c = Cube {
            variable: "t2m",
            units: "degC",
            long_name: "2 metre \"temperature\"",
            period_type: PeriodType::Daily,
            times: &times,
            grid: &g,
            values: &values,
        };
        let v: serde_json::Value = serde_json::from_str(&coverage_json(&c)).expect("json");
        assert_eq!(v["domain"]["axes"]["x"]["num"], 3);
        assert_eq!(v["domain"]["axes"]["y"]["start"], 9.95);
        assert_eq!(
            v["domain"]["axes"]["t"]["values"][0],
            "2025-07-01T00:00:00Z"
        );
        let r = &v["ranges"]["t2m"];
        assert_eq!(r["shape"], serde_json::json!([1, 2, 3]));
        assert_eq!(r["values"][1], serde_json::Value::Null);
        assert_eq!(r["values"][3], 0.1, "f32 printed without float noise");
        let csv = point_series_csv(&c, -13.45, 9.95);
        assert_eq!(
            csv.lines().nth(1),
            Some("2025-07-01T00:00:00Z,-13.45,9.95,1.5")
        );
    }

    #[test]
    fn utm_zones_get_cf_transverse_mercator_parameters() {
        let get = |crs: &str, key: &str| {
            cf_grid_mapping(crs)
                .into_iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| match v {
                    CfValue::Number(n) => n.to_string(),
                    CfValue::Text(t) => t.to_owned(),
                })
        };
        for (crs, key, expected) in [
            ("EPSG:32629", "grid_mapping_name", "transverse_mercator"),
            ("EPSG:32629", "longitude_of_central_meridian", "-9"),
            ("EPSG:32733", "false_northing", "10000000"),
            ("EPSG:4326", "grid_mapping_name", "latitude_longitude"),
        ] {
            assert_eq!(get(crs, key).as_deref(), Some(expected), "{crs} {key}");
        }
        assert!(cf_grid_mapping("EPSG:3857").is_empty());
    }

    #[test]
    fn geotiff_carries_bands_georeferencing_and_nodata() {
        let g = grid();
        let t0 = chrono::NaiveDate::from_ymd_opt(2025, 7, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("time");
        let times = [t0, t0 + chrono::Duration::days(1)];
        let values: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let c = Cube {
            variable: "t2m",
            units: "degC",
            long_name: "t",
            period_type: PeriodType::Daily,
            times: &times,
            grid: &g,
            values: &values,
        };
        let bytes = geotiff(&c).expect("tiff");
        let mut dec = tiff::decoder::Decoder::new(Cursor::new(bytes)).expect("decoder");
        assert_eq!(dec.dimensions().expect("dims"), (3, 2));
        let scale = dec
            .get_tag_f64_vec(tiff::tags::Tag::Unknown(33550))
            .expect("scale");
        assert_eq!(scale, vec![0.1, 0.1, 0.0]);
        let tie = dec
            .get_tag_f64_vec(tiff::tags::Tag::Unknown(33922))
            .expect("tiepoint");
        assert!(
            (tie[3] + 13.5).abs() < 1e-9 && (tie[4] - 10.0).abs() < 1e-9,
            "{tie:?}"
        );
        let tiff::decoder::DecodingResult::F32(data) = dec.read_image().expect("read") else {
            panic!("float32 expected");
        };
        // Pixel (0, 1): band 0 is t=0's value 1, band 1 is t=1's value 7.
        assert_eq!(&data[2..4], &[1.0, 7.0]);
    }
}
