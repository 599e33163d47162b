//! Every route, in one place: [`ROUTES`] is the list the router, the OpenAPI document and
//! the authorisation guard all read.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method, header};
use climate_domain::auth::Access;
use tower_http::cors::{Any, CorsLayer};

use crate::routes::{
    catalog, credentials, datasets, download, features, ingestions, meta, ogcapi, processes, stac,
    sync, templates, zarr,
};
use crate::state::AppState;
use crate::{auth, error, idempotency};

/// One route of the API: method, path (axum syntax) and who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// `GET`, `POST`, …
    pub method: &'static str,
    /// The path pattern, as the router matches it (`/zarr/{id}/{*path}`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
}

/// The one route list: each entry is wired into the router, described in the OpenAPI
/// document (from the handler's `utoipa::path`), and guarded by the access it declares.
/// Routes under `undocumented` are served and guarded but not described (aliases of a
/// documented route, the document itself).
macro_rules! api_routes {
    (
        documented {
            $( $method:ident $path:literal => $handler:path, $access:ident; )*
        }
        undocumented {
            $( $umethod:ident $upath:literal => $uhandler:path, $uaccess:ident; )*
        }
    ) => {
        /// Every route, with its access.
        pub const ROUTES: &[RouteSpec] = &[
            $( RouteSpec {
                method: const_upper(stringify!($method)),
                path: $path,
                access: Access::$access,
            }, )*
            $( RouteSpec {
                method: const_upper(stringify!($umethod)),
                path: $upath,
                access: Access::$uaccess,
            }, )*
        ];

        fn add_routes(router: Router<AppState>) -> Router<AppState> {
            router
                $( .route($path, axum::routing::$method($handler)) )*
                $( .route($upath, axum::routing::$umethod($uhandler)) )*
        }

        /// The operations of [`ROUTES`], for the OpenAPI document.
        #[derive(Debug, utoipa::OpenApi)]
        #[openapi(paths( $( $handler ),* ))]
        pub struct ApiPaths;
    };
}

/// `get` → `GET`, for the method names of [`ROUTES`].
const fn const_upper(method: &'static str) -> &'static str {
    match method.as_bytes() {
        b"get" => "GET",
        b"post" => "POST",
        b"put" => "PUT",
        b"patch" => "PATCH",
        b"delete" => "DELETE",
        _ => panic!("unsupported method in the route list"),
    }
}

api_routes! {
    documented {
        get "/health" => meta::get_health, Public;
        get "/ready" => meta::get_ready, Public;
        get "/info" => meta::get_info, Read;
        get "/metrics" => meta::get_metrics, Public;
        get "/extent" => meta::get_extent, Read;
        get "/dataset-templates" => templates::list_templates, Read;
        get "/dataset-templates/{id}" => templates::get_template, Read;
        get "/ingestions" => ingestions::list_ingestions, Read;
        post "/ingestions" => ingestions::create_ingestion, Ingest;
        get "/ingestions/{id}" => ingestions::get_ingestion, Read;
        delete "/ingestions/{id}" => ingestions::cancel_ingestion, Ingest;
        get "/ingestions/{id}/events" => ingestions::ingestion_events, Read;
        get "/credentials/basic" => credentials::basic, OwnCredentials;
        get "/credentials/oidc" => credentials::oidc, Public;
        get "/me" => credentials::me, Caller;
        get "/datasets" => datasets::list_datasets, Read;
        get "/datasets/{id}" => datasets::get_dataset, Read;
        get "/datasets/{id}/download" => download::download, Read;
        patch "/datasets/{id}" => catalog::patch_dataset, Admin;
        get "/datasets/{id}/history" => catalog::history, Read;
        get "/datasets/{id}/versions/{n}" => catalog::get_version, Read;
        post "/datasets/{id}/rollback" => catalog::rollback, Admin;
        delete "/datasets/{id}" => catalog::prune_dataset, Admin;
        delete "/datasets/{id}/versions/{n}" => catalog::prune_version, Admin;
        get "/ogcapi" => ogcapi::common::landing, Read;
        get "/ogcapi/conformance" => ogcapi::common::conformance, Read;
        get "/ogcapi/collections" => ogcapi::common::collections, Read;
        get "/ogcapi/collections/{id}" => ogcapi::common::collection, Read;
        get "/ogcapi/collections/{id}/coverage" => ogcapi::coverages::coverage, Read;
        get "/ogcapi/collections/{id}/coverage/domainset" => ogcapi::coverages::domainset, Read;
        get "/ogcapi/collections/{id}/coverage/rangetype" => ogcapi::coverages::rangetype, Read;
        get "/ogcapi/collections/{id}/position" => ogcapi::edr::position, Read;
        get "/ogcapi/collections/{id}/area" => ogcapi::edr::area, Read;
        get "/ogcapi/collections/{id}/map/tiles" => ogcapi::tiles::tilesets, Read;
        get "/ogcapi/collections/{id}/map/tiles/WebMercatorQuad/{z}/{y}/{x}" => ogcapi::tiles::tile, Read;
        get "/ogcapi/processes" => processes::list_processes, Read;
        get "/ogcapi/processes/{id}" => processes::get_process, Read;
        post "/ogcapi/processes/{id}/execution" => processes::execute, Read;
        get "/ogcapi/jobs" => processes::list_jobs, Read;
        get "/ogcapi/jobs/{id}" => processes::get_job, Read;
        get "/ogcapi/jobs/{id}/results" => processes::get_results, Read;
        delete "/ogcapi/jobs/{id}" => processes::dismiss, Read;
        get "/features" => features::list_features, Read;
        post "/features" => features::upload_features, Ingest;
        get "/features/{id}" => features::get_features, Read;
        post "/sync/{id}" => sync::run_sync, Ingest;
        get "/datasets/{id}/schedule" => sync::get_schedule, Read;
        patch "/datasets/{id}/schedule" => sync::patch_schedule, Admin;
        get "/sync/{id}/plan" => sync::plan, Read;
        get "/stac" => stac::get_catalog, Read;
        get "/stac/conformance" => stac::conformance, Read;
        get "/stac/collections" => stac::list_collections, Read;
        get "/stac/collections/{id}" => stac::get_collection, Read;
        get "/datasets/{id}/versions/{n}/zarr" => zarr::list_version_zarr, Read;
        get "/datasets/{id}/versions/{n}/zarr/{*path}" => zarr::get_version_zarr_object, Read;
        get "/zarr/{id}" => zarr::list_zarr, Read;
        get "/zarr/{id}/{*path}" => zarr::get_zarr_object, Read;
    }
    undocumented {
        get "/stac/catalog.json" => stac::get_catalog, Read;
        get "/openapi.json" => crate::openapi::serve, Read;
    }
}

/// Who may call `method` on `route` (a path pattern, in the router's `{*path}` or the OpenAPI
/// document's `{path}` syntax). `HEAD` and `OPTIONS` are reads of the route's `GET`. A route
/// missing from the list is admin-only.
pub fn access(method: &str, route: &str) -> Access {
    let method = if matches!(method, "HEAD" | "OPTIONS") {
        "GET"
    } else {
        method
    };
    // `*` appears in patterns only as `{*`, so skipping it equates the two syntaxes; the guard
    // runs this on every request, so it allocates nothing.
    let same = |a: &str, b: &str| {
        a.chars()
            .filter(|c| *c != '*')
            .eq(b.chars().filter(|c| *c != '*'))
    };
    ROUTES
        .iter()
        .find(|r| r.method == method && same(r.path, route))
        .map_or(Access::Admin, |r| r.access)
}

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
    add_routes(Router::new())
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

#[cfg(test)]
mod tests {
    use climate_domain::auth::Scope;

    use super::*;

    /// What `climate_domain::auth::required_scope` used to answer, now from the route list.
    #[test]
    fn routes_need_the_documented_scope() {
        let needed =
            |method: &str, route: &str, protect: bool| access(method, route).needed(protect);
        assert_eq!(needed("GET", "/zarr/{id}/{*path}", false), None);
        assert_eq!(needed("GET", "/zarr/{id}/{*path}", true), Some(Scope::Read));
        assert_eq!(
            needed("GET", "/zarr/{id}/{path}", true),
            Some(Scope::Read),
            "OpenAPI syntax"
        );
        assert_eq!(
            needed("HEAD", "/zarr/{id}/{*path}", true),
            Some(Scope::Read)
        );
        assert_eq!(needed("GET", "/health", true), None);
        assert_eq!(needed("GET", "/me", false), Some(Scope::Read));
        assert_eq!(needed("POST", "/ingestions", false), Some(Scope::Ingest));
        assert_eq!(
            needed("DELETE", "/ingestions/{id}", false),
            Some(Scope::Ingest)
        );
        assert_eq!(needed("POST", "/sync/{id}", false), Some(Scope::Ingest));
        assert_eq!(
            needed("PATCH", "/datasets/{id}/schedule", false),
            Some(Scope::Admin)
        );
        assert_eq!(needed("POST", "/some/new/route", false), Some(Scope::Admin));
        assert_eq!(needed("GET", "/credentials/basic", true), None);
        assert_eq!(needed("GET", "/openapi.json", true), Some(Scope::Read));
    }

    #[test]
    fn every_route_is_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.method, r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
        }
        assert!(ROUTES.len() > 40, "{}", ROUTES.len());
    }
}
