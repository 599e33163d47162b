//! OGC API – Processes in process: the process list and descriptions, refusals that name the
//! input, and executions run by a worker through the job engine — synchronous and
//! asynchronous, job status, results, dismissal — with zonal statistics of an ingested dataset
//! checked against exactextract on the stored grid.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::Method;
use object_store::ObjectStoreExt as _;
use serde_json::{Value, json};

use crate::support::InProcess;

const DATASET: &str = "sample_era5land_t2m_daily_sle";

fn districts() -> Value {
    let path = climate_tests::fixtures_dir().join("sierra_leone_districts.geojson");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the districts fixture"))
        .expect("GeoJSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_are_listed_described_and_declared() {
    let app = InProcess::start(&[]).await;
    let (status, list) = app.get_json("/ogcapi/processes").await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["zonal-statistics", "echo"]);
    let (status, zonal) = app.get_json("/ogcapi/processes/zonal-statistics").await;
    assert_eq!(status, 200, "{zonal}");
    assert_eq!(
        zonal["inputs"]["statistics"]["schema"]["items"]["enum"],
        json!([
            "mean", "sum", "count", "min", "max", "stdev", "median", "majority"
        ])
    );
    assert!(
        zonal["inputs"]["period_type"]["schema"]["enum"]
            .as_array()
            .is_some_and(|e| e.contains(&json!("quarterly")))
    );
    assert_eq!(
        zonal["jobControlOptions"],
        json!(["sync-execute", "async-execute", "dismiss"])
    );
    assert!(zonal["links"].as_array().is_some_and(|l| l.iter().any(|l| {
        l["href"]
            .as_str()
            .is_some_and(|h| h.ends_with("/ogcapi/processes/zonal-statistics/execution"))
    })));
    let (status, missing) = app.get_json("/ogcapi/processes/nope").await;
    assert_eq!(
        (status, missing["code"].as_str()),
        (404, Some("unknown_process"))
    );
    let (_, conformance) = app.get_json("/ogcapi/conformance").await;
    for class in [
        "core",
        "ogc-process-description",
        "json",
        "job-list",
        "dismiss",
    ] {
        let uri = format!("http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/{class}");
        assert!(
            conformance["conformsTo"]
                .as_array()
                .is_some_and(|c| c.contains(&json!(uri))),
            "{class} declared"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_refused_naming_the_input() {
    let app = InProcess::start(&[]).await;
    let base = json!({
        "dataset_id": DATASET,
        "features": districts(),
        "datetime": "2025-07-01/2025-07-31",
        "statistics": ["mean"]
    });
    let cases = [
        (json!({"features": null}), 400, "features"),
        (json!({"statistics": ["average"]}), 400, "statistics"),
        (json!({"datetime": "July"}), 400, "datetime"),
        (json!({"period_type": "monthly"}), 400, "temporal_method"),
        (json!({"format": "dhis2"}), 400, "data_element"),
        (json!({"colour": "red"}), 400, "colour"),
        (
            json!({"features": {"type": "FeatureCollection", "features": [
                {"type": "Feature", "id": "bow", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]}}
            ]}}),
            400,
            "bow",
        ),
        (json!({"dataset_id": "nothing_here"}), 404, "nothing_here"),
    ];
    for (change, status, named) in cases {
        let mut inputs = base.clone();
        for (k, v) in change.as_object().expect("object") {
            if v.is_null() {
                inputs.as_object_mut().expect("object").remove(k);
            } else {
                inputs[k] = v.clone();
            }
        }
        let a = app
            .send_json(
                Method::POST,
                "/ogcapi/processes/zonal-statistics/execution",
                &[],
                &json!({"inputs": inputs}),
            )
            .await;
        assert_eq!(a.status, status, "{change}: {}", a.body);
        let message = a.body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(named),
            "{change}: the message names {named}: {message}"
        );
    }
}

/// Waits (up to 60 s) for the job at `location` to finish; returns its statusInfo.
async fn finished(app: &InProcess, location: &str) -> Value {
    for _ in 0..600 {
        let (status, job) = app.get_json(location).await;
        assert_eq!(status, 200, "{job}");
        if matches!(
            job["status"].as_str(),
            Some("successful" | "failed" | "dismissed")
        ) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the job at {location} did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_run_as_jobs_synchronously_and_asynchronously() {
    let app = InProcess::with_worker(&[]).await;
    let execute = "/ogcapi/processes/echo/execution";
    let sync = app
        .send_json(
            Method::POST,
            execute,
            &[],
            &json!({"inputs": {"message": {"hello": [1, 2]}}}),
        )
        .await;
    assert_eq!(sync.status, 200, "{}", sync.body);
    assert_eq!(sync.body, json!({"echo": {"hello": [1, 2]}}));

    let asynchronous = app
        .send_json(
            Method::POST,
            execute,
            &[("prefer", "respond-async")],
            &json!({"inputs": {"message": "later"}}),
        )
        .await;
    assert_eq!(asynchronous.status, 201, "{}", asynchronous.body);
    assert_eq!(asynchronous.headers["preference-applied"], "respond-async");
    let location = asynchronous.headers["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let path = location
        .split_once("/ogcapi")
        .map(|(_, p)| format!("/ogcapi{p}"))
        .expect("a job URL");
    assert_eq!(asynchronous.body["status"], "accepted");
    let job = finished(&app, &path).await;
    assert_eq!(job["status"], "successful", "{job}");
    assert_eq!(job["processID"], "echo");
    let (status, result) = app.get_json(&format!("{path}/results")).await;
    assert_eq!((status, result), (200, json!({"echo": "later"})));
    let (_, jobs) = app.get_json("/ogcapi/jobs").await;
    assert_eq!(
        jobs["jobs"].as_array().map(Vec::len),
        Some(2),
        "both executions are the caller's jobs"
    );

    let dismissed = app.send(Method::DELETE, &path, &[], None).await;
    assert_eq!(
        (dismissed.status, dismissed.body["status"].as_str()),
        (200, Some("dismissed"))
    );
    let (status, gone) = app.get_json(&path).await;
    assert_eq!((status, gone["code"].as_str()), (404, Some("unknown_job")));

    // Past its expiry the first job goes, with its result object.
    let first = jobs["jobs"][1]["jobID"]
        .as_str()
        .expect("the synchronous job")
        .to_owned();
    let first_id = climate_domain::ids::JobId::new(&first).expect("a job id");
    let object = object_store::path::Path::from(climate_processes::result_key(first_id).as_str());
    let store = app.platform.store.object_store();
    assert!(store.head(&object).await.is_ok(), "the result is stored");
    let later = chrono::Utc::now() + chrono::Duration::days(8);
    let removed = climate_infra::housekeeping::purge_expired_jobs(&app.platform, later)
        .await
        .expect("purge");
    assert_eq!(
        removed, 1,
        "the remaining finished job expires after the retention"
    );
    assert!(matches!(
        store.head(&object).await,
        Err(object_store::Error::NotFound { .. })
    ));
    let (status, _) = app.get_json(&format!("/ogcapi/jobs/{first}")).await;
    assert_eq!(status, 404, "an expired job is gone");

    let (status, _) = app.get_json("/ogcapi/jobs/not-a-job").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zonal_statistics_of_an_ingested_dataset_equal_exactextract_on_the_stored_grid() {
    let app = InProcess::with_worker(&[]).await;
    let (status, run) = app
        .post_json("/ingestions", &json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "2025-07-31"}))
        .await;
    assert_eq!(status, 202, "{run}");
    let run_path = format!(
        "/ingestions/{}",
        run["ingestion_id"].as_str().expect("an id")
    );
    let mut done = Value::Null;
    for _ in 0..600 {
        let (_, r) = app.get_json(&run_path).await;
        if matches!(
            r["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            done = r;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(done["status"], "succeeded", "{done}");

    let execute = "/ogcapi/processes/zonal-statistics/execution";
    let inputs = |extra: Value| {
        let mut i = json!({"dataset_id": DATASET, "features": districts(), "datetime": "2025-07-01/2025-07-31", "statistics": ["mean", "max"]});
        for (k, v) in extra.as_object().expect("object") {
            i[k] = v.clone();
        }
        json!({"inputs": i})
    };
    let daily = app
        .send_json(Method::POST, execute, &[], &inputs(json!({})))
        .await;
    assert_eq!(daily.status, 200, "{}", daily.body);
    let rows = daily.body["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 13 * 31, "13 districts × 31 days");
    assert_eq!(daily.body["period_type"], "daily");

    // The stored grid, read by xarray, through exactextract.
    let v = app
        .platform
        .db
        .get_version(&climate_domain::DatasetId::new(DATASET).expect("id"), 1)
        .await
        .expect("db")
        .expect("version 1");
    let store = app
        .platform
        .config
        .store_url()
        .trim_start_matches("file://")
        .to_owned();
    let features = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(features.path(), districts().to_string()).expect("write");
    let out = climate_tests::python(
        "zonal_from_zarr.py",
        &[
            &format!("{store}/{}", v.storage_prefix),
            "t2m",
            &features.path().display().to_string(),
        ],
    )
    .expect("exactextract over the stored store");
    let reference: BTreeMap<String, Option<f64>> = serde_json::from_str(&out).expect("JSON");
    assert_eq!(reference.len(), rows.len());
    for row in rows {
        let key = format!(
            "{}|{}",
            row["feature_id"].as_str().expect("id"),
            row["period"].as_str().expect("period")
        );
        let expected = reference[&key].expect("every district has data");
        let ours = row["mean"].as_f64().expect("a mean");
        assert!(
            (ours - expected).abs() <= 1e-6 * expected.abs().max(1.0),
            "{key}: {ours} vs exactextract {expected}"
        );
        assert!(row["max"].as_f64().expect("a max") >= ours);
    }

    // Monthly: one row per district; weekly: the incomplete edge weeks are dropped and listed.
    let monthly = app
        .send_json(
            Method::POST,
            execute,
            &[],
            &inputs(json!({"period_type": "monthly", "temporal_method": "mean"})),
        )
        .await;
    assert_eq!(monthly.status, 200, "{}", monthly.body);
    let mrows = monthly.body["rows"].as_array().expect("rows");
    assert_eq!(mrows.len(), 13);
    assert!(mrows.iter().all(|r| r["period"] == "2025-07"));
    let weekly = app
        .send_json(
            Method::POST,
            execute,
            &[],
            &inputs(json!({"period_type": "weekly", "temporal_method": "max"})),
        )
        .await;
    assert_eq!(weekly.status, 200, "{}", weekly.body);
    assert_eq!(
        weekly.body["dropped_periods"],
        json!(["2025-W27", "2025-W31"])
    );
    let weeks: std::collections::BTreeSet<&str> = weekly.body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["period"].as_str())
        .collect();
    assert_eq!(
        weeks.into_iter().collect::<Vec<_>>(),
        vec!["2025-W28", "2025-W29", "2025-W30"]
    );

    // DHIS2: a dataValueSet with DHIS2 period ids and plain decimal values.
    let dhis2 = app
        .send_json(Method::POST, execute, &[], &inputs(json!({"period_type": "monthly", "temporal_method": "mean", "statistics": ["mean"], "format": "dhis2", "data_element": "Tk5MdeCkmDT"})))
        .await;
    assert_eq!(dhis2.status, 200, "{}", dhis2.body);
    let values = dhis2.body["dataValues"].as_array().expect("dataValues");
    assert_eq!(values.len(), 13);
    for dv in values {
        assert_eq!(
            (dv["dataElement"].as_str(), dv["period"].as_str()),
            (Some("Tk5MdeCkmDT"), Some("202507"))
        );
        let value = dv["value"].as_str().expect("a string value");
        assert!(
            value.parse::<f64>().is_ok() && !value.contains('e'),
            "{value}"
        );
        let monthly_mean = mrows
            .iter()
            .find(|r| r["feature_id"] == dv["orgUnit"])
            .expect("the same district")["mean"]
            .as_f64()
            .expect("mean");
        assert!((value.parse::<f64>().expect("number") - monthly_mean).abs() < 1e-6);
    }
    let csv = app
        .send_json(
            Method::POST,
            execute,
            &[],
            &inputs(json!({"format": "csv"})),
        )
        .await;
    assert_eq!(csv.status, 200);
    let text = csv.body.as_str().expect("CSV text");
    assert!(text.starts_with("feature_id,period,mean,max\n"), "{text}");
    assert_eq!(text.lines().count(), 1 + 13 * 31);
}
