//! Deployed playbooks: what is live for the tenant, and switching one on or off. A switch
//! applies to the next alert on every scheduler (they listen for the change) and outlives
//! later deployments. Deploying itself is `tocsin playbook deploy` (it validates the bundle
//! in a runner, which the API does not host).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;
use tocsin_http::{Problem, json_response};

use crate::common::{AppState, Audit, Caller, store_problem};

/// `GET /v1/playbooks`: the live bundle and its playbooks.
pub(crate) async fn list_playbooks(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, Problem> {
    let deployed = state
        .0
        .deployed_playbooks(&caller.tenant)
        .await
        .map_err(|e| store_problem(&e))?;
    let body = match deployed {
        None => json!({ "deployment": null, "items": [] }),
        Some((deployment, playbooks)) => {
            json!({ "deployment": deployment, "items": playbooks })
        }
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /v1/playbooks/{name}/enable`.
pub(crate) async fn enable_playbook(
    state: State<AppState>,
    caller: Caller,
    name: Path<String>,
) -> Result<Response, Problem> {
    switch(state, caller, name, true).await
}

/// `POST /v1/playbooks/{name}/disable`.
pub(crate) async fn disable_playbook(
    state: State<AppState>,
    caller: Caller,
    name: Path<String>,
) -> Result<Response, Problem> {
    switch(state, caller, name, false).await
}

async fn switch(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    enabled: bool,
) -> Result<Response, Problem> {
    if name.is_empty() || name.len() > 200 {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "playbook name must be 1-200 characters",
        ));
    }
    let (playbook, was) = state
        .0
        .set_playbook_enabled(&caller.tenant, &name, enabled, &caller.actor)
        .await
        .map_err(|e| store_problem(&e))?;
    let body = serde_json::to_value(&playbook).map_err(|error| {
        tracing::error!(%error, "playbook did not serialize");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })?;
    let mut response = json_response(StatusCode::OK, &body);
    response.extensions_mut().insert(Audit {
        target: format!("playbook:{name}"),
        before: Some(json!({ "enabled": was })),
        after: Some(json!({ "enabled": enabled })),
    });
    Ok(response)
}
