//! Every route, in one place.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method, header};
use axum::routing::get;
use tower_http::cors::{Any, CorsLayer};
use utoipa::OpenApi;

use crate::openapi::ApiDoc;
use crate::routes::{
    credentials, datasets, download, ingestions, meta, ogcapi, stac, sync, templates, zarr,
};
use crate::state::AppState;
use crate::{auth, error, idempotency};

/// Request bodies are small JSON documents.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Builds the application router.
pub fn router(state: AppState) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(Any)
        .expose_headers([
            header::LOCATION,
            header::LINK,
            header::ETAG,
            header::CONTENT_RANGE,
            header::CONTENT_LENGTH,
            header::ACCEPT_RANGES,
            HeaderName::from_static(error::REQUEST_ID),
        ]);
    Router::new()
        .route("/health", get(meta::get_health))
        .route("/ready", get(meta::get_ready))
        .route("/info", get(meta::get_info))
        .route("/metrics", get(meta::get_metrics))
        .route("/extent", get(meta::get_extent))
        .route("/dataset-templates", get(templates::list_templates))
        .route("/dataset-templates/{id}", get(templates::get_template))
        .route(
            "/ingestions",
            get(ingestions::list_ingestions).post(ingestions::create_ingestion),
        )
        .route(
            "/ingestions/{id}",
            get(ingestions::get_ingestion).delete(ingestions::cancel_ingestion),
        )
        .route("/ingestions/{id}/events", get(ingestions::ingestion_events))
        .route("/credentials/basic", get(credentials::basic))
        .route("/credentials/oidc", get(credentials::oidc))
        .route("/me", get(credentials::me))
        .route("/datasets", get(datasets::list_datasets))
        .route("/datasets/{id}", get(datasets::get_dataset))
        .route("/datasets/{id}/download", get(download::download))
        .route("/ogcapi", get(ogcapi::common::landing))
        .route("/ogcapi/conformance", get(ogcapi::common::conformance))
        .route("/ogcapi/collections", get(ogcapi::common::collections))
        .route("/ogcapi/collections/{id}", get(ogcapi::common::collection))
        .route(
            "/ogcapi/collections/{id}/coverage",
            get(ogcapi::coverages::coverage),
        )
        .route(
            "/ogcapi/collections/{id}/coverage/domainset",
            get(ogcapi::coverages::domainset),
        )
        .route(
            "/ogcapi/collections/{id}/coverage/rangetype",
            get(ogcapi::coverages::rangetype),
        )
        .route(
            "/ogcapi/collections/{id}/position",
            get(ogcapi::edr::position),
        )
        .route("/ogcapi/collections/{id}/area", get(ogcapi::edr::area))
        .route(
            "/ogcapi/collections/{id}/map/tiles",
            get(ogcapi::tiles::tilesets),
        )
        .route(
            "/ogcapi/collections/{id}/map/tiles/WebMercatorQuad/{z}/{y}/{x}",
            get(ogcapi::tiles::tile),
        )
        .route("/sync/{id}", axum::routing::post(sync::run_sync))
        .route(
            "/datasets/{id}/schedule",
            get(sync::get_schedule).patch(sync::patch_schedule),
        )
        .route("/sync/{id}/plan", get(sync::plan))
        .route("/stac", get(stac::get_catalog))
        .route("/stac/catalog.json", get(stac::get_catalog))
        .route("/stac/conformance", get(stac::conformance))
        .route("/stac/collections", get(stac::list_collections))
        .route("/stac/collections/{id}", get(stac::get_collection))
        .route(
            "/datasets/{id}/versions/{n}/zarr",
            get(zarr::list_version_zarr),
        )
        .route(
            "/datasets/{id}/versions/{n}/zarr/{*path}",
            get(zarr::get_version_zarr_object),
        )
        .route("/zarr/{id}", get(zarr::list_zarr))
        .route("/zarr/{id}/{*path}", get(zarr::get_zarr_object))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(ApiDoc::openapi()) }),
        )
        // Inner first: idempotency sees the authenticated caller.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotent,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn(error::observe))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(error::envelope))
        .layer(cors)
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(
                    |res: &axum::response::Response,
                     _: std::time::Duration,
                     span: &tracing::Span| {
                        span.record("http.response.status_code", res.status().as_u16());
                        if res.status().is_server_error() {
                            span.record("otel.status_code", "error");
                        }
                    },
                ),
        )
        .with_state(state)
}

/// The span of one request, named `METHOD /route/{pattern}` (OpenTelemetry's HTTP server
/// conventions). It continues the caller's trace when the request carries a `traceparent`
/// header, so a client's trace, the API's request and the worker tasks it causes join up.
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str());
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{} {route}", req.method()),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %req.method(),
        http.route = route,
        url.path = req.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    let context: climate_infra::queue::Headers = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|k| {
            Some((
                k.to_owned(),
                req.headers().get(k)?.to_str().ok()?.to_owned(),
            ))
        })
        .collect();
    climate_infra::telemetry::set_parent(&span, &context);
    span
}
