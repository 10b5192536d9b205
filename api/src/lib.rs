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

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tocsin_core::Shutdown;
use tocsin_core::config::{PostgresConfig, ShutdownConfig, TelemetryConfig, Validate};
use tocsin_http::{Problem, bearer, json_response};
use tocsin_store::approvals::DecideError;
use tocsin_store::keys::KeyKind;
use tocsin_store::operator::{Cancelled, OperatorError};
use tocsin_store::{Store, StoreError};
use uuid::Uuid;

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

#[derive(Clone)]
struct AppState(Arc<Store>);

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
        .route("/v1/alerts/{id}", get(get_alert))
        .route("/v1/runs", post(start_run))
        .route("/v1/runs/{id}", get(get_run))
        .route("/v1/runs/{id}/cancel", post(cancel_run))
        .route("/v1/runs/{id}/retry", post(retry_run))
        .route("/v1/runs/{id}/steps/{seq}/resolve", post(resolve_step))
        .route("/v1/approvals", get(list_approvals))
        .route("/v1/approvals/{id}", post(decide_approval))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// The caller: the tenant of the presented key and an actor label for audit fields.
struct Caller {
    tenant: String,
    actor: String,
}

async fn caller(store: &Store, headers: &HeaderMap) -> Result<Caller, Problem> {
    let key = bearer(headers).ok_or_else(|| {
        Problem::unauthorized("missing API key: send Authorization: Bearer <api key>")
    })?;
    match store.resolve_key(KeyKind::Api, key).await {
        Ok(Some(tenant)) => Ok(Caller {
            tenant,
            // The key's public lookup prefix identifies it without revealing it.
            actor: format!("key:{}", key.chars().take(20).collect::<String>()),
        }),
        Ok(None) => Err(Problem::unauthorized("invalid API key")),
        Err(error) => Err(store_problem(&error)),
    }
}

async fn tenant_of(store: &Store, headers: &HeaderMap) -> Result<String, Problem> {
    caller(store, headers).await.map(|c| c.tenant)
}

fn store_problem(error: &StoreError) -> Problem {
    match error {
        StoreError::NotFound { entity } => Problem::not_found(entity),
        StoreError::Unavailable(_) => Problem::unavailable("database unavailable; retry later", 2),
        other => {
            tracing::error!(error = %other, "api request failed");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

fn parse_id(id: &str, what: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(id)
        .map_err(|_| Problem::new(StatusCode::BAD_REQUEST, format!("{what} id must be a UUID")))
}

async fn get_alert(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let tenant = tenant_of(&state.0, &headers).await?;
    let id = parse_id(&id, "alert")?;
    let alert = state
        .0
        .alert_view(&tenant, id)
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(json_response(StatusCode::OK, &json!(alert)))
}

async fn get_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let tenant = tenant_of(&state.0, &headers).await?;
    let id = parse_id(&id, "run")?;
    let run = state
        .0
        .run_view(&tenant, id)
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(json_response(StatusCode::OK, &json!(run)))
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, Problem> {
    body.map(|Json(v)| v)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRun {
    playbook: String,
    alert_id: Option<Uuid>,
    input: Option<serde_json::Value>,
}

async fn start_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<StartRun>, JsonRejection>,
) -> Result<Response, Problem> {
    let tenant = tenant_of(&state.0, &headers).await?;
    let request = json_body(body)?;
    if request.playbook.is_empty() || request.playbook.len() > 200 {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "playbook must be 1-200 characters",
        ));
    }
    let run_id = state
        .0
        .start_manual_run(
            &tenant,
            &request.playbook,
            request.alert_id,
            request.input.as_ref(),
        )
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({ "run_id": run_id }),
    ))
}

fn operator_problem(error: OperatorError) -> Problem {
    match error {
        OperatorError::NotFound(what) => Problem::not_found(what),
        OperatorError::Conflict { .. } => Problem::new(StatusCode::CONFLICT, error.to_string()),
        OperatorError::Store(e) => store_problem(&e),
    }
}

async fn cancel_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let caller = caller(&state.0, &headers).await?;
    let id = parse_id(&id, "run")?;
    match state.0.cancel_run(&caller.tenant, id, &caller.actor).await {
        Ok(Cancelled::Now) => Ok(json_response(
            StatusCode::OK,
            &json!({ "status": "cancelled" }),
        )),
        Ok(Cancelled::Requested) => Ok(json_response(
            StatusCode::ACCEPTED,
            &json!({ "status": "cancel_requested" }),
        )),
        Err(e) => Err(operator_problem(e)),
    }
}

async fn retry_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let tenant = tenant_of(&state.0, &headers).await?;
    let id = parse_id(&id, "run")?;
    state
        .0
        .retry_run(&tenant, id)
        .await
        .map_err(operator_problem)?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({ "status": "queued" }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resolve {
    result: serde_json::Value,
}

async fn resolve_step(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, seq)): Path<(String, i32)>,
    body: Result<Json<Resolve>, JsonRejection>,
) -> Result<Response, Problem> {
    let caller = caller(&state.0, &headers).await?;
    let id = parse_id(&id, "run")?;
    let resolve = json_body(body)?;
    state
        .0
        .resolve_step(&caller.tenant, id, seq, &resolve.result, &caller.actor)
        .await
        .map_err(operator_problem)?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({ "status": "queued" }),
    ))
}

#[derive(Debug, Deserialize)]
struct ApprovalFilter {
    status: Option<String>,
    limit: Option<i64>,
}

async fn list_approvals(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(filter): Query<ApprovalFilter>,
) -> Result<Response, Problem> {
    let tenant = tenant_of(&state.0, &headers).await?;
    if let Some(status) = filter.status.as_deref()
        && !matches!(status, "pending" | "approved" | "denied" | "timed_out")
    {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "status must be pending, approved, denied or timed_out",
        ));
    }
    let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
    let approvals = state
        .0
        .list_approvals(&tenant, filter.status.as_deref(), limit)
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "approvals": approvals }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    decision: String,
    comment: Option<String>,
}

async fn decide_approval(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<Decision>, JsonRejection>,
) -> Result<Response, Problem> {
    let caller = caller(&state.0, &headers).await?;
    let id = parse_id(&id, "approval")?;
    let decision = json_body(body)?;
    let approve = match decision.decision.as_str() {
        "approve" => true,
        "deny" => false,
        _ => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "decision must be approve or deny",
            ));
        }
    };
    if decision.comment.as_ref().is_some_and(|c| c.len() > 10_000) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "comment longer than 10000 bytes",
        ));
    }
    match state
        .0
        .decide_approval(
            &caller.tenant,
            id,
            approve,
            &caller.actor,
            decision.comment.as_deref(),
        )
        .await
    {
        Ok(view) => Ok(json_response(StatusCode::OK, &json!(view))),
        Err(DecideError::NotFound) => Err(Problem::not_found("approval")),
        Err(DecideError::AlreadyDecided { status }) => Err(Problem::new(
            StatusCode::CONFLICT,
            format!("approval already {status}"),
        )),
        Err(DecideError::Store(e)) => Err(store_problem(&e)),
    }
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
