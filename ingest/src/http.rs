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
use crate::limits::{RateLimiter, ShapeError, check_shape};
use crate::publish::{PublishError, publish_alerts};
use crate::signature::{SignatureError, SigningCache, parse_headers, verify};

#[derive(Clone)]
pub(crate) struct AppState(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) nats: async_nats::Client,
    pub(crate) js: async_nats::jetstream::Context,
    pub(crate) keys: KeyResolver,
    pub(crate) store: tocsin_store::Store,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_batch: usize,
    pub(crate) retry_after_secs: u32,
    pub(crate) max_depth: usize,
    pub(crate) max_values: usize,
    body_timeout: std::time::Duration,
    pub(crate) limiter: RateLimiter,
    pub(crate) mappings: crate::mapping::MappingCache,
    signing: SigningCache,
    signature_tolerance_secs: i64,
}

impl AppState {
    pub(crate) fn new(
        config: &Config,
        nats: async_nats::Client,
        js: async_nats::jetstream::Context,
        store: tocsin_store::Store,
        master: Option<tocsin_store::secrets::MasterKey>,
    ) -> Self {
        Self(Arc::new(Inner {
            signing: SigningCache::new(store.clone(), master, config.ingest.key_cache_ttl),
            mappings: crate::mapping::MappingCache::new(store.clone(), config.ingest.key_cache_ttl),
            signature_tolerance_secs: i64::try_from(config.ingest.signature_tolerance.as_secs())
                .unwrap_or(i64::MAX),
            nats,
            js,
            keys: KeyResolver::new(store.clone(), config.ingest.key_cache_ttl),
            store,
            max_body_bytes: config.ingest.max_body_bytes,
            max_batch: config.ingest.max_batch,
            retry_after_secs: config.ingest.retry_after_secs,
            max_depth: config.ingest.max_depth,
            max_values: config.ingest.max_values,
            body_timeout: config.ingest.body_timeout,
            limiter: RateLimiter::new(
                config.ingest.rate_limit_per_sec,
                config.ingest.rate_limit_burst,
                config.ingest.tenant_rate_limits.clone(),
            ),
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
        .route_layer(axum::middleware::from_fn(track))
        .route_layer(axum::middleware::from_fn(tocsin_http::traced))
        .with_state(state)
}

/// Counts every request and its latency by route template and status.
async fn track(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let start = std::time::Instant::now();
    let response = next.run(request).await;
    let metrics = tocsin_core::metrics::registry();
    metrics.observe(
        "tocsin_ingest_request_duration_seconds",
        "Ingest request latency (to the answer, PubAcks included), by route",
        &["route"],
        &[&route],
        start.elapsed().as_secs_f64(),
    );
    metrics.inc_by(
        "tocsin_ingest_requests_total",
        "Ingest requests by route and status code",
        &["route", "code"],
        &[&route, response.status().as_str()],
        1.0,
    );
    response
}

fn unavailable(state: &Inner, detail: &str) -> Problem {
    Problem::unavailable(detail, state.retry_after_secs)
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
    let receipt = check_signature(state, &tenant, &headers, &bytes).await?;
    let alerts = parse_generic_body(&bytes, state.max_batch).map_err(|e| match e {
        BodyError::TooMany { .. } => Problem::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        BodyError::Invalid(inner) => Problem {
            line: inner.line(),
            ..Problem::new(StatusCode::BAD_REQUEST, inner.to_string())
        },
    })?;
    let ids = accept_signed(state, &tenant, alerts, receipt.as_deref()).await?;
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
    let built_in = formats::canonical_source(&source).is_some();
    if !built_in && !crate::generic::is_valid_source(&source) {
        return Err(unknown_source(&source));
    }
    let tenant = authenticate(state, &headers).await?;
    let bytes = read_body(state, &headers, body).await?;
    let receipt = check_signature(state, &tenant, &headers, &bytes).await?;
    if !built_in {
        // A source without a built-in format: the tenant's custom mapping, if it has one.
        let Some(active) = state
            .mappings
            .get(&tenant, &source)
            .await
            .map_err(|error| {
                tracing::error!(%tenant, %source, %error, "custom mapping unusable");
                unavailable(state, "the custom mapping could not be loaded; retry later")
            })?
        else {
            return Err(unknown_source(&source));
        };
        let alerts = crate::mapping::map_body(
            &active.mapping,
            &source,
            &active.label,
            &bytes,
            state.max_batch,
        )
        .map_err(|(line, message)| Problem {
            line,
            ..Problem::new(StatusCode::BAD_REQUEST, message)
        })?;
        let ids = accept_signed(state, &tenant, alerts, receipt.as_deref()).await?;
        return Ok(json_response(
            StatusCode::ACCEPTED,
            &json!({ "alert_ids": ids, "skipped": [], "mapping": active.label }),
        ));
    }
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
    let ids = accept_signed(state, &tenant, normalized.alerts, receipt.as_deref()).await?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({ "alert_ids": ids, "skipped": skipped }),
    ))
}

fn unknown_source(source: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        format!(
            "unknown source {source:?}: no built-in format ({}) and no custom mapping of this \
             tenant (PUT /v1/mappings/{{source}})",
            formats::sources().join(", ")
        ),
    )
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

/// Why a request body was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReadBodyError {
    /// Past `ingest.max_body_bytes` (declared or actual): 413.
    #[error("request body exceeds {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// Not all there within `ingest.body_timeout`: 408.
    #[error("the request body did not arrive within {secs} s")]
    Timeout {
        /// The limit.
        secs: u64,
    },
    /// Nested too deep or too many values: 400.
    #[error(transparent)]
    Shape(#[from] ShapeError),
}

impl From<ReadBodyError> for Problem {
    fn from(e: ReadBodyError) -> Self {
        let status = match e {
            ReadBodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ReadBodyError::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ReadBodyError::Shape(_) => StatusCode::BAD_REQUEST,
        };
        Problem::new(status, e.to_string())
    }
}

/// The body: refused past the size limit (declared or actual), when it arrives too slowly,
/// and when its shape (depth, number of values) is past the limits — before any parsing.
pub(crate) async fn read_body(
    state: &Inner,
    headers: &HeaderMap,
    body: Body,
) -> Result<bytes::Bytes, ReadBodyError> {
    let too_large = ReadBodyError::TooLarge {
        max: state.max_body_bytes,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > state.max_body_bytes) {
        return Err(too_large);
    }
    let bytes = match tokio::time::timeout(state.body_timeout, to_bytes(body, state.max_body_bytes))
        .await
    {
        Ok(result) => result.map_err(|_| too_large)?,
        Err(_) => {
            return Err(ReadBodyError::Timeout {
                secs: state.body_timeout.as_secs(),
            });
        }
    };
    check_shape(&bytes, state.max_depth, state.max_values)?;
    Ok(bytes)
}

/// Verifies a signed request (Standard Webhooks) against the tenant's signing secrets, and
/// refuses an unsigned one when the tenant requires signatures. Returns the message id of a
/// signed request, for [`accept_signed`].
async fn check_signature(
    state: &Inner,
    tenant: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<String>, Problem> {
    let refused = |e: SignatureError| Problem::unauthorized(e.to_string());
    let signed = parse_headers(headers).map_err(refused)?;
    let signing = match state.signing.get(tenant).await {
        Ok(s) => s,
        Err(tocsin_store::secrets::SecretError::Store(error)) => {
            tracing::warn!(%error, "webhook signing lookup failed");
            return Err(unavailable(state, "key store unavailable; retry later"));
        }
        Err(error) => {
            tracing::error!(%tenant, %error, "webhook signing secrets do not open");
            return Err(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the tenant's webhook secrets cannot be read with this deployment's master key",
            ));
        }
    };
    let Some(signed) = signed else {
        if signing.require_signatures {
            return Err(refused(SignatureError::Missing(
                "all three: this tenant requires signed webhooks",
            )));
        }
        return Ok(None);
    };
    if signing.keys.is_empty() && !state.signing.has_master_key() {
        return Err(unavailable(
            state,
            "this ingest instance has no master key to verify webhook signatures",
        ));
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    verify(
        &signed,
        body,
        &signing.keys,
        now,
        state.signature_tolerance_secs,
    )
    .map_err(refused)?;
    Ok(Some(signed.id))
}

/// [`accept`], refusing a replayed message id of a signed request (409) and forgetting the
/// id again when the alerts could not be accepted, so that the sender's retry passes.
async fn accept_signed(
    state: &Inner,
    tenant: &str,
    alerts: Vec<tocsin_proto::v1::Alert>,
    message_id: Option<&str>,
) -> Result<Vec<String>, Problem> {
    let Some(message_id) = message_id else {
        return accept(state, tenant, alerts)
            .await
            .map_err(|e| e.problem(state));
    };
    match state.store.record_webhook_receipt(tenant, message_id).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                format!("webhook message {message_id} was accepted before (replay refused)"),
            ));
        }
        Err(error) => {
            tracing::warn!(%error, "webhook receipt could not be recorded");
            return Err(unavailable(state, "key store unavailable; retry later"));
        }
    }
    let result = accept(state, tenant, alerts)
        .await
        .map_err(|e| e.problem(state));
    if result.is_err()
        && let Err(error) = state.store.forget_webhook_receipt(tenant, message_id).await
    {
        tracing::warn!(%error, "webhook receipt could not be forgotten; a retry will get 409");
    }
    result
}

/// Stamps tenant, deterministic alert ids, the receipt time and a receipt id (`receipt` of
/// the alert's index) on normalized alerts; returns the alert ids in order.
pub(crate) fn stamp(
    tenant: &str,
    alerts: &mut [tocsin_proto::v1::Alert],
    receipt: impl Fn(usize) -> String,
) -> Vec<String> {
    let received_at_ms =
        i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
            .unwrap_or(i64::MAX);
    alerts
        .iter_mut()
        .enumerate()
        .map(|(index, alert)| {
            alert.id = types::alert_id(tenant, &alert.source, &alert.source_ref).to_string();
            tenant.clone_into(&mut alert.tenant);
            alert.received_at_ms = received_at_ms;
            alert.receipt_id = receipt(index);
            alert.id.clone()
        })
        .collect()
}

/// Why alerts were not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AcceptError {
    /// The tenant is over its alert rate: retry after this many seconds.
    #[error("tenant over its alert rate; retry after {retry_after_secs} s")]
    RateLimited {
        /// When to retry.
        retry_after_secs: u32,
    },
    /// JetStream did not acknowledge them.
    #[error(transparent)]
    Unavailable(#[from] PublishError),
}

impl AcceptError {
    /// The answer of the Tocsin endpoints (429 or 503, with `Retry-After`).
    fn problem(&self, state: &Inner) -> Problem {
        match self {
            AcceptError::RateLimited { retry_after_secs } => Problem {
                retry_after: Some(*retry_after_secs),
                ..Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "tenant over its alert rate; retry after {retry_after_secs} s (nothing of this request was accepted)"
                    ),
                )
            },
            AcceptError::Unavailable(_) => unavailable(
                state,
                "alert stream unavailable; retry later (a retried alert is deduplicated)",
            ),
        }
    }
}

/// Stamps tenant, ids and receipt time on normalized alerts and publishes them; returns the
/// alert ids once JetStream acknowledged every one. Refused whole when the tenant is over
/// its rate.
pub(crate) async fn accept(
    state: &Inner,
    tenant: &str,
    mut alerts: Vec<tocsin_proto::v1::Alert>,
) -> Result<Vec<String>, AcceptError> {
    let count = |outcome: &str, alerts: &[tocsin_proto::v1::Alert]| {
        // One registry update per source, not per alert: batches hold up to max_batch.
        let mut per_source = std::collections::BTreeMap::<&str, f64>::new();
        for alert in alerts {
            *per_source.entry(alert.source.as_str()).or_default() += 1.0;
        }
        let metrics = tocsin_core::metrics::registry();
        for (source, n) in per_source {
            metrics.inc_by(
                "tocsin_ingest_alerts_total",
                "Alerts ingest handled, by tenant, source and outcome",
                &["tenant", "source", "outcome"],
                &[tenant, source, outcome],
                n,
            );
        }
    };
    if let Err(wait) = state.limiter.take(tenant, alerts.len()) {
        count("rate_limited", &alerts);
        let retry_after_secs = u32::try_from(wait.as_secs().saturating_add(1)).unwrap_or(u32::MAX);
        tracing::debug!(%tenant, count = alerts.len(), retry_after_secs, "tenant over its alert rate");
        return Err(AcceptError::RateLimited { retry_after_secs });
    }
    let ids = stamp(tenant, &mut alerts, |_| Uuid::now_v7().to_string());
    if let Err(error) = publish_alerts(&state.nats, &state.js, &alerts).await {
        tracing::warn!(%tenant, count = alerts.len(), error = %error, "alerts not accepted: jetstream unavailable");
        count("unavailable", &alerts);
        return Err(error.into());
    }
    count("accepted", &alerts);
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
