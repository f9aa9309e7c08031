//! The bucket health port: what one process learned about a bucket (a rate limit until some
//! time, a revoked grant) kept where the next process, and `/auth P status`, can see it.

use std::collections::HashMap;

use async_trait::async_trait;
use llxprt_domain::failover::BucketHealth;
use llxprt_domain::BucketId;

/// Why the buckets' health could not be read or saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthError {
    /// The health file is not valid.
    #[error("the bucket health file {path} is corrupt ({reason})")]
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

/// Where bucket health persists between processes.
#[async_trait]
pub trait HealthStore: Send + Sync {
    /// Every bucket known not to be usable as it was last recorded (a bucket missing is
    /// [`BucketHealth::Usable`]). A cooldown that has ended may still be listed; it no longer
    /// counts (`BucketHealth::is_usable_at`).
    ///
    /// # Errors
    /// [`HealthError`] when the health cannot be read.
    async fn load(&self) -> Result<HashMap<BucketId, BucketHealth>, HealthError>;

    /// Records the new health of these buckets and leaves every other bucket as stored, safely
    /// when several processes record at once. [`BucketHealth::Usable`] removes a bucket.
    ///
    /// # Errors
    /// [`HealthError`] when the health cannot be written; what was stored is then unchanged.
    async fn record(&self, changes: &[(BucketId, BucketHealth)]) -> Result<(), HealthError>;
}
