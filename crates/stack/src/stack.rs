//! All four services in one process, against given NATS and Postgres URLs: what `tocsin dev`
//! serves, and what the end-to-end tests and benchmarks start.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tocsin_core::Shutdown;
use tocsin_core::config::{
    NatsConfig, PostgresConfig, SecretsConfig, ShutdownConfig, TelemetryConfig, Validate,
};
use tokio::task::JoinHandle;

/// Configuration of the whole platform in one process: every service section plus the
/// shared ones. Loaded like any service config (defaults → `--config` file →
/// `TOCSIN_<SECTION>__<FIELD>`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StackConfig {
    /// Ingest settings.
    pub ingest: tocsin_ingest::config::IngestSection,
    /// Scheduler settings.
    pub scheduler: tocsin_scheduler::config::SchedulerSection,
    /// Worker settings.
    pub worker: tocsin_worker::WorkerSection,
    /// API settings.
    pub api: tocsin_api::ApiSection,
    /// NATS.
    pub nats: NatsConfig,
    /// PostgreSQL.
    pub postgres: PostgresConfig,
    /// Secret storage.
    pub secrets: SecretsConfig,
    /// Logging.
    pub telemetry: TelemetryConfig,
    /// Draining.
    pub shutdown: ShutdownConfig,
}

impl StackConfig {
    fn ingest(&self) -> tocsin_ingest::Config {
        tocsin_ingest::Config {
            ingest: self.ingest.clone(),
            nats: self.nats.clone(),
            postgres: PostgresConfig {
                max_connections: 4,
                ..self.postgres.clone()
            },
            secrets: self.secrets.clone(),
            telemetry: self.telemetry.clone(),
            shutdown: self.shutdown.clone(),
        }
    }

    fn scheduler(&self) -> tocsin_scheduler::Config {
        tocsin_scheduler::Config {
            scheduler: self.scheduler.clone(),
            nats: self.nats.clone(),
            postgres: self.postgres.clone(),
            telemetry: self.telemetry.clone(),
            shutdown: self.shutdown.clone(),
        }
    }

    /// The configuration of this stack's worker, also what a worker process started
    /// separately against the same stack runs with (`tocsin worker --config`).
    pub fn worker(&self) -> tocsin_worker::Config {
        tocsin_worker::Config {
            worker: self.worker.clone(),
            nats: self.nats.clone(),
            postgres: self.postgres.clone(),
            secrets: self.secrets.clone(),
            telemetry: self.telemetry.clone(),
            shutdown: self.shutdown.clone(),
        }
    }

    fn api(&self) -> tocsin_api::Config {
        tocsin_api::Config {
            api: self.api.clone(),
            postgres: PostgresConfig {
                max_connections: 4,
                ..self.postgres.clone()
            },
            secrets: self.secrets.clone(),
            telemetry: self.telemetry.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}

impl Validate for StackConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        self.ingest().validate(problems);
        self.scheduler().validate(problems);
        self.worker().validate(problems);
        self.api().validate(problems);
        problems.sort();
        problems.dedup();
    }
}

/// The running services.
#[derive(Debug)]
pub struct Stack {
    /// Where ingest listens.
    pub ingest_addr: SocketAddr,
    /// Where the API listens.
    pub api_addr: SocketAddr,
    shutdown: Shutdown,
    services: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

impl Stack {
    /// Starts ingest, scheduler, worker and API in this process. Returns once ingest and the
    /// API listen and the worker's runners are up.
    pub async fn start(config: &StackConfig, shutdown: &Shutdown) -> anyhow::Result<Self> {
        Self::start_with(config, shutdown, true).await
    }

    /// Like [`Stack::start`]; without the worker when `worker` is false (runs then wait for
    /// worker processes started separately, as in the `scale-out` benchmark).
    pub async fn start_with(
        config: &StackConfig,
        shutdown: &Shutdown,
        worker: bool,
    ) -> anyhow::Result<Self> {
        let shutdown = shutdown.child();
        let ingest = tocsin_ingest::Server::bind(config.ingest())
            .await
            .context("failed to start ingest")?;
        let api = tocsin_api::Server::bind(&config.api())
            .await
            .context("failed to start api")?;
        let ingest_addr = ingest.local_addr().unwrap_or(config.ingest.listen);
        let api_addr = api.local_addr();
        let mut services: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)> = Vec::new();
        let s = shutdown.clone();
        services.push((
            "ingest",
            tokio::spawn(async move { Ok(ingest.serve(s).await?) }),
        ));
        let s = shutdown.clone();
        services.push(("api", tokio::spawn(async move { Ok(api.serve(s).await?) })));
        let (cfg, s) = (config.scheduler(), shutdown.clone());
        services.push((
            "scheduler",
            tokio::spawn(async move { Ok(tocsin_scheduler::run(cfg, s).await?) }),
        ));
        if worker {
            let (cfg, s) = (config.worker(), shutdown.clone());
            services.push((
                "worker",
                tokio::spawn(async move { Ok(tocsin_worker::run(cfg, s).await?) }),
            ));
        }
        Ok(Self {
            ingest_addr,
            api_addr,
            shutdown,
            services,
        })
    }

    /// Resolves when any service stops on its own (an error, or shutdown requested).
    pub async fn first_exit(&mut self) -> (&'static str, anyhow::Result<()>) {
        let futures = self
            .services
            .iter_mut()
            .map(|(name, handle)| {
                let name = *name;
                Box::pin(async move {
                    let result = match handle.await {
                        Ok(r) => r,
                        Err(e) => Err(anyhow::anyhow!("service task panicked: {e}")),
                    };
                    (name, result)
                })
            })
            .collect::<Vec<_>>();
        let ((name, result), index, _) = futures::future::select_all(futures).await;
        self.services.remove(index);
        (name, result)
    }

    /// Requests shutdown of every service and waits for them; returns the first error.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let mut first_error = None;
        for (name, handle) in self.services {
            let result = match handle.await {
                Ok(r) => r,
                Err(e) => Err(anyhow::anyhow!("service task panicked: {e}")),
            };
            if let Err(error) = result {
                tracing::error!(
                    service = name,
                    error = format!("{error:#}"),
                    "service failed"
                );
                first_error.get_or_insert(error.context(format!("{name} failed")));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Deploys the playbooks in `dir` for `tenant` with a temporary single-runner pool.
pub async fn deploy_playbooks(
    store: &tocsin_store::Store,
    worker: &tocsin_worker::WorkerSection,
    tenant: &str,
    dir: &Path,
    by: &str,
) -> anyhow::Result<tocsin_worker::deploy::Deployed> {
    let spec = tocsin_worker::runner_spec(worker).context("failed to locate the runner")?;
    let pool = tocsin_worker::pool::RunnerPool::start(spec, 1);
    let result = tocsin_worker::deploy::deploy_dir(store, &pool, tenant, dir, by).await;
    pool.shutdown(std::time::Duration::from_secs(5)).await;
    result.with_context(|| format!("failed to deploy {}", dir.display()))
}
