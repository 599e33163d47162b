//! What of the API needs processes of its own: a cancellation across a restart of the API,
//! and schemathesis fuzzing a served instance against its OpenAPI document. (Request
//! validation, the error envelope and the service documents are checked in process:
//! `api/tests/it`.)

use climate_tests::{TestApp, assert_envelope};
use serde_json::{Value, json};

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
