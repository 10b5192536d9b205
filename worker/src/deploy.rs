//! Deploying a playbook directory: collect its modules, hash them, load them in a runner to
//! extract and validate the playbook metadata, store the bundle and make it active.
//!
//! Which files belong to a bundle (the same rule as the SDK's `tocsin._bundle`): every
//! `*.py` file under the directory, except in directories named `sdk`, `tests`,
//! `__pycache__`, `venv`, `.venv` or starting with `.`, and except `conftest.py`,
//! `setup.py`, `test_*.py` and `*_test.py`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tocsin_store::Store;
use tocsin_store::bundles::{PlaybookMeta, content_hash, is_safe_bundle_path};

use crate::bundles::write_bundle;
use crate::pool::{PoolError, RunnerPool};

/// A deploy failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// Reading the directory failed.
    #[error("failed to read {path}")]
    Read {
        /// Where.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The directory holds no playbook module, or a file that cannot be bundled.
    #[error("{0}")]
    Invalid(String),
    /// Loading the playbooks failed (syntax error, invalid `when`, duplicate name...).
    #[error("playbooks failed to load: {0}")]
    Load(String),
    /// No runner could load the bundle.
    #[error(transparent)]
    Runner(#[from] PoolError),
    /// Writing the bundle to a temporary directory failed.
    #[error(transparent)]
    Bundle(#[from] crate::bundles::BundleError),
    /// Storing the bundle failed.
    #[error(transparent)]
    Store(#[from] tocsin_store::StoreError),
}

/// What a deploy did.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// Content hash of the bundle now active.
    pub hash: String,
    /// Its playbooks.
    pub playbooks: Vec<PlaybookMeta>,
    /// Number of files in it.
    pub files: usize,
}

const SKIP_DIRS: [&str; 5] = ["sdk", "tests", "__pycache__", "venv", ".venv"];
const MAX_FILE_BYTES: u64 = 1024 * 1024;
const MAX_FILES: usize = 2_000;

fn is_bundled_file(name: &str) -> bool {
    name.ends_with(".py")
        && name != "conftest.py"
        && name != "setup.py"
        && !name.starts_with("test_")
        && !name.ends_with("_test.py")
}

/// Collects the bundle files of `dir` (see the module docs for the rule).
pub fn collect_files(dir: &Path) -> Result<BTreeMap<String, String>, DeployError> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        let read = |source| DeployError::Read {
            path: current.clone(),
            source,
        };
        for entry in std::fs::read_dir(&current).map_err(read)? {
            let entry = entry.map_err(read)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type().map_err(read)?;
            if kind.is_dir() {
                if !SKIP_DIRS.contains(&name.as_str()) && !name.starts_with('.') {
                    stack.push(entry.path());
                }
            } else if kind.is_file() && is_bundled_file(&name) {
                let path = entry.path();
                let rel = path
                    .strip_prefix(dir)
                    .map_err(|_| {
                        DeployError::Invalid(format!("{} escapes the bundle", path.display()))
                    })?
                    .to_string_lossy()
                    .replace(std::path::MAIN_SEPARATOR, "/");
                if !is_safe_bundle_path(&rel) {
                    return Err(DeployError::Invalid(format!(
                        "{rel}: unsupported file name"
                    )));
                }
                let size = entry.metadata().map_err(read)?.len();
                if size > MAX_FILE_BYTES {
                    return Err(DeployError::Invalid(format!(
                        "{rel}: larger than {MAX_FILE_BYTES} bytes"
                    )));
                }
                let content =
                    std::fs::read_to_string(&path).map_err(|source| DeployError::Read {
                        path: path.clone(),
                        source,
                    })?;
                files.insert(rel, content);
                if files.len() > MAX_FILES {
                    return Err(DeployError::Invalid(format!(
                        "more than {MAX_FILES} modules"
                    )));
                }
            }
        }
    }
    if files.is_empty() {
        return Err(DeployError::Invalid(format!(
            "{} holds no playbook module (*.py outside sdk/ and tests/)",
            dir.display()
        )));
    }
    Ok(files)
}

/// Deploys the playbooks in `dir` for `tenant` using a runner from `pool` to load them.
pub async fn deploy_dir(
    store: &Store,
    pool: &RunnerPool,
    tenant: &str,
    dir: &Path,
    deployed_by: &str,
) -> Result<Deployed, DeployError> {
    let files = collect_files(dir)?;
    let hash = content_hash(&files);
    // Load from a private copy of exactly the files being stored, as a worker will.
    let scratch = std::env::temp_dir().join(format!("tocsin-deploy-{}", uuid::Uuid::new_v4()));
    let bundle_dir = scratch.join(&hash);
    let written = {
        let files = files.clone();
        let bundle_dir = bundle_dir.clone();
        tokio::task::spawn_blocking(move || write_bundle(&bundle_dir, &files)).await
    };
    let inspected = match written {
        Ok(Ok(())) => {
            pool.inspect(&bundle_dir, &hash, Duration::from_secs(60))
                .await
        }
        Ok(Err(e)) => {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(e.into());
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(DeployError::Invalid(format!("bundle writer failed: {e}")));
        }
    };
    let _ = std::fs::remove_dir_all(&scratch);
    let inspected = inspected?;
    if let Some(error) = inspected.error {
        return Err(DeployError::Load(error));
    }
    let playbooks: Vec<PlaybookMeta> =
        serde_json::from_str(inspected.playbooks_json.as_deref().unwrap_or("[]"))
            .map_err(|e| DeployError::Load(format!("unexpected playbook metadata: {e}")))?;
    store.save_bundle(tenant, &hash, &files, &playbooks).await?;
    store.deploy_bundle(tenant, &hash, deployed_by).await?;
    tracing::info!(%tenant, %hash, playbooks = playbooks.len(), "bundle deployed");
    Ok(Deployed {
        hash,
        files: files.len(),
        playbooks,
    })
}
