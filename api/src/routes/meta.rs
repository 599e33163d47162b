//! Service endpoints: liveness, readiness, instance information, extents.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::state::AppState;

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves requests.
    pub status: &'static str,
}

/// `GET /health`: the process is alive.
#[utoipa::path(get, path = "/health", tag = "service", responses((status = 200, body = Health)))]
pub async fn get_health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness with one entry per backend.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready` or `unavailable`.
    pub status: &'static str,
    /// `ok` or the failure, per backend.
    pub checks: BTreeMap<&'static str, String>,
}

/// `GET /ready`: the database, queue, object store and cache answer.
#[utoipa::path(get, path = "/ready", tag = "service", responses(
    (status = 200, body = Ready, description = "every backend answers"),
    (status = 503, body = Ready, description = "at least one backend does not answer")
))]
pub async fn get_ready(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    let p = &state.platform;
    let timeout = std::time::Duration::from_secs(3);
    let check = |r: Result<Result<(), String>, tokio::time::error::Elapsed>| match r {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => e,
        Err(_) => "timed out".to_owned(),
    };
    let (db, queue, store, cache) = tokio::join!(
        tokio::time::timeout(timeout, async {
            p.db.ping().await.map_err(|e| e.to_string())
        }),
        tokio::time::timeout(timeout, async {
            p.queue.ping().await.map_err(|e| e.to_string())
        }),
        tokio::time::timeout(timeout, async {
            p.store.ping().await.map_err(|e| e.to_string())
        }),
        tokio::time::timeout(timeout, async {
            p.locks.ping().await.map_err(|e| e.to_string())
        }),
    );
    let checks = BTreeMap::from([
        ("database", check(db)),
        ("queue", check(queue)),
        ("store", check(store)),
        ("cache", check(cache)),
    ]);
    let ok = checks.values().all(|v| v == "ok");
    (
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(Ready {
            status: if ok { "ready" } else { "unavailable" },
            checks,
        }),
    )
}

/// `GET /info`: versions, deployment mode and backend kinds (never URLs or secrets).
#[utoipa::path(get, path = "/info", tag = "service", responses((status = 200, body = Object)))]
pub async fn get_info(State(state): State<AppState>) -> Json<Value> {
    let p = &state.platform;
    Json(json!({
        "name": p.config.name,
        "version": env!("CARGO_PKG_VERSION"),
        "mode": p.config.mode(),
        "backends": p.backends(),
        "templates": p.catalog.len(),
        "extents": p.config.extents.len(),
        "default_extent": p.config.default_extent().extent_id,
        "auth": {
            "enabled": p.config.auth.enabled,
            "protect_reads": p.config.auth.enabled && p.config.auth.protect_reads,
            "methods": if p.config.auth.enabled {
                let mut m = vec!["api_key", "basic"];
                if !p.config.auth.oidc.is_empty() {
                    m.push("oidc");
                }
                m
            } else {
                vec![]
            },
        },
    }))
}

/// `GET /metrics`: Prometheus exposition of this process (HTTP latency by route, queue depth,
/// tasks, runs, retries, downloads; in standalone mode also the worker's).
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, content_type = "text/plain", description = "Prometheus text format 0.0.4")))]
pub async fn get_metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    let p = &state.platform;
    let timeout = std::time::Duration::from_secs(2);
    if let Ok(Ok(depth)) = tokio::time::timeout(timeout, p.queue.depth()).await {
        metrics::gauge!("climate_queue_depth").set(depth as f64);
    }
    if let Ok(Ok(n)) =
        tokio::time::timeout(timeout, p.db.count_pending_outbox(chrono::Utc::now())).await
    {
        metrics::gauge!("climate_outbox_pending").set(n as f64);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// One configured extent.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExtentItem {
    /// Id.
    pub extent_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// WGS84 `[west, south, east, north]`.
    pub bbox: [f64; 4],
    /// Storage CRS.
    pub crs: String,
    /// ISO 3166-1 alpha-3 code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
}

/// The configured extents.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExtentList {
    /// Always `ExtentList`.
    pub kind: &'static str,
    /// Default extent id.
    pub default: String,
    /// Extents.
    pub items: Vec<ExtentItem>,
}

/// `GET /extent`: the areas this instance serves.
#[utoipa::path(get, path = "/extent", tag = "service", responses((status = 200, body = ExtentList)))]
pub async fn get_extent(State(state): State<AppState>) -> Json<ExtentList> {
    let c = &state.platform.config;
    Json(ExtentList {
        kind: "ExtentList",
        default: c.default_extent().extent_id.to_string(),
        items: c
            .extents
            .iter()
            .map(|e| ExtentItem {
                extent_id: e.extent_id.to_string(),
                name: e.name.clone(),
                description: e.description.clone(),
                bbox: e.bbox.to_array(),
                crs: e.storage_crs().to_string(),
                country_code: e.country_code.clone(),
            })
            .collect(),
    })
}
