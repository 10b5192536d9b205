//! Local copies of playbook bundles, fetched from Postgres by content hash and unpacked
//! under the worker's bundle directory (`<dir>/<tenant>/<hash>/`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tocsin_store::Store;
use tocsin_store::bundles::{content_hash, is_safe_bundle_path};

/// A bundle could not be made available locally.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Fetching it failed.
    #[error(transparent)]
    Store(#[from] tocsin_store::StoreError),
    /// Its stored content does not match its hash, or holds an unsafe path.
    #[error("bundle {hash} is corrupt: {reason}")]
    Corrupt {
        /// Bundle hash.
        hash: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing it failed.
    #[error("failed to write bundle to {path}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

const COMPLETE_MARKER: &str = ".tocsin-complete";

/// Writes `files` into `dir` (which must not exist yet) atomically: into a temporary
/// sibling first, then renamed. A concurrent writer of the same bundle is harmless.
pub fn write_bundle(dir: &Path, files: &BTreeMap<String, String>) -> Result<(), BundleError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| BundleError::Io { path, source }
    };
    if dir.join(COMPLETE_MARKER).exists() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = parent.join(format!(
        ".tmp-{}-{}",
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        uuid::Uuid::new_v4()
    ));
    for (path, content) in files {
        let target = tmp.join(path);
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p).map_err(io(p))?;
        }
        std::fs::write(&target, content).map_err(io(&target))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    std::fs::write(tmp.join(COMPLETE_MARKER), "").map_err(io(&tmp))?;
    if let Err(source) = std::fs::rename(&tmp, dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        // Lost a race with another writer of the same content: fine.
        if !dir.join(COMPLETE_MARKER).exists() {
            return Err(BundleError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    }
    Ok(())
}

/// Makes the bundle `hash` of `tenant` available locally; returns its directory.
pub async fn ensure_bundle(
    store: &Store,
    root: &Path,
    tenant: &str,
    hash: &str,
) -> Result<PathBuf, BundleError> {
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BundleError::Corrupt {
            hash: hash.to_owned(),
            reason: "not a content hash".to_owned(),
        });
    }
    let dir = root.join(tenant).join(hash);
    if dir.join(COMPLETE_MARKER).exists() {
        return Ok(dir);
    }
    let files = store.bundle_files(tenant, hash).await?;
    if let Some(bad) = files.keys().find(|p| !is_safe_bundle_path(p)) {
        return Err(BundleError::Corrupt {
            hash: hash.to_owned(),
            reason: format!("unsafe path {bad:?}"),
        });
    }
    if content_hash(&files) != hash {
        return Err(BundleError::Corrupt {
            hash: hash.to_owned(),
            reason: "content does not match the hash".to_owned(),
        });
    }
    let target = dir.clone();
    tokio::task::spawn_blocking(move || write_bundle(&target, &files))
        .await
        .map_err(|e| BundleError::Io {
            path: dir.clone(),
            source: std::io::Error::other(e),
        })??;
    Ok(dir)
}
