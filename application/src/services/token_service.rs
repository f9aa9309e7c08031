//! Keeping the user signed in: a valid token for a bucket, refreshed by exactly one caller.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use llxprt_domain::{BucketId, OAuthProvider, Secret, Token, UnixSeconds};
use tokio::sync::watch;

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
/// Exactly one refresh per bucket runs at a time. In this process, the first caller to find a
/// bucket's token stale starts the refresh as a task of its own, and every caller that finds it
/// stale while that task runs waits on the task's one published result (a `watch` per refresh)
/// instead of queuing for a lock; callers that come after it read the saved token from the
/// store, which has it in memory. Across processes, the task holds the store's lock from the
/// re-read through the write, so a rotating refresh token is never spent twice.
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
    in_flight: Arc<InFlight>,
}

/// The refresh each bucket has running, if any.
type InFlight = RwLock<HashMap<BucketId, Running>>;

/// A running refresh, as its waiters see it.
#[derive(Clone)]
struct Running {
    /// Where its result is published, as soon as the provider answers.
    answer: watch::Receiver<Option<TokenResult>>,
    /// Closed when it has ended: the token saved (or the save failed) and the lock released.
    ended: watch::Receiver<()>,
}

type TokenResult = Result<Token, TokenError>;

/// What a refresh checks, under the store's lock, before spending the refresh token.
#[derive(Clone)]
enum Want {
    /// A token that is not about to expire.
    Fresh,
    /// Any token but the one the API rejected.
    Not(Secret),
}

impl Want {
    fn met_by(&self, token: &Token, now: UnixSeconds) -> bool {
        match self {
            Self::Fresh => !token.needs_refresh(now),
            Self::Not(rejected) => &token.access_token != rejected,
        }
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
            in_flight: Arc::default(),
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
        // A refresh already running is joined before the store is asked: its result is newer
        // than anything the store holds now.
        if let Some(running) = self.running(bucket) {
            return self.wait_for(bucket, running.answer, Want::Fresh).await;
        }
        let token = self.load(bucket).await?;
        if !token.needs_refresh(self.clock.now()) {
            return Ok(token);
        }
        self.refresh_unless(bucket, Want::Fresh).await
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
        self.refresh_unless(bucket, Want::Not(rejected.clone()))
            .await
    }

    async fn load(&self, bucket: &BucketId) -> Result<Token, TokenError> {
        load(self.store.as_ref(), bucket).await
    }

    /// Waits until every refresh running now has ended, its token saved: a refresh publishes
    /// its token before the save ends, so the process calls this before it exits.
    pub async fn finish_refreshes(&self) {
        loop {
            let running: Vec<Running> = read(&self.in_flight).values().cloned().collect();
            if running.is_empty() {
                return;
            }
            for mut refresh in running {
                // Ends with an error once the refresh's task has dropped its end of the channel.
                while refresh.ended.changed().await.is_ok() {}
            }
        }
    }

    /// The refresh running for `bucket`, if any.
    fn running(&self, bucket: &BucketId) -> Option<Running> {
        read(&self.in_flight).get(bucket).cloned()
    }

    /// Joins the bucket's running refresh, or starts one, until a token satisfies `want`.
    async fn refresh_unless(&self, bucket: &BucketId, want: Want) -> TokenResult {
        loop {
            let (running, mine) = self.join_or_start(bucket, &want);
            if mine {
                return result_of(bucket, running).await;
            }
            // Another caller's refresh may have been content with a token this caller cannot
            // use (the one its request was refused with): then it refreshes in turn.
            match result_of(bucket, running).await {
                Ok(token) if !want.met_by(&token, self.clock.now()) => continue,
                other => return other,
            }
        }
    }

    /// Waits for a running refresh; falls back to a refresh of its own when the one joined
    /// produced a token that does not satisfy `want`.
    async fn wait_for(
        &self,
        bucket: &BucketId,
        running: watch::Receiver<Option<TokenResult>>,
        want: Want,
    ) -> TokenResult {
        match result_of(bucket, running).await {
            Ok(token) if !want.met_by(&token, self.clock.now()) => {
                self.refresh_unless(bucket, want).await
            }
            other => other,
        }
    }

    /// The running refresh of `bucket`, or a new one started for `want`; `true` when this
    /// caller started it.
    fn join_or_start(
        &self,
        bucket: &BucketId,
        want: &Want,
    ) -> (watch::Receiver<Option<TokenResult>>, bool) {
        if let Some(running) = self.running(bucket) {
            return (running.answer, false);
        }
        let mut in_flight = write(&self.in_flight);
        if let Some(running) = in_flight.get(bucket) {
            return (running.answer.clone(), false);
        }
        let (publish, result) = watch::channel(None);
        let (end, ended) = watch::channel(());
        in_flight.insert(
            bucket.clone(),
            Running {
                answer: result.clone(),
                ended,
            },
        );
        drop(in_flight);
        let refresh = Refresh {
            store: self.store.clone(),
            flow: self.flows.get(bucket.provider),
            clock: self.clock.clone(),
            lock_timeout: self.lock_timeout,
            bucket: bucket.clone(),
            want: want.clone(),
        };
        let done = Done {
            in_flight: self.in_flight.clone(),
            bucket: bucket.clone(),
            publish,
            _end: end,
        };
        // Once a rotating refresh token is sent, the provider forgets it: the answer must reach
        // the store even if every caller gives up (Ctrl-C drops their futures), or the bucket
        // would need a new login. So the re-read, the exchange and the write run as a task of
        // their own, holding the store's lock until the new token is saved.
        tokio::spawn(async move {
            let result = refresh.run(&done.publish).await;
            done.publish(result);
        });
        (result, true)
    }
}

/// The stored token of a bucket, or why there is none.
async fn load(store: &dyn TokenStore, bucket: &BucketId) -> TokenResult {
    store
        .load(bucket)
        .await?
        .ok_or_else(|| TokenError::NotLoggedIn(bucket.clone()))
}

/// The published result of a refresh; a refresh task that ended without publishing (it
/// panicked, or the runtime shut down) is a transient failure.
async fn result_of(
    bucket: &BucketId,
    mut running: watch::Receiver<Option<TokenResult>>,
) -> TokenResult {
    match running.wait_for(Option::is_some).await {
        Ok(result) => result.clone().unwrap_or_else(|| Err(task_failed(bucket))),
        Err(_) => Err(task_failed(bucket)),
    }
}

fn task_failed(bucket: &BucketId) -> TokenError {
    TokenError::Transient {
        bucket: bucket.clone(),
        message: "the refresh task ended without an answer".to_owned(),
    }
}

/// One refresh of one bucket, as the task that runs it sees it.
struct Refresh {
    store: Arc<dyn TokenStore>,
    flow: Option<Arc<dyn OAuthFlow>>,
    clock: Arc<dyn Clock>,
    lock_timeout: Duration,
    bucket: BucketId,
    want: Want,
}

impl Refresh {
    /// Under the store's lock: re-reads the token, and refreshes and saves it unless it already
    /// satisfies what the caller wanted (another process refreshed it meanwhile).
    ///
    ///
    /// The refreshed token is published to the waiters as soon as the provider answers: they do
    /// not wait for the save (a write and two fsyncs, milliseconds on a busy disk), which still
    /// runs to its end under the lock. Every other writer of the bucket (a refresh in another
    /// process, a login, a logout) takes that lock first, so none can come between; callers of
    /// this process that arrive before the save ends still find this refresh and take its token.
    async fn run(self, publish: &watch::Sender<Option<TokenResult>>) -> TokenResult {
        let bucket = &self.bucket;
        let _across_processes = self.store.lock(bucket, self.lock_timeout).await?;
        let stored = load(self.store.as_ref(), bucket).await?;
        if self.want.met_by(&stored, self.clock.now()) {
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
        let flow = self.flow.ok_or(TokenError::NoFlow(bucket.provider))?;
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
        publish.send_replace(Some(Ok(merged.clone())));
        if let Err(error) = self.store.save(bucket, &merged).await {
            // The access token in hand is good until it expires; the refresh token that came
            // with it is not stored, so the bucket will need a login then.
            tracing::warn!(
                %bucket,
                %error,
                "could not save the refreshed token of {bucket}; run `/auth {} login{}` before it expires",
                bucket.provider,
                login_suffix(bucket)
            );
        }
        Ok(merged)
    }
}

/// Ends a bucket's refresh: no longer in flight, its result published to every waiter. Dropped
/// without publishing (the task panicked or was dropped by a runtime shutting down), it still
/// ends the refresh, and the waiters learn that it failed.
struct Done {
    in_flight: Arc<InFlight>,
    bucket: BucketId,
    publish: watch::Sender<Option<TokenResult>>,
    /// Dropped last, after the refresh left the map: tells [`TokenService::finish_refreshes`].
    _end: watch::Sender<()>,
}

impl Done {
    fn publish(self, result: TokenResult) {
        // Waiters that have gone away are no error; a token published before the save stays.
        self.publish.send_if_modified(|answer| {
            let unanswered = answer.is_none();
            if unanswered {
                *answer = Some(result);
            }
            unanswered
        });
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        // Removed after the result is published: a caller that still finds this refresh gets
        // its result at once, one that does not reads the saved token from the store.
        let mut in_flight = write(&self.in_flight);
        if in_flight
            .get(&self.bucket)
            .is_some_and(|running| running.answer.same_channel(&self.publish.subscribe()))
        {
            in_flight.remove(&self.bucket);
        }
    }
}

/// A poisoned map only means a thread panicked while changing it with a single insert or
/// remove; the map itself is still whole.
fn read(in_flight: &InFlight) -> RwLockReadGuard<'_, HashMap<BucketId, Running>> {
    in_flight.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(in_flight: &InFlight) -> RwLockWriteGuard<'_, HashMap<BucketId, Running>> {
    in_flight.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{flow_with, token, FixedClock, MapStore, MockOAuthFlow, NOW};
    use llxprt_domain::BucketName;
    use std::sync::atomic::Ordering;

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
    async fn callers_that_find_a_refresh_running_wait_for_it_without_reading_the_store() {
        const CALLERS: usize = 1000;
        let store = store_with(token("at-1", Some("rt-1"), NOW - 5));
        let mut flow = MockOAuthFlow::new();
        flow.expect_refresh().times(1).returning(move |_| {
            // A slow provider: every caller arrives while the refresh runs.
            std::thread::sleep(Duration::from_millis(50));
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
        // At most: each caller's first read, and the refresh's re-read under the lock.
        let loads = store.loads.load(Ordering::SeqCst);
        assert!(loads <= CALLERS + 1, "{loads} loads");
        assert_eq!(store.saves.load(Ordering::SeqCst), 1);
        // A caller that comes after the refresh reads the saved token.
        let after = svc.valid_token(&bucket()).await.unwrap();
        assert_eq!(after.access_token.expose(), "at-2");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_refresh_is_one_failure_for_every_caller_waiting_on_it() {
        let refreshes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut flow = MockOAuthFlow::new();
        let counted = refreshes.clone();
        flow.expect_refresh().returning(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            // A slow provider: the callers arrive while it runs.
            std::thread::sleep(Duration::from_millis(50));
            Err(RefreshError::NeedsLogin("invalid_grant".into()))
        });
        let store = store_with(token("at-1", Some("rt-1"), NOW - 5));
        let svc = Arc::new(service(store.clone(), flow));
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let svc = svc.clone();
                tokio::spawn(async move { svc.valid_token(&bucket()).await })
            })
            .collect();
        let mut refused = 0;
        for task in tasks {
            match task.await.unwrap() {
                Err(TokenError::NeedsLogin { .. }) => refused += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(refused, 100);
        // A caller that comes after a refusal may try again; callers waiting on one do not.
        let refreshes = refreshes.load(Ordering::SeqCst);
        assert!(refreshes < 100, "{refreshes} refreshes");
        assert_eq!(store.saves.load(Ordering::SeqCst), 0);
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
