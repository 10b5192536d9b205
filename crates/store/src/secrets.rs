//! Per-tenant secrets, encrypted at rest with the deployment's master key
//! (XChaCha20-Poly1305; tenant and name are the associated data, so a ciphertext copied to
//! another tenant or name does not decrypt). Values are never logged.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::{Store, StoreError};

/// The key secrets are encrypted with: 32 bytes, configured as base64.
#[derive(Clone)]
pub struct MasterKey(Key);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

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
    /// Database failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for SecretError {
    fn from(e: sqlx::Error) -> Self {
        SecretError::Store(StoreError::from_sqlx(e))
    }
}

impl MasterKey {
    /// Parses a base64 key.
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| SecretError::InvalidMasterKey)?;
        if bytes.len() != 32 {
            return Err(SecretError::InvalidMasterKey);
        }
        Ok(Self(*Key::from_slice(&bytes)))
    }

    /// A new random key, as base64.
    pub fn generate_base64() -> String {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn aad(tenant: &str, name: &str) -> Vec<u8> {
        format!("tocsin-secret\0{tenant}\0{name}").into_bytes()
    }

    fn seal(
        &self,
        tenant: &str,
        name: &str,
        value: &str,
    ) -> Result<([u8; 24], Vec<u8>), SecretError> {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = Self::aad(tenant, name);
        let ciphertext = XChaCha20Poly1305::new(&self.0)
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::Undecryptable {
                name: name.to_owned(),
            })?;
        Ok((nonce, ciphertext))
    }

    fn open(
        &self,
        tenant: &str,
        name: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<String, SecretError> {
        let undecryptable = || SecretError::Undecryptable {
            name: name.to_owned(),
        };
        if nonce.len() != 24 {
            return Err(undecryptable());
        }
        let aad = Self::aad(tenant, name);
        let plain = XChaCha20Poly1305::new(&self.0)
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| undecryptable())?;
        String::from_utf8(plain).map_err(|_| undecryptable())
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
        let (nonce, ciphertext) = key.seal(tenant, name, value)?;
        sqlx::query(
            "INSERT INTO secrets (tenant_id, name, nonce, ciphertext) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, name) DO UPDATE
                SET nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext, updated_at = now()",
        )
        .bind(tenant)
        .bind(name)
        .bind(&nonce[..])
        .bind(ciphertext)
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
        let rows: Vec<(String, Vec<u8>, Vec<u8>)> =
            sqlx::query_as("SELECT name, nonce, ciphertext FROM secrets WHERE tenant_id = $1")
                .bind(tenant)
                .fetch_all(&mut *tx)
                .await?;
        rows.into_iter()
            .map(|(name, nonce, ciphertext)| {
                let value = key.open(tenant, &name, &nonce, &ciphertext)?;
                Ok((name, value))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_tenant_and_name() {
        let key = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        let (nonce, sealed) = key.seal("acme", "vt_key", "s3cret").unwrap();
        assert_eq!(
            key.open("acme", "vt_key", &nonce, &sealed).unwrap(),
            "s3cret"
        );
        assert!(key.open("other", "vt_key", &nonce, &sealed).is_err());
        assert!(key.open("acme", "other", &nonce, &sealed).is_err());
        let other = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        assert!(other.open("acme", "vt_key", &nonce, &sealed).is_err());
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
