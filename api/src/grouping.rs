//! The tenant's grouping policy: read, history, and set (a new version per change).

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tocsin_http::{Problem, json_response};
use tocsin_store::grouping::{
    DEFAULT_FIELDS, DEFAULT_MAX_GROUP_SIZE, DEFAULT_WINDOW_SECS, PolicyChange, PolicyError,
};

use crate::common::{AppState, Caller, json_body, store_problem};

/// `GET /v1/grouping-policy`.
pub(crate) async fn get_policy(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, Problem> {
    let tenant = caller.tenant;
    let policy = state
        .0
        .grouping_policy(&tenant)
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(json_response(StatusCode::OK, &json!(policy)))
}

/// `GET /v1/grouping-policy/versions`.
pub(crate) async fn policy_versions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, Problem> {
    let tenant = caller.tenant;
    let versions = state
        .0
        .grouping_policy_history(&tenant)
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "versions": versions }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutPolicy {
    fields: Option<Vec<String>>,
    window_seconds: Option<i32>,
    max_group_size: Option<i32>,
    grouped_alerts_trigger: Option<bool>,
    version: Option<i32>,
}

/// `PUT /v1/grouping-policy`: the whole policy (omitted settings take their defaults).
pub(crate) async fn put_policy(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<PutPolicy>, JsonRejection>,
) -> Result<Response, Problem> {
    let put = json_body(body)?;
    let change = PolicyChange {
        fields: put
            .fields
            .unwrap_or_else(|| DEFAULT_FIELDS.iter().map(|f| (*f).to_owned()).collect()),
        window_seconds: put.window_seconds.unwrap_or(DEFAULT_WINDOW_SECS),
        max_group_size: put.max_group_size.unwrap_or(DEFAULT_MAX_GROUP_SIZE),
        grouped_alerts_trigger: put.grouped_alerts_trigger.unwrap_or(false),
        expected_version: put.version,
    };
    match state
        .0
        .set_grouping_policy(&caller.tenant, &change, &caller.actor)
        .await
    {
        Ok(policy) => Ok(json_response(StatusCode::OK, &json!(policy))),
        Err(e @ PolicyError::Invalid(_)) => {
            Err(Problem::new(StatusCode::BAD_REQUEST, e.to_string()))
        }
        Err(e @ PolicyError::Stale { .. }) => Err(Problem::new(
            StatusCode::CONFLICT,
            format!("{e}; read it again and retry"),
        )),
        Err(PolicyError::Store(e)) => Err(store_problem(&e)),
    }
}
