//! `tocsin dev`: the whole platform on one machine. Uses `TOCSIN_NATS_URL` /
//! `TOCSIN_DATABASE_URL` when set; otherwise starts a private nats-server and PostgreSQL
//! cluster under the data dir, migrates, creates the `default` tenant and dev keys, deploys
//! the playbooks, serves ingest and API, and writes `<data-dir>/dev.env` once ready.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tocsin_core::Shutdown;
use tocsin_devstack::{NatsServer, PgCluster};
use tocsin_store::Store;
use tocsin_store::keys::KeyKind;

use crate::stack::{Stack, StackConfig, deploy_playbooks};

/// Options of `tocsin dev` (and `tocsin demo`).
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// State directory.
    pub data_dir: PathBuf,
    /// Playbooks to deploy.
    pub playbooks: PathBuf,
    /// Ingest listen address.
    pub ingest_addr: SocketAddr,
    /// API listen address.
    pub api_addr: SocketAddr,
    /// Run the worker in this process too (false: runs wait for worker processes started
    /// separately, as in the `scale-out` benchmark).
    pub worker: bool,
    /// Further settings for the private PostgreSQL (`name=value`); ignored when
    /// `TOCSIN_DATABASE_URL` points at another server.
    pub postgres_settings: Vec<String>,
}

/// The tenant `tocsin dev` creates.
pub const DEV_TENANT: &str = "default";

/// The keys and endpoints written to `dev.env`.
#[derive(Debug, Clone)]
pub struct DevEnv {
    /// `http://<ingest>`.
    pub ingest_url: String,
    /// `http://<api>`.
    pub api_url: String,
    /// Ingest key of the default tenant.
    pub ingest_key: String,
    /// API key of the default tenant.
    pub api_key: String,
    /// NATS URL.
    pub nats_url: String,
    /// Database URL.
    pub database_url: String,
    /// Secrets master key (so `tocsin secret set` works from another shell).
    pub master_key: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedState {
    nats_port: Option<u16>,
    pg_port: Option<u16>,
    ingest_key: Option<String>,
    api_key: Option<String>,
    master_key: Option<String>,
}

/// A running dev environment.
#[derive(Debug)]
pub struct Dev {
    /// The configuration the services run with (private servers' URLs, master key, SDK and
    /// bundle paths filled in).
    pub config: StackConfig,
    /// What the redeploy watcher needs: the store config, worker settings, the directory
    /// and the hash currently live.
    pub watch: WatchState,
    /// The services.
    pub stack: Stack,
    /// Endpoints and keys.
    pub env: DevEnv,
    nats: Option<NatsServer>,
    pg: Option<PgCluster>,
    pid_file: PathBuf,
    env_file: PathBuf,
}

fn secret_file(path: &Path, content: &str) -> anyhow::Result<()> {
    std::fs::write(path, content).with_context(|| format!("failed to write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("failed to restrict {}", path.display()))
}

fn claim_data_dir(data_dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("failed to create {}", data_dir.display()))?;
    let pid_file = data_dir.join("tocsin.pid");
    if let Ok(text) = std::fs::read_to_string(&pid_file) {
        let pid = text.trim();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if pid != std::process::id().to_string()
            && String::from_utf8_lossy(&cmdline).contains("tocsin")
        {
            bail!(
                "another tocsin (pid {pid}) is using {}; stop it or choose another --data-dir",
                data_dir.display()
            );
        }
        tracing::info!(%pid, "removing stale pid file");
    }
    std::fs::write(&pid_file, std::process::id().to_string())
        .with_context(|| format!("failed to write {}", pid_file.display()))?;
    // A dev.env left by a crashed run points at dead endpoints; it reappears when ready.
    let _ = std::fs::remove_file(data_dir.join("dev.env"));
    Ok(pid_file)
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

impl Dev {
    /// Starts everything; returns once the stack accepts alerts and `dev.env` is written.
    pub async fn start(
        mut config: StackConfig,
        options: &DevOptions,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Self> {
        let data_dir = std::path::absolute(&options.data_dir)
            .with_context(|| format!("invalid data dir {}", options.data_dir.display()))?;
        let pid_file = claim_data_dir(&data_dir)?;
        let state_file = data_dir.join("state.json");
        let mut saved: SavedState = std::fs::read(&state_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();

        let nats = match std::env::var("TOCSIN_NATS_URL") {
            Ok(url) => {
                config.nats.url = url;
                None
            }
            Err(_) => {
                let binary = tocsin_devstack::find_nats_server(
                    std::env::var_os("TOCSIN_NATS_SERVER")
                        .map(PathBuf::from)
                        .as_deref(),
                )?;
                let port = saved.nats_port.filter(|p| port_free(*p));
                let server = NatsServer::start(&binary, &data_dir.join("nats"), port)
                    .await
                    .context("failed to start nats-server")?;
                tracing::info!(url = %server.url(), binary = %binary.display(), "private nats-server started");
                config.nats.url = server.url();
                saved.nats_port = Some(server.port());
                Some(server)
            }
        };
        let pg = match std::env::var("TOCSIN_DATABASE_URL") {
            Ok(url) => {
                config.postgres.url = tocsin_core::config::Secret::new(url);
                None
            }
            Err(_) => {
                let port = saved.pg_port.filter(|p| port_free(*p));
                let cluster = PgCluster::start_with_settings(
                    &data_dir.join("postgres"),
                    port,
                    true,
                    &options.postgres_settings,
                )
                .await
                .context("failed to start postgres")?;
                cluster.create_database("tocsin").await?;
                tracing::info!(port = cluster.port(), "private postgres started");
                config.postgres.url = tocsin_core::config::Secret::new(cluster.url("tocsin"));
                saved.pg_port = Some(cluster.port());
                Some(cluster)
            }
        };

        let store = Store::connect(&config.postgres)
            .await
            .context("failed to connect to postgres")?;
        store
            .migrate()
            .await
            .context("failed to migrate the database")?;
        store.ensure_tenant(DEV_TENANT, "Default tenant").await?;
        let ingest_key =
            reuse_or_create_key(&store, KeyKind::Ingest, saved.ingest_key.take()).await?;
        let api_key = reuse_or_create_key(&store, KeyKind::Api, saved.api_key.take()).await?;
        saved.ingest_key = Some(ingest_key.clone());
        saved.api_key = Some(api_key.clone());
        if config.secrets.master_key.is_none() {
            let key = saved
                .master_key
                .get_or_insert_with(tocsin_store::secrets::MasterKey::generate_base64)
                .clone();
            config.secrets.master_key = Some(tocsin_core::config::Secret::new(key));
        }
        secret_file(&state_file, &serde_json::to_string_pretty(&saved)?)?;

        if config.worker.sdk_path.is_none() {
            let sdk = options.playbooks.join("sdk");
            if sdk.join("tocsin").is_dir() {
                config.worker.sdk_path = Some(std::path::absolute(&sdk)?);
            }
        }
        config.worker.bundle_dir = data_dir.join("bundles");
        let deployed = deploy_playbooks(
            &store,
            &config.worker,
            DEV_TENANT,
            &options.playbooks,
            "tocsin dev",
        )
        .await?;
        tracing::info!(hash = %deployed.hash, playbooks = deployed.playbooks.len(), "playbooks deployed");
        store.close().await;
        let watch = WatchState {
            config: config.clone(),
            playbooks: options.playbooks.clone(),
            live_hash: deployed.hash.clone(),
        };

        config.ingest.listen = options.ingest_addr;
        config.api.listen = options.api_addr;
        let stack = Stack::start_with(&config, shutdown, options.worker).await?;
        let env = DevEnv {
            ingest_url: format!("http://{}", stack.ingest_addr),
            api_url: format!("http://{}", stack.api_addr),
            ingest_key,
            api_key,
            nats_url: config.nats.url.clone(),
            database_url: config.postgres.url.expose().to_owned(),
            master_key: config
                .secrets
                .master_key
                .as_ref()
                .map(|k| k.expose().to_owned())
                .unwrap_or_default(),
        };
        let env_file = data_dir.join("dev.env");
        secret_file(&env_file, &render_env(&env))?;
        Ok(Self {
            config,
            watch,
            stack,
            env,
            nats,
            pg,
            pid_file,
            env_file,
        })
    }

    /// Stops the services, then the private servers; removes `dev.env` and the pid file.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(&self.env_file);
        let result = self.stack.stop().await;
        if let Some(nats) = self.nats.as_mut() {
            nats.stop().await;
        }
        if let Some(pg) = self.pg.as_mut() {
            pg.stop().await;
        }
        let _ = std::fs::remove_file(&self.pid_file);
        result
    }
}

async fn reuse_or_create_key(
    store: &Store,
    kind: KeyKind,
    saved: Option<String>,
) -> anyhow::Result<String> {
    if let Some(key) = saved
        && store.resolve_key(kind, &key).await?.as_deref() == Some(DEV_TENANT)
    {
        return Ok(key);
    }
    Ok(store
        .create_key(DEV_TENANT, kind, &format!("dev {} key", kind.as_str()))
        .await?
        .secret)
}

fn render_env(env: &DevEnv) -> String {
    format!(
        "# Written by `tocsin dev` while it runs; source it to talk to the stack.\n\
         export TOCSIN_INGEST_URL='{}'\n\
         export TOCSIN_API_URL='{}'\n\
         export TOCSIN_INGEST_KEY='{}'\n\
         export TOCSIN_API_KEY='{}'\n\
         export TOCSIN_NATS_URL='{}'\n\
         export TOCSIN_DATABASE_URL='{}'\n\
         export TOCSIN_SECRETS__MASTER_KEY='{}'\n",
        env.ingest_url,
        env.api_url,
        env.ingest_key,
        env.api_key,
        env.nats_url,
        env.database_url,
        env.master_key
    )
}

/// State of the playbook watcher of `tocsin dev`.
#[derive(Debug, Clone)]
pub struct WatchState {
    config: StackConfig,
    playbooks: PathBuf,
    live_hash: String,
}

/// Redeploys the playbook directory whenever its bundle content changes (checked every
/// second). A bundle that fails to load is reported with file and line and the previous
/// one stays live.
pub async fn watch_playbooks(mut state: WatchState, shutdown: Shutdown) {
    let mut reported_failure: Option<String> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        let dir = state.playbooks.clone();
        let files =
            tokio::task::spawn_blocking(move || tocsin_worker::deploy::collect_files(&dir)).await;
        let hash = match files {
            Ok(Ok(files)) => tocsin_store::bundles::content_hash(&files),
            // A half-saved tree (or an editor's temp files) settles on the next tick.
            _ => continue,
        };
        if hash == state.live_hash || reported_failure.as_deref() == Some(hash.as_str()) {
            continue;
        }
        let result = async {
            let store = Store::connect(&state.config.postgres).await?;
            let deployed = deploy_playbooks(
                &store,
                &state.config.worker,
                DEV_TENANT,
                &state.playbooks,
                "tocsin dev (file change)",
            )
            .await;
            store.close().await;
            deployed
        }
        .await;
        match result {
            Ok(deployed) => {
                println!(
                    "playbooks redeployed: bundle {} ({} playbooks)",
                    &deployed.hash[..12],
                    deployed.playbooks.len()
                );
                state.live_hash = deployed.hash;
                reported_failure = None;
            }
            Err(error) => {
                eprintln!("playbooks not redeployed (the previous bundle stays live): {error:#}");
                reported_failure = Some(hash);
            }
        }
    }
}
