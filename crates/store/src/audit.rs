//! The audit log: who changed what, when, with the state before and after. Written for every
//! mutation made through the API and the admin verbs; append-only (nothing updates or
//! deletes its rows).

use serde::Serialize;
use time::OffsetDateTime;

use crate::page::clamp_limit;
use crate::{Store, StoreError};

/// One mutation to record.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    /// Tenant the change belongs to (`None`: outside any tenant).
    pub tenant: Option<&'a str>,
    /// Who: `key:<id>` for API keys, `cli:<user>` for admin verbs.
    pub actor: &'a str,
    /// What: `METHOD /route/template` or the admin verb.
    pub action: &'a str,
    /// The changed object (`case:<id>`, `key:<id>`, `secret:<name>`, ...).
    pub target: &'a str,
    /// State before, when known (never secret values).
    pub before: Option<&'a serde_json::Value>,
    /// State after or the request, when known (never secret values).
    pub after: Option<&'a serde_json::Value>,
}

/// An audit log row.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditRecord {
    /// Sequence number (cursor).
    pub id: i64,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Which object.
    pub target: String,
    /// Before.
    pub before: Option<serde_json::Value>,
    /// After.
    pub after: Option<serde_json::Value>,
}

impl Store {
    /// Appends an entry to the audit log.
    pub async fn audit(&self, entry: &AuditEntry<'_>) -> Result<(), StoreError> {
        let mut tx = self.begin(crate::Scope::from(entry.tenant)).await?;
        sqlx::query(
            "INSERT INTO audit_log (tenant_id, actor, action, target, before, after)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(entry.tenant)
        .bind(entry.actor)
        .bind(entry.action)
        .bind(entry.target)
        .bind(entry.before.map(sqlx::types::Json))
        .bind(entry.after.map(sqlx::types::Json))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The tenant's audit log, newest first, before id `before` when given.
    pub async fn audit_log(
        &self,
        tenant: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        Ok(sqlx::query_as(
            "SELECT id, at, actor, action, target, before, after FROM audit_log
             WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(tenant)
        .bind(before)
        .bind(clamp_limit(limit))
        .fetch_all(&mut *tx)
        .await?)
    }
}
