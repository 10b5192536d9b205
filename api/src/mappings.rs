//! Custom field mappings (admin to save, viewer to read): per source without a built-in
//! format, where each alert field is in the tenant's events. Validated on save (every problem
//! in one 400), versioned (each save is a new version; the newest applies, within
//! `ingest.key_cache_ttl` on every ingest instance), and named on each alert it produces.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use tocsin_http::{Problem, json_response};
use tocsin_ingest::mapping::{Mapping, check_source};

use crate::common::{AppState, Audit, Caller, json_body, store_problem};

/// Largest mapping document accepted.
const MAX_MAPPING_BYTES: usize = 64 * 1024;

/// `GET /v1/mappings`: the newest version of each mapping.
pub(crate) async fn list_mappings(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, Problem> {
    let items = state
        .0
        .list_mappings(&caller.tenant)
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(json_response(StatusCode::OK, &json!({ "items": items })))
}

/// `GET /v1/mappings/{source}`: the newest version and the history.
pub(crate) async fn get_mapping(
    State(state): State<AppState>,
    caller: Caller,
    Path(source): Path<String>,
) -> Result<Response, Problem> {
    let versions = state
        .0
        .mapping_versions(&caller.tenant, &source)
        .await
        .map_err(|e| store_problem(&e))?;
    let Some(current) = versions.first() else {
        return Err(Problem::not_found("mapping"));
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({ "current": current, "versions": versions }),
    ))
}

/// `PUT /v1/mappings/{source}`: validates and saves a new version.
pub(crate) async fn put_mapping(
    State(state): State<AppState>,
    caller: Caller,
    Path(source): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, Problem> {
    check_source(&source).map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e))?;
    let doc = json_body(body)?;
    if doc.to_string().len() > MAX_MAPPING_BYTES {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "a mapping is at most 64 KiB",
        ));
    }
    if let Err(problems) = Mapping::parse(&doc) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("invalid mapping: {}", problems.join("; ")),
        ));
    }
    let before = state
        .0
        .mapping(&caller.tenant, &source)
        .await
        .map_err(|e| store_problem(&e))?
        .map(|m| m.version);
    let saved = state
        .0
        .put_mapping(&caller.tenant, &source, &doc, &caller.actor)
        .await
        .map_err(|e| store_problem(&e))?;
    let body = serde_json::to_value(&saved).unwrap_or(Value::Null);
    let mut response = json_response(StatusCode::OK, &body);
    response.extensions_mut().insert(Audit {
        target: format!("mapping:{source}"),
        before: before.map(|v| json!({ "version": v })),
        after: Some(json!({ "version": saved.version, "mapping": doc })),
    });
    Ok(response)
}
