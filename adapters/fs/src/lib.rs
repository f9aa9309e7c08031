//! File-system helpers shared by every adapter that keeps state on disk (the file stores, the
//! settings): crash-safe writes and locks the kernel releases when their holder dies.
//!
//! Unix only today: modes and `flock`.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The mode of every file llxprt writes: they may hold tokens or keys.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// An I/O failure with the path it happened on.
pub type PathError = (PathBuf, io::Error);

/// Replaces `path` with `bytes` so that a crash at any instant leaves either the old contents or
/// the new, never a torn file: a private temporary file in the same directory, written and
/// fsynced, renamed over `path`, then the directory fsynced so the rename itself is durable.
pub fn write_atomically(path: &Path, temp_prefix: &str, bytes: &[u8]) -> Result<(), PathError> {
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

/// An exclusive advisory lock on a lock file, held until dropped. The kernel releases it when
/// the holder exits, even by a crash, so no stale lock can block anyone.
#[derive(Debug)]
pub struct FileLock(File);

impl FileLock {
    /// Opens (creating) the lock file and waits for the lock. For locks held only across one
    /// short read → change → write, where waiting cannot be long.
    pub fn acquire(path: &Path) -> Result<Self, PathError> {
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
