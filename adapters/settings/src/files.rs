//! File-system helpers of the settings store: reads that treat a missing file as absent, atomic
//! private writes, the settings lock, and error messages safe to show.

use std::fmt::Display;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use llxprt_application::ports::ConfigError;

pub(super) fn io_error(path: &Path, error: &impl Display) -> ConfigError {
    ConfigError::Io {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

/// The file's text, or `None` when there is no such file.
pub(super) fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, &e)),
    }
}

/// Creates a directory (and its parents) readable by its owner only, since what it holds may
/// include keys. An existing directory keeps the permissions the user gave it.
pub(super) fn create_private_dir(dir: &Path) -> Result<(), ConfigError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| io_error(dir, &e))
}

/// Replaces `path` with `contents` so that a reader, or the next run after a crash, sees the old
/// file or the new one and never a torn one. The file is readable by its owner only.
pub(super) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), ConfigError> {
    llxprt_fs::write_atomically(path, ".llxprt-", contents).map_err(|(p, e)| io_error(&p, &e))
}

/// An exclusive lock on the settings, held across read → change → write.
pub(super) struct SettingsLock(#[allow(dead_code)] llxprt_fs::FileLock);

impl SettingsLock {
    pub(super) fn take(path: &Path) -> Result<Self, ConfigError> {
        llxprt_fs::FileLock::acquire(path)
            .map(Self)
            .map_err(|(p, e)| io_error(&p, &e))
    }
}

/// Removes the quoted string values that `serde` puts in type errors (`invalid type: string
/// "…", expected a boolean`): a key written in the wrong place must not end up on screen.
pub(super) fn redact(reason: &str) -> String {
    const MARKER: &str = "string \"";
    let mut out = String::with_capacity(reason.len());
    let mut rest = reason;
    while let Some(start) = rest.find(MARKER) {
        out.push_str(&rest[..start]);
        out.push_str("a string");
        let quoted = &rest[start + MARKER.len()..];
        let mut escaped = false;
        let end = quoted
            .char_indices()
            .find(|&(_, c)| {
                let closes = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                closes
            })
            .map_or(quoted.len(), |(i, _)| i + 1);
        rest = &quoted[end..];
    }
    out.push_str(rest);
    out
}
