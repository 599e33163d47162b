//! # climate-api
//!
//! The HTTP API (axum) and the `climate-api` command, which also composes the standalone mode:
//! API + worker + scheduler in one process on embedded defaults.
//!
//! Only this crate knows HTTP. Handlers are grouped by resource under [`routes`], wired in
//! [`router`], and described by the generated OpenAPI document in [`openapi`].

pub mod auth;
pub mod error;
pub mod idempotency;
pub mod openapi;
pub mod router;
pub mod routes;
pub mod state;
pub mod views;

use std::sync::Arc;

use anyhow::Context as _;
use chrono::Utc;
use climate_geodata::providers::Registry;
use climate_infra::messages::TASK_TOPIC;
use climate_infra::{Config, Platform};
use tokio_util::sync::CancellationToken;

use crate::state::{App, AppState};

/// Serves the API on `listener` until `shutdown`, then drains in-flight requests.
///
/// # Errors
/// When the server fails.
pub async fn serve(
    platform: Platform,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut state = App::new(platform)?;
    state.shutdown = shutdown.clone();
    let app = router::router(AppState(Arc::new(state)));
    tracing::info!(addr = %listener.local_addr()?, "API listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

/// Which processes to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// API + worker + scheduler in one process.
    Standalone,
    /// API only.
    Serve,
}

/// Connects the platform and runs `mode` until SIGTERM/SIGINT.
///
/// # Errors
/// Start-up failures (configuration, backends, bind address).
pub async fn run(config: Config, mode: Mode) -> anyhow::Result<()> {
    let registry = Registry::default();
    let bind = config.server.bind.clone();
    let platform = Platform::connect(config, &|t| registry.check(t))
        .await
        .context("starting Climate API")?;
    tracing::info!(
        mode = platform.config.mode(),
        backends = ?platform.backends(),
        templates = platform.catalog.len(),
        "platform connected"
    );
    warn_if_open(&platform.config);
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("cannot listen on {bind} (server.bind)"))?;
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    if mode == Mode::Standalone {
        if !platform.queue.is_durable() {
            // The in-process queue forgot everything when the last process stopped: announce
            // every unfinished run again from the database.
            let n = platform
                .db
                .reannounce_unfinished(Utc::now(), TASK_TOPIC)
                .await?;
            if n > 0 {
                tracing::info!(runs = n, "re-announced unfinished runs");
            }
        }
        let ctx = climate_ingest::Context::new(platform.clone())?
            .with_failpoints(&std::env::var("CLIMATE_API_FAILPOINTS").unwrap_or_default());
        let s = shutdown.clone();
        let c = ctx.clone();
        let processes = climate_processes::job_kind(&ctx);
        tasks.spawn(async move { climate_ingest::worker::run(c, vec![processes], s).await });
        let (c, s) = (ctx.clone(), shutdown.clone());
        tasks.spawn(async move {
            climate_ingest::scheduler::run(c, s).await;
            Ok(())
        });
    } else {
        if !platform.queue.is_durable() {
            tracing::warn!(
                "queue.url is the in-process queue: runs accepted by `serve` are executed only by a standalone process; configure amqp:// for distributed workers"
            );
        }
        let (p, s) = (platform.clone(), shutdown.clone());
        tasks.spawn(async move {
            climate_infra::housekeeping::run(p, s).await;
            Ok(())
        });
    }
    let s = shutdown.clone();
    tasks.spawn(serve(platform, listener, s));
    tokio::select! {
        () = climate_infra::shutdown::signal() => tracing::info!("shutting down"),
        Some(res) = tasks.join_next() => {
            shutdown.cancel();
            res??;
        }
    }
    shutdown.cancel();
    while let Some(res) = tasks.join_next().await {
        res??;
    }
    Ok(())
}

/// Says loudly, at every start, that authentication is off.
fn warn_if_open(config: &Config) {
    if config.auth.enabled {
        return;
    }
    let loopback = config
        .server
        .bind
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback());
    if loopback {
        tracing::warn!(
            bind = %config.server.bind,
            "AUTHENTICATION IS DISABLED (auth.enabled: false): anyone on this machine can start ingestions and change schedules; set auth.enabled: true before exposing this instance"
        );
    } else {
        tracing::error!(
            bind = %config.server.bind,
            "AUTHENTICATION IS DISABLED (auth.enabled: false) ON A NON-LOOPBACK ADDRESS: anyone who can reach this port can start ingestions and change schedules; set auth.enabled: true"
        );
    }
}
