//! File-system helpers of the settings store: reads that treat a missing file as absent, atomic
//! private writes, the settings lock, and error messages safe to show.

use std::fmt::Display;
use std::path::Path;

use llxprt_application::ports::ConfigError;

pub(super) fn io_error(path: &Path, error: &impl Display) -> ConfigError {
    ConfigError::Io {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

/// The most a settings or profile file may hold: real ones are a few kilobytes, and a bigger
/// one is refused before it is parsed.
pub(super) const MAX_SETTINGS_BYTES: u64 = 1 << 20;

/// The file's text, or `None` when there is no such file. A FIFO or device gives an error at
/// once instead of a hang, and a file another user owns or can change is refused
/// (`llxprt_fs::check_owner_and_mode`): its endpoints and keys would be theirs.
pub(super) fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    let bytes = llxprt_fs::read_regular(path, llxprt_fs::Links::Follow, MAX_SETTINGS_BYTES)
        .map_err(|(p, e)| io_error(&p, &e))?;
    bytes
        .map(|bytes| {
            String::from_utf8(bytes).map_err(|_| ConfigError::InvalidFile {
                path: path.display().to_string(),
                reason: "it is not UTF-8 text".to_owned(),
            })
        })
        .transpose()
}

/// Creates a directory (and its parents) readable by its owner only, since what it holds may
/// include keys. An existing directory keeps the permissions the user gave it, unless others
/// own it or can change it, which is refused.
pub(super) fn create_private_dir(dir: &Path) -> Result<(), ConfigError> {
    llxprt_fs::create_private_dir(dir).map_err(|(p, e)| io_error(&p, &e))
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
