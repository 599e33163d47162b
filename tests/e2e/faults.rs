//! Faults in the backends, mid-run. RabbitMQ and PostgreSQL are really restarted: each test runs
//! its own node or cluster ([`climate_tests::servers`]) and shuts it down and starts it again on
//! the same data. The object store goes away behind a [`FaultProxy`] (every connection reset, new
//! ones refused) and comes back. In every case the runs converge, nothing accepted is lost,
//! nothing is published twice or half-written, and the API answers 503 with the error envelope
//! instead of crashing. Workers killed or terminated mid-segment follow.

use std::time::Duration;

use climate_tests::fault::FaultProxy;
use climate_tests::mock::MockUpstream;
use climate_tests::servers::{Postgres, RabbitMq};
use climate_tests::{Options, Shape, TestApp, env, says};
use serde_json::{Value, json};

use crate::jobs::sample;
use crate::providers::{chirps_mock, chirps_template};

const DAYS: u32 = 20;

fn port_of(url: &str) -> anyhow::Result<u16> {
    reqwest::Url::parse(url)?
        .port()
        .ok_or_else(|| anyhow::anyhow!("{url} names no port"))
}

async fn proxy_to(url: &str) -> anyhow::Result<(u16, FaultProxy)> {
    let port = port_of(url)?;
    let proxy = FaultProxy::start(([127, 0, 0, 1], port).into()).await?;
    Ok((port, proxy))
}

/// A slow CHIRPS upstream (20 days, 5-day chunks: 4 segments) and two templates on it, so a run
/// lasts a few seconds and two runs write different datasets.
async fn slow_chirps() -> anyhow::Result<(MockUpstream, Vec<String>)> {
    let mock = MockUpstream::start().await?;
    chirps_mock(&mock, DAYS);
    mock.set_latency(Duration::from_millis(120));
    let a = chirps_template(&mock, "  chunks: {t: 5}\n");
    let b = a.replace("id: chirps_test", "id: chirps_other");
    Ok((mock, vec![a, b]))
}

fn ingestion(template: &str) -> Value {
    json!({"dataset_id": template, "start": "2024-01-01", "end": format!("2024-01-{DAYS:02}")})
}

/// Posts an ingestion (202 expected) and returns its id.
async fn start_run(app: &TestApp, template: &str) -> anyhow::Result<String> {
    let (status, _, run) = app.post_json("/ingestions", &ingestion(template)).await?;
    anyhow::ensure!(status == 202, "POST /ingestions answered {status}: {run}");
    Ok(run["ingestion_id"].as_str().unwrap_or_default().to_owned())
}

/// Waits until the run has started working (planned or writing).
async fn wait_running(app: &TestApp, id: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, run) = app.get_json(&format!("/ingestions/{id}")).await?;
        if run["status"] == "running" {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "run never started: {run}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The run succeeded with every period, and its dataset has exactly one version covering them.
async fn assert_converged(app: &TestApp, id: &str) -> anyhow::Result<()> {
    let run = app.wait_for_run(id, Duration::from_secs(180)).await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    assert_eq!(run["progress"]["done"], DAYS, "{run}");
    let dataset = run["dataset_id"].as_str().unwrap_or_default();
    let (_, ds) = app.get_json(&format!("/datasets/{dataset}")).await?;
    assert_eq!(ds["version"], 1, "{ds}");
    assert_eq!(
        ds["versions"].as_array().map(Vec::len),
        Some(1),
        "one version: {ds}"
    );
    assert_eq!(
        ds["extent"]["temporal"]["end"],
        format!("2024-01-{DAYS:02}"),
        "{ds}"
    );
    let (status, root) = app.get_json(&format!("/zarr/{dataset}/zarr.json")).await?;
    assert_eq!(status, 200);
    assert_eq!(
        root["consolidated_metadata"]["metadata"]["precip"]["shape"][0], DAYS,
        "{root}"
    );
    Ok(())
}

/// The API's `/metrics` sample `series`, once it equals `value`.
async fn wait_metric(app: &TestApp, series: &str, value: f64) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = reqwest::get(app.url("/metrics")).await?.text().await?;
        if sample(&m, series) == Some(value) {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{series} never reached {value}:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_no_accepted_run() -> anyhow::Result<()> {
    let (_mock, templates) = slow_chirps().await?;
    let mut broker = RabbitMq::start().await?;
    let mut app = TestApp::start(
        Shape::Distributed { workers: 0 },
        Options {
            templates,
            local_store: true,
            amqp_url: Some(broker.url()),
            ..Options::default()
        },
    )
    .await?;
    // Published while no worker runs, the first run's task waits in the queue when the broker
    // restarts: a durable queue and a persistent message bring it back.
    let first = start_run(&app, "chirps_test").await?;
    wait_metric(&app, "climate_outbox_pending", 0.0).await?;
    wait_metric(&app, "climate_queue_depth", 1.0).await?;
    broker.stop().await?;
    broker.start_again().await?;
    app.spawn("climate-worker", &[])?;
    wait_running(&app, &first).await?;
    // Mid-run, the broker stops.
    broker.stop().await?;
    // Accepted all the same: the run and its announcement are in the database.
    let second = start_run(&app, "chirps_other").await?;
    let (status, ready) = app.get_json("/ready").await?;
    assert_eq!(status, 503, "{ready}");
    assert_ne!(ready["checks"]["queue"], "ok", "{ready}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, run) = app.get_json(&format!("/ingestions/{second}")).await?;
    assert_eq!(
        run["status"], "queued",
        "nothing delivers it while the broker is away: {run}"
    );
    broker.start_again().await?;
    assert_converged(&app, &first).await?;
    assert_converged(&app, &second).await?;
    assert!(!app.full_logs().contains("panicked"), "{}", app.logs());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_answers_503_and_recovers() -> anyhow::Result<()> {
    let (_mock, templates) = slow_chirps().await?;
    let mut db = Postgres::start().await?;
    let mut app = TestApp::start(
        Shape::Distributed { workers: 1 },
        Options {
            templates,
            local_store: true,
            database_url: Some(db.url()),
            ..Options::default()
        },
    )
    .await?;
    let first = start_run(&app, "chirps_test").await?;
    wait_running(&app, &first).await?;
    db.stop().await?;
    let (status, err) = app.get_json(&format!("/ingestions/{first}")).await?;
    assert_eq!(status, 503, "{err}");
    assert_eq!(err["code"], "service_unavailable", "{err}");
    assert!(says(&err, "database"), "{err}");
    assert!(err["id"].as_str().is_some_and(|s| !s.is_empty()), "{err}");
    let (status, err) = app
        .post_json("/ingestions", &ingestion("chirps_other"))
        .await
        .map(|(s, _, b)| (s, b))?;
    assert_eq!(
        status,
        503,
        "a write during the outage is refused, not half-done: {err}\n{}",
        app.logs()
    );
    // Liveness needs no database (probes send no credentials, which would need it).
    let health = reqwest::get(app.url("/health")).await?.status().as_u16();
    assert_eq!(health, 200, "the process is alive");
    tokio::time::sleep(Duration::from_secs(2)).await;
    db.start_again().await?;
    assert_converged(&app, &first).await?;
    let second = start_run(&app, "chirps_other").await?;
    assert_converged(&app, &second).await?;
    // No process died along the way.
    app.wait_ready().await?;
    let (_, runs) = app.get_json("/ingestions").await?;
    assert_eq!(runs["items"].as_array().map(Vec::len), Some(2), "{runs}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_store_outage_mid_run_converges() -> anyhow::Result<()> {
    let (_mock, templates) = slow_chirps().await?;
    let (port, s3) = proxy_to(&env("CLIMATE_TEST_S3_ENDPOINT", None)).await?;
    let app = TestApp::start(
        Shape::Distributed { workers: 1 },
        Options {
            templates,
            port_map: vec![(port, s3.port)],
            ..Options::default()
        },
    )
    .await?;
    let id = start_run(&app, "chirps_test").await?;
    wait_running(&app, &id).await?;
    s3.cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, run) = app.get_json(&format!("/ingestions/{id}")).await?;
    assert_ne!(
        run["status"], "succeeded",
        "nothing can be published without the store: {run}"
    );
    assert_eq!(app.get_json("/datasets").await?.1["items"], json!([]));
    s3.restore().await?;
    assert_converged(&app, &id).await?;
    Ok(())
}

/// A slow CHIRPS app with no worker yet, whose workers use `lease_seconds` and a one-second
/// shutdown grace.
async fn slow_app(mock: &MockUpstream, lease_seconds: u64) -> anyhow::Result<TestApp> {
    chirps_mock(mock, DAYS);
    mock.set_latency(Duration::from_millis(150));
    let app = TestApp::start(
        Shape::Distributed { workers: 0 },
        Options {
            templates: vec![chirps_template(mock, "  chunks: {t: 10}\n")],
            local_store: true,
            extra_yaml: "providers:\n  chirps3_daily: {concurrency: 1}\n".into(),
            ..Options::default()
        },
    )
    .await?;
    let config = std::fs::read_to_string(&app.config_path)?.replace(
        "lease_seconds: 6",
        &format!("lease_seconds: {lease_seconds}\n  shutdown_grace_seconds: 1"),
    );
    std::fs::write(&app.config_path, config)?;
    Ok(app)
}

/// Waits until one of the run's segments is being written.
async fn wait_writing(app: &TestApp, id: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, run) = app.get_json(&format!("/ingestions/{id}")).await?;
        let writing = run["progress"]["segments"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["status"] == "running"));
        if writing {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no segment started: {run}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_within_the_grace_and_hands_leases_back() -> anyhow::Result<()> {
    // Leases last two minutes: only a handed-back lease lets the next worker continue within
    // the test's time.
    let mock = MockUpstream::start().await?;
    let mut app = slow_app(&mock, 120).await?;
    app.spawn("climate-worker", &[])?;
    let id = start_run(&app, "chirps_test").await?;
    wait_writing(&app, &id).await?;
    app.signal("climate-worker", 0, "TERM")?;
    let status = app
        .wait_process("climate-worker", 0, Duration::from_secs(15))
        .await?;
    assert!(status.success(), "a drained worker exits cleanly: {status}");
    let logs = app.full_logs();
    assert!(logs.contains("lease handed back"), "{}", app.logs());
    assert!(!logs.contains("panicked"), "{}", app.logs());
    app.spawn("climate-worker", &[])?;
    // Well within the two-minute lease: only the hand-back makes this possible.
    let run = app.wait_for_run(&id, Duration::from_secs(60)).await?;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_converged(&app, &id).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_sigkilled_mid_segment_loses_nothing() -> anyhow::Result<()> {
    let mock = MockUpstream::start().await?;
    let mut app = slow_app(&mock, 6).await?;
    app.spawn("climate-worker", &[])?;
    let id = start_run(&app, "chirps_test").await?;
    wait_writing(&app, &id).await?;
    app.signal("climate-worker", 0, "KILL")?;
    app.wait_process("climate-worker", 0, Duration::from_secs(10))
        .await?;
    app.spawn("climate-worker", &[])?;
    assert_converged(&app, &id).await?;
    Ok(())
}

/// RabbitMQ closes the channel of a consumer that holds a delivery longer than its
/// `consumer_timeout` (30 minutes by default; 2 s on this node). Steps here take longer than
/// that, and deliveries wait for a free slot longer than that, yet the worker's channel
/// survives: after `worker.max_delivery_hold_seconds` a running step's delivery is acknowledged
/// (the step finishes under its lease) and a waiting one is handed over as a fresh copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_longer_than_the_consumer_timeout_keep_the_channel() -> anyhow::Result<()> {
    let mock = MockUpstream::start().await?;
    chirps_mock(&mock, DAYS);
    mock.set_latency(Duration::from_millis(400));
    let broker = RabbitMq::start_with("consumer_timeout = 2000").await?;
    let mut app = TestApp::start(
        Shape::Distributed { workers: 0 },
        Options {
            templates: vec![chirps_template(&mock, "  chunks: {t: 5}\n")],
            local_store: true,
            amqp_url: Some(broker.url()),
            extra_yaml: "providers:\n  chirps3_daily: {concurrency: 1}\n".into(),
            ..Options::default()
        },
    )
    .await?;
    let config = std::fs::read_to_string(&app.config_path)?.replace(
        "lease_seconds: 6",
        "lease_seconds: 6\n  max_delivery_hold_seconds: 1",
    );
    std::fs::write(&app.config_path, config)?;
    app.spawn("climate-worker", &[])?;
    let id = start_run(&app, "chirps_test").await?;
    assert_converged(&app, &id).await?;
    let logs = app.full_logs();
    assert!(
        logs.contains("the lease guards the rest"),
        "no step outlasted the hold, so this test proves nothing: {}",
        app.logs()
    );
    for symptom in [
        "reconnecting",
        "could not settle delivery",
        "PRECONDITION_FAILED",
    ] {
        assert!(
            !logs.contains(symptom),
            "the broker closed the worker's channel ({symptom}):\n{}",
            app.logs()
        );
    }
    Ok(())
}
