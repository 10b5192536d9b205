//! The analyst/admin REST API. Every request carries a tenant API key
//! (`Authorization: Bearer tsk_api_...`); every read is scoped to that key's tenant, so
//! another tenant's alert or run answers 404 exactly like a missing one.
//!
//! | method | path             | answer |
//! |--------|------------------|--------|
//! | GET    | `/v1/alerts/{id}`| the alert with its `case_id`, `duplicate_count` and `runs` |
//! | GET    | `/v1/runs/{id}`  | status, playbook, result, error, traceback, steps, logs, timestamps |
//! | POST   | `/v1/runs`       | start a playbook manually: `{"playbook", "alert_id"?, "input"?}` → 202 `{"run_id"}` |
//! | POST   | `/v1/runs/{id}/cancel` | cancel (202 when the run executes: its worker stops it) |
//! | POST   | `/v1/runs/{id}/retry`  | run a finished run again, replaying its succeeded steps |
//! | POST   | `/v1/runs/{id}/steps/{seq}/resolve` | `{"result": ...}`: mark an uncertain step done and resume |
//! | GET    | `/v1/approvals`  | approvals, newest first; `?status=pending` |
//! | POST   | `/v1/approvals/{id}` | `{"decision": "approve"\|"deny", "comment"?}` → the decided approval |
//! | GET    | `/healthz`       | 200 while the process runs |
//! | GET    | `/readyz`        | 200 when Postgres answers |
#![forbid(unsafe_code)]

mod alerts;
mod approvals;
mod common;
mod runs;

use crate::common::AppState;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tocsin_core::Shutdown;
use tocsin_core::config::{PostgresConfig, ShutdownConfig, TelemetryConfig, Validate};
use tocsin_http::json_response;
use tocsin_store::{Store, StoreError};

/// API configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP settings.
    pub api: ApiSection,
    /// PostgreSQL.
    pub postgres: PostgresConfig,
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
    addr: SocketAddr,
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
        let store = Store::connect(&config.postgres).await?;
        let addr = config.api.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ApiError::Serve { addr, source })?;
        let addr = listener.local_addr().unwrap_or(addr);
        Ok(Self {
            listener,
            store,
            addr,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown`, lets in-flight requests finish, closes the pool.
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), ApiError> {
        let app = router(AppState(Arc::new(self.store.clone())));
        tracing::info!(addr = %self.addr, "api listening");
        let token = shutdown.token().clone();
        let addr = self.addr;
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await
            .map_err(|source| ApiError::Serve { addr, source })?;
        self.store.close().await;
        tracing::info!("api stopped");
        Ok(())
    }
}

/// Runs the API until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), ApiError> {
    Server::bind(&config).await?.serve(shutdown).await
}

fn router(state: AppState) -> Router {
    Router::new()
        .merge(alerts::routes())
        .merge(runs::routes())
        .merge(approvals::routes())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    let pg_ok = state.0.ping().await.is_ok();
    let status = if pg_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &json!({ "postgres": pg_ok }))
}
