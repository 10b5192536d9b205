//! Ingest key resolution with a small bounded cache, so a busy SIEM does not cost a
//! database round trip per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tocsin_store::keys::KeyKind;
use tocsin_store::{Store, StoreError};

const MAX_ENTRIES: usize = 10_000;

/// A resolution (the tenant, or `None` for an unknown key) and when it was made.
type CachedKey = (Option<String>, Instant);

/// Resolves ingest keys to tenants.
#[derive(Debug)]
pub(crate) struct KeyResolver {
    store: Store,
    ttl: Duration,
    // Keyed by SHA-256 of the key so the cache never holds key material.
    cache: Mutex<HashMap<[u8; 32], CachedKey>>,
}

impl KeyResolver {
    pub(crate) fn new(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant of `key`, or `None` when the key is not a valid ingest key.
    pub(crate) async fn resolve(&self, key: &str) -> Result<Option<String>, StoreError> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        if let Ok(cache) = self.cache.lock()
            && let Some((tenant, at)) = cache.get(&digest)
            && at.elapsed() < self.ttl
        {
            return Ok(tenant.clone());
        }
        let tenant = self.store.resolve_key(KeyKind::Ingest, key).await?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_ENTRIES {
                let ttl = self.ttl;
                cache.retain(|_, (_, at)| at.elapsed() < ttl);
                if cache.len() >= MAX_ENTRIES {
                    cache.clear();
                }
            }
            cache.insert(digest, (tenant.clone(), Instant::now()));
        }
        Ok(tenant)
    }
}
