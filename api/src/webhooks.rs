//! Webhook signing (admin role): the tenant's Standard Webhooks signing secrets (created
//! here, shown once, several at once for rotation) and whether its webhooks must be signed.
//! Ingest verifies `webhook-id`, `webhook-timestamp` and `webhook-signature` against them.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tocsin_http::{Problem, json_response};
use tocsin_store::secrets::SecretError;

use crate::common::{AppState, Audit, Caller, json_body, parse_id, store_problem};

fn problem(error: &SecretError) -> Problem {
    match error {
        SecretError::Store(e) => store_problem(e),
        other => {
            tracing::error!(error = %other, "webhook secret operation failed");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// `GET /v1/webhook-secrets`: the secrets (never their values) and the requirement.
pub(crate) async fn list_webhook_secrets(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, Problem> {
    let items = state
        .0
        .list_webhook_secrets(&caller.tenant)
        .await
        .map_err(|e| store_problem(&e))?;
    let required = state
        .0
        .webhook_signatures_required(&caller.tenant)
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "items": items, "require_signatures": required }),
    ))
}

/// `POST /v1/webhook-secrets`: a new signing secret, shown in this answer only.
pub(crate) async fn create_webhook_secret(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, Problem> {
    let Some(master) = state.1.as_deref() else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "no master key is configured ([secrets] master_key), so secrets cannot be stored",
        ));
    };
    let (info, secret) = state
        .0
        .create_webhook_secret(master, &caller.tenant, &caller.actor)
        .await
        .map_err(|e| problem(&e))?;
    let mut response = json_response(
        StatusCode::CREATED,
        &json!({
            "id": info.id,
            "created_by": info.created_by,
            "created_at": info.created_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            "secret": secret,
        }),
    );
    response.extensions_mut().insert(Audit {
        target: format!("webhook-secret:{}", info.id),
        before: None,
        after: Some(json!({"created": true})),
    });
    Ok(response)
}

/// `DELETE /v1/webhook-secrets/{id}`.
pub(crate) async fn delete_webhook_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = parse_id(&id, "webhook secret")?;
    let existed = state
        .0
        .delete_webhook_secret(&caller.tenant, id)
        .await
        .map_err(|e| store_problem(&e))?;
    if !existed {
        return Err(Problem::not_found("webhook secret"));
    }
    let mut response = json_response(StatusCode::OK, &json!({"id": id, "deleted": true}));
    response.extensions_mut().insert(Audit {
        target: format!("webhook-secret:{id}"),
        before: Some(json!({"created": true})),
        after: None,
    });
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    require_signatures: bool,
}

/// `PUT /v1/webhook-settings`: whether unsigned webhooks are refused.
pub(crate) async fn put_webhook_settings(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<Settings>, JsonRejection>,
) -> Result<Response, Problem> {
    let body = json_body(body)?;
    let before = state
        .0
        .set_webhook_signatures_required(&caller.tenant, body.require_signatures, &caller.actor)
        .await
        .map_err(|e| store_problem(&e))?;
    let mut response = json_response(
        StatusCode::OK,
        &json!({"require_signatures": body.require_signatures}),
    );
    response.extensions_mut().insert(Audit {
        target: "webhook-settings".to_owned(),
        before: Some(json!({"require_signatures": before})),
        after: Some(json!({"require_signatures": body.require_signatures})),
    });
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListRejected {
    before: Option<i64>,
    limit: Option<i64>,
}

/// `GET /v1/rejected-events`: events published to the INGEST stream that could not become
/// alerts, newest first, with the reason and the payload's first 64 KiB.
pub(crate) async fn list_rejected_events(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<axum::extract::Query<ListRejected>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let params = crate::common::query(params)?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "limit must be 1-500"));
    }
    let items = state
        .0
        .rejected_events(&caller.tenant, params.before, limit)
        .await
        .map_err(|e| store_problem(&e))?;
    let next_before = if i64::try_from(items.len()).unwrap_or(0) == limit {
        items.last().map(|e| e.id)
    } else {
        None
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({ "items": items, "next_before": next_before }),
    ))
}
