//! Grouping policies: how related alerts of a tenant are grouped into one open case.
//!
//! A policy names the fingerprint fields, a time window, a maximum group size and whether
//! alerts joining an existing case start playbook runs. Policies are versioned: every change
//! is a new row, the highest version applies, and a tenant without one uses
//! [`GroupingPolicy::default`].
//!
//! Fingerprint fields:
//!
//! | field | value |
//! |---|---|
//! | `source`, `title`, `severity` | the alert's field |
//! | `observable:<type>[\|<type>...]` | the first observable of the first listed type the alert has (`observable:host\|user\|ip`: its host, else its user, else its ip) |
//! | `raw.<path>` | a value of the raw source fields (`raw.rule.id`) |
//!
//! The fingerprint is a SHA-256 over the field names and their values, so changing the
//! fields starts new groups.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use time::OffsetDateTime;

use crate::alerts::NewAlert;
use crate::{Store, StoreError};

/// Default fingerprint fields.
pub const DEFAULT_FIELDS: [&str; 3] = ["source", "title", "observable:host|user|ip"];
/// Default window: one hour.
pub const DEFAULT_WINDOW_SECS: i32 = 3600;
/// Default maximum number of alerts in one case.
pub const DEFAULT_MAX_GROUP_SIZE: i32 = 100;
/// Longest window accepted: 30 days.
pub const MAX_WINDOW_SECS: i32 = 30 * 24 * 3600;
/// Largest group size accepted.
pub const MAX_GROUP_SIZE: i32 = 100_000;
/// Most fingerprint fields accepted.
pub const MAX_FIELDS: usize = 8;

/// A tenant's grouping policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupingPolicy {
    /// Version; 0 for the built-in defaults (never stored).
    pub version: i32,
    /// Fingerprint fields.
    pub fields: Vec<String>,
    /// Alerts group into a case opened by an alert received at most this long before.
    pub window_seconds: i32,
    /// A case holding this many alerts takes no more; the next related alert opens a new one.
    pub max_group_size: i32,
    /// Whether alerts joining an existing case start playbook runs (the first alert of a
    /// case always does).
    pub grouped_alerts_trigger: bool,
    /// Who set it (`None` for the defaults).
    pub created_by: Option<String>,
    /// When it was set.
    #[serde(with = "time::serde::rfc3339::option")]
    pub created_at: Option<OffsetDateTime>,
}

impl Default for GroupingPolicy {
    fn default() -> Self {
        Self {
            version: 0,
            fields: DEFAULT_FIELDS.iter().map(|f| (*f).to_owned()).collect(),
            window_seconds: DEFAULT_WINDOW_SECS,
            max_group_size: DEFAULT_MAX_GROUP_SIZE,
            grouped_alerts_trigger: false,
            created_by: None,
            created_at: None,
        }
    }
}

/// A policy change to store as the next version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyChange {
    /// Fingerprint fields.
    pub fields: Vec<String>,
    /// Window in seconds.
    pub window_seconds: i32,
    /// Maximum alerts per case.
    pub max_group_size: i32,
    /// Whether grouped alerts start runs.
    pub grouped_alerts_trigger: bool,
    /// Only store it if the current version is this one (optimistic concurrency).
    pub expected_version: Option<i32>,
}

/// Why a policy was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A value is out of range or a field is unknown.
    #[error("invalid grouping policy: {0}")]
    Invalid(String),
    /// The policy changed since the version the caller read.
    #[error("grouping policy is at version {current}, not {expected}")]
    Stale {
        /// Version the caller expected.
        expected: i32,
        /// Version in force.
        current: i32,
    },
    /// Database failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for PolicyError {
    fn from(e: sqlx::Error) -> Self {
        PolicyError::Store(StoreError::from_sqlx(e))
    }
}

/// Checks one fingerprint field spec.
fn valid_field(field: &str) -> bool {
    match field {
        "source" | "title" | "severity" => true,
        _ => {
            if let Some(types) = field.strip_prefix("observable:") {
                !types.is_empty()
                    && types
                        .split('|')
                        .all(|t| tocsin_proto::types::OBSERVABLE_TYPES.contains(&t))
            } else if let Some(path) = field.strip_prefix("raw.") {
                !path.is_empty()
                    && path.len() <= 200
                    && path.split('.').all(|p| {
                        !p.is_empty()
                            && p.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    })
            } else {
                false
            }
        }
    }
}

impl PolicyChange {
    /// Every problem with the change, or `Ok`.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let mut problems = Vec::new();
        if self.fields.is_empty() || self.fields.len() > MAX_FIELDS {
            problems.push(format!("fields must name 1-{MAX_FIELDS} fields"));
        }
        for field in &self.fields {
            if !valid_field(field) {
                problems.push(format!(
                    "unknown field {field:?} (source, title, severity, observable:<type>[|<type>], raw.<path>)"
                ));
            }
        }
        let mut unique = self.fields.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != self.fields.len() {
            problems.push("fields must not repeat".to_owned());
        }
        if !(1..=MAX_WINDOW_SECS).contains(&self.window_seconds) {
            problems.push(format!("window_seconds must be 1-{MAX_WINDOW_SECS}"));
        }
        if !(1..=MAX_GROUP_SIZE).contains(&self.max_group_size) {
            problems.push(format!("max_group_size must be 1-{MAX_GROUP_SIZE}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PolicyError::Invalid(problems.join("; ")))
        }
    }
}

/// An alert's fingerprint under a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    /// Hex SHA-256 of the fields and values.
    pub hash: String,
    /// Field -> the alert's value (`null` when it has none).
    pub matched: Map<String, Value>,
}

/// The value of one fingerprint field for `alert`.
fn field_value(alert: &NewAlert, field: &str) -> Value {
    match field {
        "source" => Value::from(alert.source.as_str()),
        "title" => Value::from(alert.title.as_str()),
        "severity" => Value::from(alert.severity.as_str()),
        _ => {
            if let Some(types) = field.strip_prefix("observable:") {
                let observables = alert.observables.as_array();
                for kind in types.split('|') {
                    let found = observables.into_iter().flatten().find_map(|o| {
                        (o.get("type").and_then(Value::as_str) == Some(kind))
                            .then(|| o.get("value").and_then(Value::as_str))
                            .flatten()
                            .and_then(|v| crate::extract::normalize(kind, v))
                    });
                    if let Some(value) = found {
                        return Value::from(format!("{kind}:{value}"));
                    }
                }
                Value::Null
            } else if let Some(path) = field.strip_prefix("raw.") {
                let mut current = &alert.raw;
                for part in path.split('.') {
                    match current.get(part) {
                        Some(next) => current = next,
                        None => return Value::Null,
                    }
                }
                current.clone()
            } else {
                Value::Null
            }
        }
    }
}

impl GroupingPolicy {
    /// The fingerprint of `alert` under this policy.
    pub fn fingerprint(&self, alert: &NewAlert) -> Fingerprint {
        let mut matched = Map::new();
        let mut hasher = Sha256::new();
        for field in &self.fields {
            let value = field_value(alert, field);
            // Length-prefixed name and canonical JSON value: no two lists hash alike.
            let encoded = value.to_string();
            hasher.update(field.len().to_be_bytes());
            hasher.update(field.as_bytes());
            hasher.update(encoded.len().to_be_bytes());
            hasher.update(encoded.as_bytes());
            matched.insert(field.clone(), value);
        }
        Fingerprint {
            hash: hex::encode(hasher.finalize()),
            matched,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
struct PolicyRow {
    version: i32,
    fields: Vec<String>,
    window_secs: i32,
    max_group_size: i32,
    grouped_alerts_trigger: bool,
    created_by: String,
    created_at: OffsetDateTime,
}

impl From<PolicyRow> for GroupingPolicy {
    fn from(row: PolicyRow) -> Self {
        Self {
            version: row.version,
            fields: row.fields,
            window_seconds: row.window_secs,
            max_group_size: row.max_group_size,
            grouped_alerts_trigger: row.grouped_alerts_trigger,
            created_by: Some(row.created_by),
            created_at: Some(row.created_at),
        }
    }
}

/// The policy in force for `tenant` (the defaults when none was set).
pub(crate) async fn current_policy(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<GroupingPolicy, StoreError> {
    let row: Option<PolicyRow> = sqlx::query_as(
        "SELECT version, fields, window_secs, max_group_size, grouped_alerts_trigger, created_by,
                created_at
         FROM grouping_policies WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1",
    )
    .bind(tenant)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(GroupingPolicy::from).unwrap_or_default())
}

impl Store {
    /// The grouping policy in force for `tenant`.
    pub async fn grouping_policy(&self, tenant: &str) -> Result<GroupingPolicy, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        current_policy(&mut tx, tenant).await
    }

    /// Every stored version of `tenant`'s policy, newest first.
    pub async fn grouping_policy_history(
        &self,
        tenant: &str,
    ) -> Result<Vec<GroupingPolicy>, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let rows: Vec<PolicyRow> = sqlx::query_as(
            "SELECT version, fields, window_secs, max_group_size, grouped_alerts_trigger,
                    created_by, created_at
             FROM grouping_policies WHERE tenant_id = $1 ORDER BY version DESC LIMIT 100",
        )
        .bind(tenant)
        .fetch_all(&mut *tx)
        .await?;
        Ok(rows.into_iter().map(GroupingPolicy::from).collect())
    }

    /// Stores `change` as the next version of `tenant`'s policy and returns it.
    pub async fn set_grouping_policy(
        &self,
        tenant: &str,
        change: &PolicyChange,
        by: &str,
    ) -> Result<GroupingPolicy, PolicyError> {
        change.validate()?;
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        // One writer per tenant at a time, so versions are assigned without gaps or races.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('grouping_policy'), hashtext($1))")
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        let current: i32 = sqlx::query_scalar(
            "SELECT coalesce(max(version), 0) FROM grouping_policies WHERE tenant_id = $1",
        )
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(expected) = change.expected_version
            && expected != current
        {
            return Err(PolicyError::Stale { expected, current });
        }
        let row: PolicyRow = sqlx::query_as(
            "INSERT INTO grouping_policies (tenant_id, version, fields, window_secs, max_group_size,
                    grouped_alerts_trigger, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING version, fields, window_secs, max_group_size, grouped_alerts_trigger,
                       created_by, created_at",
        )
        .bind(tenant)
        .bind(current + 1)
        .bind(&change.fields)
        .bind(change.window_seconds)
        .bind(change.max_group_size)
        .bind(change.grouped_alerts_trigger)
        .bind(by)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;
    use tocsin_proto::types::Severity;
    use uuid::Uuid;

    use super::*;

    fn alert(title: &str, observables: Value, raw: Value) -> NewAlert {
        NewAlert {
            trace_id: None,
            id: Uuid::nil(),
            receipt_id: Uuid::nil(),
            tenant: "t".to_owned(),
            source: "wazuh".to_owned(),
            source_ref: "r".to_owned(),
            title: title.to_owned(),
            description: String::new(),
            severity: Severity::High,
            occurred_at: None,
            received_at: OffsetDateTime::UNIX_EPOCH,
            observables,
            tags: Vec::new(),
            raw,
            mapping: None,
            match_report: None,
        }
    }

    #[test]
    fn default_fingerprint_prefers_host_then_user_then_ip_and_reports_what_matched() {
        let policy = GroupingPolicy::default();
        let with_ip_and_user = alert(
            "SSH brute force",
            json!([{"type": "ip", "value": "10.0.0.1"}, {"type": "user", "value": "root"}]),
            json!({}),
        );
        let fp = policy.fingerprint(&with_ip_and_user);
        assert_eq!(
            Value::Object(fp.matched.clone()),
            json!({"source": "wazuh", "title": "SSH brute force",
                   "observable:host|user|ip": "user:root"})
        );
        let same_user_other_ip = alert(
            "SSH brute force",
            json!([{"type": "ip", "value": "10.0.0.2"}, {"type": "user", "value": "root"}]),
            json!({"x": 1}),
        );
        assert_eq!(policy.fingerprint(&same_user_other_ip).hash, fp.hash);
        let other_title = alert(
            "Port scan",
            json!([{"type": "user", "value": "root"}]),
            json!({}),
        );
        assert_ne!(policy.fingerprint(&other_title).hash, fp.hash);
        let none = alert("SSH brute force", json!([]), json!({}));
        assert_eq!(
            policy.fingerprint(&none).matched["observable:host|user|ip"],
            Value::Null
        );
    }

    #[test]
    fn raw_path_fields_and_validation() {
        let policy = GroupingPolicy {
            fields: vec!["raw.rule.id".to_owned()],
            ..GroupingPolicy::default()
        };
        let a = alert("a", json!([]), json!({"rule": {"id": "5715"}}));
        let b = alert("b", json!([]), json!({"rule": {"id": "5715", "level": 3}}));
        assert_eq!(policy.fingerprint(&a).hash, policy.fingerprint(&b).hash);
        assert_eq!(policy.fingerprint(&a).matched["raw.rule.id"], "5715");

        let change = |fields: &[&str], window: i32, size: i32| PolicyChange {
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            window_seconds: window,
            max_group_size: size,
            grouped_alerts_trigger: false,
            expected_version: None,
        };
        assert!(
            change(&["source", "observable:ip|host", "raw.a.b_c"], 60, 5)
                .validate()
                .is_ok()
        );
        for bad in [
            change(&[], 60, 5),
            change(&["colour"], 60, 5),
            change(&["observable:car"], 60, 5),
            change(&["raw."], 60, 5),
            change(&["source", "source"], 60, 5),
            change(&["source"], 0, 5),
            change(&["source"], 60, 0),
        ] {
            assert!(
                matches!(bad.validate(), Err(PolicyError::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}
