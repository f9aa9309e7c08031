//! The storage key file: 32 raw random bytes, readable by its owner alone, made on first use.

use std::fs::{self, DirBuilder, File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{StorageKey, KEY_LEN};

/// Why the key file could not be read or made. Each names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    /// Other users may read the key file, so it no longer protects anything.
    #[error("the storage key {path} can be read by other users (mode {mode:o}); run `chmod 600 {path}` if nobody else has read it, or make a new key and log in again")]
    TooOpen {
        /// The key file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not 32 bytes long, so it is not a storage key.
    #[error("the storage key {path} is {len} bytes long, not {KEY_LEN}; point storage.key_file at the right file")]
    NotAKey {
        /// The key file.
        path: String,
        /// Its length.
        len: u64,
    },
    /// The path names a directory or a special file.
    #[error("the storage key {path} is not a regular file")]
    NotAFile {
        /// The path.
        path: String,
    },
    /// The operating system refused access.
    #[error("permission denied on the storage key {path}")]
    PermissionDenied {
        /// The key file or its directory.
        path: String,
    },
    /// Any other input/output failure, or no random bytes for a new key.
    #[error("could not use the storage key {path}: {message}")]
    Io {
        /// The key file or its directory.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// A key and whether this call made it.
#[derive(Debug)]
pub struct LoadedKey {
    /// The key.
    pub key: StorageKey,
    /// Whether the file did not exist and was made now.
    pub created: bool,
}

/// The storage key file at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    path: PathBuf,
}

impl KeyFile {
    /// The key file at `path` (not touched yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where the key file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the key, or `None` when the file does not exist.
    ///
    /// # Errors
    /// [`KeyFileError::TooOpen`] when group or others have any access to it, and the others
    /// when it is not a 32-byte regular file or cannot be read.
    pub fn load(&self) -> Result<Option<StorageKey>, KeyFileError> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(&self.path, e)),
        };
        let meta = file.metadata().map_err(|e| self.io(&self.path, e))?;
        if !meta.is_file() {
            return Err(KeyFileError::NotAFile { path: self.shown() });
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::TooOpen {
                path: self.shown(),
                mode,
            });
        }
        if meta.len() != KEY_LEN as u64 {
            return Err(KeyFileError::NotAKey {
                path: self.shown(),
                len: meta.len(),
            });
        }
        let mut bytes = zeroize::Zeroizing::new([0u8; KEY_LEN]);
        file.read_exact(bytes.as_mut())
            .map_err(|e| self.io(&self.path, e))?;
        Ok(Some(StorageKey::from_bytes(*bytes)))
    }

    /// Reads the key, making a new random one first when the file does not exist.
    ///
    /// A new key is written to a private temporary file, synced, then linked into place, which
    /// fails if another process made the key first; its key is then used. So two processes
    /// starting at once agree on one key, and a crash never leaves a partial key file.
    ///
    /// # Errors
    /// As [`KeyFile::load`], and [`KeyFileError::Io`] or [`KeyFileError::PermissionDenied`]
    /// when the file or its directory cannot be made.
    pub fn load_or_create(&self) -> Result<LoadedKey, KeyFileError> {
        if let Some(key) = self.load()? {
            return Ok(LoadedKey {
                key,
                created: false,
            });
        }
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| self.io(&dir, e))?;
        let key = StorageKey::generate().map_err(|e| KeyFileError::Io {
            path: self.shown(),
            message: e.to_string(),
        })?;
        let mut temp = tempfile::Builder::new()
            .prefix(".storage-key.")
            .suffix(".tmp")
            .permissions(Permissions::from_mode(0o600))
            .tempfile_in(&dir)
            .map_err(|e| self.io(&dir, e))?;
        temp.write_all(key.expose_bytes())
            .and_then(|()| temp.as_file().sync_all())
            .map_err(|e| self.io(temp.path(), e))?;
        // The temporary file is removed when `temp` drops, whichever way this goes.
        match fs::hard_link(temp.path(), &self.path) {
            Ok(()) => {
                File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| self.io(&dir, e))?;
                Ok(LoadedKey { key, created: true })
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let key = self.load()?.ok_or_else(|| KeyFileError::Io {
                    path: self.shown(),
                    message: "it appeared and vanished while being made".to_owned(),
                })?;
                Ok(LoadedKey {
                    key,
                    created: false,
                })
            }
            Err(e) => Err(self.io(&self.path, e)),
        }
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }

    fn io(&self, path: &Path, err: io::Error) -> KeyFileError {
        let path = path.display().to_string();
        match err.kind() {
            io::ErrorKind::PermissionDenied => KeyFileError::PermissionDenied { path },
            _ => KeyFileError::Io {
                path,
                message: err.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_missing_key_is_made_once_private_and_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = KeyFile::new(dir.path().join("home/storage.key"));
        assert!(file.load().unwrap().is_none());
        let made = file.load_or_create().unwrap();
        assert!(made.created);
        let meta = fs::metadata(file.path()).unwrap();
        assert_eq!((meta.len(), meta.mode() & 0o777), (32, 0o600));
        let again = file.load_or_create().unwrap();
        assert!(!again.created);
        assert_eq!(again.key.expose_bytes(), made.key.expose_bytes());
        let leftovers = fs::read_dir(dir.path().join("home")).unwrap().count();
        assert_eq!(leftovers, 1, "only the key file remains");
    }

    #[test]
    fn processes_racing_to_make_the_key_agree_on_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("storage.key");
        let keys: Vec<[u8; KEY_LEN]> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        *KeyFile::new(&path)
                            .load_or_create()
                            .unwrap()
                            .key
                            .expose_bytes()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn a_key_others_can_read_or_of_the_wrong_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("storage.key");
        fs::write(&path, [1u8; KEY_LEN]).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let err = KeyFile::new(&path).load_or_create().unwrap_err();
        assert!(
            matches!(err, KeyFileError::TooOpen { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains(&path.display().to_string()));

        fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, b"short").unwrap();
        let err = KeyFile::new(&path).load_or_create().unwrap_err();
        assert!(matches!(err, KeyFileError::NotAKey { len: 5, .. }), "{err}");
        assert_eq!(
            fs::read(&path).unwrap(),
            b"short",
            "a bad key file is never replaced"
        );
    }
}
