//! HTTP surface: `POST /v1/alerts`, `POST /v1/webhooks/{source}`, `GET /healthz`,
//! `GET /readyz`, and the Splunk HEC routes of [`crate::hec`].

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::json;
use time::OffsetDateTime;
use tocsin_http::{Problem, bearer, json_response};
use tocsin_proto::types;
use uuid::Uuid;

use crate::Config;
use crate::auth::KeyResolver;
use crate::formats::{self, FormatError};
use crate::generic::{BodyError, parse_generic_body};
use crate::publish::{PublishError, publish_alerts};

#[derive(Clone)]
pub(crate) struct AppState(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    pub(crate) keys: KeyResolver,
    store: tocsin_store::Store,
    max_body_bytes: usize,
    pub(crate) max_batch: usize,
    pub(crate) retry_after_secs: u32,
}

impl AppState {
    pub(crate) fn new(
        config: &Config,
        nats: async_nats::Client,
        js: async_nats::jetstream::Context,
        store: tocsin_store::Store,
    ) -> Self {
        Self(Arc::new(Inner {
            nats,
            js,
            keys: KeyResolver::new(store.clone(), config.ingest.key_cache_ttl),
            store,
            max_body_bytes: config.ingest.max_body_bytes,
            max_batch: config.ingest.max_batch,
            retry_after_secs: config.ingest.retry_after_secs,
        }))
    }
}

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/alerts", post(post_alerts))
        .route("/v1/webhooks/{source}", post(post_webhook))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(crate::hec::routes())
        .with_state(state)
}

fn unavailable(state: &Inner, detail: &str) -> Problem {
    Problem::unavailable(detail, state.retry_after_secs)
}

fn stream_unavailable(state: &Inner) -> Problem {
    unavailable(
        state,
        "alert stream unavailable; retry later (a retried alert is deduplicated)",
    )
}

/// `POST /v1/alerts`: Tocsin's generic format.
async fn post_alerts(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let state = &state.0;
    let tenant = authenticate(state, &headers).await?;
    let bytes = read_body(state, &headers, body).await?;
    let alerts = parse_generic_body(&bytes, state.max_batch).map_err(|e| match e {
        BodyError::TooMany { .. } => Problem::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        BodyError::Invalid(inner) => Problem {
            line: inner.line(),
            ..Problem::new(StatusCode::BAD_REQUEST, inner.to_string())
        },
    })?;
    let ids = accept(state, &tenant, alerts)
        .await
        .map_err(|_| stream_unavailable(state))?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({ "alert_ids": ids }),
    ))
}

/// `POST /v1/webhooks/{source}`: a product's own payload (one event, an array, NDJSON, or
/// the product's envelope), normalized by that source's format.
async fn post_webhook(
    State(state): State<AppState>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let state = &state.0;
    if formats::canonical_source(&source).is_none() {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            format!(
                "unknown source {source:?}; known sources: {}",
                formats::sources().join(", ")
            ),
        ));
    }
    let tenant = authenticate(state, &headers).await?;
    let bytes = read_body(state, &headers, body).await?;
    let normalized =
        formats::normalize(&source, &bytes, state.max_batch).map_err(|e| match &e {
            FormatError::UnknownSource { .. } => Problem::new(StatusCode::NOT_FOUND, e.to_string()),
            FormatError::TooMany { .. } => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
            }
            FormatError::Malformed { line, .. } => Problem {
                line: Some(*line),
                ..Problem::new(StatusCode::BAD_REQUEST, e.to_string())
            },
            FormatError::InvalidEvent { index, .. } => Problem {
                line: Some(*index),
                ..Problem::new(StatusCode::BAD_REQUEST, e.to_string())
            },
            FormatError::Empty => Problem::new(StatusCode::BAD_REQUEST, e.to_string()),
        })?;
    let skipped = normalized.skipped;
    let ids = accept(state, &tenant, normalized.alerts)
        .await
        .map_err(|_| stream_unavailable(state))?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({ "alert_ids": ids, "skipped": skipped }),
    ))
}

/// The tenant of the request's ingest key.
async fn authenticate(state: &Inner, headers: &HeaderMap) -> Result<String, Problem> {
    let Some(key) = bearer(headers) else {
        return Err(Problem::unauthorized(
            "missing ingest key: send Authorization: Bearer <ingest key>",
        ));
    };
    match state.keys.resolve(key).await {
        Ok(Some(tenant)) => Ok(tenant),
        Ok(None) => Err(Problem::unauthorized("invalid ingest key")),
        Err(error) => {
            tracing::warn!(%error, "ingest key lookup failed");
            Err(unavailable(state, "key store unavailable; retry later"))
        }
    }
}

/// A request body past `ingest.max_body_bytes` (declared or actual): answered 413.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request body exceeds {max} bytes")]
pub(crate) struct BodyTooLarge {
    /// The limit.
    pub(crate) max: usize,
}

impl From<BodyTooLarge> for Problem {
    fn from(e: BodyTooLarge) -> Self {
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
    }
}

/// The body, refused past the limit (declared or actual).
pub(crate) async fn read_body(
    state: &Inner,
    headers: &HeaderMap,
    body: Body,
) -> Result<bytes::Bytes, BodyTooLarge> {
    let too_large = BodyTooLarge {
        max: state.max_body_bytes,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > state.max_body_bytes) {
        return Err(too_large);
    }
    to_bytes(body, state.max_body_bytes)
        .await
        .map_err(|_| too_large)
}

/// Stamps tenant, ids and receipt time on normalized alerts and publishes them; returns the
/// alert ids once JetStream acknowledged every one (the caller answers 503 otherwise).
pub(crate) async fn accept(
    state: &Inner,
    tenant: &str,
    mut alerts: Vec<tocsin_proto::v1::Alert>,
) -> Result<Vec<String>, PublishError> {
    let received_at_ms =
        i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
            .unwrap_or(i64::MAX);
    let mut ids = Vec::with_capacity(alerts.len());
    for alert in &mut alerts {
        let id = types::alert_id(tenant, &alert.source, &alert.source_ref);
        alert.id = id.to_string();
        tenant.clone_into(&mut alert.tenant);
        alert.received_at_ms = received_at_ms;
        alert.receipt_id = Uuid::now_v7().to_string();
        ids.push(alert.id.clone());
    }
    if let Err(error) = publish_alerts(&state.nats, &state.js, &alerts).await {
        tracing::warn!(%tenant, count = alerts.len(), error = %error, "alerts not accepted: jetstream unavailable");
        return Err(error);
    }
    tracing::debug!(%tenant, count = ids.len(), "alerts accepted");
    Ok(ids)
}

async fn readyz(State(state): State<AppState>) -> Response {
    let nats_ok = state.0.nats.connection_state() == async_nats::connection::State::Connected;
    let pg_ok = state.0.store.ping().await.is_ok();
    let status = if nats_ok && pg_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &json!({ "nats": nats_ok, "postgres": pg_ok }))
}
