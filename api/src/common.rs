//! Request plumbing shared by the handlers: state, caller resolution, error mapping.

use std::sync::Arc;

use axum::Json;
use axum::extract::Query;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tocsin_http::{Problem, bearer};
use tocsin_store::audit::AuditEntry;
use tocsin_store::keys::Role;
use tocsin_store::page::{self, Cursor};
use tocsin_store::secrets::MasterKey;
use tocsin_store::{Store, StoreError};
use uuid::Uuid;

/// Shared handler state: the store, and the master key encrypting tenant secrets (when
/// configured).
#[derive(Clone)]
pub(crate) struct AppState(pub(crate) Arc<Store>, pub(crate) Option<Arc<MasterKey>>);

/// The caller, as the access layer resolved it: the tenant the request acts in and an actor
/// label for audit fields. Handlers take it as an extractor.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) tenant: String,
    pub(crate) actor: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        // Set by `authorize` on every route that needs a key; its absence is a route-table
        // mistake, answered as unauthorized rather than served without a tenant.
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Problem::unauthorized("missing API key"))
    }
}

/// Header an operator key names the tenant of a call with.
pub(crate) const TENANT_HEADER: &str = "x-tocsin-tenant";

/// What a route needs of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// No key (health, the OpenAPI document).
    Public,
    /// A key of at least this role.
    Role(Role),
}

/// Resolves the presented key to a [`Caller`] (401 when missing or invalid; 403 when its role
/// is below `needed`; an operator key names the tenant with `X-Tocsin-Tenant`).
pub(crate) async fn authorize_caller(
    store: &Store,
    headers: &HeaderMap,
    needed: Role,
) -> Result<Caller, Problem> {
    let key = bearer(headers).ok_or_else(|| {
        Problem::unauthorized("missing API key: send Authorization: Bearer <api key>")
    })?;
    let identity = match store.resolve_api_key(key).await {
        Ok(Some(identity)) => identity,
        Ok(None) => return Err(Problem::unauthorized("invalid, revoked or expired API key")),
        Err(error) => return Err(store_problem(&error)),
    };
    let named = headers
        .get(TENANT_HEADER)
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let tenant = match (identity.tenant, named) {
        (Some(own), None) => own,
        (Some(own), Some(named)) if named == own => own,
        (Some(_), Some(_)) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "X-Tocsin-Tenant names another tenant; only operator keys act across tenants",
            ));
        }
        (None, None) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "an operator key must name the tenant of each call in X-Tocsin-Tenant",
            ));
        }
        (None, Some(named)) => {
            if !tocsin_proto::types::is_valid_tenant_id(&named) {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "X-Tocsin-Tenant is not a valid tenant id",
                ));
            }
            match store.tenant_exists(&named).await {
                Ok(true) => named,
                Ok(false) => return Err(Problem::not_found("tenant")),
                Err(error) => return Err(store_problem(&error)),
            }
        }
    };
    if identity.role < needed {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            format!(
                "this key's role ({}) may not do this; it needs {} or above",
                identity.role.as_str(),
                needed.as_str()
            ),
        ));
    }
    Ok(Caller {
        tenant,
        // The key's public lookup prefix identifies it without revealing it.
        actor: format!("key:{}", key.chars().take(20).collect::<String>()),
    })
}

/// Middleware of every keyed route: authorizes the caller for `needed`, hands the handler
/// the [`Caller`], and writes an audit entry for each mutation that succeeded (the route,
/// the request path as target, and the details the handler attached as [`Audit`]).
pub(crate) async fn authorize(
    State((state, needed, route)): State<(AppState, Role, &'static str)>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = match authorize_caller(&state.0, request.headers(), needed).await {
        Ok(caller) => caller,
        Err(problem) => return problem.into_response(),
    };
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    request.extensions_mut().insert(caller.clone());
    let mut response = next.run(request).await;
    if method != Method::GET && response.status().is_success() {
        let detail = response.extensions_mut().remove::<Audit>();
        let (target, before, after) = match detail {
            Some(audit) => (audit.target, audit.before, audit.after),
            None => (path, None, None),
        };
        let entry = AuditEntry {
            tenant: Some(&caller.tenant),
            actor: &caller.actor,
            action: &format!("{method} {route}"),
            target: &target,
            before: before.as_ref(),
            after: after.as_ref(),
        };
        if let Err(error) = state.0.audit(&entry).await {
            // The change is committed; a lost audit line is logged loudly, not hidden.
            tracing::error!(%error, action = entry.action, target = entry.target, "failed to write audit entry");
        }
    }
    response
}

/// Audit details a handler attaches to its response (as an extension): the changed object
/// and its state before and after. Never secret values.
#[derive(Debug, Clone)]
pub(crate) struct Audit {
    pub(crate) target: String,
    pub(crate) before: Option<serde_json::Value>,
    pub(crate) after: Option<serde_json::Value>,
}

pub(crate) fn store_problem(error: &StoreError) -> Problem {
    match error {
        StoreError::NotFound { entity } => Problem::not_found(entity),
        StoreError::Invalid(message) => Problem::new(StatusCode::BAD_REQUEST, message.clone()),
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

/// Default page size of list endpoints.
pub(crate) const DEFAULT_LIMIT: i64 = 50;

/// Reads the query string, answering 400 (problem+json) when it does not parse.
pub(crate) fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    query
        .map(|Query(v)| v)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))
}

/// A `limit` parameter: default [`DEFAULT_LIMIT`], 1..=[`page::MAX_LIMIT`].
pub(crate) fn limit(limit: Option<i64>) -> Result<i64, Problem> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=page::MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("limit must be 1-{}", page::MAX_LIMIT),
        )),
    }
}

/// An RFC 3339 timestamp parameter.
pub(crate) fn timestamp(
    value: Option<&str>,
    name: &str,
) -> Result<Option<OffsetDateTime>, Problem> {
    value
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    format!("{name} must be an RFC 3339 timestamp"),
                )
            })
        })
        .transpose()
}

/// A parameter parsed with `FromStr`, answering 400 with `expected` when it does not parse.
pub(crate) fn parsed<T: std::str::FromStr>(
    value: Option<&str>,
    name: &str,
    expected: &str,
) -> Result<Option<T>, Problem> {
    value
        .map(|v| {
            v.parse::<T>().map_err(|_| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    format!("{name} must be {expected}"),
                )
            })
        })
        .transpose()
}

fn bad_cursor() -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid cursor: pass next_cursor from the previous page unchanged",
    )
}

/// Encodes a list position as an opaque token: base64url of `<unix micros>.<id>`.
/// A page of a list as the API answers it: `{"<key>": [...], "next_cursor": ...}`.
pub(crate) fn page_response<T: serde::Serialize>(
    key: &str,
    page: page::Page<T>,
) -> axum::response::Response {
    let mut body = serde_json::Map::new();
    body.insert(key.to_owned(), serde_json::json!(page.items));
    body.insert(
        "next_cursor".to_owned(),
        serde_json::json!(page.next.map(encode_cursor)),
    );
    tocsin_http::json_response(StatusCode::OK, &serde_json::Value::Object(body))
}

pub(crate) fn encode_cursor(cursor: Cursor) -> String {
    let micros = cursor.at.unix_timestamp_nanos() / 1000;
    URL_SAFE_NO_PAD.encode(format!("{micros}.{}", cursor.id))
}

/// Decodes a token made by [`encode_cursor`].
pub(crate) fn decode_cursor(token: Option<&str>) -> Result<Option<Cursor>, Problem> {
    let Some(token) = token else {
        return Ok(None);
    };
    let text = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad_cursor)?;
    let (micros, id) = text.split_once('.').ok_or_else(bad_cursor)?;
    let micros: i128 = micros.parse().map_err(|_| bad_cursor())?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(micros * 1000).map_err(|_| bad_cursor())?;
    let id = Uuid::parse_str(id).map_err(|_| bad_cursor())?;
    Ok(Some(Cursor { at, id }))
}

/// Encodes a timeline position (an event id) as an opaque token.
pub(crate) fn encode_event_cursor(after: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("e.{after}"))
}

/// Decodes a token made by [`encode_event_cursor`].
pub(crate) fn decode_event_cursor(token: Option<&str>) -> Result<Option<i64>, Problem> {
    let Some(token) = token else {
        return Ok(None);
    };
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| t.strip_prefix("e.").and_then(|n| n.parse().ok()))
        .map(Some)
        .ok_or_else(bad_cursor)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            at: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_000).unwrap(),
            id: Uuid::now_v7(),
        };
        let token = encode_cursor(cursor);
        assert_eq!(decode_cursor(Some(&token)).unwrap(), Some(cursor));
        assert_eq!(decode_cursor(None).unwrap(), None);
        for bad in ["", "!!", "bm9wZQ", &encode_event_cursor(3)] {
            assert_eq!(
                decode_cursor(Some(bad)).unwrap_err().status,
                StatusCode::BAD_REQUEST
            );
        }
        assert_eq!(
            decode_event_cursor(Some(&encode_event_cursor(42))).unwrap(),
            Some(42)
        );
        assert!(decode_event_cursor(Some(&token)).is_err());
        assert!(limit(Some(0)).is_err() && limit(Some(501)).is_err());
        assert_eq!(limit(None).unwrap(), 50);
    }
}
