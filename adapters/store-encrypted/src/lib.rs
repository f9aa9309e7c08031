//! The encrypted token store: one sealed file per provider and bucket,
//! `oauth/{provider}[-{bucket}].json.enc`, beside where the plain store keeps its files.
//!
//! Each file is the plain store's JSON document sealed with `llxprt-seal` for its provider and
//! bucket, so a file copied over another bucket's is refused, and a wrong key, a changed byte
//! and a cut-short file are each told apart and name the file. Files are replaced crash-safely
//! (`llxprt-fs`), and bucket locks are the plain store's `flock`s in the same directory, so a
//! migration between the two never lets two refreshes of one bucket run at once.
//!
//! The store passes the contract suite of `llxprt_application::testkit::token_store`.

use std::fs::{self, DirBuilder, File, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use llxprt_application::ports::{BucketLock, StoreError, TokenStore};
use llxprt_domain::{BucketId, BucketName, OAuthProvider, Token};
use llxprt_seal::{OpenError, StorageKey};
use llxprt_store_file::json::{token_from_json, token_to_json};
use llxprt_store_file::{blocking, io_error, FileTokenStore, MAX_TOKEN_FILE_BYTES};

/// The ending of every sealed token file.
pub const SEALED_SUFFIX: &str = ".json.enc";

/// Tokens sealed with one storage key in one directory, normally `$LLXPRT_HOME/oauth`.
#[derive(Clone)]
pub struct EncryptedTokenStore {
    dir: PathBuf,
    key: Arc<StorageKey>,
    /// Only its bucket locks are used: the same lock files as the plain store's.
    locks: FileTokenStore,
}

impl std::fmt::Debug for EncryptedTokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedTokenStore")
            .field("dir", &self.dir)
            .field("key", &self.key)
            .finish()
    }
}

impl EncryptedTokenStore {
    /// A store in `oauth_dir` sealing with `key`; the directory is made on the first save.
    pub fn new(oauth_dir: PathBuf, key: StorageKey) -> Self {
        Self {
            locks: FileTokenStore::new(oauth_dir.clone()),
            dir: oauth_dir,
            key: Arc::new(key),
        }
    }

    /// The directory holding the sealed files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding a bucket's sealed token.
    pub fn token_path(&self, bucket: &BucketId) -> PathBuf {
        let name = if bucket.bucket.is_default() {
            format!("{}{SEALED_SUFFIX}", bucket.provider)
        } else {
            format!("{}-{}{SEALED_SUFFIX}", bucket.provider, bucket.bucket)
        };
        self.dir.join(name)
    }
}

#[async_trait]
impl TokenStore for EncryptedTokenStore {
    async fn load(&self, bucket: &BucketId) -> Result<Option<Token>, StoreError> {
        let (path, key, bucket) = (self.token_path(bucket), self.key.clone(), bucket.clone());
        blocking(&path.clone(), move || read_sealed(&path, &key, &bucket)).await
    }

    async fn save(&self, bucket: &BucketId, token: &Token) -> Result<(), StoreError> {
        let path = self.token_path(bucket);
        let sealed = self
            .key
            .seal(bucket, token_to_json(token).as_bytes())
            .map_err(|e| StoreError::Io {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        let dir = self.dir.clone();
        let prefix = format!(".{}-{}.", bucket.provider, bucket.bucket);
        blocking(&path.clone(), move || {
            make_private_dir(&dir)?;
            llxprt_fs::write_atomically(&path, &prefix, &sealed).map_err(|(p, e)| io_error(&p, e))
        })
        .await
    }

    async fn delete(&self, bucket: &BucketId) -> Result<bool, StoreError> {
        let (dir, path) = (self.dir.clone(), self.token_path(bucket));
        blocking(&path.clone(), move || match fs::remove_file(&path) {
            Ok(()) => File::open(&dir)
                .and_then(|d| d.sync_all())
                .map(|()| true)
                .map_err(|e| io_error(&dir, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(&path, e)),
        })
        .await
    }

    async fn list(&self, provider: OAuthProvider) -> Result<Vec<BucketName>, StoreError> {
        let dir = self.dir.clone();
        blocking(&dir.clone(), move || list_sealed(&dir, provider)).await
    }

    async fn lock(
        &self,
        bucket: &BucketId,
        timeout: Duration,
    ) -> Result<Box<dyn BucketLock>, StoreError> {
        self.locks.lock(bucket, timeout).await
    }
}

fn read_sealed(
    path: &Path,
    key: &StorageKey,
    bucket: &BucketId,
) -> Result<Option<Token>, StoreError> {
    let shown = path.display().to_string();
    let corrupt = |reason: String| StoreError::Corrupt {
        path: shown.clone(),
        reason,
        provider: bucket.provider,
        bucket: bucket.bucket.clone(),
    };
    // Checked before opening because opening a FIFO would block.
    match fs::metadata(path) {
        Ok(meta) if !meta.is_file() => return Err(corrupt("it is not a regular file".into())),
        Ok(meta) if meta.len() > MAX_TOKEN_FILE_BYTES => {
            return Err(corrupt(format!(
                "it is {} bytes long, too long for a token",
                meta.len()
            )))
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    }
    let mut blob = Vec::new();
    match File::open(path) {
        Ok(file) => file
            .take(MAX_TOKEN_FILE_BYTES + 1)
            .read_to_end(&mut blob)
            .map_err(|e| io_error(path, e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    };
    let document = key.open(bucket, &blob).map_err(|e| match e {
        OpenError::WrongKey { .. } => StoreError::WrongKey {
            path: shown.clone(),
            provider: bucket.provider,
            bucket: bucket.bucket.clone(),
        },
        other => corrupt(other.to_string()),
    })?;
    let text = std::str::from_utf8(&document)
        .map_err(|_| corrupt("its sealed document is not text".into()))?;
    token_from_json(text)
        .map(Some)
        .map_err(|e| corrupt(e.to_string()))
}

fn list_sealed(dir: &Path, provider: OAuthProvider) -> Result<Vec<BucketName>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir, e)),
    };
    let named_prefix = format!("{provider}-");
    let mut buckets = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SEALED_SUFFIX)) else {
            continue;
        };
        let bucket = if stem == provider.as_str() {
            BucketName::default_bucket()
        } else {
            match stem
                .strip_prefix(&named_prefix)
                .and_then(|b| BucketName::parse(b).ok())
            {
                Some(bucket) if !bucket.is_default() => bucket,
                _ => continue,
            }
        };
        if entry.path().metadata().is_ok_and(|m| m.is_file()) {
            buckets.push(bucket);
        }
    }
    buckets.sort();
    Ok(buckets)
}

fn make_private_dir(dir: &Path) -> Result<(), StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_error(dir, e))?;
    let mode = fs::metadata(dir)
        .map_err(|e| io_error(dir, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, Permissions::from_mode(0o700)).map_err(|e| io_error(dir, e))?;
    }
    Ok(())
}
