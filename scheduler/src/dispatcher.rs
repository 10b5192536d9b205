//! The dispatcher: publishes runs from the Postgres outbox (manual runs, resumed approvals
//! and timers, reaped runs), times out approvals and wakes sleepers. Woken by NOTIFY on
//! `tocsin_dispatch`, and every `dispatch_interval` regardless.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishError};
use prost::Message;
use tocsin_core::Shutdown;
use tocsin_proto::{subjects, v1};
use tocsin_store::Store;
use tocsin_store::alerts::QueuedRun;
use tocsin_store::dispatch::Republish;

use crate::Config;

const BATCH: i64 = 256;

pub(crate) async fn dispatch_loop(
    config: Config,
    js: jetstream::Context,
    store: Store,
    shutdown: Shutdown,
) {
    let section = &config.scheduler;
    let mut listener = match store.dispatch_listener().await {
        Ok(l) => Some(l),
        Err(error) => {
            tracing::warn!(%error, "dispatch notifications unavailable; polling only");
            None
        }
    };
    loop {
        if let Err(error) = dispatch_pass(&store, &js, section).await {
            tracing::warn!(%error, "dispatch pass failed; retrying");
        }
        let notified = async {
            match listener.as_mut() {
                Some(l) => l.recv().await.map(|_| ()),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(section.dispatch_interval) => {}
            result = notified => {
                if let Err(error) = result {
                    // PgListener reconnects on the next recv; avoid a hot loop meanwhile.
                    tracing::warn!(%error, "dispatch notification failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

async fn dispatch_pass(
    store: &Store,
    js: &jetstream::Context,
    section: &crate::config::SchedulerSection,
) -> Result<(), DispatchError> {
    let republish = match oldest_run_job(js).await {
        Ok(oldest) => Republish::Stale {
            stale: section.stale_dispatch,
            before: oldest.map(|at| at - CLOCK_MARGIN),
        },
        Err(error) => {
            tracing::warn!(%error, "cannot inspect RUNS; not republishing stale runs this pass");
            Republish::Skip
        }
    };
    let woken = store.wake_due_runs(republish, section.lease_grace).await?;
    if woken != tocsin_store::dispatch::Woken::default() {
        tracing::info!(
            approvals_expired = woken.approvals_expired,
            resumed = woken.runs_resumed,
            reaped = woken.runs_reaped,
            "runs put back for dispatch"
        );
    }
    loop {
        let runs = store.take_outbox(BATCH).await?;
        if runs.is_empty() {
            return Ok(());
        }
        if let Err(error) = publish_runs(js, &runs).await {
            let ids: Vec<_> = runs.iter().map(|r| r.id).collect();
            store.return_to_outbox(&ids).await?;
            return Err(DispatchError::Publish(error));
        }
        tracing::debug!(count = runs.len(), "runs dispatched");
        if runs.len() < usize::try_from(BATCH).unwrap_or(usize::MAX) {
            return Ok(());
        }
    }
}

/// Allowance for the NATS and PostgreSQL servers' clocks disagreeing, when comparing a
/// run's publish time (PostgreSQL's) with a message's (the NATS server's).
const CLOCK_MARGIN: time::Duration = time::Duration::seconds(60);

/// When the oldest job still in RUNS was stored; `None` when RUNS is empty. A queued run
/// published after that may still have its job waiting there (RUNS is a work queue: a job
/// leaves it only when acknowledged), so it is not republished as lost.
async fn oldest_run_job(
    js: &jetstream::Context,
) -> Result<Option<time::OffsetDateTime>, tocsin_core::nats::BoxError> {
    let mut stream = js.get_stream(subjects::RUNS_STREAM).await?;
    let state = &stream.info().await?.state;
    Ok((state.messages > 0).then_some(state.first_timestamp))
}

#[derive(Debug, thiserror::Error)]
enum DispatchError {
    #[error(transparent)]
    Store(#[from] tocsin_store::StoreError),
    #[error("failed to publish run jobs")]
    Publish(#[source] PublishError),
}
/// Publishes a RunJob per run (all sent, then all acks awaited).
pub(crate) async fn publish_runs(
    js: &jetstream::Context,
    runs: &[QueuedRun],
) -> Result<(), PublishError> {
    let mut acks = Vec::with_capacity(runs.len());
    for run in runs {
        let dispatch = u32::try_from(run.dispatch).unwrap_or(0);
        let job = v1::RunJob {
            run_id: run.id.to_string(),
            tenant: run.tenant_id.clone(),
            alert_id: run.alert_id.map(|a| a.to_string()).unwrap_or_default(),
            playbook: run.playbook.clone(),
            bundle_hash: run.bundle_hash.clone(),
            dispatch,
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            subjects::MSG_ID_HEADER,
            subjects::run_msg_id(&job.run_id, dispatch).as_str(),
        );
        if let Some(traceparent) = &run.traceparent {
            tocsin_core::trace::inject_traceparent(traceparent, &mut headers);
        }
        let ack = js
            .publish_with_headers(
                subjects::run_subject(&run.tenant_id, &run.priority),
                headers,
                job.encode_to_vec().into(),
            )
            .await?;
        acks.push(ack.into_future());
    }
    futures::future::try_join_all(acks).await?;
    Ok(())
}

/// Queues runs of `schedule:` playbooks, once per matching minute (UTC). Minutes that
/// passed while no scheduler ran are not caught up.
pub(crate) async fn schedule_loop(store: Store, shutdown: Shutdown) {
    let truncate = |t: time::OffsetDateTime| {
        t.replace_second(0)
            .and_then(|t| t.replace_nanosecond(0))
            .unwrap_or(t)
    };
    let mut last = truncate(time::OffsetDateTime::now_utc()) - time::Duration::minutes(1);
    loop {
        let minute = truncate(time::OffsetDateTime::now_utc());
        if minute > last {
            match store.scheduled_playbooks().await {
                Ok(playbooks) => {
                    for p in playbooks {
                        let (tenant, hash, name, priority) =
                            (&p.tenant_id, &p.bundle_hash, &p.name, &p.priority);
                        let expr = p.trigger.trim_start_matches("schedule:");
                        match crate::cron::Cron::parse(expr) {
                            Ok(cron) if cron.matches(minute) => {
                                match store
                                    .queue_scheduled_run(tenant, hash, name, priority, minute)
                                    .await
                                {
                                    Ok(true) => {
                                        tracing::info!(%tenant, playbook = %name, "scheduled run queued")
                                    }
                                    Ok(false) => {}
                                    Err(error) => {
                                        tracing::warn!(%tenant, playbook = %name, %error, "failed to queue scheduled run")
                                    }
                                }
                            }
                            Ok(_) => {}
                            Err(error) => {
                                tracing::warn!(%tenant, playbook = %name, %error, "invalid schedule")
                            }
                        }
                    }
                    last = minute;
                }
                Err(error) => tracing::warn!(%error, "failed to read scheduled playbooks"),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
