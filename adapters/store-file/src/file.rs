//! The file store: one JSON file per provider and bucket, readable by the user alone, replaced
//! atomically, locked with operating-system advisory locks.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, File, Metadata, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use llxprt_application::ports::{BucketLock, StoreError, TokenStore};
use llxprt_domain::{BucketId, BucketName, OAuthProvider, Token};

use crate::json::{token_from_json, token_to_json};

/// No token is anywhere near this large; a bigger file is refused before it is read into memory.
pub const MAX_TOKEN_FILE_BYTES: u64 = 1024 * 1024;

/// How long a waiter sleeps between two attempts at a busy lock.
const LOCK_POLL: Duration = Duration::from_millis(10);

/// How long a token file must have been left unchanged before a load trusts a `stat` to tell it
/// apart from a newer write: longer than the coarsest file-time granularity and clock tick of the
/// file systems a home directory lives on.
pub const DEFAULT_SETTLE_TIME: Duration = Duration::from_secs(2);

/// How long [`FileTokenStore::with_revalidate_after`] lets a token this process read or
/// wrote be served from memory without a `stat`, in the store the binary composes.
pub const DEFAULT_REVALIDATE_AFTER: Duration = Duration::from_secs(1);

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
/// - A load answers from memory only while a `stat` shows the very file it last read (see
///   [`FileTokenStore::with_settle_time`]), and loads of one bucket that overlap share one read
///   that began after each of them was called; neither can miss a token another process wrote.
///   With [`FileTokenStore::with_revalidate_after`], the token last read or saved is served
///   without even the `stat` for a while, which trades that guarantee for a bounded delay.
#[derive(Debug, Clone)]
pub struct FileTokenStore {
    dir: PathBuf,
    settle_time: Duration,
    revalidate_after: Duration,
    /// Shared by clones, which read the same files.
    files: Arc<Mutex<HashMap<BucketId, Arc<TokenFile>>>>,
}

impl FileTokenStore {
    /// A store in `oauth_dir`, created on the first save or lock.
    pub fn new(oauth_dir: PathBuf) -> Self {
        Self {
            dir: oauth_dir,
            settle_time: DEFAULT_SETTLE_TIME,
            revalidate_after: Duration::ZERO,
            files: Arc::default(),
        }
    }

    /// Changes how long a token file must have been unchanged (by its status-change time)
    /// before its token is kept in memory ([`DEFAULT_SETTLE_TIME`] otherwise).
    ///
    /// A kept token is served while the file's device, inode, size, modification and
    /// status-change times are those of the file it was read from. Every write gives a file a
    /// new status-change time, and every replacement a new inode whose number can only repeat an
    /// old one's after that one was freed, i.e. after the read; so a file that had settled
    /// before the read cannot change without its `stat` changing, as long as the file system's
    /// clock and this process's agree within the settle time. A file written more recently is
    /// read again on every load.
    pub fn with_settle_time(mut self, settle_time: Duration) -> Self {
        self.settle_time = settle_time;
        self
    }

    /// Serves the token this store last read (or saved) from memory, without looking at the
    /// file, for up to `interval` after it last checked the file (or wrote it); zero, the
    /// default, checks on every load.
    ///
    /// The trade: a token another process writes (a login, a logout, a refresh) is seen up to
    /// `interval` late by a load. The refresh itself never acts on such a token: taking a
    /// bucket's [`TokenStore::lock`] makes the next load of that bucket check the file, so the
    /// re-read under the lock always sees the latest write. A token rejected meanwhile by the
    /// provider is refreshed the same way, under the lock. This store's own saves and deletes
    /// are seen at once.
    pub fn with_revalidate_after(mut self, interval: Duration) -> Self {
        self.revalidate_after = interval;
        self
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
        let file = self.file(bucket);
        if let Some(token) = file.recently_checked(self.revalidate_after) {
            return Ok(Some(token));
        }
        let path = self.token_path(bucket);
        if let Some(token) = file.unchanged(&self.dir, &path) {
            return Ok(Some(token));
        }
        let arrived = file.reads_started.load(Ordering::SeqCst);
        // A read that began after this call did is as good as one of its own; one that began
        // earlier might predate a write this caller must see. Callers that overlap share one
        // read and all wake when it ends, rather than passing a lock one by one.
        let (number, published) = loop {
            if let Some(result) = file.finished_read_since(arrived) {
                return result;
            }
            match file.join_or_start_read(arrived) {
                SharedRead::Join(number, mut running) => {
                    match running.wait_for(Option::is_some).await {
                        Ok(result) => {
                            if let Some(result) = &*result {
                                return result.clone();
                            }
                        }
                        // The reader was cancelled before it ended: read again.
                        Err(_) => file.abandon_read(number),
                    }
                }
                // Too early for this caller: once it ends, the next read is shared.
                SharedRead::After(number, mut running) => {
                    if running.wait_for(Option::is_some).await.is_err() {
                        file.abandon_read(number);
                    }
                }
                SharedRead::Start(number, published) => break (number, published),
            }
        };
        let writes = file.writes.load(Ordering::SeqCst);
        let (dir, settle_time, owned_path, owned_bucket) = (
            self.dir.clone(),
            self.settle_time,
            path.clone(),
            bucket.clone(),
        );
        let read = blocking(&path, move || {
            read_token(&dir, &owned_path, &owned_bucket, settle_time)
        })
        .await;
        let result = read.map(|(token, identity)| {
            // A save or delete of this store during the read knows better than the read.
            file.keep_unless_written_since(writes, token.clone().map(|t| Kept::read(t, identity)));
            token
        });
        file.finish_read(number, &result);
        // Nobody may be waiting; that is no failure.
        let _ = published.send(Some(result.clone()));
        result
    }

    async fn save(&self, bucket: &BucketId, token: &Token) -> Result<(), StoreError> {
        let (dir, path) = (self.dir.clone(), self.token_path(bucket));
        let text = token_to_json(token);
        let prefix = format!(".{}-{}.", bucket.provider, bucket.bucket);
        let file = self.file(bucket);
        // Whatever the outcome, what was kept may no longer be what the file holds.
        let writes = file.forget();
        blocking(&path.clone(), move || {
            write_atomically(&dir, &path, &prefix, text.as_bytes())
        })
        .await?;
        // What was just written is what the file holds, but it has not settled: it is served
        // from memory only for the revalidation interval, then read again.
        file.keep_unless_written_since(writes, Some(Kept::written(token.clone())));
        Ok(())
    }

    async fn delete(&self, bucket: &BucketId) -> Result<bool, StoreError> {
        // Not needed for correctness (the file's absence shows in its `stat`), but a logged-out
        // token has no business staying in memory.
        self.file(bucket).forget();
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

    async fn check_writable(&self, bucket: &BucketId) -> Result<(), StoreError> {
        // What a save does first: the private directory, then a temporary file beside the
        // token (dropping it removes it), so a save that would fail fails here instead.
        let dir = self.dir.clone();
        let probe = dir.join(format!(
            ".{}-{}.check.{}",
            bucket.provider,
            bucket.bucket,
            std::process::id()
        ));
        blocking(&self.dir, move || {
            prepare_dir(&dir, true)?;
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(llxprt_fs::PRIVATE_FILE_MODE)
                .open(&probe)
                .and_then(|_| fs::remove_file(&probe))
                .map_err(|e| io_error(&dir, e))
        })
        .await
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
                    // The holder's next load must see the latest write of any process.
                    self.file(bucket).check_next_load();
                    llxprt_fs::record_holder(&file);
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
                    holder: llxprt_fs::describe_holder(&path),
                });
            }
            if !announced {
                announced = true;
                tracing::info!(
                    bucket = %bucket,
                    lock = %path.display(),
                    "waiting up to {timeout:?} for the lock on {bucket}, {}",
                    llxprt_fs::describe_holder(&path)
                );
            }
            tokio::time::sleep(LOCK_POLL.min(timeout - waited)).await;
        }
    }
}

impl FileTokenStore {
    fn file(&self, bucket: &BucketId) -> Arc<TokenFile> {
        // Nothing panics while the map is held, so a poisoned map is still consistent.
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        files.entry(bucket.clone()).or_default().clone()
    }
}

/// What this store knows of one token file between loads.
#[derive(Debug, Default)]
struct TokenFile {
    /// The token last read or saved, and what is known of its file.
    kept: Mutex<Option<Kept>>,
    /// How many reads have begun; a caller compares it with a read's number to know whether the
    /// read began after it arrived.
    reads_started: AtomicU64,
    /// How many saves and deletes this store has begun on the file.
    writes: AtomicU64,
    /// The read running now, if any: its number and where its result will be published, so
    /// that overlapping loads share it instead of each making its own.
    reading: Mutex<Option<(u64, tokio::sync::watch::Receiver<Option<LoadResult>>)>>,
    /// The last finished read's number and result.
    last_read: Mutex<Option<(u64, LoadResult)>>,
}

type LoadResult = Result<Option<Token>, StoreError>;

/// What a load does about the file's read: join one that began after it arrived, or start one.
enum SharedRead {
    Join(u64, tokio::sync::watch::Receiver<Option<LoadResult>>),
    After(u64, tokio::sync::watch::Receiver<Option<LoadResult>>),
    Start(u64, tokio::sync::watch::Sender<Option<LoadResult>>),
}

impl TokenFile {
    /// The result of the last finished read, if that read began after a caller arrived when
    /// `arrived` reads had begun.
    fn finished_read_since(&self, arrived: u64) -> Option<LoadResult> {
        let last = lock(&self.last_read);
        last.as_ref()
            .filter(|(number, _)| *number > arrived)
            .map(|(_, result)| result.clone())
    }

    /// Joins the running read if it began after the caller arrived, waits for it to end if it
    /// began earlier, or registers a new one when none runs.
    fn join_or_start_read(&self, arrived: u64) -> SharedRead {
        let mut reading = lock(&self.reading);
        if let Some((number, running)) = reading.as_ref() {
            return if *number > arrived {
                SharedRead::Join(*number, running.clone())
            } else {
                SharedRead::After(*number, running.clone())
            };
        }
        let number = self.reads_started.fetch_add(1, Ordering::SeqCst) + 1;
        let (published, running) = tokio::sync::watch::channel(None);
        *reading = Some((number, running));
        SharedRead::Start(number, published)
    }

    /// Keeps a finished read's result (unless a later read finished first) and stops offering
    /// the read to new callers.
    fn finish_read(&self, number: u64, result: &LoadResult) {
        {
            let mut last = lock(&self.last_read);
            if last.as_ref().is_none_or(|(kept, _)| *kept < number) {
                *last = Some((number, result.clone()));
            }
        }
        self.abandon_read(number);
    }

    /// Stops offering read `number` to new callers (it ended, or its caller was cancelled).
    fn abandon_read(&self, number: u64) {
        let mut reading = lock(&self.reading);
        if reading
            .as_ref()
            .is_some_and(|(running, _)| *running == number)
        {
            *reading = None;
        }
    }

    /// The kept token, if the directory is still private and the token file is still the one
    /// it was read from. These are two `stat`s of local paths, done here rather than on a
    /// blocking thread, whose hand-over alone would cost several times as much.
    fn unchanged(&self, dir: &Path, path: &Path) -> Option<Token> {
        let (identity, token) = {
            let kept = self.kept();
            let kept = kept.as_ref()?;
            (kept.identity?, kept.token.clone())
        };
        let private = fs::metadata(dir)
            .is_ok_and(|meta| meta.is_dir() && meta.permissions().mode() & 0o077 == 0);
        let same = fs::metadata(path).is_ok_and(|meta| FileIdentity::of(&meta) == identity);
        if !(private && same) {
            return None;
        }
        if let Some(kept) = self
            .kept()
            .as_mut()
            .filter(|kept| kept.identity == Some(identity))
        {
            kept.checked = Some(Instant::now());
        }
        Some(token)
    }

    /// The kept token, if its file was checked (or written) less than `interval` ago.
    fn recently_checked(&self, interval: Duration) -> Option<Token> {
        let kept = self.kept();
        let kept = kept.as_ref()?;
        let checked = kept.checked?;
        (checked.elapsed() < interval).then(|| kept.token.clone())
    }

    /// Makes the next load look at the file.
    fn check_next_load(&self) {
        if let Some(kept) = self.kept().as_mut() {
            kept.checked = None;
        }
    }

    /// Keeps `kept` unless this store began a save or delete of the file after `writes` were.
    fn keep_unless_written_since(&self, writes: u64, kept: Option<Kept>) {
        let mut slot = self.kept();
        if self.writes.load(Ordering::SeqCst) == writes {
            *slot = kept;
        }
    }

    /// Forgets the kept token before this store changes the file, so that a read or save
    /// running now does not keep what it had; returns the number of writes begun.
    fn forget(&self) -> u64 {
        let mut kept = self.kept();
        *kept = None;
        self.writes.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Option<Kept>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Poisoning is ignored: every change made under these locks is one assignment.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A token held in memory between loads.
#[derive(Debug)]
struct Kept {
    token: Token,
    /// The identity of the file it was read from, when that file had settled before the read:
    /// while a `stat` shows it, the file still holds this token.
    identity: Option<FileIdentity>,
    /// When the file was last read, checked or written; `None` once a lock was taken.
    checked: Option<Instant>,
}

impl Kept {
    fn read(token: Token, identity: Option<FileIdentity>) -> Self {
        Self {
            token,
            identity,
            checked: Some(Instant::now()),
        }
    }

    fn written(token: Token) -> Self {
        Self::read(token, None)
    }
}

/// What a `stat` says of a file that any change to it, or its replacement, would alter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
    size: u64,
    mode: u32,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl FileIdentity {
    fn of(meta: &Metadata) -> Self {
        Self {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            mode: meta.mode(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether the file's last change came more than `settle_time` before `read_began`, so that
    /// any later change must give it another status-change time.
    fn settled_before(&self, read_began: SystemTime, settle_time: Duration) -> bool {
        let nanos =
            |(seconds, nanos): (i64, i64)| i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
        let Ok(began) = read_began.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let began = i128::try_from(began.as_nanos()).unwrap_or(i128::MAX);
        let settle = i128::try_from(settle_time.as_nanos()).unwrap_or(i128::MAX);
        nanos(self.changed).saturating_add(settle) < began
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
/// on. Shared with the stores built on these files (encrypted, keyring).
///
/// # Errors
/// What `work` returns; [`StoreError::Io`] when the runtime shut down before it could run.
pub async fn blocking<T: Send + 'static>(
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

/// A file-system failure on `path` as the token-store port's error: a refusal of permission is
/// told apart, since the user can fix it.
pub fn io_error(path: &Path, err: io::Error) -> StoreError {
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
            llxprt_fs::check_owner_and_mode(dir, &meta).map_err(|(p, e)| io_error(&p, e))?;
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

/// Reads a bucket's token, with the identity of its file when the token may be kept in memory
/// (the file had settled before the read began and did not change during it).
fn read_token(
    dir: &Path,
    path: &Path,
    bucket: &BucketId,
    settle_time: Duration,
) -> Result<(Option<Token>, Option<FileIdentity>), StoreError> {
    let began = SystemTime::now();
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.display().to_string(),
        reason,
        provider: bucket.provider,
        bucket: bucket.bucket.clone(),
    };
    if !prepare_dir(dir, false)? {
        return Ok((None, None));
    }
    // Checked before opening because opening a FIFO would block.
    match fs::metadata(path) {
        Ok(meta) if !meta.is_file() => return Err(corrupt("it is not a regular file".into())),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((None, None)),
        Err(e) => return Err(io_error(path, e)),
    }
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((None, None)),
        Err(e) => return Err(io_error(path, e)),
    };
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(corrupt("it is not a regular file".into()));
    }
    // A token another user planted (with their own token_url's tokens) is never used.
    llxprt_fs::check_owner_and_mode(path, &meta).map_err(|(p, e)| io_error(&p, e))?;
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
    (&file)
        .take(MAX_TOKEN_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    let before = FileIdentity::of(&meta);
    // Tightening the mode above, or a writer during the read, shows here as another identity.
    let identity = file
        .metadata()
        .ok()
        .map(|after| FileIdentity::of(&after))
        .filter(|after| *after == before && before.settled_before(began, settle_time));
    if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| corrupt("it is binary data, not JSON text".into()))?;
    token_from_json(text)
        .map(|token| (Some(token), identity))
        .map_err(|e| corrupt(e.to_string()))
}

fn write_atomically(
    dir: &Path,
    path: &Path,
    temp_prefix: &str,
    bytes: &[u8],
) -> Result<(), StoreError> {
    prepare_dir(dir, true)?;
    llxprt_fs::write_atomically(path, temp_prefix, bytes).map_err(|(p, e)| io_error(&p, e))
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
    // Not truncated: the pid in it belongs to whoever holds the lock now. Never a link or a
    // FIFO, which would make the lock open another file or hang.
    llxprt_fs::open_lock_file(path).map_err(|(p, e)| io_error(&p, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use llxprt_domain::{Secret, UnixSeconds};

    fn bucket() -> BucketId {
        BucketId::new(OAuthProvider::Anthropic, BucketName::parse("work").unwrap())
    }

    fn token(access: &str) -> Token {
        Token::new(Secret::new(access), UnixSeconds(1_900_000_000))
    }

    fn reads(store: &FileTokenStore) -> u64 {
        store.file(&bucket()).reads_started.load(Ordering::SeqCst)
    }

    /// A settled file: a settle time of zero makes a file written just before settled, which
    /// is safe here because the only writers below replace files, giving them new inodes.
    fn settled_store(dir: &tempfile::TempDir) -> FileTokenStore {
        FileTokenStore::new(dir.path().join("oauth")).with_settle_time(Duration::ZERO)
    }

    #[tokio::test]
    async fn a_settled_file_is_read_once_and_then_served_from_memory_while_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let store = settled_store(&dir);
        store.save(&bucket(), &token("at-1")).await.unwrap();
        for _ in 0..3 {
            let got = store.load(&bucket()).await.unwrap().unwrap();
            assert_eq!(got.access_token.expose(), "at-1");
        }
        assert_eq!(reads(&store), 1);
    }

    #[tokio::test]
    async fn a_token_another_store_saved_is_read_again_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mine, theirs) = (settled_store(&dir), settled_store(&dir));
        mine.save(&bucket(), &token("at-1")).await.unwrap();
        assert!(mine.load(&bucket()).await.unwrap().is_some());
        theirs.save(&bucket(), &token("at-2")).await.unwrap();
        let got = mine.load(&bucket()).await.unwrap().unwrap();
        assert_eq!(got.access_token.expose(), "at-2");
        assert_eq!(reads(&mine), 2);
        theirs.delete(&bucket()).await.unwrap();
        assert_eq!(mine.load(&bucket()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn with_a_revalidation_interval_another_writer_is_seen_once_a_lock_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let mine = settled_store(&dir).with_revalidate_after(Duration::from_secs(3600));
        let theirs = settled_store(&dir);
        mine.save(&bucket(), &token("at-1")).await.unwrap();
        // Its own save is served from memory, without reading the file.
        assert_eq!(
            mine.load(&bucket())
                .await
                .unwrap()
                .unwrap()
                .access_token
                .expose(),
            "at-1"
        );
        assert_eq!(reads(&mine), 0);
        theirs.save(&bucket(), &token("at-2")).await.unwrap();
        // The trade: within the interval, another writer's token is not seen yet...
        assert_eq!(
            mine.load(&bucket())
                .await
                .unwrap()
                .unwrap()
                .access_token
                .expose(),
            "at-1"
        );
        // ...but the holder of the bucket's lock always reads the latest.
        let lock = mine.lock(&bucket(), Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            mine.load(&bucket())
                .await
                .unwrap()
                .unwrap()
                .access_token
                .expose(),
            "at-2"
        );
        drop(lock);
        // Its own delete is seen at once.
        mine.delete(&bucket()).await.unwrap();
        assert_eq!(mine.load(&bucket()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_file_rewritten_in_place_right_after_a_read_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileTokenStore::new(dir.path().join("oauth"));
        store.save(&bucket(), &token("at-1")).await.unwrap();
        assert!(store.load(&bucket()).await.unwrap().is_some());
        // Another program rewriting the file in place, same size, within the same clock tick:
        // only the settle time tells this apart from an unchanged file.
        let path = store.token_path(&bucket());
        let text = fs::read_to_string(&path).unwrap().replace("at-1", "at-2");
        fs::write(&path, text).unwrap();
        let got = store.load(&bucket()).await.unwrap().unwrap();
        assert_eq!(got.access_token.expose(), "at-2");
    }

    #[tokio::test]
    async fn a_loosened_directory_is_noticed_even_when_the_token_is_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = settled_store(&dir);
        store.save(&bucket(), &token("at-1")).await.unwrap();
        store.load(&bucket()).await.unwrap();
        fs::set_permissions(store.dir(), Permissions::from_mode(0o755)).unwrap();
        store.load(&bucket()).await.unwrap();
        let mode = fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, DIR_MODE);
    }

    #[tokio::test]
    async fn a_load_cancelled_in_its_read_leaves_no_one_waiting_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileTokenStore::new(dir.path().join("oauth"));
        store.save(&bucket(), &token("at-1")).await.unwrap();
        let cancelled = {
            let store = store.clone();
            tokio::spawn(async move { store.load(&bucket()).await })
        };
        // It starts its read and waits for it on a blocking thread; then it is dropped (on a
        // loaded machine the read may already have ended: then nothing was cancelled, and the
        // later load must still answer).
        tokio::task::yield_now().await;
        cancelled.abort();
        let _ = cancelled.await;
        let later = tokio::time::timeout(Duration::from_secs(10), store.load(&bucket()))
            .await
            .expect("a later load does not wait for the cancelled read forever");
        assert_eq!(later.unwrap().unwrap().access_token.expose(), "at-1");
    }

    #[tokio::test]
    async fn overlapping_loads_share_a_read_that_began_after_they_were_called() {
        const CALLERS: usize = 100;
        let dir = tempfile::tempdir().unwrap();
        // The default settle time: the file was just written, so nothing is kept in memory.
        let store = FileTokenStore::new(dir.path().join("oauth"));
        store.save(&bucket(), &token("at-1")).await.unwrap();
        let loads: Vec<_> = (0..CALLERS)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.load(&bucket()).await })
            })
            .collect();
        for load in loads {
            let got = load.await.unwrap().unwrap().unwrap();
            assert_eq!(got.access_token.expose(), "at-1");
        }
        // The first read began before every other caller arrived, so at least one more is
        // needed; callers that arrive while a read runs share the next one.
        let reads = reads(&store);
        assert!((2..=CALLERS as u64 / 4).contains(&reads), "{reads} reads");
    }
}
