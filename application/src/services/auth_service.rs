//! Signing in and out of buckets.

use std::sync::Arc;

use llxprt_domain::{BucketId, BucketName, OAuthProvider, Token};

use crate::ports::{FlowError, LoginMethod, LoginRequest, StoreError, TokenStore, UserPrompt};
use crate::services::token_service::{FlowRegistry, DEFAULT_LOCK_TIMEOUT};

/// Why a login or logout did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The sign-in flow failed.
    #[error("login to {bucket} failed: {source}")]
    Flow {
        /// The bucket being logged in.
        bucket: BucketId,
        /// Why.
        source: FlowError,
    },
    /// The token store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No sign-in flow is registered for the provider.
    #[error("no sign-in flow is configured for {0}")]
    NoFlow(OAuthProvider),
}

/// `/auth P login` and `/auth P logout`.
pub struct AuthService {
    store: Arc<dyn TokenStore>,
    flows: FlowRegistry,
}

impl AuthService {
    /// A service over a store and the providers' flows.
    pub fn new(store: Arc<dyn TokenStore>, flows: FlowRegistry) -> Self {
        Self { store, flows }
    }

    /// Runs the provider's sign-in flow now and stores the token in `bucket`, replacing any
    /// token it held (a corrupt one included: this is the user's explicit replacement).
    ///
    /// # Errors
    /// [`AuthError::Flow`] when the flow fails (nothing is written), [`AuthError::Store`] when
    /// the token cannot be saved.
    pub async fn login(
        &self,
        bucket: &BucketId,
        prompt: &dyn UserPrompt,
    ) -> Result<Token, AuthError> {
        self.login_with(bucket, LoginMethod::Usual, prompt).await
    }

    /// [`AuthService::login`] with the sign-in reaching the user by `method` (`--device`).
    /// A token store that could not keep the token is found before the sign-in starts.
    ///
    /// # Errors
    /// As [`AuthService::login`]; [`AuthError::Store`] before any sign-in when the store cannot
    /// be written.
    pub async fn login_with(
        &self,
        bucket: &BucketId,
        method: LoginMethod,
        prompt: &dyn UserPrompt,
    ) -> Result<Token, AuthError> {
        let flow = self
            .flows
            .get(bucket.provider)
            .ok_or(AuthError::NoFlow(bucket.provider))?;
        // A store that cannot be used (a locked or missing keyring) is found out before the user
        // signs in, not after, when the new tokens would have nowhere to go. A bad stored token
        // is what signing in replaces, so it does not stop it.
        match self.store.load(bucket).await {
            Ok(_) | Err(StoreError::Corrupt { .. } | StoreError::WrongKey { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        self.store.check_writable(bucket).await?;
        let request = LoginRequest {
            bucket: bucket.clone(),
            method,
        };
        let token = flow
            .login_for(&request, prompt)
            .await
            .map_err(|source| AuthError::Flow {
                bucket: bucket.clone(),
                source,
            })?;
        // The lock keeps a concurrent refresh in another process from writing between our
        // read-free login and the save.
        let _lock = self.store.lock(bucket, DEFAULT_LOCK_TIMEOUT).await?;
        self.store.save(bucket, &token).await?;
        tracing::info!(%bucket, "logged in");
        Ok(token)
    }

    /// The buckets of `provider` that hold a token, sorted.
    ///
    /// # Errors
    /// [`AuthError::Store`] when the store cannot be listed.
    pub async fn buckets(&self, provider: OAuthProvider) -> Result<Vec<BucketName>, AuthError> {
        Ok(self.store.list(provider).await?)
    }

    /// The token stored for `bucket`, as it is (fresh or not), or `None`.
    ///
    /// # Errors
    /// [`AuthError::Store`] when it cannot be read (a corrupt file, a store refusing).
    pub async fn stored_token(&self, bucket: &BucketId) -> Result<Option<Token>, AuthError> {
        Ok(self.store.load(bucket).await?)
    }

    /// Deletes one bucket's token. Returns whether it had one.
    ///
    /// # Errors
    /// [`AuthError::Store`] when the token cannot be deleted.
    pub async fn logout(&self, bucket: &BucketId) -> Result<bool, AuthError> {
        let _lock = self.store.lock(bucket, DEFAULT_LOCK_TIMEOUT).await?;
        Ok(self.store.delete(bucket).await?)
    }

    /// Deletes every bucket of a provider. Returns the buckets that were removed.
    ///
    /// # Errors
    /// [`AuthError::Store`] when a token cannot be listed or deleted; the buckets before it are
    /// already gone.
    pub async fn logout_all(&self, provider: OAuthProvider) -> Result<Vec<BucketId>, AuthError> {
        let mut removed = Vec::new();
        for name in self.store.list(provider).await? {
            let bucket = BucketId::new(provider, name);
            if self.logout(&bucket).await? {
                removed.push(bucket);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{flow_with, token, MapStore, MockOAuthFlow, SilentPrompt, NOW};
    use llxprt_domain::BucketName;

    fn bucket(name: &str) -> BucketId {
        BucketId::new(OAuthProvider::Anthropic, BucketName::parse(name).unwrap())
    }

    #[tokio::test]
    async fn login_stores_the_flow_token_in_the_named_bucket() {
        let mut flow = MockOAuthFlow::new();
        flow.expect_login()
            .times(1)
            .returning(|_| Ok(token("at", Some("rt"), NOW + 3600)));
        let mut flows = FlowRegistry::new();
        flow_with(&mut flows, flow);
        let store = Arc::new(MapStore::default());
        let svc = AuthService::new(store.clone(), flows);
        svc.login(&bucket("work@x.com"), &SilentPrompt)
            .await
            .unwrap();
        let saved = store.load(&bucket("work@x.com")).await.unwrap().unwrap();
        assert_eq!(saved.access_token.expose(), "at");
        assert!(store.load(&bucket("default")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_failed_login_writes_nothing() {
        let mut flow = MockOAuthFlow::new();
        flow.expect_login()
            .returning(|_| Err(FlowError::Denied("access_denied".into())));
        let mut flows = FlowRegistry::new();
        flow_with(&mut flows, flow);
        let store = Arc::new(MapStore::default());
        let svc = AuthService::new(store.clone(), flows);
        let err = svc
            .login(&bucket("default"), &SilentPrompt)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("access_denied"), "{err}");
        assert!(store.tokens.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn logout_all_removes_only_that_providers_buckets() {
        let store = Arc::new(MapStore::default());
        for b in [bucket("a"), bucket("b")] {
            store.save(&b, &token("x", None, NOW)).await.unwrap();
        }
        let other = BucketId::default_for(OAuthProvider::Qwen);
        store.save(&other, &token("q", None, NOW)).await.unwrap();
        let svc = AuthService::new(store.clone(), FlowRegistry::new());
        let removed = svc.logout_all(OAuthProvider::Anthropic).await.unwrap();
        assert_eq!(removed, vec![bucket("a"), bucket("b")]);
        assert!(store.load(&other).await.unwrap().is_some());
        assert!(!svc.logout(&bucket("a")).await.unwrap());
    }
}
