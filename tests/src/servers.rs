//! Private servers for the tests that restart a backend: a PostgreSQL cluster and a RabbitMQ node
//! of their own, in a temporary directory on free ports, run from the machine's installed server
//! binaries. [`Postgres::stop`] and [`RabbitMq::stop`] are real shutdowns, the way an operator's
//! restart does them: the process exits, every client connection is closed by the server, and
//! whatever the server held only in memory is gone. `start` reopens the same data directory, so
//! what the server kept on disk (databases, durable queues and their persistent messages) comes
//! back. The shared services the other tests use are never touched.
//!
//! Both run as children of the test under `setpriv --pdeathsig KILL`, like the processes under
//! test, and are stopped on drop. As root, PostgreSQL runs as the `postgres` user (it refuses
//! root). `CLIMATE_TEST_PG_BINDIR` and `CLIMATE_TEST_RABBITMQ_BINDIR` point elsewhere than
//! Debian's `/usr/lib/postgresql/<newest>/bin` and `/usr/lib/rabbitmq/bin`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::free_port;

/// How long a server may take to start or stop.
const PATIENCE: Duration = Duration::from_secs(60);

/// A PostgreSQL cluster of the test's own (trust authentication, user `postgres`).
#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Runs the server as `postgres` when the tests run as root.
    as_postgres: bool,
    child: Option<Child>,
}

impl Postgres {
    /// Creates a cluster with `initdb` and starts it.
    ///
    /// # Errors
    /// When the binaries are missing or the server does not accept connections in time.
    pub async fn start() -> anyhow::Result<Self> {
        let bin = match std::env::var("CLIMATE_TEST_PG_BINDIR") {
            Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => newest_postgres_bindir()?,
        };
        let dir = tempfile::tempdir()?;
        let as_postgres = is_root()?;
        if as_postgres {
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path()))?;
        }
        let mut server = Self {
            dir,
            bin,
            port: free_port(),
            as_postgres,
            child: None,
        };
        let mut initdb = server.command("initdb");
        initdb
            .arg("--pgdata")
            .arg(server.data())
            .args(["--auth=trust", "--username=postgres", "--encoding=UTF8"])
            .arg("--no-sync");
        run(&mut initdb)?;
        server.start_again().await?;
        Ok(server)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Fast shutdown (what `pg_ctl restart` does first): sessions are terminated, open
    /// transactions roll back, the process exits.
    ///
    /// # Errors
    /// When the server does not exit in time.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        shut_down(&mut self.child, "INT", "postgres").await
    }

    /// Starts the server again on the same data directory and port.
    ///
    /// # Errors
    /// When the server does not accept connections in time.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = self.dir.path().join("postgres.log");
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(self.data())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "max_connections=200"]);
        self.child = Some(spawn(cmd, &log, "postgres")?);
        let url = self.url();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            use sqlx::Connection;
            match sqlx::PgConnection::connect(&url).await {
                Ok(c) => {
                    let _ = c.close().await;
                    return Ok(());
                }
                Err(e) if tokio::time::Instant::now() > deadline => {
                    bail!("postgres on {url} not ready: {e}\n{}", tail(&log));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command for one of the server's binaries, as `postgres` when the tests run as root.
    fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new("setpriv");
        if self.as_postgres {
            cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]);
        }
        cmd.args(["--pdeathsig", "KILL", "--"])
            .arg(self.bin.join(name))
            .current_dir(self.dir.path());
        cmd
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = signal(child, "QUIT");
            stop_child(child);
        }
    }
}

/// A RabbitMQ node of the test's own (user `guest`, default vhost, no plugins).
#[derive(Debug)]
pub struct RabbitMq {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    node: String,
    dist_port: u16,
    child: Option<Child>,
}

impl RabbitMq {
    /// Starts a fresh node.
    ///
    /// # Errors
    /// When the binaries are missing or the node does not listen in time.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with("").await
    }

    /// Starts a fresh node with extra `rabbitmq.conf` lines (e.g. `consumer_timeout = 2000`).
    /// Channels check their consumers' delivery timeouts every second (the default is every
    /// minute), so a timeout takes effect promptly.
    ///
    /// # Errors
    /// When the binaries are missing or the node does not listen in time.
    pub async fn start_with(conf: &str) -> anyhow::Result<Self> {
        let bin = match std::env::var("CLIMATE_TEST_RABBITMQ_BINDIR") {
            Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => PathBuf::from("/usr/lib/rabbitmq/bin"),
        };
        anyhow::ensure!(
            bin.join("rabbitmq-server").is_file(),
            "no rabbitmq-server in {} (set CLIMATE_TEST_RABBITMQ_BINDIR)",
            bin.display()
        );
        let dir = tempfile::tempdir()?;
        let port = free_port();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n")?;
        std::fs::write(
            dir.path().join("rabbitmq.conf"),
            format!("listeners.tcp.default = {port}\n{conf}\n"),
        )?;
        std::fs::write(
            dir.path().join("advanced.config"),
            "[{rabbit, [{channel_tick_interval, 1000}]}].\n",
        )?;
        let mut server = Self {
            dir,
            bin,
            port,
            node: format!("climate-test-{}@localhost", uuid::Uuid::now_v7().simple()),
            dist_port: free_port(),
            child: None,
        };
        server.start_again().await?;
        Ok(server)
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Graceful node shutdown (SIGTERM to `rabbitmq-server`, which runs `rabbitmqctl stop`):
    /// connections are closed by the broker, unacknowledged deliveries return to their queues,
    /// the node exits.
    ///
    /// # Errors
    /// When the node does not exit in time.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        shut_down(&mut self.child, "TERM", "rabbitmq-server").await
    }

    /// Starts the node again on the same data directory and port.
    ///
    /// # Errors
    /// When the node does not listen in time.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let d = self.dir.path();
        let log = d.join("rabbitmq.log");
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--"])
            .arg(self.bin.join("rabbitmq-server"))
            .current_dir(d)
            // The node's Erlang cookie lives in HOME; `rabbitmqctl stop` finds it there too.
            .env("HOME", d)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_PID_FILE", d.join("rabbitmq.pid"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"));
        let mut child = spawn(cmd, &log, "rabbitmq-server")?;
        // The listener opens once the node has booted and recovered its queues.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                self.child = Some(child);
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                bail!("rabbitmq-server exited with {status}\n{}", tail(&log));
            }
            if tokio::time::Instant::now() > deadline {
                signal(&child, "TERM")?;
                stop_child(&mut child);
                bail!(
                    "rabbitmq-server not listening after {PATIENCE:?}\n{}",
                    tail(&log)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = signal(child, "TERM");
            stop_child(child);
        }
    }
}

fn newest_postgres_bindir() -> anyhow::Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .with_context(|| format!("reading {} (set CLIMATE_TEST_PG_BINDIR)", root.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
        .max_by_key(|(version, _)| *version)
        .map(|(_, path)| path.join("bin"));
    newest
        .filter(|bin| bin.join("postgres").is_file())
        .with_context(|| format!("no PostgreSQL server under {}", root.display()))
}

fn is_root() -> anyhow::Result<bool> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .context("running id -u")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Runs a command to completion; an error carries its output.
fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn spawn(mut cmd: Command, log: &Path, what: &str) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("spawning {what}"))
}

fn signal(child: &Child, signal: &str) -> anyhow::Result<()> {
    run(Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string()))
}

/// Signals a server's process and waits for it to exit; nothing to do when it is not running.
async fn shut_down(child: &mut Option<Child>, sig: &str, what: &str) -> anyhow::Result<()> {
    if let Some(running) = child.as_mut() {
        signal(running, sig)?;
        wait_exit(running, what).await?;
    }
    *child = None;
    Ok(())
}

async fn wait_exit(child: &mut Child, what: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while child.try_wait()?.is_none() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{what} still running {PATIENCE:?} after it was told to stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Waits (blocking, for `Drop`) up to 20 s for a signalled child, then kills it.
fn stop_child(child: &mut Child) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The last lines of a server's log, for an error message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
