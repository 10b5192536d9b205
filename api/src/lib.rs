//! The analyst/admin REST API. Every request carries an API key
//! (`Authorization: Bearer tsk_api_...`); every query is scoped to that key's tenant (an
//! operator key names it in `X-Tocsin-Tenant`), so another tenant's case, alert, observable
//! or run answers 404 exactly like a missing one. Each route needs a role (viewer < analyst
//! < admin, see [`routes`]); successful mutations are audited. Errors are
//! `application/problem+json`.
//!
//! The routes are listed once, as data, in [`routes`]; `GET /v1/openapi.json` serves the
//! OpenAPI 3.1 document describing them (`api/openapi.json`), and a test keeps the two equal.
//!
//! | area | routes |
//! |------|--------|
//! | cases | `GET /v1/cases`, `GET/PATCH /v1/cases/{id}`, `POST /v1/cases/{id}/comments`, `GET /v1/cases/{id}/timeline` |
//! | alerts | `GET /v1/alerts`, `GET /v1/alerts/{id}` |
//! | observables | `GET /v1/observables`, `GET /v1/observables/{id}` |
//! | runs | `GET/POST /v1/runs`, `GET /v1/runs/{id}`, `POST /v1/runs/{id}/cancel|retry`, `POST /v1/runs/{id}/steps/{seq}/resolve` |
//! | approvals | `GET /v1/approvals`, `POST /v1/approvals/{id}` |
//! | grouping | `GET/PUT /v1/grouping-policy`, `GET /v1/grouping-policy/versions` |
//! | admin | `GET/POST /v1/keys`, `DELETE /v1/keys/{id}`, `GET /v1/secrets`, `PUT/DELETE /v1/secrets/{name}`, `GET /v1/audit` |
//! | service | `GET /v1/openapi.json`, `GET /healthz`, `GET /readyz` |
#![forbid(unsafe_code)]

mod admin;
mod alerts;
mod approvals;
mod cases;
mod common;
mod grouping;
mod mappings;
mod observables;
mod playbooks;
mod routes;
mod runs;
mod webhooks;

use crate::common::AppState;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tocsin_core::Shutdown;
use tocsin_core::config::{
    PostgresConfig, SecretsConfig, ShutdownConfig, TelemetryConfig, Validate,
};
use tocsin_http::json_response;
use tocsin_store::secrets::{MasterKey, SecretError};
use tocsin_store::{Store, StoreError};

/// API configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP settings.
    pub api: ApiSection,
    /// PostgreSQL.
    pub postgres: PostgresConfig,
    /// Master key for tenant secrets (`PUT /v1/secrets/{name}`).
    pub secrets: SecretsConfig,
    /// Logging.
    pub telemetry: TelemetryConfig,
    /// Draining.
    pub shutdown: ShutdownConfig,
}

/// The `[api]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// Address the API listens on.
    pub listen: SocketAddr,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
        }
    }
}

impl Validate for Config {
    fn validate(&self, problems: &mut Vec<String>) {
        self.postgres.validate(problems);
        self.secrets.validate(problems);
        self.telemetry.validate(problems);
        self.shutdown.validate(problems);
    }
}

/// The API could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The database could not be reached.
    #[error("failed to connect to postgres")]
    Store(#[from] StoreError),
    /// The configured master key is not usable.
    #[error("invalid [secrets] master_key")]
    MasterKey(#[from] SecretError),
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

/// A bound API server, not yet serving.
pub struct Server {
    listener: tokio::net::TcpListener,
    store: Store,
    master: Option<Arc<MasterKey>>,
    addr: SocketAddr,
    ops_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Connects to Postgres and binds the listener.
    pub async fn bind(config: &Config) -> Result<Self, ApiError> {
        let master = config
            .secrets
            .master_key
            .as_ref()
            .map(|k| MasterKey::from_base64(k.expose()).map(Arc::new))
            .transpose()?;
        let store = Store::connect(&config.postgres).await?;
        let addr = config.api.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ApiError::Serve { addr, source })?;
        let addr = listener.local_addr().unwrap_or(addr);
        Ok(Self {
            listener,
            store,
            master,
            addr,
            ops_addr: config.telemetry.listen,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown`, lets in-flight requests finish, closes the pool.
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), ApiError> {
        let ops = match self.ops_addr {
            Some(ops_addr) => {
                let (store, metrics_store) = (self.store.clone(), self.store.clone());
                let checks: Vec<tocsin_http::ops::Check> =
                    vec![tocsin_http::ops::check("postgres", move || {
                        let store = store.clone();
                        async move { store.ping().await.is_ok() }
                    })];
                let refresh: tocsin_http::ops::Refresh =
                    Arc::new(move || metrics_store.record_pool_metrics("api"));
                let (bound, task) = tocsin_http::ops::start(
                    ops_addr,
                    checks,
                    Some(refresh),
                    shutdown.token().clone().cancelled_owned(),
                )
                .await
                .map_err(|source| ApiError::Serve {
                    addr: ops_addr,
                    source,
                })?;
                tracing::info!(addr = %bound, "api metrics and health on the observability listener");
                Some(task)
            }
            None => None,
        };
        let app = routes::router(AppState(Arc::new(self.store.clone()), self.master.clone()));
        tracing::info!(addr = %self.addr, "api listening");
        let token = shutdown.token().clone();
        let addr = self.addr;
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await
            .map_err(|source| ApiError::Serve { addr, source })?;
        self.store.close().await;
        if let Some(task) = ops {
            let _ = task.await;
        }
        tracing::info!("api stopped");
        Ok(())
    }
}

/// Runs the API until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), ApiError> {
    Server::bind(&config).await?.serve(shutdown).await
}

/// `GET /readyz`: 200 when Postgres answers, 503 otherwise.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let pg_ok = state.0.ping().await.is_ok();
    let status = if pg_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &json!({ "postgres": pg_ok }))
}
