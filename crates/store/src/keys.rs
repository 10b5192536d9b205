//! API and ingest keys: random, shown once, stored as SHA-256, compared in constant time.
//!
//! Format: `tsk_<kind>_<64 hex chars>` where kind is `ingest` or `api`. The first 12 hex
//! characters (with the kind prefix) are stored in clear as a lookup prefix.
//!
//! Every key has a [`Role`]: `ingest` keys only send alerts; `api` keys are `viewer` (read),
//! `analyst` (cases, approvals, runs), `admin` (also tenant settings, keys, secrets,
//! policies), or `operator` (an MSSP key of no tenant that acts as admin in the tenant each
//! call names). A key may expire; a revoked or expired key resolves to nothing.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Store, StoreError};

/// What a key may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Posting alerts to ingest.
    Ingest,
    /// The analyst/admin REST API.
    Api,
}

impl KeyKind {
    /// Name used in the key text and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Ingest => "ingest",
            KeyKind::Api => "api",
        }
    }
}

/// What a key may do. The API roles are ordered: viewer < analyst < admin < operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sends alerts to ingest; nothing else.
    Ingest,
    /// Reads everything of its tenant.
    Viewer,
    /// Viewer, plus works cases, approvals and runs.
    Analyst,
    /// Analyst, plus tenant settings, keys, secrets, grouping policy, playbooks.
    Admin,
    /// Admin in every tenant; names the tenant on each call.
    Operator,
}

impl Role {
    /// Name used in the database, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
            Role::Operator => "operator",
        }
    }

    /// The key text kind of this role.
    pub fn kind(self) -> KeyKind {
        if self == Role::Ingest {
            KeyKind::Ingest
        } else {
            KeyKind::Api
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "ingest" => Role::Ingest,
            "viewer" => Role::Viewer,
            "analyst" => Role::Analyst,
            "admin" => Role::Admin,
            "operator" => Role::Operator,
            other => {
                return Err(format!(
                    "unknown role {other:?}: expected admin, analyst, viewer, ingest or operator"
                ));
            }
        })
    }
}

/// The identity behind a presented API key.
#[derive(Debug, Clone)]
pub struct KeyIdentity {
    /// Key row id (the actor in audit entries).
    pub id: Uuid,
    /// Its tenant (`None` for an operator key).
    pub tenant: Option<String>,
    /// Its role.
    pub role: Role,
}

/// A key as listings show it (never the secret, never the hash).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct KeyInfo {
    /// Key row id.
    pub id: Uuid,
    /// Tenant (`None` for operator keys).
    pub tenant_id: Option<String>,
    /// Role name.
    pub role: String,
    /// Label.
    pub name: String,
    /// Public lookup prefix (identifies the key without revealing it).
    pub prefix: String,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Who created it.
    pub created_by: String,
    /// Expiry, if any.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Revocation time, if revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// A freshly created key; `secret` is shown once and never stored.
#[derive(Debug)]
pub struct NewKey {
    /// Key row id.
    pub id: Uuid,
    /// The full key text.
    pub secret: String,
}

const PREFIX_HEX_LEN: usize = 12;

fn lookup_prefix(kind: KeyKind, key: &str) -> Option<String> {
    let head = format!("tsk_{}_", kind.as_str());
    let rest = key.strip_prefix(&head)?;
    if rest.len() != 64 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(format!("{head}{}", &rest[..PREFIX_HEX_LEN]))
}

fn key_hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

impl Store {
    /// Creates a key of `kind` for `tenant` (an ingest key, or an admin API key).
    pub async fn create_key(
        &self,
        tenant: &str,
        kind: KeyKind,
        name: &str,
    ) -> Result<NewKey, StoreError> {
        let role = match kind {
            KeyKind::Ingest => Role::Ingest,
            KeyKind::Api => Role::Admin,
        };
        self.create_role_key(Some(tenant), role, name, None, "system")
            .await
    }

    /// Creates a key with `role` for `tenant` (`None` exactly for operator keys), expiring
    /// at `expires_at` if given; `by` is recorded as its creator.
    pub async fn create_role_key(
        &self,
        tenant: Option<&str>,
        role: Role,
        name: &str,
        expires_at: Option<OffsetDateTime>,
        by: &str,
    ) -> Result<NewKey, StoreError> {
        let mut tx = self.begin(crate::Scope::from(tenant)).await?;
        if (role == Role::Operator) != tenant.is_none() {
            return Err(StoreError::Invalid(
                "operator keys have no tenant; every other key has one".to_owned(),
            ));
        }
        let kind = role.kind();
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let secret = format!("tsk_{}_{}", kind.as_str(), hex::encode(bytes));
        let prefix = lookup_prefix(kind, &secret).ok_or(StoreError::Corrupt { what: "new key" })?;
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, kind, role, name, prefix, key_hash,
                expires_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(tenant)
        .bind(kind.as_str())
        .bind(role.as_str())
        .bind(name)
        .bind(prefix)
        .bind(key_hash(&secret))
        .bind(expires_at)
        .bind(by)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(NewKey { id, secret })
    }

    /// Resolves a presented API key (any API role), or `None` when it is malformed,
    /// unknown, revoked or expired.
    pub async fn resolve_api_key(&self, key: &str) -> Result<Option<KeyIdentity>, StoreError> {
        let mut tx = self.begin(crate::Scope::System).await?;
        let Some(prefix) = lookup_prefix(KeyKind::Api, key) else {
            return Ok(None);
        };
        let row: Option<(Uuid, Option<String>, String, Vec<u8>)> = sqlx::query_as(
            "SELECT id, tenant_id, role, key_hash FROM api_keys
             WHERE prefix = $1 AND kind = 'api' AND revoked_at IS NULL
               AND (expires_at IS NULL OR expires_at > now())",
        )
        .bind(prefix)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((id, tenant, role, stored)) = row else {
            return Ok(None);
        };
        if !bool::from(stored.ct_eq(&key_hash(key))) {
            return Ok(None);
        }
        let role = role.parse().map_err(|_| StoreError::Corrupt {
            what: "api_keys.role",
        })?;
        Ok(Some(KeyIdentity { id, tenant, role }))
    }

    /// The keys of `tenant` (or the operator keys when `None`), newest first.
    pub async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<KeyInfo>, StoreError> {
        let mut tx = self.begin(crate::Scope::from(tenant)).await?;
        Ok(sqlx::query_as(
            "SELECT id, tenant_id, role, name, prefix, created_at, created_by, expires_at, revoked_at
             FROM api_keys WHERE tenant_id IS NOT DISTINCT FROM $1 ORDER BY created_at DESC, id",
        )
        .bind(tenant)
        .fetch_all(&mut *tx)
        .await?)
    }

    /// Revokes key `id` of `tenant` (`None`: an operator key). `NotFound` when it does not
    /// exist there; revoking a revoked key changes nothing.
    pub async fn revoke_key(&self, tenant: Option<&str>, id: Uuid) -> Result<KeyInfo, StoreError> {
        let mut tx = self.begin(crate::Scope::from(tenant)).await?;
        let key: KeyInfo = sqlx::query_as(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
             WHERE id = $1 AND tenant_id IS NOT DISTINCT FROM $2
             RETURNING id, tenant_id, role, name, prefix, created_at, created_by, expires_at, revoked_at",
        )
        .bind(id)
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound { entity: "key" })?;
        tx.commit().await?;
        Ok(key)
    }

    /// Resolves a presented key to its tenant, or `None` when the key is malformed, unknown,
    /// revoked, or of another kind.
    pub async fn resolve_key(
        &self,
        kind: KeyKind,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.begin(crate::Scope::System).await?;
        let Some(prefix) = lookup_prefix(kind, key) else {
            return Ok(None);
        };
        let row: Option<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT tenant_id, key_hash FROM api_keys
             WHERE prefix = $1 AND kind = $2 AND revoked_at IS NULL AND tenant_id IS NOT NULL
               AND (expires_at IS NULL OR expires_at > now())",
        )
        .bind(prefix)
        .bind(kind.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        Ok(row.and_then(|(tenant, stored)| {
            bool::from(stored.ct_eq(&key_hash(key))).then_some(tenant)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_prefix_accepts_only_well_formed_keys_of_the_kind() {
        let key = format!("tsk_api_{}", "ab".repeat(32));
        assert_eq!(
            lookup_prefix(KeyKind::Api, &key).as_deref(),
            Some("tsk_api_abababababab")
        );
        assert_eq!(lookup_prefix(KeyKind::Ingest, &key), None);
        assert_eq!(lookup_prefix(KeyKind::Api, "tsk_api_short"), None);
        assert_eq!(
            lookup_prefix(KeyKind::Api, &format!("tsk_api_{}", "zz".repeat(32))),
            None
        );
    }
}
