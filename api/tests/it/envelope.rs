//! Bad input gets a clear 4xx in the error envelope, naming what is wrong; the service
//! documents describe the instance. (Moved from the end-to-end suite: none of this needs a
//! process of its own.)

use axum::http::Method;
use serde_json::json;

use crate::support::{InProcess, assert_envelope};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestion_requests_are_validated() {
    let app = InProcess::start(&[]).await;
    let cases = [
        (
            json!({"dataset_id": "nope", "start": "2025-07-01"}),
            404,
            "unknown_template",
            "dataset_id",
        ),
        (
            json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "extent_id": "mars"}),
            404,
            "unknown_extent",
            "extent_id",
        ),
        (
            json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-13-01"}),
            400,
            "invalid_parameter",
            "start",
        ),
        (
            json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "July"}),
            400,
            "invalid_parameter",
            "end",
        ),
        (
            json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-10", "end": "2025-07-01"}),
            400,
            "invalid_parameter",
            "after end",
        ),
        (
            json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "colour": "red"}),
            400,
            "invalid_body",
            "colour",
        ),
        (
            json!({"start": "2025-07-01"}),
            400,
            "invalid_body",
            "dataset_id",
        ),
        (
            json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "prefer_zarr": false}),
            400,
            "invalid_parameter",
            "prefer_zarr",
        ),
    ];
    for (body, status, code, mentions) in cases {
        let (got, answer) = app.post_json("/ingestions", &body).await;
        assert_envelope(got, &answer, status, code, mentions);
    }
    // Nothing was accepted.
    let (_, runs) = app.get_json("/ingestions").await;
    assert_eq!(runs["items"].as_array().map(Vec::len), Some(0));

    // Not JSON at all.
    let a = app
        .send(
            Method::POST,
            "/ingestions",
            &[("content-type", "application/json")],
            Some(b"{not json".to_vec()),
        )
        .await;
    let request_id = a.headers["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_envelope(a.status, &a.body, 400, "invalid_body", "");
    assert_eq!(
        a.body["id"],
        request_id.as_str(),
        "the envelope's id is the x-request-id header"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_answer_413_with_or_without_an_idempotency_key() {
    let app = InProcess::start(&[]).await;
    // A valid request padded past the 1 MiB body limit.
    let padding = "x".repeat(1024 * 1024 + 1);
    let body = serde_json::to_vec(&json!({
        "dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "note": padding
    }))
    .expect("json");
    for headers in [
        vec![("content-type", "application/json")],
        vec![
            ("content-type", "application/json"),
            ("idempotency-key", "big-1"),
        ],
    ] {
        let a = app
            .send(Method::POST, "/ingestions", &headers, Some(body.clone()))
            .await;
        assert_envelope(a.status, &a.body, 413, "body_too_large", "");
    }
    let a = app
        .send(
            Method::POST,
            "/ingestions",
            &[("content-type", "text/plain")],
            Some(b"dataset_id=x".to_vec()),
        )
        .await;
    assert_envelope(a.status, &a.body, 415, "unsupported_media_type", "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_resources_and_bad_queries_answer_with_the_envelope() {
    let app = InProcess::start(&[]).await;
    let (s, b) = app.get_json("/ingestions/does-not-exist").await;
    assert_envelope(s, &b, 404, "unknown_ingestion", "does-not-exist");
    let (s, b) = app.get_json("/datasets/nope_sle").await;
    assert_envelope(s, &b, 404, "unknown_dataset", "nope_sle");
    let (s, b) = app.get_json("/dataset-templates/nope").await;
    assert_envelope(s, &b, 404, "unknown_template", "nope");
    let (s, b) = app.get_json("/zarr/nope_sle/zarr.json").await;
    assert_envelope(s, &b, 404, "unknown_dataset", "nope_sle");
    let (s, b) = app.get_json("/no/such/route").await;
    assert_envelope(s, &b, 404, "not_found", "openapi");
    let (s, b) = app.get_json("/ingestions?limit=0").await;
    assert_envelope(s, &b, 400, "invalid_parameter", "limit");
    let (s, b) = app.get_json("/ingestions?status=done").await;
    assert_envelope(s, &b, 400, "invalid_parameter", "status");
    let (s, b) = app.get_json("/ingestions?colour=red").await;
    assert_envelope(s, &b, 400, "invalid_parameter", "colour");
    let a = app.send(Method::DELETE, "/health", &[], None).await;
    assert_envelope(a.status, &a.body, 405, "method_not_allowed", "DELETE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_endpoints_describe_the_instance() {
    let app = InProcess::start(&[]).await;
    let (s, h) = app.get_json("/health").await;
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")));
    let (s, r) = app.get_json("/ready").await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        r["checks"],
        json!({"cache": "ok", "database": "ok", "queue": "ok", "store": "ok"})
    );
    let (_, info) = app.get_json("/info").await;
    assert_eq!(info["mode"], "standalone");
    assert_eq!(
        info["backends"],
        json!({"cache": "memory", "database": "sqlite", "queue": "memory", "store": "file"})
    );
    let (_, ext) = app.get_json("/extent").await;
    assert_eq!(ext["kind"], "ExtentList");
    assert_eq!(ext["default"], "sle");
    assert_eq!(ext["items"][0]["bbox"], json!([-13.5, 6.9, -10.1, 10.0]));
    assert_eq!(ext["items"][0]["crs"], "EPSG:4326");

    let (s, doc) = app.get_json("/openapi.json").await;
    assert_eq!(s, 200);
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/ingestions",
        "/ingestions/{id}",
        "/datasets/{id}",
        "/zarr/{id}/{path}",
        "/ready",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }

    // CORS for browser clients, exposing Location.
    let a = app
        .send(
            Method::OPTIONS,
            "/ingestions",
            &[
                ("origin", "https://dashboard.example"),
                ("access-control-request-method", "POST"),
            ],
            None,
        )
        .await;
    assert!((200..300).contains(&a.status), "{}", a.status);
    assert_eq!(a.headers["access-control-allow-origin"], "*");
    let a = app
        .send(
            Method::GET,
            "/health",
            &[("origin", "https://x.example")],
            None,
        )
        .await;
    let exposed = a.headers["access-control-expose-headers"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(exposed.contains("location"), "{exposed}");
}
