//! Bad input gets a clear 4xx in the error envelope, naming what is wrong.

use climate_tests::TestApp;
use serde_json::{Value, json};

fn assert_envelope(status: u16, body: &Value, want_status: u16, code: &str, mentions: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(mentions),
        "message should mention '{mentions}': {msg}"
    );
    assert!(
        body["id"].as_str().is_some_and(|id| !id.is_empty()),
        "request id missing: {body}"
    );
}

#[tokio::test]
async fn ingestion_requests_are_validated() -> anyhow::Result<()> {
    let app = TestApp::standalone().await?;
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
        let (got, _, answer) = app.post_json("/ingestions", &body).await?;
        assert_envelope(got, &answer, status, code, mentions);
    }
    // Nothing was accepted.
    let (_, runs) = app.get_json("/ingestions").await?;
    assert_eq!(runs["items"].as_array().map(Vec::len), Some(0));

    // Not JSON at all.
    let r = app
        .client
        .post(app.url("/ingestions"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    let status = r.status().as_u16();
    let request_id = r.headers()["x-request-id"].to_str()?.to_owned();
    let body: Value = r.json().await?;
    assert_envelope(status, &body, 400, "invalid_body", "");
    assert_eq!(
        body["id"],
        request_id.as_str(),
        "the envelope's id is the x-request-id header"
    );
    Ok(())
}

#[tokio::test]
async fn unknown_resources_and_bad_queries_answer_with_the_envelope() -> anyhow::Result<()> {
    let app = TestApp::standalone().await?;
    let (s, b) = app.get_json("/ingestions/does-not-exist").await?;
    assert_envelope(s, &b, 404, "unknown_ingestion", "does-not-exist");
    let (s, b) = app.get_json("/datasets/nope_sle").await?;
    assert_envelope(s, &b, 404, "unknown_dataset", "nope_sle");
    let (s, b) = app.get_json("/dataset-templates/nope").await?;
    assert_envelope(s, &b, 404, "unknown_template", "nope");
    let (s, b) = app.get_json("/zarr/nope_sle/zarr.json").await?;
    assert_envelope(s, &b, 404, "unknown_dataset", "nope_sle");
    let (s, b) = app.get_json("/no/such/route").await?;
    assert_envelope(s, &b, 404, "not_found", "openapi");
    let (s, b) = app.get_json("/ingestions?limit=0").await?;
    assert_envelope(s, &b, 400, "invalid_parameter", "limit");
    let (s, b) = app.get_json("/ingestions?status=done").await?;
    assert_envelope(s, &b, 400, "invalid_parameter", "status");
    let (s, b) = app.get_json("/ingestions?colour=red").await?;
    assert_envelope(s, &b, 400, "invalid_parameter", "colour");
    let r = app.delete("/health").await?;
    let s = r.status().as_u16();
    let b: Value = r.json().await?;
    assert_envelope(s, &b, 405, "method_not_allowed", "DELETE");
    Ok(())
}

#[tokio::test]
async fn service_endpoints_describe_the_instance() -> anyhow::Result<()> {
    let app = TestApp::standalone().await?;
    let (s, h) = app.get_json("/health").await?;
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")));
    let (s, r) = app.get_json("/ready").await?;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        r["checks"],
        json!({"cache": "ok", "database": "ok", "queue": "ok", "store": "ok"})
    );
    let (_, info) = app.get_json("/info").await?;
    assert_eq!(info["mode"], "standalone");
    assert_eq!(
        info["backends"],
        json!({"cache": "memory", "database": "sqlite", "queue": "memory", "store": "file"})
    );
    let (_, ext) = app.get_json("/extent").await?;
    assert_eq!(ext["kind"], "ExtentList");
    assert_eq!(ext["default"], "sle");
    assert_eq!(ext["items"][0]["bbox"], json!([-13.5, 6.9, -10.1, 10.0]));
    assert_eq!(ext["items"][0]["crs"], "EPSG:4326");

    let (s, doc) = app.get_json("/openapi.json").await?;
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
    let r = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/ingestions"))
        .header("Origin", "https://dashboard.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await?;
    assert!(r.status().is_success());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let r = app
        .client
        .get(app.url("/health"))
        .header("Origin", "https://x.example")
        .send()
        .await?;
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()?
        .to_owned();
    assert!(exposed.contains("location"), "{exposed}");
    Ok(())
}

#[tokio::test]
async fn queued_runs_cancel_at_once_and_finished_ones_conflict() -> anyhow::Result<()> {
    // `serve` with the in-process queue executes nothing: the run stays queued.
    let mut app = TestApp::standalone().await?;
    app.stop();
    app.spawn("climate-api", &["serve"])?;
    app.wait_ready().await?;
    let (_, _, run) = app
        .post_json("/ingestions", &json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "2025-07-02"}))
        .await?;
    let id = run["ingestion_id"].as_str().expect("id").to_owned();
    let r = app.delete(&format!("/ingestions/{id}")).await?;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await?;
    assert_eq!(body["status"], "cancelled");
    assert!(body["finished_at"].is_string());
    let r = app.delete(&format!("/ingestions/{id}")).await?;
    let s = r.status().as_u16();
    let b: Value = r.json().await?;
    assert_envelope(s, &b, 409, "already_finished", "cancelled");
    let r = app.delete("/ingestions/nope").await?;
    let s = r.status().as_u16();
    let b: Value = r.json().await?;
    assert_envelope(s, &b, 404, "unknown_ingestion", "nope");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_errors_or_schema_violations() -> anyhow::Result<()> {
    // Fuzz every operation of /openapi.json (coverage, fuzzing and stateful phases) with an
    // admin key against an instance holding a dataset: no 5xx, every status and body as
    // documented, every error in the envelope's media type.
    let app = climate_tests::TestApp::start(
        climate_tests::Shape::Standalone,
        climate_tests::Options {
            auth_yaml: Some("auth:\n  requests_per_minute: 0\n".into()),
            ..Default::default()
        },
    )
    .await?;
    app.ingest_ok(&json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-03", "end": "2025-07-05"})).await?;
    let py = climate_tests::env(
        "CLIMATE_TEST_PYTHON",
        Some(
            &climate_tests::repo_root()
                .join(".venv/bin/python")
                .to_string_lossy(),
        ),
    );
    let key = app.api_key.clone().expect("admin key");
    let out = tokio::process::Command::new(&py)
        .args(["-m", "schemathesis.cli", "run", &app.url("/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "15",
            "--seed",
            "20261121",
            "--no-color",
        ])
        .current_dir(app.dir.path())
        .output()
        .await?;
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every operation of the document was exercised.
    let count = |label: &str| {
        report
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|v| {
                v.trim()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            })
    };
    let selected = count("Selected:").expect("a summary");
    assert_eq!(count("Tested:"), Some(selected.clone()), "{report}");
    assert!(selected.parse::<u32>().unwrap_or(0) >= 40, "{report}");
    assert!(
        !report.contains("Errored:"),
        "operations could not be tested:\n{report}"
    );
    Ok(())
}
