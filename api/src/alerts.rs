//! Alerts: list (filters, cursor pagination) and one alert.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tocsin_http::{Problem, json_response};
use tocsin_proto::types::Severity;
use tocsin_store::alerts::AlertFilter;

use crate::common::{
    AppState, Caller, decode_cursor, limit, page_response, parse_id, parsed, query, store_problem,
    timestamp,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListAlerts {
    source: Option<String>,
    severity: Option<String>,
    since: Option<String>,
    case_id: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/alerts`.
pub(crate) async fn list_alerts(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<ListAlerts>, QueryRejection>,
) -> Result<Response, Problem> {
    let tenant = caller.tenant;
    let params = query(params)?;
    let filter = AlertFilter {
        source: params.source,
        severity: parsed::<Severity>(
            params.severity.as_deref(),
            "severity",
            "info, low, medium, high or critical",
        )?,
        since: timestamp(params.since.as_deref(), "since")?,
        case_id: params
            .case_id
            .as_deref()
            .map(|c| parse_id(c, "case"))
            .transpose()?,
    };
    let page = state
        .0
        .list_alerts(
            &tenant,
            &filter,
            decode_cursor(params.cursor.as_deref())?,
            limit(params.limit)?,
        )
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(page_response("alerts", page))
}

/// `GET /v1/alerts/{id}`.
pub(crate) async fn get_alert(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let tenant = caller.tenant;
    let id = parse_id(&id, "alert")?;
    let alert = state
        .0
        .alert_view(&tenant, id)
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(json_response(StatusCode::OK, &json!(alert)))
}
