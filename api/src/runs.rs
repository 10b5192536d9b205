//! Runs: reads, manual starts, and operator controls (cancel, retry, resolve).

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tocsin_http::{Problem, json_response};
use tocsin_proto::types::RunStatus;
use tocsin_store::operator::{Cancelled, OperatorError};
use tocsin_store::runs::RunFilter;
use uuid::Uuid;

use crate::common::{
    AppState, Caller, decode_cursor, json_body, limit, page_response, parse_id, parsed, query,
    store_problem,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListRuns {
    status: Option<String>,
    playbook: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/runs`.
pub(crate) async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<ListRuns>, QueryRejection>,
) -> Result<Response, Problem> {
    let tenant = caller.tenant;
    let params = query(params)?;
    let filter = RunFilter {
        status: parsed::<RunStatus>(params.status.as_deref(), "status", "a run status")?,
        playbook: params.playbook,
    };
    let page = state
        .0
        .list_runs(
            &tenant,
            &filter,
            decode_cursor(params.cursor.as_deref())?,
            limit(params.limit)?,
        )
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(page_response("runs", page))
}

/// `GET /v1/runs/{id}`.
pub(crate) async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let tenant = caller.tenant;
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
pub(crate) struct StartRun {
    playbook: String,
    alert_id: Option<Uuid>,
    input: Option<serde_json::Value>,
}

/// `POST /v1/runs`: start a playbook by hand.
pub(crate) async fn start_run(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<StartRun>, JsonRejection>,
) -> Result<Response, Problem> {
    let tenant = caller.tenant;
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
            tocsin_core::trace::traceparent(&tracing::Span::current()).as_deref(),
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

/// `POST /v1/runs/{id}/cancel`.
pub(crate) async fn cancel_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
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

/// `POST /v1/runs/{id}/retry`.
pub(crate) async fn retry_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let tenant = caller.tenant;
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
pub(crate) struct Resolve {
    result: serde_json::Value,
}

/// `POST /v1/runs/{id}/steps/{seq}/resolve`.
pub(crate) async fn resolve_step(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, seq)): Path<(String, i32)>,
    body: Result<Json<Resolve>, JsonRejection>,
) -> Result<Response, Problem> {
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
