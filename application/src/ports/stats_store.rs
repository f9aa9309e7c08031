//! The statistics port: per-bucket request counts kept across runs and processes.

use async_trait::async_trait;
use llxprt_domain::stats::{StatsDelta, StatsTotals};

/// Why statistics could not be read or saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    /// The statistics file is not valid; it is left in place.
    #[error("the statistics file {path} is corrupt ({reason})")]
    Corrupt {
        /// Where it is.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("could not access {path}: {message}")]
    Io {
        /// The file involved.
        path: String,
        /// What the operating system said.
        message: String,
    },
}

/// Where bucket statistics persist.
#[async_trait]
pub trait StatsStore: Send + Sync {
    /// The totals as stored now.
    ///
    /// # Errors
    /// [`StatsError`] when they cannot be read.
    async fn load(&self) -> Result<StatsTotals, StatsError>;

    /// Adds a process's counts to the stored totals, safely when several processes do it at
    /// once (no count is lost), and returns the new totals.
    ///
    /// # Errors
    /// [`StatsError`] when they cannot be read or written; the stored totals are then unchanged.
    async fn add(&self, delta: &StatsDelta) -> Result<StatsTotals, StatsError>;
}
