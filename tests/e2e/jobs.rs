//! Job guarantees seen from a client: Idempotency-Key, coalescing, the live event stream,
//! metrics, traces.

use std::time::Duration;

use climate_tests::{Options, Shape, TestApp};
use futures::StreamExt as _;
use serde_json::{Value, json};

/// Identical requests that arrive together, from clients that know nothing of each other (no
/// Idempotency-Key), get one run: PostgreSQL admits a dataset's runs one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_concurrent_posts_coalesce_into_one_run() -> anyhow::Result<()> {
    // No worker: the run stays queued while the requests arrive.
    let app = TestApp::distributed(0).await?;
    // Open the API's database connections first, so the requests below run side by side.
    for answer in futures::future::join_all((0..8).map(|_| app.get_json("/ingestions"))).await {
        assert_eq!(answer?.0, 200);
    }
    let body = json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-03", "end": "2025-07-12"});
    let answers =
        futures::future::join_all((0..8).map(|_| app.post_json("/ingestions", &body))).await;
    let mut ids = std::collections::BTreeSet::new();
    for answer in answers {
        let (status, _, run) = answer?;
        assert_eq!(status, 202, "{run}");
        ids.insert(run["ingestion_id"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(ids.len(), 1, "one run for all: {ids:?}");
    let (_, runs) = app.get_json("/ingestions").await?;
    assert_eq!(runs["items"].as_array().map(Vec::len), Some(1), "{runs}");
    // A different request for the dataset is a run of its own.
    let (status, _, other) = app
        .post_json(
            "/ingestions",
            &json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-03", "end": "2025-07-13"}),
        )
        .await?;
    assert_eq!(status, 202, "{other}");
    assert!(!ids.contains(other["ingestion_id"].as_str().unwrap_or_default()));
    Ok(())
}

/// `POST /sync/{id}` goes through the same admission as `POST /ingestions`: eight identical
/// syncs that arrive together make one run, on SQLite (standalone) and PostgreSQL (distributed).
async fn identical_concurrent_syncs_make_one_run(shape: Shape) -> anyhow::Result<()> {
    let mut app = TestApp::start(shape, Options::default()).await?;
    let id = "sample_era5land_t2m_daily_sle";
    let first = app
        .ingest(&json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "2025-07-05"}))
        .await?;
    assert_eq!(first["status"], "succeeded", "{first}\n{}", app.logs());
    // Only the API from now on, so the sync runs stay queued while the requests arrive.
    app.stop();
    app.spawn("climate-api", &["serve"])?;
    app.wait_ready().await?;
    for answer in futures::future::join_all((0..8).map(|_| app.get_json("/ingestions"))).await {
        assert_eq!(answer?.0, 200);
    }
    let body = json!({"end": "2025-07-20"});
    let answers = futures::future::join_all((0..8).map(|_| app.post_sync(id, &body))).await;
    let mut ids = std::collections::BTreeSet::new();
    for answer in answers {
        let (status, answer) = answer?;
        assert_eq!(status, 202, "{answer}");
        ids.insert(
            answer["run"]["ingestion_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert_eq!(ids.len(), 1, "one run for all: {ids:?}");
    let (_, runs) = app.get_json("/ingestions").await?;
    let syncs: Vec<&Value> = runs["items"]
        .as_array()
        .map(|items| items.iter().filter(|r| r["kind"] == "sync").collect())
        .unwrap_or_default();
    assert_eq!(syncs.len(), 1, "{runs}");
    // Another end is another request: a run of its own.
    let (status, other) = app.post_sync(id, &json!({"end": "2025-07-21"})).await?;
    assert_eq!(status, 202, "{other}");
    assert!(!ids.contains(other["run"]["ingestion_id"].as_str().unwrap_or_default()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_concurrent_syncs_make_one_run_on_sqlite() -> anyhow::Result<()> {
    identical_concurrent_syncs_make_one_run(Shape::Standalone).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_concurrent_syncs_make_one_run_on_postgres() -> anyhow::Result<()> {
    identical_concurrent_syncs_make_one_run(Shape::Distributed { workers: 1 }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_make_post_retries_safe() -> anyhow::Result<()> {
    let app = TestApp::standalone().await?;
    let body = json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-03", "end": "2025-07-05", "overwrite": true});
    let send = |key: &'static str, body: Value| {
        let r = app
            .client
            .post(app.url("/ingestions"))
            .header("idempotency-key", key)
            .json(&body)
            .send();
        async move {
            let r = r.await.expect("POST");
            let replayed = r.headers().get("idempotent-replayed").is_some();
            let location = r
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            (
                r.status().as_u16(),
                replayed,
                location,
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, replayed, location, first) = send("retry-1", body.clone()).await;
    assert_eq!((status, replayed), (202, false), "{first}");
    let id = first["ingestion_id"].as_str().expect("id").to_owned();
    app.wait_for_run(&id, Duration::from_secs(60)).await?;

    // After the run finished, a retry gets the first answer, not a second run (overwrite
    // would otherwise start one).
    let (status, replayed, again_location, again) = send("retry-1", body.clone()).await;
    assert_eq!((status, replayed), (202, true), "{again}");
    assert_eq!(again["ingestion_id"], id.as_str());
    assert_eq!(again_location, location, "Location is replayed too");
    let (_, runs) = app.get_json("/ingestions").await?;
    assert_eq!(runs["items"].as_array().map(Vec::len), Some(1), "{runs}");

    // The same key for another request is refused; a new key acts.
    let mut other = body.clone();
    other["end"] = json!("2025-07-06");
    let (status, _, _, err) = send("retry-1", other.clone()).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["code"], "idempotency_key_reused");
    let (status, replayed, _, second) = send("retry-2", other).await;
    assert_eq!((status, replayed), (202, false), "{second}");
    assert_ne!(second["ingestion_id"], id.as_str());

    // Errors are not remembered: a corrected retry with the same key is handled.
    let (status, _, _, err) = send(
        "retry-3",
        json!({"dataset_id": "nope", "start": "2025-07-03"}),
    )
    .await;
    assert_eq!(status, 404, "{err}");
    let r = app
        .client
        .post(app.url("/ingestions"))
        .header("idempotency-key", "ä")
        .json(&body)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 400, "a key must be visible ASCII");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_reports_progress_until_the_run_ends() -> anyhow::Result<()> {
    let app = TestApp::standalone().await?;
    let (_, id) = app.start_ingestion(&json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "2025-07-20"})).await?;
    let r = app.get(&format!("/ingestions/{id}/events")).await?;
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()?
            .starts_with("text/event-stream")
    );
    let mut stream = r.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while !text.contains("event: end") {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("stream closed before `end`: {text}"))??;
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let progress: Vec<Value> = text
        .split("\n\n")
        .filter(|e| e.contains("event: progress"))
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(!progress.is_empty(), "{text}");
    let last = progress.last().expect("one event");
    assert_eq!(last["status"], "succeeded", "{last}");
    assert_eq!(last["progress"]["done"], 20);
    let segments = last["progress"]["segments"].as_array().expect("segments");
    assert!(
        !segments.is_empty() && segments.iter().all(|s| s["status"] == "done"),
        "{last}"
    );
    let done: Vec<u64> = progress
        .iter()
        .filter_map(|p| p["progress"]["done"].as_u64())
        .collect();
    assert!(
        done.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {done:?}"
    );
    assert!(text.contains("event: end\ndata: succeeded"), "{text}");
    // Consecutive events differ: the stream sends changes, not a heartbeat of copies.
    assert!(progress.windows(2).all(|w| w[0] != w[1]));

    let r = app.get("/ingestions/nope/events").await?;
    assert_eq!(r.status().as_u16(), 404);
    Ok(())
}

/// The value of a Prometheus sample whose line starts with `series`.
pub(crate) fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_describe_requests_runs_and_the_queue() -> anyhow::Result<()> {
    let app = TestApp::standalone().await?;
    app.ingest_ok(&json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-03", "end": "2025-07-04"})).await?;
    let _ = app.get_json("/datasets/nope").await?;
    let r = reqwest::get(app.url("/metrics")).await?;
    assert_eq!(r.status().as_u16(), 200, "metrics are public, for scrapers");
    assert!(
        r.headers()["content-type"]
            .to_str()?
            .starts_with("text/plain")
    );
    let m = r.text().await?;
    let posted = sample(
        &m,
        r#"climate_http_requests_total{method="POST",route="/ingestions",status="202"}"#,
    );
    assert_eq!(posted, Some(1.0), "{m}");
    assert!(
        sample(
            &m,
            r#"climate_http_requests_total{method="GET",route="/datasets/{id}",status="404"}"#
        )
        .is_some(),
        "routes are labelled by pattern: {m}"
    );
    assert!(m.contains(r#"climate_http_request_duration_seconds_bucket{method="GET",route="/ingestions/{id}",le="0.005"}"#), "{m}");
    assert_eq!(
        sample(&m, r#"climate_runs_total{outcome="succeeded"}"#),
        Some(1.0),
        "{m}"
    );
    assert!(
        sample(&m, r#"climate_tasks_total{step="plan",outcome="ack"}"#).is_some_and(|v| v >= 1.0),
        "{m}"
    );
    assert!(m.contains("climate_task_duration_seconds_bucket"), "{m}");
    assert!(m.contains("climate_run_duration_seconds_count 1"), "{m}");
    assert_eq!(sample(&m, "climate_queue_depth"), Some(0.0), "{m}");
    assert_eq!(sample(&m, "climate_outbox_pending"), Some(0.0), "{m}");
    // Every byte of the stored version was written through the metered store.
    let on_disk: u64 = climate_tests::file_sizes(&app.data_dir().join("store/datasets"))
        .iter()
        .sum();
    let written = sample(&m, r#"climate_store_bytes_written_total{store="file"}"#).unwrap_or(0.0);
    assert!(
        on_disk > 0 && written >= on_disk as f64,
        "{written} bytes counted, {on_disk} on disk: {m}"
    );
    Ok(())
}

/// OpenTelemetry: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the API's request span continues the
/// client's `traceparent`, and the worker's tasks join the same trace through the queue
/// message headers (API → outbox → RabbitMQ → worker, then worker → worker for later steps).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_the_client_through_the_queue_to_the_workers() -> anyhow::Result<()> {
    use climate_tests::otlp::{OtlpReceiver, ReceivedSpan};
    use climate_tests::{Options, Shape};

    let receiver = OtlpReceiver::start().await?;
    let app = TestApp::start(
        Shape::Distributed { workers: 1 },
        Options {
            local_store: true,
            env: vec![
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                    receiver.endpoint.clone(),
                ),
                ("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into()),
            ],
            ..Options::default()
        },
    )
    .await?;
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let r = app
        .client
        .post(app.url("/ingestions"))
        .header("traceparent", format!("00-{client_trace}-{client_span}-01"))
        .json(&json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "2025-07-03"}))
        .send()
        .await?;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await?["ingestion_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let run = app.wait_for_run(&id, Duration::from_secs(90)).await?;
    assert_eq!(run["status"], "succeeded", "{run}");

    // The finalize task is the last step; its span arrives within a few export intervals.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let spans: Vec<ReceivedSpan> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == client_trace)
            .collect();
        if spans.iter().any(|s| s.name == "task finalize") {
            break spans;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no finalize task span in the client's trace; received: {:#?}\n{}",
            receiver.spans(),
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let by_id: std::collections::HashMap<&str, &ReceivedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let request = spans
        .iter()
        .find(|s| s.name == "POST /ingestions")
        .unwrap_or_else(|| panic!("no POST /ingestions span in the trace: {spans:#?}"));
    assert_eq!(request.service, "climate-api");
    assert_eq!(
        request.parent_span_id, client_span,
        "the request span continues the client's span"
    );
    assert_eq!(request.attributes["http.route"], "/ingestions");
    assert_eq!(request.attributes["http.response.status_code"], "202");

    // Every task span of the run descends from the request span, through the publish spans
    // that carried the context onto the queue.
    let tasks: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.name.starts_with("task "))
        .collect();
    for step in ["task plan", "task segment", "task finalize"] {
        assert!(
            tasks.iter().any(|t| t.name == step),
            "no '{step}' span in the trace: {spans:#?}"
        );
    }
    for task in &tasks {
        assert_eq!(task.service, "climate-worker", "{task:?}");
        assert_eq!(task.attributes["run.id"], id, "{task:?}");
        let parent = by_id
            .get(task.parent_span_id.as_str())
            .unwrap_or_else(|| panic!("the parent of {task:?} is not in the trace"));
        assert_eq!(
            parent.name, "publish task",
            "a task's parent is the publication of its message"
        );
        let mut hops = 0;
        let mut cursor: &ReceivedSpan = task;
        while cursor.span_id != request.span_id {
            cursor = by_id
                .get(cursor.parent_span_id.as_str())
                .unwrap_or_else(|| panic!("{task:?} does not lead back to the request span"));
            hops += 1;
            assert!(hops < 50, "a parent cycle from {task:?}");
        }
    }
    Ok(())
}

/// An asynchronous process job is persisted before its 201: it survives a worker SIGKILLed
/// after computing its output but before recording it (another worker takes the job over
/// once the lease expires) and an API killed and restarted meanwhile; its results equal the
/// synchronous answer to the same request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_process_jobs_survive_a_killed_worker_and_an_api_restart() -> anyhow::Result<()> {
    let mut app = TestApp::distributed(1).await?;
    let run = app
        .ingest(&json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "2025-07-31"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    let districts: Value = serde_json::from_str(&std::fs::read_to_string(
        climate_tests::fixtures_dir().join("sierra_leone_districts.geojson"),
    )?)?;
    let execute = "/ogcapi/processes/zonal-statistics/execution";
    let request = json!({"inputs": {"dataset_id": "sample_era5land_t2m_daily_sle", "features": districts,
        "datetime": "2025-07-01/2025-07-31", "statistics": ["mean", "stdev"], "period_type": "weekly", "temporal_method": "mean"}});
    let (status, _, reference) = app.post_json(execute, &request).await?;
    assert_eq!(status, 200, "{reference}");

    // The next worker dies right after its first job's output is stored.
    app.signal("climate-worker", 0, "KILL")?;
    app.wait_process("climate-worker", 0, Duration::from_secs(10))
        .await?;
    app.spawn_with_env(
        "climate-worker",
        &[],
        &[("CLIMATE_API_FAILPOINTS", "before_job_finish")],
    )?;
    let r = app
        .client
        .post(app.url(execute))
        .header("prefer", "respond-async")
        .json(&request)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 201);
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("a Location");
    let path = location.trim_start_matches(&app.base).to_owned();
    app.wait_process("climate-worker", 1, Duration::from_secs(60))
        .await?;
    assert!(
        app.logs().contains("failure point before_job_finish fired"),
        "{}",
        app.logs()
    );
    let (_, job) = app.get_json(&path).await?;
    assert!(
        matches!(job["status"].as_str(), Some("running" | "accepted")),
        "unfinished while the dead worker's lease runs out: {job}"
    );

    // The API dies too, and comes back; then a healthy worker finishes the job.
    app.signal("climate-api", 0, "KILL")?;
    app.wait_process("climate-api", 0, Duration::from_secs(10))
        .await?;
    app.spawn("climate-api", &["serve"])?;
    // Not wait_ready: it refuses the two workers that died on purpose.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while climate_tests::raw_get_status(&app.base, "/ready")
        .await
        .ok()
        != Some(200)
    {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the API did not come back\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.spawn("climate-worker", &[])?;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let job = loop {
        let (status, job) = app.get_json(&path).await?;
        assert_eq!(status, 200, "{job}");
        if matches!(
            job["status"].as_str(),
            Some("successful" | "failed" | "dismissed")
        ) {
            break job;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the job did not finish: {job}\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(job["status"], "successful", "{job}\n{}", app.logs());
    let (status, results) = app.get_json(&format!("{path}/results")).await?;
    assert_eq!(status, 200, "{results}");
    assert_eq!(
        results, reference,
        "the same figures as the synchronous answer"
    );
    Ok(())
}
