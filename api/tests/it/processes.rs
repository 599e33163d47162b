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

pub fn districts() -> Value {
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
    assert_eq!(
        ids,
        vec![
            "zonal-statistics",
            "point-timeseries",
            "ingestion",
            "sync",
            "resample",
            "echo"
        ]
    );
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
        (
            json!({"features": {"href": "http://169.254.169.254/latest/districts.geojson"}}),
            400,
            "not fetched from URLs",
        ),
        (
            json!({"features": null, "feature_collection": "not_stored"}),
            404,
            "not_stored",
        ),
        (
            json!({"feature_collection_version": 2}),
            400,
            "feature_collection_version",
        ),
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
    // A page at a time, newest first.
    let (_, first) = app.get_json("/ogcapi/jobs?limit=1").await;
    assert_eq!(first["jobs"][0]["jobID"], jobs["jobs"][0]["jobID"]);
    let next = first["links"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["rel"] == "next"))
        .and_then(|l| l["href"].as_str())
        .and_then(|h| h.split_once("/ogcapi").map(|(_, p)| format!("/ogcapi{p}")))
        .expect("a next link");
    let (_, second) = app.get_json(&next).await;
    assert_eq!(second["jobs"][0]["jobID"], jobs["jobs"][1]["jobID"]);
    assert!(
        second["links"]
            .as_array()
            .is_some_and(|l| l.iter().all(|l| l["rel"] != "next")),
        "{second}"
    );
    let (status, bad) = app.get_json("/ogcapi/jobs?limit=0").await;
    assert_eq!(
        (status, bad["code"].as_str()),
        (400, Some("invalid_parameter"))
    );
    // OGC's filters.
    let (_, echoes) = app
        .get_json("/ogcapi/jobs?processID=echo&status=successful&type=process")
        .await;
    assert_eq!(echoes["jobs"].as_array().map(Vec::len), Some(2), "{echoes}");
    let (_, none) = app
        .get_json("/ogcapi/jobs?processID=zonal-statistics")
        .await;
    assert_eq!(none["jobs"].as_array().map(Vec::len), Some(0), "{none}");
    for bad in ["status=done", "type=openeo"] {
        let (status, _) = app.get_json(&format!("/ogcapi/jobs?{bad}")).await;
        assert_eq!(status, 400, "{bad}");
    }

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

    // A stored collection gives the inline features' figures; the job records the version it
    // read, and a later version does not change what an earlier one gives.
    for collection in [districts(), crate::features::twelve_districts()] {
        let a = app
            .send(
                Method::POST,
                "/features?id=districts",
                &[],
                Some(collection.to_string().into_bytes()),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
    let stored = |version: Option<u32>| {
        let mut i = inputs(json!({"feature_collection": "districts"}));
        i["inputs"]
            .as_object_mut()
            .expect("inputs")
            .remove("features");
        if let Some(v) = version {
            i["inputs"]["feature_collection_version"] = json!(v);
        }
        i
    };
    let pinned = app
        .send_json(Method::POST, execute, &[], &stored(Some(1)))
        .await;
    assert_eq!(pinned.status, 200, "{}", pinned.body);
    assert_eq!(
        pinned.body["rows"], daily.body["rows"],
        "version 1 holds the 13 districts"
    );
    let latest = app
        .send_json(
            Method::POST,
            execute,
            &[("prefer", "respond-async")],
            &stored(None),
        )
        .await;
    assert_eq!(latest.status, 201, "{}", latest.body);
    let job_id = latest.body["jobID"].as_str().expect("a job id").to_owned();
    let job = finished(&app, &format!("/ogcapi/jobs/{job_id}")).await;
    assert_eq!(job["status"], "successful", "{job}");
    let (_, result) = app
        .get_json(&format!("/ogcapi/jobs/{job_id}/results"))
        .await;
    assert_eq!(result["rows"].as_array().map(Vec::len), Some(12 * 31));
    let record = app
        .platform
        .db
        .get_job(climate_domain::ids::JobId::new(&job_id).expect("id"))
        .await
        .expect("db")
        .expect("the job");
    assert_eq!(
        record.inputs["inputs"]["feature_collection_version"], 2,
        "the job records the version it read: {}",
        record.inputs
    );

    point_timeseries_equal_xarray_at_the_nearest_cell(
        &app,
        &format!("{store}/{}", v.storage_prefix),
    )
    .await;

    // OWSLib's OGC API – Processes client over HTTP: lists, describes, executes.
    let base = app.serve().await;
    let features_path = features.path().display().to_string();
    let url = format!("{base}/ogcapi");
    let out = tokio::task::spawn_blocking(move || {
        climate_tests::python("check_owslib.py", &[&url, DATASET, &features_path])
    })
    .await
    .expect("joins")
    .expect("OWSLib runs");
    let owslib: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        owslib["processes"],
        json!([
            "zonal-statistics",
            "point-timeseries",
            "ingestion",
            "sync",
            "resample",
            "echo"
        ])
    );
    assert!(
        owslib["zonal_inputs"].as_array().is_some_and(
            |i| i.contains(&json!("feature_collection")) && i.contains(&json!("statistics"))
        ),
        "{}",
        owslib["zonal_inputs"]
    );
    assert_eq!(owslib["echo"], json!({"echo": {"from": "owslib"}}));
    assert_eq!(owslib["sync"]["rows"], daily.body["rows"]);
    assert_eq!(owslib["async_status"], "successful");
    assert_eq!(owslib["async"]["rows"], daily.body["rows"]);
}

/// `point-timeseries` of the ingested July: daily values equal xarray's nearest cell of the
/// stored Zarr, monthly means their mean; a point off the grid has nulls and a warning.
async fn point_timeseries_equal_xarray_at_the_nearest_cell(app: &InProcess, store: &str) {
    let points = json!({"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "freetown", "properties": {"ou": "OU_FT"}, "geometry": {"type": "Point", "coordinates": [-13.234, 8.484]}},
        {"type": "Feature", "id": "bo", "properties": {"ou": "OU_BO"}, "geometry": {"type": "Point", "coordinates": [-11.738, 7.964]}},
        {"type": "Feature", "id": "gulf_of_guinea", "properties": {"ou": "OU_SEA"}, "geometry": {"type": "Point", "coordinates": [0.5, 0.5]}},
    ]});
    let execute = "/ogcapi/processes/point-timeseries/execution";
    let inputs = |extra: Value| {
        let mut i =
            json!({"dataset_id": DATASET, "points": points, "datetime": "2025-07-01/2025-07-31"});
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
    assert_eq!(rows.len(), 3 * 31);
    assert!(
        daily.body["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("gulf_of_guinea") && w.contains("outside")),
        "{}",
        daily.body["warnings"]
    );
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), points.to_string()).expect("write");
    let out = climate_tests::python(
        "point_from_zarr.py",
        &[store, "t2m", &file.path().display().to_string()],
    )
    .expect("xarray reads the store");
    let reference: BTreeMap<String, Option<f64>> = serde_json::from_str(&out).expect("JSON");
    let mut july: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for row in rows {
        let id = row["feature_id"].as_str().expect("id");
        let key = format!("{id}|{}", row["period"].as_str().expect("period"));
        let ours = row["value"].as_f64();
        match reference[&key] {
            Some(expected) => {
                let ours = ours.unwrap_or_else(|| panic!("{key}: a value"));
                assert!(
                    (ours - expected).abs() <= 1e-6 * expected.abs().max(1.0),
                    "{key}: {ours} vs xarray {expected}"
                );
                july.entry(id).or_default().push(ours);
            }
            None => assert_eq!(ours, None, "{key}: off the grid"),
        }
    }
    assert_eq!(july.len(), 2);
    let monthly = app
        .send_json(Method::POST, execute, &[], &inputs(json!({"period_type": "monthly", "temporal_method": "mean", "format": "dhis2", "data_element": "DE_T2M", "org_unit_property": "ou"})))
        .await;
    assert_eq!(monthly.status, 200, "{}", monthly.body);
    let values = monthly.body["dataValues"].as_array().expect("dataValues");
    assert_eq!(
        values.len(),
        2,
        "the point off the grid has no value: {values:?}"
    );
    for (id, ou) in [("freetown", "OU_FT"), ("bo", "OU_BO")] {
        let dv = values
            .iter()
            .find(|v| v["orgUnit"] == ou)
            .expect("the org unit");
        assert_eq!(dv["period"], "202507");
        let mean = july[id].iter().sum::<f64>() / july[id].len() as f64;
        let value: f64 = dv["value"]
            .as_str()
            .expect("text")
            .parse()
            .expect("a number");
        assert!((value - mean).abs() < 1e-4, "{id}: {value} vs {mean}");
    }
    let off = app
        .send_json(Method::POST, execute, &[], &json!({"inputs": {"dataset_id": DATASET, "location": [0.5, 0.5], "datetime": "2025-07-01/2025-07-31"}}))
        .await;
    assert_eq!(off.status, 400, "{}", off.body);
    assert!(
        off.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("no point is on the grid")),
        "{}",
        off.body
    );
}

/// `ingestion` and `sync` as processes: each job admits its run as the REST routes do, waits
/// for it without holding a worker (its attempts stay at one), and ends as the run ends; a
/// repeated ingestion answers the version that covers it; a sync with nothing to do finishes at
/// once; callers without the ingest scope are refused before a job exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestion_and_sync_run_as_processes_that_wait_for_their_runs() {
    // Limits from the configuration: one unfinished job per caller, 5000 values at once.
    let app = InProcess::with_worker(&[
        ("CLIMATE_API__PROCESSES__MAX_ACTIVE_JOBS", "1"),
        ("CLIMATE_API__PROCESSES__SYNC_MAX_CELLS", "5000"),
    ])
    .await;
    let ingest = json!({"inputs": {"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "2025-07-10"}});
    let accepted = app
        .send_json(
            Method::POST,
            "/ogcapi/processes/ingestion/execution",
            &[("prefer", "respond-async")],
            &ingest,
        )
        .await;
    assert_eq!(accepted.status, 201, "{}", accepted.body);
    let job_id = accepted.body["jobID"].as_str().expect("id").to_owned();
    let job = finished(&app, &format!("/ogcapi/jobs/{job_id}")).await;
    assert_eq!(job["status"], "successful", "{job}");
    let (_, result) = app
        .get_json(&format!("/ogcapi/jobs/{job_id}/results"))
        .await;
    assert_eq!(
        (
            result["status"].as_str(),
            result["dataset_id"].as_str(),
            result["version"].as_i64()
        ),
        (Some("succeeded"), Some(DATASET), Some(1)),
        "{result}"
    );
    let run_path = result["links"][0]["href"]
        .as_str()
        .expect("the run")
        .to_owned();
    let (status, run) = app.get_json(&run_path).await;
    assert_eq!(
        (status, run["status"].as_str()),
        (200, Some("succeeded")),
        "{run}"
    );
    let record = app
        .platform
        .db
        .get_job(climate_domain::ids::JobId::new(&job_id).expect("id"))
        .await
        .expect("db")
        .expect("the job");
    assert_eq!(record.attempts, 1, "waiting is not a failed attempt");

    // Over the configured size a synchronous execution is refused, naming the asynchronous way.
    let zonal = json!({"inputs": {"dataset_id": DATASET, "features": districts(), "datetime": "2025-07-01/2025-07-10", "statistics": ["mean"]}});
    let execute = "/ogcapi/processes/zonal-statistics/execution";
    let refused = app.send_json(Method::POST, execute, &[], &zonal).await;
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (413, Some("too_large")),
        "{}",
        refused.body
    );
    let message = refused.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("more than the 5000") && message.contains("Prefer: respond-async"),
        "{message}"
    );
    let later = app
        .send_json(
            Method::POST,
            execute,
            &[("prefer", "respond-async")],
            &zonal,
        )
        .await;
    assert_eq!(later.status, 201, "{}", later.body);
    let path = format!("/ogcapi/jobs/{}", later.body["jobID"].as_str().expect("id"));
    assert_eq!(finished(&app, &path).await["status"], "successful");
    let (_, rows) = app.get_json(&format!("{path}/results")).await;
    assert_eq!(rows["rows"].as_array().map(Vec::len), Some(13 * 10));

    // The same request again: the current version covers it, synchronously.
    let again = app
        .send_json(
            Method::POST,
            "/ogcapi/processes/ingestion/execution",
            &[],
            &ingest,
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(
        (
            again.body["status"].as_str(),
            again.body["version"].as_i64()
        ),
        (Some("covered"), Some(1))
    );

    // A sync to a later end extends the dataset; a second one has nothing to do.
    let sync = json!({"inputs": {"dataset_id": DATASET, "end": "2025-07-20"}});
    let synced = app
        .send_json(Method::POST, "/ogcapi/processes/sync/execution", &[], &sync)
        .await;
    assert_eq!(synced.status, 200, "{}", synced.body);
    assert_eq!(
        (synced.body["status"].as_str(), synced.body["kind"].as_str()),
        (Some("succeeded"), Some("sync")),
        "{}",
        synced.body
    );
    assert_eq!(synced.body["version"], 2);
    assert!(
        synced.body["sync"].is_object(),
        "the plan comes with it: {}",
        synced.body
    );
    let idle = app
        .send_json(Method::POST, "/ogcapi/processes/sync/execution", &[], &sync)
        .await;
    assert_eq!(
        (idle.status, idle.body["status"].as_str()),
        (200, Some("nothing_to_do")),
        "{}",
        idle.body
    );

    for (process, inputs, status, named) in [
        (
            "ingestion",
            json!({"dataset_id": "no_such_template", "start": "2025-07-01"}),
            404,
            "no_such_template",
        ),
        (
            "ingestion",
            json!({"dataset_id": "sample_era5land_t2m_daily", "start": "July"}),
            400,
            "start",
        ),
        (
            "sync",
            json!({"dataset_id": "not_managed"}),
            404,
            "not_managed",
        ),
    ] {
        let a = app
            .send_json(
                Method::POST,
                &format!("/ogcapi/processes/{process}/execution"),
                &[],
                &json!({"inputs": inputs}),
            )
            .await;
        assert_eq!(a.status, status, "{process} {inputs}: {}", a.body);
        assert!(
            a.body["message"]
                .as_str()
                .is_some_and(|m| m.contains(named)),
            "{}",
            a.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_processes_need_the_ingest_scope() {
    let app = InProcess::with_worker(&[
        ("CLIMATE_API__AUTH__ENABLED", "true"),
        ("CLIMATE_API__AUTH__REQUESTS_PER_MINUTE", "0"),
    ])
    .await;
    let (_, key) = climate_infra::auth::create_key(
        app.platform.db.as_ref(),
        "reader",
        &[climate_domain::auth::Scope::Read],
        None,
        chrono::Utc::now(),
    )
    .await
    .expect("a key");
    let bearer = format!("Bearer {key}");
    for (process, inputs) in [
        (
            "ingestion",
            json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01"}),
        ),
        ("sync", json!({"dataset_id": DATASET})),
        (
            "resample",
            json!({"dataset_id": DATASET, "period_type": "weekly", "temporal_method": "mean"}),
        ),
    ] {
        for auth in [vec![], vec![("authorization", bearer.as_str())]] {
            let a = app
                .send_json(
                    Method::POST,
                    &format!("/ogcapi/processes/{process}/execution"),
                    &auth,
                    &json!({"inputs": inputs}),
                )
                .await;
            assert_eq!(a.status, 403, "{process}: {}", a.body);
            assert_eq!(a.body["code"], "insufficient_scope");
            assert!(
                a.body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("ingest scope")),
                "{}",
                a.body
            );
        }
    }
    let echo = app
        .send_json(
            Method::POST,
            "/ogcapi/processes/echo/execution",
            &[
                ("authorization", bearer.as_str()),
                ("prefer", "respond-async"),
            ],
            &json!({"inputs": {"message": 1}}),
        )
        .await;
    assert_eq!(
        echo.status, 201,
        "a reading process is open to readers: {}",
        echo.body
    );
    let (_, jobs) = app.get_json("/ogcapi/jobs").await;
    assert_eq!(
        jobs["jobs"].as_array().map(Vec::len),
        Some(0),
        "anonymous sees none of the reader's jobs"
    );
    let dismissed = app
        .send(
            Method::DELETE,
            &format!("/ogcapi/jobs/{}", echo.body["jobID"].as_str().expect("id")),
            &[("authorization", bearer.as_str())],
            None,
        )
        .await;
    assert_eq!(dismissed.status, 200, "{}", dismissed.body);
}
