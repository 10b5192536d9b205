//! Ingest key resolution with a small bounded cache, so a busy SIEM does not cost a
//! database round trip per request.

use std::time::Duration;

use sha2::{Digest, Sha256};
use tocsin_core::cache::TtlCache;
use tocsin_store::keys::KeyKind;
use tocsin_store::{Store, StoreError};

const MAX_ENTRIES: usize = 10_000;

/// Resolves ingest keys to tenants.
#[derive(Debug)]
pub(crate) struct KeyResolver {
    store: Store,
    // Keyed by SHA-256 of the key so the cache never holds key material; `None` caches an
    // unknown key.
    cache: TtlCache<[u8; 32], Option<String>>,
}

impl KeyResolver {
    pub(crate) fn new(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            cache: TtlCache::new(ttl, MAX_ENTRIES),
        }
    }

    /// The tenant of `key`, or `None` when the key is not a valid ingest key.
    pub(crate) async fn resolve(&self, key: &str) -> Result<Option<String>, StoreError> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        if let Some(tenant) = self.cache.get(&digest) {
            return Ok(tenant);
        }
        let tenant = self.store.resolve_key(KeyKind::Ingest, key).await?;
        self.cache.insert(digest, tenant.clone());
        Ok(tenant)
    }
}
