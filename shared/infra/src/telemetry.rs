//! Logging set-up shared by the binaries: human-readable on a terminal, JSON otherwise
//! (`CLIMATE_API_LOG_FORMAT=json|text` forces either), filtered by `RUST_LOG` (default `info`).

use std::io::IsTerminal;

/// Installs the global subscriber. Safe to call once per process.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,lapin=warn"));
    let json = match std::env::var("CLIMATE_API_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // A second call (tests) keeps the first subscriber.
    drop(result);
}

/// Buckets of every `*_seconds` histogram: 5 ms to 10 minutes.
const SECONDS_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

static METRICS: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
    std::sync::OnceLock::new();

/// Installs the process's Prometheus recorder (once) and returns the handle that renders the
/// exposition text. With `listen`, the exporter also serves `GET /metrics` on that address
/// itself: how workers and schedulers, which have no API, are scraped. Must run inside the
/// tokio runtime.
///
/// # Errors
/// When the listen address is invalid or taken.
pub fn metrics(
    listen: Option<&str>,
) -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    if let Some(h) = METRICS.get() {
        return Ok(h.clone());
    }
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)?;
    let recorder = match listen {
        Some(addr) => {
            let addr: std::net::SocketAddr = addr
                .parse()
                .map_err(|e| anyhow::anyhow!("metrics address '{addr}': {e}"))?;
            let (recorder, exporter) = builder.with_http_listener(addr).build()?;
            tokio::spawn(async move {
                if let Err(e) = exporter.await {
                    tracing::warn!(error = ?e, "metrics listener stopped");
                }
            });
            recorder
        }
        // Without an address the builder would listen on its default port: build only the
        // recorder; the API renders it at `/metrics`.
        None => builder.build_recorder(),
    };
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        // Another recorder won the race (tests): use whichever is installed.
        tracing::debug!("a metrics recorder was already installed");
    }
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    describe();
    Ok(METRICS.get_or_init(|| handle).clone())
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "climate_http_requests_total",
        "HTTP requests answered, by method, route and status"
    );
    describe_histogram!(
        "climate_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method and route"
    );
    describe_gauge!(
        "climate_queue_depth",
        "Task messages ready in the queue (sampled at scrape)"
    );
    describe_gauge!(
        "climate_outbox_pending",
        "Accepted announcements not yet published to the queue (sampled at scrape)"
    );
    describe_counter!(
        "climate_tasks_total",
        "Task deliveries handled, by step and outcome (ack, dead_letter, requeue)"
    );
    describe_histogram!(
        "climate_task_duration_seconds",
        Unit::Seconds,
        "Time to handle a task delivery, by step"
    );
    describe_counter!(
        "climate_task_retries_total",
        "Steps scheduled again after a transient failure, by step"
    );
    describe_counter!(
        "climate_runs_total",
        "Runs that ended, by outcome (succeeded, failed)"
    );
    describe_histogram!(
        "climate_run_duration_seconds",
        Unit::Seconds,
        "Time from acceptance to publication of succeeded runs"
    );
    describe_counter!(
        "climate_download_bytes_total",
        Unit::Bytes,
        "Bytes downloaded from upstream providers, by provider"
    );
    describe_counter!(
        "climate_upstream_errors_total",
        "Failed upstream requests, by provider and kind (transient, permanent)"
    );
}
