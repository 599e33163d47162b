//! Crash and resume: a process killed at each named failure point of the pipeline leaves a run
//! that completes after a restart, with exactly one version whose store is byte-identical to an
//! uninterrupted run's.

use std::time::Duration;

use climate_tests::{Options, Shape, TestApp};
use serde_json::json;

const DATASET: &str = "sample_era5land_t2m_daily_sle";

fn body() -> serde_json::Value {
    // 31 days with 30-day time chunks: two segments.
    json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "2025-07-31"})
}

async fn reference() -> anyhow::Result<std::collections::BTreeMap<String, Vec<u8>>> {
    let app = TestApp::standalone().await?;
    let run = app.ingest(&body()).await?;
    assert_eq!(run["status"], "succeeded", "{run}");
    app.stored_objects(DATASET)
}

async fn crash_at(point: &str) -> anyhow::Result<()> {
    let expected = reference().await?;
    assert!(
        expected.keys().any(|k| k.starts_with("t2m/c/1/")),
        "two time chunks: {:?}",
        expected.keys()
    );

    let mut app = TestApp::start(Shape::Standalone, Options::default()).await?;
    app.stop();
    app.spawn_with_env("climate-api", &[], &[("CLIMATE_API_FAILPOINTS", point)])?;
    app.wait_ready().await?;
    let (status, _, run) = app.post_json("/ingestions", &body()).await?;
    assert_eq!(status, 202, "{run}");
    let id = run["ingestion_id"].as_str().expect("id").to_owned();
    // The failure point aborts the process, as a SIGKILL would.
    app.wait_exit(Duration::from_secs(30)).await?;
    assert!(
        app.logs().contains(&format!("failure point {point} fired")),
        "{}",
        app.logs()
    );

    app.spawn("climate-api", &[])?;
    app.wait_ready().await?;
    let done = app.wait_for_run(&id, Duration::from_secs(90)).await?;
    assert_eq!(done["status"], "succeeded", "{done}\n{}", app.logs());
    assert_eq!(
        done["attempts"], 1,
        "planned once: resumption does not start over"
    );
    assert_eq!(done["progress"]["done"], 31);

    assert_one_version_like(&app, &expected).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_planning_resumes_to_the_same_store() -> anyhow::Result<()> {
    crash_at("after_plan").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_writing_a_segment_resumes_to_the_same_store() -> anyhow::Result<()> {
    crash_at("after_segment_write").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_publishing_resumes_to_the_same_store() -> anyhow::Result<()> {
    crash_at("before_publish").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_segment_is_replaced_by_another() -> anyhow::Result<()> {
    let expected = reference().await?;
    // serve + one worker that dies right after writing its first segment's chunks (before
    // recording it), as a SIGKILL would leave it.
    let mut app = TestApp::start(
        Shape::Distributed { workers: 0 },
        Options {
            local_store: true,
            ..Options::default()
        },
    )
    .await?;
    app.spawn_with_env(
        "climate-worker",
        &[],
        &[("CLIMATE_API_FAILPOINTS", "after_segment_write")],
    )?;
    let (status, _, run) = app.post_json("/ingestions", &body()).await?;
    assert_eq!(status, 202, "{run}");
    let id = run["ingestion_id"].as_str().expect("id").to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !app
        .logs()
        .contains("failure point after_segment_write fired")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never died\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A second worker takes the segment over once the dead one's lease expires.
    app.spawn("climate-worker", &[])?;
    let done = app.wait_for_run(&id, Duration::from_secs(90)).await?;
    assert_eq!(done["status"], "succeeded", "{done}\n{}", app.logs());
    assert_eq!(done["attempts"], 1, "planned once");
    assert_one_version_like(&app, &expected).await
}

/// The dataset has exactly one version, whose store holds the same objects, byte for byte, as
/// the uninterrupted run's.
async fn assert_one_version_like(
    app: &TestApp,
    expected: &std::collections::BTreeMap<String, Vec<u8>>,
) -> anyhow::Result<()> {
    let (_, detail) = app.get_json(&format!("/datasets/{DATASET}")).await?;
    assert_eq!(
        detail["versions"].as_array().map(Vec::len),
        Some(1),
        "exactly one version"
    );
    let got = app.stored_objects(DATASET)?;
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "same objects"
    );
    for (k, v) in expected {
        assert!(got[k] == *v, "{k} differs from the uninterrupted run");
    }
    Ok(())
}
