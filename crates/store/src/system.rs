//! System steps: platform effects a playbook asks for through the journal (`tocsin.*`
//! actions). The worker performs them here, in the same transaction that journals the step,
//! so each happens exactly once however often the run is replayed.
//!
//! | action | args | effect | result |
//! |---|---|---|---|
//! | `tocsin.case.comment` | `{text}` | timeline comment | `{}` |
//! | `tocsin.case.set_status` | `{status, determination?}` | case status | `{status}` |
//! | `tocsin.case.set_severity` | `{severity}` | case severity | `{severity}` |
//! | `tocsin.case.add_tag` | `{tag}` | case tag | `{tags}` |
//! | `tocsin.case.add_observable` | `{type, value}` | observable stored and linked to the case, timeline entry | `{}` |
//! | `tocsin.approval` | `{title, details, approvers, timeout_s, default}` | pending approval, run suspends | `{approved, decided_by, comment, timed_out}` |
//! | `tocsin.sleep` | `{seconds}` | durable timer, run suspends | `null` |

use serde_json::{Value, json};
use sqlx::PgConnection;
use sqlx::types::Json;
use tocsin_proto::types::{RunStatus, Severity};
use uuid::Uuid;

use crate::alerts::case_event_by;
use crate::runs::{Fenced, StepDecision, StepIntent};
use crate::{Store, StoreError};

/// Longest durable sleep or approval timeout accepted (a year).
const MAX_WAIT_SECS: f64 = 366.0 * 24.0 * 3600.0;

/// Whether `action` is performed by the platform rather than the playbook.
pub fn is_system_action(action: &str) -> bool {
    action.starts_with("tocsin.")
}

fn bad(message: impl Into<String>) -> StepDecision {
    StepDecision::Replay {
        result: None,
        error: Some(message.into()),
    }
}

#[derive(Debug, sqlx::FromRow)]
struct ApprovalState {
    status: String,
    default_decision: String,
    decided_by: Option<String>,
    comment: Option<String>,
    title: String,
}

#[derive(Debug, sqlx::FromRow)]
struct Journaled {
    action: String,
    args: Value,
    state: String,
    result: Option<Json<Value>>,
    error: Option<String>,
}

impl Store {
    /// Performs (or replays) a system step for a claimed run.
    pub async fn system_step(
        &self,
        step: &StepIntent<'_>,
    ) -> Result<Result<StepDecision, Fenced>, StoreError> {
        let args: Value = match serde_json::from_str(step.args_json) {
            Ok(v) => v,
            Err(_) => return Ok(Ok(bad("system step arguments are not JSON"))),
        };
        let mut tx = self.begin(crate::Scope::Tenant(step.tenant)).await?;
        let run: Option<(i32, Option<Uuid>)> = sqlx::query_as(
            "SELECT epoch, case_id FROM runs
             WHERE id = $1 AND tenant_id = $2 AND status = 'running' FOR UPDATE",
        )
        .bind(step.run_id)
        .bind(step.tenant)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((epoch, case_id)) = run.filter(|(e, _)| *e == step.epoch) else {
            return Ok(Err(Fenced {
                run_id: step.run_id,
                epoch: step.epoch,
            }));
        };
        let _ = epoch;
        let journaled: Option<Journaled> = sqlx::query_as(
            "SELECT action, args, state, result, error FROM run_steps WHERE run_id = $1 AND seq = $2",
        )
        .bind(step.run_id)
        .bind(step.seq)
        .fetch_optional(&mut *tx)
        .await?;
        let decision = match journaled {
            Some(j) if j.action != step.action || j.args != args => StepDecision::Abort {
                status: RunStatus::Failed,
                reason: format!(
                    "non-deterministic playbook: step {} was {}({}) and is now {}({args})",
                    step.seq, j.action, j.args, step.action
                ),
            },
            Some(j) if j.state == "succeeded" => StepDecision::Replay {
                result: Some(j.result.map(|Json(v)| v).unwrap_or(Value::Null)),
                error: None,
            },
            Some(j) if j.state == "failed" => StepDecision::Replay {
                result: None,
                error: Some(j.error.unwrap_or_default()),
            },
            Some(j) if j.state == "waiting" => resume_waiting(&mut tx, step, j).await?,
            Some(_) | None => perform(&mut tx, step, case_id, &args).await?,
        };
        tx.commit().await?;
        Ok(Ok(decision))
    }
}

async fn journal(
    tx: &mut PgConnection,
    step: &StepIntent<'_>,
    state: &str,
    result: Option<&Value>,
    error: Option<&str>,
) -> Result<(), StoreError> {
    let args: Value = serde_json::from_str(step.args_json).unwrap_or(Value::Null);
    sqlx::query(
        "INSERT INTO run_steps (run_id, seq, tenant_id, action, args, args_hash, idempotent,
                state, result, error, attempts, duration_ms, epoch, finished_at, trace_id, span_id)
         VALUES ($1, $2, $3, $4, $5, '', true, $6, $7, $8, 1, 0, $9,
                 CASE WHEN $6 = 'waiting' THEN NULL ELSE now() END, $10, $11)
         ON CONFLICT (run_id, seq) DO UPDATE SET state = EXCLUDED.state, result = EXCLUDED.result,
                error = EXCLUDED.error, epoch = EXCLUDED.epoch, finished_at = EXCLUDED.finished_at",
    )
    .bind(step.run_id)
    .bind(step.seq)
    .bind(step.tenant)
    .bind(step.action)
    .bind(Json(&args))
    .bind(state)
    .bind(result.map(Json))
    .bind(error)
    .bind(step.epoch)
    .bind(step.trace.map(|t| t.trace_id.as_str()))
    .bind(step.trace.map(|t| t.span_id.as_str()))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn done(
    tx: &mut PgConnection,
    step: &StepIntent<'_>,
    result: Value,
) -> Result<StepDecision, StoreError> {
    journal(tx, step, "succeeded", Some(&result), None).await?;
    Ok(StepDecision::Replay {
        result: Some(result),
        error: None,
    })
}

async fn refuse(
    tx: &mut PgConnection,
    step: &StepIntent<'_>,
    error: String,
) -> Result<StepDecision, StoreError> {
    journal(tx, step, "failed", None, Some(&error)).await?;
    Ok(bad(error))
}

fn str_arg<'a>(args: &'a Value, key: &str) -> Option<&'a str> {
    args.get(key).and_then(Value::as_str)
}

fn wait_secs(args: &Value, key: &str) -> Option<f64> {
    args.get(key)
        .and_then(Value::as_f64)
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= MAX_WAIT_SECS)
}

async fn perform(
    tx: &mut PgConnection,
    step: &StepIntent<'_>,
    case_id: Option<Uuid>,
    args: &Value,
) -> Result<StepDecision, StoreError> {
    let actor = format!("run:{}", step.run_id);
    if let Some(op) = step.action.strip_prefix("tocsin.case.") {
        let Some(case_id) = case_id else {
            return refuse(tx, step, "this run has no case".to_owned()).await;
        };
        let tenant = step.tenant;
        return match op {
            "comment" => {
                match str_arg(args, "text").filter(|t| !t.trim().is_empty() && t.len() <= 65_536) {
                    Some(text) => {
                        case_event_by(
                            tx,
                            tenant,
                            case_id,
                            "comment",
                            &actor,
                            json!({ "text": text }),
                        )
                        .await?;
                        done(tx, step, json!({})).await
                    }
                    None => refuse(tx, step, "comment text must be 1-65536 bytes".to_owned()).await,
                }
            }
            "set_status" => {
                let status = str_arg(args, "status").unwrap_or_default();
                let determination = str_arg(args, "determination");
                if !matches!(status, "new" | "in_progress" | "resolved" | "closed") {
                    return refuse(tx, step, format!("invalid case status {status:?}")).await;
                }
                if !determination
                    .is_none_or(|d| matches!(d, "true_positive" | "false_positive" | "benign"))
                {
                    return refuse(tx, step, "invalid determination".to_owned()).await;
                }
                if status == "resolved" && determination.is_none() {
                    return refuse(
                        tx,
                        step,
                        "resolving a case requires a determination".to_owned(),
                    )
                    .await;
                }
                let previous: Option<String> = sqlx::query_scalar(
                    "UPDATE cases c SET status = $3, determination = coalesce($4, c.determination),
                            version = c.version + 1, updated_at = now()
                     FROM cases old WHERE c.id = $1 AND c.tenant_id = $2 AND old.id = c.id
                     RETURNING old.status",
                )
                .bind(case_id)
                .bind(tenant)
                .bind(status)
                .bind(determination)
                .fetch_optional(&mut *tx)
                .await?;
                case_event_by(
                    tx,
                    tenant,
                    case_id,
                    "status_changed",
                    &actor,
                    json!({ "from": previous, "to": status, "determination": determination }),
                )
                .await?;
                done(tx, step, json!({ "status": status })).await
            }
            "set_severity" => {
                match str_arg(args, "severity").and_then(|s| s.parse::<Severity>().ok()) {
                    Some(severity) => {
                        sqlx::query(
                        "UPDATE cases SET severity = $3, version = version + 1, updated_at = now()
                         WHERE id = $1 AND tenant_id = $2",
                    )
                    .bind(case_id)
                    .bind(tenant)
                    .bind(severity.as_str())
                    .execute(&mut *tx)
                    .await?;
                        case_event_by(
                            tx,
                            tenant,
                            case_id,
                            "severity_changed",
                            &actor,
                            json!({ "to": severity.as_str() }),
                        )
                        .await?;
                        done(tx, step, json!({ "severity": severity.as_str() })).await
                    }
                    None => refuse(tx, step, "invalid severity".to_owned()).await,
                }
            }
            "add_tag" => match str_arg(args, "tag")
                .map(str::trim)
                .filter(|t| !t.is_empty() && t.len() <= 256)
            {
                Some(tag) => {
                    let tags: Vec<String> = sqlx::query_scalar(
                        "UPDATE cases SET tags = CASE WHEN $3 = ANY(tags) THEN tags ELSE array_append(tags, $3) END,
                                version = version + 1, updated_at = now()
                         WHERE id = $1 AND tenant_id = $2 RETURNING tags",
                    )
                    .bind(case_id)
                    .bind(tenant)
                    .bind(tag)
                    .fetch_one(&mut *tx)
                    .await?;
                    case_event_by(
                        tx,
                        tenant,
                        case_id,
                        "tag_added",
                        &actor,
                        json!({ "tag": tag }),
                    )
                    .await?;
                    done(tx, step, json!({ "tags": tags })).await
                }
                None => refuse(tx, step, "a tag must be 1-256 bytes".to_owned()).await,
            },
            "add_observable" => {
                let kind = str_arg(args, "type").and_then(crate::extract::kind_name);
                let value = str_arg(args, "value").unwrap_or_default();
                let Some((kind, value)) =
                    kind.and_then(|k| crate::extract::normalize(k, value).map(|v| (k, v)))
                else {
                    return refuse(
                        tx,
                        step,
                        "an observable needs a known type and a valid 1-2048 byte value".to_owned(),
                    )
                    .await;
                };
                let ids = crate::observables::link_observables(
                    tx,
                    tenant,
                    &[(kind, value.clone())],
                    time::OffsetDateTime::now_utc(),
                    None,
                    Some(case_id),
                )
                .await?;
                case_event_by(
                    tx,
                    tenant,
                    case_id,
                    "observable_added",
                    &actor,
                    json!({ "type": kind, "value": value, "observable_id": ids.first() }),
                )
                .await?;
                done(tx, step, json!({})).await
            }
            other => refuse(tx, step, format!("unknown case operation {other:?}")).await,
        };
    }
    match step.action {
        "tocsin.approval" => {
            let Some(title) =
                str_arg(args, "title").filter(|t| !t.trim().is_empty() && t.len() <= 1000)
            else {
                return refuse(
                    tx,
                    step,
                    "an approval needs a title of 1-1000 bytes".to_owned(),
                )
                .await;
            };
            let Some(timeout) = wait_secs(args, "timeout_s") else {
                return refuse(
                    tx,
                    step,
                    "approval timeout must be between 0 and a year".to_owned(),
                )
                .await;
            };
            let default = match str_arg(args, "default").unwrap_or("deny") {
                d @ ("approve" | "deny") => d,
                _ => {
                    return refuse(
                        tx,
                        step,
                        "approval default must be approve or deny".to_owned(),
                    )
                    .await;
                }
            };
            let approvers: Vec<String> = args
                .get("approvers")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let id = Uuid::now_v7();
            sqlx::query(
                "INSERT INTO approvals (id, tenant_id, run_id, seq, title, details, approvers,
                        default_decision, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9))
                 ON CONFLICT (run_id, seq) DO NOTHING",
            )
            .bind(id)
            .bind(step.tenant)
            .bind(step.run_id)
            .bind(step.seq)
            .bind(title)
            .bind(args.get("details").filter(|d| !d.is_null()).map(Json))
            .bind(&approvers)
            .bind(default)
            .bind(timeout)
            .execute(&mut *tx)
            .await?;
            if let Some(case_id) = case_id {
                case_event_by(
                    tx,
                    step.tenant,
                    case_id,
                    "approval_requested",
                    &actor,
                    json!({ "approval_id": id, "title": title }),
                )
                .await?;
            }
            journal(
                tx,
                step,
                "waiting",
                Some(&json!({ "approval_id": id })),
                None,
            )
            .await?;
            Ok(StepDecision::Abort {
                status: RunStatus::WaitingApproval,
                reason: format!("waiting for approval: {title}"),
            })
        }
        "tocsin.sleep" => {
            let Some(seconds) = wait_secs(args, "seconds") else {
                return refuse(tx, step, "sleep must be between 0 and a year".to_owned()).await;
            };
            let fire_at: time::OffsetDateTime = sqlx::query_scalar(
                "UPDATE runs SET resume_at = now() + make_interval(secs => $2) WHERE id = $1 RETURNING resume_at",
            )
            .bind(step.run_id)
            .bind(seconds)
            .fetch_one(&mut *tx)
            .await?;
            let fire_at_s = fire_at.unix_timestamp_nanos() as f64 / 1e9;
            journal(
                tx,
                step,
                "waiting",
                Some(&json!({ "fire_at": fire_at_s })),
                None,
            )
            .await?;
            Ok(StepDecision::Abort {
                status: RunStatus::Sleeping,
                reason: format!("sleeping for {seconds}s"),
            })
        }
        other => refuse(tx, step, format!("unknown system step {other:?}")).await,
    }
}

/// A suspended step met again on re-execution: finished if its approval was decided or its
/// timer fired, suspended again otherwise.
async fn resume_waiting(
    tx: &mut PgConnection,
    step: &StepIntent<'_>,
    journaled: Journaled,
) -> Result<StepDecision, StoreError> {
    match step.action {
        "tocsin.approval" => {
            let row: Option<ApprovalState> = sqlx::query_as(
                "SELECT status, default_decision, decided_by, comment, title
                 FROM approvals WHERE run_id = $1 AND seq = $2",
            )
            .bind(step.run_id)
            .bind(step.seq)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(ApprovalState {
                status,
                default_decision: default,
                decided_by,
                comment,
                title,
            }) = row
            else {
                return refuse(tx, step, "approval record missing".to_owned()).await;
            };
            let approved = match status.as_str() {
                "approved" => true,
                "denied" => false,
                "timed_out" => default == "approve",
                _ => {
                    return Ok(StepDecision::Abort {
                        status: RunStatus::WaitingApproval,
                        reason: format!("waiting for approval: {title}"),
                    });
                }
            };
            done(
                tx,
                step,
                json!({
                    "approved": approved,
                    "decided_by": decided_by,
                    "comment": comment,
                    "timed_out": status == "timed_out",
                }),
            )
            .await
        }
        "tocsin.sleep" => {
            let fire_at = journaled
                .result
                .as_ref()
                .and_then(|Json(v)| v.get("fire_at"))
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9;
            if now + 0.001 >= fire_at {
                done(tx, step, Value::Null).await
            } else {
                sqlx::query("UPDATE runs SET resume_at = to_timestamp($2) WHERE id = $1")
                    .bind(step.run_id)
                    .bind(fire_at)
                    .execute(&mut *tx)
                    .await?;
                Ok(StepDecision::Abort {
                    status: RunStatus::Sleeping,
                    reason: format!("sleeping until {fire_at}"),
                })
            }
        }
        other => refuse(tx, step, format!("step {other:?} cannot be waiting")).await,
    }
}
