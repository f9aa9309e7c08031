//! What OpenSSH's `StrictModes` does for `~/.ssh`, for `$LLXPRT_HOME`: a file or directory
//! that another user owns, or that others can change, is refused, because whoever can write it
//! chooses the tokens, keys and endpoints llxprt uses. Files that may hold secrets and that
//! others can read are made private again, and the user is told.

use std::fs::{self, DirBuilder, Metadata, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::PathError;

/// The mode of llxprt's directories.
const PRIVATE_DIR_MODE: u32 = 0o700;

/// The effective user id of this process: the user whose files llxprt may use.
pub fn current_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Refuses `path` (described by `meta`) when another user owns it, or when its group or
/// everyone may write it. Root's files are accepted: root can change any file anyway.
pub fn check_owner_and_mode(path: &Path, meta: &Metadata) -> Result<(), PathError> {
    let me = current_uid();
    let owner = meta.uid();
    if owner != me && owner != 0 {
        return Err((
            path.to_owned(),
            io::Error::other(format!(
                "it is owned by another user (uid {owner}), who could have put anything in it; \
                 llxprt uses only files you own: remove it, or `chown {me} {}` if you trust it",
                path.display()
            )),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err((
            path.to_owned(),
            io::Error::other(format!(
                "other users can change it (mode {mode:04o}); run `chmod go-w {}`",
                path.display()
            )),
        ));
    }
    Ok(())
}

/// Creates `dir` (and missing parents) `0700`; an existing one must pass
/// [`check_owner_and_mode`].
pub fn create_private_dir(dir: &Path) -> Result<(), PathError> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .map_err(|e| (dir.to_owned(), e))?;
    let meta = fs::metadata(dir).map_err(|e| (dir.to_owned(), e))?;
    check_owner_and_mode(dir, &meta)
}

/// What [`audit_home`] changed, for the user to be told.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Audit {
    /// One line per file or directory made private again.
    pub warnings: Vec<String>,
}

/// Checks `home` and what llxprt keeps in it before anything is read: every directory and file
/// must pass [`check_owner_and_mode`]; `stats.json`, `health.json`, `history` and lock files
/// must not be symbolic links; token files and the token directory that others can read are
/// made private (`0600`, `0700`), each with a warning. A home that does not exist yet passes.
pub fn audit_home(home: &Path) -> Result<Audit, PathError> {
    let mut audit = Audit::default();
    let Some(meta) = existing(home, fs::metadata(home))? else {
        return Ok(audit);
    };
    check_owner_and_mode(home, &meta)?;
    for name in ["settings.json", "stats.json", "health.json", "history"] {
        let links_allowed = name == "settings.json";
        audit.file(&home.join(name), links_allowed, false)?;
    }
    let oauth = home.join("oauth");
    if audit.dir(&oauth, true)? {
        for file in entries(&oauth)? {
            audit.file(&file, true, true)?;
        }
        let locks = oauth.join("locks");
        if audit.dir(&locks, false)? {
            for file in entries(&locks)? {
                audit.file(&file, false, false)?;
            }
        }
    }
    let profiles = home.join("profiles");
    if audit.dir(&profiles, false)? {
        for file in entries(&profiles)? {
            audit.file(&file, true, false)?;
        }
    }
    Ok(audit)
}

impl Audit {
    /// Checks a directory if it exists; `private` ones others can read are tightened.
    fn dir(&mut self, dir: &Path, private: bool) -> Result<bool, PathError> {
        let Some(meta) = existing(dir, fs::symlink_metadata(dir))? else {
            return Ok(false);
        };
        if !meta.is_dir() {
            return Err((
                dir.to_owned(),
                io::Error::other("it is not a directory; remove it and llxprt makes a new one"),
            ));
        }
        check_owner_and_mode(dir, &meta)?;
        let mode = meta.mode() & 0o777;
        if private && mode & 0o077 != 0 {
            tighten(dir, PRIVATE_DIR_MODE)?;
            self.warnings.push(format!(
                "{} was open to other users (mode {mode:04o}); llxprt made it 0700",
                dir.display()
            ));
        }
        Ok(true)
    }

    /// Checks a file if it exists; `secret` ones others can read are tightened.
    fn file(&mut self, file: &Path, links_allowed: bool, secret: bool) -> Result<(), PathError> {
        let Some(lstat) = existing(file, fs::symlink_metadata(file))? else {
            return Ok(());
        };
        let meta = if lstat.file_type().is_symlink() {
            if !links_allowed {
                return Err((
                    file.to_owned(),
                    io::Error::other(format!(
                        "it is a symbolic link, which llxprt does not follow here; remove {}",
                        file.display()
                    )),
                ));
            }
            // The link itself belongs to whoever made it; what counts is what it points to.
            match existing(file, fs::metadata(file))? {
                Some(meta) => meta,
                None => return Ok(()),
            }
        } else {
            lstat
        };
        check_owner_and_mode(file, &meta)?;
        let mode = meta.mode() & 0o777;
        if secret && meta.is_file() && mode & 0o077 != 0 {
            tighten(file, crate::PRIVATE_FILE_MODE)?;
            self.warnings.push(format!(
                "{} was readable by other users (mode {mode:04o}) and may hold a token or key; \
                 llxprt made it 0600",
                file.display()
            ));
        }
        Ok(())
    }
}

fn existing(path: &Path, meta: io::Result<Metadata>) -> Result<Option<Metadata>, PathError> {
    match meta {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err((path.to_owned(), e)),
    }
}

fn entries(dir: &Path) -> Result<Vec<std::path::PathBuf>, PathError> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| (dir.to_owned(), e))? {
        let entry = entry.map_err(|e| (dir.to_owned(), e))?;
        // The lock directory is audited on its own.
        if entry.file_name() != "locks" {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

fn tighten(path: &Path, mode: u32) -> Result<(), PathError> {
    fs::set_permissions(path, Permissions::from_mode(mode)).map_err(|e| (path.to_owned(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{chown, symlink};

    /// A user id that is neither this process's nor root's.
    const SOMEONE_ELSE: u32 = 65_534;

    fn is_root() -> bool {
        current_uid() == 0
    }

    #[test]
    fn files_others_can_change_are_refused_naming_the_fix() {
        let home = tempfile::tempdir().unwrap();
        let settings = home.path().join("settings.json");
        fs::write(&settings, "{}").unwrap();
        fs::set_permissions(&settings, Permissions::from_mode(0o666)).unwrap();
        let (path, error) = audit_home(home.path()).unwrap_err();
        assert_eq!(path, settings);
        assert!(error.to_string().contains("chmod go-w"), "{error}");
    }

    #[test]
    fn a_token_file_another_user_owns_is_refused() {
        // Giving a file away takes root; the tests and CI run as root.
        assert!(
            is_root(),
            "this test needs root, to give a file to another user"
        );
        let home = tempfile::tempdir().unwrap();
        let oauth = home.path().join("oauth");
        create_private_dir(&oauth).unwrap();
        let token = oauth.join("anthropic.json");
        fs::write(&token, "{}").unwrap();
        chown(&token, Some(SOMEONE_ELSE), None).unwrap();
        let (path, error) = audit_home(home.path()).unwrap_err();
        assert_eq!(path, token);
        assert!(error.to_string().contains("another user"), "{error}");
    }

    #[test]
    fn readable_secrets_are_made_private_with_a_warning() {
        let home = tempfile::tempdir().unwrap();
        let oauth = home.path().join("oauth");
        fs::create_dir(&oauth).unwrap();
        fs::set_permissions(&oauth, Permissions::from_mode(0o755)).unwrap();
        let token = oauth.join("qwen.json");
        fs::write(&token, "{}").unwrap();
        fs::set_permissions(&token, Permissions::from_mode(0o644)).unwrap();
        let audit = audit_home(home.path()).unwrap();
        assert_eq!(audit.warnings.len(), 2, "{audit:?}");
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!((mode(&oauth), mode(&token)), (0o700, 0o600));
        assert_eq!(audit_home(home.path()).unwrap(), Audit::default());
    }

    #[test]
    fn a_planted_link_for_statistics_is_refused() {
        let home = tempfile::tempdir().unwrap();
        symlink("/etc/passwd", home.path().join("stats.json")).unwrap();
        let (_, error) = audit_home(home.path()).unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
    }

    #[test]
    fn a_new_directory_is_private() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    }
}
