//! Approvals requested by playbooks, decided by analysts.

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tocsin_http::{Problem, json_response};

use crate::common::{AppState, caller, json_body, parse_id, store_problem, tenant_of};
use tocsin_store::approvals::DecideError;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/approvals", get(list_approvals))
        .route("/v1/approvals/{id}", post(decide_approval))
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
