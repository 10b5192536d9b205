//! Process-level harness for the fault tests: every service is a separate OS process (the
//! `tocsin` entry point, configured only through `TOCSIN_*` environment variables as in
//! production), each in its own process group so that a kill takes a worker's runner
//! processes with it, as a machine crash would. NATS and PostgreSQL are private to the
//! stack so that they can be killed and restarted without disturbing other tests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use tocsin_core::config::Secret;
use tocsin_devstack::{NatsServer, PgCluster, descendants};
use tocsin_stack::stack::{StackConfig, deploy_playbooks};
use tocsin_store::Store;
use tocsin_store::keys::KeyKind;
use tokio::process::{Child, Command};

use crate::{TENANT, WAIT, sdk_path};

/// Default [`ProcOptions`] with the service binary built for tests.
#[macro_export]
macro_rules! proc_options {
    () => {
        $crate::procs::ProcOptions::new(::std::path::PathBuf::from(env!(
            "CARGO_BIN_EXE_tocsin-test-service"
        )))
    };
}

/// What a [`ProcStack`] runs.
pub struct ProcOptions {
    /// The `tocsin` entry point (`tocsin-test-service`).
    pub program: PathBuf,
    /// Playbook modules: (relative path, source).
    pub playbooks: Vec<(&'static str, String)>,
    /// Worker processes to start (`worker-0`, `worker-1`, ...).
    pub workers: usize,
    /// Extra `TOCSIN_*` variables for every service (after the harness defaults).
    pub env: Vec<(String, String)>,
    /// Extra variables for one service, by name (`scheduler`, `worker-0`, ...).
    pub service_env: Vec<(String, String, String)>,
}

impl ProcOptions {
    /// One worker, no playbooks.
    pub fn new(program: PathBuf) -> Self {
        Self {
            program,
            playbooks: Vec::new(),
            workers: 1,
            env: Vec::new(),
            service_env: Vec::new(),
        }
    }

    /// Adds a playbook module.
    #[must_use]
    pub fn playbook(mut self, path: &'static str, source: impl Into<String>) -> Self {
        self.playbooks.push((path, source.into()));
        self
    }

    /// Sets the number of worker processes.
    #[must_use]
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Sets a `TOCSIN_*` variable for the service `name` only.
    #[must_use]
    pub fn service_env(mut self, name: &str, var: &str, value: &str) -> Self {
        self.service_env
            .push((name.to_owned(), var.to_owned(), value.to_owned()));
        self
    }

    /// Sets a `TOCSIN_*` variable for every service.
    #[must_use]
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
}

struct Service {
    kind: &'static str,
    child: Child,
}

/// The platform as separate processes.
pub struct ProcStack {
    /// Private nats-server (behind a lock: faults kill and restart it while load runs).
    pub nats: tokio::sync::Mutex<NatsServer>,
    /// Private PostgreSQL cluster (likewise).
    pub pg: tokio::sync::Mutex<PgCluster>,
    /// Direct database access for set-up.
    pub store: Store,
    /// `http://<ingest>`.
    pub ingest_url: String,
    /// `http://<api>`.
    pub api_url: String,
    /// Ingest key of [`TENANT`].
    pub ingest_key: String,
    /// API key of [`TENANT`].
    pub api_key: String,
    /// HTTP client.
    pub http: reqwest::Client,
    /// Working directory (logs, playbooks, bundles, NATS and PostgreSQL data).
    pub dir: tempfile::TempDir,
    program: PathBuf,
    env: Vec<(String, String)>,
    service_env: Vec<(String, String, String)>,
    services: Mutex<BTreeMap<String, Service>>,
}

impl ProcStack {
    /// Starts NATS, PostgreSQL, migrates, deploys the playbooks and starts ingest, api,
    /// scheduler and the workers; returns once ingest and the API answer.
    pub async fn start(options: ProcOptions) -> anyhow::Result<Self> {
        let _ = crate::tracing_subscriber_init();
        let dir = tempfile::tempdir()?;
        crate::make_traversable(dir.path());
        let nats_server = tocsin_devstack::find_nats_server(None)?;
        let nats = NatsServer::start(&nats_server, &dir.path().join("nats"), None).await?;
        let pg_dir = dir.path().join("pg");
        std::fs::create_dir_all(&pg_dir)?;
        crate::make_traversable(&pg_dir);
        // Durable (fsync and synchronous_commit on): with synchronous_commit off, an
        // immediate stop loses the last commits, and with them alerts already acked to NATS.
        let pg = PgCluster::start(&pg_dir, None, true).await?;
        pg.create_database("tocsin").await?;
        let database_url = pg.url("tocsin");

        let master_key = tocsin_store::secrets::MasterKey::generate_base64();
        let mut config = StackConfig::default();
        config.postgres.url = Secret::new(database_url.clone());
        config.postgres.max_connections = 3;
        config.worker.runner_program = Some(options.program.clone());
        config.worker.runner_args = vec!["runner".to_owned()];
        config.worker.sdk_path = Some(sdk_path());
        config.worker.bundle_dir = dir.path().join("bundles-deploy");
        let store = Store::connect(&config.postgres).await?;
        store.migrate().await?;
        store.ensure_tenant(TENANT, "Test tenant").await?;
        let ingest_key = store
            .create_key(TENANT, KeyKind::Ingest, "test")
            .await?
            .secret;
        let api_key = store.create_key(TENANT, KeyKind::Api, "test").await?.secret;
        let playbooks = dir.path().join("playbooks");
        std::fs::create_dir_all(&playbooks)?;
        for (path, source) in &options.playbooks {
            std::fs::write(playbooks.join(path), source)?;
        }
        if !options.playbooks.is_empty() {
            deploy_playbooks(&store, &config.worker, TENANT, &playbooks, "test").await?;
        }

        let ingest_port = tocsin_devstack::free_port()?;
        let api_port = tocsin_devstack::free_port()?;
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        let mut env: Vec<(String, String)> = [
            ("TOCSIN_NATS_URL", nats.url()),
            ("TOCSIN_DATABASE_URL", database_url),
            ("TOCSIN_POSTGRES__MAX_CONNECTIONS", "4".to_owned()),
            ("TOCSIN_NATS__PUBLISH_TIMEOUT", "2s".to_owned()),
            ("TOCSIN_SECRETS__MASTER_KEY", master_key),
            ("TOCSIN_INGEST__LISTEN", format!("127.0.0.1:{ingest_port}")),
            ("TOCSIN_API__LISTEN", format!("127.0.0.1:{api_port}")),
            ("TOCSIN_WORKER__SDK_PATH", sdk_path().display().to_string()),
            ("TOCSIN_WORKER__RUNNERS", "2".to_owned()),
            ("TOCSIN_WORKER__RUNS_PER_RUNNER", "8".to_owned()),
            ("TOCSIN_SHUTDOWN__GRACE", "5s".to_owned()),
            ("TOCSIN_TELEMETRY__FILTER", "info".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(options.env);

        let stack = Self {
            nats: tokio::sync::Mutex::new(nats),
            pg: tokio::sync::Mutex::new(pg),
            store,
            ingest_url: format!("http://127.0.0.1:{ingest_port}"),
            api_url: format!("http://127.0.0.1:{api_port}"),
            ingest_key,
            api_key,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            dir,
            program: options.program,
            env,
            service_env: options.service_env,
            services: Mutex::new(BTreeMap::new()),
        };
        stack.spawn("ingest", "ingest")?;
        stack.spawn("api", "api")?;
        stack.spawn("scheduler", "scheduler")?;
        for i in 0..options.workers {
            stack.spawn(&format!("worker-{i}"), "worker")?;
        }
        stack.wait_healthy(&stack.ingest_url).await?;
        stack.wait_healthy(&stack.api_url).await?;
        Ok(stack)
    }

    async fn wait_healthy(&self, base: &str) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Ok(r) = self.http.get(format!("{base}/healthz")).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if start.elapsed() > WAIT {
                anyhow::bail!("{base} did not become healthy; logs:\n{}", self.all_logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts service `name` running `tocsin <kind>` (or starts it again after a kill).
    pub fn spawn(&self, name: &str, kind: &'static str) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))?;
        let mut command = Command::new(&self.program);
        command
            .arg(kind)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(
                self.service_env
                    .iter()
                    .filter(|(service, _, _)| service == name)
                    .map(|(_, k, v)| (k.as_str(), v.as_str())),
            )
            .env(
                "TOCSIN_WORKER__BUNDLE_DIR",
                self.dir.path().join(format!("bundles-{name}")),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true);
        let child = command.spawn().with_context(|| format!("start {name}"))?;
        self.services
            .lock()
            .expect("services lock")
            .insert(name.to_owned(), Service { kind, child });
        Ok(())
    }

    /// The process id of `name`, while it runs.
    pub fn service_pid(&self, name: &str) -> Option<u32> {
        self.pid(name)
    }

    fn pid(&self, name: &str) -> Option<u32> {
        self.services
            .lock()
            .expect("services lock")
            .get(name)
            .and_then(|s| s.child.id())
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`, `TERM`) to `name` and every process it
    /// started (a worker's runners run in process groups of their own), as one machine
    /// crashing or stalling would.
    pub async fn signal(&self, name: &str, signal: &str) {
        let pid = self
            .pid(name)
            .unwrap_or_else(|| panic!("{name} is not running"));
        let mut targets = descendants(pid);
        targets.insert(0, pid);
        let status = Command::new("kill")
            .args(["-s", signal, "--"])
            .args(targets.iter().map(u32::to_string))
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} {targets:?} failed");
    }

    /// SIGTERM to `name` alone (as an orchestrator stopping it would; its runners get
    /// nothing from outside) and waits up to `within` for it to exit; its exit status.
    pub async fn terminate(&self, name: &str, within: Duration) -> std::process::ExitStatus {
        let pid = self
            .pid(name)
            .unwrap_or_else(|| panic!("{name} is not running"));
        let status = Command::new("kill")
            .args(["-s", "TERM", &pid.to_string()])
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -s TERM {pid} failed");
        let service = self.services.lock().expect("services lock").remove(name);
        let mut service = service.unwrap_or_else(|| panic!("{name} is not running"));
        let exit = tokio::time::timeout(within, service.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{name} did not exit within {within:?} of SIGTERM"))
            .expect("wait for the service");
        self.services
            .lock()
            .expect("services lock")
            .insert(name.to_owned(), service);
        exit
    }

    /// `kill -9` of `name` and its runners, as a crash would; waits for it to be gone.
    pub async fn kill(&self, name: &str) {
        self.signal(name, "KILL").await;
        let service = self.services.lock().expect("services lock").remove(name);
        if let Some(mut service) = service {
            let _ = service.child.wait().await;
            self.services
                .lock()
                .expect("services lock")
                .insert(name.to_owned(), service);
        }
    }

    /// Starts `name` again with the same kind (after [`ProcStack::kill`]).
    pub fn restart(&self, name: &str) -> anyhow::Result<()> {
        let kind = self
            .services
            .lock()
            .expect("services lock")
            .get(name)
            .map(|s| s.kind)
            .with_context(|| format!("unknown service {name}"))?;
        self.spawn(name, kind)
    }

    /// Path of the combined stdout/stderr log of `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{name}.log"))
    }

    /// The log of `name` so far, without terminal colour codes.
    pub fn log(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.log_path(name)).unwrap_or_default();
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // CSI sequence: ESC [ parameters final-byte.
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Every service's whole log (ANSI colours removed), one after the other.
    pub fn full_logs(&self) -> String {
        let names: Vec<String> = self
            .services
            .lock()
            .expect("services lock")
            .keys()
            .cloned()
            .collect();
        names.iter().map(|name| self.log(name)).collect()
    }

    /// The last 40 lines of every service's log, for failure messages.
    pub fn all_logs(&self) -> String {
        let names: Vec<String> = self
            .services
            .lock()
            .expect("services lock")
            .keys()
            .cloned()
            .collect();
        let mut out = String::new();
        for name in names {
            let text = self.log(&name);
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("---- {name} (last 40 lines)\n"));
            for line in &lines[lines.len().saturating_sub(40)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Posts one alert; `Ok(ids)` on 202, `Err(status or error)` otherwise.
    pub async fn post_alert(&self, body: &Value) -> Result<Vec<String>, String> {
        let response = self
            .http
            .post(format!("{}/v1/alerts", self.ingest_url))
            .bearer_auth(&self.ingest_key)
            .timeout(Duration::from_secs(10))
            .json(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        if status != 202 {
            return Err(format!("status {status}"));
        }
        let value: Value = response.json().await.map_err(|e| e.to_string())?;
        Ok(value["alert_ids"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// GETs an API path; `None` on 404 or while the API cannot answer.
    pub async fn api(&self, path: &str) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.api_url))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// Stops every service with SIGTERM (SIGKILL after 15 s), then NATS and PostgreSQL.
    pub async fn stop(self) {
        let services: Vec<(String, Service)> =
            std::mem::take(&mut *self.services.lock().expect("services lock"))
                .into_iter()
                .collect();
        for (_, mut service) in services {
            if let Some(pid) = service.child.id() {
                let _ = Command::new("kill")
                    .args(["-s", "TERM", "--", &format!("-{pid}")])
                    .status()
                    .await;
                if tokio::time::timeout(Duration::from_secs(15), service.child.wait())
                    .await
                    .is_err()
                {
                    let _ = service.child.kill().await;
                }
            }
        }
        self.nats.lock().await.stop().await;
        self.pg.lock().await.stop().await;
    }
}
