//! Request plumbing shared by the handlers: state, caller resolution, error mapping.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use tocsin_http::{Problem, bearer};
use tocsin_store::keys::KeyKind;
use tocsin_store::{Store, StoreError};
use uuid::Uuid;

/// Shared handler state.
#[derive(Clone)]
pub(crate) struct AppState(pub(crate) Arc<Store>);

/// The caller: the tenant of the presented key and an actor label for audit fields.
pub(crate) struct Caller {
    pub(crate) tenant: String,
    pub(crate) actor: String,
}

pub(crate) async fn caller(store: &Store, headers: &HeaderMap) -> Result<Caller, Problem> {
    let key = bearer(headers).ok_or_else(|| {
        Problem::unauthorized("missing API key: send Authorization: Bearer <api key>")
    })?;
    match store.resolve_key(KeyKind::Api, key).await {
        Ok(Some(tenant)) => Ok(Caller {
            tenant,
            // The key's public lookup prefix identifies it without revealing it.
            actor: format!("key:{}", key.chars().take(20).collect::<String>()),
        }),
        Ok(None) => Err(Problem::unauthorized("invalid API key")),
        Err(error) => Err(store_problem(&error)),
    }
}

pub(crate) async fn tenant_of(store: &Store, headers: &HeaderMap) -> Result<String, Problem> {
    caller(store, headers).await.map(|c| c.tenant)
}

pub(crate) fn store_problem(error: &StoreError) -> Problem {
    match error {
        StoreError::NotFound { entity } => Problem::not_found(entity),
        StoreError::Unavailable(_) => Problem::unavailable("database unavailable; retry later", 2),
        other => {
            tracing::error!(error = %other, "api request failed");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

pub(crate) fn parse_id(id: &str, what: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(id)
        .map_err(|_| Problem::new(StatusCode::BAD_REQUEST, format!("{what} id must be a UUID")))
}

pub(crate) fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, Problem> {
    body.map(|Json(v)| v)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))
}
