//! Custom field mappings per tenant and source (validated by ingest's mapping module before
//! they are saved here). Every save is a new version; the newest applies.

use sqlx::types::Json;

use crate::{Scope, Store, StoreError};

/// One saved version of a mapping.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct SourceMapping {
    /// The source it maps (`POST /v1/webhooks/{source}`).
    pub source: String,
    /// 1, 2, ...
    pub version: i32,
    /// The mapping document.
    pub mapping: Json<serde_json::Value>,
    /// Who saved it.
    pub created_by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

impl Store {
    /// Saves a new version of the tenant's mapping for `source`; returns it.
    pub async fn put_mapping(
        &self,
        tenant: &str,
        source: &str,
        mapping: &serde_json::Value,
        by: &str,
    ) -> Result<SourceMapping, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        // Serialize saves of one (tenant, source): the next version is computed under the lock.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2))")
            .bind(tenant)
            .bind(source)
            .execute(&mut *tx)
            .await?;
        let saved: SourceMapping = sqlx::query_as(
            "INSERT INTO source_mappings (tenant_id, source, version, mapping, created_by)
             SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4
             FROM source_mappings WHERE tenant_id = $1 AND source = $2
             RETURNING source, version, mapping, created_by, created_at",
        )
        .bind(tenant)
        .bind(source)
        .bind(Json(mapping))
        .bind(by)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(saved)
    }

    /// The newest version of the tenant's mapping for `source`.
    pub async fn mapping(
        &self,
        tenant: &str,
        source: &str,
    ) -> Result<Option<SourceMapping>, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        Ok(sqlx::query_as(
            "SELECT source, version, mapping, created_by, created_at FROM source_mappings
             WHERE tenant_id = $1 AND source = $2 ORDER BY version DESC LIMIT 1",
        )
        .bind(tenant)
        .bind(source)
        .fetch_optional(&mut *tx)
        .await?)
    }

    /// Every version of the tenant's mapping for `source`, newest first.
    pub async fn mapping_versions(
        &self,
        tenant: &str,
        source: &str,
    ) -> Result<Vec<SourceMapping>, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        Ok(sqlx::query_as(
            "SELECT source, version, mapping, created_by, created_at FROM source_mappings
             WHERE tenant_id = $1 AND source = $2 ORDER BY version DESC LIMIT 100",
        )
        .bind(tenant)
        .bind(source)
        .fetch_all(&mut *tx)
        .await?)
    }

    /// The newest version of each of the tenant's mappings.
    pub async fn list_mappings(&self, tenant: &str) -> Result<Vec<SourceMapping>, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        Ok(sqlx::query_as(
            "SELECT DISTINCT ON (source) source, version, mapping, created_by, created_at
             FROM source_mappings WHERE tenant_id = $1 ORDER BY source, version DESC",
        )
        .bind(tenant)
        .fetch_all(&mut *tx)
        .await?)
    }
}
