//! Playbook bundles (content-addressed playbook directories), their extracted playbook
//! metadata, and deployments (which bundle is active for a tenant).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::types::Json;

use crate::{Store, StoreError};

/// Metadata of one playbook, extracted from the bundle at deploy time by the SDK.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct PlaybookMeta {
    /// Unique name within the bundle.
    pub name: String,
    /// Module path inside the bundle (`examples.triage`).
    pub module: String,
    /// Function name.
    pub function: String,
    /// `alert` or `manual`.
    pub trigger: String,
    /// The `when` conditions as data, evaluated by the scheduler.
    #[sqlx(json(nullable), rename = "when_cond")]
    #[serde(default)]
    pub when: Option<serde_json::Value>,
    /// `low`, `normal` or `high`: the RUNS lane.
    pub priority: String,
    /// Hard deadline for one execution, in milliseconds.
    #[serde(rename = "timeout_s", with = "seconds_as_ms")]
    pub timeout_ms: i64,
    /// Source file relative to the bundle root.
    pub file: String,
    /// Line of the playbook's definition (its first decorator).
    pub line: i32,
    /// Whether the playbook starts runs (a disabled one is kept but never matched).
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// Tenants the playbook applies to: `"*"` or a list of tenant ids.
    #[sqlx(json)]
    #[serde(default = "tenants_default")]
    pub tenants: serde_json::Value,
}

fn enabled_default() -> bool {
    true
}

fn tenants_default() -> serde_json::Value {
    serde_json::Value::String("*".to_owned())
}

impl PlaybookMeta {
    /// Whether the playbook applies to `tenant`.
    pub fn applies_to(&self, tenant: &str) -> bool {
        match &self.tenants {
            serde_json::Value::Array(list) => list.iter().any(|t| t.as_str() == Some(tenant)),
            _ => true,
        }
    }
}

mod seconds_as_ms {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        #[allow(clippy::cast_precision_loss)]
        s.serialize_f64(*ms as f64 / 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let secs = f64::deserialize(d)?;
        if !(0.0..=86_400.0 * 7.0).contains(&secs) {
            return Err(serde::de::Error::custom("timeout_s out of range"));
        }
        #[allow(clippy::cast_possible_truncation)]
        Ok((secs * 1000.0).round() as i64)
    }
}

/// A playbook started by a schedule.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScheduledPlaybook {
    /// Tenant.
    pub tenant_id: String,
    /// Active bundle.
    pub bundle_hash: String,
    /// Playbook name.
    pub name: String,
    /// Lane.
    pub priority: String,
    /// `schedule:<cron>`.
    pub trigger: String,
}

/// The channel NOTIFYed (payload: the tenant id) when a tenant's deployed playbooks or their
/// switches change; schedulers drop their cached copy.
pub const PLAYBOOKS_CHANNEL: &str = "tocsin_playbooks";

async fn notify_playbooks_changed(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant: &str,
) -> Result<(), StoreError> {
    // Delivered at commit, and only if the transaction commits.
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(PLAYBOOKS_CHANNEL)
        .bind(tenant)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A bundle's playbooks with their effective `enabled` (the switch, else the bundle's).
async fn bundle_playbooks(
    tx: &mut sqlx::PgConnection,
    tenant: &str,
    hash: &str,
) -> Result<Vec<PlaybookMeta>, StoreError> {
    Ok(sqlx::query_as::<_, PlaybookMeta>(
        "SELECT p.name, p.module, p.function, p.trigger, p.when_cond, p.priority, p.timeout_ms,
                p.file, p.line, COALESCE(s.enabled, p.enabled) AS enabled, p.tenants
         FROM playbooks p
         LEFT JOIN playbook_switches s ON s.tenant_id = p.tenant_id AND s.name = p.name
         WHERE p.tenant_id = $1 AND p.bundle_hash = $2 ORDER BY p.name",
    )
    .bind(tenant)
    .bind(hash)
    .fetch_all(tx)
    .await?)
}

/// A deployment: which bundle is live for a tenant, since when and by whom.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Deployment {
    /// Content hash of the live bundle.
    pub bundle_hash: String,
    /// Who deployed it.
    pub deployed_by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub deployed_at: time::OffsetDateTime,
}

/// The active bundle of a tenant and its playbooks.
#[derive(Debug, Clone)]
pub struct ActiveBundle {
    /// Content hash.
    pub hash: String,
    /// Playbooks it defines.
    pub playbooks: Vec<PlaybookMeta>,
}

impl Store {
    /// Stores a bundle and its playbook metadata. Idempotent: saving the same hash again
    /// changes nothing.
    pub async fn save_bundle(
        &self,
        tenant: &str,
        hash: &str,
        files: &BTreeMap<String, String>,
        playbooks: &[PlaybookMeta],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let inserted = sqlx::query(
            "INSERT INTO bundles (tenant_id, hash, files) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, hash) DO NOTHING",
        )
        .bind(tenant)
        .bind(hash)
        .bind(Json(files))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            for p in playbooks {
                sqlx::query(
                    "INSERT INTO playbooks (tenant_id, bundle_hash, name, module, function,
                        trigger, when_cond, priority, timeout_ms, file, line, enabled, tenants)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(tenant)
                .bind(hash)
                .bind(&p.name)
                .bind(&p.module)
                .bind(&p.function)
                .bind(&p.trigger)
                .bind(p.when.as_ref().map(Json))
                .bind(&p.priority)
                .bind(p.timeout_ms)
                .bind(&p.file)
                .bind(p.line)
                .bind(p.enabled)
                .bind(Json(&p.tenants))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Makes a saved bundle the tenant's active one.
    pub async fn deploy_bundle(
        &self,
        tenant: &str,
        hash: &str,
        by: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        sqlx::query(
            "INSERT INTO deployments (tenant_id, bundle_hash, deployed_by) VALUES ($1, $2, $3)",
        )
        .bind(tenant)
        .bind(hash)
        .bind(by)
        .execute(&mut *tx)
        .await?;
        notify_playbooks_changed(&mut tx, tenant).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The tenant's active deployment and its playbooks (with their effective `enabled`),
    /// or `None` before the first deploy.
    pub async fn deployed_playbooks(
        &self,
        tenant: &str,
    ) -> Result<Option<(Deployment, Vec<PlaybookMeta>)>, StoreError> {
        // One transaction: the deployment and its playbooks are read from the same snapshot.
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let deployment = sqlx::query_as::<_, Deployment>(
            "SELECT bundle_hash, deployed_by, deployed_at FROM deployments
             WHERE tenant_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(deployment) = deployment else {
            return Ok(None);
        };
        let playbooks = bundle_playbooks(&mut tx, tenant, &deployment.bundle_hash).await?;
        Ok(Some((deployment, playbooks)))
    }

    /// Enables or disables the tenant's playbook `name` for new alerts and schedules, on
    /// every node at once (schedulers listen on [`PLAYBOOKS_CHANNEL`]); the switch outlives
    /// later deployments. The playbook must exist in the active bundle. Returns it as it
    /// is now, with the previous effective state.
    pub async fn set_playbook_enabled(
        &self,
        tenant: &str,
        name: &str,
        enabled: bool,
        by: &str,
    ) -> Result<(PlaybookMeta, bool), StoreError> {
        let Some(bundle) = self.active_bundle(tenant).await? else {
            return Err(StoreError::NotFound { entity: "playbook" });
        };
        let Some(before) = bundle.playbooks.into_iter().find(|p| p.name == name) else {
            return Err(StoreError::NotFound { entity: "playbook" });
        };
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        sqlx::query(
            "INSERT INTO playbook_switches (tenant_id, name, enabled, changed_by)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, name)
             DO UPDATE SET enabled = $3, changed_by = $4, changed_at = now()",
        )
        .bind(tenant)
        .bind(name)
        .bind(enabled)
        .bind(by)
        .execute(&mut *tx)
        .await?;
        notify_playbooks_changed(&mut tx, tenant).await?;
        tx.commit().await?;
        let was = before.enabled;
        Ok((PlaybookMeta { enabled, ..before }, was))
    }

    /// The tenant's active bundle, if any was deployed.
    pub async fn active_bundle(&self, tenant: &str) -> Result<Option<ActiveBundle>, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let hash: Option<String> = sqlx::query_scalar(
            "SELECT bundle_hash FROM deployments WHERE tenant_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(hash) = hash else {
            return Ok(None);
        };
        let playbooks = bundle_playbooks(&mut tx, tenant, &hash).await?;
        Ok(Some(ActiveBundle { hash, playbooks }))
    }

    /// One playbook of a bundle.
    pub async fn playbook(
        &self,
        tenant: &str,
        hash: &str,
        name: &str,
    ) -> Result<PlaybookMeta, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        sqlx::query_as::<_, PlaybookMeta>(
            "SELECT p.name, p.module, p.function, p.trigger, p.when_cond, p.priority, p.timeout_ms,
                    p.file, p.line, COALESCE(s.enabled, p.enabled) AS enabled, p.tenants
             FROM playbooks p
             LEFT JOIN playbook_switches s ON s.tenant_id = p.tenant_id AND s.name = p.name
             WHERE p.tenant_id = $1 AND p.bundle_hash = $2 AND p.name = $3",
        )
        .bind(tenant)
        .bind(hash)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound { entity: "playbook" })
    }

    /// Every tenant's active, enabled playbooks with a `schedule:` trigger.
    pub async fn scheduled_playbooks(&self) -> Result<Vec<ScheduledPlaybook>, StoreError> {
        let mut tx = self.begin(crate::Scope::System).await?;
        Ok(sqlx::query_as(
            "SELECT p.tenant_id, p.bundle_hash, p.name, p.priority, p.trigger
             FROM playbooks p
             JOIN LATERAL (SELECT bundle_hash FROM deployments d WHERE d.tenant_id = p.tenant_id
                           ORDER BY d.id DESC LIMIT 1) active ON active.bundle_hash = p.bundle_hash
             LEFT JOIN playbook_switches s ON s.tenant_id = p.tenant_id AND s.name = p.name
             WHERE p.trigger LIKE 'schedule:%' AND COALESCE(s.enabled, p.enabled)",
        )
        .fetch_all(&mut *tx)
        .await?)
    }

    /// Queues the run of a scheduled playbook for one minute. The id is derived from
    /// (tenant, playbook, minute), so several schedulers queue it once; returns whether this
    /// call queued it.
    pub async fn queue_scheduled_run(
        &self,
        tenant: &str,
        bundle_hash: &str,
        playbook: &str,
        priority: &str,
        minute: time::OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let key = format!("schedule:{tenant}:{playbook}:{}", minute.unix_timestamp());
        let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes());
        let n = sqlx::query(
            "INSERT INTO runs (id, tenant_id, playbook, bundle_hash, priority, trigger, input)
             VALUES ($1, $2, $3, $4, $5, 'schedule', $6)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(tenant)
        .bind(playbook)
        .bind(bundle_hash)
        .bind(priority)
        .bind(Json(
            serde_json::json!({ "scheduled_for": minute.unix_timestamp() }),
        ))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// The files of a bundle, by path relative to its root.
    pub async fn bundle_files(
        &self,
        tenant: &str,
        hash: &str,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let files: Option<Json<BTreeMap<String, String>>> =
            sqlx::query_scalar("SELECT files FROM bundles WHERE tenant_id = $1 AND hash = $2")
                .bind(tenant)
                .bind(hash)
                .fetch_optional(&mut *tx)
                .await?;
        files
            .map(|Json(f)| f)
            .ok_or(StoreError::NotFound { entity: "bundle" })
    }
}

/// Content hash of a bundle: SHA-256 over its files in path order, each as the path, a NUL,
/// the content length (8 bytes, big endian) and the content. Hex, 64 characters.
pub fn content_hash(files: &BTreeMap<String, String>) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (path, content) in files {
        hasher.update(path.as_bytes());
        hasher.update([0u8]);
        hasher.update((content.len() as u64).to_be_bytes());
        hasher.update(content.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Whether `path` is a safe relative bundle path: `/`-separated, no empty, `.` or `..`
/// segments, not absolute, and ending in `.py`.
pub fn is_safe_bundle_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 512
        && path.ends_with(".py")
        && !path.starts_with('/')
        && !path.contains('\\')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.contains('\0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_depends_on_paths_and_contents() {
        let mut a = BTreeMap::new();
        a.insert("x.py".to_owned(), "print(1)".to_owned());
        let mut b = a.clone();
        assert_eq!(content_hash(&a), content_hash(&b));
        b.insert("y.py".to_owned(), String::new());
        assert_ne!(content_hash(&a), content_hash(&b));
        let mut c = BTreeMap::new();
        c.insert("x.p".to_owned(), "yprint(1)".to_owned());
        assert_ne!(content_hash(&a), content_hash(&c));
    }

    #[test]
    fn bundle_paths_must_stay_inside_the_bundle() {
        assert!(is_safe_bundle_path("examples/triage.py"));
        for bad in [
            "",
            "/etc/x.py",
            "../x.py",
            "a/../x.py",
            "a//x.py",
            "x.txt",
            "a\\x.py",
            "./x.py",
        ] {
            assert!(!is_safe_bundle_path(bad), "{bad}");
        }
    }
}
