//! `climate-scheduler`: the scheduler process for distributed deployments.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use climate_infra::{Config, Platform};
use tokio_util::sync::CancellationToken;

/// Climate API scheduler.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Configuration file (default: CLIMATE_API_CONFIG, else the embedded example).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    climate_infra::shutdown::block_on("climate-scheduler", main_async())
}

async fn main_async() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::from_process(args.config.as_deref())?;
    if let Some(bind) = &config.scheduler.metrics_bind {
        climate_infra::telemetry::metrics(Some(bind)).context("scheduler.metrics_bind")?;
    }
    // Templates are not executed here, so provider parameters are checked by the workers.
    let platform = Platform::connect(config, &|_| Ok(()))
        .await
        .context("starting the scheduler")?;
    // Providers are only probed (availability `probe`), never run to completion, here.
    let ctx = climate_ingest::Context::new(platform).context("starting the scheduler")?;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(climate_ingest::scheduler::run(ctx, shutdown.clone()));
    climate_infra::shutdown::signal().await;
    shutdown.cancel();
    task.await?;
    Ok(())
}
