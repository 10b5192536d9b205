//! Alert reads.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde_json::json;
use tocsin_http::{Problem, json_response};

use crate::common::{AppState, parse_id, store_problem, tenant_of};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/v1/alerts/{id}", get(get_alert))
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
