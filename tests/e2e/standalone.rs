//! Standalone mode: one `climate-api` process on SQLite, the in-process queue and a local store.

use std::time::Duration;

use climate_tests::{Options, Shape, TestApp, check_era5, python, raw_get_status, repo_root};
use serde_json::json;

const DATASET: &str = "sample_era5land_t2m_daily_sle";

#[tokio::test]
async fn ingests_the_era5_sample_and_serves_it_as_zarr() -> anyhow::Result<()> {
    let app = TestApp::standalone().await?;
    let body = json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-03", "end": "2025-07-12"});

    let (status, location, run) = app.post_json("/ingestions", &body).await?;
    assert_eq!(status, 202, "{run}");
    let id = run["ingestion_id"].as_str().expect("id").to_owned();
    assert_eq!(
        location.as_deref(),
        Some(app.url(&format!("/ingestions/{id}")).as_str())
    );
    assert_eq!(run["status"], "queued");
    assert_eq!(run["dataset_id"], DATASET);

    let run = app.wait_for_run(&id, Duration::from_secs(60)).await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    assert_eq!(run["progress"]["done"], 10);
    assert_eq!(run["progress"]["percent"], 100.0);
    assert_eq!(run["dataset"]["version"], 1);

    // The catalog shows it.
    let (_, list) = app.get_json("/datasets").await?;
    assert_eq!(list["kind"], "DatasetList");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    let ds = &items[0];
    assert_eq!(ds["dataset_id"], DATASET);
    assert_eq!(
        ds["extent"]["temporal"],
        json!({"start": "2025-07-03", "end": "2025-07-12"})
    );
    // Pixel-centre rule over [-13.5, 6.9, -10.1, 10.0] on the 0.1° grid: edges half a pixel out.
    assert_eq!(
        ds["extent"]["spatial"]["bbox"],
        json!([-13.55, 6.85, -10.05, 10.05])
    );
    assert!(
        ds.to_string().find("artifact").is_none(),
        "internal ids leak: {ds}"
    );

    let (status, detail) = app.get_json(&format!("/datasets/{DATASET}")).await?;
    assert_eq!(status, 200);
    assert_eq!(detail["versions"].as_array().map(Vec::len), Some(1));
    assert_eq!(detail["versions"][0]["current"], true);

    // Root metadata is consolidated and carries the GeoZarr attributes.
    let (status, root) = app.get_json(&format!("/zarr/{DATASET}/zarr.json")).await?;
    assert_eq!(status, 200);
    assert_eq!(root["node_type"], "group");
    let members = &root["consolidated_metadata"]["metadata"];
    for name in ["t", "y", "x", "t2m"] {
        assert!(
            members.get(name).is_some(),
            "{name} missing from consolidated metadata"
        );
    }
    assert_eq!(members["t2m"]["shape"], json!([10, 32, 35]));
    assert_eq!(members["t2m"]["dimension_names"], json!(["t", "y", "x"]));
    assert_eq!(members["t2m"]["attributes"]["units"], "degC");
    assert_eq!(members["t"]["attributes"]["units"], "days since 1970-01-01");
    let codecs = members["t2m"]["codecs"].to_string();
    assert!(codecs.contains("zstd"), "{codecs}");
    assert_eq!(root["attributes"]["spatial:shape"], json!([32, 35]));
    assert_eq!(root["attributes"]["proj:code"], "EPSG:4326");
    assert_eq!(
        root["attributes"]["spatial:transform"],
        json!([0.1, 0.0, -13.55, 0.0, -0.1, 10.05])
    );

    // Chunks: full, ranged, suffix-ranged, HEAD, conditional.
    let chunk = app.url(&format!("/zarr/{DATASET}/t2m/c/0/0/0"));
    let full = app.client.get(&chunk).send().await?;
    assert_eq!(full.status(), 200);
    let etag = full.headers()["etag"].to_str()?.to_owned();
    let bytes = full.bytes().await?;
    assert!(bytes.len() > 100);
    let r = app
        .client
        .get(&chunk)
        .header("Range", "bytes=0-9")
        .send()
        .await?;
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 0-9/{}", bytes.len()).as_str()
    );
    assert_eq!(r.bytes().await?, bytes.slice(0..10));
    let r = app
        .client
        .get(&chunk)
        .header("Range", "bytes=-16")
        .send()
        .await?;
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await?, bytes.slice(bytes.len() - 16..));
    let r = app
        .client
        .get(&chunk)
        .header("Range", format!("bytes={}-", bytes.len() + 5))
        .send()
        .await?;
    assert_eq!(r.status(), 416);
    let r = app.client.head(&chunk).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        bytes.len().to_string().as_str()
    );
    let r = app
        .client
        .get(&chunk)
        .header("If-None-Match", &etag)
        .send()
        .await?;
    assert_eq!(r.status(), 304);
    let r = app
        .client
        .get(&chunk)
        .header("If-None-Match", format!("W/{etag}"))
        .send()
        .await?;
    assert_eq!(r.status(), 304, "weak comparison");
    // The current version can move back to older objects (rollback), so dates do not
    // validate here: If-Modified-Since is ignored, the ETag decides.
    let r = app.client.get(&chunk).send().await?;
    let modified = r.headers()["last-modified"].to_str()?.to_owned();
    let r = app
        .client
        .get(&chunk)
        .header("If-Modified-Since", &modified)
        .send()
        .await?;
    assert_eq!(
        r.status(),
        200,
        "If-Modified-Since is not trusted under /zarr/{{id}}"
    );

    // Probes of Zarr v2 keys get a fast 404; traversal is rejected before touching the store.
    for probe in [".zmetadata", ".zgroup", ".zattrs", "t2m/.zarray"] {
        let r = app.get(&format!("/zarr/{DATASET}/{probe}")).await?;
        assert_eq!(r.status(), 404, "{probe}");
    }
    let status = raw_get_status(
        &app.base,
        &format!("/zarr/{DATASET}/t2m/../../../../etc/passwd"),
    )
    .await?;
    assert!(
        status == 400 || status == 404,
        "traversal answered {status}"
    );
    let status = raw_get_status(&app.base, &format!("/zarr/{DATASET}/%2E%2E/secret")).await?;
    assert_eq!(status, 400, "encoded traversal");

    // Listing.
    let (_, listing) = app.get_json(&format!("/zarr/{DATASET}")).await?;
    let names: Vec<&str> = listing["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["t", "t2m", "x", "y", "zarr.json"]);

    // A second identical request is answered from the current version, without a new run.
    let (status, _, again) = app.post_json("/ingestions", &body).await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["dataset_id"], DATASET);
    assert_eq!(again["version"], 1);
    let (_, runs) = app.get_json("/ingestions").await?;
    assert_eq!(runs["items"].as_array().map(Vec::len), Some(1));

    // xarray + zarr-python over HTTP see the source values (K → °C) at the right coordinates.
    let summary = check_era5(
        &app,
        DATASET,
        "2025-07-03",
        "2025-07-12",
        "kelvin_to_celsius",
    )?;
    assert_eq!(summary["shape"], json!([10, 32, 35]));
    Ok(())
}

#[tokio::test]
async fn worldpop_geotiff_ingests_as_a_yearly_dataset() -> anyhow::Result<()> {
    let app = TestApp::standalone().await?;
    let run = app
        .ingest(&json!({"dataset_id": "sample_worldpop_population_yearly", "start": "2026", "end": "2026"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    let id = "sample_worldpop_population_yearly_sle";
    let (_, root) = app.get_json(&format!("/zarr/{id}/zarr.json")).await?;
    let meta = &root["consolidated_metadata"]["metadata"]["pop_total"];
    assert_eq!(meta["shape"][0], 1);
    assert_eq!(meta["attributes"]["units"], "people");
    let out = python(
        "check_zarr.py",
        &[
            "--url",
            &app.url(&format!("/zarr/{id}")),
            "--source",
            &repo_root()
                .join("config/samples/worldpop_sle_2026_1km.tif")
                .to_string_lossy(),
            "--var",
            "pop_total",
            "--bbox=-13.5,6.9,-10.1,10.0",
            "--nodata=-99999",
        ],
    )?;
    let summary: serde_json::Value = serde_json::from_str(out.trim())?;
    assert!(
        summary["nan_cells"].as_u64().is_some_and(|n| n > 0),
        "nodata must become missing: {summary}"
    );
    Ok(())
}

#[tokio::test]
async fn a_run_with_a_gap_fails_clearly_and_keeps_the_current_version() -> anyhow::Result<()> {
    let app = TestApp::standalone().await?;
    app.ingest_ok(&json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "2025-07-05"})).await?;
    let (_, before) = app.get_json(&format!("/zarr/{DATASET}/zarr.json")).await?;

    // The sample ends on 2025-07-31: asking for August would publish a gap.
    let failed = app
        .ingest(&json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-20", "end": "2025-08-03", "overwrite": true}))
        .await?;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "invalid_request");
    let msg = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("no source data for 2025-08-01"), "{msg}");
    assert!(failed["finished_at"].is_string());

    let (_, detail) = app.get_json(&format!("/datasets/{DATASET}")).await?;
    assert_eq!(detail["version"], 1);
    assert_eq!(detail["versions"].as_array().map(Vec::len), Some(1));
    let (_, after) = app.get_json(&format!("/zarr/{DATASET}/zarr.json")).await?;
    assert_eq!(before, after, "the current version must be untouched");

    // Only the published version's objects remain in the store.
    let store = app.dir.path().join("data/store/datasets").join(DATASET);
    let prefixes = std::fs::read_dir(&store)?.count();
    assert_eq!(prefixes, 1, "garbage of the failed run was not collected");

    // An overwrite that succeeds publishes version 2 and makes it current.
    app.ingest_ok(&json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "2025-07-31", "overwrite": true})).await?;
    let (_, detail) = app.get_json(&format!("/datasets/{DATASET}")).await?;
    assert_eq!(detail["version"], 2);
    assert_eq!(detail["extent"]["temporal"]["end"], "2025-07-31");
    Ok(())
}

#[tokio::test]
async fn custom_templates_load_from_templates_dir() -> anyhow::Result<()> {
    // The example template in config/templates reads `samples/…` relative to the config file's
    // directory: give the generated config the same layout.
    let templates = repo_root().join("config/templates");
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            extra_yaml: format!("templates_dir: {}\n", templates.display()),
            files: vec![(
                repo_root().join("config/samples/era5land_t2m_daily_2025-07_sle.nc"),
                "samples/era5land_t2m_daily_2025-07_sle.nc".into(),
            )],
            ..Options::default()
        },
    )
    .await?;
    let (status, t) = app
        .get_json("/dataset-templates/sample_era5land_t2m_daily_kelvin")
        .await?;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["units"], "K");
    let (_, list) = app.get_json("/dataset-templates").await?;
    assert_eq!(list["kind"], "DatasetTemplateList");
    let ids: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "chirps3_precipitation_daily",
            "era5land_precipitation_hourly",
            "era5land_temperature_daily",
            "era5land_temperature_hourly",
            "era5land_temperature_hourly_edh",
            "sample_era5land_t2m_daily",
            "sample_era5land_t2m_daily_kelvin",
            "sample_worldpop_population_yearly",
            "worldpop_population_yearly",
        ],
        "built-ins and the custom template, by id"
    );

    let run = app
        .ingest(&json!({"dataset_id": "sample_era5land_t2m_daily_kelvin", "start": "2025-07-30"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    // No end: up to the latest available period of the source.
    assert_eq!(
        run["dataset"]["extent"]["temporal"],
        json!({"start": "2025-07-30", "end": "2025-07-31"})
    );
    let id = "sample_era5land_t2m_daily_kelvin_sle";
    check_era5(&app, id, "2025-07-30", "2025-07-31", "none")?;
    Ok(())
}

#[tokio::test]
async fn the_process_refuses_an_invalid_config_naming_file_and_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "extents:\n  - extent_id: sle\n    name: S\n    bbox: [-13.5, 6.9, -10.1, 10.0]\nserver:\n  bindd: x\n",
    )?;
    let out = std::process::Command::new(climate_tests::bin("climate-api"))
        .arg("--config")
        .arg(&path)
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml") && err.contains("bindd"), "{err}");
    Ok(())
}

#[tokio::test]
async fn runs_accepted_while_no_worker_runs_execute_after_a_restart() -> anyhow::Result<()> {
    // `serve` with the in-process queue accepts runs but executes none: the run stays queued in
    // SQLite. A standalone process started later on the same data re-announces it from the
    // database and executes it: the in-process queue is durable through the database.
    let mut app = TestApp::start(Shape::Standalone, Options::default()).await?;
    app.stop();
    app.spawn("climate-api", &["serve"])?;
    app.wait_ready().await?;
    let (_, id) = app.start_ingestion(&json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "2025-07-02"})).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, still) = app.get_json(&format!("/ingestions/{id}")).await?;
    assert_eq!(
        still["status"], "queued",
        "serve must not execute runs: {still}"
    );

    app.stop();
    app.spawn("climate-api", &["standalone"])?;
    app.wait_ready().await?;
    let done = app.wait_for_run(&id, Duration::from_secs(60)).await?;
    assert_eq!(done["status"], "succeeded", "{done}\n{}", app.logs());
    assert_eq!(done["attempts"], 1);
    Ok(())
}

#[tokio::test]
async fn migrate_applies_migrations_and_exits() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("c.yaml");
    let db = dir.path().join("m.db");
    std::fs::write(
        &path,
        format!(
            "data_dir: {}\ndatabase:\n  url: \"sqlite://{}\"\nextents:\n  - extent_id: sle\n    name: S\n    bbox: [-13.5, 6.9, -10.1, 10.0]\n",
            dir.path().display(),
            db.display()
        ),
    )?;
    for _ in 0..2 {
        let out = std::process::Command::new(climate_tests::bin("climate-api"))
            .args(["migrate", "--config"])
            .arg(&path)
            .output()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied"));
    }
    assert!(db.exists());
    Ok(())
}

#[tokio::test]
async fn the_embedded_default_config_ingests_the_bundled_samples() -> anyhow::Result<()> {
    // What `cargo run --release` does: no config, data under ./data of the working directory.
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            embedded_config: true,
            ..Options::default()
        },
    )
    .await?;
    let (_, info) = app.get_json("/info").await?;
    assert_eq!(info["name"], "Climate API (standalone)");
    for body in [
        json!({"dataset_id": "sample_worldpop_population_yearly", "start": "2026"}),
        json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "2025-07-31"}),
    ] {
        let run = app.ingest(&body).await?;
        assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    }
    assert!(
        app.dir
            .path()
            .join("data/samples/worldpop_sle_2026_1km.tif")
            .exists()
    );
    assert!(app.dir.path().join("data/climate-api.db").exists());
    let (_, list) = app.get_json("/datasets").await?;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));
    Ok(())
}

#[tokio::test]
async fn sharded_stores_are_written_and_read_by_xarray() -> anyhow::Result<()> {
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            templates: vec![format!(
                "- id: era5_sharded\n  name: ERA5-Land t2m, sharded\n  variable: t2m\n  period_type: daily\n  units: degC\n  ingestion:\n    provider: file\n    params: {{path: \"{}\"}}\n  transforms: [kelvin_to_celsius]\n  chunks: {{t: 5, y: 16, x: 16, shard: [2, 2, 2]}}\n",
                climate_tests::era5_sample().display()
            )],
            ..Options::default()
        },
    )
    .await?;
    let run = app
        .ingest(&json!({"dataset_id": "era5_sharded", "start": "2025-07-01", "end": "2025-07-31"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    let (_, root) = app.get_json("/zarr/era5_sharded_sle/zarr.json").await?;
    let meta = &root["consolidated_metadata"]["metadata"]["t2m"];
    assert_eq!(
        meta["chunk_grid"]["configuration"]["chunk_shape"],
        json!([10, 32, 32]),
        "shards"
    );
    let codecs = meta["codecs"].to_string();
    assert!(
        codecs.contains("sharding_indexed") && codecs.contains("[5,16,16]"),
        "{codecs}"
    );
    // 31 days in 10-day shards: four shard rows, one object per shard.
    let r = app.get("/zarr/era5_sharded_sle/t2m/c/3/0/0").await?;
    assert_eq!(r.status(), 200);
    check_era5(
        &app,
        "era5_sharded_sle",
        "2025-07-01",
        "2025-07-31",
        "kelvin_to_celsius",
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extent_with_a_crs_is_reprojected_with_proj() -> anyhow::Result<()> {
    // Sierra Leone in UTM 29N at 10 km, bilinear (the default) and nearest.
    let template = |id: &str, resampling: &str| {
        format!(
            "- id: {id}\n  name: ERA5-Land t2m ({resampling})\n  variable: t2m\n  period_type: daily\n  units: degC\n  ingestion:\n    provider: file\n    params: {{path: \"{}\"}}\n  transforms: [kelvin_to_celsius]\n{}",
            climate_tests::era5_sample().display(),
            if resampling == "default" {
                String::new()
            } else {
                format!("  resampling: {resampling}\n")
            }
        )
    };
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            templates: vec![
                template("t2m_bilinear", "default"),
                template("t2m_nearest", "nearest"),
            ],
            extents_yaml: Some(
                "extents:\n  - extent_id: sle\n    name: Sierra Leone (UTM 29N)\n    bbox: [-13.5, 6.9, -10.1, 10.0]\n    crs: \"EPSG:32629\"\n    resolution: 10000\n  - extent_id: nowhere\n    name: Unknown CRS\n    bbox: [-13.5, 6.9, -10.1, 10.0]\n    crs: \"EPSG:999999\"\n".into(),
            ),
            ..Options::default()
        },
    )
    .await?;
    for (id, method) in [("t2m_bilinear", "bilinear"), ("t2m_nearest", "nearest")] {
        let run = app
            .ingest(&json!({"dataset_id": id, "start": "2025-07-01", "end": "2025-07-05"}))
            .await?;
        assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
        let out = python(
            "check_reprojection.py",
            &[
                "--url",
                &app.url(&format!("/zarr/{id}_sle")),
                "--source",
                &climate_tests::era5_sample().to_string_lossy(),
                "--var",
                "t2m",
                "--start",
                "2025-07-01",
                "--end",
                "2025-07-05",
                "--crs",
                "EPSG:32629",
                "--method",
                method,
                "--transform",
                "kelvin_to_celsius",
            ],
        )?;
        assert!(out.contains("\"res\": 10000.0"), "{out}");
    }
    // A CRS PROJ does not know fails the run, naming the extent and the CRS.
    let run = app
        .ingest(&json!({"dataset_id": "t2m_nearest", "extent_id": "nowhere", "start": "2025-07-01", "end": "2025-07-02"}))
        .await?;
    assert_eq!(run["status"], "failed", "{run}");
    let msg = run["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("nowhere") && msg.contains("EPSG:999999"),
        "{msg}"
    );
    Ok(())
}
