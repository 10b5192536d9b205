//! Approvals requested by playbooks, decided by analysts.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tocsin_http::{Problem, json_response};

use crate::common::{AppState, Caller, json_body, parse_id, query, store_problem};
use tocsin_store::approvals::DecideError;

#[derive(Debug, Deserialize)]
pub(crate) struct ApprovalFilter {
    status: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/approvals`.
pub(crate) async fn list_approvals(
    State(state): State<AppState>,
    caller: Caller,
    filter: Result<Query<ApprovalFilter>, QueryRejection>,
) -> Result<Response, Problem> {
    let tenant = caller.tenant;
    let filter = query(filter)?;
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
pub(crate) struct Decision {
    decision: String,
    comment: Option<String>,
}

/// `POST /v1/approvals/{id}`.
pub(crate) async fn decide_approval(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Decision>, JsonRejection>,
) -> Result<Response, Problem> {
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
