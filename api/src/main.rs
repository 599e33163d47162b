//! `climate-api`: standalone (default), `serve`, `migrate`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use climate_api::Mode;
use climate_infra::Config;

/// Climate API: climate and earth-observation data for health information systems.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Configuration file (default: CLIMATE_API_CONFIG, else the embedded example).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// API + worker + scheduler in one process (the default).
    Standalone,
    /// The API only (distributed mode: workers run as climate-worker).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    climate_infra::telemetry::init();
    let args = Args::parse();
    let config = Config::from_process(args.config.as_deref())?;
    match args.command.unwrap_or(Command::Standalone) {
        Command::Standalone => climate_api::run(config, Mode::Standalone).await,
        Command::Serve => climate_api::run(config, Mode::Serve).await,
        Command::Migrate => {
            let url = config.database_url();
            let db = climate_infra::db::connect(&url, Some(1)).await?;
            db.migrate().await?;
            println!(
                "migrations applied to {}",
                climate_infra::platform::redact(&url)
            );
            Ok(())
        }
    }
}
