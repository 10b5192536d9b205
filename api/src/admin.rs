//! Tenant administration (admin role): API and ingest keys, playbook secrets, the audit log.
//! Key secrets are shown once, in the answer that creates them; secret values are never
//! returned, logged or audited.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use tocsin_http::{Problem, json_response};
use tocsin_store::keys::Role;
use tocsin_store::secrets::{SecretError, is_valid_secret_name};

use crate::common::{AppState, Audit, Caller, json_body, limit, parse_id, query, store_problem};

fn with_audit(mut response: Response, audit: Audit) -> Response {
    response.extensions_mut().insert(audit);
    response
}

/// `GET /v1/keys`: the tenant's keys (never their secrets).
pub(crate) async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, Problem> {
    let keys = state
        .0
        .list_keys(Some(&caller.tenant))
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(json_response(StatusCode::OK, &json!({ "items": keys })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    role: String,
    name: Option<String>,
    /// RFC 3339 expiry.
    expires_at: Option<String>,
}

/// `POST /v1/keys`: creates a key of the caller's tenant; the answer carries the key once.
pub(crate) async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<NewKey>, JsonRejection>,
) -> Result<Response, Problem> {
    let body = json_body(body)?;
    let role: Role = body
        .role
        .parse()
        .map_err(|e: String| Problem::new(StatusCode::BAD_REQUEST, e))?;
    if role == Role::Operator {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "operator keys span tenants and are created with `tocsin key create --role operator`",
        ));
    }
    let name = body.name.unwrap_or_else(|| "api".to_owned());
    if name.is_empty() || name.len() > 200 {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "name must be 1-200 characters",
        ));
    }
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|_| Problem::new(StatusCode::BAD_REQUEST, "expires_at must be RFC 3339"))
        })
        .transpose()?;
    if expires_at.is_some_and(|t| t <= OffsetDateTime::now_utc()) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "expires_at must be in the future",
        ));
    }
    let key = state
        .0
        .create_role_key(Some(&caller.tenant), role, &name, expires_at, &caller.actor)
        .await
        .map_err(|e| store_problem(&e))?;
    let summary = json!({"id": key.id, "role": role.as_str(), "name": name,
                         "expires_at": body.expires_at});
    let mut answer = summary.clone();
    answer["key"] = json!(key.secret);
    Ok(with_audit(
        json_response(StatusCode::CREATED, &answer),
        Audit {
            target: format!("key:{}", key.id),
            before: None,
            after: Some(summary),
        },
    ))
}

/// `DELETE /v1/keys/{id}`: revokes a key of the caller's tenant (at once, on every node
/// within the ingest key cache's TTL).
pub(crate) async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = parse_id(&id, "key")?;
    let key = state
        .0
        .revoke_key(Some(&caller.tenant), id)
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(with_audit(
        json_response(StatusCode::OK, &json!(key)),
        Audit {
            target: format!("key:{id}"),
            before: None,
            after: Some(json!({"revoked_at": key.revoked_at.map(|t| t.to_string())})),
        },
    ))
}

fn secret_problem(error: &SecretError) -> Problem {
    match error {
        SecretError::InvalidName(_) => Problem::new(StatusCode::BAD_REQUEST, error.to_string()),
        SecretError::Store(e) => store_problem(e),
        // Never the value; the message names only the secret.
        other => {
            tracing::error!(error = %other, "secret operation failed");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// `GET /v1/secrets`: names and timestamps, never values.
pub(crate) async fn list_secrets(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, Problem> {
    let secrets = state
        .0
        .secret_list(&caller.tenant)
        .await
        .map_err(|e| secret_problem(&e))?;
    Ok(json_response(StatusCode::OK, &json!({ "items": secrets })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutSecret {
    value: String,
}

/// Limit of a secret value.
const MAX_SECRET_BYTES: usize = 16 * 1024;

/// `PUT /v1/secrets/{name}`: creates or replaces a secret (encrypted at rest).
pub(crate) async fn put_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<PutSecret>, JsonRejection>,
) -> Result<Response, Problem> {
    if !is_valid_secret_name(&name) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "secret names are 1-128 characters of A-Z a-z 0-9 _ . - starting with a letter or _",
        ));
    }
    let body = json_body(body)?;
    if body.value.is_empty() || body.value.len() > MAX_SECRET_BYTES {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "value must be 1 byte to 16 KiB",
        ));
    }
    let Some(master) = state.1.as_deref() else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "no master key is configured ([secrets] master_key), so secrets cannot be stored",
        ));
    };
    state
        .0
        .set_secret(master, &caller.tenant, &name, &body.value)
        .await
        .map_err(|e| secret_problem(&e))?;
    Ok(with_audit(
        json_response(StatusCode::OK, &json!({"name": name})),
        Audit {
            target: format!("secret:{name}"),
            before: None,
            // The value is never recorded.
            after: Some(json!({"set": true})),
        },
    ))
}

/// `DELETE /v1/secrets/{name}`.
pub(crate) async fn delete_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let existed = state
        .0
        .delete_secret(&caller.tenant, &name)
        .await
        .map_err(|e| secret_problem(&e))?;
    if !existed {
        return Err(Problem::not_found("secret"));
    }
    Ok(with_audit(
        json_response(StatusCode::OK, &json!({"name": name, "deleted": true})),
        Audit {
            target: format!("secret:{name}"),
            before: Some(json!({"set": true})),
            after: None,
        },
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    limit: Option<i64>,
    /// Entries older than this id (the `next_before` of the previous page).
    before: Option<i64>,
}

/// `GET /v1/audit`: the tenant's audit log, newest first.
pub(crate) async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Response, Problem> {
    let params = query(params)?;
    let limit = limit(params.limit)?;
    let items = state
        .0
        .audit_log(&caller.tenant, params.before, limit)
        .await
        .map_err(|e| store_problem(&e))?;
    let next_before = if i64::try_from(items.len()).unwrap_or(0) == limit {
        items.last().map(|r| r.id)
    } else {
        None
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({ "items": items, "next_before": next_before }),
    ))
}
