//! `GET /datasets/{id}/download?format=netcdf`: the current version as one CF NetCDF file,
//! optionally cut to a `bbox` and a `datetime` interval.
//!
//! NetCDF-4 (HDF5) cannot be produced as a forward-only stream, so the file is written to a
//! temporary file a slab of periods at a time (at most [`SLAB_BYTES`] of values in memory,
//! whatever the dataset's size) and then streamed from disk; the file is deleted once the
//! response has been sent or abandoned.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use climate_geodata::encode::NetcdfWriter;
use tokio_util::io::ReaderStream;

use crate::error::{ApiError, ErrorCode};
use crate::routes::ogcapi::{self, parse_query};
use crate::state::AppState;

/// Values held in memory at once while writing a download.
pub const SLAB_BYTES: usize = 64 << 20;
/// Most values one download holds (4 GB of float32); larger ones are cut by bbox/datetime.
pub const MAX_DOWNLOAD_VALUES: u64 = 1_000_000_000;

/// Set when the request is dropped (the client went away), so the writer stops at the next
/// slab instead of finishing a file nobody will read.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The query of a download.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// netcdf (the default and only format)
    format: Option<String>,
    /// minLon,minLat,maxLon,maxLat (CRS84)
    bbox: Option<String>,
    /// instant, or interval a/b with open ends ..
    datetime: Option<String>,
}

/// `GET /datasets/{id}/download`
#[utoipa::path(get, path = "/datasets/{id}/download", tag = "datasets",
    params(("id" = String, Path, description = "dataset id"), DownloadQuery),
    responses((status = 200, description = "CF-1.10 NetCDF-4", content_type = "application/x-netcdf"),
              (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: DownloadQuery = parse_query(raw)?;
    if let Some(f) = q.format.as_deref()
        && !matches!(f.to_ascii_lowercase().as_str(), "netcdf" | "nc")
    {
        return Err(ApiError::bad_request(format!(
            "format: '{f}' is not offered; use format=netcdf (or read the Zarr store at /zarr/{id})"
        )));
    }
    let o = ogcapi::open(&state, &id).await?;
    let (rows, cols) = match q.bbox.as_deref() {
        Some(b) => ogcapi::bbox_window(&o.grid, ogcapi::parse_bbox(b)?)?,
        None => (0..o.grid.y.len, 0..o.grid.x.len),
    };
    let sel = q
        .datetime
        .as_deref()
        .map(|s| ogcapi::parse_datetime("datetime", s))
        .transpose()?;
    let t = ogcapi::select_times(&o, sel, "datetime")?;
    let grid = climate_domain::grid::Grid {
        crs: o.grid.crs.clone(),
        x: o.grid.x.slice(cols.clone()),
        y: o.grid.y.slice(rows.clone()),
    };
    let times = o.times[t.clone()].to_vec();
    let first = times.first().map(|t| t.format("%Y%m%d%H").to_string());
    let last = times.last().map(|t| t.format("%Y%m%d%H").to_string());
    let filename = format!(
        "{id}_{}_{}.nc",
        first.unwrap_or_default(),
        last.unwrap_or_default()
    );
    let plane = rows.len() * cols.len();
    let values = (plane * times.len()) as u64;
    if values > MAX_DOWNLOAD_VALUES {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "the download holds {values} values, more than {MAX_DOWNLOAD_VALUES}: cut it with bbox or datetime, or read the Zarr store at /zarr/{id}"
            ),
        ));
    }
    let Ok(_permit) = state.downloads.try_acquire() else {
        let mut busy = ApiError::new(
            ErrorCode::Busy,
            "all download slots are in use; retry in a few seconds",
        )
        .into_response();
        busy.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        return Ok(busy);
    };
    // Whole stored time chunks per slab (each chunk decoded once), as many as fit the budget.
    let chunk_t = usize::try_from(o.reader.time_chunk()).unwrap_or(1).max(1);
    let fit = SLAB_BYTES / (plane * 4).max(1);
    let per_slab = if fit >= chunk_t {
        fit / chunk_t * chunk_t
    } else {
        fit.max(1)
    };
    // On the data volume rather than /tmp, which may be memory.
    let tmp_dir = state.platform.config.data_dir.join("tmp");
    std::fs::create_dir_all(&tmp_dir).map_err(ApiError::internal)?;
    let tmp = tempfile::Builder::new()
        .prefix("climate-download-")
        .suffix(".nc")
        .tempfile_in(&tmp_dir)
        .map_err(ApiError::internal)?;
    let cancelled = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancelled.clone());
    let path = tmp.path().to_owned();
    let handle = tokio::runtime::Handle::current();
    let reader = o.reader.clone();
    let labels = o.labels();
    tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
        let cube = labels.cube(&times, &grid, &[]);
        let mut w = NetcdfWriter::create(&cube, &path).map_err(ApiError::internal)?;
        let mut done = 0;
        while done < times.len() {
            if cancelled.load(Ordering::Relaxed) {
                return Err(ApiError::new(ErrorCode::Cancelled, "the client went away"));
            }
            // Slabs end on stored chunk boundaries.
            let at = t.start + done;
            let n = (per_slab - at % chunk_t.min(per_slab)).min(times.len() - done);
            let t0 = (t.start + done) as u64;
            let values = handle
                .block_on(reader.read(
                    0,
                    t0..t0 + n as u64,
                    rows.start as u64..rows.end as u64,
                    cols.start as u64..cols.end as u64,
                ))
                .map_err(|e| ApiError::unavailable("object store", e))?;
            w.put_times(done, &values, n).map_err(ApiError::internal)?;
            done += n;
        }
        w.close().map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)??;

    let file = tokio::fs::File::open(tmp.path())
        .await
        .map_err(ApiError::internal)?;
    let len = file.metadata().await.map_err(ApiError::internal)?.len();
    // The temporary file lives as long as the body stream: deleted after the last byte, or
    // when the client goes away.
    let stream = ReaderStream::with_capacity(file, 256 << 10);
    let body = Body::from_stream(futures::StreamExt::map(stream, move |chunk| {
        let _keep = &tmp;
        chunk
    }));
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-netcdf".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response())
}
