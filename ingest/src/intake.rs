//! NATS intake: SIEMs publish raw events to `tocsin.ingest.<tenant>.<source>` (stream
//! `INGEST`), in the same formats `/v1/webhooks/<source>` takes (`alerts` or `generic` for
//! Tocsin's own format). Ingest consumes them, normalizes, publishes the alerts to `ALERTS`,
//! and acks only then. An event that cannot become alerts (unknown tenant or source,
//! malformed, invalid, too large) is recorded as a rejected event with the reason and acked,
//! never redelivered in a loop; a tenant over its rate or an unavailable `ALERTS` stream
//! delays the message (nak with a delay) instead. Redeliveries publish the same receipt ids
//! (derived from the stream sequence), so an alert is never counted twice.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use tocsin_core::Shutdown;
use tocsin_core::nats::{BoxError, DurablePull};
use tocsin_proto::{subjects, types};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::http::Inner;
use crate::limits::check_shape;
use crate::publish::publish_alerts;
use tracing::Instrument;

/// Source names of Tocsin's own format on an ingest subject.
const GENERIC_SOURCES: [&str; 2] = ["alerts", "generic"];

/// Messages handled at once.
const CONCURRENCY: usize = 32;

/// What became of one message.
#[derive(Debug)]
enum Outcome {
    /// Alerts published (or nothing to publish): ack.
    Accepted,
    /// Recorded as rejected: ack (never redelivered).
    Rejected(String),
    /// Try again later: nak with this delay.
    Later(Duration),
}

pub(crate) async fn consume(state: Arc<Inner>, config: crate::Config, shutdown: Shutdown) {
    let open_state = state.clone();
    let open_config = config.clone();
    let mut messages = DurablePull::new("ingest", move || {
        let js = open_state.js.clone();
        let config = open_config.clone();
        async move { open_consumer(&js, &config).await }
    });
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let tasks = shutdown.child();
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let Some(message) = messages.next(&shutdown).await else {
            break;
        };
        let state = state.clone();
        tasks.spawn("ingest-event", async move {
            handle(&state, message).await;
            drop(permit);
        });
    }
    if !tasks.wait_tasks(config.shutdown.grace).await {
        tracing::warn!("in-flight ingest events did not finish; they will be redelivered");
    }
}

async fn open_consumer(
    js: &jetstream::Context,
    config: &crate::Config,
) -> Result<pull::Stream, BoxError> {
    tocsin_core::nats::ensure_streams(js, &config.nats).await?;
    let stream = js.get_stream(subjects::INGEST_STREAM).await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(subjects::INGEST_CONSUMER.to_owned()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: i64::try_from(CONCURRENCY * 4).unwrap_or(i64::MAX),
            ..Default::default()
        })
        .await?;
    Ok(consumer
        .stream()
        .max_messages_per_batch(CONCURRENCY)
        .expires(Duration::from_secs(10))
        .heartbeat(Duration::from_secs(3))
        .messages()
        .await?)
}

async fn handle(state: &Inner, message: jetstream::Message) {
    let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
    let subject = message.subject.to_string();
    // Continues the publisher's trace when the SIEM sent `traceparent` in the headers.
    let span = tracing::info_span!(
        "ingest.nats",
        otel.name = "ingest: NATS intake",
        otel.kind = "consumer",
        messaging.destination.name = %subject,
        trace_id = tracing::field::Empty,
    );
    tocsin_core::trace::continue_from_nats(&span, message.headers.as_ref());
    let outcome = process(state, &subject, sequence, &message.payload)
        .instrument(span)
        .await;
    let ack = match &outcome {
        Outcome::Accepted => AckKind::Ack,
        Outcome::Rejected(reason) => {
            tracing::info!(%subject, %reason, "ingest event rejected");
            AckKind::Ack
        }
        Outcome::Later(delay) => AckKind::Nak(Some(*delay)),
    };
    if let Err(error) = message.ack_with(ack).await {
        // Redelivered after ack_wait; the receipt ids make that harmless.
        tracing::warn!(%error, %subject, "failed to settle an ingest event");
    }
}

async fn process(state: &Inner, subject: &str, sequence: u64, payload: &[u8]) -> Outcome {
    let Some((tenant, source)) = subjects::parse_ingest_subject(subject) else {
        return reject(
            state,
            None,
            subject,
            "",
            "subject is not tocsin.ingest.<tenant>.<source>",
            payload,
        )
        .await;
    };
    let tenant_known = types::is_valid_tenant_id(tenant)
        && match state.store.tenant_exists(tenant).await {
            Ok(known) => known,
            Err(error) => {
                tracing::warn!(%error, "tenant lookup failed; retrying the event later");
                return Outcome::Later(Duration::from_secs(2));
            }
        };
    if !tenant_known {
        return reject(
            state,
            None,
            subject,
            source,
            &format!("unknown tenant {tenant:?}"),
            payload,
        )
        .await;
    }
    if payload.len() > state.max_body_bytes {
        let reason = format!("event exceeds {} bytes", state.max_body_bytes);
        return reject(state, Some(tenant), subject, source, &reason, payload).await;
    }
    if let Err(e) = check_shape(payload, state.max_depth, state.max_values) {
        return reject(
            state,
            Some(tenant),
            subject,
            source,
            &e.to_string(),
            payload,
        )
        .await;
    }
    let normalized = if GENERIC_SOURCES.contains(&source) {
        crate::generic::parse_generic_body(payload, state.max_batch).map_err(|e| e.to_string())
    } else if crate::formats::canonical_source(source).is_some() {
        crate::formats::normalize(source, payload, state.max_batch)
            .map(|n| n.alerts)
            .map_err(|e| e.to_string())
    } else {
        match state.mappings.get(tenant, source).await {
            Ok(Some(active)) => crate::mapping::map_body(
                &active.mapping,
                source,
                &active.label,
                payload,
                state.max_batch,
            )
            .map_err(|(_, message)| message),
            Ok(None) => Err(format!(
                "unknown source {source:?}: no built-in format and no custom mapping"
            )),
            Err(error) => {
                tracing::warn!(%error, "custom mapping unavailable; retrying the event later");
                return Outcome::Later(Duration::from_secs(2));
            }
        }
    };
    let mut alerts = match normalized {
        Ok(alerts) => alerts,
        Err(reason) => return reject(state, Some(tenant), subject, source, &reason, payload).await,
    };
    if alerts.is_empty() {
        return Outcome::Accepted;
    }
    if let Err(wait) = state.limiter.take(tenant, alerts.len()) {
        return Outcome::Later(wait.max(Duration::from_millis(100)));
    }
    // Receipt ids derive from the stream sequence, so a redelivered message is recognized
    // downstream as the same delivery.
    crate::http::stamp(tenant, &mut alerts, |index| {
        Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("tocsin-ingest-stream:{sequence}:{index}").as_bytes(),
        )
        .to_string()
    });
    match publish_alerts(&state.nats, &state.js, &alerts).await {
        Ok(()) => {
            tracing::debug!(%tenant, count = alerts.len(), "ingest events accepted");
            Outcome::Accepted
        }
        Err(error) => {
            tracing::warn!(%error, %tenant, "alerts from the ingest stream not published; retrying later");
            Outcome::Later(Duration::from_secs(u64::from(
                state.retry_after_secs.max(1),
            )))
        }
    }
}

async fn reject(
    state: &Inner,
    tenant: Option<&str>,
    subject: &str,
    source: &str,
    reason: &str,
    payload: &[u8],
) -> Outcome {
    match state
        .store
        .record_rejected_event(tenant, subject, source, reason, payload)
        .await
    {
        Ok(()) => Outcome::Rejected(reason.to_owned()),
        Err(error) => {
            tracing::warn!(%error, "could not record a rejected event; retrying it later");
            Outcome::Later(Duration::from_secs(2))
        }
    }
}
