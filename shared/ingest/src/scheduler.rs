//! The platform's clock. It runs the housekeeping loop — the outbox relay and the lease reaper,
//! which re-announces runs whose worker died — and the sync loop: every `scheduler.tick_seconds`
//! it starts the syncs that are due ([`sync::tick`]). Several replicas may run: each due time
//! of a dataset gets exactly one run (see [`sync`]).

use crate::Context;
use crate::sync;
use tokio_util::sync::CancellationToken;

/// Runs until `shutdown`.
pub async fn run(ctx: Context, shutdown: CancellationToken) {
    let every = std::time::Duration::from_secs(ctx.platform.config.scheduler.tick_seconds.max(1));
    tracing::info!(
        tick_seconds = every.as_secs(),
        "scheduler started: housekeeping and periodic syncs"
    );
    let housekeeping = climate_infra::housekeeping::run(ctx.platform.clone(), shutdown.clone());
    let syncs = async {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = interval.tick() => {}
            }
            match sync::tick(&ctx, chrono::Utc::now()).await {
                Ok(runs) if !runs.is_empty() => {
                    tracing::info!(runs = runs.len(), "scheduled syncs started");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "scheduler tick failed"),
            }
        }
    };
    tokio::join!(housekeeping, syncs);
}
