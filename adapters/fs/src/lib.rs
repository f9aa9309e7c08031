//! File-system helpers shared by every adapter that keeps state on disk (the file stores, the
//! settings): crash-safe writes, locks the kernel releases when their holder dies and that are
//! waited for only so long, opens that never follow a link or hang on a FIFO, and the checks
//! OpenSSH's `StrictModes` makes, so a file another user owns or can change is never used.
//!
//! Unix only today: modes, owners, `flock`, `O_NOFOLLOW`.

mod strict;

use std::fs::{self, File, Metadata, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};

pub use strict::{audit_home, check_owner_and_mode, create_private_dir, current_uid, Audit};

/// The mode of every file llxprt writes: they may hold tokens or keys.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// How long a lock of a small shared file (statistics, health, settings) is waited for. Each
/// holder keeps it across one read → change → write of a few milliseconds, so a lock held
/// longer belongs to a process that is stuck, or to someone holding it on purpose.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// How long a waiter sleeps between two attempts at a busy lock.
const LOCK_POLL: Duration = Duration::from_millis(10);

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

/// Whether a read may go through a symbolic link at the path itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Follow it (`settings.json` kept in a dotfiles repository).
    Follow,
    /// Refuse it: files llxprt alone writes (locks, history, statistics, health) are never
    /// links, and one planted there could make llxprt read or write another file.
    Refuse,
}

/// Opens an existing regular file for reading; `None` when there is none. Never blocks: a
/// FIFO, a device or a directory at `path` is an error that says what it is, and with
/// [`Links::Refuse`] so is a symbolic link.
pub fn open_regular(path: &Path, links: Links) -> Result<Option<File>, PathError> {
    let mut flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK;
    if links == Links::Refuse {
        flags |= OFlags::NOFOLLOW;
    }
    let file = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(e) if e == rustix::io::Errno::NOENT => return Ok(None),
        Err(e) => return Err((path.to_owned(), opening_error(path, e.into()))),
    };
    let meta = file.metadata().map_err(|e| (path.to_owned(), e))?;
    require_regular(path, &meta)?;
    Ok(Some(file))
}

/// The contents of an existing regular file ([`open_regular`]) that passes
/// [`check_owner_and_mode`], refused when over `max_bytes`; `None` when there is no file.
pub fn read_regular(
    path: &Path,
    links: Links,
    max_bytes: u64,
) -> Result<Option<Vec<u8>>, PathError> {
    let Some(file) = open_regular(path, links)? else {
        return Ok(None);
    };
    let too_large = || {
        (
            path.to_owned(),
            io::Error::other(format!(
                "it is larger than {} KiB, which no file of llxprt's ever is; it was not read",
                max_bytes / 1024
            )),
        )
    };
    let meta = file.metadata().map_err(|e| (path.to_owned(), e))?;
    check_owner_and_mode(path, &meta)?;
    if meta.len() > max_bytes {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    // The `take` bounds the read even if the file grows after the size check.
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| (path.to_owned(), e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large());
    }
    Ok(Some(bytes))
}

/// An error for a file that is not a regular one, saying what it is.
fn require_regular(path: &Path, meta: &Metadata) -> Result<(), PathError> {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    };
    Err((
        path.to_owned(),
        io::Error::other(format!(
            "it is {what}, not a regular file; remove it and llxprt makes a new one"
        )),
    ))
}

fn opening_error(path: &Path, error: io::Error) -> io::Error {
    // O_NOFOLLOW on a symbolic link fails with ELOOP.
    if error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        return io::Error::other(format!(
            "it is a symbolic link, which llxprt does not follow here; remove {}",
            path.display()
        ));
    }
    error
}

/// Opens (creating, `0600`) a lock file without following a link or blocking on a FIFO; it
/// must be a regular file. Not truncated: the pid in it belongs to whoever holds the lock now.
pub fn open_lock_file(path: &Path) -> Result<File, PathError> {
    let flags =
        OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOFOLLOW;
    let file = rustix::fs::open(path, flags, Mode::from_raw_mode(PRIVATE_FILE_MODE))
        .map(File::from)
        .map_err(|e| (path.to_owned(), opening_error(path, e.into())))?;
    let meta = file.metadata().map_err(|e| (path.to_owned(), e))?;
    require_regular(path, &meta)?;
    Ok(file)
}

/// Writes this process's pid into a held lock's file for waiters to name. Best effort: the
/// lock is held either way.
pub fn record_holder(file: &File) {
    let pid = format!("{}\n", std::process::id());
    let _ = file
        .set_len(0)
        .and_then(|()| file.write_all_at(pid.as_bytes(), 0));
}

/// Who holds the lock of `path`, as its file says: `held by process N`.
pub fn describe_holder(path: &Path) -> String {
    let mut text = String::new();
    let read = open_regular(path, Links::Refuse)
        .ok()
        .flatten()
        .map(|f| f.take(32).read_to_string(&mut text));
    match read
        .and_then(Result::ok)
        .and_then(|_| text.trim().parse::<u32>().ok())
    {
        Some(pid) => format!("held by process {pid}"),
        None => "held by another process".to_owned(),
    }
}

/// An exclusive advisory lock on a lock file, held until dropped. The kernel releases it when
/// the holder exits, even by a crash, so no stale lock can block anyone; a live holder is
/// waited for [`LOCK_WAIT`] at most, and then named.
#[derive(Debug)]
pub struct FileLock(File);

impl FileLock {
    /// Opens (creating) the lock file and waits up to [`LOCK_WAIT`] for the lock. For locks
    /// held only across one short read → change → write.
    pub fn acquire(path: &Path) -> Result<Self, PathError> {
        Self::acquire_within(path, LOCK_WAIT)
    }

    /// [`FileLock::acquire`], waiting up to `limit`; past it the error names the holder.
    pub fn acquire_within(path: &Path, limit: Duration) -> Result<Self, PathError> {
        let file = open_lock_file(path)?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => {
                    record_holder(&file);
                    return Ok(Self(file));
                }
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => return Err((path.to_owned(), e)),
            }
            if start.elapsed() >= limit {
                return Err((
                    path.to_owned(),
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "it is still locked after {:.0?} ({}); if that process is stuck, end it",
                            limit,
                            describe_holder(path)
                        ),
                    ),
                ));
            }
            std::thread::sleep(LOCK_POLL);
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Clear the pid while still holding the lock, so no waiter ever names a past holder.
        let _ = self.0.set_len(0);
        // Closing the file releases the lock too; unlocking first just says so.
        let _ = self.0.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_fifo_is_refused_at_once_instead_of_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("settings.json");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o600)).unwrap();
        let (_, error) = read_regular(&fifo, Links::Follow, 1024).unwrap_err();
        assert!(error.to_string().contains("FIFO"), "{error}");
        let (_, error) = open_lock_file(&fifo).unwrap_err();
        assert!(error.to_string().contains("FIFO"), "{error}");
    }

    #[test]
    fn a_symbolic_link_is_not_followed_where_llxprt_alone_writes() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, "precious").unwrap();
        let link = dir.path().join("stats.json.lock");
        symlink(&target, &link).unwrap();
        let (_, error) = open_lock_file(&link).unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        let (_, error) = read_regular(&link, Links::Refuse, 1024).unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
        // Where links are allowed, the target is read.
        let read = read_regular(&link, Links::Follow, 1024).unwrap().unwrap();
        assert_eq!(read, b"precious");
    }

    #[test]
    fn a_file_over_the_bound_is_refused_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        fs::write(&big, vec![b' '; 4096]).unwrap();
        let (_, error) = read_regular(&big, Links::Refuse, 1024).unwrap_err();
        assert!(error.to_string().contains("larger than"), "{error}");
        assert!(read_regular(&dir.path().join("none"), Links::Refuse, 1)
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_lock_held_too_long_is_given_up_naming_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.json.lock");
        let _held = FileLock::acquire(&path).unwrap();
        // Another open file description: `flock` locks conflict between them even in one process.
        let (_, error) = FileLock::acquire_within(&path, Duration::from_millis(50)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let message = error.to_string();
        assert!(
            message.contains(&format!("held by process {}", std::process::id())),
            "{message}"
        );
    }
}
