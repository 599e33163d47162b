//! `climate-worker`: a worker process for distributed deployments.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use climate_geodata::providers::Registry;
use climate_infra::{Config, Platform};
use tokio_util::sync::CancellationToken;

/// Climate API worker: materialises ingestion runs from the shared queue.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Configuration file (default: CLIMATE_API_CONFIG, else the embedded example).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    climate_infra::shutdown::block_on("climate-worker", main_async())
}

async fn main_async() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::from_process(args.config.as_deref())?;
    if !config.queue.url.starts_with("amqp") {
        anyhow::bail!(
            "climate-worker needs a shared queue (queue.url: amqp://…); with the in-process queue, run `climate-api` (standalone), which includes the worker"
        );
    }
    if let Some(bind) = &config.worker.metrics_bind {
        climate_infra::telemetry::metrics(Some(bind)).context("worker.metrics_bind")?;
    }
    let registry = Registry::default();
    let platform = Platform::connect(config, &|t| registry.check(t))
        .await
        .context("starting the worker")?;
    let shutdown = CancellationToken::new();
    let housekeeping = tokio::spawn(climate_infra::housekeeping::run(
        platform.clone(),
        shutdown.clone(),
    ));
    let ctx = climate_ingest::Context::new(platform)?
        .with_failpoints(&std::env::var("CLIMATE_API_FAILPOINTS").unwrap_or_default());
    let processes = climate_processes::job_kind(&ctx);
    let worker = tokio::spawn(climate_ingest::worker::run(
        ctx,
        vec![processes],
        shutdown.clone(),
    ));
    climate_infra::shutdown::signal().await;
    tracing::info!("shutting down: finishing tasks in flight");
    shutdown.cancel();
    worker.await??;
    housekeeping.await?;
    Ok(())
}
