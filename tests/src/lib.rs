//! Test harness: the whole platform in-process against a private nats-server (one per test)
//! and a private PostgreSQL cluster (one per test process, a fresh database per test), the
//! same way `tocsin dev` starts them. Nothing is mocked.
#![forbid(unsafe_code)]
// A test harness: failing loudly is its job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod procs;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use tocsin_core::Shutdown;
use tocsin_core::config::Secret;
use tocsin_devstack::{NatsServer, PgCluster};
use tocsin_stack::stack::{Stack, StackConfig, deploy_playbooks};
use tocsin_store::Store;
use tocsin_store::keys::KeyKind;

/// Tenant every test stack creates.
pub const TENANT: &str = "default";

/// How long any wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(60);

struct SharedPg {
    cluster: PgCluster,
}

/// The per-process PostgreSQL cluster, started on first use outside any test's runtime (the
/// child outlives individual tests and dies with the process: its supervisor watches our
/// pipe).
fn shared_pg() -> &'static SharedPg {
    static PG: OnceLock<SharedPg> = OnceLock::new();
    PG.get_or_init(|| {
        std::thread::spawn(|| {
            let root = std::env::temp_dir().join("tocsin-test-pg");
            remove_stale_clusters(&root);
            let dir = root.join(std::process::id().to_string());
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create test cluster dir");
            // PostgreSQL runs as the postgres user when we are root: it must reach the dir.
            make_traversable(&dir);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let cluster = runtime
                .block_on(PgCluster::start(&dir, None, false))
                .expect("start the test PostgreSQL cluster (run deploy/bootstrap.sh)");
            SharedPg { cluster }
        })
        .join()
        .expect("postgres starter thread")
    })
}

fn make_traversable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut current = Some(dir);
    while let Some(d) = current {
        if d == Path::new("/") {
            break;
        }
        if let Ok(meta) = std::fs::metadata(d) {
            let mode = meta.permissions().mode();
            if mode & 0o005 != 0o005 {
                let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o755));
            }
        }
        current = d.parent();
    }
}

/// Removes cluster directories of test processes that no longer run.
fn remove_stale_clusters(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Default [`Options`] with the runner binary built for tests. A macro because only
/// integration tests (not this library) see `CARGO_BIN_EXE_*`.
#[macro_export]
macro_rules! options {
    () => {
        $crate::Options::new(::std::path::PathBuf::from(env!(
            "CARGO_BIN_EXE_tocsin-test-runner"
        )))
    };
}

/// A fresh, migrated database in the per-process test cluster, with the [`TENANT`] tenant
/// (for tests of the store's state machines without the services).
pub async fn fresh_store() -> anyhow::Result<Store> {
    let pg = &shared_pg().cluster;
    let database = format!("t_{}", uuid::Uuid::new_v4().simple());
    pg.create_database(&database).await?;
    let config = tocsin_core::config::PostgresConfig {
        url: Secret::new(pg.url(&database)),
        max_connections: 4,
        ..Default::default()
    };
    let store = Store::connect(&config).await?;
    store.migrate().await?;
    store.ensure_tenant(TENANT, "Test tenant").await?;
    Ok(store)
}

/// Saves and deploys, for [`TENANT`], a bundle `b` holding one playbook `manual` with a
/// manual trigger (for store tests that need a run to exist).
pub async fn deploy_manual_playbook(store: &Store) -> anyhow::Result<()> {
    let meta = tocsin_store::bundles::PlaybookMeta {
        name: "manual".to_owned(),
        module: "m".to_owned(),
        function: "manual".to_owned(),
        trigger: "manual".to_owned(),
        when: None,
        priority: "normal".to_owned(),
        timeout_ms: 60_000,
        file: "m.py".to_owned(),
        line: 1,
        enabled: true,
        tenants: Value::String("*".to_owned()),
    };
    let files = std::collections::BTreeMap::from([("m.py".to_owned(), "# m\n".to_owned())]);
    store.save_bundle(TENANT, "b", &files, &[meta]).await?;
    store.deploy_bundle(TENANT, "b", "test").await?;
    Ok(())
}

/// Path of the SDK checkout.
pub fn sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks/sdk")
}

/// Options for a test stack; build with [`options!`].
pub struct Options {
    /// The runner program (`tocsin-test-runner`).
    pub runner: PathBuf,
    /// Playbook modules: (relative path, source).
    pub playbooks: Vec<(&'static str, String)>,
    /// Adjusts the stack config before start.
    pub configure: Box<dyn FnOnce(&mut StackConfig) + Send>,
    /// Secrets of [`TENANT`] (name, value).
    pub secrets: Vec<(String, String)>,
}

impl Options {
    /// Options running `runner` as the runner program, with no playbooks.
    pub fn new(runner: PathBuf) -> Self {
        Self {
            runner,
            playbooks: Vec::new(),
            configure: Box::new(|_| {}),
            secrets: Vec::new(),
        }
    }

    /// Adds a secret of [`TENANT`].
    #[must_use]
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.secrets.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds a playbook module.
    #[must_use]
    pub fn playbook(mut self, path: &'static str, source: impl Into<String>) -> Self {
        self.playbooks.push((path, source.into()));
        self
    }

    /// Adjusts the stack configuration.
    #[must_use]
    pub fn configure(mut self, f: impl FnOnce(&mut StackConfig) + Send + 'static) -> Self {
        self.configure = Box::new(f);
        self
    }
}

/// A running platform for one test.
pub struct TestStack {
    /// The services.
    pub stack: Option<Stack>,
    /// Private nats-server.
    pub nats: NatsServer,
    /// Direct database access for assertions.
    pub store: Store,
    /// URL of the test's database (connecting as the cluster's superuser, the tables' owner).
    pub database_url: String,
    /// The stack's configuration (worker settings for deploying more bundles).
    pub config: StackConfig,
    /// `http://<ingest>`.
    pub ingest_url: String,
    /// `http://<api>`.
    pub api_url: String,
    /// Ingest key of [`TENANT`].
    pub ingest_key: String,
    /// API key of [`TENANT`].
    pub api_key: String,
    /// Working directory of the test (playbooks, bundles, markers).
    pub dir: tempfile::TempDir,
    /// HTTP client.
    pub http: reqwest::Client,
    shutdown: Shutdown,
}

impl TestStack {
    /// Starts NATS, a fresh database, deploys `options.playbooks`, and the four services.
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        let _ = tracing_subscriber_init();
        let dir = tempfile::tempdir()?;
        let nats_server = tocsin_devstack::find_nats_server(None)?;
        let nats = NatsServer::start(&nats_server, &dir.path().join("nats"), None).await?;
        let pg = &shared_pg().cluster;
        let database = format!("t_{}", uuid::Uuid::new_v4().simple());
        pg.create_database(&database).await?;

        let mut config = StackConfig::default();
        config.nats.url = nats.url();
        config.nats.publish_timeout = Duration::from_secs(2);
        config.nats.connect_timeout = Duration::from_secs(5);
        config.postgres.url = Secret::new(pg.url(&database));
        config.postgres.max_connections = 5;
        config.ingest.listen = "127.0.0.1:0".parse()?;
        config.api.listen = "127.0.0.1:0".parse()?;
        config.worker.runner_program = Some(options.runner.clone());
        config.worker.runner_args = Vec::new();
        config.worker.sdk_path = Some(sdk_path());
        config.worker.bundle_dir = dir.path().join("bundles");
        config.worker.runners = 2;
        config.worker.runs_per_runner = 8;
        config.shutdown.grace = Duration::from_secs(10);
        config.secrets.master_key = Some(Secret::new(
            tocsin_store::secrets::MasterKey::generate_base64(),
        ));
        (options.configure)(&mut config);

        let store = Store::connect(&config.postgres).await?;
        store.migrate().await?;
        store.ensure_tenant(TENANT, "Test tenant").await?;
        if let Some(key) = &config.secrets.master_key {
            let key = tocsin_store::secrets::MasterKey::from_base64(key.expose())?;
            for (name, value) in &options.secrets {
                store.set_secret(&key, TENANT, name, value).await?;
            }
        }
        let ingest_key = store
            .create_key(TENANT, KeyKind::Ingest, "test")
            .await?
            .secret;
        let api_key = store.create_key(TENANT, KeyKind::Api, "test").await?.secret;

        let playbooks = dir.path().join("playbooks");
        std::fs::create_dir_all(&playbooks)?;
        for (path, source) in &options.playbooks {
            let file = playbooks.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(file, source)?;
        }
        if !options.playbooks.is_empty() {
            deploy_playbooks(&store, &config.worker, TENANT, &playbooks, "test").await?;
        }

        let shutdown = Shutdown::new();
        let stack = Stack::start(&config, &shutdown).await?;
        Ok(Self {
            database_url: config.postgres.url.expose().to_owned(),
            config: config.clone(),
            ingest_url: format!("http://{}", stack.ingest_addr),
            api_url: format!("http://{}", stack.api_addr),
            stack: Some(stack),
            nats,
            store,
            ingest_key,
            api_key,
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            shutdown,
        })
    }

    /// Posts a body to `/v1/alerts` with the ingest key.
    pub async fn post_alerts(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/alerts", self.ingest_url))
            .bearer_auth(&self.ingest_key)
            .body(body)
            .send()
            .await
            .expect("ingest reachable")
    }

    /// Posts and expects 202; returns the alert ids.
    pub async fn accept(&self, body: impl Into<reqwest::Body>) -> Vec<String> {
        let response = self.post_alerts(body).await;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, 202, "ingest answered {status}: {text}");
        let value: Value = serde_json::from_str(&text).expect("json answer");
        value["alert_ids"]
            .as_array()
            .expect("alert_ids")
            .iter()
            .map(|v| v.as_str().expect("id").to_owned())
            .collect()
    }

    /// GETs an API path with the API key; `None` on 404.
    pub async fn api(&self, path: &str) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.api_url))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .expect("api reachable");
        if response.status() == 404 {
            return None;
        }
        assert!(
            response.status().is_success(),
            "api {path}: {}",
            response.status()
        );
        Some(response.json().await.expect("json"))
    }

    /// Calls the API with `key` (and `X-Tocsin-Tenant` for operator keys); returns the status
    /// and the body (JSON, or the text as a JSON string).
    pub async fn call_as(
        &self,
        key: &str,
        tenant: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api_url))
            .bearer_auth(key);
        if let Some(tenant) = tenant {
            request = request.header("X-Tocsin-Tenant", tenant);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("api reachable");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Polls `GET path` until `done` holds (or fails the test after [`WAIT`]).
    pub async fn wait_for(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(value) = self.api(path).await {
                if done(&value) {
                    return value;
                }
                if start.elapsed() > WAIT {
                    panic!("timed out waiting on {path}; last: {value:#}");
                }
            } else if start.elapsed() > WAIT {
                panic!("timed out waiting on {path}: not found");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the alert exists and all its runs are final; returns the alert.
    pub async fn wait_settled(&self, alert_id: &str) -> Value {
        self.wait_for(&format!("/v1/alerts/{alert_id}"), |a| {
            a["runs"].as_array().is_some_and(|runs| {
                runs.iter()
                    .all(|r| !matches!(r["status"].as_str(), Some("queued" | "running")))
            })
        })
        .await
    }

    /// Waits until the alert's run of `playbook` is final; returns the run.
    pub async fn wait_run(&self, alert_id: &str, playbook: &str) -> Value {
        let alert = self
            .wait_for(&format!("/v1/alerts/{alert_id}"), |a| {
                a["runs"].as_array().is_some_and(|runs| {
                    runs.iter().any(|r| {
                        r["playbook"] == playbook
                            && !matches!(r["status"].as_str(), Some("queued" | "running"))
                    })
                })
            })
            .await;
        let run_id = alert["runs"]
            .as_array()
            .and_then(|runs| runs.iter().find(|r| r["playbook"] == playbook))
            .and_then(|r| r["id"].as_str())
            .expect("run id")
            .to_owned();
        self.api(&format!("/v1/runs/{run_id}")).await.expect("run")
    }

    /// Stops the services and NATS.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(stack) = self.stack.take() {
            stack.stop().await.context("stack failed")?;
        }
        self.store.close().await;
        self.nats.stop().await;
        Ok(())
    }
}

fn tracing_subscriber_init() -> Option<()> {
    let config = tocsin_core::config::TelemetryConfig {
        filter: std::env::var("TOCSIN_TEST_LOG").unwrap_or_else(|_| "warn".to_owned()),
        ..Default::default()
    };
    let _guard = tocsin_core::telemetry::init(&config, "tests");
    Some(())
}
