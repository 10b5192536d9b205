//! Observables: list (filter by type and value prefix, cursor pagination) and one
//! observable with the cases it appears in.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tocsin_http::{Problem, json_response};
use tocsin_store::observables::ObservableFilter;

use crate::common::{
    AppState, Caller, decode_cursor, limit, page_response, parse_id, query, store_problem,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListObservables {
    #[serde(rename = "type")]
    kind: Option<String>,
    value: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/observables`.
pub(crate) async fn list_observables(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<ListObservables>, QueryRejection>,
) -> Result<Response, Problem> {
    let tenant = caller.tenant;
    let params = query(params)?;
    if let Some(kind) = params.kind.as_deref()
        && !tocsin_proto::types::OBSERVABLE_TYPES.contains(&kind)
    {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "type must be ip, domain, url, hash, email, user or host",
        ));
    }
    let filter = ObservableFilter {
        kind: params.kind,
        value_prefix: params.value.filter(|v| !v.is_empty()),
    };
    let page = state
        .0
        .list_observables(
            &tenant,
            &filter,
            decode_cursor(params.cursor.as_deref())?,
            limit(params.limit)?,
        )
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(page_response("observables", page))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ObservableParams {
    case_id: Option<String>,
}

/// `GET /v1/observables/{id}`.
pub(crate) async fn get_observable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<ObservableParams>, QueryRejection>,
) -> Result<Response, Problem> {
    let tenant = caller.tenant;
    let id = parse_id(&id, "observable")?;
    let params = query(params)?;
    let relative_to = params
        .case_id
        .as_deref()
        .map(|c| parse_id(c, "case"))
        .transpose()?;
    let detail = state
        .0
        .observable_detail(&tenant, id, relative_to)
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(json_response(StatusCode::OK, &json!(detail)))
}
