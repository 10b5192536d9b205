//! Per-tenant cache of deployed playbooks with their compiled `when` conditions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tocsin_store::bundles::PlaybookMeta;
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
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Arc<Deployed>)>>,
}

impl PlaybookCache {
    pub(crate) fn new(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) async fn get(&self, tenant: &str) -> Result<Arc<Deployed>, StoreError> {
        if let Ok(entries) = self.entries.lock()
            && let Some((at, deployed)) = entries.get(tenant)
            && at.elapsed() < self.ttl
        {
            return Ok(deployed.clone());
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
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_TENANTS {
                entries.clear();
            }
            entries.insert(tenant.to_owned(), (Instant::now(), deployed.clone()));
        }
        Ok(deployed)
    }
}
