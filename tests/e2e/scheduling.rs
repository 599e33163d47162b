//! The scheduler keeps datasets current: three replicas, one run per due time, pause/resume.

use std::time::{Duration, Instant};

use climate_tests::mock::MockUpstream;
use climate_tests::{Options, Shape, TestApp, chirps_cog, python};
use serde_json::{Value, json};

/// "Publishes" day `day` of January 2024 in the upstream directory the template reads.
fn publish_day(app: &TestApp, day: u32) -> anyhow::Result<()> {
    let dir = app.dir.path().join("upstream");
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".{day}.partial"));
    std::fs::copy(chirps_cog(day), &tmp)?;
    // A rename, so a probe never sees half a file.
    std::fs::rename(&tmp, dir.join(format!("2024-01-{day:02}.cog")))?;
    Ok(())
}

const CHIRPS_ROOT: &str = "/products/CHIRPS/v3.0";

/// CHC publishes day `day` of January 2024 on the mock upstream (CHC's URL layout).
fn chc_publishes(mock: &MockUpstream, day: u32) -> anyhow::Result<()> {
    mock.serve_file(
        &format!("{CHIRPS_ROOT}/daily/final/rnl/cogs/2024/chirps-v3.0.rnl.2024.01.{day:02}.cog"),
        std::fs::read(chirps_cog(day))?,
    );
    Ok(())
}

async fn coverage_end(app: &TestApp, id: &str) -> anyhow::Result<String> {
    let (_, ds) = app.get_json(&format!("/datasets/{id}")).await?;
    Ok(ds["extent"]["temporal"]["end"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

async fn wait_for_end(app: &TestApp, id: &str, end: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = coverage_end(app, id).await?;
        if got == end {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "dataset {id} still ends {got}, not {end}\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn sync_runs(app: &TestApp, id: &str) -> anyhow::Result<Vec<Value>> {
    let (_, runs) = app
        .get_json(&format!("/ingestions?dataset_id={id}&limit=100"))
        .await?;
    Ok(runs["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r["kind"] == "sync")
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_append_new_days_once_each_and_pause_holds_them() -> anyhow::Result<()> {
    // A CHC-like upstream whose newest published day advances during the test.
    let mock = MockUpstream::start().await?;
    mock.honour_ranges();
    let mut app = TestApp::start(
        Shape::Distributed { workers: 1 },
        Options {
            local_store: true,
            extra_yaml: "scheduler:\n  tick_seconds: 1\n".into(),
            templates: vec![format!("- id: rain\n  name: Rain (advancing upstream)\n  variable: precip\n  period_type: daily\n  units: mm\n  ingestion:\n    provider: chirps3_daily\n    params: {{base_url: \"{}{CHIRPS_ROOT}\", stage: final, flavor: rnl}}\n  chunks: {{t: 2}}\n  sync: {{kind: temporal, execution: append, availability: {{probe: true}}, schedule: as_available}}\n", mock.base)],
            ..Options::default()
        },
    )
    .await?;
    for d in 1..=2 {
        chc_publishes(&mock, d)?;
    }
    let id = "rain_sle";
    let run = app
        .ingest(&json!({"dataset_id": "rain", "start": "2024-01-01", "end": "2024-01-02"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    let (_, sched) = app.get_json(&format!("/datasets/{id}/schedule")).await?;
    assert_eq!(sched["schedule"], "as_available", "{sched}");
    assert_eq!(sched["source"], "template");

    // Three scheduler replicas race on every tick.
    for _ in 0..3 {
        app.spawn("climate-scheduler", &[])?;
    }
    chc_publishes(&mock, 3)?;
    wait_for_end(&app, id, "2024-01-03").await?;
    chc_publishes(&mock, 4)?;
    chc_publishes(&mock, 5)?;
    wait_for_end(&app, id, "2024-01-05").await?;

    // Exactly one run per due time: every sync run targets a different end.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = sync_runs(&app, id).await?;
    let mut ends: Vec<String> = runs
        .iter()
        .map(|r| r["request"]["end"].as_str().unwrap_or_default().to_owned())
        .collect();
    let n = ends.len();
    ends.sort();
    ends.dedup();
    assert_eq!(ends.len(), n, "one run per due time: {runs:?}");
    assert!(runs.iter().all(|r| r["status"] == "succeeded"), "{runs:?}");
    assert!(
        runs.iter().all(|r| r["request"]["append"] == true),
        "{runs:?}"
    );
    // The catalog follows.
    let (_, col) = app.get_json(&format!("/stac/collections/{id}")).await?;
    assert_eq!(
        col["cube:dimensions"]["t"]["extent"][1], "2024-01-05T00:00:00Z",
        "{col}"
    );
    let (_, sched) = app.get_json(&format!("/datasets/{id}/schedule")).await?;
    assert_eq!(sched["last_sync"]["due"], "available:2024-01-05", "{sched}");
    assert_eq!(sched["last_sync"]["run"]["status"], "succeeded");

    // Paused: a new day waits; resumed: it arrives.
    let r = app
        .client
        .patch(app.url(&format!("/datasets/{id}/schedule")))
        .json(&json!({"paused": true}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    chc_publishes(&mock, 6)?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(coverage_end(&app, id).await?, "2024-01-05", "paused");
    let r = app
        .client
        .patch(app.url(&format!("/datasets/{id}/schedule")))
        .json(&json!({"paused": false}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    wait_for_end(&app, id, "2024-01-06").await?;

    // A per-dataset override replaces the template's schedule, and null restores it.
    let r = app
        .client
        .patch(app.url(&format!("/datasets/{id}/schedule")))
        .json(&json!({"schedule": "0 6 * * *"}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let sched: Value = r.json().await?;
    assert_eq!(
        (sched["schedule"].as_str(), sched["source"].as_str()),
        (Some("0 6 * * *"), Some("dataset")),
        "{sched}"
    );
    let r = app
        .client
        .patch(app.url(&format!("/datasets/{id}/schedule")))
        .json(&json!({"schedule": null}))
        .send()
        .await?;
    let sched: Value = r.json().await?;
    assert_eq!(sched["source"], "template", "{sched}");

    // A bad override is refused by name; an explicit sync still answers when nothing is new.
    let r = app
        .client
        .patch(app.url(&format!("/datasets/{id}/schedule")))
        .json(&json!({"schedule": "every day"}))
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    assert!(r.text().await?.contains("schedule"));
    let (status, body) = app.post_sync(id, &json!({})).await?;
    assert_eq!(status, 200, "nothing newer than day 6 is published: {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_upstream_fails_the_sync_and_leaves_the_dataset_as_it_was() -> anyhow::Result<()> {
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            templates: vec!["- id: rain\n  name: Rain (gappy upstream)\n  variable: precip\n  period_type: daily\n  units: mm\n  ingestion:\n    provider: file\n    params: {path: \"upstream/{year}-{month}-{day}.cog\"}\n  transforms: [{mask_values: {values: [-9999]}}]\n  sync: {kind: temporal, execution: append, availability: {probe: true}}\n".into()],
            ..Options::default()
        },
    )
    .await?;
    for d in [1, 2, 4] {
        publish_day(&app, d)?;
    }
    let id = "rain_sle";
    let run = app
        .ingest(&json!({"dataset_id": "rain", "start": "2024-01-01", "end": "2024-01-02"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    // Day 3 is missing upstream while day 4 is there: the sync must not publish a hole.
    let (sync, run) = app.sync_and_wait(id, &json!({})).await?;
    assert_eq!(sync["delta_end"], "2024-01-04", "{sync}");
    assert_eq!(run["status"], "failed", "{run}");
    let msg = run["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("2024-01-03"), "{msg}");
    let (_, ds) = app.get_json(&format!("/datasets/{id}")).await?;
    assert_eq!(ds["version"], 1);
    assert_eq!(coverage_end(&app, id).await?, "2024-01-02");
    // With the hole filled, the same sync goes through.
    publish_day(&app, 3)?;
    let (_, run) = app.sync_and_wait(id, &json!({})).await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    assert_eq!(coverage_end(&app, id).await?, "2024-01-04");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_posted_during_an_ingestion_waits_for_it() -> anyhow::Result<()> {
    let app = TestApp::standalone().await?;
    let id = "sample_era5land_t2m_daily_sle";
    let first = app
        .ingest(&json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "2025-07-05"}))
        .await?;
    assert_eq!(first["status"], "succeeded", "{first}\n{}", app.logs());
    // A rebuild is accepted, and a sync right behind it: the sync runs after it, on its result.
    let (status, _, rebuild) = app
        .post_json(
            "/ingestions",
            &json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "2025-07-05", "overwrite": true}),
        )
        .await?;
    assert_eq!(status, 202, "{rebuild}");
    let (status, body) = app.post_sync(id, &json!({"end": "2025-07-20"})).await?;
    assert_eq!(status, 202);
    let sync_id = body["run"]["ingestion_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let rebuild_id = rebuild["ingestion_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for run_id in [rebuild_id, sync_id] {
        let run = app.wait_for_run(&run_id, Duration::from_secs(60)).await?;
        assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    }
    let (_, ds) = app.get_json(&format!("/datasets/{id}")).await?;
    assert_eq!(ds["version"], 3, "rebuild, then the sync on top of it");
    assert_eq!(coverage_end(&app, id).await?, "2025-07-20");
    climate_tests::check_era5(&app, id, "2025-07-01", "2025-07-20", "kelvin_to_celsius")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_extends_the_pyramid_with_the_new_time_chunks_only() -> anyhow::Result<()> {
    let mock = MockUpstream::start().await?;
    mock.honour_ranges();
    for d in 1..=3 {
        chc_publishes(&mock, d)?;
    }
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            templates: vec![format!("- id: rain\n  name: Rain (world)\n  variable: precip\n  period_type: daily\n  units: mm\n  ingestion:\n    provider: chirps3_daily\n    params: {{base_url: \"{}{CHIRPS_ROOT}\", stage: final, flavor: rnl}}\n  chunks: {{t: 1}}\n  sync: {{kind: temporal, execution: append, availability: {{probe: true}}}}\n", mock.base)],
            extents_yaml: Some(
                "extents:\n  - extent_id: world\n    name: World\n    bbox: [-180, -90, 180, 90]\n".into(),
            ),
            ..Options::default()
        },
    )
    .await?;
    let id = "rain_world";
    let run = app
        .ingest(&json!({"dataset_id": "rain", "start": "2024-01-01", "end": "2024-01-02"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    let (sync, run) = app.sync_and_wait(id, &json!({})).await?;
    assert_eq!(sync["delta_end"], "2024-01-03", "{sync}");
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());

    // The new version holds only time chunk 2, at every level; the rest is version 1's.
    let versions = app.version_dirs(id);
    let chunks = |dir: &std::path::Path| climate_tests::entries(dir);
    for level in ["precip/c", "1/precip/c", "3/precip/c", "5/precip/c"] {
        assert_eq!(
            chunks(&versions[1].join(level)),
            ["2"],
            "{level} of version 2"
        );
        assert_eq!(
            chunks(&versions[0].join(level)),
            ["0", "1"],
            "{level} of version 1"
        );
    }
    // Read through the fallback, every level is still the 2×2 mean of the one before.
    let out = python(
        "check_pyramid.py",
        &[
            "--url",
            &app.url(&format!("/zarr/{id}")),
            "--var",
            "precip",
            "--levels",
            "5",
        ],
    )?;
    assert!(out.contains("[3, 75, 225]"), "{out}");
    Ok(())
}
