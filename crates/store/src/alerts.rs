//! Alerts: recording a delivered alert (dedup, case, runs) in one transaction, and reads.

use serde::Serialize;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;
use tocsin_proto::types::Severity;
use uuid::Uuid;

use crate::runs::RunSummary;
use crate::{Store, StoreError};

/// A normalized alert to record.
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// Deterministic alert id.
    pub id: Uuid,
    /// Delivery receipt (unique per accepted post).
    pub receipt_id: Uuid,
    /// Owning tenant.
    pub tenant: String,
    /// Producer.
    pub source: String,
    /// Producer's id.
    pub source_ref: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Severity.
    pub severity: Severity,
    /// When it happened, if known.
    pub occurred_at: Option<OffsetDateTime>,
    /// When ingest accepted it.
    pub received_at: OffsetDateTime,
    /// `[{"type": ..., "value": ...}]`.
    pub observables: serde_json::Value,
    /// Tags.
    pub tags: Vec<String>,
    /// Source fields outside the normalized model.
    pub raw: serde_json::Value,
}

/// A run the scheduler wants created for a new alert.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Deterministic run id.
    pub id: Uuid,
    /// Playbook name.
    pub playbook: String,
    /// Bundle the playbook was matched in.
    pub bundle_hash: String,
    /// Lane.
    pub priority: String,
}

/// A run that is queued and must be (re)published to RUNS.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct QueuedRun {
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
    /// Lane.
    pub priority: String,
    /// Dispatch generation (part of the broker dedup id).
    pub dispatch: i32,
}

/// What recording a delivered alert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertOutcome {
    /// First sighting: a case was opened and runs were queued.
    New {
        /// The case the alert joined.
        case_id: Uuid,
        /// Runs to publish.
        runs: Vec<QueuedRun>,
    },
    /// The same (tenant, source, source_ref) was seen before: counted, nothing started.
    Duplicate {
        /// How many duplicates the alert has now.
        duplicate_count: i32,
    },
    /// This exact delivery was already recorded (a JetStream redelivery). Runs of the alert
    /// still queued are returned so they can be published again (the publish may have been
    /// lost between commit and ack).
    Redelivered {
        /// Runs still queued.
        runs: Vec<QueuedRun>,
    },
}

impl Store {
    /// Records one delivered alert: dedup by receipt and by (tenant, source, source_ref),
    /// a case for a new alert, and `runs` queued for it. One transaction.
    pub async fn record_alert(
        &self,
        alert: &NewAlert,
        runs: &[NewRun],
    ) -> Result<AlertOutcome, StoreError> {
        let mut tx = self.pool().begin().await?;
        let seen: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM alert_receipts WHERE receipt_id = $1")
                .bind(alert.receipt_id)
                .fetch_optional(&mut *tx)
                .await?;
        if seen.is_some() {
            let runs = queued_runs_of_alert(&mut tx, &alert.tenant, alert.id).await?;
            tx.commit().await?;
            return Ok(AlertOutcome::Redelivered { runs });
        }

        let (inserted, case_id, duplicate_count): (bool, Option<Uuid>, i32) = sqlx::query_as(
            "INSERT INTO alerts (id, tenant_id, source, source_ref, title, description, severity,
                occurred_at, received_at, observables, tags, raw, last_seen_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $9)
             ON CONFLICT (tenant_id, source, source_ref) DO UPDATE
                SET duplicate_count = alerts.duplicate_count + 1,
                    last_seen_at = EXCLUDED.last_seen_at
             RETURNING (xmax = 0), case_id, duplicate_count",
        )
        .bind(alert.id)
        .bind(&alert.tenant)
        .bind(&alert.source)
        .bind(&alert.source_ref)
        .bind(&alert.title)
        .bind(&alert.description)
        .bind(alert.severity.as_str())
        .bind(alert.occurred_at)
        .bind(alert.received_at)
        .bind(Json(&alert.observables))
        .bind(&alert.tags)
        .bind(Json(&alert.raw))
        .fetch_one(&mut *tx)
        .await?;

        let outcome = if inserted {
            let case_id = open_case(&mut tx, alert).await?;
            let mut queued = Vec::with_capacity(runs.len());
            for run in runs {
                let row: Option<QueuedRun> = sqlx::query_as(
                    "INSERT INTO runs (id, tenant_id, alert_id, case_id, playbook, bundle_hash, priority,
                        dispatched_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, now())
                     ON CONFLICT (id) DO NOTHING
                     RETURNING id, tenant_id, alert_id, playbook, bundle_hash, priority, dispatch",
                )
                .bind(run.id)
                .bind(&alert.tenant)
                .bind(alert.id)
                .bind(case_id)
                .bind(&run.playbook)
                .bind(&run.bundle_hash)
                .bind(&run.priority)
                .fetch_optional(&mut *tx)
                .await?;
                queued.extend(row);
            }
            if !queued.is_empty() {
                let names: Vec<&str> = queued.iter().map(|r| r.playbook.as_str()).collect();
                case_event(
                    &mut tx,
                    &alert.tenant,
                    case_id,
                    "playbooks_matched",
                    serde_json::json!({ "alert_id": alert.id, "playbooks": names }),
                )
                .await?;
            }
            AlertOutcome::New {
                case_id,
                runs: queued,
            }
        } else {
            if let Some(case_id) = case_id {
                case_event(
                    &mut tx,
                    &alert.tenant,
                    case_id,
                    "alert_duplicate",
                    serde_json::json!({
                        "alert_id": alert.id,
                        "receipt_id": alert.receipt_id,
                        "duplicate_count": duplicate_count,
                    }),
                )
                .await?;
            }
            AlertOutcome::Duplicate { duplicate_count }
        };

        sqlx::query(
            "INSERT INTO alert_receipts (receipt_id, tenant_id, alert_id, duplicate, received_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(alert.receipt_id)
        .bind(&alert.tenant)
        .bind(alert.id)
        .bind(!inserted)
        .bind(alert.received_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// One alert of `tenant` with its case and runs.
    pub async fn alert_view(&self, tenant: &str, id: Uuid) -> Result<AlertView, StoreError> {
        let mut alert: AlertView = sqlx::query_as(
            "SELECT id, tenant_id, source, source_ref, title, description, severity, occurred_at,
                    received_at, observables, tags, raw, case_id, duplicate_count, last_seen_at
             FROM alerts WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound { entity: "alert" })?;
        alert.runs = sqlx::query_as(
            "SELECT id, playbook, status, queued_at, started_at, finished_at
             FROM runs WHERE tenant_id = $1 AND alert_id = $2 ORDER BY playbook",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        Ok(alert)
    }
}

async fn open_case(tx: &mut PgConnection, alert: &NewAlert) -> Result<Uuid, StoreError> {
    let case_id = Uuid::now_v7();
    sqlx::query("INSERT INTO cases (id, tenant_id, title, severity) VALUES ($1, $2, $3, $4)")
        .bind(case_id)
        .bind(&alert.tenant)
        .bind(&alert.title)
        .bind(alert.severity.as_str())
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE alerts SET case_id = $1 WHERE id = $2 AND tenant_id = $3")
        .bind(case_id)
        .bind(alert.id)
        .bind(&alert.tenant)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO case_alerts (case_id, alert_id, tenant_id) VALUES ($1, $2, $3)")
        .bind(case_id)
        .bind(alert.id)
        .bind(&alert.tenant)
        .execute(&mut *tx)
        .await?;
    case_event(
        tx,
        &alert.tenant,
        case_id,
        "alert_added",
        serde_json::json!({ "alert_id": alert.id, "reason": "new case" }),
    )
    .await?;
    Ok(case_id)
}

pub(crate) async fn case_event(
    tx: &mut PgConnection,
    tenant: &str,
    case_id: Uuid,
    kind: &str,
    data: serde_json::Value,
) -> Result<(), StoreError> {
    case_event_by(tx, tenant, case_id, kind, "system", data).await
}

/// Appends to a case's timeline on behalf of `actor` (`system`, `run:<id>`, `key:<id>`).
pub(crate) async fn case_event_by(
    tx: &mut PgConnection,
    tenant: &str,
    case_id: Uuid,
    kind: &str,
    actor: &str,
    data: serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO case_events (tenant_id, case_id, kind, actor, data) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(tenant)
    .bind(case_id)
    .bind(kind)
    .bind(actor)
    .bind(Json(data))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn queued_runs_of_alert(
    tx: &mut PgConnection,
    tenant: &str,
    alert_id: Uuid,
) -> Result<Vec<QueuedRun>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, tenant_id, alert_id, playbook, bundle_hash, priority, dispatch
         FROM runs WHERE tenant_id = $1 AND alert_id = $2 AND status = 'queued'",
    )
    .bind(tenant)
    .bind(alert_id)
    .fetch_all(&mut *tx)
    .await?)
}

/// An alert as the API shows it.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct AlertView {
    /// Alert id.
    pub id: Uuid,
    /// Tenant.
    #[sqlx(rename = "tenant_id")]
    pub tenant: String,
    /// Producer.
    pub source: String,
    /// Producer's id.
    pub source_ref: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Severity name.
    pub severity: String,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339::option")]
    pub occurred_at: Option<OffsetDateTime>,
    /// When it was first accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// Observables.
    pub observables: Json<serde_json::Value>,
    /// Tags.
    pub tags: Vec<String>,
    /// Raw fields.
    pub raw: Json<serde_json::Value>,
    /// The case it belongs to.
    pub case_id: Option<Uuid>,
    /// How many times the same alert was posted again.
    pub duplicate_count: i32,
    /// When it was last posted.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    /// Runs it triggered.
    #[sqlx(skip)]
    pub runs: Vec<RunSummary>,
}
