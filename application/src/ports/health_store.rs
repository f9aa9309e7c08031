//! The bucket health port: what one process learned about a bucket (a rate limit until some
//! time, a revoked grant, the latest limits the provider reported) kept where the next process,
//! and `/auth P status`, can see it.

use std::collections::HashMap;

use async_trait::async_trait;

use super::PersistenceError;
use llxprt_domain::failover::BucketHealth;
use llxprt_domain::{BucketId, ReportedLimits};

/// Where bucket health persists between processes.
#[async_trait]
pub trait HealthStore: Send + Sync {
    /// Every bucket known not to be usable as it was last recorded (a bucket missing is
    /// [`BucketHealth::Usable`]). A cooldown that has ended may still be listed; it no longer
    /// counts (`BucketHealth::is_usable_at`).
    ///
    /// # Errors
    /// [`PersistenceError`] when the health cannot be read.
    async fn load(&self) -> Result<HashMap<BucketId, BucketHealth>, PersistenceError>;

    /// Records the new health of these buckets and leaves every other bucket as stored, safely
    /// when several processes record at once. [`BucketHealth::Usable`] removes a bucket.
    ///
    /// # Errors
    /// [`PersistenceError`] when the health cannot be written; what was stored is then unchanged.
    async fn record(&self, changes: &[(BucketId, BucketHealth)]) -> Result<(), PersistenceError>;

    /// The latest limits each bucket's provider reported, with when they were seen (a bucket
    /// missing reported none, or they were forgotten).
    ///
    /// # Errors
    /// [`PersistenceError`] when they cannot be read.
    async fn load_limits(&self) -> Result<HashMap<BucketId, ReportedLimits>, PersistenceError>;

    /// Keeps the latest limits of these buckets in place of what was kept for each (`None`
    /// forgets a bucket's, after a login or `/auth P clear`), and leaves every other bucket's as
    /// stored, safely when several processes record at once. Limits seen before the ones kept
    /// do not replace them.
    ///
    /// # Errors
    /// [`PersistenceError`] when they cannot be written; what was stored is then unchanged.
    async fn record_limits(
        &self,
        latest: &[(BucketId, Option<ReportedLimits>)],
    ) -> Result<(), PersistenceError>;

    /// [`record`](Self::record) and [`record_limits`](Self::record_limits) at once, what a
    /// request learned; a store that can write both in one go (one locked write of a file)
    /// overrides it.
    ///
    /// # Errors
    /// [`PersistenceError`] when either cannot be written.
    async fn record_with_limits(
        &self,
        changes: &[(BucketId, BucketHealth)],
        latest: &[(BucketId, Option<ReportedLimits>)],
    ) -> Result<(), PersistenceError> {
        if !changes.is_empty() {
            self.record(changes).await?;
        }
        if !latest.is_empty() {
            self.record_limits(latest).await?;
        }
        Ok(())
    }
}
