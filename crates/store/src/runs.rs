//! Runs and their action journal: fenced claims, step intents and results, completion.
//!
//! Fencing: every claim bumps `runs.epoch`; every later write of that execution carries the
//! epoch it claimed with and is refused ([`Fenced`]) once another claim has bumped it.

use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::FromRow;
use sqlx::types::Json;
use time::OffsetDateTime;
use tocsin_proto::types::RunStatus;
use uuid::Uuid;

use crate::page::{Cursor, Keyed, Page, binds, clamp_limit};
use crate::secrets::{MasterKey, SecretError};
use crate::{Store, StoreError};

/// A claimed run, ready to execute.
#[derive(Debug, Clone, FromRow)]
pub struct ClaimedRun {
    /// Run id.
    pub id: Uuid,
    /// Tenant.
    pub tenant_id: String,
    /// Triggering alert.
    pub alert_id: Option<Uuid>,
    /// Playbook name.
    pub playbook: String,
    /// Bundle hash.
    pub bundle_hash: String,
    /// Fencing epoch of this claim.
    pub epoch: i32,
    /// Execution number (1 on the first claim).
    pub attempts: i32,
    /// alert | manual | schedule.
    pub trigger: String,
    /// Input of a manual run.
    pub input: Option<Json<serde_json::Value>>,
    /// When it was queued (for the wait-time metric).
    pub queued_at: OffsetDateTime,
}

/// Result of trying to claim a run; `T` is what a claim yields ([`ClaimedRun`], or with
/// [`Store::claim_run_with_inputs`] the run and its [`RunInputs`]).
#[derive(Debug, Clone)]
pub enum Claim<T = ClaimedRun> {
    /// Claimed: execute it.
    Claimed(T),
    /// The run is final or suspended; the job is a leftover duplicate (a resumed run gets
    /// a new job).
    Finished(RunStatus),
    /// Another live worker holds the run; try again after `retry_after`.
    Busy {
        /// Time left on the other worker's lease.
        retry_after: Duration,
    },
}

/// A write was refused because a newer claim owns the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("run {run_id} was claimed again after epoch {epoch}")]
pub struct Fenced {
    /// Run id.
    pub run_id: Uuid,
    /// The epoch the stale writer held.
    pub epoch: i32,
}

/// What the runner should do with an action call.
#[derive(Debug, Clone, PartialEq)]
pub enum StepDecision {
    /// Run the action body.
    Execute,
    /// Return the journaled outcome without running the body.
    Replay {
        /// Recorded result JSON (when the step succeeded).
        result: Option<serde_json::Value>,
        /// Recorded error (when the step failed).
        error: Option<String>,
    },
    /// Stop the run with `status`.
    Abort {
        /// Final status.
        status: RunStatus,
        /// Why.
        reason: String,
    },
}

/// A step intent to journal.
#[derive(Debug, Clone)]
pub struct StepIntent<'a> {
    /// Run id.
    pub run_id: Uuid,
    /// Tenant.
    pub tenant: &'a str,
    /// Claim epoch.
    pub epoch: i32,
    /// Position in the run.
    pub seq: i32,
    /// Action name.
    pub action: &'a str,
    /// Canonical JSON of the arguments.
    pub args_json: &'a str,
    /// Whether re-running an uncertain call is safe.
    pub idempotent: bool,
    /// Trace and span id of the worker's span for the call (kept with the journal entry).
    pub trace: Option<&'a tocsin_core::trace::SpanIds>,
}

/// The outcome of an executed step.
#[derive(Debug, Clone)]
pub struct StepOutcome<'a> {
    /// Run id.
    pub run_id: Uuid,
    /// Claim epoch.
    pub epoch: i32,
    /// Position in the run.
    pub seq: i32,
    /// Result JSON when it succeeded.
    pub result: Option<serde_json::Value>,
    /// Error when it failed.
    pub error: Option<&'a str>,
    /// Attempts made (retries included).
    pub attempts: i32,
    /// Wall time of all attempts.
    pub duration_ms: i64,
}

/// The final state of one execution.
#[derive(Debug, Clone)]
pub struct RunOutcome<'a> {
    /// Run id.
    pub run_id: Uuid,
    /// Claim epoch.
    pub epoch: i32,
    /// Final status.
    pub status: RunStatus,
    /// Returned dict.
    pub result: Option<serde_json::Value>,
    /// Error message.
    pub error: Option<&'a str>,
    /// Python traceback.
    pub traceback: Option<&'a str>,
}

/// A journal row as a replay compares it with a new intent.
#[derive(Debug, FromRow)]
struct JournaledStep {
    action: String,
    args_hash: String,
    state: String,
    result: Option<Json<serde_json::Value>>,
    error: Option<String>,
    args: serde_json::Value,
}

fn args_hash(args_json: &str) -> String {
    hex::encode(Sha256::digest(args_json.as_bytes()))
}

fn lease_secs(lease: Duration) -> f64 {
    lease.as_secs_f64()
}

impl Store {
    /// Claims a queued run (or a running one whose lease expired), bumping its epoch.
    pub async fn claim_run(
        &self,
        tenant: &str,
        run_id: Uuid,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let claim = claim_in(&mut tx, tenant, run_id, lease).await?;
        if matches!(claim, Claim::Claimed(_)) {
            tx.commit().await?;
        }
        Ok(claim)
    }

    /// [`Store::claim_run`], and when the run is claimed, what it starts with (its alert and,
    /// with a master key, the tenant's secrets), in the same transaction. Secrets that do not
    /// decrypt do not undo the claim: they are reported in [`RunInputs::secrets`], for the
    /// run to fail with.
    pub async fn claim_run_with_inputs(
        &self,
        tenant: &str,
        run_id: Uuid,
        lease: Duration,
        key: Option<&MasterKey>,
    ) -> Result<Claim<(ClaimedRun, RunInputs)>, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let run = match claim_in(&mut tx, tenant, run_id, lease).await? {
            Claim::Claimed(run) => run,
            Claim::Finished(status) => return Ok(Claim::Finished(status)),
            Claim::Busy { retry_after } => return Ok(Claim::Busy { retry_after }),
        };
        let alert = match run.alert_id {
            Some(id) => Some(crate::alerts::fetch_alert(&mut tx, tenant, id).await?),
            None => None,
        };
        let secrets = match key {
            Some(key) => match crate::secrets::open_secrets(&mut tx, key, tenant).await {
                Err(SecretError::Store(e)) => return Err(e),
                other => other,
            },
            None => Ok(std::collections::BTreeMap::new()),
        };
        tx.commit().await?;
        Ok(Claim::Claimed((run, RunInputs { alert, secrets })))
    }

    /// Extends the lease of a running claim. `Err(Fenced)` when the claim was superseded.
    pub async fn heartbeat_run(
        &self,
        run_id: Uuid,
        epoch: i32,
        lease: Duration,
    ) -> Result<Result<(), Fenced>, StoreError> {
        let mut tx = self.begin(crate::Scope::System).await?;
        let n = sqlx::query(
            "UPDATE runs SET lease_until = now() + make_interval(secs => $3)
             WHERE id = $1 AND epoch = $2 AND status = 'running'",
        )
        .bind(run_id)
        .bind(epoch)
        .bind(lease_secs(lease))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(if n == 1 {
            Ok(())
        } else {
            Err(Fenced { run_id, epoch })
        })
    }

    /// Hands a claimed run back (its runner died or the worker is shutting down) so the
    /// next delivery can claim it at once.
    pub async fn release_run(&self, run_id: Uuid, epoch: i32) -> Result<(), StoreError> {
        self.hand_back(run_id, epoch, None).await
    }

    /// Hands a claimed run back for a retry after `delay` (its job is redelivered then),
    /// remembering why, so that the run explains itself as "delayed by backoff until T".
    pub async fn retry_run_later(
        &self,
        run_id: Uuid,
        epoch: i32,
        delay: Duration,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.hand_back(run_id, epoch, Some((delay, reason))).await
    }

    async fn hand_back(
        &self,
        run_id: Uuid,
        epoch: i32,
        retry: Option<(Duration, &str)>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(crate::Scope::System).await?;
        sqlx::query(
            "UPDATE runs SET status = 'queued', lease_until = NULL, updated_at = now(),
                    retry_at = now() + make_interval(secs => $3), retry_reason = $4
             WHERE id = $1 AND epoch = $2 AND status = 'running'",
        )
        .bind(run_id)
        .bind(epoch)
        .bind(retry.map(|(delay, _)| delay.as_secs_f64()))
        .bind(retry.map(|(_, reason)| reason))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Journals an action call's intent, or decides how a re-executed run replays it.
    pub async fn record_step_intent(
        &self,
        step: &StepIntent<'_>,
    ) -> Result<Result<StepDecision, Fenced>, StoreError> {
        let args: serde_json::Value = serde_json::from_str(step.args_json)
            .unwrap_or_else(|_| serde_json::Value::String(step.args_json.to_owned()));
        let hash = args_hash(step.args_json);
        let mut tx = self.begin(crate::Scope::Tenant(step.tenant)).await?;
        // The common case in one statement: the claim is current and the step is new. The
        // run row is locked (a concurrent claim waits until this intent is decided).
        let inserted: Option<i32> = sqlx::query_scalar(
            "WITH live AS (
                SELECT id FROM runs
                WHERE id = $1 AND tenant_id = $3 AND epoch = $8 AND status = 'running'
                FOR UPDATE
             )
             INSERT INTO run_steps (run_id, seq, tenant_id, action, args, args_hash,
                idempotent, state, epoch, trace_id, span_id)
             SELECT live.id, $2, $3, $4, $5, $6, $7, 'intent', $8, $9, $10 FROM live
             ON CONFLICT (run_id, seq) DO NOTHING
             RETURNING seq",
        )
        .bind(step.run_id)
        .bind(step.seq)
        .bind(step.tenant)
        .bind(step.action)
        .bind(Json(&args))
        .bind(&hash)
        .bind(step.idempotent)
        .bind(step.epoch)
        .bind(step.trace.map(|t| t.trace_id.as_str()))
        .bind(step.trace.map(|t| t.span_id.as_str()))
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_some() {
            tx.commit().await?;
            return Ok(Ok(StepDecision::Execute));
        }
        // Fenced, or a step journaled by an earlier execution: decide how to replay it.
        let current: Option<i32> = sqlx::query_scalar(
            "SELECT epoch FROM runs WHERE id = $1 AND tenant_id = $2 AND status = 'running' FOR UPDATE",
        )
        .bind(step.run_id)
        .bind(step.tenant)
        .fetch_optional(&mut *tx)
        .await?;
        if current != Some(step.epoch) {
            return Ok(Err(Fenced {
                run_id: step.run_id,
                epoch: step.epoch,
            }));
        }
        let existing: Option<JournaledStep> = sqlx::query_as(
            "SELECT action, args_hash, state, result, error, args FROM run_steps
                 WHERE run_id = $1 AND seq = $2",
        )
        .bind(step.run_id)
        .bind(step.seq)
        .fetch_optional(&mut *tx)
        .await?;
        let decision = match existing {
            // The insert above found the step, and the run row it locked stays ours until
            // commit (nothing deletes a running run's steps).
            None => {
                return Err(StoreError::Corrupt {
                    what: "run_steps (journaled step vanished)",
                });
            }
            Some(JournaledStep {
                action,
                args_hash: recorded_hash,
                state,
                result,
                error,
                args: recorded_args,
            }) => {
                if action != step.action || recorded_hash != hash {
                    StepDecision::Abort {
                        status: RunStatus::Failed,
                        reason: format!(
                            "non-deterministic playbook: step {} was {action}({recorded_args}) \
                             and is now {}({args})",
                            step.seq, step.action
                        ),
                    }
                } else {
                    match state.as_str() {
                        "succeeded" => StepDecision::Replay {
                            result: Some(
                                result.map(|Json(v)| v).unwrap_or(serde_json::Value::Null),
                            ),
                            error: None,
                        },
                        "failed" => StepDecision::Replay {
                            result: None,
                            error: Some(error.unwrap_or_default()),
                        },
                        _ if step.idempotent => {
                            sqlx::query(
                                "UPDATE run_steps SET state = 'intent', epoch = $3, started_at = now()
                                 WHERE run_id = $1 AND seq = $2",
                            )
                            .bind(step.run_id)
                            .bind(step.seq)
                            .bind(step.epoch)
                            .execute(&mut *tx)
                            .await?;
                            StepDecision::Execute
                        }
                        _ => {
                            sqlx::query(
                                "UPDATE run_steps SET state = 'uncertain' WHERE run_id = $1 AND seq = $2",
                            )
                            .bind(step.run_id)
                            .bind(step.seq)
                            .execute(&mut *tx)
                            .await?;
                            StepDecision::Abort {
                                status: RunStatus::NeedsReview,
                                reason: format!(
                                    "step {} ({action}) was started but its outcome was never \
                                     recorded, and the action is not idempotent",
                                    step.seq
                                ),
                            }
                        }
                    }
                }
            }
        };
        tx.commit().await?;
        Ok(Ok(decision))
    }

    /// Journals an executed step's outcome.
    pub async fn record_step_outcome(
        &self,
        step: &StepOutcome<'_>,
    ) -> Result<Result<(), Fenced>, StoreError> {
        // Deferred durability: the runner goes on without waiting for this record, and the
        // worker journals a run's events in order, so the run's next durable commit (its
        // next intent, or its end) flushes this one too. A database crash before that loses
        // only what a worker crash right before this write would: the step is found in
        // `intent` and replayed by the rules for that (re-executed when idempotent, else
        // the run needs review); never a second side effect.
        let mut tx = self
            .begin_with(crate::Scope::System, crate::Commit::Deferred)
            .await?;
        let state = if step.error.is_none() {
            "succeeded"
        } else {
            "failed"
        };
        let n = sqlx::query(
            "UPDATE run_steps SET state = $4, result = $5, error = $6, attempts = $7,
                    duration_ms = $8, finished_at = now()
             WHERE run_id = $1 AND seq = $2 AND epoch = $3 AND state = 'intent'
               AND EXISTS (SELECT 1 FROM runs WHERE id = $1 AND epoch = $3 AND status = 'running')",
        )
        .bind(step.run_id)
        .bind(step.seq)
        .bind(step.epoch)
        .bind(state)
        .bind(step.result.as_ref().map(Json))
        .bind(step.error)
        .bind(step.attempts)
        .bind(step.duration_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(if n == 1 {
            Ok(())
        } else {
            Err(Fenced {
                run_id: step.run_id,
                epoch: step.epoch,
            })
        })
    }

    /// Appends a line to the run's log.
    pub async fn append_run_log(
        &self,
        run_id: Uuid,
        tenant: &str,
        level: &str,
        message: &str,
        fields: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        sqlx::query(
            "INSERT INTO run_logs (run_id, tenant_id, level, message, fields) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(run_id)
        .bind(tenant)
        .bind(level)
        .bind(message)
        .bind(Json(fields))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records the end of an execution. A final status also marks steps left in `intent`
    /// as `uncertain`. A suspension (`waiting_approval`, `sleeping`) keeps the journal; a
    /// run whose approval was decided while it was suspending goes straight back to the
    /// dispatch queue.
    pub async fn finish_run(
        &self,
        outcome: &RunOutcome<'_>,
    ) -> Result<Result<(), Fenced>, StoreError> {
        let mut tx = self.begin(crate::Scope::System).await?;
        // A final status also marks steps left in `intent` as `uncertain`, in the same
        // statement.
        let n: i64 = sqlx::query_scalar(
            "WITH r AS (
                UPDATE runs SET
                    status = CASE
                        WHEN $3 = 'waiting_approval' AND NOT EXISTS (
                            SELECT 1 FROM approvals a WHERE a.run_id = runs.id AND a.status = 'pending')
                        THEN 'queued' ELSE $3 END,
                    dispatched_at = NULL,
                    result = $4, error = $5, traceback = $6,
                    finished_at = CASE WHEN $7 THEN now() ELSE NULL END,
                    updated_at = now(), lease_until = NULL
                WHERE id = $1 AND epoch = $2 AND status = 'running'
                RETURNING id
             ), s AS (
                UPDATE run_steps SET state = 'uncertain'
                WHERE $7 AND run_id IN (SELECT id FROM r) AND state = 'intent'
             )
             SELECT count(*) FROM r",
        )
        .bind(outcome.run_id)
        .bind(outcome.epoch)
        .bind(outcome.status.as_str())
        .bind(outcome.result.as_ref().map(Json))
        .bind(outcome.error)
        .bind(outcome.traceback)
        .bind(outcome.status.is_terminal())
        .fetch_one(&mut *tx)
        .await?;
        if n != 1 {
            return Ok(Err(Fenced {
                run_id: outcome.run_id,
                epoch: outcome.epoch,
            }));
        }
        if outcome.status == RunStatus::WaitingApproval {
            // The approval may have been decided meanwhile: let the dispatcher look now.
            sqlx::query("SELECT pg_notify('tocsin_dispatch', '')")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Queues a manual run of `playbook` from the tenant's active bundle, optionally on an
    /// alert (the run joins its case) and with a JSON input. The dispatcher publishes it.
    pub async fn start_manual_run(
        &self,
        tenant: &str,
        playbook: &str,
        alert_id: Option<Uuid>,
        input: Option<&serde_json::Value>,
        traceparent: Option<&str>,
    ) -> Result<Uuid, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let found: Option<(String, String, bool)> = sqlx::query_as(
            "SELECT p.bundle_hash, p.priority, COALESCE(s.enabled, p.enabled) FROM playbooks p
             LEFT JOIN playbook_switches s ON s.tenant_id = p.tenant_id AND s.name = p.name
             WHERE p.tenant_id = $1 AND p.name = $2 AND p.bundle_hash = (
                SELECT bundle_hash FROM deployments WHERE tenant_id = $1 ORDER BY id DESC LIMIT 1)",
        )
        .bind(tenant)
        .bind(playbook)
        .fetch_optional(&mut *tx)
        .await?;
        let (bundle_hash, priority, enabled) =
            found.ok_or(StoreError::NotFound { entity: "playbook" })?;
        if !enabled {
            return Err(StoreError::Invalid(format!(
                "playbook {playbook} is disabled; enable it first"
            )));
        }
        let case_id: Option<Uuid> = match alert_id {
            Some(alert_id) => Some(
                sqlx::query_scalar::<_, Option<Uuid>>(
                    "SELECT case_id FROM alerts WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant)
                .bind(alert_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound { entity: "alert" })?,
            )
            .flatten(),
            None => None,
        };
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO runs (id, tenant_id, alert_id, case_id, playbook, bundle_hash, priority,
                    trigger, input, traceparent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'manual', $8, $9)",
        )
        .bind(id)
        .bind(tenant)
        .bind(alert_id)
        .bind(case_id)
        .bind(playbook)
        .bind(&bundle_hash)
        .bind(&priority)
        .bind(input.map(Json))
        .bind(traceparent)
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(crate::dispatch::DISPATCH_CHANNEL)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Runs of `tenant`, newest first.
    pub async fn list_runs(
        &self,
        tenant: &str,
        filter: &RunFilter,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<RunListItem>, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let limit = clamp_limit(limit);
        let (at, id) = binds(after);
        let rows: Vec<RunListItem> = sqlx::query_as(
            "SELECT id, playbook, status, trigger, alert_id, case_id, attempts, queued_at,
                    started_at, finished_at
             FROM runs
             WHERE tenant_id = $1
               AND ($2::text IS NULL OR status = $2)
               AND ($3::text IS NULL OR playbook = $3)
               AND ($4::timestamptz IS NULL OR (queued_at, id) < ($4, $5))
             ORDER BY queued_at DESC, id DESC LIMIT $6",
        )
        .bind(tenant)
        .bind(filter.status.map(RunStatus::as_str))
        .bind(filter.playbook.as_deref())
        .bind(at)
        .bind(id)
        .bind(limit + 1)
        .fetch_all(&mut *tx)
        .await?;
        Ok(Page::from_rows(rows, limit))
    }

    /// One run of `tenant` with its steps and log.
    pub async fn run_view(&self, tenant: &str, id: Uuid) -> Result<RunView, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let mut run: RunView = sqlx::query_as(
            "SELECT id, tenant_id, alert_id, case_id, playbook, bundle_hash, status, epoch, attempts,
                    trigger, input, result, error, traceback, queued_at, started_at, finished_at,
                    split_part(traceparent, '-', 2) AS trace_id
             FROM runs WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound { entity: "run" })?;
        run.steps = sqlx::query_as(
            "SELECT seq, action, args, state, result, error, attempts, duration_ms, started_at, finished_at,
                    trace_id, span_id
             FROM run_steps WHERE tenant_id = $1 AND run_id = $2 ORDER BY seq",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        run.logs = sqlx::query_as(
            "SELECT level, message, fields, created_at
             FROM run_logs WHERE tenant_id = $1 AND run_id = $2 ORDER BY id LIMIT 1000",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        run.explain = explain_run(&mut tx, &run).await?;
        Ok(run)
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// "Why hasn't it started?" for one run, from its state in Postgres.
async fn explain_run(tx: &mut sqlx::PgConnection, run: &RunView) -> Result<String, StoreError> {
    Ok(match run.status.as_str() {
        "queued" => {
            let (ahead, dispatched, retry_at, retry_reason): (
                i64,
                bool,
                Option<OffsetDateTime>,
                Option<String>,
            ) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM runs o
                         WHERE o.tenant_id = r.tenant_id AND o.status = 'queued'
                           AND (o.queued_at, o.id) < (r.queued_at, r.id)),
                        r.dispatched_at IS NOT NULL,
                        CASE WHEN r.retry_at > now() THEN r.retry_at END,
                        r.retry_reason
                 FROM runs r WHERE r.tenant_id = $1 AND r.id = $2",
            )
            .bind(&run.tenant)
            .bind(run.id)
            .fetch_one(&mut *tx)
            .await?;
            if let Some(at) = retry_at {
                return Ok(format!(
                    "delayed by backoff until {} (attempt {} was handed back: {})",
                    rfc3339(at),
                    run.attempts,
                    retry_reason.as_deref().unwrap_or("no reason recorded")
                ));
            }
            let stage = if dispatched {
                "published to the RUNS stream, waiting for a worker"
            } else {
                "waiting to be published to the RUNS stream"
            };
            format!(
                "queued since {}: {stage}, behind {ahead} older queued runs of this tenant",
                rfc3339(run.queued_at)
            )
        }
        "waiting_approval" => {
            let approval: Option<(String, OffsetDateTime, String)> = sqlx::query_as(
                "SELECT title, expires_at, default_decision FROM approvals
                 WHERE tenant_id = $1 AND run_id = $2 AND status = 'pending'
                 ORDER BY created_at DESC LIMIT 1",
            )
            .bind(&run.tenant)
            .bind(run.id)
            .fetch_optional(&mut *tx)
            .await?;
            match approval {
                Some((title, expires, default)) => format!(
                    "waiting for approval {title:?} until {}; then the default applies: {default}",
                    rfc3339(expires)
                ),
                None => "waiting for an approval".to_owned(),
            }
        }
        "sleeping" => {
            let resume: Option<OffsetDateTime> =
                sqlx::query_scalar("SELECT resume_at FROM runs WHERE tenant_id = $1 AND id = $2")
                    .bind(&run.tenant)
                    .bind(run.id)
                    .fetch_one(&mut *tx)
                    .await?;
            match resume {
                Some(t) => format!("asleep until {}", rfc3339(t)),
                None => "asleep".to_owned(),
            }
        }
        "running" => format!(
            "running (attempt {}) since {}",
            run.attempts,
            run.started_at.map(rfc3339).unwrap_or_default()
        ),
        "dead_lettered" => format!(
            "dead-lettered: {}",
            run.error.as_deref().unwrap_or("no reason recorded")
        ),
        "needs_review" => format!(
            "stopped for review: {}",
            run.error.as_deref().unwrap_or("an uncertain step")
        ),
        "succeeded" | "skipped" | "cancelled" => format!(
            "{} at {}",
            run.status,
            run.finished_at.map(rfc3339).unwrap_or_default()
        ),
        other => format!(
            "{other}: {}",
            run.error.as_deref().unwrap_or("no error recorded")
        ),
    })
}

/// A run as listed under its alert.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct RunSummary {
    /// Run id.
    pub id: Uuid,
    /// Playbook name.
    pub playbook: String,
    /// Status name.
    pub status: String,
    /// When it was queued.
    #[serde(with = "time::serde::rfc3339")]
    pub queued_at: OffsetDateTime,
    /// When it first started.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// When it finished.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// A run as the API shows it.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct RunView {
    /// Run id.
    pub id: Uuid,
    /// Tenant.
    #[sqlx(rename = "tenant_id")]
    pub tenant: String,
    /// Triggering alert.
    pub alert_id: Option<Uuid>,
    /// Case.
    pub case_id: Option<Uuid>,
    /// Playbook name.
    pub playbook: String,
    /// Bundle the run executes.
    pub bundle_hash: String,
    /// Status name.
    pub status: String,
    /// Fencing epoch (number of claims).
    pub epoch: i32,
    /// Executions so far.
    pub attempts: i32,
    /// alert | manual | schedule.
    pub trigger: String,
    /// Input of a manual run.
    pub input: Option<Json<serde_json::Value>>,
    /// Returned dict.
    pub result: Option<Json<serde_json::Value>>,
    /// Error.
    pub error: Option<String>,
    /// Python traceback.
    pub traceback: Option<String>,
    /// Queued.
    #[serde(with = "time::serde::rfc3339")]
    pub queued_at: OffsetDateTime,
    /// First started.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// Finished.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// The trace the run belongs to (hex trace id; that of its alert for alert runs).
    pub trace_id: Option<String>,
    /// Journal.
    #[sqlx(skip)]
    pub steps: Vec<StepView>,
    /// Log lines.
    #[sqlx(skip)]
    pub logs: Vec<LogLine>,
    /// Where the run is, in words: queued behind N runs, waiting for an approval until T,
    /// asleep until T, running since T, or why it ended.
    #[sqlx(skip)]
    pub explain: String,
}

/// A journaled step as the API shows it.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct StepView {
    /// Position.
    pub seq: i32,
    /// Action name.
    pub action: String,
    /// Arguments.
    pub args: Json<serde_json::Value>,
    /// intent | succeeded | failed | uncertain.
    pub state: String,
    /// Result.
    pub result: Option<Json<serde_json::Value>>,
    /// Error.
    pub error: Option<String>,
    /// Attempts.
    pub attempts: i32,
    /// Duration.
    pub duration_ms: Option<i64>,
    /// Started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Finished.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Trace id of the execution that journaled the step.
    pub trace_id: Option<String>,
    /// Span id of the step's span in that trace.
    pub span_id: Option<String>,
}

/// One line of a run's log.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct LogLine {
    /// Level.
    pub level: String,
    /// Message.
    pub message: String,
    /// Structured fields.
    pub fields: Json<serde_json::Value>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// When a run's alert was accepted, and when the run started and finished (benchmarks).
#[derive(Debug, Clone, FromRow)]
pub struct RunTiming {
    /// Playbook name.
    pub playbook: String,
    /// Final or current status.
    pub status: String,
    /// When ingest accepted the triggering alert.
    pub received_at: Option<OffsetDateTime>,
    /// First claim.
    pub started_at: Option<OffsetDateTime>,
    /// Completion.
    pub finished_at: Option<OffsetDateTime>,
}

impl Store {
    /// Queues `count` manual runs of `playbook` from the tenant's active bundle at once, for
    /// the dispatcher to publish (load tests: `tocsin bench backlog` pre-loads its queue this
    /// way). Inserted in transactions of at most 50,000 rows, each followed by a dispatch
    /// notification. Returns how many were queued.
    pub async fn queue_runs_in_bulk(
        &self,
        tenant: &str,
        playbook: &str,
        count: u64,
    ) -> Result<u64, StoreError> {
        const CHUNK: u64 = 50_000;
        let mut queued = 0;
        while queued < count {
            let n = CHUNK.min(count - queued);
            let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
            let inserted = sqlx::query(
                "INSERT INTO runs (id, tenant_id, playbook, bundle_hash, priority, trigger)
                 SELECT gen_random_uuid(), $1, p.name, p.bundle_hash, p.priority, 'manual'
                 FROM playbooks p, generate_series(1, $3)
                 WHERE p.tenant_id = $1 AND p.name = $2 AND p.bundle_hash = (
                    SELECT bundle_hash FROM deployments WHERE tenant_id = $1
                    ORDER BY id DESC LIMIT 1)",
            )
            .bind(tenant)
            .bind(playbook)
            .bind(i64::try_from(n).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Err(StoreError::NotFound { entity: "playbook" });
            }
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(crate::dispatch::DISPATCH_CHANNEL)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            queued += inserted;
        }
        Ok(queued)
    }

    /// How many of the tenant's runs are queued, and of those, how many the dispatcher has
    /// not published yet.
    pub async fn run_queue_depth(&self, tenant: &str) -> Result<(i64, i64), StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        Ok(sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE dispatched_at IS NULL)
             FROM runs WHERE tenant_id = $1 AND status = 'queued'",
        )
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await?)
    }

    /// Timings of the tenant's runs that finished in `[from, to)` (benchmarks; the alert's
    /// `received_at` is not looked up).
    pub async fn runs_finished_between(
        &self,
        tenant: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<RunTiming>, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        Ok(sqlx::query_as(
            "SELECT playbook, status, NULL::timestamptz AS received_at, started_at, finished_at
             FROM runs WHERE tenant_id = $1 AND finished_at >= $2 AND finished_at < $3",
        )
        .bind(tenant)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *tx)
        .await?)
    }

    /// Timings of every run of `tenant` (benchmarks and diagnostics).
    pub async fn run_timings(&self, tenant: &str) -> Result<Vec<RunTiming>, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        Ok(sqlx::query_as(
            "SELECT r.playbook, r.status, a.received_at, r.started_at, r.finished_at
             FROM runs r LEFT JOIN alerts a ON a.id = r.alert_id
             WHERE r.tenant_id = $1",
        )
        .bind(tenant)
        .fetch_all(&mut *tx)
        .await?)
    }

    /// Runs of `tenant` not yet final (queued, running or suspended).
    pub async fn unfinished_runs(&self, tenant: &str) -> Result<i64, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM runs WHERE tenant_id = $1
               AND status IN ('queued', 'running', 'waiting_approval', 'sleeping')",
        )
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await?)
    }

    /// Alerts of `tenant` recorded so far.
    pub async fn alert_count(&self, tenant: &str) -> Result<i64, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM alerts WHERE tenant_id = $1")
                .bind(tenant)
                .fetch_one(&mut *tx)
                .await?,
        )
    }
}

/// Filters of the run list; every one optional.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// Only runs of this playbook.
    pub playbook: Option<String>,
}

/// A run as lists show it.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct RunListItem {
    /// Run id.
    pub id: Uuid,
    /// Playbook name.
    pub playbook: String,
    /// Status name.
    pub status: String,
    /// alert | manual | schedule.
    pub trigger: String,
    /// Triggering alert.
    pub alert_id: Option<Uuid>,
    /// Case.
    pub case_id: Option<Uuid>,
    /// Executions so far.
    pub attempts: i32,
    /// Queued (the list's order).
    #[serde(with = "time::serde::rfc3339")]
    pub queued_at: OffsetDateTime,
    /// First started.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// Finished.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

impl Keyed for RunListItem {
    fn cursor(&self) -> Cursor {
        Cursor {
            at: self.queued_at,
            id: self.id,
        }
    }
}

/// A run's inputs ([`Store::claim_run_with_inputs`]).
#[derive(Debug)]
pub struct RunInputs {
    /// The run's alert (its `runs` left empty), when it has one.
    pub alert: Option<crate::alerts::AlertView>,
    /// The tenant's secrets by name (empty without a master key), or why they do not
    /// decrypt (never [`SecretError::Store`]: database failures fail the claim).
    pub secrets: Result<std::collections::BTreeMap<String, String>, SecretError>,
}

/// The claim of [`Store::claim_run`], inside the caller's transaction (not committed).
async fn claim_in(
    tx: &mut sqlx::PgConnection,
    tenant: &str,
    run_id: Uuid,
    lease: Duration,
) -> Result<Claim, StoreError> {
    let claimed: Option<ClaimedRun> = sqlx::query_as(
        "UPDATE runs SET status = 'running', epoch = epoch + 1, attempts = attempts + 1,
                started_at = coalesce(started_at, now()), updated_at = now(),
                retry_at = NULL, retry_reason = NULL,
                lease_until = now() + make_interval(secs => $3)
         WHERE id = $1 AND tenant_id = $2
           AND (status = 'queued' OR (status = 'running' AND lease_until < now()))
         RETURNING id, tenant_id, alert_id, playbook, bundle_hash, epoch, attempts, trigger, input,
                   queued_at",
    )
    .bind(run_id)
    .bind(tenant)
    .bind(lease_secs(lease))
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(run) = claimed {
        return Ok(Claim::Claimed(run));
    }
    let row: Option<(String, Option<f64>)> = sqlx::query_as(
        "SELECT status, extract(epoch FROM lease_until - now())::float8
         FROM runs WHERE id = $1 AND tenant_id = $2",
    )
    .bind(run_id)
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await?;
    let (status, left) = row.ok_or(StoreError::NotFound { entity: "run" })?;
    let status: RunStatus = status.parse().map_err(|_| StoreError::Corrupt {
        what: "runs.status",
    })?;
    if status.is_terminal() || status.is_suspended() {
        // Suspended runs are re-dispatched with a new job when they resume.
        return Ok(Claim::Finished(status));
    }
    // Running with a live lease (or queued again between the two statements).
    let left = left.unwrap_or(0.0).clamp(0.1, 3600.0);
    Ok(Claim::Busy {
        retry_after: Duration::from_secs_f64(left),
    })
}
