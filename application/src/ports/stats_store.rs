//! The statistics port: per-bucket request counts kept across runs and processes.

use async_trait::async_trait;

use super::PersistenceError;
use llxprt_domain::stats::{StatsDelta, StatsTotals};

/// Where bucket statistics persist.
#[async_trait]
pub trait StatsStore: Send + Sync {
    /// The totals as stored now.
    ///
    /// # Errors
    /// [`PersistenceError`] when they cannot be read.
    async fn load(&self) -> Result<StatsTotals, PersistenceError>;

    /// Adds a process's counts to the stored totals, safely when several processes do it at
    /// once (no count is lost), and returns the new totals.
    ///
    /// # Errors
    /// [`PersistenceError`] when they cannot be read or written; the stored totals are then unchanged.
    async fn add(&self, delta: &StatsDelta) -> Result<StatsTotals, PersistenceError>;
}
