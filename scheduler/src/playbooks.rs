//! Per-tenant cache of deployed playbooks with their compiled `when` conditions.

use std::sync::Arc;
use std::time::Duration;

use tocsin_core::Shutdown;
use tocsin_core::cache::TtlCache;
use tocsin_store::bundles::{PLAYBOOKS_CHANNEL, PlaybookMeta};
use tocsin_store::{Store, StoreError};

use crate::when::When;

/// A playbook ready for matching.
#[derive(Debug)]
pub(crate) struct Candidate {
    pub(crate) meta: PlaybookMeta,
    pub(crate) when: When,
}

/// The tenant's active bundle, compiled.
#[derive(Debug, Default)]
pub(crate) struct Deployed {
    pub(crate) bundle_hash: String,
    pub(crate) playbooks: Vec<Candidate>,
}

const MAX_TENANTS: usize = 10_000;

#[derive(Debug)]
pub(crate) struct PlaybookCache {
    store: Store,
    entries: TtlCache<String, Arc<Deployed>>,
}

impl PlaybookCache {
    pub(crate) fn new(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            entries: TtlCache::new(ttl, MAX_TENANTS),
        }
    }

    /// Drops the cached copy of `tenant`'s playbooks (they changed).
    pub(crate) fn invalidate(&self, tenant: &str) {
        self.entries.remove(tenant);
    }

    /// Drops every cached copy (notifications may have been missed).
    pub(crate) fn clear(&self) {
        self.entries.clear();
    }

    pub(crate) async fn get(&self, tenant: &str) -> Result<Arc<Deployed>, StoreError> {
        if let Some(deployed) = self.entries.get(tenant) {
            return Ok(deployed);
        }
        let deployed = Arc::new(match self.store.active_bundle(tenant).await? {
            None => Deployed::default(),
            Some(bundle) => Deployed {
                playbooks: bundle
                    .playbooks
                    .into_iter()
                    .filter_map(|meta| match When::compile(meta.when.as_ref()) {
                        Ok(when) => Some(Candidate { meta, when }),
                        Err(error) => {
                            // Deploy validates conditions, so this means a bundle saved by an
                            // incompatible version; skip that playbook rather than all.
                            tracing::error!(%tenant, playbook = %meta.name, %error, "playbook skipped: invalid when");
                            None
                        }
                    })
                    .collect(),
                bundle_hash: bundle.hash,
            },
        });
        self.entries.insert(tenant.to_owned(), deployed.clone());
        Ok(deployed)
    }
}

/// Keeps the cache current on every scheduler: a deploy or an enable/disable NOTIFYs
/// [`PLAYBOOKS_CHANNEL`] with the tenant id, and the tenant's entry is dropped, so the change
/// applies to the next alert. When the listener fails (Postgres restarted), notifications may
/// have been missed: the whole cache is dropped and the listener reconnects. The TTL remains
/// the bound when notifications are unavailable altogether.
pub(crate) async fn follow_changes(cache: Arc<PlaybookCache>, shutdown: Shutdown) {
    let mut listener = None;
    loop {
        if listener.is_none() {
            match cache.store.listener(PLAYBOOKS_CHANNEL).await {
                Ok(l) => {
                    cache.clear();
                    listener = Some(l);
                }
                Err(error) => {
                    tracing::warn!(%error, "playbook change notifications unavailable; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(2)) => continue,
                    }
                }
            }
        }
        let Some(l) = listener.as_mut() else { continue };
        tokio::select! {
            () = shutdown.cancelled() => return,
            received = l.recv() => match received {
                Ok(notification) => {
                    tracing::debug!(tenant = notification.payload(), "playbooks changed");
                    cache.invalidate(notification.payload());
                }
                Err(error) => {
                    tracing::warn!(%error, "playbook change notifications interrupted");
                    cache.clear();
                    listener = None;
                }
            },
        }
    }
}
