//! File-system helpers shared by every adapter that keeps state on disk: crash-safe writes and
//! locks the kernel releases when their holder dies.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The mode of every file llxprt writes: they may hold tokens or keys.
pub(crate) const PRIVATE_FILE_MODE: u32 = 0o600;

/// An I/O failure with the path it happened on.
pub(crate) type PathError = (PathBuf, io::Error);

/// Replaces `path` with `bytes` so that a crash at any instant leaves either the old contents or
/// the new, never a torn file: a private temporary file in the same directory, written and
/// fsynced, renamed over `path`, then the directory fsynced so the rename itself is durable.
pub(crate) fn write_atomically(
    path: &Path,
    temp_prefix: &str,
    bytes: &[u8],
) -> Result<(), PathError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(temp_prefix)
        .suffix(".tmp")
        .permissions(Permissions::from_mode(PRIVATE_FILE_MODE))
        .tempfile_in(dir)
        .map_err(|e| (dir.to_owned(), e))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| (temp.path().to_owned(), e))?;
    // On failure the temporary file is dropped, which removes it; the old contents stay.
    temp.persist(path).map_err(|e| (path.to_owned(), e.error))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| (dir.to_owned(), e))
}

/// Rewrites the small JSON document at `path` under the exclusive lock of `PATH.lock`, so that
/// processes changing it at once take turns and none loses another's change: `change` reads the
/// current document and returns the new one, which replaces the file crash-safely.
pub(crate) fn update_json_locked<T: serde::Serialize, E>(
    path: &Path,
    temp_prefix: &str,
    change: impl FnOnce() -> Result<T, E>,
    io: impl Fn(PathError) -> E,
) -> Result<(), E> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| io((dir.to_owned(), e)))?;
    }
    let _lock = FileLock::acquire(&path.with_extension("json.lock")).map_err(&io)?;
    let document = change()?;
    let mut text = serde_json::to_string_pretty(&document)
        .map_err(|e| io((path.to_owned(), io::Error::other(e))))?;
    text.push('\n');
    write_atomically(path, temp_prefix, text.as_bytes()).map_err(io)
}

/// An exclusive advisory lock on a lock file, held until dropped. The kernel releases it when
/// the holder exits, even by a crash, so no stale lock can block anyone.
#[derive(Debug)]
pub(crate) struct FileLock(File);

impl FileLock {
    /// Opens (creating) the lock file and waits for the lock. For locks held only across one
    /// short read → change → write, where waiting cannot be long.
    pub(crate) fn acquire(path: &Path) -> Result<Self, PathError> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| (path.to_owned(), e))?;
        file.lock().map_err(|e| (path.to_owned(), e))?;
        Ok(Self(file))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first just says so.
        let _ = self.0.unlock();
    }
}
