//! Observables: stored once per tenant (`UNIQUE (tenant_id, type, value)`) with first and
//! last sighting, linked to the alerts that carried them and the cases they appear in.

use serde::Serialize;
use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::extract::Observable;
use crate::page::{Cursor, Keyed, Page, binds, clamp_limit};
use crate::{Store, StoreError};

/// How far `last_seen` may lag the newest sighting. Busy observables (a scanner's address,
/// a shared host) appear in many alerts a second; bumping their row on every one would
/// serialize those alerts on its row lock and leave a dead row version each time.
const LAST_SEEN_GRANULARITY_SECS: f64 = 1.0;

/// Upserts `found` for `tenant` (seen at `seen_at`) and links every one to `alert_id` and
/// `case_id` when given. Returns the observable ids, in the order of `found`.
///
/// Known observables are not locked unless their `first_seen`/`last_seen` must move: a
/// `last_seen` less than [`LAST_SEEN_GRANULARITY_SECS`] behind `seen_at` stays as it is.
/// `found` must be sorted (as [`crate::extract::extract`] returns it): concurrent
/// transactions then insert and lock shared observable rows in the same order and cannot
/// deadlock.
pub(crate) async fn link_observables(
    conn: &mut PgConnection,
    tenant: &str,
    found: &[Observable],
    seen_at: OffsetDateTime,
    alert_id: Option<Uuid>,
    case_id: Option<Uuid>,
) -> Result<Vec<Uuid>, StoreError> {
    if found.is_empty() {
        return Ok(Vec::new());
    }
    debug_assert!(found.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
    let ids: Vec<Uuid> = found.iter().map(|_| Uuid::now_v7()).collect();
    let kinds: Vec<&str> = found.iter().map(|(k, _)| *k).collect();
    let values: Vec<&str> = found.iter().map(|(_, v)| v.as_str()).collect();
    // New ones. A concurrent transaction inserting the same one makes this wait for its
    // outcome, then skip it.
    sqlx::query(
        "INSERT INTO observables (id, tenant_id, type, value, first_seen, last_seen)
         SELECT u.id, $1, u.type, u.value, $5, $5
         FROM unnest($2::uuid[], $3::text[], $4::text[]) WITH ORDINALITY AS u(id, type, value, n)
         ORDER BY u.n
         ON CONFLICT (tenant_id, type, value) DO NOTHING",
    )
    .bind(tenant)
    .bind(&ids)
    .bind(&kinds)
    .bind(&values)
    .bind(seen_at)
    .execute(&mut *conn)
    .await?;
    // A new statement: it sees rows committed by others meanwhile. Only rows whose dates
    // must move are locked, in sorted order, and with NO KEY UPDATE: the key-share locks
    // that the link tables' foreign keys take on the same rows do not conflict with it.
    // A row is in at most one of `stale` and `earlier`.
    let stored: Vec<Uuid> = sqlx::query_scalar(
        "WITH found AS (
            SELECT o.id, u.n
            FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS u(type, value, n)
            JOIN observables o ON o.tenant_id = $1 AND o.type = u.type AND o.value = u.value
         ), stale AS (
            -- last_seen behind: bump it, unless another transaction is bumping it already
            -- (it sets it to about now too): busy observables never make alerts wait.
            SELECT o.id FROM observables o
            WHERE o.id IN (SELECT id FROM found)
              AND o.last_seen < $4 - make_interval(secs => $7) AND o.first_seen <= $4
            ORDER BY o.type, o.value
            FOR NO KEY UPDATE SKIP LOCKED
         ), earlier AS (
            -- Seen earlier than first_seen (an old alert arriving late): rare; wait for it.
            SELECT o.id FROM observables o
            WHERE o.id IN (SELECT id FROM found) AND o.first_seen > $4
            ORDER BY o.type, o.value
            FOR NO KEY UPDATE
         ), bumped AS (
            UPDATE observables o
            SET last_seen = greatest(o.last_seen, $4), first_seen = least(o.first_seen, $4)
            WHERE o.id IN (SELECT id FROM stale UNION ALL SELECT id FROM earlier)
         ), a AS (
            INSERT INTO alert_observables (alert_id, observable_id, tenant_id)
            SELECT $5, found.id, $1 FROM found WHERE $5::uuid IS NOT NULL
            ON CONFLICT DO NOTHING
         ), c AS (
            INSERT INTO case_observables (case_id, observable_id, tenant_id)
            SELECT $6, found.id, $1 FROM found WHERE $6::uuid IS NOT NULL
            ON CONFLICT DO NOTHING
         )
         SELECT id FROM found ORDER BY n",
    )
    .bind(tenant)
    .bind(&kinds)
    .bind(&values)
    .bind(seen_at)
    .bind(alert_id)
    .bind(case_id)
    .bind(LAST_SEEN_GRANULARITY_SECS)
    .fetch_all(&mut *conn)
    .await?;
    if stored.len() != found.len() {
        // Only possible if an observable was deleted between the two statements.
        return Err(StoreError::Corrupt {
            what: "observables (changed during upsert)",
        });
    }
    Ok(stored)
}

/// An observable as lists show it.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct ObservableView {
    /// Observable id.
    pub id: Uuid,
    /// ip | domain | url | hash | email | user | host.
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    /// Normalized value.
    pub value: String,
    /// First sighting.
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    /// Last sighting.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// Alerts that carried it.
    pub alert_count: i64,
    /// Cases it appears in.
    pub case_count: i64,
}

impl Keyed for ObservableView {
    fn cursor(&self) -> Cursor {
        Cursor {
            at: self.first_seen,
            id: self.id,
        }
    }
}

/// A case an observable appears in.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct RelatedCase {
    /// Case id.
    pub id: Uuid,
    /// Title.
    pub title: String,
    /// Status.
    pub status: String,
    /// Severity.
    pub severity: String,
    /// When it was opened.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the observable joined it.
    #[serde(with = "time::serde::rfc3339")]
    pub added_at: OffsetDateTime,
}

/// One observable with the cases it appears in.
#[derive(Debug, Clone, Serialize)]
pub struct ObservableDetail {
    /// The observable and its counts.
    #[serde(flatten)]
    pub observable: ObservableView,
    /// Number of cases other than the one asked about (`case_id`) it appears in; present
    /// only when a case was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen_in_other_cases: Option<i64>,
    /// Cases it appears in, newest first (at most 100).
    pub cases: Vec<RelatedCase>,
}

/// Filters of the observable list.
#[derive(Debug, Clone, Default)]
pub struct ObservableFilter {
    /// Only this type.
    pub kind: Option<String>,
    /// Only values starting with this.
    pub value_prefix: Option<String>,
}

const VIEW_COLUMNS: &str = "o.id, o.type, o.value, o.first_seen, o.last_seen,
    (SELECT count(*) FROM alert_observables ao WHERE ao.observable_id = o.id) AS alert_count,
    (SELECT count(*) FROM case_observables co WHERE co.observable_id = o.id) AS case_count";

impl Store {
    /// Observables of `tenant`, newest first.
    pub async fn list_observables(
        &self,
        tenant: &str,
        filter: &ObservableFilter,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<ObservableView>, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let limit = clamp_limit(limit);
        let (at, id) = binds(after);
        let rows: Vec<ObservableView> = sqlx::query_as(&format!(
            "SELECT {VIEW_COLUMNS} FROM observables o
             WHERE o.tenant_id = $1
               AND ($2::text IS NULL OR o.type = $2)
               AND ($3::text IS NULL OR starts_with(o.value, $3))
               AND ($4::timestamptz IS NULL OR (o.first_seen, o.id) < ($4, $5))
             ORDER BY o.first_seen DESC, o.id DESC LIMIT $6"
        ))
        .bind(tenant)
        .bind(filter.kind.as_deref())
        .bind(filter.value_prefix.as_deref())
        .bind(at)
        .bind(id)
        .bind(limit + 1)
        .fetch_all(&mut *tx)
        .await?;
        Ok(Page::from_rows(rows, limit))
    }

    /// One observable of `tenant` with its cases; `seen_in_other_cases` counts the cases
    /// other than `relative_to` when given.
    pub async fn observable_detail(
        &self,
        tenant: &str,
        id: Uuid,
        relative_to: Option<Uuid>,
    ) -> Result<ObservableDetail, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let observable: ObservableView = sqlx::query_as(&format!(
            "SELECT {VIEW_COLUMNS} FROM observables o WHERE o.tenant_id = $1 AND o.id = $2"
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound {
            entity: "observable",
        })?;
        let cases: Vec<RelatedCase> = sqlx::query_as(
            "SELECT c.id, c.title, c.status, c.severity, c.created_at, co.added_at
             FROM case_observables co JOIN cases c ON c.id = co.case_id
             WHERE co.tenant_id = $1 AND co.observable_id = $2 AND c.tenant_id = $1
             ORDER BY c.created_at DESC, c.id DESC LIMIT 100",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let seen_in_other_cases = match relative_to {
            Some(case_id) => Some(
                sqlx::query_scalar(
                    "SELECT count(*) FROM case_observables
                     WHERE tenant_id = $1 AND observable_id = $2 AND case_id <> $3",
                )
                .bind(tenant)
                .bind(id)
                .bind(case_id)
                .fetch_one(&mut *tx)
                .await?,
            ),
            None => None,
        };
        Ok(ObservableDetail {
            observable,
            seen_in_other_cases,
            cases,
        })
    }
}
