//! The one error type at the HTTP boundary and the envelope every error response carries:
//! `{"code": "...", "message": "...", "id": "<request id>"}` (the OGC GeoDataCube error object).
//!
//! Handlers return [`ApiError`]; the [`envelope`] middleware fills in the request id, which the
//! handler does not know, and logs the cause of a 5xx once, with that id. Causes are never sent
//! to clients. [`ErrorCode`] is the one table of codes and their statuses.

use axum::Json;
use axum::extract::Request;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Header carrying the request id (echoed if the client sent one).
pub const REQUEST_ID: &str = "x-request-id";

/// Every error code the API answers, with its HTTP status in [`ErrorCode::status`] (one
/// exhaustive table, so a new code cannot be added without its status). Serialised in
/// `snake_case`; the OpenAPI error schema lists them as an enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A query or body parameter is malformed or out of range.
    InvalidParameter,
    /// The body is not valid JSON, has an unknown field or lacks a required one.
    InvalidBody,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// The body is larger than accepted.
    BodyTooLarge,
    /// A path segment is malformed.
    InvalidPath,
    /// A `Range` header cannot be satisfied.
    InvalidRange,
    /// No such resource.
    NotFound,
    /// No published dataset with this id.
    UnknownDataset,
    /// No configured extent with this id.
    UnknownExtent,
    /// No ingestion (run) with this id.
    UnknownIngestion,
    /// No template with this id.
    UnknownTemplate,
    /// No such version of the dataset.
    UnknownVersion,
    /// No process with this id.
    UnknownProcess,
    /// No job with this id (or not the caller's).
    UnknownJob,
    /// No stored feature collection with this id (or no such version of it).
    UnknownFeatureCollection,
    /// The job has not finished, so it has no results yet.
    ResultNotReady,
    /// The job failed; the message says why.
    JobFailed,
    /// The caller has as many unfinished jobs as allowed; wait for one to finish.
    TooManyJobs,
    /// The route needs credentials and none were sent.
    AuthenticationRequired,
    /// The credentials sent are not valid.
    InvalidCredentials,
    /// The credentials lack the scope the route needs.
    InsufficientScope,
    /// The method is not allowed on the resource.
    MethodNotAllowed,
    /// The run already finished, so it cannot be cancelled.
    AlreadyFinished,
    /// The version was pruned: it cannot be made current again.
    VersionPruned,
    /// The version is the current one: make another current first.
    VersionCurrent,
    /// A request with this `Idempotency-Key` is still being handled.
    IdempotencyKeyInUse,
    /// This `Idempotency-Key` was used for a different request.
    IdempotencyKeyReused,
    /// The selection is larger than answered synchronously.
    TooLarge,
    /// The principal sent too many requests.
    RateLimited,
    /// The client went away while its answer was being written.
    Cancelled,
    /// A bug or corrupt data; the cause is in the server log under the request id.
    InternalError,
    /// Every slot for this kind of request is taken; retry shortly.
    Busy,
    /// A backend (database, store, queue) is unavailable; retry later.
    ServiceUnavailable,
}

impl ErrorCode {
    /// The HTTP status of the code.
    #[must_use]
    pub const fn status(self) -> StatusCode {
        match self {
            Self::InvalidParameter | Self::InvalidBody | Self::InvalidPath | Self::Cancelled => {
                StatusCode::BAD_REQUEST
            }
            Self::AuthenticationRequired | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope => StatusCode::FORBIDDEN,
            Self::NotFound
            | Self::UnknownDataset
            | Self::UnknownExtent
            | Self::UnknownIngestion
            | Self::UnknownTemplate
            | Self::UnknownVersion
            | Self::UnknownProcess
            | Self::UnknownJob
            | Self::UnknownFeatureCollection
            | Self::ResultNotReady => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::AlreadyFinished
            | Self::IdempotencyKeyInUse
            | Self::VersionPruned
            | Self::VersionCurrent => StatusCode::CONFLICT,
            Self::BodyTooLarge | Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::InvalidRange => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited | Self::TooManyJobs => StatusCode::TOO_MANY_REQUESTS,
            Self::InternalError | Self::JobFailed => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Busy | Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Every code, for the table's tests and documentation.
    pub const ALL: &[Self] = &[
        Self::InvalidParameter,
        Self::InvalidBody,
        Self::UnsupportedMediaType,
        Self::BodyTooLarge,
        Self::InvalidPath,
        Self::InvalidRange,
        Self::NotFound,
        Self::UnknownDataset,
        Self::UnknownExtent,
        Self::UnknownIngestion,
        Self::UnknownTemplate,
        Self::UnknownVersion,
        Self::UnknownProcess,
        Self::UnknownJob,
        Self::UnknownFeatureCollection,
        Self::ResultNotReady,
        Self::JobFailed,
        Self::TooManyJobs,
        Self::AuthenticationRequired,
        Self::InvalidCredentials,
        Self::InsufficientScope,
        Self::MethodNotAllowed,
        Self::AlreadyFinished,
        Self::VersionPruned,
        Self::VersionCurrent,
        Self::IdempotencyKeyInUse,
        Self::IdempotencyKeyReused,
        Self::TooLarge,
        Self::RateLimited,
        Self::Cancelled,
        Self::InternalError,
        Self::Busy,
        Self::ServiceUnavailable,
    ];
}

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Stable machine-readable code; the status is the code's.
    pub code: ErrorCode,
    /// What is wrong and how to fix it.
    pub message: String,
    /// For 5xx answers: what failed, logged once (with the request id) by [`envelope`] and
    /// never sent to the client.
    pub cause: Option<String>,
}

/// The message, and for a 5xx its cause (for logs; the client sees only the message).
impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        match &self.cause {
            Some(cause) => write!(f, " ({cause})"),
            None => Ok(()),
        }
    }
}

/// The error body.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `invalid_parameter`.
    pub code: ErrorCode,
    /// Human-readable explanation telling the client how to fix the request.
    pub message: String,
    /// Request id, also in the `x-request-id` header and the server logs.
    pub id: String,
}

impl ApiError {
    /// An error with `code` (and its status).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            cause: None,
        }
    }

    /// The HTTP status.
    #[must_use]
    pub const fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// 400 with code `invalid_parameter`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameter, message)
    }

    /// 404 with the given code.
    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(code, message)
    }

    /// 500: the client gets an opaque message with the request id; the cause is logged.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self {
            cause: Some(cause.to_string()),
            ..Self::new(
                ErrorCode::InternalError,
                "internal error; quote the request id when reporting it",
            )
        }
    }

    /// 503: a backend is unavailable; the cause is logged.
    pub fn unavailable(what: &str, cause: impl std::fmt::Display) -> Self {
        Self {
            cause: Some(format!("{what}: {cause}")),
            ..Self::new(
                ErrorCode::ServiceUnavailable,
                format!("the {what} is temporarily unavailable; retry later"),
            )
        }
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
        let code = match r {
            JsonRejection::MissingJsonContentType(_) => ErrorCode::UnsupportedMediaType,
            JsonRejection::BytesRejection(_) => ErrorCode::BodyTooLarge,
            _ => ErrorCode::InvalidBody,
        };
        Self::new(code, format!("invalid request body: {}", r.body_text()))
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
    code: ErrorCode,
    message: String,
    cause: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = self.status().into_response();
        res.extensions_mut().insert(PendingError {
            code: self.code,
            message: self.message,
            cause: self.cause,
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
        Some(p) => {
            // 5xx causes are logged here, once, with the request id the client was given.
            match (p.code, &p.cause) {
                (ErrorCode::InternalError, cause) => {
                    tracing::error!(request_id = %id, error = cause.as_deref().unwrap_or(""), "internal error");
                }
                (_, Some(cause)) if status.is_server_error() => {
                    tracing::warn!(request_id = %id, error = %cause, "backend unavailable");
                }
                _ => {}
            }
            Some((p.code, p.message))
        }
        None if status == StatusCode::METHOD_NOT_ALLOWED => Some((
            ErrorCode::MethodNotAllowed,
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
        ErrorCode::NotFound,
        "no such resource; see /openapi.json for the available endpoints",
    )
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn every_code_has_a_client_or_server_error_status_and_a_distinct_name() {
        let mut names = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            let status = code.status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code:?}"
            );
            let name = serde_json::to_value(code).expect("serialises");
            assert!(names.insert(name.as_str().map(str::to_owned)), "{code:?}");
        }
        assert_eq!(names.len(), ErrorCode::ALL.len());
        assert_eq!(
            serde_json::to_value(ErrorCode::IdempotencyKeyReused).expect("serialises"),
            "idempotency_key_reused"
        );
    }
}
