//! The read surface: STAC, and (as they land) OGC API, downloads and pinned versions.

use climate_tests::{Options, Shape, TestApp, python, says};
use serde_json::json;

const EXTENTS: &str = "extents:\n  - extent_id: sle\n    name: Sierra Leone\n    bbox: [-13.5, 6.9, -10.1, 10.0]\n    country_code: SLE\n  - extent_id: sle_utm\n    name: Sierra Leone (UTM 29N)\n    bbox: [-13.5, 6.9, -10.1, 10.0]\n    crs: \"EPSG:32629\"\n    resolution: 10000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stac_documents_validate_and_real_clients_walk_the_catalog() -> anyhow::Result<()> {
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            extents_yaml: Some(EXTENTS.into()),
            ..Options::default()
        },
    )
    .await?;
    // Two published datasets (one geographic, one projected) and one unpublished.
    for (template, extent, publish) in [
        ("sample_era5land_t2m_daily", "sle", true),
        ("sample_era5land_t2m_daily", "sle_utm", true),
        ("sample_worldpop_population_yearly", "sle", false),
    ] {
        let run = app
            .ingest(&json!({"dataset_id": template, "extent_id": extent, "start": if template.contains("worldpop") { "2026" } else { "2025-07-01" }, "end": if template.contains("worldpop") { "2026" } else { "2025-07-10" }, "publish": publish}))
            .await?;
        assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    }

    let (status, col) = app
        .get_json("/stac/collections/sample_era5land_t2m_daily_sle")
        .await?;
    assert_eq!(status, 200, "{col}");
    assert_eq!(col["cube:dimensions"]["t"]["step"], "P1D");
    assert_eq!(
        col["cube:dimensions"]["t"]["extent"],
        json!(["2025-07-01T00:00:00Z", "2025-07-10T00:00:00Z"])
    );
    assert_eq!(col["cube:variables"]["t2m"]["unit"], "degC");
    assert_eq!(col["assets"]["zarr"]["proj:code"], "EPSG:4326");
    assert_eq!(col["renders"]["default"]["colormap_name"], "rdylbu_r");
    assert_eq!(col["renders"]["default"]["rescale"], json!([[15.0, 35.0]]));
    let (_, utm) = app
        .get_json("/stac/collections/sample_era5land_t2m_daily_sle_utm")
        .await?;
    assert_eq!(utm["cube:dimensions"]["x"]["reference_system"], 32629);
    assert_eq!(utm["cube:dimensions"]["x"]["step"], 10000.0);
    // The spatial extent is in WGS84 even for a projected cube, and covers the extent.
    let bbox = utm["extent"]["spatial"]["bbox"][0].clone();
    let b: Vec<f64> = serde_json::from_value(bbox)?;
    assert!(
        b[0] <= -13.5 && b[1] <= 6.9 && b[2] >= -10.1 && b[3] >= 10.0 && b[0] > -14.5,
        "{b:?}"
    );
    // Geographic axis names do not apply to a projected coverage.
    let (status, err) = app
        .get_json(
            "/ogcapi/collections/sample_era5land_t2m_daily_sle_utm/coverage?subset=Lon(-12:-11)",
        )
        .await?;
    assert_eq!(status, 400, "{err}");
    assert!(says(&err, "EPSG:32629"), "{err}");
    let (status, body) = app
        .get_json("/stac/collections/sample_worldpop_population_yearly_sle")
        .await?;
    assert_eq!(status, 404, "unpublished datasets stay out of STAC: {body}");

    let out = python(
        "check_stac.py",
        &[
            "--url",
            &app.url(""),
            "--schemas",
            &climate_tests::fixtures_dir()
                .join("schemas")
                .to_string_lossy(),
            "--expect",
            "sample_era5land_t2m_daily_sle,sample_era5land_t2m_daily_sle_utm",
        ],
    )?;
    assert!(out.contains("datacube"), "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_versions_are_served_immutable_while_zarr_follows_the_current() -> anyhow::Result<()>
{
    let app = TestApp::standalone().await?;
    let id = "sample_era5land_t2m_daily_sle";
    for (end, overwrite) in [("2025-07-05", false), ("2025-07-10", true)] {
        let run = app
            .ingest(&json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": end, "overwrite": overwrite}))
            .await?;
        assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    }
    let (_, ds) = app.get_json(&format!("/datasets/{id}")).await?;
    let v1_zarr = ds["versions"][0]["links"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["rel"] == "zarr"))
        .map(|l| l["href"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    assert_eq!(v1_zarr, app.url(&format!("/datasets/{id}/versions/1/zarr")));

    let get = |url: String| {
        let client = app.client.clone();
        async move { client.get(url).send().await }
    };
    let shape = |doc: &serde_json::Value| {
        doc["consolidated_metadata"]["metadata"]["t2m"]["shape"][0].clone()
    };
    let r = get(format!("{v1_zarr}/zarr.json")).await?;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(r.headers()["content-type"], "application/json");
    let v1: serde_json::Value = r.json().await?;
    assert_eq!(shape(&v1), 5, "version 1 keeps its 5 days");
    let r = get(app.url(&format!("/zarr/{id}/zarr.json"))).await?;
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let current: serde_json::Value = r.json().await?;
    assert_eq!(shape(&current), 10, "/zarr follows the current version");

    // A pinned object never changes: dates validate too, and ranges follow If-Range.
    let url = format!("{v1_zarr}/t2m/c/0/0/0");
    let r = get(url.clone()).await?;
    let (etag, modified) = (
        r.headers()["etag"].to_str()?.to_owned(),
        r.headers()["last-modified"].to_str()?.to_owned(),
    );
    let size = r.bytes().await?.len();
    let r = app
        .client
        .get(&url)
        .header("If-Modified-Since", &modified)
        .send()
        .await?;
    assert_eq!(r.status(), 304);
    let r = app
        .client
        .get(&url)
        .header("Range", "bytes=0-9")
        .header("If-Range", "\"some-other-etag\"")
        .send()
        .await?;
    assert_eq!(r.status(), 200, "a stale If-Range gets the whole object");
    assert_eq!(r.bytes().await?.len(), size);
    let r = app
        .client
        .get(&url)
        .header("Range", "bytes=0-9")
        .header("If-Range", &etag)
        .send()
        .await?;
    assert_eq!(r.status(), 206);
    let r = app
        .client
        .head(&url)
        .header("Range", "bytes=0-9")
        .send()
        .await?;
    assert_eq!(r.status(), 200, "Range applies to GET only");
    let r = app
        .client
        .get(&url)
        .header("Range", "bytes=9-1")
        .send()
        .await?;
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );

    // The same key in two versions: different objects, different ETags.
    let a = get(format!("{v1_zarr}/t2m/c/0/0/0")).await?;
    let b = get(app.url(&format!("/datasets/{id}/versions/2/zarr/t2m/c/0/0/0"))).await?;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    assert_ne!(a.headers()["etag"], b.headers()["etag"]);
    assert_eq!(a.headers()["content-type"], "application/octet-stream");
    let (_, listing) = app
        .get_json(&format!("/datasets/{id}/versions/1/zarr"))
        .await?;
    assert!(
        listing["entries"].as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["name"] == "zarr.json" && e["href"] == format!("{v1_zarr}/zarr.json"))),
        "{listing}"
    );
    let (status, err) = app
        .get_json(&format!("/datasets/{id}/versions/9/zarr/zarr.json"))
        .await?;
    assert_eq!(status, 404);
    assert_eq!(err["code"], "unknown_version", "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ogc_coverages_and_edr_answer_the_stored_values_in_every_format() -> anyhow::Result<()> {
    let app = TestApp::standalone().await?;
    let id = "sample_era5land_t2m_daily_sle";
    let run = app
        .ingest(&json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "2025-07-10"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());

    let (status, landing) = app.get_json("/ogcapi").await?;
    assert_eq!(status, 200);
    assert!(landing["links"].to_string().contains("/ogcapi/conformance"));
    let (_, conf) = app.get_json("/ogcapi/conformance").await?;
    assert!(
        conf["conformsTo"]
            .to_string()
            .contains("ogcapi-coverages-1/1.0/conf/core")
    );
    let (_, cols) = app.get_json("/ogcapi/collections").await?;
    assert_eq!(cols["collections"][0]["id"], id, "{cols}");
    let (_, col) = app.get_json(&format!("/ogcapi/collections/{id}")).await?;
    assert_eq!(
        col["extent"]["temporal"]["interval"][0],
        json!(["2025-07-01T00:00:00Z", "2025-07-10T00:00:00Z"])
    );
    let (_, domain) = app
        .get_json(&format!("/ogcapi/collections/{id}/coverage/domainset"))
        .await?;
    assert_eq!(
        domain["generalGrid"]["axis"][2]["coordinate"][9],
        "2025-07-10T00:00:00Z"
    );
    let (_, range) = app
        .get_json(&format!("/ogcapi/collections/{id}/coverage/rangetype"))
        .await?;
    assert_eq!(range["field"][0]["uom"]["code"], "degC");

    // Every format against the store read by xarray.
    python("check_ogc.py", &["--url", &app.url(""), "--id", id])?;

    // Bad parameters are 400s that name the parameter.
    for (query, names) in [
        ("coverage?bbox=1,2,3", "bbox"),
        ("coverage?bbox=-10,9,-12,8", "bbox"),
        ("coverage?colour=red", "colour"),
        ("coverage?f=xml", "f"),
        ("coverage?datetime=2024-01-01", "datetime"),
        ("coverage?datetime=tomorrow", "datetime"),
        ("coverage?subset=z(1:2)", "subset"),
        ("coverage?properties=tp", "properties"),
        ("coverage?scale-factor=0", "scale-factor"),
        ("coverage?datetime=2025-07-01/2025-07-03&f=png", "png"),
        ("coverage?bbox=20,20,21,21", "bbox"),
        ("position", "coords"),
        ("position?coords=POINT(40%2010)", "coords"),
        ("position?coords=LINESTRING(1%202)", "coords"),
        ("area?coords=POLYGON((0%200,%201%200,%200%200))", "coords"),
        (
            "area?coords=POLYGON((-12%208,-11%208,-11%209,-12%208))&crs=EPSG:3857",
            "crs",
        ),
        ("coverage?datetime=20000-01-01", "datetime"),
    ] {
        let (status, err) = app
            .get_json(&format!("/ogcapi/collections/{id}/{query}"))
            .await?;
        assert_eq!(status, 400, "{query}: {err}");
        assert_eq!(err["code"], "invalid_parameter", "{query}: {err}");
        let msg = err["message"].as_str().unwrap_or_default();
        assert!(msg.contains(names), "{query}: {msg}");
    }
    // An interval selects the periods it intersects; `*` leaves a subset end open.
    let (status, cov) = app
        .get_json(&format!(
            "/ogcapi/collections/{id}/coverage?datetime=2025-07-03T12:00:00Z/2025-07-05T00:00:00Z&subset=x(*:-13.2)"
        ))
        .await?;
    assert_eq!(status, 200, "{cov}");
    assert_eq!(
        cov["domain"]["axes"]["t"]["values"],
        json!([
            "2025-07-03T00:00:00Z",
            "2025-07-04T00:00:00Z",
            "2025-07-05T00:00:00Z"
        ])
    );
    assert_eq!(
        cov["domain"]["axes"]["x"]["num"], 4,
        "{}",
        cov["domain"]["axes"]["x"]
    );
    let (status, _) = app
        .get_json("/ogcapi/collections/no_such_dataset/coverage")
        .await?;
    assert_eq!(status, 404);
    for (query, names) in [
        ("format=csv", "format"),
        ("bbox=1,2", "bbox"),
        ("datetime=2030-01-01/..", "datetime"),
    ] {
        let (status, err) = app
            .get_json(&format!("/datasets/{id}/download?{query}"))
            .await?;
        assert_eq!(status, 400, "{query}: {err}");
        assert!(says(&err, names), "{err}");
    }
    let (_, ds) = app.get_json(&format!("/datasets/{id}")).await?;
    let rels: Vec<&str> = ds["links"]
        .as_array()
        .map(|l| l.iter().filter_map(|l| l["rel"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(rels, ["self", "zarr", "stac", "ogc-collection", "download"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_plans_say_what_a_sync_would_do() -> anyhow::Result<()> {
    let app = TestApp::standalone().await?;
    for body in [
        json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "2025-07-10"}),
        json!({"dataset_id": "sample_worldpop_population_yearly", "start": "2026", "end": "2026"}),
    ] {
        let run = app.ingest(&body).await?;
        assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    }
    let id = "sample_era5land_t2m_daily_sle";
    // Today has not ended: the default target is clamped back to a published day.
    let (status, plan) = app.get_json(&format!("/sync/{id}/plan")).await?;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["sync_kind"], "temporal");
    assert_eq!(plan["action"], "append");
    assert_eq!(plan["reason"], "new_periods");
    assert_eq!(plan["current_end"], "2025-07-10");
    assert_eq!(plan["delta_start"], "2025-07-11");
    assert_eq!(
        plan["target_end_source"], "default_today_clamped_by_availability",
        "{plan}"
    );
    let (_, plan) = app
        .get_json(&format!("/sync/{id}/plan?end=2025-07-20"))
        .await?;
    assert_eq!(plan["target_end_source"], "request");
    assert_eq!(plan["delta_end"], "2025-07-20");
    let (_, plan) = app
        .get_json(&format!("/sync/{id}/plan?end=2025-07-05"))
        .await?;
    assert_eq!(plan["action"], "no_op", "{plan}");
    assert_eq!(plan["reason"], "up_to_date");
    let (status, err) = app
        .get_json(&format!("/sync/{id}/plan?end=2024-01-01"))
        .await?;
    assert_eq!(status, 400, "{err}");
    assert!(says(&err, "end"), "{err}");
    let (status, err) = app.get_json(&format!("/sync/{id}/plan?end=July")).await?;
    assert_eq!(status, 400, "{err}");
    let (status, _) = app.get_json("/sync/no_such_dataset/plan").await?;
    assert_eq!(status, 404);
    // A release dataset without a release policy stays on the newest ended year.
    let (_, plan) = app
        .get_json("/sync/sample_worldpop_population_yearly_sle/plan")
        .await?;
    assert_eq!(plan["sync_kind"], "release");
    assert_eq!(plan["action"], "no_op", "{plan}");
    Ok(())
}

/// The time-chunk indices of the `t2m` objects a version directory holds itself.
fn own_time_chunks(version_dir: &std::path::Path) -> Vec<String> {
    climate_tests::entries(&version_dir.join("t2m/c"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_appends_only_the_new_time_chunks_and_reuses_the_rest() -> anyhow::Result<()> {
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            templates: vec!["- id: t2m_5d\n  name: 2 m temperature in 5-day chunks\n  variable: t2m\n  period_type: daily\n  units: degC\n  ingestion:\n    provider: file\n    params: {path: \"era5.nc\", variable: t2m}\n  transforms: [kelvin_to_celsius]\n  chunks: {t: 5}\n  sync: {kind: temporal, execution: append}\n".into()],
            files: vec![(climate_tests::era5_sample(), "era5.nc".into())],
            ..Options::default()
        },
    )
    .await?;
    let id = "t2m_5d_sle";
    let run = app
        .ingest(&json!({"dataset_id": "t2m_5d", "start": "2025-07-01", "end": "2025-07-10"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());

    // Nothing newer requested than what is there: no run.
    let (status, body) = app.post_sync(id, &json!({"end": "2025-07-08"})).await?;
    assert_eq!(status, 200);
    assert_eq!(body["action"], "no_op", "{body}");

    let (sync, run) = app.sync_and_wait(id, &json!({"end": "2025-07-20"})).await?;
    assert_eq!(sync["action"], "append", "{body}");
    assert_eq!(sync["delta_start"], "2025-07-11");
    assert_eq!(run["kind"], "sync");
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    let (_, ds) = app.get_json(&format!("/datasets/{id}")).await?;
    assert_eq!(ds["version"], 2);
    assert_eq!(
        ds["extent"]["temporal"],
        json!({"start": "2025-07-01", "end": "2025-07-20"})
    );

    // Version 2 wrote only time chunks 2 and 3 (11-15, 16-20); chunks 0 and 1 are version 1's.
    let versions = app.version_dirs(id);
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(own_time_chunks(&versions[0]), ["0", "1"]);
    assert_eq!(own_time_chunks(&versions[1]), ["2", "3"]);

    // Every route reads the whole series: /zarr through the fallback, OGC through the reader.
    climate_tests::check_era5(&app, id, "2025-07-01", "2025-07-20", "kelvin_to_celsius")?;
    python("check_ogc.py", &["--url", &app.url(""), "--id", id])?;
    let (_, plan) = app
        .get_json(&format!("/sync/{id}/plan?end=2025-07-20"))
        .await?;
    assert_eq!(plan["action"], "no_op", "{plan}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_sync_rebuilds_with_the_newer_release() -> anyhow::Result<()> {
    let tif = climate_tests::worldpop_sample();
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            templates: vec!["- id: pop\n  name: Population (releases)\n  variable: pop_total\n  period_type: yearly\n  units: people\n  ingestion:\n    provider: file\n    params: {path: \"pop/worldpop_sle_{year}_1km.tif\"}\n  sync: {kind: release, availability: {latest_year: 2027, allow_future: true}}\n".into()],
            // The 2027 "release" is the 2026 file under the next year's name.
            files: vec![
                (tif.clone(), "pop/worldpop_sle_2026_1km.tif".into()),
                (tif, "pop/worldpop_sle_2027_1km.tif".into()),
            ],
            ..Options::default()
        },
    )
    .await?;
    let run = app
        .ingest(&json!({"dataset_id": "pop", "start": "2026", "end": "2026"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    let (_, plan) = app.get_json("/sync/pop_sle/plan").await?;
    assert_eq!(plan["action"], "rematerialize", "{plan}");
    assert_eq!(plan["reason"], "newer_release");
    assert_eq!(plan["target_end_source"], "latest_release");
    let (sync, run) = app.sync_and_wait("pop_sle", &json!({})).await?;
    assert_eq!(sync["action"], "rematerialize", "{sync}");
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    let (_, ds) = app.get_json("/datasets/pop_sle").await?;
    assert_eq!(ds["version"], 2);
    assert_eq!(
        ds["extent"]["temporal"],
        json!({"start": "2027", "end": "2027"})
    );
    // Now current: nothing to do, no run.
    let (status, body) = app.post_sync("pop_sle", &json!({})).await?;
    assert_eq!(status, 200);
    assert_eq!(body["action"], "no_op", "{body}");
    // Unknown fields are refused by name.
    let (status, body) = app.post_sync("pop_sle", &json!({"until": "2030"})).await?;
    assert_eq!(status, 400);
    assert!(says(&body, "until"), "{body}");
    Ok(())
}
