//! A local fake threat-intel API answering after a fixed delay (the enrichment scenario).

use std::time::Duration;

use axum::Router;
use axum::routing::get;

/// Serves `GET /lookup/{value}` on a free loopback port, answering after `delay`; returns
/// its base URL. The server lives until the runtime shuts down.
pub(crate) async fn start(delay: Duration) -> anyhow::Result<String> {
    let app = Router::new().route(
        "/lookup/{value}",
        get(
            move |axum::extract::Path(value): axum::extract::Path<String>| async move {
                tokio::time::sleep(delay).await;
                axum::Json(serde_json::json!({ "value": value, "malicious": false }))
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(%error, "fake api stopped");
        }
    });
    Ok(url)
}
