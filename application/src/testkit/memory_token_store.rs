//! The memory store: tokens that live as long as the process, for embedding and tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::ports::{BucketLock, StoreError, TokenStore};
use async_trait::async_trait;
use llxprt_domain::{BucketId, BucketName, OAuthProvider, Token};

/// Tokens kept in memory, with the file store's behaviour: whole tokens replaced at once, and
/// bucket locks that exclude every other holder in this process (there is no other process to
/// exclude).
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    tokens: Mutex<BTreeMap<BucketId, Token>>,
    locks: Mutex<HashMap<BucketId, Arc<tokio::sync::Mutex<()>>>>,
}

impl MemoryTokenStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn tokens(&self) -> MutexGuard<'_, BTreeMap<BucketId, Token>> {
        // Nothing panics while the map is held, so a poisoned map is still consistent.
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl TokenStore for MemoryTokenStore {
    async fn load(&self, bucket: &BucketId) -> Result<Option<Token>, StoreError> {
        Ok(self.tokens().get(bucket).cloned())
    }

    async fn save(&self, bucket: &BucketId, token: &Token) -> Result<(), StoreError> {
        self.tokens().insert(bucket.clone(), token.clone());
        Ok(())
    }

    async fn delete(&self, bucket: &BucketId) -> Result<bool, StoreError> {
        Ok(self.tokens().remove(bucket).is_some())
    }

    async fn list(&self, provider: OAuthProvider) -> Result<Vec<BucketName>, StoreError> {
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
