//! Tenants.

use crate::{Store, StoreError};

impl Store {
    /// Creates the tenant if it does not exist (idempotent); returns whether it was created.
    pub async fn ensure_tenant(&self, id: &str, name: &str) -> Result<bool, StoreError> {
        let created = sqlx::query(
            "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(name)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(created == 1)
    }
}
