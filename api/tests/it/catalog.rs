//! The versioned catalog: every change is in the dataset's history; an earlier version can be
//! made current again (and a later sync appends to it); an unpublished dataset is gone from
//! every public surface except for callers with the admin scope.

use std::time::Duration;

use axum::http::Method;
use chrono::Utc;
use climate_domain::auth::Scope;
use serde_json::{Value, json};

use crate::support::InProcess;

const DATASET: &str = "sample_era5land_t2m_daily_sle";

struct Keys {
    admin: String,
    /// The subject the admin key acts as.
    admin_subject: String,
    reader: String,
}

async fn keys(app: &InProcess) -> Keys {
    let key = |name: &'static str, scope: Scope| async move {
        let (record, k) = climate_infra::auth::create_key(
            app.platform.db.as_ref(),
            name,
            &[scope],
            None,
            Utc::now(),
        )
        .await
        .expect("a key");
        (format!("Bearer {k}"), format!("key:{}", record.key_id))
    };
    let (admin, admin_subject) = key("ops", Scope::Admin).await;
    Keys {
        admin,
        admin_subject,
        reader: key("dashboard", Scope::Read).await.0,
    }
}

/// The actions of a history page, newest first.
fn actions(h: &Value) -> Vec<&str> {
    h["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect()
}

/// `method path` with a JSON body, as the admin key.
async fn as_admin(
    app: &InProcess,
    k: &Keys,
    method: Method,
    path: &str,
    body: &Value,
) -> crate::support::Answer {
    app.send_json(method, path, &[("authorization", k.admin.as_str())], body)
        .await
}

async fn get(app: &InProcess, path: &str, auth: &str) -> (u16, Value) {
    let a = app
        .send(Method::GET, path, &[("authorization", auth)], None)
        .await;
    (a.status, a.body)
}

/// Posts `body` to `path` as `auth` and waits for the run it started to succeed.
async fn run(app: &InProcess, path: &str, body: Value, auth: &str) -> Value {
    let a = app
        .send_json(Method::POST, path, &[("authorization", auth)], &body)
        .await;
    assert_eq!(a.status, 202, "{path}: {}", a.body);
    let id = a.body["ingestion_id"]
        .as_str()
        .or_else(|| a.body["run"]["ingestion_id"].as_str())
        .expect("a run")
        .to_owned();
    for _ in 0..600 {
        let (_, r) = get(app, &format!("/ingestions/{id}"), auth).await;
        if matches!(
            r["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            assert_eq!(r["status"], "succeeded", "{r}");
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {id} did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_rollback_and_publication() {
    let app = InProcess::with_worker(&[
        ("CLIMATE_API__AUTH__ENABLED", "true"),
        ("CLIMATE_API__AUTH__REQUESTS_PER_MINUTE", "0"),
    ])
    .await;
    let k = keys(&app).await;
    run(&app, "/ingestions", json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "2025-07-10"}), &k.admin).await;
    let v2 = run(
        &app,
        &format!("/sync/{DATASET}"),
        json!({"end": "2025-07-20"}),
        &k.admin,
    )
    .await;

    let (status, h) = get(&app, &format!("/datasets/{DATASET}/history"), &k.reader).await;
    assert_eq!(status, 200, "{h}");
    let first: Vec<(&str, i64)> = h["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default(),
                e["version"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        first,
        vec![("new_version", 2), ("publish", 1), ("new_version", 1)],
        "newest first"
    );
    assert_eq!(
        h["events"][0]["cause"], v2["ingestion_id"],
        "the run that made it"
    );
    assert_eq!(
        h["events"][0]["actor"],
        k.admin_subject.as_str(),
        "who asked for the sync"
    );

    // Version 2 appended to version 1: it reads version 1's chunks.
    let (status, version) = get(&app, &format!("/datasets/{DATASET}/versions/2"), &k.reader).await;
    assert_eq!(status, 200, "{version}");
    assert_eq!(
        (version["current"].as_bool(), version["bases"].clone()),
        (Some(true), json!([1]))
    );
    assert_eq!(
        version["coverage"],
        json!({"start": "2025-07-01", "end": "2025-07-20"})
    );
    assert!(
        version["size_bytes"].as_u64().is_some_and(|n| n > 0),
        "{version}"
    );
    assert_eq!(version["scope"]["append"], true);

    // Roll back to version 1: every surface follows at once.
    let pinned = app
        .send(
            Method::GET,
            &format!("/datasets/{DATASET}/versions/1/zarr/zarr.json"),
            &[("authorization", k.reader.as_str())],
            None,
        )
        .await;
    assert_eq!(pinned.status, 200);
    for auth in [k.reader.as_str(), ""] {
        let a = app
            .send_json(
                Method::POST,
                &format!("/datasets/{DATASET}/rollback"),
                &[("authorization", auth)],
                &json!({"version": 1}),
            )
            .await;
        assert!(
            matches!(a.status, 401 | 403),
            "rollback needs admin: {}",
            a.body
        );
    }
    let back = as_admin(
        &app,
        &k,
        Method::POST,
        &format!("/datasets/{DATASET}/rollback"),
        &json!({"version": 1}),
    )
    .await;
    assert_eq!(
        (back.status, back.body["version"].as_i64()),
        (200, Some(1)),
        "{}",
        back.body
    );
    let (_, ds) = get(&app, &format!("/datasets/{DATASET}"), &k.reader).await;
    assert_eq!(
        (
            ds["version"].as_i64(),
            ds["extent"]["temporal"]["end"].as_str()
        ),
        (Some(1), Some("2025-07-10"))
    );
    let current = app
        .send(
            Method::GET,
            &format!("/zarr/{DATASET}/zarr.json"),
            &[("authorization", k.reader.as_str())],
            None,
        )
        .await;
    assert_eq!(current.body, pinned.body, "/zarr serves version 1");
    let (_, stac) = get(&app, &format!("/stac/collections/{DATASET}"), &k.reader).await;
    assert!(
        stac["extent"]["temporal"]["interval"][0][1]
            .as_str()
            .is_some_and(|t| t.starts_with("2025-07-10")),
        "{stac}"
    );
    let missing = as_admin(
        &app,
        &k,
        Method::POST,
        &format!("/datasets/{DATASET}/rollback"),
        &json!({"version": 9}),
    )
    .await;
    assert_eq!(
        (missing.status, missing.body["code"].as_str()),
        (404, Some("unknown_version"))
    );
    let (_, h) = get(
        &app,
        &format!("/datasets/{DATASET}/history?limit=1"),
        &k.reader,
    )
    .await;
    assert_eq!(
        (
            h["events"][0]["action"].as_str(),
            h["events"][0]["detail"]["from"].as_i64(),
            h["events"][0]["actor"].as_str()
        ),
        (Some("rollback"), Some(2), Some(k.admin_subject.as_str()))
    );
    assert!(
        h["links"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l["rel"] == "next")),
        "{h}"
    );

    // A later sync appends to the version that is current (1), not to the newest (2).
    run(
        &app,
        &format!("/sync/{DATASET}"),
        json!({"end": "2025-07-15"}),
        &k.admin,
    )
    .await;
    let (_, v3) = get(&app, &format!("/datasets/{DATASET}/versions/3"), &k.reader).await;
    assert_eq!(
        (v3["current"].as_bool(), v3["bases"].clone()),
        (Some(true), json!([1])),
        "{v3}"
    );

    // Unpublished: gone from every public surface but for admins.
    let patch = as_admin(
        &app,
        &k,
        Method::PATCH,
        &format!("/datasets/{DATASET}"),
        &json!({"published": false}),
    )
    .await;
    assert_eq!(patch.status, 200, "{}", patch.body);
    let (_, list) = get(&app, "/datasets", &k.reader).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
    for path in [
        format!("/datasets/{DATASET}"),
        format!("/zarr/{DATASET}"),
        format!("/zarr/{DATASET}/zarr.json"),
        format!("/datasets/{DATASET}/versions/1/zarr/zarr.json"),
        format!("/datasets/{DATASET}/history"),
        format!("/stac/collections/{DATASET}"),
        format!("/ogcapi/collections/{DATASET}"),
    ] {
        let (status, _) = get(&app, &path, &k.reader).await;
        assert_eq!(status, 404, "{path} is hidden from readers");
    }
    for path in [
        format!("/datasets/{DATASET}"),
        format!("/zarr/{DATASET}/zarr.json"),
    ] {
        let (status, _) = get(&app, &path, &k.admin).await;
        assert_eq!(status, 200, "{path} stays visible to admins");
    }
    let republish = as_admin(
        &app,
        &k,
        Method::PATCH,
        &format!("/datasets/{DATASET}"),
        &json!({"published": true}),
    )
    .await;
    assert_eq!(republish.status, 200);
    let (status, _) = get(&app, &format!("/stac/collections/{DATASET}"), &k.reader).await;
    assert_eq!(status, 200, "published again");
    let (_, h) = get(
        &app,
        &format!("/datasets/{DATASET}/history?limit=2"),
        &k.reader,
    )
    .await;
    let last = actions(&h);
    assert_eq!(last, vec!["publish", "unpublish"]);
    let bad = as_admin(
        &app,
        &k,
        Method::PATCH,
        &format!("/datasets/{DATASET}"),
        &json!({"published": "no"}),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);

    // A sync with publish: false keeps its version out of public view until published.
    run(
        &app,
        &format!("/sync/{DATASET}"),
        json!({"end": "2025-07-20", "publish": false}),
        &k.admin,
    )
    .await;
    let (_, ds) = get(&app, &format!("/datasets/{DATASET}"), &k.reader).await;
    assert_eq!(
        (
            ds["version"].as_i64(),
            ds["extent"]["temporal"]["end"].as_str()
        ),
        (Some(3), Some("2025-07-15")),
        "{ds}"
    );
    let listed: Vec<i64> = ds["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["version"].as_i64())
        .collect();
    assert_eq!(
        listed,
        vec![1, 2, 3],
        "the held version is not listed for readers"
    );
    let (status, _) = get(
        &app,
        &format!("/datasets/{DATASET}/versions/4/zarr/zarr.json"),
        &k.reader,
    )
    .await;
    assert_eq!(status, 404);
    let (_, admin_view) = get(&app, &format!("/datasets/{DATASET}"), &k.admin).await;
    assert_eq!(admin_view["versions"][3]["held"], true, "{admin_view}");
    let (status, _) = get(
        &app,
        &format!("/datasets/{DATASET}/versions/4/zarr/zarr.json"),
        &k.admin,
    )
    .await;
    assert_eq!(status, 200);
    let publish = as_admin(
        &app,
        &k,
        Method::PATCH,
        &format!("/datasets/{DATASET}"),
        &json!({"published": true}),
    )
    .await;
    assert_eq!(
        (publish.status, publish.body["version"].as_i64()),
        (200, Some(4)),
        "{}",
        publish.body
    );
    let (_, ds) = get(&app, &format!("/datasets/{DATASET}"), &k.reader).await;
    assert_eq!(ds["extent"]["temporal"]["end"], "2025-07-20");
    let (_, h) = get(
        &app,
        &format!("/datasets/{DATASET}/history?limit=2"),
        &k.reader,
    )
    .await;
    assert_eq!(
        (
            h["events"][0]["action"].as_str(),
            h["events"][0]["version"].as_i64(),
            h["events"][1]["detail"]["held"].as_bool()
        ),
        (Some("publish"), Some(4), Some(true)),
        "{h}"
    );

    // Prune: off the catalog at once; the objects go at collection, unless still read.
    let position = format!("/ogcapi/collections/{DATASET}/position?coords=POINT(-11.8%208.5)");
    let (status, before) = get(&app, &position, &k.reader).await;
    assert_eq!(status, 200, "{before}");
    let delete = |path: String| {
        let admin = k.admin.clone();
        let app = &app;
        async move {
            app.send(
                Method::DELETE,
                &path,
                &[("authorization", admin.as_str())],
                None,
            )
            .await
        }
    };
    let current = delete(format!("/datasets/{DATASET}/versions/4")).await;
    assert_eq!(
        (current.status, current.body["code"].as_str()),
        (409, Some("version_current")),
        "{}",
        current.body
    );
    for n in [2, 1] {
        let a = delete(format!("/datasets/{DATASET}/versions/{n}")).await;
        assert_eq!(a.status, 204, "{}", a.body);
    }
    let (status, _) = get(&app, &format!("/datasets/{DATASET}/versions/2"), &k.admin).await;
    assert_eq!(status, 404, "a pruned version is gone at once");
    let (_, ds) = get(&app, &format!("/datasets/{DATASET}"), &k.reader).await;
    let listed: Vec<i64> = ds["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["version"].as_i64())
        .collect();
    assert_eq!(listed, vec![3, 4]);
    let back = as_admin(
        &app,
        &k,
        Method::POST,
        &format!("/datasets/{DATASET}/rollback"),
        &json!({"version": 2}),
    )
    .await;
    assert_eq!(
        (back.status, back.body["code"].as_str()),
        (409, Some("version_pruned")),
        "{}",
        back.body
    );
    let store_dir = app
        .platform
        .config
        .store_url()
        .trim_start_matches("file://")
        .to_owned();
    let prefix = |n: i64| {
        let app = &app;
        let store_dir = store_dir.clone();
        async move {
            let v = app
                .platform
                .db
                .get_version(&climate_domain::DatasetId::new(DATASET).expect("id"), n)
                .await
                .expect("db")
                .expect("version");
            std::path::PathBuf::from(format!("{store_dir}/{}", v.storage_prefix))
        }
    };
    let (v1, v2) = (prefix(1).await, prefix(2).await);
    let later = Utc::now() + chrono::Duration::seconds(1);
    let collected = climate_infra::housekeeping::collect_pruned(&app.platform, later)
        .await
        .expect("collect");
    assert_eq!(
        collected, 1,
        "version 2 goes; version 1 stays, read by versions 3 and 4"
    );
    assert!(
        climate_tests::files_under(&v2).map_or(true, |f| f.is_empty()),
        "version 2's objects are deleted"
    );
    assert!(
        !climate_tests::files_under(&v1).expect("listed").is_empty(),
        "version 1's objects stay"
    );
    let (_, after) = get(&app, &position, &k.reader).await;
    assert_eq!(after, before, "the current version reads back identically");

    let gone = delete(format!("/datasets/{DATASET}")).await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    let (status, _) = get(&app, &format!("/datasets/{DATASET}"), &k.admin).await;
    assert_eq!(status, 404);
    let (_, list) = get(&app, "/datasets", &k.reader).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0));
    let (_, h) = get(
        &app,
        &format!("/datasets/{DATASET}/history?limit=3"),
        &k.reader,
    )
    .await;
    let last = actions(&h);
    assert_eq!(last, vec!["prune", "prune_version", "prune_version"]);
    let collected = climate_infra::housekeeping::collect_pruned(
        &app.platform,
        Utc::now() + chrono::Duration::seconds(1),
    )
    .await
    .expect("collect");
    assert_eq!(collected, 3, "versions 1, 3 and 4 go with the dataset");
    assert!(climate_tests::files_under(&v1).map_or(true, |f| f.is_empty()));
}
