//! Stored feature collections (districts and other areas): uploaded as GeoJSON, validated,
//! kept as immutable numbered versions, named by processes (`feature_collection`).
//! Geometries are only ever uploaded: the platform never fetches one from a URL.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use climate_infra::db::FeatureCollectionRecord;
use climate_processes::features;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::state::{AppState, BaseUrl};
use crate::views::Link;

/// Largest GeoJSON upload (a country's detailed boundaries fit).
pub const UPLOAD_LIMIT: usize = 64 * 1024 * 1024;

const GEOJSON: &str = "application/geo+json";

/// A stored version of a feature collection.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeatureCollectionSummary {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// This version (the latest in listings).
    pub version: u32,
    /// Features in it.
    pub feature_count: u64,
    /// West, south, east, north (WGS84).
    pub bbox: [f64; 4],
    /// Stored at (RFC 3339).
    pub created: String,
    /// Who uploaded it.
    pub uploaded_by: String,
    /// Hex SHA-256 of the stored GeoJSON.
    pub sha256: String,
    /// `self` (this version's GeoJSON).
    pub links: Vec<Link>,
}

fn summary(r: &FeatureCollectionRecord, base: &BaseUrl) -> FeatureCollectionSummary {
    FeatureCollectionSummary {
        id: r.collection_id.clone(),
        title: r.title.clone(),
        version: r.version,
        feature_count: r.feature_count,
        bbox: r.bbox,
        created: r
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        uploaded_by: r.principal.clone(),
        sha256: r.sha256.clone(),
        links: vec![Link::typed(
            "self",
            base.join(&format!(
                "/features/{}?version={}",
                r.collection_id, r.version
            )),
            GEOJSON,
        )],
    }
}

/// The stored feature collections.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeatureCollectionList {
    /// The latest version of each, by id.
    pub collections: Vec<FeatureCollectionSummary>,
}

/// `GET /features`: every stored collection, at its latest version.
#[utoipa::path(get, path = "/features", tag = "features",
    responses((status = 200, body = FeatureCollectionList)))]
pub async fn list_features(
    State(state): State<AppState>,
    base: BaseUrl,
) -> Result<Json<FeatureCollectionList>, ApiError> {
    let collections = state
        .platform
        .db
        .list_feature_collections()
        .await?
        .iter()
        .map(|r| summary(r, &base))
        .collect();
    Ok(Json(FeatureCollectionList { collections }))
}

/// Options of an upload.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The collection's id (else the FeatureCollection's top-level `id` member).
    pub id: Option<String>,
    /// A title (default: the id; else the FeatureCollection's `title` or `name` member).
    pub title: Option<String>,
}

/// `POST /features`: stores a GeoJSON FeatureCollection (WGS84 Polygon and MultiPolygon
/// features) as the next version of its id. A geometry that is not valid — a ring crossing
/// itself included — is a 400 naming the feature. The same GeoJSON as the latest version
/// stores nothing and answers that version (200).
#[utoipa::path(post, path = "/features", tag = "features",
    params(UploadQuery),
    request_body(content = Object, content_type = "application/geo+json",
        description = "A GeoJSON FeatureCollection; each feature's `id` names its result rows"),
    responses((status = 201, body = FeatureCollectionSummary, description = "Stored as a new version; `Location` names the collection"),
              (status = 200, body = FeatureCollectionSummary, description = "The same as the latest version, which is answered"),
              (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn upload_features(
    State(state): State<AppState>,
    base: BaseUrl,
    principal: Option<axum::Extension<Principal>>,
    query: Result<Query<UploadQuery>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let bytes = axum::body::to_bytes(body, UPLOAD_LIMIT).await.map_err(|_| {
        ApiError::new(
            ErrorCode::BodyTooLarge,
            format!(
                "the upload is larger than {} MiB: simplify the geometries (e.g. `ogr2ogr -simplify`) or split the collection",
                UPLOAD_LIMIT >> 20
            ),
        )
    })?;
    let collection: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidBody,
            format!("the body is not JSON ({e}): send a GeoJSON FeatureCollection"),
        )
    })?;
    let member = |name: &str| collection.get(name).and_then(Value::as_str);
    let id = q.id.as_deref().or_else(|| member("id")).ok_or_else(|| {
        ApiError::bad_request(
            "id: name the collection, as `POST /features?id=districts` or a top-level \"id\" member of the FeatureCollection",
        )
    })?;
    let title = q
        .title
        .as_deref()
        .or_else(|| member("title"))
        .or_else(|| member("name"));
    let who = Principal::subject_of(principal.as_ref().map(|p| &p.0));
    // Checking every ring of a large upload is CPU work: off the request threads.
    let (id, title) = (id.to_owned(), title.map(str::to_owned));
    let new = tokio::task::spawn_blocking(move || {
        features::prepare(&id, title.as_deref(), &collection, &who, Utc::now())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (record, created) = state.platform.db.put_feature_collection(&new).await?;
    tracing::info!(
        collection = %record.collection_id,
        version = record.version,
        features = record.feature_count,
        created,
        "feature collection stored"
    );
    let mut headers = HeaderMap::new();
    let location = base.join(&format!("/features/{}", record.collection_id));
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).map_err(ApiError::internal)?,
    );
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, headers, Json(summary(&record, &base))).into_response())
}

/// Which version to read.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VersionQuery {
    /// A version number (default: the latest).
    pub version: Option<u32>,
}

/// `GET /features/{id}`: a version's GeoJSON (the latest unless `?version=`), with the
/// collection's `id`, `title`, `version`, `bbox` and every version's summary (`versions`) as
/// foreign members.
#[utoipa::path(get, path = "/features/{id}", tag = "features",
    params(("id" = String, Path, description = "collection id"), VersionQuery),
    responses((status = 200, content_type = "application/geo+json", description = "The FeatureCollection"),
              (status = 404, body = ErrorBody)))]
pub async fn get_features(
    State(state): State<AppState>,
    base: BaseUrl,
    Path(id): Path<String>,
    query: Result<Query<VersionQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let db = &state.platform.db;
    let (record, text) = db
        .get_feature_collection(&id, q.version)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                ErrorCode::UnknownFeatureCollection,
                match q.version {
                    Some(v) => format!(
                        "feature collection '{id}' has no version {v}; GET /features/{id} lists its versions"
                    ),
                    None => format!(
                        "no feature collection '{id}'; GET /features lists them, POST /features stores one"
                    ),
                },
            )
        })?;
    let mut doc: Value = serde_json::from_str(&text).map_err(ApiError::internal)?;
    let versions: Vec<FeatureCollectionSummary> = db
        .feature_collection_versions(&id)
        .await?
        .iter()
        .map(|r| summary(r, &base))
        .collect();
    let versions_count = versions.len();
    if let Some(o) = doc.as_object_mut() {
        o.insert("id".into(), record.collection_id.clone().into());
        o.insert("title".into(), record.title.clone().into());
        o.insert("version".into(), record.version.into());
        o.insert("bbox".into(), serde_json::json!(record.bbox));
        o.insert(
            "versions".into(),
            serde_json::to_value(versions).map_err(ApiError::internal)?,
        );
    }
    // The document changes with the version read and with the list of versions.
    let etag = format!("\"{}-{}\"", record.sha256, versions_count);
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(GEOJSON)),
            (
                header::ETAG,
                HeaderValue::from_str(&etag).map_err(ApiError::internal)?,
            ),
        ],
        doc.to_string(),
    )
        .into_response())
}
