//! Executing one run job: claim, start the playbook on a runner, journal what it reports,
//! record the outcome, and settle the JetStream message.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use prost::Message;
use tocsin_core::ErrorClass;
use tocsin_proto::types::RunStatus;
use tocsin_proto::v1::{
    self, runner_event::Event, runner_request::Request, step_decision::Decision,
};
use tocsin_store::runs::{
    Claim, ClaimedRun, RunInputs, RunOutcome, StepDecision, StepIntent, StepOutcome,
};
use tocsin_store::system::is_system_action;
use tocsin_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::bundles::{BundleError, ensure_bundle};
use crate::mask::Masker;
use crate::pool::{PoolError, RunHandle, RunnerPool};

/// Everything a run handler needs.
pub(crate) struct Executor {
    pub(crate) store: Store,
    pub(crate) pool: Arc<RunnerPool>,
    pub(crate) bundle_root: std::path::PathBuf,
    pub(crate) ack_wait: Duration,
    pub(crate) hard_deadline_margin: Duration,
    /// Deliveries after which a job that keeps failing is dead-lettered.
    pub(crate) max_deliver: i64,
    /// Decrypts tenant secrets for runs; `None` when no master key is configured.
    pub(crate) master_key: Option<tocsin_store::secrets::MasterKey>,
    /// Cancelled when the shutdown grace for in-flight runs has passed.
    pub(crate) hand_back: CancellationToken,
    /// In-flight runs, for operator cancellation.
    pub(crate) in_flight: std::sync::Mutex<std::collections::HashMap<Uuid, CancellationToken>>,
    /// Playbook timeouts (ms) by (tenant, bundle hash, playbook): a bundle's playbooks never
    /// change under its hash, so this saves a database round trip per run.
    pub(crate) timeouts: tocsin_core::cache::TtlCache<(String, String, String), i64>,
}

impl Executor {
    /// How long the playbook may run, from the cache or its bundle's row.
    async fn playbook_timeout(&self, run: &ClaimedRun) -> Result<Duration, StoreError> {
        let key = (
            run.tenant_id.clone(),
            run.bundle_hash.clone(),
            run.playbook.clone(),
        );
        let ms = match self.timeouts.get(&key) {
            Some(ms) => ms,
            None => {
                let ms = self
                    .store
                    .playbook(&run.tenant_id, &run.bundle_hash, &run.playbook)
                    .await?
                    .timeout_ms;
                self.timeouts.insert(key, ms);
                ms
            }
        };
        Ok(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
    }
}

impl Executor {
    /// Stops an in-flight run an operator cancelled; returns whether it runs here.
    pub(crate) fn cancel(&self, run_id: Uuid) -> bool {
        let token = self
            .in_flight
            .lock()
            .ok()
            .and_then(|m| m.get(&run_id).cloned());
        token.map(|t| t.cancel()).is_some()
    }
}

/// Registers a run as in flight for as long as it lives.
struct InFlight<'a> {
    exec: &'a Executor,
    run_id: Uuid,
    token: CancellationToken,
}

impl<'a> InFlight<'a> {
    fn new(exec: &'a Executor, run_id: Uuid) -> Self {
        let token = CancellationToken::new();
        if let Ok(mut map) = exec.in_flight.lock() {
            map.insert(run_id, token.clone());
        }
        Self {
            exec,
            run_id,
            token,
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.exec.in_flight.lock() {
            map.remove(&self.run_id);
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("malformed run job: {0}")]
    Malformed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("journal write failed: {0}")]
    Journal(String),
}

impl RunError {
    fn class(&self) -> ErrorClass {
        match self {
            RunError::Malformed(_) => ErrorClass::Permanent,
            RunError::Store(e) | RunError::Bundle(BundleError::Store(e)) => e.class(),
            RunError::Bundle(BundleError::Corrupt { .. }) => ErrorClass::Permanent,
            RunError::Bundle(BundleError::Io { .. }) | RunError::Pool(_) | RunError::Journal(_) => {
                ErrorClass::Retryable {
                    delay: Duration::from_secs(2),
                }
            }
        }
    }
}

/// How the message is settled once the handler is done with it.
enum Settle {
    Ack,
    Retry(Duration),
    HandBack,
    /// Leave it to redelivery (our claim was superseded).
    Leave,
}

pub(crate) async fn handle_message(exec: &Executor, message: jetstream::Message) {
    // One span per execution, continuing the run's trace (the scheduler's span for the
    // alert, or the API request that started the run) from the job's NATS headers.
    // The name is fixed when the span starts; a job that does not decode is reported below.
    let playbook = v1::RunJob::decode(message.payload.as_ref())
        .map(|job| job.playbook)
        .unwrap_or_default();
    let span = tracing::info_span!(
        "worker.run",
        otel.name = format!("run {playbook}"),
        otel.kind = "consumer",
        run_id = tracing::field::Empty,
        tenant = tracing::field::Empty,
        playbook = tracing::field::Empty,
        alert_id = tracing::field::Empty,
        attempt = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    tocsin_core::trace::continue_from_nats(&span, message.headers.as_ref());
    settle(exec, message).instrument(span).await;
}

async fn settle(exec: &Executor, message: jetstream::Message) {
    let settle = match handle(exec, &message).await {
        Ok(settle) => settle,
        Err(error) => match error.class() {
            ErrorClass::Permanent => {
                tracing::error!(%error, "run job dropped: cannot be processed");
                // Terminate: redelivery cannot help.
                if let Err(e) = message.ack_with(AckKind::Term).await {
                    tracing::warn!(error = %e, "failed to terminate run job");
                }
                return;
            }
            ErrorClass::Retryable { delay } => {
                let delivered = message.info().map(|i| i.delivered).unwrap_or(0);
                if delivered >= exec.max_deliver {
                    dead_letter(exec, &message, &error.to_string(), delivered).await;
                    return;
                }
                tracing::warn!(%error, delivered, "run job will be retried");
                Settle::Retry(delay)
            }
            ErrorClass::Shutdown => Settle::HandBack,
        },
    };
    let ack = match settle {
        Settle::Ack => AckKind::Ack,
        Settle::Retry(delay) => AckKind::Nak(Some(delay)),
        Settle::HandBack => AckKind::Nak(None),
        Settle::Leave => return,
    };
    if let Err(error) = message.ack_with(ack).await {
        tracing::warn!(%error, "failed to settle run job; it will be redelivered");
    }
}

/// Sets a job that kept failing aside: the run becomes `dead_lettered` with the reason and
/// the message is kept in `dead_letters`, then terminated.
async fn dead_letter(exec: &Executor, message: &jetstream::Message, reason: &str, delivered: i64) {
    let job = v1::RunJob::decode(message.payload.as_ref()).ok();
    let reason = format!("gave up after {delivered} deliveries: {reason}");
    tracing::error!(%reason, "run job dead-lettered");
    if let Some(run_id) = job.as_ref().and_then(|j| Uuid::parse_str(&j.run_id).ok())
        && let Err(e) = exec.store.dead_letter_run(run_id, &reason).await
    {
        tracing::error!(error = %e, "failed to mark run dead-lettered; leaving the job for redelivery");
        return;
    }
    let letter = tocsin_store::dispatch::DeadLetter {
        tenant: job.as_ref().map(|j| j.tenant.as_str()),
        stream: tocsin_proto::subjects::RUNS_STREAM,
        subject: message.subject.as_str(),
        payload: message.payload.as_ref(),
        reason: &reason,
        deliveries: i32::try_from(delivered).unwrap_or(i32::MAX),
    };
    if let Err(e) = exec.store.record_dead_letter(&letter).await {
        tracing::error!(error = %e, "failed to record dead letter; leaving the job for redelivery");
        return;
    }
    if let Err(e) = message.ack_with(AckKind::Term).await {
        tracing::warn!(error = %e, "failed to terminate dead-lettered job");
    }
}

async fn handle(exec: &Executor, message: &jetstream::Message) -> Result<Settle, RunError> {
    let job = v1::RunJob::decode(message.payload.as_ref())
        .map_err(|e| RunError::Malformed(e.to_string()))?;
    let run_id = Uuid::parse_str(&job.run_id).map_err(|_| RunError::Malformed("run id".into()))?;
    let span = tracing::Span::current();
    span.record("run_id", tracing::field::display(run_id));
    span.record("tenant", job.tenant.as_str());
    span.record("playbook", job.playbook.as_str());
    // The claim, the alert and the secrets in one transaction.
    let (run, inputs) = match exec
        .store
        .claim_run_with_inputs(&job.tenant, run_id, exec.ack_wait, exec.master_key.as_ref())
        .await
    {
        Ok(Claim::Claimed(claimed)) => claimed,
        Ok(Claim::Finished(status)) => {
            tracing::debug!(%status, "run already finished; dropping duplicate job");
            return Ok(Settle::Ack);
        }
        Ok(Claim::Busy { retry_after }) => return Ok(Settle::Retry(retry_after)),
        Err(StoreError::NotFound { .. }) => {
            return Err(RunError::Malformed("run does not exist".into()));
        }
        Err(e) => return Err(e.into()),
    };
    span.record("attempt", run.attempts);
    if let Some(alert_id) = run.alert_id {
        span.record("alert_id", tracing::field::display(alert_id));
    }
    tracing::info!(epoch = run.epoch, attempt = run.attempts, "run claimed");
    let metrics = tocsin_core::metrics::registry();
    if run.attempts == 1 {
        let waited = (time::OffsetDateTime::now_utc() - run.queued_at).as_seconds_f64();
        metrics.observe(
            "tocsin_run_wait_seconds",
            "Time from a run being queued to its first start, by tenant",
            &["tenant"],
            &[&run.tenant_id],
            waited.max(0.0),
        );
    }
    let started = std::time::Instant::now();
    let result = execute(exec, message, &run, inputs).await;
    metrics.observe(
        "tocsin_run_execution_seconds",
        "Duration of one execution of a run (until it ends, suspends or is handed back), by playbook",
        &["playbook"],
        &[&run.playbook],
        started.elapsed().as_secs_f64(),
    );
    match result {
        Ok(settle) => Ok(settle),
        Err(error) => {
            // Hand the claim back so the redelivery does not wait for the lease to expire;
            // a delayed retry is remembered on the run ("delayed by backoff until T").
            let released = match error.class() {
                ErrorClass::Retryable { delay } => {
                    exec.store
                        .retry_run_later(run.id, run.epoch, delay, &error.to_string())
                        .await
                }
                _ => exec.store.release_run(run.id, run.epoch).await,
            };
            if let Err(e) = released {
                tracing::warn!(error = %e, "failed to release run claim");
            }
            Err(error)
        }
    }
}

async fn execute(
    exec: &Executor,
    message: &jetstream::Message,
    run: &ClaimedRun,
    inputs: RunInputs,
) -> Result<Settle, RunError> {
    let timeout = match exec.playbook_timeout(run).await {
        Ok(t) => t,
        Err(StoreError::NotFound { .. }) => {
            let error = format!(
                "playbook {:?} is not in bundle {}",
                run.playbook, run.bundle_hash
            );
            return finish(exec, run, RunStatus::Failed, None, Some(&error), None).await;
        }
        Err(e) => return Err(e.into()),
    };
    let bundle_dir = ensure_bundle(
        &exec.store,
        &exec.bundle_root,
        &run.tenant_id,
        &run.bundle_hash,
    )
    .await?;
    let secrets = match inputs.secrets {
        Ok(secrets) => secrets,
        Err(error) => {
            let error = error.to_string();
            return finish(exec, run, RunStatus::Failed, None, Some(&error), None).await;
        }
    };
    let alert_json = inputs
        .alert
        .as_ref()
        .map_or_else(|| "null".to_owned(), sdk_alert_json);
    let secrets_json = serde_json::to_string(&secrets).unwrap_or_else(|_| "{}".to_owned());
    let mask = Masker::new(secrets.into_values());
    let mut handle = exec
        .pool
        .start_run(v1::StartRun {
            run_id: run.id.to_string(),
            tenant: run.tenant_id.clone(),
            playbook: run.playbook.clone(),
            bundle_dir: bundle_dir.display().to_string(),
            bundle_hash: run.bundle_hash.clone(),
            attempt: u32::try_from(run.attempts).unwrap_or(u32::MAX),
            alert_json,
            trigger: run.trigger.clone(),
            secrets_json,
            input_json: run
                .input
                .as_ref()
                .map_or_else(|| "null".to_owned(), |input| input.0.to_string()),
            traceparent: tocsin_core::trace::traceparent(&tracing::Span::current())
                .unwrap_or_default(),
        })
        .await?;
    tracing::debug!(runner_pid = ?handle.runner_pid(), "run started");

    let in_flight = InFlight::new(exec, run.id);
    let hard_deadline = tokio::time::sleep(timeout + exec.hard_deadline_margin);
    tokio::pin!(hard_deadline);
    let mut heartbeat = tokio::time::interval(exec.ack_wait / 3);
    heartbeat.tick().await;
    // The span of each action call in flight, by step.
    let mut actions = ActionSpans::default();
    let mut outcomes = Outcomes::default();

    loop {
        tokio::select! {
            event = handle.events.recv() => {
                let Some(event) = event else {
                    tracing::warn!("runner died during the run; handing the job back");
                    outcomes.finish().await;
                    let delay = Duration::from_millis(500);
                    exec.store
                        .retry_run_later(run.id, run.epoch, delay, "the runner process died during the run")
                        .await?;
                    return Ok(Settle::Retry(delay));
                };
                match on_event(exec, run, &handle, &mask, &mut actions, &mut outcomes, event).await {
                    Ok(Some(settle)) => return Ok(settle),
                    Ok(None) => {}
                    Err(error) => {
                        handle.cancel().await;
                        outcomes.finish().await;
                        return Err(error);
                    }
                }
            }
            () = in_flight.token.cancelled() => {
                handle.cancel().await;
                outcomes.finish().await;
                let by = exec.store.cancel_requested(run.id).await?.unwrap_or_else(|| "an operator".to_owned());
                tracing::info!(%by, "run cancelled");
                let error = format!("cancelled by {by}");
                return finish(exec, run, RunStatus::Cancelled, None, Some(&error), None).await;
            }
            _ = heartbeat.tick() => {
                if let Err(error) = message.ack_with(AckKind::Progress).await {
                    tracing::warn!(%error, "failed to send in-progress ack");
                }
                // A cancel notification can be missed (listener reconnecting): check here too.
                if exec.store.cancel_requested(run.id).await?.is_some() {
                    in_flight.token.cancel();
                }
                if exec.store.heartbeat_run(run.id, run.epoch, exec.ack_wait).await?.is_err() {
                    tracing::warn!("run claimed by another worker; abandoning this execution");
                    handle.cancel().await;
                    outcomes.finish().await;
                    return Ok(Settle::Leave);
                }
            }
            () = &mut hard_deadline => {
                tracing::error!(timeout_s = timeout.as_secs_f64(), "run passed its hard deadline; killing its runner");
                handle.kill_runner();
                outcomes.finish().await;
                let error = format!(
                    "playbook did not finish within its timeout of {:.1}s (runner killed)",
                    timeout.as_secs_f64()
                );
                return finish(exec, run, RunStatus::TimedOut, None, Some(&error), None).await;
            }
            () = exec.hand_back.cancelled() => {
                tracing::info!("shutting down; handing the run back for redelivery");
                handle.cancel().await;
                outcomes.finish().await;
                exec.store.release_run(run.id, run.epoch).await?;
                return Ok(Settle::HandBack);
            }
        }
    }
}

/// The spans of the action calls of one execution that are in flight (intent seen, result
/// not yet), by step. A span ends when it is dropped.
#[derive(Default)]
struct ActionSpans(std::collections::HashMap<u32, tracing::Span>);

impl ActionSpans {
    /// A span for step `seq` calling `action`, under the run's span.
    fn start(&mut self, seq: u32, action: &str, idempotent: bool) -> tracing::Span {
        let span = tracing::info_span!(
            "worker.action",
            otel.name = format!("action {action}"),
            otel.kind = "internal",
            action,
            seq,
            idempotent,
            decision = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        // Bounded by the runner's own limit on concurrent steps; a step seen twice replaces
        // (and so ends) the older span.
        self.0.insert(seq, span.clone());
        span
    }

    /// Ends the span of step `seq`, marking it failed with `error`.
    fn end(&mut self, seq: u32, error: Option<&str>) {
        if let Some(span) = self.0.remove(&seq)
            && let Some(error) = error
        {
            span.record("otel.status_code", "ERROR");
            span.record("error", error);
        }
    }
}

/// A step outcome being written: `Err(Fenced)` when a newer claim owns the run.
type OutcomeWrite =
    tokio::task::JoinHandle<Result<Result<(), tocsin_store::runs::Fenced>, StoreError>>;

/// The step outcome being journaled in the background, if any.
///
/// An outcome is written while the runner goes on, concurrently with the next step's intent
/// (never with the run's end, nor with another outcome), so that journaling an action costs
/// the playbook one database round trip in sequence, not two. Outcomes commit with deferred
/// durability ([`tocsin_store::Store::record_step_outcome`]): a database crash may lose one
/// that a later record survives, which leaves that step as a worker crash right before the
/// write would, in `intent`, replayed by the rules for that (re-executed when idempotent,
/// else the run needs review) and never executed twice unawares.
#[derive(Default)]
struct Outcomes {
    pending: Option<(u32, OutcomeWrite)>,
}

impl Outcomes {
    /// Waits for the outcome in flight; `true` when it was refused because a newer claim
    /// owns the run.
    async fn wait(&mut self) -> Result<bool, RunError> {
        let Some((seq, task)) = self.pending.take() else {
            return Ok(false);
        };
        match task.await {
            Ok(Ok(Ok(()))) => Ok(false),
            Ok(Ok(Err(_fenced))) => Ok(true),
            Ok(Err(error)) => Err(error.into()),
            Err(join) => {
                tracing::error!(seq, error = %join, "journaling a step outcome panicked");
                Err(RunError::Journal(join.to_string()))
            }
        }
    }

    /// [`Outcomes::wait`] on the way out of an execution: problems are logged, not returned.
    async fn finish(&mut self) {
        match self.wait().await {
            Ok(false) => {}
            Ok(true) => tracing::warn!("last step outcome refused: a newer claim owns the run"),
            Err(error) => tracing::warn!(%error, "failed to journal the last step outcome"),
        }
    }
}

/// Handles one runner event; `Some` when the run is over.
async fn on_event(
    exec: &Executor,
    run: &ClaimedRun,
    handle: &RunHandle,
    mask: &Masker,
    actions: &mut ActionSpans,
    outcomes: &mut Outcomes,
    event: Event,
) -> Result<Option<Settle>, RunError> {
    match event {
        Event::StepIntent(intent) => {
            let span = actions.start(intent.seq, &intent.action, intent.idempotent);
            let trace = tocsin_core::trace::ids(&span);
            let seq = i32::try_from(intent.seq).unwrap_or(i32::MAX);
            // Journaled (and hashed for replay) masked: stable across executions while the
            // tenant's secrets are.
            let args_json = mask.json_text(&intent.args_json);
            let step = StepIntent {
                run_id: run.id,
                tenant: &run.tenant_id,
                epoch: run.epoch,
                seq,
                action: &intent.action,
                args_json: &args_json,
                idempotent: intent.idempotent,
                trace: trace.as_ref(),
            };
            // Platform effects (`tocsin.*`) are performed here, journaled in the same
            // transaction; the playbook receives their result as a replay.
            let record = async {
                if is_system_action(&intent.action) {
                    exec.store.system_step(&step).await
                } else {
                    exec.store.record_step_intent(&step).await
                }
            };
            // The previous step's outcome, still being written, alongside.
            let (decision, fenced) = tokio::join!(record, outcomes.wait());
            if fenced? {
                tracing::warn!(
                    seq,
                    "run claimed by another worker; abandoning this execution"
                );
                handle.cancel().await;
                return Ok(Some(Settle::Leave));
            }
            let decision = decision?;
            let Ok(decision) = decision else {
                tracing::warn!(
                    seq,
                    "run claimed by another worker; abandoning this execution"
                );
                handle.cancel().await;
                return Ok(Some(Settle::Leave));
            };
            let mut reply = v1::StepDecision {
                run_id: intent.run_id,
                seq: intent.seq,
                ..Default::default()
            };
            let kind = match &decision {
                StepDecision::Execute => "execute",
                StepDecision::Replay { .. } => "replay",
                StepDecision::Abort { .. } => "abort",
            };
            span.record("decision", kind);
            match decision {
                StepDecision::Execute => {
                    reply.set_decision(Decision::Execute);
                    reply.traceparent = tocsin_core::trace::traceparent(&span).unwrap_or_default();
                }
                StepDecision::Replay { result, error } => {
                    reply.set_decision(Decision::Replay);
                    reply.result_json = result.map(|r| r.to_string());
                    reply.error = error;
                }
                StepDecision::Abort { status, reason } => {
                    if status.is_suspended() {
                        tracing::info!(seq, %status, %reason, "run suspends");
                    } else {
                        tracing::warn!(seq, %status, %reason, "step aborts the run");
                    }
                    reply.set_decision(Decision::Abort);
                    reply.status = status.as_str().to_owned();
                    reply.reason = reason;
                }
            }
            if reply.decision() != Decision::Execute {
                // Nothing runs: the span covers the journal lookup only.
                actions.end(intent.seq, None);
            }
            handle.send(Request::StepDecision(reply)).await?;
            Ok(None)
        }
        Event::StepResult(result) => {
            let result_value = result.result_json.as_deref().map(|r| {
                mask.json(
                    serde_json::from_str(r).unwrap_or(serde_json::Value::String(r.to_owned())),
                )
            });
            let error = result.error.as_deref().map(|e| mask.text(e));
            actions.end(
                result.seq,
                if result.ok {
                    None
                } else {
                    Some(error.as_deref().unwrap_or("action failed"))
                },
            );
            let metrics = tocsin_core::metrics::registry();
            #[allow(clippy::cast_precision_loss)]
            metrics.observe(
                "tocsin_action_duration_seconds",
                "Duration of journaled action calls (all attempts)",
                &[],
                &[],
                result.duration_ms as f64 / 1000.0,
            );
            if !result.ok {
                metrics.inc_by(
                    "tocsin_action_errors_total",
                    "Action calls that ended in an error",
                    &[],
                    &[],
                    1.0,
                );
            }
            // Written in the background, while the runner goes on: the next step's intent is
            // journaled concurrently with it (see `Outcomes`).
            if outcomes.wait().await? {
                tracing::warn!(
                    seq = result.seq,
                    "run claimed by another worker; abandoning this execution"
                );
                handle.cancel().await;
                return Ok(Some(Settle::Leave));
            }
            let store = exec.store.clone();
            let (run_id, epoch) = (run.id, run.epoch);
            let seq = i32::try_from(result.seq).unwrap_or(i32::MAX);
            let attempts = i32::try_from(result.attempts).unwrap_or(i32::MAX);
            let duration_ms = i64::try_from(result.duration_ms).unwrap_or(i64::MAX);
            let (value, error) = if result.ok {
                (result_value, None)
            } else {
                (
                    None,
                    Some(error.map_or_else(|| "action failed".to_owned(), |e| e.into_owned())),
                )
            };
            outcomes.pending = Some((
                result.seq,
                tokio::spawn(async move {
                    store
                        .record_step_outcome(&StepOutcome {
                            run_id,
                            epoch,
                            seq,
                            result: value,
                            error: error.as_deref(),
                            attempts,
                            duration_ms,
                        })
                        .await
                }),
            ));
            Ok(None)
        }
        Event::RunLog(log) => {
            let fields: serde_json::Value = mask
                .json(serde_json::from_str(&log.fields_json).unwrap_or(serde_json::Value::Null));
            let message = mask.text(&log.message);
            tracing::info!(target: "tocsin::playbook", level = %log.level, %fields, "{message}");
            if let Err(error) = exec
                .store
                .append_run_log(run.id, &run.tenant_id, &log.level, &message, &fields)
                .await
            {
                // A lost log line must not fail the run.
                tracing::warn!(%error, "failed to store run log line");
            }
            Ok(None)
        }
        Event::RunFinished(done) => {
            // The last outcome before the end (which marks steps left in intent uncertain).
            if outcomes.wait().await? {
                tracing::warn!("run claimed by another worker; abandoning this execution");
                return Ok(Some(Settle::Leave));
            }
            let status = done
                .status
                .parse::<RunStatus>()
                .unwrap_or(RunStatus::Failed);
            let status = if status.is_terminal() || status.is_suspended() {
                status
            } else {
                RunStatus::Failed
            };
            let result = match done
                .result_json
                .as_deref()
                .map(serde_json::from_str::<serde_json::Value>)
            {
                None => None,
                Some(Ok(v)) => Some(mask.json(v)),
                Some(Err(_)) => {
                    return finish(
                        exec,
                        run,
                        RunStatus::Failed,
                        None,
                        Some("run result is not valid JSON"),
                        None,
                    )
                    .await
                    .map(Some);
                }
            };
            let error = done.error.as_deref().map(|e| mask.text(e));
            let traceback = done.traceback.as_deref().map(|t| mask.text(t));
            finish(
                exec,
                run,
                status,
                result,
                error.as_deref(),
                traceback.as_deref(),
            )
            .await
            .map(Some)
        }
        Event::InspectResult(_) | Event::Ready(_) => Ok(None),
    }
}

async fn finish(
    exec: &Executor,
    run: &ClaimedRun,
    status: RunStatus,
    result: Option<serde_json::Value>,
    error: Option<&str>,
    traceback: Option<&str>,
) -> Result<Settle, RunError> {
    tocsin_core::metrics::registry().inc_by(
        "tocsin_runs_finished_total",
        "Run executions that ended, by tenant, playbook and status",
        &["tenant", "playbook", "status"],
        &[&run.tenant_id, &run.playbook, status.as_str()],
        1.0,
    );
    let recorded = exec
        .store
        .finish_run(&RunOutcome {
            run_id: run.id,
            epoch: run.epoch,
            status,
            result,
            error,
            traceback,
        })
        .await?;
    match recorded {
        Ok(()) => {
            tracing::info!(%status, "run finished");
            Ok(Settle::Ack)
        }
        Err(fenced) => {
            tracing::warn!(%fenced, "run outcome refused: a newer claim owns the run");
            Ok(Settle::Leave)
        }
    }
}

/// The alert in the SDK's `Alert.from_dict` shape.
fn sdk_alert_json(alert: &tocsin_store::alerts::AlertView) -> String {
    use time::format_description::well_known::Rfc3339;
    let fmt = |t: time::OffsetDateTime| t.format(&Rfc3339).ok();
    serde_json::json!({
        "id": alert.id,
        "tenant": alert.tenant,
        "source": alert.source,
        "source_ref": alert.source_ref,
        "title": alert.title,
        "description": alert.description,
        "severity": alert.severity,
        "occurred_at": alert.occurred_at.and_then(fmt),
        "received_at": fmt(alert.received_at),
        "tags": alert.tags,
        "observables": alert.observables.0,
        "raw": alert.raw.0,
    })
    .to_string()
}
