//! Runs: reads, manual starts, and operator controls (cancel, retry, resolve).

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tocsin_http::{Problem, json_response};
use uuid::Uuid;

use crate::common::{AppState, caller, json_body, parse_id, store_problem, tenant_of};
use tocsin_store::operator::{Cancelled, OperatorError};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/runs", post(start_run))
        .route("/v1/runs/{id}", get(get_run))
        .route("/v1/runs/{id}/cancel", post(cancel_run))
        .route("/v1/runs/{id}/retry", post(retry_run))
        .route("/v1/runs/{id}/steps/{seq}/resolve", post(resolve_step))
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
