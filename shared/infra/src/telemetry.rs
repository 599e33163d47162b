//! Logs, traces and metrics shared by the binaries.
//!
//! Logs: human-readable on a terminal, JSON otherwise (`CLIMATE_API_LOG_FORMAT=json|text` forces
//! either), filtered by `RUST_LOG` (default `info`).
//!
//! Traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, every
//! `tracing` span is exported over OTLP/HTTP (protobuf) — the standard `OTEL_*` variables apply
//! (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`, …;
//! `OTEL_SDK_DISABLED=true` turns it off). The W3C trace context crosses the queue in message
//! headers: [`trace_headers`] captures it where a message is written to the outbox and
//! [`set_parent`] continues it where the message is handled, so an API request and the worker
//! tasks it caused are one trace.

use std::io::IsTerminal;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::queue::Headers;

/// The process's trace pipeline; [`Telemetry::shutdown`] flushes what is buffered.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still buffered and stops the exporter: at most 12 s, enough for an
    /// export in flight (10 s request timeout) to finish.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // The batch processor blocks while it flushes: keep that off the async workers.
            let done = tokio::task::spawn_blocking(move || {
                provider.shutdown_with_timeout(std::time::Duration::from_secs(12))
            })
            .await;
            if let Ok(Err(e)) = done {
                eprintln!("could not flush traces: {e}");
            }
        }
    }
}

/// Installs the global subscriber (logs, and traces when configured) for the process
/// `service` (the default `service.name`). Must run inside the tokio runtime. A second call
/// (tests) keeps the first subscriber.
pub fn init(service: &str) -> Telemetry {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,lapin=warn"));
    let json = match std::env::var("CLIMATE_API_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().flatten_event(true).boxed()
    } else {
        fmt.boxed()
    };
    let (provider, otlp_error) = match otlp_provider(service) {
        Ok(p) => (p, None),
        Err(e) => (None, Some(e)),
    };
    // RUST_LOG filters spans as well as logs: the platform's spans (requests, publications,
    // tasks) are at `info`, the default.
    let traces = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service.to_owned())));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(traces)
        .try_init()
        .is_ok();
    if let Some(e) = otlp_error {
        tracing::warn!(error = %e, "OTLP trace export is not available; continuing without traces");
    }
    if !installed {
        return Telemetry::default();
    }
    if provider.is_some() {
        tracing::info!(service, "exporting traces over OTLP/HTTP");
    }
    Telemetry { provider }
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// The OTLP pipeline, when the environment asks for one.
fn otlp_provider(service: &str) -> anyhow::Result<Option<SdkTracerProvider>> {
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
    if !(env_set("OTEL_EXPORTER_OTLP_ENDPOINT") || env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        || std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v == "none")
    {
        return Ok(None);
    }
    // The traces-specific variable wins over the general one.
    if let Some((var, p)) = [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]
    .into_iter()
    .find_map(|var| Some((var, std::env::var(var).ok()?)))
    {
        anyhow::ensure!(
            p == "http/protobuf",
            "{var}={p}: only http/protobuf is supported (the collector's port 4318)"
        );
    }
    let client = OtlpHttp {
        client: reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(10))
            .build()?,
        runtime: tokio::runtime::Handle::try_current()?,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(client)
        .build()?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    let named = env_set("OTEL_SERVICE_NAME")
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| {
            a.split(',')
                .any(|kv| kv.trim().starts_with("service.name="))
        });
    if !named {
        resource = resource.with_service_name(service.to_owned());
    }
    let resource = resource
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build(),
    ))
}

/// Sends the exporter's requests with the process's HTTP stack (reqwest on tokio). The batch
/// processor drives exports from its own thread, so each request runs as a task on the
/// runtime and the exporter awaits its result.
#[derive(Debug)]
struct OtlpHttp {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpHttp {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let (parts, body) = request.into_parts();
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            let mut out = opentelemetry_http::Response::new(body);
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok::<_, opentelemetry_http::HttpError>(out)
        });
        task.await?
    }
}

/// The W3C trace context of `span` (`traceparent`, `tracestate`), to send with a message;
/// empty when traces are not exported.
pub fn trace_headers(span: &tracing::Span) -> Headers {
    let mut carrier = Carrier(Headers::new());
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.0
}

/// Continues the trace named by `headers` (a message's or a request's `traceparent`) in
/// `span`; nothing happens without a valid context.
pub fn set_parent(span: &tracing::Span, headers: &Headers) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Carrier(headers.clone()));
    // Fails only when the span was already entered, which callers avoid.
    drop(span.set_parent(parent));
}

/// [`Headers`] as the propagator's carrier.
struct Carrier(Headers);

impl opentelemetry::propagation::Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

impl opentelemetry::propagation::Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
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
        "Outbox messages due for publication but not yet published to the queue (sampled at scrape)"
    );
    describe_counter!(
        "climate_tasks_total",
        "Task deliveries handled, by step and outcome (ack, dead_letter, requeue)"
    );
    describe_counter!(
        "climate_deliveries_handed_over_total",
        "Deliveries settled after worker.max_delivery_hold_seconds, by reason: waiting (for a slot) and unclaimed (step not yet holding its lease) are handed over as a fresh copy; leased ones are acknowledged while the step finishes under its lease"
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
        "climate_store_bytes_written_total",
        Unit::Bytes,
        "Bytes written to the object store (Zarr chunks and metadata, cached downloads), by store kind"
    );
    describe_counter!(
        "climate_upstream_errors_total",
        "Failed upstream requests, by provider and kind (transient, permanent)"
    );
}
