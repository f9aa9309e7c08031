//! The file stores of llxprt, under `$LLXPRT_HOME`: OAuth tokens in `oauth/` ([`FileTokenStore`],
//! the default token store), request statistics in `stats.json` ([`FileStatsStore`]) and bucket
//! health in `health.json` ([`FileHealthStore`]).
//!
//! The token store passes the contract suite of `llxprt_application::testkit::token_store`.

mod file;
mod health;
pub mod json;
mod stats;

use std::io;
use std::path::Path;

pub use file::{
    blocking, io_error, FileTokenStore, DEFAULT_REVALIDATE_AFTER, DEFAULT_SETTLE_TIME,
    MAX_TOKEN_FILE_BYTES,
};
pub use health::{
    health_entry_from_json, health_entry_to_json, limits_entry_from_json, limits_entry_to_json,
    FileHealthStore,
};
pub use stats::FileStatsStore;

use llxprt_fs::{write_atomically, FileLock, PathError};

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
        llxprt_fs::create_private_dir(dir).map_err(&io)?;
    }
    let _lock = FileLock::acquire(&path.with_extension("json.lock")).map_err(&io)?;
    let document = change()?;
    let mut text = serde_json::to_string_pretty(&document)
        .map_err(|e| io((path.to_owned(), io::Error::other(e))))?;
    text.push('\n');
    write_atomically(path, temp_prefix, text.as_bytes()).map_err(io)
}
