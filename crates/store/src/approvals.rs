//! Approvals requested by playbooks (`await approval(...)`) and decided by analysts.

use serde::Serialize;
use sqlx::FromRow;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Store, StoreError};

/// An approval as the API shows it.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct ApprovalView {
    /// Approval id.
    pub id: Uuid,
    /// The suspended run.
    pub run_id: Uuid,
    /// Question asked.
    pub title: String,
    /// Context the playbook attached.
    pub details: Option<Json<serde_json::Value>>,
    /// Who may decide (informational).
    pub approvers: Vec<String>,
    /// pending | approved | denied | timed_out.
    pub status: String,
    /// What applies at the timeout.
    pub default_decision: String,
    /// When the default applies.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    #[serde(with = "time::serde::rfc3339::option")]
    pub decided_at: Option<OffsetDateTime>,
    /// Their comment.
    pub comment: Option<String>,
    /// When it was requested.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A decision could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// No such approval for this tenant.
    #[error("approval not found")]
    NotFound,
    /// It was decided (or timed out) before.
    #[error("approval already {status}")]
    AlreadyDecided {
        /// Its status.
        status: String,
    },
    /// Database failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for DecideError {
    fn from(e: sqlx::Error) -> Self {
        DecideError::Store(StoreError::from_sqlx(e))
    }
}

const COLUMNS: &str = "id, run_id, title, details, approvers, status, default_decision, expires_at,
    decided_by, decided_at, comment, created_at";

impl Store {
    /// Approvals of `tenant`, newest first, optionally only those with `status`.
    pub async fn list_approvals(
        &self,
        tenant: &str,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ApprovalView>, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM approvals
             WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
             ORDER BY created_at DESC LIMIT $3"
        ))
        .bind(tenant)
        .bind(status)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?)
    }

    /// Records a decision and puts the run back in the dispatch queue.
    pub async fn decide_approval(
        &self,
        tenant: &str,
        id: Uuid,
        approve: bool,
        decided_by: &str,
        comment: Option<&str>,
    ) -> Result<ApprovalView, DecideError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let current: Option<(String, Uuid)> = sqlx::query_as(
            "SELECT status, run_id FROM approvals WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
        )
        .bind(id)
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
        let (status, run_id) = current.ok_or(DecideError::NotFound)?;
        if status != "pending" {
            return Err(DecideError::AlreadyDecided { status });
        }
        let view: ApprovalView = sqlx::query_as(&format!(
            "UPDATE approvals SET status = $2, decided_by = $3, decided_at = now(), comment = $4
             WHERE id = $1 RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(if approve { "approved" } else { "denied" })
        .bind(decided_by)
        .bind(comment)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE runs SET status = 'queued', dispatched_at = NULL, updated_at = now()
             WHERE id = $1 AND status = 'waiting_approval'
               AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.run_id = $1 AND a.status = 'pending')",
        )
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        let case_id: Option<Uuid> = sqlx::query_scalar("SELECT case_id FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await?
            .flatten();
        if let Some(case_id) = case_id {
            crate::alerts::case_event_by(
                &mut tx,
                tenant,
                case_id,
                "approval_decided",
                decided_by,
                serde_json::json!({ "approval_id": id, "decision": view.status, "comment": comment }),
            )
            .await?;
        }
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(crate::dispatch::DISPATCH_CHANNEL)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(view)
    }
}
