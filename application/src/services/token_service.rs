//! Keeping the user signed in: a valid token for a bucket, refreshed by exactly one caller.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use llxprt_domain::{BucketId, OAuthProvider, Secret, Token};

use crate::ports::{Clock, OAuthFlow, RefreshError, StoreError, TokenStore};

/// How long a caller waits for another process that holds a bucket's lock.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Why no valid token could be had for a bucket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The bucket has never been logged in (or was logged out).
    #[error("{0} is not logged in; run `/auth {provider} login{bucket}`", provider = .0.provider, bucket = login_suffix(.0))]
    NotLoggedIn(BucketId),
    /// The provider rejected the refresh token: only a new login helps. The token file is kept.
    #[error("{bucket} needs a new login ({reason}); run `/auth {provider} login{suffix}`", provider = .bucket.provider, suffix = login_suffix(.bucket))]
    NeedsLogin {
        /// The bucket that needs a login.
        bucket: BucketId,
        /// What the provider said.
        reason: String,
    },
    /// The refresh could not be done now (network, provider down); nothing was changed.
    #[error("could not refresh {bucket}: {message}")]
    Transient {
        /// The bucket whose refresh failed.
        bucket: BucketId,
        /// What went wrong.
        message: String,
    },
    /// The token store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No sign-in flow is registered for the provider.
    #[error("no sign-in flow is configured for {0}")]
    NoFlow(OAuthProvider),
}

/// The ` BUCKET` part of a login command: empty for the default bucket.
fn login_suffix(bucket: &BucketId) -> String {
    if bucket.bucket.is_default() {
        String::new()
    } else {
        format!(" {}", bucket.bucket)
    }
}

/// The sign-in flow of each provider.
#[derive(Clone, Default)]
pub struct FlowRegistry {
    flows: HashMap<OAuthProvider, Arc<dyn OAuthFlow>>,
}

impl FlowRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a flow under the provider it says it serves.
    pub fn register(&mut self, flow: Arc<dyn OAuthFlow>) {
        self.flows.insert(flow.provider(), flow);
    }

    /// The flow of a provider, if one is registered.
    pub fn get(&self, provider: OAuthProvider) -> Option<Arc<dyn OAuthFlow>> {
        self.flows.get(&provider).cloned()
    }
}

/// Hands out valid tokens, refreshing them when they are about to expire or were rejected.
///
/// Exactly one refresh per bucket runs at a time: callers in this process queue on a per-bucket
/// mutex (single flight), and across processes the store's lock is held from the re-read through
/// the write, so a rotating refresh token is never spent twice. Callers that queued while a
/// refresh ran take its token without reading the store again.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::Arc;
/// use llxprt_application::ports::{OAuthFlow, TokenStore};
/// use llxprt_application::services::{FlowRegistry, TokenError, TokenService};
/// use llxprt_application::testkit::{FakeOAuthFlow, ManualClock, MemoryTokenStore, ScriptedPrompt};
/// use llxprt_domain::{BucketId, OAuthProvider, UnixSeconds};
///
/// let clock = Arc::new(ManualClock::at(UnixSeconds(1_767_225_600)));
/// let flow = Arc::new(FakeOAuthFlow::new(OAuthProvider::Qwen, clock.clone()));
/// let store = Arc::new(MemoryTokenStore::new());
/// let mut flows = FlowRegistry::new();
/// flows.register(flow.clone());
/// let tokens = TokenService::new(store.clone(), flows, clock.clone());
///
/// let bucket = BucketId::default_for(OAuthProvider::Qwen);
/// assert!(matches!(tokens.valid_token(&bucket).await, Err(TokenError::NotLoggedIn(_))));
///
/// let signed_in = flow.login(&ScriptedPrompt::new()).await.unwrap();
/// store.save(&bucket, &signed_in).await.unwrap();
/// // Fresh: served as stored, no refresh.
/// assert_eq!(tokens.valid_token(&bucket).await.unwrap(), signed_in);
/// assert_eq!(flow.refreshes(), 0);
///
/// // Two hours later it has expired: one refresh, and the new token is stored.
/// clock.advance(7200);
/// let refreshed = tokens.valid_token(&bucket).await.unwrap();
/// assert_ne!(refreshed.access_token, signed_in.access_token);
/// assert_eq!(store.load(&bucket).await.unwrap(), Some(refreshed));
/// assert_eq!(flow.refreshes(), 1);
///
/// // A revoked grant: the bucket needs a new login, and says how.
/// flow.revoke_all();
/// clock.advance(7200);
/// let error = tokens.valid_token(&bucket).await.unwrap_err();
/// assert!(error.to_string().contains("/auth qwen login"), "{error}");
/// # }
/// ```
pub struct TokenService {
    store: Arc<dyn TokenStore>,
    flows: FlowRegistry,
    clock: Arc<dyn Clock>,
    lock_timeout: Duration,
    in_flight: Mutex<HashMap<BucketId, Arc<Flight>>>,
}

/// One bucket's single flight.
#[derive(Default)]
struct Flight {
    /// Held by the caller that may refresh, and by its refresh task until the token is saved.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// How many refreshes this process has completed for the bucket.
    refreshes: AtomicU64,
    /// The token the last of them produced, with its number.
    last: Mutex<Option<(u64, Token)>>,
}

impl Flight {
    /// The token of a refresh completed after `arrived` (a count of refreshes read before
    /// queuing): it is at least as new as anything the caller had seen.
    fn refreshed_since(&self, arrived: u64) -> Option<Token> {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match &*last {
            Some((number, token)) if *number > arrived => Some(token.clone()),
            _ => None,
        }
    }

    fn record(&self, token: &Token) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let number = self.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
        *last = Some((number, token.clone()));
    }
}

impl TokenService {
    /// A service over a store, the providers' flows and a clock.
    pub fn new(store: Arc<dyn TokenStore>, flows: FlowRegistry, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            flows,
            clock,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// Changes how long to wait for another process's lock.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// A token for `bucket` that is fresh now: the stored one, or a refreshed one when it expires
    /// within the refresh window or has expired.
    ///
    /// # Errors
    /// [`TokenError::NotLoggedIn`] without a stored token, [`TokenError::NeedsLogin`] when the
    /// refresh is rejected, [`TokenError::Transient`] when it cannot be done now, and
    /// [`TokenError::Store`] when storage fails.
    pub async fn valid_token(&self, bucket: &BucketId) -> Result<Token, TokenError> {
        let token = self.load(bucket).await?;
        if !token.needs_refresh(self.clock.now()) {
            return Ok(token);
        }
        self.refresh_unless(bucket, |stored| !stored.needs_refresh(self.clock.now()))
            .await
    }

    /// Refreshes `bucket` after the API rejected `rejected` (a 401), unless another caller has
    /// already replaced that access token, in which case the newer token is returned.
    ///
    /// # Errors
    /// As [`TokenService::valid_token`].
    pub async fn refresh_rejected(
        &self,
        bucket: &BucketId,
        rejected: &Secret,
    ) -> Result<Token, TokenError> {
        self.refresh_unless(bucket, |stored| &stored.access_token != rejected)
            .await
    }

    async fn load(&self, bucket: &BucketId) -> Result<Token, TokenError> {
        self.store
            .load(bucket)
            .await?
            .ok_or_else(|| TokenError::NotLoggedIn(bucket.clone()))
    }

    /// Refreshes the bucket's token unless, once this caller holds both locks, the stored token
    /// already satisfies `good_enough` (another task or process refreshed it meanwhile).
    async fn refresh_unless(
        &self,
        bucket: &BucketId,
        good_enough: impl Fn(&Token) -> bool,
    ) -> Result<Token, TokenError> {
        let flight = self.flight(bucket);
        let arrived = flight.refreshes.load(Ordering::SeqCst);
        let in_process = flight.turn.clone().lock_owned().await;
        // A storm of callers would otherwise read the store one after another here.
        if let Some(token) = flight.refreshed_since(arrived).filter(|t| good_enough(t)) {
            return Ok(token);
        }
        let stored = self.load(bucket).await?;
        if good_enough(&stored) {
            return Ok(stored);
        }
        let across_processes = self.store.lock(bucket, self.lock_timeout).await?;
        let stored = self.load(bucket).await?;
        if good_enough(&stored) {
            tracing::debug!(%bucket, "another process refreshed the token");
            return Ok(stored);
        }
        let refresh_token = stored
            .refresh_token
            .clone()
            .ok_or_else(|| TokenError::NeedsLogin {
                bucket: bucket.clone(),
                reason: "no refresh token was issued".to_owned(),
            })?;
        let flow = self
            .flows
            .get(bucket.provider)
            .ok_or(TokenError::NoFlow(bucket.provider))?;
        let store = self.store.clone();
        let owned_bucket = bucket.clone();
        // Once a rotating refresh token is sent, the provider forgets it: the answer must reach
        // the store even if the caller gives up (Ctrl-C drops its future), or the bucket would
        // need a new login. So the exchange and the write run as a task of their own, holding
        // both locks until the new token is saved.
        let exchange = tokio::spawn(async move {
            let _locks = (in_process, across_processes);
            let bucket = owned_bucket;
            tracing::info!(%bucket, "refreshing the access token");
            let refreshed = flow.refresh(&refresh_token).await.map_err(|e| match e {
                RefreshError::NeedsLogin(reason) => TokenError::NeedsLogin {
                    bucket: bucket.clone(),
                    reason,
                },
                RefreshError::Transient(message) => TokenError::Transient {
                    bucket: bucket.clone(),
                    message,
                },
            })?;
            let merged = stored.merge_refresh(refreshed);
            store.save(&bucket, &merged).await?;
            flight.record(&merged);
            Ok(merged)
        });
        exchange.await.unwrap_or_else(|e| {
            Err(TokenError::Transient {
                bucket: bucket.clone(),
                message: format!("the refresh task failed: {e}"),
            })
        })
    }

    /// The in-process single flight of a bucket.
    fn flight(&self, bucket: &BucketId) -> Arc<Flight> {
        // A poisoned map only means another thread panicked while inserting; the map itself is
        // still a valid map of mutexes.
        let mut map = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.entry(bucket.clone()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{flow_with, token, FixedClock, MapStore, MockOAuthFlow, NOW};
    use llxprt_domain::BucketName;

    fn bucket() -> BucketId {
        BucketId::new(OAuthProvider::Anthropic, BucketName::parse("work").unwrap())
    }

    fn service(store: Arc<MapStore>, flow: MockOAuthFlow) -> TokenService {
        let mut flows = FlowRegistry::new();
        flow_with(&mut flows, flow);
        TokenService::new(store, flows, Arc::new(FixedClock))
    }

    fn store_with(t: Token) -> Arc<MapStore> {
        let store = Arc::new(MapStore::default());
        store.tokens.lock().unwrap().insert(bucket(), t);
        store
    }

    #[tokio::test]
    async fn a_fresh_token_is_used_without_refreshing() {
        let mut flow = MockOAuthFlow::new();
        flow.expect_refresh().times(0);
        let store = store_with(token("at-1", Some("rt-1"), NOW + 3600));
        let got = service(store, flow).valid_token(&bucket()).await.unwrap();
        assert_eq!(got.access_token.expose(), "at-1");
    }

    #[tokio::test]
    async fn a_token_inside_the_window_is_refreshed_and_the_merge_saved() {
        let mut flow = MockOAuthFlow::new();
        flow.expect_refresh()
            .withf(|rt| rt.expose() == "rt-1")
            .times(1)
            .returning(|_| Ok(token("at-2", None, NOW + 3600)));
        let store = store_with(token("at-1", Some("rt-1"), NOW + 30));
        let svc = service(store.clone(), flow);
        let got = svc.valid_token(&bucket()).await.unwrap();
        assert_eq!(got.access_token.expose(), "at-2");
        let saved = store.load(&bucket()).await.unwrap().unwrap();
        assert_eq!(saved.access_token.expose(), "at-2");
        assert_eq!(saved.refresh_token.unwrap().expose(), "rt-1");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thousand_concurrent_callers_make_exactly_one_refresh() {
        let mut flow = MockOAuthFlow::new();
        flow.expect_refresh()
            .times(1)
            .returning(|_| Ok(token("at-2", Some("rt-2"), NOW + 3600)));
        let store = store_with(token("at-1", Some("rt-1"), NOW - 5));
        let svc = Arc::new(service(store.clone(), flow));
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let svc = svc.clone();
                tokio::spawn(async move { svc.valid_token(&bucket()).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().access_token.expose(), "at-2");
        }
        assert_eq!(store.saves.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_queued_behind_a_refresh_take_its_token_without_reading_the_store_again() {
        const CALLERS: usize = 1000;
        let store = store_with(token("at-1", Some("rt-1"), NOW - 5));
        let mut flow = MockOAuthFlow::new();
        let seen = store.clone();
        flow.expect_refresh().times(1).returning(move |_| {
            // Hold the refresh until every other caller has read the expired token and queued:
            // every caller's first read, and the refresher's two re-reads.
            for _ in 0..10_000 {
                if seen.loads.load(Ordering::SeqCst) >= CALLERS + 2 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(token("at-2", Some("rt-2"), NOW + 3600))
        });
        let svc = Arc::new(service(store.clone(), flow));
        let tasks: Vec<_> = (0..CALLERS)
            .map(|_| {
                let svc = svc.clone();
                tokio::spawn(async move { svc.valid_token(&bucket()).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().access_token.expose(), "at-2");
        }
        assert_eq!(store.loads.load(Ordering::SeqCst), CALLERS + 2);
    }

    #[tokio::test]
    async fn a_refresh_finished_before_a_caller_queued_is_not_taken_for_a_rejected_token() {
        let mut flow = MockOAuthFlow::new();
        let mut refreshed = 0;
        flow.expect_refresh().times(2).returning(move |_| {
            refreshed += 1;
            Ok(token(
                &format!("at-{}", refreshed + 1),
                Some("rt"),
                NOW + 3600,
            ))
        });
        let store = store_with(token("at-1", Some("rt-1"), NOW - 5));
        let svc = service(store.clone(), flow);
        assert_eq!(
            svc.valid_token(&bucket())
                .await
                .unwrap()
                .access_token
                .expose(),
            "at-2"
        );
        // The user signs in again; the new token is then rejected: it must be refreshed, not
        // swapped for the token of the earlier refresh.
        store
            .save(&bucket(), &token("at-login", Some("rt-login"), NOW + 3600))
            .await
            .unwrap();
        let got = svc
            .refresh_rejected(&bucket(), &Secret::new("at-login"))
            .await
            .unwrap();
        assert_eq!(got.access_token.expose(), "at-3");
    }

    #[tokio::test]
    async fn uses_the_token_another_process_refreshed_while_it_waited_for_the_lock() {
        let mut flow = MockOAuthFlow::new();
        flow.expect_refresh().times(0);
        let store = store_with(token("at-1", Some("rt-1"), NOW - 5));
        *store.on_lock.lock().unwrap() = Some(token("at-other", Some("rt-2"), NOW + 3600));
        let got = service(store, flow).valid_token(&bucket()).await.unwrap();
        assert_eq!(got.access_token.expose(), "at-other");
    }

    #[tokio::test]
    async fn a_rejected_refresh_says_to_log_in_and_keeps_the_file() {
        let mut flow = MockOAuthFlow::new();
        flow.expect_refresh()
            .times(1)
            .returning(|_| Err(RefreshError::NeedsLogin("invalid_grant".into())));
        let store = store_with(token("at-1", Some("rt-1"), NOW - 5));
        let err = service(store.clone(), flow)
            .valid_token(&bucket())
            .await
            .unwrap_err();
        assert!(matches!(err, TokenError::NeedsLogin { .. }));
        assert!(
            err.to_string().contains("/auth anthropic login work"),
            "{err}"
        );
        assert_eq!(store.saves.load(Ordering::SeqCst), 0);
        assert!(store.load(&bucket()).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_network_failure_changes_nothing() {
        let mut flow = MockOAuthFlow::new();
        flow.expect_refresh()
            .times(1)
            .returning(|_| Err(RefreshError::Transient("connection refused".into())));
        let store = store_with(token("at-1", Some("rt-1"), NOW - 5));
        let err = service(store.clone(), flow)
            .valid_token(&bucket())
            .await
            .unwrap_err();
        assert!(matches!(err, TokenError::Transient { .. }));
        assert_eq!(store.saves.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_rejected_access_token_is_refreshed_once_even_if_not_expired() {
        let mut flow = MockOAuthFlow::new();
        flow.expect_refresh()
            .times(1)
            .returning(|_| Ok(token("at-2", Some("rt-2"), NOW + 3600)));
        let store = store_with(token("at-1", Some("rt-1"), NOW + 3600));
        let svc = service(store, flow);
        let first = svc
            .refresh_rejected(&bucket(), &Secret::new("at-1"))
            .await
            .unwrap();
        assert_eq!(first.access_token.expose(), "at-2");
        // A second caller that also saw the old token gets the new one without a refresh.
        let second = svc
            .refresh_rejected(&bucket(), &Secret::new("at-1"))
            .await
            .unwrap();
        assert_eq!(second.access_token.expose(), "at-2");
    }

    #[tokio::test]
    async fn a_bucket_never_logged_in_names_the_command() {
        let flow = MockOAuthFlow::new();
        let err = service(Arc::new(MapStore::default()), flow)
            .valid_token(&BucketId::default_for(OAuthProvider::Anthropic))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "anthropic/default is not logged in; run `/auth anthropic login`"
        );
    }
}

#[cfg(test)]
mod cancellation_tests {
    use super::*;
    use crate::ports::{FlowError, UserPrompt};
    use crate::test_support::{token, FixedClock, MapStore, NOW};
    use async_trait::async_trait;
    use llxprt_domain::BucketName;
    use std::sync::atomic::Ordering;
    use tokio::sync::Notify;

    /// A provider that rotates the refresh token at once and answers only when told to.
    struct SlowProvider {
        started: Notify,
        answer: Notify,
    }

    #[async_trait]
    impl OAuthFlow for SlowProvider {
        fn provider(&self) -> OAuthProvider {
            OAuthProvider::Anthropic
        }
        async fn login(&self, _prompt: &dyn UserPrompt) -> Result<Token, FlowError> {
            Err(FlowError::Denied("not in this test".into()))
        }
        async fn refresh(&self, _refresh_token: &Secret) -> Result<Token, RefreshError> {
            self.started.notify_one();
            self.answer.notified().await;
            Ok(token("at-new", Some("rt-new"), NOW + 3600))
        }
    }

    #[tokio::test]
    async fn a_refresh_whose_caller_gave_up_still_saves_the_rotated_token() {
        let bucket = BucketId::new(OAuthProvider::Anthropic, BucketName::parse("w").unwrap());
        let store = Arc::new(MapStore::default());
        store
            .tokens
            .lock()
            .unwrap()
            .insert(bucket.clone(), token("at-old", Some("rt-old"), NOW - 1));
        let provider = Arc::new(SlowProvider {
            started: Notify::new(),
            answer: Notify::new(),
        });
        let mut flows = FlowRegistry::new();
        flows.register(provider.clone());
        let service = Arc::new(TokenService::new(
            store.clone(),
            flows,
            Arc::new(FixedClock),
        ));
        let caller = {
            let (service, bucket) = (service.clone(), bucket.clone());
            tokio::spawn(async move { service.valid_token(&bucket).await })
        };
        provider.started.notified().await;
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        provider.answer.notify_one();
        for _ in 0..500 {
            if store.saves.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let saved = store.load(&bucket).await.unwrap().unwrap();
        assert_eq!(saved.refresh_token.unwrap().expose(), "rt-new");
        // The next caller gets the saved token without another refresh.
        let next = service.valid_token(&bucket).await.unwrap();
        assert_eq!(next.access_token.expose(), "at-new");
    }
}
