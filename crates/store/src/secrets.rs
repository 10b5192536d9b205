//! Per-tenant secrets, encrypted at rest by envelope encryption. Each tenant has a random
//! 256-bit data key, stored only wrapped by the deployment's master key (AES-256-GCM, the
//! tenant id as associated data); the master key is configured by file or environment and
//! never stored. Each value is sealed with AES-256-GCM under its tenant's data key, with a
//! fresh 96-bit nonce and the tenant id and secret name as associated data, so a ciphertext
//! copied to another tenant or name, or a wrapped key copied to another tenant, does not
//! decrypt. Values sealed before data keys existed (scheme 1: XChaCha20-Poly1305 directly
//! under the master key) still open, and are re-sealed when set again. Values are never
//! logged.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::{Store, StoreError};

/// Values sealed directly under the master key with XChaCha20-Poly1305 (before data keys).
const SCHEME_MASTER_XCHACHA: i16 = 1;
/// Values sealed with AES-256-GCM under the tenant's data key.
const SCHEME_DATA_KEY_AES_GCM: i16 = 2;

/// The key that wraps the tenants' data keys: 32 bytes, configured as base64.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// A tenant's data key, unwrapped (memory only).
pub(crate) struct DataKey([u8; 32]);

/// A master key or a secret could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The configured master key is not 32 bytes of base64.
    #[error("the master key must be 32 bytes, base64-encoded")]
    InvalidMasterKey,
    /// The secret name is not `[A-Za-z_][A-Za-z0-9_.-]{0,127}`.
    #[error("invalid secret name {0:?}")]
    InvalidName(String),
    /// A stored secret does not decrypt with this key (wrong key, or tampered).
    #[error("secret {name:?} does not decrypt with the configured master key")]
    Undecryptable {
        /// Secret name.
        name: String,
    },
    /// The tenant's data key does not unwrap with this master key (wrong key, or tampered).
    #[error("the tenant's data key does not unwrap with the configured master key")]
    KeyUnwrap,
    /// Database failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for SecretError {
    fn from(e: sqlx::Error) -> Self {
        SecretError::Store(StoreError::from_sqlx(e))
    }
}

pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// AES-256-GCM with a fresh random 96-bit nonce; returns (nonce, ciphertext with tag).
fn aes_seal(key: &[u8; 32], plain: &[u8], aad: &[u8]) -> Option<([u8; 12], Vec<u8>)> {
    let nonce = random::<12>();
    let sealed = Aes256Gcm::new(key.into())
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
        .ok()?;
    Some((nonce, sealed))
}

fn aes_open(key: &[u8; 32], nonce: &[u8], sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    if nonce.len() != 12 {
        return None;
    }
    Aes256Gcm::new(key.into())
        .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        .ok()
}

fn secret_aad(tenant: &str, name: &str) -> Vec<u8> {
    format!("tocsin-secret\0{tenant}\0{name}").into_bytes()
}

fn key_aad(tenant: &str) -> Vec<u8> {
    format!("tocsin-tenant-key\0{tenant}").into_bytes()
}

impl MasterKey {
    /// Parses a base64 key.
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| SecretError::InvalidMasterKey)?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| SecretError::InvalidMasterKey)?;
        Ok(Self(key))
    }

    /// A new random key, as base64.
    pub fn generate_base64() -> String {
        base64::engine::general_purpose::STANDARD.encode(random::<32>())
    }

    /// Wraps a new random data key for `tenant`: (nonce, wrapped key).
    fn new_data_key(&self, tenant: &str) -> Result<([u8; 12], Vec<u8>), SecretError> {
        aes_seal(&self.0, &random::<32>(), &key_aad(tenant)).ok_or(SecretError::KeyUnwrap)
    }

    fn unwrap_data_key(
        &self,
        tenant: &str,
        nonce: &[u8],
        wrapped: &[u8],
    ) -> Result<DataKey, SecretError> {
        let plain =
            aes_open(&self.0, nonce, wrapped, &key_aad(tenant)).ok_or(SecretError::KeyUnwrap)?;
        Ok(DataKey(
            plain.try_into().map_err(|_| SecretError::KeyUnwrap)?,
        ))
    }

    /// Opens a value of scheme 1 (sealed directly under the master key).
    fn open_legacy(
        &self,
        tenant: &str,
        name: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Option<Vec<u8>> {
        if nonce.len() != 24 {
            return None;
        }
        XChaCha20Poly1305::new((&self.0).into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &secret_aad(tenant, name),
                },
            )
            .ok()
    }
}

impl DataKey {
    /// Seals arbitrary bytes bound to `aad` (for other tenant-owned secrets).
    pub(crate) fn seal_bytes(&self, plain: &[u8], aad: &[u8]) -> Option<([u8; 12], Vec<u8>)> {
        aes_seal(&self.0, plain, aad)
    }

    /// Opens what [`DataKey::seal_bytes`] sealed with the same `aad`.
    pub(crate) fn open_bytes(&self, nonce: &[u8], sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        aes_open(&self.0, nonce, sealed, aad)
    }

    fn seal(
        &self,
        tenant: &str,
        name: &str,
        value: &str,
    ) -> Result<([u8; 12], Vec<u8>), SecretError> {
        aes_seal(&self.0, value.as_bytes(), &secret_aad(tenant, name)).ok_or_else(|| {
            SecretError::Undecryptable {
                name: name.to_owned(),
            }
        })
    }

    fn open(&self, tenant: &str, name: &str, nonce: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        aes_open(&self.0, nonce, sealed, &secret_aad(tenant, name))
    }
}

async fn read_data_key(
    tx: &mut sqlx::PgConnection,
    tenant: &str,
) -> Result<Option<(Vec<u8>, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as("SELECT nonce, wrapped FROM tenant_keys WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_optional(tx)
        .await
}

/// The tenant's data key, created (and wrapped under `master`) on first use. Concurrent
/// first uses agree: the first insert wins and everyone reads it back.
pub(crate) async fn data_key(
    tx: &mut sqlx::PgConnection,
    master: &MasterKey,
    tenant: &str,
    create: bool,
) -> Result<Option<DataKey>, SecretError> {
    if let Some((nonce, wrapped)) = read_data_key(tx, tenant).await? {
        return Ok(Some(master.unwrap_data_key(tenant, &nonce, &wrapped)?));
    }
    if !create {
        return Ok(None);
    }
    let (nonce, wrapped) = master.new_data_key(tenant)?;
    sqlx::query(
        "INSERT INTO tenant_keys (tenant_id, nonce, wrapped) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id) DO NOTHING",
    )
    .bind(tenant)
    .bind(&nonce[..])
    .bind(wrapped)
    .execute(&mut *tx)
    .await?;
    match read_data_key(tx, tenant).await? {
        Some((nonce, wrapped)) => Ok(Some(master.unwrap_data_key(tenant, &nonce, &wrapped)?)),
        None => Err(SecretError::KeyUnwrap),
    }
}

/// A secret as listings show it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct SecretInfo {
    /// Name (`run.secrets["name"]`).
    pub name: String,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    /// Last replaced.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: time::OffsetDateTime,
}

/// Whether `name` is a valid secret name.
pub fn is_valid_secret_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Store {
    /// Creates or replaces a secret.
    pub async fn set_secret(
        &self,
        key: &MasterKey,
        tenant: &str,
        name: &str,
        value: &str,
    ) -> Result<(), SecretError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        if !is_valid_secret_name(name) {
            return Err(SecretError::InvalidName(name.to_owned()));
        }
        let data_key = data_key(&mut tx, key, tenant, true)
            .await?
            .ok_or(SecretError::KeyUnwrap)?;
        let (nonce, ciphertext) = data_key.seal(tenant, name, value)?;
        sqlx::query(
            "INSERT INTO secrets (tenant_id, name, nonce, ciphertext, scheme)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, name) DO UPDATE
                SET nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext,
                    scheme = EXCLUDED.scheme, updated_at = now()",
        )
        .bind(tenant)
        .bind(name)
        .bind(&nonce[..])
        .bind(ciphertext)
        .bind(SCHEME_DATA_KEY_AES_GCM)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a secret; returns whether it existed.
    pub async fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool, SecretError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        let n = sqlx::query("DELETE FROM secrets WHERE tenant_id = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Names of the tenant's secrets (never their values).
    pub async fn secret_names(&self, tenant: &str) -> Result<Vec<String>, SecretError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        Ok(
            sqlx::query_scalar("SELECT name FROM secrets WHERE tenant_id = $1 ORDER BY name")
                .bind(tenant)
                .fetch_all(&mut *tx)
                .await?,
        )
    }

    /// The tenant's secrets as listings show them: names and timestamps, never values.
    pub async fn secret_list(&self, tenant: &str) -> Result<Vec<SecretInfo>, SecretError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        Ok(sqlx::query_as(
            "SELECT name, created_at, updated_at FROM secrets WHERE tenant_id = $1 ORDER BY name",
        )
        .bind(tenant)
        .fetch_all(&mut *tx)
        .await?)
    }

    /// Every secret of the tenant, decrypted (handed to the tenant's runs).
    pub async fn tenant_secrets(
        &self,
        key: &MasterKey,
        tenant: &str,
    ) -> Result<BTreeMap<String, String>, SecretError> {
        let mut tx = self.begin(crate::Scope::Tenant(tenant)).await?;
        open_secrets(&mut tx, key, tenant).await
    }
}

/// Every secret of `tenant`, decrypted.
pub(crate) async fn open_secrets(
    tx: &mut sqlx::PgConnection,
    key: &MasterKey,
    tenant: &str,
) -> Result<BTreeMap<String, String>, SecretError> {
    let rows: Vec<(String, i16, Vec<u8>, Vec<u8>)> =
        sqlx::query_as("SELECT name, scheme, nonce, ciphertext FROM secrets WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_all(&mut *tx)
            .await?;
    let data_key = if rows.iter().any(|r| r.1 == SCHEME_DATA_KEY_AES_GCM) {
        data_key(&mut *tx, key, tenant, false).await?
    } else {
        None
    };
    rows.into_iter()
        .map(|(name, scheme, nonce, ciphertext)| {
            let plain = match (scheme, &data_key) {
                (SCHEME_DATA_KEY_AES_GCM, Some(dk)) => dk.open(tenant, &name, &nonce, &ciphertext),
                (SCHEME_MASTER_XCHACHA, _) => key.open_legacy(tenant, &name, &nonce, &ciphertext),
                _ => None,
            };
            let value = plain
                .and_then(|p| String::from_utf8(p).ok())
                .ok_or_else(|| SecretError::Undecryptable { name: name.clone() })?;
            Ok((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_tenant_and_name() {
        let key = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        let (key_nonce, wrapped) = key.new_data_key("acme").unwrap();
        let dk = key.unwrap_data_key("acme", &key_nonce, &wrapped).unwrap();
        // A wrapped data key moved to another tenant, or under another master key, is refused.
        assert!(key.unwrap_data_key("other", &key_nonce, &wrapped).is_err());
        let other = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        assert!(other.unwrap_data_key("acme", &key_nonce, &wrapped).is_err());

        let (nonce, sealed) = dk.seal("acme", "vt_key", "s3cret").unwrap();
        assert_eq!(nonce.len(), 12);
        assert_eq!(
            dk.open("acme", "vt_key", &nonce, &sealed).unwrap(),
            b"s3cret"
        );
        assert!(dk.open("other", "vt_key", &nonce, &sealed).is_none());
        assert!(dk.open("acme", "other", &nonce, &sealed).is_none());
        let (n2, w2) = key.new_data_key("acme").unwrap();
        let another_dk = key.unwrap_data_key("acme", &n2, &w2).unwrap();
        assert!(another_dk.open("acme", "vt_key", &nonce, &sealed).is_none());
        let mut tampered = sealed.clone();
        tampered[0] ^= 1;
        assert!(dk.open("acme", "vt_key", &nonce, &tampered).is_none());
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert_eq!(format!("{key:?}"), "MasterKey(<redacted>)");
        assert!(is_valid_secret_name("virustotal_api_key"));
        assert!(
            !is_valid_secret_name("1x")
                && !is_valid_secret_name("a b")
                && !is_valid_secret_name("")
        );
    }
}
