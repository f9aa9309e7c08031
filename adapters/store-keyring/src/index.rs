//! The non-secret list of the buckets a home keeps in the keyring: `keyring-index.json`,
//! `{"anthropic": ["default", "work"], …}`, changed under a lock and replaced crash-safely.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use llxprt_application::ports::StoreError;
use llxprt_domain::{BucketId, BucketName, OAuthProvider};
use llxprt_fs::{write_atomically, FileLock};

type Document = BTreeMap<String, BTreeSet<String>>;

#[derive(Debug)]
pub(crate) struct Index {
    path: PathBuf,
}

impl Index {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Adds (`present`) or removes a bucket.
    pub(crate) async fn change(&self, bucket: &BucketId, present: bool) -> Result<(), StoreError> {
        let (path, bucket) = (self.path.clone(), bucket.clone());
        blocking(move || {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|e| io_error(dir, &e))?;
            }
            let _lock = FileLock::acquire(&path.with_extension("json.lock"))
                .map_err(|(p, e)| io_error(&p, &e))?;
            let mut document = read(&path)?;
            let names = document
                .entry(bucket.provider.as_str().to_owned())
                .or_default();
            let changed = if present {
                names.insert(bucket.bucket.as_str().to_owned())
            } else {
                names.remove(bucket.bucket.as_str())
            };
            if !changed {
                return Ok(());
            }
            document.retain(|_, names| !names.is_empty());
            let mut text =
                serde_json::to_string_pretty(&document).map_err(|e| io_error(&path, &e))?;
            text.push('\n');
            write_atomically(&path, ".keyring-index.", text.as_bytes())
                .map_err(|(p, e)| io_error(&p, &e))
        })
        .await
    }

    /// The buckets of a provider the index names.
    pub(crate) async fn buckets(
        &self,
        provider: OAuthProvider,
    ) -> Result<Vec<BucketName>, StoreError> {
        let path = self.path.clone();
        blocking(move || {
            let document = read(&path)?;
            Ok(document
                .get(provider.as_str())
                .into_iter()
                .flatten()
                .filter_map(|name| BucketName::parse(name).ok())
                .collect())
        })
        .await
    }
}

fn read(path: &Path) -> Result<Document, StoreError> {
    match fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| StoreError::Io {
            path: path.display().to_string(),
            message: format!("the keyring index is not valid ({e}); delete it and log in again"),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Document::new()),
        Err(e) => Err(io_error(path, &e)),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(StoreError::Io {
            path: "keyring-index.json".to_owned(),
            message: "the runtime shut down before the work could run".to_owned(),
        }),
    }
}

fn io_error(path: &Path, err: &dyn std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        message: err.to_string(),
    }
}
