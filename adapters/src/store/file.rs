//! The file store: one JSON file per provider and bucket, readable by the user alone, replaced
//! atomically, locked with operating-system advisory locks.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use llxprt_application::ports::{BucketLock, StoreError, TokenStore};
use llxprt_domain::{BucketId, BucketName, OAuthProvider, Token};

use super::json::{token_from_json, token_to_json};

/// No token is anywhere near this large; a bigger file is refused before it is read into memory.
pub const MAX_TOKEN_FILE_BYTES: u64 = 1024 * 1024;

/// How long a waiter sleeps between two attempts at a busy lock.
const LOCK_POLL: Duration = Duration::from_millis(10);

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Tokens in `{provider}.json` (default bucket) and `{provider}-{bucket}.json` files of one
/// directory, normally `$LLXPRT_HOME/oauth`, in the layout llxprt-code uses.
///
/// - The directory is created `0700` (or tightened to it) and files are written `0600`; a token
///   file found readable by others is tightened, with a warning.
/// - A save writes a temporary file in the same directory, fsyncs it, renames it over the token
///   file and fsyncs the directory, so a crash leaves the old token or the new one.
/// - A file that cannot be read as a token is reported as [`StoreError::Corrupt`] and left alone.
/// - Bucket locks are `flock` locks on `locks/{provider}-{bucket}.lock`, which the kernel
///   releases when the holder dies; the file holds the holder's pid so a waiter can say who it
///   waits for. Lock files are never deleted (deleting one would let two holders in).
#[derive(Debug, Clone)]
pub struct FileTokenStore {
    dir: PathBuf,
}

impl FileTokenStore {
    /// A store in `oauth_dir`, created on the first save or lock.
    pub fn new(oauth_dir: PathBuf) -> Self {
        Self { dir: oauth_dir }
    }

    /// The directory holding the token files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding a bucket's token.
    pub fn token_path(&self, bucket: &BucketId) -> PathBuf {
        let name = if bucket.bucket.is_default() {
            format!("{}.json", bucket.provider)
        } else {
            format!("{}-{}.json", bucket.provider, bucket.bucket)
        };
        self.dir.join(name)
    }

    /// The file whose advisory lock guards a bucket.
    pub fn lock_path(&self, bucket: &BucketId) -> PathBuf {
        self.dir
            .join("locks")
            .join(format!("{}-{}.lock", bucket.provider, bucket.bucket))
    }
}

#[async_trait]
impl TokenStore for FileTokenStore {
    async fn load(&self, bucket: &BucketId) -> Result<Option<Token>, StoreError> {
        let (dir, path, bucket) = (self.dir.clone(), self.token_path(bucket), bucket.clone());
        blocking(&path.clone(), move || read_token(&dir, &path, &bucket)).await
    }

    async fn save(&self, bucket: &BucketId, token: &Token) -> Result<(), StoreError> {
        let (dir, path) = (self.dir.clone(), self.token_path(bucket));
        let text = token_to_json(token);
        let prefix = format!(".{}-{}.", bucket.provider, bucket.bucket);
        blocking(&path.clone(), move || {
            write_atomically(&dir, &path, &prefix, text.as_bytes())
        })
        .await
    }

    async fn delete(&self, bucket: &BucketId) -> Result<bool, StoreError> {
        let (dir, path) = (self.dir.clone(), self.token_path(bucket));
        blocking(&path.clone(), move || match fs::remove_file(&path) {
            Ok(()) => sync_dir(&dir).map(|()| true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(&path, e)),
        })
        .await
    }

    async fn list(&self, provider: OAuthProvider) -> Result<Vec<BucketName>, StoreError> {
        let dir = self.dir.clone();
        blocking(&self.dir, move || list_buckets(&dir, provider)).await
    }

    async fn lock(
        &self,
        bucket: &BucketId,
        timeout: Duration,
    ) -> Result<Box<dyn BucketLock>, StoreError> {
        let (dir, path) = (self.dir.clone(), self.lock_path(bucket));
        let file = blocking(&path, {
            let path = path.clone();
            move || open_lock_file(&dir, &path)
        })
        .await?;
        let start = tokio::time::Instant::now();
        let mut announced = false;
        loop {
            // `try_lock` never waits and the pid is a few bytes in a local file, so neither
            // needs a blocking thread; the waiting itself is an async sleep, which lets a caller
            // cancel it.
            match file.try_lock() {
                Ok(()) => {
                    record_holder(&file, &path);
                    return Ok(Box::new(FileBucketLock { file }));
                }
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => return Err(io_error(&path, e)),
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(StoreError::LockTimeout {
                    bucket: bucket.clone(),
                    waited,
                    holder: describe_holder(&path),
                });
            }
            if !announced {
                announced = true;
                tracing::info!(
                    bucket = %bucket,
                    lock = %path.display(),
                    "waiting up to {timeout:?} for the lock on {bucket}, {}",
                    describe_holder(&path)
                );
            }
            tokio::time::sleep(LOCK_POLL.min(timeout - waited)).await;
        }
    }
}

/// Held while the `flock` of the bucket's lock file is; closing the file releases it.
struct FileBucketLock {
    file: File,
}

impl BucketLock for FileBucketLock {}

impl Drop for FileBucketLock {
    fn drop(&mut self) {
        // Clear the pid while still holding the lock, so no waiter ever names a past holder.
        // Failure only leaves a stale pid behind, which the next holder overwrites.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Runs file-system work on `path` off the async threads. A panic in it is a bug and is passed
/// on.
async fn blocking<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(StoreError::Io {
            path: path.display().to_string(),
            message: "the runtime shut down before the work could run".to_owned(),
        }),
    }
}

fn io_error(path: &Path, err: io::Error) -> StoreError {
    let path = path.display().to_string();
    match err.kind() {
        io::ErrorKind::PermissionDenied => StoreError::PermissionDenied { path },
        _ => StoreError::Io {
            path,
            message: err.to_string(),
        },
    }
}

/// Makes sure `dir` is a directory only its owner can enter, creating it when `create` is set.
/// Returns whether it exists.
fn prepare_dir(dir: &Path, create: bool) -> Result<bool, StoreError> {
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(StoreError::Io {
            path: dir.display().to_string(),
            message: "it is not a directory".to_owned(),
        }),
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %dir.display(),
                    "the token directory {} was open to other users (mode {mode:o}); tightening it to 0700",
                    dir.display()
                );
                // Someone else's directory cannot be tightened; the operation itself will say
                // whether it is usable.
                if let Err(e) = fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)) {
                    tracing::warn!(path = %dir.display(), "could not tighten {}: {e}", dir.display());
                }
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(|e| io_error(dir, e))?;
            // The umask may have taken away owner bits we need; it can never have added any.
            fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
                .map_err(|e| io_error(dir, e))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(dir, e)),
    }
}

fn read_token(dir: &Path, path: &Path, bucket: &BucketId) -> Result<Option<Token>, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.display().to_string(),
        reason,
        provider: bucket.provider,
        bucket: bucket.bucket.clone(),
    };
    if !prepare_dir(dir, false)? {
        return Ok(None);
    }
    // Checked before opening because opening a FIFO would block.
    match fs::metadata(path) {
        Ok(meta) if !meta.is_file() => return Err(corrupt("it is not a regular file".into())),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    }
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    };
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(corrupt("it is not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            "the token file {} was readable by other users (mode {mode:o}); tightening it to 0600",
            path.display()
        );
        if let Err(e) = file.set_permissions(Permissions::from_mode(FILE_MODE)) {
            tracing::warn!(path = %path.display(), "could not tighten {}: {e}", path.display());
        }
    }
    let too_large = |len: u64| {
        corrupt(format!(
            "it is {len} bytes long; a token file is never larger than {MAX_TOKEN_FILE_BYTES} bytes"
        ))
    };
    if meta.len() > MAX_TOKEN_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    // The `take` bounds the read even if the file grows after the size check.
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| corrupt("it is binary data, not JSON text".into()))?;
    token_from_json(text)
        .map(Some)
        .map_err(|e| corrupt(e.to_string()))
}

fn write_atomically(
    dir: &Path,
    path: &Path,
    temp_prefix: &str,
    bytes: &[u8],
) -> Result<(), StoreError> {
    prepare_dir(dir, true)?;
    let mut temp = tempfile::Builder::new()
        .prefix(temp_prefix)
        .suffix(".tmp")
        .permissions(Permissions::from_mode(FILE_MODE))
        .tempfile_in(dir)
        .map_err(|e| io_error(dir, e))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| io_error(temp.path(), e))?;
    // On failure the temporary file is dropped, which removes it; the old token is untouched.
    temp.persist(path).map_err(|e| io_error(path, e.error))?;
    sync_dir(dir)
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

fn list_buckets(dir: &Path, provider: OAuthProvider) -> Result<Vec<BucketName>, StoreError> {
    if !prepare_dir(dir, false)? {
        return Ok(Vec::new());
    }
    let named_prefix = format!("{provider}-");
    let mut buckets = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        // Temporary files, the locks directory and foreign files all fail one of these.
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        let bucket = if stem == provider.as_str() {
            BucketName::default_bucket()
        } else {
            // `{provider}-default.json` is not where the default bucket lives, so it is skipped.
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

fn open_lock_file(dir: &Path, path: &Path) -> Result<File, StoreError> {
    prepare_dir(dir, true)?;
    if let Some(locks) = path.parent() {
        prepare_dir(locks, true)?;
    }
    // Not truncated: the pid in it belongs to whoever holds the lock now.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| io_error(path, e))
}

/// Writes this process's pid into the lock file for waiters to name. Best effort: the lock is
/// held either way.
fn record_holder(file: &File, path: &Path) {
    let pid = format!("{}\n", std::process::id());
    if let Err(e) = file
        .set_len(0)
        .and_then(|()| file.write_all_at(pid.as_bytes(), 0))
    {
        tracing::debug!(lock = %path.display(), "could not record the lock holder: {e}");
    }
}

fn describe_holder(path: &Path) -> String {
    let mut text = String::new();
    let read = File::open(path).and_then(|f| f.take(32).read_to_string(&mut text));
    match read.ok().and_then(|_| text.trim().parse::<u32>().ok()) {
        Some(pid) => format!("held by process {pid}"),
        None => "held by another process".to_owned(),
    }
}
