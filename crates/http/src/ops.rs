//! The operations listener of services without an HTTP API of their own (scheduler,
//! worker): `GET /healthz` (the process is alive) and `GET /readyz` (every dependency check
//! passes: 200 with each check's result, 503 otherwise). Bound when the service's
//! `telemetry.listen` is set; orchestrators probe it.

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

/// How long one check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `/healthz` and `/readyz` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    checks: Vec<Check>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(checks));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `addr` and serves in a task until `shutdown` resolves; returns the bound address
/// (useful with port 0) and the task.
pub async fn start(
    addr: std::net::SocketAddr,
    checks: Vec<Check>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(serve(listener, checks, shutdown));
    Ok((bound, task))
}

async fn readyz(State(checks): State<Arc<Vec<Check>>>) -> Response {
    let results = futures::future::join_all(checks.iter().map(|(name, check)| async move {
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
