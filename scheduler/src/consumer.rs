//! The ALERTS consumer loop and the handling of one alert.

use std::sync::Arc;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use prost::Message;
use time::OffsetDateTime;
use tocsin_core::{ErrorClass, Shutdown};
use tocsin_proto::types::{self, Severity};
use tocsin_proto::{subjects, v1};
use tocsin_store::Store;
use tocsin_store::alerts::{AlertOutcome, NewAlert, NewRun};
use tokio::sync::Semaphore;
use tracing::Instrument;
use uuid::Uuid;

use crate::playbooks::PlaybookCache;
use crate::when::alert_view;
use crate::{Config, SchedulerError};

/// Handling one alert failed.
#[derive(Debug, thiserror::Error)]
enum HandleError {
    /// The message is not a valid alert; redelivering cannot help.
    #[error("malformed alert message: {0}")]
    Malformed(String),
    /// Postgres failed.
    #[error(transparent)]
    Store(#[from] tocsin_store::StoreError),
    /// A run job could not be published (RUNS full or NATS down).
    #[error("failed to publish run job")]
    Publish(#[source] async_nats::jetstream::context::PublishError),
}

impl HandleError {
    fn class(&self) -> ErrorClass {
        match self {
            HandleError::Malformed(_) => ErrorClass::Permanent,
            HandleError::Store(e) => e.class(),
            HandleError::Publish(_) => ErrorClass::Retryable {
                delay: std::time::Duration::from_secs(2),
            },
        }
    }
}

struct Ctx {
    js: jetstream::Context,
    store: Store,
    playbooks: Arc<PlaybookCache>,
    max_deliver: i64,
}

pub(crate) async fn consume(
    config: &Config,
    js: jetstream::Context,
    store: Store,
    shutdown: &Shutdown,
) -> Result<(), SchedulerError> {
    let concurrency = config.scheduler.concurrency;
    let open_js = js.clone();
    let mut messages = tocsin_core::nats::DurablePull::new("scheduler", || {
        let js = open_js.clone();
        async move { open_consumer(&js, config).await }
    });
    let playbooks = Arc::new(PlaybookCache::new(
        store.clone(),
        config.scheduler.playbook_cache_ttl,
    ));
    let follower = shutdown.spawn(
        "playbook-changes",
        crate::playbooks::follow_changes(playbooks.clone(), shutdown.clone()),
    );
    let ctx = Arc::new(Ctx {
        js,
        max_deliver: config.scheduler.max_deliver,
        playbooks,
        store,
    });
    let limit = Arc::new(Semaphore::new(concurrency));
    let tasks = shutdown.child();
    tracing::info!(concurrency, "scheduler consuming alerts");
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let Some(message) = messages.next(shutdown).await else {
            break;
        };
        let ctx = ctx.clone();
        tasks.spawn("alert", async move {
            handle_message(&ctx, message).await;
            drop(permit);
        });
    }
    follower.abort();
    // Stop intake, then let in-flight alerts finish (each acks or naks itself).
    if !tasks.wait_tasks(config.shutdown.grace).await {
        tracing::warn!(
            "in-flight alerts did not finish within the grace period; they will be redelivered"
        );
    }
    Ok(())
}

/// Makes sure the ALERTS stream and the scheduler's durable consumer exist (creating or
/// updating them) and opens a pull stream on it.
async fn open_consumer(
    js: &jetstream::Context,
    config: &Config,
) -> Result<pull::Stream, tocsin_core::nats::BoxError> {
    tocsin_core::nats::ensure_streams(js, &config.nats).await?;
    let stream = js.get_stream(subjects::ALERTS_STREAM).await?;
    let concurrency = config.scheduler.concurrency;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(subjects::SCHEDULER_CONSUMER.to_owned()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: config.scheduler.ack_wait,
            // Shared by every replica; each bounds its own concurrency with its semaphore.
            max_ack_pending: config.scheduler.max_ack_pending,
            max_deliver: config.scheduler.max_deliver,
            ..Default::default()
        })
        .await?;
    Ok(open_stream(&consumer, concurrency).await?)
}

/// Pull requests expire and heartbeat quickly so that a restarted server is noticed within
/// seconds (a lost pull request is only replaced after a missed heartbeat).
async fn open_stream(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    batch: usize,
) -> Result<pull::Stream, jetstream::consumer::StreamError> {
    consumer
        .stream()
        .max_messages_per_batch(batch.min(256))
        .expires(std::time::Duration::from_secs(10))
        .heartbeat(std::time::Duration::from_secs(3))
        .messages()
        .await
}

async fn handle_message(ctx: &Ctx, message: jetstream::Message) {
    // One span per delivery, continuing the trace ingest started (NATS headers).
    let span = tracing::info_span!(
        "scheduler.alert",
        otel.name = "scheduler: match alert",
        otel.kind = "consumer",
        tenant = tracing::field::Empty,
        alert_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    tocsin_core::trace::continue_from_nats(&span, message.headers.as_ref());
    settle(ctx, message).instrument(span).await;
}

async fn settle(ctx: &Ctx, message: jetstream::Message) {
    let result = handle_alert(ctx, &message.payload).await;
    let ack = match &result {
        Ok(()) => AckKind::Ack,
        Err(error) => {
            let delivered = message.info().map(|i| i.delivered).unwrap_or(0);
            let class = match error.class() {
                ErrorClass::Retryable { .. } if delivered >= ctx.max_deliver => {
                    ErrorClass::Permanent
                }
                class => class,
            };
            if class == ErrorClass::Permanent {
                // Never silently gone: keep the message and the reason in Postgres first.
                let reason = format!("{error} (after {delivered} deliveries)");
                tracing::error!(%reason, "alert dead-lettered");
                let letter = tocsin_store::dispatch::DeadLetter {
                    tenant: None,
                    stream: subjects::ALERTS_STREAM,
                    subject: message.subject.as_str(),
                    payload: message.payload.as_ref(),
                    reason: &reason,
                    deliveries: i32::try_from(delivered).unwrap_or(i32::MAX),
                };
                if let Err(e) = ctx.store.record_dead_letter(&letter).await {
                    tracing::error!(error = %e, "failed to record dead letter; alert left for redelivery");
                    return;
                }
            } else {
                tracing::warn!(%error, ?class, delivered, "alert will be retried");
            }
            class.ack_kind()
        }
    };
    if let Err(error) = message.ack_with(ack).await {
        tracing::warn!(%error, "failed to ack alert; it will be redelivered");
    }
}

async fn handle_alert(ctx: &Ctx, payload: &[u8]) -> Result<(), HandleError> {
    let mut alert = decode_alert(payload)?;
    let span = tracing::Span::current();
    span.record("tenant", alert.tenant.as_str());
    span.record("alert_id", tracing::field::display(alert.id));
    alert.trace_id = tocsin_core::trace::trace_id(&span);
    // The runs' spans continue from this one, on every (re)dispatch.
    let traceparent = tocsin_core::trace::traceparent(&span);
    let deployed = ctx.playbooks.get(&alert.tenant).await?;
    let view = alert_view(&alert);
    // Why each playbook matched or not, kept on the alert ("why hasn't it started?").
    let verdicts: Vec<(&crate::playbooks::Candidate, Option<String>)> = deployed
        .playbooks
        .iter()
        .map(|c| {
            let why = if c.meta.trigger != "alert" {
                Some(format!("trigger is {}", c.meta.trigger))
            } else if !c.meta.enabled {
                Some("disabled".to_owned())
            } else if !c.meta.applies_to(&alert.tenant) {
                Some("does not apply to this tenant".to_owned())
            } else {
                c.when.mismatch(&view)
            };
            (c, why)
        })
        .collect();
    alert.match_report = Some(serde_json::json!({
        "bundle_hash": if deployed.bundle_hash.is_empty() { None } else { Some(&deployed.bundle_hash) },
        "playbooks": verdicts.iter().map(|(c, why)| serde_json::json!({
            "playbook": c.meta.name,
            "matched": why.is_none(),
            "reason": why,
        })).collect::<Vec<_>>(),
    }));
    let runs: Vec<NewRun> = verdicts
        .iter()
        .filter(|(_, why)| why.is_none())
        .map(|(c, _)| NewRun {
            id: types::run_id(alert.id, &c.meta.name),
            playbook: c.meta.name.clone(),
            bundle_hash: deployed.bundle_hash.clone(),
            priority: c.meta.priority.clone(),
            traceparent: traceparent.clone(),
        })
        .collect();
    let outcome = ctx.store.record_alert(&alert, &runs).await?;
    let (kind, queued) = match &outcome {
        AlertOutcome::New { grouped, runs, .. } => {
            (if *grouped { "grouped" } else { "new_case" }, runs.len())
        }
        AlertOutcome::Duplicate { .. } => ("duplicate", 0),
        AlertOutcome::Redelivered { .. } => ("redelivered", 0),
    };
    let metrics = tocsin_core::metrics::registry();
    metrics.inc_by(
        "tocsin_scheduler_alerts_total",
        "Alerts the scheduler recorded, by tenant and outcome",
        &["tenant", "outcome"],
        &[&alert.tenant, kind],
        1.0,
    );
    if queued > 0 {
        #[allow(clippy::cast_precision_loss)]
        metrics.inc_by(
            "tocsin_runs_queued_total",
            "Runs queued by alerts, by tenant",
            &["tenant"],
            &[&alert.tenant],
            queued as f64,
        );
    }
    let to_publish = match outcome {
        AlertOutcome::New {
            case_id,
            grouped,
            runs,
        } => {
            tracing::info!(%case_id, grouped, runs = runs.len(), "alert recorded");
            runs
        }
        AlertOutcome::Duplicate { duplicate_count } => {
            tracing::info!(duplicate_count, "duplicate alert recorded");
            Vec::new()
        }
        AlertOutcome::Redelivered { runs } => {
            tracing::debug!(
                runs = runs.len(),
                "alert redelivered; republishing queued runs"
            );
            runs
        }
    };
    crate::dispatcher::publish_runs(&ctx.js, &to_publish)
        .await
        .map_err(HandleError::Publish)
}

fn decode_alert(payload: &[u8]) -> Result<NewAlert, HandleError> {
    let bad = |what: &str| HandleError::Malformed(what.to_owned());
    let alert = v1::Alert::decode(payload).map_err(|e| HandleError::Malformed(e.to_string()))?;
    if !types::is_valid_tenant_id(&alert.tenant) {
        return Err(bad("invalid tenant"));
    }
    let id = Uuid::parse_str(&alert.id).map_err(|_| bad("invalid alert id"))?;
    if id != types::alert_id(&alert.tenant, &alert.source, &alert.source_ref) {
        return Err(bad("alert id does not match its dedup key"));
    }
    let receipt_id = Uuid::parse_str(&alert.receipt_id).map_err(|_| bad("invalid receipt id"))?;
    let severity = Severity::try_from(alert.severity()).map_err(|_| bad("invalid severity"))?;
    let at = |ms: i64| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok();
    let raw: serde_json::Value =
        serde_json::from_str(&alert.raw_json).map_err(|_| bad("raw_json is not JSON"))?;
    let observables = serde_json::Value::Array(
        alert
            .observables
            .iter()
            .map(|o| serde_json::json!({ "type": o.r#type, "value": o.value }))
            .collect(),
    );
    Ok(NewAlert {
        id,
        receipt_id,
        received_at: at(alert.received_at_ms).ok_or_else(|| bad("invalid received_at"))?,
        occurred_at: if alert.occurred_at_ms == 0 {
            None
        } else {
            Some(at(alert.occurred_at_ms).ok_or_else(|| bad("invalid occurred_at"))?)
        },
        tenant: alert.tenant,
        source: alert.source,
        source_ref: alert.source_ref,
        title: alert.title,
        description: alert.description,
        severity,
        observables,
        tags: alert.tags,
        raw,
        mapping: (!alert.mapping.is_empty()).then_some(alert.mapping),
        match_report: None,
        trace_id: None,
    })
}
