//! Cases: lists, the case view (alerts, observables, runs), analyst updates with optimistic
//! concurrency, comments, and the append-only timeline (`case_events`).
//!
//! Lifecycle: `new → in_progress → resolved | closed`. A case may also go from `new`
//! straight to `resolved` or `closed`, from `resolved` to `closed`, and back to
//! `in_progress` (reopened, which clears the determination). Resolving requires a
//! determination. Every update names the `version` it was based on; a stale version is
//! refused, and each accepted update bumps it. Alerts joining a case do not bump it (they
//! do not change what an analyst edits).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::FromRow;
use sqlx::types::Json;
use time::OffsetDateTime;
use tocsin_proto::types::Severity;
use uuid::Uuid;

use crate::alerts::case_event_by;
use crate::page::{Cursor, Keyed, Page, binds, clamp_limit};
use crate::runs::RunSummary;
use crate::{Store, StoreError};

/// Most tags a case carries.
pub const MAX_TAGS: usize = 50;
/// Longest tag (bytes).
pub const MAX_TAG_LEN: usize = 256;
/// Longest assignee (bytes).
pub const MAX_ASSIGNEE_LEN: usize = 256;
/// Longest comment (bytes).
pub const MAX_COMMENT_LEN: usize = 65_536;

/// Where a case is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// Opened, nobody on it yet.
    New,
    /// Being worked.
    InProgress,
    /// Finished with a determination.
    Resolved,
    /// Closed (duplicate, out of scope, ...).
    Closed,
}

impl CaseStatus {
    /// Name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::New => "new",
            CaseStatus::InProgress => "in_progress",
            CaseStatus::Resolved => "resolved",
            CaseStatus::Closed => "closed",
        }
    }

    /// Whether a case may go from `self` to `to`.
    pub fn can_become(self, to: CaseStatus) -> bool {
        use CaseStatus::{Closed, InProgress, New, Resolved};
        matches!(
            (self, to),
            (New, InProgress | Resolved | Closed)
                | (InProgress, Resolved | Closed)
                | (Resolved, Closed | InProgress)
                | (Closed, InProgress)
        )
    }

    /// Whether the case is finished.
    pub fn is_final(self) -> bool {
        matches!(self, CaseStatus::Resolved | CaseStatus::Closed)
    }
}

impl fmt::Display for CaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value that is not a case status or determination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    /// What was parsed.
    pub what: &'static str,
    /// The value.
    pub value: String,
}

impl FromStr for CaseStatus {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "new" => Ok(CaseStatus::New),
            "in_progress" => Ok(CaseStatus::InProgress),
            "resolved" => Ok(CaseStatus::Resolved),
            "closed" => Ok(CaseStatus::Closed),
            _ => Err(UnknownValue {
                what: "case status",
                value: s.to_owned(),
            }),
        }
    }
}

/// What a resolved case turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Determination {
    /// A real incident.
    TruePositive,
    /// The detection was wrong.
    FalsePositive,
    /// Real activity, but harmless.
    Benign,
}

impl Determination {
    /// Name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Determination::TruePositive => "true_positive",
            Determination::FalsePositive => "false_positive",
            Determination::Benign => "benign",
        }
    }
}

impl FromStr for Determination {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "true_positive" => Ok(Determination::TruePositive),
            "false_positive" => Ok(Determination::FalsePositive),
            "benign" => Ok(Determination::Benign),
            _ => Err(UnknownValue {
                what: "determination",
                value: s.to_owned(),
            }),
        }
    }
}

/// A case as lists show it.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct CaseSummary {
    /// Case id.
    pub id: Uuid,
    /// Title (of the alert that opened it).
    pub title: String,
    /// new | in_progress | resolved | closed.
    pub status: String,
    /// Severity.
    pub severity: String,
    /// true_positive | false_positive | benign, once resolved.
    pub determination: Option<String>,
    /// Who works it.
    pub assignee: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Alerts in the case.
    pub alert_count: i32,
    /// Optimistic-concurrency version; send it back with an update.
    pub version: i32,
    /// Opened.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Keyed for CaseSummary {
    fn cursor(&self) -> Cursor {
        Cursor {
            at: self.created_at,
            id: self.id,
        }
    }
}

const CASE_COLUMNS: &str =
    "id, title, status, severity, determination, assignee, tags, alert_count,
    version, created_at, updated_at";

/// An alert as the case view lists it.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct CaseAlert {
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
    /// First accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// Times posted again.
    pub duplicate_count: i32,
}

/// An observable as the case view lists it.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct CaseObservable {
    /// Observable id.
    pub id: Uuid,
    /// Type.
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    /// Value.
    pub value: String,
    /// First sighting (any case).
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    /// Last sighting (any case).
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// How many other cases of the tenant it appears in.
    pub seen_in_other_cases: i64,
}

/// One case with its alerts, observables and runs.
#[derive(Debug, Clone, Serialize)]
pub struct CaseDetail {
    /// The case fields.
    #[serde(flatten)]
    pub case: CaseSummary,
    /// Most recent alerts first (at most 200; `alert_count` has the total).
    pub alerts: Vec<CaseAlert>,
    /// Observables (at most 500).
    pub observables: Vec<CaseObservable>,
    /// Runs on the case, newest first (at most 200).
    pub runs: Vec<RunSummary>,
}

/// Filters of the case list; every one optional.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    /// Only this status.
    pub status: Option<CaseStatus>,
    /// Only this severity.
    pub severity: Option<Severity>,
    /// Only cases assigned to this.
    pub assignee: Option<String>,
    /// Only cases with this tag.
    pub tag: Option<String>,
    /// Only cases opened at or after this.
    pub since: Option<OffsetDateTime>,
    /// Only cases opened before this.
    pub until: Option<OffsetDateTime>,
}

/// An analyst's change to a case.
#[derive(Debug, Clone, Default)]
pub struct CaseUpdate {
    /// The version the change is based on.
    pub version: i32,
    /// New status.
    pub status: Option<CaseStatus>,
    /// Determination (required to resolve).
    pub determination: Option<Determination>,
    /// New severity.
    pub severity: Option<Severity>,
    /// `Some(None)` unassigns.
    pub assignee: Option<Option<String>>,
    /// The complete new tag list.
    pub tags: Option<Vec<String>>,
}

/// Why a case update was refused.
#[derive(Debug, thiserror::Error)]
pub enum CaseUpdateError {
    /// No such case for this tenant.
    #[error("case not found")]
    NotFound,
    /// The case changed since the version the update was based on.
    #[error("case is at version {current}, not {expected}")]
    Stale {
        /// Version the caller sent.
        expected: i32,
        /// Current version.
        current: i32,
    },
    /// The lifecycle does not allow the status change.
    #[error("a {from} case cannot become {to}")]
    Transition {
        /// Current status.
        from: CaseStatus,
        /// Requested status.
        to: CaseStatus,
    },
    /// A value is not acceptable.
    #[error("{0}")]
    Invalid(&'static str),
    /// Database failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CaseUpdateError {
    fn from(e: sqlx::Error) -> Self {
        CaseUpdateError::Store(StoreError::from_sqlx(e))
    }
}

/// One entry of a case timeline.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct CaseEvent {
    /// Position in the timeline (increasing).
    pub id: i64,
    /// What happened: alert_added, alert_duplicate, playbooks_matched, playbooks_skipped,
    /// status_changed, severity_changed, assignee_changed, tags_changed, tag_added,
    /// comment, observable_added, approval_requested, approval_decided, step_resolved.
    pub kind: String,
    /// Who: `system`, `key:<prefix>` (an API key), `run:<id>` (a playbook run).
    pub actor: String,
    /// Details of the event.
    pub data: Json<Value>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A page of a timeline.
#[derive(Debug, Clone)]
pub struct TimelinePage {
    /// Events, oldest first.
    pub events: Vec<CaseEvent>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next_after: Option<i64>,
}

/// Trims, checks and deduplicates a tag list (order kept).
fn clean_tags(tags: &[String]) -> Result<Vec<String>, CaseUpdateError> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = tag.trim();
        if tag.is_empty() || tag.len() > MAX_TAG_LEN {
            return Err(CaseUpdateError::Invalid("a tag must be 1-256 bytes"));
        }
        if !out.iter().any(|t| t == tag) {
            out.push(tag.to_owned());
        }
    }
    if out.len() > MAX_TAGS {
        return Err(CaseUpdateError::Invalid("a case carries at most 50 tags"));
    }
    Ok(out)
}

#[derive(Debug, FromRow)]
struct Editable {
    status: String,
    severity: String,
    determination: Option<String>,
    assignee: Option<String>,
    tags: Vec<String>,
    version: i32,
}

impl Store {
    /// Cases of `tenant`, newest first.
    pub async fn list_cases(
        &self,
        tenant: &str,
        filter: &CaseFilter,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<CaseSummary>, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let limit = clamp_limit(limit);
        let (at, id) = binds(after);
        let rows: Vec<CaseSummary> = sqlx::query_as(&format!(
            "SELECT {CASE_COLUMNS} FROM cases
             WHERE tenant_id = $1
               AND ($2::text IS NULL OR status = $2)
               AND ($3::text IS NULL OR severity = $3)
               AND ($4::text IS NULL OR assignee = $4)
               AND ($5::text IS NULL OR $5 = ANY(tags))
               AND ($6::timestamptz IS NULL OR created_at >= $6)
               AND ($7::timestamptz IS NULL OR created_at < $7)
               AND ($8::timestamptz IS NULL OR (created_at, id) < ($8, $9))
             ORDER BY created_at DESC, id DESC LIMIT $10"
        ))
        .bind(tenant)
        .bind(filter.status.map(CaseStatus::as_str))
        .bind(filter.severity.map(Severity::as_str))
        .bind(filter.assignee.as_deref())
        .bind(filter.tag.as_deref())
        .bind(filter.since)
        .bind(filter.until)
        .bind(at)
        .bind(id)
        .bind(limit + 1)
        .fetch_all(&mut *tx)
        .await?;
        Ok(Page::from_rows(rows, limit))
    }

    async fn case_summary(&self, tenant: &str, id: Uuid) -> Result<CaseSummary, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        sqlx::query_as(&format!(
            "SELECT {CASE_COLUMNS} FROM cases WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound { entity: "case" })
    }

    /// One case of `tenant` with its alerts, observables and runs.
    pub async fn case_detail(&self, tenant: &str, id: Uuid) -> Result<CaseDetail, StoreError> {
        let case = self.case_summary(tenant, id).await?;
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let alerts: Vec<CaseAlert> = sqlx::query_as(
            "SELECT a.id, a.source, a.source_ref, a.title, a.severity, a.received_at,
                    a.duplicate_count
             FROM case_alerts ca JOIN alerts a ON a.id = ca.alert_id
             WHERE ca.tenant_id = $1 AND ca.case_id = $2 AND a.tenant_id = $1
             ORDER BY a.received_at DESC, a.id DESC LIMIT 200",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let observables: Vec<CaseObservable> = sqlx::query_as(
            "SELECT o.id, o.type, o.value, o.first_seen, o.last_seen,
                    (SELECT count(*) FROM case_observables other
                     WHERE other.observable_id = o.id AND other.case_id <> co.case_id)
                        AS seen_in_other_cases
             FROM case_observables co JOIN observables o ON o.id = co.observable_id
             WHERE co.tenant_id = $1 AND co.case_id = $2 AND o.tenant_id = $1
             ORDER BY o.type, o.value LIMIT 500",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let runs: Vec<RunSummary> = sqlx::query_as(
            "SELECT id, playbook, status, queued_at, started_at, finished_at
             FROM runs WHERE tenant_id = $1 AND case_id = $2
             ORDER BY queued_at DESC, id DESC LIMIT 200",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        Ok(CaseDetail {
            case,
            alerts,
            observables,
            runs,
        })
    }

    /// Applies an analyst's update if `update.version` is current, appending one timeline
    /// event per changed field on behalf of `actor`. Returns the case as it is now.
    pub async fn update_case(
        &self,
        tenant: &str,
        id: Uuid,
        update: &CaseUpdate,
        actor: &str,
    ) -> Result<CaseSummary, CaseUpdateError> {
        let tags = update.tags.as_deref().map(clean_tags).transpose()?;
        let assignee = match &update.assignee {
            Some(Some(a)) => {
                let a = a.trim();
                if a.is_empty() || a.len() > MAX_ASSIGNEE_LEN {
                    return Err(CaseUpdateError::Invalid("an assignee must be 1-256 bytes"));
                }
                Some(Some(a.to_owned()))
            }
            other => other.clone(),
        };
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let current: Editable = sqlx::query_as(
            "SELECT status, severity, determination, assignee, tags, version FROM cases
             WHERE tenant_id = $1 AND id = $2 FOR NO KEY UPDATE",
        )
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(CaseUpdateError::NotFound)?;
        if current.version != update.version {
            return Err(CaseUpdateError::Stale {
                expected: update.version,
                current: current.version,
            });
        }
        let from: CaseStatus = current.status.parse().map_err(|_| StoreError::Corrupt {
            what: "cases.status",
        })?;
        let mut events: Vec<(&str, Value)> = Vec::new();

        let mut status = from;
        let mut determination = current.determination.clone();
        if let Some(to) = update.status.filter(|to| *to != from) {
            if !from.can_become(to) {
                return Err(CaseUpdateError::Transition { from, to });
            }
            status = to;
            if to == CaseStatus::InProgress {
                // Reopened: the earlier determination no longer holds.
                determination = None;
            }
        }
        if let Some(d) = update.determination {
            if !status.is_final() {
                return Err(CaseUpdateError::Invalid(
                    "a determination is set when resolving or closing a case",
                ));
            }
            determination = Some(d.as_str().to_owned());
        }
        if status == CaseStatus::Resolved
            && from != CaseStatus::Resolved
            && update.determination.is_none()
        {
            return Err(CaseUpdateError::Invalid(
                "resolving a case requires a determination (true_positive, false_positive or benign)",
            ));
        }
        if status != from {
            events.push((
                "status_changed",
                json!({ "from": from.as_str(), "to": status.as_str(),
                        "determination": determination }),
            ));
        } else if determination != current.determination {
            events.push((
                "determination_changed",
                json!({ "from": current.determination, "to": determination }),
            ));
        }
        let severity = update
            .severity
            .map_or(current.severity.clone(), |s| s.as_str().to_owned());
        if severity != current.severity {
            events.push((
                "severity_changed",
                json!({ "from": current.severity, "to": severity }),
            ));
        }
        let assignee = assignee.unwrap_or_else(|| current.assignee.clone());
        if assignee != current.assignee {
            events.push((
                "assignee_changed",
                json!({ "from": current.assignee, "to": assignee }),
            ));
        }
        let tags = tags.unwrap_or_else(|| current.tags.clone());
        if tags != current.tags {
            let added: Vec<&String> = tags.iter().filter(|t| !current.tags.contains(t)).collect();
            let removed: Vec<&String> = current.tags.iter().filter(|t| !tags.contains(t)).collect();
            events.push((
                "tags_changed",
                json!({ "added": added, "removed": removed, "tags": tags }),
            ));
        }
        if !events.is_empty() {
            sqlx::query(
                "UPDATE cases SET status = $3, determination = $4, severity = $5, assignee = $6,
                        tags = $7, version = version + 1, updated_at = now()
                 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant)
            .bind(id)
            .bind(status.as_str())
            .bind(&determination)
            .bind(&severity)
            .bind(&assignee)
            .bind(&tags)
            .execute(&mut *tx)
            .await?;
            for (kind, data) in events {
                case_event_by(&mut tx, tenant, id, kind, actor, data).await?;
            }
        }
        tx.commit().await?;
        Ok(self.case_summary(tenant, id).await?)
    }

    /// Adds a comment to a case's timeline on behalf of `actor`.
    pub async fn comment_case(
        &self,
        tenant: &str,
        id: Uuid,
        text: &str,
        actor: &str,
    ) -> Result<CaseEvent, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let event: CaseEvent = sqlx::query_as(
            "INSERT INTO case_events (tenant_id, case_id, kind, actor, data)
             SELECT $1, id, 'comment', $3, $4 FROM cases WHERE tenant_id = $1 AND id = $2
             RETURNING id, kind, actor, data, created_at",
        )
        .bind(tenant)
        .bind(id)
        .bind(actor)
        .bind(Json(json!({ "text": text })))
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound { entity: "case" })?;
        tx.commit().await?;
        Ok(event)
    }

    /// A case's timeline, oldest first, from after event `after`.
    pub async fn case_timeline(
        &self,
        tenant: &str,
        id: Uuid,
        after: Option<i64>,
        limit: i64,
    ) -> Result<TimelinePage, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let limit = clamp_limit(limit);
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM cases WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound { entity: "case" });
        }
        let mut events: Vec<CaseEvent> = sqlx::query_as(
            "SELECT id, kind, actor, data, created_at FROM case_events
             WHERE tenant_id = $1 AND case_id = $2 AND ($3::bigint IS NULL OR id > $3)
             ORDER BY id LIMIT $4",
        )
        .bind(tenant)
        .bind(id)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(&mut *tx)
        .await?;
        let next_after = if events.len() > usize::try_from(limit).unwrap_or(0) {
            events.truncate(usize::try_from(limit).unwrap_or(0));
            events.last().map(|e| e.id)
        } else {
            None
        };
        Ok(TimelinePage { events, next_after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_transitions() {
        use CaseStatus::{Closed, InProgress, New, Resolved};
        assert!(New.can_become(InProgress) && InProgress.can_become(Resolved));
        assert!(InProgress.can_become(Closed) && Resolved.can_become(InProgress));
        assert!(!InProgress.can_become(New) && !Closed.can_become(Resolved));
        assert!(!Resolved.can_become(New));
        for s in ["new", "in_progress", "resolved", "closed"] {
            assert_eq!(s.parse::<CaseStatus>().map(CaseStatus::as_str), Ok(s));
        }
        assert!("open".parse::<CaseStatus>().is_err());
        assert_eq!(
            clean_tags(&[" a ".to_owned(), "b".to_owned(), "a".to_owned()]).ok(),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert!(matches!(
            clean_tags(&[String::new()]),
            Err(CaseUpdateError::Invalid(_))
        ));
    }
}
