//! The ingest service: authenticates alert posts with tenant ingest keys, normalizes them
//! into [`Alert`](tocsin_proto::v1::Alert)s, publishes them to the ALERTS stream, and
//! answers 202 only once JetStream has acknowledged every alert of the request. Besides
//! Tocsin's generic format (`/v1/alerts`) and vendor webhooks (`/v1/webhooks/{source}`),
//! it speaks Splunk's HTTP Event Collector protocol (`/services/collector/event`,
//! answering 200 in HEC's format once acknowledged), so HEC senders need no change.
#![forbid(unsafe_code)]

mod auth;
pub mod config;
pub mod formats;
mod generic;
mod hec;
mod http;
mod intake;
pub mod limits;
pub mod mapping;
mod publish;
pub mod signature;

use std::net::SocketAddr;

use tocsin_core::Shutdown;

pub use config::Config;
pub use generic::{BodyError, NormalizeError, parse_generic_body};
/// The Splunk HEC body parser and mapping, for the `hec` fuzz target only (`fuzz/`, see
/// docs/fuzzing.md): not a stable API.
#[doc(hidden)]
pub use hec::fuzz_body_alerts as hec_body_alerts;

/// The ingest service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// NATS connection or stream setup failed.
    #[error(transparent)]
    Nats(#[from] tocsin_core::nats::NatsSetupError),
    /// The database could not be reached.
    #[error("failed to connect to postgres")]
    Store(#[from] tocsin_store::StoreError),
    /// The configured master key is not usable.
    #[error("invalid [secrets] master_key")]
    MasterKey(#[from] tocsin_store::secrets::SecretError),
    /// The listener could not be bound or the server failed.
    #[error("failed to serve http on {addr}")]
    Serve {
        /// Listen address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A bound ingest server, not yet serving.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: http::AppState,
    nats: async_nats::Client,
    store: tocsin_store::Store,
    config: Config,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Connects to NATS and Postgres, prepares the streams and binds the listener.
    pub async fn bind(config: Config) -> Result<Self, IngestError> {
        let master = config
            .secrets
            .master_key
            .as_ref()
            .map(|k| tocsin_store::secrets::MasterKey::from_base64(k.expose()))
            .transpose()?;
        let nats = tocsin_core::nats::connect(&config.nats, "tocsin-ingest").await?;
        let js = tocsin_core::nats::jetstream(nats.clone(), &config.nats);
        tocsin_core::nats::ensure_streams_with_retry(
            &js,
            &config.nats,
            config.nats.connect_timeout,
        )
        .await?;
        let store = tocsin_store::Store::connect(&config.postgres).await?;
        let listener = tokio::net::TcpListener::bind(config.ingest.listen)
            .await
            .map_err(|source| IngestError::Serve {
                addr: config.ingest.listen,
                source,
            })?;
        let state = http::AppState::new(&config, nats.clone(), js, store.clone(), master);
        Ok(Self {
            listener,
            state,
            nats,
            store,
            config,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown`, then stops accepting, lets in-flight requests finish (each
    /// waits for its PubAcks), drains NATS and closes the pool.
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), IngestError> {
        let addr = self.config.ingest.listen;
        let ops = match self.config.telemetry.listen {
            Some(ops_addr) => {
                let (nats, store, metrics_store) =
                    (self.nats.clone(), self.store.clone(), self.store.clone());
                let checks: Vec<tocsin_http::ops::Check> = vec![
                    tocsin_http::ops::check("nats", move || {
                        let ok =
                            nats.connection_state() == async_nats::connection::State::Connected;
                        async move { ok }
                    }),
                    tocsin_http::ops::check("postgres", move || {
                        let store = store.clone();
                        async move { store.ping().await.is_ok() }
                    }),
                ];
                let refresh: tocsin_http::ops::Refresh =
                    std::sync::Arc::new(move || metrics_store.record_pool_metrics("ingest"));
                let (bound, task) = tocsin_http::ops::start(
                    ops_addr,
                    checks,
                    Some(refresh),
                    shutdown.token().clone().cancelled_owned(),
                )
                .await
                .map_err(|source| IngestError::Serve {
                    addr: ops_addr,
                    source,
                })?;
                tracing::info!(addr = %bound, "ingest metrics and health on the observability listener");
                Some(task)
            }
            None => None,
        };
        let intake = shutdown.child();
        let intake_task = tokio::spawn(intake::consume(
            self.state.0.clone(),
            self.config.clone(),
            intake.clone(),
        ));
        let app = http::router(self.state);
        tracing::info!(addr = ?self.listener.local_addr().ok(), "ingest listening");
        let token = shutdown.token().clone();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await
            .map_err(|source| IngestError::Serve { addr, source })?;
        // HTTP is drained; stop pulling from INGEST and let in-flight events settle.
        intake.cancel();
        if intake_task.await.is_err() {
            tracing::error!("the ingest stream consumer panicked");
        }
        let grace = self.config.shutdown.grace;
        if tokio::time::timeout(grace, self.nats.drain())
            .await
            .is_err()
        {
            tracing::warn!("nats drain did not finish within the grace period");
        }
        self.store.close().await;
        if let Some(task) = ops {
            let _ = task.await;
        }
        tracing::info!("ingest stopped");
        Ok(())
    }
}

/// Runs the ingest service until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), IngestError> {
    Server::bind(config).await?.serve(shutdown).await
}
