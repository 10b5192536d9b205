//! Alerts: recording a delivered alert (dedup, case, runs) in one transaction, and reads.

use serde::Serialize;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;
use tocsin_proto::types::Severity;
use uuid::Uuid;

use crate::grouping::{Fingerprint, GroupingPolicy};
use crate::page::{Cursor, Keyed, Page, binds, clamp_limit};
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
    /// The custom mapping (`source@vN`) that produced it, if one did.
    pub mapping: Option<String>,
    /// Which playbooks matched and why the others did not (set by the scheduler).
    pub match_report: Option<serde_json::Value>,
    /// The trace the alert was delivered in (hex trace id).
    pub trace_id: Option<String>,
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
    /// W3C `traceparent` the run's spans continue (the scheduler's span for the alert).
    pub traceparent: Option<String>,
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
    /// W3C `traceparent` carried in the job's NATS headers.
    pub traceparent: Option<String>,
}

/// What recording a delivered alert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertOutcome {
    /// First sighting: the alert joined a case (opened for it unless `grouped`) and runs
    /// were queued.
    New {
        /// The case the alert joined.
        case_id: Uuid,
        /// Whether it joined an existing case.
        grouped: bool,
        /// Runs to publish (none for a grouped alert unless the policy says grouped
        /// alerts trigger).
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
    /// Records one delivered alert in one transaction: dedup by receipt and by (tenant,
    /// source, source_ref); grouping into the newest open case with the same fingerprint
    /// under the tenant's [grouping policy](crate::grouping) (else a new case), with the
    /// reason on the case timeline; its observables linked to the alert and the case; and
    /// `runs` queued, unless the alert joined an existing case and the policy says grouped
    /// alerts do not start runs.
    ///
    /// Two alerts with the same fingerprint recorded concurrently are serialized by a
    /// transaction-scoped advisory lock on (tenant, fingerprint), so they never open two
    /// cases.
    pub async fn record_alert(
        &self,
        alert: &NewAlert,
        runs: &[NewRun],
    ) -> Result<AlertOutcome, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(&alert.tenant)).await?;
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

        let policy = crate::grouping::current_policy(&mut tx, &alert.tenant).await?;
        let fingerprint = policy.fingerprint(alert);
        let (inserted, case_id, duplicate_count): (bool, Option<Uuid>, i32) = sqlx::query_as(
            "INSERT INTO alerts (id, tenant_id, source, source_ref, title, description, severity,
                occurred_at, received_at, observables, tags, raw, last_seen_at, fingerprint,
                mapping, match_report, trace_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $9, $13, $14, $15, $16)
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
        .bind(&fingerprint.hash)
        .bind(alert.mapping.as_deref())
        .bind(alert.match_report.as_ref().map(Json))
        .bind(&alert.trace_id)
        .fetch_one(&mut *tx)
        .await?;

        let outcome = if inserted {
            let (case_id, grouped) = group_into_case(&mut tx, alert, &policy, &fingerprint).await?;
            let found = crate::extract::extract(&alert.observables, &alert.raw);
            crate::observables::link_observables(
                &mut tx,
                &alert.tenant,
                &found,
                alert.received_at,
                Some(alert.id),
                Some(case_id),
            )
            .await?;
            let queued = if grouped && !policy.grouped_alerts_trigger {
                if !runs.is_empty() {
                    let names: Vec<&str> = runs.iter().map(|r| r.playbook.as_str()).collect();
                    case_event(
                        &mut tx,
                        &alert.tenant,
                        case_id,
                        "playbooks_skipped",
                        serde_json::json!({
                            "alert_id": alert.id,
                            "playbooks": names,
                            "reason": "grouped alerts do not start playbooks",
                            "policy_version": policy.version,
                        }),
                    )
                    .await?;
                }
                Vec::new()
            } else {
                queue_runs(&mut tx, alert, case_id, runs).await?
            };
            AlertOutcome::New {
                case_id,
                grouped,
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

    /// Alerts of `tenant`, newest first.
    pub async fn list_alerts(
        &self,
        tenant: &str,
        filter: &AlertFilter,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<AlertSummary>, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let limit = clamp_limit(limit);
        let (at, id) = binds(after);
        let rows: Vec<AlertSummary> = sqlx::query_as(
            "SELECT id, source, source_ref, title, severity, received_at, case_id,
                    duplicate_count, last_seen_at, tags, created_at
             FROM alerts
             WHERE tenant_id = $1
               AND ($2::text IS NULL OR source = $2)
               AND ($3::text IS NULL OR severity = $3)
               AND ($4::timestamptz IS NULL OR received_at >= $4)
               AND ($5::uuid IS NULL OR case_id = $5)
               AND ($6::timestamptz IS NULL OR (created_at, id) < ($6, $7))
             ORDER BY created_at DESC, id DESC LIMIT $8",
        )
        .bind(tenant)
        .bind(filter.source.as_deref())
        .bind(filter.severity.map(Severity::as_str))
        .bind(filter.since)
        .bind(filter.case_id)
        .bind(at)
        .bind(id)
        .bind(limit + 1)
        .fetch_all(&mut *tx)
        .await?;
        Ok(Page::from_rows(rows, limit))
    }

    /// One alert of `tenant` with its case and runs.
    pub async fn alert_view(&self, tenant: &str, id: Uuid) -> Result<AlertView, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let mut alert = fetch_alert(&mut tx, tenant, id).await?;
        alert.runs = sqlx::query_as(
            "SELECT id, playbook, status, queued_at, started_at, finished_at
             FROM runs WHERE tenant_id = $1 AND alert_id = $2 ORDER BY playbook",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        Ok(alert)
    }
}

/// One alert of `tenant`, without its runs (`runs` is empty).
pub(crate) async fn fetch_alert(
    conn: &mut PgConnection,
    tenant: &str,
    id: Uuid,
) -> Result<AlertView, StoreError> {
    sqlx::query_as(
        "SELECT id, tenant_id, source, source_ref, title, description, severity, occurred_at,
                received_at, observables, tags, raw, case_id, duplicate_count, last_seen_at,
                mapping, match_report, trace_id
         FROM alerts WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound { entity: "alert" })
}

/// Puts a newly inserted alert into a case: the newest open case of the tenant with the
/// same fingerprint, opened by an alert received within the policy's window and holding
/// fewer than its maximum, else a new one. Returns the case and whether it existed.
async fn group_into_case(
    tx: &mut PgConnection,
    alert: &NewAlert,
    policy: &GroupingPolicy,
    fingerprint: &Fingerprint,
) -> Result<(Uuid, bool), StoreError> {
    // Serializes alerts of one (tenant, fingerprint): the second waits here and then finds
    // the case the first opened. Released at commit.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))")
        .bind(&alert.tenant)
        .bind(&fingerprint.hash)
        .execute(&mut *tx)
        .await?;
    // NO KEY UPDATE (not UPDATE): rows referencing the case (events, links) may still be
    // inserted concurrently, so this cannot deadlock with a playbook writing to the case.
    let open: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM cases
         WHERE tenant_id = $1 AND fingerprint = $2 AND status IN ('new', 'in_progress')
           AND first_alert_at > $3 - make_interval(secs => $4) AND alert_count < $5
         ORDER BY first_alert_at DESC, id DESC LIMIT 1
         FOR NO KEY UPDATE",
    )
    .bind(&alert.tenant)
    .bind(&fingerprint.hash)
    .bind(alert.received_at)
    .bind(f64::from(policy.window_seconds))
    .bind(policy.max_group_size)
    .fetch_optional(&mut *tx)
    .await?;
    let fields = &policy.fields;
    let (case_id, grouped, reason) = match open {
        Some(case_id) => (case_id, true, "grouped"),
        None => (Uuid::now_v7(), false, "new case"),
    };
    // The case (opened or counted), the alert's link to it and the timeline entry, in one
    // statement. The foreign keys of the link and the event are checked at its end, when
    // the new case exists.
    sqlx::query(
        "WITH opened AS (
            INSERT INTO cases (id, tenant_id, title, severity, fingerprint, first_alert_at,
                    alert_count)
            SELECT $1, $2, $4, $5, $6, $7, 1 WHERE NOT $8
         ), counted AS (
            UPDATE cases SET alert_count = alert_count + 1, updated_at = now()
            WHERE $8 AND id = $1 AND tenant_id = $2
         ), alert AS (
            UPDATE alerts SET case_id = $1 WHERE id = $3 AND tenant_id = $2
         ), link AS (
            INSERT INTO case_alerts (case_id, alert_id, tenant_id) VALUES ($1, $3, $2)
         )
         INSERT INTO case_events (tenant_id, case_id, kind, actor, data)
         VALUES ($2, $1, 'alert_added', 'system', $9)",
    )
    .bind(case_id)
    .bind(&alert.tenant)
    .bind(alert.id)
    .bind(&alert.title)
    .bind(alert.severity.as_str())
    .bind(&fingerprint.hash)
    .bind(alert.received_at)
    .bind(grouped)
    .bind(Json(serde_json::json!({
        "alert_id": alert.id,
        "reason": reason,
        "fingerprint_fields": fields,
        "matched": fingerprint.matched,
        "policy_version": policy.version,
    })))
    .execute(&mut *tx)
    .await?;
    Ok((case_id, grouped))
}

/// Inserts the runs of a new alert (deterministic ids: a second insert is a no-op) and
/// notes on the case which playbooks matched.
async fn queue_runs(
    tx: &mut PgConnection,
    alert: &NewAlert,
    case_id: Uuid,
    runs: &[NewRun],
) -> Result<Vec<QueuedRun>, StoreError> {
    let mut queued = Vec::with_capacity(runs.len());
    for run in runs {
        let row: Option<QueuedRun> = sqlx::query_as(
            "INSERT INTO runs (id, tenant_id, alert_id, case_id, playbook, bundle_hash, priority,
                dispatched_at, traceparent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, now(), $8)
             ON CONFLICT (id) DO NOTHING
             RETURNING id, tenant_id, alert_id, playbook, bundle_hash, priority, dispatch,
                       traceparent",
        )
        .bind(run.id)
        .bind(&alert.tenant)
        .bind(alert.id)
        .bind(case_id)
        .bind(&run.playbook)
        .bind(&run.bundle_hash)
        .bind(&run.priority)
        .bind(&run.traceparent)
        .fetch_optional(&mut *tx)
        .await?;
        queued.extend(row);
    }
    if !queued.is_empty() {
        let names: Vec<&str> = queued.iter().map(|r| r.playbook.as_str()).collect();
        case_event(
            tx,
            &alert.tenant,
            case_id,
            "playbooks_matched",
            serde_json::json!({ "alert_id": alert.id, "playbooks": names }),
        )
        .await?;
    }
    Ok(queued)
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
        "SELECT id, tenant_id, alert_id, playbook, bundle_hash, priority, dispatch, traceparent
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
    /// The custom mapping (`source@vN`) that produced the alert, if one did.
    pub mapping: Option<String>,
    /// Which playbooks matched the alert and why the others did not.
    pub match_report: Option<Json<serde_json::Value>>,
    /// The trace the alert was delivered in (hex trace id), to look up in the tracing
    /// backend.
    pub trace_id: Option<String>,
    /// Runs it triggered.
    #[sqlx(skip)]
    pub runs: Vec<RunSummary>,
}

/// Filters of the alert list; every one optional.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// Only this producer.
    pub source: Option<String>,
    /// Only this severity.
    pub severity: Option<Severity>,
    /// Only alerts received at or after this.
    pub since: Option<OffsetDateTime>,
    /// Only alerts of this case.
    pub case_id: Option<Uuid>,
}

/// An alert as lists show it.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct AlertSummary {
    /// Alert id.
    pub id: Uuid,
    /// Producer.
    pub source: String,
    /// Producer's id.
    pub source_ref: String,
    /// Title.
    pub title: String,
    /// Severity.
    pub severity: String,
    /// When it was first accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// Its case.
    pub case_id: Option<Uuid>,
    /// Times posted again.
    pub duplicate_count: i32,
    /// When it was last posted.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    /// Tags.
    pub tags: Vec<String>,
    /// When it was recorded (the list's order).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl Keyed for AlertSummary {
    fn cursor(&self) -> Cursor {
        Cursor {
            at: self.created_at,
            id: self.id,
        }
    }
}
