//! The bucket health port: what one process learned about a bucket (a rate limit until some
//! time, a revoked grant) kept where the next process, and `/auth P status`, can see it.

use std::collections::HashMap;

use async_trait::async_trait;

use super::PersistenceError;
use llxprt_domain::failover::BucketHealth;
use llxprt_domain::BucketId;

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
}
