//! Signed webhooks (the Standard Webhooks scheme): per-tenant signing secrets, sealed under
//! the tenant's data key like playbook secrets, several at once for rotation; whether the
//! tenant requires signatures; and the message ids accepted recently, so that a replayed
//! message is refused. Verifying a signature is ingest's job; this module stores.

use base64::Engine;
use uuid::Uuid;

use crate::secrets::{MasterKey, SecretError, data_key, random};
use crate::{Scope, Store, StoreError};

/// Prefix of a signing secret as Standard Webhooks writes it (`whsec_<base64>`).
pub const SECRET_PREFIX: &str = "whsec_";

/// Most signing secrets a tenant may hold (rotation needs two; a few more for slack).
pub const MAX_SECRETS: i64 = 5;

/// How long accepted message ids are remembered; longer than the timestamp tolerance, so a
/// replay is either stale or remembered.
const RECEIPT_MEMORY_SECS: f64 = 900.0;

fn aad(tenant: &str, id: Uuid) -> Vec<u8> {
    format!("tocsin-webhook-secret\0{tenant}\0{id}").into_bytes()
}

/// A signing secret as listings show it (never its value).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct WebhookSecretInfo {
    /// Id (to delete it).
    pub id: Uuid,
    /// Who created it.
    pub created_by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

/// What ingest needs to check a tenant's webhooks.
#[derive(Debug, Clone, Default)]
pub struct WebhookSigning {
    /// Whether unsigned requests are refused.
    pub require_signatures: bool,
    /// The raw signing keys (decoded from `whsec_...`), newest first.
    pub keys: Vec<Vec<u8>>,
}

async fn required(tx: &mut sqlx::PgConnection, tenant: &str) -> Result<bool, StoreError> {
    let required: Option<bool> =
        sqlx::query_scalar("SELECT require_signatures FROM webhook_settings WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_optional(tx)
            .await?;
    Ok(required.unwrap_or(false))
}

impl Store {
    /// Creates a signing secret for `tenant`; returns its id and value (`whsec_...`), shown
    /// once. At most [`MAX_SECRETS`] per tenant.
    pub async fn create_webhook_secret(
        &self,
        master: &MasterKey,
        tenant: &str,
        by: &str,
    ) -> Result<(WebhookSecretInfo, String), SecretError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM webhook_secrets WHERE tenant_id = $1")
                .bind(tenant)
                .fetch_one(&mut *tx)
                .await?;
        if count >= MAX_SECRETS {
            return Err(SecretError::Store(StoreError::Invalid(format!(
                "a tenant holds at most {MAX_SECRETS} webhook secrets; delete an old one first"
            ))));
        }
        let key = data_key(&mut tx, master, tenant, true)
            .await?
            .ok_or(SecretError::KeyUnwrap)?;
        let id = Uuid::now_v7();
        let raw = random::<32>();
        let (nonce, sealed) = key
            .seal_bytes(&raw, &aad(tenant, id))
            .ok_or(SecretError::KeyUnwrap)?;
        let info: WebhookSecretInfo = sqlx::query_as(
            "INSERT INTO webhook_secrets (id, tenant_id, nonce, sealed, created_by)
             VALUES ($1, $2, $3, $4, $5) RETURNING id, created_by, created_at",
        )
        .bind(id)
        .bind(tenant)
        .bind(&nonce[..])
        .bind(sealed)
        .bind(by)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let value = format!(
            "{SECRET_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        Ok((info, value))
    }

    /// The tenant's signing secrets, newest first (never their values).
    pub async fn list_webhook_secrets(
        &self,
        tenant: &str,
    ) -> Result<Vec<WebhookSecretInfo>, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        Ok(sqlx::query_as(
            "SELECT id, created_by, created_at FROM webhook_secrets
             WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC",
        )
        .bind(tenant)
        .fetch_all(&mut *tx)
        .await?)
    }

    /// Deletes a signing secret; returns whether it existed.
    pub async fn delete_webhook_secret(&self, tenant: &str, id: Uuid) -> Result<bool, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let n = sqlx::query("DELETE FROM webhook_secrets WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Sets whether the tenant's webhooks must be signed; returns the previous setting.
    pub async fn set_webhook_signatures_required(
        &self,
        tenant: &str,
        required: bool,
        by: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let before: Option<bool> = sqlx::query_scalar(
            "SELECT require_signatures FROM webhook_settings WHERE tenant_id = $1 FOR UPDATE",
        )
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO webhook_settings (tenant_id, require_signatures, updated_by)
             VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id) DO UPDATE
                SET require_signatures = $2, updated_by = $3, updated_at = now()",
        )
        .bind(tenant)
        .bind(required)
        .bind(by)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(before.unwrap_or(false))
    }

    /// Whether the tenant requires signed webhooks.
    pub async fn webhook_signatures_required(&self, tenant: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        required(&mut tx, tenant).await
    }

    /// The tenant's signing setting and keys, decrypted (for ingest). Without a master key
    /// the keys cannot be read: `master` is `None` and `keys` comes back empty.
    pub async fn webhook_signing(
        &self,
        master: Option<&MasterKey>,
        tenant: &str,
    ) -> Result<WebhookSigning, SecretError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let require_signatures = required(&mut tx, tenant).await?;
        let Some(master) = master else {
            return Ok(WebhookSigning {
                require_signatures,
                keys: Vec::new(),
            });
        };
        let rows: Vec<(Uuid, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT id, nonce, sealed FROM webhook_secrets
             WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC",
        )
        .bind(tenant)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(WebhookSigning {
                require_signatures,
                keys: Vec::new(),
            });
        }
        let key = data_key(&mut tx, master, tenant, false)
            .await?
            .ok_or(SecretError::KeyUnwrap)?;
        let keys = rows
            .into_iter()
            .map(|(id, nonce, sealed)| {
                key.open_bytes(&nonce, &sealed, &aad(tenant, id))
                    .ok_or_else(|| SecretError::Undecryptable {
                        name: format!("webhook secret {id}"),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(WebhookSigning {
            require_signatures,
            keys,
        })
    }

    /// Records an accepted message id; `false` when it was accepted before (a replay).
    /// Forgets ids older than the replay window as it goes.
    pub async fn record_webhook_receipt(
        &self,
        tenant: &str,
        message_id: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        sqlx::query(
            "DELETE FROM webhook_receipts
             WHERE tenant_id = $1 AND received_at < now() - make_interval(secs => $2)",
        )
        .bind(tenant)
        .bind(RECEIPT_MEMORY_SECS)
        .execute(&mut *tx)
        .await?;
        let n = sqlx::query(
            "INSERT INTO webhook_receipts (tenant_id, message_id) VALUES ($1, $2)
             ON CONFLICT (tenant_id, message_id) DO NOTHING",
        )
        .bind(tenant)
        .bind(message_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Forgets a message id (its alerts could not be accepted, so a retry must pass).
    pub async fn forget_webhook_receipt(
        &self,
        tenant: &str,
        message_id: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        sqlx::query("DELETE FROM webhook_receipts WHERE tenant_id = $1 AND message_id = $2")
            .bind(tenant)
            .bind(message_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
