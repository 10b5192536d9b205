//! Tenants.

use serde::Serialize;
use time::OffsetDateTime;

use crate::{Store, StoreError};

/// A tenant as listings show it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Tenant {
    /// Tenant id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl Store {
    /// Creates the tenant if it does not exist (idempotent); returns whether it was created.
    pub async fn ensure_tenant(&self, id: &str, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin(crate::Scope::System).await?;
        let created = sqlx::query(
            "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(created == 1)
    }

    /// Whether tenant `id` exists.
    pub async fn tenant_exists(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin(crate::Scope::System).await?;
        Ok(
            sqlx::query_scalar::<_, i32>("SELECT 1 FROM tenants WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some(),
        )
    }

    /// Every tenant, by id.
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let mut tx = self.begin(crate::Scope::System).await?;
        Ok(
            sqlx::query_as("SELECT id, name, created_at FROM tenants ORDER BY id")
                .fetch_all(&mut *tx)
                .await?,
        )
    }
}
