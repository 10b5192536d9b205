//! Operator actions on runs: cancel, retry with journal replay, and resolving an uncertain
//! step by hand.

use uuid::Uuid;

use crate::dispatch::DISPATCH_CHANNEL;
use crate::{Store, StoreError};

/// Channel NOTIFYed with a run id when a running run is asked to cancel.
pub const CANCEL_CHANNEL: &str = "tocsin_cancel";

/// Why an operator action was refused.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// No such run (or step) for this tenant.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The run's state does not allow it.
    #[error("run is {status}: {why}")]
    Conflict {
        /// Current status.
        status: String,
        /// What would be needed.
        why: &'static str,
    },
    /// Database failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for OperatorError {
    fn from(e: sqlx::Error) -> Self {
        OperatorError::Store(StoreError::from_sqlx(e))
    }
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// The run was not executing and is now `cancelled`.
    Now,
    /// The run is executing; its worker was asked to stop it.
    Requested,
}

impl Store {
    async fn lock_run_status(
        tx: &mut sqlx::PgConnection,
        tenant: &str,
        run_id: Uuid,
    ) -> Result<String, OperatorError> {
        sqlx::query_scalar("SELECT status FROM runs WHERE id = $1 AND tenant_id = $2 FOR UPDATE")
            .bind(run_id)
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(OperatorError::NotFound("run"))
    }

    /// Cancels a run. A queued or suspended run ends at once (its pending approvals are
    /// closed); a running one is stopped by its worker.
    pub async fn cancel_run(
        &self,
        tenant: &str,
        run_id: Uuid,
        by: &str,
    ) -> Result<Cancelled, OperatorError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let status = Self::lock_run_status(&mut tx, tenant, run_id).await?;
        let outcome = match status.as_str() {
            "queued" | "waiting_approval" | "sleeping" => {
                sqlx::query(
                    "UPDATE runs SET status = 'cancelled', error = $2, finished_at = now(),
                            updated_at = now(), resume_at = NULL, cancel_requested_by = $3
                     WHERE id = $1",
                )
                .bind(run_id)
                .bind(format!("cancelled by {by}"))
                .bind(by)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE approvals SET status = 'denied', decided_by = $2, decided_at = now(),
                            comment = 'run cancelled'
                     WHERE run_id = $1 AND status = 'pending'",
                )
                .bind(run_id)
                .bind(by)
                .execute(&mut *tx)
                .await?;
                Cancelled::Now
            }
            "running" => {
                sqlx::query("UPDATE runs SET cancel_requested_by = $2 WHERE id = $1")
                    .bind(run_id)
                    .bind(by)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CANCEL_CHANNEL)
                    .bind(run_id.to_string())
                    .execute(&mut *tx)
                    .await?;
                Cancelled::Requested
            }
            _ => {
                return Err(OperatorError::Conflict {
                    status,
                    why: "only queued, suspended or running runs can be cancelled",
                });
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Whether an operator asked to cancel the run, and who.
    pub async fn cancel_requested(&self, run_id: Uuid) -> Result<Option<String>, StoreError> {
        let mut tx = self.begin(crate::Scope::System).await?;
        Ok(sqlx::query_scalar::<_, Option<String>>(
            "SELECT cancel_requested_by FROM runs WHERE id = $1 AND status = 'running'",
        )
        .bind(run_id)
        .fetch_optional(&mut *tx)
        .await?
        .flatten())
    }

    /// Runs a finished run again. Its journal is kept up to the first step that did not
    /// succeed; that step and everything after it execute again, earlier ones replay.
    pub async fn retry_run(&self, tenant: &str, run_id: Uuid) -> Result<(), OperatorError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let status = Self::lock_run_status(&mut tx, tenant, run_id).await?;
        if !matches!(
            status.as_str(),
            "failed" | "timed_out" | "needs_review" | "cancelled" | "dead_lettered"
        ) {
            return Err(OperatorError::Conflict {
                status,
                why: "only failed, timed out, needs-review, cancelled or dead-lettered runs can be retried",
            });
        }
        sqlx::query(
            "DELETE FROM run_steps WHERE run_id = $1 AND seq >= coalesce(
                (SELECT min(seq) FROM run_steps WHERE run_id = $1 AND state <> 'succeeded'),
                2147483647)",
        )
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        requeue(&mut tx, run_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Resolves an uncertain step of a `needs_review` run by recording its result (the
    /// operator checked that the effect happened), and resumes the run.
    pub async fn resolve_step(
        &self,
        tenant: &str,
        run_id: Uuid,
        seq: i32,
        result: &serde_json::Value,
        by: &str,
    ) -> Result<(), OperatorError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let status = Self::lock_run_status(&mut tx, tenant, run_id).await?;
        if status != "needs_review" {
            return Err(OperatorError::Conflict {
                status,
                why: "only steps of needs-review runs can be resolved",
            });
        }
        let n = sqlx::query(
            "UPDATE run_steps SET state = 'succeeded', result = $3, error = NULL, finished_at = now()
             WHERE run_id = $1 AND seq = $2 AND state = 'uncertain'",
        )
        .bind(run_id)
        .bind(seq)
        .bind(sqlx::types::Json(result))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Err(OperatorError::NotFound("uncertain step"));
        }
        let case_id: Option<Uuid> = sqlx::query_scalar("SELECT case_id FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_one(&mut *tx)
            .await?;
        if let Some(case_id) = case_id {
            crate::alerts::case_event_by(
                &mut tx,
                tenant,
                case_id,
                "step_resolved",
                by,
                serde_json::json!({ "run_id": run_id, "seq": seq }),
            )
            .await?;
        }
        requeue(&mut tx, run_id).await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn requeue(tx: &mut sqlx::PgConnection, run_id: Uuid) -> Result<(), OperatorError> {
    sqlx::query(
        "UPDATE runs SET status = 'queued', dispatched_at = NULL, error = NULL, traceback = NULL,
                result = NULL, finished_at = NULL, cancel_requested_by = NULL, updated_at = now()
         WHERE id = $1",
    )
    .bind(run_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(DISPATCH_CHANNEL)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
