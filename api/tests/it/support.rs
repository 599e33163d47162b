//! [`InProcess`]: one API instance in this test process.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request};
use climate_api::router::router;
use climate_api::state::{App, AppState};
use climate_infra::db::RunFilter;
use climate_infra::{Config, Platform};
use serde_json::Value;
use tower::ServiceExt as _;

/// An answer: status, headers and the body (JSON when it parses, else a string).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

/// An API instance on embedded defaults (no worker, no scheduler, no relay) in a temporary
/// directory. When dropped it checks that no test left a run queued or an announcement in the
/// outbox: a validation test accepts nothing.
pub struct InProcess {
    pub platform: Platform,
    router: axum::Router,
    /// Stops the worker, relay and scheduler of [`InProcess::with_worker`].
    shutdown: tokio_util::sync::CancellationToken,
    _dir: tempfile::TempDir,
}

impl InProcess {
    /// A standalone instance on the embedded configuration, with `overrides` as its
    /// environment (`CLIMATE_API_…` variables).
    pub async fn start(overrides: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env: BTreeMap<String, String> = overrides
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        env.insert(
            "CLIMATE_API_DATA_DIR".into(),
            dir.path().join("data").display().to_string(),
        );
        let config = Config::load(None, &env).expect("the embedded configuration loads");
        let registry = climate_geodata::providers::Registry::default();
        let platform = Platform::connect(config, &|t| registry.check(t))
            .await
            .expect("the platform connects");
        let app = App::new(platform.clone()).expect("the API state builds");
        Self {
            router: router(AppState(Arc::new(app))),
            platform,
            shutdown: tokio_util::sync::CancellationToken::new(),
            _dir: dir,
        }
    }

    /// [`InProcess::start`] with what the standalone process runs beside the API: the outbox
    /// relay and lease reaper, and a worker running ingestions and process executions.
    pub async fn with_worker(overrides: &[(&str, &str)]) -> Self {
        let app = Self::start(overrides).await;
        let platform = app.platform.clone();
        tokio::spawn(climate_infra::housekeeping::run(
            platform.clone(),
            app.shutdown.clone(),
        ));
        let ctx = climate_ingest::Context::new(platform.clone()).expect("the worker context");
        let processes = climate_processes::job_kind(&ctx);
        tokio::spawn(climate_ingest::worker::run(
            ctx,
            vec![processes],
            app.shutdown.clone(),
        ));
        app
    }

    /// Sends `method path` with a JSON body and extra headers.
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Answer {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send(
            method,
            path,
            &all,
            Some(serde_json::to_vec(body).expect("json")),
        )
        .await
    }

    /// Sends one request.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(body.map_or_else(Body::empty, Body::from))
            .expect("a valid request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024)
            .await
            .expect("the body reads");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer {
            status,
            headers,
            body,
        }
    }

    /// `GET path`: status and body.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let a = self.send(Method::GET, path, &[], None).await;
        (a.status, a.body)
    }

    /// Serves the router on a loopback port until the instance is dropped (for real HTTP
    /// clients); returns its base URL.
    pub async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let router = self.router.clone();
        let stop = self.shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
                .expect("the server runs");
        });
        format!("http://{addr}")
    }

    /// `POST path` with a JSON body: status and body.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let bytes = serde_json::to_vec(body).expect("json");
        let a = self
            .send(
                Method::POST,
                path,
                &[("content-type", "application/json")],
                Some(bytes),
            )
            .await;
        (a.status, a.body)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if std::thread::panicking() {
            return;
        }
        let db = self.platform.db.clone();
        let (runs, pending) = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let queued = RunFilter {
                    status: Some(climate_domain::run::RunStatus::Queued),
                    limit: 100,
                    ..RunFilter::default()
                };
                let runs = db.list_runs(&queued).await.expect("list runs");
                let pending = db
                    .count_pending_outbox(chrono::Utc::now() + chrono::Duration::days(1))
                    .await
                    .expect("count the outbox");
                (runs.len(), pending)
            })
        });
        assert_eq!(runs, 0, "a test left {runs} run(s) queued");
        assert_eq!(
            pending, 0,
            "a test left {pending} announcement(s) in the outbox"
        );
    }
}

pub use climate_tests::assert_envelope;
