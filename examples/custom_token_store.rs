//! A token store of one's own, checked with llxprt's contract suites: every promise of the
//! `TokenStore` port as one case, then random sequences of operations against a model.
//!
//! This one keeps tokens in a map behind a read-write lock, the shape of a cache in front of a
//! team's secret service, and can be told that its backend is down. `cargo run --example
//! custom_token_store` (CI runs it); a broken promise panics with what broke.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use llxprt_application::ports::{BucketLock, StoreError, TokenStore, UserPrompt};
use llxprt_application::testkit::{token_store, token_store_model};
use llxprt_domain::{BucketId, BucketName, OAuthProvider, Token};
use llxprt_terminal::TerminalPrompt;

/// Tokens in a map; one async mutex per bucket as its lock.
#[derive(Default)]
struct TeamStore {
    tokens: RwLock<BTreeMap<BucketId, Token>>,
    locks: Mutex<HashMap<BucketId, Arc<tokio::sync::Mutex<()>>>>,
    backend_down: AtomicBool,
}

struct Held(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>);
impl BucketLock for Held {}

impl TeamStore {
    fn tokens(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<BucketId, Token>> {
        self.tokens.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn tokens_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<BucketId, Token>> {
        self.tokens.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl TokenStore for TeamStore {
    async fn load(&self, bucket: &BucketId) -> Result<Option<Token>, StoreError> {
        Ok(self.tokens().get(bucket).cloned())
    }

    async fn save(&self, bucket: &BucketId, token: &Token) -> Result<(), StoreError> {
        if self.backend_down.load(Ordering::SeqCst) {
            return Err(StoreError::Io {
                path: format!("team-store/{bucket}"),
                message: "the secret service is unreachable".to_owned(),
            });
        }
        self.tokens_mut().insert(bucket.clone(), token.clone());
        Ok(())
    }

    async fn delete(&self, bucket: &BucketId) -> Result<bool, StoreError> {
        Ok(self.tokens_mut().remove(bucket).is_some())
    }

    async fn list(&self, provider: OAuthProvider) -> Result<Vec<BucketName>, StoreError> {
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
        match tokio::time::timeout(timeout, mutex.lock_owned()).await {
            Ok(guard) => Ok(Box::new(Held(guard))),
            Err(_) => Err(StoreError::LockTimeout {
                bucket: bucket.clone(),
                waited: timeout,
                holder: "another task of this process".to_owned(),
            }),
        }
    }
}

fn break_saves(store: &TeamStore, broken: bool) {
    store.backend_down.store(broken, Ordering::SeqCst);
}

fn main() {
    let prompt = TerminalPrompt::output_only();
    // The model suite runs its own runtime, so it goes first, outside the one below.
    token_store_model::token_store_model(TeamStore::default, token_store_model::cases());
    prompt.show("TeamStore behaves like the model of a token store");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("no tokio runtime: {e}"));
    runtime.block_on(token_store::token_store_contract(
        TeamStore::default,
        break_saves,
    ));
    prompt.show("TeamStore keeps every promise of the token-store contract");
}
