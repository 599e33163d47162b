//! Waiting for the process's stop signal (SIGTERM from an orchestrator, Ctrl-C on a terminal).

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Runs a binary's `main` on a multi-threaded runtime and exits the process as soon as it
/// returned, without waiting for work that is still running (a blocking decode abandoned at the
/// shutdown grace): the leases of such work have been handed back and its writes are
/// idempotent, so waiting for it (or tearing the runtime down under it) would only delay the
/// exit the orchestrator asked for. An error is printed as `Error: …` and exits with 1.
///
/// Logging and tracing ([`crate::telemetry::init`]) are set up for `service` first, and the
/// spans still buffered are exported before the exit.
///
/// # Errors
/// A runtime that cannot be built; otherwise this function does not return.
pub fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(
    service: &str,
    main: F,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let telemetry = crate::telemetry::init(service);
        let result = main.await;
        telemetry.shutdown().await;
        result
    });
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("Error: {e:?}");
            std::process::exit(1)
        }
    }
}
