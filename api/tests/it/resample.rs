//! `resample`: a derived managed dataset aggregated in time from a stored one, published like
//! any other and following its source as it syncs; its values equal xarray's resample of the
//! stored source.

use std::time::Duration;

use axum::http::Method;
use serde_json::{Value, json};

use crate::support::InProcess;

const SOURCE: &str = "sample_era5land_t2m_daily_sle";
const DERIVED: &str = "sample_era5land_t2m_daily_weekly_mean_sle";

async fn run_finished(app: &InProcess, path: &str) -> Value {
    for _ in 0..600 {
        let (_, r) = app.get_json(path).await;
        if matches!(
            r["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} did not finish");
}

/// The store directory of `dataset`'s version `n`.
async fn store_of(app: &InProcess, dataset: &str, n: i64) -> String {
    let v = app
        .platform
        .db
        .get_version(&climate_domain::DatasetId::new(dataset).expect("id"), n)
        .await
        .expect("db")
        .unwrap_or_else(|| panic!("{dataset} version {n}"));
    let root = app
        .platform
        .config
        .store_url()
        .trim_start_matches("file://")
        .to_owned();
    format!("{root}/{}", v.storage_prefix)
}

/// The derived version `n` against xarray's weekly mean of the source's version `m`.
async fn equals_xarray(app: &InProcess, m: i64, n: i64) -> Vec<String> {
    let out = climate_tests::python(
        "resample_from_zarr.py",
        &[
            &store_of(app, SOURCE, m).await,
            &store_of(app, DERIVED, n).await,
            "t2m",
            "weekly",
            "mean",
        ],
    )
    .expect("xarray resamples the source");
    let check: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(check["nan_match"], true, "{check}");
    let diff = check["max_abs_diff"].as_f64().expect("values to compare");
    assert!(
        diff < 1e-4,
        "derived weekly means differ from xarray's by {diff}"
    );
    serde_json::from_value(check["periods"].clone()).expect("periods")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resampled_dataset_is_published_and_follows_its_source() {
    let app = InProcess::with_worker(&[]).await;
    let (status, run) = app
        .post_json("/ingestions", &json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "2025-07-20"}))
        .await;
    assert_eq!(status, 202, "{run}");
    let run = run_finished(
        &app,
        &format!("/ingestions/{}", run["ingestion_id"].as_str().expect("id")),
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");

    let execute = "/ogcapi/processes/resample/execution";
    for (inputs, status, named) in [
        (
            json!({"dataset_id": SOURCE, "period_type": "hourly", "temporal_method": "mean"}),
            400,
            "period_type",
        ),
        (
            json!({"dataset_id": SOURCE, "period_type": "weekly", "temporal_method": "median"}),
            400,
            "temporal_method",
        ),
        (
            json!({"dataset_id": SOURCE, "period_type": "daily", "temporal_method": "mean"}),
            400,
            "finer",
        ),
        (
            json!({"dataset_id": SOURCE, "period_type": "monthly", "temporal_method": "sum"}),
            400,
            "no whole monthly",
        ),
        (
            json!({"dataset_id": "nothing_here", "period_type": "weekly", "temporal_method": "mean"}),
            404,
            "nothing_here",
        ),
    ] {
        let a = app
            .send_json(Method::POST, execute, &[], &json!({"inputs": inputs}))
            .await;
        assert_eq!(a.status, status, "{inputs}: {}", a.body);
        assert!(
            a.body["message"]
                .as_str()
                .is_some_and(|m| m.contains(named)),
            "{inputs}: {}",
            a.body
        );
    }

    let done = app
        .send_json(Method::POST, execute, &[], &json!({"inputs": {"dataset_id": SOURCE, "period_type": "weekly", "temporal_method": "mean"}}))
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(
        (
            done.body["status"].as_str(),
            done.body["dataset_id"].as_str(),
            done.body["source"].as_str()
        ),
        (Some("succeeded"), Some(DERIVED), Some(SOURCE)),
        "{}",
        done.body
    );
    // 1–20 July: the weeks of 7 and 14 July are whole; 30 June and 21 July are not there.
    assert_eq!(
        equals_xarray(&app, 1, 1).await,
        vec!["2025-07-07", "2025-07-14"]
    );

    // Published like any other dataset.
    let (status, ds) = app.get_json(&format!("/datasets/{DERIVED}")).await;
    assert_eq!(status, 200, "{ds}");
    assert_eq!(
        (
            ds["extent"]["temporal"]["start"].as_str(),
            ds["extent"]["temporal"]["end"].as_str(),
            ds["period_type"].as_str()
        ),
        (Some("2025-W28"), Some("2025-W29"), Some("weekly")),
        "{ds}"
    );
    for path in [
        format!("/stac/collections/{DERIVED}"),
        format!("/ogcapi/collections/{DERIVED}"),
        format!("/zarr/{DERIVED}/zarr.json"),
    ] {
        let (status, body) = app.get_json(&path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }

    // The source syncs to the end of July: the derived dataset follows on its own.
    let (status, sync) = app
        .post_json(&format!("/sync/{SOURCE}"), &json!({"end": "2025-07-31"}))
        .await;
    assert_eq!(status, 202, "{sync}");
    let run = run_finished(
        &app,
        &format!(
            "/ingestions/{}",
            sync["run"]["ingestion_id"].as_str().expect("id")
        ),
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let mut followed = Value::Null;
    for _ in 0..600 {
        let (_, ds) = app.get_json(&format!("/datasets/{DERIVED}")).await;
        if ds["extent"]["temporal"]["end"] == "2025-W30" {
            followed = ds;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, plan) = app.get_json(&format!("/sync/{DERIVED}/plan")).await;
    let (_, runs) = app.get_json("/ingestions").await;
    assert_eq!(
        followed["version"], 2,
        "the derived dataset followed its source: {followed}\nplan {plan}\nruns {runs}"
    );
    assert_eq!(
        equals_xarray(&app, 2, 2).await,
        vec!["2025-07-07", "2025-07-14", "2025-07-21"]
    );
    // Asked again, it is current already.
    let again = app
        .send_json(Method::POST, execute, &[], &json!({"inputs": {"dataset_id": SOURCE, "period_type": "weekly", "temporal_method": "mean"}}))
        .await;
    assert_eq!(
        (again.status, again.body["status"].as_str()),
        (200, Some("covered")),
        "{}",
        again.body
    );
}
