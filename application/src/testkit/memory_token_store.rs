//! The memory store: tokens that live as long as the process, for embedding and tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::ports::{BucketLock, StoreError, TokenStore};
use async_trait::async_trait;
use llxprt_domain::{BucketId, BucketName, OAuthProvider, Token};

use super::faults::Faults;

/// An operation of a [`TokenStore`], to make a [`MemoryTokenStore`] fail it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreOperation {
    /// [`TokenStore::load`].
    Load,
    /// [`TokenStore::save`].
    Save,
    /// [`TokenStore::delete`].
    Delete,
    /// [`TokenStore::list`].
    List,
    /// [`TokenStore::lock`].
    Lock,
}

/// Tokens kept in memory, with the file store's behaviour: whole tokens replaced at once, and
/// bucket locks that exclude every other holder in this process (there is no other process to
/// exclude).
///
/// It can be told to fail ([`fail`](Self::fail), [`fail_next`](Self::fail_next)): a failed
/// save or delete changes nothing, like a file store whose disk refused the write.
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    tokens: Mutex<BTreeMap<BucketId, Token>>,
    locks: Mutex<HashMap<BucketId, Arc<tokio::sync::Mutex<()>>>>,
    faults: Faults<StoreOperation, StoreError>,
}

impl MemoryTokenStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every later call of `operation` fails with `error` until [`heal`](Self::heal).
    pub fn fail(&self, operation: StoreOperation, error: StoreError) {
        self.faults.always(operation, error);
    }

    /// The next `count` calls of `operation` fail with `error`.
    pub fn fail_next(&self, operation: StoreOperation, count: u32, error: StoreError) {
        self.faults.next(operation, count, error);
    }

    /// Nothing fails any more.
    pub fn heal(&self) {
        self.faults.heal();
    }

    /// How many times `operation` was called, failed calls included.
    pub fn calls(&self, operation: StoreOperation) -> usize {
        self.faults.calls(operation)
    }

    /// The error a broken disk would give, for [`fail`](Self::fail).
    pub fn io_error() -> StoreError {
        StoreError::Io {
            path: "memory".to_owned(),
            message: "the store was told to fail".to_owned(),
        }
    }

    fn tokens(&self) -> MutexGuard<'_, BTreeMap<BucketId, Token>> {
        // Nothing panics while the map is held, so a poisoned map is still consistent.
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl TokenStore for MemoryTokenStore {
    async fn load(&self, bucket: &BucketId) -> Result<Option<Token>, StoreError> {
        self.faults.check(StoreOperation::Load)?;
        Ok(self.tokens().get(bucket).cloned())
    }

    async fn save(&self, bucket: &BucketId, token: &Token) -> Result<(), StoreError> {
        self.faults.check(StoreOperation::Save)?;
        self.tokens().insert(bucket.clone(), token.clone());
        Ok(())
    }

    async fn delete(&self, bucket: &BucketId) -> Result<bool, StoreError> {
        self.faults.check(StoreOperation::Delete)?;
        Ok(self.tokens().remove(bucket).is_some())
    }

    async fn list(&self, provider: OAuthProvider) -> Result<Vec<BucketName>, StoreError> {
        self.faults.check(StoreOperation::List)?;
        // The map is ordered by provider, then bucket name, so the result comes out sorted.
        Ok(self
            .tokens()
            .keys()
            .filter(|id| id.provider == provider)
            .map(|id| id.bucket.clone())
            .collect())
    }

    async fn lock(
        &self,
        bucket: &BucketId,
        timeout: Duration,
    ) -> Result<Box<dyn BucketLock>, StoreError> {
        self.faults.check(StoreOperation::Lock)?;
        let mutex = self
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(bucket.clone())
            .or_default()
            .clone();
        if let Ok(guard) = mutex.clone().try_lock_owned() {
            return Ok(Box::new(MemoryBucketLock { _guard: guard }));
        }
        let holder = "held by another task of this process";
        tracing::info!(bucket = %bucket, "waiting up to {timeout:?} for the lock on {bucket}, {holder}");
        let start = tokio::time::Instant::now();
        match tokio::time::timeout(timeout, mutex.lock_owned()).await {
            Ok(guard) => Ok(Box::new(MemoryBucketLock { _guard: guard })),
            Err(_) => Err(StoreError::LockTimeout {
                bucket: bucket.clone(),
                waited: start.elapsed(),
                holder: holder.to_owned(),
            }),
        }
    }
}

struct MemoryBucketLock {
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl BucketLock for MemoryBucketLock {}
