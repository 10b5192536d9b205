//! The observability listener of every service (`telemetry.listen`): `GET /healthz` (the
//! process is alive), `GET /readyz` (every dependency check passes: 200 with each check's
//! result, 503 otherwise) and `GET /metrics` (Prometheus text format). Kept off the public
//! ports: metrics name tenants.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value};

use crate::json_response;

/// One readiness check: a name and a probe answering whether the dependency is usable.
pub type Check = (
    &'static str,
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>,
);

/// A readiness check named `name` from an async probe.
pub fn check<F, Fut>(name: &'static str, probe: F) -> Check
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    (name, Arc::new(move || Box::pin(probe())))
}

/// Refreshes gauges (pool sizes, ...) right before `/metrics` renders.
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

#[derive(Clone)]
struct OpsState {
    checks: Arc<Vec<Check>>,
    refresh: Option<Refresh>,
}

/// How long one check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `/healthz` and `/readyz` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    checks: Vec<Check>,
    refresh: Option<Refresh>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(OpsState {
            checks: Arc::new(checks),
            refresh,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `addr` and serves in a task until `shutdown` resolves; returns the bound address
/// (useful with port 0) and the task.
pub async fn start(
    addr: std::net::SocketAddr,
    checks: Vec<Check>,
    refresh: Option<Refresh>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(serve(listener, checks, refresh, shutdown));
    Ok((bound, task))
}

async fn metrics(State(state): State<OpsState>) -> Response {
    if let Some(refresh) = &state.refresh {
        refresh();
    }
    axum::response::IntoResponse::into_response((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        tocsin_core::metrics::registry().render(),
    ))
}

async fn readyz(State(state): State<OpsState>) -> Response {
    let results = futures::future::join_all(state.checks.iter().map(|(name, check)| async move {
        let ok = tokio::time::timeout(CHECK_TIMEOUT, check())
            .await
            .unwrap_or(false);
        (*name, ok)
    }))
    .await;
    let ready = results.iter().all(|(_, ok)| *ok);
    let body: Map<String, Value> = results
        .into_iter()
        .map(|(name, ok)| (name.to_owned(), Value::Bool(ok)))
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &Value::Object(body))
}
