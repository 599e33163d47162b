//! # climate-scheduler
//!
//! The platform's clock. Today it runs the housekeeping loop — the outbox relay and the lease
//! reaper, which re-announces runs whose worker died — so that a deployment with no API replica
//! up still recovers stalled runs. Periodic sync emission (per-template schedules, availability
//! lags, leader election) is built on this loop by the sync issue; until then the scheduler emits
//! no syncs, and says so at start-up.

use climate_infra::Platform;
use tokio_util::sync::CancellationToken;

/// Runs until `shutdown`.
pub async fn run(platform: Platform, shutdown: CancellationToken) {
    tracing::info!(
        "scheduler started: housekeeping (outbox relay, lease recovery); periodic syncs are not scheduled yet"
    );
    climate_infra::housekeeping::run(platform, shutdown).await;
}
