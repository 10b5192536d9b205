//! The scheduler: consumes normalized alerts from ALERTS, records each in Postgres (dedup
//! by delivery receipt and by (tenant, source, source_ref)), opens a case for a new alert,
//! matches the tenant's deployed playbooks by trigger and `when`, creates one run per match
//! with a deterministic id, publishes a [`RunJob`](tocsin_proto::v1::RunJob) per run to
//! RUNS, and acks the alert only after all of that committed.
#![forbid(unsafe_code)]

pub mod config;
mod consumer;
pub mod cron;
mod dispatcher;
mod playbooks;
pub mod when;

use tocsin_core::Shutdown;

pub use config::Config;

/// The scheduler could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
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
}

/// Runs the scheduler until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), SchedulerError> {
    let nats = tocsin_core::nats::connect(&config.nats, "tocsin-scheduler").await?;
    let js = tocsin_core::nats::jetstream(nats.clone(), &config.nats);
    tocsin_core::nats::ensure_streams_with_retry(&js, &config.nats, config.nats.connect_timeout)
        .await?;
    let store = tocsin_store::Store::connect(&config.postgres).await?;
    let metrics_store = store.clone();
    let ops = match config.telemetry.listen {
        Some(addr) => {
            let nats = nats.clone();
            let store = store.clone();
            let checks: Vec<tocsin_http::ops::Check> = vec![
                tocsin_http::ops::check("nats", move || {
                    let ok = nats.connection_state() == async_nats::connection::State::Connected;
                    async move { ok }
                }),
                tocsin_http::ops::check("postgres", move || {
                    let store = store.clone();
                    async move { store.ping().await.is_ok() }
                }),
            ];
            let pool_store = metrics_store.clone();
            let refresh: tocsin_http::ops::Refresh =
                std::sync::Arc::new(move || pool_store.record_pool_metrics("scheduler"));
            let (bound, task) = tocsin_http::ops::start(
                addr,
                checks,
                Some(refresh),
                shutdown.token().clone().cancelled_owned(),
            )
            .await
            .map_err(|source| SchedulerError::Ops { addr, source })?;
            tracing::info!(addr = %bound, "scheduler health on /healthz and /readyz");
            Some(task)
        }
        None => None,
    };
    let dispatcher = shutdown.child();
    let handle = dispatcher.spawn(
        "dispatcher",
        dispatcher::dispatch_loop(
            config.clone(),
            js.clone(),
            store.clone(),
            dispatcher.clone(),
        ),
    );
    let depth = dispatcher.spawn("queue-depth", queue_depth(js.clone(), dispatcher.clone()));
    let schedules = dispatcher.spawn(
        "schedules",
        dispatcher::schedule_loop(store.clone(), dispatcher.clone()),
    );
    let result = consumer::consume(&config, js, store.clone(), &shutdown).await;
    dispatcher.cancel();
    let _ = handle.await;
    let _ = schedules.await;
    let _ = depth.await;
    let grace = config.shutdown.grace;
    if tokio::time::timeout(grace, nats.drain()).await.is_err() {
        tracing::warn!("nats drain did not finish within the grace period");
    }
    store.close().await;
    if let Some(task) = ops {
        let _ = task.await;
    }
    tracing::info!("scheduler stopped");
    result
}

/// Every few seconds, exports the depth of the ALERTS and RUNS streams and of each of their
/// consumers (`tocsin_stream_messages`, `tocsin_consumer_pending`,
/// `tocsin_consumer_ack_pending`): what the fleet scales on.
async fn queue_depth(js: async_nats::jetstream::Context, shutdown: Shutdown) {
    use futures::StreamExt;
    let metrics = tocsin_core::metrics::registry();
    loop {
        for stream_name in [
            tocsin_proto::subjects::ALERTS_STREAM,
            tocsin_proto::subjects::RUNS_STREAM,
            tocsin_proto::subjects::INGEST_STREAM,
        ] {
            let Ok(mut stream) = js.get_stream(stream_name).await else {
                continue;
            };
            if let Ok(info) = stream.info().await {
                #[allow(clippy::cast_precision_loss)]
                metrics.set(
                    "tocsin_stream_messages",
                    "Messages held by a JetStream stream",
                    &["stream"],
                    &[stream_name],
                    info.state.messages as f64,
                );
            }
            let mut consumers = stream.consumers();
            let mut seen = 0;
            while let Some(Ok(info)) = consumers.next().await {
                seen += 1;
                if seen > 100 {
                    break;
                }
                let labels: &'static [&'static str] = &["stream", "consumer"];
                #[allow(clippy::cast_precision_loss)]
                {
                    metrics.set(
                        "tocsin_consumer_pending",
                        "Messages of a stream a consumer has not been delivered yet (lag)",
                        labels,
                        &[stream_name, &info.name],
                        info.num_pending as f64,
                    );
                    metrics.set(
                        "tocsin_consumer_ack_pending",
                        "Messages delivered to a consumer and not acknowledged yet",
                        labels,
                        &[stream_name, &info.name],
                        info.num_ack_pending as f64,
                    );
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
        }
    }
}
