//! API and ingest keys: random, shown once, stored as SHA-256, compared in constant time.
//!
//! Format: `tsk_<kind>_<64 hex chars>` where kind is `ingest` or `api`. The first 12 hex
//! characters (with the kind prefix) are stored in clear as a lookup prefix.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
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
    /// Creates a key of `kind` for `tenant`.
    pub async fn create_key(
        &self,
        tenant: &str,
        kind: KeyKind,
        name: &str,
    ) -> Result<NewKey, StoreError> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let secret = format!("tsk_{}_{}", kind.as_str(), hex::encode(bytes));
        let prefix = lookup_prefix(kind, &secret).ok_or(StoreError::Corrupt { what: "new key" })?;
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, kind, name, prefix, key_hash)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(tenant)
        .bind(kind.as_str())
        .bind(name)
        .bind(prefix)
        .bind(key_hash(&secret))
        .execute(self.pool())
        .await?;
        Ok(NewKey { id, secret })
    }

    /// Resolves a presented key to its tenant, or `None` when the key is malformed, unknown,
    /// revoked, or of another kind.
    pub async fn resolve_key(
        &self,
        kind: KeyKind,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let Some(prefix) = lookup_prefix(kind, key) else {
            return Ok(None);
        };
        let row: Option<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT tenant_id, key_hash FROM api_keys
             WHERE prefix = $1 AND kind = $2 AND revoked_at IS NULL",
        )
        .bind(prefix)
        .bind(kind.as_str())
        .fetch_optional(self.pool())
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
