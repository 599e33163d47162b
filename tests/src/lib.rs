//! Test harness for end-to-end tests: [`TestApp`] starts the real binaries (`climate-api`,
//! `climate-worker`) with a generated configuration against real services, and tears everything
//! down on drop. Each app gets its own data directory, database, queue names, bucket prefix and
//! Redis key prefix, so tests run in parallel without sharing state.
//!
//! Services are found through the environment that `scripts/test-env.sh` exports
//! (`CLIMATE_TEST_DATABASE_URL`, `CLIMATE_TEST_AMQP_URL`, `CLIMATE_TEST_REDIS_URL`,
//! `CLIMATE_TEST_S3_ENDPOINT`, `CLIMATE_TEST_S3_BUCKET`, `CLIMATE_TEST_PYTHON`); `make test` sets
//! it up.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub mod fault;
pub mod mock;
pub mod otlp;
pub mod servers;
use serde_json::Value;

/// PostgreSQL used when `CLIMATE_TEST_DATABASE_URL` is unset.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// RabbitMQ used when `CLIMATE_TEST_AMQP_URL` is unset: the vhost `scripts/test-services.sh`
/// creates afresh for every test run.
const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/climate-test";

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Path of a workspace binary, built by `cargo build --workspace --bins` (`make test` does it).
///
/// # Panics
/// When the binary has not been built.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("CLIMATE_TEST_BIN_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("debug")))
        .unwrap_or_else(|| repo_root().join("target").join("debug"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` (make test does it)",
        path.display()
    );
    path
}

/// An environment variable the tests need.
///
/// # Panics
/// When it is unset, telling how to set it up.
pub fn env(name: &str, default: Option<&str>) -> String {
    match (std::env::var(name), default) {
        (Ok(v), _) if !v.is_empty() => v,
        (_, Some(d)) => d.to_owned(),
        _ => panic!(
            "{name} is not set: run the tests with `make test` (it sources scripts/test-env.sh)"
        ),
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Deployment shape of a [`TestApp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One `climate-api` process with SQLite, in-process queue, local store.
    Standalone,
    /// `climate-api serve` + N `climate-worker` against PostgreSQL, RabbitMQ, Redis and S3.
    Distributed {
        /// Worker processes.
        workers: usize,
    },
}

/// A running instance under test.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// HTTP client, sending [`TestApp::api_key`] on every request.
    pub client: reqwest::Client,
    /// An admin API key created with `climate-api keys create` before the processes started
    /// (`None` with the embedded config, which disables authentication).
    pub api_key: Option<String>,
    /// The generated config file.
    pub config_path: PathBuf,
    /// Temporary directory holding config, data and logs.
    pub dir: tempfile::TempDir,
    children: Vec<(String, Child)>,
    /// Server URL and name of a distributed app's database, dropped on drop.
    pg_database: Option<(String, String)>,
    /// Broker URL and queue name of a distributed app, deleted on drop.
    queue: Option<(String, String)>,
    /// [`Options::env`].
    env: Vec<(String, String)>,
    /// Bind address when running on the embedded config.
    embedded: Option<String>,
    /// Processes spawned so far (names their log files uniquely across restarts).
    spawned: usize,
}

/// Options of [`TestApp::start`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra YAML appended to the generated config.
    pub extra_yaml: String,
    /// `(from, to)`: the processes reach the backend on port `from` through port `to` (a
    /// [`fault::FaultProxy`]) instead.
    pub port_map: Vec<(u16, u16)>,
    /// Replaces the default `auth:` block (authentication on, a rate limit no test reaches).
    pub auth_yaml: Option<String>,
    /// Files copied into the app's directory (source, destination relative to the config).
    pub files: Vec<(PathBuf, String)>,
    /// Distributed mode with a local `file://` store shared by the processes instead of S3, so
    /// tests can read the stored objects directly.
    pub local_store: bool,
    /// Replaces the default extents block (`extents:` with Sierra Leone).
    pub extents_yaml: Option<String>,
    /// Template YAML documents written to `templates/` beside the config, which becomes
    /// `templates_dir`.
    pub templates: Vec<String>,
    /// Extra environment variables of every process (e.g. `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub env: Vec<(String, String)>,
    /// Start `climate-api` exactly as `cargo run` does: no config file (the embedded example,
    /// with its relative `./data`), working directory = the app's directory, only the bind
    /// address overridden through the environment. Standalone only.
    pub embedded_config: bool,
    /// PostgreSQL server the app's database is created on, instead of
    /// `CLIMATE_TEST_DATABASE_URL` (a [`servers::Postgres`] a test restarts).
    pub database_url: Option<String>,
    /// RabbitMQ the app uses, instead of `CLIMATE_TEST_AMQP_URL` (a [`servers::RabbitMq`] a
    /// test restarts).
    pub amqp_url: Option<String>,
}

impl TestApp {
    /// Standalone instance with default options.
    ///
    /// # Errors
    /// When the process does not become ready.
    pub async fn standalone() -> anyhow::Result<Self> {
        Self::start(Shape::Standalone, Options::default()).await
    }

    /// Distributed instance with `workers` worker processes.
    ///
    /// # Errors
    /// When the services or processes do not become ready.
    pub async fn distributed(workers: usize) -> anyhow::Result<Self> {
        Self::start(Shape::Distributed { workers }, Options::default()).await
    }

    /// Starts an instance.
    ///
    /// # Errors
    /// When the services or processes do not become ready.
    pub async fn start(shape: Shape, opts: Options) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let id = uuid::Uuid::now_v7().simple().to_string();
        let extents = opts.extents_yaml.clone().unwrap_or_else(|| {
            "extents:\n  - extent_id: sle\n    name: Sierra Leone\n    bbox: [-13.5, 6.9, -10.1, 10.0]\n    country_code: SLE\n".to_owned()
        });
        let mut yaml = format!(
            "name: e2e {id}\ndata_dir: {data}\nserver:\n  bind: 127.0.0.1:{port}\nworker:\n  concurrency: 2\n  lease_seconds: 6\n{extents}",
            data = dir.path().join("data").display()
        );
        let mut pg_database = None;
        let mut queue = None;
        if let Shape::Distributed { .. } = shape {
            let base_url = opts
                .database_url
                .clone()
                .unwrap_or_else(|| env("CLIMATE_TEST_DATABASE_URL", Some(DEFAULT_DATABASE_URL)));
            let db = format!("climate_e2e_{id}");
            create_database(&base_url, &db).await?;
            let db_url = replace_db(&base_url, &db);
            pg_database = Some((base_url, db));
            let amqp = opts
                .amqp_url
                .clone()
                .unwrap_or_else(|| env("CLIMATE_TEST_AMQP_URL", Some(DEFAULT_AMQP_URL)));
            queue = Some((amqp.clone(), format!("climate.e2e.{id}")));
            let redis = env("CLIMATE_TEST_REDIS_URL", Some("redis://127.0.0.1:6379"));
            let endpoint = env("CLIMATE_TEST_S3_ENDPOINT", None);
            let bucket = env("CLIMATE_TEST_S3_BUCKET", Some("climate-test"));
            yaml.push_str(&format!(
                "database:\n  url: \"{db_url}\"\nqueue:\n  url: \"{amqp}\"\n  name: climate.e2e.{id}\ncache:\n  url: \"{redis}\"\n  prefix: \"e2e:{id}:\"\n"
            ));
            if opts.local_store {
                yaml.push_str(&format!(
                    "store:\n  url: file://{}\n",
                    dir.path().join("data/store").display()
                ));
            } else {
                yaml.push_str(&format!(
                    "store:\n  url: s3://{bucket}/e2e-{id}\n  options:\n    aws_endpoint_url: \"{endpoint}\"\n    aws_allow_http: \"true\"\n    aws_access_key_id: test\n    aws_secret_access_key: test\n    aws_region: us-east-1\n"
                ));
            }
        }
        yaml.push_str(
            opts.auth_yaml
                .as_deref()
                .unwrap_or("auth:\n  requests_per_minute: 1000000\n"),
        );
        yaml.push_str(&opts.extra_yaml);
        for (from, to) in &opts.port_map {
            yaml = yaml
                .replace(&format!("127.0.0.1:{from}"), &format!("127.0.0.1:{to}"))
                .replace(&format!("localhost:{from}"), &format!("127.0.0.1:{to}"));
        }
        if !opts.templates.is_empty() {
            let tdir = dir.path().join("templates");
            std::fs::create_dir_all(&tdir)?;
            for (i, t) in opts.templates.iter().enumerate() {
                std::fs::write(tdir.join(format!("t{i}.yaml")), t)?;
            }
            yaml.push_str("templates_dir: templates\n");
        }
        for (src, dest) in &opts.files {
            let dest = dir.path().join(dest);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(src, &dest).with_context(|| format!("copying {}", src.display()))?;
        }
        let config_path = dir.path().join("climate-api.yaml");
        std::fs::write(&config_path, yaml)?;
        let api_key = if opts.embedded_config {
            None
        } else {
            Some(create_key(&config_path, "e2e admin", "admin")?)
        };
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = &api_key {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))?,
            );
        }

        let mut app = Self {
            embedded: opts.embedded_config.then(|| format!("127.0.0.1:{port}")),
            spawned: 0,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .default_headers(headers)
                .build()?,
            api_key,
            config_path,
            dir,
            children: Vec::new(),
            pg_database,
            queue,
            env: opts.env.clone(),
        };
        match shape {
            Shape::Standalone => app.spawn("climate-api", &[])?,
            Shape::Distributed { workers } => {
                app.spawn("climate-api", &["serve"])?;
                for _ in 0..workers {
                    app.spawn("climate-worker", &[])?;
                }
            }
        }
        app.wait_ready().await?;
        Ok(app)
    }

    /// Starts one more process of `binary` with this app's config (e.g. another worker).
    ///
    /// # Errors
    /// When the process cannot be spawned.
    pub fn spawn(&mut self, binary: &str, args: &[&str]) -> anyhow::Result<()> {
        self.spawn_with_env(binary, args, &[])
    }

    /// Like [`TestApp::spawn`], with extra environment variables (e.g. failure points).
    ///
    /// # Errors
    /// When the process cannot be spawned.
    pub fn spawn_with_env(
        &mut self,
        binary: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let n = self.children.len() + self.spawned;
        self.spawned += 1;
        let log = std::fs::File::create(self.dir.path().join(format!("{n}-{binary}.log")))?;
        // `setpriv --pdeathsig KILL` (util-linux) execs the binary with a parent-death signal:
        // when the test process dies without running `Drop` (a nextest timeout, a crash), its
        // children die with it instead of living on as orphans that keep broker connections.
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--"])
            .arg(bin(binary))
            .args(args)
            .current_dir(self.dir.path());
        match &self.embedded {
            Some(bind) => cmd.env("CLIMATE_API__SERVER__BIND", bind),
            None => cmd.arg("--config").arg(&self.config_path),
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.envs(envs.iter().copied());
        let child = cmd
            .env("RUST_LOG", "info,climate=debug")
            // A start-up error's message must not be pushed out of the log tail by a backtrace.
            .env("RUST_BACKTRACE", "0")
            .env("CLIMATE_API_LOG_FORMAT", "text")
            .env_remove("CLIMATE_API_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {binary}"))?;
        self.children.push((binary.to_owned(), child));
        Ok(())
    }

    /// Sends `signal` (`TERM`, `KILL`, …) to the `nth` running process of `binary` (from 0, in
    /// start order).
    ///
    /// # Errors
    /// When there is no such process or `kill` fails.
    pub fn signal(&self, binary: &str, nth: usize, signal: &str) -> anyhow::Result<()> {
        let (_, child) = self
            .children
            .iter()
            .filter(|(b, _)| b == binary)
            .nth(nth)
            .with_context(|| format!("no process {nth} of {binary}"))?;
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()?
            .success();
        anyhow::ensure!(ok, "kill -{signal} failed");
        Ok(())
    }

    /// Waits up to `timeout` for the `nth` process of `binary` to exit; its exit status.
    ///
    /// # Errors
    /// When there is no such process or it is still running after `timeout`.
    pub async fn wait_process(
        &mut self,
        binary: &str,
        nth: usize,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, child) = self
                .children
                .iter_mut()
                .filter(|(b, _)| b == binary)
                .nth(nth)
                .with_context(|| format!("no process {nth} of {binary}"))?;
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "{binary} #{nth} still running after {timeout:?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every line the processes logged, whole (for assertions on what must never be logged).
    pub fn full_logs(&self) -> String {
        let mut entries: Vec<_> = std::fs::read_dir(self.dir.path())
            .map(|r| r.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        entries
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .map(|p| std::fs::read_to_string(&p).unwrap_or_default())
            .collect()
    }

    /// The last lines each process logged, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut entries: Vec<_> = std::fs::read_dir(self.dir.path())
            .map(|r| r.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for p in entries {
            if p.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                out.push_str(&format!("--- {} (last lines)\n", p.display()));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Waits until `/ready` answers 200 (after [`TestApp::spawn`]).
    ///
    /// # Errors
    /// When a process exits or readiness takes over 60 s.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut exited = None;
            for (name, child) in &mut self.children {
                if let Some(status) = child.try_wait()? {
                    exited = Some(format!("{name} exited during start-up with {status}"));
                }
            }
            if let Some(e) = exited {
                bail!("{e}\n{}", self.logs());
            }
            if let Ok(r) = self.client.get(self.url("/ready")).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("instance not ready after 60 s\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Absolute URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET returning status and JSON.
    ///
    /// # Errors
    /// Transport or JSON errors.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let r = self.client.get(self.url(path)).send().await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await?))
    }

    /// POST a JSON body returning status, `Location` and JSON.
    ///
    /// # Errors
    /// Transport or JSON errors.
    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<(u16, Option<String>, Value)> {
        let r = self.client.post(self.url(path)).json(body).send().await?;
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((status, location, r.json().await?))
    }

    /// `POST /sync/{id}` with `body`: the status and the JSON answer.
    ///
    /// # Errors
    /// When the request fails or the answer is not JSON.
    pub async fn post_sync(&self, id: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let r = self
            .client
            .post(self.url(&format!("/sync/{id}")))
            .json(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await?))
    }

    /// A sync that must start a run (202), waited for: the planned detail and the finished run.
    ///
    /// # Errors
    /// When the sync does not start a run or the run does not finish in a minute.
    pub async fn sync_and_wait(&self, id: &str, body: &Value) -> anyhow::Result<(Value, Value)> {
        let (status, answer) = self.post_sync(id, body).await?;
        anyhow::ensure!(status == 202, "POST /sync/{id} answered {status}: {answer}");
        let run_id = answer["run"]["ingestion_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let run = self.wait_for_run(&run_id, Duration::from_secs(120)).await?;
        Ok((answer["sync"].clone(), run))
    }

    /// The app's `data_dir` (in standalone or `local_store` mode the store is its `store/`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The version directories of dataset `id` in a standalone (or `local_store`) app's store,
    /// oldest first (artifact ids are UUIDv7).
    pub fn version_dirs(&self, id: &str) -> Vec<PathBuf> {
        let root = self.dir.path().join(format!("data/store/datasets/{id}"));
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
            .map(|r| r.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        dirs.sort();
        dirs
    }

    /// Polls a run until it reaches a terminal status.
    ///
    /// # Errors
    /// When it does not finish within `timeout`.
    pub async fn wait_for_run(&self, id: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, run) = self.get_json(&format!("/ingestions/{id}")).await?;
            if status != 200 {
                bail!("GET /ingestions/{id} answered {status}: {run}");
            }
            let s = run["status"].as_str().unwrap_or_default();
            if matches!(s, "succeeded" | "failed" | "cancelled") {
                return Ok(run);
            }
            if Instant::now() > deadline {
                bail!(
                    "run {id} still {s} after {timeout:?}: {run}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Posts an ingestion that must be accepted (202): the run as answered and its id.
    ///
    /// # Errors
    /// When it is not accepted.
    pub async fn start_ingestion(&self, body: &Value) -> anyhow::Result<(Value, String)> {
        let (status, _, run) = self.post_json("/ingestions", body).await?;
        if status != 202 {
            bail!("POST /ingestions answered {status}: {run}");
        }
        let id = run["ingestion_id"]
            .as_str()
            .context("ingestion_id")?
            .to_owned();
        Ok((run, id))
    }

    /// `DELETE path`: the response.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn delete(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self.client.delete(self.url(path)).send().await?)
    }

    /// `GET path`: the response.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self.client.get(self.url(path)).send().await?)
    }

    /// Posts an ingestion and waits for its run to finish.
    ///
    /// # Errors
    /// When it is not accepted or does not finish.
    pub async fn ingest(&self, body: &Value) -> anyhow::Result<Value> {
        let (_, id) = self.start_ingestion(body).await?;
        self.wait_for_run(&id, Duration::from_secs(120)).await
    }

    /// [`TestApp::ingest`] of a run that must succeed.
    ///
    /// # Errors
    /// When it is not accepted, does not finish or does not succeed.
    pub async fn ingest_ok(&self, body: &Value) -> anyhow::Result<Value> {
        let run = self.ingest(body).await?;
        anyhow::ensure!(
            run["status"] == "succeeded",
            "the run did not succeed: {run}"
        );
        Ok(run)
    }

    /// Waits until every process has exited by itself (e.g. at a failure point).
    ///
    /// # Errors
    /// When one is still running after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut running = 0;
            for (_, child) in &mut self.children {
                if child.try_wait()?.is_none() {
                    running += 1;
                }
            }
            if running == 0 {
                self.children.clear();
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{running} process(es) still running after {timeout:?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every object of the current store of a dataset in a standalone app's local store, by
    /// path relative to the version's prefix, with its bytes.
    ///
    /// # Errors
    /// When the dataset has no single version directory.
    pub fn stored_objects(
        &self,
        dataset_id: &str,
    ) -> anyhow::Result<std::collections::BTreeMap<String, Vec<u8>>> {
        let root = self.dir.path().join("data/store/datasets").join(dataset_id);
        let versions: Vec<PathBuf> = std::fs::read_dir(&root)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        if versions.len() != 1 {
            bail!(
                "expected one version directory under {}, found {versions:?}",
                root.display()
            );
        }
        let mut out = std::collections::BTreeMap::new();
        for (rel, path) in files_under(&versions[0])? {
            out.insert(rel, std::fs::read(&path)?);
        }
        Ok(out)
    }

    /// Stops the processes (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (_, child) in &mut self.children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop();
        let db = self.pg_database.take();
        let queue = self.queue.take();
        if db.is_none() && queue.is_none() {
            return;
        }
        // Drop runs outside the test's runtime, on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Some((base, db)) = db {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&base).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await;
                    }
                }
                // Every app declares its own quorum queues; left behind, they pile up in
                // the broker run after run.
                if let Some((url, name)) = queue
                    && let Err(e) = climate_infra::queue::delete_amqp_topology(&url, &name).await
                {
                    eprintln!("deleting queue {name}: {e}");
                }
            });
        })
        .join();
    }
}

fn replace_db(url: &str, db: &str) -> String {
    match url.rsplit_once('/') {
        Some((head, _)) => format!("{head}/{db}"),
        None => url.to_owned(),
    }
}

async fn create_database(base_url: &str, db: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(base_url)
        .await
        .with_context(|| format!("connecting to {base_url} (CLIMATE_TEST_DATABASE_URL)"))?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut c)
        .await?;
    Ok(())
}

/// Runs a Python interop script with the test venv's interpreter; returns its stdout.
///
/// # Errors
/// When the script fails; the error carries its output.
pub fn python(script: &str, args: &[&str]) -> anyhow::Result<String> {
    let py = python_bin();
    let out = Command::new(&py)
        .arg(repo_root().join("tests/interop").join(script))
        .args(args)
        .output()
        .with_context(|| format!("running {py} (set up by scripts/setup-python.sh)"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{script} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// The test venv's interpreter (`$CLIMATE_TEST_PYTHON`, else `.venv/bin/python`).
fn python_bin() -> String {
    env(
        "CLIMATE_TEST_PYTHON",
        Some(&repo_root().join(".venv/bin/python").to_string_lossy()),
    )
}

/// The sizes of every file under `dir`, recursively (empty when it does not exist).
/// Asserts that `value` equals the JSON snapshot at `path` (compared as JSON, so key order and
/// layout do not matter). With `UPDATE_SNAPSHOTS=1` the snapshot is written instead; review
/// the change in the diff and commit it with the change that caused it.
///
/// # Panics
/// When they differ (the new document is written beside it as `*.new.json`), or the snapshot
/// is missing.
pub fn assert_json_snapshot(path: &Path, value: &Value) {
    let pretty = serde_json::to_string_pretty(value).expect("serialisable") + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("snapshot directory");
        }
        std::fs::write(path, pretty).expect("write the snapshot");
        return;
    }
    let stored = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "snapshot {} cannot be read ({e}): run the test with UPDATE_SNAPSHOTS=1 to create it",
            path.display()
        )
    });
    let stored: Value = serde_json::from_str(&stored).expect("the snapshot is JSON");
    if &stored != value {
        let new = path.with_extension("new.json");
        std::fs::write(&new, pretty).expect("write the new document");
        panic!(
            "{} differs from its snapshot; the new document is in {}: diff them, and if the change \
             is intended run the test with UPDATE_SNAPSHOTS=1",
            path.display(),
            new.display()
        );
    }
}

/// Asserts the error envelope: status, code, a message mentioning `mentions`, a request id.
///
/// # Panics
/// When any of them is wrong.
pub fn assert_envelope(status: u16, body: &Value, want_status: u16, code: &str, mentions: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(mentions),
        "message should mention '{mentions}': {msg}"
    );
    assert!(
        body["id"].as_str().is_some_and(|id| !id.is_empty()),
        "request id missing: {body}"
    );
}

/// Whether an error envelope's `message` contains `needle`.
pub fn says(err: &Value, needle: &str) -> bool {
    err["message"].as_str().unwrap_or_default().contains(needle)
}

/// Every file under `dir` (recursively): its path relative to `dir` (with `/`) and its path.
///
/// # Errors
/// When a directory cannot be read.
pub fn files_under(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir)?.to_string_lossy().replace('\\', "/");
                out.push((rel, path));
            }
        }
    }
    Ok(out)
}

/// The sizes of the files under `dir`, recursively (empty when it cannot be read).
pub fn file_sizes(dir: &Path) -> Vec<u64> {
    files_under(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|(_, path)| std::fs::metadata(path).ok())
        .map(|m| m.len())
        .collect()
}

/// The names in a directory, sorted (empty when it does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The test fixtures the repository keeps (`tests/fixtures`): small files with their
/// provenance in its README, the STAC schemas under `schemas/`.
pub fn fixtures_dir() -> PathBuf {
    repo_root().join("tests/fixtures")
}

/// The synthetic ERA5-Land hourly sample in the layout of a CDS download (72 hours from
/// 2024-01-01T00Z, `t2m` and accumulated `tp`).
pub fn era5_hourly_sample() -> PathBuf {
    fixtures_dir().join("era5land_hourly_2024-01-01_03_sle.nc")
}

/// The bundled WorldPop sample (population 2026, Sierra Leone, 1 km BigTIFF).
pub fn worldpop_sample() -> PathBuf {
    repo_root().join("config/samples/worldpop_sle_2026_1km.tif")
}

/// The CHIRPS-layout COG of day `day` of January 2024: the three generated files
/// (`tests/fixtures/make_chirps_cogs.py`) cycled over the days.
///
/// # Panics
/// When the files cannot be generated.
pub fn chirps_cog(day: u32) -> PathBuf {
    chirps_cogs_dir().join(format!(
        "chirps-v3.0.rnl.2024.01.{:02}.cog",
        (day - 1) % 3 + 1
    ))
}

/// The directory of the generated CHIRPS-layout COGs, generated on first use. Test processes
/// race for it: each writes into a directory of its own and renames it into place, so a reader
/// only ever sees the complete set.
///
/// # Panics
/// When the generator fails.
pub fn chirps_cogs_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target"));
        // The generator's version is in the name: a changed generator writes a new set.
        let script = fixtures_dir().join("make_chirps_cogs.py");
        let text = std::fs::read(&script).unwrap_or_else(|e| panic!("{}: {e}", script.display()));
        let digest = climate_infra::auth::sha256_hex(&[&text]);
        let dir = target.join(format!("fixtures/chirps-{}", &digest[..12]));
        if !dir.exists() {
            let tmp = target.join(format!(
                "fixtures/.chirps-{}-{}",
                std::process::id(),
                uuid::Uuid::now_v7().simple()
            ));
            let out = Command::new(python_bin())
                .arg(&script)
                .arg("--out")
                .arg(&tmp)
                .output()
                .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
            assert!(
                out.status.success(),
                "{} failed:\n{}{}",
                script.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            // Another process may have won the race: its set is as good as ours.
            if std::fs::rename(&tmp, &dir).is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            assert!(dir.exists(), "{} was not created", dir.display());
        }
        dir
    })
    .clone()
}

/// The bundled ERA5-Land sample (daily t2m, July 2025, Sierra Leone).
pub fn era5_sample() -> PathBuf {
    repo_root().join("config/samples/era5land_t2m_daily_2025-07_sle.nc")
}

/// Checks with xarray over HTTP that dataset `id` of `app` holds the ERA5 sample's `t2m` for
/// `start..=end` over the Sierra Leone extent, after `transform` (`kelvin_to_celsius` or
/// `none`). Returns the script's JSON summary.
///
/// # Errors
/// When the values, coordinates or metadata differ.
pub fn check_era5(
    app: &TestApp,
    id: &str,
    start: &str,
    end: &str,
    transform: &str,
) -> anyhow::Result<Value> {
    let out = python(
        "check_zarr.py",
        &[
            "--url",
            &app.url(&format!("/zarr/{id}")),
            "--source",
            &era5_sample().to_string_lossy(),
            "--var",
            "t2m",
            "--start",
            start,
            "--end",
            end,
            "--bbox=-13.5,6.9,-10.1,10.0",
            "--transform",
            transform,
        ],
    )?;
    Ok(serde_json::from_str(out.trim())?)
}

/// Sends a raw HTTP/1.1 GET (no client-side path normalisation) and returns the status code.
///
/// # Errors
/// Transport errors.
pub async fn raw_get_status(base: &str, path: &str) -> anyhow::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status line")?;
    Ok(code)
}

/// Runs `climate-api --config CONFIG keys ARGS…` and returns what it printed on stdout.
///
/// # Errors
/// When the command fails.
pub fn keys_command(config: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(bin("climate-api"))
        .arg("--config")
        .arg(config)
        .arg("keys")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "keys {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// Creates a key with `climate-api keys create` and returns it.
///
/// # Errors
/// When the command fails or prints no key.
pub fn create_key(config: &Path, name: &str, scopes: &str) -> anyhow::Result<String> {
    let key = keys_command(config, &["create", "--name", name, "--scopes", scopes])?
        .trim()
        .to_owned();
    anyhow::ensure!(key.starts_with("cak_"), "unexpected output '{key}'");
    Ok(key)
}
