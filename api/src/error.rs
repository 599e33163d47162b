//! The one error type at the HTTP boundary and the envelope every error response carries:
//! `{"code": "...", "message": "...", "id": "<request id>"}` (the OGC GeoDataCube error object).
//!
//! Handlers return [`ApiError`]; the [`envelope`] middleware fills in the request id, which the
//! handler does not know. Internal causes are logged once here and never sent to clients.

use axum::Json;
use axum::extract::Request;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Header carrying the request id (echoed if the client sent one).
pub const REQUEST_ID: &str = "x-request-id";

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// The error body.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `invalid_parameter`.
    pub code: String,
    /// Human-readable explanation telling the client how to fix the request.
    pub message: String,
    /// Request id, also in the `x-request-id` header and the server logs.
    pub id: String,
}

impl ApiError {
    /// 400 with code `invalid_parameter`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_parameter", message)
    }

    /// 404 with the given code.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// Any status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 500: the cause is logged, the client gets an opaque message with the request id.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error; quote the request id when reporting it",
        )
    }

    /// 503: a backend is unavailable.
    pub fn unavailable(what: &str, cause: impl std::fmt::Display) -> Self {
        tracing::warn!(backend = what, error = %cause, "backend unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            format!("the {what} is temporarily unavailable; retry later"),
        )
    }
}

impl From<climate_infra::db::DbError> for ApiError {
    fn from(e: climate_infra::db::DbError) -> Self {
        if e.is_unavailable() {
            Self::unavailable("database", e)
        } else {
            Self::internal(e)
        }
    }
}

impl From<climate_catalog::CatalogError> for ApiError {
    fn from(e: climate_catalog::CatalogError) -> Self {
        use climate_catalog::CatalogError as E;
        match e {
            E::UnknownDataset(id) => crate::views::unknown_dataset(&id),
            E::Selection(message) => Self::bad_request(message),
            E::Store(cause) => Self::unavailable("object store", cause),
            E::Db(e) => e.into(),
            e @ (E::Metadata { .. } | E::Internal(_)) => Self::internal(e),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = match r {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(
            status,
            "invalid_body",
            format!("invalid request body: {}", r.body_text()),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(format!("invalid query string: {}", r.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request(format!("invalid path: {}", r.body_text()))
    }
}

/// Marker carried from [`ApiError::into_response`] to [`envelope`].
#[derive(Debug, Clone)]
struct PendingError {
    code: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = self.status.into_response();
        res.extensions_mut().insert(PendingError {
            code: self.code,
            message: self.message,
        });
        res
    }
}

/// Assigns the request id and writes error envelopes (including for errors the router itself
/// produces, such as unknown routes and methods).
pub async fn envelope(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let mut res = next.run(req).await;
    let pending = res.extensions_mut().remove::<PendingError>();
    let status = res.status();
    let error = match pending {
        Some(p) => Some((p.code.to_owned(), p.message)),
        None if status == StatusCode::METHOD_NOT_ALLOWED => Some((
            "method_not_allowed".to_owned(),
            format!("method {method} is not allowed on this resource"),
        )),
        _ => None,
    };
    if let Some((code, message)) = error {
        let headers = std::mem::take(res.headers_mut());
        let body = ErrorBody {
            code,
            message,
            id: id.clone(),
        };
        res = (status, Json(body)).into_response();
        for (k, v) in &headers {
            if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
                res.headers_mut().insert(k.clone(), v.clone());
            }
        }
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    res
}

/// Records the latency and status of every request by method and route pattern (never by
/// concrete path, which would make unbounded label sets).
pub async fn observe(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::histogram!("climate_http_request_duration_seconds", "method" => method.clone(), "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("climate_http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    res
}

/// The id of the request being handled.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Fallback for unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::not_found(
        "not_found",
        "no such resource; see /openapi.json for the available endpoints",
    )
}
