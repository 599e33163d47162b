//! The OpenAPI 3.1 document, generated from the handlers' annotations so it cannot drift from
//! the code.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, SecurityRequirement};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorCode;

/// The API description served at `/openapi.json`.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Climate API",
        description = "Climate and earth-observation data for health information systems: ingest, keep current, and serve as GeoZarr.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "service", description = "Health, readiness and instance information"),
        (name = "credentials", description = "Authentication: Basic to token, OIDC providers, the caller"),
        (name = "templates", description = "Dataset templates"),
        (name = "ingestions", description = "Ingestion runs"),
        (name = "datasets", description = "Managed datasets and versions"),
        (name = "ogcapi", description = "OGC API - Common, Coverages, EDR and Processes"),
        (name = "features", description = "Stored feature collections (districts): versioned GeoJSON uploads that processes name"),
        (name = "sync", description = "Keeping datasets current: plan and run syncs"),
        (name = "stac", description = "STAC 1.1.0 catalog of the published datasets"),
        (name = "zarr", description = "Raw Zarr v3 stores of the current versions"),
    )
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn serve() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(document())
}

/// The document served at `/openapi.json`: [`ApiDoc`] with the operations of the route list
/// ([`crate::router::ROUTES`]) and the shared conventions.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::router::ApiPaths::openapi());
    Conventions.modify(&mut doc);
    doc
}

/// What every operation shares: a `default` response with the error envelope (so every
/// status an operation may answer — 400, 401, 403, 413, 429, 503, … — is described), and the
/// security schemes, required on the operations whose route needs a scope.
#[derive(Debug)]
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        // The codes' statuses, from the one table, in the code enum's description.
        if let Some(RefOr::T(utoipa::openapi::schema::Schema::Object(codes))) =
            components.schemas.get_mut("ErrorCode")
        {
            let table: Vec<String> = ErrorCode::ALL
                .iter()
                .map(|c| {
                    let name = serde_json::to_value(c)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    format!("`{name}` {}", c.status().as_u16())
                })
                .collect();
            codes.description = Some(format!(
                "Stable error code; each has one HTTP status: {}.",
                table.join(", ")
            ));
        }
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (cak_…), `basic//TOKEN` from /credentials/basic, or `oidc/{provider}/JWT`",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        let error = ResponseBuilder::new()
            .description("Error envelope (OGC GeoDataCube error object)")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        let security = vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("api_key", Vec::<String>::new()),
        ];
        for (path, item) in &mut doc.paths.paths {
            for (method, op) in [
                ("GET", &mut item.get),
                ("POST", &mut item.post),
                ("PATCH", &mut item.patch),
                ("PUT", &mut item.put),
                ("DELETE", &mut item.delete),
            ] {
                let Some(op) = op else { continue };
                op.responses
                    .responses
                    .entry("default".into())
                    .or_insert_with(|| RefOr::T(error.clone()));
                if crate::router::access(method, path).needed(false).is_some() {
                    op.security = Some(security.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::error::ErrorCode;

    #[test]
    fn the_error_schema_lists_every_code_with_its_status() {
        let doc = serde_json::to_value(super::document()).expect("serialises");
        let body = &doc["components"]["schemas"]["ErrorBody"]["properties"]["code"];
        assert_eq!(body["$ref"], "#/components/schemas/ErrorCode", "{body}");
        let codes = &doc["components"]["schemas"]["ErrorCode"];
        let listed: Vec<&str> = codes["enum"]
            .as_array()
            .expect("an enum")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(listed.len(), ErrorCode::ALL.len(), "{codes}");
        let description = codes["description"].as_str().expect("described");
        for code in ErrorCode::ALL {
            let name = serde_json::to_value(code).expect("serialises");
            let name = name.as_str().expect("a string");
            assert!(listed.contains(&name), "{name} missing from the enum");
            assert!(
                description.contains(&format!("`{name}` {}", code.status().as_u16())),
                "{name} missing from the status table"
            );
        }
    }
}
