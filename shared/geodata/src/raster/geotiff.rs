//! GeoTIFF, BigTIFF and COG sources: georeferencing from the first IFD, read tile by tile (only
//! the tiles in the window).

use super::*;

/// Georeferencing and layout of a GeoTIFF, read from its first IFD.
#[derive(Debug, Clone)]
pub(super) struct TiffInfo {
    pub(super) grid: Grid,
    pub(super) width: u32,
    pub(super) nodata: Option<f64>,
}

pub(super) fn tiff_info<R: std::io::Read + std::io::Seek>(
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
            crs: climate_domain::Crs::WGS84,
            x,
            y,
        },
        width,
        nodata,
    })
}

/// Reads a window tile by tile (or strip by strip): only the chunks that intersect it are read
/// and decoded. `masked` values (the nodata tag and any the caller adds) become NaN.
pub(super) fn tiff_window<R: std::io::Read + std::io::Seek>(
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
pub(super) fn tiff_err(path: &Path, e: tiff::TiffError) -> RasterError {
    let transient = matches!(&e, tiff::TiffError::IoError(io) if io.kind() == TRANSIENT_IO);
    RasterError {
        transient,
        ..RasterError::new(path, format!("TIFF error: {e}"))
    }
}

pub(super) fn decoder(path: &Path) -> Result<tiff::decoder::Decoder<BufReader<File>>, RasterError> {
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

pub(super) fn to_f64(r: tiff::decoder::DecodingResult) -> Result<Vec<f64>, String> {
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
