//! Distributed mode: `climate-api serve` + two `climate-worker` processes against PostgreSQL,
//! RabbitMQ, Redis and an S3-compatible store.

use climate_tests::{TestApp, check_era5};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_two_workers_ingest_through_rabbitmq_into_s3() -> anyhow::Result<()> {
    let app = TestApp::distributed(2).await?;
    let (_, info) = app.get_json("/info").await?;
    assert_eq!(info["mode"], "distributed");
    assert_eq!(
        info["backends"],
        json!({"cache": "redis", "database": "postgres", "queue": "rabbitmq", "store": "s3"})
    );
    let (s, ready) = app.get_json("/ready").await?;
    assert_eq!(s, 200, "{ready}");

    // Two datasets at once, so both workers have something to do.
    let era5 = json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-03", "end": "2025-07-12"});
    let pop = json!({"dataset_id": "sample_worldpop_population_yearly", "start": "2026"});
    let (a, b) = tokio::join!(app.ingest(&era5), app.ingest(&pop));
    let (a, b) = (a?, b?);
    assert_eq!(a["status"], "succeeded", "{a}\n{}", app.logs());
    assert_eq!(b["status"], "succeeded", "{b}\n{}", app.logs());
    assert_eq!(a["attempts"], 1);

    let (_, list) = app.get_json("/datasets").await?;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|d| d["dataset_id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "sample_era5land_t2m_daily_sle",
            "sample_worldpop_population_yearly_sle"
        ]
    );

    let id = "sample_era5land_t2m_daily_sle";
    let r = app
        .client
        .get(app.url(&format!("/zarr/{id}/t2m/c/0/0/0")))
        .header("Range", "bytes=-8")
        .send()
        .await?;
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await?.len(), 8);

    let (status, _, again) = app.post_json("/ingestions", &era5).await?;
    assert_eq!(status, 200, "deduplicated: {again}");

    check_era5(&app, id, "2025-07-03", "2025-07-12", "kelvin_to_celsius")?;
    Ok(())
}
