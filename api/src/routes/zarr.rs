//! `/zarr`: the stored bytes of a dataset's current version, for Zarr clients (xarray,
//! zarr-python, zarrita.js) reading over HTTP.
//!
//! Objects of a version never change, so an object is identified by its version's artifact and
//! its path: that is the strong `ETag`. The URL itself follows the current version, so responses
//! are revalidated (`no-cache`) rather than cached blindly.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Timelike;
use climate_infra::db::VersionRecord;
use object_store::path::Path as StorePath;
use object_store::{GetOptions, GetRange, ObjectStoreExt};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::state::{AppState, BaseUrl};
use crate::views::{current_version, sees_unpublished, visible_dataset};

/// An entry of a store listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct ZarrEntry {
    /// Object or directory name.
    pub name: String,
    /// `file` or `directory`.
    pub kind: &'static str,
    /// Absolute URL.
    pub href: String,
    /// Size in bytes (files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// Top-level listing of a dataset's store.
#[derive(Debug, Serialize, ToSchema)]
pub struct ZarrListing {
    /// Always `ZarrListing`.
    pub kind: &'static str,
    /// Dataset id.
    pub dataset_id: String,
    /// Listed path (empty for the root).
    pub path: String,
    /// Entries.
    pub entries: Vec<ZarrEntry>,
}

async fn current(
    state: &AppState,
    id: &str,
    principal: Option<&Principal>,
) -> Result<VersionRecord, ApiError> {
    current_version(state, id, sees_unpublished(principal))
        .await
        .map(|(_, v)| v)
}

/// `GET /zarr/{id}`: the entries at the root of the current version's store.
#[utoipa::path(get, path = "/zarr/{id}", tag = "zarr",
    params(("id" = String, Path, description = "dataset id")),
    responses((status = 200, body = ZarrListing), (status = 404, body = ErrorBody)))]
pub async fn list_zarr(
    State(state): State<AppState>,
    base: BaseUrl,
    principal: Option<axum::Extension<Principal>>,
    Path(id): Path<String>,
) -> Result<Json<ZarrListing>, ApiError> {
    let v = current(&state, &id, principal.as_ref().map(|p| &p.0)).await?;
    listing(&state, &base, &v, &format!("/zarr/{id}")).await
}

/// The root entries of a version's store, with links under `route`.
async fn listing(
    state: &AppState,
    base: &BaseUrl,
    v: &VersionRecord,
    route: &str,
) -> Result<Json<ZarrListing>, ApiError> {
    let os = state.platform.store.object_store();
    let prefix = StorePath::from(v.storage_prefix.as_str());
    let listing = os
        .list_with_delimiter(Some(&prefix))
        .await
        .map_err(|e| ApiError::unavailable("object store", e))?;
    let mut entries: Vec<ZarrEntry> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_owned))
        .map(|name| ZarrEntry {
            href: base.join(&format!("{route}/{name}")),
            name,
            kind: "directory",
            size: None,
        })
        .chain(listing.objects.iter().filter_map(|o| {
            let name = o.location.filename()?.to_owned();
            Some(ZarrEntry {
                href: base.join(&format!("{route}/{name}")),
                name,
                kind: "file",
                size: Some(o.size),
            })
        }))
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(ZarrListing {
        kind: "ZarrListing",
        dataset_id: v.dataset_id.to_string(),
        path: String::new(),
        entries,
    }))
}

/// Accepts only plain relative keys: no empty, `.` or `..` segments, no backslashes or control
/// characters. Everything a Zarr v3 store contains passes.
fn validate_key(path: &str) -> Result<(), ApiError> {
    if climate_domain::ids::is_store_key(path) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidPath,
            format!(
                "'{path}' is not a valid store key: use '/'-separated names without '.', '..' or empty segments"
            ),
        ))
    }
}

/// A parsed single `Range: bytes=…` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteRange {
    /// `a-b` (inclusive) or `a-`.
    From(u64, Option<u64>),
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// Parses a `Range` header. `Ok(None)` means "serve the whole object" (absent header, other
/// units or several ranges, which RFC 9110 lets a server ignore).
fn parse_range(h: Option<&HeaderValue>) -> Result<Option<ByteRange>, ()> {
    let Some(v) = h.and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        return if n == 0 {
            Err(())
        } else {
            Ok(Some(ByteRange::Suffix(n)))
        };
    }
    let start: u64 = a.parse().map_err(|_| ())?;
    let end = if b.is_empty() {
        None
    } else {
        Some(b.parse::<u64>().map_err(|_| ())?)
    };
    if end.is_some_and(|e| e < start) {
        return Err(());
    }
    Ok(Some(ByteRange::From(start, end)))
}

/// Resolves a range against the object size: `Some(start..end)` (exclusive end) or `None` when
/// unsatisfiable.
fn resolve(range: ByteRange, size: u64) -> Option<std::ops::Range<u64>> {
    match range {
        ByteRange::Suffix(n) => (size > 0).then(|| size.saturating_sub(n)..size),
        ByteRange::From(start, end) => {
            (start < size).then(|| start..end.map_or(size, |e| (e + 1).min(size)))
        }
    }
}

/// FNV-1a: a stable hash for ETags (the std hasher may change between releases).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Objects up to this size are read in one piece (one blocking read on a local store) rather
/// than streamed in small chunks.
const READ_WHOLE: u64 = 16 << 20;

/// Serves one object of a version with conditional and range support.
///
/// The common case, a plain GET of a chunk, costs one store request: the ETag is computed from
/// the artifact and key (objects never change), so `If-None-Match` is answered without touching
/// the store, and the object's metadata comes with its bytes. HEAD and ranged GETs look the
/// object's size up first.
pub async fn serve_object(
    state: &AppState,
    version: &VersionRecord,
    key: &str,
    method: &Method,
    headers: &HeaderMap,
    cache_control: &'static str,
) -> Result<Response, ApiError> {
    validate_key(key)?;
    let immutable = cache_control.contains("immutable");
    let not_found = || {
        ApiError::not_found(
            ErrorCode::NotFound,
            format!("no object '{key}' in dataset '{}'", version.dataset_id),
        )
    };
    let os = state.platform.store.object_store();
    // An appended version holds its new objects; the rest are its bases' (newest first).
    let bases = climate_catalog::VersionMetadata::of(version)?.bases;
    let mut locations = std::iter::once(version.storage_prefix.clone())
        .chain(bases)
        .map(|p| StorePath::from(format!("{p}/{key}")))
        .peekable();
    let etag = format!("\"{:016x}\"", fnv1a(&[&version.artifact_id, key]));
    let content_type = if key == "zarr.json" || key.ends_with("/zarr.json") {
        "application/json"
    } else {
        "application/octet-stream"
    };
    let mut out = HeaderMap::new();
    out.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).map_err(ApiError::internal)?,
    );
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));

    // Weak comparison (RFC 9110 §13.1.2): a `W/` prefix added on the way still matches.
    let same_etag = |t: &str| t.trim().trim_start_matches("W/") == etag;
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if let Some(v) = if_none_match {
        // Only this object ever had this ETag, so a match needs no store access.
        if v.split(',').any(same_etag) {
            return Ok((StatusCode::NOT_MODIFIED, out).into_response());
        }
    }
    // Range applies to GET only; with If-Range, only while the client's copy is this object.
    let ranged = *method == Method::GET
        && headers.contains_key(header::RANGE)
        && headers
            .get(header::IF_RANGE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.trim() == etag);
    let (location, meta, result) = loop {
        let Some(location) = locations.next() else {
            return Err(not_found());
        };
        let found = if *method == Method::HEAD || ranged {
            os.head(&location).await.map(|m| (m, None))
        } else {
            os.get_opts(&location, GetOptions::default())
                .await
                .map(|r| (r.meta.clone(), Some(r)))
        };
        match found {
            Ok((m, r)) => break (location, m, r),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(ApiError::unavailable("object store", e)),
        }
    };

    // Objects are written once, so their store time is their last modification.
    let modified = meta
        .last_modified
        .with_nanosecond(0)
        .unwrap_or(meta.last_modified);
    out.insert(
        header::LAST_MODIFIED,
        HeaderValue::from_str(&modified.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
            .map_err(ApiError::internal)?,
    );
    // `If-None-Match: *` matches any existing object.
    if if_none_match.is_some_and(|v| v.trim() == "*") {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    // If-Modified-Since counts only without If-None-Match (RFC 9110 §13.1.3), and only for a
    // pinned version: under /zarr/{id} the current version can move back to older objects
    // (a rollback), so a date comparison could keep a stale copy.
    let unmodified = immutable
        && if_none_match.is_none()
        && headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .is_some_and(|since| modified <= since);
    if unmodified {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }

    let size = meta.size;
    let range_header = if ranged {
        headers.get(header::RANGE)
    } else {
        None
    };
    let range = match parse_range(range_header) {
        Ok(None) => None,
        Ok(Some(r)) => match resolve(r, size) {
            Some(r) => Some(r),
            None => {
                out.insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{size}"))
                        .map_err(ApiError::internal)?,
                );
                return Ok((StatusCode::RANGE_NOT_SATISFIABLE, out).into_response());
            }
        },
        Err(()) => {
            let mut e = ApiError::new(
                ErrorCode::InvalidRange,
                "Range must be 'bytes=START-END', 'bytes=START-' or 'bytes=-SUFFIX'",
            )
            .into_response();
            e.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).map_err(ApiError::internal)?,
            );
            return Ok(e);
        }
    };
    let (status, len) = match &range {
        Some(r) => {
            out.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end - 1))
                    .map_err(ApiError::internal)?,
            );
            (StatusCode::PARTIAL_CONTENT, r.end - r.start)
        }
        None => (StatusCode::OK, size),
    };
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if method == Method::HEAD {
        return Ok((status, out).into_response());
    }
    let result = match result {
        // A ranged GET (or a plain Range header we chose to ignore) fetches now.
        Some(r) if range.is_none() => r,
        _ => {
            let opts = GetOptions {
                range: range.map(GetRange::Bounded),
                ..GetOptions::default()
            };
            os.get_opts(&location, opts)
                .await
                .map_err(|e| ApiError::unavailable("object store", e))?
        }
    };
    let body = if len <= READ_WHOLE {
        Body::from(
            result
                .bytes()
                .await
                .map_err(|e| ApiError::unavailable("object store", e))?,
        )
    } else {
        Body::from_stream(result.into_stream())
    };
    Ok((status, out, body).into_response())
}

/// `GET|HEAD /zarr/{id}/{path}`: one object of the current version.
#[utoipa::path(get, path = "/zarr/{id}/{path}", tag = "zarr",
    params(("id" = String, Path, description = "dataset id"),
           ("path" = String, Path, description = "store key, e.g. zarr.json or t2m/c/0/0/0")),
    responses((status = 200, description = "the object's bytes"),
              (status = 206, description = "the requested byte range"),
              (status = 304, description = "not modified"),
              (status = 404, body = ErrorBody), (status = 416, description = "range not satisfiable")))]
pub async fn get_zarr_object(
    State(state): State<AppState>,
    principal: Option<axum::Extension<Principal>>,
    method: Method,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Path((id, key)) = path?;
    let v = current(&state, &id, principal.as_ref().map(|p| &p.0)).await?;
    serve_object(&state, &v, &key, &method, &headers, "no-cache").await
}

/// A pinned version of a dataset the caller may see.
pub(crate) async fn pinned(
    state: &AppState,
    id: &str,
    n: i64,
    principal: Option<&Principal>,
) -> Result<VersionRecord, ApiError> {
    let db = &state.platform.db;
    let ds = visible_dataset(state, id, sees_unpublished(principal)).await?;
    db.get_version(&ds.dataset_id, n)
        .await?
        .filter(|v| v.pruned_at.is_none() && (!v.held || sees_unpublished(principal)))
        .ok_or_else(|| {
            ApiError::not_found(
                ErrorCode::UnknownVersion,
                format!("dataset '{id}' has no version {n}; GET /datasets/{id} lists its versions"),
            )
        })
}

/// `GET /datasets/{id}/versions/{n}/zarr`: the entries at the root of a pinned version.
#[utoipa::path(get, path = "/datasets/{id}/versions/{n}/zarr", tag = "zarr",
    params(("id" = String, Path, description = "dataset id"),
           ("n" = i64, Path, description = "version number")),
    responses((status = 200, body = ZarrListing), (status = 404, body = ErrorBody)))]
pub async fn list_version_zarr(
    State(state): State<AppState>,
    base: BaseUrl,
    principal: Option<axum::Extension<Principal>>,
    path: Result<Path<(String, i64)>, axum::extract::rejection::PathRejection>,
) -> Result<Json<ZarrListing>, ApiError> {
    let Path((id, n)) = path?;
    let v = pinned(&state, &id, n, principal.as_ref().map(|p| &p.0)).await?;
    listing(
        &state,
        &base,
        &v,
        &format!("/datasets/{id}/versions/{n}/zarr"),
    )
    .await
}

/// `GET|HEAD /datasets/{id}/versions/{n}/zarr/{path}`: one object of a pinned version. A
/// version never changes, so every object is served `immutable` (cacheable for a year).
#[utoipa::path(get, path = "/datasets/{id}/versions/{n}/zarr/{path}", tag = "zarr",
    params(("id" = String, Path, description = "dataset id"),
           ("n" = i64, Path, description = "version number"),
           ("path" = String, Path, description = "store key")),
    responses((status = 200, description = "the object's bytes"),
              (status = 206, description = "the requested byte range"),
              (status = 304, description = "not modified"),
              (status = 404, body = ErrorBody)))]
pub async fn get_version_zarr_object(
    State(state): State<AppState>,
    principal: Option<axum::Extension<Principal>>,
    method: Method,
    headers: HeaderMap,
    path: Result<Path<(String, i64, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Path((id, n, key)) = path?;
    let v = pinned(&state, &id, n, principal.as_ref().map(|p| &p.0)).await?;
    serve_object(
        &state,
        &v,
        &key,
        &method,
        &headers,
        "public, max-age=31536000, immutable",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_resolve() {
        let h = |s: &str| HeaderValue::from_str(s).expect("header");
        assert_eq!(
            parse_range(Some(&h("bytes=0-9"))),
            Ok(Some(ByteRange::From(0, Some(9))))
        );
        assert_eq!(
            parse_range(Some(&h("bytes=-16"))),
            Ok(Some(ByteRange::Suffix(16)))
        );
        assert_eq!(
            parse_range(Some(&h("bytes=5-"))),
            Ok(Some(ByteRange::From(5, None)))
        );
        assert_eq!(parse_range(Some(&h("bytes=0-1,4-5"))), Ok(None));
        assert!(parse_range(Some(&h("bytes=9-1"))).is_err());
        assert!(parse_range(Some(&h("bytes=-0"))).is_err());
        assert_eq!(resolve(ByteRange::Suffix(16), 10), Some(0..10));
        assert_eq!(resolve(ByteRange::From(5, Some(100)), 10), Some(5..10));
        assert_eq!(resolve(ByteRange::From(10, None), 10), None);
    }

    #[test]
    fn keys_are_validated() {
        for ok in ["zarr.json", "t2m/c/0/0/0", "t/zarr.json"] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a//b", "/abs", "a/./b", "a\\b", "a b"] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }
}
