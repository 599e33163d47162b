//! `Idempotency-Key` on POST requests: a retry with the same key and the same request gets the
//! first answer again (header `Idempotent-Replayed: true`) instead of acting twice; the same
//! key with a different request is refused (422), and so is a retry while the first request is
//! still being handled (409). Keys belong to the caller and are remembered for 24 hours.
//!
//! Only successful (2xx) answers are remembered: after an error the key is free again, so a
//! corrected or later retry is handled afresh. A key whose first request never finished (its
//! process died) is taken over after [`ABANDONED_AFTER`].

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use climate_infra::db::IdempotencyBegin;
use climate_infra::housekeeping::IDEMPOTENCY_RETENTION;
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Set on replayed answers.
pub const REPLAYED: &str = "idempotent-replayed";
/// An in-flight key older than this is taken over.
pub const ABANDONED_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// Largest request or answer body handled (request bodies are limited to this anyway).
const MAX_BODY: usize = crate::router::BODY_LIMIT;

/// A remembered answer.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    content_type: Option<String>,
    location: Option<String>,
    body: String,
}

fn fingerprint(method: &Method, uri: &str, body: &[u8]) -> String {
    climate_infra::auth::sha256_hex(&[
        method.as_str().as_bytes(),
        b" ",
        uri.as_bytes(),
        b"\n",
        body,
    ])
}

/// The middleware (on routed requests, after authentication).
pub async fn idempotent(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    let key = match key.to_str() {
        Ok(k) if (1..=255).contains(&k.len()) && k.chars().all(|c| c.is_ascii_graphic()) => {
            k.to_owned()
        }
        _ => {
            return ApiError::bad_request(
                "Idempotency-Key: use 1 to 255 visible ASCII characters, e.g. a UUID",
            )
            .into_response();
        }
    };
    let principal = Principal::subject_of(req.extensions().get::<Principal>());
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::new(
            ErrorCode::BodyTooLarge,
            format!("request body larger than {MAX_BODY} bytes"),
        )
        .into_response();
    };
    let uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let print = fingerprint(&parts.method, &uri, &bytes);
    let db = &state.platform.db;
    let now = Utc::now();
    let begin = db
        .idempotency_begin(
            &principal,
            &key,
            &print,
            now,
            now - ABANDONED_AFTER,
            now - IDEMPOTENCY_RETENTION,
        )
        .await;
    match begin {
        Err(e) => ApiError::from(e).into_response(),
        Ok(IdempotencyBegin::InFlight) => ApiError::new(
            ErrorCode::IdempotencyKeyInUse,
            "a request with this Idempotency-Key is still being handled; retry in a moment",
        )
        .into_response(),
        Ok(IdempotencyBegin::Mismatch) => ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used for a different request; use a new key for a new request",
        )
        .into_response(),
        Ok(IdempotencyBegin::Replay { status, response }) => replay(status, &response),
        Ok(IdempotencyBegin::Started) => {
            let res = next.run(Request::from_parts(parts, Body::from(bytes))).await;
            remember(&state, &principal, &key, res).await
        }
    }
}

fn replay(status: u16, stored: &str) -> Response {
    let Ok(stored) = serde_json::from_str::<Stored>(stored) else {
        return ApiError::internal("undecodable idempotency record").into_response();
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut res = (status, stored.body).into_response();
    let headers = res.headers_mut();
    let mut set = |name: HeaderName, value: Option<String>| {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, v);
        }
    };
    set(header::CONTENT_TYPE, stored.content_type);
    set(header::LOCATION, stored.location);
    headers.insert(REPLAYED, HeaderValue::from_static("true"));
    res
}

/// Stores a successful answer for replay (and hands it on); frees the key otherwise.
async fn remember(state: &AppState, principal: &str, key: &str, res: Response) -> Response {
    let db = &state.platform.db;
    let free = || async {
        if let Err(e) = db.idempotency_abort(principal, key).await {
            tracing::warn!(error = %e, "could not free an idempotency key");
        }
    };
    if !res.status().is_success() {
        free().await;
        return res;
    }
    let (parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        free().await;
        return ApiError::internal("answer too large to remember").into_response();
    };
    let text = |h: &HeaderName| {
        parts
            .headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let stored = Stored {
        content_type: text(&header::CONTENT_TYPE),
        location: text(&header::LOCATION),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    };
    let saved = match serde_json::to_string(&stored) {
        Ok(json) => {
            db.idempotency_finish(principal, key, parts.status.as_u16(), &json)
                .await
        }
        Err(e) => Err(climate_infra::db::DbError::Corrupt(e.to_string())),
    };
    if let Err(e) = saved {
        // The action happened; a retry will be handled afresh once the key is taken over,
        // and coalescing keeps it from starting a second run.
        tracing::warn!(error = %e, "could not remember an idempotent answer");
    }
    Response::from_parts(parts, Body::from(bytes))
}
