//! Remote GeoTIFFs read with HTTP range requests: only the header and the tiles a window needs
//! are fetched.

use super::*;

/// Fetches `len` bytes at `offset` of a remote file (blocking; called from the blocking pool).
pub type RangeFetch = Arc<dyn Fn(u64, u64) -> std::io::Result<Vec<u8>> + Send + Sync>;

/// `Read + Seek` over a remote file: bytes are fetched by range on demand (at least
/// `read_ahead` at a time) and kept for the reader's lifetime.
pub(super) struct SparseReader {
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
pub(super) const HEADER_READ_AHEAD: u64 = 64 * 1024;

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
pub(super) fn window_chunks<R: std::io::Read + std::io::Seek>(
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
