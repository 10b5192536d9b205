//! Events from the INGEST stream that could not become alerts, kept with the reason.

use crate::{Scope, Store, StoreError};

/// The most of a rejected payload that is kept.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// A rejected event as the API shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct RejectedEvent {
    /// Id (newest first; pass the last one as `before` for the next page).
    pub id: i64,
    /// The NATS subject it was published on.
    pub subject: String,
    /// The source (format) the subject named.
    pub source: String,
    /// Why it was rejected.
    pub reason: String,
    /// The payload (its first 64 KiB), as text where it is UTF-8.
    #[sqlx(skip)]
    pub payload: String,
    /// Size of the whole payload in bytes.
    pub payload_size: i32,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: time::OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    event: RejectedEvent,
    payload_bytes: Vec<u8>,
}

impl Store {
    /// Records a rejected event; `tenant` is `None` when the subject named no known tenant.
    pub async fn record_rejected_event(
        &self,
        tenant: Option<&str>,
        subject: &str,
        source: &str,
        reason: &str,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(Scope::from(tenant)).await?;
        sqlx::query(
            "INSERT INTO rejected_events (tenant_id, subject, source, reason, payload, payload_size)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(tenant)
        .bind(subject)
        .bind(source)
        .bind(reason)
        .bind(&payload[..payload.len().min(MAX_PAYLOAD)])
        .bind(i32::try_from(payload.len()).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The tenant's rejected events, newest first, before id `before`.
    pub async fn rejected_events(
        &self,
        tenant: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<RejectedEvent>, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, subject, source, reason, payload AS payload_bytes, payload_size,
                    received_at
             FROM rejected_events
             WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(tenant)
        .bind(before)
        .bind(limit.clamp(1, 500))
        .fetch_all(&mut *tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| RejectedEvent {
                payload: String::from_utf8_lossy(&r.payload_bytes).into_owned(),
                ..r.event
            })
            .collect())
    }
}
