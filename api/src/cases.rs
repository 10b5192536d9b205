//! Cases: list with filters and cursor pagination, the case view, analyst updates
//! (optimistic concurrency: a stale `version` answers 409), comments, and the timeline.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Deserializer};
use serde_json::json;
use tocsin_http::{Problem, json_response};
use tocsin_proto::types::Severity;
use tocsin_store::cases::{
    CaseFilter, CaseStatus, CaseUpdate, CaseUpdateError, Determination, MAX_COMMENT_LEN,
};

use crate::common::{
    AppState, Caller, decode_cursor, decode_event_cursor, encode_event_cursor, json_body, limit,
    page_response, parse_id, parsed, query, store_problem, timestamp,
};

const STATUSES: &str = "new, in_progress, resolved or closed";
const SEVERITIES: &str = "info, low, medium, high or critical";
const DETERMINATIONS: &str = "true_positive, false_positive or benign";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListCases {
    status: Option<String>,
    severity: Option<String>,
    assignee: Option<String>,
    tag: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/cases`.
pub(crate) async fn list_cases(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<ListCases>, QueryRejection>,
) -> Result<Response, Problem> {
    let tenant = caller.tenant;
    let params = query(params)?;
    let filter = CaseFilter {
        status: parsed::<CaseStatus>(params.status.as_deref(), "status", STATUSES)?,
        severity: parsed::<Severity>(params.severity.as_deref(), "severity", SEVERITIES)?,
        assignee: params.assignee,
        tag: params.tag,
        since: timestamp(params.since.as_deref(), "since")?,
        until: timestamp(params.until.as_deref(), "until")?,
    };
    let page = state
        .0
        .list_cases(
            &tenant,
            &filter,
            decode_cursor(params.cursor.as_deref())?,
            limit(params.limit)?,
        )
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(page_response("cases", page))
}

/// `GET /v1/cases/{id}`.
pub(crate) async fn get_case(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let tenant = caller.tenant;
    let id = parse_id(&id, "case")?;
    let case = state
        .0
        .case_detail(&tenant, id)
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(json_response(StatusCode::OK, &json!(case)))
}

/// Absent stays `None`; `null` becomes `Some(None)`.
fn nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchCase {
    version: i32,
    status: Option<String>,
    determination: Option<String>,
    severity: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    assignee: Option<Option<String>>,
    tags: Option<Vec<String>>,
}

/// `PATCH /v1/cases/{id}`.
pub(crate) async fn patch_case(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<PatchCase>, JsonRejection>,
) -> Result<Response, Problem> {
    let id = parse_id(&id, "case")?;
    let patch = json_body(body)?;
    let update = CaseUpdate {
        version: patch.version,
        status: parsed(patch.status.as_deref(), "status", STATUSES)?,
        determination: parsed::<Determination>(
            patch.determination.as_deref(),
            "determination",
            DETERMINATIONS,
        )?,
        severity: parsed(patch.severity.as_deref(), "severity", SEVERITIES)?,
        assignee: patch.assignee,
        tags: patch.tags,
    };
    if update.status.is_none()
        && update.determination.is_none()
        && update.severity.is_none()
        && update.assignee.is_none()
        && update.tags.is_none()
    {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "nothing to change: send status, determination, severity, assignee or tags",
        ));
    }
    match state
        .0
        .update_case(&caller.tenant, id, &update, &caller.actor)
        .await
    {
        Ok(case) => Ok(json_response(StatusCode::OK, &json!(case))),
        Err(CaseUpdateError::NotFound) => Err(Problem::not_found("case")),
        Err(e @ (CaseUpdateError::Stale { .. } | CaseUpdateError::Transition { .. })) => {
            Err(Problem::new(
                StatusCode::CONFLICT,
                format!("{e}; reload the case and retry"),
            ))
        }
        Err(CaseUpdateError::Invalid(why)) => Err(Problem::new(StatusCode::BAD_REQUEST, why)),
        Err(CaseUpdateError::Store(e)) => Err(store_problem(&e)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewComment {
    text: String,
}

/// `POST /v1/cases/{id}/comments`.
pub(crate) async fn comment_case(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<NewComment>, JsonRejection>,
) -> Result<Response, Problem> {
    let id = parse_id(&id, "case")?;
    let comment = json_body(body)?;
    let text = comment.text.trim();
    if text.is_empty() || text.len() > MAX_COMMENT_LEN {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("text must be 1-{MAX_COMMENT_LEN} bytes"),
        ));
    }
    let event = state
        .0
        .comment_case(&caller.tenant, id, text, &caller.actor)
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(json_response(StatusCode::CREATED, &json!(event)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TimelineParams {
    cursor: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/cases/{id}/timeline`.
pub(crate) async fn case_timeline(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<TimelineParams>, QueryRejection>,
) -> Result<Response, Problem> {
    let tenant = caller.tenant;
    let id = parse_id(&id, "case")?;
    let params = query(params)?;
    let page = state
        .0
        .case_timeline(
            &tenant,
            id,
            decode_event_cursor(params.cursor.as_deref())?,
            limit(params.limit)?,
        )
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "events": page.events,
            "next_cursor": page.next_after.map(encode_event_cursor),
        }),
    ))
}
