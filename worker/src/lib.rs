//! The worker: consumes [`RunJob`](tocsin_proto::v1::RunJob)s from RUNS, claims each run
//! (bumping its fencing epoch), executes the playbook in a supervised runner process
//! (CPython embedded through pyo3, one asyncio loop per process, many runs at once), journals
//! every action the playbook calls, records the outcome and only then acks.
//!
//! The worker never runs tenant Python in its own process: `python/` is the runner side and
//! is only entered through [`runner_main`] in a child process.
#![deny(unsafe_code)]

pub mod bundles;
mod config;
pub mod deploy;
mod execute;
mod mask;
pub mod pool;
mod python;

use std::sync::Arc;

use async_nats::jetstream::{self, consumer::pull};
use tocsin_core::Shutdown;
use tocsin_proto::subjects;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use config::{Config, WorkerSection};
pub use python::runner_main;

use crate::execute::Executor;
use crate::pool::{RunnerPool, RunnerSpec};

/// The worker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// NATS connection or stream setup failed.
    #[error(transparent)]
    Nats(#[from] tocsin_core::nats::NatsSetupError),
    /// The database could not be reached.
    #[error("failed to connect to postgres")]
    Store(#[from] tocsin_store::StoreError),
    /// The operations listener could not be bound.
    #[error("failed to serve /healthz and /readyz on {addr}")]
    Ops {
        /// `telemetry.listen`.
        addr: std::net::SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The runner program could not be determined.
    #[error("failed to locate the runner program")]
    RunnerProgram(#[source] std::io::Error),
    /// The secrets master key is invalid.
    #[error(transparent)]
    MasterKey(#[from] tocsin_store::secrets::SecretError),
    /// No runner process became ready.
    #[error("runner processes did not start")]
    Runners(#[from] pool::PoolError),
}

/// How this worker starts runner processes, from its config.
pub fn runner_spec(section: &WorkerSection) -> Result<RunnerSpec, WorkerError> {
    let program = match &section.runner_program {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(WorkerError::RunnerProgram)?,
    };
    Ok(RunnerSpec {
        program,
        args: section.runner_args.clone(),
        sdk_path: section.sdk_path.clone(),
        start_timeout: section.runner_start_timeout,
    })
}

/// Runs the worker until `shutdown` is cancelled, then drains: stops pulling, lets
/// in-flight runs finish within the grace period, hands the rest back (nak) for
/// redelivery, stops the runners, drains NATS and closes the pool.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), WorkerError> {
    let nats = tocsin_core::nats::connect(&config.nats, "tocsin-worker").await?;
    let js = tocsin_core::nats::jetstream(nats.clone(), &config.nats);
    tocsin_core::nats::ensure_streams_with_retry(&js, &config.nats, config.nats.connect_timeout)
        .await?;
    let store = tocsin_store::Store::connect(&config.postgres).await?;
    let master_key = config
        .secrets
        .master_key
        .as_ref()
        .map(|k| tocsin_store::secrets::MasterKey::from_base64(k.expose()))
        .transpose()?;
    let section = &config.worker;
    let pool = RunnerPool::start(runner_spec(section)?, section.runners);
    if let Err(error) = pool.wait_ready(section.runner_start_timeout).await {
        pool.shutdown(config.shutdown.grace).await;
        return Err(error.into());
    }
    let ops = match config.telemetry.listen {
        Some(addr) => {
            let (pool_store, gauge_pool, runners) = (store.clone(), pool.clone(), section.runners);
            let refresh: tocsin_http::ops::Refresh = Arc::new(move || {
                pool_store.record_pool_metrics("worker");
                let r = tocsin_core::metrics::registry();
                #[allow(clippy::cast_precision_loss)]
                let (size, ready) = (runners as f64, gauge_pool.ready_runners() as f64);
                r.set(
                    "tocsin_runners",
                    "Runner processes of this worker",
                    &["state"],
                    &["configured"],
                    size,
                );
                r.set(
                    "tocsin_runners",
                    "Runner processes of this worker",
                    &["state"],
                    &["ready"],
                    ready,
                );
            });
            let (nats, store, pool) = (nats.clone(), store.clone(), pool.clone());
            let checks: Vec<tocsin_http::ops::Check> = vec![
                tocsin_http::ops::check("nats", move || {
                    let ok = nats.connection_state() == async_nats::connection::State::Connected;
                    async move { ok }
                }),
                tocsin_http::ops::check("postgres", move || {
                    let store = store.clone();
                    async move { store.ping().await.is_ok() }
                }),
                tocsin_http::ops::check("runners", move || {
                    let ok = pool.ready_runners() > 0;
                    async move { ok }
                }),
            ];
            let (bound, task) = tocsin_http::ops::start(
                addr,
                checks,
                Some(refresh),
                shutdown.token().clone().cancelled_owned(),
            )
            .await
            .map_err(|source| WorkerError::Ops { addr, source })?;
            tracing::info!(addr = %bound, "worker health on /healthz and /readyz");
            Some(task)
        }
        None => None,
    };
    let hand_back = CancellationToken::new();
    let exec = Arc::new(Executor {
        store: store.clone(),
        pool: pool.clone(),
        bundle_root: section.bundle_dir.clone(),
        ack_wait: section.ack_wait,
        hard_deadline_margin: section.hard_deadline_margin,
        max_deliver: section.max_deliver,
        master_key,
        hand_back: hand_back.clone(),
        in_flight: std::sync::Mutex::new(std::collections::HashMap::new()),
        timeouts: tocsin_core::cache::TtlCache::new(std::time::Duration::from_secs(600), 4096),
    });
    let cancels = shutdown.child();
    let cancel_listener = cancels.spawn(
        "cancel-listener",
        listen_for_cancels(exec.clone(), cancels.clone()),
    );
    let result = consume(&config, &js, exec, &shutdown, &hand_back).await;
    cancels.cancel();
    let _ = cancel_listener.await;
    pool.shutdown(config.shutdown.grace).await;
    if tokio::time::timeout(config.shutdown.grace, nats.drain())
        .await
        .is_err()
    {
        tracing::warn!("nats drain did not finish within the grace period");
    }
    store.close().await;
    if let Some(task) = ops {
        let _ = task.await;
    }
    tracing::info!("worker stopped");
    result
}

/// Stops in-flight runs that operators cancel (NOTIFY on `tocsin_cancel` with the run id).
async fn listen_for_cancels(exec: Arc<Executor>, shutdown: Shutdown) {
    let channel = tocsin_store::operator::CANCEL_CHANNEL;
    let mut listener = loop {
        match exec.store.listener(channel).await {
            Ok(l) => break l,
            Err(error) => {
                tracing::warn!(%error, "cancel notifications unavailable; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                }
            }
        }
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            notification = listener.recv() => match notification {
                Ok(n) => {
                    if let Ok(run_id) = uuid::Uuid::parse_str(n.payload())
                        && exec.cancel(run_id) {
                            tracing::info!(%run_id, "cancel requested");
                        }
                }
                Err(error) => {
                    tracing::warn!(%error, "cancel notification failed");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    }
}

async fn consume(
    config: &Config,
    js: &jetstream::Context,
    exec: Arc<Executor>,
    shutdown: &Shutdown,
    hand_back: &CancellationToken,
) -> Result<(), WorkerError> {
    let section = &config.worker;
    let capacity = section.runners * section.runs_per_runner;
    // Makes sure the RUNS stream and this pool's durable consumer exist (a restarted server
    // may have lost them) and opens a pull stream on it.
    let open = || async {
        tocsin_core::nats::ensure_streams(js, &config.nats).await?;
        let stream = js.get_stream(subjects::RUNS_STREAM).await?;
        let consumer = stream
            // Create or update: a changed ack_wait, max_deliver or pool limit reaches the
            // existing durable consumer.
            .create_consumer(pull::Config {
                durable_name: Some(section.consumer.clone()),
                filter_subject: section.filter_subject.clone(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: section.ack_wait,
                // Pool-wide: every worker pod of the pool shares this consumer; each pod
                // bounds its own concurrency with its semaphore.
                max_ack_pending: section.pool_max_ack_pending,
                max_deliver: section.max_deliver,
                ..Default::default()
            })
            .await?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(capacity.min(256))
            // Short expiry and heartbeat: a restarted server is noticed within seconds.
            .expires(std::time::Duration::from_secs(10))
            .heartbeat(std::time::Duration::from_secs(3))
            .messages()
            .await?;
        Ok::<_, tocsin_core::nats::BoxError>(messages)
    };
    let mut messages = tocsin_core::nats::DurablePull::new("worker", open);
    let limit = Arc::new(Semaphore::new(capacity));
    let tasks = shutdown.child();
    tracing::info!(capacity, runners = section.runners, "worker consuming runs");
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let Some(message) = messages.next(shutdown).await else {
            break;
        };
        let exec = exec.clone();
        tasks.spawn("run", async move {
            execute::handle_message(&exec, message).await;
            drop(permit);
        });
    }
    // Stop pulling: dropping the stream stops fetching. Messages buffered but not handed
    // out are redelivered after ack_wait.
    drop(messages);
    if !tasks.wait_tasks(config.shutdown.grace).await {
        hand_back.cancel();
        tracing::info!("grace period over; handing in-flight runs back");
        if !tasks.wait_tasks(config.shutdown.grace).await {
            tracing::warn!(
                "some runs did not hand back in time; they will be redelivered after ack_wait"
            );
        }
    }
    Ok(())
}
